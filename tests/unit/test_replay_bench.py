"""`forescale bench replay`'s per-target columns: targets within their SLO, the worst ones, changes per target-day."""

from __future__ import annotations

from pathlib import Path

from forescale.replay.bench import _one
from forescale.replay.engine import ReplayConfig, replay
from forescale.replay.evaluate import evaluate
from forescale.replay.trace import write_trace
from forescale.replay.workload import generate


def test_given_a_replayed_trace_when_benched_then_the_slo_columns_match_a_per_target_evaluation(tmp_path: Path) -> None:
    trace = generate(days=2, step_s=600, seed=3)
    path = write_trace(trace, tmp_path / "w.csv")
    params = {"window": 1, "headroom": 1.0}  # thin headroom: some targets go over their SLO

    row = _one((str(path), "reactive 1x1.0", "reactive", params))

    score = evaluate(trace, replay(trace, ReplayConfig(policy="reactive", policy_params=params)).rows)
    over = {
        n for n, r in score.targets.items() if r.requests and r.miss_pct > 100 * trace.targets[n].to_target().slo_miss
    }
    assert row["targets_scored"] == sum(1 for r in score.targets.values() if r.requests)
    assert row["targets_within_slo"] == row["targets_scored"] - len(over)
    assert {w["target"] for w in row["worst_targets"]} <= over
    assert len(row["worst_targets"]) == min(3, len(over))
    assert row["changes_per_target_day"] == score.overall().api_calls / (len(trace.targets) * 2)
