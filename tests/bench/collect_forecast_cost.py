"""Benchmark: collect's and forecast's running cost and time per target, before and after issue 17's changes.

    uv run python tests/bench/collect_forecast_cost.py [--targets 1000] [--write-targets 200] [--forecast-targets 10000]

Prints, each with how it was obtained:

1. GetMetricData metrics requested per target-minute and $ per target-month ($0.01 per 1,000
   metrics requested, however many datapoints each returns; us-east-1 list price), counted from the
   queries `CloudWatchMetrics` plans over an hour of one-minute runs, for the old default (every
   target every minute, detail metrics every 15 minutes) and the new stack default (every 5
   minutes, 5 minutes at a time, detail hourly). Half the targets are Lambda aliases, half SageMaker variants.
2. collect's DynamoDB sample writes on moto, for `--write-targets` targets over 10 minutes of steady
   collection (one new minute per target per minute): calls per target-minute and write/read
   units per target-minute, computed from the stored items' sizes as DynamoDB bills them (a write
   unit per 1 KB of the larger of the item before and after, a consistent read unit per 4 KB),
   for one UpdateItem per target-hour (before) and `merge_samples` (BatchGetItem + BatchWriteItem).
3. forecast, `--forecast-targets` targets registered together (the fleet default shard is 10,000):
   refits per 5-minute cycle over the day after their first fit, without and with the stagger,
   and the CPU time of one 14-day history read (botocore's parsing of a real-shaped Query response
   included; no network), which with the audit's 20 ms refit is the per-target cost of a refit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import boto3
from collect_calls import targets  # the same fleet as the GetMetricData count beside this script
from moto import mock_aws

from forescale.adapters.cloudwatch import CloudWatchMetrics
from forescale.adapters.events import RecordingPublisher
from forescale.adapters.state import DynamoStateStore, InMemoryStateStore, _item, table_definition
from forescale.demo.prices import DYNAMODB_READ, DYNAMODB_WRITE, GET_METRIC_DATA
from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.runtime.collect import CollectService
from forescale.runtime.forecast import ForecastService
from forescale.runtime.models import DemandSampleDetail, TargetConfig

# docs/running-cost.md prices a month as 730 hours; the fleet bench's table (forescale.demo.prices) as 30 days.
MINUTES_PER_MONTH = 43_800
START = 1_795_392_000  # 2026-11-23 00:00 UTC
TABLE = "forescale-bench"


def metrics_per_target_minute(fleet: Sequence[TargetConfig], poll: int, detail: int) -> float:
    """Queries an hour of collect runs sends, per target-minute (the service's own poll selection)."""
    cw = CloudWatchMetrics.rotating(
        boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"),
        detail,
        poll,
    )
    svc = CollectService(InMemoryStateStore(), cw, RecordingPublisher(), poll_every_minutes=poll)
    queries = 0
    for k in range(60):
        start, end = svc.window(START + 60 * k + 5)
        polled = [t for t in fleet if svc.polls(t.name, end)]
        queries += len(cw.plan_queries(polled, start)) if polled else 0
    return queries / (60 * len(fleet))


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (a number: about 1 byte per 2 digits, plus 1)."""
    size = 0
    for name, av in item.items():
        ((kind, v),) = av.items()
        size += len(name.encode())
        if kind == "N":
            digits = len(v.replace("-", "").replace(".", "").lstrip("0")) or 1
            size += (digits + 1) // 2 + 1
        elif kind == "S":
            size += len(v.encode())
        elif kind == "B":
            size += len(v)
        else:
            size += len(json.dumps(v))
    return size


def collect_writes(n: int, merge: bool) -> dict[str, float]:
    """Steady-state sample writes of n targets for 10 minutes on moto: calls and units per target-minute."""
    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(**table_definition(TABLE))
        store = DynamoStateStore(ddb, TABLE)
        names = [t.name for t in targets(n)]
        hour = START + 3600
        # The hour is already 50 minutes full (what a steady state rewrites).
        store.import_samples(
            [
                DemandSampleDetail(target=t, timestamp=hour + 60 * m, requests=600.0 + m)
                for t in names
                for m in range(50)
            ],
            ttl_s=86_400,
        )
        calls: dict[str, int] = {}
        ddb.meta.events.register(
            "before-call.dynamodb.*",
            lambda event_name, **_: calls.__setitem__(
                event_name.split(".")[-1], calls.get(event_name.split(".")[-1], 0) + 1
            ),
        )
        wcu = rcu = 0.0
        for m in range(50, 60):
            before = {t: _stored_size(ddb, t, hour) for t in names[:50]}
            samples = [DemandSampleDetail(target=t, timestamp=hour + 60 * m, requests=617.0) for t in names]
            (store.merge_samples if merge else store.put_samples)(samples, ttl_s=86_400)
            after = {t: _stored_size(ddb, t, hour) for t in names[:50]}
            # Units from a sample of 50 items (all items are alike), scaled to the fleet.
            wcu += sum(-(-max(before[t], after[t]) // 1024) for t in before) / 50 * n
            if merge:
                rcu += sum(-(-before[t] // 4096) for t in before) / 50 * n
        for op in ("GetItem",):
            calls.pop(op, None)  # the size probes above, not collect's
        target_minutes = n * 10
        return {
            "calls": sum(calls.values()) / target_minutes,
            "by_op": {k: v / target_minutes for k, v in calls.items()},  # type: ignore[dict-item]
            "wcu": wcu / target_minutes,
            "rcu": rcu / target_minutes,
        }


def _count(calls: dict[str, int], op: str) -> None:
    calls[op] = calls.get(op, 0) + 1


def _stored_size(ddb: Any, target: str, hour: int) -> int:
    got = ddb.get_item(TableName=TABLE, Key=_item({"PK": f"TARGET#{target}", "SK": f"SAMPLES#{hour:010d}"}))
    return item_size(got.get("Item", {}))


class SyntheticHistories(InMemoryStateStore):
    """Every target has two days of flat history; nothing is stored per minute (10,000 targets fit)."""

    def load_history(self, name: str, start: int, end: int, step_s: int = 60) -> SeriesHistory:
        return SeriesHistory(name, start, step_s, [1.0] * ((end - start) // step_s))


class Flat:
    def forecast(self, histories: Sequence[SeriesHistory], horizon_s: int) -> dict[str, Forecast]:
        return {
            h.target: Forecast(h.target, h.end, h.end, 3600, {0.5: (1.0,) * (horizon_s // 3600)}, "flat")
            for h in histories
        }


def refits_per_cycle(n: int, spread_s: int) -> tuple[int, int]:
    store = SyntheticHistories()
    for i in range(n):
        store.targets[f"t{i:05d}"] = TargetConfig(name=f"t{i:05d}", kind="lambda-reserved", function_name=f"t{i:05d}")  # type: ignore[arg-type]
    svc = ForecastService(store, RecordingPublisher(), Flat, refit_spread_s=spread_s, history_days=2)
    first = START + 86_400
    first_fit = len(svc.run(first).refit)
    per_cycle = [
        len(svc.run(t).refit) + len(svc.run(t).on_drift) for t in range(first + 300, first + 86_400 + 3600, 300)
    ]
    return first_fit, max(per_cycle)


def history_read_ms() -> tuple[float, int]:
    from botocore.awsrequest import AWSResponse

    class Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

        def read(self, *_: Any, **__: Any) -> bytes:
            return self.body

    rng = random.Random(1)
    end, start = START, START - 14 * 86_400
    items = []
    for h in range(start, end, 3600):
        values: dict[str, Any] = {"PK": "TARGET#api", "SK": f"SAMPLES#{h:010d}", "expiration": h + 16 * 86_400}
        values |= {f"r{m:02d}": Decimal(str(round(rng.uniform(0, 400), 3))) for m in range(60)}
        items.append(_item({k: float(v) if isinstance(v, Decimal) else v for k, v in values.items()}))
    body = json.dumps({"Items": items, "Count": len(items), "ScannedCount": len(items)}).encode()
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")

    def send(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, Raw(body))  # type: ignore[arg-type]

    client.meta.events.register("before-send.dynamodb.Query", send)
    store = DynamoStateStore(client, "t")
    reps = 10
    t0 = time.process_time()
    for _ in range(reps):
        store.load_history("api", start, end, 60)
    return (time.process_time() - t0) / reps * 1000, len(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--write-targets", type=int, default=200, help="targets for the DynamoDB part (moto is slow)")
    ap.add_argument("--forecast-targets", type=int, default=10_000)
    args = ap.parse_args()
    fleet = targets(args.targets)

    print("1. GetMetricData, metrics requested per target-minute (counted from the planned queries)")
    for label, poll, detail in (
        ("before: every minute, detail every 15 min", 1, 15),
        ("after: every 5 min, detail hourly", 5, 60),
    ):
        per = metrics_per_target_minute(fleet, poll, detail)
        price = per * MINUTES_PER_MONTH * GET_METRIC_DATA.per_unit
        print(f"   {label:45s} {per:.3f} metrics/target-minute  ${price:.3f}/target-month")

    print(f"2. collect's sample writes, {args.write_targets} targets x 10 minutes on moto (units from item sizes)")
    for label, merge in (("before: UpdateItem per target-hour", False), ("after: merge_samples (batched)", True)):
        r = collect_writes(args.write_targets, merge)
        price = (r["wcu"] * DYNAMODB_WRITE.per_unit + r["rcu"] * DYNAMODB_READ.per_unit) * MINUTES_PER_MONTH
        ops = ", ".join(f"{k} {v:.3f}" for k, v in r["by_op"].items())  # type: ignore[attr-defined]
        print(
            f"   {label:38s} {r['calls']:.3f} calls/target-minute ({ops}); {r['wcu']:.2f} WCU + {r['rcu']:.2f} RCU "
            f"per target-minute, ${price:.3f}/target-month"
        )
    print("   (polling every 5 minutes writes 5 minutes per target every 5th minute: calls / 5, units about / 5)")

    print(f"3. forecast, {args.forecast_targets} targets registered together")
    for label, spread in (("before: no stagger", 0), ("after: REFIT_SPREAD_S=86400", 86_400)):
        first, worst = refits_per_cycle(args.forecast_targets, spread)
        print(f"   {label:30s} first fits {first}; then at most {worst} refits in one 5-minute cycle")
    ms, size = history_read_ms()
    print(f"   one 14-day history read ({size / 1000:.0f} KB response): {ms:.0f} ms CPU; + 20 ms refit (audit)")


if __name__ == "__main__":
    main()
