"""plan: on SamplesCollected (every minute) and ForecastReady, decide each target's capacity."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from forescale.runtime import lambda_support
from forescale.runtime.events import ForecastReadyEvent, SamplesCollectedEvent
from forescale.runtime.observability import logger, metrics, tracer
from forescale.runtime.plan import PlanService
from forescale.runtime.settings import PlanSettings

ACCEPTED = ("forescale.SamplesCollected", "forescale.ForecastReady")


def build_service(settings: PlanSettings) -> PlanService:
    return PlanService(
        lambda_support.state_store(settings),
        lambda_support.publisher(settings),
        settings.HISTORY_WARMUP_S,
        forecasts=lambda_support.forecast_cache(settings),
        planners=lambda_support.planner_cache(settings),
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = PlanSettings.from_env()
    parsed = lambda_support.parse_or_reject(event, ACCEPTED)

    def run() -> dict[str, Any]:
        service = build_service(settings)
        if isinstance(parsed, SamplesCollectedEvent):
            # The collected minute has ended: decide the step that starts after it.
            summary = service.plan(parsed.detail.targets, parsed.detail.period_start + 60, "samples")
        else:
            assert isinstance(parsed, ForecastReadyEvent)  # nosec B101  # parse_or_reject returns only the 2 ACCEPTED models
            summary = service.plan(parsed.detail.targets, parsed.detail.issued_at, "forecast")
        if summary.unknown_targets:
            logger.warning("unknown targets skipped", extra={"targets": summary.unknown_targets})
        return {
            "decided": summary.decided,
            "changed": summary.changed,
            "duplicates": summary.duplicates,
            "conflicts": summary.conflicts,
            "unknown_targets": summary.unknown_targets,
            "reasserted": summary.reasserted,
            "decisions": [r.decision_id for r in summary.records],
            "failed": summary.failed,
            "bad_samples": summary.bad_samples,
            "snapshot_errors": summary.snapshot_errors,
            "checkpoints": summary.checkpoints,
            "restored": summary.restored,
        }

    result = lambda_support.once(settings, "plan", parsed.id, run, context)
    metrics.add_metric(name="Decisions", unit=MetricUnit.Count, value=result["decided"])
    metrics.add_metric(name="CapacityChanges", unit=MetricUnit.Count, value=result["changed"])
    if result["conflicts"]:  # another run (a redelivery, a race) wrote first: its decision stands
        metrics.add_metric(name="PlanConflicts", unit=MetricUnit.Count, value=result["conflicts"])
    if result.get("reasserted"):  # a plan AWS did not have (not applied, or changed behind forescale's back)
        logger.warning("plan not in effect; asserted again", extra={"targets": result["reasserted"]})
        metrics.add_metric(name="PlansReasserted", unit=MetricUnit.Count, value=len(result["reasserted"]))
    # Each one is logged by name where it happened; these count them for alarms.
    for metric, key in (("PlanErrors", "failed"), ("BadSamples", "bad_samples"), ("SnapshotErrors", "snapshot_errors")):
        if result.get(key):
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=len(result[key]))
    logger.info("planned", extra=result)
    return result
