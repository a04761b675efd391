"""The deployed pipeline on in-process moto, minute by minute, with every AWS call the handlers make
visible and interceptable: the harness of the fault-injection, crash-point and kill-switch tests.

One scenario: three targets a user would register (Lambda provisioned concurrency on an alias,
Lambda reserved concurrency, a SageMaker variant's instance count), an hour of collected history,
then cycles of collect → forecast → (plan, react, act through the local router) → act's sweep, the
demo's loop. At minute `STEP_AT` demand jumps, so the cycle there decides and applies a scale-out
on every target: that is the cycle the tests break.

Every botocore call goes through `BaseClient._make_api_call`, which the harness wraps: it notes
(stage, service, operation, item kind) for each call made inside a handler, and raises an armed
fault at a chosen call. A fault raised there is what the adapter sees after botocore's own retries
gave up (or, with botocore's retries off, as act's Lambda client has them, on the first answer).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.client
from botocore.exceptions import ClientError, ReadTimeoutError

from forescale.domain.ratelimit import ManualClock
from forescale.local import moto_extension
from forescale.local.environment import (
    LocalEnvironment,
    create_stand_in_function,
    environment_variables,
    function_env,
    provision,
)
from forescale.local.router import LambdaContextStub, load_handler, scheduled_event
from forescale.runtime import lambda_support
from forescale.runtime.models import (
    AppliedState,
    DecisionRecord,
    DemandSampleDetail,
    InstanceTypeSpec,
    Mode,
    TargetConfig,
    TargetKind,
)
from forescale.runtime.observability import logger as forescale_logger
from forescale.runtime.settings import ActSettings

REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "forescale"
START = 1_795_392_000  # 2026-11-23 00:00 UTC
HISTORY_MINUTES = 60
STEP_AT = HISTORY_MINUTES + 2  # demand jumps in this minute ...
FAULT_CYCLE = STEP_AT + 1  # ... so the cycle after it (which reads it) scales every target out
LOW = {"api": 20.0, "batch": 30.0, "ranker": 40.0}  # requests/s before STEP_AT
HIGH = {"api": 90.0, "batch": 120.0, "ranker": 160.0}  # and from STEP_AT on
ROLE = f"arn:aws:iam::{ACCOUNT}:role/forescale-test-function"
CATALOG = (InstanceTypeSpec(name="ml.g5.xlarge", price_per_hour=1.41, capacity_rps=60),)
# Calls that change a user's resource: each must happen at most once per decision.
MUTATING = frozenset(
    {
        "PutProvisionedConcurrencyConfig",
        "DeleteProvisionedConcurrencyConfig",
        "PutFunctionConcurrency",
        "DeleteFunctionConcurrency",
        "UpdateEndpointWeightsAndCapacities",
        "UpdateEndpoint",
        "CreateEndpointConfig",
        "RegisterScalableTarget",
        "DeregisterScalableTarget",
    }
)
FINAL = frozenset({"applied", "no-change", "superseded", "failed", "dry-run"})


def configs() -> dict[str, TargetConfig]:
    return {
        "api": TargetConfig(
            name="api", kind=TargetKind.LAMBDA_PROVISIONED, function_name="api", qualifier="live",
            duration_s=0.2, min_capacity=1, max_capacity=400, mode=Mode.ACTIVE,
        ),
        "batch": TargetConfig(
            name="batch", kind=TargetKind.LAMBDA_RESERVED, function_name="batch",
            duration_s=0.25, min_capacity=2, max_capacity=400, mode=Mode.ACTIVE,
        ),
        "ranker": TargetConfig(
            name="ranker", kind=TargetKind.SAGEMAKER_INSTANCE_COUNT, endpoint_name="ranker",
            variant_name="AllTraffic", catalog=CATALOG, instance_type="ml.g5.xlarge",
            min_capacity=1, max_capacity=20, mode=Mode.ACTIVE,
        ),
    }  # fmt: skip


def rate(name: str, minute: int) -> float:
    return HIGH[name] if minute >= STEP_AT else LOW[name]


def at(minute: int) -> int:
    return START + 60 * minute


# ---------------------------------------------------------------- the call interceptor


@dataclass(frozen=True, order=True)
class CallSite:
    """Where an AWS call is made: by which function, to which operation, on which kind of item."""

    stage: str
    service: str
    operation: str
    item: str = ""

    @property
    def id(self) -> str:
        return f"{self.stage}:{self.service}.{self.operation}" + (f"[{self.item}]" if self.item else "")


class SimulatedCrash(BaseException):
    """The function's process is killed at this point (a BaseException, so no `except Exception` in
    the code under test can catch it: like a timeout or an out-of-memory kill)."""


class HandlerKilledError(RuntimeError):
    """How a killed invocation looks to Lambda's asynchronous retries (and so to the local router)."""


@dataclass
class Fault:
    """One injected failure: a ClientError AWS could answer with, or a lost response (timeout)."""

    name: str  # throttling, 5xx, timeout, access-denied, conflict, condition
    code: str
    status: int = 400

    def raise_for(self, client: Any, operation: str) -> None:
        response: Any = {
            "Error": {"Code": self.code, "Message": f"injected {self.name} fault"},
            "ResponseMetadata": {"HTTPStatusCode": self.status},
        }
        raise client.exceptions.from_code(self.code)(response, operation)


@dataclass
class Call:
    site: CallSite
    params: dict[str, Any]
    ok: bool = True


def resource_of(params: dict[str, Any]) -> str:
    """The user's resource a mutating call changes (function, endpoint or scalable target name)."""
    if "FunctionName" in params:
        return (
            str(params["FunctionName"]).split(":")[-1]
            if ":function:" in str(params["FunctionName"])
            else str(params["FunctionName"])
        )
    if "EndpointName" in params:
        return str(params["EndpointName"])
    if "ResourceId" in params:  # function:<name>:<alias> or endpoint/<name>/variant/<v>
        rid = str(params["ResourceId"])
        return rid.split(":")[1] if rid.startswith("function:") else rid.split("/")[1]
    if "EndpointConfigName" in params:
        return str(params["EndpointConfigName"]).split("-")[0]
    return "?"


def _key_prefixes(params: dict[str, Any]) -> str:
    """The kinds of DynamoDB items a call touches (`PK`/`SK` prefixes before '#', numbers dropped)."""
    found: set[str] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            if key in ("PK", "SK", ":pk", ":sk", ":p", ":s") and "S" in value and isinstance(value["S"], str):
                head = value["S"].split("#", 1)[0]
                found.add(f"{key.strip(':').upper()}={head}")
                return
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)

    walk(params)
    if "PK=idempotency" in found:  # the record's SK is a hash of the event id
        return "PK=idempotency"
    return ",".join(sorted(found))


class Interceptor:
    """Wraps `BaseClient._make_api_call`: records calls made inside a stage, raises an armed fault."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.calls: list[Call] = []
        self.recording = False
        self.armed: tuple[CallSite, Fault, int, int] | None = None  # (site, fault, first occurrence hit, times)
        self.seen: Counter[CallSite] = Counter()
        self.injected: list[tuple[CallSite, Fault]] = []
        self.mutations: Counter[str] = Counter()  # accepted calls that change a resource, by resource
        self._original: Any = None

    def install(self) -> None:
        self._original = botocore.client.BaseClient._make_api_call
        interceptor = self

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            return interceptor._call(client, operation, params)

        botocore.client.BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._original is not None:
            botocore.client.BaseClient._make_api_call = self._original  # type: ignore[method-assign]

    def site(self, client: Any, operation: str, params: dict[str, Any]) -> CallSite:
        service = client.meta.service_model.service_name
        item = _key_prefixes(params) if service == "dynamodb" else ""
        return CallSite(self.stage or "-", service, operation, item)

    def _call(self, client: Any, operation: str, params: dict[str, Any]) -> Any:
        if self.stage is None:  # the harness's own calls (setup, metrics, reading results)
            return self._original(client, operation, params)
        site = self.site(client, operation, params)
        call = Call(site, params)
        if self.recording:
            self.calls.append(call)
        fault: Fault | None = None
        if self.armed is not None and self.armed[0] == site:
            self.seen[site] += 1
            if self.armed[2] <= self.seen[site] < self.armed[2] + self.armed[3]:
                fault = self.armed[1]
                self.injected.append((site, fault))
        if fault is not None and fault.name not in ("timeout", "crash"):
            call.ok = False
            fault.raise_for(client, operation)
        result = self._original(client, operation, params)
        if operation in MUTATING:
            self.mutations[resource_of(params)] += 1
        if fault is not None and fault.name == "crash":  # AWS did it; the process dies before it hears back
            raise SimulatedCrash(f"killed after {site.id}")
        if fault is not None:  # the request reached AWS and was applied; its answer is lost
            call.ok = False
            raise ReadTimeoutError(
                endpoint_url=f"https://{client.meta.service_model.endpoint_prefix}.{REGION}.amazonaws.com/"
            )
        return result

    def arm(self, site: CallSite, fault: Fault, occurrence: int = 1, times: int = 1) -> None:
        self.armed, self.seen = (site, fault, occurrence, times), Counter()

    def disarm(self) -> None:
        self.armed = None

    def reset(self) -> None:
        self.disarm()
        self.calls, self.injected, self.mutations, self.recording = [], [], Counter(), False

    @contextlib.contextmanager
    def in_stage(self, name: str) -> Iterator[None]:
        outer, self.stage = self.stage, name
        try:
            yield
        finally:
            self.stage = outer


def faults_for(client: Any, site: CallSite, params: dict[str, Any]) -> list[Fault]:
    """The faults AWS can answer `site` with, from botocore's model of the operation's errors.

    Every operation can be throttled, fail on the server, time out and be denied (AWS's common
    errors); a conflict and a failed condition only where the operation models them (a condition
    only on a write that carries one).
    """
    errors = {shape.name for shape in client.meta.service_model.operation_model(site.operation).error_shapes}
    throttle = next(
        (c for c in ("TooManyRequestsException", "ProvisionedThroughputExceededException", "ThrottlingException")
         if c in errors),
        "ThrottlingException",
    )  # fmt: skip
    server = next((c for c in ("ServiceException", "InternalServerError") if c in errors), "InternalFailure")
    out = [
        Fault("throttling", throttle, 429 if throttle == "TooManyRequestsException" else 400),
        Fault("5xx", server, 500),
        Fault("timeout", "ReadTimeoutError", 0),
        Fault("access-denied", "AccessDeniedException", 400),
    ]
    conflict = next((c for c in ("ResourceConflictException", "ConcurrentUpdateException") if c in errors), None)
    if conflict:
        out.append(Fault("conflict", conflict, 409 if conflict == "ResourceConflictException" else 400))
    if "ConditionalCheckFailedException" in errors and params.get("ConditionExpression"):
        out.append(Fault("condition", "ConditionalCheckFailedException", 400))
    return out


# ---------------------------------------------------------------- what the functions log and emit


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        out = []
        for r in self.records:
            extra = {
                k: v for k, v in r.__dict__.items() if k not in logging.LogRecord("", 0, "", 0, "", (), None).__dict__
            }
            out.append(f"{r.levelname} {r.getMessage()} {json.dumps(extra, default=str)}")
            if r.exc_info and r.exc_info[1] is not None:
                out.append(repr(r.exc_info[1]))
        return "\n".join(out)


def emf_metrics(stdout: str) -> Counter[str]:
    """Sum of every metric in the EMF documents Powertools printed."""
    totals: Counter[str] = Counter()
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = doc.get(metric["Name"], 0)
                totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals


# ---------------------------------------------------------------- the pipeline


class _Resources:
    """`aws.client(name)` for the demo's resource provisioning, on in-process moto."""

    def client(self, name: str) -> Any:
        return boto3.client(name, region_name=REGION)  # type: ignore[call-overload]


@dataclass
class Pipeline:
    env: LocalEnvironment
    clock: ManualClock
    interceptor: Interceptor
    handlers: dict[str, Callable[[dict[str, Any], Any], Any]]
    configs: dict[str, TargetConfig]
    captured: Captured
    stdout: io.StringIO = field(default_factory=io.StringIO)
    minute: int = HISTORY_MINUTES
    rate_of: Callable[[str, int], float] = rate  # requests/s of a target in a minute
    failed_invocations: list[str] = field(default_factory=list)

    @property
    def lam(self) -> Any:
        return boto3.client("lambda", region_name=REGION)

    @property
    def sm(self) -> Any:
        return boto3.client("sagemaker", region_name=REGION)

    def put_metrics(self, minute: int) -> None:
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(at(minute), UTC)
        cw = boto3.client("cloudwatch", region_name=REGION)
        for name, cfg in self.configs.items():
            requests = self.rate_of(name, minute) * 60
            if cfg.kind.is_lambda:
                dims = [{"Name": "FunctionName", "Value": name}]
                if cfg.qualifier:
                    dims.append({"Name": "Resource", "Value": f"{name}:{cfg.qualifier}"})
                cw.put_metric_data(
                    Namespace="AWS/Lambda",
                    MetricData=[
                        {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": when, "Value": requests}
                    ],
                )
            else:
                dims = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}]
                cw.put_metric_data(
                    Namespace="AWS/SageMaker",
                    MetricData=[
                        {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": when, "Value": requests}
                    ],
                )

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """A scheduled invocation; a failure is what Lambda would record (the schedule fires again next minute)."""
        try:
            return self.handlers[function](event, LambdaContextStub(function))
        except Exception as exc:
            self.failed_invocations.append(f"{function}: {type(exc).__name__}: {exc}")
            return None

    def cycle(self) -> None:
        """One minute: the minute that just ended is published, then the schedules and events run."""
        minute = self.minute + 1
        now = at(minute)
        self.clock.now_s = float(now)
        self.put_metrics(minute - 1)
        with contextlib.redirect_stdout(self.stdout):
            self.invoke("collect", scheduled_event(now, "forescale-collect"))
            self.invoke("forecast", scheduled_event(now, "forescale-forecast"))
            self._drain()
            self.invoke("act", scheduled_event(now, "forescale-act-sweep"))
            self._drain()
        self.minute = minute

    def _drain(self) -> None:
        for delivery in self.env.router.drain():
            if not delivery.ok:
                self.failed_invocations.append(f"{delivery.function}: {delivery.error}")

    def run_until(self, minute: int) -> None:
        while self.minute < minute:
            self.cycle()

    def open_work(self) -> list[str]:
        """Targets with a decision not yet in a final state, or an operation still in flight."""
        out = []
        for name in self.configs:
            newest = self.env.store.list_decisions(name, limit=1)
            if (newest and newest[0].status.value not in FINAL) or self.state(name).in_flight is not None:
                out.append(name)
        return out

    def settle(self, min_cycles: int = 5, max_cycles: int = 25) -> int:
        """Run cycles (demand stays where it is) until nothing is owed; the number of cycles it took.

        At least `min_cycles`: a change that was refused is asserted again a few minutes later (plan's
        REASSERT_AFTER_S), when nothing is open in between."""
        for n in range(1, max_cycles + 1):
            self.cycle()
            if n >= min_cycles and not self.open_work():
                return n
        return max_cycles

    def break_cycle(self, site: CallSite, fault: Fault) -> None:
        """Run up to the cycle under test and through it with `fault` at `site`'s first call."""
        self.run_until(FAULT_CYCLE - 1)
        self.interceptor.arm(site, fault)
        self.run_until(FAULT_CYCLE)
        self.interceptor.disarm()
        assert self.interceptor.injected == [(site, fault)], f"{fault.name} at {site.id} was never reached"

    def assert_put_right(self, final: dict[str, int]) -> None:
        """After `settle()`: nothing owed; every target at `final` in AWS, recorded as such; no change
        sent twice (no more accepted changes than applied decisions); every decision explained."""
        assert not self.open_work(), f"still owed after the cycles that followed: {self.open_work()}"
        for name in self.configs:
            actual = self.in_aws(name)
            assert actual == final[name], f"{name}: AWS has {actual}, the undisturbed run ends at {final[name]}"
            state = self.state(name)
            assert state.capacity == actual and state.in_flight is None, (name, state)
            records = self.decisions(name)
            applied = sum(1 for r in records if r.status.value == "applied")
            changes = self.interceptor.mutations[name]
            assert changes <= applied, f"{name}: {changes} accepted changes for {applied} applied decisions"
            unexplained = [
                (r.decision_id, r.status) for r in records if r.status.value != "superseded" and not r.outcome
            ]
            assert not unexplained, unexplained

    # ------------------------------------------------------------ what is true afterwards

    def decisions(self, name: str) -> list[DecisionRecord]:
        return self.env.store.list_decisions(name, limit=1000, newest_first=False)

    def state(self, name: str) -> AppliedState:
        return self.env.store.get_state(name)

    def in_aws(self, name: str) -> int:
        cfg = self.configs[name]
        if cfg.kind is TargetKind.LAMBDA_PROVISIONED:
            try:
                got = self.lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=cfg.qualifier)
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ProvisionedConcurrencyConfigNotFoundException":
                    return 0
                raise
            return int(got["RequestedProvisionedConcurrentExecutions"])
        if cfg.kind is TargetKind.LAMBDA_RESERVED:
            return int(self.lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions", 0))
        variant = self.sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
        return int(variant.get("DesiredInstanceCount") or variant.get("CurrentInstanceCount") or 0)

    def dlq_count(self) -> int:
        sqs = self.env.clients["sqs"]
        total = 0
        for url in self.env.dlqs.values():
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            total += int(attrs["Attributes"]["ApproximateNumberOfMessages"])
        return total


def _provision_resources(cfgs: dict[str, TargetConfig]) -> None:
    iam = boto3.client("iam", region_name=REGION)
    lam = boto3.client("lambda", region_name=REGION)
    sm = boto3.client("sagemaker", region_name=REGION)
    iam.create_role(RoleName="forescale-test-function", AssumeRolePolicyDocument="{}")
    for name, cfg in cfgs.items():
        if cfg.kind.is_lambda:
            create_stand_in_function(lam, name, ROLE, tags={"forescale:managed": "true"})
        else:
            sm.create_model(
                ModelName=f"{name}-model", ExecutionRoleArn=ROLE,
                PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}:1"},
            )  # fmt: skip
            sm.create_endpoint_config(
                EndpointConfigName=f"{name}-config-0",
                ProductionVariants=[
                    {"VariantName": "AllTraffic", "ModelName": f"{name}-model", "InitialInstanceCount": 1,
                     "InstanceType": "ml.g5.xlarge"}
                ],
            )  # fmt: skip
            sm.create_endpoint(
                EndpointName=name, EndpointConfigName=f"{name}-config-0",
                Tags=[{"Key": "forescale:managed", "Value": "true"}],
            )  # fmt: skip


FUNCTION_ENV = function_env(TABLE, TABLE) | {
    "METRIC_DELAY_S": "0",
    "REREAD_MINUTES": "1",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "forescale",
    "LEASE_S": "120",
}


@contextlib.contextmanager
def pipeline(
    mock: Any,
    interceptor: Interceptor,
    fleet: dict[str, TargetConfig] | None = None,
    rate_of: Callable[[str, int], float] = rate,
) -> Iterator[Pipeline]:
    """A fresh account (moto reset) with the stack, the user's resources, the targets and an hour of history.

    `fleet` and `rate_of` replace the three targets of the scenario and their demand."""
    mock.reset()
    interceptor.reset()  # a fresh account has had no calls, faults or changes
    clock = ManualClock(at(HISTORY_MINUTES))
    captured = Captured()
    base_logger = logging.getLogger(forescale_logger.name)
    base_logger.addHandler(captured)
    moto_extension.install(clock=clock)
    act_globals: dict[str, Any] | None = None
    with environment_variables(FUNCTION_ENV):
        try:
            env = provision(TABLE, TABLE, REGION, functions=("collect", "plan", "act", "react"))
            env.dlqs["forecast"] = env.clients["sqs"].create_queue(QueueName="forescale-forecast-dlq")["QueueUrl"]
            cfgs = fleet if fleet is not None else configs()
            _provision_resources(cfgs)
            store = env.store
            for cfg in cfgs.values():
                store.put_target(cfg)
            store.put_samples(
                [
                    DemandSampleDetail(target=name, timestamp=at(m), requests=rate_of(name, m) * 60)
                    for name in cfgs
                    for m in range(HISTORY_MINUTES)
                ],
                ttl_s=86_400,
            )
            routed = {sub.function: sub.handler for sub in env.router.subscriptions}
            handlers = {"collect": routed["collect"], "act": routed["act"], "forecast": load_handler("forecast")}
            # act's rate limiter on its own manual clock: 15 calls/s is kept, without sleeping for real.
            act_globals = inspect.unwrap(routed["act"]).__globals__
            act_globals["reset"]()
            limiter_clock = ManualClock(0.0)
            settings = ActSettings.from_env()
            act_globals["install_service"](
                act_globals["build_service"](settings, clock=limiter_clock, sleep=limiter_clock.sleep)
            )
            lambda_support.set_clock(clock)

            def staged(name: str, fn: Callable[[dict[str, Any], Any], Any]) -> Callable[[dict[str, Any], Any], Any]:
                def run(event: dict[str, Any], context: Any) -> Any:
                    with interceptor.in_stage(name):
                        try:
                            return fn(event, context)
                        except SimulatedCrash as exc:
                            raise HandlerKilledError(str(exc)) from None

                return run

            for sub in env.router.subscriptions:
                sub.handler = staged(sub.function, sub.handler)
            staged_handlers = {name: staged(name, fn) for name, fn in handlers.items()}
            yield Pipeline(env, clock, interceptor, staged_handlers, cfgs, captured, rate_of=rate_of)
        finally:
            if act_globals is not None:
                act_globals["reset"]()  # the instrumented act service belongs to this pipeline only
            lambda_support.set_clock(None)
            base_logger.removeHandler(captured)
            moto_extension.reset()


# ---------------------------------------------------------------- moto with the interceptor, and the reference run

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


@contextlib.contextmanager
def intercepted_moto() -> Iterator[tuple[Any, Interceptor]]:
    """In-process moto (never a real endpoint) with every botocore call going through an Interceptor."""
    from moto import mock_aws

    interceptor = Interceptor()
    interceptor.install()
    endpoint = os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with environment_variables(AWS_ENV), mock_aws() as mock:
            yield mock, interceptor
    finally:
        interceptor.uninstall()
        if endpoint is not None:
            os.environ["AWS_ENDPOINT_URL"] = endpoint


@dataclass(frozen=True)
class Case:
    site: CallSite
    fault: Fault

    @property
    def id(self) -> str:
        return f"{self.site.id}-{self.fault.name}"


@dataclass
class Reference:
    """The fault-free run: every call site of the cycle under test, its faults, and where targets end."""

    cases: list[Case]
    calls: int
    final: dict[str, int]

    def case(self, case_id: str) -> Case:
        """The case with this id (tests are parametrized by id, so the fast tier need not record)."""
        for c in self.cases:
            if c.id == case_id:
                return c
        raise LookupError(f"no fault case {case_id!r} in the recorded cycle (a call site changed?)")

    def site(self, site_id: str) -> CallSite:
        for c in self.cases:
            if c.site.id == site_id:
                return c.site
        raise LookupError(f"no call site {site_id!r} in the recorded cycle (a call site changed?)")


_reference: list[Reference] = []


def reference() -> Reference:
    if _reference:
        return _reference[0]
    with intercepted_moto() as (mock, interceptor), pipeline(mock, interceptor) as p:
        p.run_until(FAULT_CYCLE - 1)
        interceptor.recording = True
        p.run_until(FAULT_CYCLE)
        interceptor.recording = False
        p.settle()
        final = {name: p.in_aws(name) for name in p.configs}
        clients = {s: boto3.client(s, region_name=REGION) for s in {c.site.service for c in interceptor.calls}}  # type: ignore[call-overload]
        first: dict[CallSite, dict[str, Any]] = {}
        for call in interceptor.calls:
            first.setdefault(call.site, call.params)
        cases = [
            Case(site, fault)
            for site, params in sorted(first.items())
            for fault in faults_for(clients[site.service], site, params)
        ]
        _reference.append(Reference(cases, len(interceptor.calls), final))
    return _reference[0]
