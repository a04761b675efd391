"""plan, forecast and react through their real handlers on moto, routed like EventBridge would."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from forescale.domain.ratelimit import ManualClock
from forescale.local.environment import LocalEnvironment, environment_variables, function_env, provision
from forescale.local.router import LambdaContextStub, load_handler, scheduled_event
from forescale.runtime.models import DecisionStatus, DemandSampleDetail, Mode, TargetConfig
from tests.conftest import EVENTS

START = 1_795_392_000  # 2026-11-23 00:00 UTC


@pytest.fixture
def aws(moto_credentials: None, handler_clock: ManualClock) -> Iterator[LocalEnvironment]:
    handler_clock.now_s = START + 3600  # the events below are dated in the first hour after START
    with mock_aws(), environment_variables(function_env("forescale", "forescale")):
        env = provision(functions=("plan", "react"))
        made: list[dict[str, Any]] = []
        env.router.subscribe("spy", ("forescale.DecisionMade", "forescale.ForecastReady"), lambda e, c: made.append(e))
        env.decisions_made = made  # type: ignore[attr-defined]
        yield env


def register(env: LocalEnvironment, name: str = "checkout-api", **kw: Any) -> TargetConfig:
    cfg = TargetConfig(
        name=name,
        kind="lambda-provisioned",
        function_name=name,
        qualifier="live",  # type: ignore[arg-type]
        mode=Mode.ACTIVE,
        **kw,
    )
    return env.store.put_target(cfg)


def put_minutes(env: LocalEnvironment, name: str, rates: list[float], start: int = START) -> None:
    env.store.put_samples(
        [DemandSampleDetail(target=name, timestamp=start + 60 * i, requests=r * 60) for i, r in enumerate(rates)],
        ttl_s=86_400,
    )


def samples_collected(period_start: int, targets: list[str], event_id: str = "e1") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "samples-collected.json").read_text())
    event["id"] = event_id
    event["detail"] = {"period_start": period_start, "targets": targets, "missing": []}
    return event


def table_items(env: LocalEnvironment) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = env.clients["dynamodb"].scan(TableName=env.table)["Items"]
    return items


def test_given_samples_when_plan_runs_then_a_decision_is_stored_explained_and_announced(aws: LocalEnvironment) -> None:
    register(aws)
    put_minutes(aws, "checkout-api", [120.0] * 30)
    aws.router.send(samples_collected(START + 29 * 60, ["checkout-api"]))
    (delivery, *_) = aws.router.drain()
    assert delivery.ok and delivery.result["changed"] == 1
    (record,) = aws.store.list_decisions("checkout-api")
    assert record.status is DecisionStatus.PENDING and record.capacity >= 12  # 120 req/s x 0.1 s = 12 busy
    assert "120 req/s" in record.reason  # the reason names the demand it sized for
    made = aws.decisions_made  # type: ignore[attr-defined]
    assert [e["detail"]["decision_id"] for e in made] == [record.decision_id]
    blob, version, observed = aws.store.get_planner("checkout-api")
    assert blob and version == 1 and observed == START + 30 * 60


def test_given_a_redelivered_event_then_nothing_is_decided_twice(aws: LocalEnvironment) -> None:
    register(aws)
    put_minutes(aws, "checkout-api", [120.0] * 30)
    event = samples_collected(START + 29 * 60, ["checkout-api"], event_id="same")
    aws.router.send(event)
    aws.router.send(copy.deepcopy(event))  # EventBridge is at-least-once
    aws.router.send(samples_collected(START + 29 * 60, ["checkout-api"], event_id="other-copy"))
    deliveries = [d for d in aws.router.drain() if d.function == "plan"]
    assert [d.ok for d in deliveries] == [True, True, True]
    assert deliveries[0].result == deliveries[1].result  # Powertools Idempotency replayed the first result
    assert deliveries[2].result["decided"] == 0 and deliveries[2].result["duplicates"] == 1
    assert len(aws.store.list_decisions("checkout-api")) == 1
    assert len(aws.decisions_made) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda e: e["detail"].pop("targets"), "detail.targets: Field required"),
        (lambda e: e.update({"detail-type": "forescale.Surprise"}), "not handled here"),
        (lambda e: e["detail"].update(targets=["x"] * 1001), "detail.targets"),
        (lambda e: e["detail"].update(period_start="yesterday"), "detail.period_start"),
    ],
)
def test_given_a_bad_event_then_it_lands_in_the_dlq_with_the_reason_and_state_is_untouched(
    aws: LocalEnvironment, mutate: Any, needle: str
) -> None:
    register(aws)
    put_minutes(aws, "checkout-api", [10.0] * 5)
    before = table_items(aws)
    event = samples_collected(START + 4 * 60, ["checkout-api"], event_id="bad")
    mutate(event)
    plan = load_handler("plan")
    aws.router.subscriptions = [s for s in aws.router.subscriptions if s.function != "plan"]
    aws.router.subscribe("plan", (event["detail-type"],), plan, aws.dlqs["plan"])
    aws.router.send(event)
    (delivery,) = [d for d in aws.router.drain() if d.function == "plan"]
    assert not delivery.ok and delivery.attempts == 3
    (message,) = aws.dlq_messages("plan")
    assert json.loads(message["Body"])["id"] == "bad"
    assert needle in message["MessageAttributes"]["ErrorMessage"]["StringValue"]
    assert message["MessageAttributes"]["ErrorCode"]["StringValue"] == "EventError"
    assert table_items(aws) == before


def test_given_a_forescale_alarm_then_react_scales_out_at_once_and_asks_for_a_refit(aws: LocalEnvironment) -> None:
    register(aws, min_capacity=1)
    put_minutes(aws, "checkout-api", [20.0] * 30)
    aws.router.send(samples_collected(START + 29 * 60, ["checkout-api"]))
    aws.router.drain()
    before = aws.store.list_decisions("checkout-api")[0].capacity
    alarm = json.loads((EVENTS / "alarm-state-change.json").read_text())
    alarm["time"] = "2026-11-23T00:30:20Z"
    aws.router.send(alarm)
    (delivery,) = [d for d in aws.router.drain() if d.function == "react"]
    assert delivery.ok and delivery.result["scaled_out"] == ["checkout-api"]
    latest = aws.store.list_decisions("checkout-api")[0]
    assert latest.capacity > before and "forescale-checkout-api--spillover" in latest.reason
    assert latest.inputs["trigger"] == "react"
    assert aws.store.forecast_meta("checkout-api")[1] is not None


def test_given_an_ok_alarm_or_someone_elses_alarm_then_react_ignores_it(aws: LocalEnvironment) -> None:
    register(aws)
    ok = json.loads((EVENTS / "alarm-state-change.json").read_text())
    ok["detail"]["state"]["value"] = "OK"
    foreign = json.loads((EVENTS / "alarm-state-change.json").read_text())
    foreign["id"] = "foreign"
    foreign["detail"]["alarmName"] = "payments-p99-latency"
    aws.router.send(ok)
    aws.router.send(foreign)
    results = [d.result for d in aws.router.drain() if d.function == "react"]
    assert [r["scaled_out"] for r in results] == [[], []]
    assert aws.store.list_decisions("checkout-api") == []


@pytest.mark.slow
def test_given_a_day_of_samples_when_forecast_runs_then_statsforecast_forecasts_and_plan_uses_it(
    aws: LocalEnvironment, handler_clock: ManualClock
) -> None:
    handler_clock.now_s = START + 1500 * 60
    register(aws)
    rates = [50.0 + 40.0 * ((i // 60) % 24 >= 8) for i in range(1500)]
    put_minutes(aws, "checkout-api", rates)
    forecast = load_handler("forecast")
    result = forecast(scheduled_event(START + 1500 * 60, "forescale-forecast"), LambdaContextStub("forecast"))
    assert result["refit"] == 1 and result["deferred"] == 0 and result["events"] == 1
    assert list(result["models"].values()) == [1]  # counts per model, not one entry per target
    stored = aws.store.get_forecast("checkout-api")
    assert stored is not None and stored.issued_at == START + 1500 * 60 and stored.covers(START + 1500 * 60)
    assert stored.model
    (ready,) = [d for d in aws.router.drain() if d.detail_type == "forescale.ForecastReady" and d.function == "plan"]
    assert ready.ok
    blob, _, _ = aws.store.get_planner("checkout-api")
    assert blob is not None
    again = forecast(scheduled_event(START + 1505 * 60, "forescale-forecast"), LambdaContextStub("forecast"))
    assert again["refit"] == 0  # refit rarely: not due for a day


@pytest.mark.parametrize(
    ("function", "event_file", "mutate", "needle"),
    [
        ("collect", "demand-sample.json", lambda e: e["detail"].update(requests=-1), "detail.requests"),
        ("collect", "demand-sample.json", lambda e: e["detail"].pop("target"), "detail.target: Field required"),
        ("act", "decision-made.json", lambda e: e["detail"].update(capacity="lots"), "detail.capacity"),
        ("act", "decision-made.json", lambda e: e.update({"detail-type": "forescale.Nope"}), "not handled here"),
        ("react", "demand-above-forecast.json", lambda e: e["detail"].update(observed_rps=-3), "detail.observed_rps"),
        ("react", "alarm-state-change.json", lambda e: e["detail"].pop("alarmName"), "alarmName"),
        # Issue 15: a forged reaction "from" the future would have pinned the target at its maximum.
        ("react", "demand-above-forecast.json", lambda e: e["detail"].update(timestamp=4_000_000_000), "timestamp"),
        ("plan", "samples-collected.json", lambda e: e["detail"].update(period_start=START + 86_400), "period_start"),
        ("plan", "forecast-ready.json", lambda e: e["detail"].update(targets=["ok"] * 5000), "detail.targets"),
    ],
)
def test_given_a_bad_event_for_any_function_then_it_goes_to_that_functions_dlq_and_nothing_changes(
    aws: LocalEnvironment, function: str, event_file: str, mutate: Any, needle: str
) -> None:
    register(aws)
    before = table_items(aws)
    event = json.loads((EVENTS / event_file).read_text())
    event["id"] = f"bad-{function}"
    mutate(event)
    dlq = aws.dlqs.get(function) or aws.clients["sqs"].create_queue(QueueName=f"forescale-{function}-dlq")["QueueUrl"]
    aws.router.subscriptions = []
    aws.router.subscribe(function, (event["detail-type"],), load_handler(function), dlq)
    aws.router.send(event)
    (delivery,) = aws.router.drain()
    assert not delivery.ok and delivery.attempts == 3
    (message,) = aws.clients["sqs"].receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert needle in message["MessageAttributes"]["ErrorMessage"]["StringValue"]
    assert json.loads(message["Body"])["id"] == f"bad-{function}"
    assert table_items(aws) == before


def test_imported_history_reads_back_like_merged_samples_and_replaces_whole_hours(aws: LocalEnvironment) -> None:
    from forescale.adapters.state import InMemoryStateStore

    def minutes(name: str, rates: list[float | None], start: int = START) -> list[DemandSampleDetail]:
        return [
            DemandSampleDetail(target=name, timestamp=start + 60 * i, requests=r * 60, concurrency=r / 10)
            for i, r in enumerate(rates)
            if r is not None
        ]

    rates: list[float | None] = [float(i % 17) for i in range(3 * 60 + 7)]
    rates[70] = None  # a gap stays missing
    merged, memory = InMemoryStateStore(), InMemoryStateStore()
    merged.put_samples(minutes("a", rates), ttl_s=86_400)
    # 2 targets x 4 hours: 8 items, more than one BatchWriteItem would take if the limit were smaller
    calls: list[int] = []
    original = aws.clients["dynamodb"].batch_write_item

    def first_call_leaves_one_unprocessed(**kwargs: Any) -> dict[str, Any]:
        requests = kwargs["RequestItems"][aws.table]
        calls.append(len(requests))
        if len(calls) == 1:  # DynamoDB may return part of a batch unprocessed: it must be resent
            resp: dict[str, Any] = original(RequestItems={aws.table: requests[:-1]})
            return resp | {"UnprocessedItems": {aws.table: requests[-1:]}}
        return dict(original(**kwargs))

    aws.clients["dynamodb"].batch_write_item = first_call_leaves_one_unprocessed
    store = aws.store
    store.put_samples(minutes("a", [99.0] * 3, start=START + 3600 + 600), ttl_s=86_400)  # replaced by the import
    store.import_samples(minutes("a", rates) + minutes("b", [5.0] * 200), ttl_s=86_400)
    memory.import_samples(minutes("a", rates) + minutes("b", [5.0] * 200), ttl_s=86_400)
    assert calls == [8, 1]
    end = START + 4 * 3600
    want = merged.load_history("a", START, end).rates
    assert store.load_history("a", START, end).rates == want == memory.load_history("a", START, end).rates
    assert want[70] is None and want[3 * 60 + 7] is None and want[71] == float(71 % 17)
    assert store.load_metric("a", "concurrency", START, end) == merged.load_metric("a", "concurrency", START, end)
    assert store.load_history("b", START, end).rates[:200] == [5.0] * 200


def test_a_warm_plan_reads_a_forecast_blob_once_per_issue_not_every_minute(
    aws: LocalEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forescale.adapters.state import DynamoStateStore
    from forescale.domain.forecast import Forecast

    register(aws)
    put_minutes(aws, "checkout-api", [120.0] * 40)
    flat = {0.5: (120.0,) * 240, 0.99: (130.0,) * 240}
    reads: list[str] = []
    original = DynamoStateStore.get_forecast

    def counted(self: DynamoStateStore, name: str) -> Forecast | None:
        reads.append(name)
        return original(self, name)

    monkeypatch.setattr(DynamoStateStore, "get_forecast", counted)
    aws.store.put_forecast(Forecast("checkout-api", START + 30 * 60, START + 30 * 60, 60, flat, "flat"))
    for minute in (30, 31, 32):
        aws.router.send(samples_collected(START + minute * 60, ["checkout-api"], event_id=f"m{minute}"))
        assert all(d.ok for d in aws.router.drain())
    assert reads == ["checkout-api"]  # one blob read for three runs: the later ones matched its issue time
    aws.store.put_forecast(Forecast("checkout-api", START + 33 * 60, START + 33 * 60, 60, flat, "flat"))
    aws.router.send(samples_collected(START + 33 * 60, ["checkout-api"], event_id="m33"))
    assert all(d.ok for d in aws.router.drain())
    assert reads == ["checkout-api", "checkout-api"]  # a new issue is read again
