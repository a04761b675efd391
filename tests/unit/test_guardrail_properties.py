"""Property tests on the guardrail chain alone: whatever it is handed, the shaped capacity keeps its promises.

The five promises, checked on every example of `apply_chain` with arbitrary recommendations, settings,
contexts and accounts:
1. within the target's floor and ceiling (the account ceiling outranks `min_capacity`: AWS cannot grant it);
2. the account keeps >= 100 unreserved concurrency;
3. provisioned concurrency <= the function's reserved concurrency;
4. no step larger than `max_step_up` / `max_step_down`, except where a hard limit or the budget forces it;
5. no scale-in below the largest recommendation of the stabilisation window, with the same exceptions.

The chain only takes ints; the float → int step is `size_for_rate` (Erlang B / instance counts), tested at
the end with any float a policy could hand it (NaN, ±inf, negative, huge), then fed to the chain.
Settings are valid ones (GuardrailSettings rejects the rest); capacities stay within int32, as AWS takes them.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forescale.domain.guardrails import (
    LAMBDA_MIN_UNRESERVED,
    AccountHeadroom,
    GuardrailContext,
    GuardrailSettings,
    Proposal,
    apply_chain,
)
from forescale.domain.policies import size_for_rate
from forescale.domain.sizing import MAX_LAMBDA_CONCURRENCY
from forescale.domain.targets import InstanceType, Target, TargetKind
from tests.tiers import examples

NOW = 1_000_000
EXAMPLES = settings(max_examples=examples(1000), deadline=None)

# AWS takes capacities as int32, and so does the chain (Proposal's default ceiling): configured and current
# capacities stay within it, mostly small. Recommendations may be anything a sizing of a huge demand gives.
INT32_MAX = 2**31 - 1
capacities = st.one_of(st.integers(0, 2_000), st.integers(0, INT32_MAX))
recommendations = st.one_of(st.integers(0, 2_000), st.integers(0, 2**64))
# Any non-NaN, non-negative float: 0, subnormal, huge, +inf. GuardrailSettings accepts all of them.
budgets = st.none() | st.floats(min_value=0.0, allow_nan=False)
# A unit price comes from the target: finite and > 0, or 0 for "unpriced"; subnormal ones make cap/price overflow.
prices = st.just(0.0) | st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def guardrail_settings(draw: st.DrawFn) -> GuardrailSettings:
    """Valid settings only (min <= max, steps >= 1, band in [0, 1)); invalid ones are rejected on construction."""
    lo = draw(capacities)
    return GuardrailSettings(
        min_capacity=lo,
        max_capacity=min(INT32_MAX, lo + draw(capacities)),
        max_step_up=draw(st.none() | st.integers(1, 2**40)),
        max_step_down=draw(st.none() | st.integers(1, 2**40)),
        stabilisation_window_s=draw(st.integers(0, 3600)),
        scale_out_cooldown_s=draw(st.integers(0, 3600)),
        scale_in_cooldown_s=draw(st.integers(0, 3600)),
        dead_band=draw(st.floats(0.0, 1.0, exclude_max=True)),
        budget_per_hour=draw(budgets),
    )


@st.composite
def accounts(draw: st.DrawFn) -> AccountHeadroom:
    """A consistent account: others never reserve more than the limit. The function's own reservation is
    always set so that promise 3 is checked on every example; drawn up to the whole limit, it often binds nothing."""
    limit = draw(st.sampled_from([0, 100, 1_000]) | st.integers(0, 100_000) | st.integers(0, INT32_MAX))
    return AccountHeadroom(
        account_limit=limit,
        reserved_elsewhere=draw(st.integers(0, limit)),
        function_reserved=draw(st.integers(0, limit)),
    )


@st.composite
def contexts(draw: st.DrawFn, account: st.SearchStrategy[AccountHeadroom | None]) -> GuardrailContext:
    s = draw(guardrail_settings())
    window = max(1, s.stabilisation_window_s)
    recent = sorted(draw(st.lists(st.tuples(st.integers(NOW - 2 * window, NOW), recommendations), max_size=6)))
    return GuardrailContext(
        now=NOW,
        current=draw(capacities),
        settings=s,
        unit_price_per_hour=draw(prices),
        data_missing=draw(st.booleans()),
        last_change_at=draw(st.none() | st.integers(NOW - 7200, NOW)),
        recent_recommendations=tuple(recent),
        account=draw(account),
    )


class Limits:
    """The limits a context sets, computed independently of the chain's code."""

    def __init__(self, c: GuardrailContext) -> None:
        s = c.settings
        self.account = c.account.ceiling() if c.account is not None else math.inf
        self.floor = min(s.min_capacity, self.account)  # the account outranks min_capacity: AWS cannot grant more
        self.ceiling = min(s.max_capacity, self.account)
        affordable: float = math.inf
        if s.budget_per_hour is not None and c.unit_price_per_hour > 0:
            units = s.budget_per_hour / c.unit_price_per_hour + 1e-9
            affordable = units if math.isinf(units) else math.floor(units)
        # The budget may lower capacity, but never below the floor.
        self.budget = max(self.floor, affordable)


def within_floor_and_ceiling(p: Proposal, c: GuardrailContext, lim: Limits) -> None:
    """1. Exception: the account ceiling outranks min_capacity (AWS cannot grant more), nothing else does."""
    assert lim.floor <= p.capacity <= lim.ceiling <= c.settings.max_capacity
    assert p.capacity >= c.settings.min_capacity or p.capacity == lim.account


def keeps_100_unreserved(p: Proposal, account: AccountHeadroom) -> None:
    """2. What this target holds counts as reserved. Holding 0 is always allowed: if others already left
    under 100 free, that is not this target's doing."""
    unreserved_after = account.account_limit - account.reserved_elsewhere - p.capacity
    assert unreserved_after >= LAMBDA_MIN_UNRESERVED or p.capacity == 0


def provisioned_within_reserved(p: Proposal, account: AccountHeadroom) -> None:
    """3. Provisioned concurrency never exceeds the function's reserved concurrency."""
    assert account.function_reserved is not None
    assert p.capacity <= account.function_reserved


def within_step_limits(p: Proposal, c: GuardrailContext, lim: Limits) -> None:
    """4. At most one step from the current capacity, with the exceptions the chain documents."""
    s = c.settings
    if s.max_step_up is not None:
        # Exception: the floor (min_capacity, as lowered by the account) may force a larger jump up; running
        # under the configured minimum for several steps would be worse than one big scale-out.
        assert p.capacity <= max(c.current + s.max_step_up, lim.floor)
    if s.max_step_down is not None:
        # Exceptions: a ceiling (max_capacity, the account's headroom: AWS rejects more) and the $/hour budget
        # may force a larger drop; both outrank smoothness (hard limits are applied before, the budget after).
        assert p.capacity >= min(c.current - s.max_step_down, lim.ceiling, lim.budget)


def no_scale_in_below_the_window(p: Proposal, c: GuardrailContext, lim: Limits) -> None:
    """5. Never below the largest recommendation of the stabilisation window (nor below current, if that is
    lower): a scale-out recommended inside the window holds. Same exceptions as 4: a ceiling or the budget."""
    w = c.settings.stabilisation_window_s
    in_window = [cap for t, cap in c.recent_recommendations if c.now - t < w]
    if w > 0 and in_window:
        assert p.capacity >= min(c.current, max(in_window), lim.ceiling, lim.budget)


@EXAMPLES
@given(recommended=recommendations, c=contexts(accounts()))
def test_given_any_recommendation_settings_and_account_when_chained_then_the_five_promises_hold(
    recommended: int, c: GuardrailContext
) -> None:
    assert c.account is not None
    lim = Limits(c)
    p = apply_chain(recommended, c)
    within_floor_and_ceiling(p, c, lim)
    keeps_100_unreserved(p, c.account)
    provisioned_within_reserved(p, c.account)
    within_step_limits(p, c, lim)
    no_scale_in_below_the_window(p, c, lim)


@EXAMPLES
@given(recommended=recommendations, c=contexts(st.none()))
def test_given_no_account_when_chained_then_floor_ceiling_step_and_window_promises_hold(
    recommended: int, c: GuardrailContext
) -> None:
    # SageMaker targets (and Lambda ones whose account was not read): only the configured limits apply.
    lim = Limits(c)
    p = apply_chain(recommended, c)
    within_floor_and_ceiling(p, c, lim)
    within_step_limits(p, c, lim)
    no_scale_in_below_the_window(p, c, lim)


# ------------------------------------------------------------------------------- the float → int sizing step

LAMBDA = Target("fn", TargetKind.LAMBDA_PROVISIONED, duration_s=0.2, min_capacity=0, max_capacity=3000)
SAGEMAKER = Target(
    "ep",
    TargetKind.SAGEMAKER_INSTANCE_COUNT,
    min_capacity=1,
    max_capacity=40,
    catalog=(InstanceType("ml.g5.xlarge", 1.4, 10.0),),
)
special_rates = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, -1.0, 5e-324, 1e300, 1.7976931348623157e308])
any_rate = st.one_of(special_rates, st.floats(), st.floats(0, 5000))


@EXAMPLES
@given(rate=any_rate, target=st.sampled_from([LAMBDA, SAGEMAKER]), c=contexts(st.none() | accounts()))
def test_given_any_float_demand_when_sized_and_chained_then_it_is_rejected_or_lands_within_the_limits(
    rate: float, target: Target, c: GuardrailContext
) -> None:
    if math.isnan(rate) or rate < 0:
        # Not a demand: sizing names the bad argument instead of guessing a capacity.
        with pytest.raises(ValueError, match="rate_rps"):
            size_for_rate(target, rate)
        return
    # Finite, huge or +inf (a huge rate × headroom overflows): always a capacity, the most there is for +inf.
    recommended = size_for_rate(target, rate)
    assert isinstance(recommended, int)
    assert target.min_capacity <= recommended
    if target.is_lambda:
        assert recommended <= MAX_LAMBDA_CONCURRENCY
    lim = Limits(c)
    p = apply_chain(recommended, c)
    within_floor_and_ceiling(p, c, lim)
    within_step_limits(p, c, lim)
    no_scale_in_below_the_window(p, c, lim)
