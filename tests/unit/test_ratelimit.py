"""The token bucket (on a manual clock), the error classification, bounded backoff and the CallGate."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_socket import disable_socket, enable_socket

from forescale.domain.ratelimit import (
    CallGate,
    DeferredError,
    ErrorAction,
    ErrorFacts,
    ManualClock,
    RejectedError,
    RetryPolicy,
    TokenBucket,
    classify,
    max_in_window,
)
from tests.tiers import examples


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    disable_socket()
    yield
    enable_socket()


def drain(bucket: TokenBucket, clock: ManualClock, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        bucket.acquire()
        times.append(clock())
    return times


@pytest.mark.parametrize("start_s", [0.0, 1_700_000_000.0])
def test_given_burst_1_when_200_calls_then_no_second_holds_more_than_15(start_s: float) -> None:
    clock = ManualClock(start_s)
    bucket = TokenBucket(15.0, burst=1, clock=clock, sleep=clock.sleep)
    times = drain(bucket, clock, 200)
    assert max_in_window(times) == 15
    per_second: dict[int, int] = {}
    for t in times:
        per_second[math.floor(t)] = per_second.get(math.floor(t), 0) + 1
    assert max(per_second.values()) <= 15
    # ...and it is not slower than it needs to be: 199 intervals of ~1/15 s.
    assert times[-1] - times[0] == pytest.approx(199 / 15, rel=1e-3)


def test_given_a_burst_when_idle_then_that_many_go_at_once_and_the_rest_are_paced() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10.0, burst=5, clock=clock, sleep=clock.sleep)
    times = drain(bucket, clock, 25)
    assert times[:5] == [0.0] * 5
    assert times[5] > 0
    gaps = [b - a for a, b in itertools.pairwise(times[5:])]
    assert min(gaps) >= 0.1
    # burst - 1 + rate is the documented bound for a window.
    assert max_in_window(times) <= 5 - 1 + 10


def test_try_acquire_takes_nothing_when_empty_and_reports_the_wait() -> None:
    clock = ManualClock()
    bucket = TokenBucket(4.0, clock=clock, sleep=clock.sleep)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    assert bucket.wait_time_s() == pytest.approx(0.25, abs=1e-5)
    clock.advance(0.2)
    assert not bucket.try_acquire()
    clock.advance(0.06)
    assert bucket.try_acquire()
    assert bucket.acquired == 2


def test_acquire_sleeps_on_the_injected_clock_and_counts_the_wait() -> None:
    clock = ManualClock(100.0)
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    assert bucket.acquire() == 0.0
    slept = bucket.acquire()
    assert slept == pytest.approx(0.5, abs=1e-5)
    assert clock() == pytest.approx(100.5, abs=1e-5)
    assert bucket.waited_s == pytest.approx(slept)


@settings(max_examples=examples(60), deadline=None)
@given(
    rate=st.floats(min_value=1.0, max_value=40.0),
    pauses=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=20, max_size=120),
)
def test_property_no_window_exceeds_ceil_of_rate(rate: float, pauses: list[float]) -> None:
    clock = ManualClock(1_700_000_000.0)
    bucket = TokenBucket(rate, burst=1, clock=clock, sleep=clock.sleep)
    times = []
    for pause in pauses:  # callers that think between calls do not earn a burst
        clock.advance(pause)
        bucket.acquire()
        times.append(clock())
    assert max_in_window(times) <= math.ceil(rate)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"rate_per_s": float("nan")}, "rate_per_s"),
        ({"rate_per_s": 1, "burst": 0}, "burst"),
    ],
)
def test_bad_limiter_settings_are_named(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBucket(**kwargs)  # type: ignore[arg-type]


def test_manual_clock_refuses_to_go_back() -> None:
    with pytest.raises(ValueError, match="negative"):
        ManualClock().sleep(-1)


@pytest.mark.parametrize(
    ("facts", "action"),
    [
        (ErrorFacts("ThrottlingException", "Rate exceeded", 400), ErrorAction.RETRY),
        (ErrorFacts("TooManyRequestsException", "CallerRateLimitExceeded", 429), ErrorAction.RETRY),
        (ErrorFacts("Whatever", "", 429), ErrorAction.RETRY),
        (ErrorFacts("ServiceUnavailable", "", 503), ErrorAction.RETRY),
        (ErrorFacts("ServiceException", "", 500), ErrorAction.RETRY),
        (ErrorFacts("SomethingNew", "", 502), ErrorAction.RETRY),
        (ErrorFacts("NetworkError", "Could not connect", None), ErrorAction.RETRY),
        (ErrorFacts("NoResponse", "Read timeout", None), ErrorAction.RETRY),  # a read may be retried
        (ErrorFacts("ResourceConflictException", "An update is in progress", 409), ErrorAction.DEFER),
        (ErrorFacts("ConcurrentUpdateException", "", 400), ErrorAction.DEFER),
        (ErrorFacts("ValidationException", "Cannot update in-progress endpoint x.", 400), ErrorAction.DEFER),
        (ErrorFacts("ValidationException", "Endpoint x is in Updating status", 400), ErrorAction.DEFER),
        (ErrorFacts("ValidationException", "Could not find endpoint x", 400), ErrorAction.FAIL),
        (ErrorFacts("InvalidParameterValueException", "over reserved", 400), ErrorAction.FAIL),
        (ErrorFacts("AccessDeniedException", "not authorized", 403), ErrorAction.FAIL),
        (ErrorFacts("ResourceNotFoundException", "Function not found", 404), ErrorAction.FAIL),
    ],
)
def test_classify(facts: ErrorFacts, action: ErrorAction) -> None:
    assert classify(facts) is action


def test_backoff_doubles_up_to_its_cap_with_equal_jitter() -> None:
    policy = RetryPolicy(attempts=6, base_delay_s=0.25, max_delay_s=1.0)
    assert [policy.delay_s(i) for i in range(4)] == [0.25, 0.5, 1.0, 1.0]
    assert policy.delay_s(1, unit_random=0.0) == 0.25  # half of the cap at the lowest draw
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="base_delay_s"):
        RetryPolicy(base_delay_s=3, max_delay_s=1)


class AwsError(Exception):
    def __init__(self, code: str, message: str = "", status: int | None = 400) -> None:
        super().__init__(code)
        self.facts = ErrorFacts(code, message, status)


def facts_of(exc: BaseException) -> ErrorFacts | None:
    return exc.facts if isinstance(exc, AwsError) else None


def flaky(errors: list[Exception], result: str = "ok") -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return calls, fn


def test_gate_retries_throttling_then_succeeds_taking_a_token_per_attempt() -> None:
    clock = ManualClock()
    bucket = TokenBucket(15.0, clock=clock, sleep=clock.sleep)
    gate = CallGate(facts_of, bucket, RetryPolicy(attempts=4, base_delay_s=0.2), clock.sleep, lambda: 1.0)
    calls, fn = flaky([AwsError("ThrottlingException"), AwsError("ServiceUnavailable", status=503)])
    assert gate.call("Put", fn) == "ok"  # type: ignore[arg-type]
    assert len(calls) == 3
    assert bucket.acquired == 3
    assert gate.retries == 2
    assert clock() == pytest.approx(0.2 + 0.4, abs=1e-3)  # backoff on the same clock


def test_gate_defers_after_bounded_retries() -> None:
    clock = ManualClock()
    gate = CallGate(facts_of, None, RetryPolicy(attempts=3, base_delay_s=0.1), clock.sleep, lambda: 1.0)
    calls, fn = flaky([AwsError("TooManyRequestsException", "Rate exceeded", 429)] * 5)
    with pytest.raises(DeferredError) as info:
        gate.call("PutProvisionedConcurrencyConfig f:live=5", fn)  # type: ignore[arg-type]
    assert len(calls) == 3
    assert info.value.code == "TooManyRequestsException"
    assert "after 3 attempts" in str(info.value) and "Rate exceeded" in str(info.value)
    assert clock() == pytest.approx(0.1 + 0.2)


def test_gate_fails_at_once_on_a_refused_request_and_defers_at_once_on_a_busy_one() -> None:
    gate = CallGate(facts_of, None, RetryPolicy(), lambda s: None)
    calls, fn = flaky([AwsError("ValidationException", "1 validation error detected")])
    with pytest.raises(RejectedError, match="1 validation error detected") as info:
        gate.call("Put", fn)  # type: ignore[arg-type]
    assert info.value.code == "ValidationException" and len(calls) == 1
    calls, fn = flaky([AwsError("ResourceConflictException", "update in progress", 409)])
    with pytest.raises(DeferredError, match="update in progress"):
        gate.call("Put", fn)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_gate_lets_non_aws_errors_through_untouched() -> None:
    gate = CallGate(facts_of, None, RetryPolicy(), lambda s: None)
    _, fn = flaky([KeyError("bug")])
    with pytest.raises(KeyError):
        gate.call("Put", fn)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "applies_change", "calls_made", "outcome"),
    [
        # A change whose answer was lost may have been applied: not sent again, read back next cycle.
        (AwsError("NoResponse", "Read timeout", None), True, 1, DeferredError),
        (AwsError("NoResponse", "Read timeout", None), False, 2, None),  # a read is simply retried
        (AwsError("NetworkError", "Could not connect", None), True, 2, None),  # never delivered: safe to resend
        (AwsError("ThrottlingException"), True, 2, None),  # refused with an answer: safe to resend
    ],
)
def test_gate_does_not_resend_a_change_whose_answer_was_lost(
    error: AwsError, applies_change: bool, calls_made: int, outcome: type[Exception] | None
) -> None:
    clock = ManualClock()
    retried: list[tuple[str, str, int]] = []
    gate = CallGate(facts_of, None, RetryPolicy(attempts=3), clock.sleep, lambda: 1.0,
                    on_retry=lambda what, facts, attempt: retried.append((what, facts.code, attempt)))  # fmt: skip
    calls, fn = flaky([error])
    if outcome is None:
        assert gate.call("Put", fn, applies_change=applies_change) == "ok"  # type: ignore[arg-type]
        assert retried == [("Put", error.facts.code, 1)]  # the retry is reported
    else:
        with pytest.raises(outcome, match="may have been applied"):
            gate.call("Put", fn, applies_change=applies_change)  # type: ignore[arg-type]
        assert retried == []
    assert len(calls) == calls_made


# ---------------------------------------------------------------- pacing on a local run's simulated clock


def test_on_a_simulated_clock_the_limiter_keeps_its_spacing_and_waits_no_wall_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from forescale.local.server import SimClock
    from forescale.runtime import lambda_support

    def no_wall_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s of wall time on a simulated clock")

    simulated = SimClock(1_768_176_000)
    lambda_support.set_clock(simulated)
    try:
        clock, sleep = lambda_support.pacing()
        monkeypatch.setattr(time, "sleep", no_wall_sleep)
        bucket = TokenBucket(15, burst=1, clock=clock, sleep=sleep)
        times = []
        for i in range(90):
            if i == 45:
                simulated.now += 60  # the next simulated minute: the pacing clock follows it
            bucket.acquire()
            times.append(clock())
        assert max_in_window(times) == 15  # paced as in Lambda: 15 in a second, never 16
        assert times == sorted(times) and times[45] >= simulated.now
        assert bucket.waited_s == pytest.approx(88 / 15, abs=0.01)  # 44 + 44 waits of 1/15 s, none at the jump
    finally:
        lambda_support.set_clock(None)
    assert lambda_support.pacing() == (time.monotonic, no_wall_sleep)  # wall time again (sleep is patched here)


def test_act_keeps_one_service_per_clock_so_a_limiter_never_mixes_wall_and_simulated_time(
    moto_credentials: None,
) -> None:
    import importlib

    from moto import mock_aws

    from forescale.local.server import SimClock
    from forescale.runtime import lambda_support
    from forescale.runtime.settings import ActSettings

    act = importlib.import_module("functions.act.handler")
    act.reset()
    settings = ActSettings(TABLE_NAME="forescale", EVENT_BUS_NAME="forescale")
    try:
        with mock_aws():  # the services build boto3 clients; nothing is called
            on_wall = act._service(settings)
            assert act._service(settings) is on_wall  # warm invocations share the limiter's schedule
            lambda_support.set_clock(SimClock(1_768_176_000))
            on_simulated = act._service(settings)
            assert on_simulated is not on_wall and act._service(settings) is on_simulated
            lambda_support.set_clock(None)
            assert act._service(settings) is on_wall
    finally:
        lambda_support.set_clock(None)
        act.reset()
