"""Per-target request-rate forecasts (requests/s) with statsforecast.

Models are fitted on bucket means (1 h by default), not on the raw 60 s / 600 s grid: a daily season
of 144 or 1440 raw steps is too long for ETS, too slow for everything, and the raw samples are noisy.
The daily season is then 24 buckets, and MSTL also gets a weekly one once three weeks of data exist.
Missing samples (None) are collection gaps, not zero demand: a bucket without samples is filled from
the same bucket a season earlier, else by interpolation.

Each target gets its own model, chosen by rolling-origin MASE on its own bucket history (3 origins,
one season ahead each) and kept for `reselect_every_s` of data time. Every `forecast` call refits the
chosen models, one batched `StatsForecast.forecast` per distinct model; for AutoETS the components
found at selection (e.g. "MAMN") are refitted on the last 14 days, which skips the 4x dearer 'ZZZ'
search. Quantiles come from the model's levels (80/90/98 %), or for Croston/ADIDA/IMAPA from the
empirical relative errors at the rolling origins. The bucket forecast is spread back onto the
history's own grid with the mean intra-bucket profile of the last 7 days; the other quantiles are
those of bucket rate x within-bucket ratio (both empirical, taken as independent), so a bursty
minute within a calm hour still shows in the upper tail.

Thresholds:
- no forecast (target omitted) with fewer than one season of observed buckets (one day at 1 h),
  or when every observed rate is zero or the history is all None;
- model selection needs >= 3 seasons of buckets (two to train, one to test); before that the target
  gets SeasonalNaive (HistoricAverage if intermittent) unselected, `mase=None`, and selection is
  retried on the next call;
- a target is sparse when more than 30 % of its observed buckets are zero. A sparse target with a
  daily pattern (lag-one-day autocorrelation of bucket means >= 0.2, e.g. office-hours traffic)
  gets CrostonOptimized, ADIDA and IMAPA added to the seasonal candidates; one without is
  intermittent and only those three compete (its profile inside a bucket is taken as flat). MAE
  rewards forecasting zero on such series, so letting seasonal models compete there mostly picks
  whichever model happens to undershoot.

pandas, numpy and statsforecast are imported inside methods only: the zip Lambdas import `forescale`
without them. DataFrames never leave this module.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forescale.domain.forecast import Forecast, SeriesHistory

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.float64]
    Mask = npt.NDArray[np.bool_]

DAY_S = 86_400

LEVELS: tuple[int, ...] = (80, 90, 98)
LEVEL_QUANTILES: dict[int, tuple[float, float]] = {80: (0.1, 0.9), 90: (0.05, 0.95), 98: (0.01, 0.99)}
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99)
_LOWER = (0.1, 0.05, 0.01)  # from the median outwards
_UPPER = (0.9, 0.95, 0.99)

SPARSE_ZERO_SHARE = 0.30
SEASONAL_ACF = 0.2  # lag-one-day autocorrelation above which a sparse series still has a daily shape
ETS_MAX_SEASON = 24  # statsforecast's ETS silently drops a longer season
ETS_MAX_DAYS = 14  # ETS cost grows with length; two weeks hold the daily shape
WEEKLY_MIN_DAYS = 21
CV_ORIGINS = 3
PROFILE_DAYS = 7
_GRID_POINTS = 100  # resolution of the distributions combined in _spread
_ERROR_FLOOR_SHARE = 0.1  # conformal errors are relative to max(forecast, 10 % of the mean level)

SEASONAL_NAIVE = "SeasonalNaive"
HISTORIC_AVERAGE = "HistoricAverage"
AUTO_ETS = "AutoETS"
MSTL = "MSTL"
CROSTON = "CrostonOptimized"
ADIDA = "ADIDA"
IMAPA = "IMAPA"
INTERMITTENT: tuple[str, ...] = (CROSTON, ADIDA, IMAPA)
_NO_NATIVE_INTERVALS = frozenset(INTERMITTENT)  # they raise when asked for levels without conformal set-up
_FORWARD_CV = frozenset({AUTO_ETS, MSTL})  # costly fits: fit at the first origin, then `forward`


@dataclass(slots=True)
class _Prepared:
    """One target's history on the bucket grid, plus what disaggregation needs."""

    history: SeriesHistory
    k: int  # raw steps per bucket
    agg_s: int
    season: int  # buckets per day
    y: Array  # bucket mean rates, gaps filled, leading empty buckets dropped; last bucket ends at history.end
    observed: Mask  # the bucket had at least one sample
    profile: Array  # multiplier per position inside a bucket, mean 1
    sub_ratio: Array | None  # raw / (bucket mean * profile) at the probabilities _GRID; None when k == 1
    sparse: bool
    seasonal: bool  # has a daily pattern (or too short to tell)
    horizon_steps: int
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

    @property
    def h_buckets(self) -> int:
        return -(-self.horizon_steps // self.k)


@dataclass(frozen=True, slots=True)
class _Selection:
    model: str
    season: int
    at: int  # history.end when selected (data time, so replays behave like production)
    mase: float
    ets_form: str | None  # AutoETS components chosen at selection, e.g. "MAMN"; refitted daily
    errors: dict[float, float]  # conformal quantiles of relative rolling-origin errors, by probability
    scores: dict[str, float]


class StatsForecastAdapter:
    """The `Forecaster` used by the forecaster image and by `forescale replay`.

    Keeps one model choice per target between calls (`_selected`); everything else is refitted.
    """

    def __init__(
        self,
        agg_s: int = 3600,
        reselect_every_s: int = 7 * DAY_S,
        max_history_days: int = 28,
        min_history_s: int = DAY_S,
    ) -> None:
        for name, value in (
            ("agg_s", agg_s),
            ("reselect_every_s", reselect_every_s),
            ("max_history_days", max_history_days),
            ("min_history_s", min_history_s),
        ):
            if value <= 0:
                raise ValueError(f"StatsForecastAdapter: {name} must be > 0, got {value}")
        self.agg_s = agg_s
        self.reselect_every_s = reselect_every_s
        self.max_history_days = max_history_days
        self.min_history_s = min_history_s
        self._selected: dict[str, str] = {}
        self._selections: dict[str, _Selection] = {}

    # ----------------------------------------------------------------------------------- public

    def forecast(
        self,
        histories: Sequence[SeriesHistory],
        horizon_s: int,
        *,
        reselect: Collection[str] = (),
    ) -> dict[str, Forecast]:
        """One forecast per target with enough data, on its own grid from `history.end`.

        `reselect` names targets whose model choice is redone now regardless of its age.
        """
        if isinstance(reselect, str):  # a bare name, not its letters
            reselect = {reselect}
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

        prepared = [p for h in histories if (p := self._prepare(h, horizon_s)) is not None]
        if not prepared:
            return {}
        due = [p for p in prepared if self._selection_due(p, reselect)]
        if due:
            self._select(due)

        groups: dict[tuple[str, int, bool, str | None], list[_Prepared]] = {}
        for p in prepared:
            groups.setdefault(self._model_key(p), []).append(p)
        out: dict[str, Forecast] = {}
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
            for p in members:
                mean, intervals = paths[p.target]
                out[p.target] = self._assemble(p, key, mean, intervals)
        return out

    # ------------------------------------------------------------------------------ preparation

    def _prepare(self, history: SeriesHistory, horizon_s: int) -> _Prepared | None:
        import numpy as np

        step = history.step_s
        k = _steps_per_bucket(step, self.agg_s)
        agg_s = k * step
        season = max(1, DAY_S // agg_s)
        keep = min(len(history.rates), self.max_history_days * DAY_S // step)
        rates = history.rates[len(history.rates) - keep :]
        raw = np.array(
            [np.nan if r is None or not math.isfinite(r) else max(float(r), 0.0) for r in rates],
            dtype=np.float64,
        )
        raw = raw[len(raw) % k :]  # buckets end at history.end; a partial oldest bucket is dropped
        if raw.size == 0:
            return None
        grid = raw.reshape(-1, k)
        counts = np.sum(~np.isnan(grid), axis=1)
        sums = np.nansum(grid, axis=1)
        observed = counts > 0
        if not observed.any():
            return None
        first = int(np.argmax(observed))
        grid, counts, sums, observed = grid[first:], counts[first:], sums[first:], observed[first:]
        n_obs = int(observed.sum())
        if n_obs < season or n_obs * agg_s < self.min_history_s:
            return None
        y = np.full(len(grid), np.nan)
        y[observed] = sums[observed] / counts[observed]
        if not np.any(y[observed] > 0):
            return None
        notes = [f"buckets {agg_s}s, season {season}"]
        missing = int((~observed).sum())
        if missing:
            y = _fill_gaps(y, season)
            notes.append(f"{missing} empty buckets filled")
        sparse = float(np.mean(y[observed] == 0)) > SPARSE_ZERO_SHARE
        seasonal = _seasonal_acf(y, season) >= SEASONAL_ACF
        # bursts land anywhere in a bucket: a position profile of a sparse series is noise
        profile, sub_ratio = _intra_bucket(grid[-PROFILE_DAYS * season :], flat=sparse and not seasonal)
        return _Prepared(
            history=history,
            k=k,
            agg_s=agg_s,
            season=season,
            y=y,
            observed=observed,
            profile=profile,
            sub_ratio=sub_ratio,
            sparse=sparse,
            seasonal=seasonal,
            horizon_steps=-(-horizon_s // step),
            notes=notes,
        )

    # -------------------------------------------------------------------------------- selection

    def _selection_due(self, p: _Prepared, reselect: Collection[str]) -> bool:
        sel = self._selections.get(p.target)
        if sel is None or p.target in reselect or sel.season != p.season:
            return True
        age = p.history.end - sel.at
        return age < 0 or age >= self.reselect_every_s

    def _select(self, due: list[_Prepared]) -> None:
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

        # target -> model -> (bucket index, actual, forecast)
        cv: dict[str, dict[str, tuple[Any, Any, Any]]] = {p.target: {} for p in due}
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
        chosen: dict[str, tuple[str, float, dict[float, float], dict[str, float]]] = {}
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
            ds, actual, fc = cv[p.target][best]
            use = p.observed[ds]
            errors = _relative_error_quantiles(actual[use], np.clip(fc[use], 0.0, None), p.y[:train_n])
            chosen[p.target] = (best, finite[best], errors, scores)
            if best == AUTO_ETS:
                ets_winners.append(p)

        forms = self._ets_forms(ets_winners)
        for p in due:
            if p.target not in chosen:
                p.notes.append("no model selection this call (under three seasons, or no candidate scored)")
                continue
            best, mase, errors, scores = chosen[p.target]
            self._selections[p.target] = _Selection(
                model=best,
                season=p.season,
                at=p.history.end,
                mase=mase,
                ets_form=forms.get(p.target),
                errors=errors,
                scores=scores,
            )
            self._selected[p.target] = best
            ranked = ", ".join(f"{n} {s:.3g}" for n, s in sorted(scores.items(), key=lambda kv: kv[1]))
            p.notes.append(f"selected at {p.history.end} by rolling-origin MASE: {ranked}")

    def _cross_validate(
        self, name: str, season: int, weekly: bool, n_orig: int, members: list[_Prepared]
    ) -> dict[str, tuple[Any, Any, Any]]:
        from statsforecast import StatsForecast
        from statsforecast.models import HistoricAverage, Naive

        forward = name in _FORWARD_CV
        sf = StatsForecast(
            models=[_build(name, season, weekly)],
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
        result: dict[str, tuple[Any, Any, Any]] = {}
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

    # ------------------------------------------------------------------------------ forecasting

    def _model_key(self, p: _Prepared) -> tuple[str, int, bool, str | None]:
        sel = self._selections.get(p.target)
        if sel is None or sel.season != p.season:
            # unselected (short history): native intervals, and no replayed bursts for intermittent ones
            return (HISTORIC_AVERAGE if p.intermittent else SEASONAL_NAIVE, p.season, False, None)
        form = sel.ets_form if sel.model == AUTO_ETS else None
        if form is not None and "M" in form[:3] and float(p.y.min()) <= 0:
            form = None  # multiplicative forms fail on zeros: search again
        return (sel.model, p.season, p.weekly if sel.model == MSTL else False, form)

    def _batch_forecast(
        self, key: tuple[str, int, bool, str | None], members: list[_Prepared]
    ) -> dict[str, tuple[Array, dict[float, Array] | None]]:
        import numpy as np
        from statsforecast import StatsForecast
        from statsforecast.models import HistoricAverage

        name, season, weekly, form = key
        h = max(p.h_buckets for p in members)
        native = name not in _NO_NATIVE_INTERVALS
        sf = StatsForecast(
            models=[_build(name, season, weekly, form)], freq=1, n_jobs=1, fallback_model=HistoricAverage()
        )
        tail = ETS_MAX_DAYS * season if name == AUTO_ETS else None
        fc = sf.forecast(df=_frame(members, tail=tail), h=h, level=list(LEVELS) if native else None)
        result: dict[str, tuple[Array, dict[float, Array] | None]] = {}
        for uid, unsorted in fc.groupby("unique_id", sort=False):
            g = unsorted.sort_values("ds")
            mean = g[name].to_numpy(dtype=np.float64)
            intervals: dict[float, Array] | None = None
            if native:
                intervals = {}
                for level in LEVELS:
                    lo_q, hi_q = LEVEL_QUANTILES[level]
                    intervals[lo_q] = g[f"{name}-lo-{level}"].to_numpy(dtype=np.float64)
                    intervals[hi_q] = g[f"{name}-hi-{level}"].to_numpy(dtype=np.float64)
            result[str(uid)] = (mean, intervals)
        return result

    def _assemble(
        self,
        p: _Prepared,
        key: tuple[str, int, bool, str | None],
        mean: Array,
        intervals: dict[float, Array] | None,
    ) -> Forecast:
        import numpy as np

        name, season, weekly, form = key
        notes = list(p.notes)
        sel = self._selections.get(p.target)
        if sel is None or sel.season != p.season or sel.model != name:
            sel = None  # its MASE and errors describe another model
        if not np.all(np.isfinite(mean)):
            level = float(np.mean(p.y[-season:]))
            mean = np.where(np.isfinite(mean), mean, level)
            notes.append("non-finite model output replaced by the last season's mean")
        mean = np.clip(mean, 0.0, None)

        floor = _ERROR_FLOOR_SHARE * float(np.mean(p.y[-PROFILE_DAYS * season :]))
        if intervals is not None and all(np.all(np.isfinite(v)) for v in intervals.values()):
            notes.append("intervals: model")
        elif sel is not None and sel.errors:
            scale = np.maximum(mean, floor)
            intervals = {q: mean + e * scale for q, e in sel.errors.items()}
            notes.append("intervals: conformal from rolling-origin errors")
        else:
            intervals = {q: mean for q in (*_LOWER, *_UPPER)}
            notes.append("intervals: none available, collapsed to the median")

        per_bucket = _monotone({0.5: mean, **intervals})
        if p.sub_ratio is not None:
            per_bucket = _spread(per_bucket, p.sub_ratio)
        idx = np.arange(p.horizon_steps)
        bucket, shape = idx // p.k, p.profile[idx % p.k]
        raw = {q: path[bucket] * shape for q, path in per_bucket.items()}
        if not all(np.all(np.isfinite(path)) for path in raw.values()):
            # never expected; one bad target must not sink the whole call
            raw = {q: np.where(np.isfinite(path), path, raw[0.5]) for q, path in raw.items()}
            raw[0.5] = np.nan_to_num(raw[0.5], nan=0.0, posinf=0.0)
            notes.append("non-finite quantiles replaced by the median")
        paths = _monotone(raw)

        label = name
        if form is not None:
            label = f"{name}({form})"
        elif name == MSTL:
            label = f"{name}{[season, 7 * season] if weekly else [season]}"
        notes.insert(0, f"model {label}")
        return Forecast(
            target=p.target,
            issued_at=p.history.end,
            start=p.history.end,
            step_s=p.history.step_s,
            quantiles={q: tuple(paths[q].tolist()) for q in QUANTILES},
            model=name,
            mase=sel.mase if sel is not None else None,
            notes=tuple(notes),
        )


# ---------------------------------------------------------------------------------------- helpers


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


def _grid() -> Array:
    import numpy as np

    return (np.arange(_GRID_POINTS) + 0.5) / _GRID_POINTS


def _intra_bucket(grid: Array, flat: bool = False) -> tuple[Array, Array | None]:
    """Mean share of each position in a bucket (mean 1), and the distribution of the scatter around it.

    Only complete buckets with traffic count; with none, the profile is flat and there is no scatter.
    """
    import numpy as np

    k = grid.shape[1]
    ones = np.ones(k)
    if k == 1:
        return ones, None
    full = grid[~np.isnan(grid).any(axis=1)]
    full = full[full.mean(axis=1) > 0]
    if len(full) == 0:
        return ones, None
    shares = full / full.mean(axis=1, keepdims=True)
    profile = ones if flat else shares.mean(axis=0)
    profile = profile / profile.mean()
    live = profile > 0  # a position that never sees traffic has no scatter to measure
    ratio = (shares[:, live] / profile[live]).ravel()
    return profile, np.quantile(ratio, _grid())


def _spread(per_bucket: dict[float, Array], ratio: Array) -> dict[float, Array]:
    """Quantiles of a raw step: bucket rate times within-bucket ratio, taken as independent.

    The bucket distribution is read off its quantile paths (linear in probability, flat beyond 1 %
    and 99 %); a raw step is a product, so a bursty bucket widens the upper tail multiplicatively.
    The median stays the point forecast.
    """
    import numpy as np

    probs = np.array(sorted(per_bucket))
    knots = np.stack([per_bucket[q] for q in sorted(per_bucket)])  # (quantiles, buckets)
    u = _grid()
    j = np.clip(np.searchsorted(probs, u) - 1, 0, len(probs) - 2)
    w = np.clip((u - probs[j]) / (probs[j + 1] - probs[j]), 0.0, 1.0)
    buckets = knots[j] * (1 - w)[:, None] + knots[j + 1] * w[:, None]  # (grid, buckets)
    products = (buckets[:, None, :] * ratio[None, :, None]).reshape(-1, knots.shape[1])
    outer = [*_LOWER, *_UPPER]
    values = np.quantile(products, outer, axis=0)
    return {0.5: per_bucket[0.5], **{q: values[i] for i, q in enumerate(outer)}}


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
        return sm.AutoETS(season_length=season, model=form[:3], damped=form[3] == "D", alias=name)
    if name == MSTL:
        seasons = [season, 7 * season] if weekly else [season]
        return sm.MSTL(season_length=seasons, trend_forecaster=sm.AutoETS(model="ZZN"), alias=name)
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


def _relative_error_quantiles(actual: Array, forecast: Array, train: Array) -> dict[float, float]:
    """Empirical quantiles of (actual - forecast) / max(forecast, floor), for conformal intervals."""
    import numpy as np

    if actual.size == 0:
        return {}
    floor = max(_ERROR_FLOOR_SHARE * float(np.mean(train)), 1e-9)
    rel = (actual - forecast) / np.maximum(forecast, floor)
    return {q: float(np.quantile(rel, q)) for q in (*_LOWER, *_UPPER)}


def _monotone(paths: dict[float, Array]) -> dict[float, Array]:
    """Clip at 0 and order the quantiles at every step outwards from the median, which stays put."""
    import numpy as np

    out = {0.5: np.clip(paths[0.5], 0.0, None)}
    prev = out[0.5]
    for q in _UPPER:
        prev = out[q] = np.maximum(np.clip(paths[q], 0.0, None), prev)
    prev = out[0.5]
    for q in _LOWER:
        prev = out[q] = np.minimum(np.clip(paths[q], 0.0, None), prev)
    return out
