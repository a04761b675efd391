"""SageMaker endpoint instance-type switch: a new EndpointConfig, the variant's autoscaling taken down,
a blue/green UpdateEndpoint with rollback alarms, and autoscaling put back when the endpoint is
InService again (AWS refuses an UpdateEndpoint on an autoscaled variant).

The operation moves through phases kept in its `details`: `prepared` (config made, autoscaling
snapshot stored write-ahead) → `updating` (UpdateEndpoint accepted) → done (InService on the new
config), rolled back (InService on the old one) or failed. Every step can be repeated after a crash.
"""

from __future__ import annotations

from typing import Final

from forescale.adapters.autoscaling import AutoScalingPort, AutoScalingSnapshot, ScalableTargetRef
from forescale.adapters.sagemaker_capacity import (
    BlueGreenSettings,
    EndpointView,
    SageMakerCapacityPort,
    type_switch_config_name,
)
from forescale.domain.ratelimit import DeferredError, RejectedError
from forescale.runtime.act.base import ActRun, Actual, Outcome, StateWriter
from forescale.runtime.models import DecisionRecord, DecisionStatus, InFlightOperation, TargetConfig

S = DecisionStatus
OPERATION: Final = "endpoint-type-switch"
ACTION = "switch-instance-type"
ENDPOINT_BUSY = frozenset({"Updating", "SystemUpdating", "RollingBack", "Creating", "UpdateRollbackFailed"})


class TypeSwitch:
    """Starts and advances a blue/green instance-type switch (reading is `InstanceCount.read`'s)."""

    operations = frozenset({OPERATION})

    def __init__(
        self,
        sagemaker: SageMakerCapacityPort,
        autoscaling: AutoScalingPort,
        blue_green: BlueGreenSettings,
        write_state: StateWriter,
    ) -> None:
        self.sagemaker = sagemaker
        self.autoscaling = autoscaling
        self.blue_green = blue_green
        self.write_state = write_state

    def start(
        self, cfg: TargetConfig, record: DecisionRecord, ep: EndpointView, actual: Actual, run: ActRun
    ) -> Outcome:
        variant_name, new_type = cfg.variant_name, record.instance_type
        assert variant_name is not None and new_type is not None  # nosec B101  # TargetConfig._check; a switch names its type
        catalog = [t.name for t in cfg.catalog]
        if catalog and new_type not in catalog:
            return Outcome(
                S.FAILED, ACTION, f"{new_type} is not in the target's catalog {catalog}", error_code="NotInCatalog"
            )
        if not ep.in_service:
            return Outcome(
                S.DEFERRED,
                ACTION,
                f"endpoint {ep.name} is {ep.status}; a type switch starts only InService; retried next cycle",
            )
        new_config = type_switch_config_name(ep.name, record.decision_id)
        if not self.sagemaker.config_exists(new_config):  # a retry of this decision reuses the config it made
            counts = {v.name: v.current_count for v in ep.variants if v.current_count}
            self.sagemaker.copy_config_with_type(
                ep.config_name, new_config, variant_name, new_type, counts | {variant_name: record.capacity}
            )
        scalable = self.autoscaling.find(ScalableTargetRef.sagemaker_variant(ep.name, variant_name))
        snapshot = self.autoscaling.snapshot(scalable) if scalable is not None else None
        op = InFlightOperation(
            operation=OPERATION,
            decision_id=record.decision_id,
            started_at=run.now,
            capacity=record.capacity,
            instance_type=new_type,
            details={
                "endpoint": ep.name,
                "variant": variant_name,
                "decided_at": str(record.decided_at),
                "phase": "prepared",
                "new_config": new_config,
                "old_config": ep.config_name,
                "old_type": actual.instance_type or "",
                "autoscaling": snapshot.to_json() if snapshot else "",
            },
        )
        # Write-ahead: the operation and the autoscaling snapshot are stored before anything is taken
        # down, so a crash from here on is finished (or undone) by the next cycle's poll.
        self.write_state(
            cfg.name,
            lambda s: {"in_flight": op, "updated_at": run.now, "last_action": "switch-instance-type: prepared"},
        )
        return self.advance(cfg, op, run, ep)

    def advance(self, cfg: TargetConfig, op: InFlightOperation, run: ActRun, ep: EndpointView | None = None) -> Outcome:
        d = op.details
        endpoint, variant_name, new_config = d["endpoint"], d["variant"], d["new_config"]
        change = f"{endpoint}/{variant_name} {d.get('old_type') or '?'} -> {op.instance_type}"
        ep = ep or self.sagemaker.describe_endpoint(endpoint)
        phase = d.get("phase", "prepared")
        if phase == "prepared" and ep.config_name == new_config:
            phase = "updating"  # UpdateEndpoint went through before its record (a crash): carry on
            op = op.model_copy(update={"details": d | {"phase": phase}})
        if phase == "prepared":
            return self._update(op, run, ep, change)
        if ep.status in ENDPOINT_BUSY:
            return Outcome(S.IN_FLIGHT, ACTION, f"{change}: {endpoint} is {ep.status}", in_flight=op)
        variant = ep.variant(variant_name)
        count = variant.current_count if variant else None
        try:
            note = self.restore_autoscaling(op)
        except DeferredError as exc:
            return Outcome(S.IN_FLIGHT, ACTION, f"{change}: re-registering autoscaling deferred: {exc}", in_flight=op)
        if ep.in_service and ep.config_name == new_config:
            return Outcome(
                S.APPLIED,
                ACTION,
                f"{change}: done, {count} instances InService on {new_config} after {run.now - op.started_at} s{note}",
                capacity=count,
                instance_type=op.instance_type,
                confirmed=True,
            )
        if ep.in_service:
            return Outcome(
                S.FAILED,
                ACTION,
                f"{change}: rolled back, {endpoint} is InService on {ep.config_name}{note}",
                capacity=count,
                instance_type=d.get("old_type") or None,
                error_code="RolledBack",
            )
        return Outcome(
            S.FAILED,
            ACTION,
            f"{change}: {endpoint} is {ep.status}: {ep.failure_reason or 'no reason given'}{note}",
            capacity=count,
            error_code=f"Endpoint{ep.status}",
        )

    def _update(self, op: InFlightOperation, run: ActRun, ep: EndpointView, change: str) -> Outcome:
        """Phase `prepared`: take autoscaling down and start the blue/green UpdateEndpoint."""
        d = op.details
        endpoint, variant_name, new_config = d["endpoint"], d["variant"], d["new_config"]
        if not ep.in_service:
            return Outcome(S.IN_FLIGHT, ACTION, f"{change}: waiting, {endpoint} is {ep.status}", in_flight=op)
        if run.paused:
            note = self.restore_autoscaling(op)
            return Outcome(
                S.DRY_RUN, ACTION, f"{change}: cancelled before UpdateEndpoint because forescale is paused{note}"
            )
        try:
            if d.get("autoscaling"):
                self.autoscaling.deregister(ScalableTargetRef.sagemaker_variant(endpoint, variant_name))
            self.sagemaker.update_endpoint(endpoint, new_config, self.blue_green)
        except DeferredError as exc:
            return Outcome(
                S.IN_FLIGHT, ACTION, f"{change}: prepared ({new_config}); {exc}; continued next cycle", in_flight=op
            )
        except RejectedError as exc:
            note = self.restore_autoscaling(op)
            return Outcome(S.FAILED, ACTION, f"{change}: AWS refused UpdateEndpoint: {exc}{note}", error_code=exc.code)
        alarms = ", ".join(self.blue_green.rollback_alarms) or "none"
        scaling = "deregistered until the endpoint is InService" if d.get("autoscaling") else "none registered"
        return Outcome(
            S.IN_FLIGHT,
            ACTION,
            f"{change}: blue/green UpdateEndpoint to {new_config} ({op.capacity} instances, ALL_AT_ONCE, "
            f"rollback alarms: {alarms}); autoscaling: {scaling}",
            in_flight=op.model_copy(update={"details": d | {"phase": "updating", "updating_since": str(run.now)}}),
        )

    def restore_autoscaling(self, op: InFlightOperation) -> str:
        """Put the variant's scalable target back as it was; a note for the outcome. DeferredError propagates."""
        raw = op.details.get("autoscaling")
        if not raw:
            return ""
        snapshot = AutoScalingSnapshot.from_json(raw)
        try:
            self.autoscaling.restore(snapshot)
        except RejectedError as exc:
            return f"; autoscaling could NOT be re-registered ({exc}): register it again by hand"
        t = snapshot.target
        return (
            f"; autoscaling re-registered (min {t.min_capacity}, max {t.max_capacity}, "
            f"{len(snapshot.policies)} policies, {len(snapshot.scheduled_actions)} scheduled actions)"
        )
