"""Blast radius (issue 15): in a fleet of 50 targets, one target with each kind of poison (a stored config
that no longer validates, a negative stored sample, an unreadable planner snapshot, a forged event "from"
the future) must not stop the others: every other target is decided and applied in the same minute as
in a clean fleet, and each bad one is named in a log line and counted in an error metric."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from forescale.runtime.models import Mode, TargetConfig, TargetKind
from tests.integration.pipeline_harness import (
    HISTORY_MINUTES,
    REGION,
    STEP_AT,
    TABLE,
    Pipeline,
    at,
    emf_metrics,
    intercepted_moto,
    pipeline,
)

pytestmark = pytest.mark.slow

FLEET = {
    f"fn-{i:02d}": TargetConfig(
        name=f"fn-{i:02d}",
        kind=TargetKind.LAMBDA_RESERVED,
        function_name=f"fn-{i:02d}",
        duration_s=0.25,
        min_capacity=1,
        max_capacity=15,  # 50 functions' reserved concurrency stays inside moto's account limit of 1,000
        mode=Mode.ACTIVE,
    )
    for i in range(50)
}
BAD_CONFIG, BAD_SAMPLE, BAD_SNAPSHOT, FORGED_EVENT = "fn-00", "fn-01", "fn-02", "fn-03"


def fleet_rate(name: str, minute: int) -> float:
    base = 4.0 + int(name[3:]) % 5
    return base * 3 if minute >= STEP_AT else base


@pytest.fixture(scope="module")
def poisoned() -> Iterator[Pipeline]:
    with intercepted_moto() as (mock, interceptor), pipeline(mock, interceptor, FLEET, fleet_rate) as p:
        ddb = boto3.client("dynamodb", region_name=REGION)
        # 1. A config stored with inf written as JSON null (an older version wrote it; every read fails).
        raw = json.loads(FLEET[BAD_CONFIG].model_dump_json()) | {"max_capacity": None}
        ddb.update_item(
            TableName=TABLE,
            Key={"PK": {"S": f"TARGET#{BAD_CONFIG}"}, "SK": {"S": "CONFIG"}},
            UpdateExpression="SET config = :c",
            ExpressionAttributeValues={":c": {"S": json.dumps(raw)}},
        )
        # 2. A negative rate stored for the last minute of history.
        last = at(HISTORY_MINUTES - 1)
        hour = last - last % 3600
        ddb.update_item(
            TableName=TABLE,
            Key={"PK": {"S": f"TARGET#{BAD_SAMPLE}"}, "SK": {"S": f"SAMPLES#{hour:010d}"}},
            UpdateExpression="SET #r = :v",
            ExpressionAttributeNames={"#r": f"r{(last % 3600) // 60:02d}"},
            ExpressionAttributeValues={":v": {"N": "-5"}},
        )
        # 3. A planner snapshot that cannot be read.
        p.env.store.put_planner(BAD_SNAPSHOT, b"not a snapshot", last, 0)
        # 4. A forged DemandAboveForecast "from" year 2286, put on forescale's bus as any producer could.
        boto3.client("events", region_name=REGION).put_events(
            Entries=[
                {
                    "Source": "forescale",
                    "DetailType": "forescale.DemandAboveForecast",
                    "EventBusName": TABLE,
                    "Detail": json.dumps(
                        {"target": FORGED_EVENT, "timestamp": 9_999_999_000, "observed_rps": 1e9, "upper_rps": 1.0}
                    ),
                }
            ]
        )
        p.run_until(STEP_AT + 3)
        yield p


def test_every_other_target_is_decided_and_applied_in_the_scale_out_minute(poisoned: Pipeline) -> None:
    p = poisoned
    lam = boto3.client("lambda", region_name=REGION)
    for name in FLEET:
        if name == BAD_CONFIG:
            continue
        decided = [d for d in p.decisions(name) if d.decided_at == at(STEP_AT + 1)]
        assert decided, f"{name}: no decision in the minute after demand tripled"
        assert decided[0].capacity > decided[0].previous, name
        newest = max(p.decisions(name), key=lambda d: d.decided_at)
        in_aws = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        assert newest.status.value == "applied" and in_aws == newest.capacity, (name, newest.status, in_aws)


def test_the_forged_event_goes_to_the_dead_letter_queue_and_pins_nothing(poisoned: Pipeline) -> None:
    assert poisoned.dlq_count() >= 1
    assert all(d.capacity < 400 for d in poisoned.decisions(FORGED_EVENT))
    # react refused it with a message naming the field (the router records what Lambda would log)
    assert any("react" in f and "detail.timestamp" in f for f in poisoned.failed_invocations), (
        poisoned.failed_invocations
    )


@pytest.mark.parametrize(
    ("target", "metric"),
    [(BAD_CONFIG, "InvalidTargetConfigs"), (BAD_SAMPLE, "BadSamples"), (BAD_SNAPSHOT, "SnapshotErrors")],
)
def test_each_bad_target_is_named_in_a_log_line_and_counted_in_an_error_metric(
    poisoned: Pipeline, target: str, metric: str
) -> None:
    errors = [line for line in poisoned.captured.text().splitlines() if target in line]
    assert any(level in line for line in errors for level in ("ERROR", "WARNING")), target
    assert emf_metrics(poisoned.stdout.getvalue())[metric] > 0, metric


def test_no_function_fails_because_of_the_poison_except_react_refusing_the_forged_event(poisoned: Pipeline) -> None:
    # act's sweep walks every target on its rotation: one invalid config must not fail the whole sweep.
    others = [f for f in poisoned.failed_invocations if "detail.timestamp" not in f]
    assert others == []
