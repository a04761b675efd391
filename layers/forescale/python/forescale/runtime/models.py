"""Typed records of the runtime: target configuration, applied state, decisions and event details.

These are the contracts between the Lambdas (through DynamoDB items and EventBridge events), the
`forescale targets` CLI, the CDK stack and the local demo. Every event detail is validated with
pydantic, so a malformed event fails with an error that names the bad field.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from forescale.domain.guardrails import (
    DEFAULT_SCALE_OUT_ALLOWANCE_PER_HOUR,
    DEFAULT_SCALE_OUT_HOUR_FACTOR,
    DEFAULT_SCALE_OUT_STEP_FACTOR,
    GuardrailSettings,
)
from forescale.domain.policies import MAX_RATE_RPS
from forescale.domain.targets import DEFAULT_MAX_CAPACITY, InstanceType, LeadTimes, Target, TargetKind

EVENT_SOURCE = "forescale"  # forescale's own events; applications push DemandSample from their own sources
TargetName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")]

# Bounds of what AWS itself accepts, so nothing out of range is stored and read back by every function.
MAX_INT32 = 2**31 - 1  # Lambda concurrency and SageMaker instance counts are 32-bit integers
Capacity = Annotated[int, Field(ge=0, le=MAX_INT32)]
Step = Annotated[int, Field(ge=1, le=MAX_INT32)]
WindowSeconds = Annotated[int, Field(ge=0, le=7 * 86_400)]  # a guardrail window longer than a week is a typo
Epoch = Annotated[int, Field(ge=0, le=4_102_444_800)]  # seconds, up to 2100-01-01
Version = Annotated[int, Field(ge=0, le=MAX_INT32)]
Rate = Annotated[float, Field(ge=0, le=MAX_RATE_RPS)]  # requests/s; more than any capacity serves is poison
# Lambda: a function *name* (CreateFunction's pattern); an ARN could name another account's function.
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"
# A published version (digits) or an alias name (CreateAlias: letters, digits, - and _); `$LATEST`
# (in any case) is neither, and provisioned concurrency cannot be set on it.
QUALIFIER = r"^[A-Za-z0-9_-]{1,128}$"
SAGEMAKER_NAME = r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$"  # EndpointName and VariantName
INSTANCE_TYPE = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
MAX_LEAD_UP_S = 3600  # a capacity change that takes over an hour to land is not something to plan ahead for
# Event times are bounded against the receiver's clock: EventBridge retries for at most 24 h, and
# clocks of producers drift by seconds, not minutes.
MAX_EVENT_AGE_S = 86_400
CLOCK_SKEW_S = 300


def validation_problems(exc: ValidationError) -> str:
    """`field.path: what is wrong` for each error, without echoing the (possibly huge or hostile) input."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    )


class _Strict(BaseModel):
    """Frozen, no unknown fields, and every float finite: JSON has no inf or NaN (pydantic would write
    them as null, and the stored item would then fail validation on every read)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Mode(StrEnum):
    DRY_RUN = "dry-run"  # decisions recorded, nothing applied (the default for a new target)
    ACTIVE = "active"


class InstanceTypeSpec(_Strict):
    name: str = Field(pattern=INSTANCE_TYPE)
    price_per_hour: float = Field(gt=0, le=10_000, description="$ per instance-hour")
    capacity_rps: float = Field(gt=0, le=1e9, description="requests/s one instance serves at the latency SLO")


class GuardrailSpec(_Strict):
    """Per-target guardrail knobs (see forescale.domain.guardrails); None disables a limit."""

    max_step_up: Step | None = None
    max_step_down: Step | None = None
    stabilisation_window_s: WindowSeconds = 300
    scale_out_cooldown_s: WindowSeconds = 0
    scale_in_cooldown_s: WindowSeconds = 0
    dead_band: float = Field(default=0.0, ge=0, lt=1)
    budget_per_hour: float | None = Field(default=None, ge=0, le=1e9, description="$ per hour")
    scale_out_step_factor: float | None = Field(default=DEFAULT_SCALE_OUT_STEP_FACTOR, ge=1, allow_inf_nan=False)
    scale_out_hour_factor: float | None = Field(default=DEFAULT_SCALE_OUT_HOUR_FACTOR, ge=1, allow_inf_nan=False)
    scale_out_allowance_per_hour: float = Field(
        default=DEFAULT_SCALE_OUT_ALLOWANCE_PER_HOUR, ge=0, le=1e9, allow_inf_nan=False, description="$/hour"
    )


class TargetConfig(_Strict):
    """A registered target, as stored under `TARGET#<name>` / `CONFIG`.

    Lambda targets name `function_name` (and `qualifier`, an alias or version, for provisioned
    concurrency; never $LATEST). SageMaker targets name `endpoint_name` and `variant_name` and carry
    an instance catalog.
    """

    name: TargetName
    kind: TargetKind
    function_name: str | None = Field(default=None, pattern=FUNCTION_NAME)
    qualifier: str | None = Field(default=None, max_length=128)
    endpoint_name: str | None = Field(default=None, pattern=SAGEMAKER_NAME)
    variant_name: str | None = Field(default=None, pattern=SAGEMAKER_NAME)
    min_capacity: Capacity = 0
    max_capacity: Capacity = DEFAULT_MAX_CAPACITY
    slo_miss: float = Field(default=0.01, gt=0, lt=1)
    # Lambda runs 15 minutes at most; its memory is 128 MB to 10,240 MB.
    duration_s: float = Field(default=0.1, gt=0, le=900, description="mean Lambda duration (s) until metrics exist")
    memory_mb: int = Field(default=1024, ge=128, le=10_240)
    catalog: tuple[InstanceTypeSpec, ...] = Field(default=(), max_length=100)
    instance_type: str | None = Field(default=None, pattern=INSTANCE_TYPE)
    policy: Literal["predictive", "reactive", "target-tracking", "seasonal-naive", "static"] = "predictive"
    mode: Mode = Mode.DRY_RUN
    guardrails: GuardrailSpec = GuardrailSpec()
    lead_up_s: int | None = Field(default=None, ge=1, le=MAX_LEAD_UP_S, description="s from a scale-out to capacity")
    version: Version = 0

    @field_validator("qualifier")
    @classmethod
    def _qualifier(cls, value: str | None) -> str | None:
        if value is not None and value.upper() == "$LATEST":
            raise ValueError(
                f"{value!r}: provisioned concurrency cannot be set on $LATEST (the unpublished version); "
                "use an alias or a published version"
            )
        if value is not None and not re.fullmatch(QUALIFIER, value):
            raise ValueError("must be a published version (digits) or an alias name (letters, digits, - and _)")
        return value

    @model_validator(mode="after")
    def _check(self) -> TargetConfig:
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"min_capacity {self.min_capacity} > max_capacity {self.max_capacity}")
        if self.kind.is_lambda:
            if not self.function_name:
                raise ValueError(f"a {self.kind} target needs function_name")
            if self.kind is TargetKind.LAMBDA_PROVISIONED and not self.qualifier:
                raise ValueError("provisioned concurrency needs a qualifier (an alias or a version)")
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
            scale_out_step_factor=g.scale_out_step_factor,
            scale_out_hour_factor=g.scale_out_hour_factor,
            scale_out_allowance_per_hour=g.scale_out_allowance_per_hour,
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
    capacity: Capacity
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
    capacity: Capacity | None = None  # None: never read or set by forescale
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
    capacity: Capacity
    previous: Capacity
    recommended: Capacity
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


class EventDetail(_Strict):
    """An event detail: numbers must be finite (JSON such as `1e999` decodes to inf, which passes `ge=0`
    but cannot be stored in DynamoDB nor published again as JSON), and its times must be near now.

    `TIMES` names the fields that are epoch seconds. `time_problems(now)` says which of them lie more
    than `CLOCK_SKEW_S` in the future or more than `MAX_EVENT_AGE_S` in the past: a decision "from"
    2286 would supersede every later one, so such an event is refused (it goes to the DLQ), not acted on.
    """

    TIMES: ClassVar[tuple[str, ...]] = ()

    def times(self) -> dict[str, int]:
        """The event's times by field name (epoch s); a period's end counts as a time of its own."""
        return {name: getattr(self, name) for name in self.TIMES}

    def time_problems(self, now: int, max_age_s: int = MAX_EVENT_AGE_S, skew_s: int = CLOCK_SKEW_S) -> list[str]:
        """`field: why` for each time outside [now - max_age_s, now + skew_s]."""
        problems = []
        for name, t in self.times().items():
            if t > now + skew_s:
                problems.append(f"{name}: {t} is {t - now} s after now ({now}); at most {skew_s} s of clock skew")
            elif t < now - max_age_s:
                problems.append(f"{name}: {t} is {now - t} s before now ({now}); the limit is {max_age_s} s")
        return problems


class DemandSampleDetail(EventDetail):
    """`forescale.DemandSample`: demand pushed by an application (or by collect) for one minute.

    `timestamp` is the start of the minute (epoch seconds); `requests` the count in `period_s`.
    """

    TIMES = ("timestamp",)

    target: TargetName
    timestamp: int = Field(ge=946684800, le=4102444800)  # 2000-01-01 .. 2100-01-01
    period_s: PositiveInt = Field(default=60, le=86_400)  # ingest stores one item per minute of it
    requests: float = Field(ge=0, le=MAX_RATE_RPS * 86_400)
    duration_ms: float | None = Field(default=None, ge=0, le=900_000)  # Lambda runs 15 minutes at most
    concurrency: Rate | None = None
    spillover: Rate | None = None
    throttles: Rate | None = None
    latency_ms: float | None = Field(default=None, ge=0, le=3_600_000)
    gpu_utilization: float | None = Field(default=None, ge=0, le=10_000)  # % summed over an instance's GPUs

    @property
    def rate_rps(self) -> float:
        return self.requests / self.period_s

    def times(self) -> dict[str, int]:
        # A sample of minutes still to come would be stored as history of the future.
        return super().times() | {"timestamp + period_s": self.timestamp + self.period_s}


class SamplesCollectedDetail(EventDetail):
    """`forescale.SamplesCollected`: collect stored a minute of samples; plan decides on it."""

    TIMES = ("period_start",)

    period_start: Epoch
    targets: tuple[TargetName, ...] = Field(max_length=1000)
    missing: tuple[TargetName, ...] = ()


class DemandAboveForecastDetail(EventDetail):
    """`forescale.DemandAboveForecast`: collect saw demand above the forecast's upper band; react scales out."""

    TIMES = ("timestamp",)

    target: TargetName
    timestamp: Epoch
    observed_rps: Rate
    upper_rps: Rate


class ForecastReadyDetail(EventDetail):
    """`forescale.ForecastReady`: new forecasts are stored for these targets."""

    TIMES = ("issued_at",)

    issued_at: Epoch
    shard: NonNegativeInt = 0
    targets: tuple[TargetName, ...] = Field(max_length=1000)
    models: dict[str, str] = Field(default_factory=dict)


class DecisionMadeDetail(EventDetail):
    """`forescale.DecisionMade`: plan stored a decision; act applies it (or records dry-run)."""

    TIMES = ("decided_at",)

    decision_id: str
    target: TargetName
    decided_at: Epoch
    capacity: Capacity
    previous: Capacity
    instance_type: str | None = None
    mode: Mode
    reason: str = Field(max_length=4000)
    urgency: Rate = 0.0  # expected spill (requests/s) if not applied: act orders by it


class ActionResultDetail(EventDetail):
    """`forescale.ActionApplied` / `forescale.ActionFailed`."""

    decision_id: str
    target: TargetName
    action: str
    status: DecisionStatus
    capacity: Capacity | None = None
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
