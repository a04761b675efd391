"""The requests act's adapters send, checked against botocore's service models with Stubber.

botocore validates every request against the operation's input shape before Stubber answers, and
`expected_params` pins each request exactly; the stubbed responses are validated against the output
shapes. No network: Stubber answers before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from forescale.adapters.autoscaling import (
    LAMBDA_PC_DIMENSION,
    SAGEMAKER_VARIANT_DIMENSION,
    ApplicationAutoScaling,
    AutoScalingSnapshot,
    ScalableTarget,
    ScalableTargetRef,
)
from forescale.adapters.lambda_capacity import LambdaCapacity, ProvisionedConfig, aws_error_facts
from forescale.adapters.sagemaker_capacity import BlueGreenSettings, SageMakerCapacity, type_switch_config_name
from forescale.domain.ratelimit import CallGate, DeferredError, ManualClock, RejectedError, TokenBucket

REGION = "us-east-1"
FN, ALIAS = "orders", "live"
EP, VARIANT = "ranker", "AllTraffic"


def client(service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def gate() -> CallGate:
    clock = ManualClock()
    return CallGate(aws_error_facts, TokenBucket(15.0, clock=clock, sleep=clock.sleep), sleep=clock.sleep)


@pytest.fixture
def lam() -> Iterator[tuple[LambdaCapacity, Stubber]]:
    c = client("lambda")
    with Stubber(c) as stub:
        yield LambdaCapacity(c, gate()), stub
        stub.assert_no_pending_responses()


@pytest.fixture
def sm() -> Iterator[tuple[SageMakerCapacity, Stubber]]:
    c = client("sagemaker")
    with Stubber(c) as stub:
        yield SageMakerCapacity(c, gate()), stub
        stub.assert_no_pending_responses()


@pytest.fixture
def aas() -> Iterator[tuple[ApplicationAutoScaling, Stubber]]:
    c = client("application-autoscaling")
    with Stubber(c) as stub:
        yield ApplicationAutoScaling(c, gate()), stub
        stub.assert_no_pending_responses()


# ---------------------------------------------------------------- Lambda


def test_put_provisioned_concurrency(lam: tuple[LambdaCapacity, Stubber]) -> None:
    adapter, stub = lam
    stub.add_response(
        "put_provisioned_concurrency_config",
        {
            "RequestedProvisionedConcurrentExecutions": 12,
            "AllocatedProvisionedConcurrentExecutions": 4,
            "Status": "IN_PROGRESS",
        },
        {"FunctionName": FN, "Qualifier": ALIAS, "ProvisionedConcurrentExecutions": 12},
    )
    assert adapter.set_provisioned(FN, ALIAS, 12) == ProvisionedConfig(12, 4, 0, "IN_PROGRESS")


def test_get_provisioned_concurrency_and_its_absence(lam: tuple[LambdaCapacity, Stubber]) -> None:
    adapter, stub = lam
    params = {"FunctionName": FN, "Qualifier": ALIAS}
    stub.add_response(
        "get_provisioned_concurrency_config",
        {
            "RequestedProvisionedConcurrentExecutions": 5,
            "AllocatedProvisionedConcurrentExecutions": 0,
            "AvailableProvisionedConcurrentExecutions": 0,
            "Status": "FAILED",
            "StatusReason": "FUNCTION_ERROR_INIT_FAILURE",
        },
        params,
    )
    stub.add_client_error(
        "get_provisioned_concurrency_config",
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function",
        404,
        expected_params=params,
    )
    got = adapter.provisioned(FN, ALIAS)
    assert got is not None and got.status == "FAILED" and got.reason == "FUNCTION_ERROR_INIT_FAILURE"
    assert got.in_effect == 0
    assert adapter.provisioned(FN, ALIAS) is None


def test_delete_provisioned_concurrency_tolerates_a_missing_config(lam: tuple[LambdaCapacity, Stubber]) -> None:
    adapter, stub = lam
    params = {"FunctionName": FN, "Qualifier": ALIAS}
    stub.add_response("delete_provisioned_concurrency_config", {}, params)
    stub.add_client_error(
        "delete_provisioned_concurrency_config",
        "ProvisionedConcurrencyConfigNotFoundException",
        "gone",
        404,
        expected_params=params,
    )
    adapter.remove_provisioned(FN, ALIAS)
    adapter.remove_provisioned(FN, ALIAS)


def test_latest_is_refused_before_any_request(lam: tuple[LambdaCapacity, Stubber]) -> None:
    adapter, _ = lam
    with pytest.raises(RejectedError, match="alias or a version"):
        adapter.set_provisioned(FN, "$LATEST", 3)


def test_reserved_concurrency_put_get_delete(lam: tuple[LambdaCapacity, Stubber]) -> None:
    adapter, stub = lam
    stub.add_response(
        "put_function_concurrency",
        {"ReservedConcurrentExecutions": 40},
        {"FunctionName": FN, "ReservedConcurrentExecutions": 40},
    )
    stub.add_response("get_function_concurrency", {"ReservedConcurrentExecutions": 40}, {"FunctionName": FN})
    stub.add_response("delete_function_concurrency", {}, {"FunctionName": FN})
    stub.add_response("get_function_concurrency", {}, {"FunctionName": FN})
    adapter.set_reserved(FN, 40)
    assert adapter.reserved(FN) == 40
    adapter.remove_reserved(FN)
    assert adapter.reserved(FN) is None


def test_account_settings(lam: tuple[LambdaCapacity, Stubber]) -> None:
    adapter, stub = lam
    stub.add_response(
        "get_account_settings",
        {"AccountLimit": {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 420}},
        {},
    )
    got = adapter.account_concurrency()
    assert (got.limit, got.unreserved, got.reservable) == (1000, 420, 320)


def test_throttling_is_retried_then_deferred_and_a_validation_error_fails(lam: tuple[LambdaCapacity, Stubber]) -> None:
    adapter, stub = lam
    params = {"FunctionName": FN, "ReservedConcurrentExecutions": 5}
    for _ in range(adapter.gate.policy.attempts):
        stub.add_client_error(
            "put_function_concurrency", "TooManyRequestsException", "Rate exceeded", 429, None, params
        )
    stub.add_client_error(
        "put_function_concurrency",
        "InvalidParameterValueException",
        "below its minimum value of [100]",
        400,
        None,
        params,
    )
    with pytest.raises(DeferredError, match="TooManyRequestsException"):
        adapter.set_reserved(FN, 5)
    with pytest.raises(RejectedError, match=r"below its minimum value of \[100\]"):
        adapter.set_reserved(FN, 5)
    assert adapter.gate.limiter is not None and adapter.gate.limiter.acquired == adapter.gate.policy.attempts + 1


# ---------------------------------------------------------------- SageMaker


def test_instance_count(sm: tuple[SageMakerCapacity, Stubber]) -> None:
    adapter, stub = sm
    stub.add_response(
        "update_endpoint_weights_and_capacities",
        {"EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{EP}"},
        {"EndpointName": EP, "DesiredWeightsAndCapacities": [{"VariantName": VARIANT, "DesiredInstanceCount": 4}]},
    )
    adapter.set_instance_count(EP, VARIANT, 4)


def test_describe_endpoint_reads_counts_and_status(sm: tuple[SageMakerCapacity, Stubber]) -> None:
    adapter, stub = sm
    now = datetime(2026, 11, 23, tzinfo=UTC)
    stub.add_response(
        "describe_endpoint",
        {
            "EndpointName": EP,
            "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{EP}",
            "EndpointConfigName": "ranker-g5",
            "EndpointStatus": "Updating",
            "CreationTime": now,
            "LastModifiedTime": now,
            "ProductionVariants": [{"VariantName": VARIANT, "CurrentInstanceCount": 2, "DesiredInstanceCount": 4}],
        },
        {"EndpointName": EP},
    )
    ep = adapter.describe_endpoint(EP)
    assert (ep.status, ep.config_name, ep.in_service) == ("Updating", "ranker-g5", False)
    variant = ep.variant(VARIANT)
    assert variant is not None and (variant.current_count, variant.desired_count) == (2, 4)


def _config(name: str, instance_type: str, count: int) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint-config/{name}",
        "CreationTime": datetime(2026, 11, 23, tzinfo=UTC),
        "ProductionVariants": [
            {
                "VariantName": VARIANT,
                "ModelName": "ranker-model",
                "InitialInstanceCount": count,
                "InstanceType": instance_type,
                "InitialVariantWeight": 1.0,
            },
            {
                "VariantName": "Shadowless",
                "ModelName": "ranker-model-b",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.g5.xlarge",
                "InitialVariantWeight": 0.0,
            },
        ],
        "DataCaptureConfig": {
            "InitialSamplingPercentage": 5,
            "DestinationS3Uri": "s3://captures/ranker",
            "CaptureOptions": [{"CaptureMode": "Input"}],
        },
        "KmsKeyId": "alias/ranker",
    }


def test_copy_config_with_a_new_type_keeps_everything_else(sm: tuple[SageMakerCapacity, Stubber]) -> None:
    adapter, stub = sm
    source = _config("ranker-g5", "ml.g5.xlarge", 2)
    new_name = type_switch_config_name(EP, "ranker@1795392000")
    stub.add_response("describe_endpoint_config", source, {"EndpointConfigName": "ranker-g5"})
    variants = [dict(v) for v in source["ProductionVariants"]]
    variants[0] |= {"InstanceType": "ml.g6.xlarge", "InitialInstanceCount": 3}
    variants[1] |= {"InitialInstanceCount": 2}  # the other variant starts at its current count
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint-config/{new_name}"},
        {
            "EndpointConfigName": new_name,
            "ProductionVariants": variants,
            "DataCaptureConfig": source["DataCaptureConfig"],
            "KmsKeyId": "alias/ranker",
            "Tags": [{"Key": "forescale:copied-from", "Value": "ranker-g5"}],
        },
    )
    adapter.copy_config_with_type("ranker-g5", new_name, VARIANT, "ml.g6.xlarge", {VARIANT: 3, "Shadowless": 2})


def test_config_exists_reads_a_missing_config_as_false(sm: tuple[SageMakerCapacity, Stubber]) -> None:
    adapter, stub = sm
    stub.add_response("describe_endpoint_config", _config("a", "ml.g5.xlarge", 1), {"EndpointConfigName": "a"})
    stub.add_client_error(
        "describe_endpoint_config",
        "ValidationException",
        'Could not find endpoint configuration "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/b".',
        400,
        expected_params={"EndpointConfigName": "b"},
    )
    assert adapter.config_exists("a") is True
    assert adapter.config_exists("b") is False


@pytest.mark.parametrize("alarms", [(), ("ranker-p99", "ranker-5xx")])
def test_blue_green_update_endpoint(sm: tuple[SageMakerCapacity, Stubber], alarms: tuple[str, ...]) -> None:
    adapter, stub = sm
    deployment: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 3600,
        }
    }
    if alarms:
        deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{EP}"},
        {"EndpointName": EP, "EndpointConfigName": "ranker-g6", "DeploymentConfig": deployment},
    )
    adapter.update_endpoint(EP, "ranker-g6", BlueGreenSettings(rollback_alarms=alarms))


def test_busy_endpoint_is_deferred_not_failed(sm: tuple[SageMakerCapacity, Stubber]) -> None:
    adapter, stub = sm
    stub.add_client_error(
        "update_endpoint_weights_and_capacities",
        "ValidationException",
        'Cannot update in-progress endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ranker".',
        400,
    )
    with pytest.raises(DeferredError, match="in-progress"):
        adapter.set_instance_count(EP, VARIANT, 3)


def test_type_switch_config_names_are_valid_and_deterministic() -> None:
    long = "x" * 63
    a = type_switch_config_name(long, "t@1")
    assert a == type_switch_config_name(long, "t@1") != type_switch_config_name(long, "t@2")
    assert len(a) <= 63 and a[0].isalnum()
    with pytest.raises(ValueError, match="rollback alarms"):
        BlueGreenSettings(rollback_alarms=tuple(f"a{i}" for i in range(11)))
    with pytest.raises(ValueError, match="max_execution_s"):
        BlueGreenSettings(max_execution_s=300)


# ---------------------------------------------------------------- Application Auto Scaling


def test_find_and_set_floor(aas: tuple[ApplicationAutoScaling, Stubber]) -> None:
    adapter, stub = aas
    ref = ScalableTargetRef.lambda_provisioned(FN, ALIAS)
    key = {"ServiceNamespace": "lambda", "ResourceId": "function:orders:live", "ScalableDimension": LAMBDA_PC_DIMENSION}
    stub.add_response(
        "describe_scalable_targets",
        {
            "ScalableTargets": [
                key
                | {
                    "MinCapacity": 2,
                    "MaxCapacity": 10,
                    "RoleARN": "arn:aws:iam::123456789012:role/aas",
                    "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
                }
            ]
        },
        {
            "ServiceNamespace": "lambda",
            "ResourceIds": ["function:orders:live"],
            "ScalableDimension": LAMBDA_PC_DIMENSION,
        },
    )
    stub.add_response("register_scalable_target", {}, key | {"MinCapacity": 14, "MaxCapacity": 14})
    target = adapter.find(ref)
    assert target == ScalableTarget(ref, 2, 10)
    raised = adapter.set_floor(target, 14)
    assert (raised.min_capacity, raised.max_capacity) == (14, 14)


def test_snapshot_deregister_and_restore_round_trip(aas: tuple[ApplicationAutoScaling, Stubber]) -> None:
    adapter, stub = aas
    ref = ScalableTargetRef.sagemaker_variant(EP, VARIANT)
    key = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/ranker/variant/AllTraffic",
        "ScalableDimension": SAGEMAKER_VARIANT_DIMENSION,
    }
    created = datetime(2026, 1, 1, tzinfo=UTC)
    tracking = {
        "TargetValue": 70.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "ScaleInCooldown": 300,
    }
    action = {"MinCapacity": 1, "MaxCapacity": 2}
    stub.add_response(
        "describe_scaling_policies",
        {
            "ScalingPolicies": [
                key
                | {
                    "PolicyARN": "arn:aws:autoscaling:policy/tracking",
                    "PolicyName": "tracking",
                    "PolicyType": "TargetTrackingScaling",
                    "TargetTrackingScalingPolicyConfiguration": tracking,
                    "Alarms": [],
                    "CreationTime": created,
                }
            ]
        },
        key,
    )
    end = datetime(2027, 1, 1, tzinfo=UTC)
    stub.add_response(
        "describe_scheduled_actions",
        {
            "ScheduledActions": [
                key
                | {
                    "ScheduledActionName": "night",
                    "ScheduledActionARN": "arn:aws:autoscaling:scheduled/night",
                    "Schedule": "cron(0 22 * * ? *)",
                    "EndTime": end,
                    "ScalableTargetAction": action,
                    "CreationTime": created,
                }
            ]
        },
        key,
    )
    stub.add_response("deregister_scalable_target", {}, key)
    suspended = {"DynamicScalingInSuspended": True}
    stub.add_response(
        "register_scalable_target", {}, key | {"MinCapacity": 1, "MaxCapacity": 6, "SuspendedState": suspended}
    )
    stub.add_response(
        "put_scaling_policy",
        {"PolicyARN": "arn:aws:autoscaling:policy/tracking"},
        key
        | {
            "PolicyName": "tracking",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": tracking,
        },
    )
    stub.add_response(
        "put_scheduled_action",
        {},
        key
        | {
            "ScheduledActionName": "night",
            "Schedule": "cron(0 22 * * ? *)",
            "EndTime": end.isoformat(),
            "ScalableTargetAction": action,
        },
    )
    snapshot = adapter.snapshot(ScalableTarget(ref, 1, 6, suspended))
    stored = AutoScalingSnapshot.from_json(snapshot.to_json())  # as it travels through the AppliedState
    assert stored == snapshot
    adapter.deregister(ref)
    adapter.restore(stored)
