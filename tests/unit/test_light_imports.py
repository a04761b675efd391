"""The light runtime never pays for the heavy stack: the domain imports no pandas, numpy,
statsforecast or boto3 (checked in a fresh interpreter, so nothing else has imported them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "forescale.domain.targets",
    "forescale.domain.sizing",
    "forescale.domain.guardrails",
    "forescale.domain.forecast",
    "forescale.domain.decision",
    "forescale.domain.history",
    "forescale.domain.policies",
    "forescale.domain.planner",
    "forescale.replay.trace",
    "forescale.replay.engine",
]
HEAVY = ["pandas", "numpy", "statsforecast", "scipy", "boto3", "botocore"]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_given_a_fresh_interpreter_when_a_light_module_is_imported_then_no_heavy_module_is_loaded(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


LIGHT_HANDLERS = ["collect", "plan", "act", "react", "rightsize"]
HANDLER_HEAVY = ["pandas", "numpy", "statsforecast", "scipy", "fugue", "pyarrow"]


@pytest.mark.parametrize("function", LIGHT_HANDLERS)
def test_given_a_fresh_interpreter_when_a_light_handler_is_imported_then_no_forecasting_stack_is_loaded(
    function: str,
) -> None:
    from tests.conftest import REPO

    path = REPO / "functions" / function / "handler.py"
    if not path.exists():
        pytest.fail(f"functions/{function}/handler.py is missing")
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('handler', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['handler'] = module\n"
        "spec.loader.exec_module(module)\n"
        f"print(json.dumps(sorted(m for m in {HANDLER_HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
