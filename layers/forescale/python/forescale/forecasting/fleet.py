"""A generated fleet: thousands of varied request-rate series, numpy-vectorised, for the forecasting benchmark.

The built-in workload (`forescale.replay.workload`) draws four named targets with the standard
library, one sample at a time; that is right for a replay and far too slow for 10,000 targets. This
module draws the same archetypes with per-target random parameters, each series as whole numpy
arrays over time (about 1.5 ms a target-week of minutes). Rates are requests/s per step (Poisson
counts / step_s), UTC, starting at `DEFAULT_START` (a Monday). The mix, by share of the fleet:

- ``diurnal`` (50 %): a business API or endpoint. Level log-uniform in [0.2, 400] req/s; the daily
  cycle of `workload` (exp(a1(cos θ − 1) + a2(cos 2θ − 1)), peak hour uniform in [8, 22) UTC,
  peak/trough 1.5-10x); weekends 0.5-1.0x; a log-space Ornstein-Uhlenbeck drift (σ 0.02-0.10,
  τ 1-4 days); log-normal AR(1) noise (σ 0.02-0.15, τ 3-20 min); a growth trend of −3 to +5 %/day.
- ``cron`` (15 %): a background of 0.1-5 req/s plus bursts every 1, 2, 3, 4 or 6 hours at a fixed
  minute (± 0-3 min jitter), 5-30x the background, decaying over 5-30 min.
- ``sparse`` (15 %): 0.5-30 calls an hour with a mild daily cycle; most minutes are zero.
- ``office`` (15 %): on/off business hours, 08:00-18:00 local (a UTC offset of −8..+9 h), weekdays
  only; a floor of 0-3 % of the day level at night.
- ``zero`` (5 %): a registered target that gets no traffic.

Events on top, drawn per target: a one-off surge (10 % of targets, 3-10x for 10-60 min, on the last
two days), a collection gap (10 %, 5-90 min of NaN, missing not zero) and a lasting level shift
(5 %, 0.5-2x from a random time on the last three days).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forescale.domain.forecast import SeriesHistory

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.float64]

DAY_S = 86_400
DEFAULT_START = 1_767_571_200  # Monday 2026-01-05 00:00 UTC, as the built-in workload
ARCHETYPES: tuple[tuple[str, float], ...] = (
    ("diurnal", 0.50),
    ("cron", 0.15),
    ("sparse", 0.15),
    ("office", 0.15),
    ("zero", 0.05),
)
_CHUNK = 256  # targets per generated matrix in `iter_histories`: bounds its temporaries


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """What to generate. `days` of `step_s` steps for `targets` series; validated on construction."""

    targets: int = 10_000
    days: float = 7.0
    step_s: int = 60
    seed: int = 11
    start: int = DEFAULT_START

    def __post_init__(self) -> None:
        if isinstance(self.targets, bool) or not isinstance(self.targets, int) or self.targets < 1:
            raise ValueError(f"FleetSpec: targets must be an integer >= 1, got {self.targets!r}")
        if not (isinstance(self.days, int | float) and math.isfinite(self.days) and 0 < self.days <= 400):
            raise ValueError(f"FleetSpec: days must be in (0, 400], got {self.days!r}")
        if isinstance(self.step_s, bool) or not isinstance(self.step_s, int) or self.step_s <= 0 or DAY_S % self.step_s:
            raise ValueError(f"FleetSpec: step_s must be a positive divisor of 86400, got {self.step_s!r}")

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.days * DAY_S / self.step_s - 1e-9))

    @property
    def end(self) -> int:
        return self.start + self.steps * self.step_s


def archetype_of(index: int, targets: int, seed: int) -> str:
    """The archetype of target `index` (stable for a seed and fleet size)."""
    return _archetypes(targets, seed)[index]


def _archetypes(targets: int, seed: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng([seed, 0])
    names = [a for a, _ in ARCHETYPES]
    shares = np.array([s for _, s in ARCHETYPES])
    return [names[i] for i in rng.choice(len(names), size=targets, p=shares / shares.sum())]


def generate_matrix(spec: FleetSpec, first: int = 0, count: int | None = None) -> tuple[list[str], Array]:
    """Targets `first`..`first+count-1` as (names, rates[count, steps]); NaN marks a collection gap.

    A target's series depends only on (seed, its index, days, step_s), not on the chunking.
    """
    import numpy as np

    count = spec.targets - first if count is None else count
    if first < 0 or count < 0 or first + count > spec.targets:
        raise ValueError(f"generate_matrix: targets {first}..{first + count} outside 0..{spec.targets}")
    kinds = _archetypes(spec.targets, spec.seed)[first : first + count]
    t = spec.start + (np.arange(spec.steps, dtype=np.float64) + 0.5) * spec.step_s
    out = np.empty((count, spec.steps))
    for i, kind in enumerate(kinds):
        rng = np.random.default_rng([spec.seed, 1, first + i])
        out[i] = _one(kind, rng, t, spec)
    return [f"{kind}-{first + i:05d}" for i, kind in enumerate(kinds)], out


def iter_histories(spec: FleetSpec, chunk: int = _CHUNK) -> Iterator[SeriesHistory]:
    """Every target as a `SeriesHistory` whose rates are a compact `array('d')` (NaN = missing).

    8 bytes a sample: 10,000 targets × 7 days of minutes hold 0.8 GB, where lists of floats would take 3.2.
    """
    for first in range(0, spec.targets, chunk):
        names, rates = generate_matrix(spec, first, min(chunk, spec.targets - first))
        for name, row in zip(names, rates, strict=True):
            compact = array("d")
            compact.frombytes(row.tobytes())
            yield SeriesHistory(name, spec.start, spec.step_s, compact)


# ---------------------------------------------------------------------------------- the shapes


def _ar1_log(rng: np.random.Generator, n: int, sigma: float, tau_steps: float) -> Array:
    """A stationary AR(1) in log space with std `sigma`, returned as a mean-one log-normal factor."""
    import numpy as np
    from scipy.signal import lfilter

    phi = math.exp(-1.0 / max(tau_steps, 1e-9))
    innov = rng.normal(0.0, sigma * math.sqrt(1.0 - phi * phi), n)
    innov[0] = rng.normal(0.0, sigma)
    x = lfilter([1.0], [1.0, -phi], innov)
    return np.asarray(np.exp(x - 0.5 * sigma * sigma), dtype=np.float64)


def _daily(t: Array, peak_h: float, a1: float, a2: float) -> Array:
    import numpy as np

    theta = 2.0 * np.pi * ((t % DAY_S) / 3600.0 - peak_h) / 24.0
    return np.asarray(np.exp(a1 * (np.cos(theta) - 1.0) + a2 * (np.cos(2.0 * theta) - 1.0)), dtype=np.float64)


def _weekend(t: Array, factor: float, offset_h: float = 0.0) -> Array:
    import numpy as np

    local = t + offset_h * 3600.0
    weekday = (np.floor(local / DAY_S).astype(np.int64) + 3) % 7  # epoch day 0 was a Thursday; Monday = 0
    return np.where(weekday >= 5, factor, 1.0)


def _one(kind: str, rng: np.random.Generator, t: Array, spec: FleetSpec) -> Array:
    import numpy as np

    n = len(t)
    step = spec.step_s
    per_step = step / 60.0  # time constants below are in minutes
    days_from_end = (spec.end - t) / DAY_S
    if kind == "zero":
        return np.zeros(n)
    if kind == "diurnal":
        level = math.exp(rng.uniform(math.log(0.2), math.log(400.0)))
        ratio = rng.uniform(1.5, 10.0)
        shape = _daily(t, rng.uniform(8.0, 22.0), math.log(ratio) / 2.0, rng.uniform(0.0, 0.25))
        growth = np.exp(rng.uniform(-0.03, 0.05) * (t - spec.start) / DAY_S)
        drift = _ar1_log(rng, n, rng.uniform(0.02, 0.10), rng.uniform(1, 4) * 1440 / per_step)
        noise = _ar1_log(rng, n, rng.uniform(0.02, 0.15), rng.uniform(3, 20) / per_step)
        rate = level * shape * _weekend(t, rng.uniform(0.5, 1.0)) * growth * drift * noise
    elif kind == "cron":
        background = rng.uniform(0.1, 5.0)
        rate = (
            background * (1.0 + 0.15 * np.cos(2 * np.pi * (t % DAY_S) / DAY_S)) * _ar1_log(rng, n, 0.1, 10 / per_step)
        )
        period = 3600.0 * float(rng.choice([1, 2, 3, 4, 6]))
        at = rng.uniform(0.0, period)
        decay_s = 60.0 * rng.uniform(5.0, 30.0)
        peak = background * rng.uniform(5.0, 30.0)
        # Each run's kickoff jitters by up to 3 minutes.
        run = np.floor((t - spec.start - at) / period)
        jitter = rng.uniform(0.0, 180.0, int(run.max()) + 2)
        since = t - spec.start - at - run * period - jitter[np.clip(run.astype(np.int64), 0, None)]
        burst = np.where((since >= 0) & (since < 3 * decay_s), np.exp(-np.clip(since, 0, None) / (decay_s / 3)), 0.0)
        rate = rate + peak * burst
    elif kind == "sparse":
        per_hour = rng.uniform(0.5, 30.0)
        rate = per_hour / 3600.0 * np.exp(0.6 * np.cos(2 * np.pi * ((t % DAY_S) / 3600.0 - rng.uniform(0, 24)) / 24))
    else:  # office
        offset_h = float(rng.integers(-8, 10))
        local_h = ((t + offset_h * 3600.0) % DAY_S) / 3600.0
        on = (local_h >= 8.0) & (local_h < 18.0)
        level = math.exp(rng.uniform(math.log(0.5), math.log(200.0)))
        hump = 0.6 + 0.4 * np.sin(np.pi * np.clip(local_h - 8.0, 0.0, 10.0) / 10.0)
        floor = rng.uniform(0.0, 0.03)
        weekday = _weekend(t, 0.0, offset_h)
        rate = level * np.where(on, hump * weekday, floor) * _ar1_log(rng, n, 0.08, 10 / per_step)
        rate = np.maximum(rate, level * floor)
    # Events, drawn for every target so that the stream does not depend on which ones happen.
    surge, gap, shift = rng.random(3)
    surge_at = rng.uniform(0.2, 2.0)  # days before the end
    surge_len, surge_x = rng.uniform(10, 60) / 1440.0, rng.uniform(3.0, 10.0)
    gap_at, gap_len = rng.uniform(0.1, 6.0), rng.uniform(5, 90) / 1440.0
    shift_at, shift_x = rng.uniform(0.1, 3.0), rng.uniform(0.5, 2.0)
    if surge < 0.10:
        rate = np.where((days_from_end <= surge_at) & (days_from_end > surge_at - surge_len), rate * surge_x, rate)
    if shift < 0.05:
        rate = np.where(days_from_end <= shift_at, rate * shift_x, rate)
    counts = rng.poisson(np.clip(rate, 0.0, None) * step).astype(np.float64)
    out = counts / step
    if gap < 0.10:
        out[(days_from_end <= gap_at) & (days_from_end > gap_at - gap_len)] = np.nan
    return np.asarray(out, dtype=np.float64)
