"""One validation layer at every entry (issue 15): non-finite and out-of-range numbers, and names that
are not what they claim to be, are refused with a message that names the field (and the target).

Entries covered here: the target config model (the CLI, tag discovery and stored items all build it),
the tag catalog parser, every event model through `parse_event`, guardrail settings, planner
snapshots, and the alarm-name → target mapping. The CLI itself and stored items read back from
DynamoDB are in tests/integration/test_admin_cli.py.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from forescale.adapters.events import RecordingPublisher
from forescale.adapters.state import InMemoryStateStore
from forescale.adapters.tagging import parse_catalog
from forescale.domain import snapshot
from forescale.domain.guardrails import GuardrailSettings
from forescale.domain.planner import StepInput
from forescale.runtime.events import MODELS, EventError, parse_event
from forescale.runtime.models import MAX_INT32, Mode, TargetConfig
from forescale.runtime.plan import build_planner
from forescale.runtime.react import ReactService, alarm_target_candidates

EVENTS = Path(__file__).resolve().parents[2] / "events"
START = 1_795_392_000  # 2026-11-23 00:00 UTC
POISON = [math.inf, -math.inf, math.nan, -7, 1e300]


def lambda_config(**changes: Any) -> dict[str, Any]:
    return {"name": "api", "kind": "lambda-provisioned", "function_name": "api", "qualifier": "live"} | changes


def sagemaker_config(**changes: Any) -> dict[str, Any]:
    catalog = [{"name": "ml.g4dn.xlarge", "price_per_hour": 0.736, "capacity_rps": 40}]
    base = {"name": "ep/v", "kind": "sagemaker-instance-count", "endpoint_name": "ep", "variant_name": "v"}
    return base | {"catalog": catalog, "min_capacity": 1} | changes


def refused_fields(raw: dict[str, Any]) -> set[str]:
    with pytest.raises(ValidationError) as err:
        TargetConfig.model_validate(raw)
    return {".".join(str(p) for p in e["loc"]) for e in err.value.errors()}


# ---------------------------------------------------------------- target config (CLI, discovery, stored items)


@pytest.mark.parametrize("value", POISON)
@pytest.mark.parametrize(
    "field", ["min_capacity", "max_capacity", "slo_miss", "duration_s", "memory_mb", "lead_up_s", "version"]
)
def test_given_a_poisoned_number_in_a_target_config_then_it_is_refused_naming_the_field(
    field: str, value: float
) -> None:
    assert field in refused_fields(lambda_config(**{field: value}))


@pytest.mark.parametrize("value", POISON)
@pytest.mark.parametrize("field", ["price_per_hour", "capacity_rps"])
def test_given_a_poisoned_catalog_number_then_it_is_refused_naming_the_entry_and_field(
    field: str, value: float
) -> None:
    raw = sagemaker_config()
    raw["catalog"] = [raw["catalog"][0] | {field: value}]
    assert f"catalog.0.{field}" in refused_fields(raw)


@pytest.mark.parametrize("value", POISON)
@pytest.mark.parametrize(
    "field", ["max_step_up", "max_step_down", "stabilisation_window_s", "scale_in_cooldown_s", "budget_per_hour"]
)
def test_given_a_poisoned_guardrail_then_it_is_refused_naming_the_field(field: str, value: float) -> None:
    assert f"guardrails.{field}" in refused_fields(lambda_config(guardrails={field: value}))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_capacity": MAX_INT32 + 1}, "max_capacity"),  # Lambda and SageMaker counts are 32-bit
        ({"guardrails": {"max_step_up": 2**31}}, "guardrails.max_step_up"),
        ({"memory_mb": 10**30}, "memory_mb"),  # Lambda memory is 128..10,240 MB
        ({"memory_mb": 64}, "memory_mb"),
        ({"duration_s": 901.0}, "duration_s"),  # Lambda runs 15 minutes at most
        ({"lead_up_s": 10**9}, "lead_up_s"),  # made a planning run hang (see the test below)
        ({"function_name": "arn:aws:lambda:us-east-1:999999999999:function:theirs"}, "function_name"),
        ({"function_name": "999999999999:function:theirs"}, "function_name"),
        ({"function_name": "pay\u202eload"}, "function_name"),  # a right-to-left override
        ({"function_name": "a\nb"}, "function_name"),
        ({"function_name": "x" * 65}, "function_name"),
        ({"qualifier": "$latest"}, "qualifier"),
        ({"qualifier": "$LATEST"}, "qualifier"),
        ({"qualifier": "live\u0000"}, "qualifier"),
    ],
)
def test_given_a_value_aws_would_not_accept_then_the_config_is_refused_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    assert field in refused_fields(lambda_config(**changes))


def test_given_the_largest_values_aws_accepts_then_the_config_is_valid() -> None:
    cfg = TargetConfig.model_validate(
        lambda_config(max_capacity=MAX_INT32, memory_mb=10_240, duration_s=900.0, lead_up_s=3600, qualifier="7")
    )
    assert cfg.max_capacity == MAX_INT32 and cfg.to_target().lead_times.up_s == 3600


def test_given_the_longest_lead_allowed_then_a_decision_covers_an_hour_of_steps_not_millions() -> None:
    # Why lead_up_s=1e9 hung: the policy counts the steps a decision covers one by one (16.7 million
    # for 1e9 s) and then evaluates every expert over each of them, every step.
    cfg = TargetConfig.model_validate(lambda_config(lead_up_s=3600, policy="predictive"))
    planner = build_planner(cfg)
    assert planner.policy.horizon_steps == 60  # type: ignore[attr-defined]
    planner.observe(START, 10.0)
    assert planner.decide(StepInput(now=START + 60, applied=None)).capacity >= 0


@pytest.mark.parametrize("bad", ["nan", "-nan", "-1"])
def test_given_budget_per_hour_not_a_number_at_least_zero_then_guardrail_settings_refuse_it(bad: str) -> None:
    # NaN used to pass (`nan < 0` is False) and made apply_chain raise later; inf means unlimited.
    with pytest.raises(ValueError, match="budget_per_hour"):
        GuardrailSettings(budget_per_hour=float(bad))
    assert GuardrailSettings(budget_per_hour=math.inf).budget_per_hour == math.inf


# ---------------------------------------------------------------- tag discovery's catalog parser


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("ml.g4dn.xlarge=inf/75", "price_per_hour"),
        ("ml.g4dn.xlarge=nan/75", "price_per_hour"),
        ("ml.g4dn.xlarge=-1/75", "price_per_hour"),
        ("ml.g4dn.xlarge=0.736/inf", "capacity_rps"),
        ("ml.g4dn.xlarge=0.736/1e400", "capacity_rps"),
        ("ml.g4dn.xlarge=1e300/75", "price_per_hour"),
    ],
)
def test_given_a_catalog_tag_with_a_poisoned_number_then_it_is_refused_naming_the_field(entry: str, field: str) -> None:
    with pytest.raises(ValueError, match=rf"{re.escape(entry)}.*{field}"):
        parse_catalog(entry)


# ---------------------------------------------------------------- every event model


def numeric_fields() -> list[tuple[str, str]]:
    out = []
    for path in sorted(EVENTS.glob("*.json")):
        detail = json.loads(path.read_text())["detail"]
        out += [(path.name, k) for k, v in detail.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    return out


@pytest.mark.parametrize("value", ["inf", "nan", "-1e30", "1e30"])
@pytest.mark.parametrize(("name", "field"), numeric_fields())
def test_given_a_poisoned_number_in_any_event_then_it_is_refused_naming_the_field(
    name: str, field: str, value: str
) -> None:
    event = json.loads((EVENTS / name).read_text())
    now = int(datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp())
    event["detail"][field] = float(value)
    with pytest.raises(EventError, match=rf"detail\.{field}"):
        parse_event(event, tuple(MODELS), now=now)


def test_numeric_fields_of_every_event_model_are_sampled() -> None:
    seen = {name for name, _ in numeric_fields()}
    assert seen >= {
        "demand-sample.json",
        "samples-collected.json",
        "demand-above-forecast.json",
        "forecast-ready.json",
        "decision-made.json",
    }


# ---------------------------------------------------------------- planner snapshots


def tamper(blob: bytes, section: str, field: str, value: Any) -> bytes:
    """The snapshot with one field of its JSON header replaced (as someone with table access could)."""
    raw = zlib.decompress(blob)
    (size,) = struct.unpack("<I", raw[4:8])
    body = json.loads(raw[8 : 8 + size])
    body[section][field] = value
    header = json.dumps(body).encode()
    return zlib.compress(raw[:4] + struct.pack("<I", len(header)) + header + raw[8 + size :])


def used_planner() -> tuple[TargetConfig, bytes]:
    cfg = TargetConfig.model_validate(lambda_config(max_capacity=500))
    planner = build_planner(cfg)
    for i in range(30):
        planner.observe(START + 60 * i, 10.0 + i)
        planner.decide(StepInput(now=START + 60 * (i + 1), applied=None))
    return cfg, snapshot.dump(planner)


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("planner", "requested", "x"),
        ("planner", "requested", -7),
        ("planner", "requested", 1e300),
        ("planner", "requested", 2**31),
        ("planner", "requested", True),
        ("planner", "last_decided_at", 9_999_999_060),  # a step "decided" in 2286 would freeze the target
        ("planner", "recent", {"q": [[START, -7]]}),
        ("planner", "refit_requested", 1),
        ("state", "level", math.nan),
        ("state", "level", "x"),
        ("state", "steps_seen", -1),
        ("state", "day_steps", 10**12),
        ("state", "upper_band", [1, 2]),
    ],
)
def test_given_a_tampered_snapshot_then_load_raises_snapshot_error_naming_the_field(
    section: str, field: str, value: Any
) -> None:
    cfg, blob = used_planner()
    with pytest.raises(snapshot.SnapshotError, match=rf"\.{field}: "):
        snapshot.load(build_planner(cfg), tamper(blob, section, field, value))


def test_given_a_snapshot_that_decided_after_now_then_load_with_not_after_refuses_it() -> None:
    cfg, blob = used_planner()
    decided = snapshot.load(build_planner(cfg), blob).last_decided_at
    assert decided is not None
    assert snapshot.load(build_planner(cfg), blob, not_after=decided).last_decided_at == decided
    with pytest.raises(snapshot.SnapshotError, match=r"Planner\.last_decided_at"):
        snapshot.load(build_planner(cfg), blob, not_after=decided - 60)


# ---------------------------------------------------------------- alarm name → target (item 12)


def test_given_target_names_containing_the_separator_then_the_longest_registered_one_gets_the_alarm() -> None:
    assert alarm_target_candidates("forescale-api--canary--spillover", "forescale-") == [
        "api--canary--spillover",
        "api--canary",
        "api",
    ]
    store, bus = InMemoryStateStore(), RecordingPublisher()
    for name in ("api", "api--canary"):
        store.put_target(
            TargetConfig.model_validate(
                lambda_config(name=name, function_name=name.replace("--", "-"), mode=Mode.ACTIVE)
            )
        )
    react = ReactService(store, bus)
    canary = react.on_alarm("forescale-api--canary--spillover", "ALARM", START)
    plain = react.on_alarm("forescale-api--spillover", "ALARM", START + 120)
    assert canary.scaled_out + canary.unchanged == ["api--canary"]
    assert plain.scaled_out + plain.unchanged == ["api"]
    assert react.on_alarm("forescale-ghost--x", "ALARM", START).ignored == ["forescale-ghost--x"]
