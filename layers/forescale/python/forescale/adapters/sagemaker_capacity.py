"""SageMaker real-time endpoints: read a variant's instance count and type, change the count, and
switch the instance type through a new EndpointConfig and a blue/green UpdateEndpoint.

AWS rules this adapter relies on (SageMaker API reference):
- UpdateEndpointWeightsAndCapacities and UpdateEndpoint need the endpoint InService; while it is
  Updating they fail with ValidationException ("Cannot update in-progress endpoint"), which the
  gate classifies as busy (the decision is deferred, not failed).
- An endpoint's instance type lives in its EndpointConfig (DescribeEndpoint does not report it), so
  a type switch copies the current config with the new type for one variant.
- BlueGreenUpdatePolicy: TrafficRoutingConfiguration (Type, WaitIntervalInSeconds) is required;
  MaximumExecutionTimeoutInSeconds is 600..28800; AutoRollbackConfiguration takes 1..10 alarms.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from forescale.adapters.scripted import ScriptedFailures
from forescale.domain.ratelimit import CallGate, DeferredError, RejectedError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.client import SageMakerClient

IN_SERVICE = "InService"
MAX_ROLLBACK_ALARMS = 10
# What CreateEndpointConfig accepts besides the name, variants and tags (copied from the current config).
_CONFIG_FIELDS = (
    "DataCaptureConfig",
    "KmsKeyId",
    "AsyncInferenceConfig",
    "ExplainerConfig",
    "ShadowProductionVariants",
    "ExecutionRoleArn",
    "VpcConfig",
    "EnableNetworkIsolation",
    "MetricsConfig",
)


def type_switch_config_name(endpoint: str, decision_id: str) -> str:
    """The EndpointConfig a type switch creates: deterministic, so a retry finds it instead of making another.

    SageMaker names: 1..63 characters of [a-zA-Z0-9-], starting with a letter or digit.
    """
    digest = hashlib.sha256(decision_id.encode()).hexdigest()[:12]
    stem = re.sub(r"[^a-zA-Z0-9-]", "-", endpoint)[:46].strip("-") or "endpoint"
    return f"{stem}-fs-{digest}"


@dataclass(frozen=True, slots=True)
class BlueGreenSettings:
    """How UpdateEndpoint shifts traffic and when it rolls back (seconds)."""

    rollback_alarms: tuple[str, ...] = ()
    termination_wait_s: int = 300  # keep the old fleet this long after the shift, for a fast rollback
    max_execution_s: int = 3600
    wait_interval_s: int = 0  # ALL_AT_ONCE: the bake time before the shift

    def __post_init__(self) -> None:
        if len(self.rollback_alarms) > MAX_ROLLBACK_ALARMS:
            raise ValueError(f"at most {MAX_ROLLBACK_ALARMS} rollback alarms, got {len(self.rollback_alarms)}")
        if not 0 <= self.termination_wait_s <= 3600:
            raise ValueError(f"termination_wait_s must be in [0, 3600], got {self.termination_wait_s}")
        if not 600 <= self.max_execution_s <= 28_800:
            raise ValueError(f"max_execution_s must be in [600, 28800], got {self.max_execution_s}")
        if self.max_execution_s <= self.termination_wait_s + self.wait_interval_s:
            raise ValueError("max_execution_s must exceed termination_wait_s + wait_interval_s")

    def deployment_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": self.wait_interval_s},
                "TerminationWaitInSeconds": self.termination_wait_s,
                "MaximumExecutionTimeoutInSeconds": self.max_execution_s,
            }
        }
        if self.rollback_alarms:
            config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in self.rollback_alarms]}
        return config


@dataclass(frozen=True, slots=True)
class VariantCapacity:
    name: str
    current_count: int | None = None
    desired_count: int | None = None


@dataclass(frozen=True, slots=True)
class EndpointView:
    """DescribeEndpoint, reduced to what act needs."""

    name: str
    status: str
    config_name: str
    variants: tuple[VariantCapacity, ...] = ()
    failure_reason: str = ""

    def variant(self, name: str) -> VariantCapacity | None:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def in_service(self) -> bool:
        return self.status == IN_SERVICE


class SageMakerCapacityPort(ABC):
    """What act needs from SageMaker. Raises DeferredError / RejectedError."""

    @abstractmethod
    def describe_endpoint(self, endpoint: str) -> EndpointView: ...

    @abstractmethod
    def variant_instance_type(self, config_name: str, variant: str) -> str | None: ...

    @abstractmethod
    def set_instance_count(self, endpoint: str, variant: str, count: int) -> None: ...

    @abstractmethod
    def config_exists(self, config_name: str) -> bool: ...

    @abstractmethod
    def copy_config_with_type(
        self, source: str, new_name: str, variant: str, instance_type: str, counts: Mapping[str, int]
    ) -> None:
        """Create `new_name` as a copy of `source`: `instance_type` for `variant`, `counts` as initial counts."""

    @abstractmethod
    def update_endpoint(self, endpoint: str, config_name: str, deployment: BlueGreenSettings) -> None: ...


class SageMakerCapacity(SageMakerCapacityPort):
    """The real adapter on a boto3 SageMaker client."""

    def __init__(self, client: SageMakerClient, gate: CallGate) -> None:
        self._sm = client
        self.gate = gate

    def describe_endpoint(self, endpoint: str) -> EndpointView:
        resp = self.gate.call(f"DescribeEndpoint {endpoint}", lambda: self._sm.describe_endpoint(EndpointName=endpoint))
        variants = tuple(
            VariantCapacity(
                name=v["VariantName"],
                current_count=v.get("CurrentInstanceCount"),
                desired_count=v.get("DesiredInstanceCount"),
            )
            for v in resp.get("ProductionVariants", [])
        )
        return EndpointView(
            name=endpoint,
            status=resp["EndpointStatus"],
            config_name=resp["EndpointConfigName"],
            variants=variants,
            failure_reason=resp.get("FailureReason", ""),
        )

    def _describe_config(self, config_name: str) -> dict[str, Any]:
        resp = self.gate.call(
            f"DescribeEndpointConfig {config_name}",
            lambda: self._sm.describe_endpoint_config(EndpointConfigName=config_name),
        )
        return dict(resp)

    def variant_instance_type(self, config_name: str, variant: str) -> str | None:
        for v in self._describe_config(config_name).get("ProductionVariants", []):
            if v["VariantName"] == variant:
                instance_type = v.get("InstanceType")
                return str(instance_type) if instance_type else None
        return None

    def set_instance_count(self, endpoint: str, variant: str, count: int) -> None:
        self.gate.call(
            f"UpdateEndpointWeightsAndCapacities {endpoint}/{variant}={count}",
            lambda: self._sm.update_endpoint_weights_and_capacities(
                EndpointName=endpoint,
                DesiredWeightsAndCapacities=[{"VariantName": variant, "DesiredInstanceCount": count}],
            ),
            applies_change=True,
        )

    def config_exists(self, config_name: str) -> bool:
        def probe() -> bool:
            try:
                self._sm.describe_endpoint_config(EndpointConfigName=config_name)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                # SageMaker reports a missing config as a ValidationException "Could not find ...".
                if error.get("Code") == "ValidationException" and "could not find" in error.get("Message", "").lower():
                    return False
                raise
            return True

        return self.gate.call(f"DescribeEndpointConfig {config_name}", probe)

    def copy_config_with_type(
        self, source: str, new_name: str, variant: str, instance_type: str, counts: Mapping[str, int]
    ) -> None:
        current = self._describe_config(source)
        variants: list[dict[str, Any]] = []
        found = False
        for v in current.get("ProductionVariants", []):
            copy = dict(v)
            if v["VariantName"] in counts and "InitialInstanceCount" in v:
                copy["InitialInstanceCount"] = counts[v["VariantName"]]
            if v["VariantName"] == variant:
                copy["InstanceType"] = instance_type
                copy["InitialInstanceCount"] = counts[variant]
                found = True
            variants.append(copy)
        if not found:
            raise RejectedError(
                f"CreateEndpointConfig {new_name}", "VariantNotFound", f"variant {variant} is not in config {source}"
            )
        # Empty members are left out (moto answers DataCaptureConfig {}, which CreateEndpointConfig refuses).
        kwargs: dict[str, Any] = {k: current[k] for k in _CONFIG_FIELDS if current.get(k) not in (None, {}, [])}
        kwargs |= {
            "EndpointConfigName": new_name,
            "ProductionVariants": variants,
            "Tags": [{"Key": "forescale:copied-from", "Value": source}],
        }
        self.gate.call(
            f"CreateEndpointConfig {new_name} ({variant} -> {instance_type})",
            lambda: self._sm.create_endpoint_config(**kwargs),
        )

    def update_endpoint(self, endpoint: str, config_name: str, deployment: BlueGreenSettings) -> None:
        self.gate.call(
            f"UpdateEndpoint {endpoint} -> {config_name}",
            lambda: self._sm.update_endpoint(
                EndpointName=endpoint,
                EndpointConfigName=config_name,
                DeploymentConfig=deployment.deployment_config(),  # type: ignore[arg-type]
            ),
            applies_change=True,
        )


# ---------------------------------------------------------------- in-memory fake


@dataclass
class FakeEndpoint:
    config_name: str
    counts: dict[str, int]
    status: str = IN_SERVICE
    failure_reason: str = ""
    pending_config: str | None = None
    pending_counts: dict[str, int] = field(default_factory=dict)


class FakeSageMaker(SageMakerCapacityPort, ScriptedFailures):
    """Endpoints and configs in memory. Changes leave the endpoint Updating until `complete_updates()`;
    `rollback_next_update` makes the next UpdateEndpoint end InService on the old config."""

    def __init__(self) -> None:
        super().__init__()
        self.endpoints: dict[str, FakeEndpoint] = {}
        self.configs: dict[str, dict[str, tuple[str, int]]] = {}  # config -> variant -> (type, count)
        self.deployments: list[tuple[str, str, BlueGreenSettings]] = []
        self.rollback_next_update = False

    def add_endpoint(self, name: str, variant: str, instance_type: str, count: int) -> None:
        config = f"{name}-config"
        self.configs[config] = {variant: (instance_type, count)}
        self.endpoints[name] = FakeEndpoint(config_name=config, counts={variant: count})

    def _endpoint(self, op: str, name: str) -> FakeEndpoint:
        ep = self.endpoints.get(name)
        if ep is None:
            raise RejectedError(op, "ValidationException", f'Could not find endpoint "{name}".')
        return ep

    def _busy(self, op: str, name: str, ep: FakeEndpoint) -> None:
        if ep.status != IN_SERVICE:
            raise DeferredError(op, "ValidationException", f"Cannot update in-progress endpoint {name}.")

    def complete_updates(self) -> None:
        """Finish every Updating endpoint (or roll it back, with `rollback_next_update`)."""
        for ep in self.endpoints.values():
            if ep.status != "Updating":
                continue
            if ep.pending_config is not None and not self.rollback_next_update:
                ep.config_name = ep.pending_config
                ep.counts = {v: c for v, (_, c) in self.configs[ep.pending_config].items()}
            elif ep.pending_config is None:
                ep.counts |= ep.pending_counts
            self.rollback_next_update = False
            ep.pending_config, ep.pending_counts, ep.status = None, {}, IN_SERVICE

    def describe_endpoint(self, endpoint: str) -> EndpointView:
        self._enter("describe_endpoint", endpoint)
        ep = self._endpoint("DescribeEndpoint", endpoint)
        desired = ep.counts | ep.pending_counts
        variants = tuple(VariantCapacity(v, c, desired.get(v, c)) for v, c in ep.counts.items())
        return EndpointView(endpoint, ep.status, ep.config_name, variants, ep.failure_reason)

    def variant_instance_type(self, config_name: str, variant: str) -> str | None:
        self._enter("variant_instance_type", config_name)
        got = self.configs.get(config_name, {}).get(variant)
        return got[0] if got else None

    def set_instance_count(self, endpoint: str, variant: str, count: int) -> None:
        self._enter("set_instance_count", f"{endpoint}/{variant}={count}")
        ep = self._endpoint("UpdateEndpointWeightsAndCapacities", endpoint)
        self._busy("UpdateEndpointWeightsAndCapacities", endpoint, ep)
        ep.status, ep.pending_counts = "Updating", {variant: count}

    def config_exists(self, config_name: str) -> bool:
        self._enter("config_exists", config_name)
        return config_name in self.configs

    def copy_config_with_type(
        self, source: str, new_name: str, variant: str, instance_type: str, counts: Mapping[str, int]
    ) -> None:
        self._enter("copy_config_with_type", f"{source}->{new_name}")
        if new_name in self.configs:
            raise RejectedError("CreateEndpointConfig", "ValidationException", f"config {new_name} already exists")
        copied = dict(self.configs[source])
        copied = {v: (t, counts.get(v, c)) for v, (t, c) in copied.items()}
        copied[variant] = (instance_type, counts[variant])
        self.configs[new_name] = copied

    def update_endpoint(self, endpoint: str, config_name: str, deployment: BlueGreenSettings) -> None:
        self._enter("update_endpoint", f"{endpoint}->{config_name}")
        ep = self._endpoint("UpdateEndpoint", endpoint)
        self._busy("UpdateEndpoint", endpoint, ep)
        if config_name not in self.configs:
            raise RejectedError(
                "UpdateEndpoint", "ValidationException", f"Could not find endpoint configuration {config_name}"
            )
        ep.status, ep.pending_config = "Updating", config_name
        self.deployments.append((endpoint, config_name, deployment))
