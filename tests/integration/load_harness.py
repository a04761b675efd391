"""Load harness: N targets through one full forescale cycle on ThreadedMotoServer, events delivered by
a pool of worker threads calling the real handlers, with a share of the events delivered twice.

Used by `tests/bench/load_cycle.py` (1,000 targets, the numbers) and
`tests/integration/test_load_server.py` (the same harness at CI scale, asserting).

What runs:

1. AWS on loopback (`LocalAws`: moto's ThreadedMotoServer plus forescale's extension) on a shared
   fake clock (`SharedClock`); the table, bus, DLQs and the bus → SQS copy (`provision`).
2. N Lambda functions, each with a published version and an alias `live`, tagged
   `forescale:managed=true`; every `reserved_every`-th one is a reserved-concurrency target, the rest
   provisioned-concurrency targets on `live`, a share of them with 1 environment provisioned already.
3. N targets registered (active) and `history_minutes` of demand per target stored as collect would
   have stored it; the minute collect reads is put into moto's CloudWatch (Invocations, plus the
   account-wide heartbeat).
4. One cycle: the collect schedule event, then every event a handler publishes (read back from moto's
   EventBridge through its SQS copy) is delivered to the subscribed handler (the stack's routes:
   SamplesCollected → plan, DecisionMade → act) by `workers` threads. A fraction `redeliver` of the
   deliveries, chosen by a hash of (seed, function, detail-type, detail), is delivered twice, as
   EventBridge may: half of them concurrently with the original (both wait on a barrier), half after
   it. A handler that raises is retried like an asynchronous Lambda invocation (3 attempts in all,
   then the DLQ). Lambda waits a minute or two before retrying, longer than any forescale invocation
   takes; compressed here, a retry waits until every invocation that was running when the attempt
   failed has finished.
5. Then act's schedule (the sweep), after the provisioned-concurrency allocation delay has passed
   on the clock, through the same pool (and subject to the same redelivery).

act's Lambda rate limiter (15 calls/s) runs on the shared fake clock, which only moves when
something sleeps on it, so the run does not take N/15 s of wall time; moto's allocation timers
and act's `now` read the same clock. The 8 workers share one act service (and so one limiter), as
the one process of act's reserved-concurrency-1 deployment would.

What is counted, from the sources rather than from the handlers' own reports: decisions stored in
DynamoDB, the capacity moto holds for every function (GetProvisionedConcurrencyConfig /
GetFunctionConcurrency), and every Lambda API call any client in this process makes during the
cycle (botocore hooks on the default session, inherited by every client the handlers create), with
its function name and HTTP status.

Emulation notes: all workers share one process, so module-level state is shared the way it would not
be between Lambda execution environments. Powertools metrics are disabled (one `Metrics` object
flushed by 8 threads at once interleaves its buffers) and the Powertools logger is quietened to
WARNING, counted rather than printed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3

from forescale.adapters.state import DynamoStateStore
from forescale.domain.ratelimit import ManualClock, TokenBucket, max_in_window
from forescale.domain.targets import TargetKind
from forescale.local import moto_extension
from forescale.local.environment import (
    create_stand_in_function,
    environment_variables,
    function_env,
    function_zip,
    provision,
)
from forescale.local.router import LambdaContextStub, Subscription, scheduled_event
from forescale.local.server import LocalAws
from forescale.runtime import lambda_support
from forescale.runtime.models import DecisionRecord, DemandSampleDetail, Mode, TargetConfig
from forescale.runtime.observability import logger as powertools_logger
from forescale.runtime.settings import ActSettings

START = 1_795_392_000  # 2026-11-23 00:00 UTC: the hour the history and the cycle fall in
TABLE = "forescale-load"
BUS = "forescale-load"
ALIAS = "live"
ROLE_NAME = "forescale-load-function"
ROLE = f"arn:aws:iam::123456789012:role/{ROLE_NAME}"
MUTATING = frozenset(
    {
        "PutProvisionedConcurrencyConfig",
        "DeleteProvisionedConcurrencyConfig",
        "PutFunctionConcurrency",
        "DeleteFunctionConcurrency",
    }
)
MAX_ATTEMPTS = 3  # an asynchronous Lambda invocation: the first try and 2 retries
BARRIER_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LoadOptions:
    targets: int = 1000
    workers: int = 8
    redeliver: float = 0.10
    seed: int = 7
    reserved_every: int = 20  # every n-th target is a reserved-concurrency target
    preprovisioned_every: int = 5  # every n-th provisioned target starts with 1 environment
    history_minutes: int = 30
    provisioned_ready_after_s: int = 60
    sweep: bool = True  # act's schedule once more after the events, when every allocation is READY
    sweep_during_act: bool = False  # also act's schedule as the first DecisionMade is delivered
    idempotency: bool = True  # False: Powertools Idempotency off, so redelivered events reach the services


class SharedClock(ManualClock):
    """`ManualClock` that several threads may sleep on (the moves are serialised)."""

    def __init__(self, start_s: float) -> None:
        super().__init__(start_s)
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            super().sleep(seconds)

    def set(self, at_s: float) -> None:
        with self._lock:
            self.now_s = max(self.now_s, float(at_s))


# ---------------------------------------------------------------- counting AWS calls


@dataclass(frozen=True, slots=True)
class ApiCall:
    service: str
    operation: str
    function: str | None
    status: int | None  # HTTP status of the answer; None if no answer came back
    fake_at: float
    wall_at: float


class CallLog:
    """Every AWS call made by clients of the default boto3 session while `recording` is set."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.recording = False
        self.calls: list[ApiCall] = []
        self._lock = threading.Lock()

    def before_parameter_build(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["load_function"] = params.get("FunctionName")

    def after_call(self, http_response: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self.recording:
            return
        status = getattr(http_response, "status_code", None)
        self._add(model, context, status)

    def after_call_error(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if self.recording:
            self._add(model, context, None)  # no answer (connection error): the call may or may not have landed

    def _add(self, model: Any, context: dict[str, Any], status: int | None) -> None:
        raw = context.get("load_function")
        name = str(raw).split(":function:")[-1].split(":")[0] if raw else None
        call = ApiCall(model.service_model.service_name, model.name, name, status, self.clock(), time.perf_counter())
        with self._lock:
            self.calls.append(call)

    def mutating(self) -> list[ApiCall]:
        return [c for c in self.calls if c.service == "lambda" and c.operation in MUTATING]


@contextmanager
def recording_session(log: CallLog) -> Iterator[None]:
    """Hook the default session so that every client created from now on reports its calls to `log`."""
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    hooks = (
        ("before-parameter-build", log.before_parameter_build),
        ("after-call", log.after_call),
        ("after-call-error", log.after_call_error),
    )
    for event, hook in hooks:
        session.events.register(event, hook, unique_id=f"load-harness-{event}")
    try:
        yield
    finally:
        for event, _ in hooks:
            session.events.unregister(event, unique_id=f"load-harness-{event}")


class WarningCounter(logging.Handler):
    """Counts the Powertools logger's WARNING and ERROR records by message."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.counts: Counter[str] = Counter()
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.counts[f"{record.levelname}: {record.getMessage()}"] += 1


@contextmanager
def quiet_powertools_logger() -> Iterator[WarningCounter]:
    counter = WarningCounter()
    target = powertools_logger._logger  # the stdlib logger behind Powertools' Logger
    level = target.level
    streams: list[tuple[logging.StreamHandler[Any], Any]] = []
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed below, after the handlers let go of it
    for h in target.handlers:
        if isinstance(h, logging.StreamHandler):
            streams.append((h, h.setStream(sink)))
    target.setLevel(logging.WARNING)
    target.addHandler(counter)
    try:
        yield counter
    finally:
        target.removeHandler(counter)
        target.setLevel(level)
        for h, old in streams:
            h.setStream(old)
        sink.close()


# ---------------------------------------------------------------- delivering events


@dataclass
class Job:
    seq: int
    event: dict[str, Any]
    sub: Subscription
    copy: bool = False
    concurrent: bool = False
    attempt: int = 1
    barrier: threading.Barrier | None = None
    then: Job | None = None  # a redelivered copy to queue once this delivery's first attempt is over


@dataclass
class Delivery:
    function: str
    detail_type: str
    event_id: str
    copy: bool
    concurrent: bool
    attempt: int
    ok: bool
    wall_s: float
    result: Any = None
    error: str | None = None
    decision_id: str | None = None  # a DecisionMade event's


@dataclass
class DispatchStats:
    published: Counter[str] = field(default_factory=Counter)  # events read back from the bus, by detail-type
    unrouted: Counter[str] = field(default_factory=Counter)
    deliveries: list[Delivery] = field(default_factory=list)
    dead_letters: list[Delivery] = field(default_factory=list)
    duplicates_planned: Counter[str] = field(default_factory=Counter)  # "concurrent" / "after"


class Dispatcher:
    """EventBridge → Lambda (asynchronous) for the subscribed handlers, on `workers` threads."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        subscriptions: list[Subscription],
        workers: int,
        redeliver: float,
        seed: int,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.subscriptions = subscriptions
        self.workers = workers
        self.redeliver = redeliver
        self.seed = seed
        self.stats = DispatchStats()
        self._cond = threading.Condition()
        self._ready: deque[Job] = deque()
        self._running: set[int] = set()
        self._waiting: list[tuple[set[int], Job]] = []
        self._seq = 0
        self._finished = 0
        self._stop = False
        # detail-type -> more events to route when the first event of that type is (once)
        self.on_first: dict[str, Callable[[], list[tuple[dict[str, Any], str]]]] = {}

    # -- choosing what is redelivered
    def _fraction(self, *parts: str) -> float:
        digest = hashlib.sha256("|".join((str(self.seed), *parts)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _redelivery(self, sub: Subscription, event: dict[str, Any]) -> str | None:
        key = (sub.function, str(event.get("detail-type")), json.dumps(event.get("detail"), sort_keys=True))
        if self._fraction("redeliver", *key) >= self.redeliver:
            return None
        return "concurrent" if self._fraction("how", *key) < 0.5 else "after"

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def route(self, event: dict[str, Any], function: str | None = None) -> None:
        """Queue `event` for every subscribed function, or for `function` (a schedule's rule names its
        target), with its redelivered copy if it is chosen."""
        detail_type = str(event.get("detail-type"))
        if function is not None:
            matched = [s for s in self.subscriptions if s.function == function]
        else:
            matched = [s for s in self.subscriptions if detail_type in s.detail_types]
        with self._cond:
            self.stats.published[detail_type] += 1
            if not matched:
                self.stats.unrouted[detail_type] += 1
            for sub in matched:
                job = Job(self._next(), event, sub)
                how = self._redelivery(sub, event)
                if how is not None:
                    self.stats.duplicates_planned[how] += 1
                    twin = Job(self._next(), copy.deepcopy(event), sub, copy=True, concurrent=how == "concurrent")
                    if how == "concurrent":
                        job.barrier = twin.barrier = threading.Barrier(2)
                        job.concurrent = True
                        self._ready.extend((job, twin))
                        continue
                    job.then = twin
                self._ready.append(job)
            self._cond.notify_all()
        more = self.on_first.pop(detail_type, None)
        if more is not None:
            for extra, target in more():
                self.route(extra, target)

    def _poll_bus(self) -> int:
        n = 0
        while True:
            resp = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = resp.get("Messages", [])
            if not messages:
                return n
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
            for m in messages:
                event = json.loads(m["Body"])
                event.setdefault("account", "123456789012")  # moto's SQS copy lacks it (see LocalRouter)
                self.route(event)
                n += 1

    def _idle(self) -> bool:
        return not self._ready and not self._running and not self._waiting

    def run(self, events: list[tuple[dict[str, Any], str]]) -> None:
        """Deliver `events` (event, function) and everything the handlers publish in turn, until nothing is left."""
        self._stop = False
        threads = [
            threading.Thread(target=self._work, name=f"load-worker-{i}", daemon=True) for i in range(self.workers)
        ]
        for t in threads:
            t.start()
        try:
            for e, function in events:
                self.route(e, function)
            seen = -1
            while True:
                # A handler's events are on the bus before its invocation ends: look after each end.
                with self._cond:
                    while self._finished == seen and not self._idle():
                        self._cond.wait(0.5)
                    seen, idle = self._finished, self._idle()
                if not self._poll_bus() and idle:
                    break
        finally:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            for t in threads:
                t.join()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stop:
                    self._cond.wait()
                if not self._ready:
                    return
                job = self._ready.popleft()
                self._running.add(job.seq)
            if job.barrier is not None:
                # A broken barrier (the twin never came: both are queued together, so it cannot) goes on alone.
                with suppress(threading.BrokenBarrierError):
                    job.barrier.wait(BARRIER_TIMEOUT_S)
            delivery = self._invoke(job)
            with self._cond:
                self._running.discard(job.seq)
                self._finished += 1
                self.stats.deliveries.append(delivery)
                if not delivery.ok:
                    if job.attempt < MAX_ATTEMPTS:
                        retry = Job(self._next(), job.event, job.sub, job.copy, job.concurrent, job.attempt + 1)
                        self._waiting.append((set(self._running), retry))
                    else:
                        self.stats.dead_letters.append(delivery)
                        self._dead_letter(job, delivery)
                if job.then is not None:
                    self._ready.append(job.then)
                still: list[tuple[set[int], Job]] = []
                for blockers, waiting in self._waiting:
                    blockers.discard(job.seq)
                    if blockers:
                        still.append((blockers, waiting))
                    else:
                        self._ready.append(waiting)
                self._waiting = still
                self._cond.notify_all()

    def _invoke(self, job: Job) -> Delivery:
        t0 = time.perf_counter()
        delivery = Delivery(
            function=job.sub.function,
            detail_type=str(job.event.get("detail-type")),
            event_id=str(job.event.get("id")),
            copy=job.copy,
            concurrent=job.concurrent,
            attempt=job.attempt,
            ok=False,
            wall_s=0.0,
            decision_id=(job.event.get("detail") or {}).get("decision_id"),
        )
        try:
            delivery.result = job.sub.handler(job.event, LambdaContextStub(job.sub.function))
            delivery.ok = True
        except Exception as exc:  # Lambda catches whatever a handler raises, and so must we
            delivery.error = f"{type(exc).__name__}: {exc}"[:500]
        delivery.wall_s = time.perf_counter() - t0
        return delivery

    def _dead_letter(self, job: Job, delivery: Delivery) -> None:
        if job.sub.dlq_url:
            self.sqs.send_message(
                QueueUrl=job.sub.dlq_url,
                MessageBody=json.dumps(job.event, default=str),
                MessageAttributes={
                    "ErrorCode": {"DataType": "String", "StringValue": (delivery.error or "?").split(":")[0]},
                    "ErrorMessage": {"DataType": "String", "StringValue": (delivery.error or "")[:1000]},
                },
            )


# ---------------------------------------------------------------- the run


@dataclass
class TargetPlan:
    name: str
    kind: TargetKind
    rate_rps: float
    initial: int  # provisioned environments on the alias before the cycle


@dataclass
class LoadResult:
    options: LoadOptions
    targets: int = 0
    setup_wall_s: float = 0.0
    cycle_wall_s: float = 0.0
    sweep_wall_s: float = 0.0
    fake_elapsed_s: float = 0.0
    events_published: dict[str, int] = field(default_factory=dict)
    deliveries: int = 0
    delivered_by_function: dict[str, int] = field(default_factory=dict)
    duplicates_planned: dict[str, int] = field(default_factory=dict)
    duplicates_delivered: int = 0
    duplicates_delivered_concurrent: int = 0
    duplicates_delivered_after: int = 0
    failed_attempts: dict[str, int] = field(default_factory=dict)  # error type -> attempts that raised
    dead_letters: int = 0
    decisions_expected: int = 0  # decision ids the plan invocations reported
    decisions_announced: int = 0  # distinct decision ids in the DecisionMade events
    decisions_stored: int = 0  # decision items in DynamoDB
    targets_with_more_than_one_decision: int = 0
    decisions_missing: list[str] = field(default_factory=list)  # expected but not stored
    decisions_unexpected: list[str] = field(default_factory=list)  # stored but not reported by plan
    status_after_events: dict[str, int] = field(default_factory=dict)
    status_final: dict[str, int] = field(default_factory=dict)
    lost_after_events: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # decision stored, AWS has something else (after the sweep)
    duplicated: list[str] = field(default_factory=list)  # > 1 successful mutating call for one decision
    mutating_calls: int = 0  # successful
    mutating_attempts: int = 0  # all, answered or not
    mutating_by_operation: dict[str, int] = field(default_factory=dict)
    mutating_unattributed: int = 0  # calls for a function without a decision this cycle
    lambda_calls: int = 0
    aws_calls: int = 0
    limiter_grants: int = 0  # tokens act's Lambda limiter gave out
    max_grants_any_fake_1s: int = 0  # the most in any 1 s of the fake clock
    # The most mutating Lambda calls (answered or not) in any 1 s of the fake clock, from the recorded
    # AWS calls: what AWS would have seen, independent of the limiter's own bookkeeping.
    max_mutating_any_fake_1s: int = 0
    act_outcomes: dict[str, int] = field(default_factory=dict)  # act's summary counts, each event once
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No lost and no duplicated action (a decision lost before act, or decided twice, counts too)."""
        return (
            not self.lost
            and not self.duplicated
            and not self.decisions_missing
            and self.targets_with_more_than_one_decision == 0
        )


def target_plans(opts: LoadOptions) -> list[TargetPlan]:
    out: list[TargetPlan] = []
    provisioned = 0
    for i in range(opts.targets):
        reserved = opts.reserved_every > 0 and i % opts.reserved_every == opts.reserved_every - 1
        kind = TargetKind.LAMBDA_RESERVED if reserved else TargetKind.LAMBDA_PROVISIONED
        name = f"load-{i:04d}-{'rsv' if reserved else 'pc'}"
        # 5-80 requests/s at the default 0.1 s duration: a few environments each, never zero.
        u = int.from_bytes(hashlib.sha256(f"{opts.seed}|rate|{name}".encode()).digest()[:8], "big") / 2**64
        initial = 0
        if not reserved:
            provisioned += 1
            if opts.preprovisioned_every > 0 and provisioned % opts.preprovisioned_every == 0:
                initial = 1
        out.append(TargetPlan(name, kind, 5.0 + 75.0 * u, initial))
    return out


def _demand(seed: int, name: str, minute: int, rate_rps: float) -> float:
    """Requests in one minute: the target's rate ± 10 %, deterministic per (seed, target, minute)."""
    u = int.from_bytes(hashlib.sha256(f"{seed}|{name}|{minute}".encode()).digest()[:8], "big") / 2**64
    return round(rate_rps * 60 * (0.9 + 0.2 * u), 1)


def setup_targets(aws: LocalAws, store: DynamoStateStore, plans: list[TargetPlan], opts: LoadOptions) -> None:
    """Functions, aliases, registrations and history (see the module docstring, steps 2-3)."""
    lam, cw = aws.client("lambda"), aws.client("cloudwatch")
    aws.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")
    code = function_zip()
    history_start = START
    cycle_minute = START + 60 * opts.history_minutes  # the minute collect reads
    datums: list[dict[str, Any]] = []
    for p in plans:
        provisioned = p.kind is TargetKind.LAMBDA_PROVISIONED
        alias = ALIAS if provisioned else None
        create_stand_in_function(lam, p.name, ROLE, alias=alias, tags={"forescale:managed": "true"}, code=code)
        if provisioned:
            if p.initial:
                lam.put_provisioned_concurrency_config(
                    FunctionName=p.name, Qualifier=ALIAS, ProvisionedConcurrentExecutions=p.initial
                )
            store.put_target(
                TargetConfig(name=p.name, kind=p.kind, function_name=p.name, qualifier=ALIAS, mode=Mode.ACTIVE)
            )
            dims = [{"Name": "FunctionName", "Value": p.name}, {"Name": "Resource", "Value": f"{p.name}:{ALIAS}"}]
        else:
            store.put_target(TargetConfig(name=p.name, kind=p.kind, function_name=p.name, mode=Mode.ACTIVE))
            dims = [{"Name": "FunctionName", "Value": p.name}]
        store.put_samples(
            [
                DemandSampleDetail(
                    target=p.name, timestamp=history_start + 60 * m, requests=_demand(opts.seed, p.name, m, p.rate_rps)
                )
                for m in range(opts.history_minutes)
            ],
            ttl_s=30 * 86_400,
        )
        datums.append(
            {
                "MetricName": "Invocations",
                "Dimensions": dims,
                "Timestamp": datetime.fromtimestamp(cycle_minute, UTC),
                "Value": _demand(opts.seed, p.name, opts.history_minutes, p.rate_rps),
                "Unit": "Count",
            }
        )
    total = sum(d["Value"] for d in datums)
    datums.append(
        {
            "MetricName": "Invocations",
            "Dimensions": [],
            "Timestamp": datetime.fromtimestamp(cycle_minute, UTC),
            "Value": total,
            "Unit": "Count",
        }
    )
    for k in range(0, len(datums), 1000):
        cw.put_metric_data(Namespace="AWS/Lambda", MetricData=datums[k : k + 1000])


def read_capacities(aws: LocalAws, plans: list[TargetPlan]) -> dict[str, int]:
    """What moto holds: requested provisioned concurrency on the alias, or the reserved concurrency."""
    lam = aws.client("lambda")
    out: dict[str, int] = {}
    for p in plans:
        if p.kind is TargetKind.LAMBDA_PROVISIONED:
            try:
                pc = lam.get_provisioned_concurrency_config(FunctionName=p.name, Qualifier=ALIAS)
                out[p.name] = int(pc["RequestedProvisionedConcurrentExecutions"])
            except lam.exceptions.ProvisionedConcurrencyConfigNotFoundException:
                out[p.name] = 0
        else:
            out[p.name] = int(lam.get_function_concurrency(FunctionName=p.name).get("ReservedConcurrentExecutions", 0))
    return out


def stored_decisions(aws: LocalAws) -> dict[str, list[DecisionRecord]]:
    """Every decision item in the table, by target (one Scan, paged)."""
    db = aws.client("dynamodb")
    out: dict[str, list[DecisionRecord]] = {}
    kwargs: dict[str, Any] = {
        "TableName": TABLE,
        "FilterExpression": "begins_with(SK, :d)",
        "ExpressionAttributeValues": {":d": {"S": "DECISION#"}},
        "ConsistentRead": True,
    }
    while True:
        resp = db.scan(**kwargs)
        for item in resp.get("Items", []):
            record = DecisionRecord.model_validate_json(item["record"]["S"])
            out.setdefault(record.target, []).append(record)
        if "LastEvaluatedKey" not in resp:
            return out
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _lost(decisions: dict[str, list[DecisionRecord]], capacities: dict[str, int]) -> list[str]:
    """Decisions that act was to apply whose capacity AWS does not have."""
    lost: list[str] = []
    for name, records in decisions.items():
        newest = max(records, key=lambda r: r.decided_at)
        if newest.mode is not Mode.ACTIVE:
            continue
        if capacities.get(name) != newest.capacity:
            lost.append(
                f"{newest.decision_id}: decided {newest.capacity}, AWS has {capacities.get(name)} "
                f"(status {newest.status.value}: {newest.outcome or ''})"[:300]
            )
    return lost


def run_load(opts: LoadOptions, log: Callable[[str], None] = lambda _: None) -> LoadResult:
    """Set up, run one cycle, count (see the module docstring). `log` gets progress lines."""
    result = LoadResult(options=opts, targets=opts.targets)
    plans = target_plans(opts)
    clock = SharedClock(START)
    calls = CallLog(clock)
    cycle_at = START + 60 * (opts.history_minutes + 1)  # collect reads the minute before
    env = function_env(TABLE, BUS) | {
        "METRIC_DELAY_S": "0",  # the minute to read is in CloudWatch already
        "REREAD_MINUTES": "1",
        "HISTORY_WARMUP_S": str(60 * (opts.history_minutes + 1)),  # a fresh planner reads the seeded history
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_IDEMPOTENCY_DISABLED": "false" if opts.idempotency else "true",
    }
    try:
        with (
            LocalAws(clock=clock) as aws,
            environment_variables(env),
            recording_session(calls),
            quiet_powertools_logger() as warnings,
            open(os.devnull, "w") as devnull,
            redirect_stdout(devnull),  # EMF lines Powertools prints when a metric reaches 100 values
        ):
            moto_extension.set_account_concurrency_limit(1_000_000)  # room for every decision: not a headroom test
            moto_extension.set_ready_delays(provisioned_ready_after_s=opts.provisioned_ready_after_s)
            lambda_support.set_clock(clock)
            t0 = time.perf_counter()
            local = provision(TABLE, BUS, functions=("collect", "plan", "act"))
            # provision() imported each handler as `forescale_function_<name>`; the router holds those.
            act_module = sys.modules["forescale_function_act"]
            settings = ActSettings.from_env()
            # act's limiter on the fake clock; the clients as the handlers build them, but made here,
            # once, in this thread (creating boto3 clients from one session is not thread-safe).
            service = act_module.build_service(settings, clock=clock, sleep=clock.sleep)
            act_module.install_service(service)
            grants = stamp_grants(service.lambda_.gate.limiter, clock)
            for name in ("dynamodb", "events", "cloudwatch", "resourcegroupstaggingapi", "sagemaker"):
                lambda_support.client(name)
            setup_targets(aws, local.store, plans, opts)
            result.setup_wall_s = time.perf_counter() - t0
            log(f"load: set up {opts.targets} functions, targets and history in {result.setup_wall_s:.1f} s wall")

            # The dispatcher's own SQS calls (reading the bus, DLQ writes) are not the handlers': a
            # separate session, which the call log does not hook.
            sqs = boto3.session.Session().client("sqs", region_name="us-east-1", endpoint_url=aws.endpoint)
            dispatcher = Dispatcher(
                sqs, local.router.queue_url, local.router.subscriptions, opts.workers, opts.redeliver, opts.seed
            )
            if opts.sweep_during_act:
                dispatcher.on_first["forescale.DecisionMade"] = lambda: [
                    (scheduled_event(int(clock()), "forescale-act-sweep"), "act")
                ]
            clock.set(cycle_at)
            fake0 = clock()
            calls.recording = True
            t1 = time.perf_counter()
            dispatcher.run([(scheduled_event(cycle_at, "forescale-collect"), "collect")])
            result.cycle_wall_s = time.perf_counter() - t1
            calls.recording = False
            decisions = stored_decisions(aws)
            result.status_after_events = _newest_status(decisions)
            result.lost_after_events = _lost(decisions, read_capacities(aws, plans))
            log(f"load: events delivered in {result.cycle_wall_s:.1f} s wall")
            if opts.sweep:
                clock.advance(opts.provisioned_ready_after_s + 1)  # every allocation has finished
                calls.recording = True
                t2 = time.perf_counter()
                dispatcher.run([(scheduled_event(int(clock()), "forescale-act-sweep"), "act")])
                result.sweep_wall_s = time.perf_counter() - t2
                calls.recording = False
                log(f"load: sweep in {result.sweep_wall_s:.1f} s wall")
            result.fake_elapsed_s = clock() - fake0
            result.limiter_grants = len(grants)
            result.max_grants_any_fake_1s = max_in_window(grants)
            tally(result, dispatcher.stats, calls, stored_decisions(aws), read_capacities(aws, plans))
            result.warnings = dict(warnings.counts.most_common())
    finally:
        lambda_support.set_clock(None)
        moto_extension.reset()  # the process-wide knobs back to their defaults
        installed = sys.modules.get("forescale_function_act")
        if installed is not None:
            installed.reset()  # the instrumented act service belongs to this run only
    return result


def stamp_grants(limiter: TokenBucket | None, clock: Callable[[], float]) -> list[float]:
    """Note the clock at every token `limiter` grants (wraps this one instance's try_acquire)."""
    stamps: list[float] = []
    if limiter is None:
        return stamps
    original = limiter.try_acquire

    def try_acquire() -> bool:
        granted = original()
        if granted:
            stamps.append(clock())
        return granted

    limiter.try_acquire = try_acquire  # type: ignore[method-assign]
    return stamps


def _newest_status(decisions: dict[str, list[DecisionRecord]]) -> dict[str, int]:
    return dict(Counter(max(r, key=lambda d: d.decided_at).status.value for r in decisions.values()))


def tally(
    result: LoadResult,
    stats: DispatchStats,
    calls: CallLog,
    decisions: dict[str, list[DecisionRecord]],
    capacities: dict[str, int],
) -> None:
    ok = [d for d in stats.deliveries if d.ok]
    result.events_published = dict(stats.published)
    result.deliveries = len(stats.deliveries)
    result.delivered_by_function = dict(Counter(d.function for d in ok))
    result.duplicates_planned = dict(stats.duplicates_planned)
    copies = [d for d in stats.deliveries if d.copy and d.attempt == 1]
    result.duplicates_delivered = len(copies)
    result.duplicates_delivered_concurrent = sum(d.concurrent for d in copies)
    result.duplicates_delivered_after = len(copies) - result.duplicates_delivered_concurrent
    result.failed_attempts = dict(Counter((d.error or "?").split(":")[0] for d in stats.deliveries if not d.ok))
    result.dead_letters = len(stats.dead_letters)

    expected: set[str] = set()
    for d in ok:
        if d.function == "plan" and isinstance(d.result, dict):
            expected.update(d.result.get("decisions", []))
    result.decisions_expected = len(expected)
    result.decisions_announced = len({d.decision_id for d in stats.deliveries if d.decision_id})
    stored = {r.decision_id for records in decisions.values() for r in records}
    result.decisions_stored = len(stored)
    result.targets_with_more_than_one_decision = sum(len(r) > 1 for r in decisions.values())
    result.decisions_missing = sorted(expected - stored)
    result.decisions_unexpected = sorted(stored - expected)
    outcomes: Counter[str] = Counter()
    seen: set[str] = set()
    for d in ok:
        if d.function == "act" and isinstance(d.result, dict) and d.event_id not in seen:
            seen.add(d.event_id)  # a redelivered copy returns the first run's result: count it once
            outcomes.update(d.result.get("counts", {}))
    result.act_outcomes = dict(outcomes)
    result.status_final = dict(Counter(max(r, key=lambda d: d.decided_at).status.value for r in decisions.values()))
    result.lost = _lost(decisions, capacities)

    mutating = calls.mutating()
    answered = [c for c in mutating if c.status is not None and c.status < 300]
    result.mutating_attempts = len(mutating)
    result.mutating_calls = len(answered)
    result.mutating_by_operation = dict(Counter(c.operation for c in answered))
    result.max_mutating_any_fake_1s = max_in_window(sorted(c.fake_at for c in mutating)) if mutating else 0
    per_function = Counter(c.function for c in answered)
    for name, n in sorted(per_function.items(), key=lambda kv: str(kv[0])):
        if name not in decisions:
            result.mutating_unattributed += n
        elif n > len(decisions[name]):
            ops = [c.operation for c in answered if c.function == name]
            result.duplicated.append(f"{name}: {n} mutating calls for {len(decisions[name])} decision(s): {ops}")
    lambda_calls = [c for c in calls.calls if c.service == "lambda"]
    result.lambda_calls = len(lambda_calls)
    result.aws_calls = len(calls.calls)


def report_lines(r: LoadResult) -> list[str]:
    o = r.options
    wall = r.cycle_wall_s + r.sweep_wall_s
    return [
        f"load_cycle: targets={r.targets} workers={o.workers} redeliver={o.redeliver:.2f} seed={o.seed}"
        + ("" if o.idempotency else " idempotency=off")
        + (" sweep-during-act" if o.sweep_during_act else ""),
        f"  events published (read back from the bus): {dict(sorted(r.events_published.items()))}",
        f"  events delivered: {sum(r.delivered_by_function.values())} invocations completed "
        f"{dict(sorted(r.delivered_by_function.items()))} in {r.deliveries} attempts",
        f"  redelivered copies: planned={dict(sorted(r.duplicates_planned.items()))} "
        f"delivered={r.duplicates_delivered} (concurrently {r.duplicates_delivered_concurrent}, "
        f"after {r.duplicates_delivered_after})",
        f"  attempts that raised={dict(sorted(r.failed_attempts.items()))} dead letters={r.dead_letters}",
        f"  decisions expected (plan results)={r.decisions_expected} announced (DecisionMade)={r.decisions_announced} "
        f"stored (DynamoDB)={r.decisions_stored} "
        f"missing={len(r.decisions_missing)} unexpected={len(r.decisions_unexpected)} "
        f"targets with >1 decision={r.targets_with_more_than_one_decision}",
        f"  decision status after the events={dict(sorted(r.status_after_events.items()))} "
        f"after the sweep={dict(sorted(r.status_final.items()))}",
        f"  act outcomes (each event once)={dict(sorted(r.act_outcomes.items()))}",
        f"  lost actions (AWS != decided): after the events={len(r.lost_after_events)} final={len(r.lost)}",
        f"  duplicated actions (>1 mutating call per decision)={len(r.duplicated)}",
        f"  mutating Lambda calls={r.mutating_calls} (attempts {r.mutating_attempts}) "
        f"{dict(sorted(r.mutating_by_operation.items()))} for functions without a decision={r.mutating_unattributed}",
        f"  Lambda calls={r.lambda_calls}; act's limiter granted {r.limiter_grants}, at most "
        f"{r.max_grants_any_fake_1s} in any 1 s of the fake clock; mutating Lambda calls recorded in any 1 s "
        f"of the fake clock={r.max_mutating_any_fake_1s}; fake clock elapsed={r.fake_elapsed_s:.1f} s",
        f"  AWS calls={r.aws_calls}",
        f"  wall: setup={r.setup_wall_s:.1f} s events={r.cycle_wall_s:.1f} s sweep={r.sweep_wall_s:.1f} s "
        f"cycle total={wall:.1f} s",
        f"  calls per wall second: AWS={r.aws_calls / wall if wall else 0:.0f} "
        f"mutating Lambda={r.mutating_calls / wall if wall else 0:.1f}; "
        f"mutating Lambda per fake second={r.mutating_calls / r.fake_elapsed_s if r.fake_elapsed_s else 0:.1f}",
        f"  logged warnings/errors={sum(r.warnings.values())} {dict(list(r.warnings.items())[:5])}",
        f"  RESULT: {'OK' if r.ok else 'FAIL'} lost={len(r.lost)} duplicated={len(r.duplicated)}",
        *[f"  lost: {x}" for x in r.lost[:20]],
        *[f"  duplicated: {x}" for x in r.duplicated[:20]],
    ]
