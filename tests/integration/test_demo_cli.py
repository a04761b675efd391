"""`forescale demo` as a user runs it: bad input, a taken port, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forescale.cli import main
from forescale.local.server import LocalAws, port_is_free


def test_given_a_malformed_trace_then_exit_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("timestamp,target,requests\n1795392000,api,10\n1795392060,api,lots\n")
    (tmp_path / "bad.targets.json").write_text(
        '{"step_s": 60, "targets": {"api": {"kind": "lambda", "duration_ms": 100}}}'
    )
    assert main(["demo", "--trace", str(trace), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and ":3" in err
    assert not (tmp_path / "out").exists()


def test_given_the_asked_port_is_taken_then_another_is_used() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with LocalAws(port=taken) as aws:
            assert aws.port != taken and "taken" in aws.note
            assert os.environ["AWS_ENDPOINT_URL"] == aws.endpoint
            assert aws.client("sqs").list_queues().get("QueueUrls", []) == []
        assert "AWS_ENDPOINT_URL" not in os.environ or os.environ["AWS_ENDPOINT_URL"] != aws.endpoint


@pytest.mark.slow
def test_given_ctrl_c_then_the_demo_stops_cleanly_and_frees_its_port(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forescale.cli",
            "demo",
            "--days",
            "1",
            "--history-days",
            "1.02",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As in a terminal: a shell's background job (`cmd &`) starts with SIGINT ignored, and Python
        # then never raises KeyboardInterrupt, so the test must not inherit that from whoever ran pytest.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - no threads in the child yet
    )
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.time() + 120
        while time.time() < deadline:
            line = proc.stdout.readline()
            if "running" in line:  # provisioned and in the minute loop
                break
            if "127.0.0.1:" in line:
                port = int(line.split("127.0.0.1:")[1].split()[0].strip("()"))
        assert port is not None
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted; nothing is left running" in err
        assert port_is_free(port)
    finally:
        if proc.poll() is None:  # a failed assertion must not leave the demo running
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_given_keep_then_the_local_aws_stays_up_for_the_cli_until_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "forescale.cli", "demo", "--keep", "--days", "0.005", "--history-days", "1.02"),
            *("--out", str(tmp_path / "out"), "--no-progress"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - as above
    )
    try:
        assert proc.stdout is not None
        exported: dict[str, str] = {}
        deadline = time.time() + 600
        while time.time() < deadline and "FORESCALE_NOW" not in exported:
            line = proc.stdout.readline()
            assert line, "the demo ended before printing the environment"
            if line.strip().startswith("export "):
                key, _, value = line.strip().removeprefix("export ").partition("=")
                exported[key] = value
        assert {"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "FORESCALE_TABLE", "FORESCALE_NOW"} <= set(
            exported
        )
        assert (tmp_path / "out" / "report.html").is_file()  # the report is written before it holds
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | exported
        listed = subprocess.run(
            [sys.executable, "-m", "forescale.cli", "targets", "list"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert "api-steady" in listed.stdout and "gpu-endpoint" in listed.stdout
        # FORESCALE_NOW is the demo clock's end: against it the samples are fresh, not hours stale.
        status = subprocess.run(
            [sys.executable, "-m", "forescale.cli", "status", "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        assert "no demand sample" not in status.stdout, status.stdout
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
