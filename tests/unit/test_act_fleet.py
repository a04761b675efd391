"""act at fleet scale and its blast radius, on the in-memory fakes: refused changes back off, the user's
Application Auto Scaling bounds are given back, the sweep works from the open-work index and a bounded
rotation rather than every target, a change costs few control-plane calls, and what one invocation
has no time for is left queued, nothing lost."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_socket import disable_socket, enable_socket

from forescale.adapters.autoscaling import ScalableTargetRef
from forescale.adapters.lambda_capacity import ProvisionedConfig
from forescale.adapters.state import InMemoryStateStore, StateStore
from forescale.domain.ratelimit import RejectedError
from forescale.runtime.act import ActOptions, ActService
from forescale.runtime.models import AppliedState, DecisionRecord, DecisionStatus, Mode
from forescale.runtime.observability import logger as forescale_logger
from tests.targets import pc_target as pc
from tests.unit.test_act_service import World

S = DecisionStatus
T0 = 1_700_000_000
FUTURE = T0 + 5 * 365 * 86_400


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    disable_socket()
    yield
    enable_socket()


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def logs() -> Iterator[Captured]:
    captured = Captured()
    base = logging.getLogger(forescale_logger.name)
    base.addHandler(captured)
    yield captured
    base.removeHandler(captured)


def world(options: ActOptions | None = None, store: InMemoryStateStore | None = None) -> World:
    w = World(store=store or InMemoryStateStore())
    if options is not None or store is not None:
        w.act = ActService(w.store, w.events, w.lam, w.sm, w.aas, options or ActOptions())
    return w


def puts(w: World) -> list[str]:
    return [c for c in w.lam.calls if c.startswith("set_provisioned")]


# ---------------------------------------------------------------- issue 15 item 8: a refused change backs off


def test_given_aws_refuses_every_decision_for_an_hour_then_act_backs_off_and_says_so_once(logs: Captured) -> None:
    # Given a target whose PutProvisionedConcurrencyConfig AWS refuses (AccessDenied), and plan
    # re-deciding it every 3 minutes for an hour, act sweeping every minute
    w = world()
    w.lam.add_function("orders")
    w.target(pc())
    for _ in range(40):
        w.lam.fail_next(
            "set_provisioned",
            RejectedError("PutProvisionedConcurrencyConfig", "AccessDeniedException", "not authorized to perform"),
        )
    for minute in range(60):
        now = T0 + 60 * minute
        if minute % 3 == 0:
            w.act.apply_decisions([w.decide("orders", 10 + minute % 2, at=now)], now + 5)
        w.act.sweep(now + 30)
    # Then it tried 3, 6, 12, 24 minutes apart (not 20 times), and said so once, then a warning per retry
    records = w.store.list_decisions("orders", limit=100)
    failed = [r for r in records if r.status is S.FAILED]
    assert len(puts(w)) == len(failed) == 5
    errors = [m for m in logs.at(logging.ERROR) if "decision failed" in m]
    assert len(errors) == 1
    assert len(logs.at(logging.WARNING)) == 4  # "refused again; backing off", one per retry
    error = next(r for r in logs.records if r.levelno == logging.ERROR)
    fields = vars(error)  # Powertools puts `extra` on the record
    assert (fields["target"], fields["action"], fields["error_code"]) == (
        "orders",
        "PutProvisionedConcurrencyConfig",
        "AccessDeniedException",
    )
    # and the target's state says what it waits for, for `targets show`
    backoff = w.store.get_state("orders").backoff
    assert backoff is not None and backoff.error_code == "AccessDeniedException" and backoff.failures == 5
    assert backoff.until > T0 + 3600
    # and the held decisions wait (deferred, then superseded): none of them is lost or FAILED
    held = [r for r in records if "held: AWS refused" in (r.outcome or "")]
    assert held and all(r.status in (S.DEFERRED, S.SUPERSEDED) for r in held)


def test_given_the_backoff_ends_and_aws_accepts_then_the_newest_decision_is_applied_and_the_backoff_cleared() -> None:
    w = world()
    w.lam.add_function("orders")
    w.target(pc())
    w.lam.fail_next("set_provisioned", RejectedError("PutProvisionedConcurrencyConfig", "AccessDeniedException", "no"))
    w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    w.act.apply_decisions([w.decide("orders", 12, at=T0 + 60)], T0 + 65)
    assert w.decision("orders", T0 + 60).status is S.DEFERRED  # held: no call to AWS
    assert len(puts(w)) == 1
    w.act.sweep(T0 + 5 + 180)  # the backoff is over: the held decision goes
    assert w.decision("orders", T0 + 60).status is S.IN_FLIGHT
    assert puts(w)[-1] == "set_provisioned orders:live=12"
    assert w.store.get_state("orders").backoff is None


def test_a_smaller_ask_than_a_refused_one_for_headroom_is_not_held() -> None:
    w = world()
    w.lam.add_function("greedy", reserved=850)  # 150 unreserved: 50 may be provisioned
    w.lam.add_function("orders")
    w.target(pc())
    w.act.apply_decisions([w.decide("orders", 60)], T0 + 5)
    assert w.decision("orders").status is S.FAILED
    w.act.apply_decisions([w.decide("orders", 40, at=T0 + 60)], T0 + 65)
    assert w.decision("orders", T0 + 60).status is S.IN_FLIGHT


# ---------------------------------------------------------------- issue 15 item 7: the user's autoscaling bounds


def test_given_a_poisoned_minute_then_the_users_max_capacity_comes_back_when_the_floor_falls() -> None:
    # Given the user's scalable target at 1/50 and one decision of 400
    w = world()
    w.lam.add_function("orders")
    w.target(pc())
    ref = ScalableTargetRef.lambda_provisioned("orders", "live")
    w.aas.add(ref, 1, 50, policy="pc-utilisation")
    w.act.apply_decisions([w.decide("orders", 400, previous=1)], T0 + 5)
    assert (w.aas.targets[ref].min_capacity, w.aas.targets[ref].max_capacity) == (400, 400)
    # When the floor falls back to 32, the user's max comes back (it stayed 400 before)
    w.act.apply_decisions([w.decide("orders", 32, at=T0 + 60, previous=400)], T0 + 65)
    assert (w.aas.targets[ref].min_capacity, w.aas.targets[ref].max_capacity) == (32, 50)
    # and below the user's own minimum forescale leaves the user's bounds as they were
    w.act.apply_decisions([w.decide("orders", 0, at=T0 + 120, previous=32)], T0 + 125)
    assert (w.aas.targets[ref].min_capacity, w.aas.targets[ref].max_capacity) == (1, 50)
    assert w.store.list_user_bounds() == {}
    assert w.aas.policies[ref] == [{"PolicyName": "pc-utilisation", "PolicyType": "TargetTrackingScaling"}]


@pytest.mark.parametrize("how", ["removed", "dry-run"])
def test_given_forescale_lets_go_of_a_target_then_the_sweep_gives_the_users_bounds_back(how: str) -> None:
    w = world()
    w.lam.add_function("orders")
    cfg = w.target(pc())
    ref = ScalableTargetRef.lambda_provisioned("orders", "live")
    w.aas.add(ref, 2, 20)
    w.act.apply_decisions([w.decide("orders", 60, previous=2)], T0 + 5)
    assert (w.aas.targets[ref].min_capacity, w.aas.targets[ref].max_capacity) == (60, 60)
    if how == "removed":
        w.store.delete_target("orders")
    else:
        w.store.put_target(cfg.model_copy(update={"mode": Mode.DRY_RUN}), expected_version=cfg.version)
    w.act.sweep(T0 + 60)
    assert (w.aas.targets[ref].min_capacity, w.aas.targets[ref].max_capacity) == (2, 20)
    assert w.store.list_user_bounds() == {}


# ---------------------------------------------------------------- issue 17: the sweep, calls per change, batches


class CountingStore(InMemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.decision_queries: list[str] = []

    def list_decisions(self, name: str, limit: int = 100, newest_first: bool = True) -> list[DecisionRecord]:
        self.decision_queries.append(name)
        return super().list_decisions(name, limit, newest_first)


def test_the_sweep_queries_only_open_targets_and_a_bounded_rotation_and_rereads_each_quiet_target_once() -> None:
    # Given 60 quiet provisioned targets whose capacity was last confirmed long ago, and one open decision
    store = CountingStore()
    w = world(ActOptions(rotation_per_sweep=20, reconcile_reads_per_sweep=10), store)
    for i in range(60):
        name = f"fn-{i:02d}"
        w.lam.add_function(name)
        w.lam.functions[name].provisioned["live"] = ProvisionedConfig(3, 3, 3, "READY")
        w.target(pc(name))
        store.put_state(AppliedState(target=name, capacity=3, confirmed_at=T0 - 7200))
    w.lam.add_function("busy")
    w.target(pc("busy"))
    w.act.apply_decisions([w.decide("busy", 5)], T0 + 5)
    store.decision_queries.clear()
    w.lam.calls.clear()
    # When act sweeps once a minute
    reads_per_sweep = []
    for minute in range(1, 13):
        before = len(w.lam.calls)
        store.decision_queries.clear()
        w.act.sweep(T0 + 60 * minute)
        reads_per_sweep.append(len(w.lam.calls) - before)
        assert len(store.decision_queries) <= 20 + 1  # the rotation's page and the open target, not all 61
    # Then each sweep re-read a bounded number of targets from AWS, and every quiet target was
    # re-read once in the round (not every sweep)
    reads = [c for c in w.lam.calls if c.startswith("provisioned fn-")]
    assert max(reads_per_sweep) <= 10 * 2 + 1  # GetProvisionedConcurrencyConfig + GetFunctionConcurrency each
    assert sorted(set(reads)) == sorted(reads) and len(reads) == 60
    assert all(store.get_state(f"fn-{i:02d}").confirmed_at >= T0 for i in range(60))
    assert w.decision("busy").status is S.APPLIED
    assert store.list_open_work() == []


def test_a_decision_whose_event_was_lost_is_found_on_its_targets_turn_of_the_rotation() -> None:
    w = world(ActOptions(rotation_per_sweep=5))
    for i in range(12):
        w.lam.add_function(f"fn-{i:02d}")
        w.target(pc(f"fn-{i:02d}"))
    w.decide("fn-11", 4)  # stored by plan, its DecisionMade never delivered: no open-work note
    for minute in range(1, 4):
        w.act.sweep(T0 + 60 * minute)
    assert w.decision("fn-11").status is S.IN_FLIGHT


def test_a_change_to_a_target_forescale_confirmed_costs_one_call_and_one_poll() -> None:
    w = world()
    w.lam.add_function("orders")
    w.target(pc())
    w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    w.act.sweep(T0 + 65)  # READY: confirmed by AWS
    assert w.decision("orders").status is S.APPLIED
    w.lam.calls.clear()
    w.act.apply_decisions([w.decide("orders", 14, at=T0 + 120, previous=10)], T0 + 125)
    w.act.sweep(T0 + 185)
    assert w.decision("orders", T0 + 120).status is S.APPLIED
    # the Put and the poll that saw it READY (GetAccountSettings is cached for a minute: one here at most)
    assert [c for c in w.lam.calls if c != "account_concurrency"] == [
        "set_provisioned orders:live=14",
        "provisioned orders:live",
    ]


class RoundTripStore(InMemoryStateStore):
    """Records each store call act makes: in the cloud each one is a DynamoDB round trip."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if not name.startswith("_") and callable(attr) and hasattr(StateStore, name):
            calls = super().__getattribute__("calls")

            def counted(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                return attr(*args, **kwargs)

            return counted
        return attr


def test_a_change_to_a_confirmed_target_costs_few_store_round_trips_and_its_poll_fewer() -> None:
    # Given a provisioned target whose capacity forescale set and AWS confirmed
    store = RoundTripStore()
    w = world(store=store)
    w.lam.add_function("orders")
    w.target(pc())
    w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    w.act.sweep(T0 + 65)
    # When it changes again, and the sweep polls the allocation until READY
    store.calls.clear()
    w.act.apply_decisions([w.decide("orders", 14, at=T0 + 120, previous=10)], T0 + 125)
    applying = [c for c in store.calls if c not in ("put_decision", "get_paused")]
    store.calls.clear()
    w.act.sweep(T0 + 185)
    polling = [c for c in store.calls if c != "get_paused"]
    # Then: the batch's write-ahead notes, its configs, the decision with its target's newest (one
    # Query), the claim, one state read, the trust spent, the state and the outcome recorded, and the
    # notes the invocation changed, written together
    assert w.decision("orders", T0 + 120).status is S.APPLIED
    expected = ["write_open_work", "get_targets", "list_decisions", "transition_decision", "get_state"]
    expected += ["put_state", "put_state", "transition_decision", "write_open_work"]
    assert sorted(applying) == sorted(expected), applying
    # the poll: the index and its configs, then the state read and recorded, the target's newest
    # decisions (which hold the operation's), the outcome recorded; the note goes with the invocation's
    # other notes; then the rotation's page and cursor (and the user bounds to give back)
    assert polling[:6] == [
        "list_open_work", "get_targets", "get_state", "put_state", "list_decisions", "transition_decision"
    ], polling  # fmt: skip
    assert polling.count("write_open_work") == 1 and polling.count("get_decision") == 0, polling
    assert not {"get_target", "clear_open_work", "mark_open_work"} & set(polling), polling
    assert w.store.list_open_work() == []


def test_what_an_invocation_has_no_time_for_stays_queued_and_the_sweep_applies_it_most_urgent_first() -> None:
    w = world()
    details = []
    for i in range(10):
        name = f"fn-{i}"
        w.lam.add_function(name)
        w.target(pc(name))
        details.append(w.decide(name, 5, demand_rps=float(10 * (i + 1))))
    budget = iter([60.0] * 4 + [5.0] * 100)  # time for 4 decisions, then under the 10 s margin
    summary = w.act.apply_decisions(details, T0 + 5, time_left_s=lambda: next(budget))
    assert summary["in-flight"] == 4 and summary["left-queued"] == 6
    assert [p.split()[1] for p in puts(w)] == [f"fn-{i}:live=5" for i in (9, 8, 7, 6)]
    queued = {o.target for o in w.store.list_open_work()}
    assert queued == {f"fn-{i}" for i in range(10)}  # 4 to poll, 6 to apply: nothing lost
    w.act.sweep(T0 + 60)
    assert [p.split()[1] for p in puts(w)][4:] == [f"fn-{i}:live=5" for i in (5, 4, 3, 2, 1, 0)]
    assert all(w.decision(f"fn-{i}").status in (S.IN_FLIGHT, S.APPLIED) for i in range(10))


# ---------------------------------------------------------------- issue 15 item 2: a decision "from" the future


def test_given_a_stored_decision_dated_in_the_future_then_it_is_not_applied_and_supersedes_nothing() -> None:
    # Given a decision stored five years ahead (a forged event that got through before events were time-bounded)
    w = world()
    w.lam.add_function("orders")
    w.target(pc())
    w.decide("orders", 900, at=FUTURE)
    # When plan decides a real change now and act sweeps
    w.act.apply_decisions([w.decide("orders", 12, at=T0 + 60)], T0 + 65)
    w.act.sweep(T0 + 120)
    # Then the real decision is applied, the future one is closed as FAILED, and AWS never saw 900
    assert w.decision("orders", T0 + 60).status is S.APPLIED
    assert puts(w) == ["set_provisioned orders:live=12"]
    future = w.decision("orders", FUTURE)
    assert future.status is S.FAILED and "dated in the future" in (future.outcome or "")


def test_a_newer_decision_waits_for_an_older_claim_and_the_claim_is_settled_from_what_aws_has() -> None:
    # Given a decision claimed by an act invocation that stopped right after AWS took its change
    w = world()
    w.lam.add_function("orders")
    w.target(pc())
    w.decide("orders", 10)
    first = w.decision("orders")
    w.store.transition_decision(first, [S.PENDING], S.APPLYING, lease_until=T0 + 125, now=T0 + 5)
    w.lam.functions["orders"].provisioned["live"] = ProvisionedConfig(10, 10, 10, "READY")
    # When a newer decision arrives while that claim's lease runs
    w.act.apply_decisions([w.decide("orders", 14, at=T0 + 60, previous=10)], T0 + 65)
    # Then it waits (no race with a change that may be on its way)
    assert w.decision("orders", T0 + 60).status is S.DEFERRED
    assert "claimed by another act invocation" in (w.decision("orders", T0 + 60).outcome or "")
    assert puts(w) == []
    # and once the lease runs out the claim is settled from AWS, audited as applied, then the newer one goes
    w.act.sweep(T0 + 125)
    settled = w.decision("orders")
    assert settled.status is S.APPLIED and "already" in (settled.outcome or ""), settled.outcome
    w.act.sweep(T0 + 185)
    assert w.decision("orders", T0 + 60).status is S.IN_FLIGHT
    assert puts(w) == ["set_provisioned orders:live=14"]
