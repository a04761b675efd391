"""`forescale bench forecast`: accuracy, calibration, throughput and memory of the forecaster.

    forescale bench forecast [--traces DIR] [--targets 10000] [--out docs/forecast-benchmarks.md] [--json FILE]

What it measures, each the way production runs (refit daily, update every cycle):

- **Accuracy on the shared traces and on a sample of the generated fleet.** After a warm-up of
  `warmup_days`, every cycle (5 minutes, or one step when steps are longer) the adapter forecasts
  `horizon_s` ahead from the history so far; a refit happens when a target's state is a day old.
  Scored on every observed step of every horizon:
  - MASE of the median and of SeasonalNaive with the daily season (the value one day earlier, which
    is what statsforecast's `SeasonalNaive(season_length=steps per day)` forecasts for a horizon under
    a day), both scaled by the in-sample MAE of that seasonal naive over the warm-up;
  - the share of actuals at or under the p90 and p99 paths (coverage);
  - pinball loss at the policy's sizing quantile 0.92, divided by the same scale.
- **One fleet cycle** in a fresh subprocess: `targets` generated series of `days` of 1-minute
  history, first the daily refit of every target (reported apart, with its cost amortised over the
  day's cycles), then an update cycle for all of them; wall time, targets/s and peak RSS
  (`resource.getrusage`, the whole process: history, state and forecasts).
- **Cold start** in fresh subprocesses: import plus the first forecast of one target, with and
  without stored state.

Without `../shared` only the generated fleet is measured.
"""

from __future__ import annotations

import json
import math
import os
import subprocess  # nosec B404  # dev-only benchmark: runs sys.executable on code it builds itself
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from forescale.domain.forecast import Forecaster, SeriesHistory

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.float64]

DAY_S = 86_400
SIZING_QUANTILE = 0.92
CYCLE_S = 300
# Traces with at least this many days get an accuracy row (the warm-up plus two days scored).
TRACE_MIN_DAYS = 9


@dataclass(slots=True)
class Scores:
    """Sums over scored points, per target; `summary` turns them into the reported figures."""

    scale: float
    abs_err: float = 0.0
    abs_err_naive: float = 0.0
    pinball: float = 0.0
    under_p90: int = 0
    under_p99: int = 0
    points: int = 0
    naive_points: int = 0

    @property
    def mase(self) -> float:
        return self.abs_err / self.points / self.scale if self.points else math.nan

    @property
    def mase_naive(self) -> float:
        return self.abs_err_naive / self.naive_points / self.scale if self.naive_points else math.nan


@dataclass(slots=True)
class Evaluation:
    """Rolling-origin results for one set of series."""

    name: str
    step_s: int
    horizon_s: int
    per_target: dict[str, Scores]
    origins: int = 0
    refits: int = 0
    refit_s: float = 0.0
    update_s: float = 0.0
    updates: int = 0  # target-forecasts served from state
    models: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The table's figures: mean MASE over targets (with SeasonalNaive's), pooled coverage and pinball."""
        scored = [s for s in self.per_target.values() if s.points and s.naive_points]
        pts = sum(s.points for s in scored)
        mase = _mean([s.mase for s in scored])
        naive = _mean([s.mase_naive for s in scored])
        # per-target MASE ratio to SeasonalNaive (= ratio of MAEs), geometric mean: one target whose
        # scale shrank in the warm-up cannot dominate it, as it can the mean of MASEs
        ratios = [s.mase / s.mase_naive for s in scored if s.mase_naive > 0]
        if not ratios:
            geo = math.nan
        elif min(ratios) == 0:
            geo = 0.0  # a perfect forecast for some target: the geometric mean is zero
        else:
            geo = math.exp(_mean([math.log(r) for r in ratios]))
        return {
            "name": self.name,
            "targets": len(scored),
            "step_s": self.step_s,
            "horizon_s": self.horizon_s,
            "points": pts,
            "mase": mase,
            "mase_seasonal_naive": naive,
            "relative_mae_geomean": geo,
            "improvement_pct": 100 * (1 - geo),
            "improvement_of_mean_mase_pct": 100 * (1 - mase / naive) if naive and math.isfinite(naive) else math.nan,
            "targets_better_pct": 100 * _mean([float(s.mase < s.mase_naive) for s in scored]),
            "coverage_p90": sum(s.under_p90 for s in scored) / pts if pts else math.nan,
            "coverage_p99": sum(s.under_p99 for s in scored) / pts if pts else math.nan,
            "pinball_092_scaled": _mean([s.pinball / s.points / s.scale for s in scored]),
            "origins": self.origins,
            "refits": self.refits,
            "refit_s": self.refit_s,
            "update_s": self.update_s,
            "update_targets_per_s": self.updates / self.update_s if self.update_s > 0 else math.nan,
            "refit_targets_per_s": self.refits / self.refit_s if self.refit_s > 0 else math.nan,
            "models": dict(sorted(self.models.items())),
        }


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


# ------------------------------------------------------------------------------------- inputs


def trace_matrix(path: Path) -> tuple[list[str], Array, int, int]:
    """A canonical trace as (targets, rates[targets, steps] in requests/s with NaN in gaps, step_s, start)."""
    import numpy as np

    from forescale.replay.trace import load_trace

    trace = load_trace(path)
    gaps = np.array(trace.gap_flags(), dtype=bool)
    names = list(trace.targets)
    m = np.array([trace.targets[n].requests for n in names], dtype=np.float64) / trace.step_s
    m[:, gaps] = np.nan
    return names, m, trace.step_s, trace.start


def fleet_matrix(targets: int, days: float, seed: int = 11) -> tuple[list[str], Array, int, int]:
    """The generated fleet (see `forescale.forecasting.fleet`) as a matrix, like `trace_matrix`."""
    from forescale.forecasting.fleet import FleetSpec, generate_matrix

    spec = FleetSpec(targets=targets, days=days, seed=seed)
    names, m = generate_matrix(spec)
    return names, m, spec.step_s, spec.start


# ---------------------------------------------------------------------------------- evaluation


def evaluate(
    name: str,
    names: list[str],
    rates: Array,
    step_s: int,
    start: int,
    *,
    adapter: Forecaster | None = None,
    warmup_days: float = 7.0,
    horizon_s: int = 3600,
    cycle_s: int = CYCLE_S,
    max_history_days: int = 28,
) -> Evaluation:
    """Rolling-origin evaluation of the production path (refit when due, update otherwise).

    `adapter` defaults to a fresh `StatsForecastAdapter`; time spent in calls that refitted some
    target (its `last_refits`) counts as refit time, the rest as update time.
    """
    import numpy as np

    from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter

    ad = adapter or StatsForecastAdapter()
    day = DAY_S // step_s
    warm = int(warmup_days * day)
    horizon = -(-horizon_s // step_s)
    cycle = max(1, cycle_s // step_s)
    keep = max_history_days * day
    if rates.shape[1] < warm + horizon + 1:
        raise ValueError(f"{name}: {rates.shape[1]} steps, need over {warm + horizon} for this warm-up and horizon")
    ev = Evaluation(name, step_s, horizon_s, {})
    for i, target in enumerate(names):
        ev.per_target[target] = Scores(scale=_naive_scale(rates[i, :warm], day))
    for t in range(warm, rates.shape[1] - horizon + 1, cycle):
        s0 = max(0, t - keep)
        histories = [
            SeriesHistory(n, start + s0 * step_s, step_s, cast(Sequence[float], rates[i, s0:t]))
            for i, n in enumerate(names)
        ]
        t0 = time.perf_counter()
        out = ad.forecast(histories, horizon_s)
        took = time.perf_counter() - t0
        ev.origins += 1
        refitted = getattr(ad, "last_refits", [])
        if refitted:
            ev.refits += len(refitted)
            ev.refit_s += took  # the call's updates ride along; they are a small share of it
        else:
            ev.update_s += took
            ev.updates += len(out)
        actual = rates[:, t : t + horizon]
        naive = rates[:, t - day : t - day + horizon]
        for i, target in enumerate(names):
            fc = out.get(target)
            if fc is None:
                continue
            ev.models[fc.model] = ev.models.get(fc.model, 0) + 1
            a = actual[i]
            obs = ~np.isnan(a)
            if not obs.any():
                continue
            med = np.array(fc.quantiles[0.5][:horizon])
            sc = ev.per_target[target]
            sc.abs_err += float(np.abs(a[obs] - med[obs]).sum())
            sc.points += int(obs.sum())
            both = obs & ~np.isnan(naive[i])
            sc.abs_err_naive += float(np.abs(a[both] - naive[i][both]).sum())
            sc.naive_points += int(both.sum())
            sc.under_p90 += int((a[obs] <= np.array(fc.quantiles[0.9][:horizon])[obs] + 1e-12).sum())
            sc.under_p99 += int((a[obs] <= np.array(fc.quantiles[0.99][:horizon])[obs] + 1e-12).sum())
            diff = a[obs] - np.array(fc.quantiles[SIZING_QUANTILE][:horizon])[obs]
            sc.pinball += float(np.maximum(SIZING_QUANTILE * diff, (SIZING_QUANTILE - 1) * diff).sum())
    return ev


def _naive_scale(y: Array, day: int) -> float:
    """In-sample MAE of the daily seasonal naive on observed pairs; the mean level, or 1, if zero."""
    import numpy as np

    if len(y) > day:
        d = np.abs(y[day:] - y[:-day])
        d = d[~np.isnan(d)]
        if d.size and float(d.mean()) > 1e-12:
            return float(d.mean())
    level = float(np.nanmean(y)) if np.any(~np.isnan(y)) else 0.0
    return level if level > 1e-12 else 1.0


# -------------------------------------------------------------------------------- fleet cycle


def fleet_cycle(
    targets: int, days: float = 7.0, horizon_s: int = 3600, refit_sample: int = 500, seed: int = 11
) -> dict[str, Any]:
    """One production-shaped cycle for a generated fleet; run it in a fresh process for honest memory.

    1. `targets` series of `days` of 1-minute history, held as `array('d')` (8 bytes a sample).
    2. Refits on the first `refit_sample` targets: the first one (model selection, fit, calibration)
       and a forced second one (what the daily refit costs: fit and calibration, no selection).
    3. Their states are exported; every target of the fleet gets one (round-robin over the sample:
       the update's cost depends on the shapes, not the values), a fresh adapter imports them all,
       as a stateless forecaster invocation would, and forecasts every target from state.
    """
    import resource

    from forescale.forecasting.fleet import FleetSpec, iter_histories
    from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter

    t0 = time.perf_counter()
    spec = FleetSpec(targets=targets, days=days, seed=seed)
    histories = list(iter_histories(spec))
    generate_s = time.perf_counter() - t0
    rss_data_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    sample = histories[: min(targets, refit_sample)]
    fitter = StatsForecastAdapter()
    t0 = time.perf_counter()
    fitter.forecast(sample, horizon_s)
    first_fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fitter.forecast(sample, horizon_s, refit=[h.target for h in sample])
    refit_s = time.perf_counter() - t0
    blobs = fitter.export_state()
    fitted = list(blobs.values())
    models: dict[str, int] = {}
    for name in blobs:
        st = fitter.state_of(name)
        if st is not None:
            models[st.model] = models.get(st.model, 0) + 1

    fleet_blobs = {h.target: fitted[i % len(fitted)] for i, h in enumerate(histories)} if fitted else {}
    adapter = StatsForecastAdapter()
    t0 = time.perf_counter()
    adapter.import_state(fleet_blobs)
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = adapter.forecast(histories, horizon_s)
    update_s = time.perf_counter() - t0
    refitted = len(adapter.last_refits)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_sample = len(sample)
    return {
        "targets": targets,
        "days": days,
        "step_s": spec.step_s,
        "horizon_s": horizon_s,
        "generate_s": generate_s,
        "rss_after_history_mb": rss_data_mb,
        "refit_sample": n_sample,
        "first_fit_s": first_fit_s,
        "first_fit_per_target_s": first_fit_s / n_sample,
        "refit_s": refit_s,
        "refit_per_target_s": refit_s / n_sample,
        "sample_models": dict(sorted(models.items())),
        "state_bytes_mean": sum(len(b) for b in fitted) / len(fitted) if fitted else 0,
        "import_state_s": import_s,
        "update_s": update_s,
        "cycle_s": import_s + update_s,
        "forecasts": len(out),
        "refitted_in_cycle": refitted,
        "targets_per_s": len(out) / (import_s + update_s) if out else 0.0,
        "peak_rss_mb": peak_mb,
    }


def cold_start(days: float = 7.0, horizon_s: int = 3600) -> dict[str, float]:
    """Fresh-process seconds from `import` of the adapter to the first forecast of one target.

    The history (one generated series of `days` minutes) is handed over as raw bytes and read with the
    standard library, so numpy, pandas and statsforecast are all imported inside the timed span.
    Two paths: a target without state (statsforecast import, model selection, fit) and the same target
    from its exported state (the update path: numpy only). Each is timed twice: as this environment
    runs Python (`PYTHONDONTWRITEBYTECODE=1` here, so every import compiles its source), and with a
    warm bytecode cache (`PYTHONPYCACHEPREFIX`, filled by an untimed run first), which is what a
    container image built with `uv sync --compile-bytecode` has.
    """
    import tempfile

    from forescale.forecasting.fleet import FleetSpec, iter_histories

    h = next(iter_histories(FleetSpec(targets=1, days=days, seed=3)))
    load = (
        "import sys, time\n"
        "from array import array\n"
        "from forescale.domain.forecast import SeriesHistory\n"
        "rates = array('d'); rates.frombytes(open(sys.argv[1], 'rb').read())\n"
        f"h = SeriesHistory({h.target!r}, {h.start}, {h.step_s}, rates)\n"
        "t0 = time.perf_counter()\n"
        "from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter\n"
        "ad = StatsForecastAdapter()\n"
    )
    fit = load + (
        f"fc = ad.forecast([h], {horizon_s})\n"
        "t1 = time.perf_counter()\n"
        "open(sys.argv[2], 'wb').write(ad.export_state()[h.target])\n"
        "print(t1 - t0)\n"
    )
    warm = load + (
        "ad.import_state({h.target: open(sys.argv[2], 'rb').read()})\n"
        f"fc = ad.forecast([h], {horizon_s})\n"
        "t1 = time.perf_counter()\n"
        "assert 'statsforecast' not in sys.modules and 'pandas' not in sys.modules and not ad.last_refits\n"
        "print(t1 - t0)\n"
    )
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="forescale-cold-") as tmp:
        history_file, blob_file = Path(tmp) / "rates", Path(tmp) / "state"
        history_file.write_bytes(bytes(cast(Any, h.rates)))
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        runs = (
            ("with_refit", fit, dict(os.environ)),
            ("from_state", warm, dict(os.environ)),
            ("", fit, cached),  # fills the bytecode cache; not timed
            ("with_refit_bytecode", fit, cached),
            ("from_state_bytecode", warm, cached),
        )
        for label, code, env in runs:
            t0 = time.perf_counter()
            run = subprocess.run(  # nosec B603  # argv list, no shell: sys.executable on code built here from numbers
                [sys.executable, "-c", code, str(history_file), str(blob_file)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            if label:
                results[f"{label}_process_s"] = time.perf_counter() - t0
                results[f"{label}_s"] = float(run.stdout.split()[-1])
    return results


# ------------------------------------------------------------------------------------ the table


def _trace_job(job: tuple[str, int]) -> dict[str, Any]:
    path, horizon_s = job
    names, rates, step_s, start = trace_matrix(Path(path))
    return _score(Path(path).stem, names, rates, step_s, start, horizon_s)


def _fleet_job(job: tuple[int, int, float]) -> dict[str, Any]:
    targets, horizon_s, score_days = job
    names, rates, step_s, start = fleet_matrix(targets, 7.0 + score_days)
    return _score(f"generated fleet ({targets} targets)", names, rates, step_s, start, horizon_s)


def _score(name: str, names: list[str], rates: Array, step_s: int, start: int, horizon_s: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    ev = evaluate(name, names, rates, step_s, start, horizon_s=horizon_s)
    return {**ev.summary(), "days": rates.shape[1] * step_s / DAY_S, "wall_s": time.perf_counter() - t0}


def _subprocess_json(call: str) -> dict[str, Any]:
    """Run `forescale.forecasting.bench.<call>` in a fresh interpreter and return its JSON result."""
    code = f"import json; from forescale.forecasting import bench; print(json.dumps(bench.{call}))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)  # nosec B603  # no shell; `call` is built here from ints
    if run.returncode:
        raise RuntimeError(f"bench subprocess {call} failed: {run.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def shard_size(
    cycle: Mapping[str, Any], cycle_s: int = CYCLE_S, share: float = 0.5, memory_mb: int = 10_240
) -> dict[str, Any]:
    """Targets one forecaster invocation can serve per cycle: amortised per-target cost × N ≤ `share` × cycle.

    Per target and cycle: the update (import + forecast), a daily refit spread over the day's cycles
    and a weekly selection spread over the week's. Memory: the measured peak RSS scaled linearly from
    the history's footprint, against `share` of `memory_mb`.
    """
    per_day = DAY_S // cycle_s
    update = cycle["cycle_s"] / cycle["targets"]
    refit = cycle["refit_per_target_s"] / per_day
    select = cycle["first_fit_per_target_s"] / (7 * per_day)
    per_target = update + refit + select
    by_time = int(share * cycle_s / per_target)
    per_target_mb = cycle["peak_rss_mb"] / cycle["targets"]
    by_memory = int(share * memory_mb / per_target_mb)
    # a cold shard (no stored state) must not spend the whole cycle selecting models: cap the
    # statsforecast refits per call at a quarter of the cycle; the rest get interim fits
    max_refits = int(0.25 * cycle_s / cycle["first_fit_per_target_s"])
    return {
        "per_target_cycle_s": per_target,
        "update_s": update,
        "refit_amortised_s": refit,
        "selection_amortised_s": select,
        "by_time": by_time,
        "by_memory": by_memory,
        "targets": min(by_time, by_memory),
        "measured_targets": cycle["targets"],
        "max_refits": max_refits,
        "share": share,
        "cycle_s": cycle_s,
    }


def run_forecast_bench(
    traces_dir: Path | None,
    targets: int,
    out: Path | None,
    raw: Path | None,
    *,
    days: float = 7.0,
    horizon_s: int = 3600,
    refit_sample: int = 500,
    accuracy_targets: int = 100,
    score_days: float = 7.0,
    cold: bool = True,
) -> int:
    """Measure everything in the module docstring, print the table, write markdown and JSON if asked."""
    from concurrent.futures import ProcessPoolExecutor

    t_start = time.perf_counter()
    paths: list[Path] = []
    skipped: list[str] = []
    if traces_dir is not None and traces_dir.is_dir():
        for p in sorted(traces_dir.glob("*.csv")):
            if _trace_days(p) >= TRACE_MIN_DAYS:
                paths.append(p)
            else:
                skipped.append(p.stem)
    accuracy: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        fleet_future = pool.submit(_fleet_job, (min(targets, accuracy_targets), horizon_s, score_days))
        trace_futures = [pool.submit(_trace_job, (str(p), horizon_s)) for p in paths]
        accuracy = [f.result() for f in trace_futures] + [fleet_future.result()]
    cycle = _subprocess_json(f"fleet_cycle({targets}, {days!r}, {horizon_s}, {min(targets, refit_sample)})")
    cold_s = _subprocess_json(f"cold_start({days!r}, {horizon_s})") if cold else None
    shard = shard_size(cycle)
    results = {
        "accuracy": accuracy,
        "skipped_traces": skipped,
        "cycle": cycle,
        "cold_start": cold_s,
        "shard": shard,
        "wall_s": time.perf_counter() - t_start,
        "traces_dir": str(traces_dir) if traces_dir is not None and paths else None,
    }
    table = render(results)
    print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)
    if raw is not None:
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def _trace_days(path: Path) -> float:
    """Days a canonical trace covers (rows / targets × step), from its size alone; 0 if unreadable."""
    try:
        sidecar = json.loads(path.with_suffix(".targets.json").read_text())
        step_s, targets = int(sidecar["step_s"]), len(sidecar["targets"])
        with path.open() as f:
            rows = sum(1 for _ in f) - 1
    except (OSError, KeyError, TypeError, ValueError):
        return 0.0
    return rows / max(targets, 1) * step_s / DAY_S


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _cold_lines(cold: Mapping[str, float] | None) -> list[str]:
    lines = ["## Cold start (fresh process, one target, 7 days of history)", ""]
    if cold is None:
        return [*lines, "Not measured in this run (`--no-cold-start`).", ""]
    return [
        *lines,
        "Import + first forecast, seconds (whole process in brackets). This environment sets "
        "`PYTHONDONTWRITEBYTECODE=1`, so every import compiles its source; a container image built with "
        "`uv sync --compile-bytecode` starts like the last column.",
        "",
        "| path | no bytecode cache | bytecode cache |",
        "|---|---|---|",
        f"| no state: import statsforecast, select, fit, calibrate | {cold['with_refit_s']:.2f} "
        f"({cold['with_refit_process_s']:.2f}) | {cold['with_refit_bytecode_s']:.2f} "
        f"({cold['with_refit_bytecode_process_s']:.2f}) |",
        f"| stored state: import numpy, update | {cold['from_state_s']:.2f} ({cold['from_state_process_s']:.2f}) "
        f"| {cold['from_state_bytecode_s']:.2f} ({cold['from_state_bytecode_process_s']:.2f}) |",
        "",
    ]


def render(r: Mapping[str, Any]) -> str:
    """The markdown page `docs/forecast-benchmarks.md`."""
    c, shard = r["cycle"], r["shard"]
    lines = [
        "# Forecasting benchmarks",
        "",
        "Produced by `uv run forescale bench forecast --out docs/forecast-benchmarks.md "
        "--json docs/forecast-benchmarks.json` "
        f"({r['wall_s']:.0f} s wall on this 2-core machine; method in `forescale/forecasting/bench.py`).",
        "",
        "## Accuracy and calibration (production path: refit daily, update every cycle)",
        "",
        f"Horizon {r['accuracy'][0]['horizon_s'] // 60 if r['accuracy'] else '-'} min; a forecast every 5 min "
        "(every step when steps are longer); 7 days of warm-up, then every observed step scored. "
        "MASE is scaled by the in-sample MAE of the daily seasonal naive over the warm-up; "
        "SeasonalNaive is the value one day earlier. Pinball at q0.92 (the policy's sizing quantile) "
        "uses the same scale.",
        "",
        "| series | targets | days | step s | MASE | MASE SeasonalNaive | better by | targets better "
        "| p90 coverage | p99 coverage | pinball q0.92 | update targets/s | refit targets/s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in r["accuracy"]:
        lines.append(
            f"| {a['name']} | {a['targets']} | {a['days']:.1f} | {a['step_s']} | {_f(a['mase'])} "
            f"| {_f(a['mase_seasonal_naive'])} | {_f(a['improvement_pct'], 1)} % | {_f(a['targets_better_pct'], 0)} % "
            f"| {_f(a['coverage_p90'] * 100, 1)} % | {_f(a['coverage_p99'] * 100, 2)} % "
            f"| {_f(a['pinball_092_scaled'])} | {_f(a['update_targets_per_s'], 0)} "
            f"| {_f(a['refit_targets_per_s'], 1)} | {_f(a['wall_s'], 0)} |"
        )
    if r["skipped_traces"]:
        lines += ["", f"Too short to score (under {TRACE_MIN_DAYS} days): {', '.join(r['skipped_traces'])}."]
    if r["traces_dir"] is None:
        lines += ["", "No shared traces found: the generated fleet only."]
    lines += [
        "",
        "Models in use (target-forecasts): "
        + "; ".join(f"{a['name']}: " + ", ".join(f"{k} {v}" for k, v in a["models"].items()) for a in r["accuracy"]),
        "",
        f"## One cycle: {c['targets']} targets × {c['days']:g} days of 1-minute history, "
        f"{c['horizon_s'] // 60} min horizon",
        "",
        "| phase | wall s | per target ms | targets/s |",
        "|---|---|---|---|",
        f"| generate the history (not forecasting) | {c['generate_s']:.1f} | "
        f"{1000 * c['generate_s'] / c['targets']:.2f} | - |",
        f"| import state ({c['state_bytes_mean']:.0f} B a target) | {c['import_state_s']:.2f} | "
        f"{1000 * c['import_state_s'] / c['targets']:.3f} | - |",
        f"| update: forecast from state | {c['update_s']:.2f} | {1000 * c['update_s'] / c['targets']:.3f} | - |",
        f"| **cycle (import + update)** | **{c['cycle_s']:.2f}** | {1000 * c['cycle_s'] / c['targets']:.3f} "
        f"| **{c['targets_per_s']:.0f}** |",
        f"| daily refit (fit + calibration; {c['refit_sample']} sampled targets) | {c['refit_s']:.1f} | "
        f"{1000 * c['refit_per_target_s']:.1f} | {1 / c['refit_per_target_s']:.1f} |",
        f"| first fit / weekly selection ({c['refit_sample']} sampled targets) | {c['first_fit_s']:.1f} | "
        f"{1000 * c['first_fit_per_target_s']:.1f} | {1 / c['first_fit_per_target_s']:.2f} |",
        "",
        f"Peak memory (max RSS of the whole process, history included): **{c['peak_rss_mb']:.0f} MB**; "
        f"{c['rss_after_history_mb']:.0f} MB after the history alone. Refits of all {c['targets']} targets, "
        f"spread over the day: {c['refit_per_target_s'] * c['targets']:.0f} s a day "
        f"({c['refit_per_target_s'] * c['targets'] / (DAY_S // CYCLE_S):.1f} s a 5-minute cycle); weekly "
        f"selection {c['first_fit_per_target_s'] * c['targets']:.0f} s a week "
        f"({c['first_fit_per_target_s'] * c['targets'] / (7 * DAY_S // CYCLE_S):.1f} s a cycle). "
        f"Sample models: {', '.join(f'{k} {v}' for k, v in c['sample_models'].items())}. "
        f"Forecasts {c['forecasts']}, refits inside the cycle {c['refitted_in_cycle']}.",
        "",
        *_cold_lines(r["cold_start"]),
        "## Shard sizing",
        "",
        f"Per target and 5-minute cycle: update {1000 * shard['update_s']:.3f} ms + daily refit amortised "
        f"{1000 * shard['refit_amortised_s']:.3f} ms + weekly selection amortised "
        f"{1000 * shard['selection_amortised_s']:.3f} ms = {1000 * shard['per_target_cycle_s']:.3f} ms. "
        f"Using half the cycle ({shard['share'] * shard['cycle_s']:.0f} s) and half of 10 GB, one core like "
        f"this machine's could take {shard['by_time']} targets by time and {shard['by_memory']} by memory "
        f"(peak RSS scaled linearly): a ceiling of {shard['targets']}. Recommended: "
        f"**{min(shard['targets'], shard['measured_targets'])} targets per invocation**, the size measured end "
        "to end above, which leaves most of the cycle for the DynamoDB reads and writes this benchmark does "
        f"not include; with `StatsForecastAdapter(max_refits={shard['max_refits']})` so that a shard without "
        "stored state (a new deployment) spends at most a quarter of a cycle on model selection and gives "
        "the rest interim SeasonalNaive fits.",
        "",
    ]
    return "\n".join(lines)
