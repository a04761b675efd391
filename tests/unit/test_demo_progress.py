"""The demo's progress: a rich bar on a terminal, a plain line every so often anywhere else."""

from __future__ import annotations

import io

import pytest

from forescale.demo.runner import DemoProgress

MONDAY_0920 = 1_768_209_600  # Mon 2026-01-12 09:20 UTC


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_given_no_terminal_then_a_line_is_printed_every_fifteen_seconds_of_wall_time_and_at_the_end() -> None:
    piped, clock = io.StringIO(), FakeClock()  # a log file or a pipe: isatty() is False
    progress = DemoProgress(total=400, stream=piped, every_s=15.0, clock=clock)
    for done, at in ((10, 105.0), (20, 114.0), (30, 116.0), (60, 125.0), (100, 160.0), (400, 161.0)):
        clock.now = at
        progress.update(done=done, sim_at=MONDAY_0920 + 60 * done, decisions=done // 10, changes=done // 20)
    progress.close()
    lines = piped.getvalue().splitlines()
    # 116 s (16 s after the start), 160 s (44 s after the last line) and the last minute; not 105, 114, 125.
    assert [ln.split(" · ")[1] for ln in lines] == ["30/400 min", "100/400 min", "400/400 min"]
    assert lines[0].startswith("  Mon 09:50 UTC")
    assert "3 decisions · 1 capacity changes · 16 s" in lines[0]
    assert "about 3.0 min left" in lines[1]  # 60 s per 100 simulated minutes, 300 to go: 3 min
    assert "left" not in lines[2]


def test_given_a_terminal_then_rich_draws_a_bar_with_the_decisions_and_the_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    terminal = Terminal()
    progress = DemoProgress(total=175, stream=terminal)
    assert progress.bar is not None
    progress.update(done=50, sim_at=MONDAY_0920 + 3000, decisions=12, changes=9)
    progress.close()
    drawn = terminal.getvalue()
    assert "\x1b[" in drawn  # the terminal gets escape codes, from rich, not from us
    assert "Mon 10:10 UTC" in drawn and "50/175" in drawn
    assert "12 decisions" in drawn and "9 changes" in drawn


def test_given_progress_disabled_then_nothing_is_printed() -> None:
    piped, clock = io.StringIO(), FakeClock()
    progress = DemoProgress(total=10, stream=piped, enabled=False, clock=clock)
    clock.now = 1000.0
    progress.update(done=10, sim_at=MONDAY_0920, decisions=1, changes=1)
    assert piped.getvalue() == ""
    terminal = Terminal()
    assert DemoProgress(total=10, stream=terminal, enabled=False).bar is None
