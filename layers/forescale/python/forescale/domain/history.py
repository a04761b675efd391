"""A bounded window of observed request rates, with missing samples held, never read as zero."""

from __future__ import annotations

from collections import deque

# A step this many times above both the window's peak and the rate one unit of capacity serves is not
# believed until the next step confirms it. Real surges stay far below it: the steepest on the shared
# traces is 100× its day's peak (ServeGen servegen-small client 027, 10-minute steps); a broken or
# poisoned metric (1e12 req/s) is far above.
SPIKE_FACTOR = 1000.0


class DemandHistory:
    """Observed rates (requests/s), one per step, newest last.

    A missing sample (`None`) is stored as missing and *held* at the last value seen when read, the
    way CloudWatch alarms treat INSUFFICIENT_DATA: missing metrics are not zero demand.

    An implausible jump (see `believed`) is recorded as missing too, and kept in `unconfirmed_rps`
    until the next step confirms or drops it.
    """

    __slots__ = ("_missing", "_values", "last_ts", "missing_run", "observed_steps", "unconfirmed_rps")

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self._values: deque[float] = deque(maxlen=maxlen)
        self._missing: deque[bool] = deque(maxlen=maxlen)
        self.last_ts: int | None = None
        self.observed_steps = 0
        self.missing_run = 0
        self.unconfirmed_rps: float | None = None  # the newest step's rate, held back as implausible

    def implausible(self, rate: float, unit_rps: float, factor: float = SPIKE_FACTOR) -> bool:
        """Whether `rate` (requests/s) is over `factor` × both the window's peak and `unit_rps`, the rate
        one unit of capacity serves. With nothing observed yet there is nothing to compare with."""
        return self.observed_steps > 0 and rate > factor * max(self.peak(len(self._values)), unit_rps)

    def believed(self, rate: float | None, unit_rps: float, factor: float = SPIKE_FACTOR) -> float | None:
        """The rate to record for the next step: an implausible jump becomes None (missing, held) unless
        the step before was one too, which confirms it (a second minute saying the same)."""
        pending, self.unconfirmed_rps = self.unconfirmed_rps, None
        if rate is None or pending is not None or not self.implausible(rate, unit_rps, factor):
            return rate
        self.unconfirmed_rps = rate
        return None

    def append(self, ts: int, rate: float | None) -> None:
        if self.last_ts is not None and ts <= self.last_ts:
            raise ValueError(f"observations must move forward: {ts} after {self.last_ts}")
        if rate is not None and not rate >= 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.last_ts = ts
        if rate is None:
            held = self._values[-1] if self._values else 0.0
            self._values.append(held)
            self._missing.append(True)
            self.missing_run += 1
        else:
            self._values.append(float(rate))
            self._missing.append(False)
            self.missing_run = 0
            self.observed_steps += 1

    def __len__(self) -> int:
        return len(self._values)

    @property
    def last(self) -> float:
        return self._values[-1] if self._values else 0.0

    @property
    def last_missing(self) -> bool:
        return bool(self._missing) and self._missing[-1]

    def ago(self, k: int) -> float:
        """The value k steps back (1 is the newest); 0.0 before the window starts."""
        return self._values[-k] if 0 < k <= len(self._values) else 0.0

    def missing_ago(self, k: int) -> bool:
        return self._missing[-k] if 0 < k <= len(self._missing) else True

    def peak(self, n: int) -> float:
        """The largest of the newest `n` values."""
        if not self._values or n <= 0:
            return 0.0
        if n >= len(self._values):
            return max(self._values)
        return max(self._values[-i] for i in range(1, n + 1))
