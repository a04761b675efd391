"""Schedules and events: the custom bus, the schedule rules, the event routing, and CloudWatch alarm events.

Every rule target gets a dead-letter queue (the receiving function's own encrypted DLQ) and an explicit
retry policy, so an event EventBridge cannot deliver is kept, never dropped.

act is fed through an SQS queue (EventBridge → queue → act, in batches) rather than invoked once per
event: its DecisionMade events and its sweep schedule both go to the queue, whose event source hands
act up to `ACT_BATCH_SIZE` records at a time after at most `ACT_BATCH_WINDOW` of gathering, with
partial batch responses (a record that does not parse is retried, then kept in act's DLQ). The event
source's maximum concurrency equals act's reserved concurrency (functions.ACT_CONCURRENCY), so SQS
never hands over a batch that Lambda would throttle back to the queue (AWS: "maximum concurrency"
for SQS event sources, which replaces reserved concurrency as the way to cap pollers).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from forescale.runtime.models import DETAIL_TYPES, EVENT_SOURCE
from forescale_infra.config import InfraConfig
from forescale_infra.functions import ACT_CONCURRENCY, ForescaleFunction, ForescaleFunctions

TARGET_RETRY_ATTEMPTS = 3
TARGET_MAX_EVENT_AGE = Duration.minutes(15)
# act's batches: a window gathers a minute's decisions of a large fleet into a few invocations; an
# invocation stops starting new decisions 10 s before its timeout and leaves the rest in the open-work
# index (nothing is lost), so the batch size only bounds the payload (about 2.5 KB a record, ≪ 6 MB).
ACT_BATCH_SIZE = 500
ACT_BATCH_WINDOW = Duration.seconds(20)
ACT_MAX_RECEIVES = 5  # deliveries of one record before it is moved to act's DLQ

# The event applications push (from their own sources) and the function it drives.
PRODUCER_ROUTE = ("collect", "forescale.DemandSample")
# forescale's own events (source "forescale" only) and the function each one drives.
ROUTES: dict[str, tuple[str, ...]] = {
    "plan": ("forescale.SamplesCollected", "forescale.ForecastReady"),
    "act": ("forescale.DecisionMade",),
    "react": ("forescale.DemandAboveForecast",),
}


class ForescaleBus(Construct):
    """The custom bus that carries forescale's own events (and applications' DemandSample events)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=config.event_bus_name)


class SchedulesAndEvents(Construct):
    """Schedule rules (default bus), routing rules (custom bus) and the alarm-state rule (default bus)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        bus: events.IEventBus,
        functions: ForescaleFunctions,
        fan_out: sfn.IStateMachine | None,
        fan_out_dlq: sqs.IQueue | None,
    ) -> None:
        super().__init__(scope, construct_id)
        unknown = sorted({d for types in ROUTES.values() for d in types} - set(DETAIL_TYPES))
        if PRODUCER_ROUTE[1] not in DETAIL_TYPES or any(PRODUCER_ROUTE[1] in t for t in ROUTES.values()):
            raise ValueError(f"{PRODUCER_ROUTE[1]} must be a runtime detail-type routed from producers only")
        if unknown:
            raise ValueError(f"routes name detail-types the runtime does not define: {unknown}")
        schedules = config.schedules
        self.rules: dict[str, events.Rule] = {}

        self._schedule(
            "CollectSchedule", schedules.collect, functions["collect"], "collect: read every target's demand"
        )
        self.act_queue = self._act_queue(functions["act"])
        act_sweep = events.Rule(
            self,
            "ActSweep",
            schedule=events.Schedule.expression(schedules.act_sweep),
            description="act: apply pending decisions, poll in-flight (through act's queue)",
        )
        act_sweep.add_target(self._queue_target(functions["act"]))
        self.rules["ActSweep"] = act_sweep
        self._schedule("RightsizeSchedule", schedules.rightsize, functions["rightsize"], "rightsize: SageMaker types")
        forecast_rule = events.Rule(
            self,
            "ForecastSchedule",
            schedule=events.Schedule.expression(schedules.forecast),
            description=f"forecast: {config.forecast_shard_count} shard(s) of ≤ {config.forecast_shard_size} targets",
        )
        if fan_out is not None:
            if fan_out_dlq is None:
                raise ValueError("the fan-out state machine needs a DLQ for its EventBridge target")
            forecast_rule.add_target(
                targets.SfnStateMachine(
                    fan_out,
                    dead_letter_queue=fan_out_dlq,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    max_event_age=TARGET_MAX_EVENT_AGE,
                )
            )
        else:
            # One shard: the forecaster takes the scheduled event itself (shard 0 of SHARD_COUNT=1).
            forecast_rule.add_target(self._target(functions["forecast"]))
        self.rules["ForecastSchedule"] = forecast_rule

        for function_name, detail_types in ROUTES.items():
            rule_id = "Route" + "".join(d.split(".", 1)[1] for d in detail_types)
            rule = events.Rule(
                self,
                rule_id,
                event_bus=bus,
                event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=list(detail_types)),
                description=f"{', '.join(detail_types)} → {function_name}",
            )
            queued = function_name == "act"
            rule.add_target(
                self._queue_target(functions[function_name]) if queued else self._target(functions[function_name])
            )
            self.rules[rule_id] = rule

        # Applications' demand: only that detail-type, only from producers' sources (never forescale's).
        function_name, detail_type = PRODUCER_ROUTE
        producers = list(config.demand_sources) or events.Match.anything_but(EVENT_SOURCE)
        rule_id = "Route" + detail_type.split(".", 1)[1]
        rule = events.Rule(
            self,
            rule_id,
            event_bus=bus,
            event_pattern=events.EventPattern(source=producers, detail_type=[detail_type]),
            description=f"{detail_type} from applications → {function_name}",
        )
        rule.add_target(self._target(functions[function_name]))
        self.rules[rule_id] = rule

        # react: CloudWatch alarm state changes (default bus) of the alarms the operator named for forescale.
        alarm_rule = events.Rule(
            self,
            "AlarmStateChange",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={
                    "alarmName": [{"prefix": config.alarm_prefix}],
                    "state": {"value": ["ALARM"]},
                },
            ),
            description=f"alarms named {config.alarm_prefix}* entering ALARM → react (scale out now)",
        )
        alarm_rule.add_target(self._target(functions["react"]))
        self.rules["AlarmStateChange"] = alarm_rule

    def _schedule(self, rule_id: str, expression: str, function: ForescaleFunction, description: str) -> None:
        rule = events.Rule(self, rule_id, schedule=events.Schedule.expression(expression), description=description)
        rule.add_target(self._target(function))
        self.rules[rule_id] = rule

    def _act_queue(self, act: ForescaleFunction) -> sqs.Queue:
        """act's input queue and its event source (batches, partial batch responses, bounded pollers)."""
        timeout_s = int(act.function.timeout.to_seconds()) if act.function.timeout else 55
        queue = sqs.Queue(
            self,
            "ActQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # AWS: at least six times the function's timeout, plus the batching window.
            visibility_timeout=Duration.seconds(6 * timeout_s + int(ACT_BATCH_WINDOW.to_seconds())),
            retention_period=Duration.days(1),  # shorter than the DLQ's 14 days: a redriven record keeps its age
            dead_letter_queue=sqs.DeadLetterQueue(queue=act.dlq, max_receive_count=ACT_MAX_RECEIVES),
        )
        act.function.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=ACT_BATCH_SIZE,
                max_batching_window=ACT_BATCH_WINDOW,
                report_batch_item_failures=True,
                max_concurrency=ACT_CONCURRENCY,
            )
        )
        return queue

    def _queue_target(self, act: ForescaleFunction) -> targets.SqsQueue:
        return targets.SqsQueue(
            self.act_queue,
            dead_letter_queue=act.dlq,
            retry_attempts=TARGET_RETRY_ATTEMPTS,
            max_event_age=TARGET_MAX_EVENT_AGE,
        )

    @staticmethod
    def _target(function: ForescaleFunction) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            function.function,
            dead_letter_queue=function.dlq,
            retry_attempts=TARGET_RETRY_ATTEMPTS,
            max_event_age=TARGET_MAX_EVENT_AGE,
        )
