"""The forecaster under bad data: one huge outlier, gaps, a brand-new target, an all-zero series.

Each must give a valid forecast or a flagged fallback, never NaN, and an anomaly must not come back
the next day. Series are synthetic and seeded, so the clean answer is known.
"""

from __future__ import annotations

import math
from array import array

import numpy as np
import pytest

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter

DAY = 86_400
STEP = 600
T0 = 1_700_006_400  # a UTC midnight


def daily(days: float, step: int = STEP, seed: int = 0) -> np.ndarray:
    n = int(days * DAY) // step
    ts = T0 + np.arange(n) * step
    rate = 50.0 + 40.0 * np.sin(2 * np.pi * (ts % DAY) / DAY)
    return rate + np.random.default_rng(seed).normal(0.0, 2.0, n)


def valid(fc: Forecast) -> np.ndarray:
    """The quantile paths as an array (quantiles × steps), after checking they are finite and ordered."""
    paths = np.array([fc.quantiles[q] for q in sorted(fc.quantiles)])
    assert np.all(np.isfinite(paths)) and np.all(paths >= 0)
    assert np.all(np.diff(paths, axis=0) >= 0), "quantile paths cross"
    return paths


@pytest.fixture(scope="module")
def clean_and_attacked() -> tuple[Forecast, Forecast]:
    rates = daily(10, seed=1)
    attacked = rates.copy()
    peak = 9 * DAY // STEP + 6 * 3600 // STEP  # yesterday 06:00, the daily peak
    attacked[peak : peak + 3] *= 50  # a 30-minute load test at 50x
    clean = StatsForecastAdapter().forecast([SeriesHistory("svc", T0, STEP, rates.tolist())], DAY)["svc"]
    hit = StatsForecastAdapter().forecast([SeriesHistory("svc", T0, STEP, attacked.tolist())], DAY)["svc"]
    return clean, hit


def test_given_a_load_test_yesterday_when_forecasting_today_then_it_does_not_come_back(
    clean_and_attacked: tuple[Forecast, Forecast],
) -> None:
    clean, hit = clean_and_attacked
    c, h = valid(clean), valid(hit)
    qs = sorted(clean.quantiles)
    median, p99 = qs.index(0.5), qs.index(0.99)
    # Unclipped, the hour of the test would repeat at ~25x (its bucket mean) under SeasonalNaive.
    assert np.max(h[median] / c[median]) < 1.5
    assert np.max(h[p99]) < 1.5 * np.max(c[p99])
    assert any("outlier buckets clipped" in n for n in hit.notes)


def test_given_one_huge_sample_in_the_recent_window_when_updating_then_the_level_moves_little() -> None:
    rates = daily(10, seed=2)
    ad = StatsForecastAdapter()
    ad.forecast([SeriesHistory("svc", T0, STEP, rates.tolist())], 3600)
    later = daily(10 + 1 / 24, seed=2)
    calm = ad.forecast([SeriesHistory("svc", T0, STEP, later.tolist())], 3600)["svc"]
    spiked = later.copy()
    spiked[-2] *= 100
    burst = ad.forecast([SeriesHistory("svc", T0, STEP, spiked.tolist())], 3600)["svc"]
    assert not ad.last_refits  # both were updates from the stored state
    ratio = np.array(burst.quantiles[0.5]) / np.array(calm.quantiles[0.5])
    assert 1.0 <= ratio.max() < 1.5  # it counts, bounded: 100x would otherwise lift the level ~33x


def test_given_a_lasting_level_change_when_updating_then_the_forecast_follows_it() -> None:
    rates = daily(10, seed=3)
    ad = StatsForecastAdapter()
    before = ad.forecast([SeriesHistory("svc", T0, STEP, rates.tolist())], 3600)["svc"]
    later = daily(10 + 2 / 24, seed=3)
    later[-12:] *= 2  # the last two hours at double the usual rate
    after = ad.forecast([SeriesHistory("svc", T0, STEP, later.tolist())], 3600)["svc"]
    assert not ad.last_refits
    expected = 2 * (50.0 + 40.0 * np.sin(2 * np.pi * ((after.start + np.arange(6) * STEP) % DAY) / DAY))
    assert np.mean(np.abs(np.array(after.quantiles[0.5]) - expected) / expected) < 0.15
    assert any("level × 2" in n or "level × 1.9" in n for n in after.notes), after.notes
    assert before.model == after.model


def test_given_gaps_as_none_or_nan_when_forecasting_then_both_give_the_same_finite_forecast() -> None:
    rates = daily(9, seed=4)
    gapped: list[float | None] = [float(v) for v in rates]
    for i in [*range(400, 430), *range(len(gapped) - 15, len(gapped))]:  # 5 h mid-history, 2.5 h at the end
        gapped[i] = None
    compact = array("d", [math.nan if v is None else v for v in gapped])
    a = StatsForecastAdapter().forecast([SeriesHistory("gap", T0, STEP, gapped)], DAY)["gap"]
    b = StatsForecastAdapter().forecast([SeriesHistory("gap", T0, STEP, compact)], DAY)["gap"]
    np.testing.assert_allclose(valid(a), valid(b))
    assert min(a.quantiles[0.5]) > 0  # missing is not zero demand
    assert any("not re-anchored" in n for n in a.notes)  # the last 30 minutes were all missing


@pytest.mark.parametrize("observed_h", [6, 0.05], ids=["six-hours", "three-samples"])
def test_given_a_brand_new_target_when_forecasting_then_a_flagged_flat_fallback(observed_h: float) -> None:
    step = 60
    n = round(observed_h * 3600 / step)
    rng = np.random.default_rng(5)
    rates = list(rng.poisson(600, n) / step)
    fc = StatsForecastAdapter().forecast([SeriesHistory("new", T0, step, rates)], 3600)["new"]
    paths = valid(fc)
    assert fc.model == "Fallback"
    assert any(n.startswith("fallback:") for n in fc.notes)
    assert fc.horizon_steps == 60
    assert fc.quantiles[0.5][0] == pytest.approx(np.mean(rates[-30:]), rel=0.05)  # the recent mean, held
    assert np.all(paths[-1] > paths[len(paths) // 2])  # p99 above the median: a band, not a point


def test_given_an_all_zero_series_when_forecasting_then_a_flagged_zero_forecast() -> None:
    history = SeriesHistory("idle", T0, STEP, [0.0] * (8 * DAY // STEP) + [None] * 10)
    fc = StatsForecastAdapter().forecast([history], 3600)["idle"]
    assert fc.model == "Zero"
    assert np.all(valid(fc) == 0.0)
    assert any("every observed rate is zero" in n for n in fc.notes)


def test_given_a_stationary_series_when_updating_every_hour_then_bands_hold_their_coverage() -> None:
    step = 300
    days = 12
    n = days * DAY // step
    ts = T0 + np.arange(n) * step
    rate = 20.0 * (1.2 + np.sin(2 * np.pi * (ts % DAY) / DAY))
    rates = np.random.default_rng(6).poisson(rate * step) / step
    ad = StatsForecastAdapter()
    under90 = under99 = total = 0
    for t in range(8 * DAY // step, n - 12, 3600 // step):
        fc = ad.forecast([SeriesHistory("steady", T0, step, rates[:t].tolist())], 3600)["steady"]
        actual = rates[t : t + 12]
        under90 += int(np.sum(actual <= np.array(fc.quantiles[0.9])))
        under99 += int(np.sum(actual <= np.array(fc.quantiles[0.99])))
        total += len(actual)
    assert 0.82 <= under90 / total <= 0.97
    assert under99 / total >= 0.96
