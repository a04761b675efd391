"""Shared fixtures: the location of ../shared (the yardstick and real traces), when it exists."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TRACES = SHARED / "traces"
BENCH = SHARED / "bench"
EVENTS = REPO / "events"


def shared_or_skip() -> Path:
    if not (BENCH / "score.py").exists():
        pytest.skip("../shared/bench is not beside this checkout")
    return SHARED


@pytest.fixture
def yardstick():
    """The shared scorer module (../shared/bench/score.py), imported from its folder."""
    shared_or_skip()
    sys.path.insert(0, str(BENCH))
    try:
        import score  # type: ignore[import-not-found]
        import tracelib  # type: ignore[import-not-found]

        yield score, tracelib
    finally:
        sys.path.remove(str(BENCH))
