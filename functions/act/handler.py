"""act's Lambda: applies `forescale.DecisionMade` decisions and, on its schedule, sweeps for the ones an
event missed (deferred, expired leases, in-flight operations). The logic is `forescale.runtime.act`.

Deploy with reserved concurrency 1: the Lambda rate limiter lives in this process, and AWS's 15
control-plane calls per second are per account, so two concurrent act invocations would share it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from forescale.adapters.autoscaling import ApplicationAutoScaling
from forescale.adapters.events import EventPublisher
from forescale.adapters.lambda_capacity import LambdaCapacity, aws_error_facts
from forescale.adapters.sagemaker_capacity import SageMakerCapacity
from forescale.adapters.state import DynamoStateStore
from forescale.domain.ratelimit import CallGate, TokenBucket
from forescale.runtime import lambda_support
from forescale.runtime.act import ActOptions, ActService, ActSummary
from forescale.runtime.events import DecisionMadeEvent, EventError, ScheduledEvent
from forescale.runtime.observability import logger, metrics, tracer
from forescale.runtime.settings import ActSettings

ACCEPTED = ("forescale.DecisionMade", "Scheduled Event")
# Summary count -> metric name (Count).
METRICS = {
    "applied": "ActionsApplied",
    "in-flight": "ActionsInFlight",
    "deferred": "ActionsDeferred",
    "failed": "ActionsFailed",
    "dry-run": "DryRunDecisions",
    "no-change": "ActionsNoChange",
    "superseded": "DecisionsSuperseded",
    "completed": "InFlightCompleted",
    "skipped": "DecisionsSkipped",
    "missing": "DecisionsMissing",
    "reconciled": "StateReconciled",
    "lost-claims": "ClaimsLost",
    "errors": "ActErrors",
    "publish-errors": "PublishErrors",
    "state-conflicts": "StateConflicts",
}

_services: dict[tuple[ActSettings, object], ActService] = {}
_installed: list[ActService] = []  # a service a test or the local runner put in place of the built one
_lambda_client: list[Any] = []


def _default_client(service: str) -> Any:
    if service != "lambda":
        return lambda_support.client(service)
    if not _lambda_client:
        import boto3  # on first use: boto3 is most of a light handler's cold import
        from botocore.config import Config

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        # botocore's own retries off: the CallGate retries, and every attempt must take a limiter token.
        _lambda_client.append(
            boto3.client("lambda", region_name=region, config=Config(retries={"total_max_attempts": 1}))
        )
    return _lambda_client[0]


def build_service(
    settings: ActSettings,
    clients: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ActService:
    """The act service on boto3 clients: `clients` (by service name) overrides the process-wide ones."""

    def client(name: str) -> Any:
        return clients[name] if clients is not None and name in clients else _default_client(name)

    limiter = TokenBucket(settings.LAMBDA_CALLS_PER_SECOND, burst=1, clock=clock, sleep=sleep)
    report = lambda_support.report_retry
    lambda_gate = CallGate(aws_error_facts, limiter=limiter, sleep=sleep, on_retry=report)
    other_gate = CallGate(aws_error_facts, sleep=sleep, on_retry=report)
    return ActService(
        store=DynamoStateStore(client("dynamodb"), settings.TABLE_NAME),
        publisher=EventPublisher(client("events"), settings.EVENT_BUS_NAME),
        lambda_capacity=LambdaCapacity(client("lambda"), lambda_gate),
        sagemaker=SageMakerCapacity(client("sagemaker"), other_gate),
        autoscaling=ApplicationAutoScaling(client("application-autoscaling"), other_gate, lambda_gate=lambda_gate),
        options=ActOptions.from_settings(settings),
    )


def install_service(service: ActService) -> None:
    """Make every invocation in this process use `service` (an instrumented one, in tests) until `reset`.

    The one way to put a service in place: it does not depend on the settings or the clock at the time
    it is installed, so a harness cannot register it under a key the handler never looks up."""
    _installed[:] = [service]


def installed_service() -> ActService | None:
    """The service `install_service` put in place, if any."""
    return _installed[0] if _installed else None


def reset() -> None:
    """Forget cached services and clients (tests switch between moto contexts)."""
    _services.clear()
    _installed.clear()
    _lambda_client.clear()
    lambda_support.reset()


def _service(settings: ActSettings) -> ActService:
    if _installed:
        return _installed[0]
    # One per process: the limiter's schedule must carry over between warm invocations. Keyed by the
    # clock too, so that a limiter never mixes wall time with a local run's simulated time.
    key = (settings, lambda_support.clock_in_use())
    if key not in _services:
        clock, sleep = lambda_support.pacing()
        _services[key] = build_service(settings, clock=clock, sleep=sleep)
    return _services[key]


def emit_metrics(summary: ActSummary) -> None:
    for key, name in METRICS.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=summary[key])


def run(service: ActService, event: EventBridgeModel, now: int) -> dict[str, Any]:
    """Sweep on the schedule, apply the decision otherwise; the summary is logged and emitted as metrics."""
    if isinstance(event, ScheduledEvent):
        trigger, summary = "sweep", service.sweep(now)
    elif isinstance(event, DecisionMadeEvent):
        trigger, summary = "decision", service.apply_decisions([event.detail], now)
    else:  # parse_event only returns the accepted models
        raise EventError(f"act does not handle {type(event).__name__}")
    emit_metrics(summary)
    result = {"trigger": trigger, "event_id": event.id, "counts": summary.as_dict()}
    logger.info("act finished", extra=result)
    return result


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = ActSettings.from_env()
    parsed = lambda_support.parse_or_reject(event, ACCEPTED)
    service = _service(settings)
    now = lambda_support.now()  # wall time in Lambda; the local demo's simulated clock when it sets one
    return lambda_support.once(settings, "act", parsed.id, lambda: run(service, parsed, now), context)
