"""Crash points: the function's process dies right after each AWS call that plan and act make in the
cycle that decides and applies a scale-out, and the next cycles put things right.

The points are generated like the fault matrix's sites (a fault-free recording), so they include:
after plan stored a decision but before it published DecisionMade; after act claimed a decision but
before it called AWS; after AWS accepted the change but before act recorded it; after the state was
recorded but before the decision's status; after the status but before ActionApplied went out.

The crash is a BaseException, so no `except Exception` in the code can catch it (as with a timeout or
an out-of-memory kill), and the idempotency record it leaves in progress blocks Lambda's retries of
that event, which then end in the DLQ: what is owed must be found again by act's sweep, from the
decision in the table and the capacity read back from AWS.

After the cycles that follow: every target is where a run without the crash ends; AWS received no
change twice; the state agrees with AWS; and when the crash came after AWS accepted a change, the
decision's audit outcome says that AWS already had it (read back), not that it was applied again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.pipeline_harness import (
    MUTATING,
    Fault,
    Interceptor,
    intercepted_moto,
    pipeline,
    reference,
)
from tests.tiers import long_suite_params

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

# The fast tier crashes here (decision stored but not announced; AWS changed but not recorded);
# `--tier slow` runs every other point.
FAST_SITES = ("plan:events.PutEvents", "act:lambda.PutProvisionedConcurrencyConfig")

CRASH = Fault("crash", "SimulatedCrash", 0)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "site_id" in metafunc.fixturenames:
        tier = metafunc.config.getoption("--tier")

        def every_site() -> list[str]:
            return [s.id for s in sorted({c.site for c in reference().cases if c.site.stage in ("plan", "act")})]

        metafunc.parametrize("site_id", long_suite_params(tier, FAST_SITES, every_site))


@pytest.fixture(scope="module")
def moto_and_interceptor() -> Iterator[tuple[Any, Interceptor]]:
    with intercepted_moto() as pair:
        yield pair


def test_the_crash_points_include_both_sides_of_the_aws_change() -> None:
    sites = {c.site for c in reference().cases}
    ops = {(s.stage, s.operation) for s in sites}
    assert ("plan", "PutItem") in ops and ("plan", "PutEvents") in ops  # decision stored / announced
    assert ("act", "PutProvisionedConcurrencyConfig") in ops and ("act", "PutFunctionConcurrency") in ops
    assert ("act", "UpdateEndpointWeightsAndCapacities") in ops
    assert ("act", "PutItem") in ops and ("act", "PutEvents") in ops  # state recorded / result announced


def test_a_crash_after_any_call_is_put_right_by_the_next_cycles(
    moto_and_interceptor: tuple[Any, Interceptor], site_id: str
) -> None:
    mock, interceptor = moto_and_interceptor
    ref = reference()
    site = ref.site(site_id)
    with pipeline(mock, interceptor) as p:
        p.break_cycle(site, CRASH)
        p.settle()
        p.assert_put_right(ref.final)
        if site.operation in MUTATING:
            resource = {"PutProvisionedConcurrencyConfig": "api", "PutFunctionConcurrency": "batch"}.get(
                site.operation, "ranker"
            )
            outcomes = " | ".join(r.outcome or "" for r in p.decisions(resource))
            assert "already" in outcomes, f"the audit trail does not say AWS already had it: {outcomes}"
