"""The error budget: realized miss under the yardstick's model, capacity in effect, and the headroom controller."""

from __future__ import annotations

import math

import pytest

from forescale.domain.sizing import erlang_b
from forescale.domain.slo import SloParams, budget_left, controller_step, in_effect_segments, missed_requests
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
