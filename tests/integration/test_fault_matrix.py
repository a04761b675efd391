"""Fault injection over the whole pipeline on moto: one fault at a time, at every AWS call it makes.

The cases are generated, not picked. At collection, a fault-free run of the harness's scenario
(`pipeline_harness`) records every AWS call the functions make in the cycle that decides and applies
a scale-out on all three targets: the call sites, (function, service, operation, DynamoDB item kind).
Each site gets every fault its operation can answer with, from botocore's model of that operation:
throttling, a 5xx, a timeout whose request AWS did apply, AccessDenied, and where modelled a
resource conflict and a failed condition. The fault hits the site's first call in that cycle.

For each case, after the faulted cycle and the cycles that follow (demand holds):
- no lost decision: every target ends at the capacity the fault-free run ends at, and every
  decision in the audit trail is in a final state with an outcome;
- no double action: no resource received more accepted changes than it has applied decisions;
- consistent state: each target's recorded state equals what AWS has, nothing left in flight, and
  no event ended in a dead-letter queue (the one-shot fault is retried away);
- visible: a WARNING/ERROR log line names the error, and an error metric was emitted.

`tests/bench/fault_matrix.py` runs the same matrix outside pytest and prints the counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.pipeline_harness import (
    FAULT_CYCLE,
    Case,
    Fault,
    Interceptor,
    Pipeline,
    emf_metrics,
    intercepted_moto,
    pipeline,
    reference,
)

pytestmark = pytest.mark.slow

# Metrics that say something went wrong (counts > 0 make a failure visible on a dashboard/alarm).
ERROR_METRICS = frozenset(
    {
        "InvocationErrors",
        "InvalidEvents",
        "ActionsDeferred",
        "ActionsFailed",
        "ActErrors",
        "PublishErrors",
        "ClaimsLost",
        "DecisionsMissing",
        "TargetsMissingData",
        "CollectErrors",
        "PlanErrors",
        "ForecastErrors",
        "ReactErrors",
        "StateConflicts",
        "AwsCallRetries",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = reference().cases
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="module")
def moto_and_interceptor() -> Iterator[tuple[Any, Interceptor]]:
    with intercepted_moto() as pair:
        yield pair


def _visible(p: Pipeline, fault: Fault) -> tuple[bool, bool, str]:
    logs = p.captured.text()
    needle = "timeout" if fault.name == "timeout" else fault.code
    metrics = emf_metrics(p.stdout.getvalue())
    errors = {k: v for k, v in metrics.items() if k in ERROR_METRICS and v > 0}
    return needle.lower() in logs.lower(), bool(errors), f"logs:\n{logs[-3000:]}\nerror metrics: {errors}"


def test_the_matrix_covers_every_function_that_calls_aws() -> None:
    ref = reference()
    stages = {c.site.stage for c in ref.cases}
    assert {"collect", "forecast", "plan", "act"} <= stages
    assert len(ref.cases) >= 4 * len({c.site for c in ref.cases})


def test_a_fault_at_any_call_loses_nothing_doubles_nothing_and_is_visible(
    moto_and_interceptor: tuple[Any, Interceptor], case: Case
) -> None:
    mock, interceptor = moto_and_interceptor
    ref = reference()
    interceptor.reset()
    with pipeline(mock, interceptor) as p:
        p.run_until(FAULT_CYCLE - 1)
        interceptor.arm(case.site, case.fault)
        p.run_until(FAULT_CYCLE)
        interceptor.disarm()
        assert interceptor.injected == [(case.site, case.fault)], "the fault was never hit"
        logged, counted, seen = _visible(p, case.fault)
        assert logged, f"no WARNING/ERROR log line names {case.fault.code}\n{seen}"
        assert counted, f"no error metric was emitted\n{seen}"

        p.settle()
        assert not p.open_work(), f"still owed after the cycles that followed: {p.open_work()}"
        for name in p.configs:
            actual = p.in_aws(name)
            assert actual == ref.final[name], f"{name}: AWS has {actual}, the fault-free run ends at {ref.final[name]}"
            state = p.state(name)
            assert state.capacity == actual and state.in_flight is None, (name, state)
            records = p.decisions(name)
            assert all(r.outcome for r in records if r.status.value != "superseded"), [
                (r.decision_id, r.status, r.outcome) for r in records
            ]
            applied = sum(1 for r in records if r.status.value == "applied")
            assert interceptor.mutations[name] <= applied, (
                f"{name}: {interceptor.mutations[name]} accepted changes for {applied} applied decisions"
            )
        assert p.dlq_count() == 0, "an event ended in a dead-letter queue although the fault was one-shot"
