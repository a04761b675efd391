"""cdk-nag AwsSolutions (zero unacknowledged findings), cfn-lint (no errors), staged assets, and the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.infra.conftest import REPO, CliRun, Synthesis


def test_aws_solutions_pack_reports_no_unacknowledged_finding(synthesis: Synthesis) -> None:
    """Any new finding fails here with its rule and construct path; acknowledge it with a reason or fix it."""
    from cdk_nag import AwsSolutionsChecks

    report = AwsSolutionsChecks(synthesis.app).validate_scope(synthesis.app)
    findings = [
        f"{v.rule_name} at {r.construct_path}: {v.description}"
        for v in report.violations
        for r in v.violating_resources
    ]
    assert findings == []
    assert report.success


def test_every_acknowledgement_carries_a_specific_reason(synthesis: Synthesis) -> None:
    from aws_cdk import Validations

    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged: list[tuple[str, str, str]] = []
    for construct in synthesis.app.node.find_all():
        for entry in construct.node.metadata:
            kind = entry["type"] if isinstance(entry, dict) else entry.type
            if kind == key:
                data = entry["data"] if isinstance(entry, dict) else entry.data
                # {"Annotation::<rule id>": "<reason>", ...}
                acknowledged.extend((construct.node.path, rule_id, reason) for rule_id, reason in data.items())
    assert acknowledged, "no acknowledgements found: the metadata key or format changed"
    for path, rule_id, reason in acknowledged:
        assert len(reason) >= 40 and "placeholder" not in reason, (path, rule_id, reason)


@pytest.mark.slow  # 20-55 s of linting; the fast tier keeps cdk-nag, the template and IAM checks
def test_cfn_lint_finds_no_errors(synthesis: Synthesis) -> None:
    templates = [
        synthesis.outdir / f"{stack_id}.template.json" for stack_id in ("Forescale-default", "Forescale-fleet")
    ]
    run = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "json", *map(str, templates)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    matches = json.loads(run.stdout or "[]")
    errors = [m for m in matches if m["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=1)[:4000]
    assert run.returncode in (0, 4, 8, 12), run.stderr[-2000:]  # bit 2 (errors) never set
    rules = sorted({m["Rule"]["Id"] for m in matches})
    print(f"\ncfn-lint on {len(templates)} templates: 0 errors, {len(matches)} warning/info finding(s) {rules}")


def test_assets_are_staged_without_building_anything(synthesis: Synthesis) -> None:
    assets = json.loads((synthesis.outdir / "Forescale-default.assets.json").read_text())
    files = [synthesis.outdir / a["source"]["path"] for a in assets["files"].values() if "path" in a["source"]]
    staged = {p for p in files if p.is_dir()}
    layer = [p for p in staged if (p / "python" / "forescale" / "__init__.py").exists()]
    assert len(layer) == 1, "the shared layer keeps the python/ layout Lambda expects"
    assert not list(layer[0].rglob("__pycache__"))
    handlers = [p for p in staged if (p / "handler.py").exists()]
    assert len(handlers) == 5
    (image,) = assets["dockerImages"].values()
    context = synthesis.outdir / image["source"]["directory"]
    assert (context / "functions" / "forecast" / "Dockerfile").exists()
    assert (context / "uv.lock").exists() and (context / "layers" / "forescale" / "python" / "forescale").is_dir()
    for heavy in (".venv", "node_modules", "cdk.out", ".git", "tests"):
        assert not (context / heavy).exists(), heavy
    size = sum(f.stat().st_size for f in context.rglob("*") if f.is_file())
    assert size < 5_000_000, f"docker build context is {size} bytes: check .dockerignore"


# Not slow: the session's `synthesis` fixture starts this CLI run in the background anyway, in every tier.
def test_real_cdk_cli_synthesises_offline_without_credentials(cli_synth: CliRun, synthesis: Synthesis) -> None:
    """`cdk synth` through the pinned npm CLI (cdk.json's app command), no AWS_* variables, a fake HOME,
    a docker that fails if called. It runs cdk-nag as a validation plugin, so exit 0 also means zero
    unacknowledged findings."""
    if cli_synth.skip_reason:
        pytest.skip(cli_synth.skip_reason)
    assert cli_synth.process is not None
    output, _ = cli_synth.process.communicate(timeout=600)
    seconds = time.monotonic() - cli_synth.started
    text = output.decode(errors="replace")
    assert cli_synth.process.returncode == 0, text[-6000:]
    # What a user must not see (issue 16): jsii's Node warning relayed as Python bytes literals, and
    # the CLI's count of feature flags cdk.json leaves unset.
    bytes_literals = [line for line in text.splitlines() if re.match(r"""b['"]""", line)]
    assert not bytes_literals, "\n".join(bytes_literals[:12])
    assert "feature flags are not configured" not in text, text[-3000:]
    template = cli_synth.outdir / "Forescale.template.json"
    assert template.exists(), sorted(p.name for p in cli_synth.outdir.iterdir())
    body = json.loads(template.read_text())
    assert sum(r["Type"] == "AWS::Lambda::Function" for r in body["Resources"].values()) == 6
    assert not cli_synth.docker_log.exists(), f"synth called docker: {cli_synth.docker_log.read_text()}"
    version = json.loads((REPO / "node_modules" / "aws-cdk" / "package.json").read_text())["version"]
    assert version == json.loads((REPO / "package.json").read_text())["devDependencies"]["aws-cdk"]
    print(
        f"\ncdk synth (aws-cdk {version}) exited 0 in {seconds:.1f} s wall "
        f"(overlapping the in-process synth of {synthesis.seconds:.1f} s)"
    )


def test_cdk_cli_is_pinned_exactly() -> None:
    package = json.loads((REPO / "package.json").read_text())
    assert package["devDependencies"]["aws-cdk"] == "2.1148.1"
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == "2.1148.1"
    cdk_json = json.loads((REPO / "cdk.json").read_text())
    assert cdk_json["app"].endswith("infra/app.py")
