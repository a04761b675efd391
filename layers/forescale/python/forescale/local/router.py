"""An in-process stand-in for EventBridge → Lambda delivery, because moto does not invoke Lambda targets.

Events still go through moto's EventBridge: the handlers publish with a real `put_events` call to
the forescale bus, a rule copies every forescale event to an SQS queue (moto does deliver to SQS
targets), and `drain()` reads that queue and invokes each subscribed handler with the event, as an
asynchronous Lambda invocation would: up to `max_attempts` tries (Lambda's default is 1 + 2
retries), then the event goes to the function's dead-letter queue with the error, the way Lambda
writes its DLQ messages (attributes `ErrorCode`, `ErrorMessage`, `RequestID`).

What is emulated here, not by moto: rule-to-Lambda delivery, the retries and the DLQ write. moto's
SQS copy of an event lacks the `account` field, which is filled in with the local account id.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]
LOCAL_ACCOUNT = "123456789012"
# The checkout's functions/ (the project is installed editable by uv; the handlers are not in the wheel).
FUNCTIONS_DIR = Path(__file__).resolve().parents[5] / "functions"


@dataclass
class LambdaContextStub:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = "local"
    function_version: str = "$LATEST"

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{LOCAL_ACCOUNT}:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


def load_handler(name: str, functions_dir: Path = FUNCTIONS_DIR) -> Handler:
    """Import `functions/<name>/handler.py` under a unique module name (every function's file is handler.py)."""
    path = functions_dir / name / "handler.py"
    if not path.is_file():
        raise FileNotFoundError(f"no handler for function {name!r} at {path}")
    spec = importlib.util.spec_from_file_location(f"forescale_function_{name}", path)
    assert spec is not None and spec.loader is not None  # nosec B101  # a .py file path always gets a loader; local runs only
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up while it executes
    spec.loader.exec_module(module)
    handler: Handler = module.handler
    return handler


def scheduled_event(at: int, rule: str) -> dict[str, Any]:
    """A real-shaped EventBridge schedule event for epoch second `at`."""
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule}@{at}")),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT,
        "time": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:{LOCAL_ACCOUNT}:rule/{rule}"],
        "detail": {},
    }


@dataclass
class Subscription:
    function: str
    detail_types: frozenset[str]
    handler: Handler
    dlq_url: str | None = None


@dataclass
class Delivery:
    function: str
    detail_type: str
    event_id: str
    ok: bool
    attempts: int
    result: Any = None
    error: str | None = None


class LocalRouter:
    """Routes forescale events (read back from moto's EventBridge via SQS) to handlers, with retries and DLQs."""

    def __init__(self, sqs: Any, events: Any, bus_name: str, max_attempts: int = 3) -> None:
        self.sqs = sqs
        self.events = events
        self.bus_name = bus_name
        self.max_attempts = max_attempts
        self.subscriptions: list[Subscription] = []
        self.deliveries: list[Delivery] = []
        self.pending: deque[dict[str, Any]] = deque()
        self.queue_url = sqs.create_queue(QueueName=f"{bus_name}-local-router")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(
            Name=f"{bus_name}-local-router", EventBusName=bus_name, EventPattern=json.dumps({"source": ["forescale"]})
        )
        events.put_targets(
            Rule=f"{bus_name}-local-router", EventBusName=bus_name, Targets=[{"Id": "local-router", "Arn": arn}]
        )

    def subscribe(
        self, function: str, detail_types: Iterable[str], handler: Handler, dlq_url: str | None = None
    ) -> None:
        self.subscriptions.append(Subscription(function, frozenset(detail_types), handler, dlq_url))

    def send(self, event: dict[str, Any]) -> None:
        """Queue an event from outside the bus (a schedule, an alarm, an application's DemandSample)."""
        self.pending.append(event)

    def _poll_bus(self) -> None:
        while True:
            resp = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = resp.get("Messages", [])
            if not messages:
                return
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            failed = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed", [])
            if failed:  # a message left on the queue would be delivered twice
                raise RuntimeError(f"could not delete routed events from the local router queue: {failed}")
            for m in messages:
                event = json.loads(m["Body"])
                event.setdefault("account", LOCAL_ACCOUNT)
                self.pending.append(event)
            if len(messages) < 10:
                return  # the queue had no more: spare the empty receive

    def drain(self, max_events: int = 100_000) -> list[Delivery]:
        """Deliver until no event is left (events published by handlers are delivered too).

        Events are delivered in rounds, as EventBridge would hand them over: everything on the bus,
        then whatever those deliveries published. The bus is read once per round, not per delivery."""
        done: list[Delivery] = []
        self._poll_bus()
        while self.pending:
            while self.pending:
                if len(done) >= max_events:
                    raise RuntimeError(f"more than {max_events} deliveries in one drain: an event loop?")
                event = self.pending.popleft()
                for sub in self.subscriptions:
                    if event.get("detail-type") in sub.detail_types:
                        done.append(self._invoke(sub, event))
            self._poll_bus()
        self.deliveries.extend(done)
        return done

    def _invoke(self, sub: Subscription, event: dict[str, Any]) -> Delivery:
        error: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            ctx = LambdaContextStub(sub.function)
            try:
                result = sub.handler(event, ctx)
            except Exception as exc:  # Lambda catches everything a handler raises, and so must we
                error = exc
                continue
            return Delivery(sub.function, event.get("detail-type", "?"), event.get("id", "?"), True, attempt, result)
        assert error is not None  # nosec B101  # only reached after a failed attempt; local runs only
        if sub.dlq_url:
            self.sqs.send_message(
                QueueUrl=sub.dlq_url,
                MessageBody=json.dumps(event, default=str),
                MessageAttributes={
                    "RequestID": {"DataType": "String", "StringValue": ctx.aws_request_id},
                    "ErrorCode": {"DataType": "String", "StringValue": type(error).__name__},
                    "ErrorMessage": {"DataType": "String", "StringValue": str(error)[:1000]},
                },
            )
        return Delivery(
            sub.function,
            event.get("detail-type", "?"),
            event.get("id", "?"),
            False,
            self.max_attempts,
            None,
            f"{type(error).__name__}: {error}",
        )
