"""Planner snapshots: the mutable state of a planner and its policy, as bytes, without pickle.

The plan Lambda is stateless between invocations, so after each decision it stores the planner's
state and restores it into a planner freshly built from the target's configuration. Only plain
state is stored (numbers, strings, deques, the policy's windows); configuration (the target, the
guardrail settings, the policy's parameters) comes from the config item and the forecast from its
own item, so a config change applies at the next step. Decoding builds no classes from the data:
it only fills attributes of objects the fresh planner already has, so a tampered blob can at most
set numbers, never run code.

Lossless: floats round-trip exactly, so a restored planner decides exactly as one that never stopped
(tests assert this against an uninterrupted replay).
"""

from __future__ import annotations

import json
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


class SnapshotError(ValueError):
    """The blob is corrupt, from another format, or does not fit this planner's policy."""


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
        current.clear()
        current.extend(_items(enc["q"], floats))  # keeps the fresh deque's maxlen
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
        setattr(obj, name, _decode(enc, floats))


def _restore_object(obj: object, fields: dict[str, Any], floats: _Floats) -> None:
    expected = set(_attrs(obj))
    if set(fields) != expected:
        raise SnapshotError(
            f"{type(obj).__name__}: snapshot fields differ (missing {sorted(expected - set(fields))}, "
            f"unknown {sorted(set(fields) - expected)})"
        )
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


def load(planner: Planner, blob: bytes) -> Planner:
    """Fill a freshly built planner (same policy and step) with a snapshot's state; returns it."""
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
    except (KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"planner snapshot does not fit this planner: {exc!r}") from exc
    return planner
