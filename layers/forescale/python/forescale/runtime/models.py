"""Typed records of the runtime: target configuration, applied state, decisions and event details.

These are the contracts between the Lambdas (through DynamoDB items and EventBridge events), the
`forescale targets` CLI, the CDK stack and the local demo. Every event detail is validated with
pydantic, so a malformed event fails with an error that names the bad field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, model_validator

from forescale.domain.guardrails import GuardrailSettings
from forescale.domain.targets import InstanceType, LeadTimes, Target, TargetKind

EVENT_SOURCE = "forescale"
TargetName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mode(StrEnum):
    DRY_RUN = "dry-run"  # decisions recorded, nothing applied (the default for a new target)
    ACTIVE = "active"


class InstanceTypeSpec(_Strict):
    name: str = Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    price_per_hour: float = Field(gt=0)
    capacity_rps: float = Field(gt=0, description="requests/s one instance serves at the latency SLO")


class GuardrailSpec(_Strict):
    """Per-target guardrail knobs (see forescale.domain.guardrails); None disables a limit."""

    max_step_up: PositiveInt | None = None
    max_step_down: PositiveInt | None = None
    stabilisation_window_s: NonNegativeInt = 300
    scale_out_cooldown_s: NonNegativeInt = 0
    scale_in_cooldown_s: NonNegativeInt = 0
    dead_band: float = Field(default=0.0, ge=0, lt=1)
    budget_per_hour: NonNegativeFloat | None = None


class TargetConfig(_Strict):
    """A registered target, as stored under `TARGET#<name>` / `CONFIG`.

    Lambda targets name `function_name` (and `qualifier`, an alias or version, for provisioned
    concurrency; never $LATEST). SageMaker targets name `endpoint_name` and `variant_name` and carry
    an instance catalog.
    """

    name: TargetName
    kind: TargetKind
    function_name: str | None = Field(default=None, min_length=1, max_length=170)
    qualifier: str | None = Field(default=None, min_length=1, max_length=128)
    endpoint_name: str | None = Field(default=None, min_length=1, max_length=63)
    variant_name: str | None = Field(default=None, min_length=1, max_length=63)
    min_capacity: NonNegativeInt = 0
    max_capacity: NonNegativeInt = 1000
    slo_miss: float = Field(default=0.01, gt=0, lt=1)
    duration_s: float = Field(default=0.1, gt=0, description="mean Lambda duration when no metric is known yet")
    memory_mb: PositiveInt = 1024
    catalog: tuple[InstanceTypeSpec, ...] = ()
    instance_type: str | None = None
    policy: Literal["predictive", "reactive", "target-tracking", "seasonal-naive", "static"] = "predictive"
    mode: Mode = Mode.DRY_RUN
    guardrails: GuardrailSpec = GuardrailSpec()
    lead_up_s: PositiveInt | None = None
    version: NonNegativeInt = 0

    @model_validator(mode="after")
    def _check(self) -> TargetConfig:
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"min_capacity {self.min_capacity} > max_capacity {self.max_capacity}")
        if self.kind.is_lambda:
            if not self.function_name:
                raise ValueError(f"a {self.kind} target needs function_name")
            if self.kind is TargetKind.LAMBDA_PROVISIONED:
                if not self.qualifier:
                    raise ValueError("provisioned concurrency needs a qualifier (an alias or a version)")
                if self.qualifier == "$LATEST":
                    raise ValueError("provisioned concurrency cannot be set on $LATEST; use an alias or a version")
        else:
            if not (self.endpoint_name and self.variant_name):
                raise ValueError(f"a {self.kind} target needs endpoint_name and variant_name")
            if not self.catalog:
                raise ValueError(f"a {self.kind} target needs an instance catalog")
            names = [t.name for t in self.catalog]
            if self.instance_type is not None and self.instance_type not in names:
                raise ValueError(f"instance_type {self.instance_type} is not in the catalog {names}")
        return self

    @property
    def resource_label(self) -> str:
        if self.kind.is_lambda:
            return f"lambda:{self.function_name}" + (f":{self.qualifier}" if self.qualifier else "")
        return f"sagemaker:{self.endpoint_name}/{self.variant_name}"

    def to_target(self) -> Target:
        lead = None
        if self.lead_up_s is not None:
            base = LeadTimes.for_kind(self.kind)
            lead = LeadTimes(up_s=self.lead_up_s, down_s=base.down_s, type_change_s=base.type_change_s)
        return Target(
            name=self.name,
            kind=self.kind,
            min_capacity=self.min_capacity,
            max_capacity=self.max_capacity,
            slo_miss=self.slo_miss,
            lead=lead,
            duration_s=self.duration_s,
            memory_mb=self.memory_mb,
            catalog=tuple(InstanceType(t.name, t.price_per_hour, t.capacity_rps) for t in self.catalog),
            instance_type=self.instance_type,
            resource_id=self.resource_label,
        )

    def guardrail_settings(self) -> GuardrailSettings:
        g = self.guardrails
        return GuardrailSettings(
            min_capacity=self.min_capacity,
            max_capacity=self.max_capacity,
            max_step_up=g.max_step_up,
            max_step_down=g.max_step_down,
            stabilisation_window_s=g.stabilisation_window_s,
            scale_out_cooldown_s=g.scale_out_cooldown_s,
            scale_in_cooldown_s=g.scale_in_cooldown_s,
            dead_band=g.dead_band,
            budget_per_hour=g.budget_per_hour,
        )


class DecisionStatus(StrEnum):
    PENDING = "pending"  # decided, not yet applied
    APPLYING = "applying"  # claimed by an act invocation (lease until `lease_until`)
    APPLIED = "applied"
    IN_FLIGHT = "in-flight"  # AWS accepted it; capacity not READY/InService yet
    DRY_RUN = "dry-run"  # recorded only: the target is in dry-run mode or forescale is paused
    NO_CHANGE = "no-change"
    SUPERSEDED = "superseded"  # a newer decision for the target arrived first
    DEFERRED = "deferred"  # throttled, endpoint busy, ...: retried on the next cycle
    FAILED = "failed"


class InFlightOperation(_Strict):
    """An AWS change that takes minutes: provisioned concurrency allocation or an endpoint update."""

    operation: Literal["provisioned-concurrency", "endpoint-capacity", "endpoint-type-switch"]
    decision_id: str
    started_at: int
    capacity: NonNegativeInt
    instance_type: str | None = None
    details: dict[str, str] = Field(default_factory=dict)


class ActBackoff(_Strict):
    """act waits before re-asserting a change AWS (or a check) refused: per target and error class
    (`operation`, `error_code`); doubles with each refusal, capped (seconds since the epoch)."""

    operation: str
    error_code: str
    failures: PositiveInt
    since: int  # the first refusal of this class
    until: int  # no attempt before this
    capacity: NonNegativeInt = 0  # what the refused decision asked for
    message: str = ""


class UserBounds(_Strict):
    """The user's own Application Auto Scaling bounds, remembered when forescale first moved them."""

    namespace: str
    resource_id: str
    dimension: str
    min_capacity: NonNegativeInt
    max_capacity: NonNegativeInt


class AppliedState(_Strict):
    """What is in effect for a target, as stored under `TARGET#<name>` / `STATE` (optimistic lock: `version`)."""

    target: TargetName
    capacity: NonNegativeInt | None = None  # None: never read or set by forescale
    instance_type: str | None = None
    updated_at: int = 0
    last_decision_id: str | None = None
    last_action: str | None = None
    in_flight: InFlightOperation | None = None
    version: NonNegativeInt = 0
    # act's bookkeeping; the defaults keep items written before these fields readable.
    confirmed_at: int = 0  # when AWS last reported or confirmed `capacity` (0: read it before trusting it)
    function_reserved: NonNegativeInt | None = None  # the function's reserved concurrency at that read
    backoff: ActBackoff | None = None  # a refused change act waits to re-assert


class DecisionRecord(_Strict):
    """The audit record of one decision, as stored under `TARGET#<name>` / `DECISION#<decided_at>`."""

    decision_id: str
    target: TargetName
    decided_at: int
    capacity: NonNegativeInt
    previous: NonNegativeInt
    recommended: NonNegativeInt
    instance_type: str | None = None
    previous_instance_type: str | None = None
    policy: str
    reason: str
    shaped_by: tuple[str, ...] = ()
    demand_rps: float = 0.0
    observed_rps: float | None = None
    band: tuple[float, float, float] | None = None
    data_missing: bool = False
    mode: Mode
    status: DecisionStatus
    forecast_model: str | None = None
    forecast_issued_at: int | None = None
    inputs: dict[str, float | int | str | None] = Field(default_factory=dict)
    outcome: str | None = None  # what act did, and why
    lease_until: int | None = None
    updated_at: int = 0

    @staticmethod
    def id_for(target: str, decided_at: int) -> str:
        """Deterministic, so a redelivered event writes the same decision, never a second one."""
        return f"{target}@{decided_at}"


# ---------------------------------------------------------------- event details (EventBridge)


class _Detail(_Strict):
    """An event detail: numbers must be finite. JSON such as `1e999` decodes to inf, which passes `ge=0`
    but cannot be stored in DynamoDB nor published again as JSON."""

    model_config = ConfigDict(allow_inf_nan=False)


class DemandSampleDetail(_Detail):
    """`forescale.DemandSample`: demand pushed by an application (or by collect) for one minute.

    `timestamp` is the start of the minute (epoch seconds); `requests` the count in `period_s`.
    """

    target: TargetName
    timestamp: int = Field(ge=946684800, le=4102444800)  # 2000-01-01 .. 2100-01-01
    period_s: PositiveInt = Field(default=60, le=86_400)  # ingest stores one item per minute of it
    requests: NonNegativeFloat
    duration_ms: NonNegativeFloat | None = None
    concurrency: NonNegativeFloat | None = None
    spillover: NonNegativeFloat | None = None
    throttles: NonNegativeFloat | None = None
    latency_ms: NonNegativeFloat | None = None
    gpu_utilization: float | None = Field(default=None, ge=0)

    @property
    def rate_rps(self) -> float:
        return self.requests / self.period_s


class SamplesCollectedDetail(_Detail):
    """`forescale.SamplesCollected`: collect stored a minute of samples; plan decides on it."""

    period_start: int
    targets: tuple[TargetName, ...] = Field(max_length=1000)
    missing: tuple[TargetName, ...] = ()


class DemandAboveForecastDetail(_Detail):
    """`forescale.DemandAboveForecast`: collect saw demand above the forecast's upper band; react scales out."""

    target: TargetName
    timestamp: int
    observed_rps: NonNegativeFloat
    upper_rps: NonNegativeFloat


class ForecastReadyDetail(_Detail):
    """`forescale.ForecastReady`: new forecasts are stored for these targets."""

    issued_at: int
    shard: NonNegativeInt = 0
    targets: tuple[TargetName, ...] = Field(max_length=1000)
    models: dict[str, str] = Field(default_factory=dict)


class DecisionMadeDetail(_Detail):
    """`forescale.DecisionMade`: plan stored a decision; act applies it (or records dry-run)."""

    decision_id: str
    target: TargetName
    decided_at: int
    capacity: NonNegativeInt
    previous: NonNegativeInt
    instance_type: str | None = None
    mode: Mode
    reason: str = Field(max_length=4000)
    urgency: NonNegativeFloat = 0.0  # expected spill (requests/s) if not applied: act orders by it


class ActionResultDetail(_Detail):
    """`forescale.ActionApplied` / `forescale.ActionFailed`."""

    decision_id: str
    target: TargetName
    action: str
    status: DecisionStatus
    capacity: NonNegativeInt | None = None
    instance_type: str | None = None
    error_code: str | None = None
    message: str = Field(default="", max_length=4000)


DETAIL_TYPES = {
    "forescale.DemandSample": DemandSampleDetail,
    "forescale.SamplesCollected": SamplesCollectedDetail,
    "forescale.DemandAboveForecast": DemandAboveForecastDetail,
    "forescale.ForecastReady": ForecastReadyDetail,
    "forescale.DecisionMade": DecisionMadeDetail,
    "forescale.ActionApplied": ActionResultDetail,
    "forescale.ActionFailed": ActionResultDetail,
}
