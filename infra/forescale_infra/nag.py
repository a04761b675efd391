"""cdk-nag (3.x) wiring: the AwsSolutions pack as a synth-time validation plugin, and acknowledgements.

cdk-nag 3 runs through CDK's own policy-validation framework: `Validations.of(app).add_plugins(...)`
makes `synth` fail on any finding that is not acknowledged, and `Validations.of(construct).acknowledge`
records an acknowledgement (with its reason) on the construct. Every acknowledgement in this app goes
through `acknowledge()` below, which refuses vague reasons.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

# Reasons shorter than this are almost always "not needed" / "ok": say *why* instead.
MIN_REASON_CHARS = 40


def add_aws_solutions_checks(app: App) -> AwsSolutionsChecks:
    """Register the AwsSolutions pack on the app: `app.synth()` then fails on unacknowledged findings."""
    pack = AwsSolutionsChecks(app)
    Validations.of(app).add_plugins(pack)
    return pack


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (`AwsSolutions-IAM5[Resource::*]` style ids) on `scope` and below."""
    if not rule_id.startswith("AwsSolutions-"):
        raise ValueError(f"acknowledge: {rule_id!r} is not an AwsSolutions rule id")
    if len(reason.strip()) < MIN_REASON_CHARS:
        raise ValueError(f"acknowledge {rule_id}: the reason must explain why (≥ {MIN_REASON_CHARS} chars): {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
