"""The whole deployed pipeline on moto (the local demo's engine), end to end.

Given targets registered in an account on ThreadedMotoServer, when collect → forecast → plan → act
(and react) run minute by minute with real-shaped events, then:
- the capacities in moto equal the last decisions, and every decision is explained and audited;
- the decisions are exactly those `forescale replay` makes on the same workload and seed (one code
  path, so the demo cannot drift into a separate toy);
- the report is written and forescale misses fewer requests than target tracking.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from forescale.demo.runner import FUNCTION_LOGS, DemoOptions, DemoRun, log_levels, run_demo, run_pipeline
from forescale.replay.engine import ReplayConfig, replay
from forescale.runtime.models import DecisionStatus

pytestmark = pytest.mark.slow

OPTIONS = DemoOptions(days=0.06, history_days=1.02, seed=5, progress=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return run_pipeline(OPTIONS, log=lambda _: None)


def test_given_the_pipeline_on_moto_then_moto_holds_the_last_decided_capacities(demo: DemoRun) -> None:
    assert demo.rows, "the demo made no decisions"
    for name in demo.configs:
        mine = [r for r in demo.rows if r.target == name]
        if mine:
            assert demo.in_aws[name][0] == mine[-1].capacity, name


def test_given_the_pipeline_then_every_decision_is_audited_with_a_reason_and_an_outcome(demo: DemoRun) -> None:
    assert len(demo.records) == len(demo.rows)
    settled = {DecisionStatus.APPLIED, DecisionStatus.SUPERSEDED, DecisionStatus.NO_CHANGE}
    for record in demo.records:
        assert record.reason and record.policy == "predictive"
        assert record.status in settled, (record.decision_id, record.status, record.outcome)
    assert any(r.status is DecisionStatus.APPLIED and r.outcome for r in demo.records)
    assert demo.dlq_messages and not any(demo.dlq_messages.values())


def test_given_the_same_workload_then_replay_makes_exactly_the_demos_decisions(demo: DemoRun) -> None:
    replayed = replay(demo.trace, ReplayConfig(start_at=demo.start_at, warmup_s=86_400, react=True))
    want = [
        (r.decided_at, r.target, r.capacity, r.instance_type) for r in replayed.rows if r.decided_at >= demo.start_at
    ]
    got = [(r.decided_at, r.target, r.capacity, r.instance_type) for r in demo.rows]
    assert len(want) > 5
    assert sorted(got) == sorted(want)


def test_given_a_short_demo_then_the_report_is_complete_and_beats_target_tracking(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    with open(os.devnull, "w") as quiet:
        assert run_demo(DemoOptions(days=0.04, history_days=1.02, seed=8, out=out, progress=False), out=quiet) == 0
    # The functions' JSON logs go to the report folder, as CloudWatch Logs would keep them, not the terminal.
    printed = capfd.readouterr()
    assert '"function_name"' not in printed.out + printed.err
    levels = log_levels(out / FUNCTION_LOGS)
    assert levels.get("INFO", 0) > 50 and set(levels) <= {"INFO", "WARNING", "ERROR"}
    assert (out / "report.html").stat().st_size > 10_000
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 4
    with open(out / "decisions.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) >= {"decided_at", "target", "capacity"}
    summary = json.loads((out / "summary.json").read_text())
    overall = summary["overall"] if "overall" in summary else summary["summary"]["overall"]
    assert overall["forescale"]["missed"] < overall["baseline"]["missed"]
