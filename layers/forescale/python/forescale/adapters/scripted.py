"""What the in-memory fakes of the capacity adapters share: a log of the calls made to them, and
failures scripted per operation (`fail_next(op, error)`), raised by the next call of that operation."""

from __future__ import annotations

from collections import deque

from forescale.domain.ratelimit import ActuationError


class ScriptedFailures:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self._failures: dict[str, deque[ActuationError]] = {}

    def fail_next(self, op: str, error: ActuationError) -> None:
        self._failures.setdefault(op, deque()).append(error)

    def _enter(self, op: str, detail: str) -> None:
        """Log `op detail`, then raise the failure scripted for `op`, if any."""
        self.calls.append(f"{op} {detail}".strip())
        queue = self._failures.get(op)
        if queue:
            raise queue.popleft()
