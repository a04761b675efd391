"""What every handler shares: boto3 clients built once per process, the state store, the event
publisher, and Powertools Idempotency keyed on the EventBridge event id.

boto3 and Powertools Idempotency are imported, and clients created, on first use rather than at
import: boto3 alone is most of a light handler's import time. The cost moves to the first
invocation (measured by tests/bench/handler_import.py). Tests point the clients at moto by setting
the environment before the first call, or reset them with `reset()`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from forescale.adapters.events import EventPublisher
from forescale.adapters.state import DynamoStateStore, ForecastCache
from forescale.domain.ratelimit import ErrorFacts
from forescale.runtime.events import EventError, parse_event
from forescale.runtime.observability import logger, metrics
from forescale.runtime.settings import FunctionSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

    from forescale.runtime.plan import PlannerCache

IDEMPOTENCY_TTL_S = 3600  # EventBridge redelivers within its 24 h retry window; an hour covers its retries

_clients: dict[str, Any] = {}
_clock: Callable[[], float] | None = None  # None: wall time; the local demo sets its simulated clock
_persistence: dict[str, DynamoDBPersistenceLayer] = {}
_forecast_caches: dict[str, ForecastCache] = {}
_planner_caches: dict[str, PlannerCache] = {}


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


class SimulatedPacing:
    """Waits between calls on a simulated clock: a wait moves this clock on, and costs no wall time.

    The clock reads the simulated time plus every wait taken so far, so it never goes back and a
    rate limiter on it still spaces its calls as it would in Lambda; only the waiting is simulated.
    """

    def __init__(self, simulated: Callable[[], float]) -> None:
        self._simulated = simulated
        self.waited_s = 0.0

    def clock(self) -> float:
        return self._simulated() + self.waited_s

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        self.waited_s += seconds


def pacing() -> tuple[Callable[[], float], Callable[[float], None]]:
    """The clock and sleep for waits between AWS calls (act's rate limiter and its retry backoff):
    monotonic wall time in Lambda; with a simulated clock set, `SimulatedPacing` on it."""
    import time

    if _clock is None:
        return time.monotonic, time.sleep
    simulated = SimulatedPacing(_clock)
    return simulated.clock, simulated.sleep


def clock_in_use() -> Callable[[], float] | None:
    """The simulated clock `set_clock` set (None: wall time); a cache keyed by it follows a switch."""
    return _clock


def reset() -> None:
    """Forget cached clients (tests switch between moto contexts)."""
    _clients.clear()
    _persistence.clear()
    _forecast_caches.clear()
    _planner_caches.clear()


def parse_or_reject(event: Any, accepted: tuple[str, ...]) -> EventBridgeModel:
    """The event parsed by its model; a bad one is logged, counted (InvalidEvents) and re-raised, so
    Lambda's asynchronous retries and then the function's DLQ keep it."""
    try:
        return parse_event(event, accepted, now())  # event times are bounded against this clock
    except EventError as exc:
        from aws_lambda_powertools.metrics import MetricUnit

        logger.error("invalid event", extra={"error": str(exc)})
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        raise


def state_store(settings: FunctionSettings) -> DynamoStateStore:
    return DynamoStateStore(client("dynamodb"), settings.TABLE_NAME)


def forecast_cache(settings: FunctionSettings) -> ForecastCache:
    """Decoded forecasts kept for the life of the process (per table): a warm function reads a
    target's forecast blob once per issue, not on every invocation."""
    if settings.TABLE_NAME not in _forecast_caches:
        _forecast_caches[settings.TABLE_NAME] = ForecastCache(state_store(settings))
    return _forecast_caches[settings.TABLE_NAME]


def planner_cache(settings: FunctionSettings) -> PlannerCache:
    """Planners kept for the life of the process (per table, bounded): a warm plan reads each target's
    small hot record every minute, not its snapshot (see runtime.plan)."""
    from forescale.runtime.plan import PlannerCache

    if settings.TABLE_NAME not in _planner_caches:
        memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0") or 0)
        _planner_caches[settings.TABLE_NAME] = PlannerCache.for_memory(memory_mb) if memory_mb else PlannerCache()
    return _planner_caches[settings.TABLE_NAME]


def publisher(settings: FunctionSettings) -> EventPublisher:
    return EventPublisher(client("events"), settings.EVENT_BUS_NAME)


def once(
    settings: FunctionSettings, function: str, event_id: str, run: Callable[[], dict[str, Any]], context: Any = None
) -> dict[str, Any]:
    """Run `run` once per event id: a redelivered event returns the first run's result without running.

    Records live in the forescale table under `PK = idempotency#<function>`, with the table's TTL.
    """
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    if function not in _persistence:
        _persistence[function] = _reporting_layer()(
            function,
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
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    try:
        result: dict[str, Any] = guarded(_run)(event={"id": event_id})
    except IdempotencyAlreadyInProgressError:
        # A redelivered copy while the first is still running: not a failure of ours. Raising lets
        # Lambda retry it later, when the first run's record answers it.
        from aws_lambda_powertools.metrics import MetricUnit

        logger.warning(
            "event already in progress in another invocation", extra={"function": function, "event_id": event_id}
        )
        metrics.add_metric(name="DuplicateEvents", unit=MetricUnit.Count, value=1)
        raise
    except Exception as exc:
        report_failure(function, event_id, exc)
        raise  # Lambda retries the event, then puts it on the function's DLQ
    return result


_layer_class: list[Callable[..., DynamoDBPersistenceLayer]] = []


def _reporting_layer() -> Callable[..., DynamoDBPersistenceLayer]:
    """Powertools' DynamoDB persistence layer, made to report what it would otherwise absorb silently.

    - An event whose record exists already (a redelivery, or a concurrent run) is logged and counted
      (`DuplicateEvents`) before Powertools handles it as usual.
    - A record write that got no answer (read timeout) may have been stored: it is deleted again, best
      effort, so that Lambda's retry of the event is not refused as "in progress" by our own record.
    - Failing to mark a finished run as done is logged and counted (`IdempotencyRecordErrors`) but does
      not fail the invocation: the work is done and every write it made is conditional, so a later
      redelivery that runs again changes nothing; failing here would send a processed event to the DLQ.
    """
    if _layer_class:
        return _layer_class[0]
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemAlreadyExistsError
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    class ReportingPersistenceLayer(DynamoDBPersistenceLayer):
        def __init__(self, function: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.function = function

        def save_inprogress(self, data: dict[str, Any], remaining_time_in_millis: int | None = None) -> None:
            try:
                super().save_inprogress(data, remaining_time_in_millis)
            except IdempotencyItemAlreadyExistsError:
                logger.warning(
                    "event seen before (a redelivery or a concurrent run); its idempotency record decides",
                    extra={"function": self.function, "error_code": "ConditionalCheckFailedException"},
                )
                metrics.add_metric(name="DuplicateEvents", unit=MetricUnit.Count, value=1)
                raise
            except (ReadTimeoutError, ConnectionClosedError) as exc:
                with contextlib.suppress(Exception):
                    self.delete_record(data, exc)
                raise

        def save_success(self, data: dict[str, Any], result: dict[str, Any]) -> None:
            try:
                super().save_success(data, result)
            except Exception as exc:
                error = (getattr(exc, "response", None) or {}).get("Error", {})
                logger.error(
                    "could not mark the event as processed; the work itself is done",
                    extra={"function": self.function, "error_code": error.get("Code"), "error": repr(exc)[:1000]},
                )
                metrics.add_metric(name="IdempotencyRecordErrors", unit=MetricUnit.Count, value=1)

    _layer_class.append(ReportingPersistenceLayer)
    return ReportingPersistenceLayer


def report_retry(what: str, error: ErrorFacts, attempt: int) -> None:
    """A CallGate's `on_retry`: an AWS error that a retry may still absorb is logged and counted
    (`AwsCallRetries`), so throttling shows up before it turns into deferred actions."""
    from aws_lambda_powertools.metrics import MetricUnit

    logger.warning(
        "AWS call failed; retrying",
        extra={"call": what, "error_code": error.code, "error": error.message[:500], "attempt": attempt},
    )
    metrics.add_metric(name="AwsCallRetries", unit=MetricUnit.Count, value=1)


def report_failure(function: str, event_id: str, exc: BaseException) -> None:
    """Make a failed invocation visible in the function's own log and metrics (`InvocationErrors`),
    naming the AWS error code and operation when it was an AWS call that failed."""
    from aws_lambda_powertools.metrics import MetricUnit

    error = getattr(exc, "response", None) or {}
    cause = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    if not error and cause is not None:  # Powertools wraps persistence errors; the AWS error is the cause
        error = getattr(cause, "response", None) or {}
    code = error.get("Error", {}).get("Code") if isinstance(error, dict) else None
    operation = getattr(exc, "operation_name", None) or getattr(cause, "operation_name", None)
    logger.error(
        "invocation failed",
        extra={
            "function": function,
            "event_id": event_id,
            "error_type": type(exc).__name__,
            "error_code": code,
            "operation": operation,
            "error": str(exc)[:1000],
            "cause": repr(cause)[:1000] if cause is not None else None,
        },
    )
    metrics.add_metric(name="InvocationErrors", unit=MetricUnit.Count, value=1)
