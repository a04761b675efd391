"""forescale's state: one DynamoDB table, and an in-memory twin with the same behaviour for tests.

Key design (`PK`, `SK` strings; one table; TTL attribute `expiration`, shared with Powertools
Idempotency records, which live under `PK = idempotency#<function>`):

- target config: `TARGET#<name>` / `CONFIG`; `gsi1pk = "TARGET"`, `gsi1sk = <name>` (index `gsi1`)
  lists the targets; `version`.
- samples: `TARGET#<name>` / `SAMPLES#<hour epoch s>`, one item per hour; minute `mm` in attributes
  `r<mm>` (rate, requests/s), `d<mm>` (duration ms), `c<mm>` (concurrency), `s<mm>` (spillover),
  `t<mm>` (throttles), `l<mm>` (latency ms), `g<mm>` (GPU %); TTL.
- forecast meta: `TARGET#<name>` / `FORECAST`: `issued_at`, `model`, `previous_at`,
  `refit_requested_at` (set by react and plan, cleared by a new forecast); a few hundred bytes, read
  every minute by plan and collect. The forecast itself (quantile paths as compressed doubles, about
  125 KB) is `TARGET#<name>` / `FORECAST#<issued_at:010d>`: written once per issue, read only when a
  process has not decoded that issue yet; the current and the previous issue are kept (a planner
  catching up from its checkpoint may need the one it used before).
- planner, hot: `TARGET#<name>` / `PLANNER`: `version` (the optimistic lock), `token` (who wrote that
  version), `observed_until`, `checkpoint_version`, and `journal`: the inputs of every step planned
  since the checkpoint (rates fed, forecast issue, capacity in effect), a few KB at most. Written
  every minute; the planner itself stays in the plan process's memory.
- planner, cold: `TARGET#<name>` / `PLANNER#CHECKPOINT`: the planner's snapshot (`blob`, about 65 KB)
  and the `version` it was written at; rewritten about once an hour (staggered by name), on a new
  forecast and when a planner starts, together with the hot item in one transaction. Restoring it
  and replaying the journal rebuilds exactly the planner a warm process holds.
- decision: `TARGET#<name>` / `DECISION#<decided_at:010d>`: the audit trail; `status` moves by
  conditional updates; TTL 400 days.
- applied state: `TARGET#<name>` / `STATE`: capacity in effect, in-flight operation, `version`.
- global control: `GLOBAL` / `CONTROL`: `paused` (the kill switch), `reason`, `updated_at`; no function writes
  the `GLOBAL` partition (IAM scopes writes by partition), only the operator CLI.
- act's open work: `ACT#OPEN` / `<name>`, one small item per target with an open decision or an
  in-flight operation (`decided_at`, `urgency` requests/s, `due_at`); act's sweep Queries this one
  partition instead of every target's decisions. `ACT#BOUNDS` / `<name>`: the user's own Application
  Auto Scaling bounds, kept apart from the target's items so that they outlive `targets remove`.
  `ACT#ROTATION` / `CURSOR`: where the sweep's reconcile rotation stopped (`after`, a target name).

Every write that can race is conditional: config and state on `version`, decisions on their
`status`, new decisions on `attribute_not_exists`. A lost race raises `ConflictError`; a redelivered
decision write returns False rather than writing twice.
"""

from __future__ import annotations

import json
import math
import struct
import threading
import zlib
from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.runtime.models import (
    AppliedState,
    DecisionRecord,
    DecisionStatus,
    DemandSampleDetail,
    TargetConfig,
    UserBounds,
    validation_problems,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

HOUR_S = 3600
RECENT_SPAN_S = 3 * HOUR_S  # spans up to this long are read as hour items in a batch, longer ones queried
BATCH_GET_MAX = 100  # keys per BatchGetItem (AWS limit)
BATCH_WRITE_MAX = 25  # requests per BatchWriteItem (AWS limit)
MAX_FIELDS_PER_UPDATE = 150  # keeps an UpdateExpression well under DynamoDB's 4 KB expression limit
DECISION_TTL_S = 400 * 86_400
CHECKPOINT_SK = "PLANNER#CHECKPOINT"
OPEN_WORK_PK = "ACT#OPEN"  # act's index of targets with open work
USER_BOUNDS_PK = "ACT#BOUNDS"  # the user's own autoscaling bounds forescale must give back
# Where act's reconcile rotation stopped. Not under GLOBAL: a role that may write there could overwrite
# the kill switch (`GLOBAL` / `CONTROL`), and IAM's LeadingKeys cannot tell sort keys apart.
ROTATION_PK = "ACT#ROTATION"
SAMPLE_FIELDS = {
    "r": "rate_rps",
    "d": "duration_ms",
    "c": "concurrency",
    "s": "spillover",
    "t": "throttles",
    "l": "latency_ms",
    "g": "gpu_utilization",
}


@dataclass(frozen=True, slots=True)
class PlannerRecord:
    """A target's stored planner, hot part: what plan reads every minute (a few KB at most).

    `version` 0 means nothing is stored. The checkpoint (the planner's snapshot) is a separate item,
    read only by a process that does not hold this exact version in memory (`token` tells versions
    written by different processes apart after a target is removed and added again).
    """

    version: int = 0
    observed_until: int = 0
    checkpoint_version: int = 0  # the version at which the checkpoint was written (0: none)
    journal: bytes = b""  # the steps planned since the checkpoint, in plan's encoding
    token: str = ""
    legacy_snapshot: bytes | None = None  # a snapshot stored inline by an older forescale


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What plan reads per target before deciding (one batched read in DynamoDB)."""

    config: TargetConfig | None
    planner: PlannerRecord
    state: AppliedState
    forecast_issued_at: int | None


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """A stored target config as read: `config` when it validates, else None and `error` says why.

    A config written by an older version or by hand may no longer validate; it must not stop the
    other targets, and the operator must still be able to see it (`raw`) and remove it.
    """

    name: str
    config: TargetConfig | None
    raw: str
    error: str | None = None


def _target_record(name: str, raw: Any) -> TargetRecord:
    """Parse a stored config (the item's `config` attribute; anything, if edited by hand)."""
    raw = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    try:
        return TargetRecord(name, TargetConfig.model_validate_json(raw), raw)
    except ValidationError as exc:
        return TargetRecord(name, None, raw, validation_problems(exc))


def _report_invalid(record: TargetRecord) -> None:
    """An ERROR log line and an `InvalidTargetConfigs` metric (dimension `target`) naming the target and field."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    from forescale.runtime.observability import NAMESPACE, logger

    logger.error(
        f"target {record.name}: its stored config is invalid and is skipped: {record.error}",
        extra={"target": record.name, "error": record.error},
    )
    with single_metric(name="InvalidTargetConfigs", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="target", value=record.name[:250] or "?")


@dataclass(frozen=True, slots=True)
class OpenWork:
    """act's note that a target has work left: its newest open decision or in-flight operation."""

    target: str
    decided_at: int  # the decision it is about
    urgency: float = 0.0  # requests/s expected to miss capacity while it waits
    due_at: int = 0  # not worth looking at before (a backoff, an allocation that takes a minute)


class ConflictError(Exception):
    """A conditional write lost a race (someone else changed the item first)."""

    code = "ConditionalCheckFailedException"  # what DynamoDB answers; the in-memory twin raises the same


class StateStore(ABC):
    """The port: everything the runtime reads and writes."""

    # -- targets
    @abstractmethod
    def put_target(self, cfg: TargetConfig, expected_version: int | None = None) -> TargetConfig:
        """Store `cfg` with version+1. `expected_version=None` creates (fails if it exists)."""

    @abstractmethod
    def get_target(self, name: str) -> TargetConfig | None: ...

    def get_targets(self, names: Sequence[str]) -> dict[str, TargetConfig]:
        """The configs of `names` that are registered and valid (the others are absent)."""
        found = {name: self.get_target(name) for name in dict.fromkeys(names)}
        return {name: cfg for name, cfg in found.items() if cfg is not None}

    def plan_inputs(self, names: Sequence[str]) -> dict[str, PlanInputs]:
        """Config, hot planner record, applied state and forecast issue time of each target, read together."""
        return {
            n: PlanInputs(self.get_target(n), self.get_planner_record(n), self.get_state(n), self.forecast_meta(n)[0])
            for n in names
        }

    def get_checkpoints(self, names: Sequence[str]) -> dict[str, tuple[bytes, int]]:
        """`get_checkpoint` of many targets at once; a target without one is left out."""
        return {n: got for n in names if (got := self.get_checkpoint(n)) is not None}

    def forecast_metas(self, names: Sequence[str]) -> dict[str, tuple[int | None, int | None]]:
        """`forecast_meta` of many targets at once."""
        return {n: self.forecast_meta(n) for n in names}

    def recent_histories(self, spans: dict[str, tuple[int, int]]) -> dict[str, SeriesHistory]:
        """One-minute rates of each target over its [start, end) span (plan's newly collected minutes)."""
        return {n: self.load_history(n, a, b, 60) for n, (a, b) in spans.items()}

    @abstractmethod
    def list_targets(self) -> list[TargetConfig]: ...

    def target_record(self, name: str) -> TargetRecord | None:
        """The stored config of `name` as read, valid or not (None: not registered)."""
        cfg = self.get_target(name)
        return None if cfg is None else TargetRecord(cfg.name, cfg, cfg.model_dump_json())

    def target_records(self) -> list[TargetRecord]:
        """Every stored config as read, valid or not, by name."""
        return [TargetRecord(c.name, c, c.model_dump_json()) for c in self.list_targets()]

    @abstractmethod
    def delete_target(self, name: str) -> None:
        """Remove the config, planner and forecast; decisions stay as the audit trail. The applied state
        (`STATE`, what AWS had) stays too: a target removed and added again starts its guardrails from
        that capacity, not from 0, and act's first claim reads AWS back if it is stale."""

    # -- samples
    @abstractmethod
    def put_samples(self, samples: Sequence[DemandSampleDetail], ttl_s: int) -> None:
        """Store one-minute samples (rate = requests / period). A later write for a minute overwrites."""

    def merge_samples(self, samples: Sequence[DemandSampleDetail], ttl_s: int) -> None:
        """`put_samples` for many targets at once (collect's minute): the same result, in fewer, batched
        writes where the store has them. Samples pushed for the same target-hour in the same instant
        may be lost (a target takes its demand from one source)."""
        self.put_samples(samples, ttl_s)

    @abstractmethod
    def import_samples(self, samples: Sequence[DemandSampleDetail], ttl_s: int) -> None:
        """Backfill history: store whole target-hours, replacing whatever those hours held. For importing
        history into hours collect has not written (a new target, a demo); `put_samples` merges instead."""

    @abstractmethod
    def load_history(self, name: str, start: int, end: int, step_s: int = 60) -> SeriesHistory:
        """Rates (requests/s) on the grid [start, end); None where no sample was stored."""

    @abstractmethod
    def load_metric(self, name: str, field: str, start: int, end: int) -> list[float | None]:
        """One stored sample field (a key of SAMPLE_FIELDS' values) per minute of [start, end)."""

    # -- forecasts
    @abstractmethod
    def put_forecast(self, forecast: Forecast) -> None: ...

    @abstractmethod
    def get_forecast(self, name: str) -> Forecast | None: ...

    @abstractmethod
    def forecast_meta(self, name: str) -> tuple[int | None, int | None]:
        """(issued_at of the stored forecast, when a refit was last requested); None where absent."""

    def get_forecast_at(self, name: str, issued_at: int) -> Forecast | None:
        """The forecast of that issue, while it is kept (the current and the previous one)."""
        f = self.get_forecast(name)
        return f if f is not None and f.issued_at == issued_at else None

    @abstractmethod
    def request_refit(self, name: str, at: int) -> None:
        """Ask the forecaster to refit this target (drift or panic); a new forecast clears it.
        Writes the small forecast meta only, never the forecast."""

    # -- planner: a hot record every minute, a checkpoint rarely
    @abstractmethod
    def get_planner_record(self, name: str) -> PlannerRecord:
        """The hot planner record (PlannerRecord() if none is stored)."""

    @abstractmethod
    def get_checkpoint(self, name: str) -> tuple[bytes, int] | None:
        """(snapshot, the version it was written at) of the stored checkpoint, None if there is none."""

    def get_planner(self, name: str) -> tuple[bytes | None, int, int]:
        """(latest checkpoint, version, observed_until); (None, 0, 0) if none is stored. The checkpoint
        may be older than `observed_until`: `runtime.plan.restore_planner` replays the journal on it."""
        rec = self.get_planner_record(name)
        if rec.version == 0:
            return None, 0, 0
        if rec.legacy_snapshot is not None:
            return rec.legacy_snapshot, rec.version, rec.observed_until
        got = self.get_checkpoint(name)
        return (got[0] if got else None), rec.version, rec.observed_until

    @abstractmethod
    def put_planner(  # nosec B107  # `token` names the writing plan process, not a credential
        self, name: str, blob: bytes, observed_until: int, expected_version: int, token: str = ""
    ) -> int:
        """Checkpoint: store a snapshot and an empty journal together, if the stored version is still
        `expected_version`; returns the new version. ConflictError if another run wrote first."""

    @abstractmethod
    def put_planner_journal(
        self, name: str, journal: bytes, observed_until: int, checkpoint_version: int, expected_version: int, token: str
    ) -> int:
        """Hot write only: the journal since checkpoint `checkpoint_version`, if the stored version is
        still `expected_version`; returns the new version. ConflictError if another run wrote first."""

    # -- decisions
    @abstractmethod
    def put_decision(self, record: DecisionRecord) -> bool:
        """Write a new decision; False (nothing written) if that decision id already exists."""

    @abstractmethod
    def get_decision(self, name: str, decided_at: int) -> DecisionRecord | None: ...

    @abstractmethod
    def list_decisions(self, name: str, limit: int = 100, newest_first: bool = True) -> list[DecisionRecord]: ...

    @abstractmethod
    def transition_decision(
        self,
        record: DecisionRecord,
        allowed_from: Iterable[DecisionStatus],
        to: DecisionStatus,
        outcome: str | None = None,
        lease_until: int | None = None,
        now: int = 0,
    ) -> DecisionRecord:
        """Move a decision's status if it is currently one of `allowed_from`; ConflictError otherwise."""

    # -- applied state
    @abstractmethod
    def get_state(self, name: str) -> AppliedState: ...

    @abstractmethod
    def put_state(self, state: AppliedState) -> AppliedState:
        """Write if the stored version equals `state.version`; returns it with version+1."""

    # -- global control
    @abstractmethod
    def get_paused(self) -> tuple[bool, str]: ...

    @abstractmethod
    def set_paused(self, paused: bool, reason: str, now: int) -> None: ...

    # ---------------------------------------------------------------- act's open work and bounds

    @abstractmethod
    def mark_open_work(self, work: OpenWork) -> None:
        """Note (or replace) a target's open work. Unconditional: act's sweep re-reads the target's
        decisions when it looks at a note, so a note only has to say where to look."""

    def write_open_work(self, notes: Mapping[str, OpenWork | None]) -> None:
        """Note (or, for None, remove) several targets' open work at once, by target name."""
        for target, work in notes.items():
            if work is None:
                self.clear_open_work(target, 0)
            else:
                self.mark_open_work(work)

    @abstractmethod
    def clear_open_work(self, target: str, decided_at: int) -> None:
        """Remove the target's note (`decided_at`: the decision that was closed, for the log)."""

    @abstractmethod
    def list_open_work(self) -> list[OpenWork]: ...

    @abstractmethod
    def list_targets_after(self, after: str, limit: int) -> list[TargetConfig]:
        """Up to `limit` targets whose names sort after `after`, in name order (a rotation's page)."""

    @abstractmethod
    def get_rotation(self) -> str:
        """The name act's reconcile rotation stopped after ("" at the start)."""

    @abstractmethod
    def set_rotation(self, after: str) -> None: ...

    @abstractmethod
    def remember_user_bounds(self, target: str, bounds: UserBounds) -> UserBounds:
        """Keep the user's bounds the first time forescale moves them; returns the ones kept (the first)."""

    @abstractmethod
    def list_user_bounds(self) -> dict[str, UserBounds]: ...

    @abstractmethod
    def forget_user_bounds(self, target: str) -> None: ...


class ForecastCache:
    """Forecasts decoded once per process per issue: a warm Lambda reads only the small meta each time."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._cache: dict[str, Forecast] = {}

    def get_issued(self, name: str, issued: int | None) -> Forecast | None:
        """The stored forecast when its issue time is known already (read in a batch)."""
        if issued is None:
            return None
        cached = self._cache.get(name)
        if cached is not None and cached.issued_at == issued:
            return cached
        forecast = self._store.get_forecast(name)
        if forecast is not None:
            self._cache[name] = forecast
        return forecast

    def get_at(self, name: str, issued: int) -> Forecast | None:
        """The forecast of that issue (the current or the previous one), decoded once per process."""
        cached = self._cache.get(name)
        if cached is not None and cached.issued_at == issued:
            return cached
        forecast = self._store.get_forecast_at(name, issued)
        if forecast is not None and (cached is None or forecast.issued_at > cached.issued_at):
            self._cache[name] = forecast
        return forecast


# ---------------------------------------------------------------- codecs shared by both stores


_FORECAST_MAGIC = b"FSF1"


def encode_forecast(f: Forecast) -> bytes:
    """A JSON header and the quantile paths as raw doubles (exact, and a third the size of JSON text)."""
    quantiles = sorted(f.quantiles)
    body = {
        "target": f.target,
        "issued_at": f.issued_at,
        "start": f.start,
        "step_s": f.step_s,
        "model": f.model,
        "mase": f.mase,
        "notes": list(f.notes),
        "quantiles": quantiles,
        "steps": f.horizon_steps,
    }
    header = json.dumps(body, separators=(",", ":")).encode()
    values = array("d")
    for q in quantiles:
        values.extend(f.quantiles[q])
    return zlib.compress(_FORECAST_MAGIC + struct.pack("<I", len(header)) + header + values.tobytes(), 6)


def decode_forecast(blob: bytes) -> Forecast:
    raw = zlib.decompress(blob)
    if raw[:4] != _FORECAST_MAGIC:
        raise ValueError("stored forecast is not in forescale's format")
    (size,) = struct.unpack("<I", raw[4:8])
    body = json.loads(raw[8 : 8 + size])
    values = array("d")
    values.frombytes(raw[8 + size :])
    steps = int(body["steps"])
    if len(values) != steps * len(body["quantiles"]):
        raise ValueError(f"stored forecast for {body.get('target')} is truncated")
    return Forecast(
        target=body["target"],
        issued_at=int(body["issued_at"]),
        start=int(body["start"]),
        step_s=int(body["step_s"]),
        quantiles={float(q): tuple(values[i * steps : (i + 1) * steps]) for i, q in enumerate(body["quantiles"])},
        model=body["model"],
        mase=body["mase"],
        notes=tuple(body["notes"]),
    )


def _sample_values(s: DemandSampleDetail) -> dict[str, float]:
    out = {"r": s.rate_rps}
    for short, field in SAMPLE_FIELDS.items():
        if short == "r":
            continue
        v = getattr(s, field)
        if v is not None:
            out[short] = float(v)
    return out


def _hour_fields(samples: Sequence[DemandSampleDetail]) -> dict[tuple[str, int], dict[str, float]]:
    """Samples grouped into their target-hour items: {(target, hour): {"r05": rate, "c05": ..., ...}}."""
    per_item: dict[tuple[str, int], dict[str, float]] = {}
    for smp in samples:
        hour, mm = _minute_slot(smp.timestamp)
        fields = per_item.setdefault((smp.target, hour), {})
        fields.update({f"{k}{mm}": v for k, v in _sample_values(smp).items()})
    return per_item


def _backoff(attempt: int) -> None:
    """Exponential back-off before resending a batch's unprocessed part (50 ms, 100 ms, ... at most 2 s)."""
    import time

    time.sleep(min(2.0, 0.05 * 2 ** (attempt - 1)))


def _minute_slot(ts: int) -> tuple[int, str]:
    hour = ts - ts % HOUR_S
    return hour, f"{(ts - hour) // 60:02d}"


def _to_dynamo(value: Any) -> Any:
    """JSON-ish value → DynamoDB attribute value (numbers as strings, as the wire format wants)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot store non-finite number {value}")
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, list | tuple):
        return {"L": [_to_dynamo(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): _to_dynamo(v) for k, v in value.items()}}
    raise TypeError(f"cannot store {type(value).__name__}")


def _from_dynamo(av: Any) -> Any:
    ((kind, v),) = av.items()
    if kind == "NULL":
        return None
    if kind == "BOOL":
        return bool(v)
    if kind == "N":
        n = Decimal(v)
        return int(n) if n == n.to_integral_value() and "." not in v and "e" not in v.lower() else float(n)
    if kind in ("S", "B"):
        return v
    if kind == "L":
        return [_from_dynamo(x) for x in v]
    if kind == "M":
        return {k: _from_dynamo(x) for k, x in v.items()}
    raise TypeError(f"unsupported DynamoDB type {kind}")


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _to_dynamo(v) for k, v in values.items()}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo(v) for k, v in item.items()}


def _forecast_sk(issued_at: int) -> str:
    return f"FORECAST#{issued_at:010d}"


def _planner_record(item: dict[str, Any] | None) -> PlannerRecord:
    if not item:
        return PlannerRecord()
    version = int(item["version"])
    return PlannerRecord(
        version=version,
        observed_until=int(item["observed_until"]),
        checkpoint_version=int(item.get("checkpoint_version", version if "blob" in item else 0)),
        journal=item.get("journal", b""),
        token=str(item.get("token", "")),
        legacy_snapshot=item.get("blob"),
    )


def _record_values(r: DecisionRecord) -> dict[str, Any]:
    return r.model_dump(mode="json")


def _history_from_minutes(name: str, start: int, end: int, step_s: int, minutes: dict[int, float]) -> SeriesHistory:
    """Average the stored minutes onto a `step_s` grid; a step with no minute at all is missing."""
    if step_s % 60:
        raise ValueError(f"step_s must be a multiple of 60, got {step_s}")
    start -= start % step_s
    rates: list[float | None] = []
    if step_s == 60:  # the common case, without a list per step
        return SeriesHistory(target=name, start=start, step_s=60, rates=[minutes.get(t) for t in range(start, end, 60)])
    for t in range(start, end, step_s):
        vals = [minutes[m] for m in range(t, t + step_s, 60) if m in minutes]
        # A partly missing step averages the minutes it has: missing minutes are not zero demand.
        rates.append(sum(vals) / len(vals) if vals else None)
    return SeriesHistory(target=name, start=start, step_s=step_s, rates=rates)


# ---------------------------------------------------------------- DynamoDB


class DynamoStateStore(StateStore):
    """The table described in this module's docstring, through the low-level DynamoDB client."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._db = client
        self._table = table_name

    # -- helpers
    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        resp = self._db.get_item(TableName=self._table, Key=_item({"PK": pk, "SK": sk}), ConsistentRead=True)
        item = resp.get("Item")
        return _plain(item) if item else None

    def _query(
        self,
        pk: str,
        prefix: str,
        start: str | None = None,
        end: str | None = None,
        forward: bool = True,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        values: dict[str, Any] = {":pk": pk}
        if start is not None and end is not None:
            cond = "PK = :pk AND SK BETWEEN :a AND :b"
            values |= {":a": start, ":b": end}
        else:
            cond = "PK = :pk AND begins_with(SK, :p)"
            values[":p"] = prefix
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": cond,
            "ExpressionAttributeValues": _item(values),
            "ScanIndexForward": forward,
            "ConsistentRead": True,
        }
        out: list[dict[str, Any]] = []
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - len(out)
            resp = self._db.query(**kwargs)
            out.extend(_plain(i) for i in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last or (limit is not None and len(out) >= limit):
                return out
            kwargs["ExclusiveStartKey"] = last

    def _conditional_put(
        self,
        values: dict[str, Any],
        condition: str,
        names: dict[str, str] | None = None,
        cond_values: dict[str, Any] | None = None,
    ) -> bool:
        kwargs: dict[str, Any] = {"TableName": self._table, "Item": _item(values), "ConditionExpression": condition}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if cond_values:
            kwargs["ExpressionAttributeValues"] = _item(cond_values)
        try:
            self._db.put_item(**kwargs)
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _batch_get(
        self, keys: list[tuple[str, str]], projection: str | None = None
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """BatchGetItem in chunks of 100 keys, retrying unprocessed keys (consistent reads)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for i in range(0, len(keys), BATCH_GET_MAX):
            request: dict[str, Any] = {
                "Keys": [_item({"PK": pk, "SK": sk}) for pk, sk in keys[i : i + BATCH_GET_MAX]],
                "ConsistentRead": True,
            }
            if projection:
                request["ProjectionExpression"] = projection
            pending: dict[str, Any] = {self._table: request}
            attempt = 0
            while pending:
                if attempt:
                    _backoff(attempt)
                attempt += 1
                resp = self._db.batch_get_item(RequestItems=pending)
                for raw in resp.get("Responses", {}).get(self._table, []):
                    item = _plain(raw)
                    found[(item["PK"], item["SK"])] = item
                pending = resp.get("UnprocessedKeys") or {}
        return found

    def plan_inputs(self, names: Sequence[str]) -> dict[str, PlanInputs]:
        keys = [(f"TARGET#{n}", sk) for n in names for sk in ("CONFIG", "PLANNER", "STATE")]
        items = self._batch_get(keys)
        metas = self.forecast_metas(names)
        out: dict[str, PlanInputs] = {}
        for n in names:
            cfg = items.get((f"TARGET#{n}", "CONFIG"))
            state = items.get((f"TARGET#{n}", "STATE"))
            out[n] = PlanInputs(
                self._valid_config(n, cfg.get("config")) if cfg else None,
                _planner_record(items.get((f"TARGET#{n}", "PLANNER"))),
                AppliedState.model_validate_json(state["state"]) if state else AppliedState(target=n),
                metas[n][0],
            )
        return out

    def get_checkpoints(self, names: Sequence[str]) -> dict[str, tuple[bytes, int]]:
        items = self._batch_get([(f"TARGET#{n}", CHECKPOINT_SK) for n in names])
        return {
            n: (item["blob"], int(item["version"]))
            for n in names
            if (item := items.get((f"TARGET#{n}", CHECKPOINT_SK))) is not None
        }

    def recent_histories(self, spans: dict[str, tuple[int, int]]) -> dict[str, SeriesHistory]:
        # Short spans (the usual minute or two) come from their hour items in one batched read.
        short = {n: (a, b) for n, (a, b) in spans.items() if 0 < b - a <= RECENT_SPAN_S}
        keys = [
            (f"TARGET#{n}", f"SAMPLES#{hour:010d}")
            for n, (a, b) in short.items()
            for hour in range(a - a % HOUR_S, b, HOUR_S)
        ]
        items = self._batch_get(keys)
        out: dict[str, SeriesHistory] = {}
        for n, (a, b) in spans.items():
            if n not in short:
                out[n] = self.load_history(n, a, b, 60)
                continue
            minutes: dict[int, float] = {}
            for hour in range(a - a % HOUR_S, b, HOUR_S):
                item = items.get((f"TARGET#{n}", f"SAMPLES#{hour:010d}"), {})
                for m in range(60):
                    v = item.get(f"r{m:02d}")
                    if v is not None:
                        minutes[hour + 60 * m] = float(v)
            out[n] = _history_from_minutes(n, a, b, 60, minutes)
        return out

    def forecast_metas(self, names: Sequence[str]) -> dict[str, tuple[int | None, int | None]]:
        items = self._batch_get([(f"TARGET#{n}", "FORECAST") for n in names], "PK, SK, issued_at, refit_requested_at")
        out: dict[str, tuple[int | None, int | None]] = {}
        for n in names:
            item = items.get((f"TARGET#{n}", "FORECAST"), {})
            issued, asked = item.get("issued_at"), item.get("refit_requested_at")
            out[n] = (int(issued) if issued is not None else None, int(asked) if asked is not None else None)
        return out

    # -- targets
    def put_target(self, cfg: TargetConfig, expected_version: int | None = None) -> TargetConfig:
        new = cfg.model_copy(update={"version": (expected_version or 0) + 1})
        values: dict[str, Any] = {
            "PK": f"TARGET#{cfg.name}",
            "SK": "CONFIG",
            "gsi1pk": "TARGET",
            "gsi1sk": cfg.name,
            "config": new.model_dump_json(),
            "version": new.version,
        }
        if expected_version is None:
            ok = self._conditional_put(values, "attribute_not_exists(PK)")
            if not ok:
                raise ConflictError(f"target {cfg.name} already exists")
        else:
            ok = self._conditional_put(values, "version = :v", cond_values={":v": expected_version})
            if not ok:
                raise ConflictError(f"target {cfg.name} changed since version {expected_version}")
        return new

    def get_target(self, name: str) -> TargetConfig | None:
        """The target's config; None if it is not registered or its stored config is invalid (reported)."""
        item = self._get(f"TARGET#{name}", "CONFIG")
        return self._valid_config(name, item.get("config")) if item else None

    def get_targets(self, names: Sequence[str]) -> dict[str, TargetConfig]:
        """BatchGetItem for many configs (act reads a batch's targets in one request per 100)."""
        items = self._batch_get([(f"TARGET#{n}", "CONFIG") for n in dict.fromkeys(names)])
        found: dict[str, TargetConfig] = {}
        for (pk, _), item in items.items():
            name = pk.removeprefix("TARGET#")
            cfg = self._valid_config(name, item.get("config"))
            if cfg is not None:
                found[name] = cfg
        return found

    def _valid_config(self, name: str, raw: Any) -> TargetConfig | None:
        record = _target_record(name, raw)
        if record.config is None:
            _report_invalid(record)
        return record.config

    def list_targets(self) -> list[TargetConfig]:
        """Every target whose stored config validates; an invalid one is skipped and reported by name."""
        out: list[TargetConfig] = []
        for record in self.target_records():
            if record.config is None:
                _report_invalid(record)
            else:
                out.append(record.config)
        return out

    def target_record(self, name: str) -> TargetRecord | None:
        item = self._get(f"TARGET#{name}", "CONFIG")
        return _target_record(name, item.get("config")) if item else None

    def target_records(self) -> list[TargetRecord]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :t",
            "ExpressionAttributeValues": _item({":t": "TARGET"}),
        }
        out: list[TargetRecord] = []
        while True:
            resp = self._db.query(**kwargs)
            for raw in resp.get("Items", []):
                item = _plain(raw)
                out.append(
                    _target_record(str(item.get("gsi1sk", item["PK"].removeprefix("TARGET#"))), item.get("config"))
                )
            if "LastEvaluatedKey" not in resp:
                return sorted(out, key=lambda r: r.name)
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def delete_target(self, name: str) -> None:
        blobs = [i["SK"] for i in self._query(f"TARGET#{name}", "FORECAST#")]
        for sk in ("CONFIG", "PLANNER", CHECKPOINT_SK, "FORECAST", *blobs):
            self._db.delete_item(TableName=self._table, Key=_item({"PK": f"TARGET#{name}", "SK": sk}))

    # -- samples
    def put_samples(self, samples: Sequence[DemandSampleDetail], ttl_s: int) -> None:
        # One UpdateItem per target-hour (up to MAX_FIELDS_PER_UPDATE attributes), not per minute.
        for (target, hour), fields in _hour_fields(samples).items():
            names = sorted(fields)
            for i in range(0, len(names), MAX_FIELDS_PER_UPDATE):
                chunk = names[i : i + MAX_FIELDS_PER_UPDATE]
                expr = "SET " + ", ".join(f"#{n} = :{n}" for n in chunk) + ", expiration = :e"
                values = {f":{n}": fields[n] for n in chunk} | {":e": hour + HOUR_S + ttl_s}
                self._db.update_item(
                    TableName=self._table,
                    Key=_item({"PK": f"TARGET#{target}", "SK": f"SAMPLES#{hour:010d}"}),
                    UpdateExpression=expr,
                    ExpressionAttributeNames={f"#{n}": n for n in chunk},
                    ExpressionAttributeValues=_item(values),
                )

    def import_samples(self, samples: Sequence[DemandSampleDetail], ttl_s: int) -> None:
        # Whole hour items by BatchWriteItem, 25 to a call: a fraction of the calls and of the work
        # (DynamoDB's and moto's) of one UpdateItem per hour with 60 minutes of SET clauses.
        self._put_hours(_hour_fields(samples), ttl_s)

    def merge_samples(self, samples: Sequence[DemandSampleDetail], ttl_s: int) -> None:
        # Read the touched hour items (BatchGetItem, 100 a call), merge the minutes in, and write the
        # whole items back (BatchWriteItem, 25 a call): 2 calls per 25 target-hours instead of one
        # UpdateItem each. Write units are the same (an UpdateItem is billed on the whole item too).
        per_item = _hour_fields(samples)
        keys = [(f"TARGET#{target}", f"SAMPLES#{hour:010d}") for target, hour in per_item]
        stored = self._batch_get(keys)
        merged: dict[tuple[str, int], dict[str, Any]] = {}
        for (target, hour), fields in per_item.items():
            old = stored.get((f"TARGET#{target}", f"SAMPLES#{hour:010d}"), {})
            keep = {k: v for k, v in old.items() if k not in ("PK", "SK", "expiration")}
            merged[(target, hour)] = keep | fields
        self._put_hours(merged, ttl_s)

    def _put_hours(self, per_item: dict[tuple[str, int], dict[str, Any]], ttl_s: int) -> None:
        """Write whole target-hour sample items with BatchWriteItem, resending unprocessed ones with back-off."""
        items = [
            _item(
                {"PK": f"TARGET#{target}", "SK": f"SAMPLES#{hour:010d}", "expiration": hour + HOUR_S + ttl_s} | fields
            )
            for (target, hour), fields in per_item.items()
        ]
        self._batch_write([{"PutRequest": {"Item": it}} for it in items])

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """BatchWriteItem in chunks of 25 (puts and deletes, each key once), resending unprocessed
        requests with back-off (no conditions)."""
        for i in range(0, len(requests), BATCH_WRITE_MAX):
            pending: dict[str, Any] = {self._table: requests[i : i + BATCH_WRITE_MAX]}
            attempt = 0
            while pending:
                if attempt:
                    _backoff(attempt)  # DynamoDB hands back what it could not take now: retry, not at once
                pending = self._db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                attempt += 1

    def _minutes(self, name: str, short: str, start: int, end: int) -> dict[int, float]:
        first = start - start % HOUR_S
        items = self._query(f"TARGET#{name}", "SAMPLES#", f"SAMPLES#{first:010d}", f"SAMPLES#{end:010d}")
        out: dict[int, float] = {}
        for item in items:
            hour = int(item["SK"].split("#", 1)[1])
            for m in range(60):
                v = item.get(f"{short}{m:02d}")
                ts = hour + 60 * m
                if v is not None and start <= ts < end:
                    out[ts] = float(v)
        return out

    def load_history(self, name: str, start: int, end: int, step_s: int = 60) -> SeriesHistory:
        return _history_from_minutes(name, start, end, step_s, self._minutes(name, "r", start - start % step_s, end))

    def load_metric(self, name: str, field: str, start: int, end: int) -> list[float | None]:
        short = {v: k for k, v in SAMPLE_FIELDS.items()}[field]
        minutes = self._minutes(name, short, start, end)
        return [minutes.get(t) for t in range(start, end, 60)]

    # -- forecasts
    def put_forecast(self, forecast: Forecast) -> None:
        pk = f"TARGET#{forecast.target}"
        old = self._get(pk, "FORECAST") or {}
        self._db.put_item(
            TableName=self._table,
            Item=_item({"PK": pk, "SK": _forecast_sk(forecast.issued_at), "blob": encode_forecast(forecast)}),
        )
        previous = old.get("issued_at") if "blob" not in old else None  # an inline (older format) blob goes
        meta = {"PK": pk, "SK": "FORECAST", "issued_at": forecast.issued_at, "model": forecast.model}
        if previous is not None and int(previous) != forecast.issued_at:
            meta["previous_at"] = int(previous)
        self._db.put_item(TableName=self._table, Item=_item(meta))  # replaces: clears refit_requested_at
        # Keep the current and the previous issue; the one before that is no longer anyone's.
        stale = old.get("previous_at")
        if stale is not None and int(stale) not in (forecast.issued_at, meta.get("previous_at")):
            self._db.delete_item(TableName=self._table, Key=_item({"PK": pk, "SK": _forecast_sk(int(stale))}))

    def get_forecast(self, name: str) -> Forecast | None:
        meta = self._get(f"TARGET#{name}", "FORECAST")
        if not meta or meta.get("issued_at") is None:
            return None
        if "blob" in meta:
            return decode_forecast(meta["blob"])
        return self.get_forecast_at(name, int(meta["issued_at"]))

    def get_forecast_at(self, name: str, issued_at: int) -> Forecast | None:
        item = self._get(f"TARGET#{name}", _forecast_sk(issued_at))
        if item is None:  # an older forescale kept the forecast inline in the meta item
            meta = self._get(f"TARGET#{name}", "FORECAST") or {}
            inline = decode_forecast(meta["blob"]) if "blob" in meta else None
            return inline if inline is not None and inline.issued_at == issued_at else None
        return decode_forecast(item["blob"])

    def forecast_meta(self, name: str) -> tuple[int | None, int | None]:
        return self.forecast_metas([name])[name]

    def request_refit(self, name: str, at: int) -> None:
        self._db.update_item(
            TableName=self._table,
            Key=_item({"PK": f"TARGET#{name}", "SK": "FORECAST"}),
            UpdateExpression="SET refit_requested_at = :a",
            ExpressionAttributeValues=_item({":a": at}),
        )

    # -- planner
    def get_planner_record(self, name: str) -> PlannerRecord:
        return _planner_record(self._get(f"TARGET#{name}", "PLANNER"))

    def get_checkpoint(self, name: str) -> tuple[bytes, int] | None:
        item = self._get(f"TARGET#{name}", CHECKPOINT_SK)
        return (item["blob"], int(item["version"])) if item else None

    def _hot_put(
        self, name: str, journal: bytes, observed_until: int, checkpoint_version: int, expected_version: int, token: str
    ) -> dict[str, Any]:
        """The hot item's conditional Put (for PutItem or a transaction)."""
        values: dict[str, Any] = {
            "PK": f"TARGET#{name}",
            "SK": "PLANNER",
            "version": expected_version + 1,
            "token": token,
            "observed_until": observed_until,
            "checkpoint_version": checkpoint_version,
        }
        if journal:
            values["journal"] = journal
        put: dict[str, Any] = {"TableName": self._table, "Item": _item(values)}
        if expected_version == 0:
            put["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = _item({":v": expected_version})
        return put

    def put_planner(  # nosec B107  # `token` names the writing plan process, not a credential
        self, name: str, blob: bytes, observed_until: int, expected_version: int, token: str = ""
    ) -> int:
        new = expected_version + 1
        checkpoint = {"PK": f"TARGET#{name}", "SK": CHECKPOINT_SK, "blob": blob, "version": new}
        hot = self._hot_put(name, b"", observed_until, new, expected_version, token)
        try:
            items: list[Any] = [{"Put": hot}, {"Put": {"TableName": self._table, "Item": _item(checkpoint)}}]
            self._db.transact_write_items(TransactItems=items)
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                raise ConflictError(f"planner state of {name} changed since version {expected_version}") from exc
            raise
        return new

    def put_planner_journal(
        self, name: str, journal: bytes, observed_until: int, checkpoint_version: int, expected_version: int, token: str
    ) -> int:
        try:
            self._db.put_item(
                **self._hot_put(name, journal, observed_until, checkpoint_version, expected_version, token)
            )
        except self._db.exceptions.ConditionalCheckFailedException as exc:
            raise ConflictError(f"planner state of {name} changed since version {expected_version}") from exc
        return expected_version + 1

    # -- decisions
    def put_decision(self, record: DecisionRecord) -> bool:
        values = {
            "PK": f"TARGET#{record.target}",
            "SK": f"DECISION#{record.decided_at:010d}",
            "expiration": record.decided_at + DECISION_TTL_S,
            "record": record.model_dump_json(),
            "status": record.status.value,
        }
        return self._conditional_put(values, "attribute_not_exists(PK)")

    def get_decision(self, name: str, decided_at: int) -> DecisionRecord | None:
        item = self._get(f"TARGET#{name}", f"DECISION#{decided_at:010d}")
        return DecisionRecord.model_validate_json(item["record"]) if item else None

    def list_decisions(self, name: str, limit: int = 100, newest_first: bool = True) -> list[DecisionRecord]:
        items = self._query(f"TARGET#{name}", "DECISION#", forward=not newest_first, limit=limit)
        return [DecisionRecord.model_validate_json(i["record"]) for i in items]

    def transition_decision(
        self,
        record: DecisionRecord,
        allowed_from: Iterable[DecisionStatus],
        to: DecisionStatus,
        outcome: str | None = None,
        lease_until: int | None = None,
        now: int = 0,
    ) -> DecisionRecord:
        allowed = [s.value for s in allowed_from]
        new = record.model_copy(
            update={
                "status": to,
                "outcome": outcome if outcome is not None else record.outcome,
                "lease_until": lease_until,
                "updated_at": now,
            }
        )
        placeholders = {f":s{i}": s for i, s in enumerate(allowed)}
        values = {
            "PK": f"TARGET#{record.target}",
            "SK": f"DECISION#{record.decided_at:010d}",
            "expiration": record.decided_at + DECISION_TTL_S,
            "record": new.model_dump_json(),
            "status": to.value,
        }
        ok = self._conditional_put(
            values, f"#st IN ({', '.join(placeholders)})", names={"#st": "status"}, cond_values=placeholders
        )
        if not ok:
            raise ConflictError(f"decision {record.decision_id} is no longer in {allowed}")
        return new

    # -- applied state
    def get_state(self, name: str) -> AppliedState:
        item = self._get(f"TARGET#{name}", "STATE")
        return AppliedState.model_validate_json(item["state"]) if item else AppliedState(target=name)

    def put_state(self, state: AppliedState) -> AppliedState:
        new = state.model_copy(update={"version": state.version + 1})
        values = {"PK": f"TARGET#{state.target}", "SK": "STATE", "state": new.model_dump_json(), "version": new.version}
        cond = "attribute_not_exists(PK)" if state.version == 0 else "version = :v"
        ok = self._conditional_put(values, cond, cond_values=None if state.version == 0 else {":v": state.version})
        if not ok:
            raise ConflictError(f"applied state of {state.target} changed since version {state.version}")
        return new

    # -- control
    def get_paused(self) -> tuple[bool, str]:
        item = self._get("GLOBAL", "CONTROL")
        return (bool(item.get("paused")), str(item.get("reason", ""))) if item else (False, "")

    def set_paused(self, paused: bool, reason: str, now: int) -> None:
        self._db.put_item(
            TableName=self._table,
            Item=_item({"PK": "GLOBAL", "SK": "CONTROL", "paused": paused, "reason": reason, "updated_at": now}),
        )

    # ---------------------------------------------------------------- act's open work and bounds

    @staticmethod
    def _open_work_item(work: OpenWork) -> dict[str, Any]:
        values = {
            "PK": OPEN_WORK_PK,
            "SK": work.target,
            "decided_at": work.decided_at,
            "urgency": round(work.urgency, 6),
            "due_at": work.due_at,
        }
        return _item(values)

    def mark_open_work(self, work: OpenWork) -> None:
        self._db.put_item(TableName=self._table, Item=self._open_work_item(work))

    def write_open_work(self, notes: Mapping[str, OpenWork | None]) -> None:
        requests = [
            {"DeleteRequest": {"Key": _item({"PK": OPEN_WORK_PK, "SK": target})}}
            if work is None
            else {"PutRequest": {"Item": self._open_work_item(work)}}
            for target, work in notes.items()
        ]
        self._batch_write(requests)

    def clear_open_work(self, target: str, decided_at: int) -> None:
        self._db.delete_item(TableName=self._table, Key=_item({"PK": OPEN_WORK_PK, "SK": target}))

    def _partition(self, pk: str) -> list[dict[str, Any]]:
        """Every item of one small partition (act's index and bounds), paginated."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": _item({":pk": pk}),
            "ConsistentRead": True,
        }
        out: list[dict[str, Any]] = []
        while True:
            resp = self._db.query(**kwargs)
            out.extend(_plain(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def list_open_work(self) -> list[OpenWork]:
        return [
            OpenWork(i["SK"], int(i["decided_at"]), float(i.get("urgency", 0)), int(i.get("due_at", 0)))
            for i in self._partition(OPEN_WORK_PK)
        ]

    def list_targets_after(self, after: str, limit: int) -> list[TargetConfig]:
        values: dict[str, Any] = {":t": "TARGET"}
        cond = "gsi1pk = :t"
        if after:  # DynamoDB refuses an empty string in a key condition: "" means from the first name
            cond += " AND gsi1sk > :a"
            values[":a"] = after
        resp = self._db.query(
            TableName=self._table,
            IndexName="gsi1",
            KeyConditionExpression=cond,
            ExpressionAttributeValues=_item(values),
            Limit=limit,
        )
        # An invalid stored config is skipped and reported, as in list_targets: act's sweep must go on.
        items = [_plain(i) for i in resp.get("Items", [])]
        configs = (self._valid_config(str(i["gsi1sk"]), i.get("config")) for i in items)
        return [c for c in configs if c is not None]

    def get_rotation(self) -> str:
        item = self._get(ROTATION_PK, "CURSOR")
        return str(item.get("after", "")) if item else ""

    def set_rotation(self, after: str) -> None:
        self._db.put_item(TableName=self._table, Item=_item({"PK": ROTATION_PK, "SK": "CURSOR", "after": after}))

    def remember_user_bounds(self, target: str, bounds: UserBounds) -> UserBounds:
        values = {"PK": USER_BOUNDS_PK, "SK": target, "bounds": bounds.model_dump_json()}
        if self._conditional_put(values, "attribute_not_exists(PK)"):
            return bounds
        item = self._get(USER_BOUNDS_PK, target)
        return UserBounds.model_validate_json(item["bounds"]) if item else bounds

    def list_user_bounds(self) -> dict[str, UserBounds]:
        return {i["SK"]: UserBounds.model_validate_json(i["bounds"]) for i in self._partition(USER_BOUNDS_PK)}

    def forget_user_bounds(self, target: str) -> None:
        self._db.delete_item(TableName=self._table, Key=_item({"PK": USER_BOUNDS_PK, "SK": target}))


# ---------------------------------------------------------------- in memory


class InMemoryStateStore(StateStore):
    """The same contract in a dict, for unit tests and fast local runs (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.targets: dict[str, TargetConfig] = {}
        self.samples: dict[str, dict[int, dict[str, float]]] = {}
        self.forecasts: dict[str, Forecast] = {}
        self.refits: dict[str, int] = {}
        self.previous_forecasts: dict[str, Forecast] = {}  # the issue before the current one
        self.planners: dict[str, PlannerRecord] = {}
        self.checkpoints: dict[str, tuple[bytes, int]] = {}
        self.decisions: dict[str, dict[int, DecisionRecord]] = {}
        self.states: dict[str, AppliedState] = {}
        self.paused: tuple[bool, str] = (False, "")
        # act's open work and bounds
        self.open_work: dict[str, OpenWork] = {}
        self.rotation = ""
        self.user_bounds: dict[str, UserBounds] = {}

    def put_target(self, cfg: TargetConfig, expected_version: int | None = None) -> TargetConfig:
        with self._lock:
            cur = self.targets.get(cfg.name)
            if expected_version is None and cur is not None:
                raise ConflictError(f"target {cfg.name} already exists")
            if expected_version is not None and (cur is None or cur.version != expected_version):
                raise ConflictError(f"target {cfg.name} changed since version {expected_version}")
            new = cfg.model_copy(update={"version": (expected_version or 0) + 1})
            self.targets[cfg.name] = new
            return new

    def get_target(self, name: str) -> TargetConfig | None:
        return self.targets.get(name)

    def get_targets(self, names: Sequence[str]) -> dict[str, TargetConfig]:
        return {n: self.targets[n] for n in names if n in self.targets}

    def list_targets(self) -> list[TargetConfig]:
        return sorted(self.targets.values(), key=lambda c: c.name)

    def delete_target(self, name: str) -> None:
        with self._lock:
            self.targets.pop(name, None)
            self.planners.pop(name, None)
            self.checkpoints.pop(name, None)
            self.forecasts.pop(name, None)
            self.previous_forecasts.pop(name, None)

    def put_samples(self, samples: Sequence[DemandSampleDetail], ttl_s: int) -> None:
        with self._lock:
            for s in samples:
                self.samples.setdefault(s.target, {})[s.timestamp - s.timestamp % 60] = _sample_values(s)

    def import_samples(self, samples: Sequence[DemandSampleDetail], ttl_s: int) -> None:
        with self._lock:
            for target, hour in _hour_fields(samples):
                rows = self.samples.setdefault(target, {})
                for t in range(hour, hour + HOUR_S, 60):
                    rows.pop(t, None)
        self.put_samples(samples, ttl_s)

    def load_history(self, name: str, start: int, end: int, step_s: int = 60) -> SeriesHistory:
        rows = self.samples.get(name, {})
        first = start - start % step_s
        minutes = {t: rows[t]["r"] for t in range(first - first % 60, end, 60) if t in rows}
        return _history_from_minutes(name, start, end, step_s, minutes)

    def load_metric(self, name: str, field: str, start: int, end: int) -> list[float | None]:
        short = {v: k for k, v in SAMPLE_FIELDS.items()}[field]
        rows = self.samples.get(name, {})
        return [rows.get(t, {}).get(short) for t in range(start, end, 60)]

    def put_forecast(self, forecast: Forecast) -> None:
        with self._lock:
            old = self.forecasts.get(forecast.target)
            if old is not None and old.issued_at != forecast.issued_at:
                self.previous_forecasts[forecast.target] = old
            self.forecasts[forecast.target] = decode_forecast(encode_forecast(forecast))
            self.refits.pop(forecast.target, None)

    def get_forecast(self, name: str) -> Forecast | None:
        return self.forecasts.get(name)

    def forecast_meta(self, name: str) -> tuple[int | None, int | None]:
        f = self.forecasts.get(name)
        return (f.issued_at if f else None, self.refits.get(name))

    def request_refit(self, name: str, at: int) -> None:
        self.refits[name] = at

    def get_forecast_at(self, name: str, issued_at: int) -> Forecast | None:
        for f in (self.forecasts.get(name), self.previous_forecasts.get(name)):
            if f is not None and f.issued_at == issued_at:
                return f
        return None

    def get_planner_record(self, name: str) -> PlannerRecord:
        return self.planners.get(name) or PlannerRecord()

    def get_checkpoint(self, name: str) -> tuple[bytes, int] | None:
        return self.checkpoints.get(name)

    def _check_planner_version(self, name: str, expected_version: int) -> None:
        if self.get_planner_record(name).version != expected_version:
            raise ConflictError(f"planner state of {name} changed since version {expected_version}")

    def put_planner(  # nosec B107  # `token` names the writing plan process, not a credential
        self, name: str, blob: bytes, observed_until: int, expected_version: int, token: str = ""
    ) -> int:
        with self._lock:
            self._check_planner_version(name, expected_version)
            new = expected_version + 1
            self.checkpoints[name] = (blob, new)
            self.planners[name] = PlannerRecord(new, observed_until, new, b"", token)
            return new

    def put_planner_journal(
        self, name: str, journal: bytes, observed_until: int, checkpoint_version: int, expected_version: int, token: str
    ) -> int:
        with self._lock:
            self._check_planner_version(name, expected_version)
            new = expected_version + 1
            self.planners[name] = PlannerRecord(new, observed_until, checkpoint_version, journal, token)
            return new

    def put_decision(self, record: DecisionRecord) -> bool:
        with self._lock:
            per = self.decisions.setdefault(record.target, {})
            if record.decided_at in per:
                return False
            per[record.decided_at] = record
            return True

    def get_decision(self, name: str, decided_at: int) -> DecisionRecord | None:
        return self.decisions.get(name, {}).get(decided_at)

    def list_decisions(self, name: str, limit: int = 100, newest_first: bool = True) -> list[DecisionRecord]:
        per = self.decisions.get(name, {})
        keys = sorted(per, reverse=newest_first)[:limit]
        return [per[k] for k in keys]

    def transition_decision(
        self,
        record: DecisionRecord,
        allowed_from: Iterable[DecisionStatus],
        to: DecisionStatus,
        outcome: str | None = None,
        lease_until: int | None = None,
        now: int = 0,
    ) -> DecisionRecord:
        with self._lock:
            cur = self.decisions.get(record.target, {}).get(record.decided_at)
            allowed = set(allowed_from)
            if cur is None or cur.status not in allowed:
                raise ConflictError(f"decision {record.decision_id} is no longer in {sorted(allowed)}")
            new = cur.model_copy(
                update={
                    "status": to,
                    "outcome": outcome if outcome is not None else cur.outcome,
                    "lease_until": lease_until,
                    "updated_at": now,
                }
            )
            self.decisions[record.target][record.decided_at] = new
            return new

    def get_state(self, name: str) -> AppliedState:
        return self.states.get(name) or AppliedState(target=name)

    def put_state(self, state: AppliedState) -> AppliedState:
        with self._lock:
            cur = self.states.get(state.target)
            if (cur.version if cur else 0) != state.version:
                raise ConflictError(f"applied state of {state.target} changed since version {state.version}")
            new = state.model_copy(update={"version": state.version + 1})
            self.states[state.target] = new
            return new

    def get_paused(self) -> tuple[bool, str]:
        return self.paused

    def set_paused(self, paused: bool, reason: str, now: int) -> None:
        self.paused = (paused, reason)

    # ---------------------------------------------------------------- act's open work and bounds

    def mark_open_work(self, work: OpenWork) -> None:
        self.open_work[work.target] = work

    def write_open_work(self, notes: Mapping[str, OpenWork | None]) -> None:
        with self._lock:
            for target, work in notes.items():
                if work is None:
                    self.open_work.pop(target, None)
                else:
                    self.open_work[target] = work

    def clear_open_work(self, target: str, decided_at: int) -> None:
        self.open_work.pop(target, None)

    def list_open_work(self) -> list[OpenWork]:
        return sorted(self.open_work.values(), key=lambda w: w.target)

    def list_targets_after(self, after: str, limit: int) -> list[TargetConfig]:
        return [c for c in self.list_targets() if c.name > after][:limit]

    def get_rotation(self) -> str:
        return self.rotation

    def set_rotation(self, after: str) -> None:
        self.rotation = after

    def remember_user_bounds(self, target: str, bounds: UserBounds) -> UserBounds:
        with self._lock:
            return self.user_bounds.setdefault(target, bounds)

    def list_user_bounds(self) -> dict[str, UserBounds]:
        return dict(self.user_bounds)

    def forget_user_bounds(self, target: str) -> None:
        self.user_bounds.pop(target, None)


def table_definition(table_name: str) -> dict[str, Any]:
    """CreateTable arguments matching the CDK stack's table (used by tests and the local demo)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "gsi1pk", "gsi1sk")],
        "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }
