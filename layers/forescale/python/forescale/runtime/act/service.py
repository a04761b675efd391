"""act's orchestrator: applies planned capacity decisions to AWS, once each, within Lambda's rate limit.

Entry points: `apply_decisions` (a batch of DecisionMade events) and `sweep` (a schedule that picks up
what is still open, polls in-flight operations and reconciles quiet targets on a rotation). Both
return an `ActSummary`: counts per outcome, which the handler logs and emits as metrics. The AWS side
of each kind of change is an actuator (`lambda_reserved`, `lambda_provisioned`, `sagemaker_count`,
`sagemaker_type`) behind the narrow interface in `base.py`; this module owns claims, the guard,
outcomes, the open-work index, backoff and events.

How one decision goes (every outcome carries a human-readable reason in the decision's `outcome`):

1. A decision that is not the target's newest becomes SUPERSEDED, except one that was claimed by an
   invocation that stopped before recording its outcome (its lease ran out): its change may have
   reached AWS, so it is settled from what AWS has first (APPLIED "already in effect" when AWS has
   it). A newer decision waits (DEFERRED) while an older one's claim still runs. In dry-run mode, or
   while forescale is paused, a decision becomes DRY_RUN: recorded, nothing applied.
2. Claim: PENDING | DEFERRED (or APPLYING whose lease expired) → APPLYING with a lease. The claim is
   a conditional write, so a redelivered event or a second act never applies the same decision twice.
3. Reconcile: finish the target's in-flight operation if AWS has finished it. What AWS has is read
   back unless the AppliedState holds a capacity that forescale set and AWS confirmed (and nothing
   failed since): a PENDING claim trusts it (and clears the mark until its own outcome is recorded);
   a DEFERRED or re-claimed one (a crash, an expired lease, a lost state write) reads AWS.
   While another operation is in flight the decision is DEFERRED.
4. Apply through the target's actuator.
5. Record: the AppliedState first (optimistic `version`, re-read and retried on a conflict), then the
   decision's status (APPLIED, IN_FLIGHT, NO_CHANGE, DEFERRED or FAILED), then `forescale.ActionApplied`
   or `forescale.ActionFailed`.

Throttling and 5xx are retried with bounded backoff inside the adapters and then DEFERRED; a busy
resource is DEFERRED; a request AWS refuses (validation, permissions) is FAILED with AWS's message.
A refusal starts a backoff for the target (3 min, doubling, at most an hour): its next decisions are
DEFERRED without calling AWS until then, one ERROR names the target, operation and code, and a
retry that is refused again logs one WARNING.

Open work: every decision act is handed, and every operation in flight or change deferred, has a note
in the open-work index (`StateStore.mark_open_work`) until it is final. The sweep works from that
index (largest expected spill first) instead of querying every target, and reconciles a bounded
number of quiet targets per run on a rotation by name. An invocation that runs out of time leaves
what it did not reach in the index; nothing is lost.

Leases: two sweeps that both find the same expired lease can both claim it (the store conditions on
status only). That is safe by construction: every AWS call here sets an absolute value, the type
switch's EndpointConfig name is derived from the decision id, and a second UpdateEndpoint on an
Updating endpoint is refused as busy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import cache, partial
from typing import Any

from forescale.adapters.autoscaling import AutoScalingPort
from forescale.adapters.events import EventPublisher
from forescale.adapters.lambda_capacity import LambdaCapacityPort
from forescale.adapters.sagemaker_capacity import BlueGreenSettings, SageMakerCapacityPort
from forescale.adapters.state import ConflictError, OpenWork, StateStore
from forescale.domain.ratelimit import DeferredError, RejectedError
from forescale.domain.targets import TargetKind
from forescale.runtime.act.base import (
    AccountHeadroom,
    ActRun,
    ActSummary,
    Actual,
    Actuator,
    Outcome,
    StateChange,
    decided_at,
    op_label,
)
from forescale.runtime.act.floor import AutoScalingFloor
from forescale.runtime.act.lambda_provisioned import ProvisionedConcurrency
from forescale.runtime.act.lambda_reserved import ReservedConcurrency
from forescale.runtime.act.sagemaker_count import InstanceCount
from forescale.runtime.act.sagemaker_type import TypeSwitch
from forescale.runtime.models import (
    CLOCK_SKEW_S,
    ActBackoff,
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
NEWEST_DEPTH = 3  # a decision's target's newest decisions read with it: is a newer one there?
SWEEP_DEPTH = 20  # decisions read per open target by the sweep: the newest is applied, older open ones superseded
MESSAGE_MAX = 4000  # ActionResultDetail.message


def _dated_in_future(record: DecisionRecord, now: int) -> bool:
    """Decided later than `now` plus the clock skew events may have: forged or corrupt, never acted on."""
    return record.decided_at > now + CLOCK_SKEW_S


_FUTURE_DATED = (
    "the decision is dated in the future (more than the clock skew allowed): not applied, and it supersedes nothing"
)
RECORDED = frozenset({S.APPLIED, S.IN_FLIGHT, S.NO_CHANGE})  # outcomes that change the AppliedState
FINAL = frozenset({S.APPLIED, S.FAILED, S.NO_CHANGE, S.DRY_RUN, S.SUPERSEDED})
PUBLISHED = frozenset({S.APPLIED, S.IN_FLIGHT, S.NO_CHANGE, S.DRY_RUN, S.FAILED})
# Refusals about the size of the change: a smaller ask may go through, so only as large or larger
# asks are held. Any other refusal (permissions, a missing resource) holds every decision of the target.
SIZE_REFUSALS = frozenset(
    {"AccountHeadroom", "ProvisionedOverReserved", "InvalidParameterValueException", "InvalidCapacity"}
)
Work = tuple[DecisionRecord, frozenset[DecisionStatus], float]  # a decision to process, its claim, its urgency


@dataclass(frozen=True, slots=True)
class ActOptions:
    """The act service's knobs (seconds, counts)."""

    lease_s: int = 120
    blue_green: BlueGreenSettings = field(default_factory=BlueGreenSettings)
    reconcile_every_s: int = 900  # a quiet target's real capacity is re-read at most this often
    rotation_per_sweep: int = 100  # quiet targets a sweep looks at, next in name order after the last
    reconcile_reads_per_sweep: int = 30  # of those, at most this many re-read from AWS per sweep
    poll_after_s: int = 60  # an allocation is not polled sooner (AWS takes a minute or two)
    sweep_slack_s: int = 15  # a sweep takes notes due up to this much later (the next sweep is a minute off)
    account_settings_max_age_s: int = 60  # GetAccountSettings is read at most this often
    backoff_first_s: int = 180  # a refused change waits this long before its first retry, then doubles
    backoff_max_s: int = 3600
    stop_with_s_left: float = 10.0  # an invocation starts no new decision with less time left than this

    @staticmethod
    def from_settings(settings: ActSettings) -> ActOptions:
        alarms = tuple(a.strip() for a in settings.ROLLBACK_ALARM_NAMES.split(",") if a.strip())
        return ActOptions(lease_s=settings.LEASE_S, blue_green=BlueGreenSettings(rollback_alarms=alarms))


def _urgency(r: DecisionRecord) -> float:
    """Requests/s expected to miss capacity if `r` waits (as plan computes it for DecisionMade)."""
    if r.capacity <= r.previous or r.capacity == 0:
        return 0.0
    return r.demand_rps * (r.capacity - r.previous) / r.capacity


def _claimed(r: DecisionRecord, now: int) -> bool:
    """Claimed by an act invocation whose lease still runs."""
    return r.status is S.APPLYING and r.lease_until is not None and r.lease_until > now


def _out_of_time(time_left_s: Callable[[], float] | None, margin_s: float) -> bool:
    return time_left_s is not None and time_left_s() < margin_s


class ActService:
    """Applies decisions through the actuators; see the module docstring for the sequence."""

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
        self.headroom = AccountHeadroom(lambda_capacity.account_concurrency, self.options.account_settings_max_age_s)
        self.floor = AutoScalingFloor(autoscaling, store)
        self.type_switch = TypeSwitch(sagemaker, autoscaling, self.options.blue_green, self._update_state)
        self.actuators: dict[TargetKind, Actuator] = {
            TargetKind.LAMBDA_RESERVED: ReservedConcurrency(lambda_capacity, self.headroom),
            TargetKind.LAMBDA_PROVISIONED: ProvisionedConcurrency(
                lambda_capacity, autoscaling, self.floor, self.headroom
            ),
        }
        endpoint = InstanceCount(sagemaker, autoscaling, self.floor, self.type_switch)
        self.actuators[TargetKind.SAGEMAKER_INSTANCE_COUNT] = endpoint
        self.actuators[TargetKind.SAGEMAKER_INSTANCE_TYPE] = endpoint
        self._run: ActRun | None = None  # the current invocation's, for counts taken deep in the recording

    # ------------------------------------------------------------ entry points

    def apply_decisions(
        self, details: Sequence[DecisionMadeDetail], now: int, time_left_s: Callable[[], float] | None = None
    ) -> ActSummary:
        """Apply DecisionMade events, the largest expected spill first; what does not fit in the time
        left (`time_left_s`, seconds) stays in the open-work index for the next sweep."""
        run = self._begin(now)
        ordered = sorted(details, key=lambda d: (-d.urgency, -(d.capacity - d.previous), d.decided_at))
        # Write-ahead (one BatchWriteItem per 25): a crash or a timeout from here on leaves each one findable.
        self.store.write_open_work({d.target: OpenWork(d.target, d.decided_at, d.urgency, now) for d in ordered})
        self._load_configs([d.target for d in ordered], run)
        for i, detail in enumerate(ordered):
            if _out_of_time(time_left_s, self.options.stop_with_s_left):
                run.summary.add("left-queued", len(ordered) - i)
                break
            # The target's newest decisions, read once: they hold this one (usually the newest) and
            # say whether a newer one supersedes it.
            newest = self.store.list_decisions(detail.target, limit=NEWEST_DEPTH)
            record = next((d for d in newest if d.decided_at == detail.decided_at), None)
            if record is None:
                record = self.store.get_decision(detail.target, detail.decided_at)
            if record is None or record.decision_id != detail.decision_id:
                logger.warning("no stored decision for event", extra={"decision_id": detail.decision_id})
                run.summary.add("missing")
                run.notes[detail.target] = None
                continue
            self._guarded(record, run, partial(self._process, record, run, None, newest))
        self._end(run)
        return run.summary

    def sweep(self, now: int, time_left_s: Callable[[], float] | None = None) -> ActSummary:
        """Work through the open-work index (polls, deferred and left-over decisions), give back the
        user's autoscaling bounds where forescale no longer manages them, and reconcile the next quiet
        targets of the rotation."""
        run = self._begin(now)
        every_note = self.store.list_open_work()
        # Due by the next sweep's start (decisions land seconds after the minute, sweeps on it): a poll
        # due 5 s from now is not put off a whole minute.
        due_by = now + self.options.sweep_slack_s
        # A target with open work is looked at through its note when the note is due, not by the
        # rotation: an operation in flight is polled on its schedule, not whenever its turn comes.
        seen = {w.target for w in every_note if w.due_at > due_by}
        notes = [w for w in every_note if w.due_at <= due_by]
        notes.sort(key=lambda w: (-w.urgency, w.due_at, w.target))
        self._load_configs([n.target for n in notes], run)
        # Changes still owed first (largest expected spill first), then polls of operations in flight
        # (noted with urgency 0): when the limiter's time is short, applying beats confirming.
        owed = [n for n in notes if n.urgency > 0]
        self._apply_work(run, self._survey_notes(run, owed, seen, time_left_s), time_left_s)
        rest = [n for n in notes if n.urgency <= 0]
        work = self._survey_notes(run, rest, seen, time_left_s)
        self.floor.give_back(run.paused)
        self._rotate(run, seen, work, time_left_s)
        self._apply_work(run, work, time_left_s)
        self._end(run)
        return run.summary

    def _survey_notes(
        self, run: ActRun, notes: list[OpenWork], seen: set[str], time_left_s: Callable[[], float] | None
    ) -> list[Work]:
        work: list[Work] = []
        for note in notes:
            if _out_of_time(time_left_s, self.options.stop_with_s_left):
                run.summary.add("left-queued")
                continue
            seen.add(note.target)
            self._start_unit(run)
            work.extend(self._survey_safely(note.target, run, note))
        return work

    def _apply_work(self, run: ActRun, work: list[Work], time_left_s: Callable[[], float] | None) -> None:
        work.sort(key=lambda w: (-w[2], -(w[0].capacity - w[0].previous), w[0].decided_at))
        for record, allowed, urgency in work:
            if _out_of_time(time_left_s, self.options.stop_with_s_left):
                run.summary.add("left-queued")
                run.notes[record.target] = OpenWork(record.target, record.decided_at, urgency, run.now)
                continue
            self._guarded(record, run, partial(self._process, record, run, allowed))

    def reconcile(self, target: str, now: int) -> AppliedState:
        """Bring `target`'s AppliedState in line with AWS (finishing its in-flight operation if AWS has)."""
        run = self._begin(now)
        cfg = self.store.get_target(target)
        if cfg is None:
            raise KeyError(f"target {target} is not registered")
        state, _, _ = self._reconcile(cfg, run, trust=False)
        self._end(run)
        return state

    # ------------------------------------------------------------ one decision

    def _begin(self, now: int) -> ActRun:
        paused, reason = self.store.get_paused()
        self._run = ActRun(now=now, paused=paused, pause_reason=reason)
        return self._run

    def _actuator(self, cfg: TargetConfig) -> Actuator:
        return self.actuators[cfg.kind]

    def _load_configs(self, names: Sequence[str], run: ActRun) -> None:
        """Read the configs of `names` into the run (BatchGetItem); an absent one is remembered as None."""
        wanted = [n for n in dict.fromkeys(names) if n not in run.configs]
        if not wanted:
            return
        found = self.store.get_targets(wanted)
        run.configs |= {n: found.get(n) for n in wanted}

    def _config(self, name: str, run: ActRun) -> TargetConfig | None:
        if name not in run.configs:
            run.configs[name] = self.store.get_target(name)
        return run.configs[name]

    @staticmethod
    def _start_unit(run: ActRun) -> None:
        """A new unit of work (a decision, a survey) starts from fresh reads of the AppliedState."""
        run.states.clear()

    def _state(self, name: str) -> AppliedState:
        """The target's AppliedState as this unit last read or wrote it (read from the store the first time)."""
        run = self._run
        cached = run.states.get(name) if run is not None else None
        if cached is not None:
            return cached
        state = self.store.get_state(name)
        if run is not None:
            run.states[name] = state
        return state

    def _guarded(self, record: DecisionRecord, run: ActRun, work: Callable[[], None]) -> None:
        """Run one decision's work; an unexpected error defers that decision instead of the whole batch."""
        self._start_unit(run)
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

    def _process(
        self,
        record: DecisionRecord,
        run: ActRun,
        allowed: frozenset[DecisionStatus] | None = None,
        newest_known: list[DecisionRecord] | None = None,
    ) -> None:
        now = run.now
        allowed = allowed if allowed is not None else self._claimable(record, now)
        if not allowed:
            run.summary.add("skipped")  # applied already, in flight, or another act holds its lease
            return
        cfg = self._config(record.target, run)
        if cfg is None:
            self._close(
                record, allowed, Outcome(S.FAILED, "none", f"target {record.target} is no longer registered"), run
            )
            return
        if _dated_in_future(record, now):
            # Dated in the future (a forged or corrupt record): acting on it would also let it supersede
            # every real decision until that date.
            self._close(record, allowed, Outcome(S.FAILED, "none", _FUTURE_DATED), run)
            return
        if newest_known is None:
            newest_known = self.store.list_decisions(record.target, limit=NEWEST_DEPTH)
        newest = [d for d in newest_known if not _dated_in_future(d, now)]
        # A claim whose invocation stopped before recording an outcome (its lease ran out) may have
        # reached AWS: it is settled from what AWS has, not superseded as if it had never been sent.
        settling = allowed == {S.APPLYING}
        newer = newest[0] if newest and newest[0].decided_at > record.decided_at else None
        if newer is not None and not settling:
            self._supersede(record, allowed, newer, run)
            return
        orphan = S.IN_FLIGHT in allowed
        if orphan and (run.paused or cfg.mode is Mode.DRY_RUN):
            run.summary.add("skipped")  # AWS took it already; only re-derived when act may change things
            return
        if run.paused or cfg.mode is Mode.DRY_RUN:
            why = f"forescale is paused ({run.pause_reason or 'no reason given'})" if run.paused else "dry-run mode"
            message = f"{why}: would {self._actuator(cfg).describe(cfg, record)}; nothing applied"
            self._close(record, allowed, Outcome(S.DRY_RUN, "dry-run", message), run)
            return
        held = next((d for d in newest if d.decided_at < record.decided_at and _claimed(d, now)), None)
        if held is not None and not settling:
            # Its change may be on its way to AWS: this one waits, so that the two never race and the
            # older one is settled (and audited) from what AWS has once its lease runs out.
            message = (
                f"waiting for the older decision {held.decision_id}, claimed by another act invocation until "
                f"{held.lease_until}; retried when that one is recorded or its lease runs out"
            )
            # Looked at again after a poll's interval (the claim is usually recorded within seconds), at
            # the latest when the lease runs out.
            retry_at = min(held.lease_until or now, now + self.options.poll_after_s)
            self._close(record, allowed, Outcome(S.DEFERRED, "wait-claimed", message, retry_at=retry_at), run)
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
        # A fresh claim may trust what forescale set and AWS confirmed; a deferred, re-claimed or
        # re-derived one (a crash after AWS accepted, a lost state write) reads AWS back.
        trust = allowed == {S.PENDING}
        outcome = self._apply(cfg, claimed, run, trust)
        if outcome is not None:
            self._finish(claimed, outcome, run)
        if newer is not None and newer.status in (S.PENDING, S.DEFERRED):
            run.notes[record.target] = OpenWork(record.target, newer.decided_at, _urgency(newer), now)

    def _apply(self, cfg: TargetConfig, record: DecisionRecord, run: ActRun, trust: bool) -> Outcome | None:
        """Reconcile, then apply through the actuator; None when reconciling already finished this decision."""
        try:
            held = self._held(cfg.name, record, run)
            if held is not None:
                return held
            state, actual, finished = self._reconcile(cfg, run, trust)
            if record.decision_id in finished:
                return None
            op = state.in_flight
            if op is not None:
                if op.decision_id == record.decision_id:
                    return Outcome(S.IN_FLIGHT, op.operation, f"still in flight: {op_label(op)}", in_flight=op)
                waited = run.now - op.started_at
                return Outcome(
                    S.DEFERRED,
                    "wait-in-flight",
                    f"waiting for the in-flight {op_label(op)} (decision {op.decision_id}, "
                    f"started {waited} s ago) to finish; retried next cycle",
                )
            assert actual is not None  # nosec B101  # read whenever nothing is in flight; narrows the type for mypy
            if actual.trusted:
                # Trust is spent by use: until this change's outcome is recorded (and confirmed), the
                # next claim reads AWS back, so a change whose record was lost is never sent twice.
                self._update_state(cfg.name, lambda s: {"confirmed_at": 0} if s.confirmed_at else None)
            return self._actuator(cfg).apply(cfg, record, actual, run)
        except DeferredError as exc:
            return Outcome(S.DEFERRED, exc.what, f"deferred to the next cycle: {exc}", error_code=exc.code)
        except RejectedError as exc:
            return Outcome(S.FAILED, exc.what, f"AWS refused: {exc}", error_code=exc.code)

    def _held(self, name: str, record: DecisionRecord, run: ActRun) -> Outcome | None:
        """A DEFERRED outcome while the target backs off after a refusal (no AWS call); None otherwise."""
        backoff = self._state(name).backoff
        if backoff is None or backoff.until <= run.now:
            return None
        if backoff.error_code in SIZE_REFUSALS and record.capacity < backoff.capacity:
            return None  # a smaller ask than the one refused: it may fit
        run.summary.add("backing-off")
        return Outcome(
            S.DEFERRED,
            "backoff",
            f"held: AWS refused {backoff.operation} for {name} with {backoff.error_code} "
            f"{backoff.failures} time(s) since {backoff.since}; next attempt at {backoff.until}",
            error_code=backoff.error_code,
        )

    # ------------------------------------------------------------ recording

    def _update_state(self, name: str, change: StateChange) -> AppliedState:
        """Read-change-write with the optimistic lock; re-read and retry when another writer won."""
        run = self._run
        for _ in range(STATE_WRITE_ATTEMPTS):
            current = self._state(name)
            update = change(current)
            if not update:
                return current
            try:
                new = self.store.put_state(current.model_copy(update=update))
            except ConflictError as exc:
                logger.warning(
                    "applied state changed under us; re-reading", extra={"target": name, "error_code": exc.code}
                )
                if run is not None:
                    run.summary.add("state-conflicts")
                    run.states.pop(name, None)
                continue
            if run is not None:
                run.states[name] = new
            return new
        raise ConflictError(f"applied state of {name}: still conflicting after {STATE_WRITE_ATTEMPTS} attempts")

    def _backoff_after(self, s: AppliedState, outcome: Outcome, asked: int, now: int) -> ActBackoff:
        """The backoff after a refusal: doubled for the same error class, started over for a new one."""
        prev = s.backoff
        operation = outcome.action.split(" ", 1)[0]  # the API name: the adapters append the resource and value
        same = prev is not None and (prev.operation, prev.error_code) == (operation, outcome.error_code)
        failures = prev.failures + 1 if prev is not None and same else 1
        delay = min(self.options.backoff_first_s * 2 ** (failures - 1), self.options.backoff_max_s)
        return ActBackoff(
            operation=operation,
            error_code=outcome.error_code or "Unknown",
            failures=failures,
            since=prev.since if prev is not None and same else now,
            until=now + delay,
            capacity=asked,
            message=outcome.message[:500],
        )

    def _state_change(self, decision_id: str, outcome: Outcome, now: int, asked: int = 0) -> StateChange:
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
                if s.backoff is not None:
                    update["backoff"] = None  # AWS took a change: whatever it refused before is behind us
                if outcome.confirmed:
                    update["confirmed_at"] = now
            elif outcome.status is S.FAILED and outcome.action != "backoff":
                update |= {"backoff": self._backoff_after(s, outcome, asked, now), "confirmed_at": 0}
                if outcome.capacity is not None:
                    update["capacity"] = outcome.capacity
            elif outcome.status is S.DEFERRED and outcome.action != "backoff" and s.confirmed_at:
                update["confirmed_at"] = 0  # something did not go through: read AWS back next time
            if not update:
                return None
            return update | {"updated_at": now}

        return change

    def _finish(self, record: DecisionRecord, outcome: Outcome, run: ActRun) -> None:
        """Record the outcome of a claimed (APPLYING) decision: state, then status, then the event."""
        try:
            change = self._state_change(record.decision_id, outcome, run.now, record.capacity)
            state = self._update_state(record.target, change)
        except ConflictError as exc:
            state = None
            outcome = replace(
                outcome,
                status=S.DEFERRED,
                message=f"{outcome.message}; but the applied state could not be recorded ({exc}); "
                "reconciled from AWS next cycle",
            )
        self._close(record, frozenset({S.APPLYING}), outcome, run, state)

    def _close(
        self,
        record: DecisionRecord,
        allowed: Iterable[DecisionStatus],
        outcome: Outcome,
        run: ActRun,
        state: AppliedState | None = None,
    ) -> DecisionRecord | None:
        """Move the decision to the outcome's status, keep the open-work index and queue its event;
        the decision as closed, or None if it had moved on."""
        try:
            closed = self.store.transition_decision(
                record, allowed, outcome.status, outcome=outcome.message, now=run.now
            )
        except ConflictError as exc:
            logger.warning(
                "decision moved on before its outcome was recorded",
                extra={"id": record.decision_id, "error_code": exc.code, "error": str(exc)},
            )
            run.summary.add("lost-claims")
            return None
        run.summary.add(outcome.status.value)
        self._note_open_work(record, outcome, run, state)
        self._log_outcome(record, outcome, state)
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
        return closed

    def _note_open_work(
        self, record: DecisionRecord, outcome: Outcome, run: ActRun, state: AppliedState | None
    ) -> None:
        """Keep the open-work index: a note while the decision is owed or its operation runs, none after."""
        urgency = _urgency(record)
        if outcome.status is S.IN_FLIGHT:
            due, urgency = run.now + self._first_poll_after_s(outcome.in_flight), 0.0  # after the changes owed
        elif outcome.status is S.DEFERRED:
            backoff = state.backoff if state is not None else None
            op = state.in_flight if state is not None else None
            if backoff is not None and backoff.until > run.now:
                due = backoff.until
            elif outcome.retry_at is not None:
                due = outcome.retry_at
            elif outcome.action == "wait-in-flight" and op is not None:
                # Nothing to do before the operation it waits for is worth polling again.
                due = max(op.started_at + self._first_poll_after_s(op), run.now + self.options.poll_after_s)
            else:
                due = run.now
        elif outcome.status is S.SUPERSEDED:
            return  # the newer decision that superseded it has the target's note
        else:
            run.notes[record.target] = None
            return
        run.notes[record.target] = OpenWork(record.target, record.decided_at, urgency, due)

    @staticmethod
    def _log_outcome(record: DecisionRecord, outcome: Outcome, state: AppliedState | None) -> None:
        """Say a refusal once: an ERROR for the first of its class, then a WARNING per retry refused
        again; a decision held by the backoff is not logged (the summary counts it)."""
        if outcome.status not in (S.FAILED, S.DEFERRED) or outcome.action == "backoff":
            return
        backoff = state.backoff if state is not None else None
        repeat = outcome.status is S.FAILED and backoff is not None and backoff.failures > 1
        log = logger.error if outcome.status is S.FAILED and not repeat else logger.warning
        message = f"decision {outcome.status.value}"
        if repeat:
            message = "refused again; backing off"
        extra: dict[str, Any] = {
            "decision_id": record.decision_id,
            "target": record.target,
            "action": outcome.action,
            "error_code": outcome.error_code,
            "outcome": outcome.message[:1000],
        }
        if outcome.status is S.FAILED and backoff is not None:
            extra |= {"backoff_failures": backoff.failures, "backoff_until": backoff.until}
        log(message, extra=extra)

    def _supersede(
        self, record: DecisionRecord, allowed: Iterable[DecisionStatus], newer: DecisionRecord, run: ActRun
    ) -> None:
        message = (
            f"superseded by the newer decision {newer.decision_id} (capacity {newer.capacity}) before it was applied"
        )
        self._close(record, allowed, Outcome(S.SUPERSEDED, "none", message), run)

    def _end(self, run: ActRun) -> None:
        """Publish the outcomes, then write the open-work notes the invocation changed (one BatchWriteItem
        per 25). A failed write raises: the batch is retried and finds its decisions final."""
        self._publish(run)
        if run.notes:
            notes, run.notes = run.notes, {}
            self.store.write_open_work(notes)

    def _publish(self, run: ActRun) -> None:
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

    def _reconcile(self, cfg: TargetConfig, run: ActRun, trust: bool) -> tuple[AppliedState, Actual | None, set[str]]:
        """Finish the in-flight operation if AWS has, then what AWS has: the confirmed state when
        `trust` allows it, otherwise read back (and recorded when it differs)."""
        state = self._state(cfg.name)
        finished: set[str] = set()
        if state.in_flight is not None and cfg.name not in run.polled:
            state, finished = self._poll(cfg, state, run)
        if state.in_flight is not None:
            return state, None, finished
        actuator = self._actuator(cfg)
        if trust and state.confirmed_at > 0:
            trusted = actuator.trusted(state)
            if trusted is not None:
                return state, trusted, finished
        actual = actuator.read(cfg) if state.capacity is not None else self._read_first(cfg, actuator)
        drifted = actual.capacity != state.capacity or (
            actual.instance_type is not None and actual.instance_type != state.instance_type
        )
        before = state.capacity

        def change(s: AppliedState) -> dict[str, Any]:
            update: dict[str, Any] = {
                "capacity": actual.capacity,
                "instance_type": actual.instance_type or s.instance_type,
                "confirmed_at": run.now,
                "function_reserved": actual.reserved if cfg.kind is TargetKind.LAMBDA_PROVISIONED else None,
            }
            if drifted:
                update |= {
                    "updated_at": run.now,
                    "last_action": f"reconcile: AWS has {actual.capacity}, the state said {before}",
                }
            return update

        try:
            state = self._update_state(cfg.name, change)
            if drifted and before is not None:  # a first read is not a correction
                run.summary.add("reconciled")
        except ConflictError as exc:
            # Only bookkeeping: `actual` is what counts for applying, and the outcome is recorded after.
            logger.warning("could not record the reconciled state", extra={"target": cfg.name, "error_code": exc.code})
            run.summary.add("state-conflicts")
        return state, actual, finished

    @staticmethod
    def _read_first(cfg: TargetConfig, actuator: Actuator) -> Actual:
        """A target's first read from AWS (nothing recorded yet): once in its life, not per change."""
        return actuator.read(cfg)

    def _poll(
        self,
        cfg: TargetConfig,
        state: AppliedState,
        run: ActRun,
        newest: Callable[[], list[DecisionRecord]] | None = None,
    ) -> tuple[AppliedState, set[str]]:
        """Ask AWS how the in-flight operation is doing; record it when it is over. `newest`: reads the
        target's newest decisions once (the sweep needs them next); when the operation is over its
        decision is taken from them and replaced there by its closed copy."""
        op = state.in_flight
        assert op is not None  # nosec B101  # _poll is only called with an in-flight op; narrows the type for mypy
        run.polled.add(cfg.name)
        try:
            outcome = self._poll_op(cfg, op, run)
        except DeferredError as exc:
            outcome = Outcome(S.IN_FLIGHT, op.operation, f"could not check: {exc}", in_flight=op)
        except RejectedError as exc:
            # AWS accepted the change already; only reading it back was refused. Calling it FAILED would
            # leave the audit saying FAILED while AWS has the capacity: keep it in flight and look again.
            logger.warning(
                "AWS refused checking a change it had accepted; checking again later",
                extra={
                    "target": cfg.name,
                    "decision_id": op.decision_id,
                    "action": op.operation,
                    "error_code": exc.code,
                },
            )
            run.summary.add("errors")
            outcome = Outcome(S.IN_FLIGHT, op.operation, f"AWS refused while checking: {exc}", in_flight=op)
        if outcome.status is S.IN_FLIGHT:
            if outcome.in_flight != op:  # the type switch moved on a phase
                state = self._update_state(cfg.name, lambda s: {"in_flight": outcome.in_flight, "updated_at": run.now})
            due = run.now + self.options.poll_after_s if op.operation != "endpoint-type-switch" else run.now
            run.notes[cfg.name] = OpenWork(cfg.name, decided_at(op), 0.0, due)
            return state, set()
        state = self._update_state(cfg.name, self._state_change(op.decision_id, outcome, run.now, op.capacity))
        run.summary.add("completed")
        at = decided_at(op)
        known = newest() if newest is not None else None
        record = next((d for d in known or () if d.decided_at == at), None) or self.store.get_decision(cfg.name, at)
        if record is not None:
            closed = self._close(record, [S.IN_FLIGHT, S.APPLYING, S.DEFERRED], outcome, run, state)
            if closed is not None and known is not None:
                known[:] = [closed if d.decided_at == at else d for d in known]
        return state, {op.decision_id}

    def _owner(self, op: InFlightOperation) -> Actuator | None:
        """The actuator that started `op` (None for the type switch's phases, or an unknown operation)."""
        return next((a for a in self.actuators.values() if op.operation in a.operations), None)

    def _first_poll_after_s(self, op: InFlightOperation | None) -> int:
        owner = self._owner(op) if op is not None else None
        if owner is not None and owner.first_poll_after_s is not None:
            return owner.first_poll_after_s
        return self.options.poll_after_s

    def _poll_op(self, cfg: TargetConfig, op: InFlightOperation, run: ActRun) -> Outcome:
        if op.operation in TypeSwitch.operations:
            return self.type_switch.advance(cfg, op, run)
        owner = self._owner(op)
        if owner is None:
            raise RejectedError(op.operation, "UnknownOperation", f"act does not know how to poll {op.operation}")
        return owner.poll(cfg, op, run)

    # ------------------------------------------------------------ sweep

    def _survey_safely(self, name: str, run: ActRun, note: OpenWork | None, reconcile: bool = True) -> list[Work]:
        try:
            cfg = self._config(name, run)
            if cfg is None:
                return self._orphaned(name, run, note)
            return self._survey(cfg, run, note, reconcile)
        except Exception as exc:  # one unreadable target must not stop the sweep of the others
            logger.warning("sweep could not survey a target", extra={"target": name, "error": repr(exc)})
            run.summary.add("errors")
            return []

    def _orphaned(self, name: str, run: ActRun, note: OpenWork | None) -> list[Work]:
        """Open work of a target that is no longer registered: its open decisions fail with that reason."""
        work: list[Work] = []
        for record in self.store.list_decisions(name, limit=SWEEP_DEPTH):
            allowed = self._claimable(record, run.now)
            if allowed:
                work.append((record, allowed, _urgency(record)))
        if not work and note is not None:
            run.notes.setdefault(name, None)
        return work

    def _survey(self, cfg: TargetConfig, run: ActRun, note: OpenWork | None, reconcile: bool) -> list[Work]:
        """Poll the target's in-flight operation, supersede stale decisions, pick the one to process, and
        (when `reconcile`) re-read a quiet target whose capacity was not confirmed for a while."""
        state = self._state(cfg.name)
        # One Query, when needed: not for an operation still running.
        target_decisions = cache(partial(self.store.list_decisions, cfg.name, limit=SWEEP_DEPTH))

        if state.in_flight is not None and cfg.name not in run.polled:
            state, _ = self._poll(cfg, state, run, target_decisions)
        if state.in_flight is not None:
            # Nothing is applied while an operation is in flight (a newer decision would be deferred):
            # the survey that sees it finish supersedes and picks, and the poll's note brings that survey.
            return []
        decisions = target_decisions()
        for future in [d for d in decisions if _dated_in_future(d, run.now)]:
            allowed = self._claimable(future, run.now)
            if allowed:
                self._close(future, allowed, Outcome(S.FAILED, "none", _FUTURE_DATED), run)
        decisions = [d for d in decisions if not _dated_in_future(d, run.now)]
        candidate: Work | None = None
        if decisions:
            newest = decisions[0]
            for older in decisions[1:]:
                allowed = self._claimable(older, run.now)
                if allowed == {S.APPLYING} and candidate is None:
                    candidate = (older, allowed, _urgency(older))  # settled first: see `_process`
                elif allowed:
                    self._supersede(older, allowed, newest, run)
            allowed = self._claimable(newest, run.now) if candidate is None else frozenset()
            if allowed:
                candidate = (newest, allowed, max(note.urgency if note is not None else 0.0, _urgency(newest)))
            elif (
                candidate is None
                and newest.status is S.IN_FLIGHT
                and (state.in_flight is None or state.in_flight.decision_id != newest.decision_id)
            ):
                # IN_FLIGHT without the operation in the state (its record was lost): re-derive from AWS.
                candidate = (newest, frozenset({S.IN_FLIGHT}), _urgency(newest))
        if candidate is None and state.in_flight is None:
            if note is not None:
                run.notes.setdefault(cfg.name, None)  # unless this survey noted something newer
            stale = state.confirmed_at + self.options.reconcile_every_s <= run.now
            if reconcile and stale:
                self._reconcile_quiet(cfg, run)
        return [candidate] if candidate is not None else []

    def _reconcile_quiet(self, cfg: TargetConfig, run: ActRun) -> None:
        """Re-read a quiet target's capacity from AWS (the rotation bounds how many a sweep reads)."""
        self._reconcile(cfg, run, trust=False)

    def _rotate(self, run: ActRun, seen: set[str], work: list[Work], time_left_s: Callable[[], float] | None) -> None:
        """Look at the next quiet targets in name order (`rotation_per_sweep`), re-reading at most
        `reconcile_reads_per_sweep` of them from AWS: every target is looked at in turn, none every
        minute, and a decision whose event was lost is found on its target's turn."""
        after = self.store.get_rotation()
        page = self.store.list_targets_after(after, self.options.rotation_per_sweep)
        run.configs |= {cfg.name: cfg for cfg in page if cfg.name not in run.configs}
        reads = 0
        last = after
        stopped = False
        for cfg in page:
            if _out_of_time(time_left_s, self.options.stop_with_s_left):
                stopped = True
                break
            last = cfg.name
            if cfg.name in seen:
                continue
            seen.add(cfg.name)
            self._start_unit(run)
            state = self._state(cfg.name)
            stale = state.confirmed_at + self.options.reconcile_every_s <= run.now
            can_read = reads < self.options.reconcile_reads_per_sweep
            if stale and can_read and state.in_flight is None:
                reads += 1
            work.extend(self._survey_safely(cfg.name, run, None, reconcile=stale and can_read))
        end_of_names = len(page) < self.options.rotation_per_sweep and not stopped
        self.store.set_rotation("" if end_of_names else last)
