"""The moto extension under `moto.mock_aws()`: real boto3 clients, every emulated rule and error code.

Transitions (IN_PROGRESS→READY, Updating→InService) are driven by a fake clock injected through
`install(clock=...)`, so no test sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError
from botocore.stub import Stubber
from moto import mock_aws
from moto.awslambda import urls as lambda_urls
from moto.awslambda.models import LambdaBackend

from forescale.local.environment import create_stand_in_function
from forescale.local.moto_extension import (
    fail_next_provisioned_allocation,
    gpu_instance_types,
    install,
    reset,
    set_account_concurrency_limit,
    set_ready_delays,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
FN = "orders"
ALIAS = "live"
EP = "ranker"
VARIANT = "AllTraffic"
MODEL = "ranker-model"
START_S = 1_700_000_000.0

# The requests the tests send to each emulated operation; `test_contract_*` checks them against botocore's model.
PUT_PC_REQUEST: dict[str, Any] = {"FunctionName": FN, "Qualifier": ALIAS, "ProvisionedConcurrentExecutions": 5}
GET_PC_REQUEST: dict[str, Any] = {"FunctionName": FN, "Qualifier": ALIAS}
DELETE_PC_REQUEST: dict[str, Any] = {"FunctionName": FN, "Qualifier": ALIAS}
LIST_PC_REQUEST: dict[str, Any] = {"FunctionName": FN, "MaxItems": 2}
ACCOUNT_SETTINGS_REQUEST: dict[str, Any] = {}
PUT_RESERVED_REQUEST: dict[str, Any] = {"FunctionName": FN, "ReservedConcurrentExecutions": 10}
UPDATE_ENDPOINT_REQUEST: dict[str, Any] = {
    "EndpointName": EP,
    "EndpointConfigName": "ranker-g6e",
    "RetainAllVariantProperties": False,
    "DeploymentConfig": {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 0,
            "MaximumExecutionTimeoutInSeconds": 1800,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "ranker-latency"}]},
    },
}
UPDATE_WEIGHTS_REQUEST: dict[str, Any] = {
    "EndpointName": EP,
    "DesiredWeightsAndCapacities": [{"VariantName": VARIANT, "DesiredInstanceCount": 4}],
}
DESCRIBE_ENDPOINT_REQUEST: dict[str, Any] = {"EndpointName": EP}


class FakeClock:
    """A settable clock (s since the epoch)."""

    def __init__(self, start_s: float) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    """(Error.Code, HTTP status, message) of a ClientError."""
    response: Any = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def make_pk_sk_table(db: Any, name: str) -> None:
    """A pay-per-request table keyed like forescale's (string PK and SK), no index."""
    db.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def make_role(iam: Any) -> str:
    role: str = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    return role


def make_function(lam: Any, role_arn: str, name: str = FN, *, alias: str | None = ALIAS) -> str:
    """Create `name`, publish version 1, point `alias` at it; return the version."""
    function = create_stand_in_function(lam, name, role_arn, alias=alias)
    return function.version or str(lam.publish_version(FunctionName=name)["Version"])


def make_endpoint(sm: Any, *, instance_type: str = "ml.g5.xlarge", count: int = 2, config: str = "ranker-g5") -> None:
    """A model, an endpoint config with one variant, and an InService endpoint on it."""
    if not sm.list_models(NameContains=MODEL)["Models"]:
        sm.create_model(
            ModelName=MODEL,
            ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sm-role",
            PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ranker:1"},
        )
    make_config(sm, config, instance_type, count)
    sm.create_endpoint(EndpointName=EP, EndpointConfigName=config)


def make_config(sm: Any, name: str, instance_type: str, count: int) -> None:
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": VARIANT,
                "ModelName": MODEL,
                "InstanceType": instance_type,
                "InitialInstanceCount": count,
                "InitialVariantWeight": 1.0,
            }
        ],
    )


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock(START_S)
    install(clock=fake)
    yield fake
    reset()


@pytest.fixture
def aws(clock: FakeClock) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def lam(aws: None) -> Any:
    return boto3.client("lambda", region_name=REGION)


@pytest.fixture
def role_arn(aws: None) -> str:
    return make_role(boto3.client("iam", region_name=REGION))


@pytest.fixture
def sm(aws: None) -> Any:
    return boto3.client("sagemaker", region_name=REGION)


# ---------------------------------------------------------------- Lambda provisioned concurrency


def test_put_on_alias_is_in_progress_then_ready_after_the_delay(lam: Any, role_arn: str, clock: FakeClock) -> None:
    make_function(lam, role_arn)

    put = lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)

    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (put["Status"], put["RequestedProvisionedConcurrentExecutions"]) == ("IN_PROGRESS", 5)
    assert put["AllocatedProvisionedConcurrentExecutions"] == 0
    clock.advance(59.9)
    assert lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)["Status"] == "IN_PROGRESS"
    clock.advance(0.1)
    ready = lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)
    assert ready["Status"] == "READY"
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 5
    assert ready["AvailableProvisionedConcurrentExecutions"] == 5
    assert "StatusReason" not in ready


def test_raising_a_ready_config_keeps_the_old_allocation_until_the_new_one_is_ready(
    lam: Any, role_arn: str, clock: FakeClock
) -> None:
    make_function(lam, role_arn)
    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)
    clock.advance(60)

    raised = lam.put_provisioned_concurrency_config(**{**PUT_PC_REQUEST, "ProvisionedConcurrentExecutions": 9})

    assert (raised["Status"], raised["AllocatedProvisionedConcurrentExecutions"]) == ("IN_PROGRESS", 5)
    clock.advance(60)
    settled = lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)
    assert (settled["Status"], settled["AllocatedProvisionedConcurrentExecutions"]) == ("READY", 9)


def test_ready_delay_is_settable(lam: Any, role_arn: str, clock: FakeClock) -> None:
    make_function(lam, role_arn)
    set_ready_delays(provisioned_ready_after_s=5)

    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)
    clock.advance(5)

    assert lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)["Status"] == "READY"


def test_armed_failure_ends_failed_with_its_reason_and_only_once(lam: Any, role_arn: str, clock: FakeClock) -> None:
    make_function(lam, role_arn)
    fail_next_provisioned_allocation(FN, ALIAS, "FUNCTION_ERROR_INIT_FAILURE: init timed out")

    assert lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)["Status"] == "IN_PROGRESS"
    clock.advance(60)
    failed = lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)
    assert failed["Status"] == "FAILED"
    assert failed["StatusReason"] == "FUNCTION_ERROR_INIT_FAILURE: init timed out"
    assert failed["AllocatedProvisionedConcurrentExecutions"] == 0

    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)
    clock.advance(60)
    assert lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)["Status"] == "READY"


def test_published_version_and_alias_are_listed_with_qualified_arns(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn, alias=None)
    lam.update_function_configuration(FunctionName=FN, Description="v2")
    version_2 = lam.publish_version(FunctionName=FN)["Version"]
    lam.create_alias(FunctionName=FN, Name=ALIAS, FunctionVersion=version_2)
    lam.put_provisioned_concurrency_config(FunctionName=FN, Qualifier="1", ProvisionedConcurrentExecutions=2)
    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)

    configs = lam.list_provisioned_concurrency_configs(FunctionName=FN)["ProvisionedConcurrencyConfigs"]

    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FN}"
    assert {(c["FunctionArn"], c["RequestedProvisionedConcurrentExecutions"]) for c in configs} == {
        (f"{arn}:1", 2),
        (f"{arn}:{ALIAS}", 5),
    }


def test_list_pages_with_max_items_and_next_marker(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn, alias=None)
    for alias in ("a", "b", "c"):
        lam.create_alias(FunctionName=FN, Name=alias, FunctionVersion="1")
        lam.put_provisioned_concurrency_config(FunctionName=FN, Qualifier=alias, ProvisionedConcurrentExecutions=1)

    first = lam.list_provisioned_concurrency_configs(FunctionName=FN, MaxItems=2)
    second = lam.list_provisioned_concurrency_configs(FunctionName=FN, MaxItems=2, Marker=first["NextMarker"])

    assert len(first["ProvisionedConcurrencyConfigs"]) == 2
    assert len(second["ProvisionedConcurrencyConfigs"]) == 1
    assert "NextMarker" not in second
    names = [c["FunctionArn"].rsplit(":", 1)[1] for c in first["ProvisionedConcurrencyConfigs"]]
    names += [c["FunctionArn"].rsplit(":", 1)[1] for c in second["ProvisionedConcurrencyConfigs"]]
    assert sorted(names) == ["a", "b", "c"]


def test_latest_is_rejected_as_unpublished(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)

    with pytest.raises(ClientError) as put_err:
        lam.put_provisioned_concurrency_config(**{**PUT_PC_REQUEST, "Qualifier": "$LATEST"})
    with pytest.raises(ClientError) as get_err:
        lam.get_provisioned_concurrency_config(**{**GET_PC_REQUEST, "Qualifier": "$LATEST"})

    assert error_of(put_err) == (
        "InvalidParameterValueException",
        400,
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
    )
    assert error_of(get_err)[:2] == ("InvalidParameterValueException", 400)
    assert "must be an alias or a published version" in error_of(get_err)[2]


def test_alias_pointing_at_latest_is_rejected_as_unpublished(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn, alias=None)
    lam.create_alias(FunctionName=FN, Name="head", FunctionVersion="$LATEST")

    with pytest.raises(ClientError) as err:
        lam.put_provisioned_concurrency_config(**{**PUT_PC_REQUEST, "Qualifier": "head"})

    assert error_of(err)[:2] == ("InvalidParameterValueException", 400)
    assert "unpublished" in error_of(err)[2]


@pytest.mark.parametrize(
    ("function_name", "qualifier", "message_start"),
    [
        ("missing", ALIAS, "Function not found: arn:aws:lambda:us-east-1:123456789012:function:missing"),
        (FN, "nosuchalias", "Cannot find alias arn: arn:aws:lambda:us-east-1:123456789012:function:orders:nosuchalias"),
        (FN, "7", "Function not found: arn:aws:lambda:us-east-1:123456789012:function:orders:7"),
    ],
)
def test_unknown_function_alias_or_version_is_resource_not_found(
    lam: Any, role_arn: str, function_name: str, qualifier: str, message_start: str
) -> None:
    make_function(lam, role_arn)

    with pytest.raises(ClientError) as put_err:
        lam.put_provisioned_concurrency_config(
            FunctionName=function_name, Qualifier=qualifier, ProvisionedConcurrentExecutions=1
        )
    with pytest.raises(ClientError) as get_err:
        lam.get_provisioned_concurrency_config(FunctionName=function_name, Qualifier=qualifier)

    for err in (put_err, get_err):
        code, status, message = error_of(err)
        assert (code, status) == ("ResourceNotFoundException", 404)
        assert message.startswith(message_start)


def test_get_without_a_config_is_config_not_found(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)

    with pytest.raises(ClientError) as err:
        lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)

    assert error_of(err) == (
        "ProvisionedConcurrencyConfigNotFoundException",
        404,
        "No Provisioned Concurrency Config found for this function",
    )


def test_delete_removes_the_config_and_is_idempotent(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)

    first = lam.delete_provisioned_concurrency_config(**DELETE_PC_REQUEST)
    second = lam.delete_provisioned_concurrency_config(**DELETE_PC_REQUEST)

    assert first["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert second["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_provisioned_concurrency_configs(FunctionName=FN)["ProvisionedConcurrencyConfigs"] == []


def test_fewer_than_one_execution_is_a_validation_error(lam: Any, role_arn: str, aws: None) -> None:
    make_function(lam, role_arn)
    unchecked = boto3.client("lambda", region_name=REGION, config=Config(parameter_validation=False))

    with pytest.raises(ParamValidationError):  # boto3's own check, from the model's min: 1
        lam.put_provisioned_concurrency_config(**{**PUT_PC_REQUEST, "ProvisionedConcurrentExecutions": 0})
    with pytest.raises(ClientError) as err:  # and the server's, for clients that skip it
        unchecked.put_provisioned_concurrency_config(**{**PUT_PC_REQUEST, "ProvisionedConcurrentExecutions": 0})

    code, status, message = error_of(err)
    assert (code, status) == ("ValidationException", 400)
    assert "greater than or equal to 1" in message


def test_function_name_may_be_an_arn_or_carry_the_qualifier(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FN}"

    lam.put_provisioned_concurrency_config(FunctionName=arn, Qualifier=ALIAS, ProvisionedConcurrentExecutions=3)
    by_qualified_name = lam.get_provisioned_concurrency_config(FunctionName=f"{FN}:{ALIAS}", Qualifier=ALIAS)
    with pytest.raises(ClientError) as err:
        lam.get_provisioned_concurrency_config(FunctionName=f"{FN}:{ALIAS}", Qualifier="1")

    assert by_qualified_name["RequestedProvisionedConcurrentExecutions"] == 3
    assert error_of(err)[:2] == ("InvalidParameterValueException", 400)
    assert "derived qualifier" in error_of(err)[2]


def test_alias_and_its_version_cannot_both_be_provisioned(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    lam.put_provisioned_concurrency_config(FunctionName=FN, Qualifier="1", ProvisionedConcurrentExecutions=2)

    with pytest.raises(ClientError) as alias_err:
        lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)
    lam.delete_provisioned_concurrency_config(FunctionName=FN, Qualifier="1")
    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)
    with pytest.raises(ClientError) as version_err:
        lam.put_provisioned_concurrency_config(FunctionName=FN, Qualifier="1", ProvisionedConcurrentExecutions=2)

    assert error_of(alias_err)[:2] == ("ResourceConflictException", 409)
    assert error_of(version_err)[:2] == ("ResourceConflictException", 409)


def test_total_provisioned_may_not_exceed_reserved(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    lam.create_alias(FunctionName=FN, Name="canary", FunctionVersion="1")
    lam.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=8)
    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)  # 5 of 8

    with pytest.raises(ClientError) as err:
        lam.put_provisioned_concurrency_config(FunctionName=FN, Qualifier="canary", ProvisionedConcurrentExecutions=4)
    fits = lam.put_provisioned_concurrency_config(
        FunctionName=FN, Qualifier="canary", ProvisionedConcurrentExecutions=3
    )

    assert error_of(err) == (
        "InvalidParameterValueException",
        400,
        "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function",
    )
    assert fits["RequestedProvisionedConcurrentExecutions"] == 3


def test_provisioned_without_reserved_must_leave_100_unreserved(lam: Any, role_arn: str) -> None:
    set_account_concurrency_limit(300)
    make_function(lam, role_arn)
    make_function(lam, role_arn, "search")
    make_function(lam, role_arn, "billing", alias=None)
    lam.put_function_concurrency(FunctionName="billing", ReservedConcurrentExecutions=50)  # 250 unreserved
    lam.put_provisioned_concurrency_config(FunctionName="search", Qualifier=ALIAS, ProvisionedConcurrentExecutions=100)

    with pytest.raises(ClientError) as err:  # 250 - 100 - 51 = 99 left
        lam.put_provisioned_concurrency_config(**{**PUT_PC_REQUEST, "ProvisionedConcurrentExecutions": 51})
    fits = lam.put_provisioned_concurrency_config(**{**PUT_PC_REQUEST, "ProvisionedConcurrentExecutions": 50})

    assert error_of(err) == (
        "InvalidParameterValueException",
        400,
        "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
        "below its minimum value of [100].",
    )
    assert fits["RequestedProvisionedConcurrentExecutions"] == 50


def test_deleting_a_function_or_alias_deletes_its_configs(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)
    lam.delete_alias(FunctionName=FN, Name=ALIAS)
    assert lam.list_provisioned_concurrency_configs(FunctionName=FN)["ProvisionedConcurrencyConfigs"] == []

    lam.put_provisioned_concurrency_config(FunctionName=FN, Qualifier="1", ProvisionedConcurrentExecutions=2)
    lam.delete_function(FunctionName=FN)
    make_function(lam, role_arn)

    assert lam.list_provisioned_concurrency_configs(FunctionName=FN)["ProvisionedConcurrencyConfigs"] == []


# ---------------------------------------------------------------- account settings and reserved concurrency


def test_account_settings_report_the_limit_minus_reserved(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    make_function(lam, role_arn, "search", alias=None)
    lam.put_function_concurrency(**PUT_RESERVED_REQUEST)
    lam.put_function_concurrency(FunctionName="search", ReservedConcurrentExecutions=25)

    settings = lam.get_account_settings(**ACCOUNT_SETTINGS_REQUEST)

    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000 - 10 - 25
    assert settings["AccountUsage"]["FunctionCount"] == 2
    assert settings["AccountUsage"]["TotalCodeSize"] > 0


def test_account_limit_is_settable(lam: Any, role_arn: str) -> None:
    set_account_concurrency_limit(3000)
    make_function(lam, role_arn)
    lam.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=2500)

    limit = lam.get_account_settings()["AccountLimit"]

    assert (limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]) == (3000, 500)


def test_reserved_must_leave_100_unreserved(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    make_function(lam, role_arn, "search", alias=None)
    lam.put_function_concurrency(FunctionName="search", ReservedConcurrentExecutions=400)

    with pytest.raises(ClientError) as err:  # 1000 - 400 - 501 = 99
        lam.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=501)
    fits = lam.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=500)

    assert error_of(err) == (
        "InvalidParameterValueException",
        400,
        "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
        "below its minimum value of [100].",
    )
    assert fits["ReservedConcurrentExecutions"] == 500


def test_small_accounts_keep_their_whole_limit_unreserved(lam: Any, role_arn: str) -> None:
    set_account_concurrency_limit(10)
    make_function(lam, role_arn)

    with pytest.raises(ClientError) as err:
        lam.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=1)

    assert error_of(err)[:2] == ("InvalidParameterValueException", 400)
    assert error_of(err)[2].endswith("minimum value of [10].")


def test_reserved_below_provisioned_is_rejected(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)  # 5

    with pytest.raises(ClientError) as err:
        lam.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=4)
    fits = lam.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=5)

    assert error_of(err)[:2] == ("InvalidParameterValueException", 400)
    assert "[4]" in error_of(err)[2] and "[5]" in error_of(err)[2]
    assert fits["ReservedConcurrentExecutions"] == 5


# ---------------------------------------------------------------- SageMaker instance types


def test_gpu_families_of_the_brief_are_all_present() -> None:
    types = gpu_instance_types()

    for family in ("g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5", "inf2", "trn1"):
        assert any(t.split(".")[1] == family for t in types), family
    assert {"ml.p4d.24xlarge", "ml.p5.48xlarge", "ml.g6e.xlarge", "ml.inf2.xlarge", "ml.trn1.32xlarge"} <= types
    assert not any(t.split(".")[1] in ("p5e", "trn1n", "m5") for t in types)


def test_every_gpu_type_is_accepted_in_create_endpoint_config(sm: Any) -> None:
    sm.create_model(
        ModelName=MODEL, ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sm-role", PrimaryContainer={"Image": "i"}
    )

    for index, instance_type in enumerate(sorted(gpu_instance_types())):
        make_config(sm, f"gpu-{index}", instance_type, 1)

    described = sm.describe_endpoint_config(EndpointConfigName="gpu-0")["ProductionVariants"][0]["InstanceType"]
    assert described == sorted(gpu_instance_types())[0]


def test_moto_types_still_accepted_and_unknown_types_still_rejected(sm: Any) -> None:
    sm.create_model(
        ModelName=MODEL, ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sm-role", PrimaryContainer={"Image": "i"}
    )
    make_config(sm, "cpu", "ml.m5.large", 1)

    with pytest.raises(ClientError) as err:
        make_config(sm, "bogus", "ml.g5.3xlarge", 1)  # no such size

    assert error_of(err)[:2] == ("ValidationException", 400)
    assert "ml.g5.3xlarge" in error_of(err)[2]


def test_gpu_types_accepted_as_model_package_realtime_types(sm: Any) -> None:
    spec = {
        "Containers": [{"Image": "i"}],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
        "SupportedRealtimeInferenceInstanceTypes": ["ml.g5.xlarge", "ml.g6.2xlarge", "ml.m5.large"],
    }

    created = sm.create_model_package(
        ModelPackageName="ranker-pkg",
        InferenceSpecification=spec,
        AdditionalInferenceSpecifications=[{"Name": "gpu", **spec}],
    )

    assert created["ModelPackageArn"].endswith("model-package/ranker-pkg")


# ---------------------------------------------------------------- SageMaker UpdateEndpoint


def test_update_endpoint_is_updating_then_in_service_on_the_new_config(sm: Any, clock: FakeClock) -> None:
    make_endpoint(sm, instance_type="ml.g5.xlarge", count=2)
    make_config(sm, "ranker-g6e", "ml.g6e.xlarge", 3)

    arn = sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)["EndpointArn"]

    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{EP}"
    during = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)
    assert (during["EndpointStatus"], during["EndpointConfigName"]) == ("Updating", "ranker-g5")
    assert during["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    pending = during["PendingDeploymentSummary"]
    assert pending["EndpointConfigName"] == "ranker-g6e"
    assert pending["ProductionVariants"][0]["InstanceType"] == "ml.g6e.xlarge"
    assert pending["ProductionVariants"][0]["DesiredInstanceCount"] == 3

    clock.advance(299)
    assert sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)["EndpointStatus"] == "Updating"
    clock.advance(1)
    after = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", "ranker-g6e")
    variant = after["ProductionVariants"][0]
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (3, 3)
    assert "PendingDeploymentSummary" not in after
    assert after["LastDeploymentConfig"] == UPDATE_ENDPOINT_REQUEST["DeploymentConfig"]
    in_service_type = sm.describe_endpoint_config(EndpointConfigName=after["EndpointConfigName"])
    assert in_service_type["ProductionVariants"][0]["InstanceType"] == "ml.g6e.xlarge"


def test_update_endpoint_delay_is_settable(sm: Any, clock: FakeClock) -> None:
    set_ready_delays(endpoint_update_after_s=30)
    make_endpoint(sm)
    make_config(sm, "ranker-g6e", "ml.g6e.xlarge", 3)

    sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)
    clock.advance(30)

    assert sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)["EndpointStatus"] == "InService"


def test_update_unknown_endpoint_or_config_is_a_validation_error(sm: Any) -> None:
    make_endpoint(sm)

    with pytest.raises(ClientError) as no_endpoint:
        sm.update_endpoint(**{**UPDATE_ENDPOINT_REQUEST, "EndpointName": "nope"})
    with pytest.raises(ClientError) as no_config:
        sm.update_endpoint(**{**UPDATE_ENDPOINT_REQUEST, "EndpointConfigName": "nope"})

    assert error_of(no_endpoint) == (
        "ValidationException",
        400,
        f'Could not find endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/nope".',
    )
    assert error_of(no_config) == (
        "ValidationException",
        400,
        f'Could not find endpoint configuration "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/nope".',
    )


def test_update_while_updating_is_a_validation_error(sm: Any) -> None:
    make_endpoint(sm)
    make_config(sm, "ranker-g6e", "ml.g6e.xlarge", 3)
    sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)

    with pytest.raises(ClientError) as again:
        sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)
    with pytest.raises(ClientError) as weights:
        sm.update_endpoint_weights_and_capacities(**UPDATE_WEIGHTS_REQUEST)
    with pytest.raises(ClientError) as delete:
        sm.delete_endpoint(EndpointName=EP)

    for err in (again, weights, delete):
        assert error_of(err) == (
            "ValidationException",
            400,
            f'Cannot update in-progress endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{EP}".',
        )


def register_variant(aas: Any) -> None:
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=f"endpoint/{EP}/variant/{VARIANT}",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=8,
    )


def test_changing_the_type_of_an_autoscaled_variant_is_refused(sm: Any, clock: FakeClock) -> None:
    aas = boto3.client("application-autoscaling", region_name=REGION)
    make_endpoint(sm, instance_type="ml.g5.xlarge")
    make_config(sm, "ranker-g6e", "ml.g6e.xlarge", 3)
    make_config(sm, "ranker-g5-big", "ml.g5.xlarge", 6)
    register_variant(aas)

    with pytest.raises(ClientError) as err:
        sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)
    same_type = sm.update_endpoint(EndpointName=EP, EndpointConfigName="ranker-g5-big")  # allowed: type unchanged
    clock.advance(300)
    aas.deregister_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=f"endpoint/{EP}/variant/{VARIANT}",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
    )
    after_deregistering = sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)

    code, status, message = error_of(err)
    assert (code, status) == ("ValidationException", 400)
    assert VARIANT in message and "Application Auto Scaling" in message
    assert same_type["EndpointArn"] == after_deregistering["EndpointArn"]


def test_retain_all_variant_properties_keeps_the_running_counts(sm: Any, clock: FakeClock) -> None:
    make_endpoint(sm, count=2)
    make_config(sm, "ranker-g6e", "ml.g6e.xlarge", 3)
    sm.update_endpoint_weights_and_capacities(**UPDATE_WEIGHTS_REQUEST)  # desired 4
    clock.advance(300)

    sm.update_endpoint(**{**UPDATE_ENDPOINT_REQUEST, "RetainAllVariantProperties": True})
    clock.advance(300)
    retained = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)["ProductionVariants"][0]
    make_config(sm, "ranker-g6e-2", "ml.g6e.2xlarge", 2)
    sm.update_endpoint(
        EndpointName=EP,
        EndpointConfigName="ranker-g6e-2",
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredInstanceCount"}],
    )
    clock.advance(300)
    excluded = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)["ProductionVariants"][0]

    assert (retained["DesiredInstanceCount"], retained["CurrentInstanceCount"]) == (4, 4)
    assert (excluded["DesiredInstanceCount"], excluded["CurrentInstanceCount"]) == (2, 2)


def test_rollback_alarm_in_alarm_keeps_the_old_config(sm: Any, clock: FakeClock) -> None:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName="ranker-latency",
        MetricName="ModelLatency",
        Namespace="AWS/SageMaker",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    make_endpoint(sm, count=2)
    make_config(sm, "ranker-g6e", "ml.g6e.xlarge", 3)

    sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)
    cloudwatch.set_alarm_state(AlarmName="ranker-latency", StateValue="ALARM", StateReason="latency spike")
    clock.advance(300)
    after = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)

    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", "ranker-g5")
    assert after["ProductionVariants"][0]["CurrentInstanceCount"] == 2


# ---------------------------------------------------------------- SageMaker UpdateEndpointWeightsAndCapacities


def test_weights_and_capacities_update_takes_time(sm: Any, clock: FakeClock) -> None:
    make_endpoint(sm, count=2)

    sm.update_endpoint_weights_and_capacities(**UPDATE_WEIGHTS_REQUEST)

    during = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)
    variant = during["ProductionVariants"][0]
    assert during["EndpointStatus"] == "Updating"
    assert (variant["DesiredInstanceCount"], variant["CurrentInstanceCount"]) == (4, 2)
    assert variant["DesiredWeight"] == 1.0  # left out of the request, so unchanged
    assert [e["EndpointStatus"] for e in sm.list_endpoints()["Endpoints"]] == ["Updating"]
    clock.advance(300)
    after = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)
    assert after["EndpointStatus"] == "InService"
    assert after["ProductionVariants"][0]["CurrentInstanceCount"] == 4
    assert [e["EndpointStatus"] for e in sm.list_endpoints()["Endpoints"]] == ["InService"]


def test_weights_and_capacities_keeps_moto_variant_checks(sm: Any) -> None:
    make_endpoint(sm)

    with pytest.raises(ClientError) as err:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=EP, DesiredWeightsAndCapacities=[{"VariantName": "nope", "DesiredInstanceCount": 1}]
        )

    assert error_of(err)[:2] == ("ValidationException", 400)
    assert sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)["EndpointStatus"] == "InService"


# ---------------------------------------------------------------- install / reset


def test_install_is_idempotent_and_reset_restores_the_defaults(lam: Any, role_arn: str, clock: FakeClock) -> None:
    wrapped = LambdaBackend.put_function_concurrency
    routes = dict(lambda_urls.url_paths)
    set_account_concurrency_limit(500)
    make_function(lam, role_arn)
    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)

    install(clock=clock)
    reset()

    assert LambdaBackend.put_function_concurrency is wrapped
    assert dict(lambda_urls.url_paths) == routes
    assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert lam.list_provisioned_concurrency_configs(FunctionName=FN)["ProvisionedConcurrencyConfigs"] == []


def test_bad_knob_values_are_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        set_account_concurrency_limit(-1)
    with pytest.raises(ValueError, match="provisioned_ready_after_s"):
        set_ready_delays(provisioned_ready_after_s=-1)
    with pytest.raises(ValueError, match="plain function name"):
        fail_next_provisioned_allocation("arn:aws:lambda:us-east-1:123456789012:function:x", "1")


# ---------------------------------------------------------------- contract with botocore's model


def test_contract_requests_and_responses_match_botocore_models(
    lam: Any, role_arn: str, sm: Any, clock: FakeClock
) -> None:
    """Each emulated operation's test request validates against botocore's input shape (Stubber's
    expected_params path runs the client's parameter validation), and the emulation's real response
    validates against the output shape (Stubber.add_response checks it)."""
    make_function(lam, role_arn)
    make_endpoint(sm)
    make_config(sm, "ranker-g6e", "ml.g6e.xlarge", 3)
    calls: list[tuple[Any, str, dict[str, Any]]] = [
        (lam, "put_provisioned_concurrency_config", PUT_PC_REQUEST),
        (lam, "get_provisioned_concurrency_config", GET_PC_REQUEST),
        (lam, "list_provisioned_concurrency_configs", LIST_PC_REQUEST),
        (lam, "delete_provisioned_concurrency_config", DELETE_PC_REQUEST),
        (lam, "get_account_settings", ACCOUNT_SETTINGS_REQUEST),
        (lam, "put_function_concurrency", PUT_RESERVED_REQUEST),
        (sm, "update_endpoint_weights_and_capacities", UPDATE_WEIGHTS_REQUEST),
        (sm, "update_endpoint", UPDATE_ENDPOINT_REQUEST),
        (sm, "describe_endpoint", DESCRIBE_ENDPOINT_REQUEST),
    ]
    for client, operation, request in calls:
        clock.advance(300)  # let the previous endpoint change settle
        response = getattr(client, operation)(**request)
        response.pop("ResponseMetadata")
        offline = boto3.client(client.meta.service_model.service_name, region_name=REGION)
        with Stubber(offline) as stubber:
            stubber.add_response(operation, response, expected_params=request)
            assert getattr(offline, operation)(**request) == response
            stubber.assert_no_pending_responses()


# ---------------------------------------------------------------- DynamoDB Time to Live


def test_expire_items_deletes_exactly_the_items_past_their_ttl_in_tables_with_ttl_enabled(
    moto_credentials: None,
) -> None:
    from forescale.local.moto_extension import expire_items

    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        for table in ("with-ttl", "without-ttl"):
            make_pk_sk_table(db, table)
            items = {
                "expired": {"expiration": {"N": str(int(START_S) - 1)}},
                "expires-later": {"expiration": {"N": str(int(START_S) + 60)}},
                "expires-exactly-now": {"expiration": {"N": str(int(START_S))}},  # not below now: kept
                "not-a-number": {"expiration": {"S": "1"}},  # AWS ignores a TTL attribute of another type
                "no-ttl": {},
            }
            for sk, extra in items.items():
                db.put_item(TableName=table, Item={"PK": {"S": "p"}, "SK": {"S": sk}} | extra)
        db.update_time_to_live(
            TableName="with-ttl", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
        )

        assert expire_items(START_S) == 1

        def keys(table: str) -> list[str]:
            resp = db.query(
                TableName=table, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "p"}}
            )
            return sorted(i["SK"]["S"] for i in resp["Items"])

        assert keys("with-ttl") == ["expires-exactly-now", "expires-later", "no-ttl", "not-a-number"]
        assert len(keys("without-ttl")) == 5  # TTL not enabled: nothing expires
        assert expire_items(START_S + 61) == 2 and keys("with-ttl") == ["no-ttl", "not-a-number"]


def test_query_reads_one_partition_and_answers_as_a_scan_of_the_table_would(moto_credentials: None) -> None:
    """Query through the extension (base table: its partition only; index: the table unsorted) against an
    independent oracle: Scan, filtered and sorted."""
    import random

    from moto.dynamodb.models.table import Table

    install()
    assert Table.query.__name__ == "query_without_table_sort"  # the extension's Query is the one answering
    rng = random.Random(3)
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        db.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "PK", "AttributeType": "S"},
                {"AttributeName": "SK", "AttributeType": "S"},
                {"AttributeName": "gsi1pk", "AttributeType": "S"},
                {"AttributeName": "gsi1sk", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "gsi1",
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        index_keys = iter(rng.sample(range(10_000), 240))  # unique index sort keys: the oracle's order is defined
        for p in range(6):
            for s in rng.sample(range(1000), 40):
                kind = rng.choice(["DECISION", "SAMPLES", "STATE"])
                item = {"PK": {"S": f"P{p}"}, "SK": {"S": f"{kind}#{s:04d}"}, "v": {"N": str(rng.randint(0, 9))}}
                if kind != "SAMPLES":  # only some items are in the index, as only target configs are in gsi1
                    item |= {"gsi1pk": {"S": kind}, "gsi1sk": {"S": f"{next(index_keys):05d}"}}
                db.put_item(TableName="t", Item=item)
        scanned = db.scan(TableName="t")["Items"]
        assert len(scanned) == 240

        def query_all(**kw: Any) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            while True:
                resp = db.query(TableName="t", **kw)
                out += resp["Items"]
                if "LastEvaluatedKey" not in resp:
                    return out
                kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

        for _ in range(60):
            pk, kind = f"P{rng.randrange(7)}", rng.choice(["DECISION", "SAMPLES", "STATE"])  # P6 does not exist
            lo, hi = sorted(rng.sample(range(1000), 2))
            forward, limit = rng.choice([True, False]), rng.choice([1, 3, 7, 100])
            for cond, values, keep in (
                ("PK = :p AND begins_with(SK, :k)", {":k": {"S": kind}}, lambda sk, k=kind: sk.startswith(k)),
                (
                    "PK = :p AND SK BETWEEN :a AND :b",
                    {":a": {"S": f"{kind}#{lo:04d}"}, ":b": {"S": f"{kind}#{hi:04d}"}},
                    lambda sk, a=f"{kind}#{lo:04d}", b=f"{kind}#{hi:04d}": a <= sk <= b,
                ),
            ):
                kw: dict[str, Any] = {
                    "KeyConditionExpression": cond,
                    "ExpressionAttributeValues": {":p": {"S": pk}} | values,
                    "ScanIndexForward": forward,
                }
                want = sorted(
                    (i for i in scanned if i["PK"]["S"] == pk and keep(i["SK"]["S"])),
                    key=lambda i: i["SK"]["S"],
                    reverse=not forward,
                )
                assert query_all(**kw, Limit=limit) == want  # every page, in order
                first = db.query(TableName="t", **kw, Limit=limit)
                assert first["Items"] == want[:limit] and first["Count"] == len(want[:limit])
                kw["ExpressionAttributeValues"] |= {":n": {"N": "4"}}
                filtered = query_all(**kw, FilterExpression="v > :n")
                assert filtered == [i for i in want if int(i["v"]["N"]) > 4]

        for _ in range(20):
            kind, forward, limit = (
                rng.choice(["DECISION", "STATE", "SAMPLES"]),
                rng.choice([True, False]),
                rng.choice([1, 7, 100]),
            )
            want = sorted(
                (i for i in scanned if i.get("gsi1pk", {}).get("S") == kind),
                key=lambda i: i["gsi1sk"]["S"],
                reverse=not forward,
            )
            index_query = {
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :k",
                "ExpressionAttributeValues": {":k": {"S": kind}},
                "ScanIndexForward": forward,
            }
            assert query_all(**index_query, Limit=limit) == want  # SAMPLES: in no index entry, so none


# ---------------------------------------------------------------- moto's instance tracker


def test_overwritten_items_and_received_messages_are_freed_not_kept_by_motos_instance_tracker(
    moto_credentials: None,
) -> None:
    import gc
    import weakref

    from moto.dynamodb.models.dynamo_type import Item
    from moto.sqs.models import Message

    install()
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        db.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        versions: list[weakref.ref[Item]] = []
        for version in range(30):
            db.put_item(TableName="t", Item={"PK": {"S": "p"}, "v": {"N": str(version)}})
            (table,) = (t for b in _dynamodb_backends() for t in b.tables.values() if t.name == "t")
            (stored,) = table.all_items()
            versions.append(weakref.ref(stored))
            del stored
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        for n in range(20):
            sqs.send_message(QueueUrl=queue, MessageBody=str(n))
        received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)],
        )
        gc.collect()

        assert db.get_item(TableName="t", Key={"PK": {"S": "p"}})["Item"]["v"] == {"N": "29"}
        assert [ref() is None for ref in versions] == [True] * 29 + [False]  # only the live version is held
        assert Item.instances_tracked == [] and Message.instances_tracked == []
        left = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
        assert left["Attributes"]["ApproximateNumberOfMessages"] == "10"  # the queue itself is untouched


def _dynamodb_backends() -> Iterator[Any]:
    from moto.dynamodb.models import dynamodb_backends

    for regions in dynamodb_backends.values():
        yield from regions.values()


def test_a_cancelled_transaction_leaves_every_item_as_it_was_and_a_whole_one_applies_every_write(
    moto_credentials: None,
) -> None:
    """TransactWriteItems through the extension's rollback (the touched items kept, not the table):
    all or nothing, as DynamoDB promises, and the items it does not name are not touched."""
    from moto.dynamodb.models import DynamoDBBackend

    install()
    assert DynamoDBBackend.transact_write_items.__name__ == "transact_write_items"
    assert DynamoDBBackend.transact_write_items.__qualname__.startswith("patch_transaction_rollback")
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        make_pk_sk_table(db, "t")
        for sk, v in (("updated", "1"), ("deleted", "2"), ("bystander", "3"), ("guard", "4")):
            db.put_item(TableName="t", Item={"PK": {"S": "p"}, "SK": {"S": sk}, "v": {"N": v}})

        def items() -> dict[str, str]:
            return {i["SK"]["S"]: i["v"]["N"] for i in db.scan(TableName="t")["Items"]}

        before = items()

        def writes(guard: str) -> list[dict[str, Any]]:
            key = {"PK": {"S": "p"}}
            return [
                {"Put": {"TableName": "t", "Item": key | {"SK": {"S": "created"}, "v": {"N": "9"}}}},
                {
                    "Update": {
                        "TableName": "t",
                        "Key": key | {"SK": {"S": "updated"}},
                        "UpdateExpression": "SET v = :n",
                        "ExpressionAttributeValues": {":n": {"N": "10"}},
                    }
                },
                {"Delete": {"TableName": "t", "Key": key | {"SK": {"S": "deleted"}}}},
                {  # last, so every write before it was applied when it fails
                    "ConditionCheck": {
                        "TableName": "t",
                        "Key": key | {"SK": {"S": "guard"}},
                        "ConditionExpression": "v = :g",
                        "ExpressionAttributeValues": {":g": {"N": guard}},
                    }
                },
            ]

        with pytest.raises(db.exceptions.TransactionCanceledException) as cancelled:
            db.transact_write_items(TransactItems=writes(guard="5"))
        reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
        assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
        assert items() == before  # the created item removed, the updated and deleted ones back
        db.transact_write_items(TransactItems=writes(guard="4"))
        assert items() == {"updated": "10", "bystander": "3", "guard": "4", "created": "9"}
