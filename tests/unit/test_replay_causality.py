"""Given a trace and the same trace cut at time T, when both are replayed, then every decision
made before T is identical: no policy can see the future."""

from __future__ import annotations

import itertools

import pytest

from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.replay.engine import ReplayConfig, replay
from forescale.replay.workload import generate


class EchoForecaster:
    """A deterministic forecaster: tomorrow repeats the last day seen (seasonal naive), as plain data.

    Fast and deterministic, so the test checks the engine's causality, not statsforecast.
    """

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.by_target: dict[str, list[int]] = {}

    def forecast(self, histories: list[SeriesHistory], horizon_s: int) -> dict[str, Forecast]:
        out = {}
        for h in histories:
            self.calls.append(h.end)
            self.by_target.setdefault(h.target, []).append(h.end)
            day = 86_400 // h.step_s
            last = [r if r is not None else 0.0 for r in h.rates[-day:]]
            n = -(-horizon_s // h.step_s)
            path = tuple(last[i % len(last)] for i in range(n))
            out[h.target] = Forecast(h.target, h.end, h.end, h.step_s, {0.5: path, 0.9: path}, "echo")
        return out


@pytest.mark.parametrize("policy", ["predictive", "reactive", "target-tracking", "seasonal-naive", "static"])
def test_given_a_cut_trace_when_replayed_then_decisions_before_the_cut_are_identical(policy: str) -> None:
    trace = generate(days=2.5, step_s=60, seed=3)
    cut = trace.start + int(1.7 * 86_400)
    full = replay(trace, ReplayConfig(policy=policy, forecaster=EchoForecaster()))
    short = replay(trace.truncated(cut), ReplayConfig(policy=policy, forecaster=EchoForecaster()))
    before_full = [r for r in full.rows if r.decided_at < cut]
    before_short = [r for r in short.rows if r.decided_at < cut]
    assert before_full, "the policy made no decision before the cut; the test would prove nothing"
    assert before_full == before_short


def test_given_three_days_when_replaying_predictive_then_it_refits_daily_after_one_day_of_history() -> None:
    trace = generate(days=3, step_s=300, seed=5)
    fc = EchoForecaster()
    replay(trace, ReplayConfig(policy="predictive", forecaster=fc))
    ends = sorted(set(fc.calls))
    assert ends, "the forecaster was never called"
    assert ends[0] == trace.start + 86_400  # not before a day of history
    # Drift refits are per target and at most hourly for each.
    for target_ends in fc.by_target.values():
        assert all(b - a >= 3600 for a, b in itertools.pairwise(target_ends))
    # Every target is refitted at least daily.
    assert all(len(e) >= 2 for e in fc.by_target.values())
    assert all(end < trace.end for end in ends)
