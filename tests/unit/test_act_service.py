"""The act service on in-memory fakes of its adapters: every path a decision can take, and what is
stored and published for it. No network (the integration tests run the same service on moto)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pytest_socket import disable_socket, enable_socket

from forescale.adapters.autoscaling import FakeAutoScaling, ScalableTargetRef
from forescale.adapters.events import RecordingPublisher
from forescale.adapters.lambda_capacity import FakeLambdaCapacity, ProvisionedConfig
from forescale.adapters.sagemaker_capacity import FakeSageMaker, type_switch_config_name
from forescale.adapters.state import ConflictError, InMemoryStateStore
from forescale.domain.ratelimit import DeferredError, RejectedError
from forescale.domain.targets import TargetKind
from forescale.runtime.act import ActOptions, ActService
from forescale.runtime.models import (
    ActionResultDetail,
    AppliedState,
    DecisionMadeDetail,
    DecisionRecord,
    DecisionStatus,
    Mode,
    TargetConfig,
)
from forescale.runtime.settings import ActSettings
from tests.targets import endpoint_target as endpoint
from tests.targets import pc_target as pc
from tests.targets import reserved_target as reserved

S = DecisionStatus
T0 = 1_700_000_000
LEASE = 120


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    disable_socket()
    yield
    enable_socket()


@dataclass
class World:
    store: InMemoryStateStore = field(default_factory=InMemoryStateStore)
    events: RecordingPublisher = field(default_factory=RecordingPublisher)
    lam: FakeLambdaCapacity = field(default_factory=FakeLambdaCapacity)
    sm: FakeSageMaker = field(default_factory=FakeSageMaker)
    aas: FakeAutoScaling = field(default_factory=FakeAutoScaling)
    alarms: tuple[str, ...] = ("ranker-p99",)

    def __post_init__(self) -> None:
        from forescale.adapters.sagemaker_capacity import BlueGreenSettings

        options = ActOptions(lease_s=LEASE, blue_green=BlueGreenSettings(rollback_alarms=self.alarms))
        self.act = ActService(self.store, self.events, self.lam, self.sm, self.aas, options)

    def target(self, cfg: TargetConfig) -> TargetConfig:
        return self.store.put_target(cfg)

    def decide(
        self,
        name: str,
        capacity: int,
        at: int = T0,
        previous: int = 0,
        instance_type: str | None = None,
        demand_rps: float = 10.0,
        status: DecisionStatus = S.PENDING,
    ) -> DecisionMadeDetail:
        record = DecisionRecord(
            decision_id=DecisionRecord.id_for(name, at),
            target=name,
            decided_at=at,
            capacity=capacity,
            previous=previous,
            recommended=capacity,
            instance_type=instance_type,
            policy="predictive",
            reason="test",
            demand_rps=demand_rps,
            mode=Mode.ACTIVE,
            status=status,
        )
        assert self.store.put_decision(record)
        urgency = demand_rps * max(0, capacity - previous) / capacity if capacity else 0.0
        return DecisionMadeDetail(
            decision_id=record.decision_id,
            target=name,
            decided_at=at,
            capacity=capacity,
            previous=previous,
            instance_type=instance_type,
            mode=Mode.ACTIVE,
            reason="test",
            urgency=urgency,
        )

    def decision(self, name: str, at: int = T0) -> DecisionRecord:
        got = self.store.get_decision(name, at)
        assert got is not None
        return got

    def published(self, detail_type: str | None = None) -> list[ActionResultDetail]:
        return [
            d  # type: ignore[misc]
            for t, d in self.events.published
            if detail_type is None or t == detail_type
        ]

    def mutations(self) -> list[str]:
        verbs = ("set_", "remove_", "copy_config", "update_endpoint", "deregister", "restore")
        calls = self.lam.calls + self.sm.calls + self.aas.calls
        return [c for c in calls if c.startswith(verbs)]


@pytest.fixture
def w() -> World:
    world = World()
    world.lam.add_function("orders")
    world.lam.add_function("batch")
    world.sm.add_endpoint("ranker", "AllTraffic", "ml.g5.xlarge", 2)
    return world


# ---------------------------------------------------------------- Lambda provisioned concurrency


def test_given_pc_decision_when_applied_then_in_flight_until_ready_then_applied(w: World) -> None:
    w.target(pc())
    summary = w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    assert summary["in-flight"] == 1
    assert w.decision("orders").status is S.IN_FLIGHT
    state = w.store.get_state("orders")
    assert state.in_flight is not None and state.in_flight.capacity == 10
    assert state.capacity == 10 and state.last_decision_id == "orders@1700000000"

    summary = w.act.sweep(T0 + 65)  # the next cycle polls GetProvisionedConcurrencyConfig
    assert summary["completed"] == 1 and summary["applied"] == 1
    record = w.decision("orders")
    assert record.status is S.APPLIED
    assert "READY: 10 environments" in (record.outcome or "")
    state = w.store.get_state("orders")
    assert state.in_flight is None and state.capacity == 10
    assert [d.status for d in w.published("forescale.ActionApplied")] == [S.IN_FLIGHT, S.APPLIED]
    assert [c for c in w.mutations() if c.startswith("set_provisioned")] == ["set_provisioned orders:live=10"]


def test_given_a_redelivered_event_then_it_is_applied_once(w: World) -> None:
    w.target(pc())
    detail = w.decide("orders", 10)
    w.act.apply_decisions([detail], T0 + 5)
    again = w.act.apply_decisions([detail], T0 + 6)
    w.act.apply_decisions([detail], T0 + 600)  # even after the lease would have expired
    assert again["skipped"] == 1 and again["in-flight"] == 0
    assert len([c for c in w.lam.calls if c.startswith("set_provisioned")]) == 1


@pytest.mark.parametrize("paused", [False, True])
def test_given_dry_run_or_paused_then_recorded_not_applied(w: World, paused: bool) -> None:
    w.target(pc(mode=Mode.ACTIVE if paused else Mode.DRY_RUN))
    if paused:
        w.store.set_paused(True, "incident 42", T0)
    summary = w.act.apply_decisions([w.decide("orders", 10, previous=4)], T0 + 5)
    record = w.decision("orders")
    assert summary["dry-run"] == 1 and record.status is S.DRY_RUN
    expected = "forescale is paused (incident 42)" if paused else "dry-run mode"
    assert expected in (record.outcome or "")
    assert "would set the provisioned concurrency of orders:live 4 -> 10" in (record.outcome or "")
    assert w.mutations() == []
    assert w.published()[0].status is S.DRY_RUN


def test_given_a_newer_decision_then_the_older_is_superseded(w: World) -> None:
    w.target(pc())
    old = w.decide("orders", 8, at=T0)
    new = w.decide("orders", 12, at=T0 + 60)
    summary = w.act.apply_decisions([old, new], T0 + 61)  # one batch, both targets' decisions
    assert summary["superseded"] == 1 and summary["in-flight"] == 1
    assert w.decision("orders", T0).status is S.SUPERSEDED
    assert "superseded by the newer decision orders@1700000060" in (w.decision("orders", T0).outcome or "")
    assert [c for c in w.lam.calls if c.startswith("set_provisioned")] == ["set_provisioned orders:live=12"]


def test_given_an_operation_in_flight_then_a_new_decision_waits_and_the_sweep_applies_it(w: World) -> None:
    w.target(pc())
    w.lam.ready_after_reads = 3
    w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    second = w.decide("orders", 14, at=T0 + 60, previous=10)
    summary = w.act.apply_decisions([second], T0 + 61)
    assert summary["deferred"] == 1
    assert "waiting for the in-flight provisioned-concurrency allocation to 10" in (
        w.decision("orders", T0 + 60).outcome or ""
    )
    w.act.sweep(T0 + 120)  # still IN_PROGRESS: nothing new starts
    assert len([c for c in w.lam.calls if c.startswith("set_provisioned")]) == 1
    summary = w.act.sweep(T0 + 180)  # READY now: the first completes, the deferred one goes
    assert w.decision("orders", T0).status is S.APPLIED
    assert w.decision("orders", T0 + 60).status is S.IN_FLIGHT
    assert [c for c in w.lam.calls if c.startswith("set_provisioned")][-1] == "set_provisioned orders:live=14"


def test_given_capacity_0_then_the_config_is_deleted(w: World) -> None:
    w.target(pc())
    w.lam.functions["orders"].provisioned["live"] = ProvisionedConfig(6, 6, 6, "READY")
    w.act.apply_decisions([w.decide("orders", 0, previous=6)], T0 + 5)
    record = w.decision("orders")
    assert record.status is S.APPLIED and "deleted the provisioned-concurrency config" in (record.outcome or "")
    assert "live" not in w.lam.functions["orders"].provisioned
    assert w.store.get_state("orders").capacity == 0


def test_given_reserved_concurrency_then_provisioned_may_not_exceed_it(w: World) -> None:
    w.target(pc())
    w.lam.functions["orders"].reserved = 8
    w.act.apply_decisions([w.decide("orders", 9)], T0 + 5)
    record = w.decision("orders")
    assert record.status is S.FAILED
    assert "would exceed the function's reserved concurrency 8" in (record.outcome or "")
    assert w.published("forescale.ActionFailed")[0].error_code == "ProvisionedOverReserved"
    assert not any(c.startswith("set_provisioned") for c in w.lam.calls)


def test_given_little_unreserved_concurrency_then_provisioned_is_refused_with_the_numbers(w: World) -> None:
    w.lam.add_function("greedy", reserved=850)  # 150 unreserved left; 100 must stay
    w.target(pc())
    w.act.apply_decisions([w.decide("orders", 60)], T0 + 5)
    record = w.decision("orders")
    assert record.status is S.FAILED
    assert "would leave 90 unreserved" in (record.outcome or "")
    assert "at least 100" in (record.outcome or "")


def test_headroom_is_read_once_per_run_and_spent_as_it_is_used(w: World) -> None:
    w.lam.add_function("greedy", reserved=820)  # 180 unreserved: 80 may still be reserved or provisioned
    for name in ("a", "b", "c"):
        w.lam.add_function(name)
        w.target(pc(name))
    details = [w.decide(n, 30, demand_rps=d) for n, d in (("a", 30.0), ("b", 20.0), ("c", 10.0))]
    w.act.apply_decisions(details, T0 + 5)
    assert [w.decision(n).status for n in "abc"] == [S.IN_FLIGHT, S.IN_FLIGHT, S.FAILED]
    assert sum(c == "account_concurrency" for c in w.lam.calls) == 1


def test_a_batch_is_applied_largest_expected_spill_first(w: World) -> None:
    for name in ("low", "high", "mid"):
        w.lam.add_function(name)
        w.target(pc(name))
    details = [
        w.decide("low", 5, demand_rps=1.0),
        w.decide("high", 5, demand_rps=500.0),
        w.decide("mid", 5, demand_rps=50.0),
    ]
    w.act.apply_decisions(details, T0 + 5)
    order = [c.split()[1].split(":")[0] for c in w.lam.calls if c.startswith("set_provisioned")]
    assert order == ["high", "mid", "low"]


def test_given_an_autoscaling_target_then_act_moves_its_floor_instead(w: World) -> None:
    w.target(pc())
    ref = ScalableTargetRef.lambda_provisioned("orders", "live")
    w.aas.add(ref, 2, 20, policy="pc-utilisation")
    w.act.apply_decisions([w.decide("orders", 8, previous=2)], T0 + 5)
    assert w.aas.targets[ref].min_capacity == 8 and w.aas.targets[ref].max_capacity == 20
    assert "raised the Application Auto Scaling floor of function:orders:live from 2 to 8" in (
        w.decision("orders").outcome or ""
    )
    w.act.apply_decisions([w.decide("orders", 30, at=T0 + 60, previous=8)], T0 + 65)
    assert (w.aas.targets[ref].min_capacity, w.aas.targets[ref].max_capacity) == (30, 30)
    assert not any(c.startswith("set_provisioned") for c in w.lam.calls)
    assert w.aas.policies[ref] == [{"PolicyName": "pc-utilisation", "PolicyType": "TargetTrackingScaling"}]


def test_given_throttling_past_the_retries_then_deferred_and_applied_next_cycle(w: World) -> None:
    w.target(pc())
    w.lam.fail_next(
        "set_provisioned",
        DeferredError("PutProvisionedConcurrencyConfig", "TooManyRequestsException", "still failing after 4 attempts"),
    )
    summary = w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    record = w.decision("orders")
    assert summary["deferred"] == 1 and record.status is S.DEFERRED
    assert "TooManyRequestsException" in (record.outcome or "")
    assert w.store.get_state("orders").in_flight is None
    summary = w.act.sweep(T0 + 60)
    assert w.decision("orders").status is S.IN_FLIGHT
    assert w.published()[-1].status is S.IN_FLIGHT


def test_given_aws_refuses_then_failed_with_its_message(w: World) -> None:
    w.target(pc())
    w.lam.fail_next(
        "set_provisioned",
        RejectedError("PutProvisionedConcurrencyConfig", "AccessDeniedException", "not authorized to perform"),
    )
    w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    record = w.decision("orders")
    assert record.status is S.FAILED and "AWS refused" in (record.outcome or "")
    assert "not authorized to perform" in (record.outcome or "")
    failed = w.published("forescale.ActionFailed")
    assert failed[0].error_code == "AccessDeniedException"
    assert w.act.sweep(T0 + 60)["applied"] == 0  # FAILED is final: the sweep does not retry it


def test_given_an_allocation_that_fails_then_the_decision_fails_with_the_status_reason(w: World) -> None:
    w.target(pc())
    w.lam.failing_allocations[("orders", "live")] = "Insufficient capacity for provisioned concurrency"
    w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    w.act.sweep(T0 + 60)
    record = w.decision("orders")
    assert record.status is S.FAILED
    assert "Insufficient capacity for provisioned concurrency" in (record.outcome or "")
    assert w.store.get_state("orders").in_flight is None


class Crash(BaseException):
    """The process dying: not an Exception, so nothing in act catches it."""


class CrashingStore(InMemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.crash_on_put_state = 0
        self.conflicts_on_put_state = 0

    def put_state(self, state: AppliedState) -> AppliedState:
        # Crash when act records a decision's outcome (not on a reconcile write before AWS is called).
        if self.crash_on_put_state and state.last_decision_id is not None:
            self.crash_on_put_state -= 1
            raise Crash()
        if self.conflicts_on_put_state:
            self.conflicts_on_put_state -= 1
            raise ConflictError("someone else wrote the state")
        return super().put_state(state)


def test_given_a_crash_after_aws_accepted_then_the_next_cycle_reconciles_without_a_second_put() -> None:
    w = World(store=CrashingStore())
    w.lam.add_function("orders")
    w.lam.ready_after_reads = 0
    w.target(pc())
    assert isinstance(w.store, CrashingStore)
    w.store.crash_on_put_state = 1
    with pytest.raises(Crash):
        w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    assert w.decision("orders").status is S.APPLYING  # AWS has it; nothing recorded
    w.act.sweep(T0 + 60)
    assert w.decision("orders").status is S.APPLYING  # the lease still holds
    summary = w.act.sweep(T0 + 5 + LEASE + 1)
    record = w.decision("orders")
    assert record.status is S.APPLIED and "already in effect" in (record.outcome or "")
    assert summary["reconciled"] == 1  # read back from AWS before deciding what to do
    assert w.store.get_state("orders").capacity == 10
    assert [c for c in w.lam.calls if c.startswith("set_provisioned")] == ["set_provisioned orders:live=10"]


def test_given_a_crash_while_in_progress_then_the_next_cycle_adopts_the_operation() -> None:
    w = World(store=CrashingStore())
    w.lam.add_function("orders")
    w.lam.ready_after_reads = 5
    w.target(pc())
    assert isinstance(w.store, CrashingStore)
    w.store.crash_on_put_state = 1
    with pytest.raises(Crash):
        w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    w.act.sweep(T0 + 5 + LEASE + 1)
    assert w.decision("orders").status is S.IN_FLIGHT
    assert "IN_PROGRESS on orders:live (an earlier attempt asked for it)" in (w.decision("orders").outcome or "")
    assert w.store.get_state("orders").in_flight is not None
    assert len([c for c in w.lam.calls if c.startswith("set_provisioned")]) == 1


def test_given_state_write_conflicts_then_re_read_and_retried() -> None:
    w = World(store=CrashingStore())
    w.lam.add_function("orders")
    w.target(pc())
    assert isinstance(w.store, CrashingStore)
    w.store.conflicts_on_put_state = 2
    w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    assert w.decision("orders").status is S.IN_FLIGHT
    assert w.store.get_state("orders").in_flight is not None


def test_given_the_state_cannot_be_written_then_deferred_and_reconciled_next_cycle() -> None:
    w = World(store=CrashingStore())
    w.lam.add_function("orders")
    w.lam.ready_after_reads = 0
    w.target(pc())
    assert isinstance(w.store, CrashingStore)
    w.store.conflicts_on_put_state = 50
    w.act.apply_decisions([w.decide("orders", 10)], T0 + 5)
    record = w.decision("orders")
    assert record.status is S.DEFERRED and "could not be recorded" in (record.outcome or "")
    w.store.conflicts_on_put_state = 0
    w.act.sweep(T0 + 60)
    assert w.decision("orders").status is S.APPLIED
    assert w.store.get_state("orders").capacity == 10
    assert len([c for c in w.lam.calls if c.startswith("set_provisioned")]) == 1


def test_an_in_flight_decision_whose_operation_record_was_lost_is_rederived(w: World) -> None:
    w.target(pc())
    w.decide("orders", 7, status=S.IN_FLIGHT)
    w.lam.functions["orders"].provisioned["live"] = ProvisionedConfig(7, 7, 7, "READY")
    w.act.sweep(T0 + 60)
    assert w.decision("orders").status is S.APPLIED
    assert not any(c.startswith("set_provisioned") for c in w.lam.calls)


def test_sweep_reconciles_a_quiet_target_that_drifted(w: World) -> None:
    w.target(pc())
    w.store.put_state(AppliedState(target="orders", capacity=5, updated_at=T0 - 3600))
    w.lam.functions["orders"].provisioned["live"] = ProvisionedConfig(7, 7, 7, "READY")
    summary = w.act.sweep(T0)
    assert summary["reconciled"] == 1
    state = w.store.get_state("orders")
    assert state.capacity == 7 and "AWS has 7, the state said 5" in (state.last_action or "")
    assert w.act.sweep(T0 + 60)["reconciled"] == 0  # fresh now: not re-read every minute


def test_a_decision_for_an_unregistered_target_fails_with_a_reason(w: World) -> None:
    detail = w.decide("ghost", 3)
    w.act.apply_decisions([detail], T0 + 5)
    assert w.decision("ghost").status is S.FAILED
    assert "no longer registered" in (w.decision("ghost").outcome or "")


def test_lease_held_by_another_act_is_respected_and_an_expired_one_reclaimed(w: World) -> None:
    w.target(pc())
    w.decide("orders", 10)
    w.store.transition_decision(w.decision("orders"), [S.PENDING], S.APPLYING, lease_until=T0 + 100, now=T0)
    w.act.sweep(T0 + 50)
    assert w.decision("orders").status is S.APPLYING
    assert not any(c.startswith("set_") for c in w.lam.calls)
    w.act.sweep(T0 + 101)
    assert w.decision("orders").status is S.IN_FLIGHT


# ---------------------------------------------------------------- Lambda reserved concurrency


def test_reserved_concurrency_is_put_then_removed_for_zero(w: World) -> None:
    w.target(reserved())
    w.act.apply_decisions([w.decide("batch", 50)], T0 + 5)
    assert w.lam.functions["batch"].reserved == 50 and w.decision("batch").status is S.APPLIED
    w.act.apply_decisions([w.decide("batch", 0, at=T0 + 60, previous=50)], T0 + 65)
    assert w.lam.functions["batch"].reserved is None
    assert "removed the reserved concurrency of batch (was 50)" in (w.decision("batch", T0 + 60).outcome or "")
    assert w.store.get_state("batch").capacity == 0


def test_reserved_concurrency_keeps_100_unreserved(w: World) -> None:
    w.target(reserved())
    w.act.apply_decisions([w.decide("batch", 950)], T0 + 5)
    record = w.decision("batch")
    assert record.status is S.FAILED and "would leave 50 unreserved" in (record.outcome or "")
    assert w.lam.functions["batch"].reserved is None


# ---------------------------------------------------------------- SageMaker


def describes(w: World) -> list[str]:
    return [c for c in w.sm.calls if c.startswith("describe_endpoint")]


def test_instance_count_goes_in_flight_is_polled_from_four_minutes_on_and_completes_when_in_service(
    w: World,
) -> None:
    w.target(endpoint())
    w.act.apply_decisions([w.decide("ranker", 4, previous=2)], T0 + 5)
    assert w.decision("ranker").status is S.IN_FLIGHT
    w.sm.calls.clear()
    for minute in (1, 2, 3):  # an instance-count update takes minutes: not polled yet
        w.act.sweep(T0 + 60 * minute)
    assert describes(w) == []
    w.act.sweep(T0 + 240)  # still Updating
    assert w.decision("ranker").status is S.IN_FLIGHT and len(describes(w)) == 1
    w.sm.complete_updates()
    w.act.sweep(T0 + 300)
    record = w.decision("ranker")
    assert record.status is S.APPLIED and "InService with 4 instances" in (record.outcome or "")
    assert w.store.get_state("ranker").capacity == 4


def test_a_decision_waiting_for_an_endpoint_update_is_looked_at_when_the_update_is_worth_polling(w: World) -> None:
    w.target(endpoint())
    w.act.apply_decisions([w.decide("ranker", 4, previous=2)], T0 + 5)
    # a newer decision polls the update at once, and waits for it
    w.act.apply_decisions([w.decide("ranker", 5, at=T0 + 60, previous=2)], T0 + 65)
    assert w.decision("ranker", T0 + 60).status is S.DEFERRED
    w.sm.calls.clear()
    for minute in (2, 3):  # the waiting decision does not poll the endpoint every minute
        w.act.sweep(T0 + 60 * minute)
    assert describes(w) == []
    w.sm.complete_updates()
    w.act.sweep(T0 + 240)
    assert w.decision("ranker").status is S.APPLIED
    assert w.decision("ranker", T0 + 60).status is S.IN_FLIGHT  # then applied at once
    assert w.sm.calls[-1] == "set_instance_count ranker/AllTraffic=5"


def test_instance_count_waits_for_in_service(w: World) -> None:
    w.target(endpoint())
    w.sm.endpoints["ranker"].status = "Updating"  # someone else's update
    w.act.apply_decisions([w.decide("ranker", 3, previous=2)], T0 + 5)
    record = w.decision("ranker")
    assert record.status is S.DEFERRED and "is Updating" in (record.outcome or "")
    assert not any(c.startswith("set_instance_count") for c in w.sm.calls)
    w.sm.endpoints["ranker"].status = "InService"
    w.act.sweep(T0 + 60)
    assert w.decision("ranker").status is S.IN_FLIGHT


def test_sagemaker_zero_instances_is_refused(w: World) -> None:
    w.target(endpoint())
    w.act.apply_decisions([w.decide("ranker", 0, previous=2)], T0 + 5)
    assert w.decision("ranker").status is S.FAILED
    assert "at least 1 instance" in (w.decision("ranker").outcome or "")


def test_type_switch_takes_autoscaling_down_updates_blue_green_and_puts_it_back(w: World) -> None:
    w.target(endpoint(kind=TargetKind.SAGEMAKER_INSTANCE_TYPE))
    ref = ScalableTargetRef.sagemaker_variant("ranker", "AllTraffic")
    w.aas.add(ref, 1, 6, policy="invocations-per-instance")
    w.act.apply_decisions([w.decide("ranker", 3, previous=2, instance_type="ml.g6.xlarge")], T0 + 5)

    new_config = type_switch_config_name("ranker", "ranker@1700000000")
    assert w.decision("ranker").status is S.IN_FLIGHT
    assert w.sm.configs[new_config] == {"AllTraffic": ("ml.g6.xlarge", 3)}
    assert ref not in w.aas.targets  # deregistered while the fleets swap
    (ep, cfg_name, deployment) = w.sm.deployments[0]
    assert (ep, cfg_name) == ("ranker", new_config)
    assert deployment.deployment_config()["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "ranker-p99"}]}
    state = w.store.get_state("ranker")
    assert state.in_flight is not None and state.in_flight.details["phase"] == "updating"

    w.act.sweep(T0 + 60)  # Updating: nothing else happens
    assert ref not in w.aas.targets
    w.sm.complete_updates()
    w.act.sweep(T0 + 420)
    record = w.decision("ranker")
    assert record.status is S.APPLIED
    assert "ml.g5.xlarge -> ml.g6.xlarge: done, 3 instances InService" in (record.outcome or "")
    assert w.aas.targets[ref].min_capacity == 1 and w.aas.targets[ref].max_capacity == 6
    assert w.aas.policies[ref][0]["PolicyName"] == "invocations-per-instance"
    state = w.store.get_state("ranker")
    assert (state.instance_type, state.capacity, state.in_flight) == ("ml.g6.xlarge", 3, None)


def test_type_switch_retry_reuses_its_endpoint_config(w: World) -> None:
    w.target(endpoint(kind=TargetKind.SAGEMAKER_INSTANCE_TYPE))
    w.sm.fail_next("update_endpoint", DeferredError("UpdateEndpoint", "ThrottlingException", "Rate exceeded"))
    w.act.apply_decisions([w.decide("ranker", 2, previous=2, instance_type="ml.g6.xlarge")], T0 + 5)
    assert w.decision("ranker").status is S.IN_FLIGHT
    assert "continued next cycle" in (w.decision("ranker").outcome or "")
    w.act.sweep(T0 + 60)
    assert sum(c.startswith("copy_config_with_type") for c in w.sm.calls) == 1
    assert sum(c.startswith("update_endpoint") for c in w.sm.calls) == 2
    assert len(w.sm.configs) == 2
    w.sm.complete_updates()
    w.act.sweep(T0 + 420)
    assert w.decision("ranker").status is S.APPLIED


def test_a_second_type_switch_never_starts_while_one_is_in_flight(w: World) -> None:
    w.target(endpoint(kind=TargetKind.SAGEMAKER_INSTANCE_TYPE))
    w.act.apply_decisions([w.decide("ranker", 2, previous=2, instance_type="ml.g6.xlarge")], T0 + 5)
    w.act.apply_decisions([w.decide("ranker", 2, at=T0 + 60, previous=2, instance_type="ml.g5.xlarge")], T0 + 65)
    assert w.decision("ranker", T0 + 60).status is S.DEFERRED
    assert sum(c.startswith("update_endpoint") for c in w.sm.calls) == 1


def test_type_switch_rolled_back_fails_and_restores_autoscaling(w: World) -> None:
    w.target(endpoint(kind=TargetKind.SAGEMAKER_INSTANCE_TYPE))
    ref = ScalableTargetRef.sagemaker_variant("ranker", "AllTraffic")
    w.aas.add(ref, 2, 4)
    w.act.apply_decisions([w.decide("ranker", 2, previous=2, instance_type="ml.g6.xlarge")], T0 + 5)
    w.sm.rollback_next_update = True
    w.sm.complete_updates()
    w.act.sweep(T0 + 420)
    record = w.decision("ranker")
    assert record.status is S.FAILED and "rolled back" in (record.outcome or "")
    assert "autoscaling re-registered (min 2, max 4" in (record.outcome or "")
    assert ref in w.aas.targets
    assert w.store.get_state("ranker").instance_type == "ml.g5.xlarge"
    assert w.published("forescale.ActionFailed")[0].error_code == "RolledBack"


def test_type_switch_refused_by_aws_restores_autoscaling_and_clears_the_operation(w: World) -> None:
    w.target(endpoint(kind=TargetKind.SAGEMAKER_INSTANCE_TYPE))
    ref = ScalableTargetRef.sagemaker_variant("ranker", "AllTraffic")
    w.aas.add(ref, 1, 4)
    w.sm.fail_next(
        "update_endpoint", RejectedError("UpdateEndpoint", "ValidationException", "instance type not supported")
    )
    w.act.apply_decisions([w.decide("ranker", 2, previous=2, instance_type="ml.g6.xlarge")], T0 + 5)
    record = w.decision("ranker")
    assert record.status is S.FAILED and "instance type not supported" in (record.outcome or "")
    assert ref in w.aas.targets
    assert w.store.get_state("ranker").in_flight is None


def test_options_read_rollback_alarms_from_settings() -> None:
    settings = ActSettings.from_env(
        {"TABLE_NAME": "forescale", "EVENT_BUS_NAME": "bus", "ROLLBACK_ALARM_NAMES": " p99 , errors,,", "LEASE_S": "90"}
    )
    options = ActOptions.from_settings(settings)
    assert options.blue_green.rollback_alarms == ("p99", "errors")
    assert options.lease_s == 90


def test_pausing_before_update_endpoint_cancels_the_switch_and_restores_autoscaling(w: World) -> None:
    w.target(endpoint(kind=TargetKind.SAGEMAKER_INSTANCE_TYPE))
    ref = ScalableTargetRef.sagemaker_variant("ranker", "AllTraffic")
    w.aas.add(ref, 1, 4, policy="invocations-per-instance")
    w.sm.fail_next("update_endpoint", DeferredError("UpdateEndpoint", "ThrottlingException", "Rate exceeded"))
    w.act.apply_decisions([w.decide("ranker", 2, previous=2, instance_type="ml.g6.xlarge")], T0 + 5)
    assert ref not in w.aas.targets  # taken down, UpdateEndpoint still owed
    w.store.set_paused(True, "change freeze", T0 + 30)
    w.act.sweep(T0 + 60)
    record = w.decision("ranker")
    assert record.status is S.DRY_RUN and "cancelled before UpdateEndpoint because forescale is paused" in (
        record.outcome or ""
    )
    assert w.aas.targets[ref].max_capacity == 4 and w.aas.policies[ref][0]["PolicyName"] == "invocations-per-instance"
    assert w.store.get_state("ranker").in_flight is None
    assert sum(c.startswith("update_endpoint") for c in w.sm.calls) == 1  # only the throttled attempt
