"""The demo's report: given a small generated workload replayed through forescale and target tracking,
when the report is written, then its files exist, are well formed and carry `evaluate()`'s numbers."""

from __future__ import annotations

import csv
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from forescale.demo.report import (
    CHART_SIZE_PX,
    Report,
    RunFacts,
    forecast_band,
    format_summary,
    trace_window,
    window_changes,
    window_decisions,
    write_report,
)
from forescale.demo.runner import target_config
from forescale.domain.decision import Decision
from forescale.domain.forecast import Forecast, SeriesHistory
from forescale.replay.engine import DecisionRow, ReplayConfig, replay
from forescale.replay.evaluate import evaluate, per_step
from forescale.replay.trace import Trace, TraceTarget
from forescale.replay.workload import generate
from forescale.runtime.models import DecisionRecord, DecisionStatus, TargetConfig
from forescale.runtime.plan import decision_record

DAY_S = 86_400


class YesterdayForecaster:
    """Deterministic and fast: tomorrow repeats the last day seen, with a fixed ×0.8 / ×1.25 band.

    It remembers every forecast with the time it was issued, as the demo does for the band chart.
    """

    def __init__(self) -> None:
        self.issued: dict[str, list[tuple[int, Forecast]]] = {}

    def forecast(self, histories: Sequence[SeriesHistory], horizon_s: int) -> dict[str, Forecast]:
        out = {}
        for h in histories:
            day = DAY_S // h.step_s
            last = [r if r is not None else 0.0 for r in h.rates[-day:]]
            n = -(-horizon_s // h.step_s)
            path = tuple(last[i % len(last)] for i in range(n))
            fc = Forecast(
                h.target,
                h.end,
                h.end,
                h.step_s,
                {0.1: tuple(0.8 * v for v in path), 0.5: path, 0.9: tuple(1.25 * v for v in path)},
                "yesterday",
            )
            self.issued.setdefault(h.target, []).append((h.end, fc))
            out[h.target] = fc
        return out


def audit_record(cfg: TargetConfig, d: Decision) -> DecisionRecord:
    """The audit record plan stores for a replayed decision, as act leaves it once applied."""
    return decision_record(cfg, d, None, "replay").model_copy(update={"status": DecisionStatus.APPLIED})


def sample_report(
    days: float = 1.2, history_days: float = 1.0, seed: int = 11, forecaster: object | None = None
) -> tuple[Report, Trace, list[DecisionRow], list[DecisionRow]]:
    """A report over the last `days - history_days` of a generated workload, both policies replayed on all of it.

    Returns the report, the window's trace and the two policies' rows, so tests can score them independently.
    """
    full = generate(days=days, step_s=60, seed=seed)
    fc = forecaster or YesterdayForecaster()
    # The policy pinned as it was when the golden page was written: this module tests the report, not the policy.
    pinned = {"hold_steps": 1, "min_scale_in": 0.0, "slo_gain": 0.0}
    ours = replay(
        full,
        ReplayConfig(policy="predictive", policy_params=pinned, forecaster=fc, keep_decisions=True),  # type: ignore[arg-type]
    )
    theirs = replay(full, ReplayConfig(policy="target-tracking"))
    window = trace_window(full, full.start + int(history_days * DAY_S))
    issued = getattr(fc, "issued", None)
    if issued is None:
        issued = {}
    report = Report(
        trace=window,
        forescale_rows=ours.rows,
        baseline_rows=theirs.rows,
        facts=RunFacts(
            source="built-in workload",
            simulated_days=days - history_days,
            seed=seed,
            history_days=history_days,
            wall_s=ours.wall_s + theirs.wall_s,
            decisions=window_decisions(ours.rows, window.start, window.end),
            api_calls=len(ours.rows),
        ),
        forecasts=issued,
        records=[audit_record(target_config(d.target, full), d) for d in ours.decisions],
    )
    return report, window, ours.rows, theirs.rows


@dataclass(frozen=True)
class Written:
    """A report written once for the module's tests, with what it was built from."""

    report: Report
    window: Trace
    ours: list[DecisionRow]
    theirs: list[DecisionRow]
    paths: dict[str, Path]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    report, window, ours, theirs = sample_report()
    return Written(report, window, ours, theirs, write_report(report, tmp_path_factory.mktemp("report")))


def test_given_a_report_when_written_then_every_file_exists(written: Written) -> None:
    window, paths = written.window, written.paths
    expected = {"html", "summary", "decisions", "baseline_decisions", *(f"chart:{n}" for n in window.targets)}
    assert set(paths) == expected
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0, p


def test_given_the_html_then_it_names_every_target_and_embeds_one_chart_each_with_no_external_reference(
    written: Written,
) -> None:
    window, paths = written.window, written.paths
    text = paths["html"].read_text(encoding="utf-8")
    for name in window.targets:
        assert f'<section id="{name}">' in text
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) == len(window.targets)
    assert "http://" not in text and "https://" not in text
    # Every src/href is inline: the page must read offline.
    for ref in re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', text):
        assert ref.startswith("data:"), ref
    assert "<script" not in text.lower()
    assert "@import" not in text and "url(" not in text


def test_given_the_summary_json_then_its_numbers_are_evaluates(written: Written) -> None:
    window, ours, theirs, paths = written.window, written.ours, written.theirs, written.paths
    data = json.loads(paths["summary"].read_text(encoding="utf-8"))
    mine, base = evaluate(window, ours), evaluate(window, theirs)
    assert set(data["targets"]) == set(window.targets)
    for name, row in data["targets"].items():
        for key, score, rows in (("forescale", mine.targets[name], ours), ("baseline", base.targets[name], theirs)):
            got = row[key]
            assert got["requests"] == pytest.approx(score.requests, rel=1e-12)
            assert got["missed"] == pytest.approx(score.missed, rel=1e-12)
            assert got["capacity_cost_usd"] == pytest.approx(score.capacity_cost_usd, rel=1e-12)
            assert got["cost_usd"] == pytest.approx(score.cost_usd, rel=1e-12)
            assert got["changes"] == window_changes(rows, name, window.start, window.end)  # the window's only
        assert row["oracle"]["capacity_cost_usd"] == pytest.approx(mine.targets[name].oracle_capacity_cost_usd)
        assert row["saved_usd"] == pytest.approx(
            base.targets[name].capacity_cost_usd - mine.targets[name].capacity_cost_usd
        )
    overall = data["overall"]
    assert overall["forescale"]["capacity_cost_usd"] == pytest.approx(mine.overall().capacity_cost_usd)
    assert overall["baseline"]["missed"] == pytest.approx(base.overall().missed)
    assert data["facts"]["seed"] == 11 and data["window"]["start"] == window.start
    assert Path(data["paths"]["html"]) == paths["html"]
    assert set(data["paths"]["charts"]) == set(window.targets)


def test_given_the_decisions_csv_then_it_is_the_yardstick_contract(written: Written) -> None:
    window, ours, theirs, paths = written.window, written.ours, written.theirs, written.paths
    for key, rows in (("decisions", ours), ("baseline_decisions", theirs)):
        with paths[key].open(newline="") as f:
            lines = list(csv.reader(f))
        assert lines[0][:3] == ["decided_at", "target", "capacity"]
        assert len(lines) - 1 == len(rows)
        parsed = [DecisionRow(int(a), b, int(c), (rest[0] or None) if rest else None) for a, b, c, *rest in lines[1:]]
        assert parsed == sorted(rows, key=lambda r: r.decided_at)
        assert {r.target for r in parsed} <= set(window.targets)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data[-8:-4] == b"IEND"
    return width, height


def test_given_the_charts_then_they_are_pngs_of_the_expected_size(written: Written) -> None:
    paths = written.paths
    charts = [p for k, p in paths.items() if k.startswith("chart:")]
    assert charts
    for p in charts:
        assert png_size(p) == CHART_SIZE_PX
        assert b"matplotlib.org" not in p.read_bytes()  # no URL in the metadata either


def test_given_the_terminal_summary_then_it_lists_every_target_and_policy_with_evaluates_numbers(
    written: Written,
) -> None:
    report, window, ours = written.report, written.window, written.ours
    text = format_summary(report)
    for name in (*window.targets, "overall"):
        assert re.search(rf"^{re.escape(name)}\s", text, re.M), name
    assert text.count("target tracking") >= len(window.targets) + 1
    mine = evaluate(window, ours)
    for name, score in mine.targets.items():
        assert f"${score.capacity_cost_usd:,.2f}" in text or f"${score.capacity_cost_usd:.3f}" in text, name
    # A fixed-width table: every policy row (three per target and overall) ends in the same column.
    rows = [ln for ln in text.splitlines() if re.search(r"\s(forescale|target tracking|oracle)\s{2,}.*\$", ln)]
    assert len(rows) == 3 * (len(window.targets) + 1)
    assert len({len(ln) for ln in rows}) == 1


def test_given_per_step_then_its_sums_equal_evaluates_totals_for_both_kinds(written: Written) -> None:
    window, ours, theirs = written.window, written.ours, written.theirs
    for rows in (ours, theirs):
        score = evaluate(window, rows)
        for name, s in score.targets.items():
            steps = per_step(window, rows, name)
            assert steps.requests.sum() == pytest.approx(s.requests, rel=1e-12)
            assert steps.missed.sum() == pytest.approx(s.missed, rel=1e-9, abs=1e-9)
            assert steps.capacity_cost_usd.sum() + steps.switch_cost_usd == pytest.approx(s.capacity_cost_usd, rel=1e-9)
            assert steps.oracle_cost_usd.sum() == pytest.approx(s.oracle_capacity_cost_usd, rel=1e-9)
            assert len(steps.times) == window.steps  # 60 s steps: one sub-step each


def test_given_a_five_minute_trace_with_a_gap_then_per_step_sums_still_match_on_sixty_second_substeps() -> None:
    full = generate(days=4.2, step_s=300, seed=2, targets=["api-steady", "gpu-endpoint"])
    assert full.gaps, "the 4th day should carry the source gap"
    rows = replay(full, ReplayConfig(policy="reactive")).rows
    score = evaluate(full, rows)
    for name, s in score.targets.items():
        steps = per_step(full, rows, name)
        assert len(steps.times) == 5 * full.steps and steps.step_s == 60
        assert steps.gap.any()
        assert steps.missed.sum() == pytest.approx(s.missed, rel=1e-9, abs=1e-9)
        assert steps.capacity_cost_usd.sum() + steps.switch_cost_usd == pytest.approx(s.capacity_cost_usd, rel=1e-9)
        assert steps.oracle_cost_usd.sum() == pytest.approx(s.oracle_capacity_cost_usd, rel=1e-9)
        assert (steps.oracle_cost_usd[steps.gap] == 0).all()


def test_given_capacity_in_force_then_capacity_rps_is_what_it_serves_within_eps() -> None:
    import numpy as np

    from forescale.replay.evaluate import _erlang_b

    trace = generate(days=0.05, step_s=60, seed=1, targets=["api-steady", "gpu-endpoint"])
    rows = [DecisionRow(trace.start, "api-steady", 40), DecisionRow(trace.start, "gpu-endpoint", 3, "ml.g6.xlarge")]
    lam = per_step(trace, rows, "api-steady")
    # Before the 120 s lead time nothing is provisioned; after, 40 environments.
    assert lam.capacity[0] == 0 and lam.capacity_rps[0] == 0 and lam.capacity[-1] == 40
    m = np.array([lam.capacity_rps[-1] * 0.12])
    assert _erlang_b(np, np.array([40]), m)[0] == pytest.approx(0.01, rel=1e-6)
    gpu = per_step(trace, rows, "gpu-endpoint")
    assert gpu.instance_type[-1] == "ml.g6.xlarge" and gpu.capacity_rps[-1] == pytest.approx(3 * 6.0)
    with pytest.raises(KeyError, match="sparse-hook"):
        per_step(trace, rows, "sparse-hook")


def test_given_forecasts_then_the_band_is_the_newest_issued_at_or_before_each_step() -> None:
    def fc(issued: int, value: float) -> Forecast:
        return Forecast(
            "t", issued, issued, 60, {0.05: (value - 1,) * 10, 0.5: (value,) * 10, 0.99: (value + 1,) * 10}, "x"
        )

    times = [0, 60, 120, 180, 600, 720]
    lower, median, upper, used = forecast_band([(120, fc(120, 20.0)), (0, fc(0, 10.0))], times, (0.1, 0.9))
    assert median[:4] == [10.0, 10.0, 20.0, 20.0]
    assert lower[2] == 19.0 and upper[2] == 21.0 and used == {0.05, 0.99}
    assert median[4] == 20.0  # the newer forecast rules until its horizon ends at 720
    assert median[5] != median[5]  # NaN: no forecast in force covers 720


def test_given_bad_input_then_the_report_says_what_is_wrong() -> None:
    trace = generate(days=0.05, step_s=60, seed=1, targets=["api-steady"])
    facts = RunFacts("built-in workload", 0.05)
    with pytest.raises(ValueError, match=r"unknown target.*nope"):
        Report(trace, [DecisionRow(trace.start, "nope", 1)], [], facts)
    with pytest.raises(ValueError, match="band"):
        Report(trace, [], [], facts, band=(0.6, 0.9))
    with pytest.raises(ValueError, match="wall_s"):
        RunFacts("x", 1.0, wall_s=float("nan"))
    with pytest.raises(ValueError, match="step grid"):
        trace_window(trace, trace.start + 30)
    with pytest.raises(ValueError, match="inside the trace"):
        trace_window(trace, trace.start + 60, trace.start + 60)


def test_given_rows_out_of_order_then_the_report_sorts_them_stably() -> None:
    trace = generate(days=0.05, step_s=60, seed=1, targets=["api-steady"])
    rows = [DecisionRow(trace.start + 600, "api-steady", 5), DecisionRow(trace.start, "api-steady", 9)]
    report = Report(trace, rows, [], RunFacts("x", 0.05))
    assert [r.decided_at for r in report.forescale_rows] == [trace.start, trace.start + 600]
    assert report.summary.targets[0].forescale.changes == 2


def test_given_a_target_without_demand_decisions_or_forecasts_then_the_report_still_renders(tmp_path: Path) -> None:
    base = generate(days=0.1, step_s=60, seed=4, targets=["sparse-hook", "gpu-endpoint"])
    silent = {n: TraceTarget(n, (0.0,) * base.steps, t.params) for n, t in base.targets.items()}
    gaps = ((base.start + 600, base.start + 1200),)
    trace = Trace(base.step_s, base.start, base.steps, silent, gaps, base.meta)
    report = Report(trace, [], [], RunFacts("an empty trace", 0.1))
    paths = write_report(report, tmp_path)
    for name in trace.targets:
        assert png_size(paths[f"chart:{name}"]) == CHART_SIZE_PX
    data = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert data["overall"]["forescale"]["requests"] == 0
    # The SageMaker target holds its minimum instance all along; no request, so nothing missed.
    assert data["targets"]["gpu-endpoint"]["forescale"]["mean_capacity"] == 1
    assert data["targets"]["gpu-endpoint"]["forescale"]["miss_pct"] == 0
    assert "No decision records" in paths["html"].read_text(encoding="utf-8")
    assert "0 req" in format_summary(report)


# --- the page's text, fixed: the HTML moved from f-strings to Jinja2 templates with its text unchanged ---

GOLDEN_TEXT = Path(__file__).parent / "fixtures" / "demo_report_text.txt"


class _TextChunks(HTMLParser):
    """The page's text as a person reads it: each run of text between tags, whitespace collapsed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text:
            self.chunks.append(text)


def page_text(html_text: str) -> str:
    """One line per text chunk of the page, with the generation time (the one thing that varies) masked."""
    parser = _TextChunks()
    parser.feed(html_text)
    parser.close()
    text = "\n".join(parser.chunks) + "\n"
    return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated <time>", text)


def fixed_report() -> Report:
    """`sample_report()` with the run's wall time fixed, so that the page is the same on every run."""
    report, *_ = sample_report()
    return replace(report, facts=replace(report.facts, wall_s=83.4))


def test_given_the_fixed_report_then_the_pages_text_is_the_golden_one(tmp_path: Path) -> None:
    # The golden file was written by the f-string renderer before the move to templates; regenerate it
    # (`uv run python -m tests.unit.test_demo_report`) only for a deliberate change of the page's words.
    paths = write_report(fixed_report(), tmp_path)
    assert page_text(paths["html"].read_text(encoding="utf-8")) == GOLDEN_TEXT.read_text(encoding="utf-8")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        written_paths = write_report(fixed_report(), scratch)
        GOLDEN_TEXT.write_text(page_text(written_paths["html"].read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {GOLDEN_TEXT}")


# --- one set of numbers over one window; verdicts that cannot mislead ---------------------------------


def test_given_decisions_before_the_window_then_only_the_windows_changes_are_counted_everywhere(
    written: Written,
) -> None:
    # sample_report() replays both policies over the history too: most of their rows are before the window.
    report, window, ours, theirs, paths = written.report, written.window, written.ours, written.theirs, written.paths
    assert any(r.decided_at < window.start for r in ours) and any(r.decided_at < window.start for r in theirs)
    data = json.loads(paths["summary"].read_text(encoding="utf-8"))
    html_text = page_text(paths["html"].read_text(encoding="utf-8"))
    terminal = format_summary(report)
    want_total = {"forescale": 0, "baseline": 0}
    for name in window.targets:
        for key, rows in (("forescale", ours), ("baseline", theirs)):
            # Independently: the window's rows that ask for other than the newest row before them.
            before = [r for r in rows if r.target == name and r.decided_at < window.start]
            prev = (before[-1].capacity, before[-1].instance_type) if before else None
            want = 0
            for r in (r for r in rows if r.target == name and window.start <= r.decided_at < window.end):
                want += (r.capacity, r.instance_type) != prev
                prev = (r.capacity, r.instance_type)
            assert data["targets"][name][key]["changes"] == want, (name, key)
            want_total[key] += want
        row = re.search(rf"^{re.escape(name)}\s.*\s(\d[\d,]*)$", terminal, re.M)
        assert row is not None and int(row.group(1).replace(",", "")) == data["targets"][name]["forescale"]["changes"]
    assert data["overall"]["forescale"]["changes"] == want_total["forescale"]
    assert data["overall"]["baseline"]["changes"] == want_total["baseline"]
    in_window = sum(window.start <= r.decided_at < window.end for r in ours)
    assert data["facts"]["decisions"] == in_window
    header = f"in it: {in_window:,} decisions, {want_total['forescale']:,} capacity changes "
    assert header + f"(target tracking {want_total['baseline']:,})" in terminal
    assert f"capacity changes\n{want_total['forescale']:,}\ntarget tracking {want_total['baseline']:,} · " in html_text


def test_given_a_target_over_its_slo_then_its_verdict_is_not_green_even_when_it_beats_the_baseline(
    written: Written,
) -> None:
    report, paths = written.report, written.paths
    summary = report.summary
    over = [
        t for t in summary.targets if t.forescale.within_slo is False and t.forescale.miss_pct < t.baseline.miss_pct
    ]
    kept = [t for t in summary.targets if t.forescale.within_slo]
    assert over and kept, "the sample should hold both cases"
    page = paths["html"].read_text(encoding="utf-8")
    for t in summary.targets:
        group = page.split(f'<td rowspan="4" class="tname">{t.target}<', 1)[1].split("</tbody>", 1)[0]
        verdict = group.split('<tr class="verdict">', 1)[1]
        if t in over:
            assert 'class="better"' not in verdict.split("full bill")[0].split(";", 1)[1], t.target
            assert "NOT kept" in verdict and 'class="worse"' in verdict
        if t in kept:
            assert "SLO 1 % missed: kept" in verdict
    data = json.loads(paths["summary"].read_text(encoding="utf-8"))
    for t in summary.targets:
        got = data["targets"][t.target]["forescale"]
        assert got["slo_miss"] == 0.01
        assert got["slo_budget_spent"] == pytest.approx(got["missed"] / (0.01 * got["requests"]))
        assert got["within_slo"] is (got["miss_pct"] <= 1.0)


@pytest.mark.parametrize(
    ("missed", "shown"),
    [(0.0, "0"), (0.02, "< 1"), (0.5, "0"), (0.51, "1"), (2.4, "2"), (1234.6, "1,235"), (14_012.0, "14.0 k")],
)
def test_given_fractional_missed_requests_then_they_are_shown_whole(missed: float, shown: str) -> None:
    from forescale.demo.report import _missed

    assert _missed(missed) == shown


def test_given_demand_above_the_band_for_most_of_the_first_hour_then_the_chart_says_why() -> None:
    import numpy as np

    from forescale.demo.report import _band_below_demand

    demand = np.full(120, 20.0)
    no_forecast = np.full(10, np.nan)
    low, fine = np.concatenate([no_forecast, np.full(110, 15.0)]), np.concatenate([no_forecast, np.full(110, 25.0)])
    assert _band_below_demand(demand, low)
    assert not _band_below_demand(demand, fine)
    assert not _band_below_demand(demand, np.full(120, np.nan))  # no forecast at all: nothing to explain
