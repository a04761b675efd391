"""collect: every minute, store every target's demand from CloudWatch; also store demand pushed by apps.

Triggers: the EventBridge schedule (`Scheduled Event`: collect for the minutes before the event's
time) and `forescale.DemandSample` events (ingest). Each event runs once (Powertools Idempotency on
its id). With `TAG_DISCOVERY` on, every `DISCOVERY_EVERY_S` it also registers new resources tagged
`forescale:managed=true`, in `DEFAULT_MODE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from forescale.adapters.cloudwatch import CloudWatchMetrics
from forescale.adapters.events import EventPublisher
from forescale.adapters.state import ConflictError, DynamoStateStore
from forescale.adapters.tagging import TagDiscovery
from forescale.runtime import lambda_support
from forescale.runtime.collect import CollectService, TargetReading
from forescale.runtime.events import DemandSampleEvent, ScheduledEvent
from forescale.runtime.models import Mode
from forescale.runtime.observability import NAMESPACE, SERVICE, logger, metrics, tracer
from forescale.runtime.settings import CollectSettings

ACCEPTED = ("Scheduled Event", "forescale.DemandSample")
DISCOVERY_EVERY_S = 900  # tag discovery costs a GetResources page per 100 resources and a Describe per endpoint


@dataclass(frozen=True, slots=True)
class CollectClients:
    """The boto3 clients collect uses (tests pass moto-backed ones; Lambda builds them once per process)."""

    dynamodb: Any
    cloudwatch: Any
    events: Any
    tagging: Any
    sagemaker: Any


def default_clients() -> CollectClients:
    return CollectClients(
        dynamodb=lambda_support.client("dynamodb"),
        cloudwatch=lambda_support.client("cloudwatch"),
        events=lambda_support.client("events"),
        tagging=lambda_support.client("resourcegroupstaggingapi"),
        sagemaker=lambda_support.client("sagemaker"),
    )


def build_service(settings: CollectSettings, clients: CollectClients | None = None) -> CollectService:
    c = clients or default_clients()
    return CollectService(
        store=DynamoStateStore(c.dynamodb, settings.TABLE_NAME),
        metrics=CloudWatchMetrics.rotating(c.cloudwatch, settings.DETAIL_EVERY_MINUTES, settings.POLL_EVERY_MINUTES),
        publisher=EventPublisher(c.events, settings.EVENT_BUS_NAME),
        sample_ttl_s=settings.SAMPLE_TTL_DAYS * 86_400,
        metric_delay_s=settings.METRIC_DELAY_S,
        reread_minutes=settings.REREAD_MINUTES,
        poll_every_minutes=settings.POLL_EVERY_MINUTES,
        watch=[n for n in settings.TARGET_METRICS.split(",") if n],
        list_every_s=settings.LIST_TARGETS_EVERY_S,
    )


_warm: dict[tuple[CollectSettings, int], CollectService] = {}


def warm_service(settings: CollectSettings) -> CollectService:
    """One service per process, settings and clients: it remembers what it wrote, so that re-read
    minutes are not rewritten (see forescale.runtime.collect)."""
    clients = default_clients()
    key = (settings, id(clients.dynamodb))  # new clients (lambda_support.reset) start a new service
    if key not in _warm:
        _warm.clear()
        _warm[key] = build_service(settings, clients)
    return _warm[key]


def register_tagged(settings: CollectSettings, service: CollectService, clients: CollectClients) -> list[str]:
    """Register tagged resources that are not targets yet; existing targets are left as configured."""
    drafts, skipped = TagDiscovery(clients.tagging, clients.sagemaker).discover()
    for s in skipped:
        logger.warning("tagged resource skipped", extra={"resource": s.resource, "reason": s.reason})
    registered: list[str] = []
    for draft in drafts:
        if service.store.get_target(draft.name) is not None:
            continue
        try:
            service.store.put_target(draft.model_copy(update={"mode": Mode(settings.DEFAULT_MODE)}))
        except ConflictError:
            continue  # registered meanwhile by the CLI or another run
        registered.append(draft.name)
    return registered


def emit_target_metrics(readings: Sequence[TargetReading]) -> None:
    """The opted-in targets' dashboard metrics (req/s), each with its `target` dimension. A custom metric
    costs $0.30 a month, so these are per target only where asked (infra: `metrics: true`)."""
    for r in readings:
        values = {"DemandRps": r.demand_rps, "ForecastRps": r.forecast_rps, "ForecastUpperRps": r.forecast_upper_rps}
        for name, value in values.items():
            if value is None:
                continue
            with single_metric(
                name=name,
                unit=MetricUnit.CountPerSecond,
                value=value,
                namespace=NAMESPACE,
                default_dimensions={"service": SERVICE},
            ) as metric:
                metric.add_dimension(name="target", value=r.target)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = CollectSettings.from_env()
    parsed = lambda_support.parse_or_reject(event, ACCEPTED)

    def run() -> dict[str, Any]:
        service = warm_service(settings)
        if isinstance(parsed, DemandSampleEvent):
            return {"kind": "ingest"} | service.ingest([parsed.detail]).summary()
        assert isinstance(parsed, ScheduledEvent)  # nosec B101  # parse_or_reject returns only ACCEPTED models; narrows for mypy
        now = int(parsed.time.timestamp())
        registered: list[str] = []
        if settings.TAG_DISCOVERY and now % DISCOVERY_EVERY_S < 60:
            registered = register_tagged(settings, service, default_clients())
            if registered:
                service.forget_listing()
        result = service.collect(now)
        emit_target_metrics(result.readings)
        if result.errors:
            logger.error("CloudWatch reads failed; those targets are reported missing", extra={"errors": result.errors})
        return {"kind": "collect", "registered": registered} | result.summary()

    result = lambda_support.once(settings, "collect", parsed.id, run, context)
    metrics.add_metric(name="SamplesStored", unit=MetricUnit.Count, value=result["samples_stored"])
    if result["kind"] == "collect":
        metrics.add_metric(name="TargetsMissingData", unit=MetricUnit.Count, value=len(result["missing_targets"]))
        metrics.add_metric(name="GetMetricDataCalls", unit=MetricUnit.Count, value=result["get_metric_data_calls"])
    logger.info("collected", extra=result)
    return result
