"""What forescale manages: targets, their bounds, SLO, lead times and instance catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TargetKind(StrEnum):
    LAMBDA_RESERVED = "lambda-reserved"
    LAMBDA_PROVISIONED = "lambda-provisioned"
    SAGEMAKER_INSTANCE_COUNT = "sagemaker-instance-count"
    SAGEMAKER_INSTANCE_TYPE = "sagemaker-instance-type"

    @property
    def is_lambda(self) -> bool:
        return self in (TargetKind.LAMBDA_RESERVED, TargetKind.LAMBDA_PROVISIONED)


@dataclass(frozen=True, slots=True)
class InstanceType:
    """One SageMaker instance type: its price and how many requests/s one instance serves at the SLO."""

    name: str
    price_per_hour: float
    capacity_rps: float

    def __post_init__(self) -> None:
        if self.price_per_hour <= 0 or self.capacity_rps <= 0:
            raise ValueError(f"instance type {self.name}: price_per_hour and capacity_rps must be > 0")

    @property
    def price_per_rps_hour(self) -> float:
        return self.price_per_hour / self.capacity_rps


@dataclass(frozen=True, slots=True)
class LeadTimes:
    """Seconds from a decision to usable capacity (AWS: Lambda PC 1-2 min, a GPU instance 4-9 min)."""

    up_s: int
    down_s: int
    type_change_s: int = 600

    @staticmethod
    def for_kind(kind: TargetKind) -> LeadTimes:
        if kind.is_lambda:
            return LeadTimes(up_s=120, down_s=0, type_change_s=0)
        return LeadTimes(up_s=360, down_s=60, type_change_s=600)


# The one default upper bound of a target's capacity (environments or instances), for configs, the CLI and
# replay alike. Real traffic needs more than the 1,000 of Lambda's default account limit (a ServeGen client
# in servegen-small peaks at 1,982 environments), so the cost of a runaway scale-out is bounded by the
# scale-out guardrails (`forescale.domain.guardrails`), not by this ceiling.
DEFAULT_MAX_CAPACITY = 10_000

# Lambda prices per GB-second, x86 us-east-1 (the yardstick's model).
LAMBDA_PC_PRICE_PER_GB_S = 0.0000041667
LAMBDA_PC_DURATION_PRICE_PER_GB_S = 0.0000097222
LAMBDA_ON_DEMAND_PRICE_PER_GB_S = 0.0000166667


@dataclass(frozen=True, slots=True)
class Target:
    """One managed resource and the rules its capacity must follow.

    `slo_miss` is the acceptable share of requests that spill to on-demand (Lambda) or exceed the
    fleet's capacity (SageMaker). Capacities are environments (Lambda) or instances (SageMaker).
    """

    name: str
    kind: TargetKind
    min_capacity: int = 0
    max_capacity: int = DEFAULT_MAX_CAPACITY
    slo_miss: float = 0.01
    lead: LeadTimes | None = None
    duration_s: float = 0.1
    memory_mb: int = 1024
    catalog: tuple[InstanceType, ...] = ()
    instance_type: str | None = None
    resource_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("target name must not be empty")
        if not 0 <= self.min_capacity <= self.max_capacity:
            raise ValueError(
                f"target {self.name}: need 0 <= min_capacity ({self.min_capacity}) "
                f"<= max_capacity ({self.max_capacity})"
            )
        if not 0 < self.slo_miss < 1:
            raise ValueError(f"target {self.name}: slo_miss must be in (0, 1), got {self.slo_miss}")
        if self.kind.is_lambda and self.duration_s <= 0:
            raise ValueError(f"target {self.name}: duration_s must be > 0")
        if not self.kind.is_lambda and not self.catalog:
            raise ValueError(f"target {self.name}: a SageMaker target needs an instance catalog")
        names = [t.name for t in self.catalog]
        if len(set(names)) != len(names):
            raise ValueError(f"target {self.name}: duplicate instance types in the catalog")
        if self.instance_type is not None and self.instance_type not in names:
            raise ValueError(f"target {self.name}: instance_type {self.instance_type} is not in the catalog")

    @property
    def lead_times(self) -> LeadTimes:
        return self.lead or LeadTimes.for_kind(self.kind)

    @property
    def is_lambda(self) -> bool:
        return self.kind.is_lambda

    def instance(self, name: str | None) -> InstanceType:
        """The catalog entry for `name` (default: the current type, else the cheapest per rps)."""
        wanted = name or self.instance_type or self.cheapest_type().name
        for it in self.catalog:
            if it.name == wanted:
                return it
        raise KeyError(f"target {self.name}: unknown instance type {wanted}")

    def cheapest_type(self) -> InstanceType:
        """The instance type with the lowest price per request/s of capacity (ties: catalog order)."""
        return min(self.catalog, key=lambda t: t.price_per_rps_hour)

    def price_per_unit_hour(self, instance_type: str | None = None) -> float:
        """$/hour of one unit of capacity: a provisioned environment or an instance."""
        if self.is_lambda:
            return self.memory_mb / 1024 * 3600 * LAMBDA_PC_PRICE_PER_GB_S
        return self.instance(instance_type).price_per_hour
