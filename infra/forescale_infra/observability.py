"""Alarms and dashboard: forescale watching itself, and the operator watching the targets.

Ops alarm names start with `ops-` so they can never match the `alarm_prefix` that routes alarm events to
react (config validation forbids an alarm_prefix starting with `ops-`).

Custom metrics come from Powertools Metrics (EMF) in namespace `forescale`, which always adds the
dimension `service=forescale`. A custom metric costs $0.30 a month, so forescale's own metrics are
fleet-level (`FLEET_METRICS`, a fixed number whatever the fleet) and per-target series are opt-in:
collect emits them, with `target=<name>`, only for declared targets with `metrics: true`
(`TARGET_METRICS` names them; 3 metrics, $0.90 a target-month, more than forescale's whole running
cost target of $0.50):

- `DemandRps`: observed requests/s for the newest collected minute;
- `ForecastRps` / `ForecastUpperRps`: the forecast's median and upper band for that minute.

Every declared target's row plots AWS's own metrics (free to graph): demand from Invocations (as
req/s) and spill/throttles, or latency/5XX for an endpoint; an opted-in target adds the forecast.
Capacity per target is in the audit trail (`forescale status`, the decisions), not a metric.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from forescale_infra.config import InfraConfig, ManagedTarget
from forescale_infra.functions import ForescaleFunctions

NAMESPACE = "forescale"
SERVICE_DIMENSION = {"service": "forescale"}
WORK_QUEUE_AGE_S = 300  # act's queue: decisions older than 5 minutes mean act cannot keep up
TARGET_METRICS = ("DemandRps", "ForecastRps", "ForecastUpperRps")  # opt-in, see the module docstring
FLEET_METRICS = ("Decisions", "CapacityChanges", "ReactScaleOuts", "Refits", "TargetsMissingData", "InvalidEvents")
MAX_TARGET_ROWS = 50  # beyond this the fleet widgets (SEARCH by target) stay readable, single rows do not
ALARM_PERIOD = Duration.minutes(5)


def ops_alarm_name(stack_name: str, what: str) -> str:
    return f"ops-{stack_name}-{what}"


def minute_metric(namespace: str, name: str, dims: dict[str, str], statistic: str = "Sum") -> cw.Metric:
    return cw.Metric(
        namespace=namespace, metric_name=name, dimensions_map=dims, statistic=statistic, period=Duration.minutes(1)
    )


def target_metric(name: str, target: str, statistic: str = "Average") -> cw.Metric:
    return minute_metric(NAMESPACE, name, {**SERVICE_DIMENSION, "target": target}, statistic)


class AlarmsAndDashboard(Construct):
    """DLQ depth, function errors and throttles, fan-out failures; one dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        functions: ForescaleFunctions,
        fan_out: sfn.StateMachine | None,
        extra_dlqs: Sequence[tuple[str, sqs.IQueue]] = (),
        work_queues: Sequence[tuple[str, sqs.IQueue]] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        stack_name = config.stack_name
        topic = sns.Topic.from_topic_arn(self, "AlarmTopic", config.alarm_topic_arn) if config.alarm_topic_arn else None
        self.alarms: list[cw.Alarm] = []

        def alarm(
            alarm_id: str, what: str, metric: cw.IMetric, description: str, periods: int = 1, threshold: float = 1
        ) -> cw.Alarm:
            created = cw.Alarm(
                self,
                alarm_id,
                alarm_name=ops_alarm_name(stack_name, what),
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            if topic is not None:
                created.add_alarm_action(cw_actions.SnsAction(topic))
            self.alarms.append(created)
            return created

        dlqs: list[tuple[str, sqs.IQueue]] = [(name, f.dlq) for name, f in functions.by_name.items()]
        dlqs += list(extra_dlqs)
        for name, queue in dlqs:
            alarm(
                f"{name.capitalize()}DlqDepth",
                f"{name}-dlq-depth",
                queue.metric_approximate_number_of_messages_visible(period=ALARM_PERIOD, statistic="Maximum"),
                f"{name}: events or invocations failed for good and wait in its DLQ; inspect and redrive",
            )
        for name, queue in work_queues:
            # A work queue holds messages normally; one whose oldest waits WORK_QUEUE_AGE_S is not drained.
            alarm(
                f"{name.capitalize()}QueueAge",
                f"{name}-queue-age",
                queue.metric_approximate_age_of_oldest_message(period=ALARM_PERIOD, statistic="Maximum"),
                f"{name}: its input queue's oldest record has waited {WORK_QUEUE_AGE_S} s or more",
                threshold=WORK_QUEUE_AGE_S,
            )
        for name, f in functions.by_name.items():
            alarm(
                f"{name.capitalize()}Errors",
                f"{name}-errors",
                f.function.metric_errors(period=ALARM_PERIOD, statistic="Sum"),
                f"{name}: the function raised errors",
            )
            # A burst of throttles can be normal (act's reserved concurrency bounds its sweeps); 15 minutes
            # of throttling in a row means it cannot keep up.
            alarm(
                f"{name.capitalize()}Throttles",
                f"{name}-throttles",
                f.function.metric_throttles(period=ALARM_PERIOD, statistic="Sum"),
                f"{name}: throttled in three consecutive 5-minute periods",
                periods=3,
            )
        if fan_out is not None:
            alarm(
                "FanOutFailed",
                "forecast-fanout-failed",
                fan_out.metric_failed(period=ALARM_PERIOD, statistic="Sum"),
                "forecast fan-out: an execution failed",
            )
            alarm(
                "FanOutTimedOut",
                "forecast-fanout-timed-out",
                fan_out.metric_timed_out(period=ALARM_PERIOD, statistic="Sum"),
                "forecast fan-out: a cycle ran longer than its timeout (raise the shard count or the timeout)",
            )

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{stack_name}-overview",
            default_interval=Duration.hours(6),
        )
        self._fleet_rows(functions, dlqs)
        for target in config.targets[:MAX_TARGET_ROWS]:
            self._target_row(target)

    # ------------------------------------------------------------------ dashboard rows

    def _fleet_rows(self, functions: ForescaleFunctions, dlqs: Sequence[tuple[str, sqs.IQueue]]) -> None:
        region = Stack.of(self).region
        opted_in = cw.MathExpression(
            expression=f"SEARCH('{{{NAMESPACE},service,target}} MetricName=\"DemandRps\"', 'Average', 60)",
            label="DemandRps",
            period=Duration.minutes(1),
            search_region=region,
        )
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown="# forescale\nPer-target demand (AWS metrics; the forecast for targets with `metrics: "
                "true`) below; fleet decisions, spill proxies (react scale-outs, missing data) and errors here. "
                "Capacities per target: `forescale status` and the decisions.",
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Demand of opted-in targets (req/s)", left=[opted_in], width=24),
        )
        fleet = [
            cw.Metric(
                namespace=NAMESPACE,
                metric_name=m,
                dimensions_map=SERVICE_DIMENSION,
                statistic="Sum",
                period=Duration.minutes(5),
            )
            for m in FLEET_METRICS
        ]
        # Spill: invocations that found no provisioned environment, for every alias/version in the region.
        spill = cw.MathExpression(
            expression="SEARCH('{AWS/Lambda,FunctionName,Resource} "
            "MetricName=\"ProvisionedConcurrencySpilloverInvocations\"', 'Sum', 60)",
            label="spill",
            period=Duration.minutes(1),
            search_region=region,
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Decisions and capacity changes", left=fleet[:2], width=6),
            cw.GraphWidget(title="Provisioned-concurrency spill (invocations)", left=[spill], width=6),
            cw.GraphWidget(title="React scale-outs, refits, targets missing data", left=fleet[2:5], width=6),
            cw.GraphWidget(title="Invalid events", left=fleet[5:], width=6),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Function errors",
                left=[
                    f.function.metric_errors(label=n, period=Duration.minutes(5)) for n, f in functions.by_name.items()
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Function throttles",
                left=[
                    f.function.metric_throttles(label=n, period=Duration.minutes(5))
                    for n, f in functions.by_name.items()
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="DLQ depth",
                left=[
                    q.metric_approximate_number_of_messages_visible(label=n, period=Duration.minutes(5))
                    for n, q in dlqs
                ],
                width=8,
            ),
        )

    def _target_row(self, target: ManagedTarget) -> None:
        if target.kind.is_lambda and target.function_name:
            namespace = "AWS/Lambda"
            dims = {"FunctionName": target.function_name}
            if target.qualifier:
                dims["Resource"] = f"{target.function_name}:{target.qualifier}"
        else:
            namespace = "AWS/SageMaker"
            dims = {"EndpointName": str(target.endpoint_name), "VariantName": str(target.variant_name)}
        # Demand from AWS's own Invocations (free to graph), as req/s like forescale's samples.
        left: list[cw.IMetric] = [
            cw.MathExpression(
                expression="invocations / 60",
                using_metrics={"invocations": minute_metric(namespace, "Invocations", dims)},
                label="demand (req/s)",
                period=Duration.minutes(1),
            )
        ]
        if target.metrics:
            left += [target_metric("ForecastRps", target.name), target_metric("ForecastUpperRps", target.name)]
        widgets: list[cw.IWidget] = [
            cw.GraphWidget(
                title=f"{target.name}: demand" + (" vs forecast" if target.metrics else "") + " (req/s)",
                left=left,
                width=16,
            )
        ]
        if target.kind.is_lambda and target.function_name:
            spill = minute_metric("AWS/Lambda", "ProvisionedConcurrencySpilloverInvocations", dims)
            throttles = minute_metric("AWS/Lambda", "Throttles", dims)
            widgets.append(
                cw.GraphWidget(title=f"{target.name}: spill and throttles", left=[spill, throttles], width=8)
            )
        else:
            latency = minute_metric("AWS/SageMaker", "ModelLatency", dims, "p99")
            errors = minute_metric("AWS/SageMaker", "Invocation5XXErrors", dims)
            widgets.append(
                cw.GraphWidget(
                    title=f"{target.name}: p99 latency (µs) and 5XX", left=[latency], right=[errors], width=8
                )
            )
        self.dashboard.add_widgets(*widgets)
