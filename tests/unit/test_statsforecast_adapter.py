"""The statsforecast adapter: lazy imports, shape tracking, gaps, short histories, grid and caching.

Series are synthetic and seeded; the true curve is known, so accuracy is checked against it rather
than against the adapter's own output.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.forecasting.model_choice import batch_forecast
from forescale.forecasting.preparation import Prepared
from forescale.forecasting.statsforecast_adapter import INTERMITTENT, StatsForecastAdapter

DAY = 86_400
STEP = 600
T0 = 1_700_006_400  # a UTC midnight, so "hour of day" in the tests is the real one


def true_rate(ts: np.ndarray) -> np.ndarray:
    return 50.0 + 40.0 * np.sin(2 * np.pi * (ts % DAY) / DAY)


def daily(days: float, step: int = STEP, seed: int = 0, start: int = T0) -> tuple[np.ndarray, list[float | None]]:
    n = int(days * DAY) // step
    ts = start + np.arange(n) * step
    noise = np.random.default_rng(seed).normal(0.0, 2.0, n)
    return ts, [float(v) for v in true_rate(ts) + noise]


def assert_ordered(fc: Forecast) -> None:
    qs = sorted(fc.quantiles)
    paths = np.array([fc.quantiles[q] for q in qs])
    assert np.all(np.diff(paths, axis=0) >= 0), "quantile paths cross"
    assert np.all(paths >= 0)


@pytest.fixture(scope="module")
def seasonal() -> tuple[SeriesHistory, Forecast]:
    _, rates = daily(10)
    history = SeriesHistory("web", T0, STEP, rates)
    return history, StatsForecastAdapter().forecast([history], DAY)["web"]


def test_import_does_not_load_the_heavy_stack() -> None:
    code = (
        "import sys, forescale.forecasting.statsforecast_adapter\n"
        "print(sorted(m for m in ('pandas', 'statsforecast', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_daily_shape_is_tracked(seasonal: tuple[SeriesHistory, Forecast]) -> None:
    _, fc = seasonal
    ts = fc.start + np.arange(fc.horizon_steps) * fc.step_s
    truth = true_rate(ts)
    median = np.array(fc.quantiles[0.5])
    assert np.mean(np.abs(median - truth) / truth) < 0.15
    assert_ordered(fc)
    assert np.all(np.array(fc.quantiles[0.9]) >= median)
    assert np.any(np.array(fc.quantiles[0.9]) > median)  # some spread, not collapsed
    assert fc.mase is not None and fc.mase < 1.5
    assert fc.model in {"SeasonalNaive", "AutoETS", "MSTL"}


def test_grid_starts_at_history_end_on_its_step(seasonal: tuple[SeriesHistory, Forecast]) -> None:
    history, fc = seasonal
    assert fc.start == history.end == fc.issued_at
    assert fc.step_s == history.step_s
    assert fc.horizon_steps == DAY // STEP
    assert set(fc.quantiles) == {0.01, 0.05, 0.1, 0.5, 0.9, 0.92, 0.95, 0.99}
    assert all(isinstance(v, float) for v in fc.quantiles[0.5])


def test_horizon_not_a_multiple_of_the_step_rounds_up(seasonal: tuple[SeriesHistory, Forecast]) -> None:
    history, _ = seasonal
    fc = StatsForecastAdapter().forecast([history], DAY + 1)["web"]
    assert fc.horizon_steps == DAY // STEP + 1
    assert fc.end >= history.end + DAY + 1


def test_sparse_series_gets_an_intermittent_model() -> None:
    rng = np.random.default_rng(3)
    n = 14 * DAY // STEP
    rates = np.where(rng.random(n) < 0.05, rng.exponential(5.0, n), 0.0)
    history = SeriesHistory("cron", T0, STEP, [float(v) for v in rates])
    fc = StatsForecastAdapter().forecast([history], DAY)["cron"]
    assert fc.model in INTERMITTENT
    assert_ordered(fc)
    assert max(fc.quantiles[0.99]) > 0


def test_no_data_is_omitted_and_short_or_zero_histories_get_flagged_fallbacks(
    seasonal: tuple[SeriesHistory, Forecast],
) -> None:
    good, _ = seasonal
    _, rates = daily(0.9)
    histories = [
        good,
        SeriesHistory("short", T0, STEP, rates),
        SeriesHistory("empty", T0, STEP, [None] * (3 * DAY // STEP)),
        SeriesHistory("zero", T0, STEP, [0.0] * (3 * DAY // STEP)),
        SeriesHistory("nothing", T0, STEP, []),
        # ten days on the grid, but only the last 20 hours observed
        SeriesHistory("late", T0, STEP, [None] * (9 * DAY // STEP) + rates[-120:] + [None] * 24),
    ]
    out = StatsForecastAdapter().forecast(histories, DAY)
    assert set(out) == {"web", "short", "zero", "late"}  # missing everywhere is not zero demand: no forecast
    assert out["zero"].model == "Zero" and max(out["zero"].quantiles[0.99]) == 0.0
    for name in ("short", "late"):
        assert out[name].model == "Fallback"
        assert any(n.startswith("fallback:") for n in out[name].notes)
        assert_ordered(out[name])


@pytest.mark.parametrize("gap_day", [5, 9], ids=["mid-history", "last-day"])
def test_none_gap_is_not_zero_demand(gap_day: int) -> None:
    ts, rates = daily(10, seed=1)
    hours = (ts - T0) % DAY // 3600
    in_gap = ((ts - T0) // DAY == gap_day) & (hours >= 5) & (hours < 7)  # around the daily peak
    gapped: list[float | None] = [None if g else r for g, r in zip(in_gap, rates, strict=True)]
    fc = StatsForecastAdapter().forecast([SeriesHistory("gappy", T0, STEP, gapped)], DAY)["gappy"]
    fts = fc.start + np.arange(fc.horizon_steps) * fc.step_s
    same_hours = ((fts - T0) % DAY // 3600 >= 5) & ((fts - T0) % DAY // 3600 < 7)
    median = np.array(fc.quantiles[0.5])[same_hours]
    assert np.all(median > 0.85 * true_rate(fts[same_hours]))
    assert_ordered(fc)


def test_trailing_gap_still_forecasts() -> None:
    _, rates = daily(4, seed=2)
    gapped: list[float | None] = [*rates[:-18], *([None] * 18)]  # last 3 h missing
    fc = StatsForecastAdapter().forecast([SeriesHistory("tail", T0, STEP, gapped)], DAY)["tail"]
    fts = fc.start + np.arange(fc.horizon_steps) * fc.step_s
    median = np.array(fc.quantiles[0.5])
    assert np.mean(np.abs(median - true_rate(fts)) / true_rate(fts)) < 0.15


def test_intra_bucket_profile_reaches_the_raw_grid() -> None:
    step = 60
    n = 4 * DAY // step
    ts = T0 + np.arange(n) * step
    minute = (ts % 3600) // 60
    rates = np.where(minute < 10, 20.0, 8.0) + np.random.default_rng(4).normal(0, 0.5, n)
    history = SeriesHistory("burst", T0, step, [float(v) for v in rates])
    fc = StatsForecastAdapter().forecast([history], 6 * 3600)["burst"]
    fts = fc.start + np.arange(fc.horizon_steps) * step
    median = np.array(fc.quantiles[0.5])
    early = median[(fts % 3600) // 60 < 10].mean()
    late = median[(fts % 3600) // 60 >= 10].mean()
    assert early / late == pytest.approx(20 / 8, rel=0.1)


def test_selection_is_cached_until_due_or_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    from statsforecast import StatsForecast

    calls: list[int] = []
    real = StatsForecast.forecast

    def counting(self: StatsForecast, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(StatsForecast, "forecast", counting)
    ad = StatsForecastAdapter(reselect_every_s=2 * DAY)
    _, rates = daily(8, seed=5)

    def upto(day: int) -> list[SeriesHistory]:
        n = day * DAY // STEP
        return [SeriesHistory(f"t{i}", T0, STEP, [r + i for r in rates[:n]]) for i in range(3)]

    ad.forecast(upto(6), DAY)
    first = {t: s.at for t, s in ad._selections.items()}
    assert set(ad._selected) == {"t0", "t1", "t2"}
    assert len(calls) == len(set(ad._selected.values())), "one batched call per distinct model"

    ad.forecast(upto(7), DAY)
    assert {t: s.at for t, s in ad._selections.items()} == first
    ad.forecast(upto(7), DAY, reselect={"t1"})
    assert ad._selections["t1"].at == first["t1"] + DAY
    assert ad._selections["t0"].at == first["t0"]
    ad.forecast(upto(8), DAY)
    assert ad._selections["t0"].at == first["t0"] + 2 * DAY


@pytest.mark.parametrize(
    ("history", "horizon_s", "message"),
    [
        (SeriesHistory("bad-step", T0, 0, [1.0]), DAY, "bad-step"),
        (SeriesHistory("neg-step", T0, -60, [1.0]), DAY, "neg-step"),
        (SeriesHistory("ok", T0, 60, [1.0]), 0, "horizon_s"),
    ],
)
def test_invalid_input_is_rejected(history: SeriesHistory, horizon_s: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StatsForecastAdapter().forecast([history], horizon_s)


def test_rates_are_finite_floats_even_for_a_flat_series() -> None:
    history = SeriesHistory("flat", T0, STEP, [5.0] * (4 * DAY // STEP))
    fc = StatsForecastAdapter().forecast([history], DAY)["flat"]
    assert all(math.isfinite(v) for path in fc.quantiles.values() for v in path)
    assert fc.quantiles[0.5][0] == pytest.approx(5.0, rel=1e-6)


def test_only_the_last_max_history_days_are_used() -> None:
    _, rates = daily(7, seed=6)
    quiet: list[float | None] = [None] * (28 * DAY // STEP)
    history = SeriesHistory("old", T0, STEP, [*rates, *quiet])  # data only before the 28-day window
    assert StatsForecastAdapter(max_history_days=28).forecast([history], DAY) == {}
    assert "old" in StatsForecastAdapter(max_history_days=35).forecast([history], DAY)


def test_a_failing_model_batch_falls_back_to_seasonal_naive(
    seasonal: tuple[SeriesHistory, Forecast], monkeypatch: pytest.MonkeyPatch
) -> None:
    history, _ = seasonal

    def flaky(key: tuple[str, int, bool, str | None], members: list[Prepared]) -> dict[str, np.ndarray]:
        if key[0] != "SeasonalNaive":
            raise RuntimeError("boom")
        return batch_forecast(key, members)

    # patched where the adapter looks it up
    monkeypatch.setattr("forescale.forecasting.statsforecast_adapter.batch_forecast", flaky)
    fc = StatsForecastAdapter().forecast([history], DAY)["web"]
    assert fc.model == "SeasonalNaive"
    assert fc.mase is None  # the selection's MASE belongs to the model that failed
    assert any("boom" in n for n in fc.notes)
    assert_ordered(fc)
