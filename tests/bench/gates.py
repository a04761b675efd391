"""Benchmark: the issue's quality gates, scored by the independent yardstick (../shared/bench/score.py).

    uv run python tests/bench/gates.py [--traces worldcup98 servegen-large servegen-small]

For each gate trace and each predictive setting it runs `forescale replay`, then the shared scorer
on the decisions CSV, and prints the scorer's own overall line next to the gate.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
GATES = {
    "worldcup98": (0.35, 1.05),
    "servegen-large": (1.5, 1.30),
    "servegen-small": (0.7, 1.20),
}
SETTINGS = (
    ("default (q0.92)", []),
    ("q0.95", ["--param", "sizing_quantile=0.95"]),
    ("$1.3e-4 per miss", ["--param", "miss_cost_usd=0.00013"]),
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", nargs="+", default=list(GATES))
    a = ap.parse_args()
    if not (SHARED / "bench" / "score.py").exists():
        print("gates: ../shared/bench is not beside this checkout", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.traces:
            trace = SHARED / "traces" / f"{name}.csv"
            miss_gate, cap_gate = GATES.get(name, (None, None))
            for label, extra in SETTINGS:
                out = Path(tmp) / f"{name}.csv"
                subprocess.run(
                    ["forescale", "replay", "--trace", str(trace), "--out", str(out), "--no-score", *extra],
                    check=True,
                    capture_output=True,
                )
                scored = (
                    subprocess.run(
                        [
                            sys.executable,
                            str(SHARED / "bench" / "score.py"),
                            "--trace",
                            str(trace),
                            "--decisions",
                            str(out),
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                print(f"gates: {name:16} {label:16} {scored}  | gate: miss <= {miss_gate} at <= {cap_gate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
