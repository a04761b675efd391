"""`forescale backtest --from-cloudwatch`: what forescale would have done, and saved, on a resource's own traffic.

    forescale backtest --from-cloudwatch --function NAME [--alias A] [--days 14] [--out DIR] [--region R]
    forescale backtest --from-cloudwatch --endpoint NAME --variant V --catalog FILE.json [--days 14] ...

1. The resource's configuration: a Lambda function's MemorySize (GetFunctionConfiguration, of the alias
   when one is given); a SageMaker variant's current instance type and count (DescribeEndpoint, then
   DescribeEndpointConfig, which holds the type). A SageMaker backtest needs the user's instance
   catalog, a JSON list of `{name, price_per_hour, capacity_rps}`: CloudWatch cannot tell what one
   instance serves at the latency SLO. The variant's current type must be in it.
2. The last `--days` of 1-minute metrics, with GetMetricData through `CloudWatchMetrics` (the queries
   collect sends, NextToken pages followed), one day per request: Lambda Invocations and Duration plus
   the account-wide Invocations series; SageMaker Invocations, ModelLatency and GPUUtilization. The
   newest `METRIC_DELAY_S` are left out (CloudWatch publishes a minute late).
3. A canonical trace (requests per minute, `history.csv` and its sidecar in the report folder, so
   `forescale replay --trace` and the shared yardstick can re-score it).
4. A replay of the whole pulled range through the planner of `forescale replay` and of the deployed
   plan function: the predictive policy with react, and the replay's default guardrails (the target's
   bounds only); and the same for the target-tracking baseline.
5. The report (`forescale.demo.report`) of the window after the first day. The planner and the
   forecaster need a day of history, so the first day is warm-up: both policies observe it and decide
   from the window's start on (`ReplayConfig.start_at`), as a target registered then with a day of
   samples would, from the starting capacity (Lambda: nothing provisioned; SageMaker: the minimum of
   the cheapest type). So every decision, change and dollar in the report belongs to the window.

Missing metrics are not zero demand. The rule is collect's (`forescale.runtime.collect`, whose
`samples_for` applies it here): a minute with an Invocations datapoint has that many requests; a
minute without one is quiet (0 requests) if CloudWatch had published it, because Lambda publishes
nothing for a minute without invocations and SageMaker nothing for a minute without traffic. A minute
counts as published when any series of the same family has a datapoint at that minute or later in the
pulled range: the resource's other metrics, and for Lambda the account-wide Invocations series. So
over a history only the tail after the family's last datapoint (not published yet, or quiet in a way
that cannot be told apart) is a gap. One more rule of our own: a minute older than CloudWatch's 15-day
retention of 1-minute data, without a datapoint, is a gap too (at `--days 15` the first minutes of the
range may already be gone). Gaps go to the trace's `gaps`: the planner holds through them and the
scores leave them out.

Lambda duration is the invocation-weighted mean of the per-minute Duration Average (Little's law wants
the mean over requests, not over minutes). Without `--alias` the function's traffic over all its
versions is replayed as if one alias's provisioned concurrency served it.

Errors a user can fix (a missing resource, a bad catalog, no datapoints, `--days` out of range) raise
`BacktestError`, a ValueError the CLI prints with exit code 2.
"""

from __future__ import annotations

import bisect
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from forescale.adapters.cloudwatch import (
    LAMBDA_METRICS,
    SAGEMAKER_METRICS,
    CloudWatchMetrics,
    Family,
    MetricsWindow,
)
from forescale.domain.forecast import Forecast, Forecaster, SeriesHistory
from forescale.domain.targets import TargetKind
from forescale.replay.trace import Trace, TraceTarget
from forescale.runtime.models import DemandSampleDetail, InstanceTypeSpec, TargetConfig

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.client import CloudWatchClient
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_sagemaker.client import SageMakerClient

    from forescale.runtime.models import DecisionRecord

DAY_S = 86_400
MINUTE_S = 60
MIN_DAYS = 2  # one day of warm-up, at least one reported
ONE_MINUTE_RETENTION_DAYS = 15  # CloudWatch keeps 1-minute datapoints this long
FIVE_MINUTE_RETENTION_DAYS = 63  # ... and 5-minute ones this long (not read by backtest)
METRIC_DELAY_S = 180  # the newest minutes CloudWatch may not have published yet are left out
WARMUP_S = DAY_S
CHUNK_S = DAY_S  # one GetMetricData window: 1,440 datapoints a series, far under the 100,800 of a response
MIN_INSTANCES = 1  # a real-time endpoint variant keeps at least one instance
TRIGGER = "backtest"


class BacktestError(ValueError):
    """Bad input or an AWS answer that makes the backtest impossible; the message says which and why."""


@dataclass(frozen=True, slots=True)
class BacktestOptions:
    """What to backtest: a Lambda function (and alias) or a SageMaker endpoint variant with a catalog.

    `days` of 1-minute history are pulled (2..15); the first is warm-up, the rest is reported.
    """

    function: str | None = None
    alias: str | None = None
    endpoint: str | None = None
    variant: str | None = None
    catalog: Path | None = None
    days: int = 14
    out: Path = Path("out/backtest")
    region: str | None = None

    def validate(self) -> None:
        """Raise `BacktestError` naming the option that is wrong or missing."""
        if (self.function is None) == (self.endpoint is None):
            raise BacktestError("name one resource: --function NAME [--alias A], or --endpoint NAME --variant V")
        if self.function is not None:
            extra = [flag for flag, v in (("--variant", self.variant), ("--catalog", self.catalog)) if v is not None]
            if extra:
                verb = "applies" if len(extra) == 1 else "apply"
                raise BacktestError(f"{' and '.join(extra)} {verb} to --endpoint only, not to --function")
            if not self.function.strip():
                raise BacktestError("--function must not be empty")
        else:
            if self.alias is not None:
                raise BacktestError("--alias applies to --function only; a SageMaker endpoint takes --variant")
            if not self.variant:
                raise BacktestError(f"--endpoint {self.endpoint} needs --variant (the production variant to backtest)")
            if self.catalog is None:
                raise BacktestError(
                    "a SageMaker backtest needs --catalog FILE.json, a list of {name, price_per_hour, capacity_rps} "
                    "per instance type (capacity_rps: requests/s one instance serves within the latency SLO); "
                    "CloudWatch does not know what an instance can serve"
                )
        if self.days > ONE_MINUTE_RETENTION_DAYS:
            raise BacktestError(
                f"--days {self.days}: CloudWatch keeps 1-minute datapoints for {ONE_MINUTE_RETENTION_DAYS} days, so "
                f"at most {ONE_MINUTE_RETENTION_DAYS} days can be replayed minute by minute (older data exists only "
                f"at 5-minute resolution, for {FIVE_MINUTE_RETENTION_DAYS} days, which backtest does not read)"
            )
        if self.days < MIN_DAYS:
            raise BacktestError(
                f"--days {self.days}: need at least {MIN_DAYS} days (the first day warms the planner and the "
                "forecaster up; the report covers the days after it)"
            )


# --- the instance catalog ---------------------------------------------------------------------------


def read_catalog(path: Path) -> tuple[InstanceTypeSpec, ...]:
    """The SageMaker instance catalog file: a JSON list of {name, price_per_hour ($), capacity_rps (req/s)}."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BacktestError(f"{path}: cannot read the instance catalog: {e.strerror}") from None
    except UnicodeDecodeError:
        raise BacktestError(f"{path}: the instance catalog is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BacktestError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise BacktestError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(data, list) or not data:
        raise BacktestError(
            f"{path}: the instance catalog must be a non-empty JSON list of {{name, price_per_hour, capacity_rps}}"
        )
    specs: list[InstanceTypeSpec] = []
    for i, item in enumerate(data):
        try:
            spec = InstanceTypeSpec.model_validate(item)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the entry"
            raise BacktestError(f"{path}: entry {i}: {where}: {first['msg']}") from None
        if not (math.isfinite(spec.price_per_hour) and math.isfinite(spec.capacity_rps)):
            raise BacktestError(f"{path}: entry {i} ({spec.name}): price_per_hour and capacity_rps must be finite")
        specs.append(spec)
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BacktestError(f"{path}: instance type(s) listed more than once: {', '.join(twice)}")
    return tuple(specs)


# --- the resource and its history -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PulledHistory:
    """One resource's demand over [start, end) from CloudWatch, as a trace target plus what was found.

    `requests` holds one count per minute (0 in a gap); `gaps` are [start, end) epoch-second ranges.
    `with_data`, `quiet` and `missing` count minutes with an Invocations datapoint, published minutes
    without one (no traffic), and gap minutes. `api_calls` counts every AWS request made.
    """

    config: TargetConfig
    target: TraceTarget
    start: int
    end: int
    gaps: tuple[tuple[int, int], ...]
    with_data: int
    quiet: int
    missing: int
    get_metric_data_calls: int
    api_calls: int
    notes: tuple[str, ...] = ()


def _aws_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'ClientError')}: {err.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")


def _read_windows(
    cw: CloudWatchClient, cfg: TargetConfig, start: int, end: int
) -> tuple[list[MetricsWindow], CloudWatchMetrics]:
    """Read [start, end) one CHUNK_S window at a time; a failed call is fatal (the error names it)."""
    lambda_specs = tuple(s for s in LAMBDA_METRICS if s.field in ("requests", "duration_ms"))
    reader = CloudWatchMetrics(cw, lambda_metrics=lambda_specs, sagemaker_metrics=SAGEMAKER_METRICS, heartbeat=True)
    windows: list[MetricsWindow] = []
    for a in range(start, end, CHUNK_S):
        b = min(end, a + CHUNK_S)
        window = reader.read([cfg], a, b)
        if window.errors:
            raise BacktestError(
                f"CloudWatch GetMetricData for {cfg.resource_label} ({_when(a)} → {_when(b)} UTC) failed: "
                f"{window.errors[0]}"
            )
        windows.append(window)
    return windows, reader


def _demand(
    cfg: TargetConfig, windows: Sequence[MetricsWindow], retained_from: int
) -> tuple[list[DemandSampleDetail], list[int], int]:
    """collect's rule over the whole pull: (samples, gap minutes, quiet minutes); see the module docstring."""
    from forescale.runtime.collect import published_until, samples_for

    published: dict[Family, int] = {}
    for w in windows:
        for family, minute in published_until(w).items():
            published[family] = max(minute, published.get(family, minute))
    samples: list[DemandSampleDetail] = []
    missing: list[int] = []
    quiet = 0
    for w in windows:
        series = w.targets.get(cfg.name)
        # A backtest reads history once, long after CloudWatch settled it: every published minute is final.
        got, lost, _ = samples_for(cfg, series, w, published, final_until=w.end)
        with_point = series.series["requests"].points if series is not None else {}
        for s in got:
            if s.timestamp in with_point:
                samples.append(s)
            elif s.timestamp < retained_from:
                missing.append(s.timestamp)  # older than 1-minute retention: gone, not quiet
            else:
                samples.append(s)
                quiet += 1
        missing += lost
    return samples, sorted(missing), quiet


def _gap_ranges(minutes: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Sorted gap minutes as merged [start, end) ranges in epoch seconds."""
    out: list[tuple[int, int]] = []
    for m in minutes:
        if out and out[-1][1] == m:
            out[-1] = (out[-1][0], m + MINUTE_S)
        else:
            out.append((m, m + MINUTE_S))
    return tuple(out)


@dataclass(frozen=True)
class _Demand:
    """A resource's demand as read from CloudWatch for [start, end)."""

    start: int
    end: int
    requests: list[float]  # per minute
    samples: list[DemandSampleDetail]
    gaps: tuple[tuple[int, int], ...]
    quiet: int  # minutes with no datapoint that count as zero demand
    calls: int  # GetMetricData calls

    def history(
        self, cfg: TargetConfig, params: dict[str, Any], notes: Sequence[str], other_calls: int
    ) -> PulledHistory:
        """The pulled history of `cfg`, with the trace parameters, notes and the describe calls it took."""
        return PulledHistory(
            config=cfg,
            target=TraceTarget(cfg.name, tuple(self.requests), params),
            start=self.start,
            end=self.end,
            gaps=self.gaps,
            with_data=sum(1 for s in self.samples if s.requests > 0),
            quiet=self.quiet,
            missing=sum((b - a) // MINUTE_S for a, b in self.gaps),
            get_metric_data_calls=self.calls,
            api_calls=self.calls + other_calls,
            notes=tuple(notes),
        )


def _pull(cw: CloudWatchClient, cfg: TargetConfig, start: int, end: int, now: int) -> _Demand:
    """The demand of `cfg`'s resource over [start, end); BacktestError when it had none."""
    windows, reader = _read_windows(cw, cfg, start, end)
    retained_from = now - ONE_MINUTE_RETENTION_DAYS * DAY_S
    samples, missing, quiet = _demand(cfg, windows, retained_from)
    with_data = [s for s in samples if s.requests > 0]
    if not with_data:
        days = (end - start) / DAY_S
        raise BacktestError(
            f"no Invocations for {cfg.resource_label} in the last {days:g} days "
            f"({_when(start)} → {_when(end)} UTC): nothing to replay; "
            "check the name, the region, and the alias or variant"
        )
    by_minute = {s.timestamp: s.requests for s in samples}
    requests = [by_minute.get(m, 0.0) for m in range(start, end, MINUTE_S)]
    return _Demand(start, end, requests, samples, _gap_ranges(missing), quiet, reader.calls)


def lambda_history(
    cw: CloudWatchClient, lam: LambdaClient, function: str, alias: str | None, start: int, end: int, now: int
) -> PulledHistory:
    """A Lambda function's (or alias's) demand, mean duration and memory over [start, end)."""
    resource = f"{function}:{alias}" if alias else function
    try:
        conf = (
            lam.get_function_configuration(FunctionName=function, Qualifier=alias)
            if alias
            else lam.get_function_configuration(FunctionName=function)
        )
    except (ClientError, BotoCoreError) as e:
        raise BacktestError(f"Lambda GetFunctionConfiguration for {resource}: {_aws_error(e)}") from None
    memory_mb = int(conf.get("MemorySize") or 128)
    # CloudWatch's FunctionName dimension is the plain name, even when the user passed an ARN.
    name = str(conf.get("FunctionName") or function)
    kind = TargetKind.LAMBDA_PROVISIONED if alias else TargetKind.LAMBDA_RESERVED
    cfg = TargetConfig(
        name=f"{name}:{alias}" if alias else name, kind=kind, function_name=name, qualifier=alias, memory_mb=memory_mb
    )
    demand = _pull(cw, cfg, start, end, now)
    weighted = [(s.duration_ms, s.requests) for s in demand.samples if s.duration_ms and s.requests > 0]
    invocations = sum(n for _, n in weighted)
    if not invocations:
        raise BacktestError(
            f"no Duration datapoints for {cfg.resource_label} in the pulled range: the mean duration is "
            "needed to turn requests into concurrency"
        )
    duration_ms = sum(d * n for d, n in weighted) / invocations
    notes = [] if alias else ["no --alias: the function's traffic over all versions is replayed as one alias's"]
    description = f"{cfg.resource_label}: memory from GetFunctionConfiguration, duration the invocation-weighted mean"
    params: dict[str, Any] = {
        "kind": "lambda",
        "duration_ms": round(duration_ms, 3),
        "memory_mb": memory_mb,
        "description": description,
        "resource": cfg.resource_label,
    }
    cfg = cfg.model_copy(update={"duration_s": duration_ms / 1000})
    return demand.history(cfg, params, notes, other_calls=1)  # GetFunctionConfiguration


def _current_variant(sm: SageMakerClient, endpoint: str, variant: str) -> tuple[str, int]:
    """(instance type, instance count) the variant runs now."""
    try:
        ep = sm.describe_endpoint(EndpointName=endpoint)
    except (ClientError, BotoCoreError) as e:
        raise BacktestError(f"SageMaker DescribeEndpoint for {endpoint}: {_aws_error(e)}") from None
    variants = {v["VariantName"]: v for v in ep.get("ProductionVariants", [])}
    if variant not in variants:
        raise BacktestError(
            f"endpoint {endpoint} has no variant {variant}; it has {', '.join(sorted(variants)) or 'none'}"
        )
    live = variants[variant]
    count = int(live.get("CurrentInstanceCount") or live.get("DesiredInstanceCount") or 0)
    config_name = ep["EndpointConfigName"]
    try:
        config = sm.describe_endpoint_config(EndpointConfigName=config_name)
    except (ClientError, BotoCoreError) as e:
        raise BacktestError(f"SageMaker DescribeEndpointConfig for {config_name}: {_aws_error(e)}") from None
    spec = next((v for v in config.get("ProductionVariants", []) if v.get("VariantName") == variant), None)
    instance_type = spec.get("InstanceType") if spec else None
    if not instance_type:
        raise BacktestError(
            f"variant {variant} of {endpoint} has no instance type in {config_name} (a serverless variant?): "
            "backtest covers instance-backed real-time variants"
        )
    return str(instance_type), count


def sagemaker_history(
    cw: CloudWatchClient,
    sm: SageMakerClient,
    endpoint: str,
    variant: str,
    catalog: Sequence[InstanceTypeSpec],
    start: int,
    end: int,
    now: int,
    catalog_path: Path | None = None,
) -> PulledHistory:
    """A SageMaker variant's demand over [start, end), priced and sized with the user's catalog."""
    instance_type, count = _current_variant(sm, endpoint, variant)
    names = [c.name for c in catalog]
    if instance_type not in names:
        where = f" {catalog_path}" if catalog_path else ""
        raise BacktestError(
            f"{endpoint}/{variant} runs {instance_type}, which the catalog{where} does not list ({', '.join(names)}); "
            "add its price_per_hour and capacity_rps"
        )
    kind = TargetKind.SAGEMAKER_INSTANCE_TYPE if len(catalog) > 1 else TargetKind.SAGEMAKER_INSTANCE_COUNT
    cfg = TargetConfig(
        name=f"{endpoint}/{variant}",
        kind=kind,
        endpoint_name=endpoint,
        variant_name=variant,
        catalog=tuple(catalog),
        instance_type=instance_type,
        min_capacity=MIN_INSTANCES,
    )
    demand = _pull(cw, cfg, start, end, now)
    latencies = [(s.latency_ms, s.requests) for s in demand.samples if s.latency_ms is not None and s.requests > 0]
    served = sum(n for _, n in latencies)
    latency = f" · {sum(d * n for d, n in latencies) / served:.0f} ms model latency" if served else ""
    cheapest = min(catalog, key=lambda c: c.price_per_hour / c.capacity_rps).name
    notes = []
    if cheapest != instance_type:
        notes.append(
            f"{cfg.resource_label} runs {count} × {instance_type} now; both policies start from {MIN_INSTANCES} × "
            f"{cheapest}, the catalog's cheapest per request/s (the yardstick's starting fleet), at the warm-up's end"
        )
    params: dict[str, Any] = {
        "kind": "sagemaker",
        "min_instances": MIN_INSTANCES,
        "instance_types": {
            c.name: {"price_per_hour": c.price_per_hour, "capacity_rps": c.capacity_rps} for c in catalog
        },
        "description": f"{cfg.resource_label} · runs {count} × {instance_type} now{latency}",
        "resource": cfg.resource_label,
        "current_instance_type": instance_type,
        "current_instances": count,
    }
    return demand.history(cfg, params, notes, other_calls=2)  # DescribeEndpoint and DescribeEndpointConfig


def history_trace(pulled: PulledHistory, region: str, pulled_at: int) -> Trace:
    """The pulled history as a canonical one-minute trace (sidecar: the target's params, the gaps)."""
    steps = (pulled.end - pulled.start) // MINUTE_S
    meta = {"source": "cloudwatch", "region": region, "pulled_at": pulled_at, "resource": pulled.config.resource_label}
    return Trace(MINUTE_S, pulled.start, steps, {pulled.target.name: pulled.target}, pulled.gaps, meta)


# --- the replay ---------------------------------------------------------------------------------------


@dataclass
class RecordingForecaster:
    """A `Forecaster` that passes calls through and keeps every forecast, for the report's band."""

    inner: Forecaster
    issued: dict[str, list[tuple[int, Forecast]]] = field(default_factory=dict)

    def forecast(self, histories: Sequence[SeriesHistory], horizon_s: int) -> dict[str, Forecast]:
        out = self.inner.forecast(histories, horizon_s)
        for name, fc in out.items():
            self.issued.setdefault(name, []).append((fc.issued_at, fc))
        return out

    def in_force(self, target: str, at: int) -> Forecast | None:
        """The newest forecast for `target` issued at or before `at` (epoch s)."""
        kept = self.issued.get(target, [])
        i = bisect.bisect_right([t for t, _ in kept], at)
        return kept[i - 1][1] if i else None


def _statsforecast() -> Forecaster:
    from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter

    return StatsForecastAdapter()


def _clients(region: str | None, services: Sequence[str]) -> tuple[dict[str, Any], str]:
    import boto3

    session = boto3.session.Session(region_name=region)
    if not session.region_name:
        raise BacktestError("no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION")
    try:
        return {s: session.client(s) for s in services}, session.region_name  # type: ignore[call-overload]
    except BotoCoreError as e:
        raise BacktestError(f"cannot create AWS clients in {session.region_name}: {e}") from None


def run_backtest(
    opts: BacktestOptions,
    *,
    clients: Mapping[str, Any] | None = None,
    now: float | None = None,
    forecaster: Forecaster | None = None,
    out: TextIO | None = None,
) -> int:
    """Pull, replay, report (module docstring); 0 on success, `BacktestError` on bad input.

    `clients` ("cloudwatch", and "lambda" or "sagemaker") default to boto3 clients in `opts.region`;
    `now` (epoch s) to the wall clock; `forecaster` to statsforecast; `out` (progress and the summary) to stdout.
    """
    from forescale.demo.report import Report, RunFacts, format_summary, trace_window, write_report
    from forescale.replay.engine import ReplayConfig, replay
    from forescale.replay.trace import write_trace
    from forescale.runtime.plan import decision_record

    def log(msg: str) -> None:
        print(msg, file=out or sys.stdout, flush=True)

    t0 = time.perf_counter()
    opts.validate()
    catalog = read_catalog(opts.catalog) if opts.catalog is not None else ()
    services = ("cloudwatch", "lambda" if opts.function is not None else "sagemaker")
    if clients is None:
        aws, region = _clients(opts.region, services)
    else:
        aws, region = dict(clients), str(clients["cloudwatch"].meta.region_name)
    now_s = int(time.time() if now is None else now)
    end = (now_s - METRIC_DELAY_S) // MINUTE_S * MINUTE_S
    start = end - opts.days * DAY_S
    if opts.function is not None:
        what = f"lambda:{opts.function}" + (f":{opts.alias}" if opts.alias else "")
    else:
        what = f"sagemaker:{opts.endpoint}/{opts.variant}"
    log(
        f"pulling {opts.days} days of 1-minute CloudWatch metrics for {what} in {region} "
        f"({_when(start)} → {_when(end)} UTC)"
    )
    if opts.function is not None:
        pulled = lambda_history(aws["cloudwatch"], aws["lambda"], opts.function, opts.alias, start, end, now_s)
    else:
        assert opts.endpoint is not None and opts.variant is not None  # nosec B101  # validate() checked both; narrows the type for mypy
        pulled = sagemaker_history(
            aws["cloudwatch"], aws["sagemaker"], opts.endpoint, opts.variant, catalog, start, end, now_s, opts.catalog
        )
    log(
        f"  {pulled.with_data:,} minutes with invocations, {pulled.quiet:,} without (quiet: nothing published), "
        f"{pulled.missing:,} missing (gaps: held, not scored) · {pulled.get_metric_data_calls} GetMetricData calls"
    )
    for note in pulled.notes:
        log(f"  note: {note}")
    trace = history_trace(pulled, region, now_s)
    opts.out.mkdir(parents=True, exist_ok=True)
    trace_path = write_trace(trace, opts.out / "history.csv")

    window_start = start + WARMUP_S
    log(
        f"replaying through forescale's planner (predictive, with react) and target tracking; the first day "
        f"({_when(start)} → {_when(window_start)} UTC) is warm-up for the planner and the forecaster, the report "
        f"covers the {opts.days - 1} days after it"
    )
    recorder = RecordingForecaster(forecaster or _statsforecast())
    ours = replay(
        trace,
        ReplayConfig(
            policy="predictive",
            forecaster=recorder,
            keep_decisions=True,
            react=True,
            start_at=window_start,
            warmup_s=WARMUP_S,
        ),
    )
    theirs = replay(trace, ReplayConfig(policy="target-tracking", start_at=window_start, warmup_s=WARMUP_S))
    records: list[DecisionRecord] = [
        decision_record(pulled.config, d, recorder.in_force(d.target, d.decided_at), TRIGGER) for d in ours.decisions
    ]
    facts = RunFacts(
        source=f"CloudWatch {pulled.config.resource_label} ({region})",
        simulated_days=float(opts.days - 1),
        history_days=WARMUP_S / DAY_S,
        wall_s=time.perf_counter() - t0,
        decisions=len(records),
        api_calls=pulled.api_calls,
        command="backtest",
    )
    report = Report(
        trace=trace_window(trace, window_start),
        forescale_rows=ours.rows,
        baseline_rows=theirs.rows,
        facts=facts,
        forecasts=recorder.issued,
        records=records,
        title="forescale backtest",
    )
    paths = write_report(report, opts.out)
    log(format_summary(report))
    if ours.models:
        log("forecast models: " + ", ".join(f"{k}={v}" for k, v in sorted(ours.models.items())))
    log(f"history: {trace_path} (re-run: forescale replay --trace {trace_path} --out DECISIONS.csv)")
    log(f"report: {paths['html']}  (wall time {time.perf_counter() - t0:.0f} s)")
    return 0
