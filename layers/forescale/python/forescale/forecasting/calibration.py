"""Calibration: a refit's error bands, measured out of sample (split conformal, per lead-time band).

The chosen model's rolling-origin windows are replayed through the update rule; per lead-time band
the share of the level correction with the least error and the quantiles of the resulting log
errors are kept in the target's `TargetState`. Short histories get bands from their own dispersion.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

from forescale.forecasting.model_choice import (
    CV,
    CV_ORIGINS,
    HISTORIC_AVERAGE,
    MSTL,
    SEASONAL_NAIVE,
    Selection,
    cross_validate,
)
from forescale.forecasting.preparation import DAY_S, Prepared
from forescale.forecasting.state import BAND_EDGES_S, QUANTILES, TargetState
from forescale.forecasting.update import applied_correction, level_correction, recent_steps

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from forescale.forecasting.preparation import Array

# Hours ahead, a few calibration days see too few day-to-day level swings: bands 1-6 h and 6-24 h
# are widened around the median (set on the generated fleet's day-ahead p99 coverage; see docs).
BAND_WIDENING: tuple[float, ...] = (1.0, 1.0, 1.0, 1.15, 1.35)
MIN_CALIBRATION_S = 6 * 3600  # out-of-sample span needed for calibrated bands
CALIBRATION_ORIGIN_S = 600  # simulated update origins every 10 minutes
OFFSETS_PER_BAND = 12
ANCHOR_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # shares of the level correction tried per band


def fit_state(
    p: Prepared,
    key: tuple[str, int, bool, str | None],
    path: Array,
    cv: tuple[str, CV, int] | None,
    *,
    sel: Selection | None,
    recent_s: int,
) -> TargetState:
    """The state a refit leaves: the model's bucket path `path` (requests/s) cleaned, with error bands
    calibrated on the rolling-origin windows `cv` (or the history's dispersion without them); `sel` is
    the target's model choice (its MASE is kept when it chose this model), `recent_s` the update's window."""
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
                recent_steps(recent_s, p.history.step_s),
            )
            if calibrated is not None:
                errors, cap, anchor, noise, days = calibrated
                how = f"conformal: {cv_name} rolling-origin windows, {days} days"
    if errors is None:
        errors = dispersion_errors(p.raw, p.shift, recent_steps(recent_s, p.history.step_s))
        how = "short-history dispersion (under 6 h out of sample)"
    notes.append(f"intervals: {how}")
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


def calibration_cv(key: tuple[str, int, bool, str | None], members: list[Prepared]) -> dict[str, tuple[str, CV, int]]:
    """Rolling-origin windows of the model in use, for targets that were not just selected.

    SeasonalNaive and HistoricAverage windows are computed directly (they are one line each);
    a failing model's targets are calibrated on SeasonalNaive windows, with a note.
    """
    name, season, weekly, form = key
    out: dict[str, tuple[str, CV, int]] = {}
    by_orig: dict[int, list[Prepared]] = {}
    for p in members:
        by_orig.setdefault(min(CV_ORIGINS, p.n // p.season - 2), []).append(p)
    for n_orig, group in by_orig.items():
        if name in (SEASONAL_NAIVE, HISTORIC_AVERAGE) or n_orig < 1:
            for p in group:
                out[p.target] = (name, simple_cv(name, p), 0)
            continue
        try:
            scored = cross_validate(name, season, weekly, n_orig, group, form)
        except Exception as exc:
            for p in group:
                p.notes.append(f"{name} windows failed ({type(exc).__name__}); calibrated on SeasonalNaive")
                out[p.target] = (SEASONAL_NAIVE, simple_cv(SEASONAL_NAIVE, p), 0)
            continue
        for p in group:
            out[p.target] = (name, scored[p.target], n_orig)
    return out


def simple_cv(name: str, p: Prepared) -> CV:
    """SeasonalNaive (the bucket a season back) or HistoricAverage (the mean before the window)
    out-of-sample forecasts over the last up-to-`CV_ORIGINS` seasons, in `cross_validate`'s shape."""
    import numpy as np

    span = min(CV_ORIGINS * p.season, p.n - p.season)
    if span <= 0:
        empty = np.empty(0)
        return np.empty(0, dtype=np.int64), empty, empty
    ds = np.arange(p.n - span, p.n, dtype=np.int64)
    fc = np.full(span, float(np.mean(p.y[: p.n - span]))) if name == HISTORIC_AVERAGE else p.y[ds - p.season]
    return ds, p.y[ds], np.asarray(fc, dtype=np.float64)


def _baseline(p: Prepared, ds: npt.NDArray[np.int64], fc: Array) -> tuple[int, Array] | None:
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
    scales the baseline ahead exactly as the update (`update_forecasts`) does. Per lead-time band, the share of that
    correction (one of `ANCHOR_WEIGHTS`) with the least mean absolute error is kept: a fresh level is
    worth more five minutes ahead than a day ahead, and how much more depends on the target.
    A correction larger than `noise` (its 95th percentile in size over the calibration) is a level
    change, not noise: beyond it the correction applies in full (see `applied_correction`).
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
    log_r = level_correction(windows, bases, c, cap)[0][:, 0]
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
        applied = applied_correction(r[None], shares[:, None], noise)
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


def dispersion_errors(raw: Array, shift: float, recent: int) -> Array:
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
