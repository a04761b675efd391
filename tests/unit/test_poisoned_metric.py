"""A poisoned metric (issue 15, item 6): one huge sample must be cheap by default.

Given a GPU endpoint registered with the defaults (`TargetConfig`), running at 4 instances on
steady demand, when one `DemandSample` says 1e12 req/s, then the planner neither believes it (one
minute is not confirmed) nor, if a second minute repeats it, goes past the scale-out bounds; react
does not act on it; and a real surge (50× in a minute) is still followed at once.
"""

from __future__ import annotations

import pytest

from forescale.domain.guardrails import GuardrailSettings
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import make_policy
from forescale.domain.targets import DEFAULT_MAX_CAPACITY, Target, TargetKind
from forescale.replay.trace import TraceTarget
from forescale.runtime.models import InstanceTypeSpec, TargetConfig

STEP = 60
T0 = 1_700_000_400  # a whole hour
STEADY_RPS = 210.0  # 4 × ml.g5.xlarge at 60 req/s each (3.5 needed)
POISON = 1e12


def endpoint() -> TargetConfig:
    """A SageMaker endpoint as `forescale targets add` registers it, every guardrail at its default."""
    return TargetConfig(
        name="llm",
        kind=TargetKind.SAGEMAKER_INSTANCE_COUNT,
        endpoint_name="llm",
        variant_name="AllTraffic",
        catalog=(InstanceTypeSpec(name="ml.g5.xlarge", price_per_hour=1.408, capacity_rps=60),),
        instance_type="ml.g5.xlarge",
        min_capacity=1,
    )


def steady_planner(minutes: int = 180, policy: str = "predictive") -> tuple[Planner, int, int]:
    """A planner of the default endpoint after `minutes` of steady demand: it, the next minute, and the
    largest capacity it decided."""
    cfg = endpoint()
    planner = Planner(cfg.to_target(), make_policy(policy, cfg.to_target(), STEP), cfg.guardrail_settings())
    peak = 0
    for m in range(minutes):
        planner.observe(T0 + m * STEP, STEADY_RPS)
        peak = max(peak, planner.decide(StepInput(T0 + (m + 1) * STEP)).capacity)
    return planner, minutes, peak


def feed(planner: Planner, minute: int, rate: float) -> int:
    planner.observe(T0 + minute * STEP, rate)
    return planner.decide(StepInput(T0 + (minute + 1) * STEP)).capacity


@pytest.mark.parametrize("policy", ["predictive", "reactive"])
def test_given_one_poisoned_minute_when_planned_then_capacity_holds_and_the_reason_says_why(policy: str) -> None:
    planner, m, _ = steady_planner(policy=policy)
    steady = planner.requested
    assert 4 <= steady <= 5

    planner.observe(T0 + m * STEP, POISON)
    d = planner.decide(StepInput(T0 + (m + 1) * STEP))

    assert d.capacity == steady
    assert d.reason.startswith("spike-confirmation: 1e+12 req/s is over 1000× the recent peak")
    # the next, normal minute drops it: the spike never entered the policy's history
    assert feed(planner, m + 1, STEADY_RPS) == steady
    assert planner.policy.history.peak(len(planner.policy.history)) == STEADY_RPS


def test_given_two_poisoned_minutes_when_planned_then_the_scale_out_bounds_cap_the_cost() -> None:
    planner, m, peak = steady_planner()
    steady = planner.requested
    feed(planner, m, POISON)
    planner.observe(T0 + (m + 1) * STEP, POISON)
    d = planner.decide(StepInput(T0 + (m + 2) * STEP))

    # confirmed, so believed: but at most 10× the current capacity, not the default maximum
    assert d.capacity == min(10 * steady, 10 * peak) < DEFAULT_MAX_CAPACITY
    assert "scale-out-step" in d.shaped_by
    assert f"scale-out-step: {steady}→" in d.reason
    # and at most 10× the peak of an hour ago for as long as the poison lasts
    later = []
    for k in range(2, 52):
        planner.observe(T0 + (m + k) * STEP, POISON)
        later.append(planner.decide(StepInput(T0 + (m + k + 1) * STEP)))
    assert max(x.capacity for x in later) == 10 * peak
    assert later[-1].shaped_by[-1] == "scale-out-hour"
    assert f"10× the peak an hour ago {peak}" in later[-1].reason


def test_given_a_poisoned_rate_when_react_is_told_then_it_holds() -> None:
    planner, m, _ = steady_planner()
    steady = planner.requested
    d = planner.react(StepInput(T0 + m * STEP + 5), POISON, "demand 1e+12 req/s beat the forecast's upper band")
    assert d.capacity == steady
    assert "spike-confirmation" in d.reason
    assert not d.refit


@pytest.mark.parametrize("surge", [50.0, 500.0])
def test_given_a_real_surge_below_1000x_when_planned_then_it_is_followed_at_once(surge: float) -> None:
    planner, m, _ = steady_planner()
    steady = planner.requested
    capacity = feed(planner, m, STEADY_RPS * surge)
    # 50× is 10,500 req/s (175 instances): believed at once, then held to 10× by the per-step bound
    assert capacity == 10 * steady
    assert planner.policy.history.last == STEADY_RPS * surge
    assert "spike-confirmation" not in planner.decide(StepInput(T0 + (m + 1) * STEP + 30)).reason


def test_given_an_operator_who_widens_the_bounds_then_a_confirmed_surge_goes_further() -> None:
    cfg = endpoint()
    wide = GuardrailSettings(
        min_capacity=1, max_capacity=cfg.max_capacity, scale_out_step_factor=100.0, scale_out_hour_factor=None
    )
    target: Target = cfg.to_target()
    planner = Planner(target, make_policy("reactive", target, STEP), wide)
    for m in range(10):
        planner.observe(T0 + m * STEP, STEADY_RPS)
        planner.decide(StepInput(T0 + (m + 1) * STEP))
    assert feed(planner, 10, STEADY_RPS * 50) > 40


def test_one_default_maximum_for_configs_the_domain_and_guardrails() -> None:
    fn = TargetConfig(name="f", kind=TargetKind.LAMBDA_RESERVED, function_name="f")
    assert fn.max_capacity == DEFAULT_MAX_CAPACITY
    assert Target("f", TargetKind.LAMBDA_RESERVED).max_capacity == DEFAULT_MAX_CAPACITY
    assert GuardrailSettings().max_capacity == DEFAULT_MAX_CAPACITY
    spec = {"kind": "sagemaker", "instance_types": {"ml.g5.xlarge": {"price_per_hour": 1.408, "capacity_rps": 8}}}
    assert TraceTarget("e", (1.0,), spec).to_target().max_capacity == DEFAULT_MAX_CAPACITY
    assert fn.guardrail_settings() == GuardrailSettings(stabilisation_window_s=300)
