"""collect end to end on moto: metrics put into CloudWatch, the real handler run by a scheduled event,
samples read back from DynamoDB, events read from an SQS queue subscribed to the bus.

moto 5.2.5 differences from AWS that these tests rely on or work around (checked in its source):
- GetMetricData supports Sum, Average and Maximum and matches a query's dimension set exactly, but for a
  query with dimensions it ignores the namespace (metric name + dimensions only), and for a query without
  dimensions it aggregates every series of that name in the namespace. AWS keeps each dimension set a
  separate metric; the heartbeat query (no dimensions) is Lambda's own account-wide series there.
- It never pages (no NextToken), never enforces the 500-query limit, and always answers StatusCode Complete.
- Nothing publishes the Lambda heartbeat in moto (no function runs), so "published" here comes from the
  other targets' datapoints, as the aggregation above makes the heartbeat their sum.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from forescale.adapters.cloudwatch import CloudWatchMetrics
from forescale.adapters.events import RecordingPublisher
from forescale.adapters.state import DynamoStateStore, InMemoryStateStore, table_definition
from forescale.domain.forecast import Forecast
from forescale.domain.ratelimit import ManualClock
from forescale.domain.targets import TargetKind
from forescale.local.environment import create_stand_in_function
from forescale.runtime import lambda_support
from forescale.runtime.collect import CollectService, UnknownTargetError
from forescale.runtime.events import EventError
from forescale.runtime.models import DemandSampleDetail, InstanceTypeSpec, TargetConfig
from forescale.runtime.observability import logger

REPO = Path(__file__).resolve().parents[2]
TABLE = "forescale-test"
BUS = "forescale-test-bus"
DELAY_S = 120


def load_handler() -> ModuleType:
    path = REPO / "functions" / "collect" / "handler.py"
    spec = importlib.util.spec_from_file_location("collect_handler_under_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeContext:
    function_name: str = "forescale-collect"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:forescale-collect"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 50_000


@dataclass
class Aws:
    store: DynamoStateStore
    cloudwatch: Any
    sqs: Any
    queue_url: str
    handler: ModuleType
    calls: list[int]

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            out += [json.loads(m["Body"]) for m in msgs]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "TABLE_NAME": TABLE,
        "DETAIL_EVERY_MINUTES": "1",  # every metric every run, so each minute's detail can be checked
        "EVENT_BUS_NAME": BUS,
        "METRIC_DELAY_S": str(DELAY_S),
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    lambda_support.reset()
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(**table_definition(TABLE))
        events = boto3.client("events")
        events.create_event_bus(Name=BUS)
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="forescale-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["forescale"]}))
        events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
        calls: list[int] = []
        # The handler's own (lazily built, cached) CloudWatch client: count its GetMetricData requests.
        lambda_support.client("cloudwatch").meta.events.register(
            "before-call.cloudwatch.GetMetricData", lambda **_: calls.append(1)
        )
        yield Aws(DynamoStateStore(ddb, TABLE), boto3.client("cloudwatch"), sqs, url, load_handler(), calls)
    lambda_support.reset()


def scheduled(now: int, event_id: str = "sched-1") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REPO / "events" / "scheduled-event.json").read_text())
    event["id"] = event_id
    event["time"] = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def demand_sample(detail: dict[str, Any], event_id: str = "push-1") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REPO / "events" / "demand-sample.json").read_text())
    event["id"] = event_id
    event["detail"] = detail
    return event


def lambda_target(name: str, function: str, qualifier: str | None) -> TargetConfig:
    kind = TargetKind.LAMBDA_PROVISIONED if qualifier else TargetKind.LAMBDA_RESERVED
    return TargetConfig(name=name, kind=kind, function_name=function, qualifier=qualifier)


def sagemaker_target(name: str, endpoint: str, variant: str = "AllTraffic") -> TargetConfig:
    catalog = (InstanceTypeSpec(name="ml.g4dn.xlarge", price_per_hour=0.736, capacity_rps=40),)
    return TargetConfig(
        name=name,
        kind=TargetKind.SAGEMAKER_INSTANCE_COUNT,
        endpoint_name=endpoint,
        variant_name=variant,
        catalog=catalog,
        instance_type="ml.g4dn.xlarge",
        min_capacity=1,
    )


def datum(name: str, dims: dict[str, str], minute: int, value: float, unit: str) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
        "Timestamp": datetime.fromtimestamp(minute + 7, UTC),  # inside the minute, as CloudWatch stamps it
        "Value": value,
        "Unit": unit,
    }


def put(cw: Any, namespace: str, name: str, dims: dict[str, str], minute: int, *values: float, unit: str) -> None:
    cw.put_metric_data(Namespace=namespace, MetricData=[datum(name, dims, minute, v, unit) for v in values])


def current_minute_window() -> tuple[int, list[int]]:
    now = int(time.time()) // 60 * 60 + 5  # a few seconds into a minute, like the schedule
    end = (now - DELAY_S) // 60 * 60
    return now, list(range(end - 300, end, 60))


def test_given_lambda_and_sagemaker_metrics_when_the_schedule_fires_then_the_stored_samples_equal_them(
    aws: Aws,
) -> None:
    now, m = current_minute_window()
    aws.store.put_target(lambda_target("checkout:live", "checkout", "live"))
    aws.store.put_target(lambda_target("batch", "batch", None))
    aws.store.put_target(sagemaker_target("ranker/AllTraffic", "ranker"))
    alias = {"FunctionName": "checkout", "Resource": "checkout:live"}
    cw = aws.cloudwatch
    for i, t in enumerate(m[:4]):
        put(cw, "AWS/Lambda", "Invocations", alias, t, 300.0 + 60 * i, 300.0, unit="Count")  # Sum = 600 + 60 i
        put(cw, "AWS/Lambda", "Duration", alias, t, 100.0, 200.0, unit="Milliseconds")  # Average 150
        put(cw, "AWS/Lambda", "ConcurrentExecutions", alias, t, 3.0, 7.0, unit="Count")  # Maximum 7
        # The function-wide series (all versions) must not be mistaken for the alias's.
        put(cw, "AWS/Lambda", "Invocations", {"FunctionName": "checkout"}, t, 9999.0, unit="Count")
    put(cw, "AWS/Lambda", "ProvisionedConcurrencySpilloverInvocations", alias, m[2], 5.0, unit="Count")
    put(cw, "AWS/Lambda", "Throttles", alias, m[3], 2.0, unit="Count")
    for t in (m[0], m[1], m[3]):  # m[2] has no datapoint: quiet, or its datapoints are late
        put(cw, "AWS/Lambda", "Invocations", {"FunctionName": "batch"}, t, 120.0, unit="Count")
    ranker = {"EndpointName": "ranker", "VariantName": "AllTraffic"}
    for t in m:
        put(cw, "AWS/SageMaker", "Invocations", ranker, t, 1200.0, unit="None")
        put(cw, "AWS/SageMaker", "ModelLatency", ranker, t, 20_000.0, 30_000.0, unit="Microseconds")
        put(cw, "/aws/sagemaker/Endpoints", "GPUUtilization", ranker, t, 40.0, 60.0, unit="Percent")
    aws.store.put_forecast(
        Forecast("checkout:live", m[0], m[0], 60, {0.5: (5.0,) * 10, 0.99: (10.0,) * 10}, model="test")
    )

    result = aws.handler.handler(scheduled(now), FakeContext())

    start, end = m[0], m[-1] + 60
    checkout = aws.store.load_history("checkout:live", start, end).rates
    assert checkout == [10.0, 11.0, 12.0, 13.0, None]  # m[4]: no Lambda data anywhere yet → missing
    assert aws.store.load_metric("checkout:live", "duration_ms", start, end) == [150.0] * 4 + [None]
    assert aws.store.load_metric("checkout:live", "concurrency", start, end) == [7.0] * 4 + [None]
    assert aws.store.load_metric("checkout:live", "spillover", start, end) == [None, None, 5.0, None, None]
    assert aws.store.load_metric("checkout:live", "throttles", start, end) == [None, None, None, 2.0, None]
    # m[2] is empty after traffic and not read for the last time yet: missing, not zero (issue 15 item 4).
    assert aws.store.load_history("batch", start, end).rates == [2.0, 2.0, None, 2.0, None]
    assert aws.store.load_history("ranker/AllTraffic", start, end).rates == [20.0] * 5
    assert aws.store.load_metric("ranker/AllTraffic", "latency_ms", start, end) == [25.0] * 5
    assert aws.store.load_metric("ranker/AllTraffic", "gpu_utilization", start, end) == [50.0] * 5

    assert result["samples_stored"] == 4 + 3 + 5
    assert result["missing_targets"] == ["batch", "checkout:live"]
    assert result["get_metric_data_calls"] == len(aws.calls) == 1
    published = aws.events()
    collected = [e["detail"] for e in published if e["detail-type"] == "forescale.SamplesCollected"]
    assert collected == [
        {
            "period_start": m[-1],
            "targets": ["batch", "checkout:live", "ranker/AllTraffic"],
            "missing": ["batch", "checkout:live"],
        }
    ]
    above = [e["detail"] for e in published if e["detail-type"] == "forescale.DemandAboveForecast"]
    assert above == [{"target": "checkout:live", "timestamp": m[3], "observed_rps": 13.0, "upper_rps": 10.0}]


def test_given_the_same_scheduled_event_twice_then_the_second_run_reads_nothing(aws: Aws) -> None:
    now, m = current_minute_window()
    aws.store.put_target(lambda_target("batch", "batch", None))
    put(aws.cloudwatch, "AWS/Lambda", "Invocations", {"FunctionName": "batch"}, m[-1], 60.0, unit="Count")
    first = aws.handler.handler(scheduled(now, "same-id"), FakeContext())
    calls_after_first = len(aws.calls)
    second = aws.handler.handler(scheduled(now, "same-id"), FakeContext())
    assert calls_after_first == 1 and len(aws.calls) == 1
    assert second == first
    third = aws.handler.handler(scheduled(now, "another-id"), FakeContext())
    assert len(aws.calls) == 2 and third["samples_stored"] == first["samples_stored"] == 5


def test_given_300_targets_then_collect_makes_one_get_metric_data_call_per_500_queries(aws: Aws) -> None:
    # The real adapter on moto's CloudWatch; state in memory, so the test times GetMetricData, not 1,500 writes.
    now, m = current_minute_window()
    store = InMemoryStateStore()
    datums: list[tuple[str, dict[str, Any]]] = []
    for i in range(150):
        store.put_target(lambda_target(f"fn{i:03d}:live", f"fn{i:03d}", "live"))
        store.put_target(sagemaker_target(f"ep{i:03d}/AllTraffic", f"ep{i:03d}"))
        alias = {"FunctionName": f"fn{i:03d}", "Resource": f"fn{i:03d}:live"}
        variant = {"EndpointName": f"ep{i:03d}", "VariantName": "AllTraffic"}
        datums.append(("AWS/Lambda", datum("Invocations", alias, m[-1], float(i), "Count")))
        datums.append(("AWS/SageMaker", datum("Invocations", variant, m[-1], float(i + 1), "None")))
    for namespace in ("AWS/Lambda", "AWS/SageMaker"):
        aws.cloudwatch.put_metric_data(Namespace=namespace, MetricData=[d for n, d in datums if n == namespace])
    cw = boto3.client("cloudwatch")
    calls: list[int] = []
    cw.meta.events.register("before-call.cloudwatch.GetMetricData", lambda **_: calls.append(1))
    service = CollectService(store, CloudWatchMetrics(cw), RecordingPublisher(), metric_delay_s=DELAY_S)

    result = service.collect(now)

    queries = 150 * 5 + 150 * 3 + 1  # Lambda: 5 metrics, SageMaker: 3, plus the heartbeat
    assert result.queries == queries
    assert len(calls) == result.calls == math.ceil(queries / 500) == 3
    assert result.missing_targets == ()
    assert store.load_history("fn149:live", m[-1], m[-1] + 60).rates == [149 / 60]
    assert store.load_history("ep007/AllTraffic", m[-1], m[-1] + 60).rates == [8 / 60]


def test_given_a_pushed_demand_sample_then_it_is_stored(aws: Aws, handler_clock: ManualClock) -> None:
    aws.store.put_target(lambda_target("checkout-api", "checkout", "live"))
    t = 1_795_435_320
    handler_clock.now_s = t + 65  # pushed just after the minute ended
    detail = {"target": "checkout-api", "timestamp": t, "requests": 5400, "duration_ms": 84.5, "concurrency": 9}
    result = aws.handler.handler(demand_sample(detail), FakeContext())
    assert result["samples_stored"] == 1
    assert aws.store.load_history("checkout-api", t, t + 60).rates == [90.0]
    assert aws.store.load_metric("checkout-api", "duration_ms", t, t + 60) == [84.5]
    assert aws.calls == []


def test_given_pushed_demand_for_an_unregistered_target_then_the_handler_raises_naming_it(
    aws: Aws, handler_clock: ManualClock
) -> None:
    handler_clock.now_s = 1_795_435_320 + 65
    detail = {"target": "nobody", "timestamp": 1_795_435_320, "requests": 1}
    with pytest.raises(UnknownTargetError, match="nobody"):
        aws.handler.handler(demand_sample(detail), FakeContext())


def test_given_a_malformed_event_then_the_handler_logs_the_field_and_raises(aws: Aws) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.ERROR)
    std_logger = logging.getLogger(logger.name)  # Powertools' logger does not propagate to pytest's caplog
    std_logger.addHandler(keep)
    detail = {"target": "checkout-api", "timestamp": 1_795_435_320, "requests": -3}
    try:
        with pytest.raises(EventError, match=r"detail\.requests"):
            aws.handler.handler(demand_sample(detail), FakeContext())
    finally:
        std_logger.removeHandler(keep)
    assert [r.getMessage() for r in records] == ["invalid event"]
    assert "detail.requests" in records[0].__dict__["error"]


def test_given_tag_discovery_on_when_the_quarter_hour_run_fires_then_new_tagged_functions_are_registered(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAG_DISCOVERY", "true")
    monkeypatch.setenv("DEFAULT_MODE", "dry-run")
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda")
    for name, tags in {
        "checkout": {"forescale:managed": "true", "forescale:qualifier": "live"},
        "already": {"forescale:managed": "true", "forescale:kind": "lambda-reserved"},
        "other": {"team": "payments"},
    }.items():
        create_stand_in_function(lam, name, role, alias=None, tags=tags)
    existing = lambda_target("already", "already", None).model_copy(update={"min_capacity": 3})
    aws.store.put_target(existing)
    now = int(time.time()) // 900 * 900 + 5  # a quarter-hour run

    off_boundary = aws.handler.handler(scheduled(now + 60, "not-this-minute"), FakeContext())
    assert off_boundary["registered"] == []
    result = aws.handler.handler(scheduled(now), FakeContext())

    assert result["registered"] == ["checkout:live"]
    assert [t.name for t in aws.store.list_targets()] == ["already", "checkout:live"]
    checkout = aws.store.get_target("checkout:live")
    assert checkout is not None and checkout.mode.value == "dry-run" and checkout.qualifier == "live"
    already = aws.store.get_target("already")
    assert already is not None and already.min_capacity == 3  # an existing target keeps its configuration


def test_given_60_targets_when_samples_are_merged_then_two_batched_calls_per_25_hours_keep_every_stored_minute(
    aws: Aws,
) -> None:
    # collect's write (merge_samples): whole hour items read in one BatchGetItem and written back by
    # BatchWriteItem, 25 to a call; minutes and fields already in an hour (pushed demand, detail) stay.
    ddb = boto3.client("dynamodb")
    ops: list[str] = []
    ddb.meta.events.register("before-call.dynamodb.*", lambda event_name, **_: ops.append(event_name.split(".")[-1]))
    store = DynamoStateStore(ddb, TABLE)
    hour = 1_700_000_000 - 1_700_000_000 % 3600
    names = [f"fn{i:02d}" for i in range(60)]
    pushed = [DemandSampleDetail(target=n, timestamp=hour, requests=60.0, duration_ms=12.0) for n in names[:30]]
    store.put_samples(pushed, ttl_s=86_400)
    ops.clear()

    store.merge_samples(
        [DemandSampleDetail(target=n, timestamp=hour + 60 * k, requests=120.0) for n in names for k in (1, 2)],
        ttl_s=86_400,
    )

    assert ops == ["BatchGetItem"] + ["BatchWriteItem"] * 3
    assert store.load_history("fn00", hour, hour + 180).rates == [1.0, 2.0, 2.0]
    assert store.load_metric("fn00", "duration_ms", hour, hour + 180) == [12.0, None, None]
    assert store.load_history("fn59", hour, hour + 180).rates == [None, 2.0, 2.0]
    item = ddb.get_item(TableName=TABLE, Key={"PK": {"S": "TARGET#fn00"}, "SK": {"S": f"SAMPLES#{hour:010d}"}})
    assert int(item["Item"]["expiration"]["N"]) == hour + 3600 + 86_400


def test_given_an_opted_in_target_then_only_it_gets_per_target_dashboard_metrics(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A custom metric costs $0.30 a month: per-target series only for the targets that ask (TARGET_METRICS).
    monkeypatch.setenv("TARGET_METRICS", "checkout:live")
    now, m = current_minute_window()
    aws.store.put_target(lambda_target("checkout:live", "checkout", "live"))
    aws.store.put_target(lambda_target("batch", "batch", None))
    for dims in ({"FunctionName": "checkout", "Resource": "checkout:live"}, {"FunctionName": "batch"}):
        for t in m:
            put(aws.cloudwatch, "AWS/Lambda", "Invocations", dims, t, 600.0, unit="Count")
    aws.store.put_forecast(Forecast("checkout:live", m[0], m[0], 60, {0.5: (8.0,) * 10, 0.99: (12.0,) * 10}, "t"))
    capsys.readouterr()

    aws.handler.handler(scheduled(now), FakeContext())

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    per_target = {
        (e["target"], k): e[k]
        for e in emf
        if "target" in e
        for k in ("DemandRps", "ForecastRps", "ForecastUpperRps")
        if k in e
    }
    assert per_target == {
        ("checkout:live", "DemandRps"): [10.0],
        ("checkout:live", "ForecastRps"): [8.0],
        ("checkout:live", "ForecastUpperRps"): [12.0],
    }
