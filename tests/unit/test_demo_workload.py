"""What the demo runs: its default window, how `--days` cuts a trace, other steps, old epochs, bad options."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from forescale.cli import DEMO_DAYS
from forescale.demo.runner import (
    DEFAULT_DAYS,
    OLDEST_EPOCH,
    WEEK_S,
    DemoOptions,
    load_workload,
    since_2000,
    to_one_minute,
)
from forescale.replay.trace import Trace, TraceError, TraceTarget, write_trace
from forescale.replay.workload import generate

DAY_S = 86_400


def utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def test_given_the_default_options_then_the_window_holds_the_ramps_steep_end_and_the_unannounced_spike() -> None:
    trace, start_at = load_workload(DemoOptions())
    assert DEMO_DAYS == DEFAULT_DAYS  # `forescale demo --help` says what the runner does
    assert utc(start_at).strftime("%a %H:%M") == "Mon 10:05"
    assert start_at - trace.start == 7 * DAY_S  # after 7 days of history, and no more to load
    assert trace.end - start_at == 130 * 60
    spike = trace.meta["surprise_spike"]
    assert start_at < spike["start"] < spike["end"] <= trace.end  # the whole spike is inside the window
    api = trace.targets["api-steady"].requests
    i = (start_at - trace.start) // 60
    first_hour, before_spike = sum(api[i : i + 60]) / 3600, sum(api[i + 60 : i + 120]) / 3600
    assert 200 < first_hour < before_spike  # the morning ramp is still climbing when the window opens


def test_given_days_then_a_trace_is_cut_after_that_much_window(tmp_path: Path) -> None:
    path = write_trace(generate(days=3, seed=3, targets=["api-steady"]), tmp_path / "t.csv")
    trace, start_at = load_workload(DemoOptions(trace=path, history_days=1, days=0.02))
    assert start_at == trace.start + DAY_S
    assert trace.end - start_at == round(0.02 * DAY_S / 60) * 60  # 29 minutes, not the 2 days left in the file


def test_given_a_start_time_then_the_window_opens_at_the_first_such_time_after_the_history(tmp_path: Path) -> None:
    path = write_trace(generate(days=3, seed=3, targets=["api-steady"]), tmp_path / "t.csv")
    trace, start_at = load_workload(DemoOptions(trace=path, history_days=1.5, days=0.1, start_time="06:30"))
    assert utc(start_at).strftime("%a %H:%M") == "Wed 06:30"  # the file starts Mon 00:00: history ends Tue 12:00
    assert start_at - trace.start == 1.5 * DAY_S  # the history asked for, not the 2.27 days before the window


def ten_second_trace() -> Trace:
    targets = {"gpu": TraceTarget("gpu", tuple(float(i % 7) for i in range(40)), {"kind": "lambda"})}
    return Trace(10, 1_700_000_020, 40, targets, ((1_700_000_100, 1_700_000_110),))


def test_given_ten_second_steps_then_they_are_summed_into_minutes_and_a_gap_covers_its_minute() -> None:
    t = ten_second_trace()
    one = to_one_minute(t)
    # 1_700_000_020 is 20 s into a minute: its first 4 steps are dropped, then 6 per minute.
    assert one.step_s == 60 and one.start == 1_700_000_040 and one.steps == 6
    assert one.targets["gpu"].requests[0] == sum(t.targets["gpu"].requests[2:8])
    assert one.gaps == ((1_700_000_100 - 1_700_000_100 % 60, 1_700_000_160),)
    assert one.meta["resampled_from_step_s"] == 10


def test_given_ten_minute_steps_then_each_is_spread_over_its_minutes() -> None:
    t = Trace(600, 1_700_000_400, 2, {"x": TraceTarget("x", (600.0, 60.0), {"kind": "lambda"})})
    one = to_one_minute(t)
    assert one.steps == 20 and one.targets["x"].requests == (60.0,) * 10 + (6.0,) * 10


def test_given_a_step_that_neither_divides_nor_multiplies_a_minute_then_it_is_refused_with_how_to_convert() -> None:
    t = Trace(45, 1_700_000_010, 4, {"x": TraceTarget("x", (1.0,) * 4, {"kind": "lambda"})})
    with pytest.raises(TraceError, match=r"45 s step.*convert the trace to 60 s steps.*step_s to 60"):
        to_one_minute(t, "odd.csv")


def test_given_a_trace_from_1998_then_it_moves_by_whole_weeks_to_after_2000() -> None:
    start = 893_971_800  # worldcup98: Sun 1998-04-30 21:30 UTC
    t = Trace(60, start, 3, {"x": TraceTarget("x", (1.0,) * 3, {"kind": "lambda"})}, ((start + 60, start + 120),))
    moved = since_2000(t)
    shift = moved.start - start
    assert moved.start >= OLDEST_EPOCH and shift % WEEK_S == 0
    assert utc(moved.start).strftime("%a %H:%M") == utc(start).strftime("%a %H:%M")
    assert moved.gaps == ((start + shift + 60, start + shift + 120),)
    assert since_2000(moved) is moved  # a recent trace is left alone


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("days", 0, "--days must be a number of days > 0"),
        ("days", -1, "--days must be a number of days > 0"),
        ("history_days", -3, "--history-days must be a number of days > 0"),
        ("start_time", "9h", "--start-time must be HH:MM"),
        ("start_time", "24:00", "--start-time must be HH:MM"),
    ],
)
def test_given_a_bad_option_then_the_message_names_it(option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DemoOptions(**{option: value})  # type: ignore[arg-type]
