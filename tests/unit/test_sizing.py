"""Capacity math: Erlang B, Lambda provisioned concurrency for an SLO, SageMaker fleets and type switches.

Textbook Erlang B values are checked twice: against the published (rounded) table value, and against
the direct formula B(P, m) = (m^P / P!) / sum_{k=0..P} m^k / k! computed here with math.fsum, so the
code under test is never its own oracle.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forescale.domain.sizing import (
    Fleet,
    cheapest_fleet,
    erlang_b,
    lambda_concurrency_for,
    offered_load,
    sagemaker_instances,
    type_switch_pays,
)
from forescale.domain.targets import InstanceType
from tests.tiers import examples

PROPERTY = settings(max_examples=examples(300), deadline=None)


def erlang_b_direct(servers: int, load: float) -> float:
    """The textbook closed form, summed with math.fsum (independent of the recursion under test).

    The terms m^k/k! are formed in log space and scaled by the largest one so that big loads
    (m = 500, P ~ 550) do not overflow; the scale cancels in the ratio.
    """
    logs = [k * math.log(load) - math.lgamma(k + 1) for k in range(servers + 1)]
    top = max(logs)
    terms = [math.exp(v - top) for v in logs]
    return terms[-1] / math.fsum(terms)


# ---------------------------------------------------------------------------------------------- erlang_b


@pytest.mark.parametrize(
    ("servers", "load", "expected"),
    [
        pytest.param(1, 1.0, 0.5, id="B(1,1)=1/2"),
        pytest.param(2, 1.0, 0.2, id="B(2,1)=1/5"),
        pytest.param(3, 1.0, 1 / 16, id="B(3,1)=1/16"),
        pytest.param(4, 2.0, 2 / 21, id="B(4,2)=2/21"),
        pytest.param(0, 1.0, 1.0, id="no-servers-all-lost-m=1"),
        pytest.param(0, 0.001, 1.0, id="no-servers-all-lost-tiny-load"),
        pytest.param(0, 500.0, 1.0, id="no-servers-all-lost-big-load"),
        pytest.param(1, 0.0, 0.0, id="no-load-nothing-lost-P=1"),
        pytest.param(50, 0.0, 0.0, id="no-load-nothing-lost-P=50"),
    ],
)
def test_erlang_b_hand_checked_values(servers: int, load: float, expected: float) -> None:
    assert erlang_b(servers, load) == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize(
    ("servers", "load", "table_value"),
    [
        pytest.param(5, 2.0, 0.0367, id="B(5,2)"),
        pytest.param(10, 5.0, 0.01838, id="B(10,5)"),
        pytest.param(20, 15.0, 0.0456, id="B(20,15)"),
        pytest.param(30, 20.0, 0.00846, id="B(30,20)"),
        pytest.param(50, 40.0, 0.0187, id="B(50,40)"),
        pytest.param(100, 80.0, 0.0040, id="B(100,80)"),
    ],
)
def test_erlang_b_textbook_values(servers: int, load: float, table_value: float) -> None:
    direct = erlang_b_direct(servers, load)
    # the published value is rounded; the direct formula must agree with it to that rounding
    assert direct == pytest.approx(table_value, abs=5e-5)
    assert erlang_b(servers, load) == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize(
    ("servers", "load", "bad"),
    [
        pytest.param(-1, 1.0, r"servers \(-1\)", id="negative-servers"),
        pytest.param(3, -0.5, r"load \(-0.5\)", id="negative-load"),
    ],
)
def test_erlang_b_rejects_bad_input_naming_the_argument(servers: int, load: float, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        erlang_b(servers, load)


# -------------------------------------------------------------------------------- lambda_concurrency_for

LOADS = [0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 37.5, 100.0, 250.0, 500.0]
EPSILONS = [0.001, 0.005, 0.01, 0.05, 0.1]


@pytest.mark.parametrize("eps", EPSILONS, ids=[f"eps={e}" for e in EPSILONS])
@pytest.mark.parametrize("load", LOADS, ids=[f"m={m}" for m in LOADS])
def test_lambda_concurrency_is_the_smallest_p_meeting_the_spill_target(load: float, eps: float) -> None:
    p = lambda_concurrency_for(load, eps)
    assert p >= 1
    assert erlang_b(p, load) <= eps
    assert erlang_b(p - 1, load) > eps
    # and against the independent formula, away from float ties
    assert erlang_b_direct(p, load) <= eps * (1 + 1e-9)
    assert erlang_b_direct(p - 1, load) > eps * (1 - 1e-9)


@pytest.mark.parametrize(
    ("load", "eps", "expected"),
    [
        pytest.param(0.0, 0.01, 0, id="no-load-no-environments"),
        pytest.param(1.0, 0.5, 1, id="B(1,1)=0.5-meets-0.5"),
        pytest.param(1.0, 0.49, 2, id="B(1,1)=0.5-misses-0.49"),
        pytest.param(1.0, 0.2, 2, id="B(2,1)=0.2-meets-0.2"),
        pytest.param(5.0, 0.02, 10, id="B(10,5)=0.0184"),
        pytest.param(5.0, 0.018, 11, id="B(10,5)=0.0184-misses-0.018"),
        pytest.param(20.0, 0.01, 30, id="B(30,20)=0.0085"),
    ],
)
def test_lambda_concurrency_hand_checked(load: float, eps: float, expected: int) -> None:
    assert lambda_concurrency_for(load, eps) == expected


@pytest.mark.parametrize(
    ("load", "eps", "bad"),
    [
        pytest.param(1.0, 0.0, "max_spill", id="eps-zero"),
        pytest.param(1.0, 1.0, "max_spill", id="eps-one"),
        pytest.param(1.0, -0.1, "max_spill", id="eps-negative"),
        pytest.param(1.0, 1.5, "max_spill", id="eps-above-one"),
        pytest.param(-1.0, 0.01, "load", id="negative-load"),
    ],
)
def test_lambda_concurrency_rejects_bad_input_naming_the_argument(load: float, eps: float, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        lambda_concurrency_for(load, eps)


# ------------------------------------------------------------------------------------------ offered_load


@pytest.mark.parametrize(
    ("rate", "duration", "expected"),
    [
        pytest.param(10.0, 0.1, 1.0, id="10rps-x-100ms"),
        pytest.param(250.0, 0.12, 30.0, id="250rps-x-120ms"),
        pytest.param(0.0, 5.0, 0.0, id="no-traffic"),
        pytest.param(3.0, 0.0, 0.0, id="instant-requests"),
        pytest.param(1000.0, 2.5, 2500.0, id="1000rps-x-2.5s"),
    ],
)
def test_offered_load_is_littles_law(rate: float, duration: float, expected: float) -> None:
    assert offered_load(rate, duration) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rate", "duration", "bad"),
    [
        pytest.param(-1.0, 0.1, r"rate_rps \(-1.0\)", id="negative-rate"),
        pytest.param(1.0, -0.1, r"duration_s \(-0.1\)", id="negative-duration"),
    ],
)
def test_offered_load_rejects_bad_input_naming_the_argument(rate: float, duration: float, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        offered_load(rate, duration)


# ----------------------------------------------------------------------------------- sagemaker_instances


@pytest.mark.parametrize(
    ("rate", "capacity", "min_instances", "expected"),
    [
        pytest.param(0.0, 10.0, 1, 1, id="idle-keeps-min-1"),
        pytest.param(0.0, 10.0, 0, 0, id="idle-min-0"),
        pytest.param(5.0, 10.0, 1, 1, id="half-an-instance-rounds-up"),
        pytest.param(10.0, 10.0, 1, 1, id="exact-1x"),
        pytest.param(10.0001, 10.0, 1, 2, id="just-over-1x"),
        pytest.param(55.0, 10.0, 1, 6, id="5.5-instances-ceil"),
        pytest.param(29.2 * 3, 29.2, 1, 3, id="exact-3x-29.2-not-rounded-up"),
        pytest.param(29.2 * 100, 29.2, 1, 100, id="exact-100x-29.2-not-rounded-up"),
        pytest.param(3 * 0.1, 0.1, 1, 3, id="exact-3x-0.1-float-overshoot"),
        pytest.param(0.7, 0.1, 1, 7, id="exact-7x-0.1-float-undershoot"),
        pytest.param(25.0, 10.0, 5, 5, id="min-5-wins"),
        pytest.param(55.0, 10.0, 5, 6, id="demand-over-min"),
    ],
)
def test_sagemaker_instances_ceil_with_min(rate: float, capacity: float, min_instances: int, expected: int) -> None:
    assert sagemaker_instances(rate, capacity, min_instances) == expected


@pytest.mark.parametrize(
    ("rate", "capacity", "bad"),
    [
        pytest.param(1.0, 0.0, "capacity_rps", id="zero-capacity"),
        pytest.param(1.0, -3.0, "capacity_rps", id="negative-capacity"),
        pytest.param(-1.0, 10.0, "rate_rps", id="negative-rate"),
    ],
)
def test_sagemaker_instances_rejects_bad_input_naming_the_argument(rate: float, capacity: float, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        sagemaker_instances(rate, capacity)


# ------------------------------------------------------------------------------------------ cheapest_fleet

# "big" is the cheapest per request/s (0.075 $/rps·h against 0.1), but it comes in 40 rps lumps.
SMALL = InstanceType("ml.small", price_per_hour=1.0, capacity_rps=10.0)
BIG = InstanceType("ml.big", price_per_hour=3.0, capacity_rps=40.0)
CATALOG = (SMALL, BIG)


@pytest.mark.parametrize(
    ("rate", "min_instances", "expected"),
    [
        pytest.param(0.0, 1, Fleet("ml.small", 1, 1.0), id="idle-one-small"),
        pytest.param(5.0, 1, Fleet("ml.small", 1, 1.0), id="low-rate-small-wins-granularity"),
        pytest.param(20.0, 1, Fleet("ml.small", 2, 2.0), id="2-small-cheaper-than-1-big"),
        pytest.param(30.0, 1, Fleet("ml.big", 1, 3.0), id="price-tie-goes-to-larger-capacity"),
        pytest.param(40.0, 1, Fleet("ml.big", 1, 3.0), id="one-big-beats-4-small"),
        pytest.param(100.0, 1, Fleet("ml.big", 3, 9.0), id="high-rate-big-per-rps-wins"),
        pytest.param(5.0, 4, Fleet("ml.small", 4, 4.0), id="min-instances-favour-small"),
    ],
)
def test_cheapest_fleet_accounts_for_granularity(rate: float, min_instances: int, expected: Fleet) -> None:
    assert BIG.price_per_rps_hour < SMALL.price_per_rps_hour
    got = cheapest_fleet(rate, CATALOG, min_instances)
    assert got.instance_type == expected.instance_type
    assert got.instances == expected.instances
    assert got.price_per_hour == pytest.approx(expected.price_per_hour)


def test_cheapest_fleet_does_not_depend_on_catalog_order() -> None:
    for rate in (0.0, 5.0, 20.0, 30.0, 40.0, 100.0, 1234.5):
        assert cheapest_fleet(rate, CATALOG) == cheapest_fleet(rate, tuple(reversed(CATALOG)))


@pytest.mark.parametrize(
    ("rate", "catalog", "bad"),
    [
        pytest.param(10.0, (), "catalog", id="empty-catalog"),
        pytest.param(-1.0, CATALOG, "rate_rps", id="negative-rate"),
    ],
)
def test_cheapest_fleet_rejects_bad_input_naming_the_argument(rate: float, catalog: tuple, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        cheapest_fleet(rate, catalog)


# ---------------------------------------------------------------------------------------- type_switch_pays

CUR = Fleet("ml.a", 2, 4.0)


@pytest.mark.parametrize(
    ("current", "candidate", "horizon_s", "switch_s", "pays"),
    [
        # saving 1 $/h; switching bills the candidate (3 $/h) for 600 s = 0.5 $
        pytest.param(CUR, Fleet("ml.b", 1, 3.0), 3600, 600, True, id="save-1.00-vs-cost-0.50"),
        pytest.param(CUR, Fleet("ml.b", 1, 3.0), 1800, 600, False, id="tie-0.50-vs-0.50-does-not-pay"),
        pytest.param(CUR, Fleet("ml.b", 1, 3.0), 1801, 600, True, id="save-just-over-cost"),
        pytest.param(CUR, Fleet("ml.b", 1, 3.0), 1200, 600, False, id="save-0.33-vs-cost-0.50"),
        pytest.param(CUR, Fleet("ml.b", 1, 3.0), 3600, 0, True, id="free-switch-any-saving-pays"),
        pytest.param(CUR, Fleet("ml.b", 2, 4.0), 86_400, 0, False, id="no-saving-never-pays"),
        pytest.param(CUR, Fleet("ml.b", 3, 6.0), 86_400, 600, False, id="dearer-candidate-never-pays"),
        pytest.param(CUR, Fleet("ml.a", 1, 2.0), 86_400, 600, False, id="same-type-is-not-a-switch"),
        pytest.param(Fleet("ml.a", 10, 14.08), Fleet("ml.b", 6, 4.44), 7200, 600, True, id="gpu-rightsize"),
    ],
)
def test_type_switch_pays_when_saving_beats_switch_cost(
    current: Fleet, candidate: Fleet, horizon_s: float, switch_s: float, pays: bool
) -> None:
    assert type_switch_pays(current, candidate, horizon_s, switch_s) is pays


def test_type_switch_default_switch_time_is_ten_minutes() -> None:
    cand = Fleet("ml.b", 1, 3.0)
    assert type_switch_pays(CUR, cand, 1801) is type_switch_pays(CUR, cand, 1801, 600) is True
    assert type_switch_pays(CUR, cand, 1800) is False


# ------------------------------------------------------------------------------------- non-finite input

# Before the NaN/inf checks, NaN slipped past every `x < 0` test: erlang_b returned NaN,
# lambda_concurrency_for returned 1 environment, sagemaker_instances raised a bare ValueError/OverflowError.


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        pytest.param(lambda: erlang_b(3, math.nan), "load", id="erlang_b-nan-load"),
        pytest.param(lambda: erlang_b(3, math.inf), "load", id="erlang_b-inf-load"),
        pytest.param(lambda: lambda_concurrency_for(math.nan, 0.01), "load", id="lambda-nan-load"),
        pytest.param(lambda: lambda_concurrency_for(math.inf, 0.01), "load", id="lambda-inf-load"),
        pytest.param(lambda: lambda_concurrency_for(1.0, math.nan), "max_spill", id="lambda-nan-eps"),
        pytest.param(lambda: offered_load(math.nan, 0.1), "rate_rps", id="offered-load-nan-rate"),
        pytest.param(lambda: offered_load(10.0, math.inf), "duration_s", id="offered-load-inf-duration"),
        pytest.param(lambda: sagemaker_instances(math.nan, 10.0), "rate_rps", id="sagemaker-nan-rate"),
        pytest.param(lambda: sagemaker_instances(math.inf, 10.0), "rate_rps", id="sagemaker-inf-rate"),
        pytest.param(lambda: sagemaker_instances(10.0, math.nan), "capacity_rps", id="sagemaker-nan-capacity"),
        pytest.param(lambda: cheapest_fleet(math.nan, CATALOG), "rate_rps", id="cheapest-fleet-nan-rate"),
    ],
)
def test_non_finite_inputs_raise_value_error_naming_the_argument(call, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        call()


# ---------------------------------------------------------------------------------------------- properties

servers_st = st.integers(min_value=0, max_value=2000)
load_st = st.floats(min_value=0.0, max_value=5000.0, allow_nan=False, allow_infinity=False)
eps_st = st.floats(min_value=0.001, max_value=0.5, allow_nan=False)
lambda_load_st = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False, allow_infinity=False)


@PROPERTY
@given(servers=servers_st, load=st.floats(min_value=0.0, max_value=1e9, allow_nan=False))
def test_erlang_b_is_a_probability(servers: int, load: float) -> None:
    assert 0.0 <= erlang_b(servers, load) <= 1.0


@PROPERTY
@given(servers=servers_st, extra=st.integers(min_value=1, max_value=200), load=load_st)
def test_erlang_b_decreases_with_more_servers(servers: int, extra: int, load: float) -> None:
    assert erlang_b(servers + extra, load) <= erlang_b(servers, load)


@PROPERTY
@given(servers=servers_st, a=load_st, b=load_st)
def test_erlang_b_increases_with_more_load(servers: int, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert erlang_b(servers, lo) <= erlang_b(servers, hi)


@PROPERTY
@given(a=lambda_load_st, b=lambda_load_st, eps=eps_st)
def test_lambda_concurrency_is_monotone_in_load(a: float, b: float, eps: float) -> None:
    lo, hi = sorted((a, b))
    assert lambda_concurrency_for(lo, eps) <= lambda_concurrency_for(hi, eps)


@PROPERTY
@given(load=lambda_load_st, a=eps_st, b=eps_st)
def test_lambda_concurrency_is_monotone_in_eps(load: float, a: float, b: float) -> None:
    tight, loose = sorted((a, b))
    assert lambda_concurrency_for(load, tight) >= lambda_concurrency_for(load, loose)


@PROPERTY
@given(load=st.floats(min_value=1e-6, max_value=1000.0, allow_nan=False), eps=eps_st)
def test_lambda_concurrency_agrees_with_erlang_b(load: float, eps: float) -> None:
    p = lambda_concurrency_for(load, eps)
    assert erlang_b(p, load) <= eps < erlang_b(p - 1, load)
