"""State: what a refit leaves for the update path (`TargetState`), and its export format.

A target's state and model choice travel as compressed JSON bytes (about 1.5 kB), e.g. in a DynamoDB
item, so a stateless forecaster invocation updates instead of refitting.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from forescale.forecasting.model_choice import Selection

QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 0.9, 0.92, 0.95, 0.99)
# Lead-time bands (seconds, upper edges) with their own error quantiles; the last band is open.
BAND_EDGES_S: tuple[int, ...] = (300, 900, 3600, 6 * 3600)
STATE_VERSION = 1


class StateError(ValueError):
    """Stored forecaster state that cannot be used; the message names the target."""


@dataclass(slots=True)
class TargetState:
    """Everything the update path needs for one target, as plain JSON-able data.

    Rates are requests/s; `path` holds bucket means from `fitted_at` (epoch s), `profile` the
    multiplier of each raw step inside a bucket (mean 1), `errors[band][i]` the calibrated quantile
    `QUANTILES[i]` of log((actual + shift) / (point + shift)) for lead times in that band.
    """

    step_s: int
    k: int  # raw steps per bucket
    season: int  # buckets per day
    fitted_at: int
    model: str
    label: str
    mase: float | None
    path: list[float]
    profile: list[float]
    shift: float
    spike_log_cap: float  # a raw sample counts toward the level at most exp(this) × the baseline
    anchor: list[float]  # per lead-time band, the share of the level correction applied (0..1)
    anchor_noise: float  # log corrections up to this size are partly noise; beyond, applied in full
    errors: list[list[float]]
    calibration: str
    notes: list[str] = field(default_factory=list)
    provisional: bool = False  # an interim SeasonalNaive fit while the refit budget was used up

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, target: str, data: Mapping[str, Any]) -> TargetState:
        if data.get("version") != STATE_VERSION:
            raise StateError(f"state for {target}: version {data.get('version')!r}, expected {STATE_VERSION}")
        try:
            st = cls(
                step_s=int(data["step_s"]),
                k=int(data["k"]),
                season=int(data["season"]),
                fitted_at=int(data["fitted_at"]),
                model=str(data["model"]),
                label=str(data["label"]),
                mase=None if data["mase"] is None else float(data["mase"]),
                path=[float(v) for v in data["path"]],
                profile=[float(v) for v in data["profile"]],
                shift=float(data["shift"]),
                spike_log_cap=float(data["spike_log_cap"]),
                anchor=[float(v) for v in data["anchor"]],
                anchor_noise=float(data["anchor_noise"]),
                errors=[[float(v) for v in row] for row in data["errors"]],
                calibration=str(data["calibration"]),
                notes=[str(n) for n in data.get("notes", [])],
                provisional=bool(data.get("provisional", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"state for {target}: {type(exc).__name__}: {exc}") from None
        problems = []
        if st.step_s <= 0 or st.k <= 0 or st.season <= 0:
            problems.append("step_s, k and season must be > 0")
        if len(st.anchor) != len(BAND_EDGES_S) + 1 or not all(0.0 <= a <= 1.0 for a in st.anchor):
            problems.append("anchor must be one share in [0, 1] per lead-time band")
        if not st.anchor_noise >= 0:
            problems.append("anchor_noise must be >= 0")
        if len(st.profile) != st.k:
            problems.append(f"profile has {len(st.profile)} values for k={st.k}")
        if len(st.path) < st.season:
            problems.append(f"path has {len(st.path)} buckets, under one season ({st.season})")
        if len(st.errors) != len(BAND_EDGES_S) + 1 or any(len(r) != len(QUANTILES) for r in st.errors):
            problems.append("errors must be one row of len(QUANTILES) per lead-time band")
        numbers = [*st.path, *st.profile, *(v for r in st.errors for v in r), st.shift, st.spike_log_cap]
        if not all(math.isfinite(v) for v in numbers) or any(v < 0 for v in st.path) or st.shift <= 0:
            problems.append("non-finite or negative values")
        if problems:
            raise StateError(f"state for {target}: {'; '.join(problems)}")
        return st


def state_blob(st: TargetState, sel: Selection | None) -> bytes:
    """One target's state and model choice as compressed JSON bytes."""
    data = st.to_json()
    data["selection"] = None if sel is None else asdict(sel)
    return zlib.compress(json.dumps(data, separators=(",", ":")).encode())


def blob_data(name: str, blob: bytes) -> dict[str, Any]:
    """The JSON object inside a blob from `state_blob`; anything else raises `StateError`."""
    try:
        data = json.loads(zlib.decompress(blob))
    except (zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateError(f"state for {name}: not an exported state ({exc})") from None
    if not isinstance(data, dict):
        raise StateError(f"state for {name}: expected a JSON object")
    return data


def selection_from_json(name: str, sel: object) -> Selection | None:
    """The model choice stored beside a state (None when there was none); a broken one raises `StateError`."""
    if not isinstance(sel, dict):
        return None
    try:
        return Selection(
            model=str(sel["model"]),
            season=int(sel["season"]),
            at=int(sel["at"]),
            mase=float(sel["mase"]),
            ets_form=None if sel["ets_form"] is None else str(sel["ets_form"]),
            scores={str(k): float(v) for k, v in sel["scores"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"state for {name}: selection: {type(exc).__name__}: {exc}") from None
