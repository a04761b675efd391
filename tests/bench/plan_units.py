"""Benchmark: DynamoDB read and write units that plan spends per target-minute, and its peak memory, on moto.

    uv run python tests/bench/plan_units.py [--targets 20] [--minutes 60] [--batch 5]
    # the same measurement of the code before the hot/cold split (a checkout of it):
    PYTHONPATH=/path/to/old/checkout/layers/forescale/python uv run python tests/bench/plan_units.py

Registers `--targets` Lambda targets (the built-in workload's four series, repeated), imports a day
of their history, issues one forecast each (a flat deterministic one over the real horizon, so the
forecast blob has the size a statsforecast one has: 2 days of 5 quantiles), then runs the plan service
against moto's DynamoDB for `--minutes` simulated minutes, one warm process, collecting each minute
between runs. Then one cold run (a fresh process) for the memory figures.

Units are computed as DynamoDB bills them, from the real items (DynamoDB's item-size rule: attribute
names plus values; numbers about 1 byte per 2 significant digits plus 1): a strongly consistent read
costs one unit per 4 KB of each item read (rounded up per item; a Query sums its items first; a
projection does not reduce it), a write one unit per 1 KB of the larger of the old and the new item,
a transactional write twice that. Only plan's own calls are counted (not collect's sample writes,
not the forecast, not Powertools' idempotency record, which is one small item per invocation).
Prices: on-demand, us-east-1, after the November 2024 cut: $0.625 per million write units, $0.125 per
million read units (https://aws.amazon.com/dynamodb/pricing/on-demand/).
"""

from __future__ import annotations

import argparse
import math
import random
import tracemalloc
from collections import defaultdict
from typing import Any

import boto3
from moto import mock_aws

import forescale
from forescale.adapters.events import RecordingPublisher
from forescale.adapters.state import DynamoStateStore, InMemoryStateStore, table_definition
from forescale.domain import snapshot
from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.replay.workload import BUILTIN_TARGETS, generate
from forescale.runtime.forecast import ForecastService
from forescale.runtime.models import DemandSampleDetail, TargetConfig
from forescale.runtime.plan import PlanService, restore_planner

try:
    from forescale.runtime.plan import PlannerCache
except ImportError:  # the code before the hot/cold split
    PlannerCache = None  # type: ignore[assignment,misc]

TABLE = "forescale-bench"
WRITE_PRICE = 0.625e-6
READ_PRICE = 0.125e-6
MINUTES_PER_MONTH = 43_200
QUANTILES = (0.1, 0.5, 0.8, 0.95, 0.99)


def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0").split("e")[0].split("E")[0]
    return max(1, math.ceil(len(digits.rstrip("0") or "0") / 2) + 1)


def value_size(av: dict[str, Any]) -> int:
    """Bytes of one attribute value by DynamoDB's item-size rules."""
    ((kind, v),) = av.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(x) for k, x in v.items())
    if kind in ("SS", "BS"):
        return sum(len(x if isinstance(x, bytes) else x.encode()) for x in v)
    if kind == "NS":
        return sum(_number_size(x) for x in v)
    raise TypeError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    return sum(len(k.encode()) + value_size(v) for k, v in (item or {}).items())


def _kind(key: dict[str, Any]) -> str:
    sk = key["SK"]["S"]
    return sk.split("#", 1)[0] + ("#CHECKPOINT" if sk.endswith("#CHECKPOINT") else "") if "#" in sk else sk


class Meter:
    """Read and write units of the DynamoDB calls made while `on`, by item kind (botocore hooks)."""

    def __init__(self, client: Any, raw: Any) -> None:
        self.raw = raw  # an unmetered client on the same moto backend, to size items before a write
        self.on = False
        self.reads: dict[str, float] = defaultdict(float)
        self.writes: dict[str, float] = defaultdict(float)
        self._before: dict[str, list[tuple[str, int, int]]] = {}
        client.meta.events.register("before-parameter-build.dynamodb", self._before_call)
        client.meta.events.register("after-call.dynamodb", self._after_call)

    def _old_size(self, table: str, key: dict[str, Any]) -> int:
        return item_size(self.raw.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item"))

    def _before_call(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if not self.on:
            return
        context["metered_params"] = params
        op = model.name
        writes: list[tuple[str, int, int]] = []  # (item kind, bytes billed, units per KB)
        if op == "PutItem":
            key = {k: params["Item"][k] for k in ("PK", "SK")}
            writes.append((_kind(key), max(item_size(params["Item"]), self._old_size(params["TableName"], key)), 1))
        elif op == "TransactWriteItems":
            for t in params["TransactItems"]:
                put = t["Put"]
                key = {k: put["Item"][k] for k in ("PK", "SK")}
                size = max(item_size(put["Item"]), self._old_size(put["TableName"], key))
                writes.append((_kind(key), size, 2))  # transactional: two units per KB
        elif op in ("UpdateItem", "DeleteItem"):
            writes.append((_kind(params["Key"]), self._old_size(params["TableName"], params["Key"]), 1))
        self._before[op] = writes

    def _after_call(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        params = context.get("metered_params")
        if not self.on or params is None:
            return
        op = model.name
        if op in ("PutItem", "TransactWriteItems", "DeleteItem"):
            for kind, size, per_kb in self._before.pop(op, []):
                self.writes[kind] += per_kb * max(1, math.ceil(size / 1024))
        elif op == "UpdateItem":
            ((kind, old, _),) = self._before.pop(op)
            new = self._old_size(params["TableName"], params["Key"])
            self.writes[kind] += max(1, math.ceil(max(old, new) / 1024))
        elif op == "GetItem":
            size = item_size(parsed.get("Item"))
            if parsed.get("Item") and "ProjectionExpression" in params:
                size = self._old_size(params["TableName"], params["Key"])  # billed on the whole item
            self.reads[_kind(params["Key"])] += max(1, math.ceil(size / 4096))
        elif op == "BatchGetItem":
            for table, request in params["RequestItems"].items():
                found = {(i["PK"]["S"], i["SK"]["S"]): i for i in parsed.get("Responses", {}).get(table, [])}
                for key in request["Keys"]:
                    item = found.get((key["PK"]["S"], key["SK"]["S"]))
                    size = item_size(item)
                    if item is not None and "ProjectionExpression" in request:
                        size = self._old_size(table, key)  # a projection does not reduce what is billed
                    self.reads[_kind(key)] += max(1, math.ceil(size / 4096))
        elif op == "Query":
            items = parsed.get("Items", [])
            kind = _kind(items[0]) if items else "query"
            self.reads[kind] += max(1, math.ceil(sum(item_size(i) for i in items) / 4096))


class NoisyForecaster:
    """Deterministic: the history's mean at five quantiles, with seeded noise so that the blob does not
    compress away (a statsforecast forecast's blob is about 125 KB)."""

    def forecast(self, histories: list[SeriesHistory], horizon_s: int) -> dict[str, Forecast]:
        out = {}
        for h in histories:
            seen = [r for r in h.rates if r is not None] or [0.0]
            mean = sum(seen) / len(seen)
            steps = horizon_s // h.step_s
            rng = random.Random(f"{h.target}{h.end}")
            noise = [1 + 0.2 * rng.random() for _ in range(steps)]
            quantiles = {q: tuple(mean * (0.5 + q) * x for x in noise) for q in QUANTILES}
            out[h.target] = Forecast(h.target, h.end, h.end, h.step_s, quantiles, "noisy-mean")
        return out


def warmed_up(names: list[str], sample: Any, history_min: int, run_min: int) -> InMemoryStateStore:
    """Planners that have decided every minute of the `run_min` minutes before the bench (so their
    calibration windows are as full as a running target's), in memory: quick, and the same code."""
    mem = InMemoryStateStore()
    for n in names:
        mem.put_target(_config(n))
    mem.import_samples([sample(n, i) for n in names for i in range(history_min - run_min)], ttl_s=86_400 * 30)
    forecasts, plans = (
        ForecastService(mem, RecordingPublisher(), NoisyForecaster),
        PlanService(mem, RecordingPublisher()),
    )
    for i in range(history_min - run_min, history_min):
        mem.put_samples([sample(n, i - 1) for n in names], ttl_s=86_400 * 30)
        forecasts.run(TRACE_START + 60 * i)
        plans.plan(names, TRACE_START + 60 * i)
    return mem


def _config(name: str) -> TargetConfig:
    return TargetConfig(name=name, kind="lambda-provisioned", function_name=name, qualifier="live", max_capacity=2000)  # type: ignore[arg-type]


TRACE_START = 0


def main() -> None:
    global TRACE_START  # noqa: PLW0603 - set once from the generated trace
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--warm-days", type=float, default=1.0, help="days each planner has run before the bench")
    parser.add_argument("--batch", type=int, default=5, help="targets per batch for the memory figure")
    parser.add_argument("--memory-only", action="store_true", help="skip the DynamoDB units (no moto)")
    args = parser.parse_args()
    print(f"forescale from {forescale.__file__}")

    warm_min = int(args.warm_days * 1440)
    history_min = 1440 + warm_min
    trace = generate(days=(history_min + args.minutes + 30) / 1440, step_s=60, seed=7)
    TRACE_START = trace.time(0)
    series = {f"{BUILTIN_TARGETS[i % 4]}-{i // 4}": trace.targets[BUILTIN_TARGETS[i % 4]] for i in range(args.targets)}
    names = sorted(series)
    start = trace.time(history_min)

    def sample(n: str, i: int) -> DemandSampleDetail:
        return DemandSampleDetail(target=n, timestamp=trace.time(i), requests=series[n].requests[i])

    mem = warmed_up(names, sample, history_min, warm_min)
    if args.memory_only:
        memory(mem, names, sample, history_min, args.batch)
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        raw = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**table_definition(TABLE))
        meter = Meter(client, raw)
        store = DynamoStateStore(client, TABLE)
        store.import_samples(
            [sample(n, i) for n in names for i in range(history_min - 1440, history_min)], ttl_s=86_400
        )
        for n in names:  # the warmed-up targets, as a running deployment has them
            cfg = store.put_target(_config(n))
            fc = mem.get_forecast(n)
            if fc is not None:
                store.put_forecast(fc)
            planner, _, observed, _ = restore_planner(mem, mem.get_target(n) or cfg, start, 86_400)
            store.put_planner(n, snapshot.dump(planner), observed, 0)
        bus = RecordingPublisher()
        plans = PlanService(store, bus)
        for k in range(1, args.minutes + 1):
            store.put_samples([sample(n, history_min + k - 1) for n in names], ttl_s=86_400)
            meter.on = True
            plans.plan(names, start + 60 * k)
            meter.on = False
        target_minutes = args.targets * args.minutes
        reads = sum(meter.reads.values()) / target_minutes
        writes = sum(meter.writes.values()) / target_minutes
        sizes: dict[str, int] = {}
        for it in raw.scan(TableName=TABLE)["Items"]:
            kind = "FORECAST blob" if "blob" in it and it["SK"]["S"].startswith("FORECAST") else _kind(it)
            sizes[kind] = max(sizes.get(kind, 0), item_size(it))
        print(
            f"{args.targets} targets x {args.minutes} minutes, one warm plan process, planners {args.warm_days} d old"
        )
        print(
            "largest items (bytes): "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(sizes.items()) if k.isupper() or "blob" in k)
        )
        print(f"read units per target-minute:  {reads:7.2f}   " + _by_kind(meter.reads, target_minutes))
        print(f"write units per target-minute: {writes:7.2f}   " + _by_kind(meter.writes, target_minutes))
        month = (reads * READ_PRICE + writes * WRITE_PRICE) * MINUTES_PER_MONTH
        print(f"DynamoDB for plan: ${month:.3f} per target-month")

        memory(mem, names, sample, history_min, args.batch)


def memory(mem: InMemoryStateStore, names: list[str], sample: Any, history_min: int, batch: int) -> None:
    """Peak memory (tracemalloc) of a cold plan process planning every target once, on the in-memory
    store (so that moto's own allocations are not counted): all at once, then in batches."""
    bus = RecordingPublisher()
    for k, size in enumerate((len(names), batch)):
        try:
            # Nothing held between batches (an empty cache), so the peak is what one batch needs.
            cold = PlanService(mem, bus, batch_targets=size, planners=PlannerCache(0))  # type: ignore[call-arg]
        except (TypeError, NameError):
            if size != len(names):
                continue  # the code before batches restores every target before deciding any
            cold = PlanService(mem, bus)
        mem.put_samples([sample(n, history_min + k - 1) for n in names], ttl_s=86_400)
        tracemalloc.start()
        cold.plan(names, TRACE_START + 60 * (history_min + k))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        mb = peak / 2**20
        label = "all at once" if size == len(names) else f"batches of {size}"
        print(f"cold plan of {len(names)} targets ({label}): peak {mb:.1f} MB traced, {mb / len(names):.2f} MB/target")
    planners = getattr(cold, "_planners", None)
    if planners is not None:
        # What a warm process keeps between invocations: the planners it holds.
        tracemalloc.start()
        keep = PlanService(mem, bus)
        k = 2
        mem.put_samples([sample(n, history_min + k - 1) for n in names], ttl_s=86_400)
        keep.plan(names, TRACE_START + 60 * (history_min + k))
        held_mb = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        count = len(keep._planners)  # type: ignore[attr-defined]
        print(
            f"a warm process holding {count} planners: {held_mb:.1f} MB retained, {held_mb / max(1, count):.2f} MB each"
        )


def _by_kind(units: dict[str, float], target_minutes: int) -> str:
    return "(" + ", ".join(f"{k} {v / target_minutes:.2f}" for k, v in sorted(units.items()) if v) + ")"


if __name__ == "__main__":
    main()
