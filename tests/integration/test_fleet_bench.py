"""`forescale bench fleet` at a small scale: 5 targets, 5 metered minutes, on in-process moto.

The meter's counts are checked against an independent counter (a botocore hook of the test's own on the
same session), and the report against the figures it is built from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.client
import pytest

from forescale.demo.fleet_bench import STAGES, FleetOptions, FleetRun, deployed_config, result_json, run_fleet
from forescale.demo.fleet_report import write_report

TARGETS = 5
MINUTES = 5


@pytest.fixture(scope="module")
def bench() -> Iterator[tuple[FleetRun, Counter[str]]]:
    # Given an independent counter of every AWS call any botocore client makes (moto starts a new default
    # session, so the counter wraps the client method every call goes through rather than a session hook)
    seen: Counter[str] = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counting(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        seen[f"{self.meta.service_model.service_name}.{operation_name}"] += 1
        return original(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counting  # type: ignore[method-assign]
    try:
        # When the bench runs 5 targets over 5 metered minutes (after 2 warm-up minutes)
        run = run_fleet(
            FleetOptions(targets=TARGETS, minutes=MINUTES, warmup_minutes=2, baseline=False, progress=False),
            log=lambda _m: None,
        )
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]
    yield run, seen


def test_every_call_is_counted_once_by_stage(bench: tuple[FleetRun, Counter[str]]) -> None:
    run, seen = bench
    metered = sum(t.total_calls for t in run.stages.values())
    refit = run.refit_totals.total_calls if run.refit_totals else 0
    # Then every call the independent counter saw is metered (by stage), in the refit cycle, or outside the window
    assert metered + refit + run.unrecorded_calls == sum(seen.values())
    by_op: Counter[str] = Counter()
    for t in run.stages.values():
        for (service, op), n in t.calls.items():
            by_op[f"{service}.{op}"] += n
    for op, n in by_op.items():
        assert n <= seen[op], op
    # and the functions made the calls the deployed pipeline makes
    # collect reads each target every POLL_EVERY_MINUTES-th minute (the stack's setting), at a phase by name
    poll = int(deployed_config(TARGETS).env["POLL_EVERY_MINUTES"])
    assert run.stages["collect"].calls[("cloudwatch", "GetMetricData")] >= MINUTES // poll
    assert run.stages["plan"].write_units > 0
    assert sum(t.changes for t in run.stages.values()) <= sum(
        t.control_plane["lambda"] + t.control_plane["sagemaker"] + t.control_plane["application-autoscaling"]
        for t in run.stages.values()
    )


def test_units_are_at_least_one_per_request(bench: tuple[FleetRun, Counter[str]]) -> None:
    run, _ = bench
    reads = ("GetItem", "Query", "Scan")
    writes = ("PutItem", "UpdateItem", "DeleteItem")
    for stage, t in run.stages.items():
        n_reads = sum(n for (s, op), n in t.calls.items() if s == "dynamodb" and op in reads)
        n_writes = sum(n for (s, op), n in t.calls.items() if s == "dynamodb" and op in writes)
        assert t.read_units >= 0.5 * n_reads, stage
        assert t.write_units >= n_writes, stage


def test_schedules_and_invocations_per_minute(bench: tuple[FleetRun, Counter[str]]) -> None:
    run, _ = bench
    result = result_json(run)
    stages = result["stages"]
    # collect and act's sweep run every minute; forecast every 5 minutes (the stack's schedules)
    assert stages["collect"]["invocations_per_min"] == 1.0
    assert stages["forecast"]["invocations_per_min"] == pytest.approx(1 / 5)
    assert stages["act"]["invocations_per_min"] >= 1.0
    # act takes its decisions and its schedule from its queue in batches (the stack's SQS event source):
    # no invocation per event, and one a minute here (each minute's records fit one batch)
    assert {r.trigger for r in run.invocations if r.stage == "act"} == {"batch"}
    assert stages["act"]["invocations_per_min"] == 1.0
    # quiet targets' re-reads and GetAccountSettings are counted apart: they do not grow with the fleet
    act = run.stages["act"]
    assert 0 <= act.lambda_bounded <= act.lambda_control_plane
    assert act.lambda_bounded >= act.calls[("lambda", "GetAccountSettings")]
    # a SamplesCollected for every minute some target was read (each target every POLL_EVERY_MINUTES-th)
    poll = int(deployed_config(TARGETS).env["POLL_EVERY_MINUTES"])
    assert stages["plan"]["invocations_per_min"] >= 1.0 / poll
    for s in ("collect", "plan", "act"):
        assert stages[s]["cpu_mean_s"] > 0
    assert result["deployed"]["memory_mb"]["plan"] > 0 and result["deployed"]["timeout_s"]["act"] > 0
    assert not result["failed_deliveries"] and result["dlq_messages"] == 0


def test_report_totals_are_the_sum_of_their_parts(bench: tuple[FleetRun, Counter[str]], tmp_path: Path) -> None:
    run, _ = bench
    result = result_json(run)
    tm = TARGETS * MINUTES
    # per-stage units per target-minute add up to the meter's totals
    for key, attr in (("rru_per_target_min", "read_units"), ("wru_per_target_min", "write_units")):
        from_figures = sum(result["stages"][s][key] for s in STAGES) * tm
        from_meter = sum(getattr(run.stages[s], attr) for s in STAGES if s in run.stages)
        assert from_figures == pytest.approx(from_meter)
    path = write_report(tmp_path, result)
    text = path.read_text()
    assert f"## {TARGETS:,} targets, {MINUTES} metered minutes" in text
    for s in STAGES:
        assert f"| {s} |" in text
    assert "**total**" in text and "Fits at 10,000 targets" in text
    assert (tmp_path / f"fleet-cost-{TARGETS}.json").is_file()
