"""The forecast service: refit the shard's targets that are due, store each forecast as it is made, emit ForecastReady.

The refit rule is `forescale replay`'s: every target is refit once `min_history_s` of history exists
and then every `refit_every_s` (daily); in between, a target whose planner saw drift (the plan
service calls `request_refit`) is refit early, at most once per `min_refit_gap_s`. A forecast for a
given history is the same whichever rule chose the moment (replay equality is about the history).

Fleet scale (issue 17):

- **Staggered.** With `refit_spread_s > 0` a target's daily refit falls at its own moment: the
  offset `crc32(name) mod refit_spread_s` into each `refit_every_s` period, so targets registered
  together do not all refit in the same cycle (10,000 targets over a day: about 35 a 5-minute
  cycle). A target is due once the latest of its slots is at least `min_refit_gap_s` after its
  forecast's issue time (so refits are one period apart, or up to `min_refit_gap_s` more after a
  first fit). `refit_spread_s = 0` keeps replay's rule (due `refit_every_s` after the last fit),
  which the demo and the replay-equality tests use.
- **Bounded.** A run refits at most `max_refits` targets and stops starting new batches when the
  remaining time (`deadline`, seconds, from the Lambda context) is under `reserve_s` plus what the
  next batch is expected to take. The most urgent go first: never fitted, then asked on drift, then
  the longest since their last forecast; the rest wait for the next cycle.
- **Stored as made.** Targets are fitted `batch_size` at a time and each batch's forecasts are
  stored before the next batch starts, so a run cut short by its timeout keeps what it made and
  the next run does not repeat it (those targets are no longer due).
- **Sharded by name.** A target's shard is `crc32(name) mod shard_count`; the registered targets
  are listed at most once per `list_every_s` per warm process (a new target needs a day of history
  before its first fit anyway; a first fit re-checks that the target is still registered).
- **Events sized by bytes.** ForecastReady details hold at most 1,000 names and `DETAIL_BUDGET_BYTES`
  of JSON, so ten fit one PutEvents request's 256 KB. Plan also picks a new forecast up on its next
  minute without the event, so a run cut short loses no forecast.
- **History read once per refit.** A target's 14-day history is read only when it is refit; a
  target found too young is not read again until it can have enough history.

This is the only runtime module that reaches statsforecast, and only through the `Forecaster`
handed to it (the adapter imports statsforecast lazily).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from forescale.adapters.events import EventPublisher
from forescale.adapters.state import StateStore
from forescale.domain.forecast import Forecaster, SeriesHistory
from forescale.runtime.collect import DETAIL_BUDGET_BYTES, MAX_TARGETS_PER_EVENT, byte_chunks
from forescale.runtime.models import ForecastReadyDetail, TargetConfig

DAY_S = 86_400
STEP_S = 60
BATCH_SIZE = 25  # targets per forecaster call: each batch is stored before the next starts
NO_SAMPLES_RECHECK_S = 3600  # a target without any sample has its history read again after this
RESERVE_S = 15.0  # seconds kept free before the Lambda timeout: the events and the idempotency record


def shard_of(name: str, shard_count: int) -> int:
    """A stable shard for a target name (crc32: the same in every process, unlike hash())."""
    return zlib.crc32(name.encode()) % shard_count


def refit_offset_s(name: str, spread_s: int) -> int:
    """The target's stable offset (s, whole steps) into each refit period; 0 when not staggered."""
    if spread_s <= 0:
        return 0
    offset = zlib.crc32(b"refit:" + name.encode()) % spread_s
    return offset - offset % STEP_S


@dataclass(slots=True)
class ForecastSummary:
    considered: int = 0
    refit: list[str] = field(default_factory=list)
    on_drift: list[str] = field(default_factory=list)
    too_little_history: list[str] = field(default_factory=list)
    no_forecast: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # due, left for the next run (cap or time budget)
    models: dict[str, str] = field(default_factory=dict)
    events: int = 0


class ForecastService:
    def __init__(
        self,
        store: StateStore,
        publisher: EventPublisher,
        forecaster: Callable[[], Forecaster],
        history_days: int = 14,
        horizon_s: int = DAY_S,
        refit_every_s: int = DAY_S,
        min_refit_gap_s: int = 3600,
        min_history_s: int = DAY_S,
        refit_spread_s: int = 0,
        max_refits: int | None = None,
        batch_size: int = BATCH_SIZE,
        list_every_s: int = 0,
        reserve_s: float = RESERVE_S,
    ) -> None:
        if not 0 <= refit_spread_s <= refit_every_s:
            raise ValueError(f"refit_spread_s must be in 0..refit_every_s ({refit_every_s}), got {refit_spread_s}")
        if batch_size < 1 or (max_refits is not None and max_refits < 1):
            raise ValueError(f"batch_size and max_refits must be >= 1, got {batch_size} and {max_refits}")
        self.store = store
        self.publisher = publisher
        self._make_forecaster = forecaster
        self._forecaster: Forecaster | None = None
        self._first_sample: dict[str, int] = {}  # per process: when a young target's history began (or may)
        self._listed: tuple[int, list[TargetConfig]] | None = None  # (when, targets)
        self.history_days = history_days
        self.horizon_s = horizon_s
        self.refit_every_s = refit_every_s
        self.min_refit_gap_s = min_refit_gap_s
        self.min_history_s = min_history_s
        self.refit_spread_s = refit_spread_s
        self.max_refits = max_refits
        self.batch_size = batch_size
        self.list_every_s = list_every_s
        self.reserve_s = reserve_s

    def run(
        self, now: int, shard: int = 0, shard_count: int = 1, deadline: Callable[[], float] | None = None
    ) -> ForecastSummary:
        """Refit this shard's due targets at epoch second `now`; `deadline()` is the time left (s)."""
        if not 0 <= shard < shard_count:
            raise ValueError(f"shard {shard} is outside 0..{shard_count - 1}")
        step_now = now - now % STEP_S
        summary = ForecastSummary()
        mine = [cfg.name for cfg in self._targets(step_now) if shard_of(cfg.name, shard_count) == shard]
        summary.considered = len(mine)
        metas = self.store.forecast_metas(mine) if mine else {}
        due: list[tuple[tuple[int, int], str, bool]] = []  # (priority, name, on drift)
        for name in mine:
            issued, asked = metas[name]
            if self._due(name, issued, step_now):
                due.append(((0, 0) if issued is None else (2, issued), name, False))
            elif self._drift_due(issued, asked, step_now):
                due.append(((1, issued or 0), name, True))
        due.sort()
        cap = len(due) if self.max_refits is None else self.max_refits
        per_target_s = 0.0
        i = 0
        while i < len(due) and len(summary.models) + len(summary.no_forecast) < cap:
            batch = due[i : i + min(self.batch_size, cap - len(summary.models) - len(summary.no_forecast))]
            if deadline is not None and deadline() < self.reserve_s + per_target_s * len(batch):
                break
            started = time.monotonic()
            self._refit(batch, metas, step_now, summary)
            per_target_s = max(per_target_s, (time.monotonic() - started) / len(batch))
            i += len(batch)
        summary.deferred = [name for _, name, _ in due[i:]]
        self._announce(step_now, shard, summary)
        return summary

    def _targets(self, step_now: int) -> list[TargetConfig]:
        """The registered targets, listed again only after `list_every_s` (0: every run)."""
        if self._listed is None or step_now - self._listed[0] >= self.list_every_s or step_now < self._listed[0]:
            self._listed = (step_now, self.store.list_targets())
        return self._listed[1]

    def _due(self, name: str, issued: int | None, step_now: int) -> bool:
        """Whether the daily refit is due (see the module docstring); a target never fitted always is."""
        if issued is None:
            return True
        if self.refit_spread_s == 0:
            return step_now - issued >= self.refit_every_s
        offset = refit_offset_s(name, self.refit_spread_s)
        latest_slot = step_now - (step_now - offset) % self.refit_every_s
        # A slot within min_refit_gap_s after the last fit is skipped (the next one is a period later),
        # so a fit at any moment does not pile its targets into the cycle an hour later.
        return latest_slot - issued >= self.min_refit_gap_s

    def _drift_due(self, issued: int | None, asked: int | None, step_now: int) -> bool:
        """Plan asked for a refit since the forecast was issued, at most once per `min_refit_gap_s`."""
        if issued is None or asked is None:
            return False
        return asked >= issued and step_now - issued >= self.min_refit_gap_s

    def _refit(
        self,
        batch: list[tuple[tuple[int, int], str, bool]],
        metas: dict[str, tuple[int | None, int | None]],
        step_now: int,
        summary: ForecastSummary,
    ) -> None:
        histories: list[SeriesHistory] = []
        drift: set[str] = set()
        for _, name, on_drift in batch:
            if metas[name][0] is None and self.list_every_s and self.store.get_target(name) is None:
                continue  # removed since the cached listing: storing a forecast would leave an orphan
            history = self._history(name, step_now)
            if history is None:
                summary.too_little_history.append(name)
                continue
            histories.append(history)
            if on_drift:
                drift.add(name)
        if not histories:
            return
        if self._forecaster is None:
            self._forecaster = self._make_forecaster()
        # Horizon: until the next daily refit plus a day, as replay does, so a forecast never runs out.
        fresh = self._forecaster.forecast(histories, self.refit_every_s + self.horizon_s)
        for h in histories:
            fc = fresh.get(h.target)
            if fc is None:
                summary.no_forecast.append(h.target)
                continue
            self.store.put_forecast(fc)
            summary.models[h.target] = fc.model
            (summary.on_drift if h.target in drift else summary.refit).append(h.target)

    def _announce(self, step_now: int, shard: int, summary: ForecastSummary) -> None:
        """ForecastReady for the stored forecasts, sized by bytes (see the module docstring)."""
        overhead = 120  # braces, keys, issued_at and shard

        def cost(name: str) -> int:
            # The name in `targets` ("n",) and in `models` ("n":"model",).
            return 2 * (len(name) + 3) + len(summary.models[name]) + 3

        chunks = byte_chunks(sorted(summary.models), cost, DETAIL_BUDGET_BYTES - overhead, MAX_TARGETS_PER_EVENT)
        details = [
            ForecastReadyDetail(
                issued_at=step_now, shard=shard, targets=tuple(c), models={n: summary.models[n] for n in c}
            )
            for c in chunks
        ]
        if details:
            self.publisher.publish("forescale.ForecastReady", details)
        summary.events = len(details)

    def _history(self, name: str, step_now: int) -> SeriesHistory | None:
        """The stored history before `step_now`, from its first sample; None if under `min_history_s`."""
        first_seen = self._first_sample.get(name)
        if first_seen is not None and step_now - first_seen < self.min_history_s:
            return None  # known young target: skip the read until it can have enough history
        start = step_now - self.history_days * DAY_S
        h = self.store.load_history(name, start, step_now, STEP_S)
        first = next((i for i, r in enumerate(h.rates) if r is not None), None)
        if first is None:
            # No sample yet: look again in an hour (history may also be imported), not every cycle.
            self._first_sample[name] = step_now - self.min_history_s + NO_SAMPLES_RECHECK_S
            return None
        if first > 0:
            self._first_sample[name] = h.start + first * STEP_S
        if (len(h.rates) - first) * STEP_S < self.min_history_s:
            return None
        return SeriesHistory(name, h.start + first * STEP_S, STEP_S, h.rates[first:])
