"""The DynamoDB store's hot/cold items on moto: forecast meta apart from its blob, the planner's hot
record and checkpoint written together, and items written by the older format still read."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from forescale.adapters.events import RecordingPublisher
from forescale.adapters.state import ConflictError, DynamoStateStore, _item, encode_forecast, table_definition
from forescale.domain import snapshot
from forescale.domain.forecast import Forecast
from forescale.runtime.plan import PlanService, build_planner
from tests.unit.test_plan_service import START, lambda_target, samples

TABLE = "forescale"


@pytest.fixture
def db(moto_credentials: None) -> Iterator[object]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**table_definition(TABLE))
        yield client


def forecast(issued_at: int, level: float = 10.0) -> Forecast:
    steps = 2880
    return Forecast("api", issued_at, issued_at, 60, {0.5: (level,) * steps, 0.9: (level * 2,) * steps}, "flat")


def sort_keys(db: object) -> list[str]:
    items = db.query(  # type: ignore[attr-defined]
        TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "TARGET#api"}}
    )["Items"]
    return sorted(i["SK"]["S"] for i in items)


def test_the_forecast_meta_is_small_and_the_blob_is_kept_for_the_current_and_previous_issue(db: object) -> None:
    store = DynamoStateStore(db, TABLE)  # type: ignore[arg-type]
    for k in range(3):
        store.put_forecast(forecast(START + 3600 * k, 10.0 + k))
    meta = db.get_item(TableName=TABLE, Key=_item({"PK": "TARGET#api", "SK": "FORECAST"}))["Item"]  # type: ignore[attr-defined]
    assert "blob" not in meta and len(str(meta)) < 300
    assert [k for k in sort_keys(db) if k.startswith("FORECAST#")] == [
        f"FORECAST#{START + 3600:010d}",
        f"FORECAST#{START + 7200:010d}",
    ]
    got = store.get_forecast("api")
    assert got is not None and got.issued_at == START + 7200 and got.quantiles[0.5][0] == 12.0
    previous = store.get_forecast_at("api", START + 3600)
    assert previous is not None and previous.quantiles[0.5][0] == 11.0
    assert store.get_forecast_at("api", START) is None  # two issues back: gone


def test_request_refit_writes_the_meta_only_and_a_new_forecast_clears_it(db: object) -> None:
    store = DynamoStateStore(db, TABLE)  # type: ignore[arg-type]
    store.put_forecast(forecast(START))
    calls: list[str] = []
    db.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))  # type: ignore[attr-defined]
    store.request_refit("api", START + 60)
    assert calls == ["UpdateItem"]
    assert store.forecast_meta("api") == (START, START + 60)
    store.put_forecast(forecast(START + 600))
    assert store.forecast_meta("api") == (START + 600, None)


def test_the_checkpoint_and_the_hot_record_are_written_together_under_the_version_lock(db: object) -> None:
    store = DynamoStateStore(db, TABLE)  # type: ignore[arg-type]
    assert store.put_planner("api", b"snap-1", START, 0, "a") == 1
    assert store.put_planner_journal("api", b"journal", START + 60, 1, 1, "b") == 2
    with pytest.raises(ConflictError):
        store.put_planner("api", b"snap-late", START + 60, 1, "c")  # lost the race: nothing written
    with pytest.raises(ConflictError):
        store.put_planner_journal("api", b"late", START + 60, 1, 1, "c")
    rec = store.get_planner_record("api")
    assert (rec.version, rec.checkpoint_version, rec.journal, rec.token) == (2, 1, b"journal", "b")
    assert store.get_checkpoint("api") == (b"snap-1", 1)
    assert store.get_planner("api") == (b"snap-1", 2, START + 60)


def test_items_of_the_older_format_are_read_and_replaced_without_a_reset(db: object) -> None:
    store = DynamoStateStore(db, TABLE)  # type: ignore[arg-type]
    cfg = store.put_target(lambda_target())
    store.put_samples(samples("api", [40.0] * 31), ttl_s=86_400)
    old = PlanService(store, RecordingPublisher(), warmup_s=3600)
    old.plan(["api"], START + 60 * 30)
    planner, _, observed, _ = _restored(store, cfg)
    # What the older forescale stored: the snapshot and the forecast inline in their items.
    db.put_item(  # type: ignore[attr-defined]
        TableName=TABLE,
        Item=_item(
            {
                "PK": "TARGET#api",
                "SK": "PLANNER",
                "blob": snapshot.dump(planner),
                "version": 7,
                "observed_until": observed,
            }
        ),
    )
    db.delete_item(TableName=TABLE, Key=_item({"PK": "TARGET#api", "SK": "PLANNER#CHECKPOINT"}))  # type: ignore[attr-defined]
    fc = forecast(START)
    db.put_item(  # type: ignore[attr-defined]
        TableName=TABLE,
        Item=_item(
            {"PK": "TARGET#api", "SK": "FORECAST", "issued_at": START, "model": "flat", "blob": encode_forecast(fc)}
        ),
    )
    assert store.get_forecast("api") == fc
    summary = PlanService(store, RecordingPublisher(), warmup_s=3600).plan(["api"], START + 60 * 31)
    assert summary.decided == 1 and not summary.snapshot_errors and not summary.fresh_planners
    rec = store.get_planner_record("api")
    assert rec.legacy_snapshot is None and rec.checkpoint_version == rec.version == 8  # a checkpoint item now


def _restored(store: DynamoStateStore, cfg: object) -> tuple[object, int, int, bool]:
    from forescale.runtime.plan import restore_planner

    return restore_planner(store, cfg, START + 60 * 30, 3600)  # type: ignore[arg-type]


def test_a_planner_built_for_a_target_fits_its_checkpoint(db: object) -> None:
    store = DynamoStateStore(db, TABLE)  # type: ignore[arg-type]
    cfg = store.put_target(lambda_target())
    store.put_planner("api", snapshot.dump(build_planner(cfg)), START, 0)
    _, version, observed, fresh = _restored(store, cfg)
    assert (version, observed, fresh) == (1, START, False)
