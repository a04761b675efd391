"""The error budget: realized miss under the yardstick's model, capacity in effect, and the headroom controller."""

from __future__ import annotations

import math

import pytest

from forescale.domain.sizing import erlang_b
from forescale.domain.slo import (
    SloParams,
    active_level_step,
    budget_left,
    controllable_missed,
    controller_step,
    in_effect_segments,
    lever_segments,
    missed_requests,
    overlay,
)
from forescale.domain.targets import InstanceType, Target, TargetKind

FN = Target(name="fn", kind=TargetKind.LAMBDA_PROVISIONED, duration_s=0.5)
EP = Target(name="ep", kind=TargetKind.SAGEMAKER_INSTANCE_COUNT, catalog=(InstanceType("ml.g5.xlarge", 1.408, 10.0),))


@pytest.mark.parametrize(
    ("target", "capacity", "rate", "seconds", "expected"),
    [
        (FN, 0, 10.0, 60, 600.0),  # nothing provisioned: every request spills
        (FN, 5, 10.0, 60, 600 * erlang_b(5, 5.0)),  # m = 10 req/s × 0.5 s = 5 busy environments
        (FN, 50, 10.0, 60, 600 * erlang_b(50, 5.0)),
        (FN, 5, 0.0, 60, 0.0),
        (EP, 2, 25.0, 60, (25 - 20) * 60),  # two instances serve 20 req/s; 5 req/s above it miss
        (EP, 3, 25.0, 60, 0.0),
        (EP, 0, 4.0, 30, 120.0),
    ],
)
def test_missed_requests_follow_the_yardstick_model(
    target: Target, capacity: int, rate: float, seconds: int, expected: float
) -> None:
    got = missed_requests(target, capacity, rate, seconds, 10.0)
    assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize(
    ("current", "ruling", "landings", "expected"),
    [
        (4, 0, [], [(600, 4)]),
        # A scale-out decided at 0 lands 120 s into the step.
        (4, 0, [(120.0, 0.0, 9.0)], [(120, 4), (480, 9)]),
        # Landed before the step: in effect from its start.
        (4, 0, [(-10.0, 0.0, 9.0)], [(600, 9)]),
        # An older request landing after a newer one has no effect (the latest-decided rules).
        (4, 0, [(60.0, 30.0, 2.0), (120.0, 0.0, 9.0)], [(60, 4), (540, 2)]),
        # Landing at or after the step's end: not in this step.
        (4, 0, [(600.0, 10.0, 9.0)], [(600, 4)]),
    ],
)
def test_in_effect_segments(
    current: int, ruling: float, landings: list[tuple[float, float, float]], expected: list[tuple[int, int]]
) -> None:
    assert in_effect_segments(0, 600, current, ruling, landings) == expected


P = SloParams(gain=0.05, max_excess=10.0, headroom_min=0.7, headroom_max=3.0)


@pytest.mark.parametrize(
    ("missed", "requests", "weight", "expected"),
    [
        (1.0, 100.0, 1.0, 0.0),  # exactly at the SLO (1 %): no move
        (0.0, 100.0, 1.0, -0.05),  # under: down by the gain
        (3.0, 100.0, 1.0, 0.10),  # three SLOs: up by 2 gains
        (3.0, 100.0, 2.0, 0.20),  # a busy step counts double
        (90.0, 100.0, 1.0, 0.45),  # 90 SLOs count as max_excess (10)
        (5.0, 0.0, 1.0, 0.0),  # no requests: nothing to learn
    ],
)
def test_controller_step_moves_by_the_excess_over_the_slo(
    missed: float, requests: float, weight: float, expected: float
) -> None:
    assert math.isclose(controller_step(0.0, missed, requests, weight, 0.01, P), expected, abs_tol=1e-12)


def test_controller_stays_within_its_bounds() -> None:
    z = 0.0
    for _ in range(1000):
        z = controller_step(z, 50.0, 100.0, 1.0, 0.01, P)
    assert z == pytest.approx(math.log(3.0))
    for _ in range(1000):
        z = controller_step(z, 0.0, 100.0, 1.0, 0.01, P)
    assert z == pytest.approx(math.log(0.7))


def test_given_misses_at_the_slo_on_average_then_the_controller_returns_to_where_it_started() -> None:
    # Request-weighted and uncapped, the controller integrates the budget itself: 1 step at 5 SLOs
    # and 4 steps at none spend exactly the budget of 5 steps.
    p = SloParams(gain=0.01, max_excess=100.0)
    z = 0.0
    for missed in (5.0, 0.0, 0.0, 0.0, 0.0):
        z = controller_step(z, missed, 100.0, 1.0, 0.01, p)
    assert z == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("missed", "requests", "left"),
    [
        (0.0, 1000.0, 1.0),
        (5.0, 1000.0, 0.5),
        (20.0, 1000.0, -1.0),
        (3.0, 0.0, 1.0),
        # Subnormal request counts: no ZeroDivisionError, no inf.
        (0.0, 2.96e-322, 1.0),
        (1e-300, 5e-324, -99.0),
    ],
)
def test_budget_left(missed: float, requests: float, left: float) -> None:
    assert budget_left(missed, requests, 0.01) == pytest.approx(left)


@pytest.mark.parametrize(
    "bad", [{"gain": -0.1}, {"gain": 1.0}, {"window_s": 0}, {"headroom_min": 1.2}, {"headroom_max": 0.9}]
)
def test_bad_params_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="slo"):
        SloParams(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("current", "levers", "expected"),
    [
        # No decision could have landed yet: the whole step is out of the levers' reach.
        (None, [], [(600, None)]),
        # The first decision could land 360 s into the step: out of reach before, its levers after.
        (None, [(360.0, 9.0)], [(360, None), (240, 9)]),
        (5, [(120.0, 9.0), (480.0, 7.0)], [(120, 5), (360, 9), (120, 7)]),
        # Could land at or before the step's start: in effect from it; at or after its end: not in it.
        (5, [(0.0, 9.0)], [(600, 9)]),
        (5, [(600.0, 9.0)], [(600, 5)]),
    ],
)
def test_lever_segments(
    current: int | None, levers: list[tuple[float, float]], expected: list[tuple[int, int | None]]
) -> None:
    assert lever_segments(0, 600, current, levers) == expected


@pytest.mark.parametrize(
    ("capacity", "lever", "expected"),
    [
        ([(600, 4)], [(600, 9)], [(600, 4, 9)]),
        ([(120, 4), (480, 9)], [(360, None), (240, 12)], [(120, 4, None), (240, 9, None), (240, 9, 12)]),
        ([(300, 4), (300, 5)], [(300, 7), (300, 8)], [(300, 4, 7), (300, 5, 8)]),
    ],
)
def test_overlay_merges_two_segmentations_of_a_step(
    capacity: list[tuple[int, int]], lever: list[tuple[int, int | None]], expected: list[tuple[int, int, int | None]]
) -> None:
    assert overlay(capacity, lever) == expected


@pytest.mark.parametrize(
    ("target", "pieces", "rate", "expected"),
    [
        # SageMaker, 10 req/s per instance: max(0, min(demand, the levers' capacity) − capacity) × seconds.
        (EP, [(60, 2, 3)], 25.0, (25 - 20) * 60),  # the levers serve all of it
        (EP, [(60, 2, 3)], 45.0, (30 - 20) * 60),  # a surge beyond the levers: only up to them
        (EP, [(60, 2, 2)], 45.0, 0.0),  # the levers at their maximum asked no more
        (EP, [(60, 3, 2)], 45.0, 0.0),  # asked less than was in effect: nothing (never negative)
        (EP, [(60, 0, None)], 45.0, 0.0),  # no decision could have landed: out of reach
        (EP, [(30, 0, None), (30, 2, 3)], 25.0, (25 - 20) * 30),
        # Lambda: the Erlang B difference (m = 5 busy environments).
        (FN, [(60, 5, 8)], 10.0, 600 * (erlang_b(5, 5.0) - erlang_b(8, 5.0))),
    ],
)
def test_controllable_missed_is_what_the_levers_would_have_served(
    target: Target, pieces: list[tuple[int, int, int | None]], rate: float, expected: float
) -> None:
    got = controllable_missed(target, pieces, rate, 10.0)
    assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize(
    ("level", "rate", "quantile", "expected"),
    [
        (0.0, 7.0, 0.9, 7.0),  # the first non-zero rate starts it
        (10.0, 20.0, 0.0, 10.2),  # quantile 0: the moving average (weight 0.02)
        (10.0, 20.0, 0.9, 10.0 * math.exp(0.09)),  # above the estimate: up by 0.1 × 0.9 in log
        (10.0, 5.0, 0.9, 10.0 * math.exp(-0.01)),  # at or below it: down by 0.1 × 0.1
        (10.0, 10.0, 0.9, 10.0 * math.exp(-0.01)),
    ],
)
def test_active_level_step(level: float, rate: float, quantile: float, expected: float) -> None:
    assert active_level_step(level, rate, quantile) == pytest.approx(expected, rel=1e-12)


def test_given_a_bursty_target_the_active_level_settles_at_its_burst_not_its_mean() -> None:
    # Given a client at 2 req/s that bursts to 60 req/s in one step of five (mean 13.6 req/s)
    level = 0.0
    for i in range(2000):
        level = active_level_step(level, 60.0 if i % 5 == 0 else 2.0, 0.9)
    mean = 0.0
    for i in range(2000):
        mean = active_level_step(mean, 60.0 if i % 5 == 0 else 2.0, 0.0)
    # Then the 0.9 quantile sits at the burst level (a fifth of the rates are 60), the mean far below it
    assert 40 < level <= 66
    assert mean < 20
