"""Benchmark: act applies provisioned-concurrency changes to N functions within Lambda's 15 calls/s.

    uv run python tests/bench/act_throughput.py [--functions 1000] [--rate 15] [--timeout-s 55]

N functions, each with an alias `live`, in moto plus forescale's moto extension. Round 1: one
DecisionMade batch of N simultaneous provisioned-concurrency changes to targets forescale has never
read, then act's sweep once a minute until every decision is final; each invocation has `--timeout-s`
of the fake clock and stops 10 s before it, leaving the rest in the open-work index. Round 2: the same
targets change again five minutes later (their capacity confirmed by AWS: the steady state). Prints
per invocation, then per round: control-plane (Lambda) calls per change, the fake time until every
Put was accepted and until every decision was final, and the most calls in any 1 s.
The limiter reads a fake clock (`ManualClock`) that moves when act sleeps on it and, with
`--call-latency-ms` > 0, also by the time act's own work would take in Lambda: each AWS call act makes
(DynamoDB, EventBridge, Lambda, SageMaker, Application Auto Scaling) moves it on by that latency (an
assumption: moto answers in-process) plus act's CPU since its previous call (`process_time`, moto's
own CPU excluded) × 1,769 MB ÷ `--memory-mb` (Lambda's vCPU share). The limiter is a token bucket on
that clock, so its waits overlap act's other work as they would in Lambda. Every Lambda control-plane
call is stamped with the clock (a botocore `before-call` hook on act's Lambda client), so the rate is
measured, not assumed. Prints, per phase: Lambda calls, the most
in any 1-s window (sliding, and per whole fake second), fake elapsed seconds and wall seconds.
Numbers, not a test.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from typing import Any

import boto3
from botocore.config import Config
from moto import mock_aws

from forescale.adapters.state import DynamoStateStore, table_definition
from forescale.demo.fleet_bench import LAMBDA_VCPU_MB, deployed_config
from forescale.domain.ratelimit import ManualClock, max_in_window
from forescale.domain.targets import TargetKind
from forescale.local.environment import create_stand_in_function, function_zip
from forescale.local.moto_extension import install, reset, set_account_concurrency_limit, set_ready_delays
from forescale.local.router import load_handler
from forescale.runtime.models import DecisionMadeDetail, DecisionRecord, DecisionStatus, Mode, TargetConfig
from forescale.runtime.settings import ActSettings

REGION = "us-east-1"
START = 1_795_392_000.0


def act_memory_mb() -> int:
    """The deployed stack's memory for act (cdk.json's context, as the fleet bench reads it)."""
    return deployed_config(1).memory_mb["act"]


class WorkClock:
    """Moves the fake clock by what act's work would take in Lambda (see the module docstring)."""

    def __init__(self, clock: ManualClock, latency_s: float, memory_mb: int) -> None:
        self.clock = clock
        self.latency_s = latency_s
        self.cpu_scale = max(1.0, LAMBDA_VCPU_MB / memory_mb)
        self.on = False
        self.work_s = 0.0
        self.waited_s = 0.0
        self.calls: Counter[str] = Counter()  # every AWS call act made, by service and operation
        self._mark = time.process_time()

    def start(self) -> None:
        self.on, self._mark = True, time.process_time()

    def stop(self) -> None:
        self._spend()
        self.on = False

    def _spend(self, extra_s: float = 0.0) -> None:
        now = time.process_time()
        spent = (now - self._mark) * self.cpu_scale + extra_s if self.on else 0.0
        self._mark = now
        if spent > 0:
            self.work_s += spent
            self.clock.advance(spent)

    def before_call(self, model: Any, **_: Any) -> None:
        if self.on:
            self.calls[f"{model.service_model.endpoint_prefix}.{model.name}"] += 1
        self._spend(self.latency_s)

    def after_call(self, **_: Any) -> None:
        self._mark = time.process_time()  # what moto spent answering is not act's

    def sleep(self, seconds: float) -> None:
        self._spend()
        self.waited_s += seconds
        self.clock.sleep(seconds)
        self._mark = time.process_time()

    def watch(self, client: Any) -> Any:
        client.meta.events.register("before-call", self.before_call)
        client.meta.events.register("after-call", self.after_call)
        return client


def report(phase: str, stamps: list[tuple[float, str]], fake_s: float, wall_s: float, counts: dict[str, int]) -> None:
    times = [t for t, _ in stamps]
    per_second = Counter(math.floor(t) for t in times)
    ops = Counter(op for _, op in stamps)
    span_s = times[-1] - times[0] if len(times) > 1 else 0.0
    print(
        f"act_throughput[{phase}]: lambda_calls={len(times)} "
        f"max_calls_any_1s_window={max_in_window(times) if times else 0} "
        f"max_calls_per_whole_second={max(per_second.values()) if per_second else 0} "
        f"fake_elapsed_s={fake_s:.2f} wall_s={wall_s:.2f} "
        f"mean_rate_per_s={(len(times) - 1) / span_s if span_s else 0:.2f} (first to last call)"
    )
    print(f"  lambda ops: {dict(sorted(ops.items()))}")
    print(f"  outcomes:   {counts}")


def pending_decision(store: Any, target: str, decided_at: int, capacity: int, previous: int) -> DecisionMadeDetail:
    """Store a PENDING decision (demand 10 req/s per unit) and return the event plan would publish for it."""
    record = DecisionRecord(
        decision_id=DecisionRecord.id_for(target, decided_at),
        target=target,
        decided_at=decided_at,
        capacity=capacity,
        previous=previous,
        recommended=capacity,
        policy="predictive",
        reason="bench",
        demand_rps=float(capacity * 10),
        mode=Mode.ACTIVE,
        status=DecisionStatus.PENDING,
    )
    store.put_decision(record)
    return DecisionMadeDetail(
        decision_id=record.decision_id,
        target=target,
        decided_at=decided_at,
        capacity=capacity,
        previous=previous,
        mode=Mode.ACTIVE,
        reason="bench",
        urgency=record.demand_rps * (capacity - previous) / capacity,
    )


def run_round(
    name: str,
    service: Any,
    details: list[DecisionMadeDetail],
    stamps: list[tuple[float, str]],
    clock: ManualClock,
    timeout_s: float,
    changes: int,
    work: WorkClock,
) -> float:
    """One DecisionMade batch of `changes` changes, then a sweep a minute until every decision is final;
    each invocation has `timeout_s` of the fake clock. Prints per invocation and the totals; returns the
    Lambda calls per change."""
    stamps.clear()
    start = clock()
    work_at_start = (work.work_s, work.waited_s, Counter(work.calls))
    puts_done_at: float | None = None
    invocations = 0
    while True:
        began = clock()
        wall0 = time.perf_counter()

        def left(began: float = began) -> float:
            return timeout_s - (clock() - began)  # the invocation's remaining time (fake seconds)

        before = len(stamps)
        work_before, waited_before = work.work_s, work.waited_s
        work.start()
        if invocations == 0:
            summary = service.apply_decisions(details, int(clock()), time_left_s=left)
        else:
            summary = service.sweep(int(clock()), time_left_s=left)
        work.stop()
        invocations += 1
        print(
            f"  work_s={work.work_s - work_before:.2f} (calls' latency and CPU at the vCPU share) "
            f"limiter_and_backoff_wait_s={work.waited_s - waited_before:.2f}"
        )
        mine = stamps[before:]
        report(f"{name} #{invocations}", mine, clock() - began, time.perf_counter() - wall0, summary.as_dict())
        puts = sum(op.startswith("Put") for _, op in stamps)
        if puts_done_at is None and puts >= changes:
            puts_done_at = max(t for t, op in stamps if op.startswith("Put")) - start
        open_work = service.store.list_open_work()
        if not open_work or invocations > 60:
            break
        clock.advance(max(0.0, began + 60 - clock()))  # the next scheduled sweep
    calls = len(stamps)
    work_s, waited_s = work.work_s - work_at_start[0], work.waited_s - work_at_start[1]
    round_calls = work.calls - work_at_start[2]
    print(
        f"act_throughput[{name}]: act work {work_s:.1f} s, waits {waited_s:.1f} s over the round; "
        f"AWS calls per change {round_calls.total() / changes:.2f}: "
        + ", ".join(f"{op} {n / changes:.2f}" for op, n in sorted(round_calls.items()))
    )
    order = [op for _, op in stamps if op.startswith("Put")]
    print(
        f"act_throughput[{name}]: changes={changes} invocations={invocations} lambda_calls={calls} "
        f"calls_per_change={calls / changes:.2f} max_calls_any_1s_window={max_in_window([t for t, _ in stamps])} "
        f"all_puts_accepted_after_s={puts_done_at if puts_done_at is not None else float('nan'):.1f} "
        f"all_final_after_s={clock() - start:.1f} (fake clock) puts={len(order)}"
    )
    return calls / changes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--functions", type=int, default=500)
    ap.add_argument("--rate", type=float, default=15.0, help="LAMBDA_CALLS_PER_SECOND")
    ap.add_argument("--timeout-s", type=float, default=55.0, help="each act invocation's time (fake clock)")
    ap.add_argument("--call-latency-ms", type=float, default=10.0, help="assumed latency of each AWS call act makes")
    ap.add_argument("--memory-mb", type=int, default=act_memory_mb(), help="act's memory (its vCPU share)")
    a = ap.parse_args()
    print(
        f"act_throughput: call latency {a.call_latency_ms} ms (assumed), act memory {a.memory_mb} MB, rate {a.rate}/s"
    )

    clock = ManualClock(START)
    install(clock=clock)
    set_ready_delays(provisioned_ready_after_s=60)
    set_account_concurrency_limit(20_000)  # room for every change: this measures the rate, not headroom
    try:
        with mock_aws():
            setup_lambda = boto3.client("lambda", region_name=REGION)
            db = boto3.client("dynamodb", region_name=REGION)
            work = WorkClock(clock, a.call_latency_ms / 1000, a.memory_mb)
            db.create_table(**table_definition("forescale"))
            events = boto3.client("events", region_name=REGION)
            events.create_event_bus(Name="forescale")
            role = boto3.client("iam", region_name=REGION).create_role(
                RoleName="fn-role", AssumeRolePolicyDocument="{}"
            )["Role"]["Arn"]
            store = DynamoStateStore(db, "forescale")
            code = function_zip()
            t0 = time.perf_counter()
            details: list[DecisionMadeDetail] = []
            decided_at = int(START)
            for i in range(a.functions):
                name = f"fn-{i:04d}"
                create_stand_in_function(setup_lambda, name, role, code=code)
                store.put_target(
                    TargetConfig(
                        name=name,
                        kind=TargetKind.LAMBDA_PROVISIONED,
                        function_name=name,
                        qualifier="live",
                        mode=Mode.ACTIVE,
                    )
                )
                details.append(pending_decision(store, name, decided_at, 1 + i % 10, 0))
            print(f"act_throughput: set up {a.functions} functions, aliases, targets, decisions in "
                  f"{time.perf_counter() - t0:.1f} s wall")  # fmt: skip

            act_lambda = boto3.client("lambda", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
            stamps: list[tuple[float, str]] = []

            def stamp(model: Any, **_: Any) -> None:
                stamps.append((clock(), model.name))

            act_lambda.meta.events.register_first("before-call.lambda", stamp)
            clients = {
                "dynamodb": work.watch(boto3.client("dynamodb", region_name=REGION)),
                "events": work.watch(boto3.client("events", region_name=REGION)),
                "lambda": work.watch(act_lambda),
                "sagemaker": work.watch(boto3.client("sagemaker", region_name=REGION)),
                "application-autoscaling": work.watch(boto3.client("application-autoscaling", region_name=REGION)),
            }
            settings = ActSettings(TABLE_NAME="forescale", EVENT_BUS_NAME="forescale", LAMBDA_CALLS_PER_SECOND=a.rate)
            load_handler("act")  # imports functions/act/handler.py as `forescale_function_act`
            act_handler = sys.modules["forescale_function_act"]
            service = act_handler.build_service(settings, clients, clock=clock, sleep=work.sleep)

            round1 = run_round("first changes", service, details, stamps, clock, a.timeout_s, a.functions, work)
            # The same targets change again a few minutes later: forescale set and AWS confirmed their
            # capacity, so a fresh claim trusts it (the steady state of a fleet).
            clock.advance(300)
            decided_2 = int(clock())
            details_2 = []
            for i, d in enumerate(details):
                details_2.append(pending_decision(store, d.target, decided_2, d.capacity + 1 + i % 3, d.capacity))
            round2 = run_round(
                "changes to confirmed targets", service, details_2, stamps, clock, a.timeout_s, a.functions, work
            )
            ready = sum(
                setup_lambda.get_provisioned_concurrency_config(FunctionName=f"fn-{i:04d}", Qualifier="live")["Status"]
                == "READY"
                for i in range(a.functions)
            )
            applied = sum(
                store.get_decision(d.target, d.decided_at).status is DecisionStatus.APPLIED  # type: ignore[union-attr]
                for d in details_2
            )
            print(
                f"act_throughput: READY in Lambda={ready}/{a.functions} "
                f"second-round decisions APPLIED={applied}/{a.functions}"
            )
            print(
                f"act_throughput: control-plane (Lambda) calls per change: first round {round1:.2f}, "
                f"confirmed targets {round2:.2f}, both {(round1 + round2) / 2:.2f}"
            )
    finally:
        reset()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
