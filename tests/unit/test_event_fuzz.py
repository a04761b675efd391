"""Fuzzing the event parsers: whatever the input, `parse_event` returns the model for the event's
detail-type or raises `EventError` (what handlers treat as a bad event) with a message that says what
is wrong: a field path for every complaint of a model. Nothing else may escape.

Four strategies × 2,500 examples = 10,000 generated inputs:
1. arbitrary JSON values as whole events: scalars (nan, ±inf, huge ints and floats, unicode with lone
   surrogates), lists and objects nested at random, and envelope-shaped objects with a known detail-type;
2. mutations of every example in events/: a key deleted, a value replaced by an arbitrary JSON value,
   a wrong type, a huge string, unicode, an extra key, a value nested deeper, at any depth; an unmutated
   example must be accepted;
3. valid events generated from the models, which must be accepted and survive a JSON round trip;
4. `lambda_support.parse_or_reject`, which adds a log line and the `InvalidEvents` metric to a
   rejection: same outcome as `parse_event`, and the log line is always written (as UTF-8).
"""

from __future__ import annotations

import copy
import io
import json
import math
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from forescale.runtime import lambda_support
from forescale.runtime.events import MAX_EVENT_BYTES, MODELS, EventError, parse_event
from forescale.runtime.models import DETAIL_TYPES, DecisionStatus, Mode
from forescale.runtime.observability import logger, metrics
from tests.tiers import examples

FUZZ = settings(max_examples=examples(2500), deadline=None, suppress_health_check=[HealthCheck.too_slow])

EVENTS = Path(__file__).resolve().parents[2] / "events"
EXAMPLES = {p.name: json.loads(p.read_text()) for p in sorted(EVENTS.glob("*.json"))}
ALL = tuple(MODELS)
ENVELOPE = ("version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail")
FIELDS = sorted(
    {name for model in DETAIL_TYPES.values() for name in model.model_fields}
    | {"alarmName", "state", "previousState", "configuration", "value", "reason", "timestamp"}
)
# Rejections that are not a model's complaint: what parse_event's message says, and a label for the stats.
REASONS = {
    "the event must be a JSON object, got ": "not an object",
    "the event cannot be encoded as JSON: ": "not JSON",
    "-byte limit": "too large",
    " is not handled here; expected one of [": "detail-type not handled",
    " s after now (": "a time in the future",  # `detail.<field>: <t> is <n> s after now (<now>)`
    " s before now (": "a time too long ago",
}


def printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_rejection(exc: EventError) -> str:
    """The message is non-empty, loggable as UTF-8, and names the field of every model complaint."""
    message = str(exc)
    assert message, "an EventError must say what is wrong"
    message.encode("utf-8")  # never a lone surrogate: the handlers log it
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        paths = [".".join(str(p) for p in err["loc"]) for err in cause.errors(include_url=False)]
        assert paths
        for path in paths:
            assert path, f"a model complaint without a field: {message}"
            assert f"{printable(path)}: " in message, f"{path!r} is not named in {message!r}"
        return "field"
    labels = [label for reason, label in REASONS.items() if reason in message]
    assert labels, f"unexplained rejection: {message!r}"
    return labels[0]


def finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return True


def attempt(raw: Any, accepted: tuple[str, ...] = ALL, now: int | None = None) -> Any:
    """The parsed model, or None for an `EventError`; any other exception escapes (and fails the test)."""
    try:
        parsed = parse_event(raw, accepted, now)
    except EventError as exc:
        event(f"rejected: {check_rejection(exc)}")
        return None
    event(f"accepted: {type(parsed).__name__}")
    assert parsed.detail_type in accepted
    assert type(parsed) is MODELS[parsed.detail_type]
    if parsed.detail_type in DETAIL_TYPES:  # forescale's own details: every number is finite
        assert finite(parsed.detail.model_dump())
    return parsed


# ------------------------------------------------------------------------------- arbitrary JSON values

any_char = st.characters(exclude_categories=())  # lone surrogates included: JSON can carry "\ud800"
texts = st.text(any_char, max_size=12) | st.sampled_from(["", " ", "ü", "🙂", "\x00", "\ud800", "ℌ", "1e999"])
# Over Python's 4300-digit limit for int <-> str; built by a map so that no strategy's repr holds one.
huge_ints = st.sampled_from([4300, 5000]).map(lambda digits: 10**digits) | st.sampled_from([5000]).map(
    lambda d: -(10**d)
)
numbers = (
    st.integers()
    | st.floats()  # nan, ±inf and subnormals included
    | st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**40, 10**400, math.nan, math.inf, -math.inf, 1e308, 5e-324])
)
scalars = st.none() | st.booleans() | numbers | texts
keys = texts | st.sampled_from([*ENVELOPE, *FIELDS])
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=8,
)
accepted_sets = st.just(ALL) | st.lists(st.sampled_from(ALL), min_size=1, max_size=3, unique=True).map(tuple)


@st.composite
def envelope_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """An object with some envelope keys and a detail-type the parser knows, so the models see it."""
    doc = draw(st.dictionaries(st.sampled_from(ENVELOPE), scalars | json_values, max_size=5))
    doc["detail-type"] = draw(st.sampled_from(ALL))
    if draw(st.booleans()):
        doc["detail"] = draw(st.dictionaries(st.sampled_from(FIELDS) | texts, json_values, max_size=5))
    if draw(st.integers(0, 19)) == 7:  # rare (not 0: Hypothesis favours it), or they would hide the rest
        doc[draw(st.sampled_from(ENVELOPE))] = draw(huge_ints)
    return doc


@FUZZ
@given(raw=json_values | envelope_shaped(), accepted=accepted_sets)
def test_arbitrary_json_is_parsed_or_rejected_with_event_error(raw: Any, accepted: tuple[str, ...]) -> None:
    attempt(raw, accepted)


# -------------------------------------------------------------------------- mutations of real examples

WRONG_TYPES = [None, True, False, 0, -1, 1.5, "", "1", "x", [], {}, [1], {"a": 1}, math.nan, math.inf, 10**30]
DELETE = object()


def paths(value: Any) -> list[tuple[Any, ...]]:
    """Every place in the document, the root included (iterative: mutations nest deeply)."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while stack:
        prefix, node = stack.pop()
        out.append(prefix)
        if isinstance(node, dict):
            stack += [((*prefix, k), v) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [((*prefix, i), v) for i, v in enumerate(node)]
    return out


def get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def nest(value: Any, depth: int, as_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if as_list else {"value": value}
    return value


@st.composite
def mutation_value(draw: st.DrawFn, old: Any) -> Any:
    """A new value for `old`: a fresh copy, since a later mutation may change it in place (and Hypothesis
    hands out the same object, e.g. WRONG_TYPES' `{}`, to many test cases)."""
    return copy.deepcopy(draw(new_values(old)))


@st.composite
def new_values(draw: st.DrawFn, old: Any) -> Any:
    kind = draw(st.sampled_from(["json", "wrong-type", "huge-string", "unicode", "nest", "known", "huge-int"]))
    event(f"mutation: {kind}")
    if kind == "json":
        return draw(json_values)
    if kind == "wrong-type":
        return draw(st.sampled_from(WRONG_TYPES))
    if kind == "huge-string":
        n = draw(st.sampled_from([1_000, 5_000, 70_000, MAX_EVENT_BYTES + 1]))
        return draw(st.sampled_from(["x", "é", "🙂", "\ud800"])) * n
    if kind == "unicode":
        return draw(st.text(any_char, min_size=1, max_size=40))
    if kind == "nest":
        return nest(old, draw(st.integers(1, 40)), draw(st.booleans()))
    if kind == "known":  # a value another model or field would take
        return draw(st.sampled_from([*ALL, "forescale", "aws.events", "aws.cloudwatch", "ALARM", "active", "applied"]))
    return draw(huge_ints | st.sampled_from([2**64, 10**400]))


@st.composite
def mutated_examples(draw: st.DrawFn) -> tuple[str, int, Any]:
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    doc: Any = json.loads(json.dumps(EXAMPLES[name]))
    count = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
    for _ in range(count):
        places = paths(doc)
        path = draw(st.sampled_from(places))
        target = get(doc, path)
        action = draw(st.sampled_from(["delete", "replace", "replace", "add-key"]))
        if action == "add-key" and isinstance(target, dict):
            event("mutation: add-key")
            target[draw(keys)] = copy.deepcopy(draw(json_values))
        elif action == "delete" and path:
            event("mutation: delete")
            del get(doc, path[:-1])[path[-1]]
        elif path:
            get(doc, path[:-1])[path[-1]] = draw(mutation_value(target))
        else:
            doc = draw(mutation_value(doc))
    return name, count, doc


@FUZZ
@given(case=mutated_examples(), own_type_only=st.booleans())
def test_mutated_examples_are_parsed_or_rejected_with_event_error(
    case: tuple[str, int, Any], own_type_only: bool
) -> None:
    name, count, doc = case
    accepted = (EXAMPLES[name]["detail-type"],) if own_type_only else ALL
    parsed = attempt(doc, accepted)
    if count == 0:
        assert parsed is not None, f"the unmutated {name} must parse"
        assert parsed.id == EXAMPLES[name]["id"]


# ------------------------------------------------------------------------ valid events from the models

name_chars = string.ascii_letters + string.digits + "_.:/-"
target_names = st.text(name_chars, min_size=1, max_size=128)
plain_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=16)  # what pydantic's str accepts
ints = st.integers(-(2**63), 2**63 - 1)
counts = st.integers(0, 2**31 - 1)  # Lambda concurrency and instance counts are 32-bit
epochs = st.integers(0, 4_102_444_800)  # event times: up to 2100 (their distance from now is parse_event's)
# requests/s: above MAX_RATE_RPS (1e12) is more than any capacity serves and refused as poison
rates = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False) | st.integers(0, 10**9)
finite_json = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False) | plain_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(plain_text, inner, max_size=3),
    max_leaves=8,
)


def opt(**fields: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    return fields


DETAILS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "forescale.DemandSample": st.fixed_dictionaries(
        {"target": target_names, "timestamp": st.integers(946684800, 4102444800), "requests": rates},
        optional=opt(
            period_s=st.integers(1, 86_400),
            duration_ms=st.none()
            | st.floats(min_value=0, max_value=900_000, allow_nan=False, allow_infinity=False),  # Lambda's 15 minutes
            concurrency=st.none() | rates,
            spillover=st.none() | rates,
            throttles=st.none() | rates,
            latency_ms=st.none() | st.floats(min_value=0, max_value=3_600_000, allow_nan=False, allow_infinity=False),
            gpu_utilization=st.none() | st.floats(min_value=0, max_value=10_000, allow_nan=False, allow_infinity=False),
        ),
    ),
    "forescale.SamplesCollected": st.fixed_dictionaries(
        {"period_start": epochs, "targets": st.lists(target_names, max_size=5)},
        optional=opt(missing=st.lists(target_names, max_size=3)),
    ),
    "forescale.DemandAboveForecast": st.fixed_dictionaries(
        {"target": target_names, "timestamp": epochs, "observed_rps": rates, "upper_rps": rates}
    ),
    "forescale.ForecastReady": st.fixed_dictionaries(
        {"issued_at": epochs, "targets": st.lists(target_names, max_size=5)},
        optional=opt(shard=counts, models=st.dictionaries(plain_text, plain_text, max_size=3)),
    ),
    "forescale.DecisionMade": st.fixed_dictionaries(
        {
            "decision_id": plain_text,
            "target": target_names,
            "decided_at": epochs,
            "capacity": counts,
            "previous": counts,
            "mode": st.sampled_from([m.value for m in Mode]),
            "reason": st.text(st.characters(exclude_categories=("Cs",)), max_size=300),
        },
        optional=opt(instance_type=st.none() | plain_text, urgency=rates),
    ),
    "forescale.ActionApplied": st.fixed_dictionaries(
        {
            "decision_id": plain_text,
            "target": target_names,
            "action": plain_text,
            "status": st.sampled_from([s.value for s in DecisionStatus]),
        },
        optional=opt(
            capacity=st.none() | counts,
            instance_type=st.none() | plain_text,
            error_code=st.none() | plain_text,
            message=plain_text,
        ),
    ),
}
DETAILS["forescale.ActionFailed"] = DETAILS["forescale.ActionApplied"]
alarm_state = st.fixed_dictionaries(
    {"value": st.sampled_from(["OK", "ALARM", "INSUFFICIENT_DATA"])},
    optional=opt(reason=plain_text, timestamp=plain_text, reasonData=plain_text),
)
DETAILS["CloudWatch Alarm State Change"] = st.fixed_dictionaries(
    {"alarmName": st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=255), "state": alarm_state},
    optional=opt(previousState=alarm_state, configuration=st.dictionaries(plain_text, finite_json, max_size=3)),
)
DETAILS["Scheduled Event"] = st.dictionaries(plain_text, finite_json, max_size=3)
SOURCES = {
    "Scheduled Event": st.sampled_from(["aws.events", "aws.scheduler"]),
    "CloudWatch Alarm State Change": st.just("aws.cloudwatch"),
    # pushed by applications from their own source: never forescale's, never an AWS one
    "forescale.DemandSample": plain_text.filter(lambda s: s != "forescale" and not s.startswith("aws.")),
}
assert set(DETAILS) == set(MODELS)

times = st.builds(
    lambda when, minutes: when.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(-23 * 60, 23 * 60),
) | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda when: when.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    detail_type = draw(st.sampled_from(ALL))
    doc: dict[str, Any] = {
        "version": draw(st.just("0") | plain_text),
        "id": draw(st.uuids().map(str) | plain_text),
        "detail-type": detail_type,
        "account": draw(st.text(string.digits, min_size=12, max_size=12)),
        "time": draw(times),
        "region": draw(st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"])),
        "resources": draw(st.lists(plain_text, max_size=3)),
        "detail": draw(DETAILS[detail_type]),
    }
    if detail_type in SOURCES:
        doc["source"] = draw(SOURCES[detail_type])
    elif draw(st.integers(0, 9)):  # forescale's own events: the source defaults to "forescale"
        doc["source"] = "forescale"
    if draw(st.integers(0, 9)) == 0:
        doc["replay-name"] = draw(plain_text)
    return doc


def kept(given: Any, got: Any) -> bool:
    """`given` is in `got`: same scalars, and every key of a given object (defaults may add more)."""
    if isinstance(given, dict):
        return isinstance(got, dict) and all(k in got and kept(v, got[k]) for k, v in given.items())
    if isinstance(given, list):
        return isinstance(got, list) and len(given) == len(got) and all(map(kept, given, got))
    return bool(given == got)


def dumped(value: Any) -> Any:
    """`value` as JSON gives it back (tuples become lists)."""
    return json.loads(json.dumps(value))


@FUZZ
@given(doc=valid_events())
def test_valid_events_are_accepted_and_round_trip(doc: dict[str, Any]) -> None:
    wire = json.loads(json.dumps(doc))  # what Lambda hands the handler
    detail_type = doc["detail-type"]
    parsed = attempt(wire, (detail_type,))
    assert parsed is not None, "a valid event must be accepted"
    assert parsed.id == doc["id"] and parsed.detail_type == detail_type
    assert parsed.source == doc.get("source", "forescale")
    assert parsed.time.tzinfo is not None
    detail = dumped(parsed.model_dump(mode="json", by_alias=True)["detail"])
    assert kept(doc["detail"], detail), "every field given is kept, with its value"
    again = parse_event(json.loads(json.dumps(parsed.model_dump(mode="json", by_alias=True))), (detail_type,))
    assert again == parsed


# ----------------------------------------------------------------------------------- parse_or_reject


class Utf8Lines(io.TextIOBase):
    """A log stream that, like Lambda's, must encode what it is given as UTF-8."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        text.encode("utf-8")  # a lone surrogate raises here, and logging drops the line
        self.lines.append(text)
        return len(text)


@pytest.fixture(scope="module")
def log_lines() -> Any:
    handler = logger.registered_handler
    stream = Utf8Lines()
    previous = handler.setStream(stream)
    try:
        yield stream.lines
    finally:
        handler.setStream(previous)
        metrics.clear_metrics()


def invalid_events_counted() -> int:
    return len(metrics.metric_set.get("InvalidEvents", {}).get("Value", []))


@FUZZ
@given(
    case=st.one_of(
        mutated_examples().map(lambda c: c[2]),
        valid_events(),
        json_values,
    ),
    accepted=accepted_sets,
)
def test_parse_or_reject_logs_and_counts_what_parse_event_rejects(
    log_lines: list[str], case: Any, accepted: tuple[str, ...]
) -> None:
    metrics.clear_metrics()
    log_lines.clear()
    now = 1_795_435_400  # parse_or_reject bounds event times against the handlers' clock
    expected = attempt(case, accepted, now)
    lambda_support.set_clock(lambda: now)
    try:
        parsed = lambda_support.parse_or_reject(case, accepted)
    except EventError as exc:
        assert expected is None, "parse_or_reject rejected what parse_event accepts"
        check_rejection(exc)
        assert invalid_events_counted() == 1
        records = [json.loads(line) for line in "".join(log_lines).split("\n") if line.strip()]
        assert [r["message"] for r in records] == ["invalid event"], "the rejection must be logged once"
        assert records[0]["error"] == str(exc)
        return
    finally:
        lambda_support.set_clock(None)
    assert parsed == expected
    assert invalid_events_counted() == 0
    assert not "".join(log_lines).strip()
