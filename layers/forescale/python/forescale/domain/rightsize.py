"""Right-sizing a SageMaker variant's instance type: the cheapest type for the coming day's demand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from forescale.domain.sizing import Fleet, sagemaker_instances, type_switch_pays
from forescale.domain.targets import Target


@dataclass(frozen=True, slots=True)
class RightsizeChoice:
    """The cheapest type over a demand path, the mean $/hour of each type, and whether switching pays."""

    current: str
    best: str
    cost_per_hour: dict[str, float]
    switch: bool
    reason: str

    @property
    def saving_per_hour(self) -> float:
        return self.cost_per_hour[self.current] - self.cost_per_hour[self.best]


def rightsize_choice(
    target: Target, path_rps: Sequence[float], current_type: str | None, horizon_s: float
) -> RightsizeChoice:
    """Price the coming demand (`path_rps`, requests/s per step) on every catalog type.

    A switch is proposed only when the saving over `horizon_s` exceeds the blue/green switch cost
    (both fleets billed for the target's type-change lead time). Ties go to the name, so the answer is
    deterministic.
    """
    if not path_rps:
        raise ValueError(f"target {target.name}: an empty demand path cannot be priced")
    path = [max(r, 0.0) for r in path_rps]
    costs: dict[str, float] = {}
    for it in target.catalog:
        n = [sagemaker_instances(r, it.capacity_rps, target.min_capacity) for r in path]
        costs[it.name] = sum(n) * it.price_per_hour / len(path)
    cur = target.instance(current_type).name
    best = min(costs, key=lambda k: (costs[k], k))
    pays = type_switch_pays(
        Fleet(cur, 0, costs[cur]), Fleet(best, 0, costs[best]), horizon_s, target.lead_times.type_change_s
    )
    if pays:
        reason = (
            f"right-size: {best} ${costs[best]:.2f}/h vs {cur} ${costs[cur]:.2f}/h "
            f"over the next day pays for the blue/green switch"
        )
    elif best == cur:
        reason = f"right-size: {cur} is already the cheapest (${costs[cur]:.2f}/h)"
    else:
        reason = (
            f"right-size: {best} would save ${costs[cur] - costs[best]:.2f}/h, "
            f"less than the blue/green switch costs over the horizon; staying on {cur}"
        )
    return RightsizeChoice(cur, best, costs, pays, reason)
