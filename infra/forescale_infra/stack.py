"""The forescale stack: composes one construct per concern, and records every nag acknowledgement it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, Environment, Stack, Tags, Token
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from forescale_infra.config import InfraConfig
from forescale_infra.events import ForescaleBus, SchedulesAndEvents
from forescale_infra.fanout import ForecastFanOut
from forescale_infra.functions import FUNCTIONS_DIR, ForescaleFunctions
from forescale_infra.nag import acknowledge
from forescale_infra.observability import AlarmsAndDashboard
from forescale_infra.permissions import STAR_RESOURCE_ACTIONS, wildcard_reason, wildcard_resources
from forescale_infra.state import StateTable


class ForescaleStack(Stack):
    """State, functions, schedules and events, forecast fan-out (when needed), alarms and dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        functions_dir: Path = FUNCTIONS_DIR,
        **kwargs: Any,
    ) -> None:
        env = Environment(account=config.account, region=config.region) if config.account or config.region else None
        super().__init__(
            scope,
            construct_id,
            stack_name=config.stack_name,
            env=env,
            description="forescale: predictive capacity for Lambda concurrency and SageMaker endpoints",
            **kwargs,
        )
        self.config = config
        Tags.of(self).add("forescale:stack", config.stack_name)

        self.state = StateTable(self, "State", config=config)
        self.bus = ForescaleBus(self, "Events", config=config)
        self.functions = ForescaleFunctions(
            self, "Functions", config=config, state=self.state, bus=self.bus.bus, functions_dir=functions_dir
        )

        self.fan_out: ForecastFanOut | None = None
        fan_out_dlq: sqs.Queue | None = None
        if config.fan_out:
            self.fan_out = ForecastFanOut(
                self, "ForecastFanOut", config=config, forecaster=self.functions["forecast"].function
            )
            fan_out_dlq = sqs.Queue(
                self,
                "ForecastFanOutDlq",
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                retention_period=Duration.days(14),
            )
            acknowledge(
                fan_out_dlq,
                "AwsSolutions-SQS3",
                "This queue is itself the dead-letter queue of the forecast schedule's Step Functions target; "
                "cdk-nag only recognises DLQs of other SQS queues.",
            )

        self.schedules = SchedulesAndEvents(
            self,
            "Schedules",
            config=config,
            bus=self.bus.bus,
            functions=self.functions,
            fan_out=self.fan_out.state_machine if self.fan_out else None,
            fan_out_dlq=fan_out_dlq,
        )
        self.observability = AlarmsAndDashboard(
            self,
            "Observability",
            config=config,
            functions=self.functions,
            fan_out=self.fan_out.state_machine if self.fan_out else None,
            extra_dlqs=[("forecast-fanout", fan_out_dlq)] if fan_out_dlq is not None else [],
            work_queues=[("act", self.schedules.act_queue)],
        )
        self._acknowledge_function_findings()
        self._outputs()

    def _acknowledge_function_findings(self) -> None:
        for name, fn in self.functions.by_name.items():
            star_actions = fn.star_resource_actions
            unlisted = [a for a in star_actions if a not in STAR_RESOURCE_ACTIONS]
            if unlisted:
                raise ValueError(f"{name}'s role uses Resource '*' for {unlisted}, which is not allowlisted")
            acknowledge(
                fn.role,
                "AwsSolutions-IAM5[Resource::*]",
                f"{name}: Resource '*' only for actions without resource-level permissions in the IAM service "
                f"authorization reference: {'; '.join(f'{a} ({STAR_RESOURCE_ACTIONS[a]})' for a in star_actions)}.",
            )
            for resource in wildcard_resources(fn.statements):
                rest, reason = wildcard_reason(resource)
                acknowledge(fn.role, f"AwsSolutions-IAM5[Resource::{self._nag_arn(resource, rest)}]", reason)
            if fn.function.runtime.name == "python3.12":
                acknowledge(
                    fn.function,
                    "AwsSolutions-L1",
                    "Python 3.12 is deliberate: the AWS-managed Powertools layer (python312 build) and the "
                    "forecaster's base image public.ecr.aws/lambda/python:3.12 are pinned to it; moving to a "
                    "newer runtime is a tested upgrade of all three together.",
                )

    def _nag_arn(self, resource: str, rest: str) -> str:
        """How cdk-nag prints an ARN built by permissions._arn: pseudo parameters as <AWS::Name>."""
        service = resource.split(":", 3)[2]
        region = "<AWS::Region>" if Token.is_unresolved(self.region) else self.region
        account = "<AWS::AccountId>" if Token.is_unresolved(self.account) else self.account
        return f"arn:<AWS::Partition>:{service}:{region}:{account}:{rest}"

    def _outputs(self) -> None:
        CfnOutput(self, "TableName", value=self.state.table.table_name, description="FORESCALE_TABLE for the CLI")
        CfnOutput(self, "EventBusName", value=self.bus.bus.event_bus_name, description="where DemandSample goes")
        CfnOutput(self, "DashboardName", value=self.observability.dashboard.dashboard_name)
        CfnOutput(self, "ForecastShards", value=str(self.config.forecast_shard_count))
