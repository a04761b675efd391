"""The forecast service at fleet scale: staggered refits, a capped and timed run that stores each batch
as it is made, ForecastReady sized by bytes, and reads kept to what is due (issue 17)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import pytest

from forescale.adapters.events import RecordingPublisher
from forescale.adapters.state import InMemoryStateStore
from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.runtime.collect import DETAIL_BUDGET_BYTES
from forescale.runtime.forecast import ForecastService, refit_offset_s
from forescale.runtime.models import DemandSampleDetail, ForecastReadyDetail, TargetConfig

START = 1_795_392_000  # 2026-11-23 00:00 UTC
HOUR = 3600
DAY = 86_400


class FlatForecaster:
    """Deterministic: the mean of the history, flat; remembers which targets each call fitted."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def forecast(self, histories: Sequence[SeriesHistory], horizon_s: int) -> dict[str, Forecast]:
        self.calls.append([h.target for h in histories])
        if self.fail_on_call == len(self.calls):
            raise TimeoutError("the Lambda ran out of time")  # what a timeout looks like mid-run
        out = {}
        for h in histories:
            seen = [r for r in h.rates if r is not None]
            steps = max(1, horizon_s // h.step_s // 60)
            mean = sum(seen) / len(seen)
            out[h.target] = Forecast(h.target, h.end, h.end, h.step_s * 60, {0.5: (mean,) * steps}, "flat")
        return out


class CountingStore(InMemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.listings = 0
        self.history_reads: Counter[str] = Counter()

    def list_targets(self) -> list[TargetConfig]:
        self.listings += 1
        return super().list_targets()

    def load_history(self, name: str, start: int, end: int, step_s: int = 60) -> SeriesHistory:
        self.history_reads[name] += 1
        return super().load_history(name, start, end, step_s)


def fleet(store: InMemoryStateStore, names: Sequence[str], minutes: int, start: int = START) -> None:
    for name in names:
        # A function name is at most 64 characters; a target name may be longer.
        store.put_target(TargetConfig(name=name, kind="lambda-reserved", function_name=name[:64]))  # type: ignore[arg-type]
    store.put_samples(
        [DemandSampleDetail(target=n, timestamp=start + 60 * i, requests=600) for n in names for i in range(minutes)],
        ttl_s=DAY,
    )


def service(store: InMemoryStateStore, fc: FlatForecaster, **kw: object) -> ForecastService:
    return ForecastService(store, RecordingPublisher(), lambda: fc, history_days=1, min_history_s=HOUR, **kw)  # type: ignore[arg-type]


def test_given_targets_registered_together_when_staggered_then_each_refits_once_a_day_spread_over_the_day() -> None:
    names = [f"fn-{i:03d}" for i in range(120)]
    store, fc = InMemoryStateStore(), FlatForecaster()
    fleet(store, names, 2 * 60 + 1505)
    svc = service(store, fc, refit_spread_s=DAY)
    first = START + 2 * HOUR
    assert len(svc.run(first).refit) == 120  # never fitted: all at once (the cap bounds that)
    calls_before = len(fc.calls)
    # A slot less than min_refit_gap_s (an hour) after the first fit waits for the next day's slot.
    per_cycle = [len(svc.run(t).refit) for t in range(first + 300, first + DAY + HOUR, 300)]
    refits = [n for call in fc.calls[calls_before:] for n in call]
    assert sorted(refits) == names  # each exactly once in the next day (and hour)
    assert max(per_cycle) <= 6  # 120 over 288 cycles: spread, not 120 in one cycle
    offsets = {refit_offset_s(n, DAY) for n in names}
    assert len(offsets) > 100 and all(o % 60 == 0 and 0 <= o < DAY for o in offsets)


def test_given_no_stagger_then_the_daily_refit_is_replays_rule_all_together() -> None:
    names = [f"fn-{i:03d}" for i in range(30)]
    store, fc = InMemoryStateStore(), FlatForecaster()
    fleet(store, names, 2 * 60 + 1445)
    svc = service(store, fc)
    first = START + 2 * HOUR
    svc.run(first)
    assert [len(svc.run(t).refit) for t in (first + DAY - 300, first + DAY)] == [0, 30]


def test_given_more_due_than_the_cap_then_the_rest_wait_and_the_next_run_does_not_repeat_them() -> None:
    names = [f"fn-{i:03d}" for i in range(60)]
    store, fc = InMemoryStateStore(), FlatForecaster()
    fleet(store, names, 2 * 60)
    svc = service(store, fc, max_refits=25, batch_size=10)
    now = START + 2 * HOUR
    first = svc.run(now)
    assert (len(first.refit), len(first.deferred)) == (25, 35)
    assert [len(c) for c in fc.calls] == [10, 10, 5]
    second = svc.run(now + 300)
    assert set(second.refit).isdisjoint(first.refit) and len(second.refit) == 25
    assert len(svc.run(now + 600).refit) == 10


def test_given_a_run_cut_short_then_the_batches_made_before_are_stored_and_not_refit_again() -> None:
    names = [f"fn-{i:03d}" for i in range(30)]
    store, fc = InMemoryStateStore(), FlatForecaster(fail_on_call=2)
    fleet(store, names, 2 * 60)
    svc = service(store, fc, batch_size=10)
    now = START + 2 * HOUR
    with pytest.raises(TimeoutError):
        svc.run(now)
    stored = sorted(n for n in names if store.get_forecast(n) is not None)
    assert stored == fc.calls[0]  # the first batch survived the crash
    fc.fail_on_call = None
    again = svc.run(now + 300)
    assert sorted(again.refit) == sorted(set(names) - set(stored))


def test_given_little_time_left_then_no_new_batch_starts_and_the_rest_is_deferred() -> None:
    names = [f"fn-{i:03d}" for i in range(30)]
    store, fc = InMemoryStateStore(), FlatForecaster()
    fleet(store, names, 2 * 60)
    left = iter([100.0, 100.0, 10.0])  # seconds: enough for two batches, then under the reserve
    summary = service(store, fc, batch_size=10).run(START + 2 * HOUR, deadline=lambda: next(left))
    assert (len(summary.refit), len(summary.deferred)) == (20, 10)


def test_given_thousands_of_long_names_then_forecast_ready_details_stay_under_the_byte_budget() -> None:
    names = [f"team-{i:04d}-" + "x" * 60 for i in range(2500)]
    store, fc = InMemoryStateStore(), FlatForecaster()
    fleet(store, names, 61)
    pub = RecordingPublisher()
    svc = ForecastService(store, pub, lambda: fc, history_days=1, min_history_s=HOUR, batch_size=500)
    svc.run(START + HOUR + 60)
    details = [d for kind, d in pub.published if kind == "forescale.ForecastReady"]
    assert all(isinstance(d, ForecastReadyDetail) for d in details)
    sizes = [len(d.model_dump_json()) for d in details]
    assert len(details) > 2 and max(sizes) <= DETAIL_BUDGET_BYTES
    assert sum(sizes[:10]) <= 256 * 1024  # ten details fit one PutEvents request
    assert sorted(n for d in details for n in d.targets) == sorted(names)  # type: ignore[attr-defined]
    assert json.loads(details[0].model_dump_json())["models"]


def test_given_a_listing_interval_then_targets_are_listed_once_per_interval_not_every_run() -> None:
    store, fc = CountingStore(), FlatForecaster()
    fleet(store, ["a", "b"], 2 * 60)
    svc = service(store, fc, list_every_s=900)
    for k in range(6):
        svc.run(START + 2 * HOUR + 300 * k)
    assert store.listings == 2  # at 0 and 900 s


def test_given_a_target_removed_since_the_listing_then_no_orphan_forecast_is_stored() -> None:
    store, fc = InMemoryStateStore(), FlatForecaster()
    fleet(store, ["a", "b"], 2 * 60)
    svc = service(store, fc, list_every_s=900)
    svc.run(START + 60)  # listed; both too young
    store.delete_target("b")
    assert svc.run(START + 2 * HOUR).refit == ["a"]
    assert store.get_forecast("b") is None


def test_given_targets_without_samples_then_their_history_is_not_read_every_cycle() -> None:
    store, fc = CountingStore(), FlatForecaster()
    fleet(store, ["busy"], 2 * 60)
    store.put_target(TargetConfig(name="silent", kind="lambda-reserved", function_name="silent"))  # type: ignore[arg-type]
    svc = service(store, fc)
    for k in range(24):  # two hours of 5-minute cycles
        svc.run(START + 2 * HOUR + 300 * k)
    assert store.history_reads["silent"] == 2  # once, then again an hour later
    assert store.history_reads["busy"] == 1  # fitted once, not due again today
