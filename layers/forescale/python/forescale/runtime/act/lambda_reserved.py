"""Lambda reserved concurrency (PutFunctionConcurrency / DeleteFunctionConcurrency): synchronous, so
an accepted call is the change confirmed. Capacity 0 means "no reservation" (reserved 0 would throttle
every invocation)."""

from __future__ import annotations

from forescale.adapters.lambda_capacity import LambdaCapacityPort
from forescale.runtime.act.base import AccountHeadroom, ActRun, Actual, Actuator, Outcome, already
from forescale.runtime.act.headroom import refuse_headroom
from forescale.runtime.models import AppliedState, DecisionRecord, DecisionStatus, TargetConfig

S = DecisionStatus


class ReservedConcurrency(Actuator):
    """One function's reserved concurrency."""

    def __init__(self, lambda_capacity: LambdaCapacityPort, headroom: AccountHeadroom) -> None:
        self.lambda_ = lambda_capacity
        self.headroom = headroom

    def read(self, cfg: TargetConfig) -> Actual:
        assert cfg.function_name is not None  # nosec B101  # TargetConfig._check requires it; narrows the type for mypy
        reserved = self.lambda_.reserved(cfg.function_name)
        return Actual(capacity=reserved or 0, reserved=reserved)

    def trusted(self, state: AppliedState) -> Actual | None:
        if state.capacity is None:
            return None
        return Actual(capacity=state.capacity, reserved=state.capacity or None, trusted=True)

    def describe(self, cfg: TargetConfig, record: DecisionRecord) -> str:
        return f"set the reserved concurrency of {cfg.function_name} {record.previous} -> {record.capacity}"

    def apply(self, cfg: TargetConfig, record: DecisionRecord, actual: Actual, run: ActRun) -> Outcome:
        fn = cfg.function_name
        assert fn is not None  # nosec B101  # TargetConfig._check requires function_name; narrows the type for mypy
        want, have = record.capacity, actual.reserved
        if want == 0:
            if have is None:
                return already(record, 0, f"reserved concurrency of {fn} (none set)", "delete-function-concurrency")
            self.lambda_.remove_reserved(fn)
            self.headroom.spend(-have)
            return Outcome(
                S.APPLIED,
                "delete-function-concurrency",
                f"removed the reserved concurrency of {fn} (was {have}); it draws on the unreserved pool again",
                capacity=0,
                confirmed=True,
            )
        if have == want:
            return already(record, want, f"reserved concurrency of {fn}", "put-function-concurrency")
        grow = want - (have or 0)
        refused = refuse_headroom(self.headroom, fn, want, grow, run) if grow > 0 else None
        if refused is not None:
            return refused
        self.lambda_.set_reserved(fn, want)
        self.headroom.spend(grow)
        return Outcome(
            S.APPLIED,
            "put-function-concurrency",
            f"reserved concurrency of {fn}: {have if have is not None else 'none'} -> {want}",
            capacity=want,
            confirmed=True,
        )
