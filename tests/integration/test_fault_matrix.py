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

`uv run pytest tests/integration/test_fault_matrix.py` reports the count: one test per (call site,
fault), plus a check that the matrix covers every function that calls AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.pipeline_harness import (
    Fault,
    Interceptor,
    Pipeline,
    emf_metrics,
    intercepted_moto,
    pipeline,
    reference,
)
from tests.tiers import long_suite_params

# The fast tier runs these cases (one per function, every kind of fault); `--tier slow` runs the rest.
FAST_CASES = (
    "collect:cloudwatch.GetMetricData-throttling",
    "forecast:dynamodb.Query-5xx",
    "plan:dynamodb.PutItem[PK=TARGET,SK=DECISION]-condition",
    "plan:events.PutEvents-timeout",
    "act:lambda.PutProvisionedConcurrencyConfig-access-denied",
    "act:sagemaker.UpdateEndpointWeightsAndCapacities-throttling",
)

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
        "DuplicateEvents",
        "IdempotencyRecordErrors",
        "PlanConflicts",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case_id" in metafunc.fixturenames:
        tier = metafunc.config.getoption("--tier")
        metafunc.parametrize("case_id", long_suite_params(tier, FAST_CASES, lambda: [c.id for c in reference().cases]))


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
    moto_and_interceptor: tuple[Any, Interceptor], case_id: str
) -> None:
    mock, interceptor = moto_and_interceptor
    ref = reference()
    case = ref.case(case_id)
    with pipeline(mock, interceptor) as p:
        p.break_cycle(case.site, case.fault)
        logged, counted, seen = _visible(p, case.fault)
        assert logged, f"no WARNING/ERROR log line names {case.fault.code}\n{seen}"
        assert counted, f"no error metric was emitted\n{seen}"
        p.settle()
        p.assert_put_right(ref.final)
        if case.site.item != "PK=idempotency":
            # An idempotency record Powertools could not write makes Lambda's retries of that event
            # fail as "in progress" until it expires: that event then goes to the DLQ (it was applied
            # or is found again by act's sweep; the checks above hold). Anywhere else, nothing may.
            assert p.dlq_count() == 0, "an event ended in a dead-letter queue although the fault was one-shot"
