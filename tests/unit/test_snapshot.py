"""Planner snapshots are lossless, and a bad blob is refused rather than half-trusted."""

from __future__ import annotations

import json
import math
import struct
import zlib

import pytest

from forescale.domain import snapshot
from forescale.domain.planner import Planner, StepInput
from forescale.domain.policies import POLICY_NAMES, make_policy
from forescale.replay.workload import generate


@pytest.mark.parametrize("policy", POLICY_NAMES)
@pytest.mark.parametrize("target_name", ["api-steady", "sparse-hook", "gpu-endpoint"])
def test_given_a_planner_restored_every_step_then_it_decides_exactly_like_one_that_never_stopped(
    policy: str, target_name: str
) -> None:
    trace = generate(days=0.25, step_s=60, seed=11, targets=[target_name])
    tt = trace.targets[target_name]
    target = tt.to_target()
    live = Planner(target, make_policy(policy, target, 60))
    blob: bytes | None = None
    for i in range(trace.steps):
        restored = Planner(target, make_policy(policy, target, 60))
        if blob is not None:
            snapshot.load(restored, blob)
        if i:
            rate = tt.requests[i - 1] / 60 if i % 97 else None  # with some missing samples
            live.observe(trace.time(i - 1), rate)
            restored.observe(trace.time(i - 1), rate)
        a = live.decide(StepInput(now=trace.time(i)))
        b = restored.decide(StepInput(now=trace.time(i)))
        assert (a.capacity, a.instance_type, a.reason, a.shaped_by) == (
            b.capacity,
            b.instance_type,
            b.reason,
            b.shaped_by,
        )
        blob = snapshot.dump(restored)


def _planner() -> Planner:
    trace = generate(days=0.1, step_s=60, seed=1, targets=["api-steady"])
    target = trace.targets["api-steady"].to_target()
    p = Planner(target, make_policy("predictive", target, 60))
    for i in range(30):
        p.observe(trace.time(i), 5.0 + i)
        p.decide(StepInput(now=trace.time(i + 1)))
    return p


def _rewrite(blob: bytes, edit: object) -> bytes:
    raw = zlib.decompress(blob)
    (size,) = struct.unpack("<I", raw[4:8])
    body = json.loads(raw[8 : 8 + size])
    edit(body)  # type: ignore[operator]
    header = json.dumps(body).encode()
    return zlib.compress(raw[:4] + struct.pack("<I", len(header)) + header + raw[8 + size :])


@pytest.mark.parametrize(
    ("make_blob", "message"),
    [
        (lambda b: b"garbage", "not readable"),
        (lambda b: zlib.compress(b"FSP1old"), "older format"),
        (lambda b: _rewrite(b, lambda body: body.update(policy="reactive")), "policy reactive"),
        (lambda b: _rewrite(b, lambda body: body["state"].update(evil={"o": {}})), "does not know: ['evil']"),
        (lambda b: _rewrite(b, lambda body: body["state"].update(history={"o": {"__class__": 1}})), "snapshot"),
        (lambda b: _rewrite(b, lambda body: body["state"]["day_window"].update(q={"f": 0, "n": 10**9})), "outside"),
    ],
)
def test_given_a_damaged_or_foreign_blob_then_load_refuses_it(make_blob: object, message: str) -> None:
    good = snapshot.dump(_planner())
    fresh = _planner()
    with pytest.raises(snapshot.SnapshotError, match=message.replace("[", r"\[").replace("]", r"\]")):
        snapshot.load(fresh, make_blob(good))  # type: ignore[operator]


def test_given_a_snapshot_from_before_a_field_was_added_then_it_restores_and_the_field_starts_fresh() -> None:
    # An upgrade that adds policy state (here the SLO budget's controller) must not reset every planner.
    planner = _planner()
    planner.policy.log_headroom = 0.25
    planner.policy.level = 42.0
    older = _rewrite(snapshot.dump(planner), lambda body: body["state"].pop("log_headroom"))
    restored = snapshot.load(_planner(), older)
    assert restored.policy.level == 42.0
    assert restored.policy.log_headroom == 0.0


def test_given_a_day_of_state_then_the_snapshot_fits_a_dynamodb_item() -> None:
    trace = generate(days=1.2, step_s=60, seed=5, targets=["batch-spiky"])
    tt = trace.targets["batch-spiky"]
    target = tt.to_target()
    p = Planner(target, make_policy("predictive", target, 60))
    for i in range(trace.steps - 1):
        p.observe(trace.time(i), tt.requests[i] / 60)
        p.decide(StepInput(now=trace.time(i + 1)))
    assert len(snapshot.dump(p)) < 350_000  # DynamoDB items are at most 400 KB


def test_given_a_planner_that_never_decided_then_its_snapshot_restores() -> None:
    # A new target's first checkpoint is written before any step: upper_band is still +inf (unbounded).
    trace = generate(days=0.1, step_s=60, seed=1, targets=["api-steady"])
    target = trace.targets["api-steady"].to_target()
    blob = snapshot.dump(Planner(target, make_policy("predictive", target, 60)))
    restored = snapshot.load(Planner(target, make_policy("predictive", target, 60)), blob)
    assert restored.policy.upper_band == math.inf  # type: ignore[attr-defined]
