"""The kill switch: `forescale pause` stops every action within one cycle, on the whole pipeline.

Given the pipeline running on moto (pipeline_harness) with a change already owed (a Put refused as
busy, so its decision waits DEFERRED), when an operator runs `forescale pause`, then from the next
cycle on no call that changes a user's resource is made, whatever plan decides and whatever was
owed; each decision is recorded DRY_RUN with the pause's reason. `forescale resume` lets act
apply again, and the targets reach the capacity a run without the pause reaches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from forescale.cli import main as forescale_cli
from tests.integration.pipeline_harness import (
    FAULT_CYCLE,
    TABLE,
    CallSite,
    Fault,
    Interceptor,
    intercepted_moto,
    pipeline,
    reference,
)

pytestmark = pytest.mark.slow

PUT_PC = CallSite("act", "lambda", "PutProvisionedConcurrencyConfig")


@pytest.fixture
def moto_and_interceptor() -> Iterator[tuple[Any, Interceptor]]:
    with intercepted_moto() as pair:
        yield pair


def test_pause_stops_all_actions_within_one_cycle_and_resume_catches_up(
    moto_and_interceptor: tuple[Any, Interceptor], capsys: pytest.CaptureFixture[str]
) -> None:
    mock, interceptor = moto_and_interceptor
    final_without_pause = reference().final
    with pipeline(mock, interceptor) as p:
        p.run_until(FAULT_CYCLE - 1)
        interceptor.arm(PUT_PC, Fault("conflict", "ResourceConflictException", 409), times=100)
        p.run_until(FAULT_CYCLE)  # scale-out decided everywhere; api's Put refused as busy (the sweep's too)
        interceptor.disarm()
        (owed,) = [d for d in p.decisions("api") if d.status.value == "deferred"]

        assert forescale_cli(["pause", "--table", TABLE, "--reason", "incident 42"]) == 0
        assert "paused" in capsys.readouterr().out
        frozen = {name: p.in_aws(name) for name in p.configs}
        interceptor.mutations.clear()
        for _ in range(6):
            p.cycle()
        assert sum(interceptor.mutations.values()) == 0, f"changes made while paused: {interceptor.mutations}"
        assert {name: p.in_aws(name) for name in p.configs} == frozen
        record = next(d for d in p.decisions("api") if d.decision_id == owed.decision_id)
        assert record.status.value == "dry-run" and "paused (incident 42)" in (record.outcome or ""), record

        assert forescale_cli(["resume", "--table", TABLE]) == 0
        p.settle()
        assert sum(interceptor.mutations.values()) > 0, "nothing was applied after resume"
        assert {name: p.in_aws(name) for name in p.configs} == final_without_pause
        assert not p.open_work()
