"""Where the local demo's wall time goes: `uv run python tests/bench/demo_speed.py [--days 0.05]`.

Runs `forescale demo`'s pipeline (moto's ThreadedMotoServer on loopback, the real handlers, the local
router) for a short window and splits each simulated minute's wall time into:

- moto: the time moto's responses spend serving the call (timed around moto's `call_action`, in the
  server thread);
- transport: the rest of each boto3 call as the caller sees it (botocore serialising and parsing,
  HTTP over loopback; moto's werkzeug server opens a connection and a thread per request);
- forescale: everything else (the handlers' own work, Powertools, statsforecast refits, the router,
  writing the minute's metrics).

It prints the calls per simulated minute by operation and a projection for 2 simulated days. The
last line is the floor: what a simulated minute would cost if every AWS call were free.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path
from typing import Any

import botocore.client
import moto.core.responses

from forescale.demo import runner

TWO_DAYS_MIN = 2 * 1440


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=0.05, help="simulated days to run (default 0.05 = 72 minutes)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    served: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    called: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    setup_done = [0.0]
    serve, call = moto.core.responses.BaseResponse.call_action, botocore.client.BaseClient._make_api_call

    def timed_serve(self: Any) -> Any:
        t = time.perf_counter()
        try:
            return serve(self)
        finally:
            if setup_done[0]:
                s = served[f"{type(self).__name__}.{self._get_action()}"]
                s[0] += 1
                s[1] += time.perf_counter() - t

    def timed_call(self: Any, operation: str, params: Any) -> Any:
        t = time.perf_counter()
        try:
            return call(self, operation, params)
        finally:
            if setup_done[0]:
                c = called[f"{self.meta.service_model.service_name}.{operation}"]
                c[0] += 1
                c[1] += time.perf_counter() - t

    def log(message: str) -> None:
        if message.startswith("provisioned"):
            setup_done[0] = time.perf_counter()

    moto.core.responses.BaseResponse.call_action = timed_serve  # type: ignore[method-assign]
    botocore.client.BaseClient._make_api_call = timed_call  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run = runner.run_pipeline(
            runner.DemoOptions(days=args.days, seed=args.seed, out=Path(out), progress=False), log
        )
        t_end = time.perf_counter()
    minutes = round(args.days * 1440)
    setup_s = setup_done[0] - t0
    loop_s = t_end - setup_done[0]
    moto_s = sum(v[1] for v in served.values())
    client_s = sum(v[1] for v in called.values())
    calls = sum(int(v[0]) for v in called.values())
    per = 1000 / minutes
    print(f"simulated minutes {minutes}, targets {len(run.configs)}, decisions {len(run.rows)}")
    print(f"setup (provision, history import) {setup_s:.1f} s; the minutes (and the settle) {loop_s:.1f} s")
    print(f"per simulated minute: {loop_s * per:.0f} ms wall, {calls / minutes:.1f} AWS calls")
    print(f"  moto serving the calls   {moto_s * per:6.0f} ms")
    print(f"  transport (botocore, HTTP) {(client_s - moto_s) * per:4.0f} ms")
    print(f"  forescale and the rest   {(loop_s - client_s) * per:6.0f} ms")
    print("per phase (s): " + ", ".join(f"{k} {v:.1f}" for k, v in run.wall_by_phase.items()))
    print("calls per simulated minute, and ms each (caller's view / moto's):")
    for op, (n, s) in sorted(called.items(), key=lambda kv: -kv[1][1])[:14]:
        action = op.split(".", 1)[1]
        moto_each = next((v[1] / v[0] for k, v in served.items() if k.endswith("." + action) and v[0]), 0.0)
        print(f"  {op:48s} {n / minutes:5.1f}/min  {1000 * s / n:6.1f} ms / {1000 * moto_each:5.1f} ms")
    print(f"projection for 2 simulated days: {(setup_s + loop_s / minutes * TWO_DAYS_MIN) / 60:.1f} min")
    print(
        f"floor if every AWS call were free: {(loop_s - client_s) * per:.0f} ms per simulated minute, "
        f"{(loop_s - client_s) / minutes * TWO_DAYS_MIN / 60:.1f} min for 2 days"
    )


if __name__ == "__main__":
    main()
