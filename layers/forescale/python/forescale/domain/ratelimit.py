"""Rate limits and retries for control-plane calls, and what a failed call means for a decision.

Lambda's control plane allows 15 calls per second for the whole account, so every Lambda call act
makes passes a `TokenBucket`. A throttled or briefly unavailable service is retried with bounded,
exponential backoff; after that the decision is deferred to the next cycle, never dropped. A request
AWS refuses on its merits (validation, permissions) fails the decision with AWS's message.

Pure: the clock and the sleep are injected (a benchmark runs the limiter on a `ManualClock`), and
errors are described by `ErrorFacts`, which the adapters build from botocore's exceptions.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], None]

NS_PER_S = 1_000_000_000
# Added to every interval: a float clock reading near 1.7e9 s is only good to ~0.24 µs, and a
# rounding error must never let one more call into a second.
CLOCK_SLACK_NS = 1_000


class TokenBucket:
    """At most `rate_per_s` calls per second on average and `burst` back to back (thread-safe).

    Kept in its theoretical-arrival-time form (GCRA), in integer nanoseconds: each call moves the
    schedule on by one interval of slightly more than 1/rate s. With `burst=1` consecutive calls are
    at least that interval apart, so no 1-s window (open or closed) ever holds more than
    ceil(rate_per_s) calls (exactly 15 for 15/s); with a larger burst, up to burst - 1 + ceil(rate_per_s).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not (math.isfinite(rate_per_s) and rate_per_s > 0):
            raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._interval_ns = math.ceil(NS_PER_S / rate_per_s) + CLOCK_SLACK_NS
        self._tolerance_ns = (burst - 1) * self._interval_ns
        self._tat_ns: int | None = None  # when the bucket is next full, on the clock's scale
        self._lock = threading.Lock()
        self.acquired = 0
        self.waited_s = 0.0

    def _now_ns(self) -> int:
        # Floor: the bucket may think it is slightly earlier than it is, which only ever delays a call.
        return math.floor(self._clock() * NS_PER_S)

    def _wait_ns(self, now_ns: int) -> int:
        tat = now_ns if self._tat_ns is None else self._tat_ns
        return max(0, tat - self._tolerance_ns - now_ns)

    def try_acquire(self) -> bool:
        """Take a token if one is there now; False (and nothing taken) otherwise."""
        with self._lock:
            now_ns = self._now_ns()
            if self._wait_ns(now_ns) > 0:
                return False
            tat = now_ns if self._tat_ns is None else max(self._tat_ns, now_ns)
            self._tat_ns = tat + self._interval_ns
            self.acquired += 1
            return True

    def wait_time_s(self) -> float:
        """Seconds until a token is there (0 if one is there now)."""
        with self._lock:
            return self._wait_ns(self._now_ns()) / NS_PER_S

    def acquire(self) -> float:
        """Take a token, sleeping until there is one; returns the seconds slept."""
        slept = 0.0
        while not self.try_acquire():
            # At least 1 µs, so a clock that rounds never spins without advancing.
            pause = max(self.wait_time_s(), 1e-6)
            self._sleep(pause)
            slept += pause
        self.waited_s += slept
        return slept


class ManualClock:
    """A clock that only moves when something sleeps on it (benchmarks, tests, the local demo)."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.now_s = float(start_s)
        self.slept_s = 0.0

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        self.now_s += seconds
        self.slept_s += seconds

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most calls in any closed window [t, t + window_s] that starts at a call (what the limiter
    promises to keep at or under its rate; benchmarks and tests check it with this)."""
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j + 1 < len(times) and times[j + 1] <= start + window_s:
            j += 1
        best = max(best, j - i + 1)
    return best


# ---------------------------------------------------------------- what a failed call means


class ErrorAction(StrEnum):
    RETRY = "retry"  # transient: back off and try again, then defer
    DEFER = "defer"  # the resource is busy: try again next cycle
    FAIL = "fail"  # AWS refused the request itself: the decision fails with its message


@dataclass(frozen=True, slots=True)
class ErrorFacts:
    """What an AWS error says: its code, message and HTTP status (None for a network error)."""

    code: str
    message: str = ""
    http_status: int | None = None


THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ProvisionedThroughputExceededException",
    }
)
UNAVAILABLE_CODES = frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServiceError",
        "InternalServiceException",
        "RequestTimeout",
        "RequestTimeoutException",
        "NetworkError",  # the adapters' name for a connection failure: the request was not delivered
        "NoResponse",  # sent, but no answer came back (read timeout, connection dropped): it may have been applied
    }
)
# Errors after which AWS may have done what was asked: a change is not sent again blindly (see CallGate.call).
AMBIGUOUS_CODES = frozenset({"NoResponse"})
BUSY_CODES = frozenset({"ResourceConflictException", "ConcurrentUpdateException", "ResourceInUse"})
# SageMaker answers "ValidationException: Cannot update in-progress endpoint" when an endpoint is
# busy: that is a wait, not a bad request.
_BUSY_MESSAGE = re.compile(r"in-progress|in progress|\bupdating\b|\bcreating\b|rollingback|rolling back", re.I)


def classify(facts: ErrorFacts) -> ErrorAction:
    """RETRY throttling and 5xx, DEFER a busy resource, FAIL everything AWS refused on its merits."""
    if facts.code in THROTTLE_CODES or facts.code in UNAVAILABLE_CODES:
        return ErrorAction.RETRY
    if facts.http_status is not None and (facts.http_status == 429 or facts.http_status >= 500):
        return ErrorAction.RETRY
    if facts.code in BUSY_CODES:
        return ErrorAction.DEFER
    if facts.code == "ValidationException" and _BUSY_MESSAGE.search(facts.message):
        return ErrorAction.DEFER
    return ErrorAction.FAIL


class ActuationError(Exception):
    """A call that did not go through; `code` and `message` are AWS's, `what` names the call."""

    def __init__(self, what: str, code: str, message: str) -> None:
        super().__init__(f"{what}: {code}: {message}" if message else f"{what}: {code}")
        self.what = what
        self.code = code
        self.message = message


class DeferredError(ActuationError):
    """Throttled past the retries, or the resource is busy: the decision waits for the next cycle."""


class RejectedError(ActuationError):
    """AWS refused the request (validation, permissions, missing resource): the decision fails."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff: `attempts` tries in all, waits of base·2^i capped at `max_delay_s`.

    With jitter the wait is drawn from [delay/2, delay] ("equal jitter"), so throttled callers spread out.
    """

    attempts: int = 4
    base_delay_s: float = 0.25
    max_delay_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(f"need 0 <= base_delay_s <= max_delay_s, got {self.base_delay_s}, {self.max_delay_s}")

    def delay_s(self, retry: int, unit_random: float = 1.0) -> float:
        """The wait before retry number `retry` (0-based), given a draw in [0, 1]."""
        cap = min(self.max_delay_s, self.base_delay_s * 2.0**retry)
        return cap / 2 + cap / 2 * unit_random


class CallGate:
    """Every AWS call of one adapter passes here: the rate limiter, bounded retries, classification.

    `facts_of` turns an exception into `ErrorFacts` (None: not an AWS error, so it propagates as is).
    Each attempt, retries included, takes its own token from the limiter.
    """

    def __init__(
        self,
        facts_of: Callable[[BaseException], ErrorFacts | None],
        limiter: TokenBucket | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        unit_random: Callable[[], float] = random.random,
        on_retry: Callable[[str, ErrorFacts, int], None] | None = None,
    ) -> None:
        self._facts_of = facts_of
        self._on_retry = on_retry  # (what, error, attempt that failed): a retried error stays visible
        self.limiter = limiter
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._random = unit_random
        self.calls = 0
        self.retries = 0

    def call(self, what: str, fn: Callable[[], T], *, applies_change: bool = False) -> T:
        """Run `fn`, retrying transient errors; DeferredError or RejectedError when it does not go through.

        `applies_change`: `fn` changes a resource. When such a call gets no answer (AMBIGUOUS_CODES),
        AWS may have applied it, so it is not retried here: it is deferred, and the next cycle reads
        the capacity back from AWS before deciding whether anything still has to be sent.
        """
        last: ErrorFacts | None = None
        for attempt in range(self.policy.attempts):
            if attempt:
                self.retries += 1
                self._sleep(self.policy.delay_s(attempt - 1, self._random()))
            if self.limiter is not None:
                self.limiter.acquire()
            self.calls += 1
            try:
                return fn()
            except Exception as exc:
                facts = self._facts_of(exc)
                if facts is None:
                    raise
                action = classify(facts)
                if applies_change and facts.code in AMBIGUOUS_CODES:
                    message = f"no answer, so it may have been applied; read back next cycle: {facts.message}"
                    raise DeferredError(what, facts.code, message) from exc
                if action is ErrorAction.FAIL:
                    raise RejectedError(what, facts.code, facts.message) from exc
                if action is ErrorAction.DEFER:
                    raise DeferredError(what, facts.code, facts.message) from exc
                last = facts
                if self._on_retry is not None:
                    self._on_retry(what, facts, attempt + 1)
        assert last is not None  # nosec B101  # the loop only ends here after a retryable error; narrows the type for mypy
        raise DeferredError(
            what, last.code, f"still failing after {self.policy.attempts} attempts: {last.message}".rstrip(": ")
        )
