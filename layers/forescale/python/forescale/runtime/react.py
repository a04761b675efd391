"""The react service: scale out at once when an alarm fires or demand beats the forecast's upper band.

Like Knative's panic mode, it does not wait for the next planning step. It goes through the target's
planner (so the guardrails, the audit trail and the stabilisation window all see it), never lowers
capacity, and asks the forecaster to refit the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from forescale.adapters.events import EventPublisher
from forescale.adapters.state import ConflictError, StateStore
from forescale.domain import snapshot
from forescale.domain.planner import StepInput
from forescale.runtime.models import DecisionMadeDetail, DemandAboveForecastDetail, TargetConfig
from forescale.runtime.plan import decision_made, decision_record, restore_planner

MAX_TARGET_NAME = 128  # TargetName's length limit
ALARM_TARGET_SEPARATOR = "--"  # alarm name: <prefix><target>[--<anything>]; a target name may contain it


@dataclass(slots=True)
class ReactSummary:
    scaled_out: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # not forescale's, not ALARM, or an unknown target


def alarm_target_candidates(alarm_name: str, prefix: str) -> list[str]:
    """The target names an alarm `<prefix><target>[--<suffix>]` may belong to, longest first.

    Target names may contain the separator themselves (`api--canary`), so the alarm
    `forescale-api--canary--spillover` may be `api--canary`'s or `api`'s: the caller takes the first
    candidate that is registered, so the most specific target wins. [] if the alarm is not ours.
    """
    if not alarm_name.startswith(prefix):
        return []
    parts = alarm_name[len(prefix) :].split(ALARM_TARGET_SEPARATOR)
    names = (ALARM_TARGET_SEPARATOR.join(parts[:n]) for n in range(len(parts), 0, -1))
    return [n for n in names if 0 < len(n) <= MAX_TARGET_NAME]  # longer ones cannot be registered


class ReactService:
    def __init__(
        self, store: StateStore, publisher: EventPublisher, alarm_prefix: str = "forescale-", warmup_s: int = 86_400
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.alarm_prefix = alarm_prefix
        self.warmup_s = warmup_s

    def on_alarm(self, alarm_name: str, state: str, at: int, reason: str = "") -> ReactSummary:
        summary = ReactSummary()
        candidates = alarm_target_candidates(alarm_name, self.alarm_prefix) if state == "ALARM" else []
        # A few reads at most (one per separator in the name), however many targets are registered.
        name = next((n for n in candidates if self.store.get_target(n) is not None), None)
        if name is None:
            summary.ignored.append(alarm_name)
            return summary
        made = self._react(name, at, None, f"alarm {alarm_name} is in ALARM ({reason[:200]})", summary)
        if made:
            self.publisher.publish("forescale.DecisionMade", [made])
        return summary

    def on_demand_above(self, details: Sequence[DemandAboveForecastDetail]) -> ReactSummary:
        summary = ReactSummary()
        made: list[DecisionMadeDetail] = []
        for d in details:
            why = f"demand {d.observed_rps:.3g} req/s beat the forecast's upper band {d.upper_rps:.3g} req/s"
            # The observed minute has ended: react at its end, the earliest moment the data existed.
            detail = self._react(d.target, d.timestamp + 60, d.observed_rps, why, summary)
            if detail:
                made.append(detail)
        if made:
            self.publisher.publish("forescale.DecisionMade", made)
        return summary

    def _react(
        self, name: str, at: int, rate: float | None, why: str, summary: ReactSummary
    ) -> DecisionMadeDetail | None:
        cfg = self.store.get_target(name)
        if cfg is None:
            summary.ignored.append(name)
            return None
        # A reaction shares no key with the step decision of the same minute (those sit on the minute).
        at = at + 1 if at % 60 == 0 else at
        for _ in range(3):  # plan may be storing this target's planner right now: re-read and retry
            try:
                return self._react_once(cfg, at, rate, why, summary)
            except ConflictError:
                continue
        raise ConflictError(f"react for {name}: the planner state kept changing; the event will be retried")

    def _react_once(
        self, cfg: TargetConfig, at: int, rate: float | None, why: str, summary: ReactSummary
    ) -> DecisionMadeDetail | None:
        planner, version, observed_until, _ = restore_planner(self.store, cfg, at - at % 60, self.warmup_s)
        state = self.store.get_state(cfg.name)
        decision = planner.react(StepInput(now=at, applied=state.capacity), rate, why)
        self.store.request_refit(cfg.name, at)
        record = decision_record(cfg, decision, self.store.get_forecast(cfg.name), "react")
        if decision.changed:
            self.store.put_decision(record)
        self.store.put_planner(cfg.name, snapshot.dump(planner), observed_until, version)
        if not decision.changed:
            summary.unchanged.append(cfg.name)
            return None
        summary.scaled_out.append(cfg.name)
        return decision_made(cfg, record, decision)
