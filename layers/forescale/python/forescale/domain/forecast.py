"""Forecast types shared by the forecasting adapter, the planner and the stored records.

A forecast is a set of quantile paths of request rate (requests/s) on a fixed grid. It is plain
data: no DataFrame ever leaves the forecasting adapter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Forecast:
    """Quantile paths of request rate for one target.

    `start` is the epoch second of the first value's step, `step_s` the grid, and `quantiles`
    maps a probability (0.5 for the median) to one rate per step. `issued_at` is the end of the
    data the model saw: nothing at or after it was used.
    """

    target: str
    issued_at: int
    start: int
    step_s: int
    quantiles: Mapping[float, tuple[float, ...]]
    model: str
    mase: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.step_s <= 0:
            raise ValueError(f"forecast for {self.target}: step_s must be > 0")
        if 0.5 not in self.quantiles:
            raise ValueError(f"forecast for {self.target}: the median (0.5) is required")
        lengths = {len(v) for v in self.quantiles.values()}
        if len(lengths) != 1:
            raise ValueError(f"forecast for {self.target}: quantile paths differ in length {sorted(lengths)}")
        if any(v < 0 or not math.isfinite(v) for path in self.quantiles.values() for v in path):
            raise ValueError(f"forecast for {self.target}: rates must be finite and >= 0")

    @property
    def horizon_steps(self) -> int:
        return len(self.quantiles[0.5])

    @property
    def end(self) -> int:
        """Epoch second just after the last forecast step."""
        return self.start + self.horizon_steps * self.step_s

    def covers(self, ts: int) -> bool:
        return self.start <= ts < self.end

    def rate_at(self, ts: int, q: float = 0.5) -> float | None:
        """The forecast rate for the step containing `ts`, or None outside the horizon."""
        if not self.covers(ts):
            return None
        path = self.quantiles.get(q)
        if path is None:
            raise KeyError(f"forecast for {self.target} has no quantile {q}; it has {sorted(self.quantiles)}")
        return path[(ts - self.start) // self.step_s]


UPPER_BAND_QUANTILE = 0.99


def upper_band(forecast: Forecast, ts: int) -> float | None:
    """The forecast's upper rate (requests/s) at `ts`: quantile 0.99 if present, else the highest.

    Demand above it is a surprise: collect announces it (DemandAboveForecast) and react scales out.
    """
    q = UPPER_BAND_QUANTILE if UPPER_BAND_QUANTILE in forecast.quantiles else max(forecast.quantiles)
    return forecast.rate_at(ts, q)


@dataclass(frozen=True, slots=True)
class SeriesHistory:
    """Observed request rates for one target on a fixed grid; None marks a missing sample."""

    target: str
    start: int
    step_s: int
    rates: Sequence[float | None]

    @property
    def end(self) -> int:
        return self.start + len(self.rates) * self.step_s


class Forecaster(Protocol):
    """Anything that turns histories into forecasts (the statsforecast adapter, or a test fake)."""

    def forecast(self, histories: Sequence[SeriesHistory], horizon_s: int) -> dict[str, Forecast]:
        """One forecast per history that has enough data, covering at least `horizon_s`."""
        ...
