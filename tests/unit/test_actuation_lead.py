"""Scale-out or scale-in is judged against the capacity in effect, not the last request (the yardstick's rule)."""

from __future__ import annotations

import pytest

from forescale.domain.targets import InstanceType, LeadTimes, Target, TargetKind
from forescale.replay.actuation import ActuationModel

LAMBDA = Target(name="fn", kind=TargetKind.LAMBDA_PROVISIONED, lead=LeadTimes(up_s=120, down_s=0, type_change_s=0))
ENDPOINT = Target(
    name="ep",
    kind=TargetKind.SAGEMAKER_INSTANCE_COUNT,
    catalog=(InstanceType("ml.g5.xlarge", 1.408, 29.2),),
    min_capacity=1,
    lead=LeadTimes(up_s=360, down_s=60, type_change_s=600),
)


@pytest.mark.parametrize(
    ("target", "initial", "lowered_lands_at"),
    [
        # Lambda: 10 in effect; 21 then 15 at +10 s. 15 > 10 is still a scale-out: it lands 120 s after it was asked.
        (LAMBDA, 10, 1_010 + 120),
        # SageMaker: same, with the 360 s scale-out lead instead of the 60 s scale-in lead.
        (ENDPOINT, 10, 1_010 + 360),
    ],
)
def test_given_a_scale_out_still_landing_when_it_is_lowered_then_the_lower_request_takes_the_scale_out_lead(
    target: Target, initial: int, lowered_lands_at: int
) -> None:
    model = ActuationModel(target, initial, target.instance_type if not target.is_lambda else None)
    model.record(1_000, 21, None)
    model.record(1_010, 15, None)

    up_s = target.lead_times.up_s
    assert model.at(1_000 + up_s - 1)[0] == 10, "nothing new is usable before the scale-out lead has passed"
    assert model.at(1_000 + up_s)[0] == 21, "the first request lands first"
    assert model.at(lowered_lands_at - 1)[0] == 21
    assert model.at(lowered_lands_at)[0] == 15
    # 21 lands at 1_000 + lead too, but the later decision (15) rules once both are in effect.
    assert model.at(lowered_lands_at + 600)[0] == 15


def test_given_the_scale_out_has_landed_when_capacity_is_lowered_then_it_is_a_scale_in() -> None:
    model = ActuationModel(ENDPOINT, 10, "ml.g5.xlarge")
    model.record(1_000, 21, None)
    assert model.at(1_360)[0] == 21
    model.record(1_400, 15, None)
    assert model.at(1_459)[0] == 21
    assert model.at(1_460)[0] == 15, "below what is in effect: the 60 s scale-in lead"


def test_given_a_request_below_what_is_in_effect_while_scaling_out_then_it_takes_the_scale_in_lead() -> None:
    model = ActuationModel(LAMBDA, 10, None)
    model.record(1_000, 21, None)
    model.record(1_010, 8, None)  # below the 10 in effect: a scale-in, 0 s lead
    assert model.at(1_010)[0] == 8
    assert model.at(1_200)[0] == 8, "the earlier 21 landing later does not override the later decision"
