"""Given the same decisions, forescale's own evaluation agrees with the shared scorer within 1 %."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from forescale.replay.engine import ReplayConfig, replay, write_decisions
from forescale.replay.evaluate import evaluate
from forescale.replay.trace import load_trace, write_trace
from forescale.replay.workload import generate
from tests.conftest import TRACES


def _agree(ours: float, theirs: float, rel: float = 0.01) -> bool:
    return abs(ours - theirs) <= rel * max(abs(theirs), 1e-9) or abs(ours - theirs) < 1e-6


@pytest.mark.parametrize("policy", ["reactive", "target-tracking", "seasonal-naive"])
@pytest.mark.parametrize("trace_name", ["servegen-mm", "servegen-reason", "mooncake-2025", "azure-llm-2023"])
def test_given_decisions_on_a_small_shared_trace_when_scored_both_ways_then_they_agree(
    yardstick, tmp_path: Path, trace_name: str, policy: str
) -> None:
    score, tracelib = yardstick
    path = TRACES / f"{trace_name}.csv"
    trace = load_trace(path)
    rows = replay(trace, ReplayConfig(policy=policy)).rows
    out = tmp_path / "decisions.csv"
    write_decisions(rows, str(out))
    theirs = score.score(tracelib.load_trace(path), tracelib.load_decisions(out, tracelib.load_trace(path)), 0.01)
    ours = evaluate(trace, rows)
    t = theirs["overall"]["all"]
    o = ours.overall()
    assert _agree(o.miss_pct, t["miss_pct"]), (o.miss_pct, t["miss_pct"])
    assert _agree(o.capacity_cost_usd, t["capacity_cost_usd"])
    assert _agree(o.capacity_vs_oracle or 0, t["capacity_vs_oracle"] or 0)
    assert o.api_calls == t["api_calls"]


def test_given_the_builtin_workload_with_a_gap_when_scored_both_ways_then_they_agree(yardstick, tmp_path: Path) -> None:
    score, tracelib = yardstick
    trace = generate(days=5, step_s=60, seed=11)
    assert trace.gaps, "the generated workload should contain a source gap"
    path = write_trace(trace, tmp_path / "builtin.csv")
    # Integer requests are what the yardstick reads.
    with path.open() as f:
        assert all(float(r["requests"]).is_integer() for r in csv.DictReader(f))
    rows = replay(trace, ReplayConfig(policy="reactive", policy_params={"window": 2, "headroom": 1.1})).rows
    out = tmp_path / "d.csv"
    write_decisions(rows, str(out))
    tt = tracelib.load_trace(path)
    theirs = score.score(tt, tracelib.load_decisions(out, tt), 0.01)
    ours = evaluate(trace, rows)
    for name, r in ours.targets.items():
        t = theirs["targets"][name]
        assert _agree(r.miss_pct, t["miss_pct"]), (name, r.miss_pct, t["miss_pct"])
        assert _agree(r.capacity_cost_usd, t["capacity_cost_usd"]), name
        assert _agree(r.oracle_capacity_cost_usd, t["oracle_capacity_cost_usd"]), name


def test_given_a_gap_not_on_step_boundaries_when_scored_both_ways_then_they_agree(yardstick, tmp_path: Path) -> None:
    score, tracelib = yardstick
    base = generate(days=1, step_s=600, seed=4, targets=["api-steady", "gpu-endpoint"])
    # A collection outage from the middle of one step to the middle of the next: the sub-steps count.
    gap = (base.start + 3 * 600 + 300, base.start + 4 * 600 + 300)
    trace = type(base)(base.step_s, base.start, base.steps, base.targets, (gap,), base.meta)
    path = write_trace(trace, tmp_path / "gap.csv")
    rows = replay(trace, ReplayConfig(policy="reactive")).rows
    out = tmp_path / "d.csv"
    write_decisions(rows, str(out))
    tt = tracelib.load_trace(path)
    theirs = score.score(tt, tracelib.load_decisions(out, tt), 0.01)["overall"]["all"]
    ours = evaluate(load_trace(path), rows).overall()
    assert _agree(ours.miss_pct, theirs["miss_pct"]) and _agree(ours.capacity_cost_usd, theirs["capacity_cost_usd"])
