"""act on moto plus forescale's moto extension: real boto3 clients, DynamoDB state, the act handler.

Faults are injected with botocore event hooks (`before-parameter-build.<service>.<Op>` raises the
ClientError AWS would answer), and every successful AWS call is counted (`after-call`), so each fault
test can check that the change was applied exactly once, or is still owed, and that the stored state
agrees with what AWS has. Time is a `ManualClock` shared by the limiter, the retries' backoff and the
extension's IN_PROGRESS→READY / Updating→InService transitions, so no test sleeps.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from forescale.adapters.state import DynamoStateStore, table_definition
from forescale.domain.ratelimit import ManualClock
from forescale.domain.targets import TargetKind
from forescale.local.environment import create_stand_in_function
from forescale.local.moto_extension import (
    fail_next_provisioned_allocation,
    install,
    reset,
    set_account_concurrency_limit,
)
from forescale.local.router import LambdaContextStub, scheduled_event
from forescale.runtime.act import ActService
from forescale.runtime.events import EventError
from forescale.runtime.models import (
    DecisionMadeDetail,
    DecisionRecord,
    DecisionStatus,
    Mode,
    TargetConfig,
)
from forescale.runtime.settings import ActSettings
from tests.targets import endpoint_target, pc_target, reserved_target

S = DecisionStatus
REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "forescale"
BUS = "forescale"
START = 1_795_392_000.0  # 2026-11-23 00:00 UTC
MODEL = "ranker-model"
MUTATING = {
    "PutProvisionedConcurrencyConfig",
    "DeleteProvisionedConcurrencyConfig",
    "PutFunctionConcurrency",
    "DeleteFunctionConcurrency",
    "UpdateEndpointWeightsAndCapacities",
    "CreateEndpointConfig",
    "UpdateEndpoint",
    "RegisterScalableTarget",
    "DeregisterScalableTarget",
    "PutScalingPolicy",
    "PutScheduledAction",
}


def act_module() -> ModuleType:
    return importlib.import_module("functions.act.handler")


# ---------------------------------------------------------------- races, through the threaded server
# First in this module on purpose: the in-process moto of the fixtures below (module-scoped) would
# intercept these clients too, and in-process moto is not thread-safe.


def test_concurrent_acts_apply_each_decision_once_through_the_threaded_server() -> None:
    install()  # before the server answers its first Lambda request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    install(clock=ManualClock(START))  # no PC becomes READY during the race: every apply leaves it IN_PROGRESS
    factory: Any = boto3.client

    def make(service: str) -> Any:
        config = Config(retries={"total_max_attempts": 1}) if service == "lambda" else None
        return factory(
            service,
            region_name=REGION,
            endpoint_url=url,
            aws_access_key_id="t",
            aws_secret_access_key="t",
            config=config,
        )

    try:
        make("dynamodb").create_table(**table_definition(TABLE))
        make("events").create_event_bus(Name=BUS)
        role = make("iam").create_role(RoleName="fn-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam, store = make("lambda"), DynamoStateStore(make("dynamodb"), TABLE)
        details = []
        for i in range(6):
            name = f"fn-{i}"
            create_stand_in_function(lam, name, role)
            store.put_target(pc_target(name))
            record = DecisionRecord(
                decision_id=DecisionRecord.id_for(name, int(START)),
                target=name,
                decided_at=int(START),
                capacity=3,
                previous=0,
                recommended=3,
                policy="predictive",
                reason="race",
                mode=Mode.ACTIVE,
                status=S.PENDING,
            )
            store.put_decision(record)
            details.append(
                DecisionMadeDetail(
                    decision_id=record.decision_id,
                    target=name,
                    decided_at=record.decided_at,
                    capacity=3,
                    previous=0,
                    mode=Mode.ACTIVE,
                    reason="race",
                )
            )
        puts: Counter[str] = Counter()
        lock = threading.Lock()

        def count(http_response: Any, model: Any, **_: Any) -> None:
            if model.name == "PutProvisionedConcurrencyConfig" and http_response.status_code < 300:
                with lock:
                    puts[model.name] += 1

        settings = ActSettings(TABLE_NAME=TABLE, EVENT_BUS_NAME=BUS)
        services = []
        for _ in range(8):  # eight acts: four get the DecisionMade batch (redeliveries), four run the sweep
            clients = {s: make(s) for s in ("dynamodb", "events", "lambda", "sagemaker", "application-autoscaling")}
            clients["lambda"].meta.events.register("after-call.lambda", count)
            clock = ManualClock(0.0)
            services.append(act_module().build_service(settings, clients, clock=clock, sleep=clock.sleep))
        barrier = threading.Barrier(len(services))
        errors: list[BaseException] = []

        def run(k: int) -> None:
            try:
                barrier.wait()
                if k % 2:
                    services[k].sweep(int(START) + 5)
                else:
                    services[k].apply_decisions(details, int(START) + 5)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(services))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors
        assert puts["PutProvisionedConcurrencyConfig"] == len(details)  # once each, never twice
        for d in details:
            record = store.get_decision(d.target, d.decided_at)
            assert record is not None and record.status is S.IN_FLIGHT
            state = store.get_state(d.target)
            assert state.in_flight is not None and state.in_flight.decision_id == d.decision_id
    finally:
        server.stop()
        reset()


# ---------------------------------------------------------------- fault injection and call counting


@dataclass
class Fault:
    code: str
    message: str
    status: int
    times: int
    when: Callable[[dict[str, Any]], bool] | None = None


@dataclass
class Faults:
    """Arms ClientErrors on (service, operation) and counts the calls that AWS (moto) accepted."""

    clients: dict[str, Any] = field(default_factory=dict)
    armed: dict[tuple[str, str], Fault] = field(default_factory=dict)
    succeeded: Counter[tuple[str, str]] = field(default_factory=Counter)
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_id.hyphenize()
        self.clients[service] = client
        client.meta.events.register(f"before-parameter-build.{service}", self._before)
        client.meta.events.register(f"after-call.{service}", self._after)
        return client

    def arm(self, service: str, op: str, code: str, message: str = "", status: int = 400, times: int = 1,
            when: Callable[[dict[str, Any]], bool] | None = None) -> None:  # fmt: skip
        self.armed[(service, op)] = Fault(code, message, status, times, when)

    def disarm(self) -> None:
        self.armed.clear()

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_id.hyphenize()
        fault = self.armed.get((service, model.name))
        if fault is None or fault.times <= 0 or (fault.when is not None and not fault.when(params)):
            return
        fault.times -= 1
        self.injected[(service, model.name)] += 1
        response: Any = {
            "Error": {"Code": fault.code, "Message": fault.message},
            "ResponseMetadata": {"HTTPStatusCode": fault.status},
        }
        raise self.clients[service].exceptions.from_code(fault.code)(response, model.name)

    def _after(self, http_response: Any, model: Any, **_: Any) -> None:
        if http_response.status_code < 300:
            self.succeeded[(model.service_model.service_id.hyphenize(), model.name)] += 1

    def mutations(self) -> dict[str, int]:
        return {op: n for (_, op), n in self.succeeded.items() if op in MUTATING}


# ---------------------------------------------------------------- the world


@dataclass
class World:
    clock: ManualClock
    faults: Faults
    lam: Any
    sm: Any
    aas: Any
    cloudwatch: Any
    store: DynamoStateStore
    service: ActService
    role: str

    @property
    def now(self) -> int:
        return int(self.clock())

    def function(self, name: str, alias: str = "live") -> None:
        create_stand_in_function(self.lam, name, self.role, alias=alias)

    def endpoint(self, name: str = "ranker", instance_type: str = "ml.g5.xlarge", count: int = 2) -> None:
        self.sm.create_model(
            ModelName=MODEL,
            ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sm-role",
            PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ranker:1"},
        )
        self.sm.create_endpoint_config(
            EndpointConfigName=f"{name}-g5",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": MODEL,
                    "InstanceType": instance_type,
                    "InitialInstanceCount": count,
                    "InitialVariantWeight": 1.0,
                }
            ],
        )
        self.sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-g5")

    def scalable(self, namespace: str, resource_id: str, dimension: str, low: int, high: int) -> None:
        key = {"ServiceNamespace": namespace, "ResourceId": resource_id, "ScalableDimension": dimension}
        self.aas.register_scalable_target(**key, MinCapacity=low, MaxCapacity=high)
        metric = "LambdaProvisionedConcurrencyUtilization" if namespace == "lambda" else (
            "SageMakerVariantInvocationsPerInstance"
        )  # fmt: skip
        self.aas.put_scaling_policy(
            **key,
            PolicyName="tracking",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 0.7,
                "PredefinedMetricSpecification": {"PredefinedMetricType": metric},
            },
        )

    def target(self, cfg: TargetConfig) -> None:
        self.store.put_target(cfg)

    def decide(
        self, name: str, capacity: int, previous: int = 0, instance_type: str | None = None, at: int | None = None
    ) -> DecisionMadeDetail:
        at = at if at is not None else self.now - self.now % 60
        record = DecisionRecord(
            decision_id=DecisionRecord.id_for(name, at),
            target=name,
            decided_at=at,
            capacity=capacity,
            previous=previous,
            recommended=capacity,
            instance_type=instance_type,
            policy="predictive",
            reason="integration test",
            demand_rps=50.0,
            mode=Mode.ACTIVE,
            status=S.PENDING,
        )
        assert self.store.put_decision(record)
        return DecisionMadeDetail(
            decision_id=record.decision_id,
            target=name,
            decided_at=at,
            capacity=capacity,
            previous=previous,
            instance_type=instance_type,
            mode=Mode.ACTIVE,
            reason="integration test",
            urgency=10.0,
        )

    def status(self, detail: DecisionMadeDetail) -> DecisionRecord:
        got = self.store.get_decision(detail.target, detail.decided_at)
        assert got is not None
        return got

    def settle(self, cycles: int = 4, step_s: float = 301) -> None:
        """Run sweeps as the schedule would, letting AWS finish what is in progress between them."""
        for _ in range(cycles):
            self.clock.advance(step_s)
            self.service.sweep(self.now)


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    """One moto and one set of clients for the module (building clients is the slow part); reset per test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        with mock_aws() as mock:
            faults = Faults()
            no_retries = Config(retries={"total_max_attempts": 1})  # as the handler builds it
            clients = {
                "dynamodb": faults.attach(boto3.client("dynamodb", region_name=REGION)),
                "events": boto3.client("events", region_name=REGION),
                "lambda": faults.attach(boto3.client("lambda", region_name=REGION, config=no_retries)),
                "sagemaker": faults.attach(boto3.client("sagemaker", region_name=REGION)),
                "application-autoscaling": faults.attach(boto3.client("application-autoscaling", region_name=REGION)),
                "iam": boto3.client("iam", region_name=REGION),
                "cloudwatch": boto3.client("cloudwatch", region_name=REGION),
            }
            yield {"mock": mock, "faults": faults, "clients": clients}


@pytest.fixture
def world(aws: dict[str, Any]) -> Iterator[World]:
    aws["mock"].reset()  # every moto backend starts empty
    faults: Faults = aws["faults"]
    faults.disarm()
    faults.succeeded.clear()
    faults.injected.clear()
    clients = aws["clients"]
    clock = ManualClock(START)
    install(clock=clock)
    try:
        clients["dynamodb"].create_table(**table_definition(TABLE))
        clients["events"].create_event_bus(Name=BUS)
        role = clients["iam"].create_role(RoleName="fn-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        settings = ActSettings(TABLE_NAME=TABLE, EVENT_BUS_NAME=BUS, ROLLBACK_ALARM_NAMES="ranker-p99")
        service = act_module().build_service(settings, clients, clock=clock, sleep=clock.sleep)
        yield World(
            clock=clock,
            faults=faults,
            lam=clients["lambda"],
            sm=clients["sagemaker"],
            aas=clients["application-autoscaling"],
            cloudwatch=clients["cloudwatch"],
            store=DynamoStateStore(clients["dynamodb"], TABLE),
            service=service,
            role=role,
        )
    finally:
        reset()


def provisioned_in_aws(w: World, name: str) -> dict[str, Any] | None:
    try:
        resp: dict[str, Any] = w.lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ProvisionedConcurrencyConfigNotFoundException":
            return None
        raise
    return resp


# ---------------------------------------------------------------- the happy paths, on moto


def test_provisioned_concurrency_goes_in_progress_then_ready_and_the_state_follows(world: World) -> None:
    world.function("orders")
    world.target(pc_target("orders"))
    detail = world.decide("orders", 10)
    summary = world.service.apply_decisions([detail], world.now)
    assert summary["in-flight"] == 1
    assert provisioned_in_aws(world, "orders")["Status"] == "IN_PROGRESS"  # type: ignore[index]
    world.clock.advance(30)
    assert world.service.sweep(world.now)["completed"] == 0  # 30 s: AWS is still allocating
    world.clock.advance(31)
    summary = world.service.sweep(world.now)
    assert summary["completed"] == 1 and summary["applied"] == 1
    assert world.status(detail).status is S.APPLIED
    aws = provisioned_in_aws(world, "orders")
    assert aws is not None and aws["Status"] == "READY" and aws["AllocatedProvisionedConcurrentExecutions"] == 10
    state = world.store.get_state("orders")
    assert state.capacity == 10 and state.in_flight is None
    assert world.service.publisher.sent == 2  # IN_FLIGHT, then APPLIED
    assert world.faults.mutations() == {"PutProvisionedConcurrencyConfig": 1}


def test_an_allocation_that_fails_in_aws_fails_the_decision_with_its_reason(world: World) -> None:
    world.function("orders")
    world.target(pc_target("orders"))
    fail_next_provisioned_allocation("orders", "live", "FUNCTION_ERROR_INIT_FAILURE: init crashed")
    detail = world.decide("orders", 4)
    world.service.apply_decisions([detail], world.now)
    world.settle(1, 61)
    record = world.status(detail)
    assert record.status is S.FAILED and "FUNCTION_ERROR_INIT_FAILURE: init crashed" in (record.outcome or "")
    assert world.store.get_state("orders").in_flight is None


def test_capacity_zero_deletes_the_config(world: World) -> None:
    world.function("orders")
    world.lam.put_provisioned_concurrency_config(
        FunctionName="orders", Qualifier="live", ProvisionedConcurrentExecutions=3
    )
    world.target(pc_target("orders"))
    detail = world.decide("orders", 0, previous=3)
    world.service.apply_decisions([detail], world.now)
    assert world.status(detail).status is S.APPLIED
    assert provisioned_in_aws(world, "orders") is None
    assert world.store.get_state("orders").capacity == 0


def test_headroom_comes_from_get_account_settings(world: World) -> None:
    set_account_concurrency_limit(1000)
    world.function("greedy")
    world.lam.put_function_concurrency(FunctionName="greedy", ReservedConcurrentExecutions=850)
    world.function("batch")
    world.target(reserved_target("batch"))
    detail = world.decide("batch", 60)
    world.service.apply_decisions([detail], world.now)
    record = world.status(detail)
    assert record.status is S.FAILED and "would leave 90 unreserved" in (record.outcome or "")
    assert "ReservedConcurrentExecutions" not in world.lam.get_function_concurrency(FunctionName="batch")
    ok = world.decide("batch", 40, at=world.now - world.now % 60 + 60)
    world.service.apply_decisions([ok], world.now + 60)
    assert world.status(ok).status is S.APPLIED
    assert world.lam.get_function_concurrency(FunctionName="batch")["ReservedConcurrentExecutions"] == 40


def test_provisioned_over_reserved_is_refused_before_calling_aws(world: World) -> None:
    world.function("orders")
    world.lam.put_function_concurrency(FunctionName="orders", ReservedConcurrentExecutions=5)
    world.target(pc_target("orders"))
    detail = world.decide("orders", 8)
    world.service.apply_decisions([detail], world.now)
    assert world.status(detail).status is S.FAILED
    assert "PutProvisionedConcurrencyConfig" not in world.faults.mutations()


def test_an_existing_scalable_target_gets_a_new_floor_not_a_fight(world: World) -> None:
    world.function("orders")
    world.scalable("lambda", "function:orders:live", "lambda:function:ProvisionedConcurrency", 2, 20)
    world.target(pc_target("orders"))
    detail = world.decide("orders", 9, previous=2)
    world.service.apply_decisions([detail], world.now)
    assert world.status(detail).status is S.APPLIED
    (target,) = world.aas.describe_scalable_targets(ServiceNamespace="lambda", ResourceIds=["function:orders:live"])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (9, 20)
    assert "PutProvisionedConcurrencyConfig" not in world.faults.mutations()


def test_instance_count_waits_for_in_service_and_completes(world: World) -> None:
    world.endpoint()
    world.target(endpoint_target())
    detail = world.decide("ranker", 4, previous=2)
    world.service.apply_decisions([detail], world.now)
    assert world.status(detail).status is S.IN_FLIGHT
    assert world.sm.describe_endpoint(EndpointName="ranker")["EndpointStatus"] == "Updating"
    second = world.decide("ranker", 5, previous=4, at=world.now - world.now % 60 + 60)
    world.service.apply_decisions([second], world.now + 60)
    assert world.status(second).status is S.DEFERRED  # the endpoint is busy with the first
    world.settle(2)
    assert world.status(detail).status is S.APPLIED
    assert world.status(second).status is S.APPLIED
    variant = world.sm.describe_endpoint(EndpointName="ranker")["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 5
    assert world.store.get_state("ranker").capacity == 5
    assert world.faults.mutations()["UpdateEndpointWeightsAndCapacities"] == 2


def test_instance_type_switch_blue_green_with_autoscaling_taken_down_and_put_back(world: World) -> None:
    world.endpoint()
    world.scalable("sagemaker", "endpoint/ranker/variant/AllTraffic", "sagemaker:variant:DesiredInstanceCount", 1, 6)
    world.target(endpoint_target(kind=TargetKind.SAGEMAKER_INSTANCE_TYPE))
    detail = world.decide("ranker", 3, previous=2, instance_type="ml.g6.xlarge")
    world.service.apply_decisions([detail], world.now)
    assert world.status(detail).status is S.IN_FLIGHT
    described = world.sm.describe_endpoint(EndpointName="ranker")
    assert described["EndpointStatus"] == "Updating"
    assert not world.aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    world.settle(1)
    record = world.status(detail)
    assert record.status is S.APPLIED, record.outcome
    described = world.sm.describe_endpoint(EndpointName="ranker")
    config = world.sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.g6.xlarge"
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 3
    (target,) = world.aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 6)
    (policy,) = world.aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["PolicyName"] == "tracking"
    state = world.store.get_state("ranker")
    assert (state.instance_type, state.capacity, state.in_flight) == ("ml.g6.xlarge", 3, None)
    assert world.faults.mutations()["UpdateEndpoint"] == 1


def test_instance_type_switch_rolls_back_on_the_alarm(world: World) -> None:
    world.endpoint()
    world.cloudwatch.put_metric_alarm(
        AlarmName="ranker-p99",
        MetricName="ModelLatency",
        Namespace="AWS/SageMaker",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    world.cloudwatch.set_alarm_state(AlarmName="ranker-p99", StateValue="ALARM", StateReason="test")
    world.target(endpoint_target(kind=TargetKind.SAGEMAKER_INSTANCE_TYPE))
    detail = world.decide("ranker", 2, previous=2, instance_type="ml.g6.xlarge")
    world.service.apply_decisions([detail], world.now)
    world.settle(1)
    record = world.status(detail)
    assert record.status is S.FAILED and "rolled back" in (record.outcome or "")
    assert world.store.get_state("ranker").instance_type == "ml.g5.xlarge"


# ---------------------------------------------------------------- faults on every mutating path


def _state_sk(params: dict[str, Any]) -> bool:
    return params.get("Item", {}).get("SK", {}).get("S") == "STATE"


@dataclass(frozen=True)
class Case:
    path: str
    service: str
    op: str
    code: str
    status: int = 400
    message: str = ""
    times: int = 50
    first: DecisionStatus = S.DEFERRED
    final: DecisionStatus = S.APPLIED
    when: Callable[[dict[str, Any]], bool] | None = None
    on_completion: bool = False  # armed after the first run, for the cycle that finishes the operation

    @property
    def id(self) -> str:
        return f"{self.path}-{self.op}-{self.code}-x{self.times}" + ("-on-completion" if self.on_completion else "")


PC_PUT = ("pc", "lambda", "PutProvisionedConcurrencyConfig")
RESERVED_PUT = ("reserved", "lambda", "PutFunctionConcurrency")
FLOOR = ("floor", "application-auto-scaling", "RegisterScalableTarget")
COUNT = ("count", "sagemaker", "UpdateEndpointWeightsAndCapacities")
UPDATE = ("type", "sagemaker", "UpdateEndpoint")
BUSY_ENDPOINT = 'Cannot update in-progress endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ranker".'
CASES = [
    # Lambda provisioned concurrency
    Case(*PC_PUT, "TooManyRequestsException", 429, "Rate exceeded", 2, S.IN_FLIGHT),  # within the retries
    Case(*PC_PUT, "TooManyRequestsException", 429, "Rate exceeded"),
    Case(*PC_PUT, "ThrottlingException", 400, "Rate exceeded"),
    Case(*PC_PUT, "ServiceException", 500, "internal"),
    Case(*PC_PUT, "ServiceUnavailable", 503, "unavailable"),
    Case(*PC_PUT, "ResourceConflictException", 409, "update in progress", 1),
    Case(*PC_PUT, "ValidationException", 400, "bad request", 1, S.FAILED, S.FAILED),
    Case("pc", "lambda", "GetProvisionedConcurrencyConfig", "TooManyRequestsException", 429, "Rate exceeded"),
    Case("pc", "dynamodb", "PutItem", "ConditionalCheckFailedException", 400, "", 2, S.IN_FLIGHT, when=_state_sk),
    Case("pc", "dynamodb", "PutItem", "ConditionalCheckFailedException", 400, "", 50, S.DEFERRED, when=_state_sk),
    Case("pc-delete", "lambda", "DeleteProvisionedConcurrencyConfig", "TooManyRequestsException", 429, "Rate exceeded"),
    Case("pc-delete", "lambda", "DeleteProvisionedConcurrencyConfig", "ResourceConflictException", 409, "busy", 1),
    # Lambda reserved concurrency
    Case(*RESERVED_PUT, "TooManyRequestsException", 429, "Rate exceeded"),
    Case(*RESERVED_PUT, "ServiceException", 500, "internal"),
    Case(*RESERVED_PUT, "ResourceConflictException", 409, "busy", 1),
    Case(*RESERVED_PUT, "AccessDeniedException", 403, "not authorized", 1, S.FAILED, S.FAILED),
    Case("reserved", "lambda", "GetAccountSettings", "ServiceException", 500, "internal"),
    Case("reserved-delete", "lambda", "DeleteFunctionConcurrency", "TooManyRequestsException", 429, "Rate exceeded"),
    # Application Auto Scaling floor
    Case(*FLOOR, "ConcurrentUpdateException", 400, "busy", 1),
    Case(*FLOOR, "ValidationException", 400, "nope", 1, S.FAILED, S.FAILED),
    # SageMaker instance count
    Case(*COUNT, "ThrottlingException", 400, "Rate exceeded"),
    Case(*COUNT, "ServiceUnavailable", 503, "unavailable"),
    Case(*COUNT, "ValidationException", 400, BUSY_ENDPOINT, 1),
    Case("count", "dynamodb", "PutItem", "ConditionalCheckFailedException", 400, "", 50, S.DEFERRED, when=_state_sk),
    # SageMaker instance type switch
    Case("type", "sagemaker", "CreateEndpointConfig", "ThrottlingException", 400, "Rate exceeded"),
    Case("type", "application-auto-scaling", "DeregisterScalableTarget", "ConcurrentUpdateException", 400, "busy", 1,
         S.IN_FLIGHT),
    Case(*UPDATE, "ThrottlingException", 400, "Rate exceeded", 50, S.IN_FLIGHT),
    Case(*UPDATE, "ValidationException", 400, BUSY_ENDPOINT, 1, S.IN_FLIGHT),
    Case(*UPDATE, "ValidationException", 400, "instance type not available", 1, S.FAILED, S.FAILED),
    Case("type", "application-auto-scaling", "RegisterScalableTarget", "ConcurrentUpdateException", 400, "busy", 50,
         S.IN_FLIGHT, on_completion=True),
    Case("type", "sagemaker", "DescribeEndpoint", "ThrottlingException", 400, "Rate exceeded", 50, S.IN_FLIGHT,
         on_completion=True),
    Case("type", "dynamodb", "PutItem", "ConditionalCheckFailedException", 400, "", 2, S.IN_FLIGHT, when=_state_sk),
]  # fmt: skip


def _setup(world: World, path: str) -> DecisionMadeDetail:
    if path in ("pc", "pc-delete", "floor"):
        world.function("orders")
        world.target(pc_target("orders"))
        if path == "pc-delete":
            world.lam.put_provisioned_concurrency_config(
                FunctionName="orders", Qualifier="live", ProvisionedConcurrentExecutions=3
            )
            return world.decide("orders", 0, previous=3)
        if path == "floor":
            world.scalable("lambda", "function:orders:live", "lambda:function:ProvisionedConcurrency", 1, 10)
        return world.decide("orders", 6, previous=1)
    if path in ("reserved", "reserved-delete"):
        world.function("batch")
        world.target(reserved_target("batch"))
        if path == "reserved-delete":
            world.lam.put_function_concurrency(FunctionName="batch", ReservedConcurrentExecutions=20)
            return world.decide("batch", 0, previous=20)
        return world.decide("batch", 30)
    world.endpoint()
    if path == "type":
        world.scalable(
            "sagemaker", "endpoint/ranker/variant/AllTraffic", "sagemaker:variant:DesiredInstanceCount", 1, 6
        )
        world.target(endpoint_target(kind=TargetKind.SAGEMAKER_INSTANCE_TYPE))
        return world.decide("ranker", 3, previous=2, instance_type="ml.g6.xlarge")
    world.target(endpoint_target())
    return world.decide("ranker", 4, previous=2)


def _aws_capacity(world: World, path: str) -> tuple[int | None, str | None]:
    if path in ("pc", "pc-delete"):
        got = provisioned_in_aws(world, "orders")
        return (got["RequestedProvisionedConcurrentExecutions"] if got else 0), None
    if path == "floor":
        (t,) = world.aas.describe_scalable_targets(ServiceNamespace="lambda")["ScalableTargets"]
        return t["MinCapacity"], None
    if path in ("reserved", "reserved-delete"):
        return world.lam.get_function_concurrency(FunctionName="batch").get("ReservedConcurrentExecutions", 0), None
    ep = world.sm.describe_endpoint(EndpointName="ranker")
    config = world.sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
    return ep["ProductionVariants"][0]["CurrentInstanceCount"], config["ProductionVariants"][0]["InstanceType"]


def _check_consistent(world: World, detail: DecisionMadeDetail) -> None:
    record = world.status(detail)
    state = world.store.get_state(detail.target)
    if record.status is S.IN_FLIGHT:
        assert state.in_flight is not None and state.in_flight.decision_id == detail.decision_id
    if record.status in (S.APPLIED, S.FAILED, S.PENDING):
        assert state.in_flight is None
    for op, n in world.faults.mutations().items():
        if op not in ("PutScalingPolicy", "RegisterScalableTarget"):  # restore re-puts what it took down
            assert n <= 1, f"{op} went through {n} times for one decision"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_fault_leaves_the_action_applied_once_or_still_owed(world: World, case: Case) -> None:
    detail = _setup(world, case.path)
    before = _aws_capacity(world, case.path)
    world.faults.succeeded.clear()  # count act's calls only, not the setup's
    if case.on_completion:
        world.service.apply_decisions([detail], world.now)
        assert world.status(detail).status is S.IN_FLIGHT
        world.clock.advance(301)  # AWS has finished; the next cycle's completion step meets the fault
    world.faults.arm(case.service, case.op, case.code, case.message, case.status, case.times, case.when)

    if case.on_completion:
        world.service.sweep(world.now)
    else:
        world.service.apply_decisions([detail], world.now)

    assert world.faults.injected[(case.service, case.op)] >= 1, "the fault was never hit"
    record = world.status(detail)
    assert record.status is case.first, record.outcome
    assert record.outcome, "every outcome says why"
    if case.first is S.FAILED:
        assert case.message in (record.outcome or "") and _aws_capacity(world, case.path) == before
    _check_consistent(world, detail)

    world.faults.disarm()
    world.settle()
    record = world.status(detail)
    assert record.status is case.final, record.outcome
    _check_consistent(world, detail)
    after = _aws_capacity(world, case.path)
    state = world.store.get_state(detail.target)
    if case.final is S.APPLIED:
        assert after[0] == detail.capacity
        if case.path == "floor":
            # moto's Application Auto Scaling does not move the real capacity to the new floor; the
            # state follows what Lambda really has, read back by the sweep's reconcile.
            real = provisioned_in_aws(world, "orders")
            assert state.capacity == (real["RequestedProvisionedConcurrentExecutions"] if real else 0)
        else:
            assert state.capacity == detail.capacity
        if detail.instance_type:
            assert after[1] == state.instance_type == detail.instance_type
    else:
        assert after == before
    if case.path == "type":  # whatever happened, autoscaling is back as it was
        (t,) = world.aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        assert (t["MinCapacity"], t["MaxCapacity"]) == (1, 6)


# ---------------------------------------------------------------- the handler


def _decision_event(detail: DecisionMadeDetail, event_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "forescale.DecisionMade",
        "source": "forescale",
        "account": ACCOUNT,
        "time": "2026-11-23T00:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail.model_dump(mode="json"),
    }


@pytest.fixture
def handler_env(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "forescale")
    module = act_module()
    module.reset()
    # The handler bounds event times against its clock (issue 15): run it on the world's, like the decisions.
    module.lambda_support.set_clock(world.clock)
    yield module
    module.lambda_support.set_clock(None)
    module.reset()


def test_the_handler_applies_once_per_event_and_sweeps_on_schedule(world: World, handler_env: ModuleType) -> None:
    world.function("orders")
    world.target(pc_target("orders"))
    detail = world.decide("orders", 7)
    event = _decision_event(detail, "evt-1")
    context = LambdaContextStub("forescale-act")
    world.faults.attach(handler_env._default_client("lambda"))  # count the handler's own Lambda calls

    first = handler_env.handler(event, context)
    again = handler_env.handler(event, context)  # EventBridge redelivery: Powertools Idempotency replays
    assert first == again and first["counts"]["in-flight"] == 1
    other_copy = handler_env.handler(_decision_event(detail, "evt-2"), context)  # a copy with a new id
    assert other_copy["counts"].get("in-flight", 0) == 0 and other_copy["counts"]["skipped"] == 1
    assert world.faults.mutations() == {"PutProvisionedConcurrencyConfig": 1}

    world.clock.advance(61)  # the handler and the extension's READY both run on the world's clock
    swept = handler_env.handler(scheduled_event(int(START) + 120, "forescale-act-sweep"), context)
    assert swept["trigger"] == "sweep" and swept["counts"]["completed"] == 1
    assert world.status(detail).status is S.APPLIED


def test_the_handler_rejects_a_malformed_event_loudly(world: World, handler_env: ModuleType) -> None:
    world.target(pc_target("orders"))
    event = _decision_event(world.decide("orders", 7), "evt-bad")
    event["detail"]["capacity"] = -3
    with pytest.raises(EventError, match=r"detail\.capacity"):
        handler_env.handler(event, LambdaContextStub("forescale-act"))
    event = _decision_event(world.decide("orders", 7, at=int(START) + 60), "evt-other")
    event["detail-type"] = "forescale.Surprise"
    with pytest.raises(EventError, match="not handled here"):
        handler_env.handler(event, LambdaContextStub("forescale-act"))


def _sqs_record(message_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": json.dumps(body),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:forescale-act",
        "awsRegion": REGION,
    }


def test_the_handler_applies_an_sqs_batch_together_and_hands_back_a_bad_record(
    world: World, handler_env: ModuleType
) -> None:
    # Given an SQS batch (EventBridge → SQS → act) of two DecisionMade events and one malformed record
    for name in ("orders", "search"):
        world.function(name)
        world.target(pc_target(name))
    details = [world.decide("orders", 4), world.decide("search", 6)]
    bad = _decision_event(details[0], "evt-bad")
    bad["detail"]["capacity"] = -3

    event = {
        "Records": [
            _sqs_record("m-1", _decision_event(details[0], "evt-1")),
            _sqs_record("m-2", bad),
            _sqs_record("m-3", _decision_event(details[1], "evt-3")),
        ]
    }
    world.faults.attach(handler_env._default_client("lambda"))
    # When act's handler gets it
    response = handler_env.handler(event, LambdaContextStub("forescale-act"))
    # Then both decisions are applied in one invocation, and only the bad record goes back to SQS
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert [world.status(d).status for d in details] == [S.IN_FLIGHT, S.IN_FLIGHT]
    assert world.faults.mutations() == {"PutProvisionedConcurrencyConfig": 2}


def test_schedule_events_in_an_sqs_batch_run_one_sweep_after_the_decisions(
    world: World, handler_env: ModuleType
) -> None:
    # Given act's queue (the stack routes act's schedule through it too) holding a DecisionMade for one
    # target, and, a minute after another target's change went in flight, two schedule events
    for name in ("orders", "search"):
        world.function(name)
        world.target(pc_target(name))
    earlier = world.decide("orders", 4)
    context = LambdaContextStub("forescale-act")
    handler_env.handler({"Records": [_sqs_record("m-0", _decision_event(earlier, "evt-0"))]}, context)
    assert world.status(earlier).status is S.IN_FLIGHT
    world.clock.advance(61)
    later = world.decide("search", 6, at=int(START) + 61)
    event = {
        "Records": [
            _sqs_record("m-1", scheduled_event(int(START) + 60, "forescale-act-sweep")),
            _sqs_record("m-2", _decision_event(later, "evt-2")),
            _sqs_record("m-3", scheduled_event(int(START) + 120, "forescale-act-sweep")),
        ]
    }
    world.faults.attach(handler_env._default_client("lambda"))
    # When act's handler gets the batch
    response = handler_env.handler(event, context)
    # Then the decision is applied and the sweep (once) finishes the change in flight; nothing goes back
    assert response == {"batchItemFailures": []}
    assert world.status(later).status is S.IN_FLIGHT
    assert world.status(earlier).status is S.APPLIED
    assert world.faults.mutations() == {"PutProvisionedConcurrencyConfig": 1}
