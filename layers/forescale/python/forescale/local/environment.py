"""forescale's AWS resources on moto, wired as the CDK stack wires them, for tests and the local demo.

`provision()` creates what the stack creates that the handlers touch: the DynamoDB table (same keys,
index and TTL attribute), the forescale event bus, one SQS dead-letter queue per function, and the
event routing (`LocalRouter`, since moto does not invoke Lambda targets). The routes below mirror the
stack's EventBridge rules; `tests/infra` checks the stack against the same table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from forescale.adapters.state import DynamoStateStore, table_definition
from forescale.local.router import LocalRouter, load_handler
from forescale.runtime import lambda_support

# function -> the detail-types its EventBridge rules deliver (the stack's rules, minus schedules)
ROUTES: Mapping[str, tuple[str, ...]] = {
    "collect": ("forescale.DemandSample",),
    "plan": ("forescale.SamplesCollected", "forescale.ForecastReady"),
    "act": ("forescale.DecisionMade",),
    "react": ("CloudWatch Alarm State Change", "forescale.DemandAboveForecast"),
}
SCHEDULED = ("collect", "forecast", "act", "rightsize")


@dataclass
class LocalEnvironment:
    table: str
    bus: str
    region: str
    router: LocalRouter
    dlqs: dict[str, str] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> DynamoStateStore:
        return DynamoStateStore(self.clients["dynamodb"], self.table)

    def dlq_messages(self, function: str) -> list[dict[str, Any]]:
        resp = self.clients["sqs"].receive_message(
            QueueUrl=self.dlqs[function], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        messages: list[dict[str, Any]] = resp.get("Messages", [])
        return messages


def function_zip() -> bytes:
    """Deployment package of a stand-in user function (`app.handler`); moto stores it, nothing runs it."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {'ok': True}\n")
    return buffer.getvalue()


@dataclass(frozen=True)
class StandInFunction:
    arn: str
    version: str | None  # the published version `alias` points at (None: nothing published)


def create_stand_in_function(
    lam: Any,
    name: str,
    role: str,
    *,
    alias: str | None = "live",
    memory_mb: int | None = None,
    tags: Mapping[str, str] | None = None,
    code: bytes | None = None,
) -> StandInFunction:
    """A user's Lambda function in moto, as forescale finds it: created, and with `alias` set, a version
    published and the alias pointing at it. `code` saves re-zipping when creating many."""
    kwargs: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": "python3.12",
        "Role": role,
        "Handler": "app.handler",
        "Code": {"ZipFile": code if code is not None else function_zip()},
    }
    if memory_mb is not None:
        kwargs["MemorySize"] = memory_mb
    if tags:
        kwargs["Tags"] = dict(tags)
    arn = str(lam.create_function(**kwargs)["FunctionArn"])
    if alias is None:
        return StandInFunction(arn, None)
    version = str(lam.publish_version(FunctionName=name)["Version"])
    lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)
    return StandInFunction(arn, version)


def function_env(table: str, bus: str) -> dict[str, str]:
    return {"TABLE_NAME": table, "EVENT_BUS_NAME": bus, "POWERTOOLS_METRICS_NAMESPACE": "forescale"}


@contextmanager
def environment_variables(values: Mapping[str, str]) -> Iterator[None]:
    """Set the functions' environment for the duration (handlers read their settings from it)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def provision(
    table: str = "forescale", bus: str = "forescale", region: str = "us-east-1", functions: tuple[str, ...] = ()
) -> LocalEnvironment:
    """Create the resources in the current (moto) AWS and subscribe `functions` to their routes.

    Call inside `moto.mock_aws()` or with AWS_ENDPOINT_URL pointing at a moto server, with the
    function environment set (see `function_env`).
    """
    lambda_support.reset()
    clients: dict[str, Any] = {
        "dynamodb": boto3.client("dynamodb", region_name=region),
        "events": boto3.client("events", region_name=region),
        "sqs": boto3.client("sqs", region_name=region),
    }
    db = clients["dynamodb"]
    db.create_table(**table_definition(table))
    db.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"})
    clients["events"].create_event_bus(Name=bus)
    router = LocalRouter(clients["sqs"], clients["events"], bus)
    env = LocalEnvironment(table, bus, region, router, clients=clients)
    for name in functions:
        env.dlqs[name] = clients["sqs"].create_queue(QueueName=f"forescale-{name}-dlq")["QueueUrl"]
        if name in ROUTES:
            router.subscribe(name, ROUTES[name], load_handler(name), env.dlqs[name])
    return env
