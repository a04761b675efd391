"""Planner snapshots: the mutable state of a planner and its policy, as bytes, without pickle.

The plan Lambda is stateless between invocations, so after each decision it stores the planner's
state and restores it into a planner freshly built from the target's configuration. Only plain
state is stored (numbers, strings, deques, the policy's windows); configuration (the target, the
guardrail settings, the policy's parameters) comes from the config item and the forecast from its
own item, so a config change applies at the next step. Decoding builds no classes from the data:
it only fills attributes of objects the fresh planner already has, so a tampered blob can at most
set numbers, never run code; and every value it sets is checked first: its type must be the type the
fresh planner has there, numbers finite and within their field's range (a capacity in 0..2^31-1, a
time before 2100), or `SnapshotError` names the field.

Lossless: floats round-trip exactly, so a restored planner decides exactly as one that never stopped
(tests assert this against an uninterrupted replay).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from array import array
from collections import deque
from typing import Any

from forescale.domain.history import DemandHistory
from forescale.domain.planner import Planner
from forescale.domain.policies import Policy, _Expert, _SortedWindow

FORMAT = 2
_FLOAT_RUN = 16  # float sequences at least this long go to the binary section (8 bytes each, exact)
_MAGIC = b"FSP2"
# Configuration and per-run inputs: rebuilt from the stored config and forecast, never snapshotted.
_SKIP = frozenset({"target", "params", "settings", "chain", "forecast", "policy", "experts", "_sorted"})
_STATEFUL = (DemandHistory, _Expert, _SortedWindow)


MAX_CAPACITY = 2**31 - 1
MAX_EPOCH_S = 4_102_444_800  # 2100-01-01
_MAX_INT = 2**53  # beyond it a number no longer round-trips through a float
_MAX_TEXT = 256
_NEVER = -(10**12)  # the planner's "long ago" sentinel
# Fields whose range is narrower than "any finite number" (wherever they occur).
_RANGES: dict[str, tuple[int, int]] = {
    "requested": (0, MAX_CAPACITY),
    "_applied_for_last": (0, MAX_CAPACITY),
    "last_change_at": (0, MAX_EPOCH_S),
    "last_decided_at": (0, MAX_EPOCH_S),
    "last_ts": (0, MAX_EPOCH_S),
    "forecast_issued_at": (-1, MAX_EPOCH_S),
    "type_switch_until": (_NEVER, MAX_EPOCH_S),
    "step_s": (1, 86_400),
    "day_steps": (1, 1_000_000),
    "hour_steps": (1, 1_000_000),
    "window": (1, 1_000_000),
    "steps_seen": (0, _MAX_INT),
    "observed_steps": (0, _MAX_INT),
    "missing_run": (0, _MAX_INT),
}
# Deques of tuples: the range of each position (the stabilisation window's (time, capacity) pairs).
_ITEM_RANGES: dict[str, tuple[tuple[int, int], ...]] = {"recent": ((0, MAX_EPOCH_S), (0, MAX_CAPACITY))}


class SnapshotError(ValueError):
    """The blob is corrupt, from another format, or does not fit this planner's policy."""


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | deque):
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in (*_leaves(k), *_leaves(v))]
    return [value]


def _check_leaf(where: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SnapshotError(f"planner snapshot: {where}: {value} is not a finite number")
    elif isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise SnapshotError(f"planner snapshot: {where}: {value:.3g} is out of range")
    elif isinstance(value, str):
        if len(value) > _MAX_TEXT:
            raise SnapshotError(f"planner snapshot: {where}: a text of {len(value)} characters")
    else:
        raise SnapshotError(f"planner snapshot: {where}: unexpected {type(value).__name__}")


def _in_range(where: str, value: Any, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if isinstance(value, int | float) and not isinstance(value, bool) and not low <= value <= high:
        raise SnapshotError(f"planner snapshot: {where}: {value:.6g} is outside {low}..{high}")


def _same_kind(fresh: Any, value: Any) -> bool:
    """Whether `value` may replace the fresh planner's `fresh` (None there: any plain value)."""
    if fresh is None or value is None:
        return True  # optional fields start as None; a restored None is checked by its user
    if isinstance(fresh, bool) or isinstance(value, bool):
        return isinstance(fresh, bool) and isinstance(value, bool)
    if isinstance(fresh, float):
        return isinstance(value, int | float)
    return type(value) is type(fresh) or (isinstance(fresh, list | tuple | deque) and isinstance(value, list))


def _checked(obj: object, name: str, fresh: Any, value: Any) -> Any:
    """`value` for `obj.name` once its type and range are checked (SnapshotError names the field)."""
    where = f"{type(obj).__name__}.{name}"
    if not _same_kind(fresh, value):
        raise SnapshotError(
            f"planner snapshot: {where}: expected {type(fresh).__name__}, got {type(value).__name__} {value!r:.40}"
        )
    if isinstance(fresh, float) and fresh == math.inf and value == math.inf:
        return value  # a field that starts unbounded (PredictivePolicy.upper_band before its first step)
    for leaf in _leaves(value):
        _check_leaf(where, leaf)
    if name in _RANGES:
        _in_range(where, value, _RANGES[name])
    for item in value if name in _ITEM_RANGES and isinstance(value, list | deque) else ():
        if not isinstance(item, list | tuple) or len(item) != len(_ITEM_RANGES[name]):
            raise SnapshotError(f"planner snapshot: {where}: an item is not a {len(_ITEM_RANGES[name])}-tuple")
        for x, bounds in zip(item, _ITEM_RANGES[name], strict=True):
            _in_range(where, x, bounds)
    return value


def _attrs(obj: object) -> list[str]:
    names: list[str] = list(vars(obj)) if hasattr(obj, "__dict__") else []
    for cls in type(obj).__mro__:
        names.extend(s for s in getattr(cls, "__slots__", ()) if s not in names)
    return [n for n in names if n not in _SKIP and not n.startswith("__")]


class _Floats:
    """Long runs of floats, stored as raw doubles (JSON text is 2-3x larger and 5x slower to write)."""

    def __init__(self, data: bytes = b"") -> None:
        self.values = array("d")
        if data:
            self.values.frombytes(data)

    def put(self, seq: Any) -> dict[str, int]:
        start = len(self.values)
        self.values.extend(seq)
        return {"f": start, "n": len(self.values) - start}

    def get(self, ref: dict[str, int]) -> list[float]:
        start, n = ref["f"], ref["n"]
        if start < 0 or n < 0 or start + n > len(self.values):
            raise SnapshotError("planner snapshot: a float run points outside its data")
        return self.values[start : start + n].tolist()


def _all_floats(seq: Any) -> bool:
    return len(seq) >= _FLOAT_RUN and all(type(x) is float for x in seq)


def _encode(v: Any, floats: _Floats) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, deque):
        return {"q": floats.put(v) if _all_floats(v) else [_encode(x, floats) for x in v]}
    if isinstance(v, list | tuple):
        return {"l": floats.put(v)} if _all_floats(v) else [_encode(x, floats) for x in v]
    if isinstance(v, dict):
        return {"d": [[_encode(k, floats), _encode(x, floats)] for k, x in v.items()]}
    if isinstance(v, _STATEFUL):
        return {"o": {n: _encode(getattr(v, n), floats) for n in _attrs(v)}}
    raise SnapshotError(f"cannot snapshot a {type(v).__name__}")


def _items(enc: Any, floats: _Floats) -> list[Any]:
    return floats.get(enc) if isinstance(enc, dict) else [_decode(x, floats) for x in enc]


def _decode(v: Any, floats: _Floats) -> Any:
    """Plain values only: lists stay lists (tuples are read by index or unpacking, the same either way)."""
    if isinstance(v, list):
        return [_decode(x, floats) for x in v]
    if isinstance(v, dict):
        if "q" in v:
            return deque(_items(v["q"], floats))
        if "l" in v:
            return floats.get(v["l"])
        if "d" in v:
            return {_decode(k, floats): _decode(x, floats) for k, x in v["d"]}
        raise SnapshotError("an object can only be restored into an existing one")
    return v


def _restore_into(obj: object, name: str, enc: Any, floats: _Floats) -> None:
    current = getattr(obj, name)
    if isinstance(current, deque):
        if not (isinstance(enc, dict) and "q" in enc):
            raise SnapshotError(f"{type(obj).__name__}.{name}: expected a deque")
        items = _checked(obj, name, current, _items(enc["q"], floats))
        current.clear()
        current.extend(items)  # keeps the fresh deque's maxlen
    elif isinstance(current, _STATEFUL):
        if not (isinstance(enc, dict) and "o" in enc):
            raise SnapshotError(f"{type(obj).__name__}.{name}: expected an object")
        _restore_object(current, enc["o"], floats)
    elif isinstance(current, dict) and any(isinstance(x, list) for x in current.values()):
        # The policy's experts per offset: restore each expert in place, keeping aliases intact.
        pairs = {_decode(k, floats): x for k, x in enc["d"]}
        if set(pairs) != set(current):
            raise SnapshotError(f"{type(obj).__name__}.{name}: keys {sorted(pairs)} != {sorted(current)}")
        for key, members in current.items():
            if len(pairs[key]) != len(members):
                raise SnapshotError(f"{type(obj).__name__}.{name}[{key}]: {len(pairs[key])} != {len(members)} items")
            for member, member_enc in zip(members, pairs[key], strict=True):
                _restore_object(member, member_enc["o"], floats)
    else:
        setattr(obj, name, _checked(obj, name, current, _decode(enc, floats)))


def _restore_object(obj: object, fields: dict[str, Any], floats: _Floats) -> None:
    # A field this version added and the snapshot lacks keeps the fresh planner's value, so an upgrade
    # that adds state does not reset every planner; a field this version does not know is an error.
    unknown = set(fields) - set(_attrs(obj))
    if unknown:
        raise SnapshotError(f"{type(obj).__name__}: snapshot has fields this version does not know: {sorted(unknown)}")
    for name, enc in fields.items():
        _restore_into(obj, name, enc, floats)
    if isinstance(obj, _SortedWindow):
        obj._sorted = sorted(obj._fifo)


def dump(planner: Planner) -> bytes:
    """The planner's and its policy's mutable state: a JSON header and a section of doubles, compressed."""
    floats = _Floats()
    body = {
        "format": FORMAT,
        "policy": planner.policy.name,
        "planner": {n: _encode(getattr(planner, n), floats) for n in _attrs(planner)},
        "state": {n: _encode(getattr(planner.policy, n), floats) for n in _attrs(planner.policy)},
    }
    header = json.dumps(body, separators=(",", ":")).encode()
    return zlib.compress(_MAGIC + struct.pack("<I", len(header)) + header + floats.values.tobytes(), 1)


def load(planner: Planner, blob: bytes, not_after: int | None = None) -> Planner:
    """Fill a freshly built planner (same policy and step) with a snapshot's state; returns it.

    With `not_after` (epoch s: now plus the clock skew allowed), a snapshot that has decided or
    changed capacity after it is refused: a step "decided" in the future would freeze the target.
    """
    try:
        raw = zlib.decompress(blob)
        if raw[:4] != _MAGIC:
            raise SnapshotError("planner snapshot: not a forescale snapshot (or an older format)")
        (size,) = struct.unpack("<I", raw[4:8])
        body = json.loads(raw[8 : 8 + size])
        tail = raw[8 + size :]
        if len(tail) % 8:
            raise SnapshotError("planner snapshot: truncated float section")
        floats = _Floats(tail)
    except (zlib.error, ValueError, struct.error) as exc:
        raise SnapshotError(f"planner snapshot is not readable: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise SnapshotError(f"planner snapshot format {body.get('format') if isinstance(body, dict) else '?'}")
    policy: Policy = planner.policy
    if body["policy"] != policy.name:
        raise SnapshotError(f"snapshot is of policy {body['policy']}, the target now uses {policy.name}")
    try:
        _restore_object(planner, body["planner"], floats)
        _restore_object(policy, body["state"], floats)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"planner snapshot does not fit this planner: {exc!r}") from exc
    for name in ("last_decided_at", "last_change_at") if not_after is not None else ():
        at = getattr(planner, name)
        if at is not None and not_after is not None and at > not_after:
            raise SnapshotError(f"planner snapshot: Planner.{name}: {at} is after now ({not_after})")
    return planner
