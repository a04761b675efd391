"""One poisoned minute (issue 15, item 6) must not come back through the next day's forecast.

Given a per-minute series with a daily shape, and the same series with one minute of 1e12 req/s
yesterday, when the forecaster refits on each, then the next day's forecast of the poisoned one
stays within a small factor of the clean one: with a week of history (where the hourly outlier
clipping runs) and with a day and a half (where it cannot: under two seasons).
"""

from __future__ import annotations

import numpy as np
import pytest

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter

DAY = 86_400
STEP = 60
T0 = 1_700_006_400  # a UTC midnight
POISON = 1e12


def minutes(days: float, seed: int) -> np.ndarray:
    n = int(days * DAY) // STEP
    ts = T0 + np.arange(n) * STEP
    rate = 50.0 + 40.0 * np.sin(2 * np.pi * (ts % DAY) / DAY)
    return np.maximum(rate + np.random.default_rng(seed).normal(0.0, 4.0, n), 0.0)


def paths(fc: Forecast) -> np.ndarray:
    out = np.array([fc.quantiles[q] for q in sorted(fc.quantiles)])
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    return out


@pytest.mark.parametrize(("days", "poisoned_at_h"), [(7.0, 6.0), (1.5, 14.0)], ids=["a-week", "a-day-and-a-half"])
def test_given_one_poisoned_minute_yesterday_when_refitting_then_tomorrow_stays_close_to_the_clean_forecast(
    days: float, poisoned_at_h: float
) -> None:
    clean_rates = minutes(days, seed=3)
    poisoned = clean_rates.copy()
    poisoned[int((days - 1) * DAY + poisoned_at_h * 3600) // STEP] = POISON

    clean = StatsForecastAdapter().forecast([SeriesHistory("llm", T0, STEP, clean_rates.tolist())], DAY)["llm"]
    hit = StatsForecastAdapter().forecast([SeriesHistory("llm", T0, STEP, poisoned.tolist())], DAY)["llm"]

    c, h = paths(clean), paths(hit)
    qs = sorted(clean.quantiles)
    median, top = qs.index(0.5), len(qs) - 1
    assert np.max(h[median] / np.maximum(c[median], 1.0)) < 1.5
    assert np.max(h[top]) < 1.5 * np.max(c[top])
