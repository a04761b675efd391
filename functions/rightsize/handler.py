"""rightsize: hourly, price each SageMaker instance-type target's coming day on every catalog type."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from forescale.runtime import lambda_support
from forescale.runtime.observability import logger, metrics, tracer
from forescale.runtime.rightsize import RightsizeService
from forescale.runtime.settings import RightsizeSettings


def build_service(settings: RightsizeSettings) -> RightsizeService:
    return RightsizeService(lambda_support.state_store(settings), settings.HORIZON_S)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = RightsizeSettings.from_env()
    parsed = lambda_support.parse_or_reject(event, ("Scheduled Event",))
    summary = build_service(settings).run(int(parsed.time.timestamp()))
    proposals = {
        name: {
            "current": c.current,
            "best": c.best,
            "switch": c.switch,
            "saving_per_hour": round(c.saving_per_hour, 4),
            "reason": c.reason,
        }
        for name, c in summary.proposals.items()
    }
    for name, c in summary.proposals.items():
        metrics.add_metadata(key=f"rightsize.{name}", value=proposals[name])
        if c.switch:
            logger.info("type switch proposed", extra={"target": name, **proposals[name]})
    metrics.add_metric(
        name="RightsizeProposals", unit=MetricUnit.Count, value=sum(c.switch for c in summary.proposals.values())
    )
    return {"proposals": proposals, "skipped": summary.skipped}
