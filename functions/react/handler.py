"""react: on a forescale alarm going to ALARM, or DemandAboveForecast from collect, scale out at once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from forescale.runtime import lambda_support
from forescale.runtime.events import AlarmStateChangeEvent, DemandAboveForecastEvent
from forescale.runtime.observability import logger, metrics, tracer
from forescale.runtime.react import ReactService
from forescale.runtime.settings import ReactSettings

ACCEPTED = ("CloudWatch Alarm State Change", "forescale.DemandAboveForecast")


def build_service(settings: ReactSettings) -> ReactService:
    return ReactService(lambda_support.state_store(settings), lambda_support.publisher(settings), settings.ALARM_PREFIX)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = ReactSettings.from_env()
    parsed = lambda_support.parse_or_reject(event, ACCEPTED)

    def run() -> dict[str, Any]:
        service = build_service(settings)
        if isinstance(parsed, AlarmStateChangeEvent):
            d = parsed.detail
            summary = service.on_alarm(d.alarm_name, d.state.value, int(parsed.time.timestamp()), d.state.reason)
        else:
            assert isinstance(parsed, DemandAboveForecastEvent)  # nosec B101  # parse_or_reject returns only the 2 ACCEPTED models
            summary = service.on_demand_above([parsed.detail])
        return {"scaled_out": summary.scaled_out, "unchanged": summary.unchanged, "ignored": summary.ignored}

    result = lambda_support.once(settings, "react", parsed.id, run, context)
    metrics.add_metric(name="ReactScaleOuts", unit=MetricUnit.Count, value=len(result["scaled_out"]))
    logger.info("reacted", extra=result)
    return result
