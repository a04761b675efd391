"""The plan service: for each target, bring its planner up to date, feed the new samples, decide, record, emit.

Runs on `forescale.SamplesCollected` (every minute: one decision per target per step, the same step
grid as `forescale replay`) and on `forescale.ForecastReady` (a new forecast is loaded into the
planner; it decides only if that step has not been decided yet).

State written on change, hot and cold apart (see `adapters/state.py`): a warm process keeps each
target's planner in memory (`PlannerCache`, keyed by the stored version), reads only the small hot
record every minute to check it is still current, and writes back the hot record with the step's
inputs appended to its journal (`StepRecord`). The planner's snapshot is checkpointed about once an
hour (staggered by name), on a new forecast, and when a planner starts. A process without the
planner in memory (a cold start, another process's write, a lost race) restores the checkpoint and
replays the journal through the same `apply_step` that planned those steps, so it holds exactly the
planner a warm process would: decisions equal `forescale replay`'s either way.

Targets are planned in batches of `BATCH_TARGETS`: read, restore, decide, write, then the batch's
planners are dropped (bar those the bounded cache keeps), so memory does not grow with the chunk.
One target failing (a bad stored value, a snapshot that does not fit, any exception) is logged with
its name and counted; the others go on.

Idempotent under EventBridge redelivery and concurrent invocations: the decision id is the target
and the step (`DecisionRecord.id_for`), the decision write is create-only, and the planner record
is written with optimistic locking, so two runs for the same step record one decision and the loser
of the race leaves the winner's state untouched.
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from forescale.adapters.events import EventPublisher
from forescale.adapters.state import ConflictError, ForecastCache, PlanInputs, PlannerRecord, StateStore
from forescale.domain import snapshot
from forescale.domain.decision import Decision
from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import make_policy
from forescale.runtime.models import (
    CLOCK_SKEW_S,
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
CHECKPOINT_EVERY_STEPS = 60  # a planner's snapshot is written about once an hour, staggered by name
MAX_JOURNAL_STEPS = 90  # ... and at the latest after this many steps (a missed stagger minute)
MAX_JOURNAL_RATES = 15  # a step that fed more minutes than this (a catch-up) is checkpointed
PLANNER_CACHE_MAX = 200  # planners a warm process keeps by default
PLANNER_MB = 1.0  # memory one held planner takes, rounded up (0.7-0.9 MB measured: tests/bench/plan_units.py)
PLANNER_CACHE_SHARE = 0.4  # of the function's memory; the rest is for the batch being planned and the runtime


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
    failed: list[str] = field(default_factory=list)  # targets not planned this run (each one logged)
    bad_samples: list[str] = field(default_factory=list)  # "<target>@<minute>": stored values read as missing
    snapshot_errors: list[str] = field(default_factory=list)  # targets whose stored planner could not be read
    checkpoints: int = 0
    restored: int = 0  # planners rebuilt from the table (not held in memory)


def urgency_rps(decision: Decision) -> float:
    """Requests/s expected to miss capacity if the decision is not applied: act does the largest first."""
    if decision.capacity <= decision.previous or decision.capacity == 0:
        return 0.0
    return decision.demand_rps * (decision.capacity - decision.previous) / decision.capacity


def build_planner(cfg: TargetConfig) -> Planner:
    """A planner exactly as `forescale replay` builds it for this target (same policy, step and guardrails)."""
    target = cfg.to_target()
    return Planner(target, make_policy(cfg.policy, target, STEP_S), cfg.guardrail_settings())


@dataclass(frozen=True, slots=True)
class StepRecord:
    """Everything one planning step fed the planner, so that it can be applied again exactly.

    `rates` are the minutes observed from `first_ts` on (None: missing); `forecast_issued_at` the
    forecast handed over; with `decide`, the step was decided with `applied` in effect, after
    re-anchoring on `anchor_capacity` (and `anchor_type`) when the plan was not in effect.
    """

    step: int
    first_ts: int
    rates: tuple[float | None, ...]
    forecast_issued_at: int | None
    decide: bool
    applied: int | None = None
    anchor_capacity: int | None = None
    anchor_type: str | None = None

    def to_json(self) -> list[object]:
        return [
            self.step,
            self.first_ts,
            list(self.rates),
            self.forecast_issued_at,
            int(self.decide),
            self.applied,
            self.anchor_capacity,
            self.anchor_type,
        ]

    @classmethod
    def from_json(cls, v: list[object]) -> StepRecord:
        step, first, rates, issued, decide, applied, anchor, anchor_type = v
        return cls(
            int(step),  # type: ignore[call-overload]
            int(first),  # type: ignore[call-overload]
            tuple(None if r is None else float(r) for r in rates),  # type: ignore[attr-defined]
            None if issued is None else int(issued),  # type: ignore[call-overload]
            bool(decide),
            None if applied is None else int(applied),  # type: ignore[call-overload]
            None if anchor is None else int(anchor),  # type: ignore[call-overload]
            None if anchor_type is None else str(anchor_type),
        )


def encode_journal(steps: Sequence[StepRecord]) -> bytes:
    """The journal as compact JSON (floats round-trip exactly), compressed."""
    return zlib.compress(json.dumps([s.to_json() for s in steps], separators=(",", ":")).encode(), 6) if steps else b""


def decode_journal(blob: bytes) -> list[StepRecord]:
    if not blob:
        return []
    try:
        return [StepRecord.from_json(v) for v in json.loads(zlib.decompress(blob))]
    except (zlib.error, ValueError, TypeError) as exc:
        raise snapshot.SnapshotError(f"planner journal is not readable: {exc}") from exc


def apply_step(planner: Planner, step: StepRecord, forecast: Forecast | None) -> Decision | None:
    """Feed one step's inputs to the planner and decide it (when `step.decide`): the one code path for
    planning a step live and for replaying it from the journal."""
    for i, rate in enumerate(step.rates):
        planner.observe(step.first_ts + i * STEP_S, rate)
    if forecast is not None:
        if forecast.issued_at > planner.forecast_issued_at:
            planner.use_forecast(forecast)
        else:
            planner.policy.use_forecast(forecast)  # the one it was using: snapshots do not carry forecasts
    if not step.decide:
        return None
    if step.anchor_capacity is not None:
        planner.requested = step.anchor_capacity
    if step.anchor_type is not None:
        planner.requested_type = step.anchor_type
    return planner.decide(StepInput(now=step.step, applied=step.applied))


def clean_rate(rate: float | None) -> tuple[float | None, bool]:
    """A stored rate as the planner may take it: a negative or non-number value is bad data, read as
    missing (never as zero). Returns (rate, whether it was bad)."""
    if rate is None or (isinstance(rate, int | float) and rate >= 0):
        return rate, False
    return None, True


class PlannerCache:
    """Planners held by a warm process, keyed by target and the stored version they are at.

    Bounded: once full it admits no new target (a process that sees more targets than it keeps then
    still holds a fixed share, where LRU would evict each one just before it is needed again).
    `take` removes the entry, so a planner that fails half-way through a step is never reused.
    """

    def __init__(self, max_planners: int = PLANNER_CACHE_MAX) -> None:
        self.max_planners = max_planners
        self._held: dict[str, tuple[tuple[int, str, int], Planner, list[StepRecord]]] = {}

    @classmethod
    def for_memory(cls, memory_mb: int) -> PlannerCache:
        """A cache sized to a share of the function's memory (MB)."""
        return cls(max(0, int(memory_mb * PLANNER_CACHE_SHARE / PLANNER_MB)))

    def take(self, name: str, key: tuple[int, str, int]) -> tuple[Planner, list[StepRecord]] | None:
        got = self._held.pop(name, None)
        return (got[1], got[2]) if got is not None and got[0] == key else None

    def keep(self, name: str, key: tuple[int, str, int], planner: Planner, journal: list[StepRecord]) -> None:
        if name in self._held or len(self._held) < self.max_planners:
            self._held[name] = (key, planner, journal)

    def __len__(self) -> int:
        return len(self._held)


def _cache_key(rec: PlannerRecord, cfg: TargetConfig) -> tuple[int, str, int]:
    return (rec.version, rec.token, cfg.version)


def checkpoint_due(name: str, step: int) -> bool:
    """The target's checkpoint minute: once every CHECKPOINT_EVERY_STEPS, at an offset set by its name
    so that a fleet registered together does not checkpoint in the same minute."""
    return (step // STEP_S + zlib.crc32(name.encode())) % CHECKPOINT_EVERY_STEPS == 0


@dataclass(slots=True)
class Restored:
    """A target's planner, up to date with its stored record."""

    planner: Planner
    version: int
    observed_until: int
    fresh: bool
    journal: list[StepRecord]
    checkpoint_version: int
    token: str


def restore_planner(
    store: StateStore, cfg: TargetConfig, step_now: int, warmup_s: int
) -> tuple[Planner, int, int, bool]:
    """The target's planner as last stored: (planner, version, observed_until, fresh).

    With no usable checkpoint (a new target, a config change that reshaped the policy, a snapshot that
    cannot be read: logged) a fresh planner starts from the capacity AWS has, to be warmed up from the
    stored samples of the last `warmup_s`.
    """
    rec = store.get_planner_record(cfg.name)
    blob = rec.legacy_snapshot
    if blob is None and rec.checkpoint_version:
        blob = checkpoint_of(cfg.name, rec, store.get_checkpoint(cfg.name))
    got = restore_from(cfg, rec, blob, step_now, warmup_s, ForecastCache(store), lambda: store.get_state(cfg.name))
    return got.planner, got.version, got.observed_until, got.fresh


def checkpoint_of(name: str, rec: PlannerRecord, stored: tuple[bytes, int] | None) -> bytes | None:
    """The checkpoint `rec` builds on: None if it is lost; ConflictError if another run has since
    written a newer one (the record and the checkpoint were read on either side of its write)."""
    if stored is None:
        return None
    if stored[1] != rec.checkpoint_version:
        raise ConflictError(f"planner checkpoint of {name} changed while it was read")
    return stored[0]


def restore_from(
    cfg: TargetConfig,
    rec: PlannerRecord,
    blob: bytes | None,
    step_now: int,
    warmup_s: int,
    forecasts: ForecastCache,
    applied_state: Callable[[], AppliedState],
    errors: list[str] | None = None,
) -> Restored:
    """The planner of `rec`: its checkpoint `blob` restored, and the journal replayed on it."""
    planner = build_planner(cfg)
    reason = ""
    if blob is not None:
        try:
            snapshot.load(planner, blob, not_after=step_now + CLOCK_SKEW_S)
            journal = decode_journal(rec.journal)
            for step in journal:
                issued = step.forecast_issued_at
                forecast = forecasts.get_at(cfg.name, issued) if issued is not None else None
                if issued is not None and forecast is None:
                    raise snapshot.SnapshotError(f"the forecast issued at {issued} that step {step.step} used is gone")
                apply_step(planner, step, forecast)
            # A snapshot kept inline by an older forescale has no checkpoint item yet: the next write makes one.
            checkpoint_version = rec.checkpoint_version if rec.legacy_snapshot is None else 0
            return Restored(planner, rec.version, rec.observed_until, False, journal, checkpoint_version, rec.token)
        except snapshot.SnapshotError as exc:
            reason = str(exc)
    elif rec.version:
        reason = f"its checkpoint (version {rec.checkpoint_version}) is missing"
    if reason:
        # Loud, never silent: the guardrails start again from what AWS has, but the history, the
        # stabilisation window and the calibration of this target are lost.
        logger.error(
            "stored planner could not be restored; starting a fresh planner from the capacity AWS has",
            extra={"target": cfg.name, "reason": reason[:500]},
        )
        if errors is not None:
            errors.append(cfg.name)
    planner = build_planner(cfg)
    state = applied_state()
    planner.start_from(step_now, state.capacity, state.instance_type)
    return Restored(planner, rec.version, max(0, step_now - warmup_s), True, [], 0, rec.token)


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
        planners: PlannerCache | None = None,
        batch_targets: int = BATCH_TARGETS,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.warmup_s = warmup_s
        self.batch_targets = batch_targets
        self._forecasts = forecasts if forecasts is not None else ForecastCache(store)
        self._planners = planners if planners is not None else PlannerCache()
        self._paused: bool | None = None

    def plan(self, targets: Sequence[str], now: int, reason: str = "samples") -> PlanSummary:
        """Decide the step starting at the minute containing `now` for each named target."""
        step_now = now - now % STEP_S
        summary = PlanSummary()
        self._paused = None  # read once per run, only if a target's plan is not in effect
        made: list[DecisionMadeDetail] = []
        for i in range(0, len(targets), self.batch_targets):
            # Read, restore, decide and write one batch; its planners are dropped before the next.
            made.extend(self._plan_batch(targets[i : i + self.batch_targets], step_now, reason, summary))
        if made:
            self.publisher.publish("forescale.DecisionMade", made)
        return summary

    def _plan_batch(
        self, names: Sequence[str], step_now: int, reason: str, summary: PlanSummary
    ) -> list[DecisionMadeDetail]:
        inputs = self.store.plan_inputs(names)
        known = {n: got for n, got in inputs.items() if got.config is not None}
        summary.unknown_targets.extend(n for n in names if inputs[n].config is None)
        held: dict[str, tuple[Planner, list[StepRecord]]] = {}
        for n, got in known.items():
            assert got.config is not None  # nosec B101  # filtered just above
            hit = self._planners.take(n, _cache_key(got.planner, got.config))
            if hit is not None:
                held[n] = hit
        wanted = [
            n
            for n, got in known.items()
            if n not in held and got.planner.checkpoint_version and got.planner.legacy_snapshot is None
        ]
        stored = self.store.get_checkpoints(wanted) if wanted else {}
        restored: dict[str, Restored] = {}
        for n, got in known.items():
            assert got.config is not None  # nosec B101
            rec = got.planner
            if n in held:
                planner, journal = held.pop(n)
                restored[n] = Restored(
                    planner, rec.version, rec.observed_until, False, journal, rec.checkpoint_version, rec.token
                )
                continue
            try:
                blob = rec.legacy_snapshot if rec.legacy_snapshot is not None else checkpoint_of(n, rec, stored.get(n))
                restored[n] = restore_from(
                    got.config,
                    rec,
                    blob,
                    step_now,
                    self.warmup_s,
                    self._forecasts,
                    lambda got=got: got.state,  # type: ignore[misc]
                    summary.snapshot_errors,
                )
            except ConflictError:
                summary.conflicts += 1  # another run wrote this target's planner meanwhile: its step stands
                continue
            except Exception as exc:  # one target's failure must not stop the others
                self._failed(n, "restore", exc, summary)
                continue
            summary.restored += 1
            summary.fresh_planners += int(restored[n].fresh)
        spans = {n: (r.observed_until, step_now) for n, r in restored.items() if r.observed_until < step_now}
        histories = self.store.recent_histories(spans) if spans else {}
        made: list[DecisionMadeDetail] = []
        for n, r in restored.items():
            got = known[n]
            assert got.config is not None  # nosec B101
            try:
                detail = self._plan_one(got.config, r, histories.get(n), got, step_now, reason, summary)
            except ConflictError as exc:
                summary.conflicts += 1  # another run stored this step first; its decision stands
                logger.warning(
                    "planner state changed under us; the other run's decision stands",
                    extra={"target": n, "error_code": exc.code},
                )
                continue
            except Exception as exc:  # one target's failure must not stop the others
                self._failed(n, "plan", exc, summary)
                continue
            if detail is not None:
                made.append(detail)
        return made

    @staticmethod
    def _failed(name: str, stage: str, exc: Exception, summary: PlanSummary) -> None:
        summary.failed.append(name)
        logger.exception(
            "could not plan this target; the others go on",
            extra={"target": name, "stage": stage, "error_type": type(exc).__name__, "error": str(exc)[:1000]},
        )

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

    def _new_rates(
        self, name: str, planner: Planner, history: SeriesHistory | None, summary: PlanSummary
    ) -> tuple[int, tuple[float | None, ...]]:
        """The newly collected minutes to feed: (first minute, rates), bad stored values read as missing."""
        if history is None:
            return 0, ()
        rates: list[float | None] = []
        for i, raw in enumerate(history.rates):
            rate, bad = clean_rate(raw)
            if bad:
                minute = history.start + i * STEP_S
                summary.bad_samples.append(f"{name}@{minute}")
                logger.error(
                    "stored sample is not a rate; read as missing data",
                    extra={"target": name, "minute": minute, "value": repr(raw)[:40]},
                )
            rates.append(rate)
        skip = 0
        if planner.policy.history.last_ts is None:
            # A fresh planner: the minutes before the target's first sample are no history, not missing data.
            skip = next((i for i, r in enumerate(rates) if r is not None), len(rates))
        return history.start + skip * STEP_S, tuple(rates[skip:])

    def _plan_one(
        self,
        cfg: TargetConfig,
        r: Restored,
        history: SeriesHistory | None,
        got: PlanInputs,
        step_now: int,
        reason: str,
        summary: PlanSummary,
    ) -> DecisionMadeDetail | None:
        planner = r.planner
        last_decided = planner.last_decided_at
        first_ts, rates = self._new_rates(cfg.name, planner, history, summary)
        forecast = self._forecasts.get_issued(cfg.name, got.forecast_issued_at)
        new_forecast = forecast is not None and forecast.issued_at > planner.forecast_issued_at
        issued = forecast.issued_at if forecast is not None else None
        if last_decided is not None and last_decided >= step_now:
            # This step is decided already (a ForecastReady after SamplesCollected, or a redelivery):
            # keep the new forecast for the next step, decide nothing twice.
            summary.duplicates += 1
            if new_forecast:
                summary.forecasts_loaded += 1
                apply_step(planner, StepRecord(step_now, first_ts, rates, issued, False), forecast)
                self._store(cfg, r, [], step_now, checkpoint=True, summary=summary)
            elif not rates:
                self._planners.keep(cfg.name, (r.version, r.token, cfg.version), planner, r.journal)  # unchanged
            return None
        state = got.state
        drift = self._not_in_effect(cfg, planner, state, step_now)
        anchor = anchor_type = None
        if drift:
            summary.reasserted.append(cfg.name)
            anchor = state.capacity
            if state.instance_type is not None and not cfg.kind.is_lambda:
                anchor_type = state.instance_type
        step = StepRecord(step_now, first_ts, rates, issued, True, state.capacity, anchor, anchor_type)
        summary.forecasts_loaded += int(new_forecast)
        asked_before = planner.refit_requested
        decision = apply_step(planner, step, forecast)
        assert decision is not None  # nosec B101  # a step with decide=True always decides
        if planner.refit_requested and not asked_before:
            self.store.request_refit(cfg.name, step_now)
        summary.decided += 1
        record = decision_record(cfg, decision, forecast, reason)
        if drift:
            record = record.model_copy(update={"reason": (drift + "; " + record.reason)[:4000]})
        # The decision first: if we crash before the planner record, the rerun recomputes the same
        # decision from the old record and finds it stored (create-only), so nothing is decided twice.
        stored = self.store.put_decision(record) if decision.changed else False
        journal = [*r.journal, step]
        checkpoint = (
            new_forecast
            or r.checkpoint_version == 0
            or len(rates) > MAX_JOURNAL_RATES
            or len(journal) >= MAX_JOURNAL_STEPS
            or checkpoint_due(cfg.name, step_now)
        )
        self._store(cfg, r, journal, step_now, checkpoint=checkpoint, summary=summary)
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

    def _store(
        self,
        cfg: TargetConfig,
        r: Restored,
        journal: list[StepRecord],
        step_now: int,
        checkpoint: bool,
        summary: PlanSummary,
    ) -> None:
        """Write the planner's record (a checkpoint or the journal), then hold the planner at its new version."""
        token = secrets.token_hex(4)
        if checkpoint:
            version = self.store.put_planner(cfg.name, snapshot.dump(r.planner), step_now, r.version, token)
            journal = []
            summary.checkpoints += 1
        else:
            version = self.store.put_planner_journal(
                cfg.name, encode_journal(journal), step_now, r.checkpoint_version, r.version, token
            )
        self._planners.keep(cfg.name, (version, token, cfg.version), r.planner, journal)
