"""Benchmark: act applies provisioned-concurrency changes to N functions within Lambda's 15 calls/s.

    uv run python tests/bench/act_throughput.py [--functions 500] [--rate 15]

N functions, each with an alias `live`, in moto plus forescale's moto extension; one DecisionMade
batch of N provisioned-concurrency changes; then one sweep, a minute later, that sees them READY.
The limiter reads a fake clock (`ManualClock`) that only moves when act sleeps on it, and every
Lambda control-plane call act makes is stamped with that clock (a botocore `before-call` hook on
act's Lambda client), so the rate is measured, not assumed. Prints, per phase: Lambda calls, the most
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
from forescale.domain.ratelimit import ManualClock, max_in_window
from forescale.domain.targets import TargetKind
from forescale.local.environment import create_stand_in_function, function_zip
from forescale.local.moto_extension import install, reset, set_account_concurrency_limit, set_ready_delays
from forescale.local.router import load_handler
from forescale.runtime.models import DecisionMadeDetail, DecisionRecord, DecisionStatus, Mode, TargetConfig
from forescale.runtime.settings import ActSettings

REGION = "us-east-1"
START = 1_795_392_000.0


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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--functions", type=int, default=500)
    ap.add_argument("--rate", type=float, default=15.0, help="LAMBDA_CALLS_PER_SECOND")
    a = ap.parse_args()

    clock = ManualClock(START)
    install(clock=clock)
    set_ready_delays(provisioned_ready_after_s=60)
    set_account_concurrency_limit(20_000)  # room for every change: this measures the rate, not headroom
    try:
        with mock_aws():
            setup_lambda = boto3.client("lambda", region_name=REGION)
            db = boto3.client("dynamodb", region_name=REGION)
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
                capacity = 1 + i % 10
                record = DecisionRecord(
                    decision_id=DecisionRecord.id_for(name, decided_at),
                    target=name,
                    decided_at=decided_at,
                    capacity=capacity,
                    previous=0,
                    recommended=capacity,
                    policy="predictive",
                    reason="bench",
                    demand_rps=float(capacity * 10),
                    mode=Mode.ACTIVE,
                    status=DecisionStatus.PENDING,
                )
                store.put_decision(record)
                details.append(
                    DecisionMadeDetail(
                        decision_id=record.decision_id,
                        target=name,
                        decided_at=decided_at,
                        capacity=capacity,
                        previous=0,
                        mode=Mode.ACTIVE,
                        reason="bench",
                        urgency=float(capacity * 10),
                    )
                )
            print(f"act_throughput: set up {a.functions} functions, aliases, targets, decisions in "
                  f"{time.perf_counter() - t0:.1f} s wall")  # fmt: skip

            act_lambda = boto3.client("lambda", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
            stamps: list[tuple[float, str]] = []

            def stamp(model: Any, **_: Any) -> None:
                stamps.append((clock(), model.name))

            act_lambda.meta.events.register_first("before-call.lambda", stamp)
            clients = {
                "dynamodb": db,
                "events": events,
                "lambda": act_lambda,
                "sagemaker": boto3.client("sagemaker", region_name=REGION),
                "application-autoscaling": boto3.client("application-autoscaling", region_name=REGION),
            }
            settings = ActSettings(TABLE_NAME="forescale", EVENT_BUS_NAME="forescale", LAMBDA_CALLS_PER_SECOND=a.rate)
            load_handler("act")  # imports functions/act/handler.py as `forescale_function_act`
            act_handler = sys.modules["forescale_function_act"]
            service = act_handler.build_service(settings, clients, clock=clock, sleep=clock.sleep)

            fake0, wall0 = clock(), time.perf_counter()
            summary = service.apply_decisions(details, int(clock()))
            report("apply", stamps, clock() - fake0, time.perf_counter() - wall0, summary.as_dict())
            apply_stamps = list(stamps)

            stamps.clear()
            clock.advance(61)
            fake0, wall0 = clock(), time.perf_counter()
            summary = service.sweep(int(clock()))
            report("sweep", stamps, clock() - fake0, time.perf_counter() - wall0, summary.as_dict())

            both = [t for t, _ in apply_stamps + stamps]
            print(f"act_throughput[all]: lambda_calls={len(both)} max_calls_any_1s_window={max_in_window(both)}")
            ready = sum(
                setup_lambda.get_provisioned_concurrency_config(FunctionName=f"fn-{i:04d}", Qualifier="live")["Status"]
                == "READY"
                for i in range(a.functions)
            )
            applied = sum(
                store.get_decision(f"fn-{i:04d}", decided_at).status is DecisionStatus.APPLIED  # type: ignore[union-attr]
                for i in range(a.functions)
            )
            print(f"act_throughput: READY in Lambda={ready}/{a.functions} decisions APPLIED={applied}/{a.functions}")
    finally:
        reset()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
