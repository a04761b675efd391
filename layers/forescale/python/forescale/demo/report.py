"""The report of `forescale demo` and `forescale backtest`: what forescale did, next to the baseline and the oracle.

Inputs are plain data (`Report`): the workload as a canonical `Trace`, forescale's capacity decisions
and the baseline's (`DecisionRow`, the yardstick's contract), the forecasts forescale issued, its audit
records (`DecisionRecord`) and the facts of the run (`RunFacts`). Every score comes from
`forescale.replay.evaluate`, the numpy twin of the shared yardstick, so the numbers printed here are
the ones `forescale replay` and `../shared/bench/score.py` give for the same decisions.

`write_report(report, out_dir)` writes:
- `report.html`: self-contained (charts embedded as base64 PNGs, inline CSS, no script, no link),
  readable offline;
- `<target>.png`: one 1400×600 chart per target: demand, the forecast band in force, forescale's and
  the baseline's capacity in force (as the request rate it serves within the spill SLO), source gaps,
  and the misses per minute below;
- `decisions.csv` (forescale) and `baseline-decisions.csv`, in the yardstick's decisions contract;
- `summary.json`: the summary table's numbers, the run facts and the paths.

`format_summary(report)` is the fixed-width table the demo prints at the end.

Units: rates in requests/s, capacity in provisioned environments (Lambda) or instances (SageMaker),
money in US dollars over the report window, times in epoch seconds UTC, durations in seconds.
matplotlib is imported lazily (Agg canvas, no pyplot), so importing this module is cheap.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forescale.domain.forecast import Forecast
from forescale.replay.engine import DecisionRow, write_decisions
from forescale.replay.evaluate import StepSeries, TargetScore, evaluate, per_step
from forescale.replay.trace import Trace, TraceTarget
from forescale.runtime.models import DecisionRecord

if TYPE_CHECKING:
    import jinja2
    import numpy as np
    import numpy.typing as npt

CHART_SIZE_PX = (1400, 600)
CHART_DPI = 100

# One colour per series, shared by the charts and the HTML legend chips.
COLOURS = {
    "demand": "#1f2937",
    "band": "#bfdbfe",
    "median": "#2563eb",
    "forescale": "#059669",
    "baseline": "#d97706",
    "oracle": "#6b7280",
    "spill": "#dc2626",
    "gap": "#e5e7eb",
}

_DEFAULT_BASELINE_NOTE = (
    "AWS Application Auto Scaling target tracking, replayed on the same demand: one-minute average "
    "utilisation against 70 %, scale-out after 3 datapoints above it, scale-in after 15 below; for Lambda "
    "the metric is ProvisionedConcurrencyUtilization, which saturates at 100 % and cannot see spill."
)


# --- inputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What was run, for the headline and `summary.json`.

    `source` names the workload ("built-in workload", a trace path, or a CloudWatch resource).
    `simulated_days` is the length of the report window and `history_days` the data before it that
    forescale was given; `wall_s` the run's wall time in seconds; `decisions` the decisions forescale
    recorded; `api_calls` the AWS API calls the run made (to moto in the demo); `moto_port` the
    loopback port moto listened on (None for a replay or backtest without moto).
    """

    source: str
    simulated_days: float
    seed: int | None = None
    history_days: float = 0.0
    wall_s: float = 0.0
    decisions: int = 0
    api_calls: int = 0
    moto_port: int | None = None
    command: str = "demo"

    def __post_init__(self) -> None:
        for name in ("simulated_days", "history_days", "wall_s"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"run facts: {name} must be a finite number >= 0, got {v!r}")
        for name in ("decisions", "api_calls"):
            if getattr(self, name) < 0:
                raise ValueError(f"run facts: {name} must be >= 0, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "source": self.source,
            "simulated_days": self.simulated_days,
            "history_days": self.history_days,
            "seed": self.seed,
            "wall_s": self.wall_s,
            "decisions": self.decisions,
            "api_calls": self.api_calls,
            "moto_port": self.moto_port,
        }


@dataclass(frozen=True)
class Report:
    """Everything a report shows; plain data, validated on construction.

    - `trace`: the demand over the report window (cut history off with `trace_window`).
    - `forescale_rows`, `baseline_rows`: capacity decisions (rows before the window are allowed: they
      set the capacity in force when it opens). They are sorted by `decided_at`, stably.
    - `forecasts`: per target, `(issued_at, Forecast)` pairs; the chart shows at each step the band of
      the newest forecast issued at or before it.
    - `records`: forescale's audit records; the newest `decisions_shown` per target are listed.
    - `band`: the (lower, upper) quantiles to shade; the nearest available on each side of the median
      is used when a forecast lacks one.
    - `eps`: the spill share the oracle is sized for and the capacity lines are drawn at (0.01).
    """

    trace: Trace
    forescale_rows: Sequence[DecisionRow]
    baseline_rows: Sequence[DecisionRow]
    facts: RunFacts
    forecasts: Mapping[str, Sequence[tuple[int, Forecast]]] = field(default_factory=dict)
    records: Sequence[DecisionRecord] = ()
    title: str = "forescale demo"
    baseline_label: str = "target tracking"
    baseline_note: str = _DEFAULT_BASELINE_NOTE
    band: tuple[float, float] = (0.1, 0.9)
    eps: float = 0.01
    decisions_shown: int = 20

    def __post_init__(self) -> None:
        known = self.trace.targets
        for label, rows in (("forescale", self.forescale_rows), (self.baseline_label, self.baseline_rows)):
            unknown = sorted({r.target for r in rows} - set(known))
            if unknown:
                raise ValueError(
                    f"{label} decisions name unknown target(s) {', '.join(unknown)}; "
                    f"the trace has {', '.join(sorted(known))}"
                )
            # The actuation model needs time order; a stable sort keeps same-second rows in their order.
            object.__setattr__(
                self,
                "forescale_rows" if label == "forescale" else "baseline_rows",
                tuple(sorted(rows, key=lambda r: r.decided_at)),
            )
        unknown = sorted(set(self.forecasts) - set(known))
        if unknown:
            raise ValueError(f"forecasts for unknown target(s) {', '.join(unknown)}")
        lower, upper = self.band
        if not 0 < lower < 0.5 < upper < 1:
            raise ValueError(f"band must be (lower, upper) quantiles with 0 < lower < 0.5 < upper < 1, got {self.band}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if self.decisions_shown < 0:
            raise ValueError(f"decisions_shown must be >= 0, got {self.decisions_shown}")

    @cached_property
    def series(self) -> dict[str, tuple[StepSeries, StepSeries]]:
        """Per target, (forescale, baseline) step by step."""
        return {
            name: (
                per_step(self.trace, self.forescale_rows, name, self.eps),
                per_step(self.trace, self.baseline_rows, name, self.eps),
            )
            for name in self.trace.targets
        }

    @cached_property
    def summary(self) -> Summary:
        return summarize(self)


# --- the summary ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    """One policy's result on one target (or overall) over the report window.

    `mean_capacity` is the capacity in force averaged over the steps with data (environments or
    instances; None overall, where units differ). `capacity_cost_usd` is provisioned concurrency or
    instance-hours; `cost_usd` the full bill with Lambda duration charges (None for the oracle).
    `missed` are requests spilled to on-demand (Lambda) or above the fleet's capacity (SageMaker).
    `changes` counts capacity changes decided inside the report window (a decision asking for other than
    the capacity and type requested before it; None for the oracle, which is not an actuator).
    `slo_miss` is the target's SLO, the share of requests it may miss (None overall, where each target
    has its own).
    `instance_type` is the SageMaker type in force for most of the window (None for Lambda).
    """

    policy: str
    mean_capacity: float | None
    capacity_cost_usd: float
    cost_usd: float | None
    missed: float
    requests: float
    changes: int | None
    oracle_capacity_cost_usd: float
    instance_type: str | None = None
    slo_miss: float | None = None

    @property
    def miss_pct(self) -> float:
        return 100 * self.missed / self.requests if self.requests else 0.0

    @property
    def budget_spent(self) -> float | None:
        """The share of the SLO's error budget the misses spent over the window (1.0: all of it)."""
        return self.missed / (self.slo_miss * self.requests) if self.slo_miss and self.requests else None

    @property
    def within_slo(self) -> bool | None:
        """Whether the misses stayed within the SLO (None overall, or without requests)."""
        spent = self.budget_spent
        return None if spent is None else spent <= 1.0

    @property
    def vs_oracle(self) -> float | None:
        """Capacity cost ÷ the oracle's (1.0 is the physical limit)."""
        return self.capacity_cost_usd / self.oracle_capacity_cost_usd if self.oracle_capacity_cost_usd else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "mean_capacity": self.mean_capacity,
            "capacity_cost_usd": self.capacity_cost_usd,
            "capacity_vs_oracle": self.vs_oracle,
            "cost_usd": self.cost_usd,
            "requests": self.requests,
            "missed": self.missed,
            "miss_pct": self.miss_pct,
            "changes": self.changes,
            "instance_type": self.instance_type,
            "slo_miss": self.slo_miss,
            "slo_budget_spent": self.budget_spent,
            "within_slo": self.within_slo,
        }


@dataclass(frozen=True, slots=True)
class TargetSummary:
    """One row group of the summary table: demand, then forescale, the baseline and the oracle.

    `peak_rps` is the highest per-step rate, `mean_rps` the mean over the steps with data.
    `unit` is "env" (provisioned environments) or "inst" (instances); "" overall.
    """

    target: str
    kind: str
    unit: str
    description: str
    requests: float
    peak_rps: float
    mean_rps: float
    forescale: PolicyFigures
    baseline: PolicyFigures
    oracle: PolicyFigures

    @property
    def saved_usd(self) -> float:
        """Capacity cost the baseline paid minus forescale's (negative: forescale paid more)."""
        return self.baseline.capacity_cost_usd - self.forescale.capacity_cost_usd

    @property
    def saved_pct(self) -> float | None:
        cost = self.baseline.capacity_cost_usd
        return 100 * self.saved_usd / cost if cost else None

    @property
    def bill_saved_usd(self) -> float:
        """The same on the full bill, with Lambda duration and on-demand spill charges."""
        return (self.baseline.cost_usd or 0.0) - (self.forescale.cost_usd or 0.0)

    @property
    def miss_pct_delta(self) -> float:
        """forescale's miss % minus the baseline's, in percentage points (negative: forescale missed less)."""
        return self.forescale.miss_pct - self.baseline.miss_pct

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "unit": self.unit,
            "description": self.description,
            "requests": self.requests,
            "peak_rps": self.peak_rps,
            "mean_rps": self.mean_rps,
            "forescale": self.forescale.to_dict(),
            "baseline": self.baseline.to_dict(),
            "oracle": self.oracle.to_dict(),
            "saved_usd": self.saved_usd,
            "saved_pct": self.saved_pct,
            "bill_saved_usd": self.bill_saved_usd,
            "miss_pct_delta": self.miss_pct_delta,
        }


@dataclass(frozen=True, slots=True)
class Summary:
    targets: tuple[TargetSummary, ...]
    overall: TargetSummary
    window_start: int
    window_end: int
    step_s: int


def _kind_unit(kind: str) -> str:
    return "env" if kind == "lambda" else "inst"


def _policy(label: str, score: TargetScore, series: StepSeries, changes: int, slo: float) -> PolicyFigures:
    valid = ~series.gap
    return PolicyFigures(
        policy=label,
        mean_capacity=float(series.capacity[valid].mean()) if valid.any() else 0.0,
        capacity_cost_usd=score.capacity_cost_usd,
        cost_usd=score.cost_usd,
        missed=score.missed,
        requests=score.requests,
        changes=changes,
        oracle_capacity_cost_usd=score.oracle_capacity_cost_usd,
        instance_type=_dominant(series.instance_type, valid.tolist()),
        slo_miss=slo,
    )


def window_changes(rows: Sequence[DecisionRow], target: str, start: int, end: int) -> int:
    """Capacity changes of `target` decided in [start, end): rows that ask for another capacity or
    instance type than the row before them (which may be before the window: it sets what is in force)."""
    changes = 0
    prev: tuple[int, str | None] | None = None
    for r in rows:
        if r.target != target or r.decided_at >= end:
            continue
        key = (r.capacity, r.instance_type)
        if r.decided_at >= start and key != prev:
            changes += 1
        prev = key
    return changes


def window_decisions(rows: Sequence[DecisionRow], start: int, end: int) -> int:
    """Decisions recorded in [start, end), all targets."""
    return sum(start <= r.decided_at < end for r in rows)


def _dominant(types: Sequence[str | None], valid: Sequence[bool]) -> str | None:
    """The instance type in force for most of the steps with data (None for Lambda)."""
    counts: dict[str, int] = {}
    for ty, ok in zip(types, valid, strict=True):
        if ty and ok:
            counts[ty] = counts.get(ty, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else None


def summarize(report: Report) -> Summary:
    """The summary table's numbers: `evaluate()` for both policies, plus the oracle from `per_step`."""
    trace = report.trace
    ours = evaluate(trace, report.forescale_rows, report.eps)
    theirs = evaluate(trace, report.baseline_rows, report.eps)
    rows: list[TargetSummary] = []
    gaps = trace.gap_flags()
    for name, tt in trace.targets.items():
        mine, base = report.series[name]
        valid = ~mine.gap
        oracle_mean = float(mine.oracle_capacity[valid].mean()) if valid.any() else 0.0
        score = ours.targets[name]
        oracle = PolicyFigures(
            policy="oracle",
            mean_capacity=oracle_mean,
            capacity_cost_usd=score.oracle_capacity_cost_usd,
            cost_usd=None,
            missed=float(mine.oracle_missed.sum()),
            requests=score.requests,
            changes=None,
            oracle_capacity_cost_usd=score.oracle_capacity_cost_usd,
            instance_type=_dominant(mine.oracle_instance_type, valid.tolist()),
        )
        rates = [r / trace.step_s for r, g in zip(tt.requests, gaps, strict=True) if not g]
        seconds = len(rates) * trace.step_s
        slo = tt.to_target().slo_miss
        changes = [
            window_changes(rs, name, trace.start, trace.end) for rs in (report.forescale_rows, report.baseline_rows)
        ]
        rows.append(
            TargetSummary(
                target=name,
                kind=tt.kind,
                unit=_kind_unit(tt.kind),
                description=str(tt.params.get("description", "")),
                requests=score.requests,
                peak_rps=max(rates, default=0.0),
                mean_rps=score.requests / seconds if seconds else 0.0,
                forescale=_policy("forescale", score, mine, changes[0], slo),
                baseline=_policy(report.baseline_label, theirs.targets[name], base, changes[1], slo),
                oracle=oracle,
            )
        )
    ours_all, theirs_all = ours.overall(), theirs.overall()
    oracle_missed = sum(t.oracle.missed for t in rows)
    seconds_all = sum(not g for g in gaps) * trace.step_s
    overall = TargetSummary(
        target="overall",
        kind="all",
        unit="",
        description="all targets",
        requests=ours_all.requests,
        peak_rps=sum(t.peak_rps for t in rows),  # an upper bound: peaks need not coincide
        mean_rps=ours_all.requests / seconds_all if seconds_all else 0.0,
        forescale=_overall("forescale", ours_all, sum(t.forescale.changes or 0 for t in rows)),
        baseline=_overall(report.baseline_label, theirs_all, sum(t.baseline.changes or 0 for t in rows)),
        oracle=PolicyFigures(
            "oracle",
            None,
            ours_all.oracle_capacity_cost_usd,
            None,
            oracle_missed,
            ours_all.requests,
            None,
            ours_all.oracle_capacity_cost_usd,
        ),
    )
    return Summary(tuple(rows), overall, trace.start, trace.end, trace.step_s)


def _overall(label: str, s: TargetScore, changes: int) -> PolicyFigures:
    return PolicyFigures(
        label, None, s.capacity_cost_usd, s.cost_usd, s.missed, s.requests, changes, s.oracle_capacity_cost_usd
    )


# --- formatting -------------------------------------------------------------------------------------


def _int(x: float) -> str:
    return f"{round(x):,}"


def _compact(x: float) -> str:
    """A count for a person: 1,234 · 97.2 k · 19.37 M."""
    if abs(x) < 10_000:
        return f"{x:,.0f}" if abs(x) >= 10 or float(x).is_integer() else f"{x:.2g}"
    if abs(x) < 1_000_000:
        return f"{x / 1000:,.1f} k"
    return f"{x / 1_000_000:,.2f} M"


def _missed(x: float) -> str:
    """Missed requests, whole: the model's expected spill is fractional, a request is not ("< 1" above 0)."""
    if 0 < x < 0.5:
        return "< 1"
    return _compact(round(x))


def _budget(p: PolicyFigures) -> str:
    """The share of the SLO's error budget spent: "44 %" within it, "841 % (over)" beyond."""
    spent = p.budget_spent
    if spent is None:
        return "—"
    return f"{100 * spent:,.{0 if spent >= 0.1 else 1}f} %" + ("" if spent <= 1 else " (over)")


def _usd(x: float | None) -> str:
    if x is None:
        return "—"
    sign = "-" if x < 0 else ""
    a = abs(x)
    if a >= 1000:
        return f"{sign}${a:,.0f}"
    if a >= 1 or a == 0:
        return f"{sign}${a:,.2f}"
    return f"{sign}${a:.3f}"


def _pct(x: float | None) -> str:
    if x is None:
        return "—"
    if x == 0:
        return "0 %"
    return f"{x:.3f} %" if abs(x) < 0.1 else f"{x:.2f} %"


def _rate(x: float) -> str:
    """A request rate, with enough digits for a webhook called a few times an hour."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.2g}"


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def _capacity(x: float | None, unit: str) -> str:
    if x is None:
        return "—"
    return f"{x:,.1f} {unit}" if x >= 1 or x == 0 else f"{x:.2g} {unit}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%a %Y-%m-%d %H:%M")


def _days(x: float) -> str:
    if 0 < x < 1 / 24:
        return f"{round(1440 * x)} minutes"
    if 0 < x < 1:
        return f"{24 * x:.3g} hours"
    return f"{x:.3g} day" + ("" if x == 1 else "s")


def _versus(t: TargetSummary, baseline: str, slo_clause: str | None = None) -> str:
    """One sentence: what forescale saved (or cost) and missed, against the baseline, and its SLO."""
    saved = t.saved_usd
    pct = t.saved_pct
    if saved == 0:
        money = "the same capacity cost"
    elif saved > 0:
        money = f"saves {_usd(saved)}" + (f" ({pct:.1f} %)" if pct is not None else "")
    else:
        money = f"costs {_usd(-saved)} more" + (f" (+{-pct:.1f} %)" if pct is not None else "")
    ours, theirs = t.forescale.miss_pct, t.baseline.miss_pct
    if ours < theirs:
        factor = f", {theirs / ours:.1f}× fewer" if ours > 0 else ""
        spill = f"misses {_pct(ours)} of requests vs {_pct(theirs)}{factor}"
    elif ours > theirs:
        spill = f"misses more: {_pct(ours)} of requests vs {_pct(theirs)}"
    else:
        spill = f"misses the same {_pct(ours)}"
    return f"vs {baseline}: {money}; {spill}; {slo_clause or _slo_verdict(t.forescale)}"


def _kept(s: Summary) -> str:
    return f"{sum(bool(t.forescale.within_slo) for t in s.targets)} of {len(s.targets)} targets kept their SLO"


def _slo_verdict(p: PolicyFigures) -> str:
    """Whether `p` kept its SLO over the window, and the share of the error budget it spent."""
    if p.slo_miss is None or p.budget_spent is None:
        return "no SLO to keep" if p.slo_miss is None else "no requests, SLO kept"
    slo = f"SLO {100 * p.slo_miss:g} % missed"
    spent = f"{_budget(p).removesuffix(' (over)')} of the error budget spent"
    return f"{slo}: kept, {spent}" if p.within_slo else f"{slo}: NOT kept, {spent}"


def _headline(report: Report) -> str:
    f = report.facts
    parts = [
        f.source,
        f"{_days(f.simulated_days)} {'simulated' if f.command == 'demo' else 'replayed'}"
        + (f" after {_days(f.history_days)} of history" if f.history_days else ""),
    ]
    if f.seed is not None:
        parts.append(f"seed {f.seed}")
    parts.append(f"wall time {_duration(f.wall_s)}")
    return " · ".join(parts)


def format_summary(report: Report) -> str:
    """The fixed-width table the demo prints at the end: per target and overall, three policies each."""
    s = report.summary
    f = report.facts
    base = report.baseline_label
    lines = [
        f"{report.title}: {_headline(report)}",
        f"window {_when(s.window_start)} → {_when(s.window_end)} UTC, {s.step_s} s steps · in it: "
        f"{f.decisions:,} decisions, {s.overall.forescale.changes or 0:,} capacity changes "
        f"({base} {s.overall.baseline.changes or 0:,}) · {f.api_calls:,} API calls"
        + (f" · moto on 127.0.0.1:{f.moto_port}" if f.moto_port else ""),
        "",
    ]
    width = max(16, len(base), *(len(t.target) for t in s.targets))
    head = (
        f"{'target':<{width}}  {'demand':<20}  {'policy':<{width}}  {'mean cap':>10}  {'capacity $':>11}  "
        f"{'x oracle':>8}  {'missed':>10}  {'missed %':>9}  {'budget':>14}  {'changes':>7}"
    )
    lines += [head, "─" * len(head)]
    for t in (*s.targets, s.overall):
        demand = [f"{_compact(t.requests)} req", f"peak {_rate(t.peak_rps)} req/s" if t.kind != "all" else ""]
        for i, p in enumerate((t.forescale, t.baseline, t.oracle)):
            lines.append(
                f"{t.target if i == 0 else '':<{width}}  {demand[i] if i < 2 else '':<20}  {p.policy:<{width}}  "
                f"{_capacity(p.mean_capacity, t.unit):>10}  {_usd(p.capacity_cost_usd):>11}  {_ratio(p.vs_oracle):>8}  "
                f"{_missed(p.missed):>10}  {_pct(p.miss_pct):>9}  {_budget(p):>14}  "
                f"{'—' if p.changes is None else f'{p.changes:,}':>7}"
            )
        overall_slo = _kept(s) if t is s.overall else None
        lines.append(f"{'':<{width}}  {'':<20}  → {_versus(t, base, overall_slo)}")
        lines.append("")
    lines.append(
        "capacity $ = provisioned concurrency or instance-hours over the window; missed = requests spilled "
        "to on-demand (Lambda) or above the fleet's capacity (SageMaker); budget = the share of the SLO's error "
        "budget the misses spent (over 100 %: the SLO was not kept); changes = capacity changes in the window; "
        "oracle = perfect foresight, zero lead time."
    )
    return "\n".join(lines)


# --- charts -----------------------------------------------------------------------------------------


def _pick_quantile(available: Sequence[float], wanted: float) -> float | None:
    """`wanted` if present, else the nearest available on the same side of the median."""
    side = [q for q in available if (q < 0.5) == (wanted < 0.5) and q != 0.5]
    return min(side, key=lambda q: abs(q - wanted)) if side else None


def forecast_band(
    forecasts: Sequence[tuple[int, Forecast]], times: Sequence[int], band: tuple[float, float]
) -> tuple[list[float], list[float], list[float], set[float]]:
    """Lower, median and upper forecast rate (req/s) in force at each time; NaN where none covers it.

    In force means the newest forecast issued at or before the time. Returns the quantiles used too.
    A forecast without a quantile below (above) the median draws its median as that edge.
    """
    ordered = sorted(forecasts, key=lambda p: p[0])
    nan = float("nan")
    lower: list[float] = []
    median: list[float] = []
    upper: list[float] = []
    used: set[float] = set()
    j = -1
    for ts in times:
        while j + 1 < len(ordered) and ordered[j + 1][0] <= ts:
            j += 1
        fc = ordered[j][1] if j >= 0 else None
        mid = fc.rate_at(ts) if fc else None
        if fc is None or mid is None:
            lower.append(nan)
            median.append(nan)
            upper.append(nan)
            continue
        edges = []
        for wanted in band:
            q = _pick_quantile(list(fc.quantiles), wanted)
            if q is not None:
                used.add(q)
            edges.append(fc.rate_at(ts, q) if q is not None else mid)
        lower.append(edges[0] if edges[0] is not None else mid)
        median.append(mid)
        upper.append(edges[1] if edges[1] is not None else mid)
    return lower, median, upper, used


def _kind_line(tt: TraceTarget) -> str:
    p = tt.params
    if tt.kind == "lambda":
        return f"Lambda provisioned concurrency · {float(p['duration_ms']):g} ms · {int(p.get('memory_mb', 1024))} MB"
    types = p.get("instance_types", {})
    return (
        f"SageMaker endpoint · {len(types)} instance type{'s' if len(types) != 1 else ''} · "
        f"min {int(p.get('min_instances', 1))} instance{'s' if int(p.get('min_instances', 1)) != 1 else ''}"
    )


def _band_label(used: set[float], band: tuple[float, float]) -> str:
    lo = [q for q in used if q < 0.5]
    hi = [q for q in used if q > 0.5]
    lo_q = lo[0] if len(lo) == 1 else band[0]
    hi_q = hi[0] if len(hi) == 1 else band[1]
    return f"forecast p{100 * lo_q:g}–p{100 * hi_q:g} band"


def render_chart(report: Report, target: str, path: Path) -> Path:
    """Draw one target's chart as a PNG of `CHART_SIZE_PX` and return its path."""
    import matplotlib as mpl
    import matplotlib.dates as mdates
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    tt = report.trace.targets[target]
    mine, base = report.series[target]
    ts = report.summary.targets[[t.target for t in report.summary.targets].index(target)]
    sub = mine.step_s
    x = mine.times.astype("datetime64[s]")
    gap = mine.gap
    demand = np.where(gap, np.nan, mine.requests / sub)
    # A sparse target (most minutes without a call) reads on a log axis, each call a dot: on a linear
    # one its demand is a flat line at zero next to the capacity of even one environment.
    seen = mine.requests[~gap]
    sparse = bool(seen.size and (seen > 0).any() and (seen == 0).mean() >= 0.5)
    lower_rps, median_rps, upper_rps, used = forecast_band(
        report.forecasts.get(target, ()), [int(t) for t in mine.times], report.band
    )
    if sparse:  # on the log axis a zero median would draw a drop to the floor at every call
        median_rps = [v if v > 0 else math.nan for v in median_rps]
    # Capacity in its own unit (environments, instances); demand and the forecast in the same unit:
    # concurrent executions (req/s × duration) for Lambda, instances of the type in force for SageMaker.
    rps_per_unit = _rps_per_unit(tt, mine)
    demand = demand / rps_per_unit
    lower, median, upper = (np.asarray(v, dtype=float) / rps_per_unit for v in (lower_rps, median_rps, upper_rps))
    unit_name = "environments" if tt.kind == "lambda" else "instances"
    pct_slo = f"{100 * report.eps:g} %"

    with mpl.rc_context({"font.size": 10, "font.family": "DejaVu Sans"}):
        w, h = CHART_SIZE_PX
        fig = Figure(figsize=(w / CHART_DPI, h / CHART_DPI), dpi=CHART_DPI)
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(2, 1, height_ratios=(3.3, 1), hspace=0.08, left=0.06, right=0.92, top=0.83, bottom=0.1)
        ax = fig.add_subplot(grid[0])
        low = fig.add_subplot(grid[1], sharex=ax)

        for a, b in _runs(gap):
            for axis in (ax, low):
                axis.axvspan(x[a], x[b - 1] + np.timedelta64(sub, "s"), color=COLOURS["gap"], lw=0, zorder=0)
        handles: list[Any] = []
        if any(math.isfinite(v) for v in median):
            handles.append(
                ax.fill_between(
                    x, lower, upper, step="post", color=COLOURS["band"], lw=0, label=_band_label(used, report.band)
                )
            )
            (line,) = ax.plot(
                x,
                median,
                drawstyle="steps-post",
                color=COLOURS["median"],
                lw=0.8,
                ls=(0, (4, 2)),
                label="forecast median",
            )
            handles.append(line)
        if sparse:
            calls = demand > 0
            (line,) = ax.plot(
                x[calls],
                demand[calls],
                ls="none",
                marker="o",
                ms=2.5,
                color=COLOURS["demand"],
                label="demand (minutes with calls)",
            )
        else:
            (line,) = ax.plot(x, demand, drawstyle="steps-post", color=COLOURS["demand"], lw=0.8, label="demand")
        handles.insert(0, line)
        if _band_below_demand(demand, upper):
            ax.text(
                0.005,
                0.97,
                "forecast band below demand: the forecast in force was fitted on the history up to its issue "
                "(the first at the window's start);\nforescale asks for a refit when demand leaves the band "
                "(at most hourly) and sizes on the observed demand meanwhile; see How to read this",
                transform=ax.transAxes,
                ha="left",
                va="top",
                fontsize=8,
                color="#1e3a8a",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.5},
                zorder=5,
            )
        (line,) = ax.plot(
            x, mine.capacity, drawstyle="steps-post", color=COLOURS["forescale"], lw=1.8, label="forescale capacity"
        )
        handles.append(line)
        # Dashed and on top, so that where both policies hold the same capacity both lines still show.
        (line,) = ax.plot(
            x,
            base.capacity,
            drawstyle="steps-post",
            color=COLOURS["baseline"],
            lw=1.2,
            ls=(0, (5, 3)),
            label=_plain(f"{report.baseline_label} capacity"),
        )
        handles.append(line)
        # What each minute needed for the SLO: with random arrivals Lambda spills before the mean
        # concurrency reaches the environments, so demand below the green line can still miss.
        (line,) = ax.plot(
            x,
            np.where(gap, np.nan, mine.oracle_capacity),
            drawstyle="steps-post",
            color=COLOURS["oracle"],
            lw=0.9,
            ls=(0, (1, 1.5)),
            label="needed for the SLO (oracle)",
        )
        handles.append(line)
        breach = (mine.requests > 0) & (mine.missed > report.eps * mine.requests)
        if breach.any():
            (line,) = ax.plot(
                x[breach],
                np.full(int(breach.sum()), 0.015),
                ls="none",
                marker="|",
                ms=9,
                mew=1.2,
                color=COLOURS["spill"],
                transform=ax.get_xaxis_transform(),
                label=f"forescale missed > {pct_slo}",
            )
            handles.append(line)
        if gap.any():
            handles.append(Patch(color=COLOURS["gap"], label="no data (source gap)"))
        if sparse:
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.5 / sub / float(np.max(rps_per_unit)))
            ax.set_ylabel(f"{unit_name} (log scale)")
        else:
            ax.set_ylim(bottom=0)
            ax.set_ylabel(f"{unit_name} · demand in the same unit")
        ax.margins(x=0)
        ax.grid(True, color="#e5e7eb", lw=0.6)
        ax.tick_params(labelbottom=False)
        _secondary_axis(ax, tt, mine)

        # The share of each minute's requests missed, against the SLO: linear, so that the normal Erlang B
        # trickle stays small; the scale ends at the 99.5th percentile so one disaster cannot flatten the rest.
        with np.errstate(invalid="ignore", divide="ignore"):
            ours_pct = np.where(gap, np.nan, np.where(mine.requests > 0, 100 * mine.missed / mine.requests, 0.0))
            base_pct = np.where(gap, np.nan, np.where(base.requests > 0, 100 * base.missed / base.requests, 0.0))
        both = np.concatenate([ours_pct[~gap], base_pct[~gap]])
        top = min(100.0, max(3 * 100 * report.eps, float(np.percentile(both, 99.5)) if both.size else 0.0)) * 1.12
        low.fill_between(x, 0, ours_pct, step="post", color=COLOURS["spill"], alpha=0.35, lw=0)
        low.plot(x, ours_pct, drawstyle="steps-post", color=COLOURS["spill"], lw=0.8, label="forescale")
        low.plot(
            x,
            base_pct,
            drawstyle="steps-post",
            color=COLOURS["baseline"],
            lw=0.8,
            label=_plain(report.baseline_label),
        )
        low.axhline(100 * report.eps, color="#374151", lw=0.8, ls=(0, (2, 2)), label=f"SLO {pct_slo}")
        low.set_ylim(0, top)
        worst = float(np.nanmax(both)) if both.size else 0.0
        if worst > top:
            low.text(
                0.995,
                0.93,
                f"scale cut at {top / 1.12:.3g} %; worst minute {worst:.3g} %",
                transform=low.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                color="#4b5563",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.5},
                zorder=5,
            )
        low.set_ylabel("missed % / min")
        low.grid(True, color="#e5e7eb", lw=0.6)
        legend = low.legend(loc="upper left", fontsize=8.5, ncols=3, framealpha=0.85, edgecolor="none")
        legend.set_zorder(5)
        locator = mdates.AutoDateLocator(minticks=6, maxticks=14)  # type: ignore[no-untyped-call]
        low.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator, tz=UTC, show_offset=False)  # type: ignore[no-untyped-call]
        low.xaxis.set_major_formatter(formatter)
        low.set_xlabel("time (UTC)")

        fig.text(0.06, 0.955, target, fontsize=15, fontweight="bold", va="baseline")
        fig.text(0.06, 0.915, _kind_line(tt), fontsize=10, color="#4b5563", va="baseline")
        fig.text(
            0.92,
            0.955,
            _plain(
                f"forescale {_usd(ts.forescale.capacity_cost_usd)}, missed {_pct(ts.forescale.miss_pct)} · "
                + _slo_verdict(ts.forescale).replace(" missed:", ":")
            ),
            fontsize=11,
            ha="right",
            va="baseline",
            color=COLOURS["forescale"] if ts.forescale.within_slo is not False else COLOURS["spill"],
            fontweight="bold",
        )
        fig.text(
            0.92,
            0.915,
            _plain(
                f"{report.baseline_label} {_usd(ts.baseline.capacity_cost_usd)}, missed {_pct(ts.baseline.miss_pct)} · "
                f"oracle {_usd(ts.oracle.capacity_cost_usd)}"
            ),
            fontsize=10,
            ha="right",
            va="baseline",
            color="#4b5563",
        )
        ax.legend(
            handles=handles,
            loc="lower left",
            bbox_to_anchor=(0, 1.005),
            ncols=len(handles),
            fontsize=8.5,
            frameon=False,
            handlelength=1.8,
            columnspacing=1.2,
            borderaxespad=0.2,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # No metadata: matplotlib's default Software chunk carries its URL, and the report links to nothing.
        fig.savefig(path, format="png", dpi=CHART_DPI, metadata={"Software": None})
    return path


def _plain(text: str) -> str:
    """Text for matplotlib with mathtext off: a `$` would otherwise start a formula."""
    return text.replace("$", r"\$")


def _band_below_demand(demand: npt.NDArray[np.float64], upper: npt.NDArray[np.float64], steps: int = 60) -> bool:
    """Whether demand is above the band's upper edge for most of the first `steps` with a forecast."""
    import numpy as np

    seen = np.isfinite(upper) & np.isfinite(demand)
    first = np.flatnonzero(seen)[:steps]
    return bool(first.size >= steps // 2 and (demand[first] > upper[first]).mean() > 0.5)


def _rps_per_unit(tt: TraceTarget, mine: StepSeries) -> npt.NDArray[np.float64]:
    """Requests/s per capacity unit at each step: 1 / duration for a Lambda environment (one request at
    a time), the capacity of the type in force (else the main type) for a SageMaker instance."""
    import numpy as np

    if tt.kind == "lambda":
        return np.full(len(mine.times), 1000 / float(tt.params["duration_ms"]))
    types = tt.params["instance_types"]
    main = _dominant(mine.instance_type, [True] * len(mine.times)) or str(tt.params.get("instance_type", ""))
    fallback = float(types[main]["capacity_rps"]) if main in types else 1.0
    return np.array([float(types[ty]["capacity_rps"]) if ty in types else fallback for ty in mine.instance_type])


def _secondary_axis(ax: Any, tt: TraceTarget, mine: StepSeries) -> None:
    """A right axis in requests/s, where capacity units map linearly onto them."""
    if tt.kind == "lambda":
        d = float(tt.params["duration_ms"]) / 1000
        right = ax.secondary_yaxis("right", functions=(lambda c: c / d, lambda r: r * d))
        right.set_ylabel(f"requests / s (concurrent ÷ {d * 1000:g} ms)")
        return
    main = _dominant(mine.instance_type, [True] * len(mine.times))
    if main is None:
        return
    rps = float(tt.params["instance_types"][main]["capacity_rps"])
    right = ax.secondary_yaxis("right", functions=(lambda n: n * rps, lambda r: r / rps))
    right.set_ylabel(f"requests / s ({main}: {rps:g} req/s each)")


def _runs(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) index ranges where `flags` is true."""
    out: list[tuple[int, int]] = []
    start = None
    for i, f in enumerate(flags.tolist()):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(flags)))
    return out


# --- HTML -------------------------------------------------------------------------------------------
# The page's markup is in templates/ (Jinja2, autoescaped); here its values are formatted.

TEMPLATES = Path(__file__).parent / "templates"


@cache
def _templates() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _cards(report: Report) -> list[dict[str, str]]:
    o = report.summary.overall
    base = report.baseline_label
    saved = o.saved_usd
    pct = o.saved_pct
    return [
        {
            "key": "capacity cost saved" if saved >= 0 else "extra capacity cost",
            "value": _usd(saved) if saved >= 0 else f"+{_usd(-saved)}",
            "small": f"({abs(pct):.1f} %)" if pct is not None else "",
            "detail": f"forescale {_usd(o.forescale.capacity_cost_usd)} vs {base} {_usd(o.baseline.capacity_cost_usd)}",
        },
        {
            "key": "requests missed",
            "value": _pct(o.forescale.miss_pct),
            "small": "",
            "detail": f"{base} {_pct(o.baseline.miss_pct)} · oracle {_pct(o.oracle.miss_pct)} · "
            f"{_kept(report.summary)}",
        },
        {
            "key": "capacity vs oracle",
            "value": _ratio(o.forescale.vs_oracle),
            "small": "",
            "detail": f"{base} {_ratio(o.baseline.vs_oracle)} · oracle {_usd(o.oracle.capacity_cost_usd)}",
        },
        {
            "key": "capacity changes",
            "value": f"{o.forescale.changes or 0:,}",
            "small": "",
            "detail": f"{base} {o.baseline.changes or 0:,} · {report.facts.decisions:,} decisions recorded · "
            f"{report.facts.api_calls:,} API calls",
        },
    ]


def _policy_cells(p: PolicyFigures, unit: str, colour: str, css: str = "") -> dict[str, str]:
    return {
        "css": css,
        "colour": colour,
        "policy": p.policy,
        "mean_capacity": _capacity(p.mean_capacity, unit),
        "instance_type": p.instance_type or "",
        "capacity_cost": _usd(p.capacity_cost_usd),
        "vs_oracle": _ratio(p.vs_oracle),
        "missed": _missed(p.missed),
        "miss_pct": _pct(p.miss_pct),
        "budget": _budget(p),
        "changes": "—" if p.changes is None else f"{p.changes:,}",
    }


def _policies(t: TargetSummary) -> list[dict[str, str]]:
    return [
        _policy_cells(t.forescale, t.unit, COLOURS["forescale"]),
        _policy_cells(t.baseline, t.unit, COLOURS["baseline"]),
        _policy_cells(t.oracle, t.unit, COLOURS["oracle"], "oracle"),
    ]


def _verdict(t: TargetSummary, baseline: str) -> dict[str, str]:
    """`_versus`'s sentence in its three parts, each coloured: green where forescale did better."""
    saved = t.saved_usd
    ours, theirs = t.forescale.miss_pct, t.baseline.miss_pct
    head, _, rest = _versus(t, baseline).partition(": ")
    money, spill, slo = rest.split("; ")
    kept = t.forescale.within_slo
    return {
        "head": head,
        "money": money,
        "money_css": "better" if saved > 0 else "worse" if saved < 0 else "",
        "spill": spill,
        # Green only where forescale kept its SLO: missing less than target tracking is not enough.
        "spill_css": "worse" if kept is False else "better" if ours < theirs else "",
        "slo": slo,
        "slo_css": "worse" if kept is False else "better" if kept else "",
        "bill_ours": _usd(t.forescale.cost_usd),
        "bill_theirs": _usd(t.baseline.cost_usd),
    }


def _summary_rows(report: Report) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The summary table: one group per target (three policies and a verdict), and the overall footer."""
    s = report.summary
    targets = [
        {
            "name": t.target,
            "kind": _kind_short(t.kind),
            "requests": _compact(t.requests),
            "peak_rps": _rate(t.peak_rps),
            "mean_rps": _rate(t.mean_rps),
            "policies": _policies(t),
            "verdict": _verdict(t, report.baseline_label),
        }
        for t in s.targets
    ]
    overall = {"requests": _compact(s.overall.requests), "targets": len(s.targets), "policies": _policies(s.overall)}
    return targets, overall


def _kind_short(kind: str) -> str:
    return "Lambda · environments" if kind == "lambda" else "SageMaker · instances"


def _decision_view(r: DecisionRecord) -> dict[str, Any]:
    itype = ""
    if r.instance_type and r.instance_type != r.previous_instance_type:
        itype = f"{r.previous_instance_type or '?'} → {r.instance_type}"
    return {
        "decided_at": _when(r.decided_at),
        "direction": "up" if r.capacity > r.previous else "down" if r.capacity < r.previous else "",
        "previous": r.previous,
        "capacity": r.capacity,
        "instance_change": itype,
        "observed": "missing" if r.data_missing or r.observed_rps is None else _rate(r.observed_rps),
        "sized_for": _rate(r.demand_rps),
        "band": "—" if r.band is None else " / ".join(_rate(v) for v in r.band),
        "tags": list(r.shaped_by),
        "reason": r.reason,
        "status": r.status.value,
        "mode": r.mode.value,
    }


def _target_section(report: Report, t: TargetSummary, png: bytes) -> dict[str, Any]:
    mine = [r for r in report.records if r.target == t.target]
    latest = sorted(mine, key=lambda r: r.decided_at, reverse=True)[: report.decisions_shown]
    return {
        "name": t.target,
        "unit": t.unit,
        "kind_line": _kind_line(report.trace.targets[t.target]),
        "description": t.description,
        "png_base64": base64.b64encode(png).decode("ascii"),
        "decisions": [_decision_view(r) for r in latest],
        "decision_count": f"{len(mine):,}",
    }


def _facts(report: Report, files: Mapping[str, str]) -> list[tuple[str, str]]:
    f = report.facts
    s = report.summary
    return [
        ("command", f"forescale {f.command}"),
        ("workload", f.source),
        ("window", f"{_when(s.window_start)} → {_when(s.window_end)} UTC ({_days(f.simulated_days)})"),
        ("steps", f"{report.trace.steps:,} × {s.step_s} s"),
        ("history before the window", _days(f.history_days)),
        ("seed", "—" if f.seed is None else str(f.seed)),
        ("wall time", _duration(f.wall_s)),
        ("decisions recorded in the window", f"{f.decisions:,}"),
        ("AWS API calls", f"{f.api_calls:,}" + (f" (moto on 127.0.0.1:{f.moto_port})" if f.moto_port else "")),
        ("files", ", ".join(files.values())),
    ]


def page_context(report: Report, charts: Mapping[str, bytes], files: Mapping[str, str]) -> dict[str, Any]:
    """Every value `templates/report.html.j2` shows, formatted (strings and lists of them)."""
    from forescale import __version__

    s = report.summary
    targets, overall = _summary_rows(report)
    return {
        "title": report.title,
        "source": report.facts.source,
        "headline": _headline(report),
        "cards": _cards(report),
        "window_start": _when(s.window_start),
        "window_end": _when(s.window_end),
        "targets": targets,
        "overall": overall,
        "slo_pct": f"{100 * report.eps:g} %",
        "baseline_label": report.baseline_label,
        "baseline_note": report.baseline_note,
        "sections": [_target_section(report, t, charts[t.target]) for t in s.targets],
        "facts": _facts(report, files),
        "version": __version__,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_html(report: Report, charts: Mapping[str, bytes], files: Mapping[str, str]) -> str:
    """The whole report as one HTML document; `charts` maps each target to its PNG bytes."""
    return _templates().get_template("report.html.j2").render(page_context(report, charts, files))


# --- files ------------------------------------------------------------------------------------------


def _chart_name(target: str) -> str:
    """A safe file name for a target (target names may hold `/` or `:`)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target).strip(".")
    return f"{safe or 'target'}.png"


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write the report folder; returns the paths by role: html, summary, decisions, baseline_decisions,
    and `chart:<target>` for each chart."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    charts: dict[str, bytes] = {}
    for t in report.summary.targets:
        png = render_chart(report, t.target, out / _chart_name(t.target))
        paths[f"chart:{t.target}"] = png
        charts[t.target] = png.read_bytes()
    paths["decisions"] = out / "decisions.csv"
    write_decisions(list(report.forescale_rows), str(paths["decisions"]))
    paths["baseline_decisions"] = out / "baseline-decisions.csv"
    write_decisions(list(report.baseline_rows), str(paths["baseline_decisions"]))
    paths["summary"] = out / "summary.json"
    paths["html"] = out / "report.html"
    names = {k: p.name for k, p in paths.items()}
    paths["html"].write_text(render_html(report, charts, names), encoding="utf-8")
    paths["summary"].write_text(json.dumps(summary_dict(report, paths), indent=1) + "\n", encoding="utf-8")
    return paths


def summary_dict(report: Report, paths: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """`summary.json`: the summary table's numbers, the run facts and the written paths."""
    s = report.summary
    charts = {k.removeprefix("chart:"): str(p) for k, p in (paths or {}).items() if k.startswith("chart:")}
    return {
        "title": report.title,
        "facts": report.facts.to_dict(),
        "window": {
            "start": s.window_start,
            "end": s.window_end,
            "start_utc": datetime.fromtimestamp(s.window_start, UTC).isoformat(),
            "end_utc": datetime.fromtimestamp(s.window_end, UTC).isoformat(),
            "step_s": s.step_s,
            "steps": report.trace.steps,
            "gaps": [list(g) for g in report.trace.gaps],
        },
        "baseline": report.baseline_label,
        "eps": report.eps,
        "targets": {t.target: t.to_dict() for t in s.targets},
        "overall": s.overall.to_dict(),
        "paths": {
            **{k: str(p) for k, p in (paths or {}).items() if not k.startswith("chart:")},
            "charts": charts,
        },
    }


def trace_window(trace: Trace, start: int, end: int | None = None) -> Trace:
    """The steps of `trace` that start in [start, end): the report window after the history.

    `start` and `end` must fall on the step grid, so that no step is cut in two.
    """
    end = trace.end if end is None else end
    if (start - trace.start) % trace.step_s or (end - trace.start) % trace.step_s:
        raise ValueError(f"window [{start}, {end}) is not on the trace's {trace.step_s} s step grid from {trace.start}")
    if not trace.start <= start < end <= trace.end:
        raise ValueError(f"window [{start}, {end}) must be non-empty and inside the trace [{trace.start}, {trace.end})")
    a = (start - trace.start) // trace.step_s
    b = (end - trace.start) // trace.step_s
    targets = {k: TraceTarget(k, t.requests[a:b], t.params) for k, t in trace.targets.items()}
    gaps = tuple((max(g0, start), min(g1, end)) for g0, g1 in trace.gaps if g0 < end and g1 > start)
    return Trace(trace.step_s, start, b - a, targets, gaps, trace.meta, trace.path)
