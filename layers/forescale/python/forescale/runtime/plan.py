"""The plan service: for each target, restore its planner, feed the new samples, decide, record, emit.

Runs on `forescale.SamplesCollected` (every minute: one decision per target per step, the same step
grid as `forescale replay`) and on `forescale.ForecastReady` (a new forecast is loaded into the
planner; it decides only if that step has not been decided yet).

Idempotent under EventBridge redelivery and concurrent invocations: the decision id is the target
and the step (`DecisionRecord.id_for`), the decision write is create-only, and the planner snapshot
is written with optimistic locking, so two runs for the same step record one decision and the loser
of the race leaves the winner's state untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from forescale.adapters.events import EventPublisher
from forescale.adapters.state import ConflictError, ForecastCache, PlanInputs, StateStore
from forescale.domain import snapshot
from forescale.domain.decision import Decision
from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import make_policy
from forescale.runtime.models import (
    AppliedState,
    DecisionMadeDetail,
    DecisionRecord,
    DecisionStatus,
    Mode,
    TargetConfig,
)
from forescale.runtime.observability import logger

STEP_S = 60
# A change not in effect this long after it was decided was not applied (dry-run or paused at the
# time, refused by AWS, or changed by someone else): plan re-anchors on what AWS has and asserts its
# plan again. Longer than act's lease (120 s) plus a sweep, so an action still being worked on is left alone.
REASSERT_AFTER_S = 180
BATCH_TARGETS = 33  # 3 items per target: one BatchGetItem (100 keys) per 33 targets


@dataclass(slots=True)
class PlanSummary:
    decided: int = 0
    changed: int = 0
    duplicates: int = 0  # the step was already decided (redelivery, or a race another run won)
    forecasts_loaded: int = 0
    fresh_planners: int = 0
    unknown_targets: list[str] = field(default_factory=list)
    conflicts: int = 0
    reasserted: list[str] = field(default_factory=list)  # targets whose plan was not in effect in AWS
    records: list[DecisionRecord] = field(default_factory=list)


def urgency_rps(decision: Decision) -> float:
    """Requests/s expected to miss capacity if the decision is not applied: act does the largest first."""
    if decision.capacity <= decision.previous or decision.capacity == 0:
        return 0.0
    return decision.demand_rps * (decision.capacity - decision.previous) / decision.capacity


def build_planner(cfg: TargetConfig) -> Planner:
    """A planner exactly as `forescale replay` builds it for this target (same policy, step and guardrails)."""
    target = cfg.to_target()
    return Planner(target, make_policy(cfg.policy, target, STEP_S), cfg.guardrail_settings())


def restore_planner(
    store: StateStore, cfg: TargetConfig, step_now: int, warmup_s: int
) -> tuple[Planner, int, int, bool]:
    """The target's planner as last stored: (planner, version, observed_until, fresh).

    With no usable snapshot (a new target, or a config change that reshaped the policy) a fresh
    planner starts, to be warmed up from the stored samples of the last `warmup_s`.
    """
    blob, version, observed_until = store.get_planner(cfg.name)
    return restore_from(cfg, blob, version, observed_until, step_now, warmup_s)


def restore_from(
    cfg: TargetConfig, blob: bytes | None, version: int, observed_until: int, step_now: int, warmup_s: int
) -> tuple[Planner, int, int, bool]:
    """`restore_planner` from a snapshot already read."""
    planner = build_planner(cfg)
    if blob is not None:
        try:
            snapshot.load(planner, blob)
            return planner, version, observed_until, False
        except snapshot.SnapshotError:
            planner = build_planner(cfg)
    return planner, version, max(0, step_now - warmup_s), True


def decision_record(cfg: TargetConfig, d: Decision, forecast: Forecast | None, trigger: str) -> DecisionRecord:
    """The audit record of a planner decision, pending for an active target, dry-run otherwise."""
    return DecisionRecord(
        decision_id=DecisionRecord.id_for(cfg.name, d.decided_at),
        target=cfg.name,
        decided_at=d.decided_at,
        capacity=d.capacity,
        previous=d.previous,
        recommended=d.recommended,
        instance_type=d.instance_type if d.type_change else None,
        previous_instance_type=d.previous_instance_type,
        policy=d.policy,
        reason=d.reason,
        shaped_by=d.shaped_by,
        demand_rps=d.demand_rps,
        observed_rps=d.observed_rps,
        band=d.band,
        data_missing=d.data_missing,
        mode=cfg.mode,
        status=DecisionStatus.PENDING if cfg.mode is Mode.ACTIVE else DecisionStatus.DRY_RUN,
        forecast_model=forecast.model if forecast else None,
        forecast_issued_at=forecast.issued_at if forecast else None,
        inputs={"applied": d.inputs.get("applied"), "trigger": trigger, "config_version": cfg.version},
        updated_at=d.decided_at,
    )


def decision_made(cfg: TargetConfig, record: DecisionRecord, d: Decision) -> DecisionMadeDetail:
    return DecisionMadeDetail(
        decision_id=record.decision_id,
        target=cfg.name,
        decided_at=record.decided_at,
        capacity=record.capacity,
        previous=record.previous,
        instance_type=record.instance_type,
        mode=cfg.mode,
        reason=record.reason[:4000],
        urgency=urgency_rps(d),
    )


class PlanService:
    def __init__(
        self,
        store: StateStore,
        publisher: EventPublisher,
        warmup_s: int = 86_400,
        forecasts: ForecastCache | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.warmup_s = warmup_s
        self._forecasts = forecasts if forecasts is not None else ForecastCache(store)
        self._paused: bool | None = None

    def plan(self, targets: Sequence[str], now: int, reason: str = "samples") -> PlanSummary:
        """Decide the step starting at the minute containing `now` for each named target."""
        step_now = now - now % STEP_S
        summary = PlanSummary()
        self._paused = None  # read once per run, only if a target's plan is not in effect
        made: list[DecisionMadeDetail] = []
        inputs: dict[str, PlanInputs] = {}
        for i in range(0, len(targets), BATCH_TARGETS):
            inputs |= self.store.plan_inputs(targets[i : i + BATCH_TARGETS])
        restored: dict[str, tuple[TargetConfig, Planner, int, int]] = {}
        for name in targets:
            got = inputs[name]
            if got.config is None:
                summary.unknown_targets.append(name)
                continue
            planner, version, observed, fresh = restore_from(
                got.config, got.planner, got.planner_version, got.observed_until, step_now, self.warmup_s
            )
            summary.fresh_planners += int(fresh)
            restored[name] = (got.config, planner, version, observed)
        spans = {n: (observed, step_now) for n, (_, _, _, observed) in restored.items() if observed < step_now}
        histories = self.store.recent_histories(spans) if spans else {}
        for name, (cfg, planner, version, _observed) in restored.items():
            try:
                detail = self._plan_one(
                    cfg, planner, version, histories.get(name), inputs[name], step_now, reason, summary
                )
            except ConflictError as exc:
                summary.conflicts += 1  # another run stored this step first; its decision stands
                logger.warning(
                    "planner state changed under us; the other run's decision stands",
                    extra={"target": name, "error_code": exc.code},
                )
                continue
            if detail is not None:
                made.append(detail)
        if made:
            self.publisher.publish("forescale.DecisionMade", made)
        return summary

    def _not_in_effect(self, cfg: TargetConfig, planner: Planner, state: AppliedState, step_now: int) -> str:
        """Why the planner's last plan is not what AWS has ('' when it is, or may still become so)."""
        if cfg.mode is not Mode.ACTIVE or state.capacity is None or state.in_flight is not None:
            return ""
        same_type = cfg.kind.is_lambda or state.instance_type in (None, planner.requested_type)
        if state.capacity == planner.requested and same_type:
            return ""
        if planner.last_change_at is None:
            return ""  # nothing decided yet: what AWS has was set before forescale; its first change decides
        if step_now - planner.last_change_at < REASSERT_AFTER_S:
            return ""  # act is still on it
        if self._paused is None:
            self._paused = self.store.get_paused()[0]
        if self._paused:
            return ""  # nothing is applied while paused; resume brings the plan back
        have = f"{state.capacity}" + (f" × {state.instance_type}" if not same_type else "")
        return f"AWS has {have}, not the planned {planner.requested}: planning from what is in effect"

    def _plan_one(
        self,
        cfg: TargetConfig,
        planner: Planner,
        version: int,
        history: SeriesHistory | None,
        got: PlanInputs,
        step_now: int,
        reason: str,
        summary: PlanSummary,
    ) -> DecisionMadeDetail | None:
        last_decided = planner.last_decided_at
        if history is not None:
            rates = list(history.rates)
            skip = 0
            if planner.policy.history.last_ts is None:
                # A fresh planner: the minutes before the target's first sample are no history, not missing data.
                skip = next((i for i, r in enumerate(rates) if r is not None), len(rates))
            for i in range(skip, len(rates)):
                planner.observe(history.start + i * STEP_S, rates[i])
        forecast = self._forecasts.get_issued(cfg.name, got.forecast_issued_at)
        new_forecast = forecast is not None and forecast.issued_at > planner.forecast_issued_at
        if forecast is not None:
            if new_forecast:
                planner.use_forecast(forecast)
                summary.forecasts_loaded += 1
            else:
                planner.policy.use_forecast(forecast)  # the one it was using: snapshots do not carry forecasts
        if last_decided is not None and last_decided >= step_now:
            # This step is decided already (a ForecastReady after SamplesCollected, or a redelivery):
            # keep the new forecast for the next step, decide nothing twice.
            summary.duplicates += 1
            if new_forecast:
                self.store.put_planner(cfg.name, snapshot.dump(planner), step_now, version)
            return None
        state = got.state
        drift = self._not_in_effect(cfg, planner, state, step_now)
        if drift:
            summary.reasserted.append(cfg.name)
            planner.requested = state.capacity if state.capacity is not None else planner.requested
            if state.instance_type is not None and not cfg.kind.is_lambda:
                planner.requested_type = state.instance_type
        asked_before = planner.refit_requested
        decision = planner.decide(StepInput(now=step_now, applied=state.capacity))
        if planner.refit_requested and not asked_before:
            self.store.request_refit(cfg.name, step_now)
        summary.decided += 1
        record = decision_record(cfg, decision, forecast, reason)
        if drift:
            record = record.model_copy(update={"reason": (drift + "; " + record.reason)[:4000]})
        # The decision first: if we crash before the snapshot, the rerun recomputes the same decision
        # from the old snapshot and finds it stored (create-only), so nothing is decided twice.
        stored = self.store.put_decision(record) if decision.changed else False
        self.store.put_planner(cfg.name, snapshot.dump(planner), step_now, version)
        if not decision.changed:
            return None
        summary.changed += 1
        if not stored:
            summary.duplicates += 1
            summary.conflicts += 1
            logger.warning(
                "a decision for this step is stored already; it stands",
                extra={"decision_id": record.decision_id, "error_code": ConflictError.code},
            )
        summary.records.append(record)
        return decision_made(cfg, record, decision)
