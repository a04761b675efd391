"""Template assertions on the synthesised stacks: counts, key properties, wiring, and the env contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from forescale.adapters.state import table_definition
from forescale.runtime.settings import (
    ActSettings,
    CollectSettings,
    ForecastSettings,
    FunctionSettings,
    PlanSettings,
    ReactSettings,
    RightsizeSettings,
)
from forescale_infra.config import ConfigError, InfraConfig
from forescale_infra.fanout import CYCLE_OUTPUT, FAILED_OUTPUT, SHARD_OUTPUT
from tests.infra.conftest import Synth, Synthesis, resolve_name

SETTINGS: dict[str, type[FunctionSettings]] = {
    "collect": CollectSettings,
    "forecast": ForecastSettings,
    "plan": PlanSettings,
    "act": ActSettings,
    "react": ReactSettings,
    "rightsize": RightsizeSettings,
}


def logical_id(synth: Synth, construct: Any) -> str:
    return str(synth.stack.resolve(construct.node.default_child.logical_id))


def function_resource(synth: Synth, name: str) -> dict[str, Any]:
    fn = synth.stack.functions[name].function
    resource: dict[str, Any] = synth.template["Resources"][logical_id(synth, fn)]
    return resource


# ---------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("which", "counts"),
    [
        (
            "default",
            {
                "AWS::Lambda::Function": 6,
                "AWS::Lambda::LayerVersion": 1,
                "AWS::IAM::Role": 6,
                "AWS::SQS::Queue": 7,  # a DLQ per function, and act's input queue
                "AWS::Lambda::EventSourceMapping": 1,
                "AWS::DynamoDB::Table": 1,
                "AWS::Events::EventBus": 1,
                "AWS::Events::Rule": 9,
                "AWS::CloudWatch::Alarm": 19,
                "AWS::CloudWatch::Dashboard": 1,
                "AWS::StepFunctions::StateMachine": 0,
                "AWS::Logs::LogGroup": 6,
            },
        ),
        (
            "fleet",
            {
                "AWS::Lambda::Function": 6,
                "AWS::IAM::Role": 8,  # + the state machine's, + EventBridge's role to start it
                "AWS::SQS::Queue": 8,  # + the fan-out target's DLQ
                "AWS::Events::Rule": 9,
                "AWS::CloudWatch::Alarm": 22,  # + its DLQ, failed and timed-out executions
                "AWS::StepFunctions::StateMachine": 1,
                "AWS::Logs::LogGroup": 7,
            },
        ),
    ],
)
def test_resource_counts(synthesis: Synthesis, which: str, counts: dict[str, int]) -> None:
    synth: Synth = getattr(synthesis, which)
    for type_name, expected in counts.items():
        synth.assertions.resource_count_is(type_name, expected)


# ---------------------------------------------------------------- state


def test_table_matches_the_key_design_of_the_state_store(default: Synth) -> None:
    (table,) = default.resources("AWS::DynamoDB::Table").values()
    props = table["Properties"]
    wanted = table_definition("ignored")
    assert props["KeySchema"] == wanted["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        wanted["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    assert props["GlobalSecondaryIndexes"] == wanted["GlobalSecondaryIndexes"]
    assert props["BillingMode"] == wanted["BillingMode"] == "PAY_PER_REQUEST"


def test_table_keeps_the_audit_trail(default: Synth) -> None:
    default.assertions.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
                    "DeletionProtectionEnabled": True,
                    "SSESpecification": {"SSEEnabled": True},
                }
            ),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_customer_key_encrypts_the_table_and_roles_get_only_named_kms_actions(fleet: Synth) -> None:
    key_arn = fleet.config.kms_key_arn
    fleet.assertions.has_resource_properties(
        "AWS::DynamoDB::Table",
        {"SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn}},
    )
    kms_statements = [
        s
        for policy in fleet.resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Resource"] == key_arn
    ]
    assert len(kms_statements) == 6  # one per function role
    for statement in kms_statements:
        assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]


# ---------------------------------------------------------------- functions


@pytest.mark.parametrize("name", ["collect", "plan", "act", "react", "rightsize"])
def test_light_functions_are_zip_python312_arm64_with_both_layers(default: Synth, name: str) -> None:
    props = function_resource(default, name)["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Handler"] == "handler.handler"
    assert props["Architectures"] == ["arm64"]
    layers = json.dumps(props["Layers"])
    assert len(props["Layers"]) == 2
    assert "017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:27" in layers
    assert logical_id(default, default.stack.functions.shared_layer) in layers


def test_forecaster_is_an_arm64_container_image(synthesis: Synthesis) -> None:
    default = synthesis.default
    props = function_resource(default, "forecast")["Properties"]
    assert props["PackageType"] == "Image"
    assert props["Architectures"] == ["arm64"]
    assert "Runtime" not in props and "Layers" not in props
    assets = json.loads((synthesis.outdir / "Forescale-default.assets.json").read_text())
    images = [a["source"] for a in assets["dockerImages"].values()]
    assert images and all(i["dockerFile"] == "functions/forecast/Dockerfile" for i in images)
    assert all(i["platform"] == "linux/arm64" for i in images)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_function_has_explicit_runtime_settings(default: Synth, name: str) -> None:
    props = function_resource(default, name)["Properties"]
    sizing = default.config.functions[name]
    assert props["MemorySize"] == sizing.memory_mb
    assert props["Timeout"] == sizing.timeout_s
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
    assert default.template["Resources"][log_group]["Properties"]["RetentionInDays"] == 30
    assert props["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0] == logical_id(
        default, default.stack.functions[name].dlq
    )
    assert props["Role"]["Fn::GetAtt"][0] == logical_id(default, default.stack.functions[name].role)


def test_act_is_bounded_and_forecast_bounded(default: Synth) -> None:
    assert function_resource(default, "act")["Properties"]["ReservedConcurrentExecutions"] == 2
    assert function_resource(default, "forecast")["Properties"]["ReservedConcurrentExecutions"] == 10
    for name in ("collect", "plan", "react", "rightsize"):
        assert "ReservedConcurrentExecutions" not in function_resource(default, name)["Properties"]


def test_failed_async_invocations_are_retried_then_kept(default: Synth) -> None:
    configs = default.resources("AWS::Lambda::EventInvokeConfig")
    assert len(configs) == 6
    for config in configs.values():
        assert config["Properties"]["MaximumRetryAttempts"] == 2
        assert 60 <= config["Properties"]["MaximumEventAgeInSeconds"] <= 21_600


@pytest.mark.parametrize("which", ["default", "fleet"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_environment_keys_equal_the_settings_model_fields(synthesis: Synthesis, which: str, name: str) -> None:
    """The contract between infra/ and functions/: no missing and no stray variables, and values parse."""
    synth: Synth = getattr(synthesis, which)
    env = function_resource(synth, name)["Properties"]["Environment"]["Variables"]
    model = SETTINGS[name]
    assert set(env) == set(model.model_fields)
    parsed = model.from_env({k: resolve_name(v) for k, v in env.items()})
    assert parsed.POWERTOOLS_SERVICE_NAME == "forescale"


def test_environment_values_follow_the_config(fleet: Synth) -> None:
    env = {
        name: function_resource(fleet, name)["Properties"]["Environment"]["Variables"]
        for name in ("collect", "forecast")
    }
    assert env["collect"]["TAG_DISCOVERY"] == "true"
    assert env["collect"]["DEFAULT_MODE"] == "dry-run"
    assert env["forecast"]["SHARD_COUNT"] == "3"
    table_ref = function_resource(fleet, "plan")["Properties"]["Environment"]["Variables"]["TABLE_NAME"]
    assert table_ref == {"Ref": logical_id(fleet, fleet.stack.state.table)}


# ---------------------------------------------------------------- events


def rule_targets(synth: Synth) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in synth.resources("AWS::Events::Rule").items()}


def test_schedule_expressions_drive_the_right_functions(default: Synth) -> None:
    expected = {
        "collect": "rate(1 minute)",
        "act": "rate(1 minute)",
        "forecast": "rate(5 minutes)",
        "rightsize": "rate(1 hour)",
    }
    seen: dict[str, str] = {}
    act_queue = {"Fn::GetAtt": [logical_id(default, default.stack.schedules.act_queue), "Arn"]}
    for props in rule_targets(default).values():
        if "ScheduleExpression" not in props:
            continue
        (target,) = props["Targets"]
        for name in expected:
            if target["Arn"] == {"Fn::GetAtt": [logical_id(default, default.stack.functions[name].function), "Arn"]}:
                seen[name] = props["ScheduleExpression"]
        if target["Arn"] == act_queue:  # act's sweep goes through its queue, like its decisions
            seen["act"] = props["ScheduleExpression"]
    assert seen == expected


def bus_routes(synth: Synth) -> dict[str, list[tuple[Any, list[str]]]]:
    """function → [(the rule's source pattern, its detail-types)] for the rules on forescale's bus."""
    bus = logical_id(synth, synth.stack.bus.bus)
    routes: dict[str, list[tuple[Any, list[str]]]] = {}
    for props in rule_targets(synth).values():
        if props.get("EventBusName") != {"Ref": bus}:
            continue
        (target,) = props["Targets"]
        receivers = {name: synth.stack.functions[name].function for name in ("collect", "plan", "react")}
        for name, receiver in [*receivers.items(), ("act", synth.stack.schedules.act_queue)]:
            if target["Arn"]["Fn::GetAtt"][0] == logical_id(synth, receiver):
                pattern = props["EventPattern"]
                routes.setdefault(name, []).append((pattern["source"], pattern["detail-type"]))
    return routes


def test_act_takes_its_queue_in_batches_with_partial_failures_and_bounded_pollers(default: Synth) -> None:
    """EventBridge → act's queue → act: batches, `ReportBatchItemFailures`, at most act's reserved
    concurrency of pollers (so no batch is throttled back to the queue), and a redrive to act's DLQ."""
    (mapping,) = default.resources("AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    act = function_resource(default, "act")["Properties"]
    queue_id = logical_id(default, default.stack.schedules.act_queue)
    assert props["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert props["FunctionName"] == {"Ref": logical_id(default, default.stack.functions["act"].function)}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] > 10 and 0 < props["MaximumBatchingWindowInSeconds"] <= 60
    assert props["ScalingConfig"]["MaximumConcurrency"] == act["ReservedConcurrentExecutions"] >= 2
    queue = default.resources("AWS::SQS::Queue")[queue_id]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * act["Timeout"] + props["MaximumBatchingWindowInSeconds"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {
        "Fn::GetAtt": [logical_id(default, default.stack.functions["act"].dlq), "Arn"]
    }
    assert redrive["maxReceiveCount"] >= 5
    # each act process paces its Lambda calls at the account's 15/s shared by the concurrent ones
    env = act["Environment"]["Variables"]
    assert float(env["LAMBDA_CALLS_PER_SECOND"]) * act["ReservedConcurrentExecutions"] <= 15.0


def test_custom_bus_routes_internal_events_only_from_forescale_and_demand_only_from_producers(default: Synth) -> None:
    # Given the default config (no demand_sources): DemandSample from any source but forescale's own,
    # and forescale's internal detail-types only from source "forescale".
    assert bus_routes(default) == {
        "collect": [([{"anything-but": ["forescale"]}], ["forescale.DemandSample"])],
        "plan": [(["forescale"], ["forescale.SamplesCollected", "forescale.ForecastReady"])],
        "act": [(["forescale"], ["forescale.DecisionMade"])],
        "react": [(["forescale"], ["forescale.DemandAboveForecast"])],
    }


def test_configured_demand_sources_are_the_only_sources_demand_is_routed_from(fleet: Synth) -> None:
    assert bus_routes(fleet)["collect"] == [
        (["com.example.checkout", "com.example.search"], ["forescale.DemandSample"])
    ]


@pytest.mark.parametrize("source", ["forescale", "aws.lambda", "bad source"])
def test_a_demand_source_that_is_forescales_or_awss_is_refused(source: str) -> None:
    with pytest.raises(ConfigError, match="demand_sources"):
        InfraConfig.load({"demand_sources": [source]}, Path("."))


def test_every_example_event_would_be_routed_by_the_deployed_rules(default: Synth) -> None:
    # The events/ fixtures are what producers and forescale send: each must match its rule's source.
    routes = bus_routes(default)
    for path in sorted((Path(__file__).resolve().parents[2] / "events").glob("*.json")):
        event = json.loads(path.read_text())
        if event["source"].startswith("aws.") or not any(
            event["detail-type"] in t for r in routes.values() for _, t in r
        ):
            continue  # schedules and alarms use the default bus; ActionApplied/Failed go to no function
        matching = [
            sources
            for rules in routes.values()
            for sources, types in rules
            if event["detail-type"] in types
            and (
                event["source"] in sources
                or (sources[0] == {"anything-but": ["forescale"]} and event["source"] != "forescale")
            )
        ]
        assert len(matching) == 1, path.name


def test_alarm_state_changes_of_forescale_alarms_go_to_react(default: Synth) -> None:
    default.assertions.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.cloudwatch"],
                "detail-type": ["CloudWatch Alarm State Change"],
                "detail": {"alarmName": [{"prefix": "forescale-"}], "state": {"value": ["ALARM"]}},
            },
            "Targets": [
                Match.object_like(
                    {"Arn": {"Fn::GetAtt": [logical_id(default, default.stack.functions["react"].function), "Arn"]}}
                )
            ],
        },
    )


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_every_rule_target_has_a_dlq_and_a_retry_policy(synthesis: Synthesis, which: str) -> None:
    synth: Synth = getattr(synthesis, which)
    queues = set(synth.resources("AWS::SQS::Queue"))
    policies = synth.resources("AWS::SQS::QueuePolicy")
    for props in rule_targets(synth).values():
        for target in props["Targets"]:
            dlq = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
            assert dlq in queues
            assert target["RetryPolicy"] == {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 900}
            # EventBridge may write to that DLQ (the queue policy names events.amazonaws.com).
            assert any(
                {"Ref": dlq} in p["Properties"]["Queues"] and "events.amazonaws.com" in json.dumps(p)
                for p in policies.values()
            )
        # a Lambda target's DLQ is the same queue as that function's own async DLQ
        for target in props["Targets"]:
            for name, fn in synth.stack.functions.by_name.items():
                if target["Arn"] == {"Fn::GetAtt": [logical_id(synth, fn.function), "Arn"]}:
                    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] == logical_id(synth, fn.dlq), name


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_every_queue_is_encrypted_and_ssl_only(synthesis: Synthesis, which: str) -> None:
    synth: Synth = getattr(synthesis, which)
    for queue in synth.resources("AWS::SQS::Queue").values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    policies = json.dumps(synth.resources("AWS::SQS::QueuePolicy"))
    assert policies.count('"aws:SecureTransport": "false"') == len(synth.resources("AWS::SQS::Queue"))


# ---------------------------------------------------------------- fan-out


def test_one_shard_schedule_invokes_the_forecaster_directly(default: Synth) -> None:
    default.assertions.resource_count_is("AWS::StepFunctions::StateMachine", 0)
    forecaster = logical_id(default, default.stack.functions["forecast"].function)
    forecast_rules = [p for p in rule_targets(default).values() if p.get("ScheduleExpression") == "rate(5 minutes)"]
    assert [t["Arn"] for p in forecast_rules for t in p["Targets"]] == [{"Fn::GetAtt": [forecaster, "Arn"]}]


def test_many_targets_fan_out_across_shards_with_a_map_state(fleet: Synth) -> None:
    assert fleet.config.forecast_shard_count == 3
    (machine_id, machine) = next(iter(fleet.resources("AWS::StepFunctions::StateMachine").items()))
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    definition = json.loads("".join(p if isinstance(p, str) else "ARN" for p in parts))
    assert definition["States"]["ListShards"]["Result"] == {"shards": [0, 1, 2]}
    each = definition["States"]["EachShard"]
    assert each["Type"] == "Map" and each["MaxConcurrency"] == 3
    assert "'shard': $states.context.Map.Item.Value" in each["ItemSelector"]
    assert "'shard_count': 3" in each["ItemSelector"] and "'time':" in each["ItemSelector"]
    shard_task = each["ItemProcessor"]["States"]["ForecastShard"]
    assert shard_task["Catch"][0]["Next"] == "ShardFailed"  # one failed shard does not stop the others
    # Small payloads whatever the fleet: counts per shard, summed by the Map (Step Functions: 256 KB).
    assert shard_task["Output"] == SHARD_OUTPUT and "models" not in shard_task["Output"]
    assert each["ItemProcessor"]["States"]["ShardFailed"]["Output"] == FAILED_OUTPUT
    assert each["Output"] == CYCLE_OUTPUT
    assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}
    assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
    # the 5-minute schedule starts the state machine, with a DLQ and retries like every target
    (rule,) = [p for p in rule_targets(fleet).values() if p.get("ScheduleExpression") == "rate(5 minutes)"]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": machine_id}
    assert "DeadLetterConfig" in target and "RetryPolicy" in target


# ---------------------------------------------------------------- alarms and dashboard


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_alarms_cover_every_dlq_and_every_function(synthesis: Synthesis, which: str) -> None:
    synth: Synth = getattr(synthesis, which)
    alarms = list(synth.resources("AWS::CloudWatch::Alarm").values())
    watched_queues = {
        d["Value"]["Fn::GetAtt"][0]
        for a in alarms
        if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        for d in a["Properties"]["Dimensions"]
    }
    aged_queues = {
        d["Value"]["Fn::GetAtt"][0]
        for a in alarms
        if a["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"
        for d in a["Properties"]["Dimensions"]
    }
    # every DLQ alarms on depth; act's input queue, which holds messages normally, on its oldest's age
    assert aged_queues == {logical_id(synth, synth.stack.schedules.act_queue)}
    assert watched_queues | aged_queues == set(synth.resources("AWS::SQS::Queue"))
    assert not watched_queues & aged_queues
    for metric in ("Errors", "Throttles"):
        watched = {
            d["Value"]["Ref"]
            for a in alarms
            if a["Properties"].get("Namespace") == "AWS/Lambda" and a["Properties"]["MetricName"] == metric
            for d in a["Properties"]["Dimensions"]
        }
        assert watched == set(synth.resources("AWS::Lambda::Function")), metric
    # forescale's own alarms can never be routed to react as if they were a target's alarm
    for alarm in alarms:
        assert alarm["Properties"]["AlarmName"].startswith("ops-")
        assert not alarm["Properties"]["AlarmName"].startswith(synth.config.alarm_prefix)


def test_alarms_notify_the_configured_topic(fleet: Synth) -> None:
    for alarm in fleet.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [fleet.config.alarm_topic_arn]


def test_dashboard_shows_each_declared_target(fleet: Synth) -> None:
    (dashboard,) = fleet.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    # Every target's demand from AWS's own Invocations; the forecast only for the opted-in one.
    assert "checkout: demand vs forecast (req/s)" in body
    for target in ("search", "llm"):
        assert f"{target}: demand (req/s)" in body
    assert body.count('\\"ForecastRps\\"') == body.count('\\"ForecastUpperRps\\"') == 1
    assert '\\"Capacity\\"' not in body  # never emitted: not plotted
    assert "ProvisionedConcurrencySpilloverInvocations" in body and "checkout:live" in body
    assert "Decisions" in body and "Errors" in body
    assert "{AWS/Lambda,FunctionName,Resource}" in body  # fleet-wide spill, discovered targets included


def test_per_target_metrics_are_opt_in_and_each_plotted_one_is_emitted(fleet: Synth) -> None:
    # A custom metric is $0.30 a month: only opted-in targets' are emitted (collect's TARGET_METRICS),
    # and the dashboard plots no forescale per-target metric that collect does not emit.
    from pathlib import Path

    from forescale_infra.observability import TARGET_METRICS

    collect_env = function_resource(fleet, "collect")["Properties"]["Environment"]["Variables"]
    assert collect_env["TARGET_METRICS"] == "checkout"
    handler = (Path(__file__).resolve().parents[2] / "functions" / "collect" / "handler.py").read_text()
    assert all(f'"{m}"' in handler for m in TARGET_METRICS)
    assert "Capacity" not in TARGET_METRICS


def test_default_template_is_environment_agnostic(default: Synth) -> None:
    text = json.dumps(default.template)
    assert "123456789012" not in text
    assert '"Ref": "AWS::Region"' in text and '"Ref": "AWS::AccountId"' in text
