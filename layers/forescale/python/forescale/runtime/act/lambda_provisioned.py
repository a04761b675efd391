"""Lambda provisioned concurrency on an alias or version (Put/Get/DeleteProvisionedConcurrencyConfig),
or the floor of the Application Auto Scaling target that already manages it. A new allocation is
IN_PROGRESS for a minute or two: `apply` starts it, `poll` reads it until READY or FAILED."""

from __future__ import annotations

from typing import Final

from forescale.adapters.autoscaling import AutoScalingPort, ScalableTargetRef
from forescale.adapters.lambda_capacity import LambdaCapacityPort, ProvisionedConfig
from forescale.runtime.act.base import AccountHeadroom, ActRun, Actual, Actuator, Outcome, already
from forescale.runtime.act.floor import AutoScalingFloor
from forescale.runtime.act.headroom import refuse_headroom
from forescale.runtime.models import AppliedState, DecisionRecord, DecisionStatus, InFlightOperation, TargetConfig

S = DecisionStatus
OPERATION: Final = "provisioned-concurrency"
ACTION = "put-provisioned-concurrency"


def _settled(pc: ProvisionedConfig, label: str, ready: str) -> Outcome | None:
    """The outcome of an allocation AWS has finished (READY or FAILED); None while IN_PROGRESS."""
    if pc.status == "READY":
        return Outcome(S.APPLIED, ACTION, ready, capacity=pc.allocated, confirmed=True)
    if pc.status == "FAILED":
        return Outcome(
            S.FAILED,
            ACTION,
            f"allocating {pc.requested} environments for {label} FAILED: {pc.reason or 'no reason given'}",
            capacity=pc.allocated,
            error_code="ProvisionedConcurrencyFailed",
        )
    return None


class ProvisionedConcurrency(Actuator):
    """One alias's or version's provisioned concurrency."""

    operations = frozenset({OPERATION})

    def __init__(
        self,
        lambda_capacity: LambdaCapacityPort,
        autoscaling: AutoScalingPort,
        floor: AutoScalingFloor,
        headroom: AccountHeadroom,
    ) -> None:
        self.lambda_ = lambda_capacity
        self.autoscaling = autoscaling
        self.floor = floor
        self.headroom = headroom

    def read(self, cfg: TargetConfig) -> Actual:
        assert cfg.function_name is not None and cfg.qualifier is not None  # nosec B101  # TargetConfig._check; narrows the type for mypy
        pc = self.lambda_.provisioned(cfg.function_name, cfg.qualifier)
        reserved = self.lambda_.reserved(cfg.function_name)  # provisioned may not exceed it
        return Actual(capacity=pc.in_effect if pc else 0, provisioned=pc, reserved=reserved)

    def trusted(self, state: AppliedState) -> Actual | None:
        c = state.capacity
        if c is None:
            return None
        pc = ProvisionedConfig(c, c, c, "READY") if c else None
        return Actual(capacity=c, provisioned=pc, reserved=state.function_reserved, trusted=True)

    def describe(self, cfg: TargetConfig, record: DecisionRecord) -> str:
        return (
            f"set the provisioned concurrency of {cfg.function_name}:{cfg.qualifier} "
            f"{record.previous} -> {record.capacity}"
        )

    def apply(self, cfg: TargetConfig, record: DecisionRecord, actual: Actual, run: ActRun) -> Outcome:
        fn, qualifier = cfg.function_name, cfg.qualifier
        assert fn is not None  # nosec B101  # TargetConfig._check requires function_name; narrows the type for mypy
        if not qualifier or qualifier == "$LATEST":
            return Outcome(
                S.FAILED,
                ACTION,
                f"provisioned concurrency needs an alias or a version, not {qualifier!r}",
                error_code="InvalidQualifier",
            )
        label, want, pc, reserved = f"{fn}:{qualifier}", record.capacity, actual.provisioned, actual.reserved
        if reserved is not None and want > reserved:
            return Outcome(
                S.FAILED,
                ACTION,
                f"refused: provisioned {want} on {label} would exceed the function's reserved concurrency {reserved} "
                "(AWS requires provisioned <= reserved)",
                error_code="ProvisionedOverReserved",
            )
        scalable = self.autoscaling.find(ScalableTargetRef.lambda_provisioned(fn, qualifier))
        if scalable is not None:
            return self.floor.set(cfg.name, record, scalable, want, pc.in_effect if pc else 0)
        if want == 0:
            if pc is None:
                return already(
                    record, 0, f"provisioned concurrency of {label} (no config)", "delete-provisioned-concurrency"
                )
            self.lambda_.remove_provisioned(fn, qualifier)
            if reserved is None:
                self.headroom.spend(-pc.requested)
            return Outcome(
                S.APPLIED,
                "delete-provisioned-concurrency",
                f"deleted the provisioned-concurrency config of {label} (was {pc.requested})",
                capacity=0,
                confirmed=True,
            )
        op = InFlightOperation(
            operation=OPERATION,
            decision_id=record.decision_id,
            started_at=run.now,
            capacity=want,
            details={"function": fn, "qualifier": qualifier, "decided_at": str(record.decided_at)},
        )
        if pc is not None and pc.requested == want and pc.status != "FAILED":
            if pc.status == "READY":
                return already(record, want, f"provisioned concurrency of {label}", ACTION)
            return Outcome(
                S.IN_FLIGHT,
                ACTION,
                f"AWS already has {want} IN_PROGRESS on {label} (an earlier attempt asked for it); tracking it",
                capacity=want,
                in_flight=op,
            )
        grow = want - (pc.requested if pc else 0)
        if reserved is None and grow > 0:
            refused = refuse_headroom(self.headroom, label, want, grow, run)
            if refused is not None:
                return refused
        result = self.lambda_.set_provisioned(fn, qualifier, want)
        if reserved is None:
            self.headroom.spend(grow)
        before = pc.in_effect if pc else 0
        settled = _settled(result, label, f"provisioned concurrency of {label}: {before} -> {want}, READY at once")
        if settled is not None:
            return settled
        return Outcome(
            S.IN_FLIGHT,
            ACTION,
            f"asked for provisioned concurrency {before} -> {want} on {label}; IN_PROGRESS, checked next cycle",
            capacity=want,
            in_flight=op,
        )

    def poll(self, cfg: TargetConfig, op: InFlightOperation, run: ActRun) -> Outcome:
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
        ready = f"provisioned concurrency of {label} is READY: {pc.allocated} environments (after {took} s)"
        settled = _settled(pc, label, ready)
        if settled is not None:
            return settled
        message = f"{label} still IN_PROGRESS: {pc.allocated} of {pc.requested} allocated after {took} s"
        return Outcome(S.IN_FLIGHT, op.operation, message, in_flight=op)
