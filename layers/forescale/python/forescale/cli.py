"""The `forescale` command line: replay a trace through a policy, benchmark policies, generate workloads.

    forescale replay --trace TRACE.csv --out DECISIONS.csv [--policy predictive] [--targets SIDECAR.json]
    forescale replay --builtin --out DECISIONS.csv          # the built-in generated workload
    forescale bench replay [--traces DIR] [--out docs/benchmarks.md]
    forescale bench forecast [--traces DIR] [--targets 10000] [--out docs/forecast-benchmarks.md]
    forescale bench fleet --targets N [--minutes 30] [--history-days D] [--out docs]  # running cost on moto
    forescale generate --out TRACE.csv [--days 9] [--seed 7]
    forescale demo [--days 0.09] [--seed 7] [--out out/demo] [--trace TRACE.csv] [--keep]  # the system on moto
    forescale backtest --from-cloudwatch (--function NAME [--alias A] | --endpoint NAME --variant V --catalog FILE)
        [--days 14] [--out out/backtest] [--region R]       # forescale vs target tracking on real history
    forescale targets add|list|show|remove|set-mode|discover ...   # see forescale.admin
    forescale pause --reason TEXT | forescale resume                 # the kill switch
    forescale status [--output json] | forescale explain TARGET      # what forescale is doing, and why

Exit codes: 0 success, 2 bad input (the message names the file and line, or the bad option).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forescale.domain.policies import POLICY_NAMES
from forescale.replay.trace import TraceError


def _param(text: str) -> tuple[str, float | int | bool]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param wants NAME=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    value: float | int | bool
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                raise argparse.ArgumentTypeError(f"--param {key}: {raw!r} is not a number") from None
    return key, value


def check_out_folder(path: Path) -> None:
    """`--out FOLDER`: a path that cannot be a writable folder fails before any work runs. Folders it has
    to create are created to be sure they can be, then removed: a run that fails early leaves nothing."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file; it must be a folder (new or existing) for the report")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {path}: cannot create this folder ({exc.strerror or exc})") from None
    writable = os.access(path, os.W_OK)
    for made in missing:  # deepest first
        made.rmdir()
    if not writable:
        raise ValueError(f"--out {path}: this folder is not writable")


def check_out_file(path: Path) -> None:
    """`--out FILE`: not a folder, in a folder that exists (created now) and is writable."""
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; it must be a file, e.g. {path / 'decisions.csv'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {path}: cannot create its folder {path.parent} ({exc.strerror or exc})") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"--out {path}: not writable")


def policy_parameters(policy: str) -> tuple[str, ...]:
    """The `--param` names a policy takes (its constructor's, or PredictiveParams' fields)."""
    import dataclasses
    import inspect

    from forescale.domain import policies

    if policy == "predictive":
        return tuple(f.name for f in dataclasses.fields(policies.PredictiveParams))
    cls = {
        "reactive": policies.ReactivePolicy,
        "target-tracking": policies.TargetTrackingPolicy,
        "seasonal-naive": policies.SeasonalNaivePolicy,
        "static": policies.StaticPolicy,
    }[policy]
    return tuple(n for n in inspect.signature(cls).parameters if n not in ("target", "step_s"))


def check_params(policy: str, params: dict[str, float | int | bool]) -> None:
    """Refuse unknown `--param` names (listing the valid ones) and bad values, before any replay runs."""
    from forescale.domain.policies import make_policy
    from forescale.domain.targets import Target, TargetKind

    valid = policy_parameters(policy)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"--param {', '.join(unknown)}: not a parameter of the {policy} policy; valid: {', '.join(valid)}"
        )
    try:
        make_policy(policy, Target("check", TargetKind.LAMBDA_PROVISIONED), 60, **params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--param: {exc}") from None


DEMO_DAYS = 130 / 1440  # forescale.demo.runner.DEFAULT_DAYS, without importing the demo for --help


def _build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="forescale", description="Predictive capacity for Lambda and SageMaker.")
    sub = ap.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("replay", help="replay a canonical trace through a policy and write the decisions CSV")
    src = rp.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", type=Path, help="canonical trace CSV (timestamp,target,requests)")
    src.add_argument("--builtin", action="store_true", help="use the built-in generated workload")
    rp.add_argument("--out", type=Path, required=True, help="decisions CSV to write")
    rp.add_argument("--policy", choices=POLICY_NAMES, default="predictive", help="the policy (default predictive)")
    rp.add_argument("--targets", type=Path, help="sidecar JSON (default: <trace>.targets.json)")
    rp.add_argument("--only", nargs="+", metavar="TARGET", help="replay only these targets")
    rp.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="policy parameter, e.g. sizing_quantile=0.95 (repeatable)",
    )
    rp.add_argument("--days", type=float, default=9, help="--builtin: days to generate (default 9)")
    rp.add_argument("--seed", type=int, default=7, help="--builtin: generator seed (default 7)")
    rp.add_argument("--no-score", action="store_true", help="skip the evaluation summary")
    rp.add_argument(
        "--compare",
        nargs="*",
        choices=POLICY_NAMES,
        default=None,
        help="also replay these policies and print them side by side",
    )

    bp = sub.add_parser("bench", help="benchmarks")
    bsub = bp.add_subparsers(dest="bench", required=True)
    br = bsub.add_parser("replay", help="policies × traces table (docs/benchmarks.md)")
    br.add_argument(
        "--traces",
        type=Path,
        default=Path(__file__).resolve().parents[4] / ".." / "shared" / "traces",
        help="folder of canonical traces (default ../shared/traces)",
    )
    br.add_argument("--only", nargs="+", metavar="TRACE", help="trace names (without .csv)")
    br.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    br.add_argument("--json", type=Path, default=None, help="write the raw results here")
    bf = bsub.add_parser("forecast", help="forecast accuracy, calibration, throughput (docs/forecast-benchmarks.md)")
    bf.add_argument("--traces", type=Path, default=br.get_default("traces"), help="traces; absent: fleet only")
    bf.add_argument("--targets", type=int, default=10_000, help="generated fleet size for the cycle (default 10000)")
    bf.add_argument("--refit-sample", type=int, default=500, help="targets refitted to time refits (default 500)")
    bf.add_argument("--accuracy-targets", type=int, default=100, help="fleet targets scored (default 100)")
    bf.add_argument("--score-days", type=float, default=7.0, help="days scored after the 7-day warm-up")
    bf.add_argument("--no-cold-start", action="store_true", help="skip the cold-start subprocesses (~15 s)")
    bf.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    bf.add_argument("--json", type=Path, default=None, help="write the raw results here")

    bfl = bsub.add_parser("fleet", help="the deployed functions for N targets on moto, metered and priced")
    bfl.add_argument("--targets", type=int, default=100, help="fleet size (default 100)")
    bfl.add_argument("--minutes", type=int, default=30, help="metered simulated minutes (default 30)")
    bfl.add_argument("--history-days", type=float, default=1.1, help="history before the run, >= 1 (default 1.1)")
    bfl.add_argument("--warmup-minutes", type=int, default=8, help="unmetered minutes first (default 8)")
    bfl.add_argument("--seed", type=int, default=7, help="the generated fleet's seed (default 7)")
    bfl.add_argument("--out", type=Path, default=None, help="folder for fleet-cost.md (and fleet-cost-N.json)")
    bfl.add_argument("--no-baseline", action="store_true", help="skip the cold-import memory subprocesses")

    dp = sub.add_parser("demo", help="run the whole system locally on moto and write a report")
    dp.add_argument(
        "--days",
        type=float,
        default=DEMO_DAYS,
        help="simulated days to run; a --trace is cut after them (default 0.09: 130 minutes from 10:05)",
    )
    dp.add_argument("--history-days", type=float, default=7.0, help="history before the run (default 7)")
    dp.add_argument(
        "--start-time",
        metavar="HH:MM",
        help="start the run at this time of day (UTC) after the history (default: 10:05 for the built-in "
        "workload, its morning ramp and spike; right after the history for a --trace)",
    )
    dp.add_argument("--seed", type=int, default=7, help="the built-in workload's seed (default 7)")
    dp.add_argument("--out", type=Path, default=Path("out/demo"), help="report folder (default out/demo)")
    dp.add_argument("--targets", nargs="+", metavar="TARGET", help="only these targets of the workload")
    dp.add_argument("--trace", type=Path, help="replay a canonical trace CSV instead of the built-in workload")
    dp.add_argument("--port", type=int, default=0, help="moto port (default: a free one)")
    dp.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    dp.add_argument(
        "--keep",
        action="store_true",
        help="after the report, leave the local AWS running and print the environment to export to try "
        "`forescale targets`, `pause` and `resume` against it; Ctrl-C stops it",
    )

    bt = sub.add_parser("backtest", help="replay a real resource's CloudWatch history through forescale; report")
    bt_source = bt.add_mutually_exclusive_group(required=True)  # the only source for now; --trace may join it
    bt_source.add_argument("--from-cloudwatch", action="store_true", help="pull the history with GetMetricData")
    bt_resource = bt.add_mutually_exclusive_group(required=True)
    bt_resource.add_argument("--function", help="Lambda function name")
    bt_resource.add_argument("--endpoint", help="SageMaker endpoint name")
    bt.add_argument("--alias", help="--function: the alias (or version) provisioned concurrency would be set on")
    bt.add_argument("--variant", help="--endpoint: the production variant")
    bt.add_argument("--catalog", type=Path, help="--endpoint: JSON list of {name, price_per_hour, capacity_rps}")
    bt.add_argument("--days", type=int, default=14, help="days of 1-minute history, 2..15; the first is warm-up")
    bt.add_argument("--out", type=Path, default=Path("out/backtest"), help="report folder (default out/backtest)")
    bt.add_argument("--region", help="AWS region (default: the environment's)")

    from forescale.admin import add_parsers as add_admin_parsers

    add_admin_parsers(sub)

    gp = sub.add_parser("generate", help="write the built-in workload as a canonical trace")
    gp.add_argument("--out", type=Path, required=True, help="trace CSV to write (its sidecar goes beside it)")
    gp.add_argument("--days", type=float, default=9, help="days to generate (default 9)")
    gp.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    return ap


def _fmt(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _print_scores(label_scores: Sequence[tuple[str, Any]]) -> None:
    print(f"{'policy':16} {'target':28} {'miss %':>8} {'capacity $':>11} {'x oracle':>9} {'changes':>8}")
    for label, score in label_scores:
        for name, r in score.targets.items():
            print(
                f"{label:16} {name[:28]:28} {r.miss_pct:8.3f} {r.capacity_cost_usd:11.2f} "
                f"{_fmt(r.capacity_vs_oracle):>9} {r.api_calls:8d}"
            )
        o = score.overall()
        print(
            f"{label:16} {'OVERALL':28} {o.miss_pct:8.3f} {o.capacity_cost_usd:11.2f} "
            f"{_fmt(o.capacity_vs_oracle):>9} {o.api_calls:8d}"
        )


def _cmd_replay(a: argparse.Namespace) -> int:
    from forescale.replay.engine import ReplayConfig, replay, write_decisions
    from forescale.replay.evaluate import evaluate
    from forescale.replay.trace import load_trace, select_targets, write_trace

    # Everything checkable is checked before the replay runs, so no work is lost to a typo.
    if a.compare == []:
        raise ValueError(f"--compare needs one or more policies after it: {', '.join(POLICY_NAMES)}")
    if a.builtin and not a.days > 0:
        raise ValueError(f"--days must be a number of days > 0, got {a.days!r}")
    check_params(a.policy, dict(a.param))
    check_out_file(a.out)

    if a.builtin:
        from forescale.replay.workload import generate

        trace = generate(days=a.days, seed=a.seed)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        trace_path = write_trace(trace, a.out.with_name(a.out.stem + ".trace.csv"))
        print(f"built-in workload: {trace.steps} steps × {len(trace.targets)} targets, seed {a.seed} → {trace_path}")
    else:
        trace = load_trace(a.trace, a.targets)
    trace = select_targets(trace, a.only)
    params = dict(a.param)
    cfg = ReplayConfig(policy=a.policy, policy_params=params)
    try:
        result = replay(trace, cfg)
    except (TypeError, ValueError) as e:
        print(f"forescale replay: {e}", file=sys.stderr)
        return 2
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_decisions(result.rows, str(a.out))
    print(
        f"replay {a.policy}: {result.steps} steps × {result.targets} targets, {len(result.rows)} capacity changes, "
        f"{result.forecasts} forecasts ({result.refits_on_drift} on drift), wall {result.wall_s:.1f} s "
        f"(forecasting {result.forecast_s:.1f} s) → {a.out}"
    )
    if result.models:
        print("models: " + ", ".join(f"{k}={v}" for k, v in sorted(result.models.items())))
    if a.no_score:
        return 0
    scores = [(a.policy, evaluate(trace, result.rows))]
    for other in a.compare or []:
        if other != a.policy:
            scores.append((other, evaluate(trace, replay(trace, ReplayConfig(policy=other)).rows)))
    _print_scores(scores)
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    if a.bench == "fleet":
        from forescale.demo.fleet_bench import FleetOptions, run_fleet_bench

        return run_fleet_bench(
            FleetOptions(
                targets=a.targets,
                minutes=a.minutes,
                history_days=a.history_days,
                warmup_minutes=a.warmup_minutes,
                seed=a.seed,
                out=a.out,
                baseline=not a.no_baseline,
            )
        )
    if a.bench == "forecast":
        from forescale.forecasting.bench import run_forecast_bench

        return run_forecast_bench(
            a.traces,
            a.targets,
            a.out,
            a.json,
            refit_sample=a.refit_sample,
            accuracy_targets=a.accuracy_targets,
            score_days=a.score_days,
            cold=not a.no_cold_start,
        )
    from forescale.replay.bench import run_bench

    return run_bench(a.traces, a.only, a.out, a.json)


def _cmd_generate(a: argparse.Namespace) -> int:
    from forescale.replay.trace import write_trace
    from forescale.replay.workload import generate

    check_out_file(a.out)
    path = write_trace(generate(days=a.days, seed=a.seed), a.out)
    print(f"wrote {path} and {path.with_suffix('.targets.json')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    a = _build_parser().parse_args(argv)
    try:
        if a.command == "replay":
            return _cmd_replay(a)
        if a.command == "bench":
            return _cmd_bench(a)
        if a.command == "demo":
            from forescale.demo.runner import DemoOptions, run_demo

            opts = DemoOptions(
                days=a.days,
                history_days=a.history_days,
                seed=a.seed,
                out=a.out,
                targets=tuple(a.targets) if a.targets else None,
                trace=a.trace,
                port=a.port,
                progress=not a.no_progress,
                start_time=a.start_time,
                keep=a.keep,
            )
            check_out_folder(opts.out)  # after DemoOptions checked the numbers, before the demo starts
            return run_demo(opts)
        if a.command == "backtest":
            from forescale.demo.backtest import BacktestOptions, run_backtest

            check_out_folder(a.out)
            return run_backtest(
                BacktestOptions(
                    function=a.function,
                    alias=a.alias,
                    endpoint=a.endpoint,
                    variant=a.variant,
                    catalog=a.catalog,
                    days=a.days,
                    out=a.out,
                    region=a.region,
                )
            )
        if a.command in ("targets", "pause", "resume", "status", "explain"):
            from forescale.admin import main as admin_main

            return admin_main(a)
        return _cmd_generate(a)
    except TraceError as e:
        print(f"forescale {a.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Context managers have run by now: the loopback AWS server is stopped, the environment restored.
        print(f"forescale {a.command}: interrupted; nothing is left running", file=sys.stderr)
        return 130
    except (ValueError, json.JSONDecodeError) as e:
        print(f"forescale {a.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
