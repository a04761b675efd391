"""Hysteresis on SageMaker instance-type switches: a margin over the switch cost, confirmation on
consecutive evaluations, and a dwell time after a switch; the reason says which one held a switch."""

from __future__ import annotations

import pytest

from forescale.domain import snapshot
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import PredictiveParams, PredictivePolicy
from forescale.domain.rightsize import (
    RightsizeChoice,
    TypeSwitchRule,
    gate_type_switch,
    rightsize_choice,
)
from forescale.domain.sizing import Fleet, type_switch_pays
from forescale.domain.targets import InstanceType, Target, TargetKind

STEP = 60
HOUR = 3600
DAY = 86_400
G5, G4 = "ml.g5.xlarge", "ml.g4dn.xlarge"
GPU = Target(
    "gpu",
    TargetKind.SAGEMAKER_INSTANCE_TYPE,
    min_capacity=1,
    catalog=(InstanceType(G5, 1.4, 10.0), InstanceType(G4, 0.74, 4.0)),
)


def choice(pays: bool, best: str = G4, current: str = G5) -> RightsizeChoice:
    reason = "right-size: pays" if pays else ("right-size: staying on" if best != current else "right-size: cheapest")
    return RightsizeChoice(current, best, {G5: 1.4, G4: 0.74}, pays, reason)


NOW = 100 * HOUR


@pytest.mark.parametrize(
    ("pays", "best", "candidate", "streak", "last_switch_at", "rule", "expected", "reason"),
    [
        # Nothing to do: the current type is already the cheapest; nothing to say either.
        (False, G5, None, 0, None, TypeSwitchRule(), (False, None, 0), ""),
        # A cheaper type that does not pay (with the margin) resets the streak and says why.
        (False, G4, G4, 1, None, TypeSwitchRule(), (False, None, 0), "staying on"),
        # The first paying evaluation is held until the next one agrees.
        (True, G4, None, 0, None, TypeSwitchRule(), (False, G4, 1), "held: 1 of 2 consecutive evaluations agree"),
        # A streak for another type does not count.
        (True, G4, "ml.g6.xlarge", 1, None, TypeSwitchRule(), (False, G4, 1), "1 of 2 consecutive"),
        # Confirmed, never switched before: switch.
        (True, G4, G4, 1, None, TypeSwitchRule(), (True, G4, 2), "2 consecutive evaluations agree"),
        # Confirmed, but the last switch was 40 minutes ago: held by the dwell, keeping the streak.
        (True, G4, G4, 1, NOW - 40 * 60, TypeSwitchRule(), (False, G4, 2), "held: last switch 40 min ago, dwell 6 h"),
        (True, G4, G4, 3, NOW - 5 * HOUR, TypeSwitchRule(), (False, G4, 4), "last switch 5 h ago, dwell 6 h"),
        # The dwell is over (the boundary included): switch.
        (True, G4, G4, 1, NOW - 6 * HOUR, TypeSwitchRule(), (True, G4, 2), "right-size: pays"),
        # Hysteresis off: one evaluation and no dwell.
        (True, G4, None, 0, NOW, TypeSwitchRule(dwell_s=0, confirmations=1), (True, G4, 1), "right-size: pays"),
        (True, G4, None, 0, NOW - HOUR, TypeSwitchRule(dwell_s=2 * HOUR, confirmations=1), (False, G4, 1), "dwell 2 h"),
    ],
)
def test_gate_type_switch(pays, best, candidate, streak, last_switch_at, rule, expected, reason) -> None:
    gate = gate_type_switch(choice(pays, best), NOW, last_switch_at, candidate, streak, rule)
    assert (gate.switch, gate.candidate, gate.streak) == expected
    assert reason in gate.reason if reason else gate.reason == ""
    if rule.confirmations == 1:
        assert "consecutive" not in gate.reason


# 2 req/s all day: one g4dn ($0.74/h) against one g5 ($1.40/h) saves $0.66/h. The switch bills the
# g4dn fleet for the 600 s type change: $0.1233. Margin 1 needs a horizon over 673 s, margin 2 over 1345 s.
@pytest.mark.parametrize(
    ("horizon_s", "margin", "switch"),
    [
        (3600, 1.0, True),
        (3600, 2.0, True),
        (1000, 1.0, True),
        (1000, 2.0, False),
        (1400, 2.0, True),
        (600, 1.0, False),
    ],
)
def test_rightsize_choice_asks_the_saving_to_beat_margin_times_the_switch_cost(horizon_s, margin, switch) -> None:
    c = rightsize_choice(GPU, [2.0] * 10, G5, horizon_s, margin)
    assert (c.best, c.switch) == (G4, switch)
    assert c.switch_cost_usd == pytest.approx(0.74 * 600 / 3600)
    assert c.saving_usd == pytest.approx(0.66 * horizon_s / 3600)
    if margin == 1:  # margin 1 is exactly the sizing rule
        assert c.switch is type_switch_pays(Fleet(G5, 0, 1.4), Fleet(G4, 0, 0.74), horizon_s, 600)
    assert c.reason.startswith("right-size:") and ("staying on" in c.reason) is not switch


def test_bad_hysteresis_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="margin"):
        rightsize_choice(GPU, [2.0], G5, DAY, margin=0.5)
    with pytest.raises(ValueError, match="type_switch_margin"):
        PredictiveParams(type_switch_margin=float("nan"))
    with pytest.raises(ValueError, match="confirmations"):
        PredictiveParams(type_switch_confirmations=0)
    with pytest.raises(ValueError, match="dwell"):
        PredictiveParams(type_switch_dwell_s=-1)


def hourly_types(params: PredictiveParams, hours: int) -> list[tuple[str | None, str]]:
    """A day at 2 req/s (g4dn is cheaper), then hourly right-sizes; after the switch to g4dn, demand
    jumps to 100 req/s, where g5 is cheaper: (type switched to, reason) per hourly evaluation."""
    p = PredictivePolicy(GPU, STEP, params)
    now = DAY
    for i in range(DAY // STEP):
        p.observe(i * STEP, 2.0)
    itype, rate, out = G5, 2.0, []
    for _ in range(hours):
        rec = p.recommend(now, 1, 1, itype)
        out.append((rec.instance_type, rec.reason))
        if rec.instance_type:
            itype, rate = rec.instance_type, 100.0
        for _ in range(HOUR // STEP):
            p.observe(now, rate)
            now += STEP
    return out


def test_given_demand_flips_right_after_a_switch_then_the_switch_back_waits_for_the_dwell() -> None:
    runs = hourly_types(PredictiveParams(), 10)
    switches = [(h, t) for h, (t, _) in enumerate(runs) if t]
    # Evaluation 0 proposes g4dn, evaluation 1 confirms it. At 100 req/s, g5 pays again from the 4th hour
    # of the new day's path (4 of 24 hours at 100 req/s), is confirmed at the 5th, and waits out 6 h.
    assert switches == [(1, G4), (7, G5)]
    assert "last switch 5 h ago, dwell 6 h" in runs[6][1]
    # Without the dwell, the switch back comes as soon as it is confirmed.
    fast = hourly_types(PredictiveParams(type_switch_dwell_s=0), 10)
    assert [(h, t) for h, (t, _) in enumerate(fast) if t] == [(1, G4), (6, G5)]


def test_given_a_pending_confirmation_when_the_planner_is_snapshotted_then_the_streak_survives() -> None:
    def warmed() -> Planner:
        planner = Planner(GPU, PredictivePolicy(GPU, STEP))
        for i in range(DAY // STEP):
            planner.observe(i * STEP, 2.0)
        return planner

    a = warmed()
    first = a.decide(StepInput(now=DAY))
    assert not first.type_change and "1 of 2 consecutive evaluations agree" in first.reason
    b = snapshot.load(warmed(), snapshot.dump(a))
    assert (b.policy.type_candidate, b.policy.type_streak) == (G4, 1)  # type: ignore[attr-defined]
    for planner in (a, b):
        for i in range(HOUR // STEP):
            planner.observe(DAY + i * STEP, 2.0)
    da, db = a.decide(StepInput(now=DAY + HOUR)), b.decide(StepInput(now=DAY + HOUR))
    assert da.type_change and da.instance_type == G4
    assert (da.capacity, da.instance_type, da.reason) == (db.capacity, db.instance_type, db.reason)


def test_given_an_operator_changes_the_type_then_the_dwell_runs_from_when_it_was_seen() -> None:
    p = PredictivePolicy(GPU, STEP)
    for i in range(DAY // STEP):
        p.observe(i * STEP, 2.0)
    p.recommend(DAY - HOUR, 1, 1, G4)  # before the first right-size: the variant runs g4dn
    reasons = []
    for k in range(3):  # someone moved it to g5; g4dn is still cheaper
        rec = p.recommend(DAY + k * HOUR, 1, 1, G5)
        reasons.append(rec.reason)
        assert rec.instance_type is None
        for i in range(HOUR // STEP):
            p.observe(DAY + k * HOUR + i * STEP, 2.0)
    assert "1 of 2 consecutive" in reasons[0]
    assert "last switch 1 h ago, dwell 6 h" in reasons[1] and "last switch 2 h ago" in reasons[2]
