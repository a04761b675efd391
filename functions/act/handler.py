"""act's Lambda: applies `forescale.DecisionMade` decisions and, on its schedule, sweeps the open-work
index (deferred decisions, expired leases, in-flight operations, what a timed-out run left). The logic
is `forescale.runtime.act`.

Triggers: an SQS batch whose records' bodies are EventBridge events (EventBridge → act's queue → act,
as the stack deploys it): its DecisionMade events are applied together, largest expected spill first,
and a schedule event among them runs the sweep after them; a record that does not parse is reported
in `batchItemFailures`, so SQS retries it and then moves it to the queue's DLQ. One EventBridge event
(a DecisionMade, or the schedule) invoked directly is handled too. An invocation stops starting new
decisions 10 s before its timeout: what it did not reach stays in the open-work index for the next sweep.

The Lambda rate limiter lives in this process, and AWS's Lambda control-plane rate is per account:
the stack caps act's concurrency (reserved concurrency = the queue's maximum concurrency) and sets
LAMBDA_CALLS_PER_SECOND to the account's rate divided by that cap.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from forescale.adapters.autoscaling import ApplicationAutoScaling
from forescale.adapters.events import EventPublisher
from forescale.adapters.lambda_capacity import LambdaCapacity, aws_error_facts
from forescale.adapters.sagemaker_capacity import SageMakerCapacity
from forescale.adapters.state import DynamoStateStore
from forescale.domain.ratelimit import CallGate, TokenBucket
from forescale.runtime import lambda_support
from forescale.runtime.act import ActOptions, ActService, ActSummary
from forescale.runtime.events import DecisionMadeEvent, EventError, ScheduledEvent, parse_event
from forescale.runtime.models import DecisionMadeDetail
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
    "backing-off": "ActionsBackingOff",
    "left-queued": "DecisionsLeftQueued",
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


def run(
    service: ActService, event: EventBridgeModel, now: int, time_left_s: Callable[[], float] | None = None
) -> dict[str, Any]:
    """Sweep on the schedule, apply the decision otherwise; the summary is logged and emitted as metrics."""
    if isinstance(event, ScheduledEvent):
        trigger, summary = "sweep", service.sweep(now, time_left_s)
    elif isinstance(event, DecisionMadeEvent):
        trigger, summary = "decision", service.apply_decisions([event.detail], now, time_left_s)
    else:  # parse_event only returns the accepted models
        raise EventError(f"act does not handle {type(event).__name__}")
    emit_metrics(summary)
    result = {"trigger": trigger, "event_id": event.id, "counts": summary.as_dict()}
    logger.info("act finished", extra=result)
    return result


def run_batch(
    service: ActService, event: dict[str, Any], context: Any, now: int, time_left_s: Callable[[], float] | None
) -> dict[str, Any]:
    """An SQS batch of DecisionMade events (applied together) and schedule events (one sweep after
    them); unparseable records go back to SQS."""
    details: list[DecisionMadeDetail] = []
    schedules: list[str] = []

    def parse_record(record: SQSRecord) -> None:
        parsed = parse_event(json.loads(record.body), ACCEPTED)
        if isinstance(parsed, DecisionMadeEvent):
            details.append(parsed.detail)
        else:
            schedules.append(parsed.id)

    processor = BatchProcessor(event_type=EventType.SQS)
    response = process_partial_response(event=event, record_handler=parse_record, processor=processor, context=context)
    failures = response.get("batchItemFailures", [])
    if failures:
        logger.error("invalid records in the batch", extra={"failed": [f["itemIdentifier"] for f in failures]})
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=len(failures))
    if details:
        summary = service.apply_decisions(details, now, time_left_s)
        emit_metrics(summary)
        logger.info("act finished", extra={"trigger": "batch", "records": len(details), "counts": summary.as_dict()})
    if schedules:  # the sweep once, however many schedule events the batch gathered
        summary = service.sweep(now, time_left_s)
        emit_metrics(summary)
        logger.info("act finished", extra={"trigger": "sweep", "event_ids": schedules, "counts": summary.as_dict()})
    return dict(response)


def _time_left(context: Any) -> Callable[[], float] | None:
    """Seconds left in this invocation; None on a simulated clock (the limiter's waits take no wall time)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if lambda_support.clock_in_use() is not None or not callable(remaining):
        return None
    return lambda: float(remaining()) / 1000.0


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = ActSettings.from_env()
    now = lambda_support.now()  # wall time in Lambda; the local demo's simulated clock when it sets one
    if isinstance(event, dict) and "Records" in event:  # EventBridge → SQS → act: the claims keep it idempotent
        return run_batch(_service(settings), event, context, now, _time_left(context))
    parsed = lambda_support.parse_or_reject(event, ACCEPTED)
    service = _service(settings)
    return lambda_support.once(
        settings, "act", parsed.id, lambda: run(service, parsed, now, _time_left(context)), context
    )
