"""Every file in events/ is a contract: it parses with its model, and broken copies fail clearly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from forescale.runtime.events import MODELS, EventError, parse_event

EVENTS = Path(__file__).resolve().parents[2] / "events"
FILES = sorted(EVENTS.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def test_every_detail_type_has_an_example_file() -> None:
    seen = {json.loads(f.read_text())["detail-type"] for f in FILES}
    assert seen == set(MODELS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_given_an_example_event_when_parsed_then_its_model_accepts_it(path: Path) -> None:
    event = json.loads(path.read_text())
    parsed = parse_event(event, tuple(MODELS))
    assert parsed.id == event["id"]
    assert isinstance(parsed, MODELS[event["detail-type"]])


@pytest.mark.parametrize(
    ("name", "mutate", "expected"),
    [
        ("decision-made.json", lambda e: e["detail"].pop("target"), "detail.target: Field required"),
        ("decision-made.json", lambda e: e["detail"].update(capacity=-1), "detail.capacity"),
        ("decision-made.json", lambda e: e["detail"].update(mode="yolo"), "detail.mode"),
        ("demand-sample.json", lambda e: e["detail"].update(requests=-5), "detail.requests"),
        ("demand-sample.json", lambda e: e["detail"].update(timestamp="soon"), "detail.timestamp"),
        ("forecast-ready.json", lambda e: e["detail"].update(surprise=1), "detail.surprise"),
        ("forecast-ready.json", lambda e: e.update(source="someone.else"), "source"),
        ("alarm-state-change.json", lambda e: e["detail"]["state"].update(value="MAYBE"), "detail.state.value"),
        ("scheduled-event.json", lambda e: e.pop("time"), "time"),
    ],
)
def test_given_a_broken_event_when_parsed_then_the_error_names_the_field(name: str, mutate: Any, expected: str) -> None:
    event = copy.deepcopy(load(name))
    mutate(event)
    with pytest.raises(EventError) as err:
        parse_event(event, tuple(MODELS))
    assert expected in str(err.value)
    assert event["id"] in str(err.value) or expected == "time"


def test_given_a_wrong_detail_type_then_the_error_says_what_is_handled() -> None:
    with pytest.raises(EventError, match=r"not handled here; expected one of \['forescale.DecisionMade'\]"):
        parse_event(load("forecast-ready.json"), ("forescale.DecisionMade",))


@pytest.mark.parametrize("event", [None, [], "text", 42])
def test_given_a_non_object_then_it_is_rejected(event: Any) -> None:
    with pytest.raises(EventError, match="must be a JSON object"):
        parse_event(event, tuple(MODELS))


def test_given_a_huge_payload_then_it_is_rejected_before_parsing() -> None:
    event = load("samples-collected.json")
    event["detail"]["targets"] = ["t" * 100] * 3000
    with pytest.raises(EventError, match="over EventBridge's 262144-byte limit"):
        parse_event(event, tuple(MODELS))
