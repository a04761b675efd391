"""Every IAM statement in both templates, parsed: least privilege as checkable rules."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import pytest

from forescale_infra.permissions import (
    AUTOSCALING_MUTATING,
    LAMBDA_MUTATING,
    MANAGED_RESOURCE_MUTATING,
    STAR_RESOURCE_ACTIONS,
)
from tests.infra.conftest import Synth, Synthesis

# AWS documents Resource "*" for Step Functions' log delivery and X-Ray APIs (no resource-level permissions).
STATE_MACHINE_STAR_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}
READ_ONLY_VERBS = ("Get", "List", "Describe", "BatchGet", "Query")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(synth: Synth) -> list[tuple[str, dict[str, Any]]]:
    """(role logical id, statement) for every Allow statement of every policy in the template."""
    found: list[tuple[str, dict[str, Any]]] = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                found.append((role["Ref"], statement))
    for role_id, role in synth.resources("AWS::IAM::Role").items():
        for inline in role["Properties"].get("Policies", []):
            found.extend((role_id, s) for s in inline["PolicyDocument"]["Statement"])
        assert "ManagedPolicyArns" not in role["Properties"], f"{role_id} has managed policies"
    assert all(s.get("Effect") == "Allow" for _, s in found)
    return found


def role_of(synth: Synth, name: str) -> str:
    return str(synth.stack.resolve(synth.stack.functions[name].role.node.default_child.logical_id))


def is_mutating(action: str) -> bool:
    verb = action.split(":", 1)[1]
    return not verb.startswith(READ_ONLY_VERBS)


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_no_wildcard_actions_anywhere(synthesis: Synthesis, which: str) -> None:
    for role, statement in statements(getattr(synthesis, which)):
        for action in as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), (role, action)


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_resource_star_only_for_allowlisted_actions_without_resource_level_permissions(
    synthesis: Synthesis, which: str
) -> None:
    synth: Synth = getattr(synthesis, which)
    allowed = set(STAR_RESOURCE_ACTIONS) | STATE_MACHINE_STAR_ACTIONS
    for role, statement in statements(synth):
        if "*" in as_list(statement["Resource"]):
            actions = set(as_list(statement["Action"]))
            assert actions <= allowed, (role, sorted(actions - allowed))
            # no action that changes a managed resource or forescale's state is ever on "*"
            assert not actions & set(MANAGED_RESOURCE_MUTATING)
            assert not any(a.startswith(("dynamodb:", "events:", "sqs:", "sagemaker:Update")) for a in actions)
            assert (
                not {a for a in actions if is_mutating(a)}
                - STATE_MACHINE_STAR_ACTIONS
                - {
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                }
            ), role


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_only_act_holds_mutating_actions_on_managed_resources(synthesis: Synthesis, which: str) -> None:
    synth: Synth = getattr(synthesis, which)
    act = role_of(synth, "act")
    holders = {
        role
        for role, statement in statements(synth)
        if set(as_list(statement["Action"])) & set(MANAGED_RESOURCE_MUTATING)
    }
    assert holders == {act}


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_mutating_actions_are_gated_by_the_managed_tag_or_narrowed(synthesis: Synthesis, which: str) -> None:
    synth: Synth = getattr(synthesis, which)
    seen: set[str] = set()
    for _, statement in statements(synth):
        actions = set(as_list(statement["Action"])) & set(MANAGED_RESOURCE_MUTATING)
        if not actions:
            continue
        seen |= actions
        conditions = statement.get("Condition", {}).get("StringEquals", {})
        if actions & set(AUTOSCALING_MUTATING):
            # no tag key exists for these: namespace and dimension narrow them, plus the ARN pattern
            assert conditions["application-autoscaling:service-namespace"] == ["lambda", "sagemaker"]
            assert set(conditions["application-autoscaling:scalable-dimension"]) == {
                "lambda:function:ProvisionedConcurrency",
                "sagemaker:variant:DesiredInstanceCount",
            }
            assert all("scalable-target/" in json.dumps(r) for r in as_list(statement["Resource"]))
        elif actions & {"sagemaker:CreateEndpointConfig", "sagemaker:AddTags"}:
            assert conditions == {"aws:RequestTag/forescale:managed": "true"}
            assert all("endpoint-config/forescale-*" in json.dumps(r) for r in as_list(statement["Resource"]))
        else:
            assert conditions == {"aws:ResourceTag/forescale:managed": "true"}, sorted(actions)
    assert seen == set(MANAGED_RESOURCE_MUTATING)


def test_declared_targets_without_discovery_narrow_lambda_resources_to_those_functions() -> None:
    """Pure statement building (no synthesis): the ARNs name exactly the declared functions."""
    from aws_cdk import App, Stack

    from forescale_infra.config import InfraConfig
    from forescale_infra.permissions import act_statements

    config = InfraConfig.model_validate(
        {"targets": [{"name": "a", "kind": "lambda-provisioned", "function_name": "api", "qualifier": "live"}]}
    )
    stack = Stack(App(), "S")
    rendered = [stack.resolve(s.to_statement_json()) for s in act_statements(stack, config)]
    lambda_resources = {
        json.dumps(r)
        for s in rendered
        if set(as_list(s["Action"])) & set(LAMBDA_MUTATING)
        for r in as_list(s["Resource"])
    }
    assert len(lambda_resources) == 2
    assert all(":function:api" in r for r in lambda_resources)
    # no SageMaker permissions at all when only Lambda targets are declared
    assert not any(a.startswith("sagemaker:") for s in rendered for a in as_list(s["Action"]))


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_table_access_is_item_level_on_the_table_and_its_one_index(synthesis: Synthesis, which: str) -> None:
    synth: Synth = getattr(synthesis, which)
    table = str(synth.stack.resolve(synth.stack.state.table.node.default_child.logical_id))
    for _, statement in statements(synth):
        actions = [a for a in as_list(statement["Action"]) if a.startswith("dynamodb:")]
        if not actions:
            continue
        assert "dynamodb:Scan" not in actions and not any("Table" in a for a in actions)
        resources = json.dumps(statement["Resource"])
        assert table in resources
        if "/index/" in resources:
            assert actions == ["dynamodb:Query"] and "/index/gsi1" in resources and "index/*" not in resources


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_put_events_only_on_the_forescale_bus(synthesis: Synthesis, which: str) -> None:
    synth: Synth = getattr(synthesis, which)
    bus = str(synth.stack.resolve(synth.stack.bus.bus.node.default_child.logical_id))
    holders = 0
    for _, statement in statements(synth):
        if "events:PutEvents" in as_list(statement["Action"]):
            holders += 1
            assert statement["Resource"] == {"Fn::GetAtt": [bus, "Arn"]}
    assert holders == 6


# ------------------------------------------------------------- table writes and instance types (hardening)


def _writes(synth: Synth) -> list[tuple[str, dict[str, Any]]]:
    return [
        (role, s)
        for role, s in statements(synth)
        if set(as_list(s["Action"])) & {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    ]


def _condition(statement: dict[str, Any], key: str) -> list[str] | None:
    for values in statement.get("Condition", {}).values():
        if key in values:
            return [str(v) for v in as_list(values[key])]
    return None


@pytest.mark.parametrize("which", ["default", "fleet"])
def test_every_table_write_is_scoped_to_partitions_no_function_can_write_the_kill_switch(
    synthesis: Synthesis, which: str
) -> None:
    synth: Synth = getattr(synthesis, which)
    writes = _writes(synth)
    assert writes
    for role, statement in writes:
        keys = _condition(statement, "dynamodb:LeadingKeys")
        assert keys, (role, statement)
        assert not any(fnmatch.fnmatchcase("GLOBAL", k) for k in keys), (role, keys)


@pytest.mark.parametrize(("which", "writers"), [("default", set()), ("fleet", {"collect"})])
def test_only_tag_discovery_can_write_a_target_config(synthesis: Synthesis, which: str, writers: set[str]) -> None:
    synth: Synth = getattr(synthesis, which)
    roles = {role_of(synth, name): name for name in synth.stack.functions.by_name}
    can = set()
    for role, statement in _writes(synth):
        keys = _condition(statement, "dynamodb:LeadingKeys") or ["*"]  # no condition: every partition
        attributes = _condition(statement, "dynamodb:Attributes")
        if any(fnmatch.fnmatchcase("TARGET#x", k) for k in keys) and (attributes is None or "config" in attributes):
            can.add(roles[role])
    assert can == writers


def test_new_endpoint_configs_are_limited_to_the_configured_instance_types(synthesis: Synthesis) -> None:
    for synth in (synthesis.default, synthesis.fleet):
        creates = [s for _, s in statements(synth) if "sagemaker:CreateEndpointConfig" in as_list(s["Action"])]
        assert len(creates) == 1
        assert sorted(_condition(creates[0], "sagemaker:InstanceTypes") or []) == sorted(
            synth.config.endpoint_instance_types
        )
        assert creates[0]["Condition"]["Null"] == {"sagemaker:InstanceTypes": "false"}


# ------------------------------------------------------------- the calls each function makes, against its policy

# botocore service names whose IAM prefix differs
IAM_PREFIX = {"resourcegroupstaggingapi": "tag"}
_KEYWORDS = {"SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "IN", "BETWEEN"}


def attribute_names(params: dict[str, Any]) -> set[str]:
    """Every top-level attribute a DynamoDB write names: item and key attributes, and the names in its
    update and condition expressions (a superset of what `dynamodb:Attributes` counts)."""
    names = set(params.get("Item") or {}) | set(params.get("Key") or {})
    aliases = params.get("ExpressionAttributeNames") or {}
    for field in ("UpdateExpression", "ConditionExpression"):
        text = params.get(field, "")
        for m in re.finditer(r"([#:]?[A-Za-z_]\w*)(\s*\()?", text):
            token, is_function = m.group(1), m.group(2)
            if not (is_function or token.startswith(":") or token in _KEYWORDS):
                names.add(aliases.get(token, token))
    return names


def _satisfies(statement: dict[str, Any], params: dict[str, Any]) -> bool:
    """Whether a request meets the statement's conditions (the scenario's resources carry the managed tag)."""
    for operator, keys in statement.get("Condition", {}).items():
        for key, raw in keys.items():
            wanted = [str(v) for v in as_list(raw)]
            if key == "dynamodb:LeadingKeys":
                key_item = params.get("Item") or params.get("Key") or {}
                got = [str(key_item["PK"]["S"])]
            elif key == "dynamodb:Attributes":
                got = sorted(attribute_names(params))
            elif key.startswith(("aws:ResourceTag/", "aws:RequestTag/")):
                continue  # the harness tags every managed resource; act tags what it creates
            elif key == "application-autoscaling:service-namespace":
                got = [params["ServiceNamespace"]]
            elif key == "application-autoscaling:scalable-dimension":
                got = [params["ScalableDimension"]]
            else:
                raise AssertionError(f"the test does not evaluate condition {operator} {key}: add it")
            like = operator.endswith("StringLike")
            if not all(any(fnmatch.fnmatchcase(g, w) if like else g == w for w in wanted) for g in got):
                return False
    return True


_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def authorizations(call: Any) -> list[tuple[str, dict[str, Any]]]:
    """The (IAM action, request) pairs IAM evaluates for a call: a BatchWriteItem is
    dynamodb:BatchWriteItem once per item written or deleted, a TransactWriteItems the item action of
    each of its items (IAM has no TransactWriteItems action), anything else itself."""
    service, operation, params = call.site.service, call.site.operation, call.params
    if service == "dynamodb" and operation == "BatchWriteItem":
        return [
            ("dynamodb:BatchWriteItem", r.get("PutRequest") or r.get("DeleteRequest") or {})
            for requests in params["RequestItems"].values()
            for r in requests
        ]
    if service == "dynamodb" and operation == "TransactWriteItems":
        return [
            (f"dynamodb:{_TRANSACT_ACTIONS[kind]}", request)
            for item in params["TransactItems"]
            for kind, request in item.items()
        ]
    return [(f"{IAM_PREFIX.get(service, service)}:{operation}", params)]


def allowed(role_statements: list[dict[str, Any]], call: Any) -> bool:
    return all(_allowed_one(role_statements, action, params) for action, params in authorizations(call))


def _allowed_one(role_statements: list[dict[str, Any]], action: str, params: dict[str, Any]) -> bool:
    for statement in role_statements:
        if not any(fnmatch.fnmatchcase(action, a) for a in as_list(statement["Action"])):
            continue
        if "IndexName" in params and "/index/gsi1" not in json.dumps(statement["Resource"]):
            continue
        if _satisfies(statement, params):
            return True
    return False


@pytest.fixture(scope="module")
def recorded_calls() -> list[Any]:
    """Every AWS call the pipeline's functions make over 16 minutes on moto, a scale-out on every target
    and a tag-discovery run (at minute 75, a quarter hour) that registers a new tagged endpoint."""
    import boto3

    from forescale.local.environment import environment_variables
    from tests.integration.pipeline_harness import ACCOUNT, REGION, ROLE, intercepted_moto, pipeline

    with (
        environment_variables({"TAG_DISCOVERY": "true"}),
        intercepted_moto() as (mock, interceptor),
        pipeline(mock, interceptor) as p,
    ):
        sm = boto3.client("sagemaker", region_name=REGION)
        image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/vision:1"
        sm.create_model(ModelName="vision-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": image})
        sm.create_endpoint_config(
            EndpointConfigName="vision-config-0",
            ProductionVariants=[
                {"VariantName": "AllTraffic", "ModelName": "vision-model", "InitialInstanceCount": 1,
                 "InstanceType": "ml.g5.xlarge"}
            ],
        )  # fmt: skip
        sm.create_endpoint(
            EndpointName="vision",
            EndpointConfigName="vision-config-0",
            Tags=[
                {"Key": "forescale:managed", "Value": "true"},
                {"Key": "forescale:catalog", "Value": "ml.g5.xlarge=1.41/60"},
            ],
        )
        interceptor.recording = True
        p.run_until(76)
        assert not p.failed_invocations
        assert p.env.store.get_target("vision/AllTraffic") is not None, "discovery did not register the endpoint"
        return list(interceptor.calls)


@pytest.mark.slow
def test_every_call_each_function_makes_is_allowed_by_its_synthesized_policy(
    synthesis: Synthesis, recorded_calls: list[Any]
) -> None:
    synth = synthesis.fleet  # tag discovery on: collect describes endpoints
    by_role: dict[str, list[dict[str, Any]]] = {}
    for role, statement in statements(synth):
        by_role.setdefault(role, []).append(statement)
    stages = {c.site.stage for c in recorded_calls}
    assert {"collect", "forecast", "plan", "act"} <= stages
    assert {("collect", "sagemaker", "DescribeEndpoint"), ("collect", "dynamodb", "PutItem")} <= {
        (c.site.stage, c.site.service, c.site.operation) for c in recorded_calls
    }
    denied = sorted(
        {
            f"{c.site.id} {sorted(attribute_names(c.params)) if c.site.service == 'dynamodb' else ''}"
            for c in recorded_calls
            if not allowed(by_role[role_of(synth, c.site.stage)], c)
        }
    )
    assert not denied, "\n".join(denied)


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"Key": {"PK": {}, "SK": {}}, "UpdateExpression": "SET #r07 = :v, expiration = :e",
          "ExpressionAttributeNames": {"#r07": "r07"}}, {"PK", "SK", "r07", "expiration"}),
        ({"Item": {"PK": {}, "SK": {}, "status": {}},
          "ConditionExpression": "#st IN (:a, :b) AND attribute_not_exists(PK)",
          "ExpressionAttributeNames": {"#st": "status"}}, {"PK", "SK", "status"}),
    ],
)  # fmt: skip
def test_attribute_names_reads_items_keys_and_expressions(params: dict[str, Any], names: set[str]) -> None:
    assert attribute_names(params) == names
