"""Shared fixtures: the location of ../shared (the yardstick and real traces), when it exists."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from tests import tiers

if TYPE_CHECKING:
    from forescale.domain.ratelimit import ManualClock

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TRACES = SHARED / "traces"
BENCH = SHARED / "bench"
EVENTS = REPO / "events"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        choices=tiers.TIERS,
        default="fast",
        help="fast (default): every module, property tests at a tenth of their examples, long suites by a "
        "representative case; slow: the long suites and full property runs; all: both",
    )


def pytest_configure(config: pytest.Config) -> None:
    tier = config.getoption("--tier")
    tiers.select(tier)
    # Property tests that do not set their own count draw hypothesis's default (100) scaled the same way.
    settings.register_profile("forescale-tier", max_examples=tiers.examples(100))
    settings.load_profile("forescale-tier")


# Modules whose module-scoped fixture is cheap next to their many cases: spread over the workers.
SPREAD_MODULES = frozenset({"test_fault_matrix.py", "test_crash_points.py"})


def _xdist_group(item: pytest.Item) -> str | None:
    """Keep tests that share a costly fixture on one xdist worker (fixtures are built per worker): the
    infra tests' session synthesis on one, each module with a module-scoped fixture on one."""
    info = getattr(item, "_fixtureinfo", None)
    scopes = {d.scope for defs in (info.name2fixturedefs.values() if info else ()) for d in defs}
    if REPO / "tests" / "infra" in Path(str(item.path)).parents:
        return "infra"
    if "module" in scopes and item.path.name not in SPREAD_MODULES:
        return str(item.path.relative_to(REPO))
    return None


def pytest_itemcollected(item: pytest.Item) -> None:
    # Marked as each item is collected: xdist reads the marks in its own collection_modifyitems hook.
    group = _xdist_group(item)
    if group:
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tier = config.getoption("--tier")
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        property_test = bool(getattr(getattr(item, "obj", None), "is_hypothesis_test", False))
        slow = item.get_closest_marker("slow") is not None
        (keep if tiers.in_tier(tier, slow=slow, property_test=property_test) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


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


@pytest.fixture
def handler_clock() -> Iterator[ManualClock]:
    """The clock handlers read (`lambda_support.now()`), for tests whose events carry fixed dates: event
    times are bounded against it (a day back, 5 minutes ahead), so set `now_s` near the events' time."""
    from forescale.domain.ratelimit import ManualClock
    from forescale.runtime import lambda_support

    clock = ManualClock(0.0)
    lambda_support.set_clock(clock)
    yield clock
    lambda_support.set_clock(None)
