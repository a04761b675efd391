"""Tag discovery on moto: Lambda functions and SageMaker endpoints tagged `forescale:managed=true`
become dry-run drafts, everything else is skipped with a reason (moto 5.2.5 serves Resource Groups
Tagging GetResources for both `lambda:function` and `sagemaker:endpoint`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from forescale.adapters.tagging import TagDiscovery, parse_catalog
from forescale.domain.targets import TargetKind
from forescale.local.environment import create_stand_in_function
from forescale.runtime.models import Mode

REGION = "us-east-1"


@dataclass
class Aws:
    lam: Any
    sagemaker: Any
    tagging: Any
    role: str
    calls: list[int]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]}
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        tagging = boto3.client("resourcegroupstaggingapi", region_name=REGION)
        calls: list[int] = []
        tagging.meta.events.register(
            "before-call.resource-groups-tagging-api.GetResources", lambda **_: calls.append(1)
        )
        yield Aws(
            boto3.client("lambda", region_name=REGION),
            boto3.client("sagemaker", region_name=REGION),
            tagging,
            role,
            calls,
        )


def function(aws: Aws, name: str, tags: dict[str, str]) -> str:
    return create_stand_in_function(aws.lam, name, aws.role, alias=None, tags=tags).arn


def endpoint(aws: Aws, name: str, variants: dict[str, str], tags: dict[str, str]) -> str:
    aws.sagemaker.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:1"},
    )
    aws.sagemaker.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {"VariantName": v, "ModelName": f"{name}-model", "InitialInstanceCount": 1, "InstanceType": t}
            for v, t in variants.items()
        ],
    )
    arn: str = aws.sagemaker.create_endpoint(
        EndpointName=name,
        EndpointConfigName=f"{name}-config",
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )["EndpointArn"]
    return arn


MANAGED = {"forescale:managed": "true"}
CATALOG = "ml.g4dn.xlarge=0.736/40 ml.g4dn.2xlarge=1.053/70"


def test_given_tagged_resources_when_discovered_then_drafts_are_dry_run_and_the_rest_say_why(aws: Aws) -> None:
    function(aws, "checkout", MANAGED | {"forescale:qualifier": "live"})
    function(aws, "batch", MANAGED | {"forescale:kind": "lambda-reserved", "forescale:name": "nightly-batch"})
    no_qualifier = function(aws, "resize", MANAGED)
    bad_kind = function(aws, "odd", MANAGED | {"forescale:kind": "lambda-magic"})
    function(aws, "ignored", {"team": "payments"})  # not managed
    function(aws, "opted-out", {"forescale:managed": "false"})
    endpoint(
        aws,
        "ranker",
        {"AllTraffic": "ml.g4dn.xlarge", "Canary": "ml.p3.2xlarge"},
        MANAGED | {"forescale:catalog": CATALOG},
    )
    no_catalog = endpoint(aws, "embedder", {"AllTraffic": "ml.g4dn.xlarge"}, MANAGED)

    drafts, skipped = TagDiscovery(aws.tagging, aws.sagemaker).discover()

    by_name = {d.name: d for d in drafts}
    assert sorted(by_name) == ["checkout:live", "nightly-batch", "ranker/AllTraffic"]
    assert all(d.mode is Mode.DRY_RUN for d in drafts)
    checkout = by_name["checkout:live"]
    assert (checkout.kind, checkout.function_name, checkout.qualifier) == (
        TargetKind.LAMBDA_PROVISIONED,
        "checkout",
        "live",
    )
    batch = by_name["nightly-batch"]
    assert (batch.kind, batch.function_name, batch.qualifier) == (TargetKind.LAMBDA_RESERVED, "batch", None)
    ranker = by_name["ranker/AllTraffic"]
    assert (ranker.kind, ranker.endpoint_name, ranker.variant_name) == (
        TargetKind.SAGEMAKER_INSTANCE_COUNT,
        "ranker",
        "AllTraffic",
    )
    assert ranker.instance_type == "ml.g4dn.xlarge" and ranker.min_capacity == 1
    assert [(t.name, t.price_per_hour, t.capacity_rps) for t in ranker.catalog] == [
        ("ml.g4dn.xlarge", 0.736, 40.0),
        ("ml.g4dn.2xlarge", 1.053, 70.0),
    ]

    reasons = {s.resource: s.reason for s in skipped}
    assert "forescale:qualifier" in reasons[no_qualifier]
    assert "'lambda-magic' is not one of" in reasons[bad_kind]
    assert "no forescale:catalog tag" in reasons[no_catalog]
    canary = next(r for res, r in reasons.items() if res.endswith("#Canary"))
    assert "ml.p3.2xlarge, which is not in the forescale:catalog tag" in canary
    assert len(skipped) == 4


def test_given_more_resources_than_a_page_then_every_page_is_read(aws: Aws) -> None:
    for i in range(7):
        function(aws, f"fn{i}", MANAGED | {"forescale:qualifier": "live"})
    drafts, skipped = TagDiscovery(aws.tagging, aws.sagemaker, page_size=3).discover()
    assert [d.name for d in drafts] == [f"fn{i}:live" for i in range(7)]
    assert skipped == []
    assert len(aws.calls) >= 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("ml.g4dn.xlarge=0.7", "'ml.g4dn.xlarge=0.7' is not <type>"),
        ("ml.g4dn.xlarge=abc/40", "'ml.g4dn.xlarge=abc/40'"),
        ("g4dn=0.7/40", "'g4dn=0.7/40'"),
        ("ml.g4dn.xlarge=0.7/40 ml.g4dn.xlarge=0.8/41", "twice"),
    ],
)
def test_given_a_bad_catalog_tag_then_the_error_names_the_entry(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_catalog(text)
