"""The forecast service: refit the shard's targets that are due, store their forecasts, emit ForecastReady.

The same refit rule as `forescale replay`: every target is refit once `min_history_s` of history
exists and then every `refit_every_s` (daily); in between, a target whose planner saw drift (the
plan service calls `request_refit`) is refit early, at most once per `min_refit_gap_s`. Running
every 5 minutes therefore costs a few reads per target unless a refit is due: scale comes from
refitting rarely, not from forecasting every target every cycle.

This is the only runtime module that reaches statsforecast, and only through the `Forecaster`
handed to it (the adapter imports statsforecast lazily).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from forescale.adapters.events import EventPublisher
from forescale.adapters.state import StateStore
from forescale.domain.forecast import Forecaster, SeriesHistory
from forescale.runtime.models import ForecastReadyDetail

DAY_S = 86_400
STEP_S = 60
MAX_TARGETS_PER_EVENT = 1000


def shard_of(name: str, shard_count: int) -> int:
    """A stable shard for a target name (crc32: the same in every process, unlike hash())."""
    return zlib.crc32(name.encode()) % shard_count


@dataclass(slots=True)
class ForecastSummary:
    considered: int = 0
    refit: list[str] = field(default_factory=list)
    on_drift: list[str] = field(default_factory=list)
    too_little_history: list[str] = field(default_factory=list)
    no_forecast: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)


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
    ) -> None:
        self.store = store
        self.publisher = publisher
        self._make_forecaster = forecaster
        self._forecaster: Forecaster | None = None
        self._first_sample: dict[str, int] = {}  # per process: when a young target's history began
        self.history_days = history_days
        self.horizon_s = horizon_s
        self.refit_every_s = refit_every_s
        self.min_refit_gap_s = min_refit_gap_s
        self.min_history_s = min_history_s

    def run(self, now: int, shard: int = 0, shard_count: int = 1) -> ForecastSummary:
        if not 0 <= shard < shard_count:
            raise ValueError(f"shard {shard} is outside 0..{shard_count - 1}")
        step_now = now - now % STEP_S
        summary = ForecastSummary()
        histories: list[SeriesHistory] = []
        mine = [cfg for cfg in self.store.list_targets() if shard_of(cfg.name, shard_count) == shard]
        metas = self.store.forecast_metas([cfg.name for cfg in mine]) if mine else {}
        for cfg in mine:
            summary.considered += 1
            issued, asked = metas[cfg.name]
            due = issued is None or step_now - issued >= self.refit_every_s
            drift = not due and asked is not None and asked >= issued and step_now - issued >= self.min_refit_gap_s  # type: ignore[operator]
            if not (due or drift):
                continue
            history = self._history(cfg.name, step_now)
            if history is None:
                summary.too_little_history.append(cfg.name)
                continue
            histories.append(history)
            (summary.refit if due else summary.on_drift).append(cfg.name)
        if not histories:
            return summary
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
        names = sorted(summary.models)
        details = [
            ForecastReadyDetail(
                issued_at=step_now,
                shard=shard,
                targets=tuple(names[i : i + MAX_TARGETS_PER_EVENT]),
                models={n: summary.models[n] for n in names[i : i + MAX_TARGETS_PER_EVENT]},
            )
            for i in range(0, len(names), MAX_TARGETS_PER_EVENT)
        ]
        if details:
            self.publisher.publish("forescale.ForecastReady", details)
        return summary

    def _history(self, name: str, step_now: int) -> SeriesHistory | None:
        """The stored history before `step_now`, from its first sample; None if under `min_history_s`."""
        first_seen = self._first_sample.get(name)
        if first_seen is not None and step_now - first_seen < self.min_history_s:
            return None  # known young target: skip the read until it can have enough history
        start = step_now - self.history_days * DAY_S
        h = self.store.load_history(name, start, step_now, STEP_S)
        first = next((i for i, r in enumerate(h.rates) if r is not None), None)
        if first is not None and first > 0:
            self._first_sample[name] = h.start + first * STEP_S
        if first is None or (len(h.rates) - first) * STEP_S < self.min_history_s:
            return None
        return SeriesHistory(name, h.start + first * STEP_S, STEP_S, h.rates[first:])
