"""EventBridge envelope models for every trigger and internal event, and the one parser handlers use.

Each model is Powertools' `EventBridgeModel` with a typed `detail`, so a malformed event fails with
a pydantic error that names the field. `parse_event` picks the model by `detail-type`, checks the
detail's times against the receiver's clock, and turns every failure into an `EventError` that says
what was wrong with which event.

Sources: forescale's internal detail-types are accepted only from `source = forescale`; the one
event applications push, `forescale.DemandSample`, only from a source of their own (never
`forescale`, never an `aws.` one), so a producer cannot pass for forescale (the stack's rules and
docs/security.md say how its PutEvents permission is narrowed to that detail-type).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forescale.runtime.models import (
    EVENT_SOURCE,
    ActionResultDetail,
    DecisionMadeDetail,
    DemandAboveForecastDetail,
    DemandSampleDetail,
    EventDetail,
    ForecastReadyDetail,
    SamplesCollectedDetail,
    validation_problems,
)

MAX_EVENT_BYTES = 256 * 1024  # EventBridge's entry limit; anything larger is not a real event


class EventError(ValueError):
    """The event is not one this function handles, or its content is invalid."""


class ScheduledEvent(EventBridgeModel):
    source: Literal["aws.events", "aws.scheduler"]
    detail: dict[str, Any]


class ForescaleEvent(EventBridgeModel):
    source: Literal["forescale"] = EVENT_SOURCE  # type: ignore[assignment]


class DemandSampleEvent(EventBridgeModel):
    """Pushed by applications from their own source (see the module docstring)."""

    detail: DemandSampleDetail

    @field_validator("source")
    @classmethod
    def _producer_source(cls, value: str) -> str:
        if value == EVENT_SOURCE or value.startswith("aws."):
            raise ValueError(f"{value!r} is not a producer's source: applications push DemandSample from their own")
        return value


class SamplesCollectedEvent(ForescaleEvent):
    detail: SamplesCollectedDetail


class DemandAboveForecastEvent(ForescaleEvent):
    detail: DemandAboveForecastDetail


class ForecastReadyEvent(ForescaleEvent):
    detail: ForecastReadyDetail


class DecisionMadeEvent(ForescaleEvent):
    detail: DecisionMadeDetail


class ActionResultEvent(ForescaleEvent):
    detail: ActionResultDetail


class AlarmState(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str = ""
    timestamp: str = ""


class AlarmStateChangeDetail(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    alarm_name: str = Field(alias="alarmName", min_length=1, max_length=255)
    state: AlarmState
    previous_state: AlarmState | None = Field(default=None, alias="previousState")
    configuration: dict[str, Any] = Field(default_factory=dict)


class AlarmStateChangeEvent(EventBridgeModel):
    source: Literal["aws.cloudwatch"]
    detail: AlarmStateChangeDetail


MODELS: Mapping[str, type[EventBridgeModel]] = {
    "Scheduled Event": ScheduledEvent,
    "CloudWatch Alarm State Change": AlarmStateChangeEvent,
    "forescale.DemandSample": DemandSampleEvent,
    "forescale.SamplesCollected": SamplesCollectedEvent,
    "forescale.DemandAboveForecast": DemandAboveForecastEvent,
    "forescale.ForecastReady": ForecastReadyEvent,
    "forescale.DecisionMade": DecisionMadeEvent,
    "forescale.ActionApplied": ActionResultEvent,
    "forescale.ActionFailed": ActionResultEvent,
}


def parse_event(event: Any, accepted: tuple[str, ...], now: int | None = None) -> EventBridgeModel:
    """Validate `event` as one of the `accepted` detail-types; EventError names what is wrong.

    With `now` (epoch s, the handler's clock), the detail's times must lie within
    [now - MAX_EVENT_AGE_S, now + CLOCK_SKEW_S] (see `forescale.runtime.models.EventDetail`).
    """
    if not isinstance(event, dict):
        raise EventError(f"the event must be a JSON object, got {type(event).__name__}")
    try:
        size = len(json.dumps(event, default=str))
    except (ValueError, TypeError, RecursionError) as exc:  # an int over 4300 digits, a non-str key, too deep
        raise EventError(_printable(f"the event cannot be encoded as JSON: {exc}")) from exc
    if size > MAX_EVENT_BYTES:
        raise EventError(f"the event is {size} bytes, over EventBridge's {MAX_EVENT_BYTES}-byte limit")
    event_id = _show(event.get("id", "?"))
    detail_type = event.get("detail-type")
    if detail_type not in accepted:
        raise EventError(
            _printable(
                f"event {event_id}: detail-type {_show(detail_type, repr)} from source "
                f"{_show(event.get('source'), repr)} is not handled here; expected one of {list(accepted)}"
            )
        )
    try:
        parsed = parse(event=event, model=MODELS[detail_type])
    except ValidationError as exc:
        raise EventError(_printable(f"{detail_type} event {event_id} is invalid: {validation_problems(exc)}")) from exc
    except Exception as exc:  # Powertools wraps pydantic errors in its own types
        cause = exc.__cause__ if isinstance(exc.__cause__, ValidationError) else None
        if cause is not None:
            raise EventError(
                _printable(f"{detail_type} event {event_id} is invalid: {validation_problems(cause)}")
            ) from exc
        raise EventError(_printable(f"{detail_type} event {event_id} is invalid: {exc}")) from exc
    detail = getattr(parsed, "detail", None)
    if now is not None and isinstance(detail, EventDetail):
        problems = detail.time_problems(now)
        if problems:
            target = getattr(detail, "target", None)
            about = f" (target {target})" if target else ""
            raise EventError(
                _printable(f"{detail_type} event {event_id}{about} is invalid: detail.{'; detail.'.join(problems)}")
            )
    return parsed


def _show(value: Any, render: Callable[[Any], str] = str, limit: int = 100) -> str:
    """A value from the event, shortened for an error message."""
    text = render(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _printable(message: str) -> str:
    """The message with lone surrogates (JSON allows "\\ud800") escaped, so that logging it as UTF-8 cannot fail."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")
