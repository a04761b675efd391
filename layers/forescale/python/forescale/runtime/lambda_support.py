"""What every handler shares: boto3 clients built once per process, the state store, the event
publisher, and Powertools Idempotency keyed on the EventBridge event id.

boto3 and Powertools Idempotency are imported, and clients created, on first use rather than at
import: boto3 alone is most of a light handler's import time. The cost moves to the first
invocation (measured by tests/bench/handler_import.py). Tests point the clients at moto by setting
the environment before the first call, or reset them with `reset()`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from forescale.adapters.events import EventPublisher
from forescale.adapters.state import DynamoStateStore
from forescale.runtime.events import EventError, parse_event
from forescale.runtime.observability import logger, metrics
from forescale.runtime.settings import FunctionSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

IDEMPOTENCY_TTL_S = 3600  # EventBridge redelivers within its 24 h retry window; an hour covers its retries

_clients: dict[str, Any] = {}
_clock: Callable[[], float] | None = None  # None: wall time; the local demo sets its simulated clock
_persistence: dict[str, DynamoDBPersistenceLayer] = {}


def client(service: str) -> Any:
    """A boto3 client for `service`, one per process (Lambda reuses it across warm invocations)."""
    if service not in _clients:
        import boto3  # imported on first use: it is most of a light handler's cold import otherwise

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        _clients[service] = boto3.client(service, region_name=region)  # type: ignore[call-overload]
    return _clients[service]


def now() -> int:
    """Epoch seconds for handlers that act on "now" rather than on an event's own time."""
    import time

    return int(_clock() if _clock is not None else time.time())


def set_clock(clock: Callable[[], float] | None) -> None:
    """Local runs only: drive `now()` from a simulated clock (None restores wall time)."""
    global _clock  # noqa: PLW0603 - one process-wide clock, like the cached clients
    _clock = clock


def reset() -> None:
    """Forget cached clients (tests switch between moto contexts)."""
    _clients.clear()
    _persistence.clear()


def parse_or_reject(event: Any, accepted: tuple[str, ...]) -> EventBridgeModel:
    """The event parsed by its model; a bad one is logged, counted (InvalidEvents) and re-raised, so
    Lambda's asynchronous retries and then the function's DLQ keep it."""
    try:
        return parse_event(event, accepted)
    except EventError as exc:
        from aws_lambda_powertools.metrics import MetricUnit

        logger.error("invalid event", extra={"error": str(exc)})
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        raise


def state_store(settings: FunctionSettings) -> DynamoStateStore:
    return DynamoStateStore(client("dynamodb"), settings.TABLE_NAME)


def publisher(settings: FunctionSettings) -> EventPublisher:
    return EventPublisher(client("events"), settings.EVENT_BUS_NAME)


def once(
    settings: FunctionSettings, function: str, event_id: str, run: Callable[[], dict[str, Any]], context: Any = None
) -> dict[str, Any]:
    """Run `run` once per event id: a redelivered event returns the first run's result without running.

    Records live in the forescale table under `PK = idempotency#<function>`, with the table's TTL.
    """
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    if function not in _persistence:
        _persistence[function] = DynamoDBPersistenceLayer(
            table_name=settings.TABLE_NAME,
            key_attr="PK",
            sort_key_attr="SK",
            static_pk_value=f"idempotency#{function}",
            boto3_client=client("dynamodb"),
        )
    config = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=IDEMPOTENCY_TTL_S)
    if context is not None:
        config.register_lambda_context(context)  # an in-progress record then expires with the invocation

    def _run(event: dict[str, str]) -> dict[str, Any]:
        return run()

    guarded = idempotent_function(
        data_keyword_argument="event", persistence_store=_persistence[function], config=config
    )
    result: dict[str, Any] = guarded(_run)(event={"id": event_id})
    return result
