"""The account's concurrency headroom check shared by the Lambda actuators (GetAccountSettings, cached)."""

from __future__ import annotations

from forescale.domain.guardrails import LAMBDA_MIN_UNRESERVED
from forescale.runtime.act.base import AccountHeadroom, ActRun, Outcome
from forescale.runtime.models import DecisionStatus


def refuse_headroom(headroom: AccountHeadroom, label: str, want: int, grow: int, run: ActRun) -> Outcome | None:
    """A FAILED outcome when `grow` more executions would leave under 100 unreserved; None when it fits."""
    room = headroom.reservable(run.now)
    if grow <= room:
        return None
    headroom.forget()  # read the account again before the next attempt: others may have freed some
    left = room + LAMBDA_MIN_UNRESERVED - grow
    return Outcome(
        DecisionStatus.FAILED,
        "headroom-check",
        f"refused: {want} for {label} (+{grow}) would leave {left} unreserved concurrency in the account; "
        f"AWS keeps at least {LAMBDA_MIN_UNRESERVED} unreserved (GetAccountSettings)",
        error_code="AccountHeadroom",
    )
