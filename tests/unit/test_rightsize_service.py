"""rightsize proposes a type switch only when the coming day's saving beats the blue/green switch cost."""

from __future__ import annotations

import pytest

from forescale.adapters.state import InMemoryStateStore
from forescale.domain.forecast import Forecast
from forescale.runtime.models import InstanceTypeSpec, TargetConfig
from forescale.runtime.rightsize import RightsizeService

NOW = 1_795_392_000
CATALOG = (
    InstanceTypeSpec(name="ml.g5.xlarge", price_per_hour=1.41, capacity_rps=40),
    InstanceTypeSpec(name="ml.g6.xlarge", price_per_hour=0.80, capacity_rps=30),
)


def store_with(rate_rps: float, current: str = "ml.g5.xlarge", minutes: int = 1440) -> InMemoryStateStore:
    store = InMemoryStateStore()
    store.put_target(
        TargetConfig(
            name="ranker",
            kind="sagemaker-instance-type",
            endpoint_name="ranker",  # type: ignore[arg-type]
            variant_name="AllTraffic",
            catalog=CATALOG,
            instance_type=current,
            min_capacity=1,
        )
    )
    path = (rate_rps,) * minutes
    store.put_forecast(Forecast("ranker", NOW, NOW, 60, {0.5: path, 0.99: path}, "test"))
    return store


@pytest.mark.parametrize(
    ("rate", "current", "switch", "best"),
    [
        (100.0, "ml.g5.xlarge", True, "ml.g6.xlarge"),  # 3 × 1.41 = 4.23 vs 4 × 0.80 = 3.20 $/h
        (100.0, "ml.g6.xlarge", False, "ml.g6.xlarge"),  # already the cheapest
        (35.0, "ml.g5.xlarge", False, "ml.g5.xlarge"),  # 1 × 1.41 vs 2 × 0.80: g5 is cheaper
    ],
)
def test_given_a_day_of_forecast_then_switch_only_when_it_pays(
    rate: float, current: str, switch: bool, best: str
) -> None:
    summary = RightsizeService(store_with(rate, current)).run(NOW)
    choice = summary.proposals["ranker"]
    assert (choice.switch, choice.best) == (switch, best)
    assert choice.reason.startswith("right-size:")


def test_given_a_short_horizon_then_a_small_saving_does_not_pay_for_the_switch() -> None:
    # Saving $1.03/h for 5 minutes is $0.09; the switch bills the new fleet ($3.20/h) for 10 minutes: $0.53.
    summary = RightsizeService(store_with(100.0), horizon_s=300).run(NOW)
    assert summary.proposals["ranker"].switch is False


def test_given_no_forecast_then_it_is_skipped_with_the_reason() -> None:
    store = store_with(100.0)
    store.forecasts.clear()
    summary = RightsizeService(store).run(NOW)
    assert summary.proposals == {} and "no current forecast" in summary.skipped["ranker"]
