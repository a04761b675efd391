"""The stack's typed configuration: a JSON file and/or CDK context, validated before any construct is built.

Sources, later ones winning key by key:

1. the model's defaults (a safe dry-run install that manages nothing until targets are registered);
2. a JSON file named by the context key `config` (`cdk deploy -c config=infra/config/prod.json`);
3. individual context keys (`-c event_bus_name=ops-bus -c forecast_shard_size=1500`), given as strings
   on the command line and parsed as JSON where they look like JSON (numbers, booleans, lists, objects).

Nothing here talks to AWS: the account and region come from context or stay unresolved tokens, so the
app synthesises offline with no credentials.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from forescale.domain.targets import TargetKind
from forescale.runtime.models import EVENT_SOURCE

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\([^)]+\))$")
_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_SNS_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")

# Keys a caller may pass with -c on the command line besides the model's own fields.
CONTEXT_FILE_KEY = "config"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the source and the offending field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManagedTarget(_Frozen):
    """A target the operator declares at deploy time.

    Declared targets get a dashboard row each, count towards the forecast shard plan, and (without tag
    discovery) narrow act's IAM resources to exactly these functions and endpoints. They are still
    registered at run time with `forescale targets add` (bounds, policy, mode live in the table).
    """

    name: str = Field(pattern=_NAME.pattern)
    kind: TargetKind
    function_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    qualifier: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,128}$")
    endpoint_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    variant_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    # Opt-in per-target dashboard metrics (DemandRps, ForecastRps, ForecastUpperRps): 3 custom metrics,
    # $0.90 a target-month at $0.30 each; without it the row plots AWS's own (free) metrics.
    metrics: bool = False

    @model_validator(mode="after")
    def _resource_named(self) -> Self:
        if self.kind.is_lambda:
            if not self.function_name:
                raise ValueError(f"target {self.name!r}: a {self.kind} target needs function_name")
            if self.kind is TargetKind.LAMBDA_PROVISIONED and not self.qualifier:
                raise ValueError(f"target {self.name!r}: provisioned concurrency needs a qualifier (alias or version)")
        elif not (self.endpoint_name and self.variant_name):
            raise ValueError(f"target {self.name!r}: a {self.kind} target needs endpoint_name and variant_name")
        return self


class Schedules(_Frozen):
    """EventBridge schedule expressions (`rate(...)` or `cron(...)`), all on the default bus."""

    collect: str = "rate(1 minute)"
    act_sweep: str = "rate(1 minute)"  # act re-reads pending/in-flight decisions even if an event was lost
    forecast: str = "rate(5 minutes)"
    rightsize: str = "rate(1 hour)"

    @field_validator("collect", "act_sweep", "forecast", "rightsize")
    @classmethod
    def _expression(cls, value: str) -> str:
        if not _SCHEDULE.match(value):
            raise ValueError(f"{value!r} is not an EventBridge schedule: use rate(N minutes|hours|days) or cron(...)")
        return value


class FunctionSizing(_Frozen):
    """Memory (MB) and timeout (s) of one function."""

    memory_mb: int = Field(ge=128, le=10_240)
    timeout_s: int = Field(ge=1, le=900)


def _default_sizing() -> dict[str, FunctionSizing]:
    return {
        # collect and act run every minute: their timeouts stay under the period so runs never overlap.
        "collect": FunctionSizing(memory_mb=512, timeout_s=50),
        "plan": FunctionSizing(memory_mb=512, timeout_s=60),
        # act's CPU (request signing, parsing) is a third of its work at fleet scale: at 256 MB (a seventh
        # of a vCPU) 10,000 targets' changes did not fit its two processes' minute (forescale bench fleet).
        "act": FunctionSizing(memory_mb=1024, timeout_s=55),
        "react": FunctionSizing(memory_mb=256, timeout_s=30),
        "rightsize": FunctionSizing(memory_mb=512, timeout_s=300),
        # statsforecast fits thousands of series per shard; memory also buys CPU on Lambda.
        "forecast": FunctionSizing(memory_mb=3008, timeout_s=240),
    }


FUNCTION_NAMES = ("collect", "forecast", "plan", "act", "react", "rightsize")


# The instance types act may create endpoint configs with for a type switch (`sagemaker:InstanceTypes`):
# by default the example catalog's (forescale.replay.workload.GPU_CATALOG); list your catalogs' types.
DEFAULT_ENDPOINT_INSTANCE_TYPES = ("ml.g4dn.xlarge", "ml.g5.12xlarge", "ml.g5.2xlarge", "ml.g5.xlarge", "ml.g6.xlarge")
InstanceTypeName = Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")]


class InfraConfig(_Frozen):
    """Everything the stack needs to know; see docs/deploy.md for how to set each field."""

    stack_name: str = Field(default="forescale", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")  # None: environment-agnostic template
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")

    # What to manage: declared targets and/or every resource tagged forescale:managed=true.
    targets: tuple[ManagedTarget, ...] = ()
    tag_discovery: bool = False
    expected_targets: PositiveInt | None = None  # for tag discovery: how many to plan forecast shards for
    default_mode: Literal["dry-run", "active"] = "dry-run"  # mode of targets registered by tag discovery

    schedules: Schedules = Schedules()
    event_bus_name: str = Field(default="forescale", pattern=r"^[A-Za-z0-9._-]{1,256}$")
    # Sources applications push forescale.DemandSample from ([]: any source but forescale's own). Only
    # that detail-type is routed from them; forescale's internal events only from source "forescale".
    demand_sources: tuple[str, ...] = Field(default=(), max_length=100)
    table_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{3,255}$")  # None: CloudFormation names it
    log_retention_days: int = 30
    kms_key_arn: str | None = None  # customer-managed key for the table; None: the AWS-managed DynamoDB key
    alarm_topic_arn: str | None = None  # SNS topic that receives the operational alarms
    alarm_prefix: str = Field(default="forescale-", min_length=1, max_length=64)  # react handles alarms named so

    # Targets per forecaster invocation, from `forescale bench forecast` (docs/forecast-benchmarks.md): a
    # 10,000-target cycle took 3.6 s and 1.36 GB with refits amortised; memory caps one invocation near 37,700.
    forecast_shard_size: PositiveInt = 10_000
    forecast_max_parallel_shards: PositiveInt = Field(default=10, le=1000)
    forecast_history_days: PositiveInt = 14
    forecast_horizon_s: PositiveInt = 86_400
    sample_ttl_days: PositiveInt = 15
    collect_detail_every_minutes: PositiveInt = 60  # duration/concurrency/latency/GPU per target every N minutes
    # Read each target's demand every N minutes, N minutes at a time: collection costs 1/N of reading
    # every minute; demand reaches plan up to N - 1 minutes later (docs/running-cost.md).
    collect_poll_every_minutes: PositiveInt = Field(default=5, le=15)
    collect_reread_minutes: PositiveInt = 5  # re-read recent minutes: CloudWatch corrects late datapoints
    metric_delay_s: int = Field(default=120, ge=0)
    act_lambda_calls_per_second: float = Field(default=15.0, gt=0, le=15.0)
    rollback_alarm_names: tuple[str, ...] = ()  # SageMaker blue/green rollback alarms, passed to act
    endpoint_instance_types: tuple[InstanceTypeName, ...] = Field(default=DEFAULT_ENDPOINT_INSTANCE_TYPES, min_length=1)

    # The AWS-managed Powertools layer (account 017000801446 in the commercial partition).
    powertools_layer_version: PositiveInt = 27
    powertools_layer_arn: str | None = None  # full ARN override, e.g. for China or GovCloud regions

    functions: dict[str, FunctionSizing] = Field(default_factory=_default_sizing)

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"log_retention_days must be one of CloudWatch's periods {LOG_RETENTION_DAYS}, got {value}"
            )
        return value

    @field_validator("demand_sources")
    @classmethod
    def _producer_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for source in value:
            if not re.fullmatch(r"[A-Za-z0-9._/-]{1,256}", source):
                raise ValueError(f"demand_sources: {source!r} is not an EventBridge source name")
            if source == EVENT_SOURCE or source.startswith("aws."):
                raise ValueError(f"demand_sources: {source!r} is forescale's or AWS's; producers use their own")
        return value

    @field_validator("kms_key_arn")
    @classmethod
    def _kms(cls, value: str | None) -> str | None:
        if value is not None and not _KMS_KEY_ARN.match(value):
            raise ValueError(f"kms_key_arn {value!r} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)")
        return value

    @field_validator("alarm_topic_arn")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None and not _SNS_ARN.match(value):
            raise ValueError(f"alarm_topic_arn {value!r} is not an SNS topic ARN")
        return value

    @field_validator("functions")
    @classmethod
    def _all_functions(cls, value: dict[str, FunctionSizing]) -> dict[str, FunctionSizing]:
        unknown = sorted(set(value) - set(FUNCTION_NAMES))
        if unknown:
            raise ValueError(f"unknown function(s) {unknown}; known: {list(FUNCTION_NAMES)}")
        # A partial override keeps the defaults of the functions it does not name.
        return {**_default_sizing(), **value}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [t.name for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate target names: {duplicates}")
        if self.alarm_prefix.startswith("ops-"):
            raise ValueError("alarm_prefix must not start with 'ops-': that prefix names forescale's own ops alarms")
        if self.expected_targets is not None and not self.tag_discovery:
            raise ValueError("expected_targets only applies with tag_discovery=true (declared targets are counted)")
        if self.forecast_shard_count > self.forecast_max_parallel_shards:
            # Shards beyond the Map's parallelism would run in later rounds and overrun the 5-minute cycle.
            raise ValueError(
                f"{self.planned_target_count} targets need {self.forecast_shard_count} forecast shards of "
                f"{self.forecast_shard_size}, more than "
                f"forecast_max_parallel_shards={self.forecast_max_parallel_shards}; "
                "raise forecast_max_parallel_shards or forecast_shard_size"
            )
        return self

    # ------------------------------------------------------------------ derived values

    @property
    def planned_target_count(self) -> int:
        """How many targets the forecast shard plan is sized for (declared, or expected with discovery)."""
        declared = len(self.targets)
        if self.tag_discovery:
            return max(declared, self.expected_targets or 0, 1)
        return max(declared, 1)

    @property
    def forecast_shard_count(self) -> int:
        """Forecaster invocations per cycle: ceil(targets / shard size), at least 1."""
        return max(1, math.ceil(self.planned_target_count / self.forecast_shard_size))

    @property
    def fan_out(self) -> bool:
        """True when one forecaster invocation cannot take every target and a Map state fans out."""
        return self.forecast_shard_count > 1

    @property
    def narrow_to_declared_targets(self) -> bool:
        """Without tag discovery, act may touch only the declared targets' resources."""
        return bool(self.targets) and not self.tag_discovery

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, context: Mapping[str, Any], base_dir: Path) -> Self:
        """Build the config from CDK context (the values of `-c key=value` and cdk.json's `context`).

        `context[CONTEXT_FILE_KEY]` names a JSON file (relative to `base_dir`); other keys that are model
        fields override it. Unknown keys are ignored: CDK keeps its own feature flags in the same context.
        """
        merged: dict[str, Any] = {}
        path_value = context.get(CONTEXT_FILE_KEY)
        if path_value:
            path = Path(str(path_value))
            if not path.is_absolute():
                path = base_dir / path
            try:
                loaded = json.loads(path.read_text())
            except FileNotFoundError as exc:
                raise ConfigError(f"config file {path} (context key {CONTEXT_FILE_KEY!r}) does not exist") from exc
            except json.JSONDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"config file {path} must hold a JSON object, got {type(loaded).__name__}")
            merged.update(loaded)
        for key, field in cls.model_fields.items():
            if key in context:
                # A string field keeps its text (an account id is digits, not a number).
                wants_text = field.annotation in (str, str | None)
                merged[key] = context[key] if wants_text else _parse_context_value(context[key])
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            source = f"config file {path_value} and context" if path_value else "context"
            raise ConfigError(f"invalid forescale infra configuration ({source}):\n{exc}") from exc


def _parse_context_value(value: Any) -> Any:
    """`-c key=value` arrives as a string; JSON-looking strings become numbers, booleans, lists, objects."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("true", "false", "null") or text[:1] in "[{" or re.fullmatch(r"-?\d+(\.\d+)?", text):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    return value
