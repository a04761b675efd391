"""Lambda concurrency: reserved concurrency, provisioned concurrency on an alias or version, and the
account's concurrency settings.

Every call passes a `CallGate` (the account-wide 15 calls/s limiter, bounded retries, and the
throttled/busy/refused classification in `forescale.domain.ratelimit`). `aws_error_facts` is the one
place that reads botocore's exceptions; the SageMaker and Application Auto Scaling adapters use it too.

AWS rules this adapter relies on (Lambda API reference):
- PutProvisionedConcurrencyConfig needs an alias or a published version; never `$LATEST`.
- Provisioned concurrency may not exceed the function's reserved concurrency when that is set.
- At least 100 concurrency stays unreserved in the account (GetAccountSettings reports what is left).
- A new provisioned config is IN_PROGRESS for a minute or two, then READY or FAILED (StatusReason).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    HTTPClientError,
    ParamValidationError,
    ReadTimeoutError,
)

from forescale.adapters.scripted import ScriptedFailures
from forescale.domain.guardrails import LAMBDA_MIN_UNRESERVED
from forescale.domain.ratelimit import CallGate, ErrorFacts, RejectedError

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

ProvisionedStatus = Literal["IN_PROGRESS", "READY", "FAILED"]


def aws_error_facts(exc: BaseException) -> ErrorFacts | None:
    """botocore's ClientError (and network failures) as ErrorFacts; None for anything else."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return ErrorFacts(
            code=str(error.get("Code", "Unknown")), message=str(error.get("Message", "")), http_status=status
        )
    if isinstance(exc, ReadTimeoutError | ConnectionClosedError):  # sent; the answer was lost
        return ErrorFacts(code="NoResponse", message=str(exc), http_status=None)
    if isinstance(exc, ConnectionError | HTTPClientError):
        return ErrorFacts(code="NetworkError", message=str(exc), http_status=None)
    if isinstance(exc, ParamValidationError):  # botocore refused to send it: AWS would refuse it too
        return ErrorFacts(code="ParamValidationError", message=str(exc), http_status=None)
    return None


@dataclass(frozen=True, slots=True)
class AccountConcurrency:
    """GetAccountSettings: the account's concurrency limit and what is not reserved (executions)."""

    limit: int
    unreserved: int
    min_unreserved: int = LAMBDA_MIN_UNRESERVED

    @property
    def reservable(self) -> int:
        """How much more concurrency may be reserved or provisioned before AWS refuses."""
        return max(0, self.unreserved - self.min_unreserved)


@dataclass(frozen=True, slots=True)
class ProvisionedConfig:
    """A provisioned-concurrency config as GetProvisionedConcurrencyConfig reports it (environments)."""

    requested: int
    allocated: int = 0
    available: int = 0
    status: ProvisionedStatus = "IN_PROGRESS"
    reason: str = ""

    @property
    def in_effect(self) -> int:
        """What the config stands for: the request, unless its allocation failed."""
        return self.allocated if self.status == "FAILED" else self.requested


class LambdaCapacityPort(ABC):
    """What act needs from Lambda. Raises DeferredError / RejectedError when a call does not go through."""

    @abstractmethod
    def account_concurrency(self) -> AccountConcurrency: ...

    @abstractmethod
    def reserved(self, function: str) -> int | None:
        """The function's reserved concurrency, None when it has none."""

    @abstractmethod
    def set_reserved(self, function: str, executions: int) -> None: ...

    @abstractmethod
    def remove_reserved(self, function: str) -> None: ...

    @abstractmethod
    def provisioned(self, function: str, qualifier: str) -> ProvisionedConfig | None:
        """The config on `function:qualifier`, None when there is none."""

    @abstractmethod
    def set_provisioned(self, function: str, qualifier: str, executions: int) -> ProvisionedConfig: ...

    @abstractmethod
    def remove_provisioned(self, function: str, qualifier: str) -> None:
        """Delete the config; no error if there is none."""


def _check_qualifier(what: str, qualifier: str) -> None:
    if not qualifier or qualifier == "$LATEST":
        raise RejectedError(
            what, "InvalidQualifier", f"provisioned concurrency needs an alias or a version, got {qualifier!r}"
        )


class LambdaCapacity(LambdaCapacityPort):
    """The real adapter on a boto3 Lambda client.

    Build the client with botocore's own retries off (`Config(retries={"total_max_attempts": 1})`):
    the gate retries, and every attempt must take a token from the account-wide limiter.
    """

    def __init__(self, client: LambdaClient, gate: CallGate) -> None:
        self._lambda = client
        self.gate = gate

    def account_concurrency(self) -> AccountConcurrency:
        resp = self.gate.call("GetAccountSettings", self._lambda.get_account_settings)
        limits = resp.get("AccountLimit", {})
        return AccountConcurrency(
            limit=int(limits.get("ConcurrentExecutions", 0)),
            unreserved=int(limits.get("UnreservedConcurrentExecutions", 0)),
        )

    def reserved(self, function: str) -> int | None:
        resp = self.gate.call(
            f"GetFunctionConcurrency {function}", lambda: self._lambda.get_function_concurrency(FunctionName=function)
        )
        value = resp.get("ReservedConcurrentExecutions")
        return None if value is None else int(value)

    def set_reserved(self, function: str, executions: int) -> None:
        self.gate.call(
            f"PutFunctionConcurrency {function}={executions}",
            lambda: self._lambda.put_function_concurrency(
                FunctionName=function, ReservedConcurrentExecutions=executions
            ),
            applies_change=True,
        )

    def remove_reserved(self, function: str) -> None:
        self.gate.call(
            f"DeleteFunctionConcurrency {function}",
            lambda: self._lambda.delete_function_concurrency(FunctionName=function),
            applies_change=True,
        )

    def provisioned(self, function: str, qualifier: str) -> ProvisionedConfig | None:
        what = f"GetProvisionedConcurrencyConfig {function}:{qualifier}"
        _check_qualifier(what, qualifier)

        def read() -> ProvisionedConfig | None:
            try:
                resp = self._lambda.get_provisioned_concurrency_config(FunctionName=function, Qualifier=qualifier)
            except self._lambda.exceptions.ProvisionedConcurrencyConfigNotFoundException:
                return None
            return ProvisionedConfig(
                requested=int(resp.get("RequestedProvisionedConcurrentExecutions", 0)),
                allocated=int(resp.get("AllocatedProvisionedConcurrentExecutions", 0)),
                available=int(resp.get("AvailableProvisionedConcurrentExecutions", 0)),
                status=resp.get("Status", "IN_PROGRESS"),
                reason=resp.get("StatusReason", ""),
            )

        return self.gate.call(what, read)

    def set_provisioned(self, function: str, qualifier: str, executions: int) -> ProvisionedConfig:
        what = f"PutProvisionedConcurrencyConfig {function}:{qualifier}={executions}"
        _check_qualifier(what, qualifier)
        if executions < 1:
            raise RejectedError(what, "InvalidParameterValue", "provisioned concurrency must be >= 1; delete it for 0")
        resp = self.gate.call(
            what,
            lambda: self._lambda.put_provisioned_concurrency_config(
                FunctionName=function, Qualifier=qualifier, ProvisionedConcurrentExecutions=executions
            ),
            applies_change=True,
        )
        return ProvisionedConfig(
            requested=int(resp.get("RequestedProvisionedConcurrentExecutions", executions)),
            allocated=int(resp.get("AllocatedProvisionedConcurrentExecutions", 0)),
            available=int(resp.get("AvailableProvisionedConcurrentExecutions", 0)),
            status=resp.get("Status", "IN_PROGRESS"),
            reason=resp.get("StatusReason", ""),
        )

    def remove_provisioned(self, function: str, qualifier: str) -> None:
        what = f"DeleteProvisionedConcurrencyConfig {function}:{qualifier}"
        _check_qualifier(what, qualifier)

        def delete() -> None:
            try:
                self._lambda.delete_provisioned_concurrency_config(FunctionName=function, Qualifier=qualifier)
            except self._lambda.exceptions.ProvisionedConcurrencyConfigNotFoundException:
                return  # already gone: the goal of the call holds

        self.gate.call(what, delete, applies_change=True)


# ---------------------------------------------------------------- in-memory fake


@dataclass
class FakeFunction:
    reserved: int | None = None
    qualifiers: set[str] = field(default_factory=lambda: {"live"})
    provisioned: dict[str, ProvisionedConfig] = field(default_factory=dict)


class FakeLambdaCapacity(LambdaCapacityPort, ScriptedFailures):
    """Lambda's concurrency rules in memory, for unit tests and fast local runs.

    New provisioned configs are IN_PROGRESS until they have been read `ready_after_reads` times
    (0: READY at once). `fail_next(op, error)` makes the next call of `op` (a method name) raise.
    `calls` lists every call made, in order.
    """

    def __init__(self, account_limit: int = 1000, ready_after_reads: int = 1) -> None:
        super().__init__()
        self.account_limit = account_limit
        self.ready_after_reads = ready_after_reads
        self.functions: dict[str, FakeFunction] = {}
        self._reads_left: dict[tuple[str, str], int] = {}
        self.failing_allocations: dict[tuple[str, str], str] = {}

    # -- knobs
    def add_function(self, name: str, qualifiers: tuple[str, ...] = ("live",), reserved: int | None = None) -> None:
        self.functions[name] = FakeFunction(reserved=reserved, qualifiers=set(qualifiers))

    def _function(self, op: str, name: str) -> FakeFunction:
        fn = self.functions.get(name)
        if fn is None:
            raise RejectedError(op, "ResourceNotFoundException", f"Function not found: {name}")
        return fn

    def _unreserved(self) -> int:
        used = 0
        for fn in self.functions.values():
            if fn.reserved is not None:
                used += fn.reserved
            else:  # provisioned on a function without a reservation comes out of the unreserved pool
                used += sum(c.requested for c in fn.provisioned.values())
        return self.account_limit - used

    # -- the port
    def account_concurrency(self) -> AccountConcurrency:
        self._enter("account_concurrency", "")
        return AccountConcurrency(limit=self.account_limit, unreserved=self._unreserved())

    def reserved(self, function: str) -> int | None:
        self._enter("reserved", function)
        return self._function("GetFunctionConcurrency", function).reserved

    def set_reserved(self, function: str, executions: int) -> None:
        self._enter("set_reserved", f"{function}={executions}")
        fn = self._function("PutFunctionConcurrency", function)
        provisioned = sum(c.requested for c in fn.provisioned.values())
        if executions < provisioned:
            raise RejectedError(
                "PutFunctionConcurrency",
                "InvalidParameterValueException",
                f"reserved {executions} is less than the function's total provisioned concurrency {provisioned}",
            )
        freed = fn.reserved if fn.reserved is not None else provisioned
        if self._unreserved() + freed - executions < LAMBDA_MIN_UNRESERVED:
            raise RejectedError(
                "PutFunctionConcurrency",
                "InvalidParameterValueException",
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{LAMBDA_MIN_UNRESERVED}].",
            )
        fn.reserved = executions

    def remove_reserved(self, function: str) -> None:
        self._enter("remove_reserved", function)
        self._function("DeleteFunctionConcurrency", function).reserved = None

    def provisioned(self, function: str, qualifier: str) -> ProvisionedConfig | None:
        self._enter("provisioned", f"{function}:{qualifier}")
        _check_qualifier("GetProvisionedConcurrencyConfig", qualifier)
        cfg = self._function("GetProvisionedConcurrencyConfig", function).provisioned.get(qualifier)
        if cfg is None or cfg.status != "IN_PROGRESS":
            return cfg
        key = (function, qualifier)
        left = self._reads_left.get(key, 0) - 1
        self._reads_left[key] = left
        if left > 0:
            return cfg
        reason = self.failing_allocations.pop(key, None)
        done = (
            ProvisionedConfig(cfg.requested, 0, 0, "FAILED", reason)
            if reason is not None
            else ProvisionedConfig(cfg.requested, cfg.requested, cfg.requested, "READY")
        )
        self.functions[function].provisioned[qualifier] = done
        return done

    def set_provisioned(self, function: str, qualifier: str, executions: int) -> ProvisionedConfig:
        self._enter("set_provisioned", f"{function}:{qualifier}={executions}")
        op = "PutProvisionedConcurrencyConfig"
        _check_qualifier(op, qualifier)
        fn = self._function(op, function)
        if qualifier not in fn.qualifiers:
            raise RejectedError(op, "ResourceNotFoundException", f"Cannot find alias arn: {function}:{qualifier}")
        if fn.reserved is not None and executions > fn.reserved:
            raise RejectedError(
                op,
                "InvalidParameterValueException",
                "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution",
            )
        old = fn.provisioned.get(qualifier)
        if fn.reserved is None:
            grow = executions - (old.requested if old else 0)
            if grow > 0 and self._unreserved() - grow < LAMBDA_MIN_UNRESERVED:
                raise RejectedError(
                    op,
                    "InvalidParameterValueException",
                    "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
                    f"below its minimum value of [{LAMBDA_MIN_UNRESERVED}].",
                )
        allocated = old.allocated if old else 0
        cfg = ProvisionedConfig(executions, allocated, allocated, "IN_PROGRESS")
        if self.ready_after_reads == 0 and (function, qualifier) not in self.failing_allocations:
            cfg = ProvisionedConfig(executions, executions, executions, "READY")
        fn.provisioned[qualifier] = cfg
        self._reads_left[(function, qualifier)] = self.ready_after_reads
        return cfg

    def remove_provisioned(self, function: str, qualifier: str) -> None:
        self._enter("remove_provisioned", f"{function}:{qualifier}")
        _check_qualifier("DeleteProvisionedConcurrencyConfig", qualifier)
        self._function("DeleteProvisionedConcurrencyConfig", function).provisioned.pop(qualifier, None)
