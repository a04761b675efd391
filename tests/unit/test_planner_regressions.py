"""Regressions found in review: stabilisation with pre-scaling, guardrails across a type switch,
tie-breaking of the starting instance type."""

from __future__ import annotations

from forescale.domain.decision import Recommendation
from forescale.domain.guardrails import GuardrailSettings
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import Policy
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
