"""The infra config: defaults, shard planning, context parsing and clear errors (no synthesis here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forescale_infra.config import ConfigError, InfraConfig
from forescale_infra.nag import acknowledge


def test_given_no_configuration_when_loaded_then_a_dry_run_single_shard_install() -> None:
    config = InfraConfig.load({}, base_dir=Path("."))
    assert config.default_mode == "dry-run"
    assert config.targets == () and not config.tag_discovery
    assert config.forecast_shard_size == 10_000
    assert (config.forecast_shard_count, config.fan_out) == (1, False)
    assert config.schedules.collect == "rate(1 minute)"
    assert config.schedules.forecast == "rate(5 minutes)"
    assert config.schedules.rightsize == "rate(1 hour)"
    assert config.account is None and config.region is None  # environment-agnostic by default


@pytest.mark.parametrize(
    ("expected", "shard_size", "shards"),
    [(2000, 2000, 1), (2001, 2000, 2), (5000, 2000, 3), (10_000, 1500, 7), (20_000, 2000, 10)],
)
def test_given_expected_targets_when_planning_shards_then_ceil_of_targets_over_shard_size(
    expected: int, shard_size: int, shards: int
) -> None:
    config = InfraConfig(tag_discovery=True, expected_targets=expected, forecast_shard_size=shard_size)
    assert config.forecast_shard_count == shards
    assert config.fan_out is (shards > 1)


def test_given_context_strings_when_loaded_then_typed_but_account_stays_text(tmp_path: Path) -> None:
    config = InfraConfig.load(
        {
            "account": "012345678901",  # a leading zero proves it was not parsed as a number
            "region": "eu-west-1",
            "tag_discovery": "true",
            "expected_targets": "4500",
            "forecast_shard_size": "1500",
            "schedules": '{"forecast": "rate(10 minutes)"}',
            "@aws-cdk/core:someFeatureFlag": True,  # CDK's own context keys are ignored
        },
        base_dir=tmp_path,
    )
    assert config.account == "012345678901"
    assert config.tag_discovery is True
    assert config.forecast_shard_count == 3
    assert config.schedules.forecast == "rate(10 minutes)"
    assert config.schedules.collect == "rate(1 minute)"  # untouched fields keep their defaults


def test_given_a_config_file_when_context_overrides_a_key_then_context_wins(tmp_path: Path) -> None:
    (tmp_path / "prod.json").write_text(json.dumps({"event_bus_name": "from-file", "log_retention_days": 90}))
    config = InfraConfig.load({"config": "prod.json", "event_bus_name": "from-context"}, base_dir=tmp_path)
    assert config.event_bus_name == "from-context"
    assert config.log_retention_days == 90


@pytest.mark.parametrize(
    ("context", "names"),
    [
        ({"schedules": '{"collect": "every minute"}'}, "not an EventBridge schedule"),
        ({"log_retention_days": "31"}, "log_retention_days must be one of"),
        ({"kms_key_arn": "alias/mine"}, "is not a KMS key ARN"),
        ({"alarm_prefix": "ops-x"}, "must not start with 'ops-'"),
        ({"expected_targets": "100"}, "expected_targets only applies with tag_discovery"),
        (
            {"tag_discovery": "true", "expected_targets": "150000", "forecast_max_parallel_shards": "10"},
            "need 15 forecast shards of 10000, more than forecast_max_parallel_shards=10",
        ),
        ({"functions": '{"colect": {"memory_mb": 256, "timeout_s": 10}}'}, "unknown function(s) ['colect']"),
        (
            {"targets": '[{"name": "a", "kind": "lambda-provisioned", "function_name": "f"}]'},
            "provisioned concurrency needs a qualifier",
        ),
        (
            {
                "targets": '[{"name": "a", "kind": "lambda-reserved", "function_name": "f"},'
                ' {"name": "a", "kind": "lambda-reserved", "function_name": "g"}]'
            },
            "duplicate target names: ['a']",
        ),
    ],
)
def test_given_bad_configuration_when_loaded_then_the_error_names_the_problem(
    context: dict[str, str], names: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as raised:
        InfraConfig.load(context, base_dir=tmp_path)
    assert names in str(raised.value)


def test_given_a_missing_config_file_when_loaded_then_the_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.json .* does not exist"):
        InfraConfig.load({"config": "nope.json"}, base_dir=tmp_path)


def test_given_partial_function_sizing_when_loaded_then_other_functions_keep_defaults() -> None:
    config = InfraConfig.model_validate({"functions": {"forecast": {"memory_mb": 4096, "timeout_s": 200}}})
    assert config.functions["forecast"].memory_mb == 4096
    assert config.functions["act"].timeout_s == 55


def test_given_a_vague_reason_when_acknowledging_a_nag_rule_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="must explain why"):
        acknowledge(None, "AwsSolutions-IAM5[Resource::*]", "not needed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an AwsSolutions rule id"):
        acknowledge(None, "IAM5", "a long enough reason that still names the wrong rule id format")  # type: ignore[arg-type]


def test_the_example_config_file_loads() -> None:
    repo = Path(__file__).resolve().parents[2]
    config = InfraConfig.load({"config": "infra/config/example.json"}, base_dir=repo)
    assert [t.name for t in config.targets] == ["checkout", "search", "llm"]
    assert config.tag_discovery and config.default_mode == "dry-run"


def test_given_an_unknown_key_in_the_config_file_when_loaded_then_it_is_named(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"event_bus": "typo"}))
    with pytest.raises(ConfigError, match="event_bus"):
        InfraConfig.load({"config": "c.json"}, base_dir=tmp_path)
