"""The built-in workload generator: deterministic, subset-stable, round-trips through the canonical
format, and has the documented shapes (diurnal API, sparse hook, cron bursts, surprise spike, gap)."""

from __future__ import annotations

import math
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from forescale.domain.targets import TargetKind
from forescale.replay.trace import Trace, load_trace, write_trace
from forescale.replay.workload import (
    BUILTIN_TARGETS,
    DEFAULT_START,
    WorkloadSpec,
    _poisson,
    generate,
)

DAY = 1440  # 60 s steps per day


@pytest.fixture(scope="module")
def trace() -> Trace:
    return generate()  # 9 days, 60 s, seed 7


def _series(t: Trace) -> dict[str, tuple[float, ...]]:
    return {name: tt.requests for name, tt in t.targets.items()}


def test_given_the_defaults_then_nine_days_of_minutes_from_a_monday_for_four_targets(trace: Trace) -> None:
    assert BUILTIN_TARGETS == ("api-steady", "batch-spiky", "sparse-hook", "gpu-endpoint")
    assert tuple(trace.targets) == BUILTIN_TARGETS
    assert (trace.step_s, trace.start, trace.steps) == (60, DEFAULT_START, 9 * DAY)
    start = datetime.fromtimestamp(DEFAULT_START, UTC)
    assert (start.weekday(), start.hour, start.minute) == (0, 0, 0)
    assert trace.meta["source"] == "forescale built-in workload generator, seed 7"
    for t in trace.targets.values():
        assert len(t.requests) == trace.steps
        assert all(r >= 0 and float(r).is_integer() for r in t.requests)
        assert t.params["description"]


def test_given_the_same_seed_then_identical_and_a_different_seed_then_different(trace: Trace) -> None:
    again = generate(seed=7)
    assert _series(again) == _series(trace)
    assert again.gaps == trace.gaps and again.meta == trace.meta
    other = generate(seed=8)
    for name in BUILTIN_TARGETS:
        assert other.targets[name].requests != trace.targets[name].requests, name
    assert other.gaps != trace.gaps


def test_given_a_subset_of_targets_then_each_series_is_the_same_as_in_the_full_set(trace: Trace) -> None:
    sub = generate(targets=["gpu-endpoint", "api-steady"])
    assert tuple(sub.targets) == ("gpu-endpoint", "api-steady")
    for name in sub.targets:
        assert sub.targets[name].requests == trace.targets[name].requests, name
        assert sub.targets[name].params == trace.targets[name].params
    assert sub.gaps == trace.gaps
    assert sub.meta["surprise_spike"] == trace.meta["surprise_spike"]
    alone = generate(targets=["sparse-hook"])
    assert alone.targets["sparse-hook"].requests == trace.targets["sparse-hook"].requests
    assert "surprise_spike" not in alone.meta  # the spike belongs to api-steady


def test_given_a_written_trace_when_loaded_then_requests_params_gaps_and_meta_are_the_same(
    trace: Trace, tmp_path: Path
) -> None:
    path = write_trace(trace, tmp_path / "builtin.csv")
    loaded = load_trace(path)
    assert (loaded.step_s, loaded.start, loaded.steps) == (trace.step_s, trace.start, trace.steps)
    assert loaded.gaps == trace.gaps
    assert _series(loaded) == _series(trace)
    for name, t in trace.targets.items():
        assert dict(loaded.targets[name].params) == dict(t.params), name
    assert dict(loaded.meta) == dict(trace.meta)
    gpu = loaded.targets["gpu-endpoint"].to_target()
    assert gpu.kind is TargetKind.SAGEMAKER_INSTANCE_TYPE
    assert len(gpu.catalog) == 5 and gpu.min_capacity == 1
    api = loaded.targets["api-steady"].to_target()
    assert api.kind is TargetKind.LAMBDA_PROVISIONED and api.duration_s == pytest.approx(0.12)


def test_given_the_diurnal_api_then_its_midday_mean_is_several_times_its_night_mean(trace: Trace) -> None:
    api = trace.targets["api-steady"].requests
    weekdays = range(5)  # Monday to Friday; the gap is at 17:00-20:00 and the spike on day 8
    midday = [api[d * DAY + m] for d in weekdays for m in range(12 * 60, 16 * 60)]
    night = [api[d * DAY + m] for d in weekdays for m in range(1 * 60, 4 * 60)]
    ratio = statistics.fmean(midday) / statistics.fmean(night)
    assert 4.0 < ratio < 10.0, ratio
    weekend = [api[d * DAY + m] for d in (5, 6) for m in range(12 * 60, 16 * 60)]
    assert 0.45 < statistics.fmean(weekend) / statistics.fmean(midday) < 0.75


def test_given_the_api_and_gpu_targets_then_their_peaks_are_in_the_documented_range(trace: Trace) -> None:
    spike = trace.meta["surprise_spike"]
    before = (spike["start"] - trace.start) // 60
    api_peak_concurrency = max(trace.targets["api-steady"].requests[:before]) / 60 * 0.120
    assert 40 <= api_peak_concurrency <= 80, api_peak_concurrency
    gpu = trace.targets["gpu-endpoint"]
    g5 = gpu.params["instance_types"]["ml.g5.xlarge"]["capacity_rps"]
    gpu_peak_instances = max(gpu.requests) / 60 / g5
    assert 15 <= gpu_peak_instances <= 25, gpu_peak_instances
    # A different phase: the API peaks mid-afternoon, the endpoint in the evening.
    hourly = [
        statistics.fmean(gpu.requests[d * DAY + h * 60 + m] for d in range(5) for m in range(60)) for h in range(24)
    ]
    assert hourly.index(max(hourly)) in range(18, 23)


def test_given_the_sparse_hook_then_most_steps_are_zero_but_it_runs_a_few_times_an_hour(trace: Trace) -> None:
    sparse = trace.targets["sparse-hook"].requests
    zero_share = sum(1 for r in sparse if r == 0) / len(sparse)
    assert zero_share > 0.5, zero_share
    per_hour = sum(sparse) / (trace.steps / 60)
    assert 2.0 < per_hour < 8.0, per_hour


def test_given_the_batch_target_then_bursts_rise_well_above_the_background(trace: Trace) -> None:
    batch = trace.targets["batch-spiky"].requests
    background = statistics.median(batch)
    assert 60 < background < 120  # ~1.5 req/s
    for d in range(3):
        day = batch[d * DAY : (d + 1) * DAY]
        high_hours = {m // 60 for m, r in enumerate(day) if r > 8 * background}
        assert 4 <= len(high_hours) <= 14, (d, sorted(high_hours))  # a burst every 2-4 h
        assert max(day) > 8 * background


def test_given_nine_days_then_the_surprise_spike_is_on_day_eight_and_far_above_the_same_time_before(
    trace: Trace,
) -> None:
    spike = trace.meta["surprise_spike"]
    assert spike["target"] == "api-steady"
    i0, i1 = (spike["start"] - trace.start) // 60, (spike["end"] - trace.start) // 60
    assert i0 // DAY == 7 and i1 // DAY == 7  # day days-1, 1-based: the second to last
    assert 35 <= i1 - i0 <= 45
    api = trace.targets["api-steady"].requests
    in_spike = max(api[i0:i1])
    same_time_before = max(api[i0 - d * DAY + k] for d in range(1, 8) for k in range(i1 - i0))
    assert in_spike > 2.5 * same_time_before, (in_spike, same_time_before)
    # Unannounced: the three minutes before it look like an ordinary day.
    assert max(api[i0 - 3 : i0]) < 1.5 * same_time_before


@pytest.mark.parametrize(("days", "day_index"), [(1, 0), (1.5, 1), (2.5, 1), (5, 3)])
def test_given_fewer_days_then_the_spike_is_on_the_second_to_last_or_last_day(days: float, day_index: int) -> None:
    t = generate(days=days, step_s=300, targets=["api-steady"])
    spike = t.meta["surprise_spike"]
    assert (spike["start"] - t.start) // 86_400 == day_index
    assert spike["end"] <= t.end


def test_given_the_gap_then_it_is_listed_on_day_four_and_every_target_is_zero_there(trace: Trace) -> None:
    assert len(trace.gaps) == 1
    a, b = trace.gaps[0]
    assert b - a == 600
    assert (a - trace.start) // 86_400 == 3
    assert trace.meta["gaps"] == [[a, b]]
    flags = trace.gap_flags()
    idx = [i for i, f in enumerate(flags) if f]
    assert len(idx) == 10
    for name, t in trace.targets.items():
        assert all(t.requests[i] == 0 for i in idx), name
    for name in ("api-steady", "gpu-endpoint"):  # busy targets are not zero around it
        r = trace.targets[name].requests
        assert r[idx[0] - 1] > 0 and r[idx[-1] + 1] > 0, name


@pytest.mark.parametrize(("days", "step_s", "n_gap_steps"), [(3.9, 60, None), (4, 60, 10), (5, 300, 2), (9, 3600, 1)])
def test_given_days_and_step_then_the_gap_exists_only_from_the_fourth_day_and_covers_whole_steps(
    days: float, step_s: int, n_gap_steps: int | None
) -> None:
    t = generate(days=days, step_s=step_s)
    if n_gap_steps is None:
        assert t.gaps == ()
        return
    assert sum(t.gap_flags()) == n_gap_steps
    ((a, b),) = t.gaps
    assert (a - t.start) % step_s == 0 and (b - t.start) % step_s == 0


def test_given_a_longer_trace_then_it_starts_with_the_shorter_one_away_from_the_spike() -> None:
    short, long = generate(days=5), generate(days=9)
    n = short.steps
    for name in ("batch-spiky", "sparse-hook", "gpu-endpoint"):
        assert long.targets[name].requests[:n] == short.targets[name].requests, name
    before = (short.meta["surprise_spike"]["start"] - short.start) // 60
    assert long.targets["api-steady"].requests[:before] == short.targets["api-steady"].requests[:before]


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"days": 0}, ["days"]),
        ({"days": -1.5}, ["days"]),
        ({"days": math.nan}, ["days"]),
        ({"days": math.inf}, ["days"]),
        ({"step_s": 0}, ["step_s"]),
        ({"step_s": -60}, ["step_s"]),
        ({"step_s": 7}, ["step_s"]),
        ({"step_s": 86_401}, ["step_s"]),
        ({"step_s": 60.0}, ["step_s"]),
        ({"seed": "7"}, ["seed"]),
        ({"targets": ["api-steady", "nope"]}, ["nope", *BUILTIN_TARGETS]),
        ({"targets": []}, ["targets"]),
        ({"targets": "api-steady"}, ["targets"]),
    ],
)
def test_given_a_bad_argument_then_value_error_names_it(kwargs: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ValueError) as e:
        generate(**kwargs)
    for n in names:
        assert n in str(e.value)


def test_given_a_bad_spec_then_it_fails_on_construction() -> None:
    with pytest.raises(ValueError, match="step_s"):
        WorkloadSpec(step_s=45 * 60 + 1)
    spec = WorkloadSpec(days=1, step_s=600, targets=("sparse-hook", "sparse-hook"))
    assert spec.targets == ("sparse-hook",)
    assert spec.build().steps == 144


def test_given_nine_days_of_minutes_then_generation_is_fast() -> None:
    t0 = time.perf_counter()
    generate(days=9, step_s=60, seed=123)
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize("lam", [0.05, 3.0, 9.5, 10.0, 40.0, 2_500.0])
def test_given_the_poisson_sampler_then_its_mean_and_variance_match_lambda(lam: float) -> None:
    rng = random.Random(42)
    xs = [_poisson(rng, lam) for _ in range(20_000)]
    assert all(x >= 0 for x in xs)
    tol = 5 * math.sqrt(lam / len(xs))  # five standard errors of the mean
    assert abs(statistics.fmean(xs) - lam) < tol
    assert abs(statistics.pvariance(xs) / lam - 1) < 0.08
