"""`forescale status` and `forescale explain TARGET`: what forescale is doing, read from its table and AWS.

Reading (`read_status`, `read_explanation`) is kept apart from formatting (`format_status`,
`format_explanation`, `status_json`): the readers take a `StateStore` and a function that reads a
target's capacity from AWS (`aws_reader`, built on act's own actuators, so status shows exactly
what act would read), and return plain records; the formatters are pure.

A target's STATE, like `kubectl get scaledobject`'s READY/ACTIVE/FALLBACK/PAUSED, from the first
rule that holds:

- INVALID: its stored config no longer validates; forescale skips it (`targets remove` it, or add it again).
- PAUSED: the kill switch is set (`forescale pause`): act applies nothing, decisions are recorded only.
- FAILING: AWS refused the plan: the newest decision FAILED, or act is backing off a refused change
  (the ERRORS column and the lines under the table say what AWS answered).
- FALLBACK: forescale decides without its inputs. No demand sample in the last `SAMPLES_STALE_S`
  (collect reads each target every 5th minute; the planner then holds capacity and never scales in on
  missing data), or, for the predictive policy, no forecast yet or one issued more than
  `FORECAST_STALE_S` ago (a daily refit missed): the policy falls back to its reactive experts.
- ACTIVE: a change is under way: AWS is applying one (an in-flight operation), or the newest decision
  of an active target is not applied yet (pending, being applied, or deferred).
- READY: none of these: the plan is in effect.

Times are judged against `at` (now, unless `--at` or `FORESCALE_NOW` says otherwise: the local demo's
clock is simulated, so its sandbox is looked at as of its own time).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from forescale.adapters.state import StateStore
from forescale.domain.policies import size_for_rate
from forescale.domain.sizing import erlang_b, lambda_concurrency_for, offered_load, sagemaker_instances
from forescale.runtime.models import AppliedState, DecisionRecord, DecisionStatus, Mode, TargetConfig

DAY_S = 86_400
FORECAST_STALE_S = DAY_S + 3600  # forecasts are refit daily (staggered within the day); an hour late is a miss
SAMPLES_STALE_S = 15 * 60  # three of collect's 5-minute reads in a row brought nothing
SAMPLES_LOOKBACK_S = 3 * 3600  # how far back `last collect` looks (one batched read of hour items)
ERRORS_WINDOW_S = DAY_S  # FAILED decisions this recent are listed as errors
DECISIONS_READ = 20  # newest decisions read per target for status
OPEN = frozenset({DecisionStatus.PENDING, DecisionStatus.APPLYING, DecisionStatus.DEFERRED, DecisionStatus.IN_FLIGHT})
STATES = ("INVALID", "PAUSED", "FAILING", "FALLBACK", "ACTIVE", "READY")
_BUDGET_LEFT = re.compile(r"(-?\d+)% of the budget left")
_BUDGET_OVER = re.compile(r"budget overspent by (\d+)%")


@dataclass(frozen=True, slots=True)
class AwsCapacity:
    """What AWS reports for a target: `capacity` (environments or instances), a short `detail`, or `error`."""

    capacity: int | None = None
    detail: str = ""
    error: str | None = None


AwsRead = Callable[[TargetConfig], AwsCapacity]


@dataclass(frozen=True, slots=True)
class DecisionView:
    """The parts of a stored decision an operator reads."""

    decided_at: int
    capacity: int
    previous: int
    recommended: int
    status: str
    reason: str
    outcome: str | None
    shaped_by: tuple[str, ...]
    demand_rps: float
    instance_type: str | None = None

    @staticmethod
    def of(r: DecisionRecord) -> DecisionView:
        return DecisionView(
            r.decided_at,
            r.capacity,
            r.previous,
            r.recommended,
            r.status.value,
            r.reason,
            r.outcome,
            r.shaped_by,
            r.demand_rps,
            r.instance_type,
        )


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """One row of `forescale status` (times in epoch seconds, None: never)."""

    name: str
    state: str
    why: str
    kind: str = ""
    resource: str = ""
    mode: str = ""
    policy: str = ""
    in_aws: AwsCapacity | None = None  # None: not read (--no-aws, or an invalid config)
    recorded_capacity: int | None = None  # what act last recorded as in effect
    in_flight: str | None = None
    last_decision: DecisionView | None = None
    budget_left: float | None = None  # share of the SLO's error budget left, from the last decision's reason
    last_sample_at: int | None = None
    forecast_issued_at: int | None = None
    planned_until: int | None = None  # the planner has observed demand up to here
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusReport:
    as_of: int
    paused: bool
    pause_reason: str
    targets: tuple[TargetStatus, ...]


# ---------------------------------------------------------------- reading


def budget_left_from_reason(reason: str) -> float | None:
    """The error budget left (1.0 = all of it, negative = overspent) that the predictive policy writes
    into each decision's reason ("SLO 1.00%: 97% of the budget left ..."); None when it says nothing."""
    if m := _BUDGET_OVER.search(reason):
        return -int(m.group(1)) / 100
    if m := _BUDGET_LEFT.search(reason):
        return int(m.group(1)) / 100
    return None


def classify(
    cfg: TargetConfig,
    paused: bool,
    state: AppliedState,
    newest: DecisionRecord | None,
    last_sample_at: int | None,
    forecast_issued_at: int | None,
    at: int,
) -> tuple[str, str]:
    """(STATE, why) by the rules of the module docstring (for a target whose config validates)."""
    if paused:
        return "PAUSED", "the kill switch is set: act applies nothing until `forescale resume`"
    if state.backoff is not None and state.backoff.until > at:
        b = state.backoff
        return "FAILING", f"AWS refused {b.operation} ({b.error_code}); act retries after {_when(b.until)}"
    if newest is not None and newest.status is DecisionStatus.FAILED:
        return "FAILING", f"the newest decision ({newest.previous} -> {newest.capacity}) FAILED"
    if last_sample_at is None or at - last_sample_at > SAMPLES_STALE_S:
        seen = (
            f"no demand sample in the last {SAMPLES_LOOKBACK_S // 3600} h"
            if last_sample_at is None
            else f"no demand sample since {_when(last_sample_at)}"
        )
        return "FALLBACK", f"{seen}: capacity is held, never scaled in on missing data"
    if cfg.policy == "predictive":
        if forecast_issued_at is None:
            return "FALLBACK", "no forecast yet (the first needs a day of history): sizing from recent demand only"
        if at - forecast_issued_at > FORECAST_STALE_S:
            return "FALLBACK", f"the forecast is stale (issued {_when(forecast_issued_at)}): sizing from recent demand"
    if state.in_flight is not None:
        op = state.in_flight
        return "ACTIVE", f"AWS is applying a {op.operation} change to {op.capacity} (since {_when(op.started_at)})"
    if cfg.mode is Mode.ACTIVE and newest is not None and newest.status in OPEN:
        return "ACTIVE", f"decision {newest.previous} -> {newest.capacity} is {newest.status.value}"
    return "READY", "the plan is in effect" if cfg.mode is Mode.ACTIVE else "recommending (dry-run): nothing applied"


def _errors(cfg: TargetConfig, state: AppliedState, decisions: Sequence[DecisionRecord], at: int) -> list[str]:
    out = [
        f"{_when(d.decided_at)} decision {d.previous} -> {d.capacity} FAILED: {d.outcome or 'no outcome recorded'}"
        for d in decisions
        if d.status is DecisionStatus.FAILED and at - d.decided_at <= ERRORS_WINDOW_S
    ]
    if state.backoff is not None and state.backoff.until > at:
        b = state.backoff
        out.append(
            f"AWS refused {b.operation} ({b.error_code}) {b.failures} time(s); next try {_when(b.until)}: {b.message}"
        )
    return out


def _last_sample(rates: Sequence[float | None], start: int, step_s: int) -> int | None:
    for i in range(len(rates) - 1, -1, -1):
        if rates[i] is not None:
            return start + i * step_s
    return None


def read_status(store: StateStore, aws: AwsRead | None, at: int, only: str | None = None) -> StatusReport:
    """Every registered target's status (or only the one named) as of `at` (epoch s); `aws` None: capacity
    is not read from AWS."""
    paused, pause_reason = store.get_paused()
    records = [r for r in store.target_records() if only is None or r.name == only]
    valid = [r.config for r in records if r.config is not None]
    names = [c.name for c in valid]
    inputs = store.plan_inputs(names) if names else {}
    histories = store.recent_histories({n: (at - SAMPLES_LOOKBACK_S, at + 60) for n in names}) if names else {}
    rows: list[TargetStatus] = []
    for record in records:
        cfg = record.config
        if cfg is None:
            rows.append(TargetStatus(record.name, "INVALID", f"stored config is invalid: {record.error}"))
            continue
        got = inputs[cfg.name]
        h = histories.get(cfg.name)
        last_sample = _last_sample(h.rates, h.start, h.step_s) if h is not None else None
        decisions = store.list_decisions(cfg.name, limit=DECISIONS_READ)
        newest = decisions[0] if decisions else None
        state, why = classify(cfg, paused, got.state, newest, last_sample, got.forecast_issued_at, at)
        errors = _errors(cfg, got.state, decisions, at)
        in_aws = aws(cfg) if aws is not None else None
        if in_aws is not None and in_aws.error:
            errors.append(f"cannot read the capacity in AWS: {in_aws.error}")
        op = got.state.in_flight
        rows.append(
            TargetStatus(
                name=cfg.name,
                state=state,
                why=why,
                kind=cfg.kind.value,
                resource=cfg.resource_label,
                mode=cfg.mode.value,
                policy=cfg.policy,
                in_aws=in_aws,
                recorded_capacity=got.state.capacity,
                in_flight=None if op is None else f"{op.operation} to {op.capacity} since {_when(op.started_at)}",
                last_decision=DecisionView.of(newest) if newest else None,
                budget_left=budget_left_from_reason(newest.reason) if newest else None,
                last_sample_at=last_sample,
                forecast_issued_at=got.forecast_issued_at,
                planned_until=got.planner.observed_until or None,
                errors=tuple(errors),
            )
        )
    return StatusReport(at, paused, pause_reason, tuple(rows))


@dataclass(frozen=True, slots=True)
class PlannerView:
    """What the target's stored planner holds now (restored from its checkpoint and journal)."""

    requested: int
    last_decided_at: int | None
    last_rate_rps: float
    budget_left: float | None = None
    headroom: float | None = None  # the SLO controller's multiplier on the sized demand
    standing_floor_rps: float | None = None
    upper_band_rps: float | None = None  # demand above it is a surprise (react scales out)
    restored: bool = True  # False: nothing usable was stored; a fresh planner would start from AWS


@dataclass(frozen=True, slots=True)
class ForecastWindow:
    """The stored forecast over the lead window [start, end): the largest rate per quantile (requests/s)."""

    model: str
    issued_at: int
    start: int
    end: int
    peaks: dict[float, float]  # quantile -> largest rate over the window
    covers: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    as_of: int
    status: TargetStatus
    config: TargetConfig
    lead_s: int
    forecast: ForecastWindow | None
    planner: PlannerView | None
    decisions: tuple[DecisionView, ...] = field(default_factory=tuple)


class UnknownTargetError(LookupError):
    """`explain` of a name that is not registered; `known` lists the registered ones."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) if known else "none are registered"
        super().__init__(f"unknown target {name!r}; known targets: {listed}")
        self.known = tuple(known)


def read_explanation(store: StateStore, aws: AwsRead | None, name: str, at: int) -> Explanation:
    """Everything behind one target's capacity as of `at`; UnknownTargetError if it is not registered."""
    record = store.target_record(name)
    cfg = record.config if record is not None else None
    if cfg is None:  # not registered, or its stored config is invalid (`targets list` shows why)
        raise UnknownTargetError(name, [r.name for r in store.target_records() if r.config is not None])
    (row,) = read_status(store, aws, at, only=name).targets
    lead_s = cfg.to_target().lead_times.up_s
    from forescale.runtime.plan import STEP_S

    forecast = store.get_forecast(name)
    window = None
    if forecast is not None:
        start, end = at, at + lead_s + STEP_S
        peaks = {}
        for q in sorted(forecast.quantiles):
            values = [v for ts in range(start, end, STEP_S) if (v := forecast.rate_at(ts, q)) is not None]
            if values:
                peaks[q] = max(values)
        window = ForecastWindow(forecast.model, forecast.issued_at, start, end, peaks, forecast.covers(at))
    decisions = tuple(DecisionView.of(d) for d in store.list_decisions(name, limit=5))
    return Explanation(at, row, cfg, lead_s, window, _planner_view(store, cfg, at), decisions)


def _planner_view(store: StateStore, cfg: TargetConfig, at: int) -> PlannerView | None:
    """The stored planner, restored as plan would restore it (read-only); None if nothing is stored."""
    from forescale.domain.policies import PredictivePolicy
    from forescale.runtime.plan import restore_planner

    if not store.get_planner_record(cfg.name).version:
        return None
    planner, _, _, fresh = restore_planner(store, cfg, at, 0)
    policy = planner.policy
    view = PlannerView(planner.requested, planner.last_decided_at, policy.history.last, restored=not fresh)
    if isinstance(policy, PredictivePolicy):
        band = policy.upper_band
        view = PlannerView(
            view.requested,
            view.last_decided_at,
            view.last_rate_rps,
            budget_left=policy.budget_left,
            headroom=math.exp(policy.log_headroom),
            standing_floor_rps=(math.exp(policy.log_floor) - 1) * policy.active_level,
            upper_band_rps=band if math.isfinite(band) else None,
            restored=not fresh,
        )
    return view


# ---------------------------------------------------------------- formatting (pure)


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%a %Y-%m-%d %H:%M UTC")


def _clock(epoch: int | None, at: int) -> str:
    """`12:14 (3m ago)`; the date too when it is not `at`'s day."""
    if epoch is None:
        return "never"
    t, now = datetime.fromtimestamp(epoch, UTC), datetime.fromtimestamp(at, UTC)
    stamp = t.strftime("%H:%M") if t.date() == now.date() else t.strftime("%m-%d %H:%M")
    return f"{stamp} ({_ago(at - epoch)})"


def _ago(seconds: int) -> str:
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * DAY_S:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // DAY_S}d"


def _budget(left: float | None) -> str:
    if left is None:
        return "-"
    return f"{left:.0%}"  # negative: overspent


def _aws(c: AwsCapacity | None) -> str:
    if c is None:
        return "-"
    if c.error:
        return "error"
    return "none" if c.capacity is None else str(c.capacity)


def _decision_cell(d: DecisionView | None, at: int) -> str:
    if d is None:
        return "none yet"
    return f"{d.previous}->{d.capacity} {d.status} {_clock(d.decided_at, at)}"


COLUMNS = ("NAME", "KIND", "MODE", "STATE", "IN AWS", "LAST DECISION", "BUDGET LEFT", "COLLECTED", "FORECAST", "ERRORS")


def status_rows(report: StatusReport) -> list[tuple[str, ...]]:
    """The table's cells, one tuple per target, in COLUMNS order."""
    at = report.as_of
    return [
        (
            t.name,
            t.kind or "-",
            t.mode or "-",
            t.state,
            _aws(t.in_aws),
            _decision_cell(t.last_decision, at) if t.state != "INVALID" else "-",
            _budget(t.budget_left),
            _clock(t.last_sample_at, at) if t.state != "INVALID" else "-",
            (_clock(t.forecast_issued_at, at) if t.policy == "predictive" else "not used") if t.kind else "-",
            str(len(t.errors) + (t.state == "INVALID")),
        )
        for t in report.targets
    ]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]


def format_status(report: StatusReport, table: str) -> str:
    """The `forescale status` text: a header, the table, then each target's reason and errors."""
    switch = f"ON ({report.pause_reason or 'no reason given'})" if report.paused else "off"
    lines = [f"forescale status of table {table} as of {_when(report.as_of)}; kill switch: {switch}"]
    if not report.targets:
        lines.append("no targets registered: add one with `forescale targets add` (or `targets discover --apply`)")
        return "\n".join(lines)
    lines += format_table(COLUMNS, status_rows(report))
    lines.append("")
    for t in report.targets:
        lines.append(f"{t.name}: {t.state}: {t.why}")
        d = t.last_decision
        if d is not None:
            lines.append(f"  last decision {_when(d.decided_at)}, {d.previous} -> {d.capacity}: {_trim(d.reason, 300)}")
        if t.in_aws is not None and t.in_aws.detail:
            lines.append(f"  in AWS: {t.in_aws.detail}")
        lines += [f"  error: {e}" for e in t.errors]
    return "\n".join(lines)


def _trim(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def status_json(report: StatusReport) -> str:
    """The report as JSON for scripts (times in epoch seconds, `null` for never)."""
    out = asdict(report)
    out["states"] = {s: sum(t.state == s for t in report.targets) for s in STATES}
    return json.dumps(out, indent=2, default=str)


def _unit(cfg: TargetConfig) -> str:
    if cfg.kind.value == "lambda-provisioned":
        return "provisioned environments"
    if cfg.kind.value == "lambda-reserved":
        return "reserved concurrency"
    return "instances"


def sizing_lines(cfg: TargetConfig, demand_rps: float, instance_type: str | None) -> list[str]:
    """How `demand_rps` becomes capacity at the target's SLO, in words and numbers."""
    slo = cfg.slo_miss
    if cfg.kind.is_lambda:
        load = offered_load(demand_rps, cfg.duration_s)
        p = lambda_concurrency_for(load, slo)
        spill = erlang_b(p, load) if load > 0 else 0.0
        return [
            f"{demand_rps:.4g} req/s × {cfg.duration_s:g} s mean duration = {load:.4g} busy environments on "
            f"average (Little's law);",
            f"the smallest P with Erlang B(P, {load:.4g}) <= the SLO {slo:.2%} is {p} (spill {spill:.3%}).",
        ]
    it = cfg.to_target().instance(instance_type or cfg.instance_type)
    n = sagemaker_instances(demand_rps, it.capacity_rps, cfg.min_capacity)
    return [
        f"{demand_rps:.4g} req/s ÷ {it.capacity_rps:g} req/s per {it.name} at the latency SLO, rounded up "
        f"(at least min {cfg.min_capacity}) = {n} instances."
    ]


def format_explanation(e: Explanation) -> str:
    """`forescale explain`: why the target's capacity is what it is, in words and numbers."""
    t, cfg = e.status, e.config
    unit = _unit(cfg)
    lines = [
        f"{cfg.name}: {cfg.kind.value} on {cfg.resource_label}, {cfg.mode.value} mode, policy {cfg.policy}, "
        f"SLO {cfg.slo_miss:.2%} of requests missed at most; as of {_when(e.as_of)}",
        f"state {t.state}: {t.why}",
        "",
    ]
    if t.in_aws is None:
        lines.append("In AWS: not read (--no-aws).")
    elif t.in_aws.error:
        lines.append(f"In AWS: cannot read it: {t.in_aws.error}")
    else:
        lines.append(f"In AWS: {t.in_aws.capacity} {unit}" + (f" ({t.in_aws.detail})" if t.in_aws.detail else "") + ".")
    if t.recorded_capacity is not None:
        lines.append(f"act last recorded {t.recorded_capacity} {unit} in effect.")
    if t.in_flight:
        lines.append(f"In flight: {t.in_flight}.")
    f = e.forecast
    lines.append("")
    if f is None:
        lines.append("Forecast: none stored yet (the first needs a day of history).")
    else:
        peaks = ", ".join(f"p{round(q * 100)} {v:.4g}" for q, v in f.peaks.items())
        span = f"{datetime.fromtimestamp(f.start, UTC):%H:%M}-{datetime.fromtimestamp(f.end, UTC):%H:%M}"
        lines.append(
            f"Forecast ({f.model}, issued {_when(f.issued_at)}) over the lead window {span} "
            f"(lead {e.lead_s} s + one 60 s step): "
            + (f"largest rate {peaks} req/s." if peaks else "it does not cover this window.")
        )
    d = e.decisions[0] if e.decisions else None
    if d is None:
        lines.append("No decision stored yet (decisions are stored when capacity changes).")
    else:
        lines += ["", f"Sizing: the last decision sized for {d.demand_rps:.4g} req/s:"]
        lines += ["  " + s for s in sizing_lines(cfg, d.demand_rps, d.instance_type)]
        sized = size_for_rate(cfg.to_target(), d.demand_rps, d.instance_type)
        held = f", not {sized}: its reason below says what held or raised it" if sized != d.recommended else ""
        lines.append(f"  The policy recommended {d.recommended}{held}.")
        if d.shaped_by:
            lines.append(f"Guardrails: {', '.join(d.shaped_by)} changed it from {d.recommended} to {d.capacity}.")
        else:
            lines.append(f"Guardrails: none clipped it; decided {d.capacity}.")
        lines.append(f"Last decision {_when(d.decided_at)}: {d.previous} -> {d.capacity} {unit}, {d.status}.")
        lines.append(f"  why: {d.reason}")
        if d.outcome:
            lines.append(f"  act: {d.outcome}")
    p = e.planner
    lines.append("")
    if p is None:
        lines.append("Planner: nothing stored yet.")
    else:
        fresh = "" if p.restored else " (its stored state could not be restored: plan starts a fresh one)"
        lines.append(f"Planner{fresh}: wants {p.requested} {unit}; last demand {p.last_rate_rps:.4g} req/s.")
        if p.budget_left is not None:
            lines.append(
                f"SLO error budget: {_budget(p.budget_left)} left over the last 24 h; headroom ×{p.headroom:.2f}"
                + (
                    f", standing floor {p.standing_floor_rps:.3g} req/s"
                    if p.standing_floor_rps is not None and p.standing_floor_rps > 0
                    else ""
                )
                + (f"; demand above {p.upper_band_rps:.4g} req/s triggers react." if p.upper_band_rps else ".")
            )
    lines.append("")
    lines.append("Errors: none." if not t.errors else "Errors:")
    lines += [f"  {err}" for err in t.errors]
    return "\n".join(lines)


def explanation_json(e: Explanation) -> str:
    out: dict[str, Any] = {
        "as_of": e.as_of,
        "status": asdict(e.status),
        "config": e.config.model_dump(mode="json"),
        "lead_s": e.lead_s,
        "forecast": asdict(e.forecast) if e.forecast else None,
        "planner": asdict(e.planner) if e.planner else None,
        "decisions": [asdict(d) for d in e.decisions],
    }
    return json.dumps(out, indent=2, default=str)


# ---------------------------------------------------------------- AWS

AWS_SERVICES = ("lambda", "sagemaker", "application-autoscaling")


def aws_reader(store: StateStore, clients: Mapping[str, Any]) -> AwsRead:
    """Reads a target's capacity through act's own actuators (the same reads act reconciles with).

    `clients`: boto3 clients by service name (AWS_SERVICES).
    """
    from forescale.adapters.autoscaling import ApplicationAutoScaling
    from forescale.adapters.events import RecordingPublisher
    from forescale.adapters.lambda_capacity import LambdaCapacity, aws_error_facts
    from forescale.adapters.sagemaker_capacity import SageMakerCapacity
    from forescale.domain.ratelimit import CallGate, DeferredError, RejectedError
    from forescale.runtime.act import ActService

    gate = CallGate(aws_error_facts)
    act = ActService(  # only its actuators' reads are used: nothing is applied or published
        store,
        RecordingPublisher(),
        LambdaCapacity(clients["lambda"], gate),
        SageMakerCapacity(clients["sagemaker"], gate),
        ApplicationAutoScaling(clients["application-autoscaling"], gate),
    )

    def read(cfg: TargetConfig) -> AwsCapacity:
        try:
            actual = act.actuators[cfg.kind].read(cfg)
        except (DeferredError, RejectedError) as exc:
            return AwsCapacity(error=str(exc))
        detail = []
        if actual.provisioned is not None:
            pc = actual.provisioned
            detail.append(f"provisioned {pc.status}, {pc.allocated} of {pc.requested} allocated")
            if pc.reason:
                detail.append(pc.reason)
        if actual.reserved is not None:
            detail.append(f"function reserved concurrency {actual.reserved}")
        if actual.endpoint is not None:
            detail.append(f"endpoint {actual.endpoint.status}")
            if actual.endpoint.failure_reason:
                detail.append(actual.endpoint.failure_reason)
        if actual.instance_type:
            detail.append(actual.instance_type)
        return AwsCapacity(actual.capacity, ", ".join(detail))

    return read
