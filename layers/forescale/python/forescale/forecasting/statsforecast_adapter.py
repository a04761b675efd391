"""Per-target request-rate forecasts (requests/s) with statsforecast: refit rarely, update cheaply.

Two paths, one output (docs/forecasting.md has the why and the numbers):

- **Refit** (when a target's state is `refit_every_s` old in data time, daily by default, when it
  has none, or when the caller names it in `refit`, e.g. on drift): models are fitted on bucket
  means (1 h by default), not on the raw 60 s / 600 s grid: a daily season of 1440 raw steps is too
  long for ETS and too slow for everything. The daily season is 24 buckets; MSTL also gets a weekly
  one once three weeks of data exist. Each target's model is chosen by rolling-origin MASE on its
  own buckets (3 origins, one season ahead each) and kept for `reselect_every_s`; a refit fits the
  chosen model again, one batched `StatsForecast` call per distinct model, and replays the update
  rule below over its rolling-origin windows to calibrate it. The result is plain data per target
  (`TargetState`): a two-day bucket path, the mean intra-bucket profile, and the rule's parameters
  and error quantiles, measured out of sample.
- **Update** (every other call; numpy only, vectorised over all targets): the stored path × profile
  is the baseline. Its level is re-anchored to the last `recent_s` of raw data: the log ratio of
  shifted sums, each sample capped so one spike cannot move it much. Of that correction, a share per
  lead-time band is applied (chosen per target at the refit from 0, ¼, ½, ¾, 1: typically ¾ five
  minutes ahead, a tenth a day ahead), and all of whatever exceeds its usual size (a real level
  change). Quantile q at a step is (point + c) · exp(e_q) − c: e_q is the calibrated log-error
  quantile for that lead time (interpolated between bands), c a shift of 20 % of the mean rate that
  keeps near-zero rates sane.

statsforecast, pandas and scipy load only on the refit path; an update imports numpy alone, so a
fresh process that imports stored state forecasts in a fraction of a second.

Input: `SeriesHistory.rates` may be a list (None = missing) or, for large fleets, an `array('d')` or
numpy array with NaN = missing (8 bytes a sample instead of 32). Missing samples are collection gaps,
not zero demand: a bucket without samples is filled from the same bucket a season earlier, else by
interpolation, and missing raw samples are left out of the level and of the errors. An update reads
only the newest `recent_s` of the history.

Robustness: before aggregating, a raw sample over `SPIKE_FACTOR` (1000) × the robust level of its
bucket and the two beside it (median + `SPIKE_SIGMAS` × 1.4826 MAD, at least the median of the
history's nonzero samples and half a request per step) is dropped as missing: one poisoned minute
(1e12 req/s) would otherwise make its hourly mean 1.7e10 and, through the mean rate, the shift that
the bucket clipping below measures against, so it came back the next day at 5,000× the clean
forecast. On the shared traces it drops no sample. Then a bucket far above both its neighbours
and the same hour on other days (> `OUTLIER_SIGMAS` robust deviations, and over twice the
history's 95th percentile) is clipped for the model and left out of the profile and the
calibration, so a one-off load test neither comes back tomorrow nor widens the bands. Hours ahead,
bands are widened (`BAND_WIDENING`) for the day-to-day swings a few calibration days under-sample.

What each target gets:
- under `min_history_s` of observed buckets (a new target) but some data: a flagged fallback, the
  recent level held flat with bands from its own short-history dispersion (model "Fallback");
- every observed rate zero: a flagged zero forecast (model "Zero");
- no observed sample at all (or no rates): no forecast (missing is not zero);
- up to three seasons: SeasonalNaive (HistoricAverage if intermittent) unselected, `mase=None`;
- otherwise the selected model. A target is sparse when more than 30 % of its observed buckets are
  zero; sparse with a daily pattern (lag-one-day autocorrelation >= 0.2) adds CrostonOptimized, ADIDA
  and IMAPA to the seasonal candidates; sparse without one (intermittent) has only those three.
  ETS and MSTL trends are damped when refitted: an undamped one extrapolates a line for two days.

State: `export_state()` / `import_state()` move each target's `TargetState` (and model choice) as
compressed JSON bytes (about 1.5 kB), e.g. to a DynamoDB item, so a stateless forecaster invocation
updates instead of refitting. DataFrames never leave `model_choice`.

This module keeps the public adapter and the per-target bookkeeping (what is due, the refit budget,
the stored states) and composes the parts: `preparation` (history → bucket grid), `model_choice`
(rolling-origin selection, the statsforecast calls), `calibration` (conformal bands per lead-time
band), `state` (`TargetState` and its export format), `update` (the between-refit path) and
`fallback` (young and all-zero targets).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.forecasting.calibration import calibration_cv, fit_state, simple_cv
from forescale.forecasting.fallback import FALLBACK, ZERO, young_forecast, zero_forecast
from forescale.forecasting.model_choice import (
    ADIDA,
    AUTO_ETS,
    CROSTON,
    CV,
    HISTORIC_AVERAGE,
    IMAPA,
    INTERMITTENT,
    MSTL,
    PATH_SEASONS,
    SEASONAL_NAIVE,
    Selection,
    batch_forecast,
    model_key,
    select_models,
)
from forescale.forecasting.preparation import DAY_S, Prepared, prepare, steps_per_bucket
from forescale.forecasting.state import (
    QUANTILES,
    StateError,
    TargetState,
    blob_data,
    selection_from_json,
    state_blob,
)
from forescale.forecasting.update import update_forecasts

# Importable from here as before the split; each now lives beside the code that uses it.
__all__ = [
    "ADIDA",
    "AUTO_ETS",
    "CROSTON",
    "FALLBACK",
    "HISTORIC_AVERAGE",
    "IMAPA",
    "INTERMITTENT",
    "MSTL",
    "QUANTILES",
    "SEASONAL_NAIVE",
    "ZERO",
    "StateError",
    "StatsForecastAdapter",
    "TargetState",
]


class StatsForecastAdapter:
    """The `Forecaster` used by the forecaster image and by `forescale replay`.

    Keeps per target the model choice (`_selections`) and the fitted state (`_states`) between
    calls; `export_state`/`import_state` carry the state across processes.

    Parameters (seconds are data time): `agg_s` bucket length the models see; `reselect_every_s`
    how long a model choice stands; `refit_every_s` how long a fitted state is used before a refit;
    `max_history_days` history read for a refit; `min_history_s` observed history below which a
    target gets the flagged fallback; `recent_s` the window the update re-anchors the level on;
    `max_refits` statsforecast refits per call at most (None: no limit; see `forecast`).
    """

    def __init__(
        self,
        agg_s: int = 3600,
        reselect_every_s: int = 7 * DAY_S,
        max_history_days: int = 28,
        min_history_s: int = DAY_S,
        refit_every_s: int = DAY_S,
        recent_s: int = 1800,
        max_refits: int | None = None,
    ) -> None:
        for name, value in (
            ("agg_s", agg_s),
            ("reselect_every_s", reselect_every_s),
            ("max_history_days", max_history_days),
            ("min_history_s", min_history_s),
            ("refit_every_s", refit_every_s),
            ("recent_s", recent_s),
        ):
            if value <= 0:
                raise ValueError(f"StatsForecastAdapter: {name} must be > 0, got {value}")
        self.agg_s = agg_s
        self.reselect_every_s = reselect_every_s
        self.max_history_days = max_history_days
        self.min_history_s = min_history_s
        self.refit_every_s = refit_every_s
        self.recent_s = recent_s
        if max_refits is not None and max_refits < 0:
            raise ValueError(f"StatsForecastAdapter: max_refits must be >= 0 or None, got {max_refits}")
        self.max_refits = max_refits
        self._selected: dict[str, str] = {}
        self._selections: dict[str, Selection] = {}
        self._states: dict[str, TargetState] = {}
        self.last_refits: list[str] = []  # targets refitted with statsforecast by the latest call
        self.last_deferred: list[str] = []  # targets whose refit the budget pushed to a later call
        self.last_changed: list[str] = []  # targets whose state the latest call wrote: export these

    # ----------------------------------------------------------------------------------- public

    def forecast(
        self,
        histories: Sequence[SeriesHistory],
        horizon_s: int,
        *,
        reselect: Collection[str] = (),
        refit: Collection[str] = (),
    ) -> dict[str, Forecast]:
        """One forecast per target with any observed data, on its own grid from `history.end`.

        A target is refitted when it has no state, its state is `refit_every_s` old, or it is named
        in `refit` (e.g. drifting) or `reselect` (its model choice is redone now, whatever its age);
        every other target is updated from its state, which needs only the last `recent_s` of rates.
        With `max_refits`, due targets past the budget keep their state (updated) or, without one,
        get an interim numpy SeasonalNaive fit; `last_refits`, `last_deferred` and `last_changed`
        (the states to export) describe what the call did.
        """
        if isinstance(reselect, str):  # a bare name, not its letters
            reselect = {reselect}
        if isinstance(refit, str):
            refit = {refit}
        names = ", ".join(h.target for h in histories) or "no targets"
        if horizon_s <= 0:
            raise ValueError(f"forecast for {names}: horizon_s must be > 0, got {horizon_s}")
        seen: set[str] = set()
        for h in histories:
            if h.step_s <= 0:
                raise ValueError(f"history for {h.target}: step_s must be > 0, got {h.step_s}")
            if h.target in seen:
                raise ValueError(f"history for {h.target} given twice")
            seen.add(h.target)

        forced = set(refit) | set(reselect)
        out: dict[str, Forecast] = {}
        updates: list[tuple[SeriesHistory, TargetState, list[str]]] = []
        due: list[SeriesHistory] = []
        for h in histories:
            st = self._states.get(h.target)
            if st is None or h.target in forced or self._stale(h, st):
                due.append(h)
            else:
                updates.append((h, st, []))
        self.last_refits, self.last_deferred, self.last_changed = [], [], []
        interim: list[SeriesHistory] = []
        if self.max_refits is not None and len(due) > self.max_refits:
            due.sort(key=lambda h: self._refit_priority(h, forced))
            for h in due[self.max_refits :]:
                st = self._states.get(h.target)
                self.last_deferred.append(h.target)
                if st is not None and self._usable(h, st):
                    updates.append((h, st, ["refit due but deferred: the call's refit budget is used up"]))
                else:
                    interim.append(h)
            due = due[: self.max_refits]
        if due or interim:
            refitted, extra = self._refit(due, horizon_s, set(reselect), interim)
            out.update(extra)
            updates.extend(refitted)
        out.update(update_forecasts(updates, horizon_s, self.recent_s))
        return out

    def _refit_priority(self, h: SeriesHistory, forced: set[str]) -> tuple[int, int]:
        """Who gets the call's refit budget first: asked for, never fitted, interim, then the oldest."""
        st = self._states.get(h.target)
        if h.target in forced:
            return (0, 0)
        if st is None:
            return (1, 0)
        if st.provisional:
            return (2, st.fitted_at)
        return (3, st.fitted_at)

    def export_state(self, targets: Iterable[str] | None = None) -> dict[str, bytes]:
        """Each target's fitted state as compressed JSON bytes (about 1-2 kB), for a DynamoDB item.

        The model choice travels with it, so an imported target is neither refitted nor reselected
        before its time.
        """
        names = list(self._states) if targets is None else list(targets)
        blobs: dict[str, bytes] = {}
        for name in names:
            st = self._states.get(name)
            if st is None:
                continue
            blobs[name] = state_blob(st, self._selections.get(name))
        return blobs

    def import_state(self, blobs: Mapping[str, bytes]) -> None:
        """Load states written by `export_state`; a blob that cannot be used raises `StateError`."""
        for name, blob in blobs.items():
            data = blob_data(name, blob)
            st = TargetState.from_json(name, data)
            self._states[name] = st
            sel = selection_from_json(name, data.get("selection"))
            if sel is not None:
                self._selections[name] = sel
                self._selected[name] = sel.model

    def state_of(self, target: str) -> TargetState | None:
        """The fitted state of `target`, if any (read-only use)."""
        return self._states.get(target)

    # ---------------------------------------------------------------------------------- refits

    def _stale(self, h: SeriesHistory, st: TargetState) -> bool:
        age = h.end - st.fitted_at
        if st.provisional or st.step_s != h.step_s or age < 0 or age % h.step_s:
            return True
        k = steps_per_bucket(h.step_s, self.agg_s)
        return st.k != k or age >= self.refit_every_s

    def _refit(
        self, due: list[SeriesHistory], horizon_s: int, reselect: set[str], interim: Sequence[SeriesHistory] = ()
    ) -> tuple[list[tuple[SeriesHistory, TargetState, list[str]]], dict[str, Forecast]]:
        """Refit what can be refitted; returns (targets to update from a state, finished forecasts).

        `interim` targets (over the refit budget, without a usable state) get a numpy SeasonalNaive
        fit marked provisional, so that they forecast now and are refitted properly when budget allows.
        """
        out: dict[str, Forecast] = {}
        keep: list[tuple[SeriesHistory, TargetState, list[str]]] = []
        prepared: list[Prepared] = []
        provisional = {h.target for h in interim}
        for h in [*due, *interim]:
            kind, value = prepare(h, self.agg_s, self.max_history_days, self.min_history_s)
            old = self._states.get(h.target)
            if kind == "ok" and h.target in provisional:
                assert isinstance(value, Prepared)  # nosec B101  # prepare pairs "ok" with a Prepared; narrows the type for mypy
                st = self._interim_state(value)
                self._states[h.target] = st
                self.last_changed.append(h.target)
                keep.append((h, st, []))
            elif kind == "ok":
                assert isinstance(value, Prepared)  # nosec B101  # prepare pairs "ok" with a Prepared; narrows the type for mypy
                prepared.append(value)
            elif old is not None and kind in ("young", "none") and self._usable(h, old):
                note = f"refit due, but the history holds too little data ({kind}); state from {old.fitted_at} kept"
                keep.append((h, old, [note]))
            elif kind == "zero":
                out[h.target] = zero_forecast(h, horizon_s)
            elif kind == "young":
                fc = young_forecast(h, horizon_s, self.recent_s)
                if fc is not None:
                    out[h.target] = fc
        if not prepared:
            return keep, out

        selecting = [p for p in prepared if self._selection_due(p, reselect)]
        cv: dict[str, tuple[str, CV, int]] = {}
        if selecting:
            chosen, windows = select_models(selecting)
            for target, sel in chosen.items():
                self._selections[target] = sel
                self._selected[target] = sel.model
            cv.update(windows)
        groups: dict[tuple[str, int, bool, str | None], list[Prepared]] = {}
        for p in prepared:
            groups.setdefault(model_key(p, self._selections.get(p.target)), []).append(p)
        for planned, members in groups.items():
            key = planned
            try:
                paths = batch_forecast(key, members)
            except Exception as exc:  # statsforecast's fallback covers failed fits, not everything else
                if key[0] == SEASONAL_NAIVE:
                    raise
                key = (SEASONAL_NAIVE, key[1], False, None)
                paths = batch_forecast(key, members)
                for p in members:
                    p.notes.append(f"{planned[0]} failed ({type(exc).__name__}: {exc}); SeasonalNaive used")
            missing_cv = [p for p in members if p.target not in cv or cv[p.target][0] != key[0]]
            cv.update(calibration_cv(key, missing_cv))
            for p in members:
                st = fit_state(
                    p,
                    key,
                    paths[p.target],
                    cv.get(p.target),
                    sel=self._selections.get(p.target),
                    recent_s=self.recent_s,
                )
                self._states[p.target] = st
                self.last_refits.append(p.target)
                self.last_changed.append(p.target)
                keep.append((p.history, st, []))
        return keep, out

    def _interim_state(self, p: Prepared) -> TargetState:
        """SeasonalNaive (HistoricAverage if intermittent) in numpy: no statsforecast, a few ms."""
        import numpy as np

        name = HISTORIC_AVERAGE if p.intermittent else SEASONAL_NAIVE
        if name == HISTORIC_AVERAGE:
            path = np.full(PATH_SEASONS * p.season, float(np.mean(p.y)))
        else:
            path = np.tile(p.y[-p.season :], PATH_SEASONS)
        p.notes.append("interim fit while the refit budget is used up; model selection follows")
        windows = (name, simple_cv(name, p), 0)
        st = fit_state(
            p, (name, p.season, False, None), path, windows, sel=self._selections.get(p.target), recent_s=self.recent_s
        )
        st.provisional = True
        return st

    def _usable(self, h: SeriesHistory, st: TargetState) -> bool:
        age = h.end - st.fitted_at
        return st.step_s == h.step_s and age >= 0 and age % h.step_s == 0

    # -------------------------------------------------------------------------------- selection

    def _selection_due(self, p: Prepared, reselect: Collection[str]) -> bool:
        sel = self._selections.get(p.target)
        if sel is None or p.target in reselect or sel.season != p.season:
            return True
        age = p.history.end - sel.at
        return age < 0 or age >= self.reselect_every_s
