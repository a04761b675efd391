"""Cold import time of each Lambda handler, as `python -X importtime` sees it (a benchmark, not a test).

    uv run python tests/bench/handler_import.py [--runs 7]

For each handler: a fresh interpreter imports functions/<name>/handler.py with -X importtime; the
figure is the sum of the top-level imports' cumulative microseconds, the median over the runs.
The budget for the light handlers (collect, plan, act, react) is 300 ms on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HANDLERS = ["collect", "plan", "act", "react", "rightsize", "forecast"]
LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")


def import_ms(function: str) -> tuple[float, list[tuple[str, float]]]:
    path = REPO / "functions" / function / "handler.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('handler', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['handler'] = m; spec.loader.exec_module(m)\n"
    )
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    ).stderr
    tops = [(m.group(2), int(m.group(1)) / 1000) for line in err.splitlines() if (m := LINE.match(line))]
    return sum(ms for _, ms in tops), sorted(tops, key=lambda t: -t[1])[:4]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    print(f"{'handler':<10} {'median ms':>9} {'min ms':>7}  largest top-level imports (last run)")
    for fn in HANDLERS:
        if not (REPO / "functions" / fn / "handler.py").exists():
            print(f"{fn:<10} missing")
            continue
        runs = [import_ms(fn) for _ in range(a.runs)]
        totals = [t for t, _ in runs]
        tops = ", ".join(f"{name} {ms:.0f}" for name, ms in runs[-1][1])
        print(f"{fn:<10} {statistics.median(totals):>9.0f} {min(totals):>7.0f}  {tops}")


if __name__ == "__main__":
    main()
