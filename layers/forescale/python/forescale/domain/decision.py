"""Decision records: what was decided for a target, from which inputs, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A policy's raw answer before the guardrails.

    `demand_rps` is the rate the capacity was sized for; `band` the forecast band (low, median, high)
    in requests/s where a forecast was used; `refit` asks the forecaster to refit (drift or panic).
    """

    capacity: int
    reason: str
    demand_rps: float = 0.0
    instance_type: str | None = None
    band: tuple[float, float, float] | None = None
    refit: bool = False
    panic: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The audited outcome of one planning step for one target."""

    target: str
    decided_at: int
    capacity: int
    previous: int
    recommended: int
    policy: str
    reason: str
    instance_type: str | None = None
    previous_instance_type: str | None = None
    shaped_by: tuple[str, ...] = ()
    demand_rps: float = 0.0
    observed_rps: float | None = None
    band: tuple[float, float, float] | None = None
    data_missing: bool = False
    refit: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.capacity != self.previous or (
            self.instance_type is not None and self.instance_type != self.previous_instance_type
        )

    @property
    def type_change(self) -> bool:
        return self.instance_type is not None and self.instance_type != self.previous_instance_type

    def to_record(self) -> dict[str, Any]:
        """A plain dict for storage (DynamoDB) and reports."""
        out = asdict(self)
        out["shaped_by"] = list(self.shaped_by)
        out["band"] = list(self.band) if self.band else None
        return out
