#!/usr/bin/env python3
"""The CDK app: `npx cdk synth|deploy` runs this (see cdk.json at the repository root).

It reads the typed configuration from CDK context (and the JSON file that `-c config=...` names),
builds the stack, and registers cdk-nag's AwsSolutions pack, so synthesis fails on any finding that
is not acknowledged with a reason. It makes no AWS calls: no lookups, no STS.
"""

from __future__ import annotations

import sys
from pathlib import Path

from forescale_infra.jsii_node import use_pinned_node

use_pinned_node()  # before aws_cdk is imported: the import starts jsii's Node process

from aws_cdk import App  # noqa: E402

from forescale_infra.config import ConfigError, InfraConfig  # noqa: E402
from forescale_infra.nag import add_aws_solutions_checks  # noqa: E402
from forescale_infra.stack import ForescaleStack  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_app(app: App | None = None) -> tuple[App, ForescaleStack]:
    """Build the app and its one stack from the app's context; used by `main` and by the tests."""
    app = app or App()
    context = {key: app.node.try_get_context(key) for key in _context_keys()}
    config = InfraConfig.load({k: v for k, v in context.items() if v is not None}, base_dir=REPO_ROOT)
    stack = ForescaleStack(app, "Forescale", config=config)
    add_aws_solutions_checks(app)
    return app, stack


def _context_keys() -> list[str]:
    from forescale_infra.config import CONTEXT_FILE_KEY

    return [CONTEXT_FILE_KEY, *InfraConfig.model_fields]


def main() -> int:
    try:
        app, _ = build_app()
    except ConfigError as exc:
        print(f"forescale infra: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
