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
updates instead of refitting. DataFrames never leave this module.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
import zlib
from array import array
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.domain.history import SPIKE_FACTOR

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.float64]
    Mask = npt.NDArray[np.bool_]

DAY_S = 86_400

QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 0.9, 0.92, 0.95, 0.99)
# Lead-time bands (seconds, upper edges) with their own error quantiles; the last band is open.
BAND_EDGES_S: tuple[int, ...] = (300, 900, 3600, 6 * 3600)
# Hours ahead, a few calibration days see too few day-to-day level swings: bands 1-6 h and 6-24 h
# are widened around the median (set on the generated fleet's day-ahead p99 coverage; see docs).
BAND_WIDENING: tuple[float, ...] = (1.0, 1.0, 1.0, 1.15, 1.35)
STATE_VERSION = 1

SPARSE_ZERO_SHARE = 0.30
SEASONAL_ACF = 0.2  # lag-one-day autocorrelation above which a sparse series still has a daily shape
ETS_MAX_SEASON = 24  # statsforecast's ETS silently drops a longer season
ETS_MAX_DAYS = 14  # ETS cost grows with length; two weeks hold the daily shape
WEEKLY_MIN_DAYS = 21
CV_ORIGINS = 3  # rolling-origin windows at model selection (and for calibration)
PROFILE_DAYS = 7
PATH_SEASONS = 2  # the stored bucket path covers two days; beyond it the last day repeats
SHIFT_SHARE = 0.2  # c = 20 % of the mean rate (at least half a request per step)
OUTLIER_SIGMAS = 6.0
SPIKE_SIGMAS = 6.0  # a raw sample's local level: its buckets' median + this many robust deviations
MIN_CALIBRATION_S = 6 * 3600  # out-of-sample span needed for calibrated bands
CALIBRATION_ORIGIN_S = 600  # simulated update origins every 10 minutes
OFFSETS_PER_BAND = 12
MAX_LOG_ANCHOR = math.log(10.0)  # the level correction stays within 10x either way
ANCHOR_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # shares of the level correction tried per band

SEASONAL_NAIVE = "SeasonalNaive"
HISTORIC_AVERAGE = "HistoricAverage"
AUTO_ETS = "AutoETS"
MSTL = "MSTL"
CROSTON = "CrostonOptimized"
ADIDA = "ADIDA"
IMAPA = "IMAPA"
FALLBACK = "Fallback"
ZERO = "Zero"
INTERMITTENT: tuple[str, ...] = (CROSTON, ADIDA, IMAPA)
_FORWARD_CV = frozenset({AUTO_ETS, MSTL})  # costly fits: fit at the first origin, then `forward`


class StateError(ValueError):
    """Stored forecaster state that cannot be used; the message names the target."""


@dataclass(slots=True)
class TargetState:
    """Everything the update path needs for one target, as plain JSON-able data.

    Rates are requests/s; `path` holds bucket means from `fitted_at` (epoch s), `profile` the
    multiplier of each raw step inside a bucket (mean 1), `errors[band][i]` the calibrated quantile
    `QUANTILES[i]` of log((actual + shift) / (point + shift)) for lead times in that band.
    """

    step_s: int
    k: int  # raw steps per bucket
    season: int  # buckets per day
    fitted_at: int
    model: str
    label: str
    mase: float | None
    path: list[float]
    profile: list[float]
    shift: float
    spike_log_cap: float  # a raw sample counts toward the level at most exp(this) × the baseline
    anchor: list[float]  # per lead-time band, the share of the level correction applied (0..1)
    anchor_noise: float  # log corrections up to this size are partly noise; beyond, applied in full
    errors: list[list[float]]
    calibration: str
    notes: list[str] = field(default_factory=list)
    provisional: bool = False  # an interim SeasonalNaive fit while the refit budget was used up

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, target: str, data: Mapping[str, Any]) -> TargetState:
        if data.get("version") != STATE_VERSION:
            raise StateError(f"state for {target}: version {data.get('version')!r}, expected {STATE_VERSION}")
        try:
            st = cls(
                step_s=int(data["step_s"]),
                k=int(data["k"]),
                season=int(data["season"]),
                fitted_at=int(data["fitted_at"]),
                model=str(data["model"]),
                label=str(data["label"]),
                mase=None if data["mase"] is None else float(data["mase"]),
                path=[float(v) for v in data["path"]],
                profile=[float(v) for v in data["profile"]],
                shift=float(data["shift"]),
                spike_log_cap=float(data["spike_log_cap"]),
                anchor=[float(v) for v in data["anchor"]],
                anchor_noise=float(data["anchor_noise"]),
                errors=[[float(v) for v in row] for row in data["errors"]],
                calibration=str(data["calibration"]),
                notes=[str(n) for n in data.get("notes", [])],
                provisional=bool(data.get("provisional", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"state for {target}: {type(exc).__name__}: {exc}") from None
        problems = []
        if st.step_s <= 0 or st.k <= 0 or st.season <= 0:
            problems.append("step_s, k and season must be > 0")
        if len(st.anchor) != len(BAND_EDGES_S) + 1 or not all(0.0 <= a <= 1.0 for a in st.anchor):
            problems.append("anchor must be one share in [0, 1] per lead-time band")
        if not st.anchor_noise >= 0:
            problems.append("anchor_noise must be >= 0")
        if len(st.profile) != st.k:
            problems.append(f"profile has {len(st.profile)} values for k={st.k}")
        if len(st.path) < st.season:
            problems.append(f"path has {len(st.path)} buckets, under one season ({st.season})")
        if len(st.errors) != len(BAND_EDGES_S) + 1 or any(len(r) != len(QUANTILES) for r in st.errors):
            problems.append("errors must be one row of len(QUANTILES) per lead-time band")
        numbers = [*st.path, *st.profile, *(v for r in st.errors for v in r), st.shift, st.spike_log_cap]
        if not all(math.isfinite(v) for v in numbers) or any(v < 0 for v in st.path) or st.shift <= 0:
            problems.append("non-finite or negative values")
        if problems:
            raise StateError(f"state for {target}: {'; '.join(problems)}")
        return st


@dataclass(slots=True)
class _Prepared:
    """One target's history on the bucket grid, plus what calibration and the profile need."""

    history: SeriesHistory
    k: int
    agg_s: int
    season: int
    y: Array  # bucket mean rates, gaps filled, outliers clipped; the last bucket ends at history.end
    observed: Mask  # the bucket had at least one sample
    raw: Array  # the raw rates behind `y`, len(y) * k; NaN = missing or inside a clipped outlier bucket
    profile: Array  # multiplier per position inside a bucket, mean 1
    sparse: bool
    seasonal: bool
    shift: float  # c of the error model (requests/s)
    notes: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.history.target

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def weekly(self) -> bool:
        return self.season >= 2 and self.n >= WEEKLY_MIN_DAYS * self.season

    @property
    def intermittent(self) -> bool:
        return self.sparse and not self.seasonal


@dataclass(frozen=True, slots=True)
class _Selection:
    model: str
    season: int
    at: int  # history.end when selected (data time, so replays behave like production)
    mase: float
    ets_form: str | None  # AutoETS components chosen at selection, e.g. "MAMN"; refitted daily
    scores: dict[str, float]


# (bucket index, actual, forecast) of rolling-origin windows, as statsforecast returns them
_CV = tuple["npt.NDArray[np.int64]", "Array", "Array"]


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
        self._selections: dict[str, _Selection] = {}
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
        out.update(self._update(updates, horizon_s))
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
            data = st.to_json()
            sel = self._selections.get(name)
            data["selection"] = None if sel is None else asdict(sel)
            blobs[name] = zlib.compress(json.dumps(data, separators=(",", ":")).encode())
        return blobs

    def import_state(self, blobs: Mapping[str, bytes]) -> None:
        """Load states written by `export_state`; a blob that cannot be used raises `StateError`."""
        for name, blob in blobs.items():
            try:
                data = json.loads(zlib.decompress(blob))
            except (zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise StateError(f"state for {name}: not an exported state ({exc})") from None
            if not isinstance(data, dict):
                raise StateError(f"state for {name}: expected a JSON object")
            st = TargetState.from_json(name, data)
            sel = data.get("selection")
            self._states[name] = st
            if isinstance(sel, dict):
                try:
                    self._selections[name] = _Selection(
                        model=str(sel["model"]),
                        season=int(sel["season"]),
                        at=int(sel["at"]),
                        mase=float(sel["mase"]),
                        ets_form=None if sel["ets_form"] is None else str(sel["ets_form"]),
                        scores={str(k): float(v) for k, v in sel["scores"].items()},
                    )
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise StateError(f"state for {name}: selection: {type(exc).__name__}: {exc}") from None
                self._selected[name] = self._selections[name].model

    def state_of(self, target: str) -> TargetState | None:
        """The fitted state of `target`, if any (read-only use)."""
        return self._states.get(target)

    # ---------------------------------------------------------------------------------- refits

    def _stale(self, h: SeriesHistory, st: TargetState) -> bool:
        age = h.end - st.fitted_at
        if st.provisional or st.step_s != h.step_s or age < 0 or age % h.step_s:
            return True
        k = _steps_per_bucket(h.step_s, self.agg_s)
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
        prepared: list[_Prepared] = []
        provisional = {h.target for h in interim}
        for h in [*due, *interim]:
            kind, value = self._prepare(h)
            old = self._states.get(h.target)
            if kind == "ok" and h.target in provisional:
                assert isinstance(value, _Prepared)  # nosec B101  # _prepare pairs "ok" with a _Prepared; narrows the type for mypy
                st = self._interim_state(value)
                self._states[h.target] = st
                self.last_changed.append(h.target)
                keep.append((h, st, []))
            elif kind == "ok":
                assert isinstance(value, _Prepared)  # nosec B101  # _prepare pairs "ok" with a _Prepared; narrows the type for mypy
                prepared.append(value)
            elif old is not None and kind in ("young", "none") and self._usable(h, old):
                note = f"refit due, but the history holds too little data ({kind}); state from {old.fitted_at} kept"
                keep.append((h, old, [note]))
            elif kind == "zero":
                out[h.target] = _zero_forecast(h, horizon_s)
            elif kind == "young":
                fc = _young_forecast(h, horizon_s, self.recent_s)
                if fc is not None:
                    out[h.target] = fc
        if not prepared:
            return keep, out

        selecting = [p for p in prepared if self._selection_due(p, reselect)]
        cv: dict[str, tuple[str, _CV, int]] = {}
        if selecting:
            cv.update(self._select(selecting))
        groups: dict[tuple[str, int, bool, str | None], list[_Prepared]] = {}
        for p in prepared:
            groups.setdefault(self._model_key(p), []).append(p)
        for planned, members in groups.items():
            key = planned
            try:
                paths = self._batch_forecast(key, members)
            except Exception as exc:  # statsforecast's fallback covers failed fits, not everything else
                if key[0] == SEASONAL_NAIVE:
                    raise
                key = (SEASONAL_NAIVE, key[1], False, None)
                paths = self._batch_forecast(key, members)
                for p in members:
                    p.notes.append(f"{planned[0]} failed ({type(exc).__name__}: {exc}); SeasonalNaive used")
            missing_cv = [p for p in members if p.target not in cv or cv[p.target][0] != key[0]]
            cv.update(self._calibration_cv(key, missing_cv))
            for p in members:
                st = self._fit_state(p, key, paths[p.target], cv.get(p.target))
                self._states[p.target] = st
                self.last_refits.append(p.target)
                self.last_changed.append(p.target)
                keep.append((p.history, st, []))
        return keep, out

    def _interim_state(self, p: _Prepared) -> TargetState:
        """SeasonalNaive (HistoricAverage if intermittent) in numpy: no statsforecast, a few ms."""
        import numpy as np

        name = HISTORIC_AVERAGE if p.intermittent else SEASONAL_NAIVE
        if name == HISTORIC_AVERAGE:
            path = np.full(PATH_SEASONS * p.season, float(np.mean(p.y)))
        else:
            path = np.tile(p.y[-p.season :], PATH_SEASONS)
        p.notes.append("interim fit while the refit budget is used up; model selection follows")
        st = self._fit_state(p, (name, p.season, False, None), path, (name, _simple_cv(name, p), 0))
        st.provisional = True
        return st

    def _usable(self, h: SeriesHistory, st: TargetState) -> bool:
        age = h.end - st.fitted_at
        return st.step_s == h.step_s and age >= 0 and age % h.step_s == 0

    def _prepare(self, history: SeriesHistory) -> tuple[str, _Prepared | None]:
        """("ok", prepared) or ("none" | "zero" | "young", None) for no data, all zero, too short."""
        import numpy as np

        step = history.step_s
        k = _steps_per_bucket(step, self.agg_s)
        agg_s = k * step
        season = max(1, DAY_S // agg_s)
        keep = min(len(history.rates), self.max_history_days * DAY_S // step)
        raw = _as_array(history.rates, keep)
        seen = raw[~np.isnan(raw)]
        if seen.size == 0:
            return "none", None
        if not np.any(seen > 0):
            return "zero", None
        raw = raw[len(raw) % k :]  # buckets end at history.end; a partial oldest bucket is dropped
        grid = raw.reshape(-1, k)
        positive = raw[raw > 0]  # NaN compares False
        # at least the median of the nonzero samples: a sparse series' bursts are its demand, not spikes
        dropped = _drop_spikes(grid, max(0.5 / step, float(np.median(positive)) if positive.size else 0.0))
        counts = np.sum(~np.isnan(grid), axis=1)
        sums = np.nansum(grid, axis=1)
        observed = counts > 0
        if not observed.any():
            return "young", None
        first = int(np.argmax(observed))
        grid, counts, sums, observed = grid[first:], counts[first:], sums[first:], observed[first:]
        y = np.full(len(grid), np.nan)
        y[observed] = sums[observed] / counts[observed]
        n_obs = int(observed.sum())
        if n_obs < season or n_obs * agg_s < self.min_history_s:
            return "young", None
        notes = [f"buckets {agg_s}s, season {season}"]
        if dropped:
            notes.append(f"{dropped} implausible samples (over {SPIKE_FACTOR:g}x their local level) dropped")
        mean_rate = float(np.mean(y[observed][-PROFILE_DAYS * season :]))
        shift = max(0.5 / step, SHIFT_SHARE * mean_rate)
        over = _clip_outliers(y, observed, season, shift)
        if over.any():
            # the model sees the clipped bucket; the profile and the calibration do not see it at all
            # (an anomaly is not the ordinary variability the bands describe)
            grid = grid.copy()
            grid[over] = np.nan
            notes.append(f"{int(over.sum())} outlier buckets clipped before fitting")
        missing = int((~observed).sum())
        if missing:
            y = _fill_gaps(y, season)
            notes.append(f"{missing} empty buckets filled")
        sparse = float(np.mean(y[observed] == 0)) > SPARSE_ZERO_SHARE
        seasonal = _seasonal_acf(y, season) >= SEASONAL_ACF
        # bursts land anywhere in a bucket: a position profile of a sparse series is noise
        profile = _intra_bucket(grid[-PROFILE_DAYS * season :], flat=sparse and not seasonal)
        return "ok", _Prepared(
            history=history,
            k=k,
            agg_s=agg_s,
            season=season,
            y=y,
            observed=observed,
            raw=grid.reshape(-1),
            profile=profile,
            sparse=sparse,
            seasonal=seasonal,
            shift=shift,
            notes=notes,
        )

    # -------------------------------------------------------------------------------- selection

    def _selection_due(self, p: _Prepared, reselect: Collection[str]) -> bool:
        sel = self._selections.get(p.target)
        if sel is None or p.target in reselect or sel.season != p.season:
            return True
        age = p.history.end - sel.at
        return age < 0 or age >= self.reselect_every_s

    def _select(self, due: list[_Prepared]) -> dict[str, tuple[str, _CV, int]]:
        """Choose each target's model by rolling-origin MASE; returns the winners' windows for calibration."""
        import numpy as np

        jobs: dict[tuple[str, int, bool, int], list[_Prepared]] = {}
        origins: dict[str, int] = {}
        for p in due:
            n_orig = min(CV_ORIGINS, p.n // p.season - 2)  # keep two seasons to train at the first origin
            if n_orig < 1:
                continue
            origins[p.target] = n_orig
            for name in _candidates(p):
                weekly = p.weekly if name == MSTL else False
                jobs.setdefault((name, p.season, weekly, n_orig), []).append(p)

        cv: dict[str, dict[str, _CV]] = {p.target: {} for p in due}
        for (name, season, weekly, n_orig), members in jobs.items():
            try:
                scored = self._cross_validate(name, season, weekly, n_orig, members)
            except Exception as exc:  # a candidate that cannot be evaluated just does not compete
                for p in members:
                    p.notes.append(f"{name} not evaluated ({type(exc).__name__}: {exc})")
                continue
            for target, triple in scored.items():
                cv[target][name] = triple

        ets_winners: list[_Prepared] = []
        chosen: dict[str, tuple[str, float, dict[str, float]]] = {}
        for p in due:
            if p.target not in origins or not cv[p.target]:
                continue
            train_n = p.n - origins[p.target] * p.season
            scale = _mase_scale(p.y[:train_n], p.observed[:train_n], p.season)
            scores: dict[str, float] = {}
            for name in _candidates(p):
                if name not in cv[p.target]:
                    continue
                ds, actual, fc = cv[p.target][name]
                use = p.observed[ds]
                err = np.abs(actual - np.clip(fc, 0.0, None))[use]
                score = float(np.mean(err)) / scale if err.size else math.nan
                scores[name] = score if math.isfinite(score) else math.inf
            finite = {n: s for n, s in scores.items() if math.isfinite(s)}
            if not finite:
                continue
            best = min(finite, key=finite.__getitem__)  # dict order = candidate order: ties go simpler
            chosen[p.target] = (best, finite[best], scores)
            if best == AUTO_ETS:
                ets_winners.append(p)

        forms = self._ets_forms(ets_winners)
        windows: dict[str, tuple[str, _CV, int]] = {}
        for p in due:
            if p.target not in chosen:
                p.notes.append("no model selection this call (under three seasons, or no candidate scored)")
                continue
            best, mase, scores = chosen[p.target]
            self._selections[p.target] = _Selection(
                model=best,
                season=p.season,
                at=p.history.end,
                mase=mase,
                ets_form=forms.get(p.target),
                scores=scores,
            )
            self._selected[p.target] = best
            windows[p.target] = (best, cv[p.target][best], origins[p.target])
            ranked = ", ".join(f"{n} {s:.3g}" for n, s in sorted(scores.items(), key=lambda kv: kv[1]))
            p.notes.append(f"selected at {p.history.end} by rolling-origin MASE: {ranked}")
        return windows

    def _cross_validate(
        self, name: str, season: int, weekly: bool, n_orig: int, members: list[_Prepared], form: str | None = None
    ) -> dict[str, _CV]:
        from statsforecast import StatsForecast
        from statsforecast.models import HistoricAverage, Naive

        forward = name in _FORWARD_CV
        sf = StatsForecast(
            models=[_build(name, season, weekly, form)],
            freq=1,
            n_jobs=1,
            # refit=False needs a fallback with `forward`; HistoricAverage has none
            fallback_model=Naive() if forward else HistoricAverage(),
        )
        cv = sf.cross_validation(
            df=_frame(members),
            h=season,
            n_windows=n_orig,
            step_size=season,
            input_size=ETS_MAX_DAYS * season if name == AUTO_ETS else None,
            refit=not forward,
        )
        result: dict[str, _CV] = {}
        for uid, g in cv.groupby("unique_id", sort=False):
            result[str(uid)] = (
                g["ds"].to_numpy(dtype="int64"),
                g["y"].to_numpy(dtype="float64"),
                g[name].to_numpy(dtype="float64"),
            )
        return result

    def _ets_forms(self, winners: list[_Prepared]) -> dict[str, str]:
        """The ETS components AutoETS picks now, so that daily refits skip the 'ZZZ' search (~4x faster)."""
        if not winners:
            return {}
        from statsforecast import StatsForecast
        from statsforecast.models import AutoETS, HistoricAverage

        forms: dict[str, str] = {}
        by_season: dict[int, list[_Prepared]] = {}
        for p in winners:
            by_season.setdefault(p.season, []).append(p)
        for season, members in by_season.items():
            sf = StatsForecast(
                models=[_build(AUTO_ETS, season, False)], freq=1, n_jobs=1, fallback_model=HistoricAverage()
            )
            sf.fit(df=_frame(members, tail=ETS_MAX_DAYS * season))
            for uid, fitted in zip(sf.uids, sf.fitted_[:, 0], strict=True):
                model_ = getattr(fitted, "model_", None)
                if isinstance(fitted, AutoETS) and isinstance(model_, dict) and "components" in model_:
                    forms[str(uid)] = str(model_["components"])
        return forms

    def _calibration_cv(
        self, key: tuple[str, int, bool, str | None], members: list[_Prepared]
    ) -> dict[str, tuple[str, _CV, int]]:
        """Rolling-origin windows of the model in use, for targets that were not just selected.

        SeasonalNaive and HistoricAverage windows are computed directly (they are one line each);
        a failing model's targets are calibrated on SeasonalNaive windows, with a note.
        """
        name, season, weekly, form = key
        out: dict[str, tuple[str, _CV, int]] = {}
        by_orig: dict[int, list[_Prepared]] = {}
        for p in members:
            by_orig.setdefault(min(CV_ORIGINS, p.n // p.season - 2), []).append(p)
        for n_orig, group in by_orig.items():
            if name in (SEASONAL_NAIVE, HISTORIC_AVERAGE) or n_orig < 1:
                for p in group:
                    out[p.target] = (name, _simple_cv(name, p), 0)
                continue
            try:
                scored = self._cross_validate(name, season, weekly, n_orig, group, form)
            except Exception as exc:
                for p in group:
                    p.notes.append(f"{name} windows failed ({type(exc).__name__}); calibrated on SeasonalNaive")
                    out[p.target] = (SEASONAL_NAIVE, _simple_cv(SEASONAL_NAIVE, p), 0)
                continue
            for p in group:
                out[p.target] = (name, scored[p.target], n_orig)
        return out

    # ------------------------------------------------------------------------------ fitting

    def _model_key(self, p: _Prepared) -> tuple[str, int, bool, str | None]:
        sel = self._selections.get(p.target)
        if sel is None or sel.season != p.season:
            # unselected (short history)
            return (HISTORIC_AVERAGE if p.intermittent else SEASONAL_NAIVE, p.season, False, None)
        form = sel.ets_form if sel.model == AUTO_ETS else None
        if form is not None and "M" in form[:3] and float(p.y.min()) <= 0:
            form = None  # multiplicative forms fail on zeros: search again
        return (sel.model, p.season, p.weekly if sel.model == MSTL else False, form)

    def _batch_forecast(self, key: tuple[str, int, bool, str | None], members: list[_Prepared]) -> dict[str, Array]:
        """The bucket path (mean rate per bucket) for `PATH_SEASONS` days, one batched call per model."""
        import numpy as np
        from statsforecast import StatsForecast
        from statsforecast.models import HistoricAverage

        name, season, weekly, form = key
        sf = StatsForecast(
            models=[_build(name, season, weekly, form)], freq=1, n_jobs=1, fallback_model=HistoricAverage()
        )
        tail = ETS_MAX_DAYS * season if name == AUTO_ETS else None
        fc = sf.forecast(df=_frame(members, tail=tail), h=PATH_SEASONS * season)
        result: dict[str, Array] = {}
        for uid, unsorted in fc.groupby("unique_id", sort=False):
            result[str(uid)] = unsorted.sort_values("ds")[name].to_numpy(dtype=np.float64)
        return result

    def _fit_state(
        self,
        p: _Prepared,
        key: tuple[str, int, bool, str | None],
        path: Array,
        cv: tuple[str, _CV, int] | None,
    ) -> TargetState:
        import numpy as np

        name, season, weekly, form = key
        notes = list(p.notes)
        if not np.all(np.isfinite(path)):
            level = float(np.mean(p.y[-season:]))
            path = np.where(np.isfinite(path), path, level)
            notes.append("non-finite model output replaced by the last season's mean")
        path = np.clip(path, 0.0, None)
        label = name
        if form is not None:
            label = f"{name}({form})"
        elif name == MSTL:
            label = f"{name}{[season, 7 * season] if weekly else [season]}"
        errors: Array | None = None
        cap = math.log(4.0)
        anchor = [1.0] * (len(BAND_EDGES_S) + 1)
        noise = 0.0
        how = ""
        if cv is not None:
            cv_name, (ds, _, fc), _ = cv
            region = _baseline(p, ds, fc)
            if region is not None:
                start, base = region
                calibrated = _calibrate(
                    p.raw[start:],
                    base,
                    p.shift,
                    p.history.step_s,
                    self._recent_steps(p.history.step_s),
                )
                if calibrated is not None:
                    errors, cap, anchor, noise, days = calibrated
                    how = f"conformal: {cv_name} rolling-origin windows, {days} days"
        if errors is None:
            errors = _dispersion_errors(p.raw, p.shift, self._recent_steps(p.history.step_s))
            how = "short-history dispersion (under 6 h out of sample)"
        notes.append(f"intervals: {how}")
        sel = self._selections.get(p.target)
        mase = sel.mase if sel is not None and sel.model == name and sel.season == season else None
        return TargetState(
            step_s=p.history.step_s,
            k=p.k,
            season=season,
            fitted_at=p.history.end,
            model=name,
            label=label,
            mase=mase,
            path=[float(v) for v in path],
            profile=[float(v) for v in p.profile],
            shift=float(p.shift),
            spike_log_cap=float(cap),
            anchor=[float(a) for a in anchor],
            anchor_noise=float(noise),
            errors=[[float(v) for v in row] for row in errors],
            calibration=how,
            notes=notes,
        )

    def _recent_steps(self, step_s: int) -> int:
        return max(3, -(-self.recent_s // step_s))

    # ---------------------------------------------------------------------------------- updates

    def _update(self, items: list[tuple[SeriesHistory, TargetState, list[str]]], horizon_s: int) -> dict[str, Forecast]:
        """Forecasts from stored states, vectorised over every target sharing a grid."""
        groups: dict[tuple[int, int, int, int], list[tuple[SeriesHistory, TargetState, list[str]]]] = {}
        for item in items:
            _, st, _ = item
            groups.setdefault((st.step_s, st.k, st.season, len(st.path)), []).append(item)
        out: dict[str, Forecast] = {}
        for (step, k, season, n_path), members in groups.items():
            for i in range(0, len(members), 2000):  # bounds the (targets × horizon × quantiles) temporaries
                out.update(self._update_group(members[i : i + 2000], step, k, season, n_path, horizon_s))
        return out

    def _update_group(
        self,
        members: list[tuple[SeriesHistory, TargetState, list[str]]],
        step: int,
        k: int,
        season: int,
        n_path: int,
        horizon_s: int,
    ) -> dict[str, Forecast]:
        import numpy as np

        n = len(members)
        horizon = -(-horizon_s // step)
        recent = self._recent_steps(step)
        path = np.array([st.path for _, st, _ in members])
        profile = np.array([st.profile for _, st, _ in members])
        shift = np.array([st.shift for _, st, _ in members])[:, None]
        cap = np.array([st.spike_log_cap for _, st, _ in members])[:, None]
        anchor = np.array([st.anchor for _, st, _ in members])  # (n, bands)
        noise = np.array([st.anchor_noise for _, st, _ in members])[:, None]
        errors = np.array([st.errors for _, st, _ in members])  # (n, bands, quantiles)
        since = np.array([(h.end - st.fitted_at) // step for h, st, _ in members], dtype=np.int64)[:, None]
        x = np.full((n, recent), np.nan)
        for i, (h, _, _) in enumerate(members):
            tail = _as_array(h.rates, recent)
            if tail.size:
                x[i, recent - tail.size :] = tail

        def baseline(j: npt.NDArray[np.int64]) -> Array:
            b = j // k
            b = np.where(b < 0, b % season, np.where(b >= n_path, n_path - season + (b - n_path) % season, b))
            rows = np.arange(n)[:, None]
            return np.asarray(path[rows, b] * profile[rows, j % k], dtype=np.float64)

        past = baseline(since - recent + np.arange(recent)[None, :])
        log_r, enough = _anchor(x, past, shift, cap)

        h_idx = np.arange(horizon)
        ahead = baseline(since + h_idx[None, :])
        # the anchor share and the errors vary smoothly with lead time (no step where a band ends)
        bands = _band_weights(step, horizon)
        share = anchor @ bands.T  # (n, horizon)
        point = np.maximum((ahead + shift) * np.exp(_applied(log_r, share, noise)) - shift, 0.0)
        e = np.einsum("hb,nbq->nhq", bands, errors)
        paths = np.maximum((point + shift)[:, :, None] * np.exp(e) - shift[:, :, None], 0.0)
        paths = np.sort(paths, axis=2)  # calibrated errors are ordered already; this guards rounding
        paths = np.where(np.isfinite(paths), paths, 0.0)

        out: dict[str, Forecast] = {}
        as_lists = paths.transpose(0, 2, 1).tolist()
        for i, (h, st, extra) in enumerate(members):
            notes = [f"model {st.label}", *st.notes, *extra]
            age_h = (h.end - st.fitted_at) / 3600
            notes.append(
                f"fitted at {st.fitted_at} ({age_h:.1f} h before); level × {math.exp(float(log_r[i, 0])):.3g}"
                + ("" if enough[i, 0] else " (under a third of the recent samples observed: not re-anchored)")
            )
            out[h.target] = Forecast(
                target=h.target,
                issued_at=h.end,
                start=h.end,
                step_s=step,
                quantiles={q: tuple(as_lists[i][j]) for j, q in enumerate(QUANTILES)},
                model=st.model,
                mase=st.mase,
                notes=tuple(notes),
            )
        return out


# ---------------------------------------------------------------------------------------- helpers


def _as_array(rates: Sequence[float | None], last: int) -> Array:
    """The newest `last` rates as float64 with NaN for missing or non-finite, negatives as 0."""
    import numpy as np

    if last <= 0:
        return np.empty(0)
    tail = rates[max(0, len(rates) - last) :]
    if isinstance(tail, array) and tail.typecode == "d":
        a = np.frombuffer(tail, dtype=np.float64).copy()
    elif isinstance(tail, np.ndarray):
        a = tail.astype(np.float64, copy=True)
    else:
        a = np.array([np.nan if r is None else r for r in tail], dtype=np.float64)
    a[~np.isfinite(a)] = np.nan
    np.maximum(a, 0.0, out=a, where=~np.isnan(a))
    return a


def _band_weights(step: int, steps: int) -> Array:
    """(steps, bands) weights that interpolate the band errors linearly in lead time.

    Each band stands at the middle of the leads it was calibrated on (whole steps from the forecast
    start); leads before the first or after the last such centre take that band alone.
    """
    import numpy as np

    edges = [0, *BAND_EDGES_S, DAY_S]
    centres: list[float] = []
    bands: list[int] = []
    for b, (lo_s, hi_s) in enumerate(itertools.pairwise(edges)):
        lo, hi = -(-lo_s // step), -(-hi_s // step) - 1
        if hi >= lo:
            centres.append((lo + hi) / 2 * step)
            bands.append(b)
    lead = np.arange(steps, dtype=np.float64) * step
    weights = np.zeros((steps, len(edges) - 1))
    for j, b in enumerate(bands):
        weights[:, b] = np.interp(lead, centres, np.eye(len(bands))[j])
    return weights


def _steps_per_bucket(step_s: int, agg_s: int) -> int:
    """Raw steps per bucket: the most that fit in `agg_s` while the bucket still divides a day."""
    if step_s >= agg_s:
        return 1
    most = agg_s // step_s
    for k in range(most, 0, -1):
        if DAY_S % (k * step_s) == 0:
            return k
    return most


def _fill_gaps(y: Array, season: int) -> Array:
    """Empty buckets: the same bucket a season earlier, else linear interpolation (never zero)."""
    import numpy as np

    y = y.copy()
    for i in range(season, len(y)):
        if np.isnan(y[i]) and not np.isnan(y[i - season]):
            y[i] = y[i - season]
    gaps = np.isnan(y)
    if gaps.any():
        idx = np.arange(len(y))
        y[gaps] = np.interp(idx[gaps], idx[~gaps], y[~gaps])
    return y


def _drop_spikes(grid: Array, floor_rps: float) -> int:
    """Set to NaN, in place, raw samples over `SPIKE_FACTOR` × the robust level of their bucket and its
    neighbours; returns how many. `grid` is (buckets, samples per bucket), NaN = missing.

    The level of a bucket is the median of its samples + `SPIKE_SIGMAS` × 1.4826 MAD (one poisoned
    sample moves neither), at least `floor_rps`; a sample's reference is the largest level of its
    bucket and the two beside it, so a ramp into the next hour stands. With one sample per bucket
    the bucket itself is left out (it would be its own reference).
    """
    import numpy as np

    if grid.size == 0 or not np.isfinite(grid).any():
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN buckets give NaN, handled by fmax
        median = np.nanmedian(grid, axis=1)
        mad = np.nanmedian(np.abs(grid - median[:, None]), axis=1)
    level = median + SPIKE_SIGMAS * 1.4826 * mad
    pad = np.concatenate([[np.nan], level, [np.nan]])
    beside = np.fmax(pad[:-2], pad[2:])
    reference = beside if grid.shape[1] == 1 else np.fmax(beside, level)
    bound = SPIKE_FACTOR * np.fmax(reference, floor_rps)  # NaN reference (nothing near): the floor
    over = grid > bound[:, None]
    grid[over] = np.nan
    return int(over.sum())


def _clip_outliers(y: Array, observed: Mask, season: int, shift: float) -> Mask:
    """Clip, in place, buckets far above both their neighbours and the same bucket on other days;
    returns which were clipped.

    The reference is the larger of the median of the three buckets each side and the median of the
    same position on every day, so a daily peak (seasonal) and a lasting level change (neighbours)
    both stand; a one-off surge stands out from both. Far means more than `OUTLIER_SIGMAS` robust
    standard deviations (1.4826 MAD) of log((y + c) / (ref + c)), at least 2x, and above twice the
    history's 95th percentile.
    """
    import numpy as np

    n = len(y)
    none = np.zeros(n, dtype=bool)
    if n < 2 * season or observed.sum() < 2 * season:
        return none
    v = np.where(observed, y, np.nan)
    pad = np.concatenate([np.full(3, np.nan), v, np.full(3, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(pad, 7).copy()
    windows[:, 3] = np.nan  # the bucket itself is not its own neighbour
    days = -(-n // season)
    by_pos = np.full(days * season, np.nan)
    by_pos[days * season - n :] = v  # align so the last bucket ends a row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN, handled below
        local = np.nanmedian(windows, axis=1)
        seasonal = np.nanmedian(by_pos.reshape(days, season), axis=0)
    ref = np.fmax(local, seasonal[(np.arange(n) + days * season - n) % season])
    ok = observed & np.isfinite(ref)
    if ok.sum() < season:
        return none
    resid = np.log((y[ok] + shift) / (ref[ok] + shift))
    sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    limit = max(OUTLIER_SIGMAS * sigma, math.log(2.0))
    # never below twice the history's 95th percentile: in a sparse series every burst is far above
    # its (near-zero) references, and bursts are the demand, not anomalies
    floor = 2.0 * float(np.quantile(y[observed], 0.95))
    bound = np.maximum((ref + shift) * math.exp(limit) - shift, floor)
    over: Mask = ok & (y > bound)
    y[over] = bound[over]
    return over


def _intra_bucket(grid: Array, flat: bool = False) -> Array:
    """Mean share of each position in a bucket (mean 1), from complete buckets with traffic.

    Shares are clipped at their 99th percentile per position first, so one spike does not print
    itself into every future bucket.
    """
    import numpy as np

    k = grid.shape[1]
    ones = np.ones(k)
    if k == 1 or flat:
        return ones
    full = grid[~np.isnan(grid).any(axis=1)]
    full = full[full.mean(axis=1) > 0]
    if len(full) == 0:
        return ones
    shares = full / full.mean(axis=1, keepdims=True)
    shares = np.minimum(shares, np.quantile(shares, 0.99, axis=0, keepdims=True))
    profile = shares.mean(axis=0)
    total = float(profile.mean())
    return np.asarray(profile / total, dtype=np.float64) if total > 0 else ones


def _seasonal_acf(y: Array, season: int) -> float:
    """Autocorrelation at one season; 1.0 (assume a daily shape) when there are under two seasons."""
    import numpy as np

    if season < 2 or len(y) < 2 * season:
        return 1.0
    d = y - y.mean()
    denom = float(np.dot(d, d))
    return float(np.dot(d[season:], d[:-season])) / denom if denom > 0 else 0.0


def _candidates(p: _Prepared) -> list[str]:
    if p.intermittent:
        return list(INTERMITTENT)
    names = [SEASONAL_NAIVE]
    if p.season <= ETS_MAX_SEASON:
        names.append(AUTO_ETS)
    if p.season >= 2:
        names.append(MSTL)
    if p.sparse:
        names.extend(INTERMITTENT)
    return names


def _build(name: str, season: int, weekly: bool, form: str | None = None) -> Any:
    from statsforecast import models as sm

    if name == SEASONAL_NAIVE:
        return sm.SeasonalNaive(season_length=season, alias=name)
    if name == AUTO_ETS:
        if form is None:
            return sm.AutoETS(season_length=season, model="ZZZ", alias=name)
        # A trend is always damped when refitted: an undamped one extrapolates a straight line for the
        # two days the path covers (seen on servegen's endpoint: +70 % in 12 h).
        return sm.AutoETS(season_length=season, model=form[:3], damped=form[1] != "N", alias=name)
    if name == MSTL:
        seasons = [season, 7 * season] if weekly else [season]
        return sm.MSTL(season_length=seasons, trend_forecaster=sm.AutoETS(model="ZZN", damped=True), alias=name)
    if name == HISTORIC_AVERAGE:
        return sm.HistoricAverage(alias=name)
    if name == CROSTON:
        return sm.CrostonOptimized(alias=name)
    if name == ADIDA:
        return sm.ADIDA(alias=name)
    if name == IMAPA:
        return sm.IMAPA(alias=name)
    raise ValueError(f"unknown model {name!r}")


def _frame(members: list[_Prepared], tail: int | None = None) -> Any:
    """The long frame statsforecast wants; `ds` is the bucket index (freq=1)."""
    import numpy as np
    import pandas as pd

    ys = [p.y[-tail:] if tail else p.y for p in members]
    return pd.DataFrame(
        {
            "unique_id": np.repeat([p.target for p in members], [len(y) for y in ys]),
            "ds": np.concatenate([np.arange(len(y), dtype=np.int64) for y in ys]),
            "y": np.concatenate(ys),
        }
    )


def _simple_cv(name: str, p: _Prepared) -> _CV:
    """SeasonalNaive (the bucket a season back) or HistoricAverage (the mean before the window)
    out-of-sample forecasts over the last up-to-`CV_ORIGINS` seasons, in `_cross_validate`'s shape."""
    import numpy as np

    span = min(CV_ORIGINS * p.season, p.n - p.season)
    if span <= 0:
        empty = np.empty(0)
        return np.empty(0, dtype=np.int64), empty, empty
    ds = np.arange(p.n - span, p.n, dtype=np.int64)
    fc = np.full(span, float(np.mean(p.y[: p.n - span]))) if name == HISTORIC_AVERAGE else p.y[ds - p.season]
    return ds, p.y[ds], np.asarray(fc, dtype=np.float64)


def _baseline(p: _Prepared, ds: npt.NDArray[np.int64], fc: Array) -> tuple[int, Array] | None:
    """The out-of-sample baseline on the raw grid over the rolling-origin windows: (first raw index, rates)."""
    import numpy as np

    if ds.size == 0:
        return None
    first = int(ds.min())
    bucket = np.full(p.n - first, np.nan)
    bucket[ds - first] = np.clip(fc, 0.0, None)
    if np.isnan(bucket).any():  # windows should be contiguous to the end; anything else is not used
        return None
    base = np.repeat(bucket, p.k) * np.tile(p.profile, len(bucket))
    return first * p.k, base


def _calibrate(
    raw: Array, base: Array, shift: float, step: int, recent: int
) -> tuple[Array, float, list[float], float, int] | None:
    """Error quantiles of the update rule, replayed over out-of-sample baselines.

    Origins every `CALIBRATION_ORIGIN_S`; at each, the level ratio of the `recent` steps before it
    scales the baseline ahead exactly as `_update_group` does. Per lead-time band, the share of that
    correction (one of `ANCHOR_WEIGHTS`) with the least mean absolute error is kept: a fresh level is
    worth more five minutes ahead than a day ahead, and how much more depends on the target.
    A correction larger than `noise` (its 95th percentile in size over the calibration) is a level
    change, not noise: beyond it the correction applies in full (see `_applied`).
    Returns (errors[band][quantile], spike log-cap, share per band, noise, days used), or None under
    `MIN_CALIBRATION_S` of data.
    """
    import numpy as np

    n = len(raw)
    if n * step < MIN_CALIBRATION_S + recent * step:
        return None
    obs = ~np.isnan(raw)
    x = np.where(obs, raw, 0.0)
    c = shift
    resid = np.log((x[obs] + c) / (base[obs] + c))
    if resid.size < 10:
        return None
    cap = max(float(np.quantile(resid, 0.995)), math.log(2.0))
    every = max(1, CALIBRATION_ORIGIN_S // step)
    origins = np.arange(recent, n, every)
    windows = np.lib.stride_tricks.sliding_window_view(raw, recent)[origins - recent]
    bases = np.lib.stride_tricks.sliding_window_view(base, recent)[origins - recent]
    log_r = _anchor(windows, bases, c, cap)[0][:, 0]
    noise = float(np.quantile(np.abs(log_r), 0.95)) if log_r.size else 0.0

    shares = np.array(ANCHOR_WEIGHTS)
    measured: list[tuple[Array, float] | None] = []  # per band: (quantiles, share)
    for lo_s, hi_s in itertools.pairwise([0, *BAND_EDGES_S, DAY_S]):
        lo, hi = -(-lo_s // step), -(-hi_s // step)
        if hi <= lo:
            measured.append(None)
            continue
        offsets = np.unique(np.linspace(lo, hi - 1, min(OFFSETS_PER_BAND, hi - lo)).round().astype(np.int64))
        t = origins[:, None] + offsets[None, :]
        valid = t < n
        tt = np.where(valid, t, 0)
        valid &= obs[tt]
        if valid.sum() < 50:
            measured.append(None)
            continue
        b, r, actual = base[tt][valid], np.broadcast_to(log_r[:, None], tt.shape)[valid], x[tt][valid]
        applied = _applied(r[None], shares[:, None], noise)
        point = np.maximum((b[None] + c) * np.exp(applied) - c, 0.0)  # (shares, samples)
        best = int(np.argmin(np.mean(np.abs(actual[None] - point), axis=1)))
        e = np.log((actual + c) / (point[best] + c))
        measured.append((np.quantile(e, np.array(QUANTILES)), float(shares[best])))
    if all(m is None for m in measured):
        return None
    # a band without data takes the one before it (the first measured one, for leading bands)
    prev = next(m for m in measured if m is not None)
    rows: list[Array] = []
    chosen: list[float] = []
    for m in measured:
        prev = prev if m is None else m
        rows.append(prev[0])
        chosen.append(prev[1])
    errors = np.maximum.accumulate(np.array(rows), axis=1)
    median = errors[:, QUANTILES.index(0.5)][:, None]
    errors = median + (errors - median) * np.array(BAND_WIDENING)[:, None]
    return errors, cap, chosen, noise, int(-(-n // max(1, DAY_S // step)))


def _applied(log_r: Array, share: Array | float, noise: Array | float) -> Array:
    """The part of a log level correction that is applied: `share` of it within ±`noise` (the size
    it has on an ordinary day, where it is mostly noise) and all of it beyond (a real level change)."""
    import numpy as np

    inside = np.clip(log_r, -noise, noise)
    return np.asarray(share * inside + (log_r - inside), dtype=np.float64)


def _anchor(x: Array, base: Array, shift: Array | float, cap_log: Array | float) -> tuple[Array, Mask]:
    """Log level correction per row: log of (sum of capped x + c) / (sum of baseline + c), and
    whether a third of the row was observed (else 0: no correction).

    Rows are windows of raw rates (NaN = missing) with the baseline for the same steps. A sample
    counts at most max(baseline × exp(`cap_log`), 2 × the window's upper quartile): one spike moves
    the level little, a lasting change (every sample up) passes whole.
    """
    import numpy as np

    obs = ~np.isnan(x)
    count = obs.sum(axis=1, keepdims=True)
    enough = count * 3 >= x.shape[1]
    xs = np.where(obs, x, 0.0)
    # the upper quartile of the observed samples (np.sort puts NaN last; nanquantile is 20x slower)
    rank = (0.75 * np.maximum(count - 1, 0)).astype(np.int64)
    upper = np.take_along_axis(np.sort(x, axis=1), rank, axis=1)
    upper = np.where(count > 0, upper, 0.0)
    limit = np.maximum((base + shift) * np.exp(cap_log), 2.0 * (upper + shift)) - shift
    num = np.sum(np.where(obs, np.minimum(xs, limit) + shift, 0.0), axis=1, keepdims=True)
    den = np.sum(np.where(obs, base + shift, 0.0), axis=1, keepdims=True)
    ratio = np.where(enough, num / np.maximum(den, 1e-12), 1.0)
    return np.clip(np.log(ratio), -MAX_LOG_ANCHOR, MAX_LOG_ANCHOR), enough


def _dispersion_errors(raw: Array, shift: float, recent: int) -> Array:
    """Errors of "the mean of the last `recent` steps" on the history itself: a stand-in for bands
    when there is too little out-of-sample data (every lead-time band gets the same row)."""
    import numpy as np

    obs = ~np.isnan(raw)
    x = np.where(obs, raw, 0.0)
    sums = np.concatenate([[0.0], np.cumsum(x)])
    cnt = np.concatenate([[0], np.cumsum(obs)])
    idx = np.arange(recent, len(raw))
    have = (cnt[idx] - cnt[idx - recent]) > 0
    idx = idx[have & obs[idx]]
    if idx.size < 10:
        # hardly any data: a symmetric ±2x band
        row = np.log(np.array([0.5, 0.6, 0.7, 1.0, 1.5, 1.6, 1.8, 2.0]))
    else:
        level = (sums[idx] - sums[idx - recent]) / (cnt[idx] - cnt[idx - recent])
        row = np.quantile(np.log((x[idx] + shift) / (level + shift)), np.array(QUANTILES))
    return np.tile(np.maximum.accumulate(row), (len(BAND_EDGES_S) + 1, 1))


def _mase_scale(y: Array, observed: Mask, season: int) -> float:
    """In-sample seasonal-naive MAE on observed pairs; the mean level, or 1, when that is zero."""
    import numpy as np

    if len(y) > season:
        both = observed[season:] & observed[:-season]
        diffs = np.abs(y[season:] - y[:-season])[both]
        if diffs.size and float(diffs.mean()) > 1e-12:
            return float(diffs.mean())
    level = float(np.mean(np.abs(y[observed]))) if observed.any() else 0.0
    return level if level > 1e-12 else 1.0


def _zero_forecast(h: SeriesHistory, horizon_s: int) -> Forecast:
    steps = -(-horizon_s // h.step_s)
    zeros = (0.0,) * steps
    return Forecast(
        target=h.target,
        issued_at=h.end,
        start=h.end,
        step_s=h.step_s,
        quantiles=dict.fromkeys(QUANTILES, zeros),
        model=ZERO,
        notes=("model Zero", "fallback: every observed rate is zero; forecasting zero (missing samples ignored)"),
    )


def _young_forecast(h: SeriesHistory, horizon_s: int, recent_s: int) -> Forecast | None:
    """A new target: the mean of its last `recent_s` held flat, bands from its own dispersion."""
    import numpy as np

    step = h.step_s
    raw = _as_array(h.rates, len(h.rates))
    obs = ~np.isnan(raw)
    if not obs.any():
        return None
    recent = max(3, -(-recent_s // step))
    tail = raw[-recent:][obs[-recent:]]
    if tail.size == 0:  # the newest samples are all missing: use the newest observed ones
        tail = raw[obs][-recent:]
    level = float(tail.mean())
    shift = max(0.5 / step, SHIFT_SHARE * float(raw[obs].mean()))
    row = _dispersion_errors(raw, shift, recent)[0]
    steps = -(-horizon_s // step)
    values = np.maximum((level + shift) * np.exp(row) - shift, 0.0)
    observed_h = obs.sum() * step / 3600
    return Forecast(
        target=h.target,
        issued_at=h.end,
        start=h.end,
        step_s=step,
        quantiles={q: (float(v),) * steps for q, v in zip(QUANTILES, np.sort(values), strict=True)},
        model=FALLBACK,
        notes=(
            "model Fallback",
            f"fallback: only {observed_h:.1f} h of observed history (a model needs a day); "
            "recent mean held flat, bands from the history's own dispersion",
        ),
    )
