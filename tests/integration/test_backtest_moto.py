"""`forescale backtest --from-cloudwatch` end to end on moto: seeded CloudWatch history in, a report out.

Each test gets an empty moto (GetMetricData in moto scans every stored datapoint per period, so the
seeded data is kept to one resource and three days). The backtest builds its own boto3 clients from
`--region`, which moto intercepts in-process. The real statsforecast forecaster runs (a fit of three
days of one target takes a few seconds here).

moto 5.2.5 facts relied on: a GetMetricData query with dimensions matches that exact dimension set
(and ignores the namespace); one without dimensions sums every series of that name in the namespace,
so Lambda's account-wide Invocations series is the seeded function's own; StatusCode is always Complete.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from forescale.cli import main
from forescale.demo.backtest import BacktestError, BacktestOptions, run_backtest
from forescale.local.environment import create_stand_in_function
from forescale.replay.trace import load_trace

REGION = "us-east-1"
DAY_S = 86_400
MINUTE_S = 60
SEEDED_DAYS = 3
TAIL_QUIET_MIN = 45  # the newest minutes have no invocations: after the last datapoint, a gap
REPORT_FILES = ("report.html", "summary.json", "decisions.csv", "baseline-decisions.csv", "history.csv")


@dataclass
class Aws:
    lam: Any
    sm: Any
    cw: Any
    role: str


@pytest.fixture(scope="module")
def moto_clients() -> Iterator[tuple[Any, dict[str, Any]]]:
    """One moto and one set of clients for the module (building clients is the slow part)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws() as mock:
            names = ("iam", "lambda", "sagemaker", "cloudwatch")
            yield mock, {n: boto3.client(n, region_name=REGION) for n in names}  # type: ignore[call-overload]


@pytest.fixture
def aws(moto_clients: tuple[Any, dict[str, Any]]) -> Aws:
    mock, clients = moto_clients
    mock.reset()  # every moto backend starts empty: no metrics, functions or endpoints from another test
    role = clients["iam"].create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    return Aws(lam=clients["lambda"], sm=clients["sagemaker"], cw=clients["cloudwatch"], role=role)


def make_function(aws: Aws, name: str, alias: str = "live", memory_mb: int = 2048) -> None:
    create_stand_in_function(aws.lam, name, aws.role, alias=alias, memory_mb=memory_mb)


def make_endpoint(aws: Aws, name: str = "ranker", instance_type: str = "ml.g4dn.xlarge", count: int = 2) -> None:
    aws.sm.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn=aws.role,
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ranker:1"},
    )
    aws.sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{name}-model",
                "InstanceType": instance_type,
                "InitialInstanceCount": count,
            }
        ],
    )
    aws.sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")


def daily_shape(now: int, per_minute_peak: float, seed: int) -> dict[int, int]:
    """Requests per minute start over the last SEEDED_DAYS: a daily sine with noise, a quiet half hour
    in the middle of day two, and a quiet tail; minutes with zero requests are left out."""
    rng = random.Random(seed)
    first = now - SEEDED_DAYS * DAY_S
    quiet_from = first + DAY_S + DAY_S // 2
    out: dict[int, int] = {}
    for ts in range(first, now, MINUTE_S):
        if quiet_from <= ts < quiet_from + 30 * MINUTE_S or ts >= now - TAIL_QUIET_MIN * MINUTE_S:
            continue
        phase = 2 * math.pi * ((ts % DAY_S) / DAY_S - 0.375)
        mean = per_minute_peak * (0.55 + 0.45 * math.sin(phase))
        n = round(mean * rng.uniform(0.85, 1.15))
        if n > 0:
            out[ts] = n
    return out


def duration_ms_at(ts: int) -> float:
    return 80.0 if (ts // 3600) % 2 else 160.0  # alternating hours, so the weighting matters


def put(cw: Any, namespace: str, data: list[dict[str, Any]]) -> None:
    for k in range(0, len(data), 1000):
        cw.put_metric_data(Namespace=namespace, MetricData=data[k : k + 1000])


def seed_lambda(aws: Aws, function: str, alias: str, requests: dict[int, int]) -> None:
    dims = [{"Name": "FunctionName", "Value": function}, {"Name": "Resource", "Value": f"{function}:{alias}"}]
    data: list[dict[str, Any]] = []
    for ts, n in requests.items():
        at = datetime.fromtimestamp(ts, UTC)
        data.append({"MetricName": "Invocations", "Dimensions": dims, "Timestamp": at, "Value": n, "Unit": "Count"})
        data.append(
            {
                "MetricName": "Duration",
                "Dimensions": dims,
                "Timestamp": at,
                "Value": duration_ms_at(ts),
                "Unit": "Milliseconds",
            }
        )
    put(aws.cw, "AWS/Lambda", data)


def seed_sagemaker(aws: Aws, endpoint: str, variant: str, requests: dict[int, int]) -> None:
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    data = [
        {
            "MetricName": "Invocations",
            "Dimensions": dims,
            "Timestamp": datetime.fromtimestamp(ts, UTC),
            "Value": n,
            "Unit": "None",
        }
        for ts, n in requests.items()
    ]
    put(aws.cw, "AWS/SageMaker", data)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def backtest(capsys: pytest.CaptureFixture[str], out: Path, *resource: str) -> tuple[int, str, str]:
    """`forescale backtest --from-cloudwatch <resource options> --days 3 --out OUT` in this test's region."""
    argv = ["backtest", "--from-cloudwatch", *resource, "--days", "3", "--out", str(out), "--region", REGION]
    return run_cli(argv, capsys)


def now_minute() -> int:
    return int(time.time()) // MINUTE_S * MINUTE_S


def window_of(summary: dict[str, Any]) -> tuple[int, int]:
    return int(summary["window"]["start"]), int(summary["window"]["end"])


def decision_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# --- Lambda -------------------------------------------------------------------------------------------


def test_given_three_days_of_a_lambda_alias_when_backtested_then_the_report_replays_exactly_that_traffic(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given: a function with an alias, 2048 MB, and three days of per-minute Invocations and Duration
    make_function(aws, "checkout", "live", memory_mb=2048)
    now = now_minute()
    seeded = daily_shape(now, per_minute_peak=1200, seed=1)
    seed_lambda(aws, "checkout", "live", seeded)
    out = tmp_path / "bt"

    # When
    rc, stdout, stderr = backtest(capsys, out, "--function", "checkout", "--alias", "live")

    # Then: the report folder is complete
    assert rc == 0, stderr
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert list(out.glob("*.png")), "one chart per target"
    summary = json.loads((out / "summary.json").read_text())
    start, end = window_of(summary)
    # the first of the three days is warm-up; the report covers the two after it
    assert end - start == 2 * DAY_S
    assert summary["facts"]["command"] == "backtest"
    assert summary["facts"]["history_days"] == 1
    target = summary["targets"]["checkout:live"]
    # the demand reported is exactly the seeded requests of the window
    assert target["requests"] == sum(n for ts, n in seeded.items() if start <= ts < end)
    # forescale decided something, all of it inside the window (the warm-up day only observes), and
    # every change is in the contract's CSV and counted in the summary
    rows = decision_rows(out / "decisions.csv")
    assert rows and summary["facts"]["decisions"] == len(rows) == target["forescale"]["changes"]
    assert all(start <= int(r["decided_at"]) < end for r in rows)
    assert all(r["target"] == "checkout:live" and int(r["capacity"]) >= 0 for r in rows)
    assert "warm-up" in stdout and "report:" in stdout

    # The pulled history: every minute as seeded; the quiet half hour is zero demand, not a gap; the
    # tail after the last datapoint is the only gap.
    trace = load_trace(out / "history.csv")
    tt = trace.targets["checkout:live"]
    assert trace.start == start - DAY_S and trace.end == end
    assert list(tt.requests) == [float(seeded.get(trace.time(i), 0)) for i in range(trace.steps)]
    last = max(seeded)
    assert trace.gaps == ((last + MINUTE_S, end),)
    assert summary["window"]["gaps"] == [[last + MINUTE_S, end]]
    assert tt.params["memory_mb"] == 2048
    pulled = [(ts, n) for ts, n in seeded.items() if trace.start <= ts < end]
    weighted = sum(duration_ms_at(ts) * n for ts, n in pulled) / sum(n for _, n in pulled)
    assert tt.params["duration_ms"] == pytest.approx(weighted, abs=1e-3)
    assert 80 < tt.params["duration_ms"] < 160


def test_given_a_lambda_with_no_invocations_when_backtested_then_it_exits_2_saying_so(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_function(aws, "idle", "live")
    rc, _, err = backtest(capsys, tmp_path / "bt", "--function", "idle", "--alias", "live")
    assert rc == 2
    assert "no Invocations for lambda:idle:live in the last 3 days" in err
    assert not (tmp_path / "bt" / "report.html").exists()


@pytest.mark.parametrize(
    ("function", "alias", "expected"),
    [
        ("nope", "live", "ResourceNotFoundException"),
        ("checkout", "blue", "ResourceNotFoundException"),
    ],
)
def test_given_an_unknown_function_or_alias_when_backtested_then_the_aws_error_is_named(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], function: str, alias: str, expected: str
) -> None:
    make_function(aws, "checkout", "live")
    rc, _, err = backtest(capsys, tmp_path / "bt", "--function", function, "--alias", alias)
    assert rc == 2
    assert "GetFunctionConfiguration" in err and expected in err and f"{function}:{alias}" in err


def test_given_a_failing_get_metric_data_when_backtested_then_the_aws_error_is_named(aws: Aws, tmp_path: Path) -> None:
    make_function(aws, "checkout", "live")

    def deny(**_: Any) -> None:
        error = {"Error": {"Code": "AccessDenied", "Message": "not authorized to perform cloudwatch:GetMetricData"}}
        raise ClientError(error, "GetMetricData")  # type: ignore[arg-type]

    denied = boto3.client("cloudwatch", region_name=REGION)  # its own client: the shared one stays clean
    denied.meta.events.register("before-call.cloudwatch.GetMetricData", deny)
    opts = BacktestOptions(function="checkout", alias="live", days=3, out=tmp_path / "bt")
    with pytest.raises(BacktestError, match=r"GetMetricData for lambda:checkout:live .* AccessDenied"):
        run_backtest(opts, clients={"cloudwatch": denied, "lambda": aws.lam}, out=io.StringIO())


# --- SageMaker ------------------------------------------------------------------------------------------

CATALOG = [
    {"name": "ml.g4dn.xlarge", "price_per_hour": 0.736, "capacity_rps": 20.0},
    {"name": "ml.g5.xlarge", "price_per_hour": 1.408, "capacity_rps": 45.0},
]


def write_catalog(path: Path, entries: Any) -> Path:
    path.write_text(json.dumps(entries, indent=1) if not isinstance(entries, str) else entries)
    return path


@pytest.mark.slow  # the Lambda alias case above runs the same path in the fast tier
def test_given_three_days_of_an_endpoint_variant_when_backtested_with_a_catalog_then_the_report_covers_it(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given: an endpoint on 2 × ml.g4dn.xlarge, three days of Invocations peaking near 50 req/s
    make_endpoint(aws, "ranker", "ml.g4dn.xlarge", count=2)
    now = now_minute()
    seeded = daily_shape(now, per_minute_peak=3000, seed=2)
    seed_sagemaker(aws, "ranker", "AllTraffic", seeded)
    catalog = write_catalog(tmp_path / "catalog.json", CATALOG)
    out = tmp_path / "bt"

    # When
    rc, _, stderr = backtest(capsys, out, "--endpoint", "ranker", "--variant", "AllTraffic", "--catalog", str(catalog))

    # Then
    assert rc == 0, stderr
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    start, end = window_of(summary)
    target = summary["targets"]["ranker/AllTraffic"]
    assert target["kind"] == "sagemaker"
    assert target["requests"] == sum(n for ts, n in seeded.items() if start <= ts < end)
    assert summary["facts"]["decisions"] > 0
    rows = [r for r in decision_rows(out / "decisions.csv") if start <= int(r["decided_at"]) < end]
    assert rows and all(int(r["capacity"]) >= 1 for r in rows)  # a real-time variant keeps one instance
    params = load_trace(out / "history.csv").targets["ranker/AllTraffic"].params
    assert params["instance_types"] == {
        c["name"]: {k: c[k] for k in ("price_per_hour", "capacity_rps")} for c in CATALOG
    }
    assert (params["current_instance_type"], params["current_instances"]) == ("ml.g4dn.xlarge", 2)


@pytest.mark.parametrize(
    ("catalog_text", "expected"),
    [
        ('[\n {"name": "ml.g5.xlarge",, }\n]', r"catalog\.json:2: invalid JSON"),
        ('[{"name": "ml.g4dn.xlarge", "price_per_hour": 0.736}]', r"entry 0: capacity_rps: Field required"),
        ('[{"name": "g5", "price_per_hour": 1.4, "capacity_rps": 45}]', r"entry 0: name: String should match"),
        ("{}", r"non-empty JSON list"),
        ('[{"name": "ml.g5.xlarge", "price_per_hour": 1.408, "capacity_rps": 45}]', r"runs ml\.g4dn\.xlarge"),
    ],
)
def test_given_a_bad_catalog_when_backtesting_an_endpoint_then_it_exits_2_naming_the_problem(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], catalog_text: str, expected: str
) -> None:
    make_endpoint(aws, "ranker", "ml.g4dn.xlarge")
    catalog = write_catalog(tmp_path / "catalog.json", catalog_text)
    rc, _, err = backtest(
        capsys, tmp_path / "bt", "--endpoint", "ranker", "--variant", "AllTraffic", "--catalog", str(catalog)
    )
    assert rc == 2
    assert err.startswith("forescale backtest: ")
    assert re.search(expected, err), err


@pytest.mark.parametrize(
    ("endpoint", "variant", "expected"),
    [
        ("ranker", "Canary", "endpoint ranker has no variant Canary; it has AllTraffic"),
        ("missing", "AllTraffic", "DescribeEndpoint for missing: ValidationException"),
    ],
)
def test_given_an_unknown_endpoint_or_variant_when_backtested_then_it_exits_2_naming_it(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], endpoint: str, variant: str, expected: str
) -> None:
    make_endpoint(aws, "ranker", "ml.g4dn.xlarge")
    catalog = write_catalog(tmp_path / "catalog.json", CATALOG)
    rc, _, err = backtest(
        capsys, tmp_path / "bt", "--endpoint", endpoint, "--variant", variant, "--catalog", str(catalog)
    )
    assert rc == 2
    assert expected in err


# --- options --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--function", "f", "--days", "16"], "CloudWatch keeps 1-minute datapoints for 15 days"),
        (["--function", "f", "--days", "16"], "5-minute resolution, for 63 days"),
        (["--function", "f", "--days", "1"], "need at least 2 days"),
        (["--endpoint", "e", "--variant", "AllTraffic"], "needs --catalog FILE.json"),
        (["--endpoint", "e", "--catalog", "c.json"], "--endpoint e needs --variant"),
        (["--endpoint", "e", "--variant", "v", "--catalog", "c.json", "--alias", "a"], "--alias applies to --function"),
        (["--function", "f", "--variant", "v"], "--variant applies to --endpoint only"),
    ],
)
def test_given_bad_options_when_backtesting_then_it_exits_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    rc, _, err = run_cli(["backtest", "--from-cloudwatch", *args, "--out", str(tmp_path / "bt")], capsys)
    assert rc == 2
    assert expected in err
    assert not (tmp_path / "bt").exists()  # refused before anything is pulled or written


@pytest.mark.parametrize(
    "args",
    [
        ["--function", "f"],  # no source: --from-cloudwatch is required (the only one for now)
        ["--from-cloudwatch"],  # no resource
        ["--from-cloudwatch", "--function", "f", "--endpoint", "e"],  # two resources
    ],
)
def test_given_no_source_or_resource_when_backtesting_then_argparse_exits_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["backtest", *args])
    assert exc.value.code == 2
    assert "backtest" in capsys.readouterr().err
