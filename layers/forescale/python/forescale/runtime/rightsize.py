"""The rightsize service (hourly): for each SageMaker instance-type target, price the coming day.

It proposes a type only when the saving over the next day exceeds the blue/green switch cost, with
the same pure function the predictive policy uses when it decides the switch in plan
(`forescale.domain.rightsize.rightsize_choice`). So the hourly report and the decision cannot
disagree: the report says what the planner will do at its next hourly right-size, and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forescale.adapters.state import StateStore
from forescale.domain.rightsize import RightsizeChoice, rightsize_choice
from forescale.domain.targets import TargetKind

DAY_S = 86_400


@dataclass(slots=True)
class RightsizeSummary:
    proposals: dict[str, RightsizeChoice] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # target -> why


class RightsizeService:
    def __init__(self, store: StateStore, horizon_s: int = DAY_S) -> None:
        self.store = store
        self.horizon_s = horizon_s

    def run(self, now: int) -> RightsizeSummary:
        summary = RightsizeSummary()
        for cfg in self.store.list_targets():
            if cfg.kind is not TargetKind.SAGEMAKER_INSTANCE_TYPE:
                continue
            forecast = self.store.get_forecast(cfg.name)
            if forecast is None or not forecast.covers(now):
                summary.skipped[cfg.name] = "no current forecast; right-sizing needs the coming day's demand"
                continue
            upper = max(forecast.quantiles)
            path = [
                r
                for r in (
                    forecast.rate_at(now + k * forecast.step_s, upper) for k in range(self.horizon_s // forecast.step_s)
                )
                if r is not None
            ]
            current = self.store.get_state(cfg.name).instance_type or cfg.instance_type
            target = cfg.to_target()
            if current is not None and current not in {t.name for t in target.catalog}:
                summary.skipped[cfg.name] = f"the variant runs {current}, which is not in the target's catalog"
                continue
            summary.proposals[cfg.name] = rightsize_choice(target, path, current, self.horizon_s)
        return summary
