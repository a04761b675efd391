"""collect's rules on a fake metrics reader (window, missing vs quiet, chunking, above-band, ingest),
and the CloudWatch adapter's batching, paging and failure handling on botocore's Stubber (no network)."""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pytest_socket import disable_socket, enable_socket

from forescale.adapters.cloudwatch import (
    MAX_QUERIES_PER_CALL,
    QUERY_ID,
    CloudWatchMetrics,
    Family,
    MetricsWindow,
    Series,
    TargetSeries,
    family_of,
)
from forescale.adapters.events import RecordingPublisher
from forescale.adapters.state import InMemoryStateStore
from forescale.domain.forecast import Forecast
from forescale.domain.targets import TargetKind
from forescale.runtime.collect import (
    DETAIL_BUDGET_BYTES,
    MAX_TARGETS_PER_EVENT,
    CollectService,
    UnknownTargetError,
    chunk_collected,
)
from forescale.runtime.models import (
    DemandAboveForecastDetail,
    DemandSampleDetail,
    InstanceTypeSpec,
    SamplesCollectedDetail,
    TargetConfig,
)

NOW = 1_700_000_000 - 1_700_000_000 % 3600 + 1800 + 17  # 17 s into a minute
DELAY = 120


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    disable_socket()
    yield
    enable_socket()


def lam(name: str, qualifier: str | None = "live") -> TargetConfig:
    kind = TargetKind.LAMBDA_PROVISIONED if qualifier else TargetKind.LAMBDA_RESERVED
    return TargetConfig(name=name, kind=kind, function_name=name, qualifier=qualifier)


def sm(name: str) -> TargetConfig:
    return TargetConfig(
        name=name,
        kind=TargetKind.SAGEMAKER_INSTANCE_COUNT,
        endpoint_name=name,
        variant_name="AllTraffic",
        catalog=(InstanceTypeSpec(name="ml.g4dn.xlarge", price_per_hour=0.736, capacity_rps=40),),
        min_capacity=1,
    )


class FakeMetrics:
    """A MetricsReader answering from a table of datapoints: {target: {field: {minute: value}}}."""

    def __init__(
        self,
        points: Mapping[str, Mapping[str, Mapping[int, float]]] | None = None,
        heartbeat: Mapping[int, float] | None = None,
        incomplete: Sequence[tuple[str, str]] = (),
        absent: Sequence[str] = (),
    ) -> None:
        self.points = points or {}
        self.heartbeat = heartbeat
        self.incomplete = set(incomplete)
        self.absent = set(absent)
        self.reads: list[tuple[list[str], int, int]] = []

    def read(self, targets: Sequence[TargetConfig], start: int, end: int) -> MetricsWindow:
        self.reads.append(([t.name for t in targets], start, end))
        out: dict[str, TargetSeries] = {}
        for cfg in targets:
            if cfg.name in self.absent:
                continue
            fields = self.points.get(cfg.name, {})
            names = {"requests", *fields}
            series = {
                f: Series(
                    points={m: v for m, v in fields.get(f, {}).items() if start <= m < end},
                    complete=(cfg.name, f) not in self.incomplete,
                )
                for f in names
            }
            out[cfg.name] = TargetSeries(cfg.name, family_of(cfg), series)
        beats: dict[Family, Series] = {}
        if self.heartbeat is not None:
            beats["lambda"] = Series(points=dict(self.heartbeat), complete=True)
        return MetricsWindow(start=start, end=end, targets=out, heartbeats=beats, calls=1, queries=len(targets))


def service(
    store: InMemoryStateStore, metrics: FakeMetrics, publisher: RecordingPublisher | None = None
) -> CollectService:
    return CollectService(store, metrics, publisher or RecordingPublisher(), sample_ttl_s=86_400, metric_delay_s=DELAY)


def window_minutes() -> list[int]:
    end = (NOW - DELAY) - (NOW - DELAY) % 60
    return list(range(end - 300, end, 60))


def events(pub: RecordingPublisher, detail_type: str) -> list[Any]:
    return [d for t, d in pub.published if t == detail_type]


# ---------------------------------------------------------------- window and samples


def test_given_a_run_time_when_collecting_then_it_reads_the_five_whole_minutes_ending_metric_delay_ago() -> None:
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    fake = FakeMetrics()
    result = service(store, fake).collect(NOW)
    (names, start, end), *_ = fake.reads
    assert names == ["a"]
    assert end == NOW - DELAY - (NOW - DELAY) % 60
    assert end <= NOW - DELAY < end + 60
    assert (start, end) == (window_minutes()[0], window_minutes()[-1] + 60)
    assert result.period_start == end - 60


def test_given_invocations_and_details_when_collected_then_each_minute_is_stored_with_its_metrics() -> None:
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    m = window_minutes()
    fake = FakeMetrics(
        {
            "a": {
                "requests": {t: 60.0 * (i + 1) for i, t in enumerate(m)},
                "duration_ms": {t: 120.0 for t in m},
                "concurrency": {m[-1]: 9.0},
                "throttles": {m[-1]: 3.0},
            }
        }
    )
    result = service(store, fake).collect(NOW)
    history = store.load_history("a", m[0], m[-1] + 60)
    assert history.rates == [float(i + 1) for i in range(5)]  # requests per minute / 60
    assert store.load_metric("a", "duration_ms", m[0], m[-1] + 60) == [120.0] * 5
    assert store.load_metric("a", "concurrency", m[0], m[-1] + 60) == [None] * 4 + [9.0]
    assert store.load_metric("a", "throttles", m[0], m[-1] + 60) == [None] * 4 + [3.0]
    assert (result.samples_stored, result.missing_minutes, result.quiet_minutes) == (5, 0, 0)


def test_given_an_idle_lambda_in_published_minutes_then_its_minutes_are_stored_as_zero() -> None:
    # CloudWatch omits zero-invocation minutes; the account heartbeat shows the minutes were published,
    # and the oldest minute of the window is read for the last time: final, so quiet, and so are the
    # empty minutes after it.
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    m = window_minutes()
    fake = FakeMetrics({"a": {"requests": {}}}, heartbeat={t: 5.0 for t in m})
    result = service(store, fake).collect(NOW)
    assert store.load_history("a", m[0], m[-1] + 60).rates == [0.0] * 5
    assert result.quiet_minutes == 5
    assert result.missing_targets == ()


def test_given_empty_published_minutes_after_traffic_then_they_are_missing_until_their_last_read() -> None:
    # Issue 15 item 4: the target's own datapoints may arrive minutes after the heartbeat's. An empty
    # minute after traffic is not final: missing (plan holds), then zero only if still empty when
    # it is the oldest minute of the window.
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    m = window_minutes()
    beats = {t: 5.0 for t in range(m[0], m[-1] + 4 * 60, 60)}
    fake = FakeMetrics({"a": {"requests": {m[0]: 120.0, m[1]: 60.0}}}, heartbeat=beats)
    svc = service(store, fake)
    first = svc.collect(NOW)
    assert store.load_history("a", m[0], m[-1] + 60).rates == [2.0, 1.0, None, None, None]
    assert (first.quiet_minutes, first.missing_targets) == (0, ("a",))
    svc.collect(NOW + 60)  # m[1] is final now; m[2] still is not
    assert store.load_history("a", m[0], m[-1] + 60).rates == [2.0, 1.0, None, None, None]
    third = svc.collect(NOW + 120)  # m[2] is read for the last time: still empty, so quiet
    assert store.load_history("a", m[0], m[-1] + 180).rates == [2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert third.missing_targets == ()


def test_given_minutes_not_yet_published_anywhere_then_they_are_missing_not_zero() -> None:
    # Nothing in the Lambda family has data after m[2]: m[3], m[4] may simply not be published yet.
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    store.put_target(lam("b"))
    m = window_minutes()
    fake = FakeMetrics({"a": {"requests": {m[0]: 60.0}}, "b": {"requests": {m[2]: 30.0}}}, heartbeat={})
    pub = RecordingPublisher()
    result = service(store, fake, pub).collect(NOW)
    assert store.load_history("a", m[0], m[-1] + 60).rates == [1.0, None, None, None, None]
    assert store.load_history("b", m[0], m[-1] + 60).rates == [0.0, 0.0, 0.5, None, None]
    assert result.missing_minutes == 6
    assert result.missing_targets == ("a", "b")
    (collected,) = events(pub, "forescale.SamplesCollected")
    assert collected == SamplesCollectedDetail(period_start=m[-1], targets=("a", "b"), missing=("a", "b"))


def test_given_the_invocations_query_failed_then_the_minutes_are_missing_even_when_published() -> None:
    store = InMemoryStateStore()
    for name in ("a", "b", "c"):
        store.put_target(lam(name))
    m = window_minutes()
    fake = FakeMetrics(
        {"a": {"requests": {m[0]: 60.0}}, "c": {"requests": {}}},
        heartbeat={t: 1.0 for t in m},
        incomplete=[("a", "requests")],
        absent=["b"],  # its batch's call failed: no series at all
    )
    result = service(store, fake).collect(NOW)
    # a: the one datapoint CloudWatch did return is real; the empty minutes cannot be called quiet.
    assert store.load_history("a", m[0], m[-1] + 60).rates == [1.0, None, None, None, None]
    assert store.load_history("b", m[0], m[-1] + 60).rates == [None] * 5
    assert store.load_history("c", m[0], m[-1] + 60).rates == [0.0] * 5
    assert result.missing_targets == ("a", "b")


def test_given_a_sagemaker_variant_with_gpu_but_no_invocations_then_the_minute_is_quiet_with_its_gpu() -> None:
    store = InMemoryStateStore()
    store.put_target(sm("ep"))
    m = window_minutes()
    fake = FakeMetrics(
        {
            "ep": {
                "requests": {},
                "latency_ms": {},
                "gpu_utilization": {t: 7.0 for t in m[:4]},  # instance metrics stop at m[3]: m[4] unpublished
            }
        }
    )
    result = service(store, fake).collect(NOW)
    assert store.load_history("ep", m[0], m[-1] + 60).rates == [0.0, 0.0, 0.0, 0.0, None]
    assert store.load_metric("ep", "latency_ms", m[0], m[-1] + 60) == [None] * 5
    assert store.load_metric("ep", "gpu_utilization", m[0], m[-1] + 60) == [7.0, 7.0, 7.0, 7.0, None]
    assert result.missing_targets == ("ep",)


def test_given_families_then_lambda_evidence_never_makes_a_sagemaker_minute_quiet() -> None:
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    store.put_target(sm("ep"))
    m = window_minutes()
    fake = FakeMetrics({"a": {"requests": {t: 60.0 for t in m}}}, heartbeat={t: 60.0 for t in m})
    result = service(store, fake).collect(NOW)
    assert store.load_history("ep", m[0], m[-1] + 60).rates == [None] * 5
    assert result.missing_targets == ("ep",)


class CountingStore(InMemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[str, int]] = []

    def put_samples(self, samples: Sequence[DemandSampleDetail], ttl_s: int) -> None:
        self.written += [(s.target, s.timestamp) for s in samples]
        super().put_samples(samples, ttl_s)


def test_given_a_warm_service_when_the_next_minute_runs_then_only_new_or_changed_minutes_are_written() -> None:
    store = CountingStore()
    store.put_target(lam("a"))
    m = window_minutes()
    fake = FakeMetrics({"a": {"requests": {t: 30.0 for t in m}}})
    svc = service(store, fake)
    first = svc.collect(NOW)
    assert (first.samples_stored, first.samples_written) == (5, 5)
    store.written.clear()
    fake.points = {"a": {"requests": {**{t: 30.0 for t in m}, m[-1]: 90.0, m[-1] + 60: 45.0}}}  # late data, new minute
    second = svc.collect(NOW + 60)
    assert sorted(store.written) == [("a", m[-1]), ("a", m[-1] + 60)]
    assert (second.samples_stored, second.samples_written) == (5, 2)
    assert store.load_history("a", m[-1], m[-1] + 120).rates == [1.5, 0.75]


def test_given_a_cold_service_then_the_whole_window_is_written_again_with_the_same_values() -> None:
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    m = window_minutes()
    fake = FakeMetrics({"a": {"requests": {t: 30.0 for t in m}}})
    service(store, fake).collect(NOW)
    first = json.dumps(store.samples, sort_keys=True)
    store.samples.clear()
    assert service(store, fake).collect(NOW).samples_written == 5
    assert json.dumps(store.samples, sort_keys=True) == first


def test_given_pushed_demand_for_a_minute_then_the_next_collect_writes_that_minute_again() -> None:
    store = CountingStore()
    store.put_target(lam("a"))
    m = window_minutes()
    svc = service(store, FakeMetrics({"a": {"requests": {t: 30.0 for t in m}}}))
    svc.collect(NOW)
    svc.ingest([DemandSampleDetail(target="a", timestamp=m[2], requests=600)])
    store.written.clear()
    svc.collect(NOW)
    assert store.written == [("a", m[2])]  # one source per target: CloudWatch's value is restored


class ListingStore(InMemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    def list_targets(self) -> list[TargetConfig]:
        self.listings += 1
        return super().list_targets()


def test_given_a_listing_interval_then_a_warm_service_lists_targets_that_often_and_on_request() -> None:
    # Given a warm service that lists the registered targets at most every 15 minutes
    store = ListingStore()
    store.put_target(lam("a"))
    fake = FakeMetrics()
    svc = CollectService(store, fake, RecordingPublisher(), metric_delay_s=DELAY, list_every_s=900)
    svc.collect(NOW)
    # When a target is registered and the next runs come within the interval
    store.put_target(lam("b"))
    svc.collect(NOW + 60)
    svc.collect(NOW + 840)
    # Then they read the listed targets only, from one listing
    assert store.listings == 1 and [names for names, _, _ in fake.reads] == [["a"]] * 3
    # and the run after the interval (or after forget_listing) lists again and reads the new target
    svc.collect(NOW + 900)
    svc.forget_listing()
    svc.collect(NOW + 960)
    assert store.listings == 3 and [names for names, _, _ in fake.reads[3:]] == [["a", "b"]] * 2
    # and a clock that went back (a replayed event) lists again rather than trusting a listing from its future
    svc.collect(NOW)
    assert store.listings == 4


def test_given_no_registered_target_then_nothing_is_read_or_published() -> None:
    fake = FakeMetrics()
    pub = RecordingPublisher()
    result = service(InMemoryStateStore(), fake, pub).collect(NOW)
    assert fake.reads == [] and pub.published == [] and result.targets == 0


# ---------------------------------------------------------------- SamplesCollected chunking


def test_given_2500_targets_when_collected_then_events_hold_at_most_1000_and_cover_all_once() -> None:
    store = InMemoryStateStore()
    names = [f"fn-{i:04d}" for i in range(2500)]
    for n in names:
        store.put_target(lam(n, qualifier=None))
    m = window_minutes()
    points = {n: {"requests": {m[-1]: 60.0}} for n in names}
    failed = [n for i, n in enumerate(names) if i % 3 == 0]
    pub = RecordingPublisher()
    service(store, FakeMetrics(points, absent=failed), pub).collect(NOW)
    chunks = events(pub, "forescale.SamplesCollected")
    assert len(chunks) >= 3
    assert all(len(c.targets) <= MAX_TARGETS_PER_EVENT for c in chunks)
    assert [n for c in chunks for n in c.targets] == names
    expected_missing = [n for i, n in enumerate(names) if i % 3 == 0]
    assert [n for c in chunks for n in c.missing] == expected_missing
    assert all(set(c.missing) <= set(c.targets) for c in chunks)
    assert all(len(c.model_dump_json()) <= DETAIL_BUDGET_BYTES for c in chunks)


def test_given_long_names_then_a_chunk_stays_under_the_byte_budget_so_ten_fit_one_put_events() -> None:
    names = [f"{'x' * 120}{i:05d}" for i in range(1500)]
    chunks = chunk_collected(1_700_000_000, names, missing=set(names[::2]))
    assert [n for c in chunks for n in c.targets] == names
    assert all(len(c.model_dump_json()) <= DETAIL_BUDGET_BYTES for c in chunks)
    assert max(len(c.targets) for c in chunks) < MAX_TARGETS_PER_EVENT  # the budget binds, not the count


# ---------------------------------------------------------------- DemandAboveForecast


def forecast(target: str, start: int, quantiles: dict[float, float], steps: int = 30) -> Forecast:
    return Forecast(
        target=target,
        issued_at=start,
        start=start,
        step_s=60,
        quantiles={q: (v,) * steps for q, v in quantiles.items()},
        model="test",
    )


@pytest.mark.parametrize(
    ("observed_per_minute", "quantiles", "upper"),
    [
        (600.0, {0.5: 4.0, 0.9: 6.0, 0.99: 8.0}, 8.0),  # 10 rps > q0.99 = 8
        (600.0, {0.5: 4.0, 0.9: 9.5}, 9.5),  # no 0.99 stored: the highest quantile, 9.5 < 10
        (420.0, {0.5: 4.0, 0.99: 8.0}, None),  # 7 rps is inside the band
        (600.0, {0.5: 4.0, 0.99: 10.0}, None),  # equal is not above
    ],
)
def test_given_a_forecast_band_when_the_newest_rate_exceeds_it_then_react_is_told(
    observed_per_minute: float, quantiles: dict[float, float], upper: float | None
) -> None:
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    m = window_minutes()
    store.put_forecast(forecast("a", m[0], quantiles))
    pub = RecordingPublisher()
    fake = FakeMetrics({"a": {"requests": {m[-2]: 60.0, m[-1]: observed_per_minute}}})
    result = service(store, fake, pub).collect(NOW)
    above = events(pub, "forescale.DemandAboveForecast")
    if upper is None:
        assert above == [] and result.above_forecast == ()
    else:
        expected = DemandAboveForecastDetail(
            target="a", timestamp=m[-1], observed_rps=observed_per_minute / 60, upper_rps=upper
        )
        assert above == [expected] and result.above_forecast == (expected,)


def test_given_a_forecast_that_does_not_cover_the_minute_then_no_above_band_event() -> None:
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    m = window_minutes()
    store.put_forecast(forecast("a", m[-1] + 60, {0.5: 0.1, 0.99: 0.2}))  # starts after the newest minute
    pub = RecordingPublisher()
    service(store, FakeMetrics({"a": {"requests": {m[-1]: 6000.0}}}), pub).collect(NOW)
    assert events(pub, "forescale.DemandAboveForecast") == []


# ---------------------------------------------------------------- ingest


def test_given_pushed_demand_for_an_unregistered_target_then_the_error_names_it_and_nothing_is_stored() -> None:
    store = InMemoryStateStore()
    store.put_target(lam("known"))
    svc = service(store, FakeMetrics())
    samples = [
        DemandSampleDetail(target="known", timestamp=1_700_000_040, requests=60),
        DemandSampleDetail(target="ghost", timestamp=1_700_000_040, requests=60),
    ]
    with pytest.raises(UnknownTargetError, match=r"unregistered target\(s\) \['ghost'\]"):
        svc.ingest(samples)
    assert store.samples == {}


def test_given_pushed_samples_then_they_are_stored_and_longer_periods_spread_over_their_minutes() -> None:
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    t0 = 1_700_000_040
    result = service(store, FakeMetrics()).ingest(
        [
            DemandSampleDetail(target="a", timestamp=t0, requests=120, duration_ms=80),
            DemandSampleDetail(target="a", timestamp=t0 + 60, period_s=180, requests=540),
        ]
    )
    assert store.load_history("a", t0, t0 + 240).rates == [2.0, 3.0, 3.0, 3.0]
    assert store.load_metric("a", "duration_ms", t0, t0 + 120) == [80.0, None]
    assert result.samples_stored == 4


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (DemandSampleDetail(target="a", timestamp=1_700_000_041, requests=1), "not the start of a minute"),
        (DemandSampleDetail(target="a", timestamp=1_700_000_040, period_s=90, requests=1), "whole number of minutes"),
    ],
)
def test_given_a_pushed_sample_off_the_minute_grid_then_it_is_refused(sample: DemandSampleDetail, message: str) -> None:
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    with pytest.raises(ValueError, match=message):
        service(store, FakeMetrics()).ingest([sample])


def test_given_pushed_demand_above_the_band_then_react_is_told() -> None:
    store = InMemoryStateStore()
    store.put_target(lam("a"))
    t0 = 1_700_000_040
    store.put_forecast(forecast("a", t0, {0.5: 1.0, 0.99: 2.0}))
    pub = RecordingPublisher()
    service(store, FakeMetrics(), pub).ingest([DemandSampleDetail(target="a", timestamp=t0, requests=300)])
    assert events(pub, "forescale.DemandAboveForecast") == [
        DemandAboveForecastDetail(target="a", timestamp=t0, observed_rps=5.0, upper_rps=2.0)
    ]


# ---------------------------------------------------------------- the CloudWatch adapter (Stubber)


def cloudwatch() -> Any:
    return boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def capture(client: Any) -> list[dict[str, Any]]:
    """Record every GetMetricData request's parameters."""
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.cloudwatch.GetMetricData", lambda params, **_: sent.append(params)
    )
    return sent


def answer(queries: Sequence[Mapping[str, Any]], minute: int, value: float, token: str | None = None) -> dict[str, Any]:
    resp: dict[str, Any] = {
        "MetricDataResults": [
            {
                "Id": q["Id"],
                "Timestamps": [datetime.fromtimestamp(minute, UTC)],
                "Values": [value],
                "StatusCode": "PartialData" if token else "Complete",
            }
            for q in queries
        ],
        "Messages": [],
    }
    if token:
        resp["NextToken"] = token
    return resp


def test_given_120_lambda_targets_then_queries_are_batched_500_per_call_with_valid_ids_and_alias_dimensions() -> None:
    client = cloudwatch()
    targets = [lam(f"fn{i}") for i in range(100)] + [lam(f"res{i}", qualifier=None) for i in range(20)]
    adapter = CloudWatchMetrics(client)
    planned = adapter.plan_queries(targets)
    assert len(planned) == 120 * 5 + 1  # five metrics per function, plus the account heartbeat
    sent = capture(client)
    start = 1_700_000_040
    with Stubber(client) as stub:
        for first in range(0, len(planned), MAX_QUERIES_PER_CALL):
            batch = [q.request() for q in planned[first : first + MAX_QUERIES_PER_CALL]]
            stub.add_response("get_metric_data", answer(batch, start, 1.0))
        window = adapter.read(targets, start, start + 300)
        stub.assert_no_pending_responses()
    assert window.calls == len(sent) == math.ceil(601 / MAX_QUERIES_PER_CALL) == 2
    assert [len(p["MetricDataQueries"]) for p in sent] == [500, 101]
    ids = [q["Id"] for p in sent for q in p["MetricDataQueries"]]
    assert len(set(ids)) == len(ids) and all(QUERY_ID.match(i) for i in ids)
    by_target: dict[tuple[str, str], list[dict[str, str]]] = {}
    for p in sent:
        for q in p["MetricDataQueries"]:
            metric = q["MetricStat"]["Metric"]
            dims = metric["Dimensions"]
            assert q["MetricStat"]["Period"] == 60
            key = (dims[0]["Value"] if dims else "", metric["MetricName"])
            by_target[key] = dims
    assert by_target[("fn7", "Invocations")] == [
        {"Name": "FunctionName", "Value": "fn7"},
        {"Name": "Resource", "Value": "fn7:live"},
    ]
    assert by_target[("res3", "Throttles")] == [{"Name": "FunctionName", "Value": "res3"}]
    assert by_target[("", "Invocations")] == []  # the heartbeat: account-wide
    assert window.targets["fn99"].series["concurrency"].points == {start: 1.0}
    assert window.heartbeats["lambda"].complete


def test_given_sagemaker_targets_then_latency_is_converted_from_microseconds_and_gpu_read_from_its_namespace() -> None:
    client = cloudwatch()
    adapter = CloudWatchMetrics(client)
    targets = [sm("ep")]
    planned = adapter.plan_queries(targets)
    stats = {q.spec.field: (q.spec.namespace, q.spec.metric_name, q.spec.stat) for q in planned}
    assert stats == {
        "requests": ("AWS/SageMaker", "Invocations", "Sum"),
        "latency_ms": ("AWS/SageMaker", "ModelLatency", "Average"),
        "gpu_utilization": ("/aws/sagemaker/Endpoints", "GPUUtilization", "Average"),
    }
    start = 1_700_000_040
    with Stubber(client) as stub:
        stub.add_response("get_metric_data", answer([q.request() for q in planned], start, 25_000.0))
        window = adapter.read(targets, start, start + 60)
    series = window.targets["ep"].series
    assert series["latency_ms"].points == {start: 25.0}
    assert series["requests"].points == {start: 25_000.0}
    assert window.heartbeats == {}  # no Lambda target, no heartbeat query


def test_given_a_next_token_then_pages_are_followed_and_merged_and_counted() -> None:
    client = cloudwatch()
    adapter = CloudWatchMetrics(client)
    targets = [lam("a")]
    batch = [q.request() for q in adapter.plan_queries(targets)]
    sent = capture(client)
    start = 1_700_000_040
    with Stubber(client) as stub:
        stub.add_response("get_metric_data", answer(batch, start, 1.0, token="page2"))
        stub.add_response("get_metric_data", answer(batch, start + 60, 2.0))
        window = adapter.read(targets, start, start + 120)
    assert window.calls == 2
    assert "NextToken" not in sent[0] and sent[1]["NextToken"] == "page2"
    s = window.targets["a"].series["requests"]
    assert s.points == {start: 1.0, start + 60: 2.0} and s.complete


def test_given_one_batch_fails_then_its_series_are_incomplete_and_the_other_batch_is_kept() -> None:
    client = cloudwatch()
    adapter = CloudWatchMetrics(client)
    targets = [lam(f"fn{i}") for i in range(101)]  # 506 queries: two batches
    planned = adapter.plan_queries(targets)
    start = 1_700_000_040
    with Stubber(client) as stub:
        stub.add_client_error("get_metric_data", service_error_code="Throttling", service_message="Rate exceeded")
        stub.add_response("get_metric_data", answer([q.request() for q in planned[500:]], start, 4.0))
        window = adapter.read(targets, start, start + 60)
    assert len(window.errors) == 1 and "Throttling: Rate exceeded" in window.errors[0]
    assert not window.targets["fn0"].series["requests"].complete
    assert window.targets["fn0"].series["requests"].points == {}
    # fn0..fn99 fill the failed first batch (queries 0..499); fn100 (500..504) and the heartbeat are in the second.
    assert window.targets["fn100"].series["requests"].complete
    assert window.targets["fn100"].series["requests"].points == {start: 4.0}
    assert window.heartbeats["lambda"].complete


def test_given_a_non_complete_status_then_the_series_is_incomplete() -> None:
    client = cloudwatch()
    adapter = CloudWatchMetrics(client)
    targets = [sm("ep")]
    batch = [q.request() for q in adapter.plan_queries(targets)]
    resp = answer(batch, 1_700_000_040, 1.0)
    resp["MetricDataResults"][0]["StatusCode"] = "InternalError"
    with Stubber(client) as stub:
        stub.add_response("get_metric_data", resp)
        window = adapter.read(targets, 1_700_000_040, 1_700_000_100)
    assert not window.targets["ep"].series["requests"].complete
    assert window.targets["ep"].series["latency_ms"].complete


@pytest.mark.parametrize(("start", "end"), [(1_700_000_041, 1_700_000_100), (1_700_000_040, 1_700_000_040)])
def test_given_a_window_off_the_minute_grid_then_read_refuses(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="whole minutes"):
        CloudWatchMetrics(cloudwatch()).read([lam("a")], start, end)


def test_given_a_metric_set_without_invocations_then_the_adapter_refuses() -> None:
    from forescale.adapters.cloudwatch import LAMBDA_METRICS

    with pytest.raises(ValueError, match="lambda_metrics must include the `requests`"):
        CloudWatchMetrics(cloudwatch(), lambda_metrics=LAMBDA_METRICS[1:])


def test_given_rotating_detail_then_every_target_gets_detail_once_per_cycle_and_1000_targets_fit_3_calls() -> None:
    from forescale.adapters.cloudwatch import MAX_QUERIES_PER_CALL

    cfgs = [
        TargetConfig(name=f"fn-{i}", kind="lambda-provisioned", function_name=f"fn-{i}", qualifier="live")  # type: ignore[arg-type]
        for i in range(1000)
    ]
    adapter = CloudWatchMetrics.rotating(None, detail_every=15)  # type: ignore[arg-type]
    seen: dict[str, int] = {}
    worst = 0
    for k in range(15):
        queries = adapter.plan_queries(cfgs, 60 * (1_000 + k))
        worst = max(worst, len(queries))
        assert sum(q.spec.field == "requests" for q in queries) == 1000  # demand: every target, every minute
        for q in queries:
            if q.target is not None and q.spec.field == "duration_ms":
                seen[q.target] = seen.get(q.target, 0) + 1
    assert seen == {c.name: 1 for c in cfgs}
    assert -(-worst // MAX_QUERIES_PER_CALL) <= 3, worst


class LateMetrics(FakeMetrics):
    """A steady Lambda whose Invocations datapoints reach CloudWatch `late_s` after their minute ends,
    while the account heartbeat is on time: what the issue-15 audit saw (3+ minutes late)."""

    def __init__(self, name: str, requests_per_minute: float, late_s: int) -> None:
        super().__init__()
        self.name, self.per_minute, self.late_s, self.now = name, requests_per_minute, late_s, 0

    def read(self, targets: Sequence[TargetConfig], start: int, end: int) -> MetricsWindow:
        arrived = [t for t in range(start, end, 60) if t + 60 + self.late_s <= self.now]
        self.points = {self.name: {"requests": dict.fromkeys(arrived, self.per_minute)}}
        self.heartbeat = {t: 1.0 for t in range(start, end, 60) if t + 60 <= self.now}
        return super().read(targets, start, end)


@pytest.mark.parametrize("late_s", [0, 200, 240])
def test_given_datapoints_arriving_late_under_steady_demand_then_plan_never_scales_in(late_s: int) -> None:
    # Issue 15 item 4, as audited: production defaults (METRIC_DELAY_S=120, 5 re-read minutes), a
    # steady 90 req/s whose datapoints come 3+ minutes late. Each newest minute used to be stored as
    # zero (the heartbeat said "published") and plan read it once: capacity went 32 -> 1.
    from forescale.runtime.models import Mode
    from forescale.runtime.plan import PlanService

    store, bus = InMemoryStateStore(), RecordingPublisher()
    cfg = lam("api").model_copy(update={"mode": Mode.DRY_RUN, "duration_s": 0.3, "min_capacity": 1})
    store.put_target(cfg)
    start = NOW - NOW % 3600
    # An hour of on-time history at 90 req/s: the planner sizes for it.
    store.put_samples(
        [DemandSampleDetail(target="api", timestamp=start - 3600 + 60 * i, requests=90 * 60) for i in range(60)],
        ttl_s=86_400,
    )
    plans = PlanService(store, bus, warmup_s=3600)
    metrics = LateMetrics("api", 90 * 60, 0)
    collect = CollectService(store, metrics, RecordingPublisher(), sample_ttl_s=86_400, metric_delay_s=120)
    capacities: list[int] = []
    for k in range(60):
        now = start + 60 * k + 17
        metrics.now = now
        metrics.late_s = 0 if k < 5 else late_s  # on time for 5 minutes, then late
        result = collect.collect(now)
        plans.plan(["api"], result.period_start + 60)
        capacities.append(store.list_decisions("api", limit=1)[0].capacity)
    # Every minute is corrected in the end: the stored history is the true 90 req/s.
    assert store.load_history("api", start, start + 50 * 60).rates == [90.0] * 50
    held = capacities[4]  # sized from on-time data
    assert held >= 30
    assert min(capacities) == held, f"capacity fell on late datapoints: {capacities}"


def test_given_polling_every_5_minutes_then_each_target_is_read_once_in_5_runs_and_every_minute_is_stored() -> None:
    # GetMetricData bills per metric requested: a target read every 5 minutes, 5 minutes at a time,
    # costs a fifth. Each run reads an even share of the fleet, and plan is told only of those.
    store = InMemoryStateStore()
    names = [f"fn{i:02d}" for i in range(40)]
    for n in names:
        store.put_target(lam(n))
    base = NOW - NOW % 3600
    minutes = range(base - 3600, base + 3600, 60)
    fake = FakeMetrics({n: {"requests": dict.fromkeys(minutes, 60.0)} for n in names}, heartbeat={})
    pub = RecordingPublisher()
    svc = CollectService(store, fake, pub, sample_ttl_s=86_400, metric_delay_s=DELAY, poll_every_minutes=5)
    for k in range(15):
        svc.collect(base + 60 * k + 17)
    reads = Counter(n for names_read, _, _ in fake.reads for n in names_read)
    assert set(reads.values()) == {3}  # 15 runs, every target read 3 times
    assert min(len(r[0]) for r in fake.reads) >= 2  # spread over the runs, not all in one
    assert {end - start for _, start, end in fake.reads} == {(5 + 5 - 1) * 60}
    first_end = (base + 17 - DELAY) // 60 * 60
    for n in names:  # from its first poll on, every minute of every target is stored, none twice-missed
        rates = store.load_history(n, first_end, first_end + 10 * 60).rates
        assert rates == [1.0] * 10, n
    told = [set(d.targets) for kind, d in pub.published if kind == "forescale.SamplesCollected"]  # type: ignore[attr-defined]
    assert all(t == set(r[0]) for t, r in zip(told, fake.reads, strict=True))


def test_given_polling_then_every_target_still_gets_its_detail_metrics_on_the_rotation() -> None:
    cw = CloudWatchMetrics.rotating(cloudwatch(), 60, poll_every=5)
    targets = [lam(f"fn{i:03d}") for i in range(200)]
    detail_reads: Counter[str] = Counter()
    for k in range(12):  # an hour of polls per target (each target's window start moves 5 minutes a poll)
        for t in targets:
            start = NOW - NOW % 3600 + 300 * k + 60 * (zlib.crc32(t.name.encode()) % 5)
            detail_reads[t.name] += int(cw.reads_detail(t.name, start))
    assert set(detail_reads.values()) == {1}  # once an hour each, whatever the poll phase
