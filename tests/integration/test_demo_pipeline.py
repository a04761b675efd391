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
import io
import json
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
    terminal = io.StringIO()
    opts = DemoOptions(days=0.04, history_days=1.02, seed=8, out=out, start_time="09:20")
    assert run_demo(opts, out=terminal) == 0
    # The functions' JSON logs go to the report folder, as CloudWatch Logs would keep them, not the terminal.
    printed = capfd.readouterr()
    assert '"function_name"' not in printed.out + printed.err
    levels = log_levels(out / FUNCTION_LOGS)
    assert levels.get("INFO", 0) > 50 and set(levels) <= {"INFO", "WARNING", "ERROR"}
    assert (out / "report.html").stat().st_size > 10_000
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 4
    summary = json.loads((out / "summary.json").read_text())
    overall = summary["overall"]
    assert overall["forescale"]["missed"] < overall["baseline"]["missed"]

    # One set of numbers over one window: the progress lines (not a terminal here: plain lines), the
    # printed summary, summary.json, report.html and decisions.csv count the same decisions and changes.
    start, end = summary["window"]["start"], summary["window"]["end"]
    with open(out / "decisions.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) >= {"decided_at", "target", "capacity"}
    in_window = [r for r in rows if start <= int(r["decided_at"]) < end]
    decisions, changes = summary["facts"]["decisions"], overall["forescale"]["changes"]
    assert decisions == len(in_window) > 0
    assert changes == sum(t["forescale"]["changes"] for t in summary["targets"].values()) > 0
    last_progress = printed.err.strip().splitlines()[-1]
    assert f" · {decisions} decisions · {changes} capacity changes · " in last_progress
    assert f"/{round(0.04 * 1440)} min" in last_progress
    said = terminal.getvalue()
    tracking = overall["baseline"]["changes"]
    assert f"in it: {decisions:,} decisions, {changes:,} capacity changes (target tracking {tracking:,})" in said
    assert f"({decisions} decisions, {changes} capacity changes, " in said
    page = (out / "report.html").read_text()
    assert f'<div class="v">{changes:,}</div>' in page and f"{decisions:,} decisions recorded" in page
    for name, target in summary["targets"].items():
        assert target["forescale"]["changes"] <= sum(r["target"] == name for r in in_window), name
        assert target["forescale"]["slo_budget_spent"] is not None  # issue 14: the budget per target
