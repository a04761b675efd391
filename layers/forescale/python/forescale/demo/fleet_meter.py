"""The meter of `forescale bench fleet`: every AWS call the functions make, by stage, priced as AWS bills it.

Two parts:

1. **Billing rules** (pure functions, unit-tested on the AWS documentation's worked examples):
   - item size, from "DynamoDB item sizes and formats"
     (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
     attribute name UTF-8 bytes + value size; a string its UTF-8 bytes; a number about 1 byte per two
     significant digits + 1 (leading and trailing zeroes trimmed; the doc's "approximately", taken as
     ceil(digits / 2) + 1); a binary its raw bytes; null and Boolean 1 byte; a List or Map 3 bytes +
     its elements + 1 byte per element; sets (SS, NS, BS) the sum of their elements.
   - read and write units, from "DynamoDB read and write operations"
     (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html):
     GetItem ceil(size / 4 KB), halved when eventually consistent, and a missing item still costs the
     minimum; BatchGetItem per item; Query and Scan the SUM of the sizes of the items read (before any
     filter) rounded up to 4 KB once per request (page); writes ceil(max(old, new) / 1 KB), also when a
     condition fails; transactions double; every GSI whose key the item carries is written too.
   - a PutEvents entry's size, from "Calculating PutEvents event entry size"
     (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html): Time 14 bytes,
     Source, DetailType, Detail and each Resources entry their UTF-8 bytes.

2. **The meter**: botocore hooks on the default boto3 session (`before-parameter-build` sees the call's
   parameters, `after-call` its answer), so every client created afterwards, the functions' own
   included, reports every call, with the stage (function) whose invocation made it. DynamoDB item
   images are read directly from moto's backend (old image before a write, new image after it, full
   items behind a read), adding no call. Around each invocation it measures CPU time (`process_time`)
   and peak Python memory (`tracemalloc`) with moto's own work excluded: time and memory spent inside
   moto's request handling (and inside the meter's hooks) are subtracted, since in AWS that work is on
   the service side; allocations moto keeps (stored items) do not count against the function either.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024
PUT_EVENTS_TIME_BYTES = 14
# The Lambda control plane shares 15 requests/s per account and Region, "excluding invocation,
# GetFunction, and GetPolicy requests" (Lambda quotas: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
LAMBDA_NOT_CONTROL_PLANE = frozenset({"Invoke", "InvokeAsync", "InvokeWithResponseStream", "GetFunction", "GetPolicy"})
CONTROL_PLANE_SERVICES = ("lambda", "sagemaker", "application-autoscaling")
# Calls that change a user's capacity: one accepted call is one change.
CHANGES = frozenset(
    {
        "PutProvisionedConcurrencyConfig",
        "DeleteProvisionedConcurrencyConfig",
        "PutFunctionConcurrency",
        "DeleteFunctionConcurrency",
        "UpdateEndpointWeightsAndCapacities",
        "UpdateEndpoint",
        "RegisterScalableTarget",
    }
)
# Read at most once a minute per act process (AccountHeadroom's cache), whatever the fleet.
LAMBDA_BOUNDED_OPERATIONS = frozenset({"GetAccountSettings"})
HARNESS = "harness"  # calls made outside any function invocation (setup, metrics publishing, event routing)


# ---------------------------------------------------------------- billing rules (pure)


def _binary_length(value: Any) -> int:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    text = str(value)  # base64 on the wire (moto keeps it so): the raw length is what is billed
    return len(text) * 3 // 4 - text[-2:].count("=")


def number_size(text: str) -> int:
    """Bytes of a DynamoDB Number: about 1 byte per two significant digits, plus 1."""
    digits = text.strip().lstrip("+-").lower().split("e", 1)[0].replace(".", "").strip("0")
    return math.ceil(len(digits) / 2) + 1


def attribute_value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one AttributeValue (`{"S": ...}`, `{"N": ...}`, `{"M": {...}}`, ...), its name excluded."""
    (kind, v), *_ = value.items()
    if kind == "S":
        return len(str(v).encode())
    if kind == "N":
        return number_size(str(v))
    if kind == "B":
        return _binary_length(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in v)
    if kind == "NS":
        return sum(number_size(str(n)) for n in v)
    if kind == "BS":
        return sum(_binary_length(b) for b in v)
    if kind == "L":
        return 3 + sum(attribute_value_size(e) + 1 for e in v)
    if kind == "M":
        return 3 + sum(len(str(k).encode()) + attribute_value_size(e) + 1 for k, e in v.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes of an item as DynamoDB bills it: each attribute's name (UTF-8) plus its value."""
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_value_size(v) for name, v in item.items())


def read_units(size_bytes: int, consistent: bool = True, transactional: bool = False) -> float:
    """Read request units for one item (GetItem) or one Query/Scan page of `size_bytes` in all.

    A read of nothing (a missing item, an empty page) still costs the minimum, one 4 KB unit."""
    units = max(1, math.ceil(size_bytes / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def write_units(old_bytes: int, new_bytes: int, transactional: bool = False) -> int:
    """Write request units of a put, update or delete: the larger of the item before and after, per 1 KB."""
    units = max(1, math.ceil(max(old_bytes, new_bytes) / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units


def put_events_entry_size(entry: Mapping[str, Any]) -> int:
    """Bytes of one PutEvents entry as EventBridge counts them against the 256 KB request limit."""
    size = PUT_EVENTS_TIME_BYTES if entry.get("Time") is not None else 0
    size += len(str(entry.get("Source", "")).encode()) + len(str(entry.get("DetailType", "")).encode())
    if entry.get("Detail") is not None:
        size += len(str(entry["Detail"]).encode())
    size += sum(len(str(r).encode()) for r in entry.get("Resources") or ())
    return size


# ---------------------------------------------------------------- what is recorded


@dataclass
class StageTotals:
    """Everything one stage (function) did through AWS, summed over the metered window."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (service, operation) -> calls
    errors: Counter[str] = field(default_factory=Counter)  # "service.operation: code" -> answers >= 400
    read_units: float = 0.0
    write_units: float = 0.0
    gsi_write_units: float = 0.0
    metrics_requested: int = 0  # GetMetricData queries with a MetricStat, per request
    put_metric_data_requests: int = 0
    put_events_requests: int = 0
    put_events_entries: int = 0
    put_events_chunks: int = 0  # 64 KB chunks, as EventBridge bills them
    put_events_bytes: int = 0
    max_request_bytes: int = 0
    max_entry_bytes: int = 0
    entries_by_type: Counter[str] = field(default_factory=Counter)
    control_plane: Counter[str] = field(default_factory=Counter)  # service -> calls
    lambda_control_plane: int = 0
    # Of those, calls of work act bounds whatever the fleet: re-reads of quiet targets (at most
    # `reconcile_reads_per_sweep` a sweep) and GetAccountSettings (cached a minute per process).
    lambda_bounded: int = 0
    lambda_first_reads: int = 0  # of the others, a target's first read ever (once in its life)
    changes: int = 0
    largest_item: dict[str, int] = field(default_factory=dict)  # item kind (SK prefix) -> bytes written
    approximate_reads: int = 0  # reads whose billed size could not be known exactly (filters/projections)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """One function invocation: what it cost in CPU and memory (moto's share excluded)."""

    stage: str
    minute: int
    trigger: str
    targets: int  # targets the event named (all registered targets for a schedule)
    cpu_s: float
    peak_bytes: int | None  # None: memory was not traced for this invocation
    waited_s: float  # simulated waits (act's rate limiter and retry backoff): billed duration, no CPU
    calls: int
    log_bytes: int
    ok: bool
    # Of cpu_s and calls, the part spent in work the function bounds per run whatever the fleet (act's
    # rotation over at most `rotation_per_sweep` quiet targets, its re-reads of quiet targets).
    bounded_cpu_s: float = 0.0
    bounded_calls: int = 0


class _DynamoImages:
    """Items as moto holds them (wire-format dicts), read straight from its backend: no AWS call."""

    def __init__(self) -> None:
        self._tables: dict[str, Any] = {}

    def table(self, name: str) -> Any:
        if name not in self._tables:
            from moto.dynamodb.models import dynamodb_backends

            for account in dynamodb_backends.values():
                for backend in account.values():
                    if name in backend.tables:
                        self._tables[name] = backend.tables[name]
            if name not in self._tables:
                return None
        return self._tables[name]

    def get(self, table_name: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = self.table(table_name)
        if table is None:
            return None
        hash_value = key.get(table.hash_key_attr)
        if hash_value is None:
            return None
        range_value = key.get(table.range_key_attr) if table.range_key_attr else None
        if table.range_key_attr and range_value is None:
            return None
        item = table.get_item(DynamoType(dict(hash_value)), DynamoType(dict(range_value)) if range_value else None)
        if item is None:
            return None
        attrs: dict[str, Any] = item.to_json()["Attributes"]
        return attrs

    def key_of(self, table_name: str, item: Mapping[str, Any]) -> dict[str, Any]:
        table = self.table(table_name)
        if table is None:
            return {}
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return {n: item[n] for n in names if n in item}

    def gsi_keys(self, table_name: str) -> list[str]:
        table = self.table(table_name)
        if table is None:
            return []
        return [i.schema_key_attrs[0] for i in table.global_indexes]


def _kind_of(item: Mapping[str, Any]) -> str:
    sk = item.get("SK", {}).get("S") if isinstance(item.get("SK"), Mapping) else None
    pk = item.get("PK", {}).get("S") if isinstance(item.get("PK"), Mapping) else None
    if pk and str(pk).startswith("idempotency#"):
        return "IDEMPOTENCY"
    return str(sk).split("#", 1)[0] if sk else "?"


class Meter:
    """Counts, sizes and attributes every AWS call; measures each function invocation."""

    def __init__(self, clock: Callable[[], float] = time.process_time) -> None:
        self._cpu = clock
        self.stage = HARNESS
        self.minute = -1
        self.recording = True
        self.stages: dict[str, StageTotals] = {}
        self.invocations: list[InvocationRecord] = []
        self._images = _DynamoImages()
        self._excluded_cpu = 0.0
        self._depth = 0
        self._tracing = False
        self._mem_peak = 0
        self._mem_kept = 0  # bytes allocated inside excluded sections and still held (moto's stored items)
        self._mem_enter = 0
        self._calls_in_invocation = 0
        self._log_bytes = 0
        self._waited = 0.0
        self._installed: list[tuple[Any, str]] = []
        self.unrecorded = 0  # calls seen while not recording (set-up, warm-up)
        self._bounded = False
        self._first_read = False
        self._bounded_cpu = 0.0
        self._bounded_calls = 0

    def totals(self, stage: str) -> StageTotals:
        if stage not in self.stages:
            self.stages[stage] = StageTotals()
        return self.stages[stage]

    # ------------------------------------------------------------ exclusion of moto's and the meter's own work

    @contextmanager
    def excluded(self) -> Iterator[None]:
        """Work that is not the function's: its CPU and the memory it keeps are subtracted (re-entrant)."""
        self._depth += 1
        if self._depth > 1:
            try:
                yield
            finally:
                self._depth -= 1
            return
        t0 = self._cpu()
        if self._tracing:
            current, peak = tracemalloc.get_traced_memory()
            self._mem_peak = max(self._mem_peak, peak - self._mem_kept)
            self._mem_enter = current
        try:
            yield
        finally:
            if self._tracing:
                current, _ = tracemalloc.get_traced_memory()
                self._mem_kept += current - self._mem_enter
                tracemalloc.reset_peak()  # moto's transient peak is not the function's
            self._excluded_cpu += self._cpu() - t0
            self._depth -= 1

    @contextmanager
    def bounded_work(self) -> Iterator[None]:
        """Work inside (calls and CPU) is work the function bounds per run whatever the fleet (counted apart)."""
        if self._bounded:
            yield
            return
        self._bounded = True
        t0, excluded0 = self._cpu(), self._excluded_cpu
        try:
            yield
        finally:
            self._bounded = False
            self._bounded_cpu += self._cpu() - t0 - (self._excluded_cpu - excluded0)

    @contextmanager
    def first_read(self) -> Iterator[None]:
        """Lambda calls inside read a target for the first time ever: counted apart (once per target)."""
        previous, self._first_read = self._first_read, True
        try:
            yield
        finally:
            self._first_read = previous

    def add_log_bytes(self, n: int) -> None:
        self._log_bytes += n

    def add_wait(self, seconds: float) -> None:
        self._waited += seconds

    @contextmanager
    def invocation(self, stage: str, trigger: str, targets: int, trace_memory: bool) -> Iterator[None]:
        """Attribute the calls inside to `stage` and record the invocation's CPU, memory and waits."""
        previous = self.stage
        self.stage = stage
        self._calls_in_invocation = self._log_bytes = self._bounded_calls = 0
        self._waited = self._bounded_cpu = 0.0
        excluded0 = self._excluded_cpu
        if trace_memory:
            tracemalloc.start()
            self._tracing, self._mem_peak, self._mem_kept = True, 0, 0
        ok = False
        t0 = self._cpu()
        try:
            yield
            ok = True
        finally:
            cpu = self._cpu() - t0 - (self._excluded_cpu - excluded0)
            peak: int | None = None
            if trace_memory:
                _, last = tracemalloc.get_traced_memory()
                peak = max(self._mem_peak, last - self._mem_kept)
                tracemalloc.stop()
                self._tracing = False
            if self.recording:
                self.invocations.append(
                    InvocationRecord(
                        stage, self.minute, trigger, targets, cpu, peak, self._waited,
                        self._calls_in_invocation, self._log_bytes, ok, self._bounded_cpu, self._bounded_calls,
                    )
                )  # fmt: skip
            self.stage = previous

    # ------------------------------------------------------------ botocore hooks

    def install(self, session: Any) -> None:
        """Register on a botocore/boto3 session: clients created from it afterwards report to this meter."""
        events = getattr(session, "events", None) or session.get_component("event_emitter")
        for name, hook in (("before-parameter-build", self._before), ("after-call", self._after)):
            events.register(name, hook, unique_id=f"fleet-meter-{name}")
            self._installed.append((events, name))

    def uninstall(self) -> None:
        for events, name in self._installed:
            events.unregister(name, unique_id=f"fleet-meter-{name}")
        self._installed.clear()

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        with self.excluded():
            service = model.service_model.service_name
            old: Any = None
            if service == "dynamodb":
                old = self._old_images(model.name, params)
            context["fleet_meter"] = (self.stage, params, old, self._bounded, self._first_read)

    def _after(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        seen = context.pop("fleet_meter", None)
        if seen is None:
            return
        if not self.recording:
            self.unrecorded += 1
            return
        with self.excluded():
            stage, params, old, bounded, first = seen
            status = int(getattr(http_response, "status_code", 0) or 0)
            service = model.service_model.service_name
            self._record(stage, service, model.name, params, parsed, old, status, bounded)
            if first and not bounded and service == "lambda" and model.name not in LAMBDA_NOT_CONTROL_PLANE:
                self.totals(stage).lambda_first_reads += 1

    # ------------------------------------------------------------ per-call accounting

    def _record(
        self,
        stage: str,
        service: str,
        operation: str,
        params: dict[str, Any],
        parsed: dict[str, Any],
        old: Any,
        status: int,
        bounded: bool = False,
    ) -> None:
        t = self.totals(stage)
        t.calls[(service, operation)] += 1
        if stage != HARNESS:
            self._calls_in_invocation += 1
            self._bounded_calls += bounded
        if status >= 400:
            code = (parsed.get("Error") or {}).get("Code", str(status))
            t.errors[f"{service}.{operation}: {code}"] += 1
        if service == "dynamodb":
            self._dynamodb(t, operation, params, parsed, old, status)
        elif service == "events" and operation == "PutEvents":
            sizes = [put_events_entry_size(e) for e in params.get("Entries", [])]
            t.put_events_requests += 1
            t.put_events_entries += len(sizes)
            t.put_events_chunks += sum(max(1, math.ceil(s / (64 * 1024))) for s in sizes)
            t.put_events_bytes += sum(sizes)
            t.max_request_bytes = max(t.max_request_bytes, sum(sizes))
            t.max_entry_bytes = max([t.max_entry_bytes, *sizes])
            for e in params.get("Entries", []):
                t.entries_by_type[str(e.get("DetailType"))] += 1
        elif service == "cloudwatch" and operation == "GetMetricData":
            t.metrics_requested += sum(1 for q in params.get("MetricDataQueries", []) if "MetricStat" in q)
        elif service == "cloudwatch" and operation == "PutMetricData":
            t.put_metric_data_requests += 1
        if service in CONTROL_PLANE_SERVICES and not (service == "lambda" and operation in LAMBDA_NOT_CONTROL_PLANE):
            t.control_plane[service] += 1
            if service == "lambda":
                t.lambda_control_plane += 1
                if bounded or operation in LAMBDA_BOUNDED_OPERATIONS:
                    t.lambda_bounded += 1
            if operation in CHANGES and status < 300:
                t.changes += 1

    def _old_images(self, operation: str, params: dict[str, Any]) -> Any:
        table = params.get("TableName", "")
        if operation == "PutItem":
            return self._images.get(table, self._images.key_of(table, params.get("Item", {})))
        if operation in ("UpdateItem", "DeleteItem"):
            return self._images.get(table, params.get("Key", {}))
        if operation == "BatchWriteItem":
            out = []
            for name, requests in params.get("RequestItems", {}).items():
                for r in requests:
                    if "PutRequest" in r:
                        key = self._images.key_of(name, r["PutRequest"]["Item"])
                    else:
                        key = r.get("DeleteRequest", {}).get("Key", {})
                    out.append(self._images.get(name, key))
            return out
        if operation == "TransactWriteItems":
            out = []
            for action in params.get("TransactItems", []):
                (kind, body), *_ = action.items()
                name = body.get("TableName", "")
                key = self._images.key_of(name, body["Item"]) if kind == "Put" else body.get("Key", {})
                out.append(self._images.get(name, key))
            return out
        return None

    def _write(self, t: StageTotals, table: str, old: Any, new: Any, transactional: bool = False) -> None:
        old_size, new_size = item_size(old), item_size(new)
        t.write_units += write_units(old_size, new_size, transactional)
        if new:
            kind = _kind_of(new)
            t.largest_item[kind] = max(t.largest_item.get(kind, 0), new_size)
        for gsi_key in self._images.gsi_keys(table):
            had, has = bool(old) and gsi_key in old, bool(new) and gsi_key in new
            if not (had or has):
                continue
            # A GSI entry is put, deleted or updated with the item (projection ALL: the whole item); a
            # changed index key is a delete of the old entry and a put of the new one.
            moved = had and has and old[gsi_key] != new[gsi_key]
            if moved:
                units = write_units(old_size, 0, transactional) + write_units(0, new_size, transactional)
            else:
                units = write_units(old_size if had else 0, new_size if has else 0, transactional)
            t.gsi_write_units += units

    def _dynamodb(
        self, t: StageTotals, operation: str, params: dict[str, Any], parsed: dict[str, Any], old: Any, status: int
    ) -> None:
        table = params.get("TableName", "")
        failed_condition = status >= 400 and (parsed.get("Error") or {}).get("Code") in (
            "ConditionalCheckFailedException",
            "TransactionCanceledException",
        )
        if status >= 400 and not failed_condition:
            return  # a refused request (validation, throttling) reads and writes nothing
        consistent = bool(params.get("ConsistentRead", False))
        if operation == "GetItem":
            item = self._images.get(table, params.get("Key", {}))
            t.read_units += read_units(item_size(item), consistent)
        elif operation == "BatchGetItem":
            unprocessed = parsed.get("UnprocessedKeys") or {}
            for name, request in params.get("RequestItems", {}).items():
                skipped = {repr(sorted(k.items())) for k in (unprocessed.get(name) or {}).get("Keys", [])}
                for key in request.get("Keys", []):
                    if repr(sorted(key.items())) in skipped:
                        continue
                    item = self._images.get(name, key)
                    t.read_units += read_units(item_size(item), bool(request.get("ConsistentRead", False)))
        elif operation in ("Query", "Scan"):
            t.read_units += read_units(self._page_bytes(t, table, params, parsed), consistent)
        elif operation == "TransactGetItems":
            for action in params.get("TransactItems", []):
                body = action.get("Get", {})
                item = self._images.get(body.get("TableName", ""), body.get("Key", {}))
                t.read_units += read_units(item_size(item), transactional=True)
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            if failed_condition:
                new = params.get("Item") if operation == "PutItem" else old
            elif operation == "PutItem":
                new = params.get("Item")
            elif operation == "UpdateItem":
                new = self._images.get(table, params.get("Key", {}))
            else:
                new = None
            self._write(t, table, old, new)
        elif operation == "BatchWriteItem":
            unprocessed = parsed.get("UnprocessedItems") or {}
            olds = iter(old or [])
            for name, requests in params.get("RequestItems", {}).items():
                skipped = {repr(r) for r in unprocessed.get(name, [])}
                for r in requests:
                    previous = next(olds, None)
                    if repr(r) in skipped:
                        continue
                    new = r["PutRequest"]["Item"] if "PutRequest" in r else None
                    self._write(t, name, previous, new)
        elif operation == "TransactWriteItems":
            for action, previous in zip(params.get("TransactItems", []), old or [], strict=False):
                (kind, body), *_ = action.items()
                name = body.get("TableName", "")
                if kind == "ConditionCheck":
                    t.write_units += write_units(item_size(previous), 0, transactional=True)
                    continue
                if failed_condition or kind == "Delete":
                    new = None if kind == "Delete" else previous
                elif kind == "Put":
                    new = body.get("Item")
                else:
                    new = self._images.get(name, body.get("Key", {}))
                self._write(t, name, previous, new, transactional=True)

    def _page_bytes(self, t: StageTotals, table: str, params: dict[str, Any], parsed: dict[str, Any]) -> int:
        """Bytes a Query/Scan page read: every item matched by the key condition, before any filter, whole."""
        items: Sequence[dict[str, Any]] = parsed.get("Items", [])
        shaped = any(k in params for k in ("ProjectionExpression", "AttributesToGet", "FilterExpression", "Select"))
        if not shaped:
            return sum(item_size(i) for i in items)
        # Projected or filtered: the items read are not all in the answer, or not whole. Read back those
        # returned with their keys; filtered-out items cannot be seen (counted as approximate).
        t.approximate_reads += 1
        total = 0
        for i in items:
            key = self._images.key_of(table, i)
            total += item_size(self._images.get(table, key) if key else i)
        return total
