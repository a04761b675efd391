"""How requested capacity becomes usable capacity over time: actuation lead times.

A decision takes effect after its lead time (scale-out, scale-in and type change each have their
own). It is a scale-out when it asks for more than the capacity *in effect* when it is made, not
more than the last request: on AWS a provisioned-concurrency request still allocating, or an
endpoint still Updating, delivers nothing sooner for being asked again, so lowering a scale-out that
has not landed is still a scale-out. At any moment the latest-decided of the decisions already in
effect rules. This is the
yardstick's model (../shared/bench/README.md) and what replay uses to tell a policy what it has.
"""

from __future__ import annotations

import heapq

from forescale.domain.targets import Target


class ActuationModel:
    def __init__(self, target: Target, initial: int, initial_type: str | None) -> None:
        self.target = target
        self.requested = initial
        self.requested_type = initial_type
        self._pending: list[tuple[int, int, int, int, str | None]] = []  # (effect, decided_at, order, cap, type)
        self._current: tuple[int, int, int, str | None] = (-1, -1, initial, initial_type)
        self._order = 0

    def record(self, decided_at: int, capacity: int, instance_type: str | None) -> None:
        """Record a request made at `decided_at` (non-decreasing, and not before the last `at`)."""
        itype = instance_type or self.requested_type
        lead = self.target.lead_times
        in_effect, _ = self.at(decided_at)
        if not self.target.is_lambda and itype != self.requested_type:
            delay = lead.type_change_s
        elif capacity > in_effect:
            delay = lead.up_s
        else:
            delay = lead.down_s
        heapq.heappush(self._pending, (decided_at + delay, decided_at, self._order, capacity, itype))
        self._order += 1
        self.requested, self.requested_type = capacity, itype

    def at(self, t: int) -> tuple[int, str | None]:
        """Capacity and instance type in effect at epoch second `t` (call with non-decreasing `t`)."""
        while self._pending and self._pending[0][0] <= t:
            _, at, order, cap, itype = heapq.heappop(self._pending)
            if (at, order) >= self._current[:2]:
                self._current = (at, order, cap, itype)
        return self._current[2], self._current[3]
