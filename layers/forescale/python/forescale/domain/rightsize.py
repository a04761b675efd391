"""Right-sizing a SageMaker variant's instance type: the cheapest type for the coming day's demand.

Two pure steps, used alike by the hourly rightsize report and by the predictive policy's decision:
- `rightsize_choice` prices the demand path on every catalog type and says whether the best one saves
  more than `margin` × the blue/green switch cost over the horizon;
- `gate_type_switch` adds the hysteresis the planner needs on top: a proposal must hold on
  `confirmations` consecutive evaluations, and no switch comes within `dwell_s` of the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from forescale.domain.sizing import sagemaker_instances
from forescale.domain.targets import Target

# A day-ahead saving is a forecast; the switch cost (both fleets billed through the blue/green change)
# is certain. Asking the forecast saving to pay for the switch twice over keeps switches that are
# within the forecast's own error (a few tenths of a percent of the fleet's price) from happening.
DEFAULT_SWITCH_MARGIN = 2.0
# After a switch, the next one waits this long: long enough that an hourly re-evaluation on a refitted
# forecast cannot undo it, short enough to follow a real change in demand within the day.
DEFAULT_SWITCH_DWELL_S = 6 * 3600
# A proposal must hold on this many consecutive (hourly) evaluations: one forecast blip is not enough.
DEFAULT_SWITCH_CONFIRMATIONS = 2


@dataclass(frozen=True, slots=True)
class RightsizeChoice:
    """The cheapest type over a demand path, the mean $/hour of each type, and whether switching pays."""

    current: str
    best: str
    cost_per_hour: dict[str, float]
    switch: bool
    reason: str
    saving_usd: float = 0.0  # over the horizon, staying on `current` minus moving to `best`
    switch_cost_usd: float = 0.0  # the new fleet billed through the blue/green switch

    @property
    def saving_per_hour(self) -> float:
        return self.cost_per_hour[self.current] - self.cost_per_hour[self.best]


def _span(seconds: float) -> str:
    """A duration for a reason: '40 min', '6 h', '1.5 h'."""
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f}".removesuffix(".0") + " h"


def rightsize_choice(
    target: Target,
    path_rps: Sequence[float],
    current_type: str | None,
    horizon_s: float,
    margin: float = DEFAULT_SWITCH_MARGIN,
) -> RightsizeChoice:
    """Price the coming demand (`path_rps`, requests/s per step) on every catalog type.

    A switch is proposed only when the saving over `horizon_s` exceeds `margin` × the blue/green
    switch cost (the new fleet billed for the target's type-change lead time; with `margin` 1 this is
    `sizing.type_switch_pays`). Ties go to the name, so the answer is deterministic.
    """
    if not path_rps:
        raise ValueError(f"target {target.name}: an empty demand path cannot be priced")
    if not margin >= 1:
        raise ValueError(f"the switch margin must be >= 1 (a saving at least the switch cost), got {margin}")
    path = [max(r, 0.0) for r in path_rps]
    costs: dict[str, float] = {}
    for it in target.catalog:
        n = [sagemaker_instances(r, it.capacity_rps, target.min_capacity) for r in path]
        costs[it.name] = sum(n) * it.price_per_hour / len(path)
    cur = target.instance(current_type).name
    best = min(costs, key=lambda k: (costs[k], k))
    over = _span(horizon_s)
    saving = (costs[cur] - costs[best]) * horizon_s / 3600
    switch_cost = costs[best] * target.lead_times.type_change_s / 3600
    pays = best != cur and saving > margin * switch_cost
    times = "" if margin == 1 else f"{margin:g}× "
    if pays:
        reason = (
            f"right-size: {best} ${costs[best]:.2f}/h vs {cur} ${costs[cur]:.2f}/h saves ${saving:.2f} "
            f"over {over}, more than {times}the blue/green switch cost ${switch_cost:.2f}"
        )
    elif best == cur:
        reason = f"right-size: {cur} is already the cheapest (${costs[cur]:.2f}/h)"
    else:
        reason = (
            f"right-size: {best} would save ${costs[cur] - costs[best]:.2f}/h, ${saving:.2f} over {over}, "
            f"not more than {times}the blue/green switch cost ${switch_cost:.2f}; staying on {cur}"
        )
    return RightsizeChoice(cur, best, costs, pays, reason, saving, switch_cost)


@dataclass(frozen=True, slots=True)
class TypeSwitchRule:
    """Hysteresis on instance-type switches (see the module's defaults for why these values)."""

    dwell_s: int = DEFAULT_SWITCH_DWELL_S
    confirmations: int = DEFAULT_SWITCH_CONFIRMATIONS

    def __post_init__(self) -> None:
        if self.dwell_s < 0:
            raise ValueError(f"the type-switch dwell must be >= 0 s, got {self.dwell_s}")
        if self.confirmations < 1:
            raise ValueError(f"type-switch confirmations must be >= 1, got {self.confirmations}")


@dataclass(frozen=True, slots=True)
class TypeSwitchGate:
    """The verdict on one right-size evaluation, and the streak to carry to the next one."""

    switch: bool
    candidate: str | None  # the type the current streak of paying proposals agrees on
    streak: int  # how many consecutive evaluations proposed `candidate`
    reason: str  # empty when there is nothing to say (the current type is already the cheapest)


def gate_type_switch(
    choice: RightsizeChoice,
    now: int,
    last_switch_at: int | None,
    candidate: str | None,
    streak: int,
    rule: TypeSwitchRule,
) -> TypeSwitchGate:
    """Switch only when `choice` pays, has paid for the same type on `rule.confirmations` consecutive
    evaluations (this one included), and the last switch was at least `rule.dwell_s` ago.

    `candidate` and `streak` are what the previous evaluation returned; `last_switch_at` is when the
    type last changed (None: never). A held switch keeps its streak, so it goes ahead at the first
    evaluation after the dwell if it still pays; one evaluation that does not pay resets the streak.
    A switch keeps it too: if the planner defers the switch, the next evaluation need not start over.
    The caller resets the streak when the type does change.
    """
    if not choice.switch:
        return TypeSwitchGate(False, None, 0, "" if choice.best == choice.current else choice.reason)
    streak = streak + 1 if candidate == choice.best else 1
    held = f"type switch to {choice.best} held"
    if streak < rule.confirmations:
        return TypeSwitchGate(
            False,
            choice.best,
            streak,
            f"{choice.reason}; {held}: {streak} of {rule.confirmations} consecutive evaluations agree",
        )
    if last_switch_at is not None and now - last_switch_at < rule.dwell_s:
        return TypeSwitchGate(
            False,
            choice.best,
            streak,
            f"{choice.reason}; {held}: last switch {_span(now - last_switch_at)} ago, dwell {_span(rule.dwell_s)}",
        )
    confirmed = f" ({streak} consecutive evaluations agree)" if rule.confirmations > 1 else ""
    return TypeSwitchGate(True, choice.best, streak, choice.reason + confirmed)
