"""The planner: one target's policy plus the guardrail chain, producing audited decisions.

The same code runs in the plan Lambda, in `forescale replay` and in the local demo.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

from forescale.domain.decision import Decision, Recommendation
from forescale.domain.forecast import Forecast
from forescale.domain.guardrails import (
    DEFAULT_CHAIN,
    AccountHeadroom,
    Guardrail,
    GuardrailContext,
    GuardrailSettings,
    apply_chain,
)
from forescale.domain.history import SPIKE_FACTOR
from forescale.domain.policies import MAX_RATE_RPS, Policy, size_for_rate
from forescale.domain.targets import Target


@dataclass(frozen=True, slots=True)
class StepInput:
    """What the planner knows at `now` beyond the policy's own history."""

    now: int
    applied: int | None = None  # capacity actually in effect (read back from AWS, or simulated)
    account: AccountHeadroom | None = None


HOURLY_PEAK_HOURS = 26  # the day before the last hour, plus the current and the last hour


def default_settings(target: Target) -> GuardrailSettings:
    """Guardrails for a target with nothing configured: its bounds only (no window, cooldown or budget)."""
    return GuardrailSettings(
        min_capacity=target.min_capacity,
        max_capacity=target.max_capacity,
        stabilisation_window_s=0,
    )


class Planner:
    """Runs a policy and the guardrails for one target and remembers what it requested."""

    def __init__(
        self,
        target: Target,
        policy: Policy,
        settings: GuardrailSettings | None = None,
        chain: tuple[Guardrail, ...] = DEFAULT_CHAIN,
        initial_capacity: int | None = None,
    ) -> None:
        self.target = target
        self.policy = policy
        self.settings = settings or default_settings(target)
        self.chain = chain
        if initial_capacity is None:
            initial_capacity = 0 if target.is_lambda else target.min_capacity
        self.requested = initial_capacity
        self.requested_type: str | None = None if target.is_lambda else target.instance(None).name
        self.last_change_at: int | None = None
        self.type_switch_until = -(10**12)
        # Recommendations of the last stabilisation window, pruned by time (not by count: pre-scaling
        # adds decision points between steps).
        self.recent: deque[tuple[int, int]] = deque()
        self.refit_requested = False
        self.forecast_issued_at = -1  # issued_at of the forecast in use (-1: none yet)
        self.last_decided_at: int | None = None
        # [hour (epoch s // 3600), largest capacity decided in it] for the last day: the per-hour scale-out bound.
        self.hourly_peaks: deque[list[int]] = deque(maxlen=HOURLY_PEAK_HOURS)

    def start_from(self, now: int, capacity: int | None, instance_type: str | None) -> None:
        """A fresh planner starts from what is in effect (read back from AWS), not from its default:
        the step limits then apply to the first change, and the stabilisation window holds a scale-in
        below that capacity as if it had been recommended at `now`. None: nothing known, keep the default."""
        if capacity is None:
            return
        self.requested = capacity
        if instance_type is not None and not self.target.is_lambda:
            self.requested_type = instance_type
        self.recent.append((now, capacity))

    def observe(self, ts: int, rate_rps: float | None) -> None:
        """Feed the finished step starting at `ts` (None: the metric is missing)."""
        if rate_rps is not None and rate_rps > MAX_RATE_RPS:
            rate_rps = MAX_RATE_RPS  # inf too: more demand than any capacity serves, not an error
        self.policy.observe(ts, rate_rps)

    def use_forecast(self, forecast: Forecast) -> None:
        self.policy.use_forecast(forecast)
        self.forecast_issued_at = forecast.issued_at
        self.refit_requested = False

    @property
    def prescale_lead_s(self) -> int | None:
        """Seconds before each step start at which `prescale` should run, or None if the policy doesn't."""
        return self.target.lead_times.up_s if self.policy.prescale_active else None

    def prescale(self, step: StepInput) -> Decision:
        """Raise capacity for the next step one lead time before it starts; never lowers it."""
        applied = self.requested if step.applied is None else step.applied
        rec = self.policy.prescale_recommend(step.now, self.requested, applied, self.requested_type)
        if rec.capacity <= self.requested:
            # A pre-scale that does not raise is no recommendation: it must not feed the stabilisation window.
            hold = Recommendation(self.requested, rec.reason + "; pre-scale only raises, holding", rec.demand_rps)
            return self._record(step.now, self.requested, hold, (), (), None, self.policy.history.last_missing, applied)
        return self._shape_and_record(step, rec, applied)

    def decide(self, step: StepInput) -> Decision:
        """One planning step: the policy recommends, the guardrails shape, and the decision is recorded."""
        now = step.now
        applied = self.requested if step.applied is None else step.applied
        rec = self.policy.recommend(now, self.requested, applied, self.requested_type)
        return self._shape_and_record(step, rec, applied)

    def react(self, step: StepInput, rate_rps: float | None, why: str, headroom: float = 1.1) -> Decision:
        """Scale out now, between steps (an alarm fired, or demand beat the forecast's upper band).

        Sized for the observed `rate_rps` × `headroom`; with no rate (an alarm without a datapoint),
        one and a half times the current capacity. It never lowers capacity, it asks for a refit, and
        it goes through the same guardrails as every decision (max step, ceilings, budget).
        """
        applied = self.requested if step.applied is None else step.applied
        history = self.policy.history
        if rate_rps is not None and history.implausible(rate_rps, self.policy.unit_rate_rps()):
            # Not believed here: the planning step believes it when a second step confirms it.
            why += f"; spike-confirmation: {rate_rps:.3g} req/s is over {SPIKE_FACTOR:g}× the recent peak, not acted on"
            last_step = self.last_decided_at
            hold = Recommendation(self.requested, f"react: {why}", 0.0)
            decision = self._record(step.now, self.requested, hold, (), (), None, history.last_missing, applied)
            self.last_decided_at = last_step
            return decision
        if rate_rps is not None and rate_rps >= 0:
            wanted = size_for_rate(self.target, rate_rps * headroom, self.requested_type)
            demand = rate_rps * headroom
        else:
            wanted = max(self.requested + 1, math.ceil(self.requested * 1.5))
            demand = 0.0
        rec = Recommendation(max(wanted, self.requested), f"react: {why}", demand, refit=True, panic=True)
        # A reaction is not the step's decision: if it lands before the step is planned (events are not
        # ordered), the step must still be decided, so `last_decided_at` keeps the last step decision.
        last_step = self.last_decided_at
        decision = self._shape_and_record(step, rec, applied)
        self.last_decided_at = last_step
        return decision

    def _shape_and_record(self, step: StepInput, rec: Recommendation, applied: int) -> Decision:
        now = step.now
        if rec.refit:
            self.refit_requested = True
        missing = self.policy.history.last_missing
        new_type = rec.instance_type
        in_switch = now < self.type_switch_until
        if in_switch:
            # A blue/green type switch is in flight: AWS rejects a second update until it completes.
            return self._record(
                now, self.requested, rec, (), ("in-flight: type switch in progress, holding",), None, missing, applied
            )
        ctx = GuardrailContext(
            now=now,
            current=self.requested,
            settings=self.settings,
            unit_price_per_hour=self.target.price_per_unit_hour(new_type or self.requested_type),
            data_missing=missing,
            last_change_at=self.last_change_at,
            recent_recommendations=tuple(self.recent),
            account=step.account if self.target.is_lambda else None,
            peak_before_last_hour=self._peak_before_last_hour(now),
        )
        proposal = apply_chain(rec.capacity, ctx, self.chain)
        if new_type is not None and proposal.capacity != rec.capacity:
            # The guardrails compare counts of the current type; a shaped count in the new type's
            # units would be wrong, so keep the type and size the same demand in the current one.
            rec = Recommendation(
                size_for_rate(self.target, rec.demand_rps, self.requested_type),
                rec.reason + f"; type switch to {new_type} deferred: guardrails shaped the count",
                rec.demand_rps,
                band=rec.band,
                refit=rec.refit,
                panic=rec.panic,
            )
            new_type = None
            ctx = replace(ctx, unit_price_per_hour=self.target.price_per_unit_hour(self.requested_type))
            proposal = apply_chain(rec.capacity, ctx, self.chain)
        window = self.settings.stabilisation_window_s
        self.recent.append((now, rec.capacity))
        while self.recent and now - self.recent[0][0] >= max(window, 1):
            self.recent.popleft()
        return self._record(now, proposal.capacity, rec, proposal.shaped_by, proposal.notes, new_type, missing, applied)

    def _peak_before_last_hour(self, now: int) -> int | None:
        """The largest capacity decided in the clock hours that ended at least an hour ago, within a day."""
        hour = now // 3600
        peaks = [peak for h, peak in self.hourly_peaks if hour - HOURLY_PEAK_HOURS < h <= hour - 2]
        return max(peaks) if peaks else None

    def _note_peak(self, now: int, capacity: int) -> None:
        hour = now // 3600
        if self.hourly_peaks and self.hourly_peaks[-1][0] == hour:
            self.hourly_peaks[-1][1] = max(self.hourly_peaks[-1][1], capacity)
        else:
            self.hourly_peaks.append([hour, capacity])

    def _record(
        self,
        now: int,
        capacity: int,
        rec: Recommendation,
        shaped_by: tuple[str, ...],
        notes: tuple[str, ...],
        new_type: str | None,
        missing: bool,
        applied: int,
    ) -> Decision:
        previous, previous_type = self.requested, self.requested_type
        reason = rec.reason + ("; " + "; ".join(notes) if notes else "")
        unconfirmed = self.policy.history.unconfirmed_rps
        if unconfirmed is not None:
            reason = (
                f"spike-confirmation: {unconfirmed:.3g} req/s is over {SPIKE_FACTOR:g}× the recent peak, "
                "held as missing until the next step confirms it; " + reason
            )
        elif missing:
            reason = f"metrics missing for {self.policy.history.missing_run} step(s); " + reason
        decision = Decision(
            target=self.target.name,
            decided_at=now,
            capacity=capacity,
            previous=previous,
            recommended=rec.capacity,
            policy=self.policy.name,
            reason=reason,
            instance_type=new_type,
            previous_instance_type=previous_type,
            shaped_by=shaped_by,
            demand_rps=rec.demand_rps,
            observed_rps=None if missing else self.policy.history.last,
            band=rec.band,
            data_missing=missing,
            refit=rec.refit,
            inputs={"applied": applied},
        )
        self.policy.after_decision(previous, decision.capacity, applied, now)
        self.last_decided_at = now
        self._note_peak(now, capacity)
        if decision.changed:
            self.last_change_at = now
            self.requested = capacity
            if decision.type_change:
                self.requested_type = new_type
                self.type_switch_until = now + self.target.lead_times.type_change_s
        return decision
