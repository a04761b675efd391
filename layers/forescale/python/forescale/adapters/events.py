"""Publishing forescale's own events to its EventBridge bus."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel

from forescale.runtime.models import DETAIL_TYPES, EVENT_SOURCE

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

PUT_EVENTS_MAX = 10  # entries per PutEvents call (AWS limit)


class PublishError(Exception):
    """Some entries were rejected by EventBridge; the message names them."""


class EventPublisher:
    """Sends typed event details as `source = forescale`, `detail-type = forescale.<Name>`."""

    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self._events = client
        self._bus = bus_name
        self.sent = 0

    def publish(self, detail_type: str, details: Sequence[BaseModel]) -> None:
        model = DETAIL_TYPES.get(detail_type)
        if model is None:
            raise ValueError(f"unknown detail-type {detail_type!r}; known: {sorted(DETAIL_TYPES)}")
        entries: list[PutEventsRequestEntryTypeDef] = []
        for d in details:
            if not isinstance(d, model):
                raise TypeError(f"{detail_type} needs {model.__name__}, got {type(d).__name__}")
            entries.append(
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": detail_type,
                    "Detail": d.model_dump_json(),
                    "EventBusName": self._bus,
                }
            )
        for i in range(0, len(entries), PUT_EVENTS_MAX):
            batch = entries[i : i + PUT_EVENTS_MAX]
            resp = self._events.put_events(Entries=batch)
            failed = [
                f"{e.get('ErrorCode')}: {e.get('ErrorMessage')}" for e in resp.get("Entries", []) if e.get("ErrorCode")
            ]
            if failed:
                raise PublishError(f"EventBridge rejected {len(failed)} of {len(batch)} {detail_type} events: {failed}")
            self.sent += len(batch)


class RecordingPublisher(EventPublisher):
    """An in-memory publisher for tests and the local router: keeps (detail_type, detail) in order."""

    def __init__(self) -> None:
        self.published: list[tuple[str, BaseModel]] = []
        self.sent = 0

    def publish(self, detail_type: str, details: Sequence[BaseModel]) -> None:
        if detail_type not in DETAIL_TYPES:
            raise ValueError(f"unknown detail-type {detail_type!r}; known: {sorted(DETAIL_TYPES)}")
        self.published.extend((detail_type, d) for d in details)
        self.sent += len(details)
