"""Model choice: which statsforecast model each target uses, and the batched statsforecast calls.

Candidates per target, rolling-origin selection by MASE, AutoETS's component search, and the one
batched `StatsForecast` call per distinct model that fits the chosen model. The only module that
builds pandas frames; statsforecast and pandas load on first use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forescale.forecasting.preparation import Prepared

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from forescale.forecasting.preparation import Array, Mask

ETS_MAX_SEASON = 24  # statsforecast's ETS silently drops a longer season
ETS_MAX_DAYS = 14  # ETS cost grows with length; two weeks hold the daily shape
CV_ORIGINS = 3  # rolling-origin windows at model selection (and for calibration)
PATH_SEASONS = 2  # the stored bucket path covers two days; beyond it the last day repeats

SEASONAL_NAIVE = "SeasonalNaive"
HISTORIC_AVERAGE = "HistoricAverage"
AUTO_ETS = "AutoETS"
MSTL = "MSTL"
CROSTON = "CrostonOptimized"
ADIDA = "ADIDA"
IMAPA = "IMAPA"
INTERMITTENT: tuple[str, ...] = (CROSTON, ADIDA, IMAPA)
_FORWARD_CV = frozenset({AUTO_ETS, MSTL})  # costly fits: fit at the first origin, then `forward`


@dataclass(frozen=True, slots=True)
class Selection:
    """A target's model choice: the winner, its MASE and every candidate's score (`scores`)."""

    model: str
    season: int
    at: int  # history.end when selected (data time, so replays behave like production)
    mase: float
    ets_form: str | None  # AutoETS components chosen at selection, e.g. "MAMN"; refitted daily
    scores: dict[str, float]


# (bucket index, actual, forecast) of rolling-origin windows, as statsforecast returns them
CV = tuple["npt.NDArray[np.int64]", "Array", "Array"]


def select_models(due: list[Prepared]) -> tuple[dict[str, Selection], dict[str, tuple[str, CV, int]]]:
    """Choose each target's model by rolling-origin MASE; returns the choices and the winners' windows
    for calibration (targets that could not be scored have neither)."""
    import numpy as np

    jobs: dict[tuple[str, int, bool, int], list[Prepared]] = {}
    origins: dict[str, int] = {}
    for p in due:
        n_orig = min(CV_ORIGINS, p.n // p.season - 2)  # keep two seasons to train at the first origin
        if n_orig < 1:
            continue
        origins[p.target] = n_orig
        for name in _candidates(p):
            weekly = p.weekly if name == MSTL else False
            jobs.setdefault((name, p.season, weekly, n_orig), []).append(p)

    cv: dict[str, dict[str, CV]] = {p.target: {} for p in due}
    for (name, season, weekly, n_orig), members in jobs.items():
        try:
            scored = cross_validate(name, season, weekly, n_orig, members)
        except Exception as exc:  # a candidate that cannot be evaluated just does not compete
            for p in members:
                p.notes.append(f"{name} not evaluated ({type(exc).__name__}: {exc})")
            continue
        for target, triple in scored.items():
            cv[target][name] = triple

    ets_winners: list[Prepared] = []
    chosen: dict[str, tuple[str, float, dict[str, float]]] = {}
    for p in due:
        if p.target not in origins or not cv[p.target]:
            continue
        train_n = p.n - origins[p.target] * p.season
        scale = _mase_scale(p.y[:train_n], p.observed[:train_n], p.season)
        scores: dict[str, float] = {}
        for name in _candidates(p):
            if name not in cv[p.target]:
                continue
            ds, actual, fc = cv[p.target][name]
            use = p.observed[ds]
            err = np.abs(actual - np.clip(fc, 0.0, None))[use]
            score = float(np.mean(err)) / scale if err.size else math.nan
            scores[name] = score if math.isfinite(score) else math.inf
        finite = {n: s for n, s in scores.items() if math.isfinite(s)}
        if not finite:
            continue
        best = min(finite, key=finite.__getitem__)  # dict order = candidate order: ties go simpler
        chosen[p.target] = (best, finite[best], scores)
        if best == AUTO_ETS:
            ets_winners.append(p)

    forms = _ets_forms(ets_winners)
    selections: dict[str, Selection] = {}
    windows: dict[str, tuple[str, CV, int]] = {}
    for p in due:
        if p.target not in chosen:
            p.notes.append("no model selection this call (under three seasons, or no candidate scored)")
            continue
        best, mase, scores = chosen[p.target]
        selections[p.target] = Selection(
            model=best,
            season=p.season,
            at=p.history.end,
            mase=mase,
            ets_form=forms.get(p.target),
            scores=scores,
        )
        windows[p.target] = (best, cv[p.target][best], origins[p.target])
        ranked = ", ".join(f"{n} {s:.3g}" for n, s in sorted(scores.items(), key=lambda kv: kv[1]))
        p.notes.append(f"selected at {p.history.end} by rolling-origin MASE: {ranked}")
    return selections, windows


def cross_validate(
    name: str, season: int, weekly: bool, n_orig: int, members: list[Prepared], form: str | None = None
) -> dict[str, CV]:
    from statsforecast import StatsForecast
    from statsforecast.models import HistoricAverage, Naive

    forward = name in _FORWARD_CV
    sf = StatsForecast(
        models=[_build(name, season, weekly, form)],
        freq=1,
        n_jobs=1,
        # refit=False needs a fallback with `forward`; HistoricAverage has none
        fallback_model=Naive() if forward else HistoricAverage(),
    )
    cv = sf.cross_validation(
        df=_frame(members),
        h=season,
        n_windows=n_orig,
        step_size=season,
        input_size=ETS_MAX_DAYS * season if name == AUTO_ETS else None,
        refit=not forward,
    )
    result: dict[str, CV] = {}
    for uid, g in cv.groupby("unique_id", sort=False):
        result[str(uid)] = (
            g["ds"].to_numpy(dtype="int64"),
            g["y"].to_numpy(dtype="float64"),
            g[name].to_numpy(dtype="float64"),
        )
    return result


def _ets_forms(winners: list[Prepared]) -> dict[str, str]:
    """The ETS components AutoETS picks now, so that daily refits skip the 'ZZZ' search (~4x faster)."""
    if not winners:
        return {}
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, HistoricAverage

    forms: dict[str, str] = {}
    by_season: dict[int, list[Prepared]] = {}
    for p in winners:
        by_season.setdefault(p.season, []).append(p)
    for season, members in by_season.items():
        sf = StatsForecast(models=[_build(AUTO_ETS, season, False)], freq=1, n_jobs=1, fallback_model=HistoricAverage())
        sf.fit(df=_frame(members, tail=ETS_MAX_DAYS * season))
        for uid, fitted in zip(sf.uids, sf.fitted_[:, 0], strict=True):
            model_ = getattr(fitted, "model_", None)
            if isinstance(fitted, AutoETS) and isinstance(model_, dict) and "components" in model_:
                forms[str(uid)] = str(model_["components"])
    return forms


def model_key(p: Prepared, sel: Selection | None) -> tuple[str, int, bool, str | None]:
    """The (model, season, weekly, ETS form) a refit of `p` uses, given its model choice `sel`."""
    if sel is None or sel.season != p.season:
        # unselected (short history)
        return (HISTORIC_AVERAGE if p.intermittent else SEASONAL_NAIVE, p.season, False, None)
    form = sel.ets_form if sel.model == AUTO_ETS else None
    if form is not None and "M" in form[:3] and float(p.y.min()) <= 0:
        form = None  # multiplicative forms fail on zeros: search again
    return (sel.model, p.season, p.weekly if sel.model == MSTL else False, form)


def batch_forecast(key: tuple[str, int, bool, str | None], members: list[Prepared]) -> dict[str, Array]:
    """The bucket path (mean rate per bucket) for `PATH_SEASONS` days, one batched call per model."""
    import numpy as np
    from statsforecast import StatsForecast
    from statsforecast.models import HistoricAverage

    name, season, weekly, form = key
    sf = StatsForecast(models=[_build(name, season, weekly, form)], freq=1, n_jobs=1, fallback_model=HistoricAverage())
    tail = ETS_MAX_DAYS * season if name == AUTO_ETS else None
    fc = sf.forecast(df=_frame(members, tail=tail), h=PATH_SEASONS * season)
    result: dict[str, Array] = {}
    for uid, unsorted in fc.groupby("unique_id", sort=False):
        result[str(uid)] = unsorted.sort_values("ds")[name].to_numpy(dtype=np.float64)
    return result


def _candidates(p: Prepared) -> list[str]:
    if p.intermittent:
        return list(INTERMITTENT)
    names = [SEASONAL_NAIVE]
    if p.season <= ETS_MAX_SEASON:
        names.append(AUTO_ETS)
    if p.season >= 2:
        names.append(MSTL)
    if p.sparse:
        names.extend(INTERMITTENT)
    return names


def _build(name: str, season: int, weekly: bool, form: str | None = None) -> Any:
    from statsforecast import models as sm

    if name == SEASONAL_NAIVE:
        return sm.SeasonalNaive(season_length=season, alias=name)
    if name == AUTO_ETS:
        if form is None:
            return sm.AutoETS(season_length=season, model="ZZZ", alias=name)
        # A trend is always damped when refitted: an undamped one extrapolates a straight line for the
        # two days the path covers (seen on servegen's endpoint: +70 % in 12 h).
        return sm.AutoETS(season_length=season, model=form[:3], damped=form[1] != "N", alias=name)
    if name == MSTL:
        seasons = [season, 7 * season] if weekly else [season]
        return sm.MSTL(season_length=seasons, trend_forecaster=sm.AutoETS(model="ZZN", damped=True), alias=name)
    if name == HISTORIC_AVERAGE:
        return sm.HistoricAverage(alias=name)
    if name == CROSTON:
        return sm.CrostonOptimized(alias=name)
    if name == ADIDA:
        return sm.ADIDA(alias=name)
    if name == IMAPA:
        return sm.IMAPA(alias=name)
    raise ValueError(f"unknown model {name!r}")


def _frame(members: list[Prepared], tail: int | None = None) -> Any:
    """The long frame statsforecast wants; `ds` is the bucket index (freq=1)."""
    import numpy as np
    import pandas as pd

    ys = [p.y[-tail:] if tail else p.y for p in members]
    return pd.DataFrame(
        {
            "unique_id": np.repeat([p.target for p in members], [len(y) for y in ys]),
            "ds": np.concatenate([np.arange(len(y), dtype=np.int64) for y in ys]),
            "y": np.concatenate(ys),
        }
    )


def _mase_scale(y: Array, observed: Mask, season: int) -> float:
    """In-sample seasonal-naive MAE on observed pairs; the mean level, or 1, when that is zero."""
    import numpy as np

    if len(y) > season:
        both = observed[season:] & observed[:-season]
        diffs = np.abs(y[season:] - y[:-season])[both]
        if diffs.size and float(diffs.mean()) > 1e-12:
            return float(diffs.mean())
    level = float(np.mean(np.abs(y[observed]))) if observed.any() else 0.0
    return level if level > 1e-12 else 1.0
