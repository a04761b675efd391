"""SageMaker half of the moto extension: GPU/accelerator instance types, UpdateEndpoint, and AWS-like
timing for UpdateEndpointWeightsAndCapacities.

The rules and messages, and where they come from, are listed in the package docstring
(`forescale.local.moto_ext`). State: a dict on each moto `SageMakerModelBackend` (one per account and
region), endpoint name -> `EndpointState`, so moto's reset drops it with the endpoints.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.responses import ActionResult
from moto.core.utils import get_service_model
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import (
    FakeEndpoint,
    FakeEndpointConfig,
    ModelPackage,
    SageMakerModelBackend,
    sagemaker_backends,
)
from moto.sagemaker.responses import SageMakerResponse

from forescale.local.moto_ext import _core

STATE_ATTR = "forescale_endpoint_states"
GPU_FAMILIES = frozenset({"g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5", "inf2", "trn1"})
VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
IN_SERVICE = "InService"
UPDATING = "Updating"


def gpu_instance_types() -> frozenset[str]:
    """The GPU/accelerator types of `GPU_FAMILIES` that AWS accepts for a production variant.

    Taken from botocore's `ProductionVariantInstanceType` enum (AWS's own model), so the extension
    accepts exactly the sizes that exist, e.g. `ml.p4d.24xlarge` but no other p4d size.
    """
    shape = get_service_model("sagemaker").shape_for("ProductionVariantInstanceType")
    enum: list[str] = list(getattr(shape, "enum", []))
    return frozenset(t for t in enum if t.split(".")[1] in GPU_FAMILIES)


@dataclass
class PendingChange:
    """An UpdateEndpoint or UpdateEndpointWeightsAndCapacities in progress (clock seconds)."""

    kind: str  # "UpdateEndpoint" or "UpdateEndpointWeightsAndCapacities"
    started_at: float
    ready_at: float
    variants: list[dict[str, Any]]  # the variants as they will be once the change settles
    config_name: str | None = None
    instance_types: dict[str, str] = field(default_factory=dict)
    deployment_config: dict[str, Any] | None = None
    rollback_alarms: list[str] = field(default_factory=list)


@dataclass
class EndpointState:
    """What the extension tracks beside moto's FakeEndpoint."""

    pending: PendingChange | None = None
    instance_types: dict[str, str] = field(default_factory=dict)  # variant -> instance type in service
    last_deployment_config: dict[str, Any] | None = None


def _states(backend: SageMakerModelBackend) -> dict[str, EndpointState]:
    states: dict[str, EndpointState] | None = getattr(backend, STATE_ATTR, None)
    if states is None:
        states = {}
        setattr(backend, STATE_ATTR, states)
    return states


def _all_backends() -> Iterator[SageMakerModelBackend]:
    for account_backends in list(sagemaker_backends.values()):
        yield from list(account_backends.values())


def clear_state() -> None:
    """Forget every in-flight endpoint change in every existing SageMaker backend."""
    with _core.LOCK:
        for backend in _all_backends():
            if hasattr(backend, STATE_ATTR):
                delattr(backend, STATE_ATTR)


def _endpoint_arn(backend: SageMakerModelBackend, name: str) -> str:
    return FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name)


def _config_arn(backend: SageMakerModelBackend, name: str) -> str:
    return FakeEndpointConfig.arn_formatter(name, backend.account_id, backend.region_name)


def _in_progress(backend: SageMakerModelBackend, name: str) -> ValidationError:
    return ValidationError(message=f'Cannot update in-progress endpoint "{_endpoint_arn(backend, name)}".')


def _config_instance_types(config: FakeEndpointConfig | None) -> dict[str, str]:
    if config is None:
        return {}
    return {v["VariantName"]: v["InstanceType"] for v in config.production_variants if v.get("InstanceType")}


def _alarms_in_alarm(backend: SageMakerModelBackend, names: Sequence[str]) -> list[str]:
    if not names:
        return []
    alarms = cloudwatch_backends[backend.account_id][backend.region_name].alarms
    return [name for name in names if name in alarms and alarms[name].state_value == "ALARM"]


def settle(backend: SageMakerModelBackend, name: str) -> None:
    """Finish the endpoint's pending change if its time on the clock has come (callers hold the lock)."""
    state = _states(backend).get(name)
    endpoint = backend.endpoints.get(name)
    if state is None or state.pending is None or endpoint is None:
        return
    pending = state.pending
    if _core.now() < pending.ready_at:
        return
    state.pending = None
    endpoint.endpoint_status = IN_SERVICE
    endpoint.last_modified_time = _core.moto_datetime(pending.ready_at)
    if pending.kind == "UpdateEndpoint" and _alarms_in_alarm(backend, pending.rollback_alarms):
        # AutoRollbackConfiguration: an alarm in ALARM during the deployment sends traffic back to the
        # old fleet, so the endpoint stays on its old config, variants and counts.
        return
    for variant in pending.variants:
        if "DesiredInstanceCount" in variant:
            variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"]
        if "DesiredWeight" in variant:
            variant["CurrentWeight"] = variant["DesiredWeight"]
        if "DesiredServerlessConfig" in variant:
            variant["CurrentServerlessConfig"] = variant["DesiredServerlessConfig"]
    endpoint.production_variants = pending.variants
    if pending.kind == "UpdateEndpoint":
        assert pending.config_name is not None  # nosec B101  # an UpdateEndpoint always names its config; local moto only
        endpoint.endpoint_config_name = pending.config_name
        state.instance_types = dict(pending.instance_types)
        if pending.deployment_config is not None:
            state.last_deployment_config = pending.deployment_config


def _settle_all(backend: SageMakerModelBackend) -> None:
    for name in list(_states(backend)):
        settle(backend, name)


def _autoscaled_variants(backend: SageMakerModelBackend, endpoint_name: str, variants: Sequence[str]) -> list[str]:
    targets = applicationautoscaling_backends[backend.account_id][backend.region_name].targets
    registered = targets.get(VARIANT_DIMENSION, {})
    found = []
    for variant in variants:
        target = registered.get(f"endpoint/{endpoint_name}/variant/{variant}")
        if target is not None and target.service_namespace == "sagemaker":
            found.append(variant)
    return found


def _planned_variants(
    endpoint: FakeEndpoint,
    new_config: FakeEndpointConfig,
    *,
    retain_all: bool,
    excluded: set[str],
) -> list[dict[str, Any]]:
    """The variant summaries once the update settles: counts from the new config unless retained.

    The endpoint keeps showing its old variants until then (blue/green: the old fleet serves meanwhile).
    """
    planned: list[dict[str, Any]] = endpoint._process_production_variants(copy.deepcopy(new_config.production_variants))
    current = {v["VariantName"]: v for v in endpoint.production_variants}
    for variant in planned:
        old = current.get(variant["VariantName"])
        if retain_all and old is not None:
            for prop in ("DesiredInstanceCount", "DesiredWeight"):
                if prop not in excluded and prop in old:
                    variant[prop] = old[prop]
    return planned


def update_endpoint(
    backend: SageMakerModelBackend,
    endpoint_name: str,
    endpoint_config_name: str,
    *,
    retain_all_variant_properties: bool = False,
    exclude_retained_variant_properties: Sequence[dict[str, Any]] = (),
    deployment_config: dict[str, Any] | None = None,
    retain_deployment_config: bool = False,
) -> str:
    """UpdateEndpoint: validate as AWS does, start the change (Updating), return the endpoint ARN."""
    with _core.LOCK:
        settle(backend, endpoint_name)
        endpoint = backend.endpoints.get(endpoint_name)
        if endpoint is None:
            raise ValidationError(message=f'Could not find endpoint "{_endpoint_arn(backend, endpoint_name)}".')
        new_config = backend.endpoint_configs.get(endpoint_config_name)
        if new_config is None:
            raise ValidationError(
                message=f'Could not find endpoint configuration "{_config_arn(backend, endpoint_config_name)}".'
            )
        if endpoint.endpoint_status != IN_SERVICE:
            raise _in_progress(backend, endpoint_name)
        state = _states(backend).setdefault(endpoint_name, EndpointState())
        old_types = state.instance_types or _config_instance_types(
            backend.endpoint_configs.get(endpoint.endpoint_config_name)
        )
        new_types = _config_instance_types(new_config)
        current_names = [v["VariantName"] for v in endpoint.production_variants]
        # Changing the instance type of, or removing, a variant that Application Auto Scaling manages fails.
        blocked = [
            name
            for name in _autoscaled_variants(backend, endpoint_name, current_names)
            if name not in {v["VariantName"] for v in new_config.production_variants}
            or (name in old_types and new_types.get(name) not in (None, old_types[name]))
        ]
        if blocked:
            raise ValidationError(
                message=(
                    f'The endpoint "{_endpoint_arn(backend, endpoint_name)}" cannot be updated: variant(s) {blocked} '
                    "are registered as scalable targets with Application Auto Scaling and the update would change "
                    "their instance type or remove them. Deregister the scalable target(s) before updating the "
                    "endpoint, then register them again."
                )
            )
        excluded = {p.get("VariantPropertyType", "") for p in exclude_retained_variant_properties}
        moment = _core.now()
        if deployment_config is None and retain_deployment_config:
            deployment_config = state.last_deployment_config
        alarms = [
            alarm["AlarmName"]
            for alarm in ((deployment_config or {}).get("AutoRollbackConfiguration") or {}).get("Alarms", [])
            if alarm.get("AlarmName")
        ]
        state.instance_types = old_types
        state.pending = PendingChange(
            kind="UpdateEndpoint",
            started_at=moment,
            ready_at=moment + _core.SETTINGS.endpoint_update_after_s,
            variants=_planned_variants(
                endpoint, new_config, retain_all=retain_all_variant_properties, excluded=excluded
            ),
            config_name=endpoint_config_name,
            instance_types=new_types,
            deployment_config=copy.deepcopy(deployment_config),
            rollback_alarms=alarms,
        )
        endpoint.endpoint_status = UPDATING
        endpoint.last_modified_time = _core.moto_datetime(moment)
        return str(endpoint.arn)


def _pending_summary(pending: PendingChange) -> dict[str, Any]:
    variants = []
    for planned in pending.variants:
        variant = {k: v for k, v in planned.items() if not k.startswith("Current")}
        if planned["VariantName"] in pending.instance_types:
            variant["InstanceType"] = pending.instance_types[planned["VariantName"]]
        variant["VariantStatus"] = [{"Status": "Creating", "StartTime": _core.moto_datetime(pending.started_at)}]
        variants.append(variant)
    return {
        "EndpointConfigName": pending.config_name,
        "ProductionVariants": variants,
        "StartTime": _core.moto_datetime(pending.started_at),
    }


# -- wrappers around moto's backend methods


def _wrap_describe_endpoint(original: Callable[..., Any]) -> Callable[..., Any]:
    def describe_endpoint(self: SageMakerModelBackend, endpoint_name: str) -> Any:
        with _core.LOCK:
            settle(self, endpoint_name)
            response: dict[str, Any] = copy.deepcopy(original(self, endpoint_name))
            if not response.get("DataCaptureConfig"):
                # moto answers {} without capture; AWS leaves the member out (its shape has required fields).
                response.pop("DataCaptureConfig", None)
            state = _states(self).get(endpoint_name)
            if state is not None:
                if state.pending is not None and state.pending.kind == "UpdateEndpoint":
                    response["PendingDeploymentSummary"] = _pending_summary(state.pending)
                if state.last_deployment_config is not None:
                    response["LastDeploymentConfig"] = copy.deepcopy(state.last_deployment_config)
            return response

    return describe_endpoint


def _wrap_update_weights(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_endpoint_weights_and_capacities(
        self: SageMakerModelBackend, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]
    ) -> Any:
        with _core.LOCK:
            settle(self, endpoint_name)
            endpoint = self.endpoints.get(endpoint_name)
            if endpoint is not None and endpoint.endpoint_status != IN_SERVICE:
                raise _in_progress(self, endpoint_name)
            before = copy.deepcopy(endpoint.production_variants) if endpoint is not None else []
            arn = original(self, endpoint_name, desired_weights_and_capacities)  # moto's variant-name checks
            assert endpoint is not None  # nosec B101  # moto raised for an unknown endpoint; local moto only
            requested = {d.get("VariantName"): d for d in desired_weights_and_capacities}
            planned = []
            for variant in before:
                change = requested.get(variant["VariantName"], {})
                # moto writes None for an omitted field; AWS leaves the omitted field as it was.
                if change.get("DesiredInstanceCount") is not None:
                    variant["DesiredInstanceCount"] = change["DesiredInstanceCount"]
                if change.get("DesiredWeight") is not None:
                    variant["DesiredWeight"] = change["DesiredWeight"]
                planned.append(variant)
            endpoint.production_variants = copy.deepcopy(planned)  # Current* stay until the change settles
            moment = _core.now()
            _states(self).setdefault(endpoint_name, EndpointState()).pending = PendingChange(
                kind="UpdateEndpointWeightsAndCapacities",
                started_at=moment,
                ready_at=moment + _core.SETTINGS.endpoint_update_after_s,
                variants=planned,
            )
            endpoint.endpoint_status = UPDATING
            endpoint.last_modified_time = _core.moto_datetime(moment)
            return arn

    return update_endpoint_weights_and_capacities


def _wrap_delete_endpoint(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_endpoint(self: SageMakerModelBackend, endpoint_name: str) -> Any:
        with _core.LOCK:
            settle(self, endpoint_name)
            endpoint = self.endpoints.get(endpoint_name)
            if endpoint is not None and endpoint.endpoint_status == UPDATING:
                raise _in_progress(self, endpoint_name)
            result = original(self, endpoint_name)
            _states(self).pop(endpoint_name, None)
            return result

    return delete_endpoint


def _wrap_list_endpoints(original: Callable[..., Any]) -> Callable[..., Any]:
    def list_endpoints(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        with _core.LOCK:
            _settle_all(self)
            return original(self, *args, **kwargs)

    return list_endpoints


def _wrap_variant_instance_type(original: Callable[..., Any], extra: frozenset[str]) -> Callable[..., Any]:
    def validate_instance_type(self: FakeEndpointConfig, instance_type: str) -> Any:
        if instance_type in extra:
            return None
        return original(self, instance_type)

    return validate_instance_type


def _wrap_realtime_instance_types(original: Callable[..., Any], extra: frozenset[str]) -> Callable[..., Any]:
    def validate_supported_realtime_inference_instance_types(instance_types: list[str]) -> Any:
        return original([t for t in instance_types if t not in extra])

    return validate_supported_realtime_inference_instance_types


def _update_endpoint_action(self: SageMakerResponse) -> ActionResult:
    """SageMakerResponse.update_endpoint: the UpdateEndpoint operation (moto 5.2.5 has none)."""
    arn = update_endpoint(
        self.sagemaker_backend,
        self._get_param("EndpointName"),
        self._get_param("EndpointConfigName"),
        retain_all_variant_properties=bool(self._get_param("RetainAllVariantProperties", False)),
        exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties") or [],
        deployment_config=self._get_param("DeploymentConfig"),
        retain_deployment_config=bool(self._get_param("RetainDeploymentConfig", False)),
    )
    return ActionResult({"EndpointArn": arn})


PATCHED_MARK = "__forescale_patched__"


def _replace(owner: type, method_name: str, patched: Callable[..., Any], *, static: bool = False) -> None:
    setattr(patched, PATCHED_MARK, True)
    setattr(owner, method_name, staticmethod(patched) if static else patched)


def patch() -> None:
    """Add UpdateEndpoint and wrap moto's SageMaker methods (once; callers hold the lock)."""
    if getattr(SageMakerResponse.__dict__.get("update_endpoint"), PATCHED_MARK, False):
        return
    extra = gpu_instance_types()
    _replace(SageMakerResponse, "update_endpoint", _update_endpoint_action)
    _replace(
        FakeEndpointConfig,
        "validate_instance_type",
        _wrap_variant_instance_type(FakeEndpointConfig.validate_instance_type, extra),
    )
    _replace(
        ModelPackage,
        "validate_supported_realtime_inference_instance_types",
        _wrap_realtime_instance_types(ModelPackage.validate_supported_realtime_inference_instance_types, extra),
        static=True,
    )
    for method_name, wrapper in (
        ("describe_endpoint", _wrap_describe_endpoint),
        ("update_endpoint_weights_and_capacities", _wrap_update_weights),
        ("delete_endpoint", _wrap_delete_endpoint),
        ("list_endpoints", _wrap_list_endpoints),
    ):
        _replace(SageMakerModelBackend, method_name, wrapper(getattr(SageMakerModelBackend, method_name)))
