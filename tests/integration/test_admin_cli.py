"""`forescale targets ...` and `forescale pause|resume` against the table on moto.

Issue 15 item 1: a poisoned target config is refused at every entry (the CLI, `targets discover
--apply`), and one already stored (by an older version or by hand) stops nothing: the other targets
are listed, the bad one is named in an ERROR log line and an `InvalidTargetConfigs` metric, and
`targets list|show|remove` still work on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from forescale.adapters.state import DynamoStateStore, table_definition
from forescale.cli import main
from forescale.local.environment import create_stand_in_function
from forescale.runtime.models import Mode, TargetConfig

ROLE = "arn:aws:iam::123456789012:role/fn"


@pytest.fixture
def store(moto_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoStateStore]:
    """The table, and the user's functions the tests register: `checkout` (alias `live`) and `x`, tagged
    forescale:managed=true, 512 MB; `untagged` (alias `live`) without the tag."""
    monkeypatch.setenv("FORESCALE_TABLE", "forescale")
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(**table_definition("forescale"))
        boto3.client("iam", region_name="us-east-1").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")
        lam = boto3.client("lambda", region_name="us-east-1")
        managed = {"forescale:managed": "true"}
        create_stand_in_function(lam, "checkout", ROLE, memory_mb=512, tags=managed)
        create_stand_in_function(lam, "x", ROLE, alias=None, memory_mb=512, tags=managed)
        create_stand_in_function(lam, "untagged", ROLE)
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
            "--duration-s",
            "0.2",
        ]
    )
    assert rc == 0
    cfg = store.get_target("checkout")
    assert cfg is not None and cfg.mode is Mode.DRY_RUN and (cfg.min_capacity, cfg.max_capacity) == (2, 50)
    capsys.readouterr()
    assert main(["targets", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "KIND", "RESOURCE", "MODE", "MIN", "MAX", "VERSION"]
    assert row.split() == ["checkout", "lambda-provisioned", "lambda:checkout:live", "dry-run", "2", "50", "v1"]


def test_given_set_mode_active_then_the_version_moves_and_show_prints_it(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        ["targets", "add", "checkout", "--kind", "lambda-reserved", "--function-name", "checkout", "--duration-s", "1"]
    )
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
    tagged_endpoint("ml.g4dn.xlarge=0.736/40")
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
    main(["targets", "add", "x", "--kind", "lambda-reserved", "--function-name", "x", "--duration-s", "1"])
    assert main(["targets", "add", "x", "--kind", "lambda-reserved", "--function-name", "x", "--duration-s", "1"]) == 2
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

    main(["targets", "add", "x", "--kind", "lambda-reserved", "--function-name", "x", "--duration-s", "1"])
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


# ---------------------------------------------------------------- issue 15: poisoned configs

LAMBDA = ["--kind", "lambda-provisioned", "--function-name", "checkout", "--qualifier", "live", "--duration-s", "0.2"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--duration-s", "inf"], "duration_s"),
        (["--duration-s", "nan"], "duration_s"),
        (["--duration-s", "-1"], "duration_s"),
        (["--memory-mb", str(10**30)], "memory_mb"),
        (["--max", str(2**31)], "max_capacity"),
        (["--min", "-3"], "min_capacity"),
        (["--slo", "nan"], "slo_miss"),
        (["--budget-per-hour", "nan"], "guardrails.budget_per_hour"),
        (["--budget-per-hour", "inf"], "guardrails.budget_per_hour"),
        (["--max-step-up", str(2**31)], "guardrails.max_step_up"),
        (["--stabilisation-window-s", "-1"], "guardrails.stabilisation_window_s"),
    ],
)
def test_given_a_poisoned_number_then_targets_add_exits_2_naming_target_and_field_and_stores_nothing(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str], args: list[str], field: str
) -> None:
    assert main(["targets", "add", "checkout", *LAMBDA, *args]) == 2
    err = capsys.readouterr().err
    assert "target checkout" in err and f"{field}:" in err
    assert store.target_records() == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--function-name", "arn:aws:lambda:us-east-1:999999999999:function:theirs"], "function_name"),
        (["--function-name", "pay\u202eload"], "function_name"),
        (["--qualifier", "$latest"], "qualifier"),
    ],
)
def test_given_a_name_that_is_not_this_accounts_function_or_alias_then_targets_add_refuses_it(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str], args: list[str], field: str
) -> None:
    assert main(["targets", "add", "checkout", *LAMBDA, *args]) == 2
    assert f"{field}:" in capsys.readouterr().err
    assert store.target_records() == []


def test_given_a_memory_that_is_not_a_whole_number_then_argparse_names_the_option(store: DynamoStateStore) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["targets", "add", "checkout", *LAMBDA, "--memory-mb", "1e30"])
    assert exited.value.code == 2


def put_raw_config(store: DynamoStateStore, name: str, config: str) -> None:
    """A config item as an older forescale (inf written as null) or a hand edit left it."""
    store._db.put_item(
        TableName="forescale",
        Item={
            "PK": {"S": f"TARGET#{name}"},
            "SK": {"S": "CONFIG"},
            "gsi1pk": {"S": "TARGET"},
            "gsi1sk": {"S": name},
            "config": {"S": config},
            "version": {"N": "1"},
        },
    )


def poisoned(name: str) -> str:
    good = TargetConfig(name=name, kind="lambda-provisioned", function_name="f", qualifier="live", version=1)  # type: ignore[arg-type]
    return good.model_dump_json().replace('"duration_s":0.1', '"duration_s":null')


def emf_metrics(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{") and '"_aws"' in line]


def test_given_a_stored_config_that_no_longer_validates_then_the_others_are_listed_and_it_is_named(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["targets", "add", "checkout", *LAMBDA]) == 0
    put_raw_config(store, "poisoned", poisoned("poisoned"))
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        listed = store.list_targets()
        got = store.get_target("poisoned")
    assert [c.name for c in listed] == ["checkout"] and got is None
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors and all("poisoned" in r.getMessage() and "duration_s" in r.getMessage() for r in errors)
    metrics = emf_metrics(capsys.readouterr().out)
    assert [(m["target"], m["InvalidTargetConfigs"]) for m in metrics] == [("poisoned", [1.0])] * 2


def test_given_a_stored_config_that_no_longer_validates_then_list_show_and_remove_still_work(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["targets", "add", "checkout", *LAMBDA]) == 0
    raw = poisoned("poisoned")
    put_raw_config(store, "poisoned", raw)
    capsys.readouterr()

    assert main(["targets", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["checkout", "lambda-provisioned"]
    assert lines[2].startswith("poisoned  INVALID  ") and "duration_s" in lines[2]

    assert main(["targets", "show", "poisoned"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "duration_s" in shown["config"]["invalid"] and shown["config"]["stored"] == raw

    assert main(["targets", "remove", "poisoned"]) == 0
    assert [r.name for r in store.target_records()] == ["checkout"]


def test_given_plan_inputs_with_an_invalid_stored_config_then_that_target_reads_as_unregistered(
    store: DynamoStateStore,
) -> None:
    assert main(["targets", "add", "checkout", *LAMBDA]) == 0
    put_raw_config(store, "poisoned", poisoned("poisoned"))
    inputs = store.plan_inputs(["checkout", "poisoned"])
    assert inputs["checkout"].config is not None and inputs["poisoned"].config is None


def tagged_endpoint(catalog: str) -> None:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    sagemaker.create_model(
        ModelName="m",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:1"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.g4dn.xlarge"}
        ],
    )
    sagemaker.create_endpoint(
        EndpointName="ranker",
        EndpointConfigName="c",
        Tags=[{"Key": "forescale:managed", "Value": "true"}, {"Key": "forescale:catalog", "Value": catalog}],
    )


@pytest.mark.parametrize(
    ("catalog", "field"),
    [("ml.g4dn.xlarge=inf/75", "price_per_hour"), ("ml.g4dn.xlarge=0.736/nan", "capacity_rps")],
)
def test_given_an_endpoint_tagged_with_a_poisoned_catalog_then_discover_apply_skips_it_naming_the_field(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str], catalog: str, field: str
) -> None:
    tagged_endpoint(catalog)
    assert main(["targets", "discover", "--apply"]) == 0
    out = capsys.readouterr().out
    assert "skipped:" in out and field in out and "registered" not in out
    assert store.target_records() == []


@pytest.mark.parametrize(
    ("stored", "field"),
    [
        ('"duration_s":null', "duration_s"),  # inf as an older version wrote it
        ('"duration_s":1e400', "duration_s"),
        ('"duration_s":NaN', "duration_s"),  # not JSON, but pydantic's parser reads it, then refuses it
        ('"max_capacity":3000000000', "max_capacity"),
        ('"min_capacity":-1', "min_capacity"),
        ('"memory_mb":1e30', "memory_mb"),
        ('"lead_up_s":1000000000', "lead_up_s"),
        ('"qualifier":"$latest"', "qualifier"),
    ],
)
def test_given_a_poisoned_stored_config_then_reading_it_names_the_field_and_skips_only_it(
    store: DynamoStateStore, stored: str, field: str
) -> None:
    assert main(["targets", "add", "checkout", *LAMBDA]) == 0
    raw = poisoned("poisoned").replace('"duration_s":null', '"duration_s":0.1')
    key = stored.split(":", 1)[0]
    start = raw.index(key)
    end = min(i for i in (raw.find(",", start), raw.find("}", start)) if i != -1)
    put_raw_config(store, "poisoned", raw[:start] + stored + raw[end:])
    (record,) = [r for r in store.target_records() if r.name == "poisoned"]
    assert record.config is None and record.error is not None
    assert f"{field}:" in record.error
    assert [c.name for c in store.list_targets()] == ["checkout"]


# ---------------------------------------------------------------- issue 16: targets add reads the resource


def test_given_no_duration_option_then_add_reads_the_mean_duration_and_the_memory_from_aws(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    # Two hours of Duration: 100 invocations of 200 ms on average, then 300 of 400 ms.
    for avg_ms, count in ((200.0, 100), (400.0, 300)):
        cloudwatch.put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[
                {
                    "MetricName": "Duration",
                    "Dimensions": [{"Name": "FunctionName", "Value": "checkout"}],
                    "StatisticValues": {
                        "SampleCount": count,
                        "Sum": avg_ms * count,
                        "Minimum": avg_ms,
                        "Maximum": avg_ms,
                    },
                    "Unit": "Milliseconds",
                }
            ],
        )
    args = ["targets", "add", "checkout", "--kind", "lambda-provisioned", "--function-name", "checkout"]
    assert main([*args, "--qualifier", "live"]) == 0
    cfg = store.get_target("checkout")
    assert cfg is not None and cfg.memory_mb == 512
    assert cfg.duration_s == pytest.approx((0.2 * 100 + 0.4 * 300) / 400)
    out = capsys.readouterr().out
    assert "memory_mb 512 (the function's configuration)" in out and "duration_s 0.35 (mean CloudWatch" in out


def test_given_no_duration_in_cloudwatch_then_add_refuses_and_asks_for_the_option(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["targets", "add", "x", "--kind", "lambda-reserved", "--function-name", "x"]) == 2
    assert "CloudWatch has no Duration for x in the last 14 days; pass --duration-s" in capsys.readouterr().err
    assert store.target_records() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--function-name", "ghost", "--qualifier", "live"], "no Lambda function 'ghost' in us-east-1"),
        (["--function-name", "checkout", "--qualifier", "blue"], "function checkout has no alias or version 'blue'"),
    ],
)
def test_given_a_resource_that_does_not_exist_then_add_refuses_naming_it(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["targets", "add", "t", "--kind", "lambda-provisioned", "--duration-s", "1", *args]) == 2
    assert message in capsys.readouterr().err
    assert store.target_records() == []


def test_given_an_untagged_function_then_dry_run_registers_it_with_the_tag_command_and_active_refuses(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = boto3.client("lambda", region_name="us-east-1").get_function(FunctionName="untagged")["Configuration"][
        "FunctionArn"
    ]
    command = f"aws lambda tag-resource --resource {arn} --tags forescale:managed=true"
    args = ["targets", "add", "u", "--kind", "lambda-provisioned", "--function-name", "untagged", "--qualifier", "live"]
    assert main([*args, "--duration-s", "0.1", "--mode", "active"]) == 2
    assert command in capsys.readouterr().err and store.target_records() == []
    assert main([*args, "--duration-s", "0.1"]) == 0
    assert command in capsys.readouterr().out
    assert main(["targets", "set-mode", "u", "active"]) == 2
    assert command in capsys.readouterr().err
    cfg = store.get_target("u")
    assert cfg is not None and cfg.mode is Mode.DRY_RUN


def test_given_an_untagged_endpoint_then_the_command_is_sagemakers(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tagged_endpoint("ml.g4dn.xlarge=0.736/40")
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    arn = sagemaker.describe_endpoint(EndpointName="ranker")["EndpointArn"]
    sagemaker.delete_tags(ResourceArn=arn, TagKeys=["forescale:managed"])
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps([{"name": "ml.g4dn.xlarge", "price_per_hour": 0.736, "capacity_rps": 40}]))
    base = [
        "targets",
        "add",
        "r",
        "--kind",
        "sagemaker-instance-count",
        "--endpoint",
        "ranker",
        "--catalog",
        str(catalog),
    ]
    assert main([*base, "--variant", "Other"]) == 2
    assert "endpoint ranker has no variant 'Other'; it has ['AllTraffic']" in capsys.readouterr().err
    assert main([*base, "--variant", "AllTraffic", "--min", "1"]) == 0
    out = capsys.readouterr().out
    assert f"aws sagemaker add-tags --resource-arn {arn} --tags Key=forescale:managed,Value=true" in out


def test_given_no_targets_or_the_kill_switch_then_list_says_so(
    store: DynamoStateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["targets", "list"]) == 0
    assert capsys.readouterr().out.strip() == (
        "no targets registered: add one with `forescale targets add` (or `targets discover --apply`)"
    )
    main(["targets", "add", "x", "--kind", "lambda-reserved", "--function-name", "x", "--duration-s", "1"])
    main(["targets", "set-mode", "x", "active"])
    main(["pause", "--reason", "incident 9"])
    capsys.readouterr()
    assert main(["targets", "list"]) == 0
    first, header, row = capsys.readouterr().out.splitlines()
    assert first.startswith("PAUSED (kill switch on: incident 9)")
    assert header.split()[0] == "NAME" and "active (paused)" in row
