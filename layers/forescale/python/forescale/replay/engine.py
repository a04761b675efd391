"""Walk a trace step by step through the planner, causally, and collect the decisions.

At the start of step i (`now = start + i*step_s`) the planner has seen steps 0..i-1 only, so every
decision uses data with `timestamp + step_s <= decided_at`. Forecasts are refitted on the same
rule: only the history before `now` goes to the forecaster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forescale.domain.decision import Decision
from forescale.domain.forecast import Forecast, Forecaster, SeriesHistory, upper_band
from forescale.domain.guardrails import GuardrailSettings
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import DAY_S, make_policy
from forescale.domain.targets import Target
from forescale.replay.actuation import ActuationModel
from forescale.replay.trace import Trace


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One line of the decisions CSV contract: `decided_at,target,capacity[,instance_type]`."""

    decided_at: int
    target: str
    capacity: int
    instance_type: str | None = None


@dataclass(slots=True)
class ReplayConfig:
    policy: str = "predictive"
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    settings: Callable[[Target], GuardrailSettings] | None = None
    refit_every_s: int = DAY_S
    min_refit_gap_s: int = 3600
    min_history_s: int = DAY_S
    max_history_days: int = 28
    forecaster: Forecaster | None = None
    keep_decisions: bool = False
    # The deployed path's extras, so replay can reproduce a run of the real pipeline exactly:
    # - `start_at`: decide only from this epoch second on (a target registered then); the planner
    #   is warmed up on the `warmup_s` before it, as the plan Lambda warms a fresh planner up from samples;
    # - `react`: after each step, demand above the forecast's upper band (q0.99) triggers the react
    #   path one second after the step starts, as collect's DemandAboveForecast does.
    start_at: int | None = None
    warmup_s: int = DAY_S
    react: bool = False


@dataclass(slots=True)
class ReplayResult:
    rows: list[DecisionRow]
    decisions: list[Decision]
    steps: int
    targets: int
    forecasts: int
    refits_on_drift: int
    wall_s: float
    forecast_s: float
    models: dict[str, str]


def _default_forecaster() -> Forecaster:
    from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter

    return StatsForecastAdapter()


def replay(trace: Trace, config: ReplayConfig | None = None) -> ReplayResult:
    """Replay `trace` through one policy for every target; returns the capacity changes in order."""
    cfg = config or ReplayConfig()
    t0 = time.perf_counter()
    step = trace.step_s
    targets = {name: tt.to_target() for name, tt in trace.targets.items()}
    planners: dict[str, Planner] = {}
    actuation: dict[str, ActuationModel] = {}
    for name, target in targets.items():
        policy = make_policy(cfg.policy, target, step, **dict(cfg.policy_params))
        settings = cfg.settings(target) if cfg.settings else None
        planners[name] = Planner(target, policy, settings)
        actuation[name] = ActuationModel(target, planners[name].requested, planners[name].requested_type)
    forecasting = cfg.policy == "predictive"
    forecaster = (cfg.forecaster or _default_forecaster()) if forecasting else None
    history: dict[str, list[float | None]] = {name: [] for name in targets}
    gaps = trace.gap_flags()
    rows: list[DecisionRow] = []
    kept: list[Decision] = []
    last_fit = -(10**12)
    target_fit: dict[str, int] = {}
    forecasts = drift_refits = 0
    forecast_s = 0.0
    models: dict[str, str] = {}
    min_hist_steps = cfg.min_history_s // step
    max_hist_steps = cfg.max_history_days * DAY_S // step
    horizon_s = cfg.refit_every_s + DAY_S
    requests = {name: tt.requests for name, tt in trace.targets.items()}

    def _keep(d: Decision, at: int, name: str) -> None:
        if d.changed:
            itype = d.instance_type if d.type_change else None
            rows.append(DecisionRow(at, name, d.capacity, itype))
            actuation[name].record(at, d.capacity, itype)
            if cfg.keep_decisions:
                kept.append(d)

    observe_from = -(10**12) if cfg.start_at is None else cfg.start_at - cfg.warmup_s
    deciding_from = -(10**12) if cfg.start_at is None else cfg.start_at
    surprises: list[tuple[str, float, float]] = []
    for i in range(trace.steps):
        now = trace.time(i)
        surprises.clear()
        if i > 0:
            ts = trace.time(i - 1)
            for name, planner in planners.items():
                rate = None if gaps[i - 1] else requests[name][i - 1] / step
                history[name].append(rate)
                if ts < observe_from or (rate is None and planner.policy.history.last_ts is None):
                    continue  # before the target was watched: no history, not missing data
                if cfg.react and now > deciding_from and rate is not None:
                    upper = _upper_band(planner.policy, ts)
                    if upper is not None and rate > upper:
                        surprises.append((name, rate, upper))
                planner.observe(ts, rate)
        if now < deciding_from:
            continue
        if forecaster is not None and i >= min_hist_steps:
            due = now - last_fit >= cfg.refit_every_s
            if due:
                names = list(planners)
            else:
                # Drift: refit only the targets that asked, each at most once per min_refit_gap_s.
                names = [
                    n
                    for n, p in planners.items()
                    if p.refit_requested and now - target_fit.get(n, last_fit) >= cfg.min_refit_gap_s
                ]
            if names:
                f0 = time.perf_counter()
                start = max(0, i - max_hist_steps)
                histories = [SeriesHistory(n, trace.time(start), step, history[n][start:]) for n in names]
                fresh = forecaster.forecast(histories, horizon_s)
                for n in names:
                    target_fit[n] = now
                    planners[n].refit_requested = False
                for n, fc in fresh.items():
                    planners[n].use_forecast(fc)
                    models[n] = fc.model
                forecast_s += time.perf_counter() - f0
                forecasts += 1
                drift_refits += int(not due)
                if due:
                    last_fit = now
        for name, planner in planners.items():
            applied, _ = actuation[name].at(now)
            _keep(planner.decide(StepInput(now=now, applied=applied)), now, name)
        for name, rate, upper in surprises:
            at = now + 1  # react decides just after the step decision, never on its key
            applied, _ = actuation[name].at(at)
            why = f"demand {rate:.3g} req/s beat the forecast's upper band {upper:.3g} req/s"
            _keep(planners[name].react(StepInput(now=at, applied=applied), rate, why), at, name)
        # Pre-scale points inside this step: one lead time before the next step starts.
        if i + 1 < trace.steps:
            inside = sorted(
                (trace.time(i + 1) - lead, name)
                for name, planner in planners.items()
                if (lead := planner.prescale_lead_s) is not None and 0 < lead < step
            )
            for at, name in inside:
                applied, _ = actuation[name].at(at)
                _keep(planners[name].prescale(StepInput(now=at, applied=applied)), at, name)
    return ReplayResult(
        rows=rows,
        decisions=kept,
        steps=trace.steps,
        targets=len(targets),
        forecasts=forecasts,
        refits_on_drift=drift_refits,
        wall_s=time.perf_counter() - t0,
        forecast_s=forecast_s,
        models=models,
    )


def _upper_band(policy: object, ts: int) -> float | None:
    """The band collect compares demand with, from the forecast the policy is using."""
    forecast: Forecast | None = getattr(policy, "forecast", None)
    return None if forecast is None else upper_band(forecast, ts)


def write_decisions(rows: list[DecisionRow], path: str) -> None:
    """Write the decisions CSV contract; the instance_type column only when some row changes type."""
    import csv

    with_type = any(r.instance_type for r in rows)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["decided_at", "target", "capacity", *(["instance_type"] if with_type else [])])
        for r in rows:
            w.writerow([r.decided_at, r.target, r.capacity, *([r.instance_type or ""] if with_type else [])])
