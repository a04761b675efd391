"""Benchmark: wall time of `replay` on the largest shared trace (worldcup98, 87 days of minutes).

    uv run python tests/bench/replay_speed.py [--trace PATH] [--policy predictive]

Prints the wall time, the forecasting share and steps per second. The goal (≤ 5 minutes on a
2-core machine) is checked by reading this number, not by a timed unit test.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from forescale.replay.engine import ReplayConfig, replay
from forescale.replay.trace import load_trace

DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "worldcup98.csv"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", type=Path, default=DEFAULT)
    ap.add_argument("--policy", default="predictive")
    a = ap.parse_args()
    if not a.trace.exists():
        print(f"replay_speed: {a.trace} not found (it lives in ../shared/traces)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    trace = load_trace(a.trace)
    load_s = time.perf_counter() - t0
    result = replay(trace, ReplayConfig(policy=a.policy))
    total = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"replay_speed: {a.trace.name} policy={a.policy} steps={result.steps} targets={result.targets} "
        f"load_s={load_s:.1f} replay_s={result.wall_s:.1f} forecasting_s={result.forecast_s:.1f} "
        f"forecasts={result.forecasts} total_s={total:.1f} "
        f"steps_per_s={result.steps * result.targets / result.wall_s:.0f} "
        f"max_rss_mb={rss_mb:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
