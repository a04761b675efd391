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


@pytest.fixture
def moto_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Placeholder credentials and region for moto's in-process mock, and no endpoint pointing boto3 elsewhere."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
