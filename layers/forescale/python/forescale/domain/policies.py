"""Capacity policies: each turns observed demand (and a forecast, for `predictive`) into a recommendation.

Policies are causal by construction: `observe` gives them one finished step at a time and `recommend`
may use only what was observed. They hold small state (a rate window, counters, residuals) that
the plan Lambda persists between invocations; replay and the demo keep them in memory.

- `predictive`: forecast-led; see `PredictivePolicy`.
- `reactive`: the recent peak × a headroom, sized every step, no forecast (also the fallback).
- `target-tracking`: an emulation of AWS Application Auto Scaling target tracking.
- `seasonal-naive`: the same steps one day earlier × 1.1.
- `static`: an operator's static over-provisioning: the largest demand seen so far × 1.2, never lowered.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

from forescale.domain.decision import Recommendation
from forescale.domain.forecast import Forecast
from forescale.domain.history import DemandHistory
from forescale.domain.sizing import (
    Fleet,
    lambda_concurrency_for,
    offered_load,
    sagemaker_instances,
    type_switch_pays,
)
from forescale.domain.targets import Target

DAY_S = 86_400


def size_for_rate(target: Target, rate_rps: float, instance_type: str | None = None) -> int:
    """Capacity that serves `rate_rps` at the target's SLO: Erlang B for Lambda, instances for SageMaker."""
    if target.is_lambda:
        return lambda_concurrency_for(offered_load(rate_rps, target.duration_s), target.slo_miss)
    it = target.instance(instance_type)
    return sagemaker_instances(rate_rps, it.capacity_rps, target.min_capacity)


class Policy:
    """Base class: keeps the observed rate window; subclasses implement `recommend`."""

    name = "policy"

    def __init__(self, target: Target, step_s: int, history_steps: int = 16) -> None:
        if step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {step_s}")
        self.target = target
        self.step_s = step_s
        self.history = DemandHistory(max(2, history_steps))

    @property
    def lead_steps(self) -> int:
        """Steps until a scale-out is usable, at least 1: the horizon a decision must cover."""
        return max(1, math.ceil(self.target.lead_times.up_s / self.step_s))

    def observe(self, ts: int, rate_rps: float | None) -> None:
        """Record the finished step starting at `ts`; `None` when the metric is missing."""
        self.history.append(ts, rate_rps)

    def use_forecast(self, forecast: Forecast) -> None:  # noqa: B027 - optional hook
        """Accept a fresh forecast; only forecast-led policies use it."""

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        raise NotImplementedError


class ReactivePolicy(Policy):
    """The largest rate of the last `window` steps × `headroom`, sized at the SLO. No forecast."""

    name = "reactive"

    def __init__(self, target: Target, step_s: int, window: int = 3, headroom: float = 1.2) -> None:
        if window < 1 or headroom <= 0:
            raise ValueError(f"reactive: window must be >= 1 and headroom > 0, got {window}, {headroom}")
        super().__init__(target, step_s, history_steps=window)
        self.window = window
        self.headroom = headroom

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        peak = self.history.peak(self.window)
        demand = peak * self.headroom
        cap = size_for_rate(self.target, demand, instance_type)
        return Recommendation(
            cap,
            f"reactive: peak {peak:.3g} req/s of the last {self.window} steps × {self.headroom:g}",
            demand_rps=demand,
        )


class StaticPolicy(Policy):
    """Static over-provisioning: sized for the largest demand seen so far × `headroom`, never lowered."""

    name = "static"

    def __init__(self, target: Target, step_s: int, headroom: float = 1.2) -> None:
        super().__init__(target, step_s, history_steps=2)
        self.headroom = headroom
        self.peak = 0.0

    def observe(self, ts: int, rate_rps: float | None) -> None:
        super().observe(ts, rate_rps)
        if rate_rps is not None:
            self.peak = max(self.peak, rate_rps)

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        demand = self.peak * self.headroom
        cap = max(current, size_for_rate(self.target, demand, instance_type))
        return Recommendation(cap, f"static: largest rate so far {self.peak:.3g} req/s × {self.headroom:g}", demand)


class SeasonalNaivePolicy(Policy):
    """The largest rate over the same steps one day earlier × `headroom`; reactive (× 1.5) on day one."""

    name = "seasonal-naive"

    def __init__(self, target: Target, step_s: int, headroom: float = 1.1) -> None:
        self.day_steps = max(1, DAY_S // step_s)
        super().__init__(target, step_s, history_steps=self.day_steps + 2)
        self.headroom = headroom

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        h = self.history
        if h.observed_steps + h.missing_run < self.day_steps:
            demand = h.last * 1.5
            reason = f"seasonal-naive: under a day of history, last rate {h.last:.3g} req/s × 1.5"
        else:
            # Steps i-day .. i-day+lead, where i is the step starting now; k steps back from the newest.
            first = self.day_steps
            last = max(1, self.day_steps - self.lead_steps)
            yesterday = max(h.ago(k) for k in range(last, first + 1))
            demand = yesterday * self.headroom
            reason = f"seasonal-naive: same time yesterday {yesterday:.3g} req/s × {self.headroom:g}"
        return Recommendation(size_for_rate(self.target, demand, instance_type), reason, demand)


class TargetTrackingPolicy(Policy):
    """An emulation of AWS Application Auto Scaling target tracking.

    One-minute average utilisation against `target_utilisation` (0.7). Scale-out after 3 datapoints
    above it, scale-in after 15 below 90 % of it. For Lambda the metric is
    ProvisionedConcurrencyUtilization, which saturates at 100 %: spilled demand is invisible to it.
    SageMaker uses InvocationsPerInstance (not saturating) with a 300 s cooldown. Missing data resets
    the alarms (INSUFFICIENT_DATA) and nothing scales.
    """

    name = "target-tracking"
    SCALE_OUT_S = 180
    SCALE_IN_S = 900
    SAGEMAKER_COOLDOWN_S = 300

    def __init__(self, target: Target, step_s: int, target_utilisation: float = 0.7) -> None:
        if not 0 < target_utilisation <= 1:
            raise ValueError(f"target utilisation must be in (0, 1], got {target_utilisation}")
        super().__init__(target, step_s, history_steps=2)
        self.target_utilisation = target_utilisation
        self.per_datapoint = max(1, 60 // step_s)
        self.out_needed = math.ceil(self.SCALE_OUT_S / step_s)
        self.in_needed = math.ceil(self.SCALE_IN_S / step_s)
        self.utilisation: deque[float] = deque(maxlen=self.per_datapoint)
        self.above = 0
        self.below = 0
        self.last_out = -(10**12)
        self.last_in = -(10**12)
        self.started = False
        self._applied_for_last = 0

    def observe(self, ts: int, rate_rps: float | None) -> None:
        super().observe(ts, rate_rps)
        if rate_rps is None:
            self.above = self.below = 0
            return
        cap = self._applied_for_last
        if self.target.is_lambda:
            m = offered_load(rate_rps, self.target.duration_s)
            u = min(m, cap) / cap if cap else (1.0 if m else 0.0)
        else:
            capacity = cap * self.target.instance(None).capacity_rps
            u = rate_rps / capacity if capacity else (1.0 if rate_rps else 0.0)
        self.utilisation.append(u)
        avg = sum(self.utilisation) / len(self.utilisation)
        self.above = self.above + 1 if avg > self.target_utilisation else 0
        self.below = self.below + 1 if avg < 0.9 * self.target_utilisation else 0
        self._last_avg = avg

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        floor = max(1, self.target.min_capacity)
        self._applied_for_last = applied
        if not self.started:
            self.started = True
            return Recommendation(max(floor, current), f"target-tracking: initial capacity {floor}")
        sm = not self.target.is_lambda
        avg = getattr(self, "_last_avg", 0.0)
        if self.history.last_missing:
            return Recommendation(current, "target-tracking: INSUFFICIENT_DATA, alarms hold")
        if self.above >= self.out_needed and (not sm or now - self.last_out >= self.SAGEMAKER_COOLDOWN_S):
            new = max(current + 1, math.ceil(current * avg / self.target_utilisation))
            self.last_out, self.above, self.below = now, 0, 0
            return Recommendation(
                new, f"target-tracking: utilisation {avg:.0%} > {self.target_utilisation:.0%} for 3 datapoints"
            )
        if self.below >= self.in_needed and (not sm or now - self.last_in >= self.SAGEMAKER_COOLDOWN_S):
            new = max(floor, math.ceil(current * avg / self.target_utilisation))
            self.last_in, self.above, self.below = now, 0, 0
            return Recommendation(
                new, f"target-tracking: utilisation {avg:.0%} < {0.9 * self.target_utilisation:.0%} for 15 datapoints"
            )
        return Recommendation(current, f"target-tracking: utilisation {avg:.0%}, within the alarms")


class _SortedWindow:
    """The newest `size` values, kept sorted for O(log n) quantiles."""

    __slots__ = ("_fifo", "_sorted")

    def __init__(self, size: int) -> None:
        self._fifo: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []

    def add(self, v: float) -> None:
        if len(self._fifo) == self._fifo.maxlen:
            old = self._fifo[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._fifo.append(v)
        bisect.insort(self._sorted, v)

    def __len__(self) -> int:
        return len(self._sorted)

    def quantile(self, q: float) -> float:
        """Empirical quantile (nearest rank, conservative)."""
        n = len(self._sorted)
        return self._sorted[min(n - 1, max(0, math.ceil(q * n) - 1))]


@dataclass(frozen=True, slots=True)
class PredictiveParams:
    """Knobs of the predictive policy; `sizing_quantile` is the main aggressiveness setting.

    - `sizing_quantile`: the conformal quantile of the forecast's relative error that capacity is sized at.
    - `level_alpha`: smoothing of the current level (1.0 = the last step).
    - `peak_window`: the level is at least the largest of the last this-many steps.
    - `trend_gain`: how much of the last step's rise is extrapolated over the lead time.
    - `residual_window_s`: how far back the conformal errors reach.
    - `reactive_headroom`: the floor is the recent peak × this (the reactive overlay).
    - `panic_headroom`: on demand above the forecast's upper band, size at least for it × this.
    - `use_seasonal_shape`: scale the level by the forecast's expected change over the horizon.
    """

    sizing_quantile: float = 0.9
    level_alpha: float = 1.0
    peak_window: int = 1
    trend_gain: float = 0.0
    residual_window_s: int = DAY_S
    min_residuals: int = 30
    default_headroom: float = 1.2
    reactive_headroom: float = 1.0
    reactive_window: int = 1
    panic_headroom: float = 1.1
    use_seasonal_shape: bool = True
    shape_clip: float = 4.0
    rightsize_every_s: int = 3600
    rightsize_horizon_s: int = DAY_S

    def __post_init__(self) -> None:
        if not 0.5 <= self.sizing_quantile < 1:
            raise ValueError(f"sizing_quantile must be in [0.5, 1), got {self.sizing_quantile}")
        if not 0 < self.level_alpha <= 1:
            raise ValueError(f"level_alpha must be in (0, 1], got {self.level_alpha}")
        if self.peak_window < 1 or self.reactive_window < 1:
            raise ValueError("peak_window and reactive_window must be >= 1")


class PredictivePolicy(Policy):
    """Forecast-led capacity: level × seasonal shape, sized at a conformal upper quantile.

    Every step:
    1. the level is the recent demand (smoothed, at least the last `peak_window` peak, plus trend);
    2. the forecast's median path gives the expected change from the last step to each step of the
       horizon (lead time + one step), so a daily ramp is provisioned before it arrives;
    3. the largest point forecast over the horizon is raised by the `sizing_quantile` of the
       observed errors of that same forecast (online conformal, last `residual_window_s`);
    4. the reactive overlay keeps it at least the recent peak × `reactive_headroom`, and when demand
       beats the previous upper band (panic) at least that demand × `panic_headroom`, with a refit;
    5. it is sized at the SLO (Erlang B for Lambda, instances for SageMaker).
    With no forecast (under a day of history) steps 1, 3, 4 and 5 run alone: a reactive fallback.
    SageMaker instance-type targets also right-size hourly: the cheapest type for the coming day's
    forecast, switching only when the saving exceeds the blue/green switch cost.
    """

    name = "predictive"

    def __init__(self, target: Target, step_s: int, params: PredictiveParams | None = None) -> None:
        self.params = params or PredictiveParams()
        p = self.params
        self.day_steps = max(1, DAY_S // step_s)
        super().__init__(target, step_s, history_steps=max(self.day_steps + 4, p.peak_window + 2))
        self.forecast: Forecast | None = None
        self.level = 0.0
        self.errors = _SortedWindow(max(30, p.residual_window_s // step_s))
        # Origins awaiting their outcome: (origin step index, forecast max over the horizon).
        self.pending: deque[tuple[int, float]] = deque()
        self.steps_seen = 0
        self.upper_band = math.inf
        self.last_rightsize = -(10**12)
        self.floor_rate = 0.5 / step_s  # half a request per step, to keep logs finite

    def use_forecast(self, forecast: Forecast) -> None:
        self.forecast = forecast

    def observe(self, ts: int, rate_rps: float | None) -> None:
        super().observe(ts, rate_rps)
        self.steps_seen += 1
        if rate_rps is not None:
            a = self.params.level_alpha
            self.level = rate_rps if self.steps_seen == 1 else self.level + a * (rate_rps - self.level)
        self._score_pending()

    def _score_pending(self) -> None:
        """Turn origins whose whole horizon is now observed into relative errors."""
        h = self.history
        horizon = self.lead_steps
        newest = self.steps_seen - 1
        while self.pending and self.pending[0][0] + horizon <= newest:
            origin, predicted = self.pending.popleft()
            span = range(origin, origin + horizon + 1)
            back = [newest - j + 1 for j in span]
            if any(h.missing_ago(k) for k in back):
                continue
            actual = max(h.ago(k) for k in back)
            self.errors.add(math.log((actual + self.floor_rate) / (predicted + self.floor_rate)))

    def _shape(self, now: int, horizon: int) -> list[float]:
        """Expected change factor from the last observed step to each step of the horizon."""
        f = self.forecast
        if f is None or not self.params.use_seasonal_shape:
            return [1.0] * (horizon + 1)
        ref = f.rate_at(now - self.step_s)
        if ref is None:
            ref = f.rate_at(now)
        if ref is None:
            return [1.0] * (horizon + 1)
        out = []
        clip = self.params.shape_clip
        for k in range(horizon + 1):
            v = f.rate_at(now + k * self.step_s)
            if v is None:
                out.append(out[-1] if out else 1.0)
            else:
                out.append(min(clip, max(1 / clip, (v + self.floor_rate) / (ref + self.floor_rate))))
        return out

    def point_forecast(self, now: int) -> float:
        """The largest expected rate over the horizon (requests/s), before the conformal headroom."""
        p = self.params
        h = self.history
        horizon = self.lead_steps
        base = max(self.level, h.peak(p.peak_window))
        if p.trend_gain and len(h) >= 2:
            base = max(base, h.last + p.trend_gain * (h.last - h.ago(2)) * horizon)
        return base * max(self._shape(now, horizon))

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        p = self.params
        h = self.history
        point = self.point_forecast(now)
        if len(self.errors) >= p.min_residuals:
            headroom = math.exp(self.errors.quantile(p.sizing_quantile))
            how = f"p{round(p.sizing_quantile * 100)} of {len(self.errors)} recent errors"
        else:
            headroom = p.default_headroom
            how = "default, too few errors yet"
        demand = point * headroom
        panic = h.last > self.upper_band and not h.last_missing
        floor = h.peak(p.reactive_window) * p.reactive_headroom
        parts = []
        if self.forecast is not None and self.forecast.covers(now):
            parts.append(f"predictive ({self.forecast.model}): {point:.3g} req/s expected over the next {self.lead_steps} steps")
        else:
            parts.append(f"reactive fallback (no forecast yet): level {point:.3g} req/s")
        parts.append(f"× {headroom:.2f} headroom ({how})")
        if floor > demand:
            demand = floor
            parts.append(f"raised to the recent peak {floor:.3g} req/s")
        if panic:
            demand = max(demand, h.last * p.panic_headroom)
            parts.append(f"PANIC: {h.last:.3g} req/s beat the upper band {self.upper_band:.3g}; refit")
        if self.steps_seen:
            self.pending.append((self.steps_seen, point))
        self.upper_band = demand
        itype = instance_type
        if self.target.kind.value == "sagemaker-instance-type":
            itype, note = self._rightsize(now, instance_type, demand)
            if note:
                parts.append(note)
        cap = size_for_rate(self.target, demand, itype)
        band = (point, point, demand)
        return Recommendation(
            cap,
            "; ".join(parts),
            demand_rps=demand,
            instance_type=itype if itype != instance_type else None,
            band=band,
            refit=panic,
            panic=panic,
        )

    def _rightsize(self, now: int, current_type: str | None, demand: float) -> tuple[str | None, str]:
        """Hourly: the cheapest type for the coming day, if switching pays for itself."""
        p = self.params
        if now - self.last_rightsize < p.rightsize_every_s or self.steps_seen < self.day_steps:
            return current_type, ""
        self.last_rightsize = now
        path = self._day_path(now)
        if not path:
            return current_type, ""
        path = [max(r, 0.0) for r in path]
        costs: dict[str, float] = {}
        for it in self.target.catalog:
            n = [sagemaker_instances(r, it.capacity_rps, self.target.min_capacity) for r in path]
            costs[it.name] = sum(n) * it.price_per_hour / len(path)
        cur_name = self.target.instance(current_type).name
        best = min(costs, key=lambda k: (costs[k], k))
        current = Fleet(cur_name, 0, costs[cur_name])
        candidate = Fleet(best, 0, costs[best])
        if type_switch_pays(current, candidate, p.rightsize_horizon_s, self.target.lead_times.type_change_s):
            return best, (
                f"right-size: {best} ${costs[best]:.2f}/h vs {cur_name} ${costs[cur_name]:.2f}/h "
                f"over the next day pays for the blue/green switch"
            )
        return current_type, ""

    def _day_path(self, now: int) -> list[float]:
        """Expected rates for the next day: the forecast's upper path, else yesterday's observations."""
        f = self.forecast
        if f is not None and f.covers(now):
            q = max(f.quantiles)
            return [r for r in (f.rate_at(now + k * f.step_s, q) for k in range(DAY_S // f.step_s)) if r is not None]
        n = min(len(self.history), self.day_steps)
        return [self.history.ago(k) for k in range(n, 0, -1)]


POLICY_NAMES = ("predictive", "reactive", "target-tracking", "seasonal-naive", "static")


def make_policy(name: str, target: Target, step_s: int, **params: float) -> Policy:
    """Build a policy by name; unknown names and parameters are errors that say what is valid."""
    if name == "predictive":
        return PredictivePolicy(target, step_s, PredictiveParams(**params))  # type: ignore[arg-type]
    if name == "reactive":
        return ReactivePolicy(target, step_s, **params)  # type: ignore[arg-type]
    if name == "target-tracking":
        return TargetTrackingPolicy(target, step_s, **params)
    if name == "seasonal-naive":
        return SeasonalNaivePolicy(target, step_s, **params)
    if name == "static":
        return StaticPolicy(target, step_s, **params)
    raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
