"""Policies and the planner: what each recommends from a given history, as tables where possible."""

from __future__ import annotations

import pytest

from forescale.domain.decision import Recommendation
from forescale.domain.forecast import Forecast
from forescale.domain.guardrails import GuardrailSettings
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import (
    PredictivePolicy,
    ReactivePolicy,
    SeasonalNaivePolicy,
    StaticPolicy,
    TargetTrackingPolicy,
    make_policy,
    size_for_rate,
)
from forescale.domain.sizing import lambda_concurrency_for
from forescale.domain.targets import InstanceType, Target, TargetKind

STEP = 60
FN = Target("fn", TargetKind.LAMBDA_PROVISIONED, duration_s=0.2, max_capacity=5000)
GPU = Target(
    "gpu",
    TargetKind.SAGEMAKER_INSTANCE_TYPE,
    min_capacity=1,
    catalog=(InstanceType("ml.g5.xlarge", 1.4, 10.0), InstanceType("ml.g4dn.xlarge", 0.74, 4.0)),
)


def feed(policy, rates, start=0):
    for i, r in enumerate(rates):
        policy.observe(start + i * STEP, r)
    return start + len(rates) * STEP


@pytest.mark.parametrize(
    ("window", "headroom", "rates", "sized_rate"),
    [
        (1, 1.0, [10, 50, 20], 20),
        (3, 1.0, [10, 50, 20], 50),
        (3, 1.2, [10, 50, 20], 60),
        (2, 1.5, [0, 0, 0], 0),
    ],
)
def test_reactive_sizes_the_recent_peak_times_headroom(window, headroom, rates, sized_rate) -> None:
    p = ReactivePolicy(FN, STEP, window=window, headroom=headroom)
    now = feed(p, rates)
    rec = p.recommend(now, 0, 0, None)
    assert rec.capacity == size_for_rate(FN, sized_rate)
    assert "reactive" in rec.reason


def test_given_missing_samples_when_reactive_reads_history_then_they_hold_the_last_value() -> None:
    p = ReactivePolicy(FN, STEP, window=1, headroom=1.0)
    now = feed(p, [100, None, None])
    assert p.recommend(now, 0, 0, None).capacity == size_for_rate(FN, 100)


def test_static_never_lowers_capacity() -> None:
    p = StaticPolicy(FN, STEP, headroom=1.2)
    now = feed(p, [100, 10, 5])
    high = p.recommend(now, 0, 0, None).capacity
    assert high == size_for_rate(FN, 120)
    assert p.recommend(now, high + 7, high + 7, None).capacity == high + 7


def test_given_a_day_of_history_when_seasonal_naive_recommends_then_it_uses_yesterday() -> None:
    p = SeasonalNaivePolicy(FN, STEP, headroom=1.0)
    day = 86_400 // STEP
    rates = [10.0] * day
    rates[5] = 500.0  # yesterday, around the step that starts now+... within the lead window
    now = feed(p, rates)
    # Steps i-day .. i-day+lead(2): indices 0..2 of yesterday; index 5 is outside it.
    assert p.recommend(now, 0, 0, None).capacity == size_for_rate(FN, 10)
    now = feed(p, [10.0, 10.0, 10.0], start=now)
    assert p.recommend(now, 0, 0, None).capacity == size_for_rate(FN, 500)


def test_given_under_a_day_when_seasonal_naive_recommends_then_it_reacts() -> None:
    p = SeasonalNaivePolicy(FN, STEP)
    now = feed(p, [40.0] * 10)
    rec = p.recommend(now, 0, 0, None)
    assert rec.capacity == size_for_rate(FN, 60) and "under a day" in rec.reason


def test_given_saturated_utilisation_for_3_datapoints_when_target_tracking_then_it_scales_out() -> None:
    p = TargetTrackingPolicy(FN, STEP)
    assert p.recommend(0, 0, 0, None).capacity == 1  # initial
    cap = 1
    caps = []
    for i in range(1, 6):
        p.observe((i - 1) * STEP, 200.0)  # 40 concurrent on 1 environment: utilisation saturates at 100 %
        rec = p.recommend(i * STEP, cap, cap, None)
        caps.append(rec.capacity)
        cap = rec.capacity
    # No change for the first two datapoints; the third scales out, but only by 100 %/70 % (saturation).
    assert caps[:2] == [1, 1]
    assert caps[2] == 2


def test_given_low_utilisation_for_15_datapoints_when_target_tracking_then_it_scales_in() -> None:
    p = TargetTrackingPolicy(FN, STEP)
    p.recommend(0, 100, 100, None)
    caps = []
    for i in range(1, 17):
        p.observe((i - 1) * STEP, 50.0)  # 10 concurrent on 100: 10 %
        caps.append(p.recommend(i * STEP, 100, 100, None).capacity)
    assert caps[:14] == [100] * 14
    assert caps[14] == 15  # ceil(100 * 0.1 / 0.7)


def _flat_forecast(start: int, rate_path: list[float]) -> Forecast:
    path = tuple(rate_path)
    return Forecast("fn", start, start, STEP, {0.5: path, 0.9: tuple(r * 1.2 for r in path)}, "test")


def test_given_no_forecast_when_predictive_recommends_then_it_falls_back_to_reactive() -> None:
    p = PredictivePolicy(FN, STEP)
    now = feed(p, [100.0] * 10)
    rec = p.recommend(now, 0, 0, None)
    assert "reactive fallback (no forecast yet)" in rec.reason
    assert rec.capacity == size_for_rate(FN, 100 * p.params.default_headroom)


def _daily(step_of_day: int) -> float:
    """100 req/s, and 300 req/s for the hour from 12:00, every day."""
    return 300.0 if 720 <= step_of_day < 780 else 100.0


def _echo_forecast(now: int, horizon: int = 2 * 86_400) -> Forecast:
    path = tuple(_daily(((now + i * STEP) % 86_400) // STEP) for i in range(horizon // STEP))
    return Forecast("fn", now, now, STEP, {0.5: path, 0.9: path}, "echo")


def test_given_a_daily_ramp_the_forecast_knows_when_predictive_plans_then_capacity_is_ready_before_it() -> None:
    p = PredictivePolicy(FN, STEP)
    day = 86_400 // STEP
    now = 0
    caps = {}
    for i in range(2 * day + 700):
        if i == day:
            p.use_forecast(_echo_forecast(now))
        rec = p.recommend(now, 0, 0, None)
        caps[i] = rec
        p.observe(now, _daily(i % day))
        now += STEP
    # Day 3, two minutes before 12:00 (a scale-out needs 120 s): the capacity for 300 req/s is already asked for.
    i = 2 * day + 718
    for j in range(2 * day + 700, i + 1):
        now = j * STEP
        caps[j] = p.recommend(now, 0, 0, None)
        p.observe(now, _daily(j % day))
    rec = caps[i]
    assert "predictive [" in rec.reason
    assert rec.capacity >= size_for_rate(FN, 300.0)
    reactive = ReactivePolicy(FN, STEP, window=3, headroom=1.2)
    feed(reactive, [100.0] * 10)
    assert rec.capacity > reactive.recommend(now, 0, 0, None).capacity


def test_given_demand_above_the_upper_band_when_predictive_recommends_then_it_panics_and_asks_for_a_refit() -> None:
    p = PredictivePolicy(FN, STEP)
    now = feed(p, [100.0] * 40)
    first = p.recommend(now, 0, 0, None)
    assert not first.panic
    p.observe(now, 1000.0)
    rec = p.recommend(now + STEP, first.capacity, first.capacity, None)
    assert rec.panic and rec.refit and "PANIC" in rec.reason
    assert rec.capacity >= size_for_rate(FN, 1000.0 * p.params.panic_headroom)


def test_given_steady_errors_when_predictive_learns_then_headroom_comes_from_the_error_quantile() -> None:
    p = PredictivePolicy(FN, STEP)
    now = 0
    for i in range(100):  # each recommendation becomes an error once its horizon is observed
        p.recommend(now, 0, 0, None)
        p.observe(now, 100.0 if i % 2 else 130.0)
        now += STEP
    rec = p.recommend(now, 0, 0, None)
    assert "of its recent errors" in rec.reason
    # The horizon always holds a 130 step, so a calibrated expert asks for about 130.
    assert rec.demand_rps == pytest.approx(130.0, rel=0.05)


def test_given_a_cheaper_type_for_the_coming_day_when_predictive_rightsizes_then_it_switches_type() -> None:
    p = PredictivePolicy(GPU, STEP)
    now = feed(p, [2.0] * (86_400 // STEP))  # 2 req/s: 1 g4dn ($0.74/h) beats 1 g5 ($1.40/h)
    first = p.recommend(now, 1, 1, "ml.g5.xlarge")
    assert first.instance_type is None  # one evaluation is not enough (type_switch_confirmations=2)
    assert "type switch to ml.g4dn.xlarge held: 1 of 2 consecutive evaluations agree" in first.reason
    now = feed(p, [2.0] * (3600 // STEP), start=now)  # the next hourly right-size
    rec = p.recommend(now, 1, 1, "ml.g5.xlarge")
    assert rec.instance_type == "ml.g4dn.xlarge"
    assert "right-size" in rec.reason and "2 consecutive evaluations agree" in rec.reason


def test_make_policy_rejects_unknown_names_and_parameters() -> None:
    with pytest.raises(ValueError, match="unknown policy 'magic'"):
        make_policy("magic", FN, STEP)
    with pytest.raises(TypeError, match="windw"):
        make_policy("reactive", FN, STEP, windw=3)


def test_given_missing_data_when_the_planner_decides_then_it_never_scales_in() -> None:
    planner = Planner(FN, ReactivePolicy(FN, STEP, window=1, headroom=1.0))
    planner.observe(0, 500.0)
    high = planner.decide(StepInput(now=STEP))
    assert high.capacity == size_for_rate(FN, 500)
    planner.observe(STEP, None)
    d = planner.decide(StepInput(now=2 * STEP))
    assert d.capacity == high.capacity and d.data_missing and "missing" in d.reason
    planner.observe(2 * STEP, 10.0)
    d = planner.decide(StepInput(now=3 * STEP))
    assert d.capacity == size_for_rate(FN, 10)


def test_given_a_max_step_when_the_planner_decides_then_the_reason_names_the_guardrail() -> None:
    planner = Planner(FN, ReactivePolicy(FN, STEP, window=1, headroom=1.0), GuardrailSettings(max_step_up=10))
    planner.observe(0, 1000.0)
    d = planner.decide(StepInput(now=STEP))
    assert d.capacity == 10 and d.recommended == lambda_concurrency_for(200.0, 0.01)
    assert "max-step" in d.shaped_by and "max-step" in d.reason


def test_given_a_type_switch_in_flight_when_the_planner_decides_then_it_holds() -> None:
    planner = Planner(GPU, PredictivePolicy(GPU, STEP))
    assert planner.requested_type == "ml.g5.xlarge"  # cheapest per rps
    for i in range((86_400 + 3600) // STEP):
        planner.observe(i * STEP, 2.0)  # 2 req/s: one g4dn ($0.74/h) beats one g5 ($1.40/h)
        if i == 86_400 // STEP - 1:
            assert not planner.decide(StepInput(now=86_400)).type_change  # the first of two evaluations
    now = 86_400 + 3600
    d = planner.decide(StepInput(now=now))
    assert d.type_change and d.instance_type == "ml.g4dn.xlarge"
    planner.observe(now, 80.0)
    held = planner.decide(StepInput(now=now + STEP))
    assert not held.changed and "type switch in progress" in held.reason


def test_given_a_lead_shorter_than_the_step_when_replaying_predictive_then_it_prescales_one_lead_before_steps() -> None:
    from forescale.replay.engine import ReplayConfig, replay
    from forescale.replay.workload import generate

    trace = generate(days=1.2, step_s=600, seed=2, targets=["api-steady"])
    result = replay(trace, ReplayConfig(policy="predictive", keep_decisions=True))
    inside = [r for r in result.rows if (r.decided_at - trace.start) % trace.step_s]
    assert inside, "no pre-scale decision was made"
    # Lambda scale-out lead is 120 s: pre-scale decisions land exactly on the next step's start.
    assert all((r.decided_at - trace.start) % trace.step_s == trace.step_s - 120 for r in inside)
    prescales = [d for d in result.decisions if "pre-scale" in d.reason]
    assert prescales and all(d.capacity >= d.previous for d in prescales)


def test_given_a_lead_longer_than_the_step_when_planning_then_there_is_no_prescale() -> None:
    planner = Planner(FN, PredictivePolicy(FN, STEP))  # 120 s lead, 60 s steps
    assert planner.prescale_lead_s is None
    planner = Planner(FN, PredictivePolicy(FN, 600))
    assert planner.prescale_lead_s == 120


class _ScriptedPredictive(PredictivePolicy):
    """The predictive policy's calm capacity over scripted raw recommendations, one per call."""

    def __init__(self, target: Target, step_s: int, script: list[int]) -> None:
        super().__init__(target, step_s)
        self.script = script

    def _recommend(self, now: int, instance_type: str | None, offset: int) -> Recommendation:
        return Recommendation(self.script.pop(0), f"scripted at {now}", demand_rps=0.0)


@pytest.mark.parametrize(
    ("asked_at", "capacity"),
    [
        (600, 13),  # within the hold of the pre-scale's 13: held (no 10 → 13 → 11 churn)
        (600 + 1800, 11),  # the pre-scale is older than the 3-step hold: the scale-in goes through
    ],
)
def test_given_a_prescale_raise_when_a_later_step_asks_less_then_calm_capacity_holds_it_for_the_hold(
    asked_at: int, capacity: int
) -> None:
    # Given a Lambda target with a 120 s lead and 600 s steps: the step decision at 0 asks 10 and the
    # pre-scale at 480 raises to 13
    policy = _ScriptedPredictive(FN, 600, [10, 13, 11])
    assert policy.recommend(0, 0, 0, None).capacity == 10
    assert policy.prescale_recommend(480, 10, 10, None).capacity == 13
    # When a later step decision asks 11 (more than 10 % below 13)
    rec = policy.recommend(asked_at, 13, 13, None)
    # Then calm capacity holds 13 while the pre-scale is within the hold, and lets 11 through after it
    assert rec.capacity == capacity


@pytest.mark.parametrize(("floor_max", "ok"), [(3.0, True), (1.0, True), (0.5, False)])
def test_slo_floor_max_bounds_the_standing_floor_controller(floor_max: float, ok: bool) -> None:
    # The standing floor is at most (slo_floor_max - 1) × the active rate; below 1 it is no floor at all.
    if ok:
        assert (
            make_policy("predictive", FN, 600, slo_floor_max=floor_max).params.slo_floor_params.headroom_max
            == floor_max
        )  # type: ignore[attr-defined]
    else:
        with pytest.raises(ValueError, match="slo"):
            make_policy("predictive", FN, 600, slo_floor_max=floor_max)
