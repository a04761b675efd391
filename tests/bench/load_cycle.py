"""Load test: N targets through one full cycle on ThreadedMotoServer, events delivered by a pool of
worker threads calling the real handlers, a share of the events redelivered.

    uv run python tests/bench/load_cycle.py [--targets 1000] [--workers 8] [--redeliver 0.10] [--seed 7]

collect (its schedule) → plan (SamplesCollected) → act (DecisionMade), then act's schedule (the
sweep) once every allocation is READY on the fake clock. N Lambda functions with an alias `live`
(every 20th a reserved-concurrency target), tagged `forescale:managed=true`, with 30 minutes of
history each, so that plan decides a change for every target. The harness, and what it counts and
how, is `tests/integration/load_harness.py`; `tests/integration/test_load_server.py` runs it at CI scale.

Counted from the sources: decisions stored in DynamoDB, the capacity moto holds for each function,
and every mutating Lambda call (botocore hooks on every client the handlers create). Exit code 1 if
an action was lost (a decision stored but AWS holds another capacity, or a decision plan reported
that was never stored) or duplicated (more than one successful mutating call for one decision, or
more than one decision for one target and step); 2 if nothing was decided (nothing was tested).
Wall times are moto's server, not AWS's: 5-20 ms a request here, and moto's DynamoDB Query scans
the whole table (about 20 ms at 100 targets, 190 ms at 1,000), so the per-target cost grows with N.
The fake clock's elapsed time is what act's 15 calls/s limiter allowed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `tests` importable
    sys.path.insert(0, str(REPO))

from tests.integration.load_harness import LoadOptions, report_lines, run_load  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--redeliver", type=float, default=0.10, help="fraction of deliveries made twice")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-sweep", action="store_true", help="stop after the events (no act schedule after them)")
    ap.add_argument(
        "--sweep-during-act", action="store_true", help="also run act's schedule while DecisionMade is delivered"
    )
    a = ap.parse_args(argv)
    if a.targets < 1 or a.workers < 1 or not 0 <= a.redeliver <= 1:
        ap.error("--targets and --workers must be >= 1, --redeliver within 0..1")
    opts = LoadOptions(
        targets=a.targets,
        workers=a.workers,
        redeliver=a.redeliver,
        seed=a.seed,
        sweep=not a.no_sweep,
        sweep_during_act=a.sweep_during_act,
    )
    result = run_load(opts, log=lambda line: print(line, file=sys.stderr, flush=True))
    for line in report_lines(result):
        print(line)
    if result.decisions_stored == 0:
        return 2
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
