"""act: applies planned capacity decisions to AWS. The orchestrator is `service.ActService`; one
actuator per kind of change sits behind `base.Actuator` (read what AWS has, apply, poll)."""

from forescale.runtime.act.base import AccountHeadroom, ActRun, ActSummary, Actual, Actuator, Outcome
from forescale.runtime.act.service import ActOptions, ActService

__all__ = ["AccountHeadroom", "ActOptions", "ActRun", "ActService", "ActSummary", "Actual", "Actuator", "Outcome"]
