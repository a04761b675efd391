"""act: applies planned capacity decisions to AWS, once each, within Lambda's rate limit.

Entry points: `apply_decisions` (a batch of DecisionMade events) and `sweep` (a schedule that finds
what an event may have missed, polls in-flight operations and reconciles drift). Both return an
`ActSummary`: counts per outcome, which the handler logs and emits as metrics.

How one decision goes (every outcome carries a human-readable reason in the decision's `outcome`):

1. A decision that is not the target's newest becomes SUPERSEDED. In dry-run mode, or while
   forescale is paused, it becomes DRY_RUN: recorded, nothing applied.
2. Claim: PENDING | DEFERRED (or APPLYING whose lease expired) → APPLYING with a lease. The claim is
   a conditional write, so a redelivered event or a second act never applies the same decision twice.
3. Reconcile: finish the target's in-flight operation if AWS has finished it, and record the capacity
   AWS actually has (this is what makes a crash between AWS accepting a change and its record safe:
   the next cycle reads the change back). While another operation is in flight the decision is DEFERRED.
4. Apply through the adapters: reserved concurrency, provisioned concurrency (or the floor of an
   existing Application Auto Scaling target), a SageMaker instance count, or a SageMaker instance-type
   switch (new EndpointConfig, autoscaling taken down, blue/green UpdateEndpoint, autoscaling put back
   when the endpoint is InService again).
5. Record: the AppliedState first (optimistic `version`, re-read and retried on a conflict), then the
   decision's status (APPLIED, IN_FLIGHT, NO_CHANGE, DEFERRED or FAILED), then `forescale.ActionApplied`
   or `forescale.ActionFailed`.

Throttling and 5xx are retried with bounded backoff inside the adapters and then DEFERRED; a busy
resource (ResourceConflictException, an Updating endpoint) is DEFERRED; a request AWS refuses
(validation, permissions) is FAILED with AWS's message. Deferred decisions are picked up by the sweep.

Leases: two sweeps that both find the same expired lease can both claim it (the store conditions on
status only). That is safe by construction: every AWS call here sets an absolute value, the type
switch's EndpointConfig name is derived from the decision id, and a second UpdateEndpoint on an
Updating endpoint is refused as busy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from forescale.adapters.autoscaling import AutoScalingPort, AutoScalingSnapshot, ScalableTarget, ScalableTargetRef
from forescale.adapters.events import EventPublisher
from forescale.adapters.lambda_capacity import LambdaCapacityPort, ProvisionedConfig
from forescale.adapters.sagemaker_capacity import (
    BlueGreenSettings,
    EndpointView,
    SageMakerCapacityPort,
    type_switch_config_name,
)
from forescale.adapters.state import ConflictError, StateStore
from forescale.domain.guardrails import LAMBDA_MIN_UNRESERVED
from forescale.domain.ratelimit import DeferredError, RejectedError
from forescale.domain.targets import TargetKind
from forescale.runtime.models import (
    ActionResultDetail,
    AppliedState,
    DecisionMadeDetail,
    DecisionRecord,
    DecisionStatus,
    InFlightOperation,
    Mode,
    TargetConfig,
)
from forescale.runtime.observability import logger
from forescale.runtime.settings import ActSettings

S = DecisionStatus
STATE_WRITE_ATTEMPTS = 5
SWEEP_DEPTH = 20  # decisions read per target by the sweep: the newest is applied, older open ones superseded
MESSAGE_MAX = 4000  # ActionResultDetail.message
ENDPOINT_BUSY = frozenset({"Updating", "SystemUpdating", "RollingBack", "Creating", "UpdateRollbackFailed"})
ENDPOINT_GONE = frozenset({"Failed", "OutOfService", "Deleting"})
RECORDED = frozenset({S.APPLIED, S.IN_FLIGHT, S.NO_CHANGE})  # outcomes that change the AppliedState
FINAL = frozenset({S.APPLIED, S.FAILED, S.NO_CHANGE, S.DRY_RUN, S.SUPERSEDED})
PUBLISHED = frozenset({S.APPLIED, S.IN_FLIGHT, S.NO_CHANGE, S.DRY_RUN, S.FAILED})


@dataclass(frozen=True, slots=True)
class ActOptions:
    """The act service's knobs (seconds)."""

    lease_s: int = 120
    blue_green: BlueGreenSettings = field(default_factory=BlueGreenSettings)
    reconcile_every_s: int = 900  # the sweep re-reads a quiet target's real capacity this often

    @staticmethod
    def from_settings(settings: ActSettings) -> ActOptions:
        alarms = tuple(a.strip() for a in settings.ROLLBACK_ALARM_NAMES.split(",") if a.strip())
        return ActOptions(lease_s=settings.LEASE_S, blue_green=BlueGreenSettings(rollback_alarms=alarms))


@dataclass
class ActSummary:
    """Counts of what one act run did: decision statuses (`applied`, `deferred`, ...) and
    `completed` (in-flight operations finished), `skipped` (already handled or claimed elsewhere),
    `missing` (no stored decision for an event), `reconciled` (state corrected from AWS),
    `errors`, `publish-errors`, `lost-claims`, `state-conflicts` (state writes re-read and retried)."""

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


@dataclass(frozen=True, slots=True)
class Actual:
    """What AWS has for a target right now."""

    capacity: int | None
    instance_type: str | None = None
    reserved: int | None = None
    provisioned: ProvisionedConfig | None = None
    endpoint: EndpointView | None = None


@dataclass
class _Run:
    """One invocation's context: its clock reading, the kill switch, caches and results."""

    now: int
    paused: bool
    pause_reason: str
    summary: ActSummary = field(default_factory=ActSummary)
    results: list[tuple[str, ActionResultDetail]] = field(default_factory=list)
    reservable: int | None = None  # Lambda concurrency still reservable in the account (read once per run)
    polled: set[str] = field(default_factory=set)


def _decided_at(op: InFlightOperation) -> int:
    raw = op.details.get("decided_at") or op.decision_id.rsplit("@", 1)[-1]
    return int(raw)


def _record_urgency(r: DecisionRecord) -> float:
    """Requests/s expected to miss capacity if `r` waits (as plan computes it for DecisionMade)."""
    if r.capacity <= r.previous or r.capacity == 0:
        return 0.0
    return r.demand_rps * (r.capacity - r.previous) / r.capacity


class ActService:
    """Applies decisions through the adapters; see the module docstring for the sequence."""

    def __init__(
        self,
        store: StateStore,
        publisher: EventPublisher,
        lambda_capacity: LambdaCapacityPort,
        sagemaker: SageMakerCapacityPort,
        autoscaling: AutoScalingPort,
        options: ActOptions | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.lambda_ = lambda_capacity
        self.sagemaker = sagemaker
        self.autoscaling = autoscaling
        self.options = options or ActOptions()
        self._run: _Run | None = None  # the current invocation's, for counts taken deep in the recording

    # ------------------------------------------------------------ entry points

    def apply_decisions(self, details: Sequence[DecisionMadeDetail], now: int) -> ActSummary:
        """Apply DecisionMade events, the largest expected spill first."""
        run = self._begin(now)
        ordered = sorted(details, key=lambda d: (-d.urgency, -(d.capacity - d.previous), d.decided_at))
        for detail in ordered:
            record = self.store.get_decision(detail.target, detail.decided_at)
            if record is None or record.decision_id != detail.decision_id:
                logger.warning("no stored decision for event", extra={"decision_id": detail.decision_id})
                run.summary.add("missing")
                continue
            self._guarded(record, run, partial(self._process, record, run))
        self._publish(run)
        return run.summary

    def sweep(self, now: int) -> ActSummary:
        """Poll in-flight operations, apply each target's newest open decision, reconcile quiet targets."""
        run = self._begin(now)
        work: list[tuple[DecisionRecord, frozenset[DecisionStatus]]] = []
        for cfg in self.store.list_targets():
            try:
                found = self._survey(cfg, run)
            except Exception as exc:  # one unreadable target must not stop the sweep of the others
                logger.warning("sweep could not survey a target", extra={"target": cfg.name, "error": repr(exc)})
                run.summary.add("errors")
                continue
            if found is not None:
                work.append(found)
        work.sort(key=lambda w: (-_record_urgency(w[0]), -(w[0].capacity - w[0].previous), w[0].decided_at))
        for record, allowed in work:
            self._guarded(record, run, partial(self._process, record, run, allowed))
        self._publish(run)
        return run.summary

    def reconcile(self, target: str, now: int) -> AppliedState:
        """Bring `target`'s AppliedState in line with AWS (finishing its in-flight operation if AWS has)."""
        run = self._begin(now)
        cfg = self.store.get_target(target)
        if cfg is None:
            raise KeyError(f"target {target} is not registered")
        state, _, _ = self._reconcile(cfg, run)
        self._publish(run)
        return state

    # ------------------------------------------------------------ one decision

    def _begin(self, now: int) -> _Run:
        paused, reason = self.store.get_paused()
        self._run = _Run(now=now, paused=paused, pause_reason=reason)
        return self._run

    def _guarded(self, record: DecisionRecord, run: _Run, work: Callable[[], None]) -> None:
        """Run one decision's work; an unexpected error defers that decision instead of the whole batch."""
        try:
            work()
        except Exception as exc:
            logger.exception("act failed on a decision", extra={"decision_id": record.decision_id})
            run.summary.add("errors")
            current = self.store.get_decision(record.target, record.decided_at)
            if current is not None and current.status is S.APPLYING:
                with suppress(ConflictError):  # someone else moved it on: nothing to undo
                    self.store.transition_decision(
                        current,
                        [S.APPLYING],
                        S.DEFERRED,
                        outcome=f"internal error, retried next cycle: {exc!r}",
                        now=run.now,
                    )

    def _claimable(self, record: DecisionRecord, now: int) -> frozenset[DecisionStatus]:
        if record.status in (S.PENDING, S.DEFERRED):
            return frozenset({record.status})
        if record.status is S.APPLYING and (record.lease_until is None or record.lease_until <= now):
            return frozenset({S.APPLYING})
        return frozenset()

    def _process(self, record: DecisionRecord, run: _Run, allowed: frozenset[DecisionStatus] | None = None) -> None:
        now = run.now
        allowed = allowed if allowed is not None else self._claimable(record, now)
        if not allowed:
            run.summary.add("skipped")  # applied already, in flight, or another act holds its lease
            return
        cfg = self.store.get_target(record.target)
        if cfg is None:
            self._close(
                record, allowed, Outcome(S.FAILED, "none", f"target {record.target} is no longer registered"), run
            )
            return
        newest = self.store.list_decisions(record.target, limit=1)
        if newest and newest[0].decided_at > record.decided_at:
            self._supersede(record, allowed, newest[0], run)
            return
        orphan = S.IN_FLIGHT in allowed
        if orphan and (run.paused or cfg.mode is Mode.DRY_RUN):
            run.summary.add("skipped")  # AWS took it already; only re-derived when act may change things
            return
        if run.paused or cfg.mode is Mode.DRY_RUN:
            why = f"forescale is paused ({run.pause_reason or 'no reason given'})" if run.paused else "dry-run mode"
            message = f"{why}: would {self._describe(cfg, record)}; nothing applied"
            self._close(record, allowed, Outcome(S.DRY_RUN, "dry-run", message), run)
            return
        try:
            claimed = self.store.transition_decision(
                record, allowed, S.APPLYING, lease_until=now + self.options.lease_s, now=now
            )
        except ConflictError as exc:
            # Another act claimed it first (a redelivered event, a sweep): that one applies it.
            logger.warning(
                "decision claimed elsewhere", extra={"decision_id": record.decision_id, "error_code": exc.code}
            )
            run.summary.add("skipped")
            run.summary.add("lost-claims")
            return
        outcome = self._apply(cfg, claimed, run)
        if outcome is not None:
            self._finish(claimed, outcome, run)

    def _apply(self, cfg: TargetConfig, record: DecisionRecord, run: _Run) -> Outcome | None:
        """Reconcile, then apply by kind; None when reconciling already finished this decision."""
        try:
            state, actual, finished = self._reconcile(cfg, run)
            if record.decision_id in finished:
                return None
            op = state.in_flight
            if op is not None:
                if op.decision_id == record.decision_id:
                    return Outcome(S.IN_FLIGHT, op.operation, f"still in flight: {self._op_label(op)}", in_flight=op)
                waited = run.now - op.started_at
                return Outcome(
                    S.DEFERRED,
                    "wait-in-flight",
                    f"waiting for the in-flight {self._op_label(op)} (decision {op.decision_id}, "
                    f"started {waited} s ago) to finish; retried next cycle",
                )
            assert actual is not None  # nosec B101  # read whenever nothing is in flight; narrows the type for mypy
            if cfg.kind is TargetKind.LAMBDA_RESERVED:
                return self._apply_reserved(cfg, record, actual, run)
            if cfg.kind is TargetKind.LAMBDA_PROVISIONED:
                return self._apply_provisioned(cfg, record, actual, run)
            return self._apply_sagemaker(cfg, record, actual, run)
        except DeferredError as exc:
            return Outcome(S.DEFERRED, exc.what, f"deferred to the next cycle: {exc}", error_code=exc.code)
        except RejectedError as exc:
            return Outcome(S.FAILED, exc.what, f"AWS refused: {exc}", error_code=exc.code)

    # ------------------------------------------------------------ recording

    def _update_state(self, name: str, change: Callable[[AppliedState], dict[str, Any] | None]) -> AppliedState:
        """Read-change-write with the optimistic lock; re-read and retry when another writer won."""
        for _ in range(STATE_WRITE_ATTEMPTS):
            current = self.store.get_state(name)
            update = change(current)
            if not update:
                return current
            try:
                return self.store.put_state(current.model_copy(update=update))
            except ConflictError as exc:
                logger.warning(
                    "applied state changed under us; re-reading", extra={"target": name, "error_code": exc.code}
                )
                if self._run is not None:
                    self._run.summary.add("state-conflicts")
                continue
        raise ConflictError(f"applied state of {name}: still conflicting after {STATE_WRITE_ATTEMPTS} attempts")

    def _state_change(
        self, decision_id: str, outcome: Outcome, now: int
    ) -> Callable[[AppliedState], dict[str, Any] | None]:
        def change(s: AppliedState) -> dict[str, Any] | None:
            update: dict[str, Any] = {}
            if outcome.status is S.IN_FLIGHT:
                update["in_flight"] = outcome.in_flight
            elif outcome.status in FINAL and s.in_flight is not None and s.in_flight.decision_id == decision_id:
                update["in_flight"] = None  # this decision's operation is over (a DEFERRED one is still owed)
            if outcome.status in RECORDED:
                if outcome.capacity is not None:
                    update["capacity"] = outcome.capacity
                if outcome.instance_type is not None:
                    update["instance_type"] = outcome.instance_type
                update |= {"last_decision_id": decision_id, "last_action": outcome.action}
            if not update:
                return None
            return update | {"updated_at": now}

        return change

    def _finish(self, record: DecisionRecord, outcome: Outcome, run: _Run) -> None:
        """Record the outcome of a claimed (APPLYING) decision: state, then status, then the event."""
        try:
            self._update_state(record.target, self._state_change(record.decision_id, outcome, run.now))
        except ConflictError as exc:
            outcome = replace(
                outcome,
                status=S.DEFERRED,
                message=f"{outcome.message}; but the applied state could not be recorded ({exc}); "
                "reconciled from AWS next cycle",
            )
        self._close(record, frozenset({S.APPLYING}), outcome, run)

    def _close(self, record: DecisionRecord, allowed: Iterable[DecisionStatus], outcome: Outcome, run: _Run) -> bool:
        """Move the decision to the outcome's status and queue its event; False if it had moved on."""
        try:
            self.store.transition_decision(record, allowed, outcome.status, outcome=outcome.message, now=run.now)
        except ConflictError as exc:
            logger.warning(
                "decision moved on before its outcome was recorded",
                extra={"id": record.decision_id, "error_code": exc.code, "error": str(exc)},
            )
            run.summary.add("lost-claims")
            return False
        run.summary.add(outcome.status.value)
        if outcome.status in (S.FAILED, S.DEFERRED):  # AWS refused or was busy: say so where operators look
            log = logger.error if outcome.status is S.FAILED else logger.warning
            log(
                f"decision {outcome.status.value}",
                extra={
                    "decision_id": record.decision_id,
                    "action": outcome.action,
                    "error_code": outcome.error_code,
                    "outcome": outcome.message[:1000],
                },
            )
        if outcome.status in PUBLISHED:
            detail_type = "forescale.ActionFailed" if outcome.status is S.FAILED else "forescale.ActionApplied"
            run.results.append(
                (
                    detail_type,
                    ActionResultDetail(
                        decision_id=record.decision_id,
                        target=record.target,
                        action=outcome.action,
                        status=outcome.status,
                        capacity=outcome.capacity if outcome.capacity is not None else record.capacity,
                        instance_type=outcome.instance_type or record.instance_type,
                        error_code=outcome.error_code,
                        message=outcome.message[:MESSAGE_MAX],
                    ),
                )
            )
        return True

    def _supersede(
        self, record: DecisionRecord, allowed: Iterable[DecisionStatus], newer: DecisionRecord, run: _Run
    ) -> None:
        message = (
            f"superseded by the newer decision {newer.decision_id} (capacity {newer.capacity}) before it was applied"
        )
        self._close(record, allowed, Outcome(S.SUPERSEDED, "none", message), run)

    def _publish(self, run: _Run) -> None:
        for detail_type in ("forescale.ActionApplied", "forescale.ActionFailed"):
            details = [d for t, d in run.results if t == detail_type]
            if not details:
                continue
            try:
                self.publisher.publish(detail_type, details)
            except Exception:
                # The outcomes are stored; the events are notifications. Do not fail the run (a retry
                # would find every decision handled and publish nothing anyway).
                logger.exception("could not publish action results", extra={"detail_type": detail_type})
                run.summary.add("publish-errors")

    # ------------------------------------------------------------ reconcile and in-flight operations

    def _reconcile(self, cfg: TargetConfig, run: _Run) -> tuple[AppliedState, Actual | None, set[str]]:
        """Finish the in-flight operation if AWS has, then record the capacity AWS really has."""
        state = self.store.get_state(cfg.name)
        finished: set[str] = set()
        if state.in_flight is not None and cfg.name not in run.polled:
            state, finished = self._poll(cfg, state, run)
        if state.in_flight is not None:
            return state, None, finished
        actual = self._read_actual(cfg)
        drifted = actual.capacity != state.capacity or (
            actual.instance_type is not None and actual.instance_type != state.instance_type
        )
        if drifted:
            before = state.capacity

            def change(s: AppliedState) -> dict[str, Any]:
                return {
                    "capacity": actual.capacity,
                    "instance_type": actual.instance_type or s.instance_type,
                    "updated_at": run.now,
                    "last_action": f"reconcile: AWS has {actual.capacity}, the state said {before}",
                }

            try:
                state = self._update_state(cfg.name, change)
                if before is not None:  # a first read is not a correction
                    run.summary.add("reconciled")
            except ConflictError as exc:
                # Only bookkeeping: `actual` is what counts for applying, and the outcome is recorded after.
                logger.warning(
                    "could not record the reconciled state", extra={"target": cfg.name, "error_code": exc.code}
                )
                run.summary.add("state-conflicts")
        return state, actual, finished

    def _read_actual(self, cfg: TargetConfig) -> Actual:
        if cfg.kind is TargetKind.LAMBDA_RESERVED:
            assert cfg.function_name is not None  # nosec B101  # TargetConfig._check requires it; narrows the type for mypy
            reserved = self.lambda_.reserved(cfg.function_name)
            return Actual(capacity=reserved or 0, reserved=reserved)
        if cfg.kind is TargetKind.LAMBDA_PROVISIONED:
            assert cfg.function_name is not None and cfg.qualifier is not None  # nosec B101  # TargetConfig._check; narrows the type for mypy
            pc = self.lambda_.provisioned(cfg.function_name, cfg.qualifier)
            return Actual(capacity=pc.in_effect if pc else 0, provisioned=pc)
        assert cfg.endpoint_name is not None and cfg.variant_name is not None  # nosec B101  # TargetConfig._check; for mypy
        ep = self.sagemaker.describe_endpoint(cfg.endpoint_name)
        variant = ep.variant(cfg.variant_name)
        instance_type = self.sagemaker.variant_instance_type(ep.config_name, cfg.variant_name)
        return Actual(capacity=variant.current_count if variant else None, instance_type=instance_type, endpoint=ep)

    def _poll(self, cfg: TargetConfig, state: AppliedState, run: _Run) -> tuple[AppliedState, set[str]]:
        """Ask AWS how the in-flight operation is doing; record it when it is over."""
        op = state.in_flight
        assert op is not None  # nosec B101  # _poll is only called with an in-flight op; narrows the type for mypy
        run.polled.add(cfg.name)
        try:
            if op.operation == "provisioned-concurrency":
                outcome = self._poll_provisioned(op, run)
            elif op.operation == "endpoint-capacity":
                outcome = self._poll_endpoint_capacity(op, run)
            else:
                outcome = self._advance_type_switch(cfg, op, run)
        except DeferredError as exc:
            outcome = Outcome(S.IN_FLIGHT, op.operation, f"could not check: {exc}", in_flight=op)
        except RejectedError as exc:
            outcome = Outcome(S.FAILED, op.operation, f"AWS refused while checking: {exc}", error_code=exc.code)
        if outcome.status is S.IN_FLIGHT:
            if outcome.in_flight != op:  # the type switch moved on a phase
                state = self._update_state(cfg.name, lambda s: {"in_flight": outcome.in_flight, "updated_at": run.now})
            return state, set()
        state = self._update_state(cfg.name, self._state_change(op.decision_id, outcome, run.now))
        run.summary.add("completed")
        record = self.store.get_decision(cfg.name, _decided_at(op))
        if record is not None:
            self._close(record, [S.IN_FLIGHT, S.APPLYING, S.DEFERRED], outcome, run)
        return state, {op.decision_id}

    def _poll_provisioned(self, op: InFlightOperation, run: _Run) -> Outcome:
        fn, qualifier = op.details["function"], op.details["qualifier"]
        label = f"{fn}:{qualifier}"
        pc = self.lambda_.provisioned(fn, qualifier)
        took = run.now - op.started_at
        if pc is None:
            return Outcome(
                S.FAILED,
                op.operation,
                f"the provisioned-concurrency config of {label} is gone (deleted outside forescale?)",
                capacity=0,
                error_code="ConfigGone",
            )
        if pc.requested != op.capacity:
            return Outcome(
                S.FAILED,
                op.operation,
                f"changed outside forescale: {label} now requests {pc.requested}, not {op.capacity}",
                capacity=pc.in_effect,
                error_code="ChangedOutside",
            )
        if pc.status == "READY":
            return Outcome(
                S.APPLIED,
                "put-provisioned-concurrency",
                f"provisioned concurrency of {label} is READY: {pc.allocated} environments (after {took} s)",
                capacity=pc.allocated,
            )
        if pc.status == "FAILED":
            return Outcome(
                S.FAILED,
                "put-provisioned-concurrency",
                f"allocating {pc.requested} environments for {label} FAILED: {pc.reason or 'no reason given'}",
                capacity=pc.allocated,
                error_code="ProvisionedConcurrencyFailed",
            )
        message = f"{label} still IN_PROGRESS: {pc.allocated} of {pc.requested} allocated after {took} s"
        return Outcome(S.IN_FLIGHT, op.operation, message, in_flight=op)

    def _poll_endpoint_capacity(self, op: InFlightOperation, run: _Run) -> Outcome:
        endpoint, variant_name = op.details["endpoint"], op.details["variant"]
        ep = self.sagemaker.describe_endpoint(endpoint)
        variant = ep.variant(variant_name)
        count = variant.current_count if variant else None
        if ep.in_service:
            if count == op.capacity:
                return Outcome(
                    S.APPLIED,
                    "update-endpoint-weights-and-capacities",
                    f"{endpoint}/{variant_name} is InService with {count} instances after {run.now - op.started_at} s",
                    capacity=count,
                    instance_type=op.instance_type,
                )
            return Outcome(
                S.FAILED,
                "update-endpoint-weights-and-capacities",
                f"{endpoint} is InService again with {count} instances of {variant_name}, not {op.capacity}",
                capacity=count,
                error_code="CapacityNotReached",
            )
        if ep.status in ENDPOINT_GONE:
            return Outcome(
                S.FAILED,
                "update-endpoint-weights-and-capacities",
                f"{endpoint} is {ep.status}: {ep.failure_reason or 'no reason given'}",
                capacity=count,
                error_code=f"Endpoint{ep.status}",
            )
        return Outcome(S.IN_FLIGHT, op.operation, f"{endpoint} is {ep.status}", in_flight=op)

    # ------------------------------------------------------------ Lambda

    def _reservable(self, run: _Run) -> int:
        if run.reservable is None:
            run.reservable = self.lambda_.account_concurrency().reservable
        return run.reservable

    def _already(self, record: DecisionRecord, capacity: int, what: str, action: str) -> Outcome:
        """AWS already has the decided capacity: APPLIED if the decision was a change, else NO_CHANGE."""
        if record.capacity != record.previous:
            return Outcome(
                S.APPLIED,
                action,
                f"already in effect: AWS reports {what} = {capacity} (an earlier attempt, or someone else, set it)",
                capacity=capacity,
            )
        return Outcome(S.NO_CHANGE, action, f"nothing to change: {what} is already {capacity}", capacity=capacity)

    def _refuse_headroom(self, label: str, want: int, grow: int, run: _Run) -> Outcome | None:
        room = self._reservable(run)
        if grow <= room:
            return None
        left = room + LAMBDA_MIN_UNRESERVED - grow
        return Outcome(
            S.FAILED,
            "headroom-check",
            f"refused: {want} for {label} (+{grow}) would leave {left} unreserved concurrency in the account; "
            f"AWS keeps at least {LAMBDA_MIN_UNRESERVED} unreserved (GetAccountSettings)",
            error_code="AccountHeadroom",
        )

    def _apply_reserved(self, cfg: TargetConfig, record: DecisionRecord, actual: Actual, run: _Run) -> Outcome:
        fn = cfg.function_name
        assert fn is not None  # nosec B101  # TargetConfig._check requires function_name; narrows the type for mypy
        want, have = record.capacity, actual.reserved
        if want == 0:
            # Reserved 0 would throttle every invocation; capacity 0 means "no reservation".
            if have is None:
                return self._already(
                    record, 0, f"reserved concurrency of {fn} (none set)", "delete-function-concurrency"
                )
            self.lambda_.remove_reserved(fn)
            if run.reservable is not None:
                run.reservable += have
            return Outcome(
                S.APPLIED,
                "delete-function-concurrency",
                f"removed the reserved concurrency of {fn} (was {have}); it draws on the unreserved pool again",
                capacity=0,
            )
        if have == want:
            return self._already(record, want, f"reserved concurrency of {fn}", "put-function-concurrency")
        grow = want - (have or 0)
        refused = self._refuse_headroom(fn, want, grow, run) if grow > 0 else None
        if refused is not None:
            return refused
        self.lambda_.set_reserved(fn, want)
        if run.reservable is not None:
            run.reservable -= grow
        return Outcome(
            S.APPLIED,
            "put-function-concurrency",
            f"reserved concurrency of {fn}: {have if have is not None else 'none'} -> {want}",
            capacity=want,
        )

    def _apply_provisioned(self, cfg: TargetConfig, record: DecisionRecord, actual: Actual, run: _Run) -> Outcome:
        fn, qualifier = cfg.function_name, cfg.qualifier
        assert fn is not None  # nosec B101  # TargetConfig._check requires function_name; narrows the type for mypy
        if not qualifier or qualifier == "$LATEST":
            return Outcome(
                S.FAILED,
                "put-provisioned-concurrency",
                f"provisioned concurrency needs an alias or a version, not {qualifier!r}",
                error_code="InvalidQualifier",
            )
        label, want, pc = f"{fn}:{qualifier}", record.capacity, actual.provisioned
        reserved = self.lambda_.reserved(fn)
        if reserved is not None and want > reserved:
            return Outcome(
                S.FAILED,
                "put-provisioned-concurrency",
                f"refused: provisioned {want} on {label} would exceed the function's reserved concurrency {reserved} "
                "(AWS requires provisioned <= reserved)",
                error_code="ProvisionedOverReserved",
            )
        scalable = self.autoscaling.find(ScalableTargetRef.lambda_provisioned(fn, qualifier))
        if scalable is not None:
            return self._set_floor(record, scalable, want, pc.in_effect if pc else 0)
        if want == 0:
            if pc is None:
                return self._already(
                    record, 0, f"provisioned concurrency of {label} (no config)", "delete-provisioned-concurrency"
                )
            self.lambda_.remove_provisioned(fn, qualifier)
            if reserved is None and run.reservable is not None:
                run.reservable += pc.requested
            return Outcome(
                S.APPLIED,
                "delete-provisioned-concurrency",
                f"deleted the provisioned-concurrency config of {label} (was {pc.requested})",
                capacity=0,
            )
        op = InFlightOperation(
            operation="provisioned-concurrency",
            decision_id=record.decision_id,
            started_at=run.now,
            capacity=want,
            details={"function": fn, "qualifier": qualifier, "decided_at": str(record.decided_at)},
        )
        if pc is not None and pc.requested == want and pc.status != "FAILED":
            if pc.status == "READY":
                return self._already(record, want, f"provisioned concurrency of {label}", "put-provisioned-concurrency")
            return Outcome(
                S.IN_FLIGHT,
                "put-provisioned-concurrency",
                f"AWS already has {want} IN_PROGRESS on {label} (an earlier attempt asked for it); tracking it",
                capacity=want,
                in_flight=op,
            )
        grow = want - (pc.requested if pc else 0)
        if reserved is None and grow > 0:
            refused = self._refuse_headroom(label, want, grow, run)
            if refused is not None:
                return refused
        result = self.lambda_.set_provisioned(fn, qualifier, want)
        if reserved is None and run.reservable is not None:
            run.reservable -= grow
        before = pc.in_effect if pc else 0
        if result.status == "READY":
            return Outcome(
                S.APPLIED,
                "put-provisioned-concurrency",
                f"provisioned concurrency of {label}: {before} -> {want}, READY at once",
                capacity=result.allocated,
            )
        if result.status == "FAILED":
            return Outcome(
                S.FAILED,
                "put-provisioned-concurrency",
                f"allocating {want} for {label} FAILED: {result.reason or 'no reason given'}",
                capacity=result.allocated,
                error_code="ProvisionedConcurrencyFailed",
            )
        return Outcome(
            S.IN_FLIGHT,
            "put-provisioned-concurrency",
            f"asked for provisioned concurrency {before} -> {want} on {label}; IN_PROGRESS, checked next cycle",
            capacity=want,
            in_flight=op,
        )

    def _set_floor(self, record: DecisionRecord, target: ScalableTarget, want: int, current: int) -> Outcome:
        """Move an existing scalable target's MinCapacity instead of fighting its policy."""
        resource = target.ref.resource_id
        if target.min_capacity == want:
            return self._already(
                record, max(current, want), f"the autoscaling floor of {resource}", "set-autoscaling-floor"
            )
        new = self.autoscaling.set_floor(target, want)
        verb = "raised" if want > target.min_capacity else "lowered"
        return Outcome(
            S.APPLIED,
            "set-autoscaling-floor",
            f"{verb} the Application Auto Scaling floor of {resource} from {target.min_capacity} to {want} "
            f"(max {new.max_capacity}); its scaling policy keeps working above the floor",
            capacity=max(current, want),
        )

    # ------------------------------------------------------------ SageMaker

    def _apply_sagemaker(self, cfg: TargetConfig, record: DecisionRecord, actual: Actual, run: _Run) -> Outcome:
        ep = actual.endpoint
        variant_name = cfg.variant_name
        assert ep is not None and variant_name is not None  # nosec B101  # TargetConfig._check + _actual; narrows the type for mypy
        want = record.capacity
        variant = ep.variant(variant_name)
        if variant is None:
            return Outcome(
                S.FAILED,
                "update-endpoint-weights-and-capacities",
                f"endpoint {ep.name} has no variant {variant_name}",
                error_code="VariantNotFound",
            )
        if want < 1:
            return Outcome(
                S.FAILED,
                "update-endpoint-weights-and-capacities",
                f"a SageMaker variant needs at least 1 instance; the decision asked for {want}",
                error_code="InvalidCapacity",
            )
        if record.instance_type and actual.instance_type and record.instance_type != actual.instance_type:
            return self._start_type_switch(cfg, record, ep, actual, run)
        scalable = self.autoscaling.find(ScalableTargetRef.sagemaker_variant(ep.name, variant_name))
        if scalable is not None:
            return self._set_floor(record, scalable, want, variant.current_count or 0)
        if not ep.in_service:
            return Outcome(
                S.DEFERRED,
                "update-endpoint-weights-and-capacities",
                f"endpoint {ep.name} is {ep.status}; instance counts change only InService; retried next cycle",
            )
        if variant.current_count == want and variant.desired_count in (None, want):
            return self._already(
                record, want, f"instances of {ep.name}/{variant_name}", "update-endpoint-weights-and-capacities"
            )
        self.sagemaker.set_instance_count(ep.name, variant_name, want)
        op = InFlightOperation(
            operation="endpoint-capacity",
            decision_id=record.decision_id,
            started_at=run.now,
            capacity=want,
            instance_type=actual.instance_type,
            details={"endpoint": ep.name, "variant": variant_name, "decided_at": str(record.decided_at)},
        )
        return Outcome(
            S.IN_FLIGHT,
            "update-endpoint-weights-and-capacities",
            f"asked for {want} instances of {ep.name}/{variant_name} (from {variant.current_count}); "
            "the endpoint is Updating, checked next cycle",
            capacity=want,
            in_flight=op,
        )

    def _start_type_switch(
        self, cfg: TargetConfig, record: DecisionRecord, ep: EndpointView, actual: Actual, run: _Run
    ) -> Outcome:
        variant_name, new_type = cfg.variant_name, record.instance_type
        assert variant_name is not None and new_type is not None  # nosec B101  # TargetConfig._check; a switch names its type
        catalog = [t.name for t in cfg.catalog]
        if catalog and new_type not in catalog:
            return Outcome(
                S.FAILED,
                "switch-instance-type",
                f"{new_type} is not in the target's catalog {catalog}",
                error_code="NotInCatalog",
            )
        if not ep.in_service:
            return Outcome(
                S.DEFERRED,
                "switch-instance-type",
                f"endpoint {ep.name} is {ep.status}; a type switch starts only InService; retried next cycle",
            )
        new_config = type_switch_config_name(ep.name, record.decision_id)
        if not self.sagemaker.config_exists(new_config):  # a retry of this decision reuses the config it made
            counts = {v.name: v.current_count for v in ep.variants if v.current_count}
            self.sagemaker.copy_config_with_type(
                ep.config_name, new_config, variant_name, new_type, counts | {variant_name: record.capacity}
            )
        scalable = self.autoscaling.find(ScalableTargetRef.sagemaker_variant(ep.name, variant_name))
        snapshot = self.autoscaling.snapshot(scalable) if scalable is not None else None
        op = InFlightOperation(
            operation="endpoint-type-switch",
            decision_id=record.decision_id,
            started_at=run.now,
            capacity=record.capacity,
            instance_type=new_type,
            details={
                "endpoint": ep.name,
                "variant": variant_name,
                "decided_at": str(record.decided_at),
                "phase": "prepared",
                "new_config": new_config,
                "old_config": ep.config_name,
                "old_type": actual.instance_type or "",
                "autoscaling": snapshot.to_json() if snapshot else "",
            },
        )
        # Write-ahead: the operation and the autoscaling snapshot are stored before anything is taken
        # down, so a crash from here on is finished (or undone) by the next cycle's poll.
        self._update_state(
            cfg.name,
            lambda s: {"in_flight": op, "updated_at": run.now, "last_action": "switch-instance-type: prepared"},
        )
        return self._advance_type_switch(cfg, op, run, ep)

    def _advance_type_switch(
        self, cfg: TargetConfig, op: InFlightOperation, run: _Run, ep: EndpointView | None = None
    ) -> Outcome:
        d = op.details
        endpoint, variant_name, new_config = d["endpoint"], d["variant"], d["new_config"]
        change = f"{endpoint}/{variant_name} {d.get('old_type') or '?'} -> {op.instance_type}"
        ep = ep or self.sagemaker.describe_endpoint(endpoint)
        phase = d.get("phase", "prepared")
        if phase == "prepared" and ep.config_name == new_config:
            phase = "updating"  # UpdateEndpoint went through before its record (a crash): carry on
            op = op.model_copy(update={"details": d | {"phase": phase}})
        if phase == "prepared":
            if not ep.in_service:
                return Outcome(
                    S.IN_FLIGHT, "switch-instance-type", f"{change}: waiting, {endpoint} is {ep.status}", in_flight=op
                )
            if run.paused:
                note = self._restore_autoscaling(op)
                return Outcome(
                    S.DRY_RUN,
                    "switch-instance-type",
                    f"{change}: cancelled before UpdateEndpoint because forescale is paused{note}",
                )
            try:
                if d.get("autoscaling"):
                    self.autoscaling.deregister(ScalableTargetRef.sagemaker_variant(endpoint, variant_name))
                self.sagemaker.update_endpoint(endpoint, new_config, self.options.blue_green)
            except DeferredError as exc:
                return Outcome(
                    S.IN_FLIGHT,
                    "switch-instance-type",
                    f"{change}: prepared ({new_config}); {exc}; continued next cycle",
                    in_flight=op,
                )
            except RejectedError as exc:
                note = self._restore_autoscaling(op)
                return Outcome(
                    S.FAILED,
                    "switch-instance-type",
                    f"{change}: AWS refused UpdateEndpoint: {exc}{note}",
                    error_code=exc.code,
                )
            alarms = ", ".join(self.options.blue_green.rollback_alarms) or "none"
            scaling = "deregistered until the endpoint is InService" if d.get("autoscaling") else "none registered"
            return Outcome(
                S.IN_FLIGHT,
                "switch-instance-type",
                f"{change}: blue/green UpdateEndpoint to {new_config} ({op.capacity} instances, ALL_AT_ONCE, "
                f"rollback alarms: {alarms}); autoscaling: {scaling}",
                in_flight=op.model_copy(update={"details": d | {"phase": "updating", "updating_since": str(run.now)}}),
            )
        if ep.status in ENDPOINT_BUSY:
            return Outcome(S.IN_FLIGHT, "switch-instance-type", f"{change}: {endpoint} is {ep.status}", in_flight=op)
        variant = ep.variant(variant_name)
        count = variant.current_count if variant else None
        try:
            note = self._restore_autoscaling(op)
        except DeferredError as exc:
            return Outcome(
                S.IN_FLIGHT,
                "switch-instance-type",
                f"{change}: re-registering autoscaling deferred: {exc}",
                in_flight=op,
            )
        if ep.in_service and ep.config_name == new_config:
            return Outcome(
                S.APPLIED,
                "switch-instance-type",
                f"{change}: done, {count} instances InService on {new_config} after {run.now - op.started_at} s{note}",
                capacity=count,
                instance_type=op.instance_type,
            )
        if ep.in_service:
            return Outcome(
                S.FAILED,
                "switch-instance-type",
                f"{change}: rolled back, {endpoint} is InService on {ep.config_name}{note}",
                capacity=count,
                instance_type=d.get("old_type") or None,
                error_code="RolledBack",
            )
        return Outcome(
            S.FAILED,
            "switch-instance-type",
            f"{change}: {endpoint} is {ep.status}: {ep.failure_reason or 'no reason given'}{note}",
            capacity=count,
            error_code=f"Endpoint{ep.status}",
        )

    def _restore_autoscaling(self, op: InFlightOperation) -> str:
        """Put the variant's scalable target back as it was; a note for the outcome. DeferredError propagates."""
        raw = op.details.get("autoscaling")
        if not raw:
            return ""
        snapshot = AutoScalingSnapshot.from_json(raw)
        try:
            self.autoscaling.restore(snapshot)
        except RejectedError as exc:
            return f"; autoscaling could NOT be re-registered ({exc}): register it again by hand"
        t = snapshot.target
        return (
            f"; autoscaling re-registered (min {t.min_capacity}, max {t.max_capacity}, "
            f"{len(snapshot.policies)} policies, {len(snapshot.scheduled_actions)} scheduled actions)"
        )

    # ------------------------------------------------------------ sweep

    def _survey(self, cfg: TargetConfig, run: _Run) -> tuple[DecisionRecord, frozenset[DecisionStatus]] | None:
        """Poll the target's in-flight operation, supersede stale decisions, and pick the one to process."""
        state = self.store.get_state(cfg.name)
        if state.in_flight is not None:
            state, _ = self._poll(cfg, state, run)
        decisions = self.store.list_decisions(cfg.name, limit=SWEEP_DEPTH)
        candidate: tuple[DecisionRecord, frozenset[DecisionStatus]] | None = None
        if decisions:
            newest = decisions[0]
            for older in decisions[1:]:
                allowed = self._claimable(older, run.now)
                if allowed:
                    self._supersede(older, allowed, newest, run)
            allowed = self._claimable(newest, run.now)
            if allowed:
                candidate = (newest, allowed)
            elif newest.status is S.IN_FLIGHT and (
                state.in_flight is None or state.in_flight.decision_id != newest.decision_id
            ):
                # IN_FLIGHT without the operation in the state (its record was lost): re-derive from AWS.
                candidate = (newest, frozenset({S.IN_FLIGHT}))
        stale = state.updated_at + self.options.reconcile_every_s <= run.now
        if candidate is None and state.in_flight is None and stale:
            self._reconcile(cfg, run)
        return candidate

    # ------------------------------------------------------------ descriptions

    @staticmethod
    def _op_label(op: InFlightOperation) -> str:
        what = {
            "provisioned-concurrency": "provisioned-concurrency allocation",
            "endpoint-capacity": "endpoint instance-count update",
            "endpoint-type-switch": "endpoint instance-type switch",
        }[op.operation]
        return f"{what} to {op.capacity}" + (f" x {op.instance_type}" if op.instance_type else "")

    @staticmethod
    def _describe(cfg: TargetConfig, record: DecisionRecord) -> str:
        change = f"{record.previous} -> {record.capacity}"
        if cfg.kind is TargetKind.LAMBDA_RESERVED:
            return f"set the reserved concurrency of {cfg.function_name} {change}"
        if cfg.kind is TargetKind.LAMBDA_PROVISIONED:
            return f"set the provisioned concurrency of {cfg.function_name}:{cfg.qualifier} {change}"
        where = f"{cfg.endpoint_name}/{cfg.variant_name}"
        if record.instance_type and record.instance_type != record.previous_instance_type:
            return f"switch {where} to {record.capacity} x {record.instance_type}"
        return f"set the instance count of {where} {change}"
