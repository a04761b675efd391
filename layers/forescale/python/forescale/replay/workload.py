"""The built-in workload: a seeded, synthetic, documented trace for the demo and `forescale replay --builtin`.

It is used when no real trace is given. It produces a canonical `Trace` (see `forescale.replay.trace`)
with four targets, a surprise spike and a source gap, using only the standard library. Every number
below is a shape parameter of the generator; all times are UTC and all rates are before Poisson sampling.

Targets
-------
``api-steady`` (Lambda, 120 ms, 1024 MB): a diurnal business API.
    Daily cycle ``exp(A1·(cos θ − 1) + A2·(cos 2θ − 1))`` with θ = 2π(h − 14)/24: peak at 14:00,
    trough at 02:00, A1 = ln(7)/2 so peak/trough = 7, A2 = 0.2 narrows the day peak and widens the night.
    Weekly cycle: Saturday and Sunday at 0.6 of a weekday, blended over ±2 h around midnight.
    Level drift: an Ornstein-Uhlenbeck process in log space (σ = 0.06, τ = 2 days).
    Noise: log-normal, an AR(1) process in log space (σ = 0.05, τ = 5 min).
    Weekday 14:00 rate 450 req/s, i.e. 54 concurrent executions at 120 ms (peaks ~55-70 with noise).
    Counts per step are Poisson.

``batch-spiky`` (Lambda, 800 ms, 2048 MB): a function fed by batch jobs.
    Background: 1.5 req/s (1.2 concurrent), a ±15 % daily cycle peaking at 12:00, log-normal AR(1) noise
    (σ = 0.10, τ = 10 min).
    Bursts follow a daily cron schedule drawn once per seed. The first run is at 00:00, 01:00 or 02:00,
    and each next run is 2, 3 or 4 h later. Every run kicks off at HH:00 plus a 0.5-6 min delay, and 5 %
    of runs are skipped. A burst ramps linearly over 1-3 min to 10-30× the background level. It then
    decays exponentially with τ = D/3 and is cut off at D, where D is 10-30 min. Counts are Poisson.

``sparse-hook`` (Lambda, 300 ms, 512 MB): a rarely called webhook.
    Its rate is 3.7/h × exp(0.6·cos θ), with the peak at 16:00. That is 2-6.7 calls per hour and ~4/h on
    average. Counts are Poisson, so at 60 s steps ~93 % of steps are zero.

``gpu-endpoint`` (SageMaker, ``min_instances`` 1): a consumer-facing GPU inference endpoint.
    Daily cycle as above with the peak at 20:00, A1 = ln(4)/2 (peak/trough 4) and A2 = 0.1.
    Weekend at 0.8 of a weekday. Drift: OU (σ = 0.05, τ = 3 days). Noise: log-normal AR(1)
    (σ = 0.06, τ = 15 min). Weekday 20:00 rate 135 req/s, ~17 ml.g5.xlarge (8 req/s each), peaks ~19-22.
    The catalog (`GPU_CATALOG`) has five types, priced at approximate late-2025 us-east-1 SageMaker
    real-time on-demand rates. Capacity is scaled from ml.g5.xlarge = 8 req/s by rough GPU throughput
    ratios: T4 0.4, L4 0.75, A10G 1.0 (1.1 with the larger host), 4×A10G 3.75.

Events
------
Surprise spike on ``api-steady``: an unannounced 3.2-3.8× surge on day ``days − 1`` (1-based: the
    second to last day, or the last day if days < 2). It starts at a random minute between 10:30 and
    14:30. It ramps up linearly over 3 min, holds, decays over the last 5 min, and lasts 38-42 min in all.
    Nothing like it happens before. Its window and multiplier are in ``meta["surprise_spike"]``.
Source gap: a 10-minute collection outage on the 4th day (none if days < 4). It starts at a random
    time between 17:00 and 20:00, aligned to the step grid. It is rounded up to whole steps, so with
    steps longer than 10 min it covers one step. It is listed in ``Trace.gaps``, and every target's
    requests there are written as 0, as the canonical format does: missing, not zero demand.

Determinism
-----------
Each target and each event has its own `random.Random`, seeded from (seed, name, component). So:

- a subset of targets gives the same series for each of them as the full set;
- the same seed always gives the same trace.

The components (level, noise, bursts, Poisson draws) are drawn in time order on a fixed internal grid of
gcd(step_s, 60) s. So a longer trace with the same seed and step starts with the same series as a shorter
one, except where the spike and the gap fall, since they depend on ``days``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from forescale.replay.trace import Trace, TraceTarget

DAY_S = 86_400
DEFAULT_START = 1_767_571_200  # Monday 2026-01-05 00:00 UTC
MAX_DAYS = 3_660.0  # ten years: a guard against a typo that would run for hours

BUILTIN_TARGETS: tuple[str, ...] = ("api-steady", "batch-spiky", "sparse-hook", "gpu-endpoint")

# ml.g5.xlarge (one A10G) serves this many req/s at the SLO; other types scale by rough throughput ratios.
_G5_XLARGE_RPS = 8.0
GPU_CATALOG: dict[str, dict[str, float]] = {
    "ml.g4dn.xlarge": {"price_per_hour": 0.736, "capacity_rps": 0.40 * _G5_XLARGE_RPS},  # 1× T4
    "ml.g6.xlarge": {"price_per_hour": 1.127, "capacity_rps": 0.75 * _G5_XLARGE_RPS},  # 1× L4
    "ml.g5.xlarge": {"price_per_hour": 1.408, "capacity_rps": 1.00 * _G5_XLARGE_RPS},  # 1× A10G
    "ml.g5.2xlarge": {"price_per_hour": 1.515, "capacity_rps": 1.10 * _G5_XLARGE_RPS},  # 1× A10G, 8 vCPU
    "ml.g5.12xlarge": {"price_per_hour": 7.090, "capacity_rps": 3.75 * _G5_XLARGE_RPS},  # 4× A10G
}

_DESCRIPTIONS: dict[str, str] = {
    "api-steady": (
        "diurnal business API: peak 14:00 UTC, peak/trough 7x, weekends 0.6x, slow drift, "
        "log-normal noise, ~55 concurrent at a weekday peak; one unannounced 3-4x spike"
    ),
    "batch-spiky": (
        "batch-fed function: 1.5 req/s background plus cron bursts every 2-4 h (HH:00 + jitter), "
        "1-3 min ramp to 10-30x, 10-30 min decay"
    ),
    "sparse-hook": "sparse webhook: ~4 calls/hour, Poisson, mild daily cycle peaking 16:00 UTC",
    "gpu-endpoint": (
        "GPU inference endpoint: peak 20:00 UTC, peak/trough 4x, weekends 0.8x, drift and noise, "
        "~17-22 ml.g5.xlarge at a weekday peak"
    ),
}


# --- validation and the spec ----------------------------------------------------------------------


def _check_targets(targets: Sequence[str] | None) -> tuple[str, ...]:
    if targets is None:
        return BUILTIN_TARGETS
    if isinstance(targets, str):
        raise ValueError(f"targets must be a sequence of target names, not the string {targets!r}")
    names: list[str] = []
    for name in targets:
        if name not in BUILTIN_TARGETS:
            raise ValueError(f"targets: unknown target {name!r}; the built-in targets are {', '.join(BUILTIN_TARGETS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"targets must name at least one of {', '.join(BUILTIN_TARGETS)}")
    return tuple(names)


@dataclass(frozen=True)
class WorkloadSpec:
    """What to generate; validated on construction (a bad argument is a `ValueError` naming it).

    `days` may be fractional; the trace has ceil(days × 86400 / step_s) steps from `start`.
    `targets` is a subset of `BUILTIN_TARGETS` (None: all), kept in the given order.
    """

    days: float = 9
    step_s: int = 60
    seed: int = 7
    start: int = DEFAULT_START
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        d = self.days
        if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d) or not d > 0:
            raise ValueError(f"days must be a finite number > 0, got {d!r}")
        if d > MAX_DAYS:
            raise ValueError(f"days must be at most {MAX_DAYS:g}, got {d!r}")
        s = self.step_s
        if isinstance(s, bool) or not isinstance(s, int) or s <= 0 or DAY_S % s:
            raise ValueError(f"step_s must be a positive integer divisor of 86400, got {s!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if isinstance(self.start, bool) or not isinstance(self.start, int) or self.start < 0:
            raise ValueError(f"start must be an integer epoch second >= 0, got {self.start!r}")
        object.__setattr__(self, "targets", _check_targets(self.targets))

    @property
    def names(self) -> tuple[str, ...]:
        return self.targets if self.targets is not None else BUILTIN_TARGETS

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.days * DAY_S / self.step_s - 1e-9))

    def build(self) -> Trace:
        """Generate the trace this spec describes."""
        return _build(self)


def generate(
    days: float = 9,
    step_s: int = 60,
    seed: int = 7,
    targets: Sequence[str] | None = None,
    *,
    start: int = DEFAULT_START,
) -> Trace:
    """The built-in workload as a canonical `Trace` (see the module docstring for its shapes)."""
    names = _check_targets(targets)
    return WorkloadSpec(days=days, step_s=step_s, seed=seed, start=start, targets=names).build()


# --- random helpers -------------------------------------------------------------------------------


def _rng(seed: int, *parts: str) -> random.Random:
    # A str seed is hashed with SHA-512 by `random`, so it is stable across runs and Python versions.
    return random.Random("forescale-workload/" + "/".join([str(seed), *parts]))  # nosec B311  # seeded synthetic workload, not crypto


def _poisson(rng: random.Random, lam: float) -> int:
    """One Poisson(lam) draw: inversion for small lam, Hörmann's PTRS transformed rejection above 10."""
    if lam <= 0.0:
        return 0
    if lam < 10.0:
        u = rng.random()
        k = 0
        p = math.exp(-lam)
        cdf = p
        while u > cdf and k < 200:
            k += 1
            p *= lam / k
            cdf += p
        return k
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43) if us > 0 else -1
        if us >= 0.07 and v <= v_r:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        lhs = math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b)
        if lhs <= -lam + k * loglam - math.lgamma(k + 1):
            return k


class _LogAR1:
    """A stationary AR(1) process in log space with standard deviation `sigma` and time constant `tau_s`,
    sampled every `dt_s`; `factor()` is exp(x − σ²/2), a log-normal multiplier with mean 1."""

    def __init__(self, rng: random.Random, sigma: float, tau_s: float, dt_s: float) -> None:
        self.rng = rng
        self.sigma = sigma
        self.phi = math.exp(-dt_s / tau_s)
        self.innov = sigma * math.sqrt(1.0 - self.phi * self.phi)
        self.x = rng.gauss(0.0, sigma)

    def factor(self) -> float:
        f = math.exp(self.x - 0.5 * self.sigma * self.sigma)
        self.x = self.phi * self.x + self.rng.gauss(0.0, self.innov)
        return f


# --- deterministic shapes -------------------------------------------------------------------------


def _cos_day(t: float, peak_h: float) -> float:
    """cos of the time of day, 1 at `peak_h` UTC and −1 twelve hours later."""
    return math.cos(2.0 * math.pi * ((t % DAY_S) / 3600.0 - peak_h) / 24.0)


def _daily(t: float, peak_h: float, a1: float, a2: float) -> float:
    """A daily cycle that is 1 at `peak_h` (UTC) and exp(−2·a1) twelve hours later."""
    theta = 2.0 * math.pi * ((t % DAY_S) / 3600.0 - peak_h) / 24.0
    return math.exp(a1 * (math.cos(theta) - 1.0) + a2 * (math.cos(2.0 * theta) - 1.0))


def _weekly(t: float, weekend: float) -> float:
    """1 on weekdays, `weekend` on Saturday and Sunday, blended smoothly over ±2 h around midnight."""

    def level(day: int) -> float:
        return weekend if (day + 3) % 7 >= 5 else 1.0  # epoch day 0 (1970-01-01) was a Thursday

    day = math.floor(t / DAY_S)
    hour = (t - day * DAY_S) / 3600.0
    if hour < 2.0:
        lo, hi, x = level(day - 1), level(day), (hour + 2.0) / 4.0
    elif hour > 22.0:
        lo, hi, x = level(day), level(day + 1), (hour - 22.0) / 4.0
    else:
        return level(day)
    s = x * x * (3.0 - 2.0 * x)
    return lo + (hi - lo) * s


# --- the grid and the targets ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    start: int
    step_s: int
    steps: int

    @property
    def cell_s(self) -> int:
        return math.gcd(self.step_s, 60)

    @property
    def cells(self) -> int:
        return self.steps * (self.step_s // self.cell_s)

    def mids(self) -> list[float]:
        c = self.cell_s
        return [self.start + (j + 0.5) * c for j in range(self.cells)]

    @property
    def end(self) -> int:
        return self.start + self.steps * self.step_s


@dataclass(frozen=True)
class _Window:
    """A one-off multiplicative surge: ramp up, hold, decay, over [start, end)."""

    start: int
    end: int
    multiplier: float
    ramp_s: float = 180.0
    decay_s: float = 300.0

    def factor(self, t: float) -> float:
        if t < self.start or t >= self.end:
            return 1.0
        up = (t - self.start) / self.ramp_s
        down = (self.end - t) / self.decay_s
        return 1.0 + (self.multiplier - 1.0) * min(1.0, up, down)


def _per_step(grid: _Grid, rates: list[float]) -> list[float]:
    """Expected requests per step: the sum over each step's cells of rate × cell seconds."""
    k = grid.step_s // grid.cell_s
    c = grid.cell_s
    return [math.fsum(rates[i * k : (i + 1) * k]) * c for i in range(grid.steps)]


def _sample(rng: random.Random, expected: list[float]) -> list[float]:
    return [float(_poisson(rng, lam)) for lam in expected]


def _api_steady(seed: int, grid: _Grid, spike: _Window | None) -> list[float]:
    name = "api-steady"
    c = grid.cell_s
    drift = _LogAR1(_rng(seed, name, "drift"), sigma=0.06, tau_s=2 * DAY_S, dt_s=c)
    noise = _LogAR1(_rng(seed, name, "noise"), sigma=0.05, tau_s=300, dt_s=c)
    a1 = math.log(7.0) / 2.0
    rates = []
    for t in grid.mids():
        r = 450.0 * _daily(t, 14.0, a1, 0.2) * _weekly(t, 0.6) * drift.factor() * noise.factor()
        if spike is not None:
            r *= spike.factor(t)
        rates.append(r)
    return _sample(_rng(seed, name, "poisson"), _per_step(grid, rates))


def _batch_spiky(seed: int, grid: _Grid) -> list[float]:
    name = "batch-spiky"
    c = grid.cell_s
    background = 1.5
    noise = _LogAR1(_rng(seed, name, "noise"), sigma=0.10, tau_s=600, dt_s=c)
    mids = grid.mids()
    rates = [background * (1.0 + 0.15 * _cos_day(t, 12.0)) * noise.factor() for t in mids]
    sched = _rng(seed, name, "schedule")
    hours: list[int] = []
    h = sched.choice([0, 1, 2])
    while h < 24:
        hours.append(h)
        h += sched.choice([2, 3, 4])
    runs = _rng(seed, name, "runs")
    first_day = grid.start // DAY_S
    last_day = (grid.end - 1) // DAY_S
    for day in range(first_day, last_day + 1):
        for hour in hours:
            # Draw every parameter, skipped or not, so the stream does not depend on which runs happen.
            skipped = runs.random() < 0.05
            kickoff = day * DAY_S + hour * 3600 + runs.uniform(30.0, 360.0)
            peak = background * runs.uniform(10.0, 30.0)
            ramp = 60.0 * runs.randint(1, 3)
            decay = 60.0 * runs.uniform(10.0, 30.0)
            if skipped:
                continue
            tau = decay / 3.0
            end = kickoff + ramp + decay
            j0 = max(0, math.floor((kickoff - grid.start) / c))
            j1 = min(len(mids), math.ceil((end - grid.start) / c))
            for j in range(j0, j1):
                dt = mids[j] - kickoff
                if dt < 0.0 or dt >= ramp + decay:
                    continue
                rates[j] += peak * (dt / ramp if dt < ramp else math.exp(-(dt - ramp) / tau))
    return _sample(_rng(seed, name, "poisson"), _per_step(grid, rates))


def _sparse_hook(seed: int, grid: _Grid) -> list[float]:
    name = "sparse-hook"
    per_s = 3.7 / 3600.0
    rates = [per_s * math.exp(0.6 * _cos_day(t, 16.0)) for t in grid.mids()]
    return _sample(_rng(seed, name, "poisson"), _per_step(grid, rates))


def _gpu_endpoint(seed: int, grid: _Grid) -> list[float]:
    name = "gpu-endpoint"
    c = grid.cell_s
    drift = _LogAR1(_rng(seed, name, "drift"), sigma=0.05, tau_s=3 * DAY_S, dt_s=c)
    noise = _LogAR1(_rng(seed, name, "noise"), sigma=0.06, tau_s=900, dt_s=c)
    a1 = math.log(4.0) / 2.0
    rates = [135.0 * _daily(t, 20.0, a1, 0.1) * _weekly(t, 0.8) * drift.factor() * noise.factor() for t in grid.mids()]
    return _sample(_rng(seed, name, "poisson"), _per_step(grid, rates))


def _params(name: str) -> dict[str, Any]:
    desc = _DESCRIPTIONS[name]
    if name == "api-steady":
        return {"kind": "lambda", "duration_ms": 120, "memory_mb": 1024, "description": desc}
    if name == "batch-spiky":
        return {"kind": "lambda", "duration_ms": 800, "memory_mb": 2048, "description": desc}
    if name == "sparse-hook":
        return {"kind": "lambda", "duration_ms": 300, "memory_mb": 512, "description": desc}
    return {
        "kind": "sagemaker",
        "min_instances": 1,
        "instance_types": {k: dict(v) for k, v in GPU_CATALOG.items()},
        "description": desc,
    }


# --- events ---------------------------------------------------------------------------------------


def _spike_window(spec: WorkloadSpec, grid: _Grid) -> _Window | None:
    """The surprise spike: on day days−1 (1-based), or the last day if days < 2; None if it cannot fit."""
    rng = _rng(spec.seed, "api-steady", "surprise-spike")
    tod = 60 * rng.randint(10 * 60 + 30, 14 * 60 + 30)
    duration = 60 * rng.randint(38, 42)
    multiplier = rng.uniform(3.2, 3.8)
    whole = math.ceil(spec.days - 1e-9)
    day = whole - 2 if spec.days >= 2 else whole - 1
    start = min(grid.start + day * DAY_S + tod, grid.end - duration)
    if start < grid.start:
        return None
    return _Window(start, start + duration, multiplier)


def _gap(spec: WorkloadSpec, grid: _Grid) -> tuple[int, int] | None:
    """The 10-minute source gap on the 4th day, aligned to steps; None if days < 4."""
    if spec.days < 4:
        return None
    rng = _rng(spec.seed, "source-gap")
    at = grid.start + 3 * DAY_S + rng.randint(17 * 3600, 20 * 3600 - 1)
    first = (at - grid.start) // spec.step_s
    n = math.ceil(600 / spec.step_s)
    a = grid.start + first * spec.step_s
    b = min(grid.end, a + n * spec.step_s)
    return (a, b) if a < b else None


_BUILDERS: dict[str, Callable[[int, _Grid], list[float]]] = {
    "batch-spiky": _batch_spiky,
    "sparse-hook": _sparse_hook,
    "gpu-endpoint": _gpu_endpoint,
}


def _build(spec: WorkloadSpec) -> Trace:
    grid = _Grid(spec.start, spec.step_s, spec.steps)
    names = spec.names
    spike = _spike_window(spec, grid) if "api-steady" in names else None
    gap = _gap(spec, grid)
    gaps = (gap,) if gap else ()
    targets: dict[str, TraceTarget] = {}
    for name in names:
        series = _api_steady(spec.seed, grid, spike) if name == "api-steady" else _BUILDERS[name](spec.seed, grid)
        for a, b in gaps:
            for i in range((a - grid.start) // grid.step_s, (b - grid.start) // grid.step_s):
                series[i] = 0.0
        targets[name] = TraceTarget(name, tuple(series), _params(name))
    meta: dict[str, Any] = {
        "source": f"forescale built-in workload generator, seed {spec.seed}",
        "generator": {"days": spec.days, "step_s": spec.step_s, "seed": spec.seed, "start": spec.start},
        "time": "epoch seconds, UTC; the default start is Monday 2026-01-05 00:00 UTC",
        "catalog_note": (
            "approximate us-east-1 SageMaker real-time on-demand prices (late 2025); capacity_rps: "
            f"ml.g5.xlarge = {_G5_XLARGE_RPS:g} req/s, other types by rough GPU throughput ratios"
        ),
        "gaps_note": "a simulated 10-minute collection outage on the 4th day; written as 0, missing not zero",
        "step_s": spec.step_s,
        "gaps": [list(g) for g in gaps],
        "targets": {name: dict(t.params) for name, t in targets.items()},
    }
    if spike is not None:
        meta["surprise_spike"] = {
            "target": "api-steady",
            "start": spike.start,
            "end": spike.end,
            "multiplier": round(spike.multiplier, 3),
        }
    return Trace(spec.step_s, spec.start, spec.steps, targets, gaps, meta)
