"""`forescale bench replay`: every policy on every trace, scored by forescale's evaluation.

The table it writes (docs/benchmarks.md) is reproducible with one command. The evaluation follows
the shared yardstick's model; a test checks that the two agree within 1 %.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# (label, policy, params): the policies compared, with a second aggressiveness for predictive.
RUNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("predictive", "predictive", {}),
    ("predictive q0.95", "predictive", {"sizing_quantile": 0.95}),
    ("predictive $1.3e-4/miss", "predictive", {"miss_cost_usd": 0.00013}),
    ("predictive, no SLO controller", "predictive", {"slo_gain": 0.0}),
    ("reactive 1x1.1", "reactive", {"window": 1, "headroom": 1.1}),
    ("reactive 3x1.2", "reactive", {"window": 3, "headroom": 1.2}),
    ("target-tracking", "target-tracking", {}),
    ("seasonal-naive", "seasonal-naive", {}),
    ("static", "static", {}),
)


def _one(job: tuple[str, str, str, dict[str, Any]]) -> dict[str, Any]:
    from forescale.replay.engine import ReplayConfig, replay
    from forescale.replay.evaluate import evaluate
    from forescale.replay.trace import load_trace

    path, label, policy, params = job
    trace = load_trace(path)
    t0 = time.perf_counter()
    result = replay(trace, ReplayConfig(policy=policy, policy_params=params))
    wall = time.perf_counter() - t0
    score = evaluate(trace, result.rows)
    o = score.overall()
    slos = {name: tt.to_target().slo_miss for name, tt in trace.targets.items()}
    # Per target: its own SLO is the promise (Lambda spill, SageMaker violation), so a miss is judged against it.
    per_target = sorted(
        ((name, r.miss_pct, 100 * slos[name]) for name, r in score.targets.items() if r.requests > 0),
        key=lambda x: x[1] / x[2],
        reverse=True,
    )
    within = sum(1 for _, miss, slo in per_target if miss <= slo)
    days = trace.steps * trace.step_s / 86_400
    return {
        "trace": Path(path).stem,
        "label": label,
        "policy": policy,
        "params": params,
        "miss_pct": o.miss_pct,
        "capacity_vs_oracle": o.capacity_vs_oracle,
        "capacity_changes": o.api_calls,
        "changes_per_target_day": o.api_calls / (len(trace.targets) * days) if days else 0.0,
        "targets_within_slo": within,
        "targets_scored": len(per_target),
        "worst_targets": [{"target": n, "miss_pct": m, "slo_pct": s} for n, m, s in per_target[:3] if m > s],
        "wall_s": wall,
        "forecasts": result.forecasts,
        "models": sorted(set(result.models.values())),
    }


def run_bench(traces_dir: Path, only: Sequence[str] | None, out: Path | None, raw: Path | None) -> int:
    traces_dir = traces_dir.resolve()
    paths = sorted(traces_dir.glob("*.csv"))
    if only:
        wanted = set(only)
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise ValueError(f"no trace named {', '.join(sorted(missing))} in {traces_dir}")
    if not paths:
        raise ValueError(f"no canonical traces (*.csv) in {traces_dir}")
    jobs = [(str(p), label, policy, params) for p in paths for label, policy, params in RUNS]
    # Longest first, so the two workers finish together.
    jobs.sort(key=lambda j: -os.path.getsize(j[0]))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_one, jobs))
    wall = time.perf_counter() - t0
    results.sort(key=lambda r: (r["trace"], [x[0] for x in RUNS].index(r["label"])))
    lines = [
        "| trace | policy | miss % | capacity × oracle | capacity changes | changes / target-day "
        "| targets within SLO | worst targets (miss %) | replay wall s | models |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cvo = "-" if r["capacity_vs_oracle"] is None else f"{r['capacity_vs_oracle']:.3f}"
        worst = ", ".join(f"{w['target']} {w['miss_pct']:.2f}" for w in r["worst_targets"]) or "-"
        lines.append(
            f"| {r['trace']} | {r['label']} | {r['miss_pct']:.3f} | {cvo} | {r['capacity_changes']} "
            f"| {r['changes_per_target_day']:.1f} | {r['targets_within_slo']}/{r['targets_scored']} | {worst} "
            f"| {r['wall_s']:.1f} | {', '.join(r['models'])} |"
        )
    table = "\n".join(lines)
    print(table)
    print(f"bench: {len(jobs)} replays in {wall:.0f} s")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        header = (
            "# Benchmarks: policies × traces\n\n"
            "Produced by `uv run forescale bench replay --out docs/benchmarks.md` "
            f"(traces from `../shared/{traces_dir.name}/`; {len(jobs)} replays, {wall:.0f} s wall on 2 cores).\n"
            "miss % is spilled (Lambda) or violating (SageMaker) requests; capacity × oracle is paid "
            "capacity over the perfect-foresight oracle's (yardstick model, eps 0.01). "
            "A target is within its SLO when its own miss % is at most its `slo_miss` (default 1 %); "
            "the worst targets are those furthest over it, by miss ÷ SLO.\n\n"
        )
        out.write_text(header + table + "\n")
    if raw:
        raw.write_text(json.dumps(results, indent=1) + "\n")
    return 0
