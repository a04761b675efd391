"""Forecast fan-out: a Step Functions Map over shard indexes 0..N-1 when one invocation cannot take every target.

The 5-minute schedule starts one execution; the Map invokes the forecaster once per shard with
`{"shard": i, "shard_count": N, "time": <execution start, epoch s>}` (`time` makes a retried shard
forecast the same moment, and keys its idempotency record). A failed shard is caught so the other shards
still finish; the forecaster's error alarm reports it.

Payloads stay small whatever the fleet (Step Functions allows 256 KB per state's input and output):
the items are shard ids, not target lists (each shard finds its targets by `crc32(name) mod N`);
each item's output keeps four counts of the forecaster's result, a failed item only the error
name, and the Map's output sums them. 1,000 shards × about 60 bytes stay far under 256 KB.
"""

from __future__ import annotations

from aws_cdk import CfnElement, Duration, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from forescale_infra.config import InfraConfig
from forescale_infra.functions import retention
from forescale_infra.nag import acknowledge

SHARD_OUTPUT = (
    "{% {'shard': $states.result.shard, 'refit': $states.result.refit + $states.result.refit_on_drift, "
    "'deferred': $states.result.deferred} %}"
)
FAILED_OUTPUT = "{% {'failed': $states.input.Error} %}"
CYCLE_OUTPUT = (
    "{% {'shards': $count($states.result), 'refit': $sum($states.result.refit), "
    "'deferred': $sum($states.result.deferred), 'failed': $count($states.result[failed])} %}"
)


class ForecastFanOut(Construct):
    """A Standard state machine: ListShards (Pass) → EachShard (Map, bounded parallelism) → Done."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, forecaster: lambda_.IFunction
    ) -> None:
        super().__init__(scope, construct_id)
        shard_count = config.forecast_shard_count
        list_shards = sfn.Pass(
            self,
            "ListShards",
            result=sfn.Result.from_object({"shards": list(range(shard_count))}),
        )
        invoke = tasks.LambdaInvoke(
            self,
            "ForecastShard",
            lambda_function=forecaster,
            payload_response_only=True,
            retry_on_service_exceptions=True,
            query_language=sfn.QueryLanguage.JSONATA,
            outputs=SHARD_OUTPUT,
        )
        invoke.add_catch(
            sfn.Pass(self, "ShardFailed", query_language=sfn.QueryLanguage.JSONATA, outputs=FAILED_OUTPUT),
            errors=["States.ALL"],
        )
        each_shard = sfn.Map(
            self,
            "EachShard",
            query_language=sfn.QueryLanguage.JSONATA,
            items=sfn.ProvideItems.jsonata("{% $states.input.shards %}"),
            max_concurrency=min(config.forecast_max_parallel_shards, shard_count),
            jsonata_item_selector=(
                "{% {'shard': $states.context.Map.Item.Value, "
                f"'shard_count': {shard_count}, "
                "'time': $floor($toMillis($states.context.Execution.StartTime) / 1000)} %}"
            ),
            outputs=CYCLE_OUTPUT,
        )
        each_shard.item_processor(invoke)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(list_shards.next(each_shard)),
            state_machine_type=sfn.StateMachineType.STANDARD,
            # A cycle must finish before the next one starts (the schedule is every 5 minutes by default).
            timeout=Duration.seconds(config.functions["forecast"].timeout_s + 45),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        self.shard_count = shard_count
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "Step Functions log delivery (logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, "
            "DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, "
            "DescribeLogGroups) and X-Ray (PutTraceSegments, PutTelemetryRecords, GetSamplingRules, "
            "GetSamplingTargets) have no resource-level permissions; AWS documents Resource '*' for them.",
        )
        # LambdaInvoke grants InvokeFunction on the function and on `<arn>:*` (its versions and aliases).
        function_resource = forecaster.node.default_child
        assert isinstance(function_resource, CfnElement)  # nosec B101  # runs at cdk synth only; narrows the type for mypy
        logical_id = Stack.of(self).resolve(function_resource.logical_id)
        acknowledge(
            self.state_machine,
            f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
            "The Map invokes only the forecaster; the ':*' suffix covers that one function's versions and "
            "aliases (added by the LambdaInvoke task's grant), no other function.",
        )
