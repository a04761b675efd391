"""The two test tiers, and how many examples a property test draws in each.

`uv run pytest` runs the fast tier: every module, the property tests at a tenth of their examples,
and a representative case of each long suite. `uv run pytest --tier slow` runs the rest (the long
suites and the property tests at their full example counts); `--tier all` runs everything once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from _pytest.mark import ParameterSet

TIERS = ("fast", "slow", "all")
FAST_SHARE = 10  # the fast tier draws 1/FAST_SHARE of a property test's examples

_selected = ["fast"]  # a one-slot box: pytest_configure sets it before the test modules are imported


def select(tier: str) -> None:
    """Set the tier before the test modules are imported (pytest_configure runs before collection)."""
    if tier not in TIERS:
        raise ValueError(f"--tier must be one of {', '.join(TIERS)}, got {tier!r}")
    _selected[0] = tier


def examples(full: int) -> int:
    """A property test's example count in the selected tier: `full` unless the tier is fast."""
    return full if _selected[0] != "fast" else max(10, full // FAST_SHARE)


def in_tier(tier: str, *, slow: bool, property_test: bool) -> bool:
    """Whether a test runs in `tier`: fast runs what is not slow; slow runs the slow tests and the
    property tests again at their full counts; all runs everything."""
    if tier == "all":
        return True
    if tier == "fast":
        return not slow
    return slow or property_test


def long_suite_params(
    tier: str, representatives: Sequence[str], all_ids: Callable[[], Sequence[str]]
) -> list[ParameterSet]:
    """The parameters of a long parametrized suite: its representatives run in the fast tier, every
    other case is marked slow. In the fast tier `all_ids` is not called (it can be costly: the fault
    matrix's cases come from a whole recorded pipeline run)."""
    if tier == "fast":
        return [pytest.param(i, id=i) for i in representatives]
    return [pytest.param(i, id=i, marks=() if i in representatives else pytest.mark.slow) for i in all_ids()]
