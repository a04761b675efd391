"""Refit rarely, update cheaply: the stored per-target state, its round trip, and when a refit happens."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.forecasting.statsforecast_adapter import StateError, StatsForecastAdapter

DAY = 86_400
STEP = 600
T0 = 1_700_006_400


def rates(days: float, seed: int = 0) -> list[float]:
    n = int(days * DAY) // STEP
    ts = T0 + np.arange(n) * STEP
    noise = np.random.default_rng(seed).normal(0.0, 2.0, n)
    return [float(v) for v in 50.0 + 40.0 * np.sin(2 * np.pi * (ts % DAY) / DAY) + noise]


def paths(fc: Forecast) -> np.ndarray:
    return np.array([fc.quantiles[q] for q in sorted(fc.quantiles)])


@pytest.fixture(scope="module")
def fitted() -> tuple[StatsForecastAdapter, list[float]]:
    series = rates(9 + 3 / 24, seed=1)
    ad = StatsForecastAdapter()
    ad.forecast([SeriesHistory("svc", T0, STEP, series[: 9 * DAY // STEP])], 3600)
    assert ad.last_refits == ["svc"]
    return ad, series


def test_given_an_exported_state_when_another_adapter_imports_it_then_it_forecasts_identically_without_a_refit(
    fitted: tuple[StatsForecastAdapter, list[float]],
) -> None:
    ad, series = fitted
    blobs = ad.export_state()
    assert set(blobs) == {"svc"} and len(blobs["svc"]) < 4096  # fits a DynamoDB item with room to spare
    other = StatsForecastAdapter()
    other.import_state(blobs)
    later = SeriesHistory("svc", T0, STEP, series)  # three hours after the fit
    a, b = ad.forecast([later], 3600)["svc"], other.forecast([later], 3600)["svc"]
    assert not ad.last_refits and not other.last_refits
    np.testing.assert_array_equal(paths(a), paths(b))
    assert a.mase == b.mase and a.model == b.model


def test_given_a_state_when_updating_then_only_the_recent_half_hour_is_read(
    fitted: tuple[StatsForecastAdapter, list[float]],
) -> None:
    ad, series = fitted
    keep = 3  # 30 minutes of 600 s steps
    short = SeriesHistory("svc", T0 + (len(series) - keep) * STEP, STEP, series[-keep:])
    full = SeriesHistory("svc", T0, STEP, series)
    np.testing.assert_array_equal(paths(ad.forecast([short], 3600)["svc"]), paths(ad.forecast([full], 3600)["svc"]))


def test_given_a_state_when_a_day_passes_or_a_refit_is_asked_then_the_target_is_refitted() -> None:
    series = rates(11, seed=2)
    ad = StatsForecastAdapter()

    def upto(steps: int) -> list[SeriesHistory]:
        return [SeriesHistory("svc", T0, STEP, series[:steps])]

    day = DAY // STEP
    ad.forecast(upto(9 * day), 3600)
    fitted_at = ad.state_of("svc").fitted_at  # type: ignore[union-attr]
    ad.forecast(upto(10 * day - 1), 3600)
    assert not ad.last_refits  # 23 h 50 min later: still an update
    ad.forecast(upto(10 * day - 1), 3600, refit={"svc"})
    assert ad.last_refits == ["svc"]  # asked (e.g. drift)
    ad.forecast(upto(11 * day - 1), 3600)
    assert ad.last_refits == ["svc"]  # a day after the forced refit
    assert ad.state_of("svc").fitted_at == fitted_at + 2 * DAY - STEP  # type: ignore[union-attr]


def test_given_a_history_on_another_grid_when_updating_then_the_state_is_not_reused(
    fitted: tuple[StatsForecastAdapter, list[float]],
) -> None:
    ad, series = fitted
    other = StatsForecastAdapter()
    other.import_state(ad.export_state())
    shifted = SeriesHistory("svc", T0 + 60, STEP, series)  # end no longer on the fitted grid
    other.forecast([shifted], 3600)
    assert other.last_refits == ["svc"]


def _blob(data: object) -> bytes:
    return zlib.compress(json.dumps(data).encode())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(profile=[1.0, 2.0]), "profile has 2 values"),
        (lambda d: d.update(errors=[[0.0]]), "errors must be"),
        (lambda d: d.update(path=[float("nan")] * len(d["path"])), "non-finite"),
        (lambda d: d.pop("shift"), "KeyError"),
    ],
    ids=["version", "profile", "errors", "nan-path", "missing-field"],
)
def test_given_a_bad_state_when_imported_then_state_error_names_the_target(
    fitted: tuple[StatsForecastAdapter, list[float]], mutate: object, message: str
) -> None:
    ad, _ = fitted
    data = json.loads(zlib.decompress(ad.export_state()["svc"]))
    mutate(data)  # type: ignore[operator]
    with pytest.raises(StateError, match=f"state for svc: .*{message}"):
        StatsForecastAdapter().import_state({"svc": _blob(data)})


def test_given_bytes_that_are_not_a_state_when_imported_then_state_error() -> None:
    with pytest.raises(StateError, match="state for x: not an exported state"):
        StatsForecastAdapter().import_state({"x": b"not zlib"})


def test_given_a_fresh_process_with_state_when_forecasting_then_statsforecast_and_pandas_stay_unloaded(
    fitted: tuple[StatsForecastAdapter, list[float]], tmp_path: Path
) -> None:
    ad, series = fitted
    (tmp_path / "state.bin").write_bytes(ad.export_state()["svc"])
    (tmp_path / "rates.json").write_text(json.dumps(series[-6:]))
    start = T0 + (len(series) - 6) * STEP
    code = (
        "import json, sys\n"
        "from forescale.domain.forecast import SeriesHistory\n"
        "from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter\n"
        "ad = StatsForecastAdapter()\n"
        f"ad.import_state({{'svc': open({str(tmp_path / 'state.bin')!r}, 'rb').read()}})\n"
        f"h = SeriesHistory('svc', {start}, {STEP}, json.load(open({str(tmp_path / 'rates.json')!r})))\n"
        "fc = ad.forecast([h], 3600)['svc']\n"
        "print(json.dumps([fc.horizon_steps, sorted(m for m in ('statsforecast', 'pandas') if m in sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [6, []]


def test_given_a_refit_budget_when_many_targets_are_new_then_the_rest_get_interim_fits_and_catch_up() -> None:
    day = DAY // STEP
    series = {f"t{i}": [v + 10 * i for v in rates(9, seed=10 + i)] for i in range(3)}

    def at(steps: int) -> list[SeriesHistory]:
        return [SeriesHistory(n, T0, STEP, r[:steps]) for n, r in series.items()]

    ad = StatsForecastAdapter(max_refits=1)
    out = ad.forecast(at(8 * day), 3600)
    assert set(out) == set(series) and len(ad.last_refits) == 1 and len(ad.last_deferred) == 2
    assert sorted(ad.last_changed) == sorted(series)  # every state was written: all must be exported
    for name in ad.last_deferred:
        st = ad.state_of(name)
        assert st is not None and st.provisional and st.model == "SeasonalNaive"
        assert any("interim fit" in n for n in out[name].notes)
    assert not ad.state_of(ad.last_refits[0]).provisional  # type: ignore[union-attr]
    waiting = list(ad.last_deferred)

    # the interim ones are first in line for the next calls' budget, and keep forecasting meanwhile
    ad.forecast(at(8 * day + 1), 3600)
    assert ad.last_refits[0] in waiting and len(ad.last_deferred) == 1
    assert ad.last_changed == ad.last_refits  # the deferred one kept (and updated from) its interim state
    ad.forecast(at(8 * day + 2), 3600)
    assert all(not ad.state_of(n).provisional for n in series)  # type: ignore[union-attr]

    other = StatsForecastAdapter()
    partial = StatsForecastAdapter(max_refits=0)
    partial.forecast(at(8 * day), 3600)
    other.import_state(partial.export_state())
    assert all(other.state_of(n).provisional for n in series)  # type: ignore[union-attr]
