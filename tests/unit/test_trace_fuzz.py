"""Fuzzing `load_trace`: whatever the bytes, it either loads or raises `TraceError`, nothing else.

Four strategies × 2,500 examples = 10,000 generated inputs:
1. random bytes (and random text) as the CSV, with a good sidecar;
2. structurally plausible CSV rows with random mutations (a clean file must load and match);
3. random sidecars with a good CSV: mostly-good JSON with a few parts broken, random JSON, JSON cut
   short, raw bytes;
4. random valid traces, which must load and round-trip through `write_trace` byte for byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from forescale.replay.trace import (
    HEADER,
    Trace,
    TraceError,
    TraceTarget,
    load_trace,
    sidecar_path,
    write_trace,
)
from tests.tiers import examples

FUZZ = settings(max_examples=examples(2500), deadline=None, suppress_health_check=[HealthCheck.too_slow])

STEP = 60
NAMES = ("a", "b", "c")
LAMBDA = {"kind": "lambda", "duration_ms": 100}
SIDECAR = json.dumps({"step_s": STEP, "targets": dict.fromkeys(NAMES, LAMBDA)}).encode()
GOOD_CSV = b"timestamp,target,requests\n0,a,1\n60,a,2\n0,b,3\n60,b,4\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def attempt(folder: Path, csv_bytes: bytes, sidecar_bytes: bytes = SIDECAR) -> Trace | None:
    """Load the given files: the trace, or None for a `TraceError`; any other exception escapes."""
    path = folder / "fuzz.csv"
    path.write_bytes(csv_bytes)
    sidecar_path(path).write_bytes(sidecar_bytes)
    try:
        trace = load_trace(path)
    except TraceError as e:
        assert str(e), "a TraceError must say what is wrong"
        event("TraceError")
        return None
    event("loaded")
    assert trace.steps >= 1
    assert all(len(t.requests) == trace.steps for t in trace.targets.values())
    assert all(math.isfinite(r) and r >= 0 for t in trace.targets.values() for r in t.requests)
    return trace


# --------------------------------------------------------------------------------------- 1. random bytes

HEADER_BYTES = b"timestamp,target,requests\n"


@FUZZ
@given(
    blob=st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=300).map(lambda b: HEADER_BYTES + b),
        st.text(max_size=300).map(lambda s: HEADER_BYTES + s.encode("utf-8", "surrogatepass")),
        st.text(alphabet='0123456789,abc\n\r" -.e', max_size=300).map(lambda s: HEADER_BYTES + s.encode()),
    )
)
def test_random_bytes_as_csv_load_or_raise_trace_error(workdir: Path, blob: bytes) -> None:
    attempt(workdir, blob)


# ------------------------------------------------------------------------------ 2. plausible rows, mutated

TOKENS = [
    "",
    "nan",
    "NaN",
    "-1",
    "-0",
    "0",
    "1e309",
    "inf",
    "-inf",
    "Infinity",
    " 5",
    "5 ",
    "1_0",
    "0x10",
    "٣",
    '"',
    '""',
    "a,b",
    '"a,b"',
    "\x00",
    "\r",
    "\n",
    "1.5",
    "9" * 5000,
    "+3",
    "1e-320",
    "𝟙",
    "a",
    "d",
]


@st.composite
def plausible_rows(draw) -> list[list[str]]:
    names = sorted(draw(st.sets(st.sampled_from(NAMES), min_size=1)))
    start = draw(st.integers(-(10**6), 10**10))
    steps = draw(st.integers(1, 5))
    value = st.one_of(
        st.integers(0, 10**6).map(str),
        st.floats(0, 1e9, allow_nan=False).map(repr),
    )
    return [[str(start + i * STEP), name, draw(value)] for name in names for i in range(steps)]


def render(header: list[str], rows: list[list[str]]) -> str:
    return "".join(",".join(r) + "\n" for r in [header, *rows])


MUTATIONS = ("delete", "duplicate", "swap", "token", "blank", "truncate", "garbage", "header", "extra-field")


def mutate(data: st.DataObject, header: list[str], rows: list[list[str]]) -> str:
    kind = data.draw(st.sampled_from(MUTATIONS))
    n = len(rows)
    if n == 0 and kind in ("delete", "duplicate", "swap", "token", "extra-field"):
        kind = "garbage"  # nothing left to pick a row from
    i = data.draw(st.integers(0, max(n - 1, 0)))
    if kind == "delete":
        del rows[i]
    elif kind == "duplicate":
        rows.insert(i, list(rows[i]))
    elif kind == "swap":
        j = data.draw(st.integers(0, n - 1))
        rows[i], rows[j] = rows[j], rows[i]
    elif kind == "token":
        row, k = rows[i], data.draw(st.integers(0, 2))
        token = data.draw(st.sampled_from(TOKENS) | st.text(max_size=6))
        if k < len(row):
            row[k] = token
        else:  # a row blanked by an earlier mutation
            row.append(token)
    elif kind == "blank":
        rows.insert(i, [])
    elif kind == "extra-field":
        rows[i].append(data.draw(st.sampled_from(TOKENS)))
    elif kind == "header":
        header[data.draw(st.integers(0, 2))] = data.draw(st.sampled_from(TOKENS))
    text = render(header, rows)
    if kind == "truncate":
        text = text[: data.draw(st.integers(0, len(text)))]
    elif kind == "garbage":
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.text(max_size=10)) + text[at:]
    return text


@FUZZ
@given(rows=plausible_rows(), data=st.data())
def test_mutated_plausible_csv_loads_or_raises_trace_error(workdir: Path, rows: list[list[str]], data) -> None:
    clean = [list(r) for r in rows]
    header = list(HEADER)
    mutations = data.draw(st.integers(0, 3))
    text = render(header, rows)
    for _ in range(mutations):
        text = mutate(data, header, rows)
    trace = attempt(workdir, text.encode("utf-8", "surrogatepass"))
    if mutations == 0:
        assert trace is not None, "an unmutated plausible trace must load"
        for name in {r[1] for r in clean}:
            assert trace.targets[name].requests == tuple(float(r[2]) for r in clean if r[1] == name)
        assert trace.start == int(clean[0][0])


# ------------------------------------------------------------------------ valid parameters (3 and 4)

target_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
lead = st.dictionaries(st.sampled_from(["up", "down", "type_change"]), st.integers(0, 3600), max_size=3)
lambda_params = st.fixed_dictionaries(
    {"kind": st.just("lambda"), "duration_ms": positive | st.integers(1, 60_000)},
    optional={"memory_mb": st.integers(128, 10_240), "lead_time_s": lead},
)
sagemaker_params = st.fixed_dictionaries(
    {
        "kind": st.just("sagemaker"),
        "instance_types": st.dictionaries(
            st.text(min_size=1, max_size=12),
            st.fixed_dictionaries({"price_per_hour": positive, "capacity_rps": positive}),
            min_size=1,
            max_size=3,
        ),
    },
    optional={"min_instances": st.integers(0, 10), "lead_time_s": lead},
)


# ------------------------------------------------------------------------------------- 3. random sidecars

json_scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
junk = (
    st.sampled_from([0, -1, 0.5, 1e999, -1e999, math.nan, True, False, None, "", "60", [], {}, [1, 2], 10**30])
    | json_scalars
    | json_values
)
PARAM_KEYS = (
    "kind",
    "duration_ms",
    "memory_mb",
    "instance_types",
    "min_instances",
    "lead_time_s",
    "slo_miss",
    "x",
)
TOP_KEYS = ("step_s", "targets", "gaps", "meta")
DELETE = object()


@st.composite
def fuzzed_params(draw) -> object:
    """Valid target params with 0-2 keys (or an instance type's spec) broken or removed."""
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)
    params = json.loads(json.dumps(draw(lambda_params | sagemaker_params)))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        key = draw(st.sampled_from(PARAM_KEYS))
        value = draw(st.just(DELETE) | junk)
        types = params.get("instance_types")
        specs = sorted(k for k, v in types.items() if isinstance(v, dict)) if isinstance(types, dict) else []
        if key == "instance_types" and specs and draw(st.booleans()):
            spec = types[draw(st.sampled_from(specs))]
            spec[draw(st.sampled_from(["price_per_hour", "capacity_rps"]))] = draw(junk)
        elif value is DELETE:
            params.pop(key, None)
        else:
            params[key] = value
    return params


@st.composite
def sidecar_bytes(draw) -> bytes:
    """Mostly a good sidecar with a few parts broken; sometimes junk JSON, cut-short JSON or raw bytes."""
    shape = draw(st.integers(0, 19))
    if shape == 0:
        return draw(st.binary(max_size=200))
    if shape == 1:
        return json.dumps(draw(json_values)).encode()
    names = draw(st.sets(st.sampled_from(NAMES), min_size=0, max_size=3)) | {"a", "b"}
    if draw(st.integers(0, 9)) == 0:
        names.discard(draw(st.sampled_from(["a", "b"])))  # a CSV target without a sidecar entry
    spans = draw(st.lists(st.tuples(st.integers(-100, 200), st.integers(1, 200)), max_size=3))
    doc: dict[str, object] = {
        "step_s": STEP,
        "targets": {n: draw(fuzzed_params()) for n in sorted(names)},
        "gaps": [[a, a + n] for a, n in spans],
    }
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        key = draw(st.sampled_from(TOP_KEYS) | st.text(max_size=4))
        value = draw(st.just(DELETE) | junk)
        if value is DELETE:
            doc.pop(key, None)
        else:
            doc[key] = value
    text = json.dumps(doc, allow_nan=True, indent=draw(st.sampled_from([None, 1])))
    if shape == 2:  # cut it short: invalid JSON with a line number
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode()


@FUZZ
@given(side=sidecar_bytes())
def test_random_sidecars_load_or_raise_trace_error(workdir: Path, side: bytes) -> None:
    trace = attempt(workdir, GOOD_CSV, side)
    if trace is not None:
        assert set(trace.targets) == {"a", "b"}
        assert trace.steps == 2


# ---------------------------------------------------------------------------------- 4. valid round trips


@st.composite
def valid_traces(draw) -> Trace:
    step_s = draw(st.integers(1, 86_400))
    start = draw(st.integers(-(10**9), 10**10))
    steps = draw(st.integers(1, 12))
    requests = st.floats(min_value=0, max_value=1e15, allow_nan=False) | st.integers(0, 10**6).map(float)
    names = draw(st.lists(target_names, min_size=1, max_size=4, unique=True))
    targets = {
        n: TraceTarget(
            n,
            tuple(draw(st.lists(requests, min_size=steps, max_size=steps))),
            draw(lambda_params | sagemaker_params),
        )
        for n in names
    }
    spans = draw(st.lists(st.tuples(st.integers(-(10**6), 10**6), st.integers(1, 10**6)), max_size=3))
    gaps = tuple((start + a, start + a + n) for a, n in spans)
    return Trace(step_s, start, steps, targets, gaps)


@FUZZ
@given(trace=valid_traces())
def test_valid_traces_load_and_round_trip(workdir: Path, trace: Trace) -> None:
    first = write_trace(trace, workdir / "rt1.csv")
    back = load_trace(first)
    assert (back.step_s, back.start, back.steps, back.gaps) == (
        trace.step_s,
        trace.start,
        trace.steps,
        trace.gaps,
    )
    assert set(back.targets) == set(trace.targets)
    for name, t in trace.targets.items():
        assert back.targets[name].requests == t.requests
        assert back.targets[name].params == t.params
    second = write_trace(back, workdir / "rt2.csv")
    assert second.read_bytes() == first.read_bytes()
    assert sidecar_path(second).read_bytes() == sidecar_path(first).read_bytes()
