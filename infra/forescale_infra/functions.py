"""Functions: five light zip functions on a shared layer, the forecaster as a container image.

Each function gets its own role (no managed policies), log group with retention, SQS DLQ (encrypted,
SSL-only) for failed asynchronous invocations and EventBridge deliveries, X-Ray tracing, JSON logs,
explicit memory / timeout / architecture, and exactly the environment of its settings model in
forescale.runtime.settings. Nothing is built at synth: zip assets are staged folders, and the image is
built by `cdk deploy` from functions/forecast/Dockerfile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from forescale_infra.config import InfraConfig
from forescale_infra.nag import acknowledge
from forescale_infra.permissions import (
    KMS_TABLE_ACTIONS,
    TABLE_ACCESS,
    act_statements,
    collect_statements,
    plan_statements,
    put_events_statement,
    rightsize_statements,
    table_statements,
)
from forescale_infra.state import StateTable

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO_ROOT / "functions"
LAYER_DIR = REPO_ROOT / "layers" / "forescale"  # holds python/forescale: the Lambda layer layout
FORECAST_DOCKERFILE = "functions/forecast/Dockerfile"  # relative to the build context, the repo root

LIGHT_FUNCTIONS = ("collect", "plan", "act", "react", "rightsize")
HANDLER = "handler.handler"
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.mypy_cache", "**/.pytest_cache", "**/Dockerfile"]
# forescale.local is the laptop demo's AWS emulation (it imports moto): never shipped to Lambda.
LAYER_EXCLUDES = [*ASSET_EXCLUDES, "python/forescale/local"]

# How long Lambda keeps retrying a failed asynchronous invocation before it goes to the DLQ.
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = {
    # A DecisionMade older than a few cycles is stale: the act sweep re-reads pending decisions anyway.
    "act": Duration.minutes(10),
    "collect": Duration.minutes(10),
    "plan": Duration.minutes(15),
    "react": Duration.minutes(15),
    "forecast": Duration.minutes(30),
    "rightsize": Duration.hours(2),
}
# act runs at most this many at once: its SQS event source's maximum concurrency (AWS's minimum is 2)
# and its reserved concurrency are both this, so SQS never hands act a batch Lambda would throttle; each
# process paces its Lambda control-plane calls at the account's rate divided by this (15/s ÷ 2).
ACT_CONCURRENCY = 2

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    return _RETENTION[days]


@dataclass(frozen=True)
class ForescaleFunction:
    """One deployed function and the pieces built for it."""

    name: str
    function: lambda_.Function
    role: iam.Role
    dlq: sqs.Queue
    log_group: logs.LogGroup
    statements: tuple[iam.PolicyStatement, ...]  # what this app added to the role (CDK adds X-Ray's)

    @property
    def star_resource_actions(self) -> list[str]:
        """Actions this role may call on Resource "*" (X-Ray's come with tracing=ACTIVE)."""
        own = {a for s in self.statements if list(s.resources) == ["*"] for a in s.actions}
        return sorted(own | {"xray:PutTraceSegments", "xray:PutTelemetryRecords"})


def environment(name: str, config: InfraConfig, table_name: str, bus_name: str) -> dict[str, str]:
    """The env vars of one function: exactly the fields of its settings model (a test checks it)."""
    common = {
        "TABLE_NAME": table_name,
        "EVENT_BUS_NAME": bus_name,
        "POWERTOOLS_SERVICE_NAME": "forescale",
        "POWERTOOLS_METRICS_NAMESPACE": "forescale",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    specific: dict[str, dict[str, str]] = {
        "collect": {
            "SAMPLE_TTL_DAYS": str(config.sample_ttl_days),
            "DETAIL_EVERY_MINUTES": str(config.collect_detail_every_minutes),
            "REREAD_MINUTES": str(config.collect_reread_minutes),
            "METRIC_DELAY_S": str(config.metric_delay_s),
            "POLL_EVERY_MINUTES": str(config.collect_poll_every_minutes),
            "TARGET_METRICS": ",".join(t.name for t in config.targets if t.metrics),
            "TAG_DISCOVERY": "true" if config.tag_discovery else "false",
            "DEFAULT_MODE": config.default_mode,
            "LIST_TARGETS_EVERY_S": "900",  # a warm process lists targets every 15 minutes, as the forecaster
        },
        "forecast": {
            "HISTORY_DAYS": str(config.forecast_history_days),
            "HORIZON_S": str(config.forecast_horizon_s),
            "SHARD_COUNT": str(config.forecast_shard_count),
            "REFIT_SPREAD_S": "86400",  # daily refits spread over the day by target name
            "MAX_REFITS_PER_RUN": "2000",
            "LIST_TARGETS_EVERY_S": "900",
        },
        "plan": {"HISTORY_WARMUP_S": "86400"},
        "act": {
            "LAMBDA_CALLS_PER_SECOND": repr(config.act_lambda_calls_per_second / ACT_CONCURRENCY),
            "LEASE_S": "120",
            "ROLLBACK_ALARM_NAMES": ",".join(config.rollback_alarm_names),
        },
        "react": {"ALARM_PREFIX": config.alarm_prefix},
        "rightsize": {"HORIZON_S": str(config.forecast_horizon_s)},
    }
    return {**common, **specific[name]}


class ForescaleFunctions(Construct):
    """The six functions with their roles, DLQs and log groups."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        state: StateTable,
        bus: events.IEventBus,
        functions_dir: Path = FUNCTIONS_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        missing = [
            str(functions_dir / name / "handler.py")
            for name in (*LIGHT_FUNCTIONS, "forecast")
            if not (functions_dir / name / "handler.py").is_file()
        ]
        if missing:
            raise FileNotFoundError(f"function handlers missing (each function needs handler.py): {missing}")
        self._functions_dir = functions_dir
        self._config = config
        self._state = state
        self._bus = bus
        stack = Stack.of(self)

        self.shared_layer = lambda_.LayerVersion(
            self,
            "SharedLibrary",
            code=lambda_.Code.from_asset(str(LAYER_DIR), exclude=LAYER_EXCLUDES),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="forescale shared library (domain, adapters, runtime contracts); pure Python",
        )
        powertools_arn = config.powertools_layer_arn or (
            f"arn:{Aws.PARTITION}:lambda:{stack.region}:017000801446:layer:"
            f"AWSLambdaPowertoolsPythonV3-python312-arm64:{config.powertools_layer_version}"
        )
        self.powertools_layer = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", powertools_arn)

        extra = {
            "collect": collect_statements(stack, config),
            "plan": plan_statements(),
            "act": act_statements(stack, config),
            "react": [],
            "rightsize": rightsize_statements(stack, config),
            "forecast": [],
        }
        self.by_name: dict[str, ForescaleFunction] = {}
        for name in LIGHT_FUNCTIONS:
            self.by_name[name] = self._build(name, extra[name], image=False)
        self.by_name["forecast"] = self._build("forecast", extra["forecast"], image=True)

    def __getitem__(self, name: str) -> ForescaleFunction:
        return self.by_name[name]

    # ------------------------------------------------------------------ builders

    def _build(self, name: str, statements: list[iam.PolicyStatement], *, image: bool) -> ForescaleFunction:
        config = self._config
        sizing = config.functions[name]
        title = name.capitalize()
        dlq = sqs.Queue(
            self,
            f"{title}Dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            dlq,
            "AwsSolutions-SQS3",
            f"This queue is itself the dead-letter queue of the {name} function (failed async invocations "
            "and EventBridge deliveries); cdk-nag only recognises DLQs of other SQS queues.",
        )
        log_group = logs.LogGroup(
            self,
            f"{title}Logs",
            retention=retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,  # logs are not the audit trail; the table is
        )
        role = iam.Role(
            self,
            f"{title}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"forescale {name}: least privilege, no managed policies",
        )
        # Only this function's own log group (CreateLogGroup is not needed: the group exists).
        role.add_to_policy(
            iam.PolicyStatement(
                sid="OwnLogGroup",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        if self._state.encryption_key is not None:
            self._state.encryption_key.grant(role, *KMS_TABLE_ACTIONS)
        added = [
            *table_statements(
                self._state.table.table_arn, self._state.index_arn, TABLE_ACCESS[name], name, self._config
            ),
            put_events_statement(self._bus.event_bus_arn),
            *statements,
        ]
        for statement in added:
            role.add_to_policy(statement)

        common: dict[str, Any] = {
            "memory_size": sizing.memory_mb,
            "timeout": Duration.seconds(sizing.timeout_s),
            "architecture": ARCHITECTURE,
            "tracing": lambda_.Tracing.ACTIVE,
            "logging_format": lambda_.LoggingFormat.JSON,
            "application_log_level_v2": lambda_.ApplicationLogLevel.INFO,
            "system_log_level_v2": lambda_.SystemLogLevel.WARN,
            "log_group": log_group,
            "role": role,
            "dead_letter_queue": dlq,
            "retry_attempts": ASYNC_RETRY_ATTEMPTS,
            "max_event_age": ASYNC_MAX_EVENT_AGE[name],
            "environment": environment(name, config, self._state.table.table_name, self._bus.event_bus_name),
            "description": f"forescale {name}",
        }
        function: lambda_.Function
        if image:
            function = lambda_.DockerImageFunction(
                self,
                title,
                code=lambda_.DockerImageCode.from_image_asset(
                    str(REPO_ROOT),
                    file=FORECAST_DOCKERFILE,
                    platform=ecr_assets.Platform.LINUX_ARM64,
                    # The repo root's .dockerignore (an allowlist) decides what enters the build context.
                ),
                reserved_concurrent_executions=config.forecast_max_parallel_shards,
                **common,
            )
        else:
            function = lambda_.Function(
                self,
                title,
                runtime=RUNTIME,
                handler=HANDLER,
                code=lambda_.Code.from_asset(str(self._functions_dir / name), exclude=ASSET_EXCLUDES),
                layers=[self.shared_layer, self.powertools_layer],
                reserved_concurrent_executions=ACT_CONCURRENCY if name == "act" else None,
                **common,
            )
        return ForescaleFunction(
            name=name, function=function, role=role, dlq=dlq, log_group=log_group, statements=tuple(added)
        )
