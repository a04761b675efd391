"""forecast: every 5 minutes (per shard), refit the targets that are due and store their forecasts.

The only function that imports pandas and statsforecast (a container image; see the Dockerfile).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field, ValidationError

from forescale.domain.forecast import Forecaster
from forescale.runtime import lambda_support
from forescale.runtime.events import EventError, parse_event
from forescale.runtime.forecast import ForecastService
from forescale.runtime.observability import logger, metrics, tracer
from forescale.runtime.settings import ForecastSettings

NAMES_IN_RESULT = 20  # target names a result carries: a Map item's output is bounded


class ShardInput(BaseModel):
    """The fan-out's input (a Step Functions Map item): which shard of the targets to forecast, and when."""

    shard: int = Field(ge=0)
    shard_count: int = Field(ge=1, le=10_000)
    time: int | None = None


def _statsforecast() -> Forecaster:
    from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter

    return StatsForecastAdapter()


def build_service(settings: ForecastSettings) -> ForecastService:
    return ForecastService(
        lambda_support.state_store(settings),
        lambda_support.publisher(settings),
        _statsforecast,
        history_days=settings.HISTORY_DAYS,
        horizon_s=settings.HORIZON_S,
        refit_spread_s=settings.REFIT_SPREAD_S,
        max_refits=settings.MAX_REFITS_PER_RUN,
        list_every_s=settings.LIST_TARGETS_EVERY_S,
    )


_warm: dict[tuple[ForecastSettings, int], ForecastService] = {}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = ForecastSettings.from_env()
    try:
        if isinstance(event, dict) and "shard" in event:
            shard = ShardInput.model_validate(event)
            now, event_id = shard.time, f"shard-{shard.shard}-of-{shard.shard_count}-{shard.time}"
        else:
            parsed = parse_event(event, ("Scheduled Event",))
            shard = ShardInput(shard=0, shard_count=settings.SHARD_COUNT)
            now, event_id = int(parsed.time.timestamp()), parsed.id
        if shard.shard >= shard.shard_count:
            raise EventError(f"shard {shard.shard} is outside 0..{shard.shard_count - 1}")
    except (EventError, ValidationError) as exc:
        logger.error("invalid event", extra={"error": str(exc)})
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        raise
    if now is None:
        raise EventError("a shard input needs `time` (epoch seconds) so that a retry forecasts the same moment")

    def run() -> dict[str, Any]:
        # One service per warm process: its adapter keeps each target's fitted state between cycles, so
        # a cycle between daily refits only updates (numpy), as replay's single adapter does.
        key = (settings, id(lambda_support.client("dynamodb")))  # new clients (a reset) → a new service
        if key not in _warm:
            _warm[key] = build_service(settings)
        summary = _warm[key].run(
            now, shard.shard, shard.shard_count, deadline=lambda: context.get_remaining_time_in_millis() / 1000
        )
        # Counts, and a few names: this is the Step Functions Map item's output and the idempotency
        # record, both bounded (256 KB, 400 KB) whatever the shard's size; each forecast names its
        # model in its stored item and in ForecastReady.
        return {
            "shard": shard.shard,
            "considered": summary.considered,
            "refit": len(summary.refit),
            "refit_on_drift": len(summary.on_drift),
            "deferred": len(summary.deferred),
            "too_little_history": len(summary.too_little_history),
            "no_forecast": summary.no_forecast[:NAMES_IN_RESULT],
            "models": dict(Counter(summary.models.values())),  # targets per model
            "events": summary.events,
        }

    result = lambda_support.once(settings, "forecast", event_id, run, context)
    metrics.add_metric(name="Refits", unit=MetricUnit.Count, value=result["refit"] + result["refit_on_drift"])
    logger.info("forecast cycle", extra=result)
    return result
