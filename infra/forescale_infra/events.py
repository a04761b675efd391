"""Schedules and events: the custom bus, the schedule rules, the event routing, and CloudWatch alarm events.

Every rule target gets a dead-letter queue (the receiving function's own encrypted DLQ) and an explicit
retry policy, so an event EventBridge cannot deliver is kept, never dropped.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from forescale.runtime.models import DETAIL_TYPES, EVENT_SOURCE
from forescale_infra.config import InfraConfig
from forescale_infra.functions import ForescaleFunction, ForescaleFunctions

TARGET_RETRY_ATTEMPTS = 3
TARGET_MAX_EVENT_AGE = Duration.minutes(15)

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
        self._schedule(
            "ActSweep", schedules.act_sweep, functions["act"], "act: apply pending decisions, poll in-flight"
        )
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
            rule.add_target(self._target(functions[function_name]))
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

    @staticmethod
    def _target(function: ForescaleFunction) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            function.function,
            dead_letter_queue=function.dlq,
            retry_attempts=TARGET_RETRY_ATTEMPTS,
            max_event_age=TARGET_MAX_EVENT_AGE,
        )
