"""Application Auto Scaling: find a resource's scalable target, move its floor, and take it down and
put it back (with its scaling policies and scheduled actions) around a SageMaker instance-type switch.

Where a scalable target already exists, act sets its MinCapacity (a predictive floor) instead of
fighting its policy: RegisterScalableTarget on an existing target updates it, and AWS moves the
current capacity into the new [min, max] range. DeregisterScalableTarget deletes the target's
scaling policies and scheduled actions, so `snapshot` keeps them and `restore` puts them back.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from forescale.adapters.scripted import ScriptedFailures
from forescale.domain.ratelimit import CallGate

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling.client import ApplicationAutoScalingClient

LAMBDA_PC_DIMENSION = "lambda:function:ProvisionedConcurrency"
SAGEMAKER_VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"

# Fields of DescribeScalingPolicies / DescribeScheduledActions that Put* accepts back.
_POLICY_FIELDS = (
    "PolicyName",
    "PolicyType",
    "StepScalingPolicyConfiguration",
    "TargetTrackingScalingPolicyConfiguration",
    "PredictiveScalingPolicyConfiguration",
)
_SCHEDULED_FIELDS = ("ScheduledActionName", "Schedule", "Timezone", "StartTime", "EndTime", "ScalableTargetAction")


@dataclass(frozen=True, slots=True)
class ScalableTargetRef:
    """Which capacity dimension of which resource."""

    namespace: str
    resource_id: str
    dimension: str

    @staticmethod
    def lambda_provisioned(function: str, qualifier: str) -> ScalableTargetRef:
        return ScalableTargetRef("lambda", f"function:{function}:{qualifier}", LAMBDA_PC_DIMENSION)

    @staticmethod
    def sagemaker_variant(endpoint: str, variant: str) -> ScalableTargetRef:
        return ScalableTargetRef("sagemaker", f"endpoint/{endpoint}/variant/{variant}", SAGEMAKER_VARIANT_DIMENSION)

    def key(self) -> dict[str, Any]:
        return {"ServiceNamespace": self.namespace, "ResourceId": self.resource_id, "ScalableDimension": self.dimension}


@dataclass(frozen=True, slots=True)
class ScalableTarget:
    ref: ScalableTargetRef
    min_capacity: int
    max_capacity: int
    suspended: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AutoScalingSnapshot:
    """A scalable target with its policies and scheduled actions, as Put* wants them back (JSON-safe)."""

    target: ScalableTarget
    policies: tuple[dict[str, Any], ...] = ()
    scheduled_actions: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> str:
        t = self.target
        return json.dumps(
            {
                "ref": [t.ref.namespace, t.ref.resource_id, t.ref.dimension],
                "min": t.min_capacity,
                "max": t.max_capacity,
                "suspended": t.suspended,
                "policies": list(self.policies),
                "scheduled": list(self.scheduled_actions),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str) -> AutoScalingSnapshot:
        body = json.loads(text)
        namespace, resource_id, dimension = body["ref"]
        target = ScalableTarget(
            ScalableTargetRef(namespace, resource_id, dimension),
            int(body["min"]),
            int(body["max"]),
            dict(body.get("suspended", {})),
        )
        return AutoScalingSnapshot(target, tuple(body.get("policies", ())), tuple(body.get("scheduled", ())))


def _json_safe(value: Any) -> Any:
    """Timestamps as ISO 8601 strings (botocore accepts them back), recursively."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class AutoScalingPort(ABC):
    """What act needs from Application Auto Scaling. Raises DeferredError / RejectedError."""

    @abstractmethod
    def find(self, ref: ScalableTargetRef) -> ScalableTarget | None: ...

    @abstractmethod
    def set_floor(self, target: ScalableTarget, min_capacity: int) -> ScalableTarget:
        """MinCapacity = `min_capacity`; MaxCapacity raised to it if it was lower (never lowered)."""

    @abstractmethod
    def set_bounds(self, target: ScalableTarget, min_capacity: int, max_capacity: int) -> ScalableTarget:
        """MinCapacity and MaxCapacity as given (min <= max), policies and suspension untouched."""

    @abstractmethod
    def snapshot(self, target: ScalableTarget) -> AutoScalingSnapshot: ...

    @abstractmethod
    def deregister(self, ref: ScalableTargetRef) -> None:
        """Remove the target (and with it its policies); no error if it is already gone."""

    @abstractmethod
    def restore(self, snapshot: AutoScalingSnapshot) -> None:
        """Register the target again with its old bounds, then put back its policies and scheduled actions."""


class ApplicationAutoScaling(AutoScalingPort):
    """The real adapter on a boto3 application-autoscaling client.

    Changes to Lambda resources go through `lambda_gate` when given (act passes the Lambda limiter):
    Application Auto Scaling then calls Lambda's control plane on the account's behalf. Reads do not.
    """

    def __init__(
        self, client: ApplicationAutoScalingClient, gate: CallGate, lambda_gate: CallGate | None = None
    ) -> None:
        self._aas = client
        self._gate = gate
        self._lambda_gate = lambda_gate or gate

    def _gate_of(self, namespace: str, changes: bool = True) -> CallGate:
        return self._lambda_gate if changes and namespace == "lambda" else self._gate

    def find(self, ref: ScalableTargetRef) -> ScalableTarget | None:
        resp = self._gate_of(ref.namespace, changes=False).call(
            f"DescribeScalableTargets {ref.resource_id}",
            lambda: self._aas.describe_scalable_targets(
                ServiceNamespace=ref.namespace,  # type: ignore[arg-type]
                ResourceIds=[ref.resource_id],
                ScalableDimension=ref.dimension,  # type: ignore[arg-type]
            ),
        )
        for t in resp.get("ScalableTargets", []):
            if t["ResourceId"] == ref.resource_id and t["ScalableDimension"] == ref.dimension:
                suspended = {k: bool(v) for k, v in t.get("SuspendedState", {}).items()}
                return ScalableTarget(ref, int(t["MinCapacity"]), int(t["MaxCapacity"]), suspended)
        return None

    def _register(self, target: ScalableTarget) -> None:
        ref = target.ref
        kwargs: dict[str, Any] = ref.key() | {"MinCapacity": target.min_capacity, "MaxCapacity": target.max_capacity}
        if target.suspended:
            kwargs["SuspendedState"] = target.suspended
        self._gate_of(ref.namespace).call(
            f"RegisterScalableTarget {ref.resource_id} min={target.min_capacity} max={target.max_capacity}",
            lambda: self._aas.register_scalable_target(**kwargs),
            applies_change=True,
        )

    def set_floor(self, target: ScalableTarget, min_capacity: int) -> ScalableTarget:
        return self.set_bounds(target, min_capacity, max(target.max_capacity, min_capacity))

    def set_bounds(self, target: ScalableTarget, min_capacity: int, max_capacity: int) -> ScalableTarget:
        new = replace(target, min_capacity=min_capacity, max_capacity=max(max_capacity, min_capacity))
        self._register(new)
        return new

    def snapshot(self, target: ScalableTarget) -> AutoScalingSnapshot:
        ref = target.ref
        gate = self._gate_of(ref.namespace, changes=False)
        policies = gate.call(
            f"DescribeScalingPolicies {ref.resource_id}",
            lambda: self._aas.describe_scaling_policies(
                ServiceNamespace=ref.namespace,  # type: ignore[arg-type]
                ResourceId=ref.resource_id,
                ScalableDimension=ref.dimension,  # type: ignore[arg-type]
            ),
        ).get("ScalingPolicies", [])
        scheduled = gate.call(
            f"DescribeScheduledActions {ref.resource_id}",
            lambda: self._aas.describe_scheduled_actions(
                ServiceNamespace=ref.namespace,  # type: ignore[arg-type]
                ResourceId=ref.resource_id,
                ScalableDimension=ref.dimension,  # type: ignore[arg-type]
            ),
        ).get("ScheduledActions", [])
        keep_p = tuple(_json_safe({k: p[k] for k in _POLICY_FIELDS if k in p}) for p in policies)  # type: ignore[literal-required]
        keep_s = tuple(_json_safe({k: s[k] for k in _SCHEDULED_FIELDS if k in s}) for s in scheduled)  # type: ignore[literal-required]
        return AutoScalingSnapshot(target, keep_p, keep_s)

    def deregister(self, ref: ScalableTargetRef) -> None:
        def call() -> None:
            try:
                self._aas.deregister_scalable_target(**ref.key())
            except self._aas.exceptions.ObjectNotFoundException:
                return  # already gone
            except ClientError as exc:
                # moto answers ValidationException "No scalable target found ..." where AWS says ObjectNotFound.
                if "no scalable target found" not in str(exc.response.get("Error", {}).get("Message", "")).lower():
                    raise

        self._gate_of(ref.namespace).call(f"DeregisterScalableTarget {ref.resource_id}", call)

    def restore(self, snapshot: AutoScalingSnapshot) -> None:
        self._register(snapshot.target)
        ref = snapshot.target.ref
        gate = self._gate_of(ref.namespace)
        for policy in snapshot.policies:
            gate.call(
                f"PutScalingPolicy {ref.resource_id} {policy.get('PolicyName')}",
                lambda p=policy: self._aas.put_scaling_policy(**ref.key(), **p),  # type: ignore[misc]
            )
        for action in snapshot.scheduled_actions:
            gate.call(
                f"PutScheduledAction {ref.resource_id} {action.get('ScheduledActionName')}",
                lambda a=action: self._aas.put_scheduled_action(**ref.key(), **a),  # type: ignore[misc]
            )


# ---------------------------------------------------------------- in-memory fake


class FakeAutoScaling(AutoScalingPort, ScriptedFailures):
    """Scalable targets, policies and scheduled actions in memory; `fail_next(op, error)` as in the other fakes."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: dict[ScalableTargetRef, ScalableTarget] = {}
        self.policies: dict[ScalableTargetRef, list[dict[str, Any]]] = {}
        self.scheduled: dict[ScalableTargetRef, list[dict[str, Any]]] = {}

    def add(self, ref: ScalableTargetRef, min_capacity: int, max_capacity: int, policy: str | None = None) -> None:
        self.targets[ref] = ScalableTarget(ref, min_capacity, max_capacity)
        self.policies[ref] = [{"PolicyName": policy, "PolicyType": "TargetTrackingScaling"}] if policy else []
        self.scheduled[ref] = []

    def find(self, ref: ScalableTargetRef) -> ScalableTarget | None:
        self._enter("find", ref.resource_id)
        return self.targets.get(ref)

    def set_floor(self, target: ScalableTarget, min_capacity: int) -> ScalableTarget:
        return self.set_bounds(target, min_capacity, max(target.max_capacity, min_capacity))

    def set_bounds(self, target: ScalableTarget, min_capacity: int, max_capacity: int) -> ScalableTarget:
        self._enter("set_floor", f"{target.ref.resource_id}={min_capacity}/{max_capacity}")
        new = replace(target, min_capacity=min_capacity, max_capacity=max(max_capacity, min_capacity))
        self.targets[target.ref] = new
        return new

    def snapshot(self, target: ScalableTarget) -> AutoScalingSnapshot:
        self._enter("snapshot", target.ref.resource_id)
        return AutoScalingSnapshot(
            target, tuple(self.policies.get(target.ref, [])), tuple(self.scheduled.get(target.ref, []))
        )

    def deregister(self, ref: ScalableTargetRef) -> None:
        self._enter("deregister", ref.resource_id)
        self.targets.pop(ref, None)
        self.policies.pop(ref, None)
        self.scheduled.pop(ref, None)

    def restore(self, snapshot: AutoScalingSnapshot) -> None:
        ref = snapshot.target.ref
        self._enter("restore", ref.resource_id)
        self.targets[ref] = snapshot.target
        self.policies[ref] = [dict(p) for p in snapshot.policies]
        self.scheduled[ref] = [dict(s) for s in snapshot.scheduled_actions]
