"""The canonical trace format (shared yardstick contract) and its sidecar, read and written with clear errors.

`<name>.csv` has the header `timestamp,target,requests`: epoch seconds at the start of a fixed step,
requests that arrived in that step, every target on every step, rows sorted by target then timestamp.
`<name>.targets.json` holds `step_s`, per-target kind and parameters, and `gaps`: [start, end) epoch
ranges where the source had no data (written as 0, but missing, not zero demand).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forescale.domain.targets import DEFAULT_MAX_CAPACITY, InstanceType, LeadTimes, Target, TargetKind

HEADER = ["timestamp", "target", "requests"]


class TraceError(ValueError):
    """Bad trace input; the message names the file and, where there is one, the line."""


@dataclass(frozen=True, slots=True)
class TraceTarget:
    """One target of a trace: its requests per step and the parameters from the sidecar."""

    name: str
    requests: tuple[float, ...]
    params: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.params["kind"])

    def to_target(self) -> Target:
        """The domain `Target` this trace entry describes (Lambda PC, or a SageMaker variant with types)."""
        p = self.params
        lead_over = p.get("lead_time_s", {})
        if self.kind == "lambda":
            default = LeadTimes.for_kind(TargetKind.LAMBDA_PROVISIONED)
            lead = LeadTimes(
                up_s=int(lead_over.get("up", default.up_s)),
                down_s=int(lead_over.get("down", default.down_s)),
                type_change_s=0,
            )
            return Target(
                name=self.name,
                kind=TargetKind.LAMBDA_PROVISIONED,
                duration_s=float(p["duration_ms"]) / 1000,
                memory_mb=int(p.get("memory_mb", 1024)),
                lead=lead,
                slo_miss=float(p.get("slo_miss", 0.01)),
            )
        default = LeadTimes.for_kind(TargetKind.SAGEMAKER_INSTANCE_TYPE)
        lead = LeadTimes(
            up_s=int(lead_over.get("up", default.up_s)),
            down_s=int(lead_over.get("down", default.down_s)),
            type_change_s=int(lead_over.get("type_change", default.type_change_s)),
        )
        catalog = tuple(
            InstanceType(name, float(spec["price_per_hour"]), float(spec["capacity_rps"]))
            for name, spec in p["instance_types"].items()
        )
        kind = TargetKind.SAGEMAKER_INSTANCE_TYPE if len(catalog) > 1 else TargetKind.SAGEMAKER_INSTANCE_COUNT
        min_instances = int(p.get("min_instances", 1))
        probe = Target(name=self.name, kind=kind, catalog=catalog, min_capacity=min_instances)
        return Target(
            name=self.name,
            kind=kind,
            catalog=catalog,
            min_capacity=min_instances,
            max_capacity=int(p.get("max_instances", DEFAULT_MAX_CAPACITY)),
            lead=lead,
            instance_type=probe.cheapest_type().name,
            slo_miss=float(p.get("slo_miss", 0.01)),
        )


@dataclass(frozen=True, slots=True)
class Trace:
    step_s: int
    start: int
    steps: int
    targets: dict[str, TraceTarget]
    gaps: tuple[tuple[int, int], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def time(self, i: int) -> int:
        return self.start + i * self.step_s

    @property
    def end(self) -> int:
        return self.time(self.steps)

    def gap_flags(self) -> list[bool]:
        """True for each step that starts inside a source gap (missing, not zero)."""
        flags = [False] * self.steps
        for a, b in self.gaps:
            first = max(0, math.ceil((a - self.start) / self.step_s))
            for i in range(first, self.steps):
                if self.time(i) >= b:
                    break
                flags[i] = True
        return flags

    def truncated(self, end: int) -> Trace:
        """The same trace cut so that only steps starting before `end` remain (for causality tests)."""
        n = max(0, min(self.steps, math.ceil((end - self.start) / self.step_s)))
        targets = {k: TraceTarget(k, t.requests[:n], t.params) for k, t in self.targets.items()}
        return Trace(self.step_s, self.start, n, targets, self.gaps, self.meta, self.path)


def sidecar_path(trace_path: Path) -> Path:
    return trace_path.with_suffix(".targets.json")


def _number(value: Any, *, minimum: float = 0.0, strict: bool = True) -> bool:
    """A finite real number (not a bool) above (strict) or at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return value > minimum if strict else value >= minimum


def _validate_params(side: Path, name: str, params: Any) -> None:
    if not isinstance(params, dict) or "kind" not in params:
        raise TraceError(f"{side}: target {name}: an object with 'kind' is required")
    kind = params["kind"]
    if kind == "lambda":
        d = params.get("duration_ms")
        if not _number(d):
            raise TraceError(f"{side}: target {name}: duration_ms must be a finite number > 0, got {d!r}")
        mem = params.get("memory_mb", 1024)
        if not _number(mem) or not float(mem).is_integer():
            raise TraceError(f"{side}: target {name}: memory_mb must be a whole number > 0, got {mem!r}")
    elif kind == "sagemaker":
        types = params.get("instance_types")
        if not isinstance(types, dict) or not types:
            raise TraceError(f"{side}: target {name}: instance_types must be a non-empty object")
        for tname, spec in types.items():
            if not isinstance(spec, dict) or not all(_number(spec.get(k)) for k in ("price_per_hour", "capacity_rps")):
                raise TraceError(
                    f"{side}: target {name}: instance type {tname} needs finite price_per_hour and capacity_rps > 0"
                )
        for key, default in (("min_instances", 1), ("max_instances", 10_000)):
            v = params.get(key, default)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise TraceError(f"{side}: target {name}: {key} must be an integer >= 0, got {v!r}")
        if params.get("min_instances", 1) > params.get("max_instances", 10_000):
            raise TraceError(f"{side}: target {name}: min_instances exceeds max_instances")
    else:
        raise TraceError(f"{side}: target {name}: unknown kind {kind!r} (expected 'lambda' or 'sagemaker')")
    slo = params.get("slo_miss", 0.01)
    if not _number(slo) or slo >= 1:
        raise TraceError(f"{side}: target {name}: slo_miss must be a number in (0, 1), got {slo!r}")
    lead = params.get("lead_time_s", {})
    if not isinstance(lead, dict) or any(
        k not in ("up", "down", "type_change") or not _number(v, strict=False) or not float(v).is_integer()
        for k, v in lead.items()
    ):
        raise TraceError(f"{side}: target {name}: lead_time_s must map up/down/type_change to whole seconds >= 0")


def read_sidecar(side: Path) -> dict[str, Any]:
    if not side.exists():
        raise TraceError(f"{side}: missing sidecar targets file")
    try:
        text = side.read_text(encoding="utf-8")
    except OSError as e:
        raise TraceError(f"{side}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise TraceError(f"{side}: not UTF-8 text") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceError(f"{side}:{e.lineno}: invalid JSON: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # an integer past Python's digit limit, or nesting too deep
        raise TraceError(f"{side}: invalid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise TraceError(f"{side}: the top level must be an object")
    step = meta.get("step_s")
    if not isinstance(step, int) or isinstance(step, bool) or step <= 0:
        raise TraceError(f"{side}: step_s must be a positive integer, got {step!r}")
    targets = meta.get("targets")
    if not isinstance(targets, dict) or not targets:
        raise TraceError(f"{side}: 'targets' must be a non-empty object")
    for name, params in targets.items():
        _validate_params(side, name, params)
    gaps = meta.get("gaps", [])
    if not isinstance(gaps, list) or any(
        not isinstance(g, list | tuple)
        or len(g) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in g)
        or g[0] >= g[1]
        for g in gaps
    ):
        raise TraceError(f"{side}: gaps must be a list of [start, end) integer pairs with start < end")
    return meta


def load_trace(path: str | Path, sidecar: str | Path | None = None) -> Trace:
    """Read and validate a canonical trace; raise `TraceError` naming the file and line on bad input."""
    path = Path(path)
    side = Path(sidecar) if sidecar else sidecar_path(path)
    meta = read_sidecar(side)
    step = int(meta["step_s"])
    series: dict[str, tuple[list[int], list[float]]] = {}
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise TraceError(f"{path}: cannot open: {e.strerror}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header != HEADER:
                raise TraceError(f"{path}:1: header must be timestamp,target,requests, got {header}")
            last: tuple[str, int] | None = None
            for row in reader:
                line = reader.line_num
                if len(row) != 3:
                    raise TraceError(f"{path}:{line}: expected 3 fields, got {len(row)}")
                try:
                    ts, name, req = int(row[0]), row[1], float(row[2])
                except ValueError:
                    raise TraceError(f"{path}:{line}: timestamp and requests must be numbers: {row}") from None
                if not math.isfinite(req) or req < 0:
                    raise TraceError(f"{path}:{line}: requests must be a finite number >= 0, got {row[2]}")
                if not name:
                    raise TraceError(f"{path}:{line}: empty target name")
                if last is not None and (name, ts) <= last:
                    raise TraceError(f"{path}:{line}: rows must be sorted by target then timestamp, without duplicates")
                if last is not None and name == last[0] and ts - last[1] != step:
                    raise TraceError(f"{path}:{line}: target {name} skips from {last[1]} to {ts} (step_s is {step})")
                last = (name, ts)
                times, values = series.setdefault(name, ([], []))
                times.append(ts)
                values.append(req)
        except csv.Error as e:
            raise TraceError(f"{path}:{reader.line_num}: unreadable CSV: {e}") from None
        except UnicodeDecodeError:
            raise TraceError(f"{path}: not UTF-8 text") from None
    if not series:
        raise TraceError(f"{path}: no rows")
    first_times = next(iter(series.values()))[0]
    start, steps = first_times[0], len(first_times)
    targets: dict[str, TraceTarget] = {}
    for name, (times, values) in series.items():
        if times[0] != start or len(times) != steps:
            raise TraceError(f"{path}: target {name} does not cover the same fixed {step}s steps as the others")
        if name not in meta["targets"]:
            raise TraceError(f"{side}: target {name} (in {path.name}) has no entry")
        targets[name] = TraceTarget(name, tuple(values), meta["targets"][name])
    gaps = tuple((int(a), int(b)) for a, b in meta.get("gaps", []))
    return Trace(step, start, steps, targets, gaps, meta, path)


def write_trace(trace: Trace, path: str | Path) -> Path:
    """Write `trace` as a canonical CSV plus sidecar; returns the CSV path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for name in sorted(trace.targets):
            for i, req in enumerate(trace.targets[name].requests):
                w.writerow([trace.time(i), name, _fmt_requests(req)])
    meta = dict(trace.meta)
    meta["step_s"] = trace.step_s
    meta["gaps"] = [list(g) for g in trace.gaps]
    meta["targets"] = {name: dict(t.params) for name, t in sorted(trace.targets.items())}
    sidecar_path(path).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return path


def _fmt_requests(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def select_targets(trace: Trace, names: Iterable[str] | None) -> Trace:
    """Keep only `names`; an unknown name is an error that lists the known ones."""
    if names is None:
        return trace
    wanted = list(names)
    unknown = [n for n in wanted if n not in trace.targets]
    if unknown:
        raise TraceError(f"unknown target(s) {', '.join(unknown)}; the trace has {', '.join(sorted(trace.targets))}")
    return Trace(
        trace.step_s,
        trace.start,
        trace.steps,
        {n: trace.targets[n] for n in wanted},
        trace.gaps,
        trace.meta,
        trace.path,
    )
