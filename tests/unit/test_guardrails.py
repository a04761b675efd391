"""Guardrails: one table per guardrail, then the chain's order and its invariants.

Each row reads: given the current capacity, a proposal and the settings/context, when the guardrail
runs, then the capacity is X and the guardrail's name is (or is not) in `shaped_by`.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forescale.domain.guardrails import (
    DEFAULT_CHAIN,
    LAMBDA_MIN_UNRESERVED,
    AccountHeadroom,
    GuardrailContext,
    GuardrailSettings,
    Proposal,
    account_headroom,
    apply_chain,
    budget,
    clamp_min_max,
    cooldown,
    dead_band,
    hold_on_missing_data,
    max_step,
    scale_out_per_hour,
    scale_out_per_step,
    stabilisation_window,
)
from tests.tiers import examples

NOW = 10_000
NAMES = {
    "missing-data",
    "min",
    "max",
    "account-headroom",
    "max-step",
    "scale-out-step",
    "scale-out-hour",
    "stabilisation",
    "cooldown",
    "dead-band",
    "budget",
}


def ctx(current: int = 10, settings: GuardrailSettings | None = None, **kw) -> GuardrailContext:
    return GuardrailContext(now=kw.pop("now", NOW), current=current, settings=settings or GuardrailSettings(), **kw)


def check(p: Proposal, expected: int, name: str, shaped: bool) -> None:
    assert p.capacity == expected
    assert (name in p.shaped_by) is shaped
    assert len(p.notes) == len(p.shaped_by)
    if shaped:
        note = p.notes[p.shaped_by.index(name)]
        assert note.startswith(f"{name}:"), note
    else:
        assert p.shaped_by == ()


def test_guardrail_settings_reject_bad_values() -> None:
    for bad in (
        {"min_capacity": 5, "max_capacity": 4},
        {"min_capacity": -1},
        {"max_step_up": 0},
        {"max_step_down": 0},
        {"dead_band": 1.0},
        {"dead_band": -0.1},
        {"stabilisation_window_s": -1},
        {"scale_in_cooldown_s": -1},
        {"scale_out_cooldown_s": -1},
        {"budget_per_hour": -0.01},
    ):
        with pytest.raises(ValueError):
            GuardrailSettings(**bad)


# ------------------------------------------------------------------------------------- missing data (0)


@pytest.mark.parametrize(
    ("missing", "current", "proposed", "expected", "shaped"),
    [
        pytest.param(True, 10, 5, 10, True, id="given-missing-when-scale-in-then-hold-current"),
        pytest.param(True, 10, 0, 10, True, id="given-missing-when-proposal-zero-then-hold-current"),
        pytest.param(True, 10, 15, 15, False, id="given-missing-when-scale-out-then-allowed"),
        pytest.param(True, 10, 10, 10, False, id="given-missing-when-no-change-then-untouched"),
        pytest.param(False, 10, 5, 5, False, id="given-data-when-scale-in-then-allowed"),
    ],
)
def test_hold_on_missing_data(missing: bool, current: int, proposed: int, expected: int, shaped: bool) -> None:
    p = hold_on_missing_data(Proposal(proposed), ctx(current, data_missing=missing))
    check(p, expected, "missing-data", shaped)


# ---------------------------------------------------------------------------------------- clamp (1)


@pytest.mark.parametrize(
    ("proposed", "expected", "name"),
    [
        pytest.param(1, 2, "min", id="given-below-min-then-raised-to-min"),
        pytest.param(0, 2, "min", id="given-zero-then-raised-to-min"),
        pytest.param(25, 20, "max", id="given-above-max-then-capped-at-max"),
        pytest.param(2, 2, None, id="given-at-min-then-untouched"),
        pytest.param(20, 20, None, id="given-at-max-then-untouched"),
        pytest.param(10, 10, None, id="given-inside-then-untouched"),
    ],
)
def test_clamp_min_max(proposed: int, expected: int, name: str | None) -> None:
    s = GuardrailSettings(min_capacity=2, max_capacity=20)
    p = clamp_min_max(Proposal(proposed), ctx(10, s))
    assert (p.floor, p.ceiling) == (2, 20)
    check(p, expected, name or "min", name is not None)


def test_given_an_earlier_ceiling_when_clamping_then_the_lower_ceiling_is_kept() -> None:
    p = clamp_min_max(Proposal(5, ceiling=8), ctx(5, GuardrailSettings(max_capacity=20)))
    assert p.ceiling == 8


# ------------------------------------------------------------------------------------ account headroom (2)


@pytest.mark.parametrize(
    ("account", "proposed", "expected", "shaped"),
    [
        pytest.param(None, 5000, 5000, False, id="given-no-account-then-untouched"),
        pytest.param(AccountHeadroom(1000), 950, 900, True, id="given-1000-limit-then-100-stay-unreserved"),
        pytest.param(AccountHeadroom(1000), 900, 900, False, id="given-exactly-the-headroom-then-untouched"),
        pytest.param(AccountHeadroom(1000, 300), 650, 600, True, id="given-300-reserved-elsewhere-then-600"),
        pytest.param(AccountHeadroom(1000, 0, 200), 500, 200, True, id="given-function-reserved-200-then-200"),
        pytest.param(AccountHeadroom(1000, 0, 200), 150, 150, False, id="given-under-function-reserved-then-ok"),
        pytest.param(AccountHeadroom(1000, 0, 950), 950, 900, True, id="given-reserved-above-headroom-then-900"),
        pytest.param(AccountHeadroom(1000, 950), 10, 0, True, id="given-no-headroom-left-then-zero"),
        pytest.param(AccountHeadroom(3000, 500, 2000), 2500, 2000, True, id="given-big-account-then-reserved-wins"),
        pytest.param(AccountHeadroom(1000, 0, None, 0), 1000, 1000, False, id="given-min-unreserved-0-then-all"),
    ],
)
def test_account_headroom(account: AccountHeadroom | None, proposed: int, expected: int, shaped: bool) -> None:
    p = account_headroom(Proposal(proposed), ctx(0, account=account))
    check(p, expected, "account-headroom", shaped)
    if account is not None:
        assert p.ceiling == account.ceiling()


def test_given_a_floor_above_the_account_ceiling_when_headroom_runs_then_the_floor_drops_to_it() -> None:
    p = account_headroom(Proposal(300, floor=300, ceiling=500), ctx(0, account=AccountHeadroom(1000, 0, 200)))
    assert (p.capacity, p.floor, p.ceiling) == (200, 200, 200)


@pytest.mark.parametrize(
    ("account", "phrase"),
    [
        pytest.param(AccountHeadroom(1000, 0, 200), "function reserved concurrency 200", id="function-reserved"),
        pytest.param(
            AccountHeadroom(1000, 300),
            "account limit 1000 - 100 unreserved - 300 reserved elsewhere",
            id="account-limit",
        ),
    ],
)
def test_given_headroom_caps_when_reading_the_note_then_it_says_why(account: AccountHeadroom, phrase: str) -> None:
    p = account_headroom(Proposal(5000), ctx(0, account=account))
    assert p.notes == (f"account-headroom: capped 5000 at {account.ceiling()} ({phrase})",)


def test_default_headroom_keeps_100_unreserved() -> None:
    assert LAMBDA_MIN_UNRESERVED == 100
    assert AccountHeadroom().ceiling() == 900


# ----------------------------------------------------------------------------------------- max step (3)


@pytest.mark.parametrize(
    ("current", "proposal", "steps", "expected", "shaped"),
    [
        pytest.param(10, Proposal(20), (5, 3), 15, True, id="given-up-10-limit-5-then-15"),
        pytest.param(10, Proposal(15), (5, 3), 15, False, id="given-up-exactly-5-then-untouched"),
        pytest.param(10, Proposal(2), (5, 3), 7, True, id="given-down-8-limit-3-then-7"),
        pytest.param(10, Proposal(7), (5, 3), 7, False, id="given-down-exactly-3-then-untouched"),
        pytest.param(10, Proposal(100), (None, None), 100, False, id="given-no-limits-then-untouched"),
        pytest.param(10, Proposal(0), (5, None), 0, False, id="given-only-up-limit-when-down-then-untouched"),
        pytest.param(10, Proposal(100), (None, 3), 100, False, id="given-only-down-limit-when-up-then-untouched"),
        pytest.param(0, Proposal(12, floor=12), (5, 3), 12, False, id="given-floor-above-step-then-floor-wins"),
        pytest.param(10, Proposal(4, ceiling=4), (5, 3), 4, False, id="given-ceiling-below-step-then-ceiling-wins"),
        pytest.param(10, Proposal(30, ceiling=13), (5, 3), 13, True, id="given-step-past-ceiling-then-ceiling"),
        pytest.param(10, Proposal(30, ceiling=20), (5, 3), 15, True, id="given-step-under-ceiling-then-step"),
    ],
)
def test_max_step(
    current: int, proposal: Proposal, steps: tuple[int | None, int | None], expected: int, shaped: bool
) -> None:
    s = GuardrailSettings(max_step_up=steps[0], max_step_down=steps[1])
    check(max_step(proposal, ctx(current, s)), expected, "max-step", shaped)


# ----------------------------------------------------------------------------- scale-out per step (3a)
# A GPU instance at $1.408/h: the default $10/h allowance buys 7 of them.
GPU_PRICE = 1.408


@pytest.mark.parametrize(
    ("current", "proposal", "factor", "price", "expected", "shaped"),
    [
        pytest.param(4, Proposal(1000), 10.0, GPU_PRICE, 40, True, id="given-4-and-a-poisoned-1000-then-10x-is-40"),
        pytest.param(4, Proposal(40), 10.0, GPU_PRICE, 40, False, id="given-exactly-10x-then-untouched"),
        pytest.param(1, Proposal(20), 10.0, GPU_PRICE, 10, True, id="given-1-then-10x-beats-the-allowance-of-7"),
        pytest.param(0, Proposal(20), 10.0, GPU_PRICE, 7, True, id="given-0-then-the-allowance-of-7-instances"),
        pytest.param(0, Proposal(900), 10.0, 0.015, 666, True, id="given-a-lambda-at-0-then-666-environments"),
        pytest.param(4, Proposal(1000), None, GPU_PRICE, 1000, False, id="given-the-bound-off-then-untouched"),
        pytest.param(4, Proposal(1000), 10.0, 0.0, 1000, False, id="given-unpriced-capacity-then-unbounded"),
        pytest.param(50, Proposal(3), 10.0, GPU_PRICE, 3, False, id="given-a-scale-in-then-untouched"),
        pytest.param(4, Proposal(1000, floor=60), 10.0, GPU_PRICE, 60, True, id="given-a-floor-above-then-floor"),
        pytest.param(4, Proposal(9, ceiling=9), 2.0, GPU_PRICE, 9, False, id="given-a-ceiling-below-then-ceiling"),
    ],
)
def test_scale_out_per_step(
    current: int, proposal: Proposal, factor: float | None, price: float, expected: int, shaped: bool
) -> None:
    s = GuardrailSettings(scale_out_step_factor=factor)
    check(scale_out_per_step(proposal, ctx(current, s, unit_price_per_hour=price)), expected, "scale-out-step", shaped)


# ----------------------------------------------------------------------------- scale-out per hour (3b)


@pytest.mark.parametrize(
    ("current", "peak", "proposal", "factor", "expected", "shaped"),
    [
        pytest.param(40, 4, Proposal(1000), 10.0, 40, True, id="given-a-peak-of-4-an-hour-ago-then-at-most-40"),
        pytest.param(30, 4, Proposal(1000), 10.0, 40, True, id="given-30-now-then-still-40"),
        pytest.param(30, 4, Proposal(40), 10.0, 40, False, id="given-exactly-10x-the-peak-then-untouched"),
        pytest.param(50, 4, Proposal(60), 10.0, 50, True, id="given-current-above-the-bound-then-hold-current"),
        pytest.param(1, 1, Proposal(20), 10.0, 10, True, id="given-a-peak-of-1-then-10-not-the-allowance-8"),
        pytest.param(0, 0, Proposal(20), 10.0, 7, True, id="given-an-idle-day-then-the-allowance"),
        pytest.param(4, None, Proposal(1000), 10.0, 1000, False, id="given-under-an-hour-of-decisions-then-off"),
        pytest.param(4, 4, Proposal(1000), None, 1000, False, id="given-the-bound-off-then-untouched"),
        pytest.param(40, 4, Proposal(10), 10.0, 10, False, id="given-a-scale-in-then-untouched"),
    ],
)
def test_scale_out_per_hour(
    current: int, peak: int | None, proposal: Proposal, factor: float | None, expected: int, shaped: bool
) -> None:
    s = GuardrailSettings(scale_out_hour_factor=factor)
    c = ctx(current, s, unit_price_per_hour=GPU_PRICE, peak_before_last_hour=peak)
    check(scale_out_per_hour(proposal, c), expected, "scale-out-hour", shaped)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scale_out_step_factor", 0.5),
        ("scale_out_hour_factor", math.inf),
        ("scale_out_hour_factor", math.nan),
        ("scale_out_allowance_per_hour", -1.0),
        ("scale_out_allowance_per_hour", math.nan),
    ],
)
def test_given_a_bad_scale_out_setting_then_the_error_names_it(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        GuardrailSettings(**{field: value})


def test_given_a_poisoned_recommendation_when_chained_with_defaults_then_both_bounds_name_themselves() -> None:
    p = apply_chain(1000, ctx(4, unit_price_per_hour=GPU_PRICE, peak_before_last_hour=2))
    assert p.capacity == 20
    assert p.shaped_by == ("scale-out-step", "scale-out-hour")
    assert p.notes[-1] == "scale-out-hour: 4→40 capped at 20, 10× the peak an hour ago 2 or +7 ($10/h)"


# ------------------------------------------------------------------------------------ stabilisation (4)


@pytest.mark.parametrize(
    ("window", "proposed", "recent", "expected", "shaped"),
    [
        pytest.param(300, 5, [(NOW - 200, 9), (NOW - 100, 8)], 9, True, id="given-recent-9-then-held-at-9"),
        pytest.param(300, 5, [(NOW - 100, 20)], 10, True, id="given-recent-above-current-then-held-at-current"),
        pytest.param(300, 5, [(NOW - 100, 3)], 5, False, id="given-recent-lower-then-scale-in-allowed"),
        pytest.param(300, 5, [(NOW - 300, 9)], 5, False, id="given-recent-exactly-w-ago-then-outside"),
        pytest.param(300, 5, [(NOW - 299, 9)], 9, True, id="given-recent-just-inside-w-then-held"),
        pytest.param(300, 5, [], 5, False, id="given-no-history-then-untouched"),
        pytest.param(300, 12, [(NOW - 100, 20)], 12, False, id="given-scale-out-then-untouched"),
        pytest.param(0, 5, [(NOW - 100, 9)], 5, False, id="given-window-off-then-untouched"),
    ],
)
def test_stabilisation_window(
    window: int, proposed: int, recent: list[tuple[int, int]], expected: int, shaped: bool
) -> None:
    s = GuardrailSettings(stabilisation_window_s=window)
    p = stabilisation_window(Proposal(proposed), ctx(10, s, recent_recommendations=recent))
    check(p, expected, "stabilisation", shaped)


# ------------------------------------------------------------------------------------------ cooldown (5)


@pytest.mark.parametrize(
    ("last_change_ago", "proposed", "expected", "shaped"),
    [
        pytest.param(None, 20, 20, False, id="given-never-changed-then-free"),
        pytest.param(50, 20, 10, True, id="given-out-50s-ago-under-60s-then-deferred"),
        pytest.param(60, 20, 20, False, id="given-out-60s-ago-then-allowed"),
        pytest.param(200, 5, 10, True, id="given-in-200s-ago-under-300s-then-deferred"),
        pytest.param(200, 20, 20, False, id="given-200s-ago-when-out-then-out-cooldown-applies"),
        pytest.param(300, 5, 5, False, id="given-in-300s-ago-then-allowed"),
        pytest.param(0, 10, 10, False, id="given-no-change-then-untouched"),
    ],
)
def test_cooldown(last_change_ago: int | None, proposed: int, expected: int, shaped: bool) -> None:
    s = GuardrailSettings(scale_out_cooldown_s=60, scale_in_cooldown_s=300)
    last = None if last_change_ago is None else NOW - last_change_ago
    check(cooldown(Proposal(proposed), ctx(10, s, last_change_at=last)), expected, "cooldown", shaped)


def test_given_cooldown_when_current_is_above_the_ceiling_then_the_ceiling_still_wins() -> None:
    s = GuardrailSettings(scale_in_cooldown_s=300)
    p = cooldown(Proposal(8, ceiling=8), ctx(10, s, last_change_at=NOW - 1))
    check(p, 8, "cooldown", False)


# ----------------------------------------------------------------------------------------- dead band (6)


@pytest.mark.parametrize(
    ("band", "current", "proposed", "expected", "shaped"),
    [
        pytest.param(0.1, 100, 105, 100, True, id="given-5pct-up-under-10pct-then-kept"),
        pytest.param(0.1, 100, 95, 100, True, id="given-5pct-down-under-10pct-then-kept"),
        pytest.param(0.1, 100, 110, 110, False, id="given-exactly-10pct-then-allowed"),
        pytest.param(0.1, 100, 89, 89, False, id="given-11pct-down-then-allowed"),
        pytest.param(0.1, 0, 1, 1, False, id="given-current-zero-then-allowed"),
        pytest.param(0.0, 100, 101, 101, False, id="given-band-off-then-allowed"),
    ],
)
def test_dead_band(band: float, current: int, proposed: int, expected: int, shaped: bool) -> None:
    p = dead_band(Proposal(proposed), ctx(current, GuardrailSettings(dead_band=band)))
    check(p, expected, "dead-band", shaped)


# ------------------------------------------------------------------------------------------- budget (7)


@pytest.mark.parametrize(
    ("cap", "price", "proposal", "expected", "shaped"),
    [
        pytest.param(10.0, 1.5, Proposal(8), 6, True, id="given-10-per-h-at-1.5-then-6"),
        pytest.param(10.0, 1.5, Proposal(6), 6, False, id="given-affordable-then-untouched"),
        pytest.param(3.0, 0.1, Proposal(31), 30, True, id="given-3-per-h-at-0.1-then-30-not-29"),
        pytest.param(10.0, 1.5, Proposal(10, floor=8), 8, True, id="given-floor-8-then-floor-outranks"),
        pytest.param(0.0, 1.0, Proposal(5, floor=2), 2, True, id="given-zero-budget-then-floor"),
        pytest.param(None, 1.5, Proposal(100), 100, False, id="given-no-budget-then-untouched"),
        pytest.param(10.0, 0.0, Proposal(100), 100, False, id="given-no-price-then-untouched"),
        pytest.param(3.0, 0.1, Proposal(30), 30, False, id="given-3-per-h-at-0.1-exactly-30-then-untouched"),
        # Found by the property tests: cap / price overflowed to inf and math.floor raised OverflowError.
        pytest.param(math.inf, 1.5, Proposal(100), 100, False, id="given-an-unlimited-budget-then-untouched"),
        pytest.param(1e307, 0.01, Proposal(0), 0, False, id="given-cap-over-price-overflows-then-untouched"),
        pytest.param(1.0, 5e-324, Proposal(2**31 - 1), 2**31 - 1, False, id="given-a-subnormal-price-then-untouched"),
    ],
)
def test_budget(cap: float | None, price: float, proposal: Proposal, expected: int, shaped: bool) -> None:
    p = budget(proposal, ctx(0, GuardrailSettings(budget_per_hour=cap), unit_price_per_hour=price))
    check(p, expected, "budget", shaped)


def test_given_budget_below_floor_when_capped_then_the_note_says_the_floor_outranks_it() -> None:
    p = budget(Proposal(10, floor=8), ctx(0, GuardrailSettings(budget_per_hour=10.0), unit_price_per_hour=1.5))
    assert p.notes == ("budget: 10 costs $15.00/h over $10.00/h, capped at 8 (the floor 8 outranks the budget)",)


# ------------------------------------------------------------------------------------------ the chain


def test_given_nothing_to_shape_when_the_chain_runs_then_the_recommendation_passes_untouched() -> None:
    p = apply_chain(42, ctx(40))
    assert (p.capacity, p.shaped_by, p.notes) == (42, (), ())


def test_given_a_negative_recommendation_when_the_chain_runs_then_value_error() -> None:
    with pytest.raises(ValueError, match="recommended capacity"):
        apply_chain(-1, ctx(0))


def test_given_an_empty_chain_when_applied_then_the_recommendation_is_returned() -> None:
    assert apply_chain(7, ctx(0, GuardrailSettings(max_capacity=5)), chain=()).capacity == 7


def test_default_chain_order_is_the_documented_one() -> None:
    assert [g.__name__ for g in DEFAULT_CHAIN] == [
        "hold_on_missing_data",
        "clamp_min_max",
        "account_headroom",
        "max_step",
        "scale_out_per_step",
        "scale_out_per_hour",
        "stabilisation_window",
        "cooldown",
        "dead_band",
        "budget",
    ]


@pytest.mark.parametrize(
    ("recent_peak", "expected", "shaped_by"),
    [
        pytest.param(12, 16, ("max-step",), id="given-lower-recent-when-stepped-then-only-max-step"),
        pytest.param(18, 18, ("max-step", "stabilisation"), id="given-higher-recent-then-max-step-then-stabilised"),
    ],
)
def test_given_a_big_scale_in_when_chained_then_max_step_runs_before_stabilisation(
    recent_peak: int, expected: int, shaped_by: tuple[str, ...]
) -> None:
    s = GuardrailSettings(max_step_down=4, stabilisation_window_s=300)
    p = apply_chain(5, ctx(20, s, recent_recommendations=[(NOW - 60, recent_peak)]))
    assert p.capacity == expected
    assert p.shaped_by == shaped_by


def test_given_a_tight_budget_when_chained_then_it_never_goes_below_min() -> None:
    s = GuardrailSettings(min_capacity=5, max_capacity=50, budget_per_hour=2.0)
    p = apply_chain(40, ctx(10, s, unit_price_per_hour=1.0))
    assert p.capacity == 5
    assert p.shaped_by == ("budget",)
    assert "outranks the budget" in p.notes[-1]


def test_given_function_reserved_concurrency_when_chained_then_provisioned_is_capped_at_it() -> None:
    s = GuardrailSettings(max_capacity=10_000)
    p = apply_chain(500, ctx(0, s, account=AccountHeadroom(1000, 0, 200)))
    assert p.capacity == 200
    assert p.shaped_by == ("account-headroom",)
    assert "function reserved concurrency 200" in p.notes[0]


def test_given_other_reservations_when_chained_then_100_stay_unreserved() -> None:
    p = apply_chain(800, ctx(0, account=AccountHeadroom(account_limit=1000, reserved_elsewhere=400)))
    assert p.capacity == 1000 - 400 - 100
    assert "100 unreserved" in p.notes[0]


def test_given_min_above_the_account_ceiling_when_chained_then_the_account_wins() -> None:
    s = GuardrailSettings(min_capacity=700, budget_per_hour=0.0)
    p = apply_chain(0, ctx(0, s, unit_price_per_hour=1.0, account=AccountHeadroom(1000, 400)))
    assert p.capacity == 500
    assert p.shaped_by == ("min", "account-headroom")


def test_given_max_step_up_when_the_account_ceiling_is_nearer_then_the_ceiling_stops_it() -> None:
    s = GuardrailSettings(max_step_up=500)
    p = apply_chain(2000, ctx(800, s, account=AccountHeadroom(1000)))
    assert p.capacity == 900
    assert p.shaped_by == ("account-headroom",)


@pytest.mark.parametrize(
    ("settings", "kw"),
    [
        pytest.param(GuardrailSettings(), {}, id="no-other-guardrails"),
        pytest.param(GuardrailSettings(max_step_down=1), {}, id="with-max-step-down"),
        pytest.param(GuardrailSettings(scale_in_cooldown_s=0), {"last_change_at": NOW}, id="with-cooldown-0"),
        pytest.param(GuardrailSettings(dead_band=0.5), {}, id="with-dead-band"),
        pytest.param(
            GuardrailSettings(stabilisation_window_s=600),
            {"recent_recommendations": [(NOW, 0)]},
            id="with-low-recent-recommendations",
        ),
    ],
)
def test_given_missing_data_when_the_chain_runs_then_it_never_scales_in(settings: GuardrailSettings, kw) -> None:
    p = apply_chain(0, ctx(50, settings, data_missing=True, **kw))
    assert p.capacity == 50
    assert p.shaped_by == ("missing-data",)
    assert p.notes == ("missing-data: metrics missing, holding 50 instead of scaling in to 0",)


def test_given_missing_data_when_demand_rises_then_it_still_scales_out() -> None:
    p = apply_chain(80, ctx(50, GuardrailSettings(max_step_up=10), data_missing=True))
    assert p.capacity == 60
    assert p.shaped_by == ("max-step",)


def test_given_several_guardrails_fire_when_chained_then_each_note_is_readable_and_names_its_guardrail() -> None:
    s = GuardrailSettings(min_capacity=0, max_capacity=100, max_step_up=20, budget_per_hour=25.0)
    p = apply_chain(500, ctx(10, s, unit_price_per_hour=1.0))
    assert p.capacity == 25
    assert p.shaped_by == ("max", "max-step", "budget")
    assert p.notes == (
        "max: capped 500 at 100",
        "max-step: 10→100 limited to +20",
        "budget: 30 costs $30.00/h over $25.00/h, capped at 25",
    )


def test_given_a_cooldown_and_a_dead_band_when_chained_then_cooldown_shapes_first() -> None:
    s = GuardrailSettings(scale_out_cooldown_s=300, dead_band=0.2)
    p = apply_chain(11, ctx(10, s, last_change_at=NOW - 10))
    assert p.capacity == 10
    assert p.shaped_by == ("cooldown",)
    assert p.notes == ("cooldown: 10→11 deferred, last change 10s ago (< 300s)",)


def test_given_a_dead_band_when_it_holds_then_the_note_gives_the_band_as_a_percentage() -> None:
    p = apply_chain(105, ctx(100, GuardrailSettings(dead_band=0.1)))
    assert p.notes == ("dead-band: 100→105 is under 10%, keeping 100",)


def test_given_stabilisation_holds_when_reading_the_note_then_it_names_the_window() -> None:
    s = GuardrailSettings(stabilisation_window_s=300)
    p = apply_chain(5, ctx(10, s, recent_recommendations=[(NOW - 100, 8)]))
    assert p.notes == ("stabilisation: scale-in 10→5 held at 8, the largest recommendation of the last 300s",)


# -------------------------------------------------------------------------------------------- properties


@st.composite
def settings_st(draw) -> GuardrailSettings:
    lo = draw(st.integers(0, 200))
    return GuardrailSettings(
        min_capacity=lo,
        max_capacity=lo + draw(st.integers(0, 400)),
        max_step_up=draw(st.none() | st.integers(1, 100)),
        max_step_down=draw(st.none() | st.integers(1, 100)),
        stabilisation_window_s=draw(st.integers(0, 900)),
        scale_out_cooldown_s=draw(st.integers(0, 600)),
        scale_in_cooldown_s=draw(st.integers(0, 900)),
        dead_band=draw(st.floats(0.0, 0.9)),
        budget_per_hour=draw(st.none() | st.floats(0.0, 500.0)),
        scale_out_step_factor=draw(st.none() | st.floats(1.0, 20.0)),
        scale_out_hour_factor=draw(st.none() | st.floats(1.0, 20.0)),
        scale_out_allowance_per_hour=draw(st.floats(0.0, 50.0)),
    )


@st.composite
def context_st(draw) -> GuardrailContext:
    recent = sorted(draw(st.lists(st.tuples(st.integers(NOW - 1200, NOW), st.integers(0, 1000)), max_size=8)))
    account = draw(
        st.none()
        | st.builds(
            AccountHeadroom,
            account_limit=st.integers(0, 3000),
            reserved_elsewhere=st.integers(0, 3000),
            function_reserved=st.none() | st.integers(0, 3000),
        )
    )
    return GuardrailContext(
        now=NOW,
        current=draw(st.integers(0, 1000)),
        settings=draw(settings_st()),
        unit_price_per_hour=draw(st.sampled_from([0.0]) | st.floats(0.001, 20.0)),
        data_missing=draw(st.booleans()),
        last_change_at=draw(st.none() | st.integers(NOW - 1200, NOW)),
        recent_recommendations=tuple(recent),
        account=account,
        peak_before_last_hour=draw(st.none() | st.integers(0, 1000)),
    )


@settings(max_examples=examples(300), deadline=None)
@given(recommended=st.integers(0, 1500), c=context_st())
def test_given_any_settings_and_context_when_chained_then_every_hard_limit_holds(
    recommended: int, c: GuardrailContext
) -> None:
    s = c.settings
    account_ceiling = c.account.ceiling() if c.account is not None else math.inf
    floor = min(s.min_capacity, account_ceiling)  # the account outranks min_capacity
    ceiling = min(s.max_capacity, account_ceiling)
    affordable = (
        math.floor(s.budget_per_hour / c.unit_price_per_hour + 1e-9)
        if s.budget_per_hour is not None and c.unit_price_per_hour > 0
        else math.inf
    )

    p = apply_chain(recommended, c)

    # then it is within the hard limits set by clamp and headroom ...
    assert floor <= p.capacity <= ceiling
    # ... within budget unless the floor outranks it ...
    assert p.capacity <= max(floor, affordable)
    # ... never scales in on missing data, except where a hard limit or the budget forces it ...
    if c.data_missing:
        assert p.capacity >= min(c.current, ceiling, max(floor, affordable))
        if c.current <= ceiling and c.current <= max(floor, affordable):
            assert p.capacity >= c.current
    # ... never scales out past the per-step and per-hour bounds, unless the floor is above them ...
    units = (
        math.inf if c.unit_price_per_hour <= 0 else math.floor(s.scale_out_allowance_per_hour / c.unit_price_per_hour)
    )
    bounds = [
        max(math.ceil(base * factor), base + units)
        for base, factor in ((c.current, s.scale_out_step_factor), (c.peak_before_last_hour, s.scale_out_hour_factor))
        if base is not None and factor is not None
    ]
    if p.capacity > c.current:
        assert p.capacity <= max(floor, *bounds) if bounds else True
    # ... explains itself ...
    assert len(p.notes) == len(p.shaped_by)
    assert set(p.shaped_by) <= NAMES
    for name, note in zip(p.shaped_by, p.notes, strict=True):
        assert note.startswith(f"{name}: ")
    if not p.shaped_by:
        assert p.capacity == recommended
    # ... and is deterministic
    assert apply_chain(recommended, c) == p
