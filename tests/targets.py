"""Target registrations the act tests share (the in-memory fakes and moto run the same cases)."""

from __future__ import annotations

from forescale.domain.targets import TargetKind
from forescale.runtime.models import InstanceTypeSpec, Mode, TargetConfig

CATALOG = (
    InstanceTypeSpec(name="ml.g5.xlarge", price_per_hour=1.41, capacity_rps=60),
    InstanceTypeSpec(name="ml.g6.xlarge", price_per_hour=1.17, capacity_rps=55),
)


def pc_target(name: str = "orders", mode: Mode = Mode.ACTIVE, qualifier: str = "live") -> TargetConfig:
    return TargetConfig(
        name=name, kind=TargetKind.LAMBDA_PROVISIONED, function_name=name, qualifier=qualifier, mode=mode
    )


def reserved_target(name: str = "batch") -> TargetConfig:
    return TargetConfig(name=name, kind=TargetKind.LAMBDA_RESERVED, function_name=name, mode=Mode.ACTIVE)


def endpoint_target(name: str = "ranker", kind: TargetKind = TargetKind.SAGEMAKER_INSTANCE_COUNT) -> TargetConfig:
    return TargetConfig(
        name=name,
        kind=kind,
        endpoint_name=name,
        variant_name="AllTraffic",
        catalog=CATALOG,
        instance_type="ml.g5.xlarge",
        min_capacity=1,
        mode=Mode.ACTIVE,
    )
