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
import sys
from collections import deque
from dataclasses import dataclass, replace

from forescale.domain.decision import Recommendation
from forescale.domain.forecast import Forecast
from forescale.domain.history import DemandHistory
from forescale.domain.rightsize import (
    DEFAULT_SWITCH_CONFIRMATIONS,
    DEFAULT_SWITCH_DWELL_S,
    DEFAULT_SWITCH_MARGIN,
    TypeSwitchRule,
    gate_type_switch,
    rightsize_choice,
)
from forescale.domain.sizing import (
    cost_optimal_concurrency,
    cost_optimal_instances,
    lambda_concurrency_for,
    offered_load,
    sagemaker_instances,
)
from forescale.domain.slo import SloParams, budget_left, controller_step, in_effect_segments, missed_requests
from forescale.domain.targets import Target

DAY_S = 86_400
# A thousand times the largest services. Observed rates above it (a broken metric; +inf too) are read as this
# by the planner, and so are the forecast rates right-sizing prices: they size to the ceiling all the same, and
# the policies' sums, products and exps of them stay finite (1e308 overflowed them into crashes).
MAX_RATE_RPS = 1e12


def size_for_rate(target: Target, rate_rps: float, instance_type: str | None = None) -> int:
    """Capacity that serves `rate_rps` at the target's SLO: Erlang B for Lambda, instances for SageMaker."""
    if rate_rps == math.inf:
        # A huge rate × a headroom overflows (react sizes the raw observed rate): the most capacity, not an error.
        rate_rps = sys.float_info.max
    if target.is_lambda:
        load = min(offered_load(rate_rps, target.duration_s), sys.float_info.max)
        return lambda_concurrency_for(load, target.slo_miss)
    it = target.instance(instance_type)
    return sagemaker_instances(rate_rps, it.capacity_rps, target.min_capacity)


class Policy:
    """Base class: keeps the observed rate window; subclasses implement `recommend`."""

    name = "policy"
    prescale_active = False  # whether `prescale_recommend` is used (see PredictivePolicy)

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

    def unit_rate_rps(self) -> float:
        """Requests/s one unit of capacity serves: a Lambda environment (1 / duration), an instance."""
        if self.target.is_lambda:
            return 1 / self.target.duration_s
        return self.target.instance(None).capacity_rps

    def observe(self, ts: int, rate_rps: float | None) -> float | None:
        """Record the finished step starting at `ts`; `None` when the metric is missing.

        Returns the rate believed: None for a missing step and for an implausible jump that the next
        step has yet to confirm (`DemandHistory.believed`), so that subclasses never learn from it.
        """
        believed = self.history.believed(rate_rps, self.unit_rate_rps())
        self.history.append(ts, believed)
        return believed

    def use_forecast(self, forecast: Forecast) -> None:
        """Accept a fresh forecast; only forecast-led policies use it."""

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        raise NotImplementedError

    def prescale_recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        raise NotImplementedError(f"{self.name} does not pre-scale")

    def after_decision(self, previous: int, requested: int, applied_before: int, now: int | None = None) -> None:
        """Optional hook: told what was decided at `now` (`previous` → `requested`) and what was in effect before."""


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
        rate_rps = super().observe(ts, rate_rps)
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
        self._last_avg = 0.0

    def observe(self, ts: int, rate_rps: float | None) -> None:
        rate_rps = super().observe(ts, rate_rps)
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

    def after_decision(self, previous: int, requested: int, applied_before: int, now: int | None = None) -> None:
        # The step starting now is served by what is in effect after this decision: a scale-in with
        # no lead (Lambda) already counts, a scale-out does not yet.
        instant = requested < previous and self.target.lead_times.down_s == 0
        self._applied_for_last = requested if instant else applied_before

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        floor = max(1, self.target.min_capacity)
        self._applied_for_last = applied  # refined by after_decision when a planner drives the policy
        if not self.started:
            self.started = True
            return Recommendation(max(floor, current), f"target-tracking: initial capacity {floor}")
        sm = not self.target.is_lambda
        avg = self._last_avg
        if self.history.last_missing:
            return Recommendation(current, "target-tracking: INSUFFICIENT_DATA, alarms hold")
        if self.above >= self.out_needed and (not sm or now - self.last_out >= self.SAGEMAKER_COOLDOWN_S):
            new = max(current + 1, math.ceil(current * avg / self.target_utilisation - 1e-9))
            self.last_out, self.above, self.below = now, 0, 0
            return Recommendation(
                new, f"target-tracking: utilisation {avg:.0%} > {self.target_utilisation:.0%} for 3 datapoints"
            )
        if self.below >= self.in_needed and (not sm or now - self.last_in >= self.SAGEMAKER_COOLDOWN_S):
            new = max(floor, math.ceil(current * avg / self.target_utilisation - 1e-9))
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

    def sample(self, k: int) -> list[float]:
        """`k` evenly spaced order statistics: the empirical distribution in `k` equally likely points."""
        n = len(self._sorted)
        return [self._sorted[min(n - 1, int((i + 0.5) * n / k))] for i in range(k)]

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
    - `panic_quantile`: the upper band for panic mode: demand above this calibrated quantile of the
      previous step's forecast is a surprise the forecast did not allow for.
    - `panic_headroom`: on such a surprise, size at least for the observed demand × this.
    - `prescale`: with a lead shorter than a step, raise capacity one lead before each step starts.
    - `ensemble`: average the calibrated upper quantiles of this many best-scoring experts
      (quantile averaging is sharper than any one expert and stays close to calibrated).
    - `miss_cost_usd`: if set, size for the least price + this × expected missed requests over
      error scenarios instead of at `sizing_quantile`; `cost_members` best experts make the scenarios
      (1 measured better than a 4-expert mixture on servegen-small).
    - `use_seasonal_shape`: scale the level by the forecast's expected change over the horizon.
    - `error_shift`: errors are log((actual + c) / (forecast + c)) with c this share of the recent
      day's mean rate, so that near-zero forecasts of intermittent targets don't explode the headroom.
    - `rightsize_every_s`, `rightsize_horizon_s`: a SageMaker instance-type target prices the forecast
      of the coming `rightsize_horizon_s` on every catalog type this often.
    - `type_switch_margin`, `type_switch_confirmations`, `type_switch_dwell_s`: hysteresis on type
      switches. The saving over the horizon must exceed this × the blue/green switch cost (default 2),
      on this many consecutive evaluations (default 2), and not within this long of the last switch
      (default 6 h). See `forescale.domain.rightsize` for why.
    - `hold_steps`, `min_scale_in`, `change_cost_usd`, `value_horizon_s`: calm capacity. A scale-in
      goes only below every recommendation of the last `hold_steps` steps, by at least `min_scale_in`
      of the capacity, and when it saves at least `change_cost_usd` over `value_horizon_s`; a
      scale-out goes at once. A pre-scale's raise joins those recommendations, so the next step's
      decision does not take it back at once. (Without them, pre-scaling raised and the step
      decision lowered in every 10-minute step: 125 changes per target-day on servegen-large.)
    - `slo_gain` and the other `slo_*`: the error-budget controller (`forescale.domain.slo`): misses
      over `slo_setpoint` × the SLO raise the headroom (up to `slo_headroom_max`), misses that came
      from a standing start raise a standing floor (`slo_floor`; at most `slo_floor_max` - 1 times
      the target's usual active rate), and steps under it lower both
      again, never below the calibrated sizing (`slo_headroom_min` 1). 0 turns it off; the budget
      itself is always tracked and reported in the decision's reason.
    """

    sizing_quantile: float = 0.92
    level_alpha: float = 1.0
    peak_window: int = 1
    trend_gain: float = 0.0
    residual_window_s: int = DAY_S
    min_residuals: int = 30
    default_headroom: float = 1.2
    reactive_headroom: float = 1.0
    reactive_window: int = 1
    panic_quantile: float = 0.995
    prescale: bool = True
    ensemble: int = 4
    ensemble_tolerance: float = 1.5
    cost_members: int = 1
    panic_headroom: float = 1.1
    use_seasonal_shape: bool = True
    shape_clip: float = 4.0
    error_shift: float = 0.2
    miss_cost_usd: float | None = None
    volatility_alpha: float = 0.05
    volatility_clip: float = 2.0
    scenarios: int = 24
    smooth_alpha: float = 0.3
    min_overlap: float = 0.5
    rightsize_every_s: int = 3600
    rightsize_horizon_s: int = DAY_S
    type_switch_margin: float = DEFAULT_SWITCH_MARGIN
    type_switch_confirmations: int = DEFAULT_SWITCH_CONFIRMATIONS
    type_switch_dwell_s: int = DEFAULT_SWITCH_DWELL_S
    slo_gain: float = 0.01
    slo_setpoint: float = 0.85
    slo_floor: bool = True
    hold_steps: int = 3
    min_scale_in: float = 0.1
    change_cost_usd: float = 0.0
    value_horizon_s: int = 3600
    slo_window_s: int = DAY_S
    slo_max_excess: float = 100.0
    slo_headroom_min: float = 1.0
    slo_headroom_max: float = 3.0
    slo_floor_max: float = 2.0

    def __post_init__(self) -> None:
        self.slo  # noqa: B018  # raises on bad SLO-controller values
        self.slo_floor_params  # noqa: B018  # and on a bad slo_floor_max
        if not 0.5 <= self.sizing_quantile < 1:
            raise ValueError(f"sizing_quantile must be in [0.5, 1), got {self.sizing_quantile}")
        if not 0 < self.level_alpha <= 1:
            raise ValueError(f"level_alpha must be in (0, 1], got {self.level_alpha}")
        if self.peak_window < 1 or self.reactive_window < 1:
            raise ValueError("peak_window and reactive_window must be >= 1")
        if not self.type_switch_margin >= 1:
            raise ValueError(f"type_switch_margin must be >= 1, got {self.type_switch_margin}")
        TypeSwitchRule(self.type_switch_dwell_s, self.type_switch_confirmations)  # raises on bad values

    @property
    def type_switch_rule(self) -> TypeSwitchRule:
        return TypeSwitchRule(self.type_switch_dwell_s, self.type_switch_confirmations)

    @property
    def slo_floor_params(self) -> SloParams:
        """The standing floor's controller: the same gain, a floor of 0 to (`slo_floor_max` - 1)× the active rate."""
        return SloParams(self.slo_window_s, self.slo_gain, self.slo_max_excess, 1.0, self.slo_floor_max)

    @property
    def slo(self) -> SloParams:
        return SloParams(
            self.slo_window_s, self.slo_gain, self.slo_max_excess, self.slo_headroom_min, self.slo_headroom_max
        )


class _Expert:
    """One point forecaster inside the predictive policy, with its own calibration and score."""

    __slots__ = ("errors", "loss", "name", "scored")

    def __init__(self, name: str, window: int) -> None:
        self.name = name
        self.errors = _SortedWindow(window)
        self.loss = 0.0  # exponentially weighted pinball loss of its calibrated upper quantile
        self.scored = 0


class PredictivePolicy(Policy):
    """Forecast-led capacity: competing point forecasts, each calibrated by its own recent errors.

    Every step, for the steps a decision must cover (see `horizon_steps`):
    1. experts propose the largest expected rate over those steps:
       - `level`: the recent demand (at least the last `peak_window` peak, plus optional trend);
       - `smooth`, `blend`: an exponentially smoothed level, and its mean with the last step
         (demand mean-reverts at 10-minute scale: measured corr -0.3 on ServeGen);
       - `short-peak`, `hour-peak`: the largest rate of the last 3 steps and of the last hour;
       - `level×shape`, `smooth×shape`: those levels scaled by the forecast's expected change from
         the last step, so a daily ramp is provisioned before it arrives;
       - `seasonal`: the forecast's own median (strong for targets on a daily on/off schedule);
    2. each expert's proposal is raised to the `sizing_quantile` of its own errors (online conformal
       over the last `residual_window_s`, on a shifted log scale so intermittent targets stay sane);
    3. the `ensemble` experts with the lowest recent pinball loss at that quantile (sharp and
       calibrated) are averaged;
    4. the reactive overlay keeps demand at least the recent peak × `reactive_headroom`; when demand
       beats the previous upper band (panic) it is at least that demand × `panic_headroom`, and the
       forecaster is asked to refit;
    5. capacity is sized at the SLO (Erlang B for Lambda, instances for SageMaker).
    With no forecast (under a day of history) only the history experts run: a reactive fallback,
    with `default_headroom` until the experts have `min_residuals` scored errors.
    SageMaker instance-type targets also right-size hourly: the cheapest type for the coming day's
    forecast, switching only when the saving exceeds twice the blue/green switch cost on two
    consecutive evaluations, and not within 6 h of the last switch (`type_switch_*` parameters).
    """

    name = "predictive"
    EXPERTS = ("level", "smooth", "blend", "short-peak", "hour-peak", "level×shape", "smooth×shape", "seasonal")
    FIRST_FORECAST_EXPERT = 5  # the experts from here on need a statsforecast forecast

    def __init__(self, target: Target, step_s: int, params: PredictiveParams | None = None) -> None:
        self.params = params or PredictiveParams()
        p = self.params
        self.day_steps = max(1, DAY_S // step_s)
        self.hour_steps = max(1, 3600 // step_s)
        super().__init__(target, step_s, history_steps=max(self.day_steps + 4, p.peak_window + 2))
        self.forecast: Forecast | None = None
        self.level = 0.0
        self.smooth = 0.0
        window = max(30, p.residual_window_s // step_s)
        # Pre-scaling: when a scale-out lands within one step (lead < step), a second decision at
        # next step start - lead raises capacity exactly when the next step begins, so the decision
        # at a step's start only has to cover that step. Its forecast is one step further ahead,
        # so it keeps its own experts and calibration (offset 1).
        self.prescale_active = p.prescale and 0 < target.lead_times.up_s < step_s
        offsets = (0, 1) if self.prescale_active else (0,)
        self.experts_by_offset = {o: [_Expert(name, window) for name in self.EXPERTS] for o in offsets}
        self.experts = self.experts_by_offset[0]
        # A loss memory of about a quarter of the residual window.
        self.loss_alpha = min(0.5, 4 / window)
        # Awaiting their outcome: (first step covered, point per expert, calibrated per expert, scale, offset).
        self.pending: deque[tuple[int, tuple[float | None, ...], tuple[float | None, ...], float, int]] = deque()
        self.steps_seen = 0
        self.upper_band = math.inf
        self.last_rightsize = -(10**12)
        # Type-switch hysteresis, as plain values so that planner snapshots carry them.
        self.type_seen: str | None = None  # the instance type at the last right-size call
        self.type_switched_at: int | None = None  # when it last changed (None: never, since we started)
        self.type_proposed: str | None = None  # the last switch this policy proposed, and when
        self.type_proposed_at: int | None = None
        self.type_candidate: str | None = None  # the type the consecutive paying evaluations agree on
        self.type_streak = 0
        self.floor_rate = 0.5 / step_s  # half a request per step, to keep logs finite
        self.day_window: deque[float] = deque(maxlen=self.day_steps)
        self.day_sum = 0.0
        self.volatility = 0.0  # fast EWMA of squared shifted-log step changes
        self.volatility_slow = 0.0  # the same, ten times slower: the target's usual volatility
        # The error budget (forescale.domain.slo): what is in effect, as the yardstick models it, and
        # what it missed. `slo_current` is None until the first decision says what was in effect.
        self.slo_current: int | None = None
        self.slo_ruling = -1.0  # decided_at of the request in effect
        self.slo_landings: deque[tuple[float, float, float]] = deque()  # (effect_at, decided_at, capacity)
        self.slo_type: str | None = None
        # The budget's window in hourly buckets (a day of minutes would add 23 KB to every snapshot).
        self.slo_bucket_s = max(3600, step_s)
        buckets = max(1, p.slo_window_s // self.slo_bucket_s)
        self.slo_requests: deque[float] = deque([0.0], maxlen=buckets)
        self.slo_missed: deque[float] = deque([0.0], maxlen=buckets)
        self.slo_bucket_at = -1  # start of the newest bucket
        self.slo_typical = 0.0  # EWMA of a step's requests, to weigh busy steps more
        self.log_headroom = 0.0
        # The learned standing floor, for targets that switch on within a step: a share (exp - 1) of
        # their usual active rate, raised by misses that started from (nearly) nothing.
        self.log_floor = 0.0
        self.active_level = 0.0  # EWMA of the non-zero rates
        # Calm capacity: own recommendations of the last `hold_steps` (scale in only below all of them).
        self.calm_recent: deque[tuple[int, int]] = deque()

    def use_forecast(self, forecast: Forecast) -> None:
        self.forecast = forecast

    def observe(self, ts: int, rate_rps: float | None) -> None:
        rate_rps = super().observe(ts, rate_rps)
        self.steps_seen += 1
        if len(self.day_window) == self.day_window.maxlen:
            self.day_sum -= self.day_window[0]
        self.day_window.append(self.history.last)
        self.day_sum += self.history.last
        if rate_rps is not None and self.params.volatility_alpha and len(self.history) >= 2:
            c = self._shift()
            change = math.log((rate_rps + c) / (self.history.ago(2) + c))
            self.volatility += self.params.volatility_alpha * (change * change - self.volatility)
            self.volatility_slow += self.params.volatility_alpha / 10 * (change * change - self.volatility_slow)
        if rate_rps is not None:
            a = self.params.level_alpha
            first = self.history.observed_steps == 1
            self.level = rate_rps if first else self.level + a * (rate_rps - self.level)
            b = self.params.smooth_alpha
            self.smooth = rate_rps if first else self.smooth + b * (rate_rps - self.smooth)
            self._spend_budget(ts, rate_rps)
        self._score_pending()

    def after_decision(self, previous: int, requested: int, applied_before: int, now: int | None = None) -> None:
        if now is None:
            return
        if self.slo_current is None:
            self.slo_current = applied_before
        self._land(now)
        if requested != previous:
            # The yardstick's rule: more than what is in effect is a scale-out, whatever was asked last.
            lead = self.target.lead_times
            delay = lead.up_s if requested > self.slo_current else lead.down_s
            self.slo_landings.append((float(now + delay), float(now), float(requested)))

    def _land(self, t: int) -> None:
        """Move the requests in effect by `t` out of `slo_landings`; the latest-decided rules."""
        keep: deque[tuple[float, float, float]] = deque()
        for effect, decided, cap in self.slo_landings:
            if effect <= t:
                if decided >= self.slo_ruling:
                    self.slo_current, self.slo_ruling = int(cap), decided
            else:
                keep.append((effect, decided, cap))
        self.slo_landings = keep

    def _spend_budget(self, ts: int, rate_rps: float) -> None:
        """Charge the step [ts, ts + step) to the error budget and move the headroom controller."""
        if self.slo_current is None:
            return
        self._land(ts)
        capacity_rps = 0.0 if self.target.is_lambda else self.target.instance(self.slo_type).capacity_rps
        segments = in_effect_segments(ts, ts + self.step_s, self.slo_current, self.slo_ruling, self.slo_landings)
        missed = sum(missed_requests(self.target, c, rate_rps, sec, capacity_rps) for sec, c in segments)
        requests = rate_rps * self.step_s
        bucket = ts - ts % self.slo_bucket_s
        if bucket != self.slo_bucket_at:
            if self.slo_bucket_at >= 0:
                self.slo_requests.append(0.0)
                self.slo_missed.append(0.0)
            self.slo_bucket_at = bucket
        self.slo_requests[-1] += requests
        self.slo_missed[-1] += missed
        self.slo_typical = (
            requests if self.slo_typical <= 0 else self.slo_typical + 0.01 * (requests - self.slo_typical)
        )
        weight = min(10.0, requests / self.slo_typical) if self.slo_typical > 0 else 1.0
        if rate_rps > 0:
            self.active_level = (
                rate_rps if self.active_level <= 0 else self.active_level + 0.02 * (rate_rps - self.active_level)
            )
        slo = self.target.slo_miss * self.params.slo_setpoint
        # A miss that started from less than half the capacity the step needed is a switch-on: more
        # headroom multiplies next to nothing, a standing floor is what serves it.
        cold = segments[0][1] < size_for_rate(self.target, rate_rps, self.slo_type) / 2
        over = missed > slo * requests
        if over and cold and self.params.slo_floor:
            self.log_floor = controller_step(
                self.log_floor, missed, requests, weight, slo, self.params.slo_floor_params
            )
        elif over or not cold:
            self.log_headroom = controller_step(self.log_headroom, missed, requests, weight, slo, self.params.slo)
        if not over and self.params.slo_floor:
            self.log_floor = controller_step(
                self.log_floor, missed, requests, weight, slo, self.params.slo_floor_params
            )

    @property
    def budget_left(self) -> float:
        """Share of the SLO's error budget left over the rolling window (negative: overspent)."""
        return budget_left(sum(self.slo_missed), sum(self.slo_requests), self.target.slo_miss)

    @property
    def horizon_steps(self) -> int:
        """Steps after the current one that a decision must cover.

        A scale-out decided now serves from now + lead until the next decision's takes effect, one
        step later: [now, now + lead + step). A step that this interval overlaps by less than
        `min_overlap` of its length is left to the next decision.
        """
        if self.prescale_active:
            return 0
        span = self.target.lead_times.up_s + self.step_s
        k = 0
        while (span - (k + 1) * self.step_s) / self.step_s >= self.params.min_overlap:
            k += 1
        return k

    def _score_pending(self) -> None:
        """Turn origins whose whole horizon is now observed into errors and losses, per expert."""
        h = self.history
        horizon = self.horizon_steps
        newest = self.steps_seen - 1
        q = self.params.sizing_quantile
        while self.pending and self.pending[0][0] + horizon <= newest:
            first, points, calibrated, scale, offset = self.pending.popleft()
            back = [newest - j + 1 for j in range(first, first + horizon + 1)]
            if any(h.missing_ago(k) for k in back):
                continue  # missing data scores nothing
            actual = max(h.ago(k) for k in back)
            c = self._shift()
            for expert, point, upper in zip(self.experts_by_offset[offset], points, calibrated, strict=True):
                if point is None:
                    continue
                expert.errors.add(math.log((actual + c) / (point + c)) / scale)
                if upper is not None:
                    miss = actual - upper
                    loss = q * miss if miss >= 0 else (q - 1) * miss
                    expert.loss += self.loss_alpha * (loss - expert.loss)
                    expert.scored += 1

    def _shift(self) -> float:
        """The additive part of the error model (requests/s)."""
        mean = self.day_sum / len(self.day_window) if self.day_window else 0.0
        return max(self.floor_rate, self.params.error_shift * mean)

    def _forecast_path(self, anchor: int, offset: int, horizon: int) -> list[float] | None:
        """The forecast median for the last observed step and each step covered.

        `anchor` is the start of the step after the last observed one; the covered steps start
        `offset` steps after it.
        """
        f = self.forecast
        if f is None or not f.covers(anchor):
            return None
        out: list[float] = []
        for k in (-1, *range(offset, offset + horizon + 1)):
            v = f.rate_at(anchor + k * self.step_s)
            out.append(v if v is not None else (out[-1] if out else 0.0))
        return out

    def proposals(self, anchor: int, offset: int = 0) -> tuple[float | None, ...]:
        """Each expert's largest expected rate over the steps covered (requests/s), None if it cannot say."""
        p = self.params
        h = self.history
        horizon = self.horizon_steps
        base = max(self.level, h.peak(p.peak_window))
        if p.trend_gain and len(h) >= 2:
            base = max(base, h.last + p.trend_gain * (h.last - h.ago(2)) * horizon)
        history_only = (base, self.smooth, 0.5 * (h.last + self.smooth), h.peak(3), h.peak(self.hour_steps))
        path = self._forecast_path(anchor, offset, horizon) if p.use_seasonal_shape else None
        if path is None:
            return (*history_only, None, None, None)
        ref = path[0] + self.floor_rate
        clip = p.shape_clip
        shape = max(min(clip, max(1 / clip, (v + self.floor_rate) / ref)) for v in path[1:])
        return (*history_only, base * shape, self.smooth * shape, max(path[1:]))

    def _scale(self) -> float:
        """Error scale (locally adaptive conformal): recent volatility over the usual, within [0.5, 2].

        Bounded so that a calm spell followed by a burst cannot multiply the headroom without limit.
        """
        if not self.params.volatility_alpha or self.volatility_slow <= 0:
            return 1.0
        clip = self.params.volatility_clip
        return min(clip, max(1 / clip, math.sqrt(self.volatility / self.volatility_slow)))

    def _calibrate(self, expert: _Expert, point: float) -> float | None:
        if len(expert.errors) < self.params.min_residuals:
            return None
        c = self._shift()
        q = expert.errors.quantile(self.params.sizing_quantile) * self._scale()
        return max(0.0, (point + c) * math.exp(q) - c)

    def recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        return self._calm(now, current, self._recommend(now, instance_type, offset=0))

    def _calm(self, now: int, current: int, rec: Recommendation) -> Recommendation:
        """Scale in only below every recommendation of the last `hold_steps`, and by at least `min_scale_in`.

        A scale-out goes through at once (misses cost more than capacity); a scale-in that the next
        minutes would undo is churn: control-plane calls and a lead time of exposure for nothing.
        """
        p = self.params
        if p.hold_steps <= 1 and not p.min_scale_in and not p.change_cost_usd:
            return rec
        hold_s = p.hold_steps * self.step_s
        self.calm_recent.append((now, rec.capacity))
        while self.calm_recent and now - self.calm_recent[0][0] >= max(hold_s, 1):
            self.calm_recent.popleft()
        if rec.capacity >= current or rec.panic or rec.instance_type is not None:
            return rec
        wanted = max(c for _, c in self.calm_recent)
        saving_usd = (current - wanted) * self.target.price_per_unit_hour(self.slo_type) * p.value_horizon_s / 3600
        if wanted >= current or current - wanted < p.min_scale_in * current or saving_usd < p.change_cost_usd:
            why = f"calm: holding {current} (recommendations of the last {hold_s} s up to {wanted})"
            return replace(rec, capacity=current, reason=f"{rec.reason}; {why}")
        if wanted > rec.capacity:
            return replace(
                rec, capacity=wanted, reason=f"{rec.reason}; calm: down to {wanted}, the most of the last {hold_s} s"
            )
        return rec

    def prescale_recommend(self, now: int, current: int, applied: int, instance_type: str | None) -> Recommendation:
        """Capacity for the next step, decided one lead time before it starts (only ever raises)."""
        rec = self._recommend(now, instance_type, offset=1)
        if rec.capacity > current and self.params.hold_steps > 1:
            # A raise the next step's decision would take back at once is churn: it joins the hold.
            self.calm_recent.append((now, rec.capacity))
        return rec

    def _recommend(self, now: int, instance_type: str | None, offset: int) -> Recommendation:
        p = self.params
        h = self.history
        experts = self.experts_by_offset[offset]
        anchor = now if h.last_ts is None else h.last_ts + self.step_s
        points = self.proposals(anchor, offset)
        calibrated = tuple(
            None if pt is None else self._calibrate(e, pt) for e, pt in zip(experts, points, strict=True)
        )
        members: list[tuple[_Expert, float]] = []
        ready = [
            i
            for i, (e, u) in enumerate(zip(experts, calibrated, strict=True))
            if u is not None and e.scored >= p.min_residuals
        ]
        parts = []
        if ready:
            ranked = sorted(ready, key=lambda i: (experts[i].loss, i))
            best = ranked[0]
            best_expert = experts[best]
            point, demand = points[best], calibrated[best]
            assert point is not None and demand is not None  # nosec B101  # `ready` keeps calibrated experts only; narrows the type for mypy
            # The best few, leaving out any much worse than the best (a known pattern has one clear winner).
            limit = best_expert.loss * p.ensemble_tolerance + 1e-12
            top = [i for i in ranked if experts[i].loss <= limit][: max(1, p.ensemble)]
            if len(top) > 1:
                demand = sum(calibrated[i] or 0.0 for i in top) / len(top)
                point = sum(points[i] or 0.0 for i in top) / len(top)
            names = " + ".join(experts[i].name for i in top)
            members = [(experts[i], points[i] or 0.0) for i in top[: p.cost_members]]
            c = self._shift()
            band = math.exp(best_expert.errors.quantile(p.panic_quantile) * self._scale())
            panic_band = max(demand, (point + c) * band - c)
            model = (
                f" {self.forecast.model}" if self.forecast and any(i >= self.FIRST_FORECAST_EXPERT for i in top) else ""
            )
            parts.append(
                f"{'pre-scale for the next step, ' if offset else ''}"
                f"predictive [{names}{model}]: {point:.3g} req/s expected over "
                f"{self.horizon_steps + 1} step(s), p{round(p.sizing_quantile * 100)} of its recent errors "
                f"→ {demand:.3g} req/s"
            )
        else:
            point = points[0] or 0.0
            demand = point * p.default_headroom
            panic_band = point * p.default_headroom * 1.5
            why = "no forecast yet" if points[self.FIRST_FORECAST_EXPERT] is None else "calibrating"
            parts.append(f"reactive fallback ({why}): level {point:.3g} req/s × {p.default_headroom:g}")
        if self.steps_seen:
            self.pending.append((self.steps_seen + offset, points, calibrated, self._scale(), offset))
        self.slo_type = instance_type
        if self.slo_requests[-1] > 0 or len(self.slo_requests) > 1:
            left = self.budget_left
            parts.append(
                f"SLO {self.target.slo_miss:.2%}: "
                + (f"{left:.0%} of the budget left" if left >= 0 else f"budget overspent by {-left:.0%}")
                + f" over the last {self.params.slo_window_s // 3600} h"
            )
        if self.params.slo_gain:
            headroom = math.exp(self.log_headroom)
            demand *= headroom
            standing = (math.exp(self.log_floor) - 1) * self.active_level
            parts.append(f"headroom ×{headroom:.2f} for the budget")
            if standing > demand:
                demand = standing
                parts.append(f"standing floor {standing:.3g} req/s (misses came at switch-on)")
        if offset:
            # A pre-scale decision: no panic bookkeeping or right-sizing, those run at step starts.
            floor = h.peak(p.reactive_window) * p.reactive_headroom
            demand = max(demand, floor)
            cap = self._size(demand, floor, members, instance_type)
            return Recommendation(cap, "; ".join(parts), demand_rps=demand, band=(point, point, demand))
        panic = h.last > self.upper_band and not h.last_missing
        floor = h.peak(p.reactive_window) * p.reactive_headroom
        if floor > demand:
            demand = floor
            parts.append(f"raised to the recent peak {floor:.3g} req/s")
        if panic:
            demand = max(demand, h.last * p.panic_headroom)
            parts.append(f"PANIC: {h.last:.3g} req/s beat the upper band {self.upper_band:.3g}; refit")
        self.upper_band = max(panic_band, demand)
        itype = instance_type
        if self.target.kind.value == "sagemaker-instance-type":
            itype, note = self._rightsize(now, instance_type, demand)
            if note:
                parts.append(note)
        # In panic, size for the observed surge itself, not for the calibrated scenarios.
        cap = self._size(demand, floor, [] if panic else members, itype)
        if p.miss_cost_usd is not None and members and not panic:
            parts.append(f"cost-optimal at ${p.miss_cost_usd:g} per missed request")
        if p.slo_gain and cap >= self.target.max_capacity and self.budget_left < 0:
            parts.append(
                f"SLO OUT OF REACH: the budget is overspent ({-self.budget_left:.0%} over) and the demand needs "
                f"more than max_capacity {self.target.max_capacity}"
            )
        return Recommendation(
            cap,
            "; ".join(parts),
            demand_rps=demand,
            instance_type=itype if itype != instance_type else None,
            band=(point, point, demand),
            refit=panic,
            panic=panic,
        )

    def _size(self, demand: float, floor: float, members: list[tuple[_Expert, float]], itype: str | None) -> int:
        """Capacity for `demand` at the SLO; with `miss_cost_usd` and calibrated `members`, the
        cost-optimal capacity instead, never below what the reactive floor needs."""
        if self.params.miss_cost_usd is None or not members:
            return size_for_rate(self.target, demand, itype)
        return max(self._cost_optimal(members, itype), size_for_rate(self.target, floor, itype))

    def _cost_optimal(self, members: list[tuple[_Expert, float]], itype: str | None) -> int:
        """Capacity minimising its price + the value of expected misses over the error scenarios.

        The scenarios are a mixture over `members`: each one's point scaled by its own error sample.
        """
        p = self.params
        assert p.miss_cost_usd is not None  # nosec B101  # the caller returned early when it is None; narrows the type for mypy
        c = self._shift()
        scale = self._scale()
        per_member = max(4, p.scenarios // len(members))
        rates = [
            max(0.0, (point + c) * math.exp(e * scale) - c)
            for expert, point in members
            for e in expert.errors.sample(per_member)
        ]
        t = self.target
        if t.is_lambda:
            return cost_optimal_concurrency(
                [r * t.duration_s for r in rates], t.duration_s, t.price_per_unit_hour(), p.miss_cost_usd
            )
        it = t.instance(itype)
        return cost_optimal_instances(rates, it.capacity_rps, it.price_per_hour, p.miss_cost_usd, t.min_capacity)

    def _rightsize(self, now: int, current_type: str | None, demand: float) -> tuple[str | None, str]:
        """Hourly: the cheapest type for the coming day, if switching pays for itself with a margin,
        held by the type-switch hysteresis (`gate_type_switch`)."""
        p = self.params
        seen = self.target.instance(current_type).name
        if seen != self.type_seen:
            if self.type_seen is not None:
                # The type changed: dated when we decided it, or now if it was not our proposal.
                ours = seen == self.type_proposed and self.type_proposed_at is not None
                self.type_switched_at = self.type_proposed_at if ours else now
                self.type_candidate, self.type_streak = None, 0
            self.type_seen = seen
        if (
            now - self.last_rightsize < p.rightsize_every_s
            or self.steps_seen < self.day_steps
            or self.history.last_missing
        ):
            return current_type, ""
        self.last_rightsize = now
        path = self._day_path(now)
        if not path:
            return current_type, ""
        choice = rightsize_choice(self.target, path, current_type, p.rightsize_horizon_s, p.type_switch_margin)
        gate = gate_type_switch(
            choice, now, self.type_switched_at, self.type_candidate, self.type_streak, p.type_switch_rule
        )
        self.type_candidate, self.type_streak = gate.candidate, gate.streak
        if not gate.switch:
            return current_type, gate.reason
        self.type_proposed, self.type_proposed_at = choice.best, now
        return choice.best, gate.reason

    def _day_path(self, now: int) -> list[float]:
        """Expected rates for the next day: the forecast's upper path, else yesterday's observations."""
        f = self.forecast
        if f is not None and f.covers(now):
            q = max(f.quantiles)
            path = (f.rate_at(now + k * f.step_s, q) for k in range(DAY_S // f.step_s))
            return [min(r, MAX_RATE_RPS) for r in path if r is not None]  # 1e308 × a day overflowed the pricing
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
