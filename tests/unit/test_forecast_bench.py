"""`forescale bench forecast` on a tiny fleet, and its scorer against known answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from forescale.cli import main
from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.forecasting.bench import evaluate

DAY = 86_400
STEP = 600
T0 = 1_700_006_400


class Oracle:
    """Knows the future: forecasts the actual rates (every quantile), so scores are exact."""

    def __init__(self, names: list[str], rates: np.ndarray) -> None:
        self.rows = dict(zip(names, rates, strict=True))

    def forecast(self, histories: Sequence[SeriesHistory], horizon_s: int) -> dict[str, Forecast]:
        out = {}
        for h in histories:
            i = (h.end - T0) // STEP
            path = tuple(float(v) for v in np.nan_to_num(self.rows[h.target][i : i + horizon_s // STEP]))
            out[h.target] = Forecast(
                h.target, h.end, h.end, STEP, dict.fromkeys((0.5, 0.9, 0.92, 0.99), path), "oracle"
            )
        return out


def test_given_an_oracle_when_scored_then_mase_is_zero_and_the_naive_baseline_is_the_day_before() -> None:
    n = 9 * DAY // STEP
    ts = T0 + np.arange(n) * STEP
    rng = np.random.default_rng(1)
    rates = np.stack([10 + 5 * np.sin(2 * np.pi * ts / DAY) + rng.normal(0, 1, n) for _ in range(2)])
    ev = evaluate("oracle", ["a", "b"], rates, STEP, T0, adapter=Oracle(["a", "b"], rates), horizon_s=3600)
    s = ev.summary()
    assert s["mase"] == 0.0 and s["coverage_p99"] == 1.0 and s["pinball_092_scaled"] == 0.0
    assert s["improvement_pct"] == 100.0
    # SeasonalNaive (season = a day of steps): its error is |y[t] - y[t - day]|, scaled by the same in warm-up
    day = DAY // STEP
    warm = 7 * day
    scored = rates[0, warm : n - 6 + 6]
    naive = rates[0, warm - day : n - day]
    scale = np.mean(np.abs(rates[0, day:warm] - rates[0, : warm - day]))
    sc = ev.per_target["a"]
    assert sc.naive_points == ev.origins * 6
    # every origin scores 6 steps ahead; the mean over those equals the plain mean up to edge weights
    assert sc.mase_naive == pytest.approx(np.mean(np.abs(scored - naive)) / scale, rel=0.05)


def test_seasonal_naive_baseline_is_statsforecasts_seasonal_naive() -> None:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    day = DAY // STEP
    y = np.random.default_rng(2).random(3 * day)
    sf = StatsForecast(models=[SeasonalNaive(season_length=day)], freq=1)
    fc = sf.forecast(df=pd.DataFrame({"unique_id": "a", "ds": np.arange(len(y)), "y": y}), h=6)
    np.testing.assert_allclose(fc["SeasonalNaive"].to_numpy(), y[len(y) - day : len(y) - day + 6])


def test_given_no_shared_traces_when_bench_forecast_runs_on_a_tiny_fleet_then_it_writes_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    md, js = tmp_path / "fb.md", tmp_path / "fb.json"
    argv = ["bench", "forecast", "--traces", str(tmp_path / "absent"), "--targets", "6", "--refit-sample", "3"]
    argv += ["--accuracy-targets", "3", "--score-days", "0.25", "--no-cold-start", "--out", str(md), "--json", str(js)]
    assert main(argv) == 0
    raw = json.loads(js.read_text())
    assert raw["traces_dir"] is None and len(raw["accuracy"]) == 1
    fleet = raw["accuracy"][0]
    assert fleet["targets"] >= 2 and fleet["points"] > 0 and 0 <= fleet["coverage_p99"] <= 1
    cycle = raw["cycle"]
    assert cycle["targets"] == cycle["forecasts"] == 6 and cycle["refitted_in_cycle"] == 0
    assert cycle["peak_rss_mb"] > 0 and cycle["refit_per_target_s"] > 0
    assert raw["cold_start"] is None and raw["shard"]["targets"] > 0 and raw["shard"]["max_refits"] > 0
    text = md.read_text()
    assert "generated fleet (3 targets)" in text and "No shared traces found" in text
    assert "targets per invocation" in text
    assert "| series |" in capsys.readouterr().out


@pytest.mark.parametrize("module", ["forescale.forecasting.fleet", "forescale.forecasting.bench"])
def test_given_a_fresh_interpreter_when_the_bench_modules_are_imported_then_the_heavy_stack_stays_unloaded(
    module: str,
) -> None:
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in ('numpy', 'pandas', 'statsforecast') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
