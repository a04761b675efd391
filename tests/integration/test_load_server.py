"""Load through ThreadedMotoServer: many targets through one full cycle (collect → plan → act, then act's
sweep), events delivered by 8 worker threads calling the real handlers, 10 % of them delivered twice
(concurrently with the original or after it). No action may be lost or duplicated.

The harness is `tests/integration/load_harness.py`; `tests/bench/load_cycle.py` runs it at 1,000
targets and prints the numbers. 1,000 targets take about 15 minutes on moto's server here (a target
costs about 30 requests a cycle, and moto's DynamoDB Query scans the whole table, so each gets slower
as the table grows), so this test runs at the largest scale that stays within about a minute on a
2-core machine: 150 targets.
"""

from __future__ import annotations

import pytest

from forescale.runtime.models import DecisionRecord, DecisionStatus, Mode
from tests.integration.load_harness import (
    ApiCall,
    CallLog,
    DispatchStats,
    LoadOptions,
    LoadResult,
    report_lines,
    run_load,
    tally,
)

TARGETS = 150
WORKERS = 8
REDELIVER = 0.10
ACT_RATE_PER_S = 15


def check_no_loss_no_duplicate(r: LoadResult, targets: int) -> None:
    report = "\n".join(report_lines(r))
    # The run tested something: plan decided (nearly) every target, copies were delivered both ways.
    assert r.decisions_stored >= 0.95 * targets, report
    assert r.duplicates_delivered_concurrent > 0 and r.duplicates_delivered_after > 0, report
    assert r.delivered_by_function.get("act", 0) >= r.decisions_stored, report
    # Nothing lost: every decision plan reported is stored, and AWS holds every decided capacity.
    assert r.decisions_expected == r.decisions_stored, report
    assert not r.decisions_missing and not r.decisions_unexpected, report
    assert not r.lost, report
    assert r.status_final == {DecisionStatus.APPLIED.value: r.decisions_stored}, report
    assert r.dead_letters == 0, report
    # Nothing duplicated: one decision per target and step, at most one mutating call per decision.
    assert r.targets_with_more_than_one_decision == 0, report
    assert not r.duplicated and r.mutating_unattributed == 0, report
    assert r.mutating_calls <= r.decisions_stored, report
    # and act's Lambda limiter held its rate with 8 workers sharing it: the limiter act really used
    # granted the calls, and AWS saw no more than the rate in any fake second.
    assert r.limiter_grants >= r.mutating_attempts > 0, report
    assert r.max_mutating_any_fake_1s <= ACT_RATE_PER_S, report
    assert r.max_grants_any_fake_1s <= ACT_RATE_PER_S, report
    assert r.ok, report


@pytest.mark.slow
def test_given_many_targets_and_redelivered_events_when_a_cycle_runs_on_8_workers_then_nothing_is_lost_or_doubled() -> (
    None
):
    r = run_load(LoadOptions(targets=TARGETS, workers=WORKERS, redeliver=REDELIVER, seed=7))
    check_no_loss_no_duplicate(r, TARGETS)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Disabling idempotency:UserWarning")
def test_given_idempotency_off_when_events_are_redelivered_then_the_services_alone_keep_actions_single() -> None:
    # Without Powertools Idempotency every copy reaches collect, plan and act: plan's create-only
    # decisions and optimistic planner lock, and act's conditional claim, are what keep one decision and
    # one call per target. act's schedule also runs while the decisions are delivered, so sweeps and
    # events race for the same claims. Seed 2 redelivers collect's and act's schedule events concurrently.
    targets = 40
    r = run_load(
        LoadOptions(
            targets=targets,
            workers=WORKERS,
            redeliver=0.5,
            seed=2,
            idempotency=False,
            sweep_during_act=True,
        )
    )
    check_no_loss_no_duplicate(r, targets)
    assert r.delivered_by_function["collect"] == 2 and r.delivered_by_function["plan"] >= 2, report_lines(r)
    # The copies reached the services (no idempotency record stopped them) and act's claim turned them away.
    assert "IdempotencyAlreadyInProgressError" not in r.failed_attempts
    assert r.act_outcomes.get("skipped", 0) > 0, report_lines(r)


def _record(target: str, capacity: int) -> DecisionRecord:
    return DecisionRecord(
        decision_id=DecisionRecord.id_for(target, 60),
        target=target,
        decided_at=60,
        capacity=capacity,
        previous=0,
        recommended=capacity,
        policy="predictive",
        reason="test",
        demand_rps=1.0,
        mode=Mode.ACTIVE,
        status=DecisionStatus.APPLIED,
    )


def test_the_counters_see_a_lost_and_a_duplicated_action() -> None:
    # What makes the load tests able to fail: a capacity AWS does not hold is lost, two successful
    # mutating calls for one decision are a duplicate, a call for a target without a decision is noticed.
    log = CallLog(lambda: 0.0)
    put = "PutProvisionedConcurrencyConfig"
    log.calls = [
        ApiCall("lambda", put, "a", 202, 0.0, 0.0),
        ApiCall("lambda", put, "a", 202, 0.1, 0.1),
        ApiCall("lambda", put, "b", 202, 0.2, 0.2),
        ApiCall("lambda", put, "b", None, 0.3, 0.3),  # no answer: an attempt, not a call that landed
        ApiCall("lambda", "PutFunctionConcurrency", "stray", 200, 0.4, 0.4),
        ApiCall("lambda", "GetProvisionedConcurrencyConfig", "b", 200, 0.5, 0.5),
    ]
    decisions = {"a": [_record("a", 3)], "b": [_record("b", 4)]}
    r = LoadResult(options=LoadOptions(targets=2))
    tally(r, DispatchStats(), log, decisions, capacities={"a": 3, "b": 2})
    assert [x.split(":")[0] for x in r.duplicated] == ["a"]
    assert len(r.lost) == 1 and r.lost[0].startswith(DecisionRecord.id_for("b", 60))
    assert (r.mutating_calls, r.mutating_attempts, r.mutating_unattributed) == (4, 5, 1)
    assert not r.ok
