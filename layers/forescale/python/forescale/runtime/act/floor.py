"""The Application Auto Scaling floor: where the user already autoscales a resource, act moves the
scalable target's MinCapacity (a predictive floor) instead of fighting its policy, and gives the user's
own bounds back.

The user's MinCapacity/MaxCapacity are remembered (in the state table, apart from the target's items)
the first time forescale moves them. act never sets MinCapacity below the user's own minimum, raises
MaxCapacity only as far as the floor needs, and puts both back as soon as the floor no longer needs
them: when the decided floor is within the user's bounds again, when the target is removed, and
when it is set to dry-run (the sweep's `give_back`).
"""

from __future__ import annotations

from forescale.adapters.autoscaling import AutoScalingPort, ScalableTarget, ScalableTargetRef
from forescale.adapters.state import StateStore
from forescale.runtime.act.base import Outcome, already
from forescale.runtime.models import DecisionRecord, DecisionStatus, Mode, UserBounds
from forescale.runtime.observability import logger

S = DecisionStatus


class AutoScalingFloor:
    """Moves a scalable target's bounds for forescale's floor and puts the user's back."""

    def __init__(self, autoscaling: AutoScalingPort, store: StateStore) -> None:
        self.autoscaling = autoscaling
        self.store = store

    def set(self, name: str, record: DecisionRecord, target: ScalableTarget, want: int, current: int) -> Outcome:
        """Floor `target` at `want` for forescale target `name` (`current`: the capacity in effect)."""
        ref = target.ref
        seen = UserBounds(
            namespace=ref.namespace,
            resource_id=ref.resource_id,
            dimension=ref.dimension,
            min_capacity=target.min_capacity,
            max_capacity=target.max_capacity,
        )
        user = self.store.remember_user_bounds(name, seen)
        new_min = max(want, user.min_capacity)
        new_max = max(user.max_capacity, new_min)
        resource = ref.resource_id
        if (target.min_capacity, target.max_capacity) == (new_min, new_max):
            if (new_min, new_max) == (user.min_capacity, user.max_capacity):
                self.store.forget_user_bounds(name)
            return already(record, max(current, want), f"the autoscaling floor of {resource}", "set-autoscaling-floor")
        self.autoscaling.set_bounds(target, new_min, new_max)
        back = (new_min, new_max) == (user.min_capacity, user.max_capacity)
        if back:
            self.store.forget_user_bounds(name)  # the user's own bounds again: nothing left to give back
        verb = "raised" if new_min > target.min_capacity else "lowered" if new_min < target.min_capacity else "kept"
        note = (
            "; the user's own bounds are back"
            if back
            else f" (the user's own: {user.min_capacity}/{user.max_capacity})"
        )
        return Outcome(
            S.APPLIED,
            "set-autoscaling-floor",
            f"{verb} the Application Auto Scaling floor of {resource} from {target.min_capacity} to {new_min} "
            f"(max {target.max_capacity} -> {new_max}{note}); its scaling policy keeps working above the floor",
            capacity=max(current, want),
            confirmed=True,
        )

    def give_back(self, paused: bool) -> list[str]:
        """Restore the user's bounds of targets that are gone or in dry-run; the names given back.

        While forescale is paused nothing is touched (the kill switch stops every change)."""
        if paused:
            return []
        done: list[str] = []
        for name, user in sorted(self.store.list_user_bounds().items()):
            try:
                cfg = self.store.get_target(name)
                if cfg is not None and cfg.mode is not Mode.DRY_RUN:
                    continue
                ref = ScalableTargetRef(user.namespace, user.resource_id, user.dimension)
                current = self.autoscaling.find(ref)
                if current is not None and (current.min_capacity, current.max_capacity) != (
                    user.min_capacity,
                    user.max_capacity,
                ):
                    self.autoscaling.set_bounds(current, user.min_capacity, user.max_capacity)
                self.store.forget_user_bounds(name)
                why = "removed" if cfg is None else "in dry-run"
                logger.info(
                    "gave the user's autoscaling bounds back",
                    extra={"target": name, "resource": user.resource_id, "why": why,
                           "min": user.min_capacity, "max": user.max_capacity},
                )  # fmt: skip
                done.append(name)
            except Exception as exc:  # one target's bounds must not stop the others'
                logger.warning("could not give autoscaling bounds back", extra={"target": name, "error": repr(exc)})
        return done
