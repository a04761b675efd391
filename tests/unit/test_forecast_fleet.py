"""The generated fleet: seeded, varied, chunk-independent, compact, and with the events it promises."""

from __future__ import annotations

from array import array

import numpy as np
import pytest

from forescale.forecasting.fleet import ARCHETYPES, FleetSpec, generate_matrix, iter_histories

SPEC = FleetSpec(targets=120, days=8, seed=5)


@pytest.fixture(scope="module")
def fleet() -> tuple[list[str], np.ndarray]:
    return generate_matrix(SPEC)


def test_given_a_seed_when_generated_twice_or_in_pieces_then_the_series_are_the_same(
    fleet: tuple[list[str], np.ndarray],
) -> None:
    names, m = fleet
    again_names, again = generate_matrix(SPEC, 40, 7)
    assert again_names == names[40:47]
    np.testing.assert_array_equal(again, m[40:47])
    _, other_seed = generate_matrix(FleetSpec(targets=120, days=8, seed=6), 40, 7)
    assert not np.array_equal(np.nan_to_num(other_seed), np.nan_to_num(m[40:47]))


def test_given_a_fleet_then_it_mixes_the_archetypes_with_their_shapes(fleet: tuple[list[str], np.ndarray]) -> None:
    names, m = fleet
    assert m.shape == (120, 8 * 1440)
    kinds = {a for a, _ in ARCHETYPES}
    by_kind = {k: m[[i for i, n in enumerate(names) if n.startswith(k + "-")]] for k in kinds}
    assert all(len(rows) for rows in by_kind.values()), {k: len(v) for k, v in by_kind.items()}
    assert np.nansum(by_kind["zero"]) == 0
    assert np.nanmean(by_kind["sparse"] == 0) > 0.5  # mostly empty minutes
    # diurnal targets have a daily shape: hour-of-day means differ by well over the noise
    hourly = np.nanmean(by_kind["diurnal"].reshape(len(by_kind["diurnal"]), 8, 24, 60), axis=(1, 3))
    assert np.median(hourly.max(axis=1) / hourly.min(axis=1)) > 1.4
    assert np.all(np.nan_to_num(m) >= 0)


def test_given_a_fleet_then_some_targets_have_gaps_as_nan(fleet: tuple[list[str], np.ndarray]) -> None:
    _, m = fleet
    gapped = np.isnan(m).any(axis=1)
    assert 0 < gapped.sum() < len(m)


def test_given_histories_then_rates_are_compact_arrays_with_the_matrix_values(
    fleet: tuple[list[str], np.ndarray],
) -> None:
    names, m = fleet
    first = list(iter_histories(FleetSpec(targets=3, days=8, seed=5), chunk=2))
    assert [h.target for h in first] == names[:3]
    assert all(isinstance(h.rates, array) and h.rates.typecode == "d" for h in first)
    np.testing.assert_array_equal(np.frombuffer(first[2].rates, dtype=np.float64), m[2])  # type: ignore[arg-type]
    assert first[0].end == SPEC.end


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"targets": 0}, "targets"), ({"days": -1}, "days"), ({"step_s": 7}, "step_s")],
)
def test_given_a_bad_spec_then_value_error_names_the_field(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FleetSpec(**kwargs)  # type: ignore[arg-type]
