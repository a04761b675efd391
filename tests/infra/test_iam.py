"""Every IAM statement in both templates, parsed: least privilege as checkable rules."""

from __future__ import annotations

import json
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
