"""The `forescale replay` contract: the decisions CSV, exit code 2 and a message naming the line on bad input."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from forescale.cli import main


def _write(tmp: Path, rows: list[str], sidecar: dict | None = None) -> Path:
    path = tmp / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    side = sidecar or {"step_s": 60, "targets": {"fn": {"kind": "lambda", "duration_ms": 100, "memory_mb": 512}}}
    (tmp / "t.targets.json").write_text(json.dumps(side))
    return path


def _good_rows(n: int = 30) -> list[str]:
    return ["timestamp,target,requests"] + [f"{1000 + 60 * i},fn,{100 + (i % 7) * 30}" for i in range(n)]


@pytest.mark.parametrize("policy", ["predictive", "reactive", "target-tracking", "seasonal-naive", "static"])
def test_given_a_good_trace_when_replayed_then_the_decisions_csv_follows_the_contract(
    tmp_path: Path, policy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _write(tmp_path, _good_rows())
    out = tmp_path / "d.csv"
    assert main(["replay", "--trace", str(trace), "--out", str(out), "--policy", policy]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["decided_at", "target", "capacity"]
    assert len(rows) > 1
    times = [int(r[0]) for r in rows[1:]]
    assert times == sorted(times) and all(1000 <= t < 1000 + 60 * 30 for t in times)
    assert all(r[1] == "fn" and int(r[2]) >= 0 for r in rows[1:])
    # Only changes are written.
    caps = [int(r[2]) for r in rows[1:]]
    assert all(a != b for a, b in itertools.pairwise(caps))
    assert "wall" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        (["timestamp,target,requests", "1000,fn,5", "1060,fn,x"], "t.csv:3:"),
        (["timestamp,target,requests", "1000,fn,5", "1060,fn"], "t.csv:3:"),
        (["time,target,requests", "1000,fn,5"], "t.csv:1:"),
        (["timestamp,target,requests", "1000,fn,5", "1000,fn,5"], "t.csv:3:"),
        (["timestamp,target,requests", "1000,fn,-1"], "t.csv:2:"),
        (["timestamp,target,requests", "1000,other,5"], "other"),
    ],
    ids=["not-a-number", "short-row", "bad-header", "duplicate", "negative", "unknown-target"],
)
def test_given_a_malformed_trace_when_replayed_then_exit_2_names_the_line(
    tmp_path: Path, rows: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _write(tmp_path, rows)
    code = main(["replay", "--trace", str(trace), "--out", str(tmp_path / "d.csv")])
    assert code == 2
    assert needle in capsys.readouterr().err


def test_given_an_unknown_target_filter_when_replayed_then_exit_2_lists_the_known_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _write(tmp_path, _good_rows())
    code = main(["replay", "--trace", str(trace), "--out", str(tmp_path / "d.csv"), "--only", "nope"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "fn" in err


def test_given_an_unknown_policy_parameter_when_replayed_then_exit_2_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _write(tmp_path, _good_rows())
    code = main(
        [
            "replay",
            "--trace",
            str(trace),
            "--out",
            str(tmp_path / "d.csv"),
            "--policy",
            "reactive",
            "--param",
            "windw=3",
        ]
    )
    assert code == 2
    assert "windw" in capsys.readouterr().err


def test_given_an_unknown_policy_when_parsed_then_argparse_exits_2() -> None:
    with pytest.raises(SystemExit) as e:
        main(["replay", "--trace", "x.csv", "--out", "d.csv", "--policy", "magic"])
    assert e.value.code == 2


def test_given_a_sidecar_override_when_replayed_then_it_is_used(tmp_path: Path) -> None:
    trace = _write(tmp_path, _good_rows())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"step_s": 60, "targets": {"fn": {"kind": "lambda", "duration_ms": 2000}}}))
    out_default, out_other = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["replay", "--trace", str(trace), "--out", str(out_default), "--policy", "reactive"]) == 0
    assert (
        main(
            ["replay", "--trace", str(trace), "--out", str(out_other), "--policy", "reactive", "--targets", str(other)]
        )
        == 0
    )
    # 20x the duration is 20x the offered load: several times the environments.
    cap = lambda p: max(int(r[2]) for r in list(csv.reader(p.open()))[1:])  # noqa: E731
    assert cap(out_other) > 3 * cap(out_default)
