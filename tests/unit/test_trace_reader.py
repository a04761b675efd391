"""The canonical trace reader: a good trace round-trips; every malformed input is a `TraceError` that
names the file and, for a CSV row, the line (`file:LINE:`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forescale.replay.trace import (
    Trace,
    TraceError,
    TraceTarget,
    load_trace,
    select_targets,
    sidecar_path,
    write_trace,
)
from tests.tiers import examples

FN = {"kind": "lambda", "duration_ms": 120, "memory_mb": 1024}
GPU = {
    "kind": "sagemaker",
    "min_instances": 1,
    "instance_types": {
        "ml.g5.xlarge": {"price_per_hour": 1.408, "capacity_rps": 29.2},
        "ml.g4dn.xlarge": {"price_per_hour": 0.736, "capacity_rps": 12.5},
    },
    "lead_time_s": {"up": 300, "down": 60, "type_change": 600},
}
SIDECAR = {"step_s": 60, "targets": {"fn": FN, "gpu": GPU}, "gaps": [[1060, 1120]]}
ROWS = [
    "timestamp,target,requests",
    "1000,fn,10",
    "1060,fn,0",
    "1120,fn,12.5",
    "1000,gpu,300",
    "1060,gpu,0",
    "1120,gpu,310",
]
GOOD_CSV = "\n".join(ROWS) + "\n"


def write(tmp_path: Path, csv_text: str | bytes, sidecar: dict | str | bytes | None = SIDECAR) -> Path:
    path = tmp_path / "trace.csv"
    if isinstance(csv_text, bytes):
        path.write_bytes(csv_text)
    else:
        path.write_text(csv_text)
    side = sidecar_path(path)
    if isinstance(sidecar, bytes):
        side.write_bytes(sidecar)
    elif isinstance(sidecar, str):
        side.write_text(sidecar)
    elif sidecar is not None:
        side.write_text(json.dumps(sidecar))
    return path


def with_rows(replace: dict[int, str | None] | None = None, extra: list[str] | None = None) -> str:
    """GOOD_CSV with rows replaced (by 0-based index; None deletes) and rows appended."""
    rows = list(ROWS)
    for i, new in sorted((replace or {}).items(), reverse=True):
        if new is None:
            del rows[i]
        else:
            rows[i] = new
    return "\n".join(rows + (extra or [])) + "\n"


# ------------------------------------------------------------------------------------------- good traces


def test_given_a_good_trace_when_loaded_then_every_field_is_read(tmp_path: Path) -> None:
    t = load_trace(write(tmp_path, GOOD_CSV))
    assert (t.step_s, t.start, t.steps, t.end) == (60, 1000, 3, 1180)
    assert t.targets["fn"].requests == (10.0, 0.0, 12.5)
    assert t.targets["gpu"].requests == (300.0, 0.0, 310.0)
    assert t.targets["fn"].params == FN
    assert t.targets["gpu"].kind == "sagemaker"
    assert t.gaps == ((1060, 1120),)
    assert t.gap_flags() == [False, True, False]
    assert t.path == tmp_path / "trace.csv"


def test_given_a_good_trace_when_written_and_read_back_then_it_round_trips(tmp_path: Path) -> None:
    t = load_trace(write(tmp_path, GOOD_CSV))
    out = write_trace(t, tmp_path / "copy" / "again.csv")
    assert out == tmp_path / "copy" / "again.csv"
    assert sidecar_path(out).exists()
    back = load_trace(out)
    assert (back.step_s, back.start, back.steps, back.gaps) == (t.step_s, t.start, t.steps, t.gaps)
    assert back.targets == t.targets
    assert out.read_text().splitlines() == ROWS  # integers without ".0", fractions as repr
    # and writing the re-read trace is byte-identical: the format is a fixed point
    again = write_trace(back, tmp_path / "third.csv")
    assert again.read_bytes() == out.read_bytes()
    assert sidecar_path(again).read_bytes() == sidecar_path(out).read_bytes()


def test_given_an_explicit_sidecar_path_when_loaded_then_it_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_CSV, sidecar=None)
    side = tmp_path / "elsewhere.json"
    side.write_text(json.dumps(SIDECAR))
    assert load_trace(path, side).steps == 3


def test_given_crlf_line_ends_and_no_final_newline_when_loaded_then_accepted(tmp_path: Path) -> None:
    assert load_trace(write(tmp_path, "\r\n".join(ROWS))).steps == 3


def test_given_a_trace_when_converted_to_targets_then_the_sidecar_params_are_used(tmp_path: Path) -> None:
    t = load_trace(write(tmp_path, GOOD_CSV))
    fn = t.targets["fn"].to_target()
    assert fn.duration_s == pytest.approx(0.12)
    gpu = t.targets["gpu"].to_target()
    assert gpu.instance_type == "ml.g5.xlarge"  # cheapest per rps: 0.0482 against 0.0589
    assert gpu.lead_times.up_s == 300


# -------------------------------------------------------------------------------------- malformed CSV


@pytest.mark.parametrize(
    ("csv_text", "line", "fragment"),
    [
        pytest.param(with_rows({0: "time,target,requests"}), 1, "header", id="bad-header"),
        pytest.param(with_rows({0: "timestamp,target"}), 1, "header", id="short-header"),
        pytest.param(with_rows({0: "timestamp,target,requests,extra"}), 1, "header", id="long-header"),
        pytest.param("", 1, "header", id="empty-file"),
        pytest.param(with_rows({2: "1060,fn"}), 3, "expected 3 fields, got 2", id="too-few-fields"),
        pytest.param(with_rows({3: "1120,fn,1,2"}), 4, "expected 3 fields, got 4", id="too-many-fields"),
        pytest.param(with_rows({2: ""}), 3, "expected 3 fields, got 0", id="blank-line"),
        pytest.param(with_rows({2: "1060,fn,abc"}), 3, "must be numbers", id="non-numeric-requests"),
        pytest.param(with_rows({2: "1060,fn,"}), 3, "must be numbers", id="empty-requests"),
        pytest.param(with_rows({5: "1060.5,gpu,3"}), 6, "must be numbers", id="fractional-timestamp"),
        pytest.param(with_rows({2: "soon,fn,3"}), 3, "must be numbers", id="non-numeric-timestamp"),
        pytest.param(with_rows({2: "1060,fn,-1"}), 3, "finite number >= 0", id="negative-requests"),
        pytest.param(with_rows({2: "1060,fn,nan"}), 3, "finite number >= 0", id="nan-requests"),
        pytest.param(with_rows({2: "1060,fn,NaN"}), 3, "finite number >= 0", id="NaN-requests"),
        pytest.param(with_rows({2: "1060,fn,inf"}), 3, "finite number >= 0", id="inf-requests"),
        pytest.param(with_rows({2: "1060,fn,-Infinity"}), 3, "finite number >= 0", id="minus-infinity-requests"),
        pytest.param(with_rows({2: "1060,fn,1e400"}), 3, "finite number >= 0", id="overflowing-requests"),
        pytest.param(with_rows({2: "1060,,3"}), 3, "empty target name", id="empty-target-name"),
        pytest.param(with_rows({1: "1060,fn,0", 2: "1000,fn,10"}), 3, "sorted", id="unsorted-timestamps"),
        pytest.param("\n".join([ROWS[0], *ROWS[4:], *ROWS[1:4]]) + "\n", 5, "sorted", id="unsorted-targets"),
        pytest.param(with_rows({2: "1000,fn,10"}), 3, "without duplicates", id="duplicate-row"),
        pytest.param(with_rows({2: "1000,fn,11"}), 3, "without duplicates", id="duplicate-timestamp"),
        pytest.param(with_rows({2: None}), 3, "skips from 1000 to 1120", id="skipped-step"),
        pytest.param(with_rows({6: "1180,gpu,310"}), 7, "skips from 1060 to 1180", id="skipped-last-step"),
        pytest.param(with_rows({2: "1059,fn,0"}), 3, "skips", id="off-grid-step"),
        pytest.param(with_rows({2: 'x"y,fn,1'}), 3, "must be numbers", id="stray-quote"),
        pytest.param(with_rows({2: '1060,"fn' + "x" * 200_000 + '",1'}), 3, "unreadable CSV", id="field-too-large"),
    ],
)
def test_given_a_malformed_csv_when_loaded_then_trace_error_names_file_and_line(
    tmp_path: Path, csv_text: str, line: int, fragment: str
) -> None:
    path = write(tmp_path, csv_text)
    with pytest.raises(TraceError) as e:
        load_trace(path)
    msg = str(e.value)
    assert path.name in msg
    assert f"{path}:{line}:" in msg
    assert fragment in msg


@pytest.mark.parametrize(
    ("csv_text", "fragments"),
    [
        pytest.param(ROWS[0] + "\n", ["no rows"], id="header-only"),
        pytest.param(with_rows({6: None}), ["target gpu does not cover"], id="shorter-second-target"),
        pytest.param(with_rows(extra=["1180,gpu,1"]), ["target gpu does not cover"], id="longer-second-target"),
        pytest.param(with_rows({3: None}), ["target gpu does not cover"], id="shorter-first-target"),
        pytest.param(
            with_rows({4: "1060,gpu,300", 5: "1120,gpu,0", 6: "1180,gpu,310"}),
            ["target gpu does not cover"],
            id="later-second-target",
        ),
        pytest.param(b"timestamp,target,requests\n1000,fn,\xff\n", ["not UTF-8"], id="not-utf8"),
    ],
)
def test_given_a_csv_broken_as_a_whole_when_loaded_then_trace_error_names_the_file(
    tmp_path: Path, csv_text: str | bytes, fragments: list[str]
) -> None:
    path = write(tmp_path, csv_text)
    with pytest.raises(TraceError) as e:
        load_trace(path)
    assert str(e.value).startswith(f"{path}:")
    for fragment in fragments:
        assert fragment in str(e.value)


def test_given_a_target_missing_from_the_sidecar_when_loaded_then_the_error_names_both_files(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, with_rows(extra=["1000,zz,1", "1060,zz,1", "1120,zz,1"]))
    with pytest.raises(TraceError) as e:
        load_trace(path)
    assert str(e.value) == f"{sidecar_path(path)}: target zz (in {path.name}) has no entry"


def test_given_no_csv_when_loaded_then_trace_error_cannot_open(tmp_path: Path) -> None:
    side = tmp_path / "trace.targets.json"
    side.write_text(json.dumps(SIDECAR))
    with pytest.raises(TraceError, match=r"trace\.csv: cannot open"):
        load_trace(tmp_path / "trace.csv")


# ----------------------------------------------------------------------------------- malformed sidecar


def sidecar_with(**changes) -> dict:
    side = json.loads(json.dumps(SIDECAR))
    for key, value in changes.items():
        if value is ...:
            side.pop(key)
        else:
            side[key] = value
    return side


def targets_with(name: str, **changes) -> dict:
    targets = json.loads(json.dumps(SIDECAR["targets"]))
    for key, value in changes.items():
        if value is ...:
            targets[name].pop(key)
        else:
            targets[name][key] = value
    return sidecar_with(targets=targets)


@pytest.mark.parametrize(
    ("sidecar", "fragment"),
    [
        pytest.param(None, "missing sidecar", id="sidecar-missing"),
        pytest.param('{\n "step_s": 60,\n oops\n}', ":3: invalid JSON", id="invalid-json-line-3"),
        pytest.param("", ":1: invalid JSON", id="empty-sidecar"),
        pytest.param("[1, 2]", "top level must be an object", id="top-level-list"),
        pytest.param(sidecar_with(step_s=...), "step_s must be a positive integer, got None", id="step-missing"),
        pytest.param(sidecar_with(step_s=0), "step_s must be a positive integer, got 0", id="step-zero"),
        pytest.param(sidecar_with(step_s=-60), "step_s must be a positive integer", id="step-negative"),
        pytest.param(sidecar_with(step_s=60.0), "step_s must be a positive integer", id="step-float"),
        pytest.param(sidecar_with(step_s="60"), "step_s must be a positive integer", id="step-string"),
        pytest.param(sidecar_with(step_s=True), "step_s must be a positive integer", id="step-bool"),
        pytest.param(sidecar_with(targets=...), "'targets' must be a non-empty object", id="targets-missing"),
        pytest.param(sidecar_with(targets={}), "'targets' must be a non-empty object", id="targets-empty"),
        pytest.param(sidecar_with(targets=[FN]), "'targets' must be a non-empty object", id="targets-list"),
        pytest.param(sidecar_with(targets={"fn": "lambda", "gpu": GPU}), "'kind' is required", id="params-string"),
        pytest.param(targets_with("fn", kind=...), "target fn: an object with 'kind'", id="kind-missing"),
        pytest.param(targets_with("fn", kind="ec2"), "unknown kind 'ec2'", id="unknown-kind"),
        pytest.param(targets_with("fn", duration_ms=...), "duration_ms must be a finite number > 0", id="no-duration"),
        pytest.param(targets_with("fn", duration_ms=0), "duration_ms must be a finite number > 0", id="zero-duration"),
        pytest.param(targets_with("fn", duration_ms="120"), "duration_ms", id="string-duration"),
        pytest.param(targets_with("fn", duration_ms=True), "duration_ms", id="bool-duration"),
        pytest.param(targets_with("fn", memory_mb=0), "memory_mb must be a whole number > 0", id="zero-memory"),
        pytest.param(
            targets_with("gpu", instance_types={}), "instance_types must be a non-empty object", id="no-types"
        ),
        pytest.param(targets_with("gpu", instance_types=...), "instance_types", id="types-missing"),
        pytest.param(targets_with("gpu", instance_types=["ml.g5.xlarge"]), "instance_types", id="types-list"),
        pytest.param(
            targets_with("gpu", instance_types={"ml.x": {"price_per_hour": 1.0}}),
            "instance type ml.x needs finite price_per_hour and capacity_rps > 0",
            id="type-without-capacity",
        ),
        pytest.param(
            targets_with("gpu", instance_types={"ml.x": {"price_per_hour": 0, "capacity_rps": 1}}),
            "instance type ml.x",
            id="type-free",
        ),
        pytest.param(targets_with("gpu", min_instances=-1), "min_instances must be an integer >= 0", id="min-neg"),
        pytest.param(targets_with("gpu", min_instances=1.5), "min_instances", id="min-float"),
        pytest.param(targets_with("gpu", lead_time_s={"up": -1}), "lead_time_s", id="lead-negative"),
        pytest.param(targets_with("gpu", lead_time_s={"sideways": 5}), "lead_time_s", id="lead-unknown-key"),
        pytest.param(targets_with("gpu", lead_time_s=[300]), "lead_time_s", id="lead-list"),
        pytest.param(targets_with("gpu", lead_time_s={"up": "5m"}), "lead_time_s", id="lead-string"),
        pytest.param(sidecar_with(gaps={}), "gaps must be a list", id="gaps-object"),
        pytest.param(sidecar_with(gaps=None), "gaps must be a list", id="gaps-null"),
        pytest.param(sidecar_with(gaps=[[1060]]), "gaps must be a list", id="gap-one-number"),
        pytest.param(sidecar_with(gaps=[[1000, 1060, 1120]]), "gaps must be a list", id="gap-three-numbers"),
        pytest.param(sidecar_with(gaps=[[1120, 1060]]), "start < end", id="gap-reversed"),
        pytest.param(sidecar_with(gaps=[[1060, 1060]]), "start < end", id="gap-empty"),
        pytest.param(sidecar_with(gaps=[[1060.0, 1120]]), "integer pairs", id="gap-float"),
        pytest.param(sidecar_with(gaps=[[True, 1120]]), "integer pairs", id="gap-bool"),
        pytest.param(sidecar_with(gaps=[1060, 1120]), "gaps must be a list", id="gap-flat"),
    ],
)
def test_given_a_malformed_sidecar_when_loaded_then_trace_error_names_the_sidecar(
    tmp_path: Path, sidecar: dict | str | None, fragment: str
) -> None:
    path = write(tmp_path, GOOD_CSV, sidecar)
    with pytest.raises(TraceError) as e:
        load_trace(path)
    msg = str(e.value)
    assert msg.startswith(f"{sidecar_path(path)}:")
    assert "trace.targets.json" in msg
    assert fragment in msg


@pytest.mark.parametrize(
    ("sidecar", "fragment"),
    [
        pytest.param(b'{"step_s": 60, "targets": {"\xff": 1}}', "not UTF-8", id="not-utf8"),
        pytest.param('{"step_s": ' + "9" * 5000 + "}", "invalid JSON", id="integer-past-digit-limit"),
        pytest.param("[" * 100_000 + "]" * 100_000, "invalid JSON", id="nesting-too-deep"),
    ],
)
def test_given_an_unparseable_sidecar_when_loaded_then_trace_error_not_a_crash(
    tmp_path: Path, sidecar: str | bytes, fragment: str
) -> None:
    # regression: these raised UnicodeDecodeError, ValueError and RecursionError before the fix
    path = write(tmp_path, GOOD_CSV, sidecar)
    with pytest.raises(TraceError) as e:
        load_trace(path)
    assert str(e.value).startswith(f"{sidecar_path(path)}: {fragment}")


def test_given_a_sidecar_that_is_a_directory_when_loaded_then_trace_error_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_CSV, sidecar=None)
    sidecar_path(path).mkdir()
    with pytest.raises(TraceError, match="cannot read"):
        load_trace(path)


@pytest.mark.parametrize(
    "sidecar_text",
    [
        pytest.param(json.dumps(targets_with("gpu", lead_time_s={"up": float("nan")})), id="lead-NaN"),
        pytest.param(json.dumps(targets_with("gpu", lead_time_s={"up": float("inf")})), id="lead-Infinity"),
        pytest.param(json.dumps(targets_with("gpu", lead_time_s={"up": True})), id="lead-bool"),
        pytest.param(json.dumps(targets_with("fn", duration_ms=float("inf"))), id="duration-Infinity"),
        pytest.param(json.dumps(targets_with("fn", memory_mb=float("inf"))), id="memory-Infinity"),
        pytest.param(
            json.dumps(targets_with("gpu", instance_types={"ml.x": {"price_per_hour": 1, "capacity_rps": 1e999}})),
            id="capacity-Infinity",
        ),
    ],
)
def test_given_non_finite_sidecar_numbers_when_loaded_then_trace_error(tmp_path: Path, sidecar_text: str) -> None:
    path = write(tmp_path, GOOD_CSV, sidecar_text)
    with pytest.raises(TraceError):
        load_trace(path)


# --------------------------------------------------------------------------------------- select_targets


def test_given_an_unknown_name_when_selecting_then_trace_error_names_it_and_the_known_ones(
    tmp_path: Path,
) -> None:
    t = load_trace(write(tmp_path, GOOD_CSV))
    with pytest.raises(TraceError) as e:
        select_targets(t, ["fn", "nope", "gone"])
    assert str(e.value) == "unknown target(s) nope, gone; the trace has fn, gpu"


def test_given_known_names_when_selecting_then_only_those_remain(tmp_path: Path) -> None:
    t = load_trace(write(tmp_path, GOOD_CSV))
    assert select_targets(t, None) is t
    only = select_targets(t, ["gpu"])
    assert list(only.targets) == ["gpu"]
    assert only.targets["gpu"] == t.targets["gpu"]
    assert (only.step_s, only.start, only.steps, only.gaps, only.path) == (
        t.step_s,
        t.start,
        t.steps,
        t.gaps,
        t.path,
    )


# ------------------------------------------------------------------------------------ gap_flags, truncated


def trace(gaps: tuple[tuple[int, int], ...] = (), steps: int = 10, start: int = 1000, step_s: int = 60) -> Trace:
    targets = {"fn": TraceTarget("fn", tuple(float(i) for i in range(steps)), FN)}
    return Trace(step_s, start, steps, targets, gaps)


@pytest.mark.parametrize(
    ("gaps", "flagged"),
    [
        pytest.param((), [], id="no-gaps"),
        pytest.param(((1060, 1240),), [1, 2, 3], id="aligned-gap"),
        pytest.param(((1090, 1150),), [2], id="unaligned-gap-only-steps-starting-inside"),
        pytest.param(((1061, 1120),), [], id="gap-inside-one-step-flags-none"),
        pytest.param(((0, 1030),), [0], id="gap-from-before-start"),
        pytest.param(((0, 1000),), [], id="gap-ending-at-start-excluded"),
        pytest.param(((1000, 1001),), [0], id="gap-starting-at-start-included"),
        pytest.param(((1500, 9999),), [9], id="gap-running-past-end"),
        pytest.param(((1600, 9999),), [], id="gap-after-end"),
        pytest.param(((1060, 1120), (1100, 1200)), [1, 2, 3], id="overlapping-gaps"),
        pytest.param(((1300, 1400), (1000, 1060)), [0, 5, 6], id="unsorted-gaps"),
    ],
)
def test_gap_flags_mark_exactly_the_steps_starting_inside_a_gap(
    gaps: tuple[tuple[int, int], ...], flagged: list[int]
) -> None:
    flags = trace(gaps).gap_flags()
    assert len(flags) == 10
    assert [i for i, f in enumerate(flags) if f] == flagged


@settings(max_examples=examples(300), deadline=None)
@given(
    start=st.integers(-(10**6), 10**9),
    step_s=st.integers(1, 3600),
    steps=st.integers(0, 40),
    gaps=st.lists(st.tuples(st.integers(-(10**5), 10**5), st.integers(1, 10**5)), max_size=4),
)
def test_gap_flags_agree_with_the_definition(start: int, step_s: int, steps: int, gaps: list) -> None:
    spans = tuple((start + a, start + a + n) for a, n in gaps)
    t = trace(spans, steps=steps, start=start, step_s=step_s)
    expected = [any(a <= t.time(i) < b for a, b in spans) for i in range(steps)]
    assert t.gap_flags() == expected


@pytest.mark.parametrize(
    ("end", "kept"),
    [
        pytest.param(0, 0, id="before-start"),
        pytest.param(1000, 0, id="at-start-keeps-none"),
        pytest.param(1001, 1, id="just-after-start-keeps-step-0"),
        pytest.param(1060, 1, id="at-step-1-keeps-step-0"),
        pytest.param(1061, 2, id="inside-step-1-keeps-it"),
        pytest.param(1540, 9, id="at-last-step-start"),
        pytest.param(1600, 10, id="at-end-keeps-all"),
        pytest.param(99_999, 10, id="past-end-keeps-all"),
    ],
)
def test_truncated_keeps_only_steps_starting_before_end(end: int, kept: int) -> None:
    t = trace(((1060, 1120),))
    cut = t.truncated(end)
    assert cut.steps == kept
    assert cut.targets["fn"].requests == t.targets["fn"].requests[:kept]
    assert all(cut.time(i) < end for i in range(kept))
    assert (cut.step_s, cut.start, cut.gaps) == (t.step_s, t.start, t.gaps)


@settings(max_examples=examples(300), deadline=None)
@given(steps=st.integers(0, 40), step_s=st.integers(1, 3600), end_offset=st.integers(-(10**5), 10**6))
def test_truncated_keeps_exactly_the_steps_before_end(steps: int, step_s: int, end_offset: int) -> None:
    t = trace(steps=steps, step_s=step_s)
    end = t.start + end_offset
    cut = t.truncated(end)
    assert cut.steps == sum(1 for i in range(steps) if t.time(i) < end)
    assert cut.targets["fn"].requests == t.targets["fn"].requests[: cut.steps]
