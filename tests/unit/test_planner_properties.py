"""Property tests over whole planning runs: whatever the demand, forecasts and settings, the planner keeps its promises.

The five promises checked on every decision of every run (decide, react and pre-scale):
1. within the floor and ceiling (min/max capacity; the account ceiling outranks min: AWS cannot grant it);
2. the account keeps >= 100 unreserved concurrency (Lambda);
3. provisioned concurrency <= the function's reserved concurrency (Lambda provisioned);
4. no step larger than max_step_up / max_step_down, except where a hard limit or the budget forces it;
5. no scale-in inside the stabilisation window after a scale-out, with the same exceptions.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from forescale.domain.decision import Decision
from forescale.domain.forecast import Forecast
from forescale.domain.guardrails import LAMBDA_MIN_UNRESERVED, AccountHeadroom, GuardrailSettings
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import POLICY_NAMES, make_policy
from forescale.domain.targets import InstanceType, Target, TargetKind
from tests.tiers import examples

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


@settings(max_examples=examples(1000), deadline=None)
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


# ------------------------------------------------------------------ arbitrary forecasts, histories and settings

MAX_FLOAT = sys.float_info.max
NOT_A_RATE = (math.nan, math.inf, -math.inf, -1.0, -1e-300)  # what a broken metric or model could produce
HUGE = (1e9, 1e15, 1e300, MAX_FLOAT)  # finite, valid, absurd
CATALOG = (
    InstanceType("ml.g5.xlarge", 1.4, 10.0),
    InstanceType("ml.g4dn.xlarge", 0.74, 4.0),
    InstanceType("ml.g5.12xlarge", 7.1, 60.0),
)


def observable(v: float | None) -> bool:
    """What a planner accepts as a sample: missing, or a number >= 0 (+inf reads as the most demand there is)."""
    return v is None or v >= 0


def forecastable(v: float) -> bool:
    """What a Forecast accepts as a rate: finite and >= 0."""
    return math.isfinite(v) and v >= 0


SCALES = (5.0, 50.0, 500.0, 3_000.0)  # per run: low demand makes small instance types pay, high demand big ones
ordinary = {scale: st.floats(0, scale) | st.sampled_from([0.0, 5e-324, 0.5]) for scale in SCALES}
not_a_rate = st.sampled_from(NOT_A_RATE) | st.floats()
huge = st.sampled_from(HUGE) | st.floats(min_value=1e6)
kinds = st.integers(0, 39)
missing = st.integers(0, 19).map(lambda k: k < 3)


def rate(draw: st.DrawFn, scale: float) -> float:
    """Mostly ordinary rates; now and then a huge one, or something that is no rate at all."""
    kind = draw(kinds)
    if kind >= 37:
        return draw(not_a_rate)
    if kind == 36:
        return draw(huge)  # rare: on Lambda each costs a full Erlang B search (~15 ms)
    return draw(ordinary[scale])


def sample(draw: st.DrawFn, scale: float) -> float | None:
    """An observed sample: a rate, or None when the metric is missing."""
    return None if draw(missing) else rate(draw, scale)


@st.composite
def targets(draw: st.DrawFn) -> Target:
    kind = draw(st.sampled_from(list(TargetKind)))
    lo = draw(st.integers(0, 30))
    hi = lo + draw(st.integers(0, 3_000) if kind.is_lambda else st.integers(0, 60))
    if kind.is_lambda:
        return Target(
            "fn",
            kind,
            min_capacity=lo,
            max_capacity=hi,
            duration_s=draw(st.sampled_from([0.005, 0.1, 0.3, 2.0])),
            memory_mb=draw(st.sampled_from([128, 1024, 10_240])),
            slo_miss=draw(st.sampled_from([0.001, 0.01, 0.1])),
        )
    catalog = tuple(draw(st.lists(st.sampled_from(CATALOG), min_size=1, max_size=3, unique=True)))
    return Target("ep", kind, min_capacity=lo, max_capacity=hi, catalog=catalog)


@st.composite
def guardrails_for(draw: st.DrawFn, target: Target) -> GuardrailSettings:
    """Valid settings, with the target's own bounds (as the runtime builds them from one config)."""
    return GuardrailSettings(
        min_capacity=target.min_capacity,
        max_capacity=target.max_capacity,
        max_step_up=draw(st.none() | st.integers(1, 100)),
        max_step_down=draw(st.none() | st.integers(1, 100)),
        stabilisation_window_s=draw(st.sampled_from([0, 60, 300, 900, 7200]) | st.integers(0, 10_000)),
        scale_out_cooldown_s=draw(st.sampled_from([0, 60, 300]) | st.integers(0, 10_000)),
        scale_in_cooldown_s=draw(st.sampled_from([0, 60, 300]) | st.integers(0, 10_000)),
        dead_band=draw(st.sampled_from([0.0, 0.1]) | st.floats(0.0, 1.0, exclude_max=True)),
        budget_per_hour=draw(st.none() | st.sampled_from([0.0, 1.0, 50.0, math.inf]) | st.floats(min_value=0.0)),
    )


@st.composite
def accounts(draw: st.DrawFn, target: Target) -> AccountHeadroom:
    """A consistent account snapshot; a provisioned target's function may have reserved concurrency."""
    limit = draw(st.sampled_from([0, 100, 1_000, 3_000]) | st.integers(0, 20_000))
    reserved = draw(st.none() | st.integers(0, limit)) if target.kind is TargetKind.LAMBDA_PROVISIONED else None
    elsewhere = draw(st.integers(0, limit // 4) | st.integers(0, limit))  # often room left, sometimes none
    return AccountHeadroom(limit, reserved_elsewhere=elsewhere, function_reserved=reserved)


@dataclass(frozen=True)
class Run:
    target: Target
    policy: str
    step_s: int
    settings: GuardrailSettings
    demand: list[float | None]
    forecasts: dict[int, tuple[list[float], list[float]]]  # step -> (median, upper)
    accounts: list[AccountHeadroom | None]  # one per step: other functions reserve and release meanwhile
    reacts: frozenset[int]


@st.composite
def runs(draw: st.DrawFn) -> Run:
    target = draw(targets())
    step_s = draw(st.sampled_from([60, 300, 3600]))
    # With hour steps, right-sizing starts after a day: long enough runs can switch instance types.
    n = draw(st.integers(1, 40 if step_s == 3600 else 30))
    scale = draw(st.sampled_from(SCALES))
    forecasts: dict[int, tuple[list[float], list[float]]] = {}
    for i in sorted(draw(st.sets(st.integers(0, n - 1), max_size=3))):
        h = draw(st.integers(1, 30))
        forecasts[i] = ([rate(draw, scale) for _ in range(h)], [rate(draw, scale) for _ in range(h)])
    if target.is_lambda:
        snapshots = draw(st.lists(accounts(target), min_size=1, max_size=3))
        per_step: list[AccountHeadroom | None] = [snapshots[i * len(snapshots) // n] for i in range(n)]
    else:
        per_step = [None] * n
    return Run(
        target=target,
        policy=draw(st.sampled_from(POLICY_NAMES)),
        step_s=step_s,
        settings=draw(guardrails_for(target)),
        demand=[sample(draw, scale) for _ in range(n)],
        forecasts=forecasts,
        accounts=per_step,
        reacts=frozenset(draw(st.sets(st.integers(0, n - 1), max_size=3))),
    )


class Promises:
    """Checks every decision of one run against the five promises, remembering the scale-outs for 5."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.scale_outs: list[int] = []  # when capacity went up

    def check(self, d: Decision, account: AccountHeadroom | None) -> None:
        t, s = self.run.target, self.run.settings
        acct = account.ceiling() if account is not None else math.inf
        floor, ceiling = min(s.min_capacity, acct), min(s.max_capacity, acct)
        price = t.price_per_unit_hour(d.instance_type or d.previous_instance_type)
        budget: float = math.inf
        if s.budget_per_hour is not None and price > 0:
            units = s.budget_per_hour / price + 1e-9
            budget = max(floor, units if math.isinf(units) else math.floor(units))
        why = f"{d.previous}→{d.capacity} ({d.reason})"

        # 1. Floor and ceiling. Exception: the account ceiling outranks min_capacity (AWS cannot grant more).
        assert floor <= d.capacity <= ceiling, why
        assert d.capacity >= s.min_capacity or d.capacity == acct, why
        if account is not None:
            # 2. What this target holds counts as reserved; 0 is always allowed (others may have left < 100).
            unreserved = account.account_limit - account.reserved_elsewhere - d.capacity
            assert unreserved >= LAMBDA_MIN_UNRESERVED or d.capacity == 0, why
            # 3. Provisioned concurrency never exceeds the function's reserved concurrency.
            if account.function_reserved is not None:
                assert d.capacity <= account.function_reserved, why
        # 4. Step limits. Exceptions: the floor may force a larger jump up (running under min_capacity is
        # worse than a big scale-out); a ceiling or the budget may force a larger drop (AWS rejects more, and
        # the budget outranks smoothness). Counts are compared as the chain compares them, across a type switch too.
        if s.max_step_up is not None:
            assert d.capacity <= max(d.previous + s.max_step_up, floor), why
        if s.max_step_down is not None:
            assert d.capacity >= min(d.previous - s.max_step_down, ceiling, budget), why
        # 5. No scale-in at all within the stabilisation window after a scale-out. Same exceptions as 4: a
        # ceiling or the budget may force it (and then only as far as they force it).
        w = s.stabilisation_window_s
        if d.capacity < d.previous and any(d.decided_at - at < w for at in self.scale_outs):
            assert d.capacity >= min(ceiling, budget), f"{why}; scale-outs at {self.scale_outs}"
        if d.capacity > d.previous:
            self.scale_outs.append(d.decided_at)
        assert d.reason


@settings(max_examples=examples(1000), deadline=None)
@given(run=runs())
def test_given_arbitrary_forecasts_histories_and_settings_when_planning_then_every_decision_keeps_the_five_promises(
    run: Run,
) -> None:
    t, step = run.target, run.step_s
    planner = Planner(t, make_policy(run.policy, t, step), run.settings)
    promises = Promises(run)
    for i, rate in enumerate(run.demand):
        ts, now, account = i * step, (i + 1) * step, run.accounts[i]
        try:
            planner.observe(ts, rate)
        except ValueError:
            # NaN or a negative rate is no demand: rejected, and the step counts as missing.
            assert not observable(rate)
            planner.observe(ts, None)
        else:
            assert observable(rate), f"accepted {rate}"
        if i in run.forecasts:
            median, upper = run.forecasts[i]
            try:
                f = Forecast(t.name, now, now, step, {0.5: tuple(median), 0.99: tuple(upper)}, "prop")
            except ValueError:
                # The planner can never be handed a forecast with NaN, inf or negative rates.
                assert not all(forecastable(v) for v in (*median, *upper))
            else:
                assert all(forecastable(v) for v in (*median, *upper))
                planner.use_forecast(f)
        promises.check(planner.decide(StepInput(now=now, account=account)), account)
        if i in run.reacts:
            # An alarm or a surprise between steps; its rate is whatever collect saw (None, NaN, huge ...).
            promises.check(planner.react(StepInput(now=now + 1, account=account), rate, "property"), account)
        lead = planner.prescale_lead_s
        if lead is not None and 0 < lead < step:
            promises.check(planner.prescale(StepInput(now=now + step - lead, account=account)), account)
