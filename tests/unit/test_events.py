"""Every file in events/ is a contract: it parses with its model, and broken copies fail clearly."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from forescale.runtime.events import MODELS, EventError, parse_event
from forescale.runtime.models import CLOCK_SKEW_S, MAX_EVENT_AGE_S

EVENTS = Path(__file__).resolve().parents[2] / "events"
FILES = sorted(EVENTS.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def test_every_detail_type_has_an_example_file() -> None:
    seen = {json.loads(f.read_text())["detail-type"] for f in FILES}
    assert seen == set(MODELS)


def sent_at(event: dict[str, Any]) -> int:
    """The envelope's time (epoch s): the clock at which the example is realistic."""
    return int(datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_given_an_example_event_when_parsed_then_its_model_accepts_it(path: Path) -> None:
    event = json.loads(path.read_text())
    parsed = parse_event(event, tuple(MODELS), now=sent_at(event))
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


# Regressions found by tests/unit/test_event_fuzz.py: each raised something other than EventError, or
# was accepted although the rest of forescale cannot use it.


def test_given_an_int_over_4300_digits_then_it_is_rejected_as_not_json() -> None:
    for place in ("id", "detail-type", "detail"):  # the error message used to format the id and detail-type
        event = load("demand-sample.json")
        event[place] = 10**5000
        with pytest.raises(EventError, match="cannot be encoded as JSON: Exceeds the limit"):
            parse_event(event, tuple(MODELS))


def test_given_nesting_deeper_than_the_recursion_limit_then_it_is_rejected() -> None:
    event = load("scheduled-event.json")
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    event["detail"] = {"x": deep}
    with pytest.raises(EventError, match="cannot be encoded as JSON: maximum recursion depth"):
        parse_event(event, tuple(MODELS))


def test_given_a_non_string_key_then_it_is_rejected() -> None:
    event = load("demand-sample.json")
    event["detail"][(1, 2)] = 1
    with pytest.raises(EventError, match="cannot be encoded as JSON: keys must be str"):
        parse_event(event, tuple(MODELS))


@pytest.mark.parametrize(
    ("name", "mutate", "expected"),
    [
        ("forecast-ready.json", lambda e: e.update({"id": "\ud800", "detail-type": "x"}), "event \\ud800: detail-type"),
        ("forecast-ready.json", lambda e: e.update({"detail-type": "\udfff"}), "detail-type '\\udfff'"),
        ("decision-made.json", lambda e: e.update(id="a\ud800b", detail=[]), "event a\\ud800b is invalid"),
    ],
)
def test_given_a_lone_surrogate_then_the_error_can_be_logged_as_utf8(name: str, mutate: Any, expected: str) -> None:
    """JSON allows "\\ud800"; a message holding it could not be written to the log, so it is escaped."""
    event = load(name)
    mutate(event)
    with pytest.raises(EventError) as err:
        parse_event(event, tuple(MODELS))
    assert expected in str(err.value)
    str(err.value).encode("utf-8")


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("demand-sample.json", "requests"),
        ("demand-sample.json", "latency_ms"),
        ("demand-above-forecast.json", "observed_rps"),
        ("decision-made.json", "urgency"),
    ],
)
def test_given_1e999_in_a_detail_then_it_is_rejected_as_not_finite(name: str, field: str) -> None:
    """JSON's 1e999 decodes to inf, which passed `>= 0`; DynamoDB cannot store it, nor JSON carry it on."""
    event = load(name)
    event["detail"][field] = json.loads("1e999")
    with pytest.raises(EventError, match=rf"detail\.{field}: Input should be a finite number"):
        parse_event(event, tuple(MODELS))


def test_given_a_demand_sample_longer_than_a_day_then_it_is_rejected() -> None:
    """ingest stores one item per minute of `period_s`: a huge period would exhaust the function."""
    event = load("demand-sample.json")
    event["detail"]["period_s"] = 60 * 10**9
    with pytest.raises(EventError, match=r"detail\.period_s: Input should be less than or equal to 86400"):
        parse_event(event, tuple(MODELS))
    event["detail"]["period_s"] = 86_400
    assert parse_event(event, tuple(MODELS)).detail.period_s == 86_400


def test_given_a_huge_id_then_the_message_shows_only_its_start() -> None:
    event = load("decision-made.json")
    event["id"] = "x" * 100_000
    event["detail"]["capacity"] = -1
    with pytest.raises(EventError) as err:
        parse_event(event, tuple(MODELS))
    assert "x" * 100 + "... (100000 characters) is invalid: detail.capacity" in str(err.value)
    assert len(str(err.value)) < 500


# ---------------------------------------------------------------- times and sources (issue 15, items 2 and 9)

TIMED = [
    ("demand-above-forecast.json", "timestamp"),
    ("samples-collected.json", "period_start"),
    ("forecast-ready.json", "issued_at"),
    ("decision-made.json", "decided_at"),
    ("demand-sample.json", "timestamp"),
]


@pytest.mark.parametrize(("name", "field"), TIMED)
@pytest.mark.parametrize("offset_s", [3600, 400_000_000, -2 * 86_400])
def test_given_a_time_far_from_now_then_the_event_is_refused_naming_the_field(
    name: str, field: str, offset_s: int
) -> None:
    # Given an example event with one of its times an hour or 12 years ahead of the receiver's clock,
    # or two days behind it (a forged DemandAboveForecast "from" the future pinned a target at max).
    event = load(name)
    now = sent_at(event)
    event["detail"][field] = now - now % 60 + offset_s
    with pytest.raises(EventError, match=rf"detail\.{field}"):
        parse_event(event, tuple(MODELS), now=now)


def test_given_the_forged_demand_above_forecast_of_the_issue_then_it_is_refused() -> None:
    event = load("demand-above-forecast.json")
    event["detail"].update(timestamp=9_999_999_000, observed_rps=1e9)
    with pytest.raises(EventError, match=r"detail\.timestamp"):
        parse_event(event, tuple(MODELS), now=sent_at(event))


def test_given_a_sample_whose_period_ends_in_the_future_then_it_is_refused() -> None:
    event = load("demand-sample.json")
    event["detail"]["period_s"] = 86_400  # starts a minute ago, "covers" the coming day
    with pytest.raises(EventError, match=r"detail\.timestamp \+ period_s: \d+ is \d+ s after now"):
        parse_event(event, tuple(MODELS), now=sent_at(event))


def test_given_times_within_the_skew_and_the_age_limit_then_they_are_accepted() -> None:
    event = load("decision-made.json")
    now = sent_at(event)
    for decided_at in (now + CLOCK_SKEW_S, now - MAX_EVENT_AGE_S):
        event["detail"]["decided_at"] = decided_at
        assert parse_event(event, tuple(MODELS), now=now).detail.decided_at == decided_at


@pytest.mark.parametrize("source", ["forescale", "aws.events"])
def test_given_a_demand_sample_from_forescales_or_awss_source_then_it_is_refused(source: str) -> None:
    event = load("demand-sample.json")
    event["source"] = source
    with pytest.raises(EventError, match=r"source: .*not a producer's source"):
        parse_event(event, tuple(MODELS), now=sent_at(event))


@pytest.mark.parametrize("name", ["samples-collected.json", "decision-made.json", "demand-above-forecast.json"])
def test_given_an_internal_event_from_a_producers_source_then_it_is_refused(name: str) -> None:
    event = load(name)
    event["source"] = load("demand-sample.json")["source"]
    with pytest.raises(EventError, match=r"source: Input should be 'forescale'"):
        parse_event(event, tuple(MODELS), now=sent_at(event))
