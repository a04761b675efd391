"""What every actuator shares: the narrow interface the orchestrator drives (read what AWS has, apply a
decision, poll an operation), the outcome an actuator returns, and one invocation's context.

An actuator never writes state or decisions and never publishes: it talks to AWS through its adapters
and answers with an `Outcome`. The orchestrator (`service.py`) owns claims, the guard, recording and
events, so that every actuator gets the same idempotency and audit trail.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forescale.adapters.lambda_capacity import AccountConcurrency, ProvisionedConfig
from forescale.adapters.sagemaker_capacity import EndpointView
from forescale.adapters.state import OpenWork
from forescale.runtime.models import (
    ActionResultDetail,
    AppliedState,
    DecisionRecord,
    DecisionStatus,
    InFlightOperation,
    TargetConfig,
)

S = DecisionStatus
StateChange = Callable[[AppliedState], dict[str, Any] | None]
StateWriter = Callable[[str, StateChange], AppliedState]  # read-change-write of a target's AppliedState


@dataclass
class ActSummary:
    """Counts of what one act run did: decision statuses (`applied`, `deferred`, ...) and
    `completed` (in-flight operations finished), `skipped` (already handled or claimed elsewhere),
    `missing` (no stored decision for an event), `reconciled` (state corrected from AWS),
    `errors`, `publish-errors`, `lost-claims`, `state-conflicts` (state writes re-read and retried),
    `backing-off` (decisions held while a refused change waits), `left-queued` (decisions left in the
    open-work index for the next invocation when this one ran out of time)."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def __getitem__(self, key: str) -> int:
        return self.counts.get(key, 0)

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying (or polling) came to. `capacity`/`instance_type` None: the state keeps its value."""

    status: DecisionStatus
    action: str
    message: str
    capacity: int | None = None
    instance_type: str | None = None
    in_flight: InFlightOperation | None = None
    error_code: str | None = None
    confirmed: bool = False  # AWS itself reported `capacity` (a read or a synchronous answer)
    retry_at: int | None = None  # a DEFERRED outcome: not worth retrying before (epoch s)


@dataclass(frozen=True, slots=True)
class Actual:
    """What AWS has for a target right now, or what forescale set and AWS confirmed (`trusted`)."""

    capacity: int | None
    instance_type: str | None = None
    reserved: int | None = None
    provisioned: ProvisionedConfig | None = None
    endpoint: EndpointView | None = None
    trusted: bool = False  # taken from the AppliedState, not read from AWS this time


@dataclass
class ActRun:
    """One invocation's context: its clock reading, the kill switch, caches and results."""

    now: int
    paused: bool
    pause_reason: str
    summary: ActSummary = field(default_factory=ActSummary)
    results: list[tuple[str, ActionResultDetail]] = field(default_factory=list)
    polled: set[str] = field(default_factory=set)
    # Read once per invocation, like the kill switch: a batch's configs in one BatchGetItem.
    configs: dict[str, TargetConfig | None] = field(default_factory=dict)
    # Each target's AppliedState as this unit of work (one decision, one survey) last read or wrote it:
    # writes are conditional on its version, so a stale copy costs a conflict and a re-read, never a
    # lost update; cleared when the next unit starts so no decision starts from another's reading.
    states: dict[str, AppliedState] = field(default_factory=dict)
    # The open-work notes this invocation changes (None: removed), written together when it ends. A
    # note written late (or lost with a crash) costs an early or an extra look, never a decision: the
    # write-ahead note of every decision handed to act is written before any is processed.
    notes: dict[str, OpenWork | None] = field(default_factory=dict)


class AccountHeadroom:
    """Lambda's GetAccountSettings, read once and then spent locally as act reserves and provisions.

    Kept by the service across warm invocations for `max_age_s` (act runs alone: reserved concurrency 1),
    so a minute of changes costs one call, not one per change."""

    def __init__(self, read: Callable[[], AccountConcurrency], max_age_s: int = 60) -> None:
        self._read = read
        self.max_age_s = max_age_s
        self._reservable: int | None = None
        self._read_at = 0

    def reservable(self, now: int) -> int:
        if self._reservable is None or now - self._read_at >= self.max_age_s:
            self._reservable = self._read().reservable
            self._read_at = now
        return self._reservable

    def spend(self, executions: int) -> None:
        """`executions` more reserved or provisioned (negative: freed); no-op before the first read."""
        if self._reservable is not None:
            self._reservable -= executions

    def forget(self) -> None:
        """AWS refused on headroom: the next check reads the account again."""
        self._reservable = None


class Actuator(ABC):
    """One kind of capacity change, KEDA-scaler style: read, apply, poll. Raises DeferredError /
    RejectedError from the adapters; the orchestrator turns them into outcomes."""

    operations: frozenset[str] = frozenset()  # the in-flight operations this actuator polls
    # When the sweep first looks at an operation this actuator started (None: the service's
    # `poll_after_s`); a newer decision for the target polls it at once whatever this says.
    first_poll_after_s: int | None = None

    @abstractmethod
    def read(self, cfg: TargetConfig) -> Actual:
        """What AWS has for the target now."""

    def trusted(self, state: AppliedState) -> Actual | None:
        """What forescale set and AWS confirmed, as an Actual, when no read is needed (None: read)."""
        return None

    @abstractmethod
    def apply(self, cfg: TargetConfig, record: DecisionRecord, actual: Actual, run: ActRun) -> Outcome:
        """Make AWS have the decided capacity (or start doing so: an IN_FLIGHT outcome)."""

    def poll(self, cfg: TargetConfig, op: InFlightOperation, run: ActRun) -> Outcome:
        """How the in-flight `op` is doing (IN_FLIGHT while AWS is still at it)."""
        raise NotImplementedError(f"{type(self).__name__} starts no in-flight operation ({op.operation})")

    @abstractmethod
    def describe(self, cfg: TargetConfig, record: DecisionRecord) -> str:
        """What applying `record` would do, for dry-run outcomes."""


def already(record: DecisionRecord, capacity: int, what: str, action: str) -> Outcome:
    """AWS already has the decided capacity: APPLIED if the decision was a change, else NO_CHANGE."""
    if record.capacity != record.previous:
        return Outcome(
            S.APPLIED,
            action,
            f"already in effect: AWS reports {what} = {capacity} (an earlier attempt, or someone else, set it)",
            capacity=capacity,
        )
    return Outcome(S.NO_CHANGE, action, f"nothing to change: {what} is already {capacity}", capacity=capacity)


def op_label(op: InFlightOperation) -> str:
    what = {
        "provisioned-concurrency": "provisioned-concurrency allocation",
        "endpoint-capacity": "endpoint instance-count update",
        "endpoint-type-switch": "endpoint instance-type switch",
    }[op.operation]
    return f"{what} to {op.capacity}" + (f" x {op.instance_type}" if op.instance_type else "")


def decided_at(op: InFlightOperation) -> int:
    raw = op.details.get("decided_at") or op.decision_id.rsplit("@", 1)[-1]
    return int(raw)
