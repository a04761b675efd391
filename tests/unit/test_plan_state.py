"""plan's state written on change: a warm process keeps its planners, a cold one rebuilds exactly the
same planner from the checkpoint and the journal; bad values and failing targets stay contained."""

from __future__ import annotations

import math

import pytest

from forescale.adapters.events import RecordingPublisher
from forescale.adapters.state import InMemoryStateStore
from forescale.domain.planner import Planner
from forescale.replay.workload import generate
from forescale.runtime.forecast import ForecastService
from forescale.runtime.models import AppliedState
from forescale.runtime.plan import (
    CHECKPOINT_EVERY_STEPS,
    MAX_JOURNAL_STEPS,
    PlannerCache,
    PlanService,
    decode_journal,
)
from tests.unit.test_plan_service import START, StepForecaster, lambda_target, put_step, samples


def _run(cold_every: int | None, names: list[str], days: float = 1.15) -> tuple[list[tuple[int, str, int]], int]:
    """Plan a generated workload minute by minute with forecasts; with `cold_every`, every that many
    minutes the plan process is replaced by a new one (empty caches). Returns (decisions, journal
    steps replayed by the cold starts)."""
    trace = generate(days=days, step_s=60, seed=9, targets=names)
    store, bus = InMemoryStateStore(), RecordingPublisher()
    for n in names:
        store.put_target(lambda_target(n, min_capacity=1, max_capacity=500, guardrails={"stabilisation_window_s": 0}))
    forecasts = ForecastService(store, bus, StepForecaster)
    plans = PlanService(store, bus)
    got: list[tuple[int, str, int]] = []
    replayed = 0
    for i in range(trace.steps):
        now = trace.time(i)
        if i:
            put_step(store, trace, names, i - 1)
        forecasts.run(now)
        if cold_every and i % cold_every == 0:
            replayed += sum(len(decode_journal(store.get_planner_record(n).journal)) for n in names)
            plans = PlanService(store, bus)  # a cold start: nothing held in memory
        got.extend((r.decided_at, r.target, r.capacity) for r in plans.plan(names, now).records)
    return got, replayed


def test_given_cold_restarts_mid_run_then_decisions_equal_a_plan_that_stayed_warm() -> None:
    names = ["api-steady", "batch-spiky", "sparse-hook"]
    warm, _ = _run(None, names)
    cold, replayed = _run(7, names)
    assert len(warm) > 10
    assert replayed > 100  # the cold starts really rebuilt planners from checkpoints plus journals
    assert cold == warm


def test_given_a_warm_plan_then_the_snapshot_is_checkpointed_rarely_and_the_journal_stays_short() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target())
    minutes = 3 * CHECKPOINT_EVERY_STEPS
    store.put_samples(samples("api", [50.0 + (i % 7) for i in range(minutes + 1)]), ttl_s=86_400)
    service = PlanService(store, bus, warmup_s=3600)
    checkpoints = restored = 0
    longest = 0
    for k in range(1, minutes + 1):
        summary = service.plan(["api"], START + 60 * k)
        checkpoints += summary.checkpoints
        restored += summary.restored
        longest = max(longest, len(decode_journal(store.get_planner_record("api").journal)))
    # The first step (a fresh planner) and then once per CHECKPOINT_EVERY_STEPS: not every minute.
    assert checkpoints <= 1 + minutes // CHECKPOINT_EVERY_STEPS + 1
    assert restored == 1  # only the first run built the planner; the others used the one held
    assert 0 < longest < MAX_JOURNAL_STEPS
    assert store.get_planner_record("api").version == minutes  # still one optimistic write per step


def test_given_another_process_wrote_then_the_held_planner_is_not_used() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target())
    store.put_samples(samples("api", [50.0] * 40), ttl_s=86_400)
    mine, theirs = PlanService(store, bus, warmup_s=3600), PlanService(store, bus, warmup_s=3600)
    mine.plan(["api"], START + 60 * 30)
    theirs.plan(["api"], START + 60 * 31)  # another process planned the next step
    summary = mine.plan(["api"], START + 60 * 32)
    assert summary.restored == 1 and summary.decided == 1 and not summary.conflicts


@pytest.mark.parametrize("bad", [-5.0, math.nan])
def test_given_a_bad_stored_sample_then_it_is_missing_data_and_every_target_is_planned(bad: float) -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    names = ["a", "b", "c"]
    for n in names:
        store.put_target(lambda_target(n))
        store.put_samples(samples(n, [80.0] * 30), ttl_s=86_400)
    store.samples["b"][START + 60 * 29]["r"] = bad  # a value no collector should have stored
    summary = PlanService(store, bus, warmup_s=3600).plan(names, START + 60 * 30)
    assert summary.decided == 3 and not summary.failed
    assert summary.bad_samples == [f"b@{START + 60 * 29}"]
    assert all(store.get_planner_record(n).observed_until == START + 60 * 30 for n in names)
    (b,) = store.list_decisions("b")
    assert b.capacity >= 8  # the bad minute was held at the last good value, not read as zero


def test_given_one_target_fails_to_plan_then_it_is_named_and_the_others_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    names = ["a", "b", "c"]
    for n in names:
        store.put_target(lambda_target(n))
        store.put_samples(samples(n, [80.0] * 30), ttl_s=86_400)
    real = Planner.decide

    def decide(self: Planner, step: object) -> object:
        if self.target.name == "a":
            raise RuntimeError("boom")
        return real(self, step)  # type: ignore[arg-type]

    monkeypatch.setattr(Planner, "decide", decide)
    summary = PlanService(store, bus, warmup_s=3600).plan(names, START + 60 * 30)
    assert summary.failed == ["a"]
    assert summary.decided == 2 and {d.target for t, d in bus.published if t == "forescale.DecisionMade"} == {"b", "c"}


def test_given_a_lost_snapshot_then_the_fresh_planner_starts_from_what_aws_has() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target(min_capacity=1, guardrails={"max_step_down": 1, "stabilisation_window_s": 0}))
    store.put_state(AppliedState(target="api", capacity=32))
    store.put_samples(samples("api", [20.0] * 30), ttl_s=86_400)  # demand for far fewer than 32
    summary = PlanService(store, bus, warmup_s=3600).plan(["api"], START + 60 * 30)
    assert summary.fresh_planners == 1
    (d,) = store.list_decisions("api")
    assert (d.previous, d.capacity) == (32, 31)  # one step down from what AWS has, not 0 → 11


def test_given_a_lost_snapshot_then_the_stabilisation_window_holds_what_aws_has() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target(min_capacity=1, guardrails={"stabilisation_window_s": 300}))
    store.put_state(AppliedState(target="api", capacity=32))
    store.put_samples(samples("api", [20.0] * 40), ttl_s=86_400)
    service = PlanService(store, bus, warmup_s=3600)
    for k in range(30, 36):
        service.plan(["api"], START + 60 * k)
    (d,) = store.list_decisions("api")  # no scale-in until the window has passed
    assert d.decided_at == START + 60 * 35 and d.previous == 32 and d.capacity < 32


def test_given_an_unreadable_snapshot_then_it_is_reported_by_name() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target(guardrails={"max_step_down": 1, "stabilisation_window_s": 0}))
    store.put_state(AppliedState(target="api", capacity=12))
    # Demand well below 12 environments: a scale-in that calm capacity lets through (more than 10 %).
    store.put_samples(samples("api", [10.0] * 120), ttl_s=86_400)
    store.put_planner("api", b"not a snapshot", START, 0)
    summary = PlanService(store, bus, warmup_s=3600).plan(["api"], START + 120 * 60)
    assert summary.snapshot_errors == ["api"] and summary.fresh_planners == 1
    assert [(d.previous, d.capacity) for d in store.list_decisions("api")] == [(12, 11)]


def test_the_planner_cache_is_bounded_and_keeps_a_fixed_share() -> None:
    cache = PlannerCache(max_planners=2)
    planner = object()
    for n in ("a", "b", "c"):
        cache.keep(n, (1, "t", 1), planner, [])  # type: ignore[arg-type]
    assert len(cache) == 2 and cache.take("c", (1, "t", 1)) is None
    assert cache.take("a", (2, "t", 1)) is None  # another version: not used, and dropped
    assert cache.take("a", (1, "t", 1)) is None and cache.take("b", (1, "t", 1)) is not None


def test_given_a_lost_checkpoint_then_the_target_is_planned_fresh_and_named_not_skipped_forever() -> None:
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(lambda_target())
    store.put_samples(samples("api", [40.0] * 40), ttl_s=86_400)
    PlanService(store, bus, warmup_s=3600).plan(["api"], START + 60 * 30)
    del store.checkpoints["api"]  # the hot record says version 1; its checkpoint is gone
    summary = PlanService(store, bus, warmup_s=3600).plan(["api"], START + 60 * 31)
    assert summary.snapshot_errors == ["api"] and summary.decided == 1 and not summary.conflicts


def test_given_a_stored_planner_that_decided_in_the_future_then_it_is_not_restored() -> None:
    # A planner "from" the future (a forged reaction stored before events were time-bounded) would make
    # every real step look decided already (`last_decided_at >= step`) and freeze the target.
    from forescale.domain import snapshot
    from forescale.domain.planner import StepInput
    from forescale.runtime.plan import build_planner

    cfg = lambda_target(guardrails={"stabilisation_window_s": 0})
    store, bus = InMemoryStateStore(), RecordingPublisher()
    store.put_target(cfg)
    store.put_state(AppliedState(target="api", capacity=12))
    store.put_samples(samples("api", [10.0] * 120), ttl_s=86_400)
    forged = build_planner(cfg)
    forged.decide(StepInput(now=START + 5 * 365 * 86_400))
    store.put_planner("api", snapshot.dump(forged), START, 0)
    summary = PlanService(store, bus, warmup_s=3600).plan(["api"], START + 120 * 60)
    assert summary.snapshot_errors == ["api"] and summary.fresh_planners == 1
    assert summary.decided == 1


def test_given_a_target_removed_and_added_again_then_its_guardrails_start_from_what_aws_had() -> None:
    # Issue 15 item 5: `targets remove` + `add` produced 0 -> 11 and AWS went 32 -> 11 in one step.
    store, bus = InMemoryStateStore(), RecordingPublisher()
    cfg = lambda_target(guardrails={"max_step_down": 1, "stabilisation_window_s": 0})
    store.put_target(cfg)
    store.put_state(AppliedState(target="api", capacity=32))
    store.put_samples(samples("api", [10.0] * 120), ttl_s=86_400)
    store.delete_target("api")
    store.put_target(cfg)
    summary = PlanService(store, bus, warmup_s=3600).plan(["api"], START + 120 * 60)
    assert summary.fresh_planners == 1
    (d,) = store.list_decisions("api")
    assert (d.previous, d.capacity) == (32, 31)
