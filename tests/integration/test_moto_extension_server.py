"""The moto extension through `ThreadedMotoServer` on 127.0.0.1 (a free port): plain boto3 clients with
`endpoint_url`, as the local runner and the act helper use it, including 8-thread races on the
account-wide concurrency checks.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from forescale.local.moto_extension import (
    fail_next_provisioned_allocation,
    install,
    reset,
    set_account_concurrency_limit,
    set_clock,
)
from tests.integration.test_moto_extension import (
    ACCOUNT,
    ALIAS,
    DESCRIBE_ENDPOINT_REQUEST,
    EP,
    FN,
    GET_PC_REQUEST,
    PUT_PC_REQUEST,
    REGION,
    START_S,
    UPDATE_ENDPOINT_REQUEST,
    UPDATE_WEIGHTS_REQUEST,
    FakeClock,
    error_of,
    make_config,
    make_endpoint,
    make_function,
    make_role,
    register_variant,
)

THREADS = 8
CLOCK_READ_S = 0.02


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    install()  # before the server answers its first Lambda request: it builds each service's routes once
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def clock(server_url: str) -> Iterator[FakeClock]:
    request = urllib.request.Request(f"{server_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:  # moto's own reset of every backend
        assert response.status == 200
    fake = FakeClock(START_S)
    install(clock=fake)
    yield fake
    reset()


@pytest.fixture
def client(server_url: str, clock: FakeClock) -> Callable[[str], Any]:
    factory: Any = boto3.client  # any service by name; the stubs only type literal names

    def make(service: str) -> Any:
        return factory(
            service,
            region_name=REGION,
            endpoint_url=server_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )

    return make


@pytest.fixture
def lam(client: Callable[[str], Any]) -> Any:
    return client("lambda")


@pytest.fixture
def role_arn(client: Callable[[str], Any]) -> str:
    return make_role(client("iam"))


def test_provisioned_concurrency_lifecycle_over_http(lam: Any, role_arn: str, clock: FakeClock) -> None:
    make_function(lam, role_arn)

    put = lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)
    clock.advance(60)
    ready = lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)
    listed = lam.list_provisioned_concurrency_configs(FunctionName=FN)["ProvisionedConcurrencyConfigs"]
    deleted = lam.delete_provisioned_concurrency_config(**GET_PC_REQUEST)

    assert (put["ResponseMetadata"]["HTTPStatusCode"], put["Status"]) == (202, "IN_PROGRESS")
    assert (ready["Status"], ready["AllocatedProvisionedConcurrentExecutions"]) == ("READY", 5)
    assert [c["FunctionArn"] for c in listed] == [f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FN}:{ALIAS}"]
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_failed_allocation_over_http(lam: Any, role_arn: str, clock: FakeClock) -> None:
    make_function(lam, role_arn)
    fail_next_provisioned_allocation(FN, ALIAS, "capacity unavailable")

    lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)
    clock.advance(60)
    failed = lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)

    assert (failed["Status"], failed["StatusReason"]) == ("FAILED", "capacity unavailable")


def test_arn_function_name_survives_url_encoding(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FN}"

    lam.put_provisioned_concurrency_config(FunctionName=arn, Qualifier=ALIAS, ProvisionedConcurrentExecutions=2)

    assert lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)["RequestedProvisionedConcurrentExecutions"] == 2


@pytest.mark.parametrize(
    ("request_", "code", "status"),
    [
        ({**PUT_PC_REQUEST, "Qualifier": "$LATEST"}, "InvalidParameterValueException", 400),
        ({**PUT_PC_REQUEST, "FunctionName": "missing"}, "ResourceNotFoundException", 404),
        ({**PUT_PC_REQUEST, "Qualifier": "nosuchalias"}, "ResourceNotFoundException", 404),
        ({**PUT_PC_REQUEST, "ProvisionedConcurrentExecutions": 96}, "InvalidParameterValueException", 400),
    ],
)
def test_put_error_codes_over_http(lam: Any, role_arn: str, request_: dict[str, Any], code: str, status: int) -> None:
    set_account_concurrency_limit(195)  # 96 would leave 99 unreserved
    make_function(lam, role_arn)

    with pytest.raises(ClientError) as err:
        lam.put_provisioned_concurrency_config(**request_)

    assert error_of(err)[:2] == (code, status)


def test_config_not_found_and_over_reserved_over_http(lam: Any, role_arn: str) -> None:
    make_function(lam, role_arn)
    lam.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=3)

    with pytest.raises(ClientError) as missing:
        lam.get_provisioned_concurrency_config(**GET_PC_REQUEST)
    with pytest.raises(ClientError) as over:
        lam.put_provisioned_concurrency_config(**PUT_PC_REQUEST)

    assert error_of(missing)[:2] == ("ProvisionedConcurrencyConfigNotFoundException", 404)
    assert error_of(over)[:2] == ("InvalidParameterValueException", 400)


def test_account_settings_over_http(lam: Any, role_arn: str) -> None:
    set_account_concurrency_limit(2000)
    make_function(lam, role_arn)
    lam.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=300)

    limit = lam.get_account_settings()["AccountLimit"]

    assert (limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]) == (2000, 1700)


def test_update_endpoint_and_capacities_over_http(client: Callable[[str], Any], clock: FakeClock) -> None:
    sm = client("sagemaker")
    make_endpoint(sm, instance_type="ml.p4d.24xlarge", count=1)
    make_config(sm, "ranker-g6e", "ml.g6e.xlarge", 3)

    sm.update_endpoint_weights_and_capacities(**UPDATE_WEIGHTS_REQUEST)
    with pytest.raises(ClientError) as busy:
        sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)
    clock.advance(300)
    scaled = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)["ProductionVariants"][0]
    sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)
    updating = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)["EndpointStatus"]
    clock.advance(300)
    after = sm.describe_endpoint(**DESCRIBE_ENDPOINT_REQUEST)

    assert error_of(busy)[:2] == ("ValidationException", 400)
    assert scaled["CurrentInstanceCount"] == 4
    assert updating == "Updating"
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", "ranker-g6e")
    assert after["ProductionVariants"][0]["CurrentInstanceCount"] == 3


def test_autoscaled_variant_type_change_refused_over_http(client: Callable[[str], Any]) -> None:
    sm = client("sagemaker")
    make_endpoint(sm, instance_type="ml.g5.xlarge")
    make_config(sm, "ranker-g6e", "ml.g6e.xlarge", 3)
    register_variant(client("application-autoscaling"))

    with pytest.raises(ClientError) as err:
        sm.update_endpoint(**UPDATE_ENDPOINT_REQUEST)

    assert error_of(err)[:2] == ("ValidationException", 400)
    assert sm.describe_endpoint(EndpointName=EP)["EndpointStatus"] == "InService"


def slow_clock(clock: FakeClock) -> Callable[[], float]:
    """The fake clock, taking CLOCK_READ_S per reading.

    The emulation reads the clock between its account-wide check and its write, so a slow reading
    widens exactly the window a missing lock would let concurrent Puts slip through.
    """

    def read() -> float:
        time.sleep(CLOCK_READ_S)
        return clock()

    return read


def run_together(work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` for i in range(THREADS) on THREADS threads released at once; results or exceptions."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def runner(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except ClientError as err:
            results[index] = err

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_eight_threads_cannot_overdraw_the_unreserved_pool(
    client: Callable[[str], Any], role_arn: str, clock: FakeClock
) -> None:
    setup = client("lambda")
    for i in range(THREADS):
        make_function(setup, role_arn, f"fn-{i}")
    set_account_concurrency_limit(200)  # 100 may be provisioned; each thread asks for 30
    thread_clients = [client("lambda") for _ in range(THREADS)]
    set_clock(slow_clock(clock))

    results = run_together(
        lambda i: thread_clients[i].put_provisioned_concurrency_config(
            FunctionName=f"fn-{i}", Qualifier=ALIAS, ProvisionedConcurrentExecutions=30
        )
    )

    accepted = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, ClientError)]
    assert (len(accepted), len(refused)) == (3, 5)
    assert {r.response["Error"]["Code"] for r in refused} == {"InvalidParameterValueException"}
    total = sum(
        c["RequestedProvisionedConcurrentExecutions"]
        for i in range(THREADS)
        for c in setup.list_provisioned_concurrency_configs(FunctionName=f"fn-{i}")["ProvisionedConcurrencyConfigs"]
    )
    assert total == 90


def test_eight_threads_cannot_overdraw_a_functions_reserved(
    client: Callable[[str], Any], role_arn: str, clock: FakeClock
) -> None:
    setup = client("lambda")
    make_function(setup, role_arn, alias=None)
    for i in range(THREADS):
        setup.create_alias(FunctionName=FN, Name=f"a{i}", FunctionVersion="1")
    setup.put_function_concurrency(FunctionName=FN, ReservedConcurrentExecutions=16)
    thread_clients = [client("lambda") for _ in range(THREADS)]
    set_clock(slow_clock(clock))

    results = run_together(
        lambda i: thread_clients[i].put_provisioned_concurrency_config(
            FunctionName=FN, Qualifier=f"a{i}", ProvisionedConcurrentExecutions=5
        )
    )

    assert sum(isinstance(r, dict) for r in results) == 3  # 3 x 5 = 15 <= 16 < 20
    assert all(
        r.response["Error"]["Code"] == "InvalidParameterValueException" for r in results if isinstance(r, ClientError)
    )
