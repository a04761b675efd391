"""`forescale status` and `forescale explain` against the deployed pipeline on moto.

Given the pipeline harness's three targets (Lambda provisioned concurrency `api`, Lambda reserved
concurrency `batch`, SageMaker instance count `ranker`) run through the cycle that scales them all
out, with AWS refusing `ranker`'s change (AccessDenied), and a forecast stored for each: status shows
`api` ACTIVE (its provisioned concurrency is still allocating), `batch` READY, `ranker` FAILING with
the refusal as its error, each with the capacity AWS reports. Later, stale inputs read as FALLBACK and
`forescale pause` makes every target PAUSED. explain gives the numbers behind a target's capacity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from forescale.cli import main
from forescale.domain.forecast import Forecast
from forescale.domain.sizing import lambda_concurrency_for
from forescale.status import COLUMNS
from tests.integration.pipeline_harness import (
    FAULT_CYCLE,
    TABLE,
    CallSite,
    Fault,
    Interceptor,
    Pipeline,
    intercepted_moto,
    pipeline,
)

pytestmark = pytest.mark.slow

UPDATE_RANKER = CallSite("act", "sagemaker", "UpdateEndpointWeightsAndCapacities")


def forecast_for(name: str, issued_at: int, base: float) -> Forecast:
    """A stored forecast: 30 one-minute steps from `issued_at`, rising by 1 req/s a step."""
    median = tuple(base + i for i in range(30))
    return Forecast(name, issued_at, issued_at, 60, {0.5: median, 0.9: tuple(v * 1.2 for v in median)}, "TestModel")


@pytest.fixture
def scaled_out() -> Iterator[Pipeline]:
    """The pipeline right after the scale-out cycle, ranker's change refused, forecasts stored."""
    with intercepted_moto() as (mock, interceptor):
        assert isinstance(interceptor, Interceptor)
        with pipeline(mock, interceptor) as p:
            p.run_until(FAULT_CYCLE - 1)
            interceptor.arm(UPDATE_RANKER, Fault("access-denied", "AccessDeniedException"), times=100)
            p.run_until(FAULT_CYCLE)
            interceptor.disarm()
            now = int(p.clock.now_s)
            for i, name in enumerate(p.configs):
                p.env.store.put_forecast(forecast_for(name, now, 100.0 * (i + 1)))
            yield p


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def table_rows(out: str) -> dict[str, list[str]]:
    """The status table by target name: cells split on runs of two or more spaces."""
    lines = out.splitlines()
    header = re.split(r"\s{2,}", lines[1])
    assert header == list(COLUMNS)
    rows = {}
    for line in lines[2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line)
        rows[cells[0]] = cells
    return rows


def test_status_shows_state_capacity_decision_and_errors_then_paused(
    scaled_out: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    p = scaled_out
    now = int(p.clock.now_s)
    at = ["--table", TABLE, "--at", str(now)]
    rc, out, err = run(["status", *at], capsys)
    assert rc == 0, err
    assert out.startswith(f"forescale status of table {TABLE} as of ") and "kill switch: off" in out.splitlines()[0]
    rows = table_rows(out)
    assert sorted(rows) == ["api", "batch", "ranker"]
    for name, cells in rows.items():
        kind, mode, _, in_aws, decision = cells[1:6]
        assert kind == p.configs[name].kind.value and mode == "active"
        assert in_aws == str(p.in_aws(name)), (name, cells)
        newest = p.decisions(name)[-1]
        assert decision.startswith(f"{newest.previous}->{newest.capacity} {newest.status.value} "), cells
    assert rows["api"][3] == "ACTIVE"  # its provisioned concurrency is allocating
    assert p.state("api").in_flight is not None
    assert rows["batch"][3] == "READY" and rows["batch"][9] == "0"
    assert rows["ranker"][3] == "FAILING" and int(rows["ranker"][9]) >= 1
    assert "AccessDeniedException" in out.split("ranker: FAILING", 1)[1]

    rc, out, _ = run(["status", *at, "--output", "json"], capsys)
    report = json.loads(out)
    by_name = {t["name"]: t for t in report["targets"]}
    assert report["as_of"] == now and report["paused"] is False
    assert {n: t["state"] for n, t in by_name.items()} == {"api": "ACTIVE", "batch": "READY", "ranker": "FAILING"}
    assert report["states"]["FAILING"] == 1
    assert by_name["batch"]["in_aws"]["capacity"] == p.in_aws("batch")
    assert by_name["batch"]["forecast_issued_at"] == now
    assert by_name["batch"]["last_sample_at"] is not None and now - by_name["batch"]["last_sample_at"] <= 300
    assert any("AccessDeniedException" in e for e in by_name["ranker"]["errors"])

    # Two days later with nothing collected or forecast since: on fallback, but for ranker, still failing.
    rc, out, _ = run(["status", "--table", TABLE, "--at", str(now + 2 * 86_400), "--output", "json"], capsys)
    states = {t["name"]: (t["state"], t["why"]) for t in json.loads(out)["targets"]}
    assert states.pop("ranker")[0] == "FAILING"
    assert all(s == "FALLBACK" and "no demand sample in the last 3 h" in why for s, why in states.values()), states

    assert run(["pause", "--table", TABLE, "--reason", "incident 7"], capsys)[0] == 0
    rc, out, _ = run(["status", *at], capsys)
    assert "kill switch: ON (incident 7)" in out.splitlines()[0]
    assert {name: cells[3] for name, cells in table_rows(out).items()} == dict.fromkeys(rows, "PAUSED")
    rc, out, _ = run(["targets", "--table", TABLE, "list"], capsys)
    assert out.startswith("PAUSED (kill switch on: incident 7)") and "active (paused)" in out


def test_explain_gives_the_numbers_behind_the_capacity(
    scaled_out: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    p = scaled_out
    now = int(p.clock.now_s)
    rc, out, err = run(["explain", "batch", "--table", TABLE, "--at", str(now)], capsys)
    assert rc == 0, err
    cfg = p.configs["batch"]
    newest = p.decisions("batch")[-1]
    assert f"In AWS: {p.in_aws('batch')} reserved concurrency" in out
    # The forecast over the lead window (120 s lead + one step = 3 steps from now): the largest median and p90.
    f = forecast_for("batch", now, 200.0)
    assert f"p50 {max(f.quantiles[0.5][:3]):.4g}, p90 {max(f.quantiles[0.9][:3]):.4g} req/s" in out
    # The sizing of the last decision, recomputed: Little's law and Erlang B at the SLO.
    load = newest.demand_rps * cfg.duration_s
    assert f"= {load:.4g} busy environments" in out
    assert f"is {lambda_concurrency_for(load, cfg.slo_miss)} (spill" in out
    assert f"The policy recommended {newest.recommended}" in out
    assert f"{newest.previous} -> {newest.capacity} reserved concurrency, {newest.status.value}" in out
    assert newest.reason[:60] in out
    assert "Planner: wants " in out and "Errors: none." in out

    rc, out, _ = run(["explain", "batch", "--table", TABLE, "--at", str(now), "--output", "json"], capsys)
    shown: dict[str, Any] = json.loads(out)
    assert shown["status"]["state"] == "READY" and shown["decisions"][0]["capacity"] == newest.capacity
    assert shown["planner"]["requested"] == newest.capacity

    rc, out, err = run(["explain", "ghost", "--table", TABLE, "--at", str(now)], capsys)
    assert rc == 2 and out == ""
    assert err.strip() == "forescale explain: unknown target 'ghost'; known targets: api, batch, ranker"
