"""Preparation: one target's raw request-rate history (requests/s) on the bucket grid the models see.

Implausible raw samples are dropped, outlier buckets clipped, empty buckets filled (missing is not
zero), and the intra-bucket profile and the sparse/seasonal flags measured. numpy loads on first use.
"""

from __future__ import annotations

import math
import warnings
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forescale.domain.forecast import SeriesHistory
from forescale.domain.history import SPIKE_FACTOR

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.float64]
    Mask = npt.NDArray[np.bool_]

DAY_S = 86_400

SPARSE_ZERO_SHARE = 0.30
SEASONAL_ACF = 0.2  # lag-one-day autocorrelation above which a sparse series still has a daily shape
WEEKLY_MIN_DAYS = 21
PROFILE_DAYS = 7
SHIFT_SHARE = 0.2  # c = 20 % of the mean rate (at least half a request per step)
OUTLIER_SIGMAS = 6.0
SPIKE_SIGMAS = 6.0  # a raw sample's local level: its buckets' median + this many robust deviations


@dataclass(slots=True)
class Prepared:
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


def prepare(
    history: SeriesHistory, max_agg_s: int, max_history_days: int, min_history_s: int
) -> tuple[str, Prepared | None]:
    """("ok", prepared) or ("none" | "zero" | "young", None) for no data, all zero, too short.

    `max_agg_s` is the bucket length asked for (s; the adapter's `agg_s`, see `steps_per_bucket`),
    `max_history_days` how much history is read, `min_history_s` the observed history (s) a model
    needs: under it a target is "young".
    """
    import numpy as np

    step = history.step_s
    k = steps_per_bucket(step, max_agg_s)
    agg_s = k * step
    season = max(1, DAY_S // agg_s)
    keep = min(len(history.rates), max_history_days * DAY_S // step)
    raw = as_array(history.rates, keep)
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
    if n_obs < season or n_obs * agg_s < min_history_s:
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
    return "ok", Prepared(
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


def as_array(rates: Sequence[float | None], last: int) -> Array:
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


def steps_per_bucket(step_s: int, agg_s: int) -> int:
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
