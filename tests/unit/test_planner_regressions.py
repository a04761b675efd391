"""Regressions found in review: stabilisation with pre-scaling, guardrails across a type switch,
tie-breaking of the starting instance type; found by the property tests: huge and infinite rates."""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import pytest

from forescale.domain.decision import Recommendation
from forescale.domain.forecast import Forecast
from forescale.domain.guardrails import GuardrailSettings
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import Policy, make_policy
from forescale.domain.targets import InstanceType, Target, TargetKind

FN = Target("f", TargetKind.LAMBDA_PROVISIONED)
SMALL, BIG = InstanceType("ml.small", 1.0, 10.0), InstanceType("ml.big", 3.2, 40.0)
GPU = Target("e", TargetKind.SAGEMAKER_INSTANCE_TYPE, catalog=(SMALL, BIG), min_capacity=1, instance_type="ml.small")


class Scripted(Policy):
    """Recommends from a script; pre-scale always suggests a low value (which must not hold anything)."""

    name = "scripted"

    def __init__(self, target: Target, step_s: int, script: list[Recommendation], prescale: bool = False) -> None:
        super().__init__(target, step_s)
        self.script = script
        self.prescale_active = prescale

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        return self.script.pop(0)

    def prescale_recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        return Recommendation(10, "pre-scale")


def test_given_a_stabilisation_window_and_prescaling_when_demand_drops_then_it_still_scales_in() -> None:
    script = [Recommendation(100, "up")] + [Recommendation(10, "down") for _ in range(9)]
    planner = Planner(FN, Scripted(FN, 600, script, prescale=True), GuardrailSettings(stabilisation_window_s=3000))
    caps = []
    for i in range(10):
        planner.observe(i * 600 - 600, 1.0)
        caps.append(planner.decide(StepInput(i * 600)).capacity)
        planner.prescale(StepInput(i * 600 + 480))
    assert caps[0] == 100
    assert caps[-1] == 10  # the window (5 steps) has passed; pre-scale holds never refreshed it


def test_given_a_cooldown_when_a_type_switch_is_recommended_then_the_count_is_not_read_in_the_wrong_units() -> None:
    script = [Recommendation(10, "up", 100.0), Recommendation(3, "right-size", 100.0, instance_type="ml.big")]
    planner = Planner(
        GPU, Scripted(GPU, 60, script), GuardrailSettings(max_capacity=100, scale_in_cooldown_s=300), initial_capacity=1
    )
    planner.observe(-60, 50.0)
    planner.decide(StepInput(0))
    planner.observe(0, 50.0)
    d = planner.decide(StepInput(60))
    # The cooldown held the count, so the switch is deferred: 10 small instances, not 10 big ones.
    assert planner.requested_type == "ml.small" and d.capacity == 10
    assert "deferred" in d.reason


def test_given_types_tied_on_price_per_rps_when_choosing_the_start_then_catalog_order_wins() -> None:
    z, a = InstanceType("z.big", 4.0, 4.0), InstanceType("a.small", 1.0, 1.0)
    target = Target("t", TargetKind.SAGEMAKER_INSTANCE_TYPE, catalog=(z, a), min_capacity=1)
    assert target.cheapest_type().name == "z.big"


# ------------------------------------------------------------------- huge and infinite rates (property tests)

# Each raised before the fix: +inf passed DemandHistory's `>= 0` and then sizing (ValueError); a finite 1e308
# overflowed to inf or NaN inside the policies (× headroom, the blend expert's sum, log(0) when scoring).
# Observed rates above MAX_RATE_RPS (1e12) are now read as it, and sizing reads an overflowed demand as the
# most capacity there is: the decision is the ceiling, never an exception.
HUGE = sys.float_info.max
FN300 = replace(FN, max_capacity=300)
GPU30 = replace(GPU, max_capacity=30)


@pytest.mark.parametrize(
    ("policy", "target", "demand", "react_rate", "expected"),
    [
        pytest.param("predictive", FN300, [math.inf], None, 300, id="given-an-infinite-rate-then-the-ceiling"),
        pytest.param("predictive", FN300, [HUGE], None, 300, id="given-the-largest-float-then-no-overflow-to-inf"),
        # Calm capacity holds the scale-in for `hold_steps` (3) steps; the drop is still scored (no log(0)).
        pytest.param(
            "predictive",
            FN300,
            [8.98846567431158e307, 0.0],
            None,
            300,
            id="given-a-huge-rate-then-a-drop-then-no-log-0",
        ),
        pytest.param(
            "predictive",
            FN300,
            [8.98846567431158e307, 0.0, 0.0, 0.0],
            None,
            0,
            id="given-a-huge-rate-then-three-steps-of-nothing-then-scaled-in",
        ),
        pytest.param("reactive", GPU30, [HUGE], None, 30, id="given-the-largest-float-times-headroom-then-ceiling"),
        pytest.param("static", FN300, [HUGE, 1.0], None, 300, id="given-a-huge-peak-kept-by-static-then-the-ceiling"),
        pytest.param("seasonal-naive", FN300, [HUGE], None, 300, id="given-the-largest-float-times-1.5-then-ceiling"),
        # An implausible rate (over 1000× the recent peak) is not acted on by react: held, not an exception.
        pytest.param("reactive", FN300, [5.0], math.inf, None, id="given-an-alarm-with-an-infinite-rate-then-held"),
        pytest.param("target-tracking", GPU30, [5.0], HUGE, None, id="given-an-alarm-with-the-largest-float-then-held"),
    ],
)
def test_given_a_huge_or_infinite_rate_when_planning_then_a_bounded_decision_not_an_exception(
    policy: str, target: Target, demand: list[float], react_rate: float | None, expected: int | None
) -> None:
    # The scale-out bounds off: this is about overflow, not about how fast capacity may grow.
    settings = GuardrailSettings(
        min_capacity=target.min_capacity,
        max_capacity=target.max_capacity,
        scale_out_step_factor=None,
        scale_out_hour_factor=None,
    )
    step = 300  # longer than Lambda's lead: predictive scores each step as soon as it ends
    planner = Planner(target, make_policy(policy, target, step), settings)
    for i, rate in enumerate(demand):
        planner.observe(i * step, rate)
        d = planner.decide(StepInput((i + 1) * step))
    before = d.capacity
    if react_rate is not None:
        d = planner.react(StepInput(len(demand) * step + 1), react_rate, "alarm")
    assert d.capacity == (before if expected is None else expected)
    if expected is None:
        assert "spike-confirmation" in d.reason


def test_given_a_forecast_of_the_largest_float_when_right_sizing_then_pricing_does_not_overflow() -> None:
    # Before: a day of 1.8e308 req/s priced as ints of instances overflowed float (OverflowError).
    step = 3600
    planner = Planner(GPU30, make_policy("predictive", GPU30, step), GuardrailSettings(min_capacity=1, max_capacity=30))
    for i in range(25):  # right-sizing starts after a day of history
        planner.observe(i * step, 5.0)
    now = 25 * step
    path = (HUGE,) * 48
    planner.use_forecast(Forecast("e", now, now - step, step, {0.5: path, 0.99: path}, "exploded"))
    d = planner.decide(StepInput(now))
    assert 1 <= d.capacity <= 30
