"""The tier rules: what each tier runs and how many examples a property test draws there."""

from __future__ import annotations

import pytest

from tests import tiers


@pytest.mark.parametrize(
    ("tier", "slow", "property_test", "runs"),
    [
        ("fast", False, False, True),
        ("fast", False, True, True),  # at a tenth of its examples
        ("fast", True, False, False),
        ("slow", False, False, False),  # ran in the fast tier already
        ("slow", False, True, True),  # again, at its full count
        ("slow", True, False, True),
        ("all", False, False, True),
        ("all", True, False, True),
    ],
)
def test_each_tier_runs_what_the_readme_says(tier: str, slow: bool, property_test: bool, runs: bool) -> None:
    assert tiers.in_tier(tier, slow=slow, property_test=property_test) is runs


def test_fast_tier_draws_a_tenth_and_the_others_every_example() -> None:
    before = tiers._selected[0]
    try:
        tiers.select("fast")
        assert [tiers.examples(n) for n in (2500, 1000, 300, 60)] == [250, 100, 30, 10]
        tiers.select("slow")
        assert tiers.examples(1000) == 1000
        with pytest.raises(ValueError, match="--tier"):
            tiers.select("quick")
    finally:
        tiers.select(before)


def test_long_suites_keep_their_representatives_out_of_the_slow_tier() -> None:
    def every() -> list[str]:
        return ["a", "b", "c"]

    fast = tiers.long_suite_params("fast", ["b"], lambda: pytest.fail("the fast tier must not list every case"))
    assert [p.values for p in fast] == [("b",)]
    full = {p.values[0]: [m.name for m in p.marks] for p in tiers.long_suite_params("slow", ["b"], every)}
    assert full == {"a": ["slow"], "b": [], "c": ["slow"]}
