"""The status rules (forescale.status.classify) and the budget read from a decision's reason, as tables."""

from __future__ import annotations

import pytest

from forescale.runtime.models import (
    ActBackoff,
    AppliedState,
    DecisionRecord,
    DecisionStatus,
    InFlightOperation,
    Mode,
    TargetConfig,
    TargetKind,
)
from forescale.status import FORECAST_STALE_S, SAMPLES_STALE_S, budget_left_from_reason, classify

AT = 1_800_000_000


def cfg(mode: Mode = Mode.ACTIVE, policy: str = "predictive") -> TargetConfig:
    return TargetConfig(
        name="api",
        kind=TargetKind.LAMBDA_RESERVED,
        function_name="api",
        mode=mode,
        policy=policy,  # type: ignore[arg-type]
    )


def decision(status: DecisionStatus) -> DecisionRecord:
    return DecisionRecord(
        decision_id="api@1", target="api", decided_at=AT - 60, capacity=5, previous=3, recommended=5,
        policy="predictive", reason="r", mode=Mode.ACTIVE, status=status,
    )  # fmt: skip


IN_FLIGHT = AppliedState(
    target="api",
    in_flight=InFlightOperation(
        operation="provisioned-concurrency", decision_id="api@1", started_at=AT - 30, capacity=5
    ),
)
BACKING_OFF = AppliedState(
    target="api",
    backoff=ActBackoff(operation="put", error_code="AccessDenied", failures=1, since=AT - 60, until=AT + 120),
)
FRESH = AT - 60


@pytest.mark.parametrize(
    ("kwargs", "state", "why"),
    [
        ({}, "READY", "the plan is in effect"),
        ({"config": cfg(Mode.DRY_RUN)}, "READY", "recommending (dry-run)"),
        ({"paused": True, "applied": BACKING_OFF}, "PAUSED", "kill switch"),
        ({"applied": BACKING_OFF}, "FAILING", "AWS refused put (AccessDenied)"),
        ({"newest": decision(DecisionStatus.FAILED)}, "FAILING", "FAILED"),
        ({"sample": None}, "FALLBACK", "no demand sample in the last 3 h"),
        ({"sample": AT - SAMPLES_STALE_S - 1}, "FALLBACK", "no demand sample since"),
        ({"sample": AT - SAMPLES_STALE_S}, "READY", ""),
        ({"forecast": None}, "FALLBACK", "no forecast yet"),
        ({"forecast": AT - FORECAST_STALE_S - 1}, "FALLBACK", "the forecast is stale"),
        ({"forecast": None, "config": cfg(policy="reactive")}, "READY", ""),  # reactive uses no forecast
        ({"applied": IN_FLIGHT}, "ACTIVE", "AWS is applying"),
        ({"newest": decision(DecisionStatus.DEFERRED)}, "ACTIVE", "is deferred"),
        ({"newest": decision(DecisionStatus.DRY_RUN), "config": cfg(Mode.DRY_RUN)}, "READY", ""),
        ({"newest": decision(DecisionStatus.APPLIED)}, "READY", ""),
        ({"applied": IN_FLIGHT, "forecast": None}, "FALLBACK", "no forecast yet"),
    ],
)
def test_classify(kwargs: dict[str, object], state: str, why: str) -> None:
    args: dict[str, object] = {
        "config": cfg(),
        "paused": False,
        "applied": AppliedState(target="api"),
        "newest": None,
        "sample": FRESH,
        "forecast": AT - 3600,
    } | kwargs
    got = classify(
        args["config"],
        args["paused"],
        args["applied"],
        args["newest"],
        args["sample"],
        args["forecast"],
        AT,  # type: ignore[arg-type]
    )
    assert got[0] == state and why in got[1], got


@pytest.mark.parametrize(
    ("reason", "left"),
    [
        ("predictive [level]: ...; SLO 1.00%: 97% of the budget left over the last 24 h; headroom ×1.00", 0.97),
        ("predictive [level]: ...; SLO 0.50%: budget overspent by 141% over the last 24 h", -1.41),
        ("reactive: peak 3 req/s of the last 3 steps × 1.2", None),
    ],
)
def test_budget_left_from_reason(reason: str, left: float | None) -> None:
    assert budget_left_from_reason(reason) == left


def test_status_of_an_empty_table_says_so_under_the_header() -> None:
    from forescale.adapters.state import InMemoryStateStore
    from forescale.status import format_status, read_status, status_json

    report = read_status(InMemoryStateStore(), None, AT)
    assert format_status(report, "t").splitlines()[1:] == [
        "no targets registered: add one with `forescale targets add` (or `targets discover --apply`)"
    ]
    assert '"targets": []' in status_json(report)


def test_a_dry_run_target_without_aws_reads_is_listed_with_dashes() -> None:
    from forescale.adapters.state import InMemoryStateStore
    from forescale.status import COLUMNS, read_status, status_rows

    store = InMemoryStateStore()
    store.put_target(cfg(Mode.DRY_RUN, policy="reactive"))
    (row,) = status_rows(read_status(store, None, AT))
    cells = dict(zip(COLUMNS, row, strict=True))
    assert cells["STATE"] == "FALLBACK" and cells["IN AWS"] == "-" and cells["LAST DECISION"] == "none yet"
    assert cells["FORECAST"] == "not used" and cells["COLLECTED"] == "never" and cells["MODE"] == "dry-run"
