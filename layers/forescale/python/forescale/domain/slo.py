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
