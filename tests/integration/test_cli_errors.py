"""Issue 16: the commands a new user tries next fail with one line that names the problem, exit 2, and
no traceback, before any work runs. And every option of every command says what it does (`--help`)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from forescale.adapters.state import table_definition
from forescale.cli import _build_parser, main


def one_line_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI, check it exits 2 with exactly one line on stderr, and return that line."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The demo and the replay refuse to start: a check that let a bad argument through would show here."""
    started: list[str] = []

    def refuse(name: str) -> object:
        def run(*_: object, **__: object) -> int:
            started.append(name)
            raise AssertionError(f"{name} started despite a bad argument")

        return run

    monkeypatch.setattr("forescale.demo.runner.run_demo", refuse("demo"))
    monkeypatch.setattr("forescale.replay.engine.replay", refuse("replay"))
    return started


def test_demo_out_that_cannot_be_created(capsys: pytest.CaptureFixture[str], no_work: list[str]) -> None:
    line = one_line_error(capsys, ["demo", "--out", "/proc/x"])
    assert line.startswith("forescale demo: --out /proc/x: cannot create this folder")
    assert no_work == []


def test_demo_out_that_is_an_existing_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_work: list[str]
) -> None:
    existing = tmp_path / "report.txt"
    existing.write_text("keep me")
    line = one_line_error(capsys, ["demo", "--out", str(existing)])
    assert line == f"forescale demo: --out {existing} is a file; it must be a folder (new or existing) for the report"
    assert existing.read_text() == "keep me" and no_work == []


@pytest.mark.parametrize(
    ("option", "value"), [("--days", "0"), ("--days", "-1"), ("--history-days", "-3"), ("--history-days", "nan")]
)
def test_demo_days_that_are_not_positive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_work: list[str], option: str, value: str
) -> None:
    line = one_line_error(capsys, ["demo", option, value, "--out", str(tmp_path / "out")])
    assert line.startswith(f"forescale demo: {option} must be a number of days > 0, got ")
    assert no_work == [] and not (tmp_path / "out").exists()


def test_replay_out_that_is_a_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path, no_work: list[str]) -> None:
    line = one_line_error(capsys, ["replay", "--builtin", "--out", str(tmp_path)])
    example = tmp_path / "decisions.csv"
    assert line == f"forescale replay: --out {tmp_path} is a folder; it must be a file, e.g. {example}"
    assert no_work == []


def test_replay_unknown_param_lists_the_valid_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_work: list[str]
) -> None:
    out = str(tmp_path / "d.csv")
    line = one_line_error(capsys, ["replay", "--builtin", "--out", out, "--param", "nosuch=1"])
    assert line.startswith("forescale replay: --param nosuch: not a parameter of the predictive policy; valid: ")
    assert "sizing_quantile" in line and "slo_gain" in line
    line = one_line_error(capsys, ["replay", "--builtin", "--out", out, "--policy", "reactive", "--param", "x=1"])
    assert line.endswith("not a parameter of the reactive policy; valid: window, headroom")
    line = one_line_error(capsys, ["replay", "--builtin", "--out", out, "--param", "sizing_quantile=7"])
    assert line.startswith("forescale replay: --param: sizing_quantile must be")
    assert no_work == []


def test_replay_compare_with_nothing_after_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_work: list[str]
) -> None:
    line = one_line_error(capsys, ["replay", "--builtin", "--out", str(tmp_path / "d.csv"), "--compare"])
    assert line == (
        "forescale replay: --compare needs one or more policies after it: "
        "predictive, reactive, target-tracking, seasonal-naive, static"
    )
    assert no_work == []


# ---------------------------------------------------------------- the operator commands: region and credentials


@pytest.fixture
def bare_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No region, credentials or profile anywhere boto3 looks, and no instance metadata to ask."""
    for name in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("FORESCALE_TABLE", "forescale")


@pytest.mark.parametrize("command", [["targets", "list"], ["status"], ["explain", "api"], ["pause", "--reason", "r"]])
def test_operator_command_without_a_region(
    bare_aws: None, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    line = one_line_error(capsys, command)
    assert line.endswith("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or pass --region")


def test_operator_command_without_credentials(
    bare_aws: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    line = one_line_error(capsys, ["targets", "list"])
    assert line.startswith("forescale targets: no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID")


@pytest.fixture
def table_in(bare_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("dynamodb", region_name="eu-west-1").create_table(**table_definition("forescale"))
        yield


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_targets_list_honours_the_region_variables(
    table_in: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """docs/deploy.md has the user export AWS_REGION; botocore itself reads only AWS_DEFAULT_REGION."""
    monkeypatch.setenv(variable, "eu-west-1")  # where the table is: any other region has no such table
    assert main(["targets", "list"]) == 0
    assert capsys.readouterr().out.startswith("no targets registered")


def test_a_table_that_does_not_exist_is_one_line(
    table_in: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    line = one_line_error(capsys, ["targets", "--table", "nosuch", "list"])
    assert line.startswith("forescale targets: AWS refused Query: ResourceNotFoundException")


# ---------------------------------------------------------------- help


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{path}: {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_and_argument_of_every_command_has_help() -> None:
    assert _options_without_help(_build_parser(), "forescale") == []
