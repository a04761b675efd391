"""The plan service: restored planners decide exactly like an uninterrupted one, once per step."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from forescale.adapters.events import RecordingPublisher
from forescale.adapters.state import InMemoryStateStore
from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.domain.planner import StepInput
from forescale.replay.trace import Trace
from forescale.replay.workload import generate
from forescale.runtime.forecast import ForecastService, shard_of
from forescale.runtime.models import DecisionStatus, DemandSampleDetail, Mode, TargetConfig
from forescale.runtime.plan import PlanService, build_planner

START = 1_795_392_000  # 2026-11-23 00:00 UTC


def lambda_target(name: str = "api", mode: Mode = Mode.ACTIVE, **kw: object) -> TargetConfig:
    return TargetConfig(name=name, kind="lambda-provisioned", function_name=name, qualifier="live", mode=mode, **kw)  # type: ignore[arg-type]


def samples(name: str, rates: Sequence[float | None], start: int = START) -> list[DemandSampleDetail]:
    return [
        DemandSampleDetail(target=name, timestamp=start + 60 * i, requests=r * 60)
        for i, r in enumerate(rates)
        if r is not None
    ]


def put_step(store: InMemoryStateStore, trace: Trace, names: Sequence[str], i: int) -> None:
    """Store step `i` of the trace for each named target, as collect would once the minute has ended."""
    store.put_samples(
        [DemandSampleDetail(target=n, timestamp=trace.time(i), requests=trace.targets[n].requests[i]) for n in names],
        ttl_s=86_400,
    )


class StepForecaster:
    """A deterministic forecaster: tomorrow looks like the mean of the history, flat."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def forecast(self, histories: Sequence[SeriesHistory], horizon_s: int) -> dict[str, Forecast]:
        self.calls.append([h.target for h in histories])
        out = {}
        for h in histories:
            seen = [r for r in h.rates if r is not None]
            mean = sum(seen) / len(seen)
            steps = horizon_s // h.step_s
            out[h.target] = Forecast(
                h.target, h.end, h.end, h.step_s, {0.5: (mean,) * steps, 0.99: (mean * 2,) * steps}, "flat-mean"
            )
        return out


def test_given_a_day_of_minutes_when_planned_step_by_step_then_decisions_equal_an_uninterrupted_planner() -> None:
    trace = generate(days=0.3, step_s=60, seed=3, targets=["api-steady"])
    rates = [r / 60 for r in trace.targets["api-steady"].requests]
    cfg = lambda_target("api-steady", min_capacity=1, max_capacity=500)
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(cfg)
    service = PlanService(store, bus, warmup_s=3600)
    reference = build_planner(store.get_target("api-steady") or cfg)
    got, want = [], []
    for i in range(1, len(rates)):
        store.put_samples(samples("api-steady", [rates[i - 1]], START + 60 * (i - 1)), ttl_s=86_400)
        summary = service.plan(["api-steady"], START + 60 * i)
        got.extend((r.decided_at, r.capacity) for r in summary.records)
        reference.observe(START + 60 * (i - 1), rates[i - 1])
        d = reference.decide(StepInput(now=START + 60 * i))
        if d.changed:
            want.append((d.decided_at, d.capacity))
    assert len(want) > 10
    assert got == want
    assert [d.decided_at for d in store.list_decisions("api-steady", limit=10_000, newest_first=False)] == [
        t for t, _ in want
    ]
    assert {d for _, d in bus.published} == {d for _, d in bus.published if d.target == "api-steady"}  # type: ignore[attr-defined]


def test_given_the_same_step_twice_then_one_decision_and_the_second_run_decides_nothing() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target())
    store.put_samples(samples("api", [50.0] * 30), ttl_s=86_400)
    first = PlanService(store, bus).plan(["api"], START + 30 * 60)
    second = PlanService(store, bus).plan(["api"], START + 30 * 60)
    assert first.decided == 1 and first.changed == 1
    assert second.decided == 0 and second.duplicates == 1
    assert len(store.list_decisions("api")) == 1
    assert len(bus.published) == 1


def test_given_missing_samples_then_capacity_never_drops_and_the_reason_says_so() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target(min_capacity=2))
    store.put_samples(samples("api", [80.0] * 60), ttl_s=86_400)
    service = PlanService(store, bus)
    service.plan(["api"], START + 60 * 60)
    before = store.list_decisions("api")[0].capacity
    # Nothing collected for 20 minutes: every step holds.
    for k in range(61, 81):
        service.plan(["api"], START + 60 * k)
    decisions = store.list_decisions("api", limit=100)
    assert all(d.capacity >= before for d in decisions)
    planner_blob, _, observed = store.get_planner("api")
    assert planner_blob is not None and observed == START + 80 * 60


def test_given_dry_run_mode_then_decisions_are_recorded_as_dry_run() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target(mode=Mode.DRY_RUN))
    store.put_samples(samples("api", [50.0] * 10), ttl_s=86_400)
    PlanService(store, bus).plan(["api"], START + 600)
    (d,) = store.list_decisions("api")
    assert d.status is DecisionStatus.DRY_RUN and d.mode is Mode.DRY_RUN


def test_given_unknown_targets_then_they_are_reported_not_invented() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    summary = PlanService(store, bus).plan(["ghost"], START)
    assert summary.unknown_targets == ["ghost"] and not bus.published


def test_given_a_corrupt_snapshot_then_the_planner_warms_up_again_from_samples() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target())
    store.put_samples(samples("api", [40.0] * 120), ttl_s=86_400)
    store.put_planner("api", b"not a snapshot", START, 0)
    summary = PlanService(store, bus, warmup_s=3600).plan(["api"], START + 120 * 60)
    assert summary.fresh_planners == 1 and summary.decided == 1
    assert store.list_decisions("api")[0].capacity > 0


class TestForecastService:
    def setup_method(self) -> None:
        self.store, self.bus = InMemoryStateStore(), RecordingPublisher()
        self.store.put_target(lambda_target())
        self.fc = StepForecaster()
        self.service = ForecastService(self.store, self.bus, lambda: self.fc)

    def test_given_under_a_day_of_history_then_no_refit(self) -> None:
        self.store.put_samples(samples("api", [10.0] * 600), ttl_s=86_400)
        summary = self.service.run(START + 600 * 60)
        assert summary.too_little_history == ["api"] and not self.fc.calls

    def test_given_a_day_then_refit_once_per_day_and_early_only_on_drift_after_an_hour(self) -> None:
        self.store.put_samples(samples("api", [10.0] * (2 * 1440)), ttl_s=86_400)
        day = START + 1440 * 60
        assert self.service.run(day).refit == ["api"]
        assert self.store.get_forecast("api") is not None
        assert self.service.run(day + 300).refit == []  # not due
        self.store.request_refit("api", day + 600)
        assert self.service.run(day + 1200).on_drift == []  # drift, but within the hour
        assert self.service.run(day + 3600).on_drift == ["api"]
        assert self.store.forecast_meta("api")[1] is None  # a new forecast clears the request
        assert len(self.fc.calls) == 2
        (kind, detail), *_ = self.bus.published
        assert kind == "forescale.ForecastReady" and detail.targets == ("api",)  # type: ignore[attr-defined]

    def test_given_a_history_with_a_leading_gap_then_the_forecaster_sees_it_from_the_first_sample(self) -> None:
        self.store.put_samples(samples("api", [None] * 300 + [10.0] * 1500), ttl_s=86_400)
        self.service.run(START + 1800 * 60)
        assert self.fc.calls == [["api"]]
        assert self.store.get_forecast("api").start == START + 1800 * 60  # type: ignore[union-attr]


@pytest.mark.parametrize("count", [1, 3, 16])
def test_shards_partition_the_targets(count: int) -> None:
    names = [f"t{i}" for i in range(200)]
    shards = [[n for n in names if shard_of(n, count) == s] for s in range(count)]
    assert sorted(n for shard in shards for n in shard) == sorted(names)
    assert all(shards)


def test_given_the_same_workload_then_the_runtime_path_decides_exactly_what_replay_decides() -> None:
    """forecast + plan services over the stored samples == `forescale replay` (one code path)."""
    from forescale.replay.engine import ReplayConfig, replay

    trace = generate(days=1.15, step_s=60, seed=9, targets=["api-steady", "gpu-endpoint"])
    replayed = replay(trace, ReplayConfig(forecaster=StepForecaster()))
    want = [(r.decided_at, r.target, r.capacity, r.instance_type) for r in replayed.rows]

    store, bus = InMemoryStateStore(), RecordingPublisher()
    for name, tt in trace.targets.items():
        t = tt.to_target()
        kind = t.kind.value
        extra: dict[str, object] = (
            {"function_name": name, "qualifier": "live"}
            if t.is_lambda
            else {
                "endpoint_name": name,
                "variant_name": "AllTraffic",
                "catalog": [
                    {"name": c.name, "price_per_hour": c.price_per_hour, "capacity_rps": c.capacity_rps}
                    for c in t.catalog
                ],
                "instance_type": t.instance_type,
            }
        )
        store.put_target(
            TargetConfig(
                name=name,
                kind=kind,
                min_capacity=t.min_capacity,
                max_capacity=t.max_capacity,  # type: ignore[arg-type]
                slo_miss=t.slo_miss,
                duration_s=t.duration_s,
                memory_mb=t.memory_mb,
                guardrails={"stabilisation_window_s": 0},
                **extra,
            )
        )  # type: ignore[arg-type]
    forecasts = ForecastService(store, bus, StepForecaster)
    plans = PlanService(store, bus)
    gaps = trace.gap_flags()
    got = []
    names = sorted(trace.targets)
    for i in range(trace.steps):
        now = trace.time(i)
        if i and not gaps[i - 1]:
            put_step(store, trace, names, i - 1)
        forecasts.run(now)  # replay refits before it decides, so the runtime does too
        got.extend((r.decided_at, r.target, r.capacity, r.instance_type) for r in plans.plan(names, now).records)
    assert replayed.forecasts >= 1 and len(want) > 10
    assert sorted(got) == sorted(want)


def test_given_metrics_missing_for_hours_then_capacity_never_goes_below_the_floor_nor_drops() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target(min_capacity=3, max_capacity=100))
    store.put_samples(samples("api", [0.5] * 60), ttl_s=86_400)  # nearly idle, then nothing at all
    service = PlanService(store, bus)
    capacities = []
    for k in range(60, 60 + 4 * 60):
        service.plan(["api"], START + 60 * k)
        capacities.append(store.list_decisions("api", limit=1)[0].capacity if store.list_decisions("api") else None)
    decided = [c for c in capacities if c is not None]
    assert decided and min(decided) >= 3
    assert decided == sorted(decided)  # never scales in on missing data


def test_given_no_forecast_for_hours_then_the_reactive_path_still_follows_a_surge() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target(max_capacity=1000))
    # A forecast that ran out hours ago (the forecaster is down), then demand triples.
    stale = Forecast("api", START, START, 60, {0.5: (10.0,) * 60, 0.99: (12.0,) * 60}, "flat")
    store.put_forecast(stale)
    rates = [10.0] * 300 + [30.0] * 30
    store.put_samples(samples("api", rates), ttl_s=86_400)
    service = PlanService(store, bus, warmup_s=6 * 3600)
    service.plan(["api"], START + 300 * 60)
    before = store.list_decisions("api")[0].capacity
    for k in range(301, 331):
        service.plan(["api"], START + 60 * k)
    after = store.list_decisions("api")[0].capacity
    from forescale.domain.sizing import lambda_concurrency_for

    # Sized for at least the surge itself (Erlang B at the SLO for 30 req/s × 0.1 s), well above before.
    assert after >= lambda_concurrency_for(30 * 0.1, 0.01) > before


def test_given_react_lands_before_the_step_is_planned_then_the_step_is_still_decided() -> None:
    from forescale.runtime.models import DemandAboveForecastDetail
    from forescale.runtime.react import ReactService

    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target())
    store.put_samples(samples("api", [20.0] * 30), ttl_s=86_400)
    plans = PlanService(store, bus)
    plans.plan(["api"], START + 30 * 60)
    store.put_samples(samples("api", [90.0], START + 30 * 60), ttl_s=86_400)
    # EventBridge does not order events: the reaction to minute 30 arrives before minute 31 is planned.
    ReactService(store, bus).on_demand_above(
        [DemandAboveForecastDetail(target="api", timestamp=START + 30 * 60, observed_rps=90.0, upper_rps=30.0)]
    )
    summary = plans.plan(["api"], START + 31 * 60)
    assert summary.decided == 1 and summary.duplicates == 0


@pytest.mark.parametrize(
    ("mode", "aws_has", "paused", "minutes_since_change", "in_flight", "reasserts"),
    [
        (Mode.ACTIVE, 3, False, 5, False, True),  # refused, paused then, or changed behind our back
        (Mode.ACTIVE, None, False, 5, False, False),  # never read from AWS: nothing to compare
        (Mode.ACTIVE, 3, True, 5, False, False),  # paused: nothing is applied; resume brings it back
        (Mode.ACTIVE, 3, False, 2, False, False),  # act is still on it (lease + a sweep)
        (Mode.ACTIVE, 3, False, 5, True, False),  # an operation in flight will finish it
        (Mode.DRY_RUN, 3, False, 5, False, False),  # a shadow plan is never applied
        (Mode.ACTIVE, "planned", False, 5, False, False),  # in effect
    ],
)
def test_given_aws_without_the_plan_then_plan_asserts_it_again_only_when_nothing_else_will(
    mode: Mode, aws_has: int | str | None, paused: bool, minutes_since_change: int, in_flight: bool, reasserts: bool
) -> None:
    from forescale.runtime.models import AppliedState, InFlightOperation

    cfg = lambda_target("api", mode=mode, min_capacity=1, max_capacity=500)
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(cfg)
    store.put_samples(samples("api", [100.0] * 30), ttl_s=86_400)
    service = PlanService(store, bus, warmup_s=3600)
    service.plan(["api"], START + 30 * 60)  # decides a scale-out from the floor
    (first,) = store.list_decisions("api")
    planned = first.capacity
    capacity = planned if aws_has == "planned" else aws_has
    op = (
        InFlightOperation(
            decision_id=first.decision_id, operation="provisioned-concurrency", capacity=planned, started_at=START
        )
        if in_flight
        else None
    )
    store.put_state(AppliedState(target="api", capacity=capacity, in_flight=op))  # type: ignore[arg-type]
    store.set_paused(paused, "incident" if paused else "", START)
    later = START + 30 * 60 + 60 * minutes_since_change
    store.put_samples(samples("api", [100.0] * minutes_since_change, start=START + 30 * 60), ttl_s=86_400)
    summary = service.plan(["api"], later)
    assert (summary.reasserted == ["api"]) is reasserts
    newest = store.list_decisions("api", limit=1)[0]
    if reasserts:
        assert newest.decided_at == later - later % 60 and newest.capacity == planned and newest.previous == 3
        assert newest.reason.startswith("AWS has 3, not the planned")
    else:
        assert newest.decision_id == first.decision_id
