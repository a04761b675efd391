"""Update: forecasts between refits from stored states, numpy only, vectorised over all targets.

The stored path × profile is the baseline; its level is re-anchored to the newest raw samples (a
share of the correction per lead-time band, all of whatever exceeds its usual size), and the
calibrated log-error quantiles give the bands.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.forecasting.preparation import DAY_S, as_array
from forescale.forecasting.state import BAND_EDGES_S, QUANTILES, TargetState

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from forescale.forecasting.preparation import Array, Mask

MAX_LOG_ANCHOR = math.log(10.0)  # the level correction stays within 10x either way


def recent_steps(recent_s: int, step_s: int) -> int:
    """Raw steps the level is re-anchored on: `recent_s` seconds, at least three steps."""
    return max(3, -(-recent_s // step_s))


def update_forecasts(
    items: list[tuple[SeriesHistory, TargetState, list[str]]], horizon_s: int, recent_s: int
) -> dict[str, Forecast]:
    """Forecasts from stored states, vectorised over every target sharing a grid; `recent_s` is the
    window (s) the level is re-anchored on."""
    groups: dict[tuple[int, int, int, int], list[tuple[SeriesHistory, TargetState, list[str]]]] = {}
    for item in items:
        _, st, _ = item
        groups.setdefault((st.step_s, st.k, st.season, len(st.path)), []).append(item)
    out: dict[str, Forecast] = {}
    for (step, k, season, n_path), members in groups.items():
        for i in range(0, len(members), 2000):  # bounds the (targets × horizon × quantiles) temporaries
            out.update(_update_group(members[i : i + 2000], step, k, season, n_path, horizon_s, recent_s))
    return out


def _update_group(
    members: list[tuple[SeriesHistory, TargetState, list[str]]],
    step: int,
    k: int,
    season: int,
    n_path: int,
    horizon_s: int,
    recent_s: int,
) -> dict[str, Forecast]:
    import numpy as np

    n = len(members)
    horizon = -(-horizon_s // step)
    recent = recent_steps(recent_s, step)
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
        tail = as_array(h.rates, recent)
        if tail.size:
            x[i, recent - tail.size :] = tail

    def baseline(j: npt.NDArray[np.int64]) -> Array:
        b = j // k
        b = np.where(b < 0, b % season, np.where(b >= n_path, n_path - season + (b - n_path) % season, b))
        rows = np.arange(n)[:, None]
        return np.asarray(path[rows, b] * profile[rows, j % k], dtype=np.float64)

    past = baseline(since - recent + np.arange(recent)[None, :])
    log_r, enough = level_correction(x, past, shift, cap)

    h_idx = np.arange(horizon)
    ahead = baseline(since + h_idx[None, :])
    # the anchor share and the errors vary smoothly with lead time (no step where a band ends)
    bands = _band_weights(step, horizon)
    share = anchor @ bands.T  # (n, horizon)
    point = np.maximum((ahead + shift) * np.exp(applied_correction(log_r, share, noise)) - shift, 0.0)
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


def level_correction(x: Array, base: Array, shift: Array | float, cap_log: Array | float) -> tuple[Array, Mask]:
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


def applied_correction(log_r: Array, share: Array | float, noise: Array | float) -> Array:
    """The part of a log level correction that is applied: `share` of it within ±`noise` (the size
    it has on an ordinary day, where it is mostly noise) and all of it beyond (a real level change)."""
    import numpy as np

    inside = np.clip(log_r, -noise, noise)
    return np.asarray(share * inside + (log_r - inside), dtype=np.float64)
