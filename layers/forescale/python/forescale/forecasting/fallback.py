"""Fallback: forecasts for targets no model can be fitted for yet, each flagged by its model name.

A target whose every observed rate is zero gets zeros ("Zero"); a new one with under a day of
observed history gets its recent level held flat, with bands from its own dispersion ("Fallback").
"""

from __future__ import annotations

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.forecasting.calibration import dispersion_errors
from forescale.forecasting.preparation import SHIFT_SHARE, as_array
from forescale.forecasting.state import QUANTILES

FALLBACK = "Fallback"
ZERO = "Zero"


def zero_forecast(h: SeriesHistory, horizon_s: int) -> Forecast:
    """Zero at every quantile for `horizon_s` seconds: every observed rate was zero (missing ones are ignored)."""
    steps = -(-horizon_s // h.step_s)
    zeros = (0.0,) * steps
    return Forecast(
        target=h.target,
        issued_at=h.end,
        start=h.end,
        step_s=h.step_s,
        quantiles=dict.fromkeys(QUANTILES, zeros),
        model=ZERO,
        notes=("model Zero", "fallback: every observed rate is zero; forecasting zero (missing samples ignored)"),
    )


def young_forecast(h: SeriesHistory, horizon_s: int, recent_s: int) -> Forecast | None:
    """A new target: the mean of its last `recent_s` held flat, bands from its own dispersion."""
    import numpy as np

    step = h.step_s
    raw = as_array(h.rates, len(h.rates))
    obs = ~np.isnan(raw)
    if not obs.any():
        return None
    recent = max(3, -(-recent_s // step))
    tail = raw[-recent:][obs[-recent:]]
    if tail.size == 0:  # the newest samples are all missing: use the newest observed ones
        tail = raw[obs][-recent:]
    level = float(tail.mean())
    shift = max(0.5 / step, SHIFT_SHARE * float(raw[obs].mean()))
    row = dispersion_errors(raw, shift, recent)[0]
    steps = -(-horizon_s // step)
    values = np.maximum((level + shift) * np.exp(row) - shift, 0.0)
    observed_h = obs.sum() * step / 3600
    return Forecast(
        target=h.target,
        issued_at=h.end,
        start=h.end,
        step_s=step,
        quantiles={q: (float(v),) * steps for q, v in zip(QUANTILES, np.sort(values), strict=True)},
        model=FALLBACK,
        notes=(
            "model Fallback",
            f"fallback: only {observed_h:.1f} h of observed history (a model needs a day); "
            "recent mean held flat, bands from the history's own dispersion",
        ),
    )
