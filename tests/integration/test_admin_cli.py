"""`forescale targets ...` and `forescale pause|resume` against the table on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from forescale.adapters.state import DynamoStateStore, table_definition
from forescale.cli import main
from forescale.runtime.models import Mode


@pytest.fixture
def store(moto_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoStateStore]:
    monkeypatch.setenv("FORESCALE_TABLE", "forescale")
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(**table_definition("forescale"))
        yield DynamoStateStore(db, "forescale")


def test_given_a_new_lambda_target_then_it_is_registered_in_dry_run_and_listed(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "targets",
            "add",
            "checkout",
            "--kind",
            "lambda-provisioned",
            "--function-name",
            "checkout",
            "--qualifier",
            "live",
            "--min",
            "2",
            "--max",
            "50",
        ]
    )
    assert rc == 0
    cfg = store.get_target("checkout")
    assert cfg is not None and cfg.mode is Mode.DRY_RUN and (cfg.min_capacity, cfg.max_capacity) == (2, 50)
    assert main(["targets", "list"]) == 0
    assert "checkout\tlambda-provisioned\tlambda:checkout:live\tdry-run" in capsys.readouterr().out


def test_given_set_mode_active_then_the_version_moves_and_show_prints_it(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["targets", "add", "checkout", "--kind", "lambda-reserved", "--function-name", "checkout"])
    assert main(["targets", "set-mode", "checkout", "active"]) == 0
    cfg = store.get_target("checkout")
    assert cfg is not None and cfg.mode is Mode.ACTIVE and cfg.version == 2
    capsys.readouterr()
    assert main(["targets", "show", "checkout"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["mode"] == "active" and shown["decisions"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--kind", "lambda-provisioned", "--function-name", "f", "--qualifier", "$LATEST"],
            "cannot be set on $LATEST",
        ),
        (["--kind", "lambda-provisioned", "--function-name", "f"], "needs a qualifier"),
        (["--kind", "sagemaker-instance-count", "--endpoint", "e"], "needs endpoint_name and variant_name"),
        (
            ["--kind", "lambda-reserved", "--function-name", "f", "--min", "9", "--max", "3"],
            "min_capacity 9 > max_capacity 3",
        ),
        (["--kind", "lambda-reserved", "--function-name", "f", "--slo", "2"], "slo_miss"),
    ],
)
def test_given_a_bad_target_then_exit_2_with_the_reason_and_nothing_stored(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["targets", "add", "bad", *args]) == 2
    assert message in capsys.readouterr().err
    assert store.get_target("bad") is None


def test_given_a_sagemaker_target_with_a_catalog_file(store: DynamoStateStore, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            [
                {"name": "ml.g5.xlarge", "price_per_hour": 1.41, "capacity_rps": 40},
                {"name": "ml.g6.xlarge", "price_per_hour": 1.17, "capacity_rps": 31},
            ]
        )
    )
    rc = main(
        [
            "targets",
            "add",
            "ranker",
            "--kind",
            "sagemaker-instance-type",
            "--endpoint",
            "ranker",
            "--variant",
            "AllTraffic",
            "--catalog",
            str(catalog),
            "--instance-type",
            "ml.g5.xlarge",
            "--min",
            "1",
        ]
    )
    assert rc == 0
    cfg = store.get_target("ranker")
    assert cfg is not None and [t.name for t in cfg.catalog] == ["ml.g5.xlarge", "ml.g6.xlarge"]


def test_given_a_duplicate_or_unknown_target_then_exit_2(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["targets", "add", "x", "--kind", "lambda-reserved", "--function-name", "x"])
    assert main(["targets", "add", "x", "--kind", "lambda-reserved", "--function-name", "x"]) == 2
    assert main(["targets", "remove", "ghost"]) == 2
    assert main(["targets", "set-mode", "ghost", "active"]) == 2
    assert "unknown target 'ghost'" in capsys.readouterr().err


def test_given_pause_then_the_kill_switch_is_set_and_resume_clears_it(store: DynamoStateStore) -> None:
    assert main(["pause", "--reason", "incident 42"]) == 0
    assert store.get_paused() == (True, "incident 42")
    assert main(["resume"]) == 0
    assert store.get_paused()[0] is False


def test_given_remove_then_config_goes_and_decisions_stay(store: DynamoStateStore) -> None:
    from forescale.runtime.models import DecisionRecord, DecisionStatus

    main(["targets", "add", "x", "--kind", "lambda-reserved", "--function-name", "x"])
    store.put_decision(
        DecisionRecord(
            decision_id="x@60",
            target="x",
            decided_at=60,
            capacity=3,
            previous=0,
            recommended=3,
            policy="predictive",
            reason="r",
            mode=Mode.DRY_RUN,
            status=DecisionStatus.DRY_RUN,
        )
    )
    assert main(["targets", "remove", "x"]) == 0
    assert store.get_target("x") is None and len(store.list_decisions("x")) == 1
