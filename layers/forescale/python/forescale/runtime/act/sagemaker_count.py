"""SageMaker real-time endpoint variant instance count (UpdateEndpointWeightsAndCapacities), or the floor
of the variant's Application Auto Scaling target. A decision that names another instance type goes to
the type switch (`sagemaker_type.py`). The endpoint is Updating for minutes: `poll` waits for InService."""

from __future__ import annotations

from typing import Final

from forescale.adapters.autoscaling import AutoScalingPort, ScalableTargetRef
from forescale.adapters.sagemaker_capacity import SageMakerCapacityPort
from forescale.runtime.act.base import ActRun, Actual, Actuator, Outcome, already
from forescale.runtime.act.floor import AutoScalingFloor
from forescale.runtime.act.sagemaker_type import TypeSwitch
from forescale.runtime.models import DecisionRecord, DecisionStatus, InFlightOperation, TargetConfig

S = DecisionStatus
OPERATION: Final = "endpoint-capacity"
ACTION = "update-endpoint-weights-and-capacities"
ENDPOINT_GONE = frozenset({"Failed", "OutOfService", "Deleting"})


class InstanceCount(Actuator):
    """One endpoint variant's instance count; instance-type changes are handed to `type_switch`."""

    operations = frozenset({OPERATION})
    # An instance-count update provisions or drains instances: minutes (the moto extension: 300 s).
    # Polled from 4 minutes on, it costs 2 DescribeEndpoint calls instead of 5.
    first_poll_after_s = 240

    def __init__(
        self,
        sagemaker: SageMakerCapacityPort,
        autoscaling: AutoScalingPort,
        floor: AutoScalingFloor,
        type_switch: TypeSwitch,
    ) -> None:
        self.sagemaker = sagemaker
        self.autoscaling = autoscaling
        self.floor = floor
        self.type_switch = type_switch

    def read(self, cfg: TargetConfig) -> Actual:
        assert cfg.endpoint_name is not None and cfg.variant_name is not None  # nosec B101  # TargetConfig._check; for mypy
        ep = self.sagemaker.describe_endpoint(cfg.endpoint_name)
        variant = ep.variant(cfg.variant_name)
        instance_type = self.sagemaker.variant_instance_type(ep.config_name, cfg.variant_name)
        return Actual(capacity=variant.current_count if variant else None, instance_type=instance_type, endpoint=ep)

    def describe(self, cfg: TargetConfig, record: DecisionRecord) -> str:
        where = f"{cfg.endpoint_name}/{cfg.variant_name}"
        if record.instance_type and record.instance_type != record.previous_instance_type:
            return f"switch {where} to {record.capacity} x {record.instance_type}"
        return f"set the instance count of {where} {record.previous} -> {record.capacity}"

    def apply(self, cfg: TargetConfig, record: DecisionRecord, actual: Actual, run: ActRun) -> Outcome:
        ep = actual.endpoint
        variant_name = cfg.variant_name
        assert ep is not None and variant_name is not None  # nosec B101  # TargetConfig._check + read; narrows the type for mypy
        want = record.capacity
        variant = ep.variant(variant_name)
        if variant is None:
            return Outcome(
                S.FAILED, ACTION, f"endpoint {ep.name} has no variant {variant_name}", error_code="VariantNotFound"
            )
        if want < 1:
            return Outcome(
                S.FAILED,
                ACTION,
                f"a SageMaker variant needs at least 1 instance; the decision asked for {want}",
                error_code="InvalidCapacity",
            )
        if record.instance_type and actual.instance_type and record.instance_type != actual.instance_type:
            return self.type_switch.start(cfg, record, ep, actual, run)
        scalable = self.autoscaling.find(ScalableTargetRef.sagemaker_variant(ep.name, variant_name))
        if scalable is not None:
            return self.floor.set(cfg.name, record, scalable, want, variant.current_count or 0)
        if not ep.in_service:
            return Outcome(
                S.DEFERRED,
                ACTION,
                f"endpoint {ep.name} is {ep.status}; instance counts change only InService; retried next cycle",
            )
        if variant.current_count == want and variant.desired_count in (None, want):
            return already(record, want, f"instances of {ep.name}/{variant_name}", ACTION)
        self.sagemaker.set_instance_count(ep.name, variant_name, want)
        op = InFlightOperation(
            operation=OPERATION,
            decision_id=record.decision_id,
            started_at=run.now,
            capacity=want,
            instance_type=actual.instance_type,
            details={"endpoint": ep.name, "variant": variant_name, "decided_at": str(record.decided_at)},
        )
        return Outcome(
            S.IN_FLIGHT,
            ACTION,
            f"asked for {want} instances of {ep.name}/{variant_name} (from {variant.current_count}); "
            "the endpoint is Updating, checked next cycle",
            capacity=want,
            in_flight=op,
        )

    def poll(self, cfg: TargetConfig, op: InFlightOperation, run: ActRun) -> Outcome:
        endpoint, variant_name = op.details["endpoint"], op.details["variant"]
        ep = self.sagemaker.describe_endpoint(endpoint)
        variant = ep.variant(variant_name)
        count = variant.current_count if variant else None
        if ep.in_service:
            if count == op.capacity:
                return Outcome(
                    S.APPLIED,
                    ACTION,
                    f"{endpoint}/{variant_name} is InService with {count} instances after {run.now - op.started_at} s",
                    capacity=count,
                    instance_type=op.instance_type,
                    confirmed=True,
                )
            return Outcome(
                S.FAILED,
                ACTION,
                f"{endpoint} is InService again with {count} instances of {variant_name}, not {op.capacity}",
                capacity=count,
                error_code="CapacityNotReached",
            )
        if ep.status in ENDPOINT_GONE:
            return Outcome(
                S.FAILED,
                ACTION,
                f"{endpoint} is {ep.status}: {ep.failure_reason or 'no reason given'}",
                capacity=count,
                error_code=f"Endpoint{ep.status}",
            )
        return Outcome(S.IN_FLIGHT, op.operation, f"{endpoint} is {ep.status}", in_flight=op)
