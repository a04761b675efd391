"""Property tests over whole planning runs: whatever the demand, the planner keeps its promises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from forescale.domain.guardrails import GuardrailSettings
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import POLICY_NAMES, make_policy
from forescale.domain.targets import InstanceType, Target, TargetKind

STEP = 60
FN = Target("fn", TargetKind.LAMBDA_PROVISIONED, duration_s=0.3, min_capacity=2, max_capacity=400)
GPU = Target(
    "gpu",
    TargetKind.SAGEMAKER_INSTANCE_TYPE,
    min_capacity=1,
    max_capacity=40,
    catalog=(InstanceType("ml.g5.xlarge", 1.4, 10.0), InstanceType("ml.g4dn.xlarge", 0.74, 4.0)),
)

rates = st.lists(
    st.one_of(st.none(), st.floats(min_value=0, max_value=2000, allow_nan=False)), min_size=1, max_size=120
)


@settings(max_examples=300, deadline=None)
@given(
    demand=rates,
    policy=st.sampled_from(POLICY_NAMES),
    target=st.sampled_from([FN, GPU]),
    max_step_up=st.one_of(st.none(), st.integers(min_value=1, max_value=50)),
)
def test_given_any_demand_when_planning_then_bounds_hold_and_missing_data_never_scales_in(
    demand: list[float | None], policy: str, target: Target, max_step_up: int | None
) -> None:
    settings_ = GuardrailSettings(
        min_capacity=target.min_capacity, max_capacity=target.max_capacity, max_step_up=max_step_up
    )
    planner = Planner(target, make_policy(policy, target, STEP), settings_)
    for i, rate in enumerate(demand):
        planner.observe(i * STEP, rate)
        before = planner.requested
        d = planner.decide(StepInput(now=(i + 1) * STEP))
        assert target.min_capacity <= d.capacity <= target.max_capacity
        if rate is None:
            assert d.capacity >= before, d.reason
        if max_step_up is not None and "in-flight" not in d.reason:
            assert d.capacity - before <= max(max_step_up, target.min_capacity - before)
        assert d.reason  # every decision is explained
        assert d.capacity == planner.requested
