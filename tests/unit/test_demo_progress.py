"""The demo's progress line: simulated time, decisions, elapsed and the time left."""

from __future__ import annotations

import io

import pytest

from forescale.demo import runner


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_given_a_quarter_done_in_a_minute_then_about_three_minutes_are_left(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 160.0])  # started at 100 s; the update comes 60 s later
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(clock))
    terminal = Terminal()
    progress = runner._Progress(total=400, stream=terminal, enabled=True)
    progress.update(done=100, sim_at=1_768_176_000, decisions=42)
    line = terminal.getvalue()
    assert "100/400 min" in line and "42 decisions" in line and "60 s" in line
    assert "about 3 min left" in line  # 60 s per 100 simulated minutes, 300 to go


def test_given_no_terminal_then_nothing_is_drawn() -> None:
    piped = io.StringIO()  # isatty() is False: a log file or a pipe gets no carriage-return bar
    progress = runner._Progress(total=10, stream=piped, enabled=True)
    progress.update(done=5, sim_at=1_768_176_000, decisions=1)
    assert piped.getvalue() == ""
