"""Infra fixtures: one in-process synthesis per session (two stacks in one app), and the real CDK CLI
started in the background at the same moment so the two synths overlap instead of adding up.

- `default` stack: the configuration a new user gets (nothing declared, dry-run, one forecast shard).
- `fleet` stack: tag discovery for 25,000 expected targets (3 shards → the Step Functions fan-out),
  a customer KMS key, an SNS alarm topic, two declared targets, and a fixed account and region.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))

from forescale_infra.jsii_node import use_pinned_node  # noqa: E402

use_pinned_node()  # the in-process synth runs jsii on the same Node as `cdk synth` (infra/app.py)

CDK_BIN = REPO / "node_modules" / ".bin" / "cdk"

FLEET_CONFIG: dict[str, Any] = {
    "stack_name": "forescale-fleet",
    "account": "123456789012",
    "region": "eu-west-1",
    "tag_discovery": True,
    "expected_targets": 25_000,
    "demand_sources": ["com.example.checkout", "com.example.search"],
    "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:forescale-ops",
    "targets": [
        {
            "name": "checkout",
            "kind": "lambda-provisioned",
            "function_name": "checkout",
            "qualifier": "live",
            "metrics": True,  # opts in to per-target dashboard metrics
        },
        {"name": "search", "kind": "lambda-reserved", "function_name": "search"},
        {
            "name": "llm",
            "kind": "sagemaker-instance-count",
            "endpoint_name": "LLM-Prod",
            "variant_name": "AllTraffic",
        },
    ],
}


@dataclass
class Synth:
    """One synthesised stack: the CDK objects, its config and its template as a dict."""

    stack: Any
    config: Any
    template: dict[str, Any]
    assertions: Any  # aws_cdk.assertions.Template

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_name}


@dataclass
class Synthesis:
    app: Any
    outdir: Path
    default: Synth
    fleet: Synth
    seconds: float


@dataclass
class CliRun:
    process: subprocess.Popen[bytes] | None
    outdir: Path
    docker_log: Path
    started: float
    skip_reason: str | None = None


def _docker_shim(directory: Path) -> tuple[Path, Path]:
    """A `docker` that records any call and fails: synth must never build an image."""
    log = directory / "docker-calls.log"
    shim = directory / "docker"
    shim.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexit 1\n')
    shim.chmod(0o755)
    return shim, log


@pytest.fixture(scope="session")
def cli_synth(tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """Start `cdk synth` through the pinned CLI, with no AWS credentials, a fake HOME and no Docker."""
    work = tmp_path_factory.mktemp("cli")
    outdir = work / "cdk.out"
    shim, log = _docker_shim(work)
    if not CDK_BIN.exists():
        return CliRun(None, outdir, log, time.monotonic(), "node_modules/.bin/cdk is absent: run `npm ci` first")
    if shutil.which("node") is None:
        return CliRun(None, outdir, log, time.monotonic(), "node is not installed")
    home = work / "home"
    home.mkdir()
    # JSII_NODE too: infra/app.py must choose the Node itself, as it does for a user.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "JSII_NODE"}
    env.update(
        HOME=str(home),
        PATH=f"{work}{os.pathsep}{env.get('PATH', '')}",
        CDK_DOCKER=str(shim),
        AWS_EC2_METADATA_DISABLED="true",  # never probe an instance-metadata endpoint for credentials
        CDK_DISABLE_VERSION_CHECK="1",
    )
    # As the README runs it (no --quiet), so the test sees everything a user would; only the output
    # folder differs.
    command = [str(CDK_BIN), "synth", "--output", str(outdir)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return CliRun(process, outdir, log, time.monotonic())


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory, cli_synth: CliRun) -> Synthesis:
    """Both stacks in one app, synthesised once (the CLI run above is already going in parallel)."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from forescale_infra.config import InfraConfig
    from forescale_infra.stack import ForescaleStack

    outdir = tmp_path_factory.mktemp("synth")
    started = time.monotonic()
    # The same feature flags as `cdk synth` through the CLI (cdk.json's context).
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    app = App(outdir=str(outdir), context=context)
    built = {}
    for key, raw in (("default", {}), ("fleet", FLEET_CONFIG)):
        config = InfraConfig.model_validate(raw)
        stack = ForescaleStack(app, f"Forescale-{key}", config=config)
        built[key] = (stack, config)
    assembly = app.synth()
    seconds = time.monotonic() - started
    synths = {}
    for key, (stack, config) in built.items():
        template = json.loads((outdir / assembly.get_stack_by_name(stack.stack_name).template_file).read_text())
        synths[key] = Synth(stack, config, template, Template.from_json(template))
    return Synthesis(app, outdir, synths["default"], synths["fleet"], seconds)


@pytest.fixture(scope="session")
def default(synthesis: Synthesis) -> Synth:
    return synthesis.default


@pytest.fixture(scope="session")
def fleet(synthesis: Synthesis) -> Synth:
    return synthesis.fleet


def resolve_name(value: Any) -> str:
    """Placeholder text for a CloudFormation intrinsic (Ref / GetAtt), so settings models can parse it."""
    return value if isinstance(value, str) else "resolved-at-deploy"
