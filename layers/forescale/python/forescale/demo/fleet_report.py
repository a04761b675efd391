"""`docs/fleet-cost.md`: the markdown report of `forescale bench fleet`, rebuilt from every run's JSON in the folder.

Each run writes `fleet-cost-<N>.json` (its figures, from `forescale.demo.fleet_bench.result_json`) next to the
report; the report shows every run found there, smallest fleet first, so runs at 100 and 1,000 targets end
up side by side in one page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from forescale.demo import prices

REPORT = "fleet-cost.md"
STAGES = ("collect", "forecast", "plan", "act", "react")


def _f(x: float | None, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and abs(x) < 10 ** (-nd):
        return f"{x:.1e}"
    return f"{x:,.{nd}f}"


def _fits(ok: bool) -> str:
    return "fits" if ok else "**does not fit**"


def stage_table(r: dict[str, Any]) -> str:
    """Per-stage measured figures at the run's N (durations and $ derived, as marked)."""
    head = (
        "| stage | invocations / min | CPU s / invocation, mean (max) | timeout s | est. duration s, max (derived) "
        "| peak MB: growth + import (memory) | RRU / target-min | WRU (+GSI) / target-min | GetMetricData metrics "
        "/ target-min | control-plane calls / target-min (Lambda) | calls / change "
        "| PutEvents req / min, entries / min "
        "| largest request KB (entry KB) | largest item written KB | $ / target-month (derived) |"
    )
    lines = [head, "|" + "---|" * 15]
    for s in STAGES:
        f = r["stages"][s]
        peak = "-"
        if f["peak_growth_mb"] is not None:
            peak = f"{_f(f['peak_growth_mb'], 1)} + {_f(f['baseline_mb'], 0)} ({f['memory_mb']})"
        lines.append(
            f"| {s} | {_f(f['invocations_per_min'])} | {_f(f['cpu_mean_s'], 3)} ({_f(f['cpu_max_s'], 3)}) "
            f"| {f['timeout_s']} | {_f(f['duration_max_s'], 2)} | {peak} | {_f(f['rru_per_target_min'])} "
            f"| {_f(f['wru_per_target_min'])} (+{_f(f['gsi_wru_per_target_min'])}) | {_f(f['metrics_per_target_min'])} "
            f"| {_f(f['control_plane_per_target_min'], 3)} ({_f(f['lambda_control_plane_per_target_min'], 3)}) "
            f"| {_f(f['control_plane_per_change'])} | {_f(f['put_events_requests_per_min'])}, "
            f"{_f(f['put_events_entries_per_min'])} | {_f(f['max_request_kb'], 1)} ({_f(f['max_entry_kb'], 1)}) "
            f"| {_f(f['largest_item_kb'], 1)} | {_f(sum(f['usd'].values()), 3)} |"
        )
    return "\n".join(lines)


def cost_table(r: dict[str, Any]) -> str:
    """$ per target-month by line item: at N (from measured counts) and at 10,000 (derived)."""
    items: dict[str, float] = {}
    for s in STAGES:
        for k, v in r["stages"][s]["usd"].items():
            items[k] = items.get(k, 0.0) + v
    fleet = r["fleet_usd"]
    n = r["targets"]
    at_10k: dict[str, float] = dict(items)
    at_10k["Lambda requests"] = (
        sum(r["stages"][s]["at_10k"]["invocations_per_min"] for s in STAGES)
        / 10_000
        * prices.MONTH_MINUTES
        * prices.LAMBDA_REQUEST.per_unit
    )
    at_10k["X-Ray"] = sum(r["stages"][s]["at_10k"]["xray_usd"] for s in STAGES)
    lines = [
        f"| line item | $ / target-month at {n:,} | source at {n:,} | $ / target-month at 10,000 (derived) |",
        "|---|---:|---|---:|",
    ]
    how = {
        "DynamoDB reads": "measured units",
        "DynamoDB writes": "measured units",
        "GetMetricData": "measured metrics requested",
        "EventBridge": "measured 64 KB chunks",
        "Lambda requests": "measured invocations",
        "Lambda duration": "derived duration × configured memory",
        "Logs ingestion": "measured bytes",
        "X-Ray": "derived from invocations/s (default sampling)",
    }
    for k, v in items.items():
        lines.append(f"| {k} | {_f(v, 4)} | {how.get(k, '')} | {_f(at_10k[k], 4)} |")
    shared = ("Custom metrics (EMF)", "SQS polling and sweep (act's queue)")  # fleet-level: ÷ the fleet
    fixed_note = {
        "SQS (act's queue)": "derived: 1.2 requests per measured DecisionMade",
        "SQS polling and sweep (act's queue)": "derived: 15 idle long polls and a schedule record a minute",
        "DynamoDB storage": "derived steady state from measured item sizes",
        "Custom metrics (EMF)": f"measured: {r['custom_metrics']} EMF metrics ÷ {n:,} targets",
        "Daily refit (amortised)": "measured refit cycle, once a target-day",
    }
    for k, v in fleet.items():
        v10 = v * n / 10_000 if k in shared else v
        lines.append(f"| {k} | {_f(v, 4)} | {fixed_note.get(k, '')} | {_f(v10, 4)} |")
    total_n = sum(items.values()) + sum(fleet.values())
    total_10k = sum(at_10k.values()) + sum((v * n / 10_000 if k in shared else v) for k, v in fleet.items())
    lines.append(f"| **total** | **{_f(total_n, 3)}** | | **{_f(total_10k, 3)}** |")
    return "\n".join(lines)


def fits_table(r: dict[str, Any]) -> str:
    """Does each stage fit at 10,000 targets? Derived from this run's per-target figures."""
    lines = [
        "| stage | invocations / min | CPU s / invocation | est. duration s vs timeout | peak MB vs memory "
        "| largest PutEvents request KB vs 256 | Lambda control plane calls / s vs 15 | verdict |",
        "|---|---:|---:|---|---|---|---|---|",
    ]
    largest_item = max((f["largest_item_kb"] for f in r["stages"].values()), default=0.0)
    for s in STAGES:
        f = r["stages"][s]
        a = f["at_10k"]
        time_ok = a["duration_max_s"] <= f["timeout_s"]
        mem = a["peak_mb"]
        mem_ok = mem is None or (isinstance(mem, float) and math.isnan(mem)) or mem <= f["memory_mb"]
        req_ok = a["max_request_kb"] <= 256
        cp = a["lambda_control_plane_per_s"]
        cp_ok = cp <= 15.0
        verdict = "fits" if (time_ok and mem_ok and req_ok and cp_ok) else "**does not fit**"
        lines.append(
            f"| {s} | {_f(a['invocations_per_min'])} | {_f(a['cpu_max_s'], 2)} | {_f(a['duration_max_s'], 1)} / "
            f"{f['timeout_s']}: {_fits(time_ok)} | {_f(mem, 0)} / {f['memory_mb']}: {_fits(mem_ok)} "
            f"| {_f(a['max_request_kb'], 1)}: {_fits(req_ok)} | {_f(cp, 2)}: {_fits(cp_ok)} | {verdict} |"
        )
    act = r["stages"]["act"]["at_10k"]
    if "busy_s_per_min" in act:
        lines.append("")
        overlap = (
            f"the larger of its work, {_f(act['work_s_per_min'], 1)} s (CPU and call latency), and the limiter's "
            f"{_f(act['limiter_s_per_min'], 1)} s for {_f(act['lambda_control_plane_per_s'] * 60, 0)} Lambda calls: "
            "the limiter is a token bucket on wall time, so the work between two Lambda calls overlaps the "
            "interval the next one waits for"
            if "work_s_per_min" in act
            else f"CPU, call latency, and the limiter's seconds for {_f(act['lambda_control_plane_per_s'] * 60, 0)} "
            "Lambda calls, added"
        )
        lines.append(
            f"act at 10,000 (derived): {_f(act['busy_s_per_min'], 1)} s a minute ({overlap}) against the "
            f"{_f(act['capacity_s_per_min'], 0)} s its {r['deployed'].get('act_concurrency', 1)} processes have, in "
            f"{_f(act['invocations_per_min'], 0)} invocation(s) a minute that each stop starting decisions 10 s "
            "before the timeout. Lambda calls that do not grow with the fleet (quiet targets' re-reads, at most 30 "
            "a sweep; GetAccountSettings, once a minute per process) are counted at those bounds, "
            f"measured {_f(act['lambda_bounded_per_target_min'], 4)} a target-minute at {r['targets']:,}."
        )
    lines.append("")
    lines.append(
        f"Largest item written at {r['targets']:,} targets: {_f(largest_item, 1)} KB (DynamoDB's limit: 400 KB; "
        "item sizes do not grow with the fleet)."
    )
    return "\n".join(lines)


def run_section(r: dict[str, Any]) -> str:
    n = r["targets"]
    d = r["deployed"]
    refit = r["refit_cycle"]
    calls = r["calls"]
    lines = [
        f"## {n:,} targets, {r['minutes']} metered minutes",
        "",
        f"`uv run forescale bench fleet --targets {n} --minutes {r['minutes']} --history-days {r['history_days']:g} "
        f"--out docs` — {r['warmup_minutes']} warm-up minutes first (not metered); wall time {r['wall_s']:.0f} s "
        f"(set-up {r['setup_s']:.0f} s) on this 2-core machine, shared.",
        "",
        "### Per stage (measured at this N; durations and $ derived)",
        "",
        stage_table(r),
        "",
        f"The warm-up's forecast refit cycle (every target refit in one invocation, as today's code does when "
        f"targets are registered together; measured apart): {refit['invocations']} invocation(s), "
        f"{_f(refit['cpu_s'], 2)} s CPU, peak growth {_f(refit['peak_growth_mb'], 1)} MB, "
        f"{_f(refit['read_units'], 1)} read units, {refit['calls']} calls.",
        "",
        "### $ per target-month",
        "",
        cost_table(r),
        "",
        "### Fits at 10,000 targets (derived from this run)",
        "",
        fits_table(r),
        "",
        "<details><summary>AWS calls by stage and operation (measured)</summary>",
        "",
        "```json",
        json.dumps(calls, indent=1),
        "```",
        "",
        f"Errors answered by AWS (moto): `{json.dumps(r.get('errors', {}))}`. Dead-letter messages: "
        f"{r['dlq_messages']}. Failed deliveries: {len(r.get('failed_deliveries', []))}. Reads billed approximately "
        f"(filters or projections): {r.get('approximate_reads', 0)}. Items at the end by kind (count, mean bytes): "
        f"`{json.dumps(r['items_by_kind'])}`. Entries by detail-type: `{json.dumps(r.get('entries_by_type', {}))}`.",
        "",
        "</details>",
        "",
        f"Configured (infra/forescale_infra/config.py defaults): memory MB `{json.dumps(d['memory_mb'])}`, timeout s "
        f"`{json.dumps(d['timeout_s'])}`, schedules (minutes) `{json.dumps(d['schedule_minutes'])}`, architecture "
        f"{d['architecture']}, forecast shards {d['shard_count']} of {d['shard_size']:,}.",
        "",
    ]
    return "\n".join(lines)


HEADER = """# Fleet scale and running cost: `forescale bench fleet`

What the deployed functions cost and whether they fit, per target, measured on moto and priced at us-east-1
list prices. Regenerate with `uv run forescale bench fleet --targets N --out docs` (each run writes
`docs/fleet-cost-N.json`; this page is rebuilt from every such file).

**Measured** (counted by botocore hooks on the clients the functions build, exactly as deployed): invocations,
AWS calls by stage and operation, DynamoDB read and write units from the item sizes moto holds (DynamoDB's
billing rules: `forescale/demo/fleet_meter.py`), GetMetricData metrics requested, PutEvents requests, entries
and their byte sizes, control-plane calls and accepted changes, CPU time per invocation (`process_time`, moto's
own CPU and the meter's excluded), Python memory growth per invocation (`tracemalloc`, moto's allocations
excluded), the RSS of a fresh process that imported the function (the "import" part of the peak), log and
EMF bytes, items in the table at the end.

**Derived** (said so in every column): durations = CPU × (1,769 MB ÷ the function's memory, the vCPU share
Lambda gives) + 10 ms per AWS call (an assumed in-Region latency, not measured) + act's simulated
rate-limiter waits; Lambda GB-s and $ from those; X-Ray traces from the invocation rate under the default
sampling rule; storage at steady state (15 days of samples, decisions kept 400 days); every figure at
10,000 targets: per-target figures × 10,000, and per-invocation CPU, memory and payloads scaled by the
targets an invocation would carry (a schedule: all of them, the forecaster one shard; an event: what it
carried, up to 1,000 names).

Not included: the user's own Lambda and SageMaker capacity (what forescale changes), data transfer, KMS
(the AWS-managed key is free), the ops alarms and the dashboard. Application Auto Scaling and the Lambda
and SageMaker control planes cost nothing per call.
"""


def render(results: list[dict[str, Any]]) -> str:
    parts = [HEADER, "## Prices (us-east-1, cited)", "", prices.markdown_table(), ""]
    for r in sorted(results, key=lambda x: x["targets"]):
        parts.append(run_section(r))
    return "\n".join(parts)


def write_report(out_dir: Path, result: dict[str, Any]) -> Path:
    """Write this run's JSON and rebuild the report from every run's JSON in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"fleet-cost-{result['targets']}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    results = [json.loads(p.read_text()) for p in sorted(out_dir.glob("fleet-cost-*.json"))]
    path = out_dir / REPORT
    path.write_text(render(results))
    return path
