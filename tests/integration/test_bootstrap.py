"""`./uvw`, the README's first word (issue 16): uv from PATH, or installed once into .tools/uv/ by a
python3 that refuses `pip install` (PEP 668), or by one without pip through a virtual environment.

The Pythons without uv are built for each test from the interpreter that runs the tests: its binary
copied into a folder whose `lib/python3.X/` links to the real standard library, plus what a stock
Debian/Ubuntu python3 has or lacks (an `EXTERNALLY-MANAGED` file; no pip; no `ensurepip`, which is
Debian's python3-venv). Nothing is installed into any real Python.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"


def _repo_copy(tmp_path: Path) -> Path:
    """The script alone in a folder, so .tools/ lands there and not in the checkout."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(REPO / "uvw", repo / "uvw")
    return repo


def _path_without_uv() -> str:
    """PATH minus every folder holding a `uv`, so the script must find or install its own."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if f and not (Path(f) / "uv").exists())


def _python(tmp_path: Path, *, pip: bool, ensurepip: bool, externally_managed: bool) -> Path:
    """A non-virtual Python whose standard library and site-packages this test decides."""
    base = Path(sys.base_prefix)
    binary = base / "bin" / VERSION
    stdlib = base / "lib" / VERSION
    if not binary.is_file() or not (stdlib / "os.py").is_file():
        pytest.skip(f"the test interpreter's base has no {binary} and {stdlib}/os.py to build a Python from")
    root = tmp_path / "python"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(binary, root / "bin" / VERSION)
    (root / "bin" / "python3").symlink_to(VERSION)
    for shared in (base / "lib").glob("libpython*"):  # builds that find libpython at $ORIGIN/../lib
        (root / "lib" / shared.name).parent.mkdir(parents=True, exist_ok=True)
        (root / "lib" / shared.name).symlink_to(shared)
    lib = root / "lib" / VERSION
    lib.mkdir(parents=True)
    for entry in stdlib.iterdir():
        if entry.name == "site-packages" or (entry.name == "ensurepip" and not ensurepip):
            continue
        if entry.name != "EXTERNALLY-MANAGED":
            (lib / entry.name).symlink_to(entry)
    site = lib / "site-packages"
    site.mkdir()
    if pip:
        real_site = stdlib / "site-packages"
        for entry in real_site.iterdir():
            if entry.name.startswith("pip"):
                (site / entry.name).symlink_to(entry)
    if externally_managed:
        (lib / "EXTERNALLY-MANAGED").write_text(
            "[externally-managed]\nError=This Python is managed by the test's pretend distribution.\n"
        )
    python = root / "bin" / "python3"
    probe = subprocess.run(
        [str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0 or Path(probe.stdout.strip()) != root:
        pytest.skip(f"a copied interpreter does not take its folder as prefix here: {probe.stdout}{probe.stderr}")
    return python


def _run_uvw(repo: Path, python: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = _path_without_uv()
    if python is not None:
        env["PYTHON"] = str(python)
    return subprocess.run(
        [str(repo / "uvw"), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _skip_without_index(python: Path) -> None:
    """These tests install uv from the package index pip is configured with; without it they cannot."""
    probe = subprocess.run(
        [str(python), "-m", "pip", "index", "versions", "uv"], capture_output=True, text=True, timeout=120, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"the package index is not reachable from pip, so uv cannot be installed: {probe.stderr[-300:]}")


def test_given_uv_on_path_when_uvw_runs_then_it_is_that_uv_with_every_argument(tmp_path: Path) -> None:
    repo = _repo_copy(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "uv"
    fake.write_text('#!/bin/sh\nprintf "fake uv:"; printf " [%s]" "$@"; echo\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{_path_without_uv()}")
    run = subprocess.run(
        [str(repo / "uvw"), "run", "forescale", "demo", "--days", "0.1"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "fake uv: [run] [forescale] [demo] [--days] [0.1]"
    assert not (repo / ".tools").exists(), "uv was on PATH: nothing may be installed"


def test_given_python_without_pip_or_venv_when_no_uv_then_it_names_the_apt_package(tmp_path: Path) -> None:
    """A stock Debian/Ubuntu python3 before `apt-get install python3-venv`: one line that says what to do."""
    repo = _repo_copy(tmp_path)
    python = _python(tmp_path, pip=False, ensurepip=False, externally_managed=True)
    run = _run_uvw(repo, python, "--version")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("uvw: ") and "neither pip nor a working venv" in last, run.stderr
    assert "apt-get install python3-venv" in last, run.stderr
    assert "Traceback" not in run.stderr
    leftovers = sorted(p.name for p in (repo / ".tools").iterdir())
    assert leftovers == [], f"a failed install left {leftovers}"


@pytest.mark.slow
def test_given_externally_managed_python_with_pip_when_no_uv_then_uv_is_installed_into_tools(tmp_path: Path) -> None:
    repo = _repo_copy(tmp_path)
    python = _python(tmp_path, pip=True, ensurepip=True, externally_managed=True)
    # Given: pip refuses to install into this Python, as on a stock Debian/Ubuntu.
    refused = subprocess.run(
        [str(python), "-m", "pip", "install", "--dry-run", "uv"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr, refused.stderr
    _skip_without_index(python)

    first = _run_uvw(repo, python, "--version")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("uv "), first.stdout
    assert "installing it into" in first.stderr
    assert (repo / ".tools" / "uv" / "bin" / "uv").is_file()
    assert [p.name for p in (repo / ".tools").iterdir()] == ["uv"], "no staging folder left behind"

    again = _run_uvw(repo, python, "--version")
    assert again.returncode == 0 and again.stdout == first.stdout
    assert again.stderr == "", "the second run uses .tools/uv without installing"


@pytest.mark.slow
def test_given_python_without_pip_but_with_venv_when_no_uv_then_a_venv_installs_it(tmp_path: Path) -> None:
    """python3-venv installed, python3-pip not: the venv's own pip (from ensurepip) installs uv."""
    repo = _repo_copy(tmp_path)
    python = _python(tmp_path, pip=False, ensurepip=True, externally_managed=True)
    assert subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, check=False).returncode != 0
    with_pip = _python(tmp_path / "probe", pip=True, ensurepip=True, externally_managed=False)
    _skip_without_index(with_pip)

    run = _run_uvw(repo, python, "--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("uv "), run.stdout
    assert (repo / ".tools" / "uv" / "bin" / "uv").is_file()
    assert not (repo / ".tools" / "uv" / "venv").exists(), "the helper venv is removed once uv is in place"
