"""The SLO as an error budget: what a target's capacity actually missed, and how far to move its headroom.

A target's SLO is the share of requests it may miss (`Target.slo_miss`: Lambda requests that spill
to on-demand, SageMaker requests above the fleet's capacity). The budget over a rolling window is that
share of the window's requests; SREs run it by its burn rate (misses over budget). forescale spends
it: a target that misses more than its SLO gets more headroom, one that misses far less gets less,
by an integral controller on the log of the headroom (like adaptive conformal inference: the
long-run miss converges to the SLO whatever the forecast's own calibration).

The realized miss uses the yardstick's model (../shared/bench/README.md): decisions take effect after
their lead times, judged against the capacity in effect; Lambda spill = requests × Erlang B(P, m),
SageMaker violations = requests above N × per-instance capacity. Pure: no AWS, no logging.

Two ledgers. The realized budget counts every miss: it is what decisions, status and the reports say.
With `slo_controllable` (PredictiveParams, on by default), the controller learns only from the
*controllable* miss: the part of a step's miss that the levers at
their maximum (headroom `headroom_max`, the standing floor at its most), applied by the decision that
could have landed in time, would have served (`lever_segments`, `controllable_missed`). Misses before
any decision could land (the take-over) and the part of an unannounced surge beyond what the levers
would have bought are spent from the budget but buy no headroom back: more headroom would not have
avoided them, it would only cost capacity for hours afterwards. (A take-over miss from a standing
start still teaches the standing floor that the target is on: see PredictiveParams.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from forescale.domain.sizing import erlang_b
from forescale.domain.targets import Target


@dataclass(frozen=True, slots=True)
class SloParams:
    """Knobs of the error-budget controller.

    - `window_s`: the rolling window the budget is counted over (reported in decisions).
    - `gain`: change of log-headroom per step, per SLO of excess miss (0 turns the controller off).
    - `max_excess`: one step counts at most this many SLOs of miss, so one outage cannot swing it.
    - `headroom_min`, `headroom_max`: the bounds of the multiplier on the sized demand.
    """

    window_s: int = 86_400
    gain: float = 0.0
    max_excess: float = 10.0
    headroom_min: float = 0.7
    headroom_max: float = 3.0

    def __post_init__(self) -> None:
        if self.window_s <= 0 or not 0 <= self.gain < 1 or self.max_excess <= 0:
            raise ValueError("slo: window_s must be > 0, gain in [0, 1), max_excess > 0")
        if not 0 < self.headroom_min <= 1 <= self.headroom_max:
            raise ValueError("slo: need 0 < headroom_min <= 1 <= headroom_max")


def missed_requests(target: Target, capacity: int, rate_rps: float, seconds: float, capacity_rps: float) -> float:
    """Requests missed in `seconds` at `rate_rps` with `capacity` in effect (the yardstick's model).

    `capacity_rps` is one SageMaker instance's capacity (ignored for Lambda).
    """
    if rate_rps <= 0 or seconds <= 0:
        return 0.0
    requests = rate_rps * seconds
    if target.is_lambda:
        return requests * erlang_b(max(0, capacity), min(rate_rps * target.duration_s, 1e12))
    return max(0.0, requests - max(0, capacity) * capacity_rps * seconds)


def in_effect_segments(
    start: int, end: int, current: int, ruling: float, landings: Iterable[tuple[float, float, float]]
) -> list[tuple[int, int]]:
    """Capacity in effect over [start, end): (seconds, capacity) segments.

    `current` was decided at `ruling` and is in effect at `start` unless a landing says otherwise;
    `landings` are (effect_time, decided_at, capacity) of requests not yet in effect, and the
    latest-decided of those already in effect rules.
    """
    out: list[tuple[int, int]] = []
    t, cap = start, current
    for effect, decided, c in sorted(landings):
        if effect >= end:
            break
        if effect <= start:
            if decided >= ruling:
                cap, ruling = int(c), decided
            continue
        if decided < ruling:
            continue
        out.append((int(effect) - t, cap))
        t, cap, ruling = int(effect), int(c), decided
    out.append((end - t, cap))
    return [(s, c) for s, c in out if s > 0]


def lever_segments(
    start: int, end: int, current: int | None, levers: Iterable[tuple[float, float]]
) -> list[tuple[int, int | None]]:
    """The levers' capacity over [start, end): (seconds, capacity) segments, None before any could land.

    `current` is the levers' capacity in effect at `start` (None: no decision could have landed yet);
    `levers` are (time the decision could have landed, the capacity its levers at their maximum would
    have asked for), in decision order: from each landing time on, that decision's capacity rules.
    """
    out: list[tuple[int, int | None]] = []
    t, cap = start, current
    for at, c in levers:
        if at >= end:
            break
        if at > t:
            out.append((int(at) - t, cap))
            t = int(at)
        cap = int(c)
    out.append((end - t, cap))
    return [(s, c) for s, c in out if s > 0]


def overlay(capacity: list[tuple[int, int]], lever: list[tuple[int, int | None]]) -> list[tuple[int, int, int | None]]:
    """Two segmentations of the same interval merged: (seconds, capacity in effect, levers' capacity)."""
    out: list[tuple[int, int, int | None]] = []
    i = j = 0
    left_a = capacity[0][0] if capacity else 0
    left_b = lever[0][0] if lever else 0
    while i < len(capacity) and j < len(lever):
        take = min(left_a, left_b)
        if take > 0:
            out.append((take, capacity[i][1], lever[j][1]))
        left_a, left_b = left_a - take, left_b - take
        if left_a == 0:
            i += 1
            left_a = capacity[i][0] if i < len(capacity) else 0
        if left_b == 0:
            j += 1
            left_b = lever[j][0] if j < len(lever) else 0
    return out


def controllable_missed(
    target: Target, pieces: Iterable[tuple[int, int, int | None]], rate_rps: float, capacity_rps: float
) -> float:
    """Requests missed over `pieces` that the levers' capacity would have served.

    Per (seconds, capacity in effect, levers' capacity): missed(capacity) − missed(max(capacity, levers)),
    nothing where the levers could not have landed (None). For SageMaker this is
    max(0, min(demand, levers' capacity) − capacity) × seconds; for Lambda the Erlang B difference.
    """
    total = 0.0
    for seconds, capacity, lever in pieces:
        if lever is None or lever <= capacity:
            continue
        total += missed_requests(target, capacity, rate_rps, seconds, capacity_rps) - missed_requests(
            target, lever, rate_rps, seconds, capacity_rps
        )
    return max(0.0, total)


def active_level_step(
    level: float, rate_rps: float, quantile: float, mean_weight: float = 0.02, log_step: float = 0.1
) -> float:
    """The next estimate of a target's active level (requests/s) after a non-zero `rate_rps`.

    `quantile` 0: an exponential moving average (weight `mean_weight`) of the non-zero rates.
    Otherwise a streaming estimate of that quantile of them (stochastic approximation on the log
    scale): up by `log_step` × `quantile` after a rate above it, down by `log_step` × (1 − `quantile`)
    after one at or below it, so it settles where that share of the rates is below it. A target
    that bursts far above its mean needs a standing floor at its burst level, not at its mean.
    """
    if level <= 0:
        return rate_rps
    if quantile <= 0:
        return level + mean_weight * (rate_rps - level)
    step = quantile if rate_rps > level else quantile - 1.0
    return level * math.exp(log_step * step)


def controller_step(
    log_headroom: float, missed: float, requests: float, weight: float, slo: float, p: SloParams
) -> float:
    """The next log-headroom after a step that missed `missed` of `requests`.

    Each step moves it by gain × weight × (miss share ÷ SLO − 1), the excess capped at `max_excess`:
    up after a step over its SLO, down (slowly) after one under it, so misses average out at the SLO.
    `weight` is the step's requests relative to the typical step (busy steps count for more).
    """
    if p.gain == 0 or requests <= 0:
        return log_headroom
    excess = min(missed / requests / slo, p.max_excess) - 1.0
    nxt = log_headroom + p.gain * weight * excess
    return min(math.log(p.headroom_max), max(math.log(p.headroom_min), nxt))


def budget_left(missed: float, requests: float, slo: float) -> float:
    """Share of the window's error budget still unspent (negative when overspent; 1.0 with no requests)."""
    if requests <= 0:
        return 1.0
    # Divide by `requests` first: slo × a subnormal request count underflows to 0. A step cannot
    # miss more requests than it had, so the share is at most 1 and the result stays finite.
    return 1.0 - min(1.0, missed / requests) / slo
