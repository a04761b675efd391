"""Benchmark: GetMetricData calls, queries, samples and wall time of one collect for many targets, on moto.

    uv run python tests/bench/collect_calls.py [--targets 1000] [--state dynamo|memory]

Registers `--targets` targets (half Lambda provisioned-concurrency aliases, half SageMaker variants),
puts one minute of Invocations for each into moto's CloudWatch, and runs `collect` three ways:

- full: every metric (Lambda 5 per target, SageMaker 3, plus the Lambda heartbeat), cold service;
- warm: the next minute on the same service, after one more minute of data (what a warm Lambda writes);
- demand-only: Invocations only (`CloudWatchMetrics.demand_only`), the fewest calls.
- rotating-k: the collect Lambda's default (`CloudWatchMetrics.rotating`): Invocations for every
  target every minute, the detail metrics for a rotating 1/15 of the targets.

GetMetricData requests are counted with a botocore hook (`before-call.cloudwatch.GetMetricData`).
Wall times are moto's, not AWS's: moto's GetMetricData scans every stored datapoint per query and
period, and its DynamoDB is slower than the real one; the counts are exact.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

import boto3
from moto import mock_aws

from forescale.adapters.cloudwatch import MAX_QUERIES_PER_CALL, CloudWatchMetrics
from forescale.adapters.events import EventPublisher
from forescale.adapters.state import DynamoStateStore, InMemoryStateStore, StateStore, table_definition
from forescale.domain.targets import TargetKind
from forescale.runtime.collect import CollectService
from forescale.runtime.models import InstanceTypeSpec, TargetConfig

DELAY_S = 120
MINUTES_PER_MONTH = 43_200
PRICE_PER_1000_METRICS = 0.01  # GetMetricData, us-east-1 list price, per 1,000 metrics requested


def targets(n: int) -> list[TargetConfig]:
    catalog = (InstanceTypeSpec(name="ml.g4dn.xlarge", price_per_hour=0.736, capacity_rps=40),)
    out: list[TargetConfig] = []
    for i in range(n):
        if i % 2 == 0:
            out.append(
                TargetConfig(
                    name=f"fn{i:05d}:live",
                    kind=TargetKind.LAMBDA_PROVISIONED,
                    function_name=f"fn{i:05d}",
                    qualifier="live",
                )
            )
        else:
            out.append(
                TargetConfig(
                    name=f"ep{i:05d}/AllTraffic",
                    kind=TargetKind.SAGEMAKER_INSTANCE_COUNT,
                    endpoint_name=f"ep{i:05d}",
                    variant_name="AllTraffic",
                    catalog=catalog,
                    min_capacity=1,
                )
            )
    return out


def put_minute(cw: Any, cfgs: list[TargetConfig], minute: int) -> None:
    """One Invocations datapoint per target for `minute`, 1,000 datums per PutMetricData."""
    by_namespace: dict[str, list[dict[str, Any]]] = {"AWS/Lambda": [], "AWS/SageMaker": []}
    ts = datetime.fromtimestamp(minute + 7, UTC)
    for i, cfg in enumerate(cfgs):
        if cfg.kind.is_lambda:
            dims = {"FunctionName": str(cfg.function_name), "Resource": f"{cfg.function_name}:{cfg.qualifier}"}
            namespace = "AWS/Lambda"
        else:
            dims = {"EndpointName": str(cfg.endpoint_name), "VariantName": str(cfg.variant_name)}
            namespace = "AWS/SageMaker"
        by_namespace[namespace].append(
            {
                "MetricName": "Invocations",
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                "Timestamp": ts,
                "Value": float(60 + i % 600),
                "Unit": "Count",
            }
        )
    for namespace, data in by_namespace.items():
        for first in range(0, len(data), 1000):
            cw.put_metric_data(Namespace=namespace, MetricData=data[first : first + 1000])


def run(label: str, service: CollectService, now: int, calls: list[int]) -> None:
    before = len(calls)
    t0 = time.perf_counter()
    r = service.collect(now)
    wall = time.perf_counter() - t0
    n = len(calls) - before
    monthly = r.queries * MINUTES_PER_MONTH
    print(
        f"collect_calls: {label:<11} targets={r.targets} queries={r.queries} get_metric_data_calls={n} "
        f"(ceil(queries/{MAX_QUERIES_PER_CALL})={math.ceil(r.queries / MAX_QUERIES_PER_CALL)}) "
        f"samples_stored={r.samples_stored} samples_written={r.samples_written} "
        f"missing_targets={len(r.missing_targets)} events={r.events_published} wall_s={wall:.1f} "
        f"metrics_per_month={monthly / 1e6:.1f}M (~${monthly / 1000 * PRICE_PER_1000_METRICS:,.0f}/month)"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--state", choices=("dynamo", "memory"), default="dynamo")
    a = ap.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        store: StateStore
        if a.state == "dynamo":
            ddb = boto3.client("dynamodb")
            ddb.create_table(**table_definition("forescale-bench"))
            store = DynamoStateStore(ddb, "forescale-bench")
        else:
            store = InMemoryStateStore()
        events = boto3.client("events")
        events.create_event_bus(Name="forescale-bench")
        cw = boto3.client("cloudwatch")
        calls: list[int] = []
        cw.meta.events.register("before-call.cloudwatch.GetMetricData", lambda **_: calls.append(1))

        t0 = time.perf_counter()
        cfgs = targets(a.targets)
        for cfg in cfgs:
            store.put_target(cfg)
        now = int(time.time()) // 60 * 60 + 5
        newest = (now - DELAY_S) // 60 * 60 - 60
        put_minute(cw, cfgs, newest)
        print(
            f"collect_calls: setup ({a.targets} targets registered, metrics put, state={a.state}) "
            f"{time.perf_counter() - t0:.1f}s"
        )

        publisher = EventPublisher(events, "forescale-bench")
        service = CollectService(store, CloudWatchMetrics(cw), publisher, metric_delay_s=DELAY_S)
        run("full", service, now, calls)
        put_minute(cw, cfgs, newest + 60)
        run("warm", service, now + 60, calls)
        demand = CollectService(store, CloudWatchMetrics.demand_only(cw), publisher, metric_delay_s=DELAY_S)
        run("demand-only", demand, now + 60, calls)
        # The deployed default: Invocations for all every minute, the other metrics for 1/15 of the targets.
        rotating = CollectService(store, CloudWatchMetrics.rotating(cw, 15), publisher, metric_delay_s=DELAY_S)
        for k in range(3):
            run(f"rotating-{k}", rotating, now + 60 * (1 + k), calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
