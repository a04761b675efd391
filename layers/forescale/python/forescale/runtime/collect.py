"""The collect service: store each registered target's per-minute demand, then tell plan and react.

Window. `collect(now)` reads the whole minutes [end − (reread_minutes + poll_every_minutes − 1)·60, end),
where `end` is `now − METRIC_DELAY_S` rounded down to the minute. With `poll_every_minutes = N > 1`
a run reads only the targets whose turn it is (every N-th minute, at a phase set by the name's
crc32), and reads the N minutes since their previous poll as well: GetMetricData is billed per
metric requested, not per datapoint, so this divides collection's price by N, and each target's
demand reaches plan up to N − 1 minutes later (docs/running-cost.md). CloudWatch publishes a minute late (a Lambda
invocation's metrics arrive when it finishes, stamped with its start), so every run re-reads the
recent minutes, and a later run overwrites a minute with what CloudWatch has by then. A stored minute
is a pure function of what CloudWatch returns, so a repeated run writes the same values.

Missing data is not zero demand. For each target and minute of the window:

1. Invocations has a datapoint → stored: `requests` = its Sum, with the other metrics that have
   datapoints (duration, concurrency, spillover, throttles; latency, GPU).
2. Otherwise, the Invocations query did not complete (its GetMetricData call failed, or CloudWatch
   answered with a status other than Complete) → missing.
3. Otherwise the minute is quiet (stored with `requests = 0`) if CloudWatch had published it, since
   CloudWatch omits a Lambda function's minutes without invocations (and SageMaker publishes
   Invocations only with traffic). A minute counts as published when any series of the same family
   (Lambda, or SageMaker) has a datapoint at that minute or later in the window: one of the target's
   other metrics (a SageMaker variant's GPUUtilization keeps coming while its instances run), another
   target's metric, or the Lambda heartbeat (the account-wide Invocations series, never empty in a
   published minute because this function itself runs every minute).
   Published is not final: a target's own Invocations datapoints can arrive minutes after the
   heartbeat's (a Lambda invocation is published when it finishes, stamped with its start). So an
   empty published minute is stored as quiet only when it is *final* — read for the last time: the
   oldest minute of the window (the oldest N when polling every N minutes) — or when the minute
   before it was stored as quiet (the target was idle already: an idle function's new minutes are
   zero at once). An empty minute after traffic is provisional: not stored, reported missing (plan
   holds, never scales in on it), and read again by the next runs; it becomes zero only if it is
   still empty on its last read.
4. Otherwise → missing: nothing is stored, and the target is reported.

Consequences worth knowing: an idle variant on CPU instances, with no other SageMaker traffic in the
account, stays missing (plan holds its capacity rather than scaling in on no data); a target that
goes from traffic to none is seen by plan as missing for `reread_minutes − 1` minutes (held), then
as zero; datapoints later than the whole window (METRIC_DELAY_S + reread_minutes minutes) are
stored as zero on the last read and never corrected, so set the two settings above the lateness
you see. A minute whose datapoints arrived only in part is stored with the part (a low value, not
zero) and corrected while it is inside the re-read window.

Events. `forescale.SamplesCollected` names every target read by the run, in chunks of at most 1000 names
and `DETAIL_BUDGET_BYTES` of JSON (so that ten chunks fit one PutEvents request's 256 KB);
`period_start` is the newest minute read and `missing` lists the chunk's targets that have no sample
for it. A target whose newest stored rate exceeds its forecast's upper band (quantile 0.99, else the
highest stored) at that minute also gets a `forescale.DemandAboveForecast` event, for react.

Writes. A warm service remembers what it wrote for the minutes still inside the window and skips
rewriting a minute whose values did not change since its previous run (most of the re-read minutes),
so a steady-state run writes about one minute per target instead of `reread_minutes`. A cold start
writes the whole window again, which is harmless: the writes are idempotent. The writes are batched
(`StateStore.merge_samples`: one BatchGetItem per 100 target-hours, one BatchWriteItem per 25), so
10,000 targets take about 500 calls a minute instead of 10,000 UpdateItems.

Listing. A warm service lists the registered targets at most every `list_every_s` (the stack: 15
minutes, as the forecaster does): a target registered since is read from the next listing on (it needs a
day of history before plan decides for it anyway), and one removed since is read until then.

Pushed demand. `ingest` stores `forescale.DemandSample` events sent by applications. A target should
take its demand from one source: collect may overwrite a minute for which CloudWatch has a datapoint
or which it finds quiet.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from forescale.adapters.cloudwatch import Family, MetricsReader, MetricsWindow, TargetSeries
from forescale.adapters.events import EventPublisher
from forescale.adapters.state import ForecastCache, StateStore
from forescale.domain.forecast import upper_band
from forescale.runtime.models import (
    DemandAboveForecastDetail,
    DemandSampleDetail,
    SamplesCollectedDetail,
    TargetConfig,
)

MINUTE_S = 60
DAY_S = 86_400
REREAD_MINUTES = 5
MAX_TARGETS_PER_EVENT = 1000  # SamplesCollectedDetail.targets max_length
DETAIL_BUDGET_BYTES = 24_000  # 10 entries per PutEvents, 256 KB in all
UPPER_QUANTILE = 0.99
# DemandSampleDetail fields other than `requests` that collect fills from CloudWatch.
DETAIL_FIELDS = ("duration_ms", "concurrency", "spillover", "throttles", "latency_ms", "gpu_utilization")


class UnknownTargetError(ValueError):
    """Demand was pushed for a target that is not registered."""


@dataclass(frozen=True, slots=True)
class CollectResult:
    """What one `collect` run did. Times are epoch seconds; `period_start` is the newest minute read."""

    window_start: int
    window_end: int
    period_start: int
    targets: int
    samples_stored: int  # target-minutes of the window that have a stored sample after this run
    samples_written: int  # of those, the ones written by this run (new or changed since the last run)
    quiet_minutes: int  # stored with requests = 0 (published, no invocations)
    missing_minutes: int  # target-minutes not stored: no data and no evidence of a quiet minute
    missing_targets: tuple[str, ...]  # targets without a sample for `period_start`
    above_forecast: tuple[DemandAboveForecastDetail, ...]
    events_published: int
    readings: tuple[TargetReading, ...]  # the watched targets' newest demand and forecast (dashboard metrics)
    calls: int  # GetMetricData requests
    queries: int
    errors: tuple[str, ...]

    def summary(self) -> dict[str, int | str | list[str]]:
        """A JSON-ready digest (the handler's return value and idempotency record)."""
        return {
            "period_start": self.period_start,
            "targets": self.targets,
            "samples_stored": self.samples_stored,
            "samples_written": self.samples_written,
            "quiet_minutes": self.quiet_minutes,
            "missing_minutes": self.missing_minutes,
            "missing_targets": list(self.missing_targets),
            "above_forecast": [d.target for d in self.above_forecast],
            "get_metric_data_calls": self.calls,
            "queries": self.queries,
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class TargetReading:
    """A watched target's newest stored minute: demand and the forecast's median and upper band (req/s)."""

    target: str
    timestamp: int
    demand_rps: float
    forecast_rps: float | None
    forecast_upper_rps: float | None


@dataclass(frozen=True, slots=True)
class IngestResult:
    samples_stored: int
    targets: tuple[str, ...]
    above_forecast: tuple[DemandAboveForecastDetail, ...]

    def summary(self) -> dict[str, int | list[str]]:
        return {
            "samples_stored": self.samples_stored,
            "targets": list(self.targets),
            "above_forecast": [d.target for d in self.above_forecast],
        }


def published_until(window: MetricsWindow) -> dict[Family, int]:
    """Per family, the newest minute with any datapoint at all: CloudWatch has published up to it."""
    newest: dict[Family, int] = {}
    series_by_family: list[tuple[Family, Iterable[int]]] = [
        (ts.family, s.points) for ts in window.targets.values() for s in ts.series.values()
    ]
    series_by_family += [(family, s.points) for family, s in window.heartbeats.items()]
    for family, minutes in series_by_family:
        latest = max(minutes, default=None)
        if latest is not None and latest > newest.get(family, -1):
            newest[family] = latest
    return newest


def samples_for(
    cfg: TargetConfig,
    series: TargetSeries | None,
    window: MetricsWindow,
    published: dict[Family, int],
    final_until: int | None = None,
) -> tuple[list[DemandSampleDetail], list[int], int]:
    """Apply the module's rule to one target: (samples to store, missing minutes, quiet minutes).

    Minutes before `final_until` (epoch s; default: the window's oldest minute only) are read for the
    last time by this run."""
    final_until = window.start + MINUTE_S if final_until is None else final_until
    samples: list[DemandSampleDetail] = []
    missing: list[int] = []
    quiet = 0
    previous_quiet = False  # the minute before was stored as zero (final, or quiet after a final zero)
    for minute in range(window.start, window.end, MINUTE_S):
        if series is None:
            missing.append(minute)
            continue
        values = series.values_at(minute)
        invocations = series.series.get("requests")
        if "requests" in values:
            requests = values["requests"]
        elif invocations is None or not invocations.complete:
            missing.append(minute)
            continue
        elif published.get(series.family, -1) >= minute and (minute < final_until or previous_quiet):
            requests = 0.0
            quiet += 1
        else:
            # Not published yet, or published but not final (the Invocations datapoints may still
            # arrive late): missing, never zero; a later run reads it again.
            missing.append(minute)
            previous_quiet = False
            continue
        previous_quiet = requests == 0.0
        details = {f: values[f] for f in DETAIL_FIELDS if f in values and values[f] >= 0}
        samples.append(
            DemandSampleDetail(
                target=cfg.name,
                timestamp=minute,
                period_s=MINUTE_S,
                requests=max(requests, 0.0),
                **details,
            )
        )
    return samples, missing, quiet


def byte_chunks(names: Sequence[str], cost: Callable[[str], int], budget_bytes: int, max_count: int) -> list[list[str]]:
    """`names` in order, split so that each chunk holds at most `max_count` names whose `cost` (bytes of
    JSON each adds to an event detail) sums to at most `budget_bytes` (a name over budget goes alone)."""
    out: list[list[str]] = []
    chunk: list[str] = []
    size = 0
    for name in names:
        c = cost(name)
        if chunk and (len(chunk) >= max_count or size + c > budget_bytes):
            out.append(chunk)
            chunk, size = [], 0
        chunk.append(name)
        size += c
    if chunk:
        out.append(chunk)
    return out


def chunk_collected(
    period_start: int, names: Sequence[str], missing: set[str], budget_bytes: int = DETAIL_BUDGET_BYTES
) -> list[SamplesCollectedDetail]:
    """SamplesCollected details covering `names` in order, each ≤ 1000 names and ≤ `budget_bytes` of JSON."""
    overhead = 80  # braces, keys and the period_start number

    def cost(name: str) -> int:
        # A name costs its quotes and comma in `targets`, and again in `missing` if it is there.
        return (len(name) + 3) * (2 if name in missing else 1)

    return [
        _collected(period_start, chunk, missing)
        for chunk in byte_chunks(names, cost, budget_bytes - overhead, MAX_TARGETS_PER_EVENT)
    ]


def _collected(period_start: int, chunk: list[str], missing: set[str]) -> SamplesCollectedDetail:
    return SamplesCollectedDetail(
        period_start=period_start,
        targets=tuple(chunk),
        missing=tuple(n for n in chunk if n in missing),
    )


class CollectService:
    """Reads demand for every registered target and stores it; see the module docstring for the rules."""

    def __init__(
        self,
        store: StateStore,
        metrics: MetricsReader,
        publisher: EventPublisher,
        sample_ttl_s: int = 15 * DAY_S,
        metric_delay_s: int = 120,
        reread_minutes: int = REREAD_MINUTES,
        poll_every_minutes: int = 1,
        watch: Iterable[str] = (),
        list_every_s: int = 0,
    ) -> None:
        if reread_minutes < 1 or poll_every_minutes < 1:
            raise ValueError(
                f"reread_minutes and poll_every_minutes must be >= 1, got {reread_minutes} and {poll_every_minutes}"
            )
        if metric_delay_s < 0:
            raise ValueError(f"metric_delay_s must be >= 0, got {metric_delay_s}")
        self.store = store
        self.metrics = metrics
        self.publisher = publisher
        self.sample_ttl_s = sample_ttl_s
        self.metric_delay_s = metric_delay_s
        self.reread_minutes = reread_minutes
        self.poll_every_minutes = poll_every_minutes
        self.watch = frozenset(watch)  # targets whose per-target dashboard metrics are emitted (opt-in)
        self._forecasts = ForecastCache(store)
        self._written: dict[tuple[str, int], DemandSampleDetail] = {}  # (target, minute) → last sample written
        self.list_every_s = list_every_s
        self._listed: tuple[int, list[TargetConfig]] | None = None

    def window(self, now: int) -> tuple[int, int]:
        """The minutes [start, end) a run at `now` (epoch s) reads: the re-read minutes, and the minutes
        since the target's previous poll (GetMetricData bills per metric, not per datapoint)."""
        end = now - self.metric_delay_s
        end -= end % MINUTE_S
        return end - (self.reread_minutes + self.poll_every_minutes - 1) * MINUTE_S, end

    def polls(self, name: str, end: int) -> bool:
        """Whether the run whose window ends at `end` reads `name`: every `poll_every_minutes`-th run,
        at a stable phase per name, so each run reads an even share of the fleet."""
        n = self.poll_every_minutes
        return n == 1 or (end // MINUTE_S + zlib.crc32(name.encode())) % n == 0

    def collect(self, now: int) -> CollectResult:
        """Read, store and announce the demand of every registered target (see the module docstring)."""
        start, end = self.window(now)
        period_start = end - MINUTE_S
        final_until = start + self.poll_every_minutes * MINUTE_S  # the next poll's window starts there
        targets = [t for t in self._targets(now) if self.polls(t.name, end)]
        if not targets:
            return CollectResult(start, end, period_start, 0, 0, 0, 0, 0, (), (), 0, (), 0, 0, ())
        window = self.metrics.read(targets, start, end)
        published = published_until(window)

        stored: list[DemandSampleDetail] = []
        newest: dict[str, DemandSampleDetail] = {}
        missing_targets: set[str] = set()
        missing_minutes = quiet_minutes = 0
        for cfg in targets:
            samples, missing, quiet = samples_for(cfg, window.targets.get(cfg.name), window, published, final_until)
            stored += samples
            missing_minutes += len(missing)
            quiet_minutes += quiet
            if period_start in missing:
                missing_targets.add(cfg.name)
            if samples:
                newest[cfg.name] = samples[-1]
        changed = [s for s in stored if self._written.get((s.target, s.timestamp)) != s]
        if changed:
            self.store.merge_samples(changed, ttl_s=self.sample_ttl_s)
        self._written = {k: v for k, v in self._written.items() if k[1] >= start}
        self._written.update(((s.target, s.timestamp), s) for s in changed)

        collected = chunk_collected(period_start, [t.name for t in targets], missing_targets)
        self.publisher.publish("forescale.SamplesCollected", collected)
        above = self._above_forecast(newest.values())
        if above:
            self.publisher.publish("forescale.DemandAboveForecast", above)
        return CollectResult(
            window_start=start,
            window_end=end,
            period_start=period_start,
            targets=len(targets),
            samples_stored=len(stored),
            samples_written=len(changed),
            quiet_minutes=quiet_minutes,
            missing_minutes=missing_minutes,
            missing_targets=tuple(sorted(missing_targets)),
            above_forecast=tuple(above),
            events_published=len(collected) + len(above),
            readings=self._readings(newest),
            calls=window.calls,
            queries=window.queries,
            errors=window.errors,
        )

    def _targets(self, now: int) -> list[TargetConfig]:
        """The registered targets, listed again only after `list_every_s` (0: every run): listing reads
        and validates every stored config, most of a large fleet's collect run when done every minute."""
        if self._listed is None or not 0 <= now - self._listed[0] < self.list_every_s:
            self._listed = (now, self.store.list_targets())
        return self._listed[1]

    def forget_listing(self) -> None:
        """List the targets again at the next run (tag discovery has just registered some)."""
        self._listed = None

    def ingest(self, samples: Sequence[DemandSampleDetail]) -> IngestResult:
        """Store demand pushed by applications (`forescale.DemandSample`).

        Every target must be registered (UnknownTargetError names the ones that are not). `timestamp`
        must start a minute and `period_s` be whole minutes; a longer period is spread evenly over its
        minutes, so each stored minute keeps the same rate (requests/s).
        """
        names = sorted({s.target for s in samples})
        unknown = [n for n in names if self.store.get_target(n) is None]
        if unknown:
            raise UnknownTargetError(
                f"forescale.DemandSample names unregistered target(s) {unknown}; register them first "
                "(forescale targets add)"
            )
        minutes: list[DemandSampleDetail] = []
        for s in samples:
            if s.timestamp % MINUTE_S:
                raise ValueError(
                    f"forescale.DemandSample for {s.target}: timestamp {s.timestamp} is not the start of a minute"
                )
            if s.period_s % MINUTE_S:
                raise ValueError(
                    f"forescale.DemandSample for {s.target}: period_s {s.period_s} is not a whole number of minutes"
                )
            n = s.period_s // MINUTE_S
            per_minute = s.model_copy(update={"period_s": MINUTE_S, "requests": s.requests / n})
            minutes += [per_minute.model_copy(update={"timestamp": s.timestamp + i * MINUTE_S}) for i in range(n)]
        if minutes:
            self.store.put_samples(minutes, ttl_s=self.sample_ttl_s)
            for m in minutes:
                self._written.pop((m.target, m.timestamp), None)  # collect must not assume its value is stored
        newest: dict[str, DemandSampleDetail] = {}
        for m in minutes:
            if m.target not in newest or m.timestamp > newest[m.target].timestamp:
                newest[m.target] = m
        above = self._above_forecast(newest.values())
        if above:
            self.publisher.publish("forescale.DemandAboveForecast", above)
        return IngestResult(samples_stored=len(minutes), targets=tuple(names), above_forecast=tuple(above))

    def _readings(self, newest: dict[str, DemandSampleDetail]) -> tuple[TargetReading, ...]:
        """Demand and forecast at the newest minute of each watched target that has one."""
        watched = sorted(n for n in self.watch if n in newest)
        metas = self.store.forecast_metas(watched) if watched else {}
        out: list[TargetReading] = []
        for name in watched:
            sample = newest[name]
            forecast = self._forecasts.get_issued(name, metas[name][0])
            median = forecast.rate_at(sample.timestamp) if forecast is not None else None
            upper = upper_band(forecast, sample.timestamp) if forecast is not None else None
            out.append(TargetReading(name, sample.timestamp, sample.rate_rps, median, upper))
        return tuple(out)

    def _above_forecast(self, newest: Iterable[DemandSampleDetail]) -> list[DemandAboveForecastDetail]:
        out: list[DemandAboveForecastDetail] = []
        busy = [s for s in newest if s.rate_rps > 0]  # nothing can exceed a band from zero: spare the read
        metas = self.store.forecast_metas([s.target for s in busy]) if busy else {}
        for sample in busy:
            forecast = self._forecasts.get_issued(sample.target, metas[sample.target][0])
            if forecast is None:
                continue
            upper = upper_band(forecast, sample.timestamp)
            if upper is not None and sample.rate_rps > upper:
                out.append(
                    DemandAboveForecastDetail(
                        target=sample.target,
                        timestamp=sample.timestamp,
                        observed_rps=sample.rate_rps,
                        upper_rps=upper,
                    )
                )
        return out
