"""Benchmark: how good can *any* policy be on a trace, given the actuation lead times?

    uv run python tests/bench/foresight_limit.py --trace ../shared/traces/worldcup98.csv

A clairvoyant (non-causal) policy decides at the start of each step from the true demand of the
steps its decision will serve (this step .. this step + lead), times a headroom, sized at the SLO.
Its miss/capacity points bound what a causal forecaster can reach on this trace under the
yardstick's model; a gate below them cannot be met honestly. It is a yardstick, not a policy.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from forescale.domain.policies import size_for_rate
from forescale.replay.engine import DecisionRow
from forescale.replay.evaluate import evaluate
from forescale.replay.trace import load_trace


def clairvoyant(trace, headroom: float, extra_steps: int | None = None) -> list[DecisionRow]:
    rows: list[DecisionRow] = []
    for name, tt in trace.targets.items():
        target = tt.to_target()
        horizon = math.ceil(target.lead_times.up_s / trace.step_s) if extra_steps is None else extra_steps
        last = None
        req = tt.requests
        for i in range(trace.steps):
            future = max(req[i : i + horizon + 1]) / trace.step_s
            cap = size_for_rate(target, future * headroom)
            if cap != last:
                rows.append(DecisionRow(trace.time(i), name, cap))
                last = cap
    rows.sort(key=lambda r: (r.decided_at, r.target))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", type=Path, required=True)
    ap.add_argument("--headroom", type=float, nargs="+", default=[1.0, 1.05, 1.1])
    a = ap.parse_args()
    trace = load_trace(a.trace)
    for h in a.headroom:
        o = evaluate(trace, clairvoyant(trace, h)).overall()
        print(
            f"foresight_limit: {a.trace.stem} headroom={h:g} miss_pct={o.miss_pct:.3f} "
            f"capacity_vs_oracle={o.capacity_vs_oracle:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
