"""Reading per-minute demand metrics for many targets from CloudWatch with batched GetMetricData calls.

All targets share the calls: one query per (target, metric), packed 500 to a request (the AWS limit on
MetricDataQueries per GetMetricData call), with NextToken pages followed until the end. The result is
typed (`MetricsWindow`): per target, per metric, a value per minute start (epoch seconds), and
whether CloudWatch returned the series completely. No boto3 dictionary leaves this module.

What is read (Period = 60 s):

- Lambda, namespace `AWS/Lambda`: Invocations (Sum), ConcurrentExecutions (Maximum), Duration
  (Average, ms), ProvisionedConcurrencySpilloverInvocations (Sum), Throttles (Sum). A
  `lambda-provisioned` target reads its alias or version: Lambda publishes those series with the
  dimensions `FunctionName` and `Resource = <function>:<qualifier>` together (a CloudWatch metric is
  identified by its exact dimension set, so both are needed). A `lambda-reserved` target reads the
  function as a whole (`FunctionName` only): reserved concurrency caps every version and alias at once.
- SageMaker variant: `AWS/SageMaker` Invocations (Sum) and ModelLatency (Average; published in
  microseconds, converted here to ms), and `/aws/sagemaker/Endpoints` GPUUtilization (Average, %;
  it can exceed 100 on multi-GPU instances), all with dimensions `EndpointName`, `VariantName`.
  InvocationsPerInstance is not read: it is Invocations divided by the instance count, nothing stores
  it, and every query costs (GetMetricData is billed per metric read).
- A heartbeat, `AWS/Lambda` Invocations (Sum) with no dimensions (the account-wide series), read once
  when any Lambda target is read. Lambda publishes nothing for a function in a minute without
  invocations, so a function's empty minute is either quiet or not published yet; forescale's own
  collect function runs every minute, so the account-wide series has a datapoint for every minute
  CloudWatch has published. `forescale.runtime.collect` uses it to tell the two apart.

A batch whose call fails (throttled after botocore's retries, access denied, ...) is reported in
`errors` and its series come back with `complete = False`: the caller treats them as missing data,
never as zero. The other batches are unaffected.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from forescale.domain.targets import TargetKind
from forescale.runtime.models import TargetConfig

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.client import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDataQueryTypeDef

MAX_QUERIES_PER_CALL = 500  # AWS limit: MetricDataQueries per GetMetricData request
MAX_PAGES_PER_BATCH = 50  # a guard against a NextToken that never ends; 5-minute windows need one page
PERIOD_S = 60
QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")  # AWS: starts with a lowercase letter; letters, digits, _

Family = Literal["lambda", "sagemaker"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One CloudWatch statistic and the `DemandSampleDetail` field it fills.

    `field` is a DemandSampleDetail field name (`requests` is the Invocations count of the minute);
    `scale` converts CloudWatch's unit to the field's (1e-3 for microseconds → ms).
    """

    field: str
    namespace: str
    metric_name: str
    stat: Literal["Sum", "Average", "Maximum", "Minimum", "SampleCount"]
    scale: float = 1.0


LAMBDA_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("requests", "AWS/Lambda", "Invocations", "Sum"),
    MetricSpec("concurrency", "AWS/Lambda", "ConcurrentExecutions", "Maximum"),
    MetricSpec("duration_ms", "AWS/Lambda", "Duration", "Average"),
    MetricSpec("spillover", "AWS/Lambda", "ProvisionedConcurrencySpilloverInvocations", "Sum"),
    MetricSpec("throttles", "AWS/Lambda", "Throttles", "Sum"),
)
SAGEMAKER_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("requests", "AWS/SageMaker", "Invocations", "Sum"),
    MetricSpec("latency_ms", "AWS/SageMaker", "ModelLatency", "Average", scale=1e-3),
    MetricSpec("gpu_utilization", "/aws/sagemaker/Endpoints", "GPUUtilization", "Average"),
)
LAMBDA_HEARTBEAT = MetricSpec("heartbeat", "AWS/Lambda", "Invocations", "Sum")


def family_of(cfg: TargetConfig) -> Family:
    return "lambda" if cfg.kind.is_lambda else "sagemaker"


def dimensions_for(cfg: TargetConfig) -> tuple[tuple[str, str], ...]:
    """The exact CloudWatch dimension set of a target's metrics (see the module docstring)."""
    if cfg.kind is TargetKind.LAMBDA_PROVISIONED:
        return (("FunctionName", str(cfg.function_name)), ("Resource", f"{cfg.function_name}:{cfg.qualifier}"))
    if cfg.kind.is_lambda:
        return (("FunctionName", str(cfg.function_name)),)
    return (("EndpointName", str(cfg.endpoint_name)), ("VariantName", str(cfg.variant_name)))


@dataclass(frozen=True, slots=True)
class Series:
    """One metric of one target over the window: value per minute start (epoch s), in the field's unit.

    `complete` is True when CloudWatch answered the query with StatusCode Complete, so a minute
    without a value was not published (for Lambda: had no invocations), rather than lost.
    """

    points: Mapping[int, float]
    complete: bool


@dataclass(frozen=True, slots=True)
class TargetSeries:
    """Every metric read for one target, keyed by DemandSampleDetail field name."""

    target: str
    family: Family
    series: Mapping[str, Series]

    def values_at(self, minute: int) -> dict[str, float]:
        """The metrics that have a datapoint at `minute` (epoch s of the minute's start)."""
        return {name: s.points[minute] for name, s in self.series.items() if minute in s.points}


@dataclass(frozen=True, slots=True)
class MetricsWindow:
    """What one read returned for the minutes [start, end) (epoch s)."""

    start: int
    end: int
    targets: Mapping[str, TargetSeries]
    heartbeats: Mapping[Family, Series] = field(default_factory=dict)
    calls: int = 0  # GetMetricData requests, pages included
    queries: int = 0
    errors: tuple[str, ...] = ()


class MetricsReader(Protocol):
    """The port the collect service reads demand through (CloudWatchMetrics, or a test fake)."""

    def read(self, targets: Sequence[TargetConfig], start: int, end: int) -> MetricsWindow:
        """Per-minute metrics of `targets` for the minutes [start, end); both multiples of 60."""
        ...


@dataclass(frozen=True, slots=True)
class _Query:
    query_id: str
    target: str | None  # None: the family heartbeat
    family: Family
    spec: MetricSpec
    dimensions: tuple[tuple[str, str], ...]

    def request(self) -> MetricDataQueryTypeDef:
        return {
            "Id": self.query_id,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.spec.namespace,
                    "MetricName": self.spec.metric_name,
                    "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions],
                },
                "Period": PERIOD_S,
                "Stat": self.spec.stat,
            },
            "ReturnData": True,
        }


class CloudWatchMetrics:
    """`MetricsReader` on CloudWatch GetMetricData, batching every target's queries together.

    `lambda_metrics` / `sagemaker_metrics` choose what is read per target; each must include the
    `requests` spec (Invocations). `calls` and `queries` count what this adapter has sent so far.
    """

    def __init__(
        self,
        client: CloudWatchClient,
        lambda_metrics: Sequence[MetricSpec] = LAMBDA_METRICS,
        sagemaker_metrics: Sequence[MetricSpec] = SAGEMAKER_METRICS,
        heartbeat: bool = True,
        detail_every: int = 1,
        poll_every: int = 1,
    ) -> None:
        if detail_every < 1 or poll_every < 1:
            raise ValueError(f"detail_every and poll_every must be >= 1 (minutes), got {detail_every}, {poll_every}")
        for name, specs in (("lambda_metrics", lambda_metrics), ("sagemaker_metrics", sagemaker_metrics)):
            fields = [s.field for s in specs]
            if "requests" not in fields:
                raise ValueError(f"{name} must include the `requests` (Invocations) metric, got {fields}")
            if len(set(fields)) != len(fields):
                raise ValueError(f"{name} names a field twice: {fields}")
        self._cw = client
        self._specs: dict[Family, tuple[MetricSpec, ...]] = {
            "lambda": tuple(lambda_metrics),
            "sagemaker": tuple(sagemaker_metrics),
        }
        self._heartbeat = heartbeat
        # Invocations are read for every target every minute; the detail metrics (duration,
        # concurrency, latency, GPU, ...) for a rotating 1/detail_every of the targets, so 1,000
        # targets fit 3 GetMetricData calls a minute and each target's detail is still read every
        # `detail_every` minutes (over the whole re-read window).
        # Polled every `poll_every` minutes, a target's reads advance the rotation by one each, so the
        # rotation counts reads (detail every `detail_every` minutes, rounded to whole polls).
        self._poll_every = poll_every
        self._detail_every = max(1, detail_every // poll_every)
        self.calls = 0
        self.queries = 0

    @classmethod
    def demand_only(cls, client: CloudWatchClient) -> CloudWatchMetrics:
        """Invocations only (one query per target): the fewest calls, no duration/latency/GPU detail."""
        return cls(client, LAMBDA_METRICS[:1], SAGEMAKER_METRICS[:1])

    @classmethod
    def rotating(cls, client: CloudWatchClient, detail_every: int = 15, poll_every: int = 1) -> CloudWatchMetrics:
        """Invocations for all targets each read, the other metrics for a rotating share (see __init__)."""
        return cls(client, detail_every=detail_every, poll_every=poll_every)

    def reads_detail(self, name: str, minute: int) -> bool:
        """Whether a read whose window starts at epoch second `minute` fetches `name`'s detail metrics."""
        if self._detail_every == 1:
            return True
        read_index = minute // (PERIOD_S * self._poll_every)
        return zlib.crc32(name.encode()) % self._detail_every == read_index % self._detail_every

    def plan_queries(self, targets: Sequence[TargetConfig], minute: int = 0) -> list[_Query]:
        """Every query a read of `targets` sends, with ids that map back to (target, metric)."""
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"targets named more than once: {dupes}")
        out: list[_Query] = []
        for cfg in targets:
            family = family_of(cfg)
            dims = dimensions_for(cfg)
            detail = self.reads_detail(cfg.name, minute)
            for spec in self._specs[family]:
                if detail or spec.field == "requests":
                    out.append(_Query(f"q{len(out)}", cfg.name, family, spec, dims))
        if self._heartbeat and any(t.kind.is_lambda for t in targets):
            out.append(_Query(f"q{len(out)}", None, "lambda", LAMBDA_HEARTBEAT, ()))
        for q in out:
            if not QUERY_ID.match(q.query_id):  # a programming error, caught before AWS rejects the batch
                raise AssertionError(f"invalid GetMetricData query id {q.query_id!r}")
        return out

    def read(self, targets: Sequence[TargetConfig], start: int, end: int) -> MetricsWindow:
        if start % PERIOD_S or end % PERIOD_S or start >= end:
            raise ValueError(f"window [{start}, {end}) must be whole minutes (multiples of 60 s) with start < end")
        queries = self.plan_queries(targets, start)
        points: dict[str, dict[int, float]] = {q.query_id: {} for q in queries}
        complete: dict[str, bool] = dict.fromkeys(points, False)
        errors: list[str] = []
        calls_before = self.calls
        for first in range(0, len(queries), MAX_QUERIES_PER_CALL):
            batch = queries[first : first + MAX_QUERIES_PER_CALL]
            try:
                self._read_batch(batch, start, end, points, complete)
            except (ClientError, BotoCoreError) as exc:
                for q in batch:
                    complete[q.query_id] = False
                errors.append(f"GetMetricData for queries {first}..{first + len(batch) - 1} failed: {_describe(exc)}")
        self.queries += len(queries)

        per_target: dict[str, dict[str, Series]] = {}
        families: dict[str, Family] = {}
        heartbeats: dict[Family, Series] = {}
        for q in queries:
            s = Series(points=points[q.query_id], complete=complete[q.query_id])
            if q.target is None:
                heartbeats[q.family] = s
            else:
                per_target.setdefault(q.target, {})[q.spec.field] = s
                families[q.target] = q.family
        return MetricsWindow(
            start=start,
            end=end,
            targets={n: TargetSeries(n, families[n], series) for n, series in per_target.items()},
            heartbeats=heartbeats,
            calls=self.calls - calls_before,
            queries=len(queries),
            errors=tuple(errors),
        )

    def _read_batch(
        self,
        batch: Sequence[_Query],
        start: int,
        end: int,
        points: dict[str, dict[int, float]],
        complete: dict[str, bool],
    ) -> None:
        by_id = {q.query_id: q for q in batch}
        kwargs: dict[str, Any] = {
            "MetricDataQueries": [q.request() for q in batch],
            "StartTime": datetime.fromtimestamp(start, UTC),
            "EndTime": datetime.fromtimestamp(end, UTC),  # exclusive
            "ScanBy": "TimestampAscending",
        }
        status: dict[str, str] = {}
        for _ in range(MAX_PAGES_PER_BATCH):
            self.calls += 1
            resp = self._cw.get_metric_data(**kwargs)
            for result in resp.get("MetricDataResults", []):
                qid = result.get("Id", "")
                query = by_id.get(qid)
                if query is None:
                    continue
                status[qid] = result.get("StatusCode", "Complete")
                for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    minute = int(ts.timestamp())
                    minute -= minute % PERIOD_S
                    if start <= minute < end and math.isfinite(value):
                        points[qid][minute] = value * query.spec.scale
            token = resp.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        else:
            raise _PagingError(f"still paging after {MAX_PAGES_PER_BATCH} pages")
        for qid in by_id:
            # Only a Complete status vouches that an absent minute was not published; PartialData at the
            # end, InternalError, Forbidden, or no answer at all leave the series incomplete.
            complete[qid] = status.get(qid) == "Complete"


class _PagingError(BotoCoreError):
    fmt = "GetMetricData {msg}"

    def __init__(self, msg: str) -> None:
        super().__init__(msg=msg)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'ClientError')}: {err.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"
