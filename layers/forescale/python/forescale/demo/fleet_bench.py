"""`forescale bench fleet --targets N`: the deployed functions for N targets on moto, metered and priced.

What runs (in-process moto, `moto.mock_aws`: moto's backends answer botocore directly, no HTTP):

1. The stack's resources (`forescale.local.environment.provision`: the table, bus, DLQs, event routes)
   and, as a user's account would hold them, one Lambda function with a `live` alias per Lambda target
   and one SageMaker endpoint per SageMaker target (`forescale.demo.runner.provision_resources`).
2. N targets from the built-in workload generator (`forescale.replay.workload`), per target a
   variant seed, a rate scale (0.3-3x, log-uniform) and a phase shift (0-12 h): 45 % Lambda
   provisioned concurrency, 35 % Lambda reserved concurrency, 20 % SageMaker instance count. They are
   registered active with the demo's registration (`forescale.demo.runner.target_config`) and
   `--history-days` of samples are loaded as collect would have stored them.
3. The functions run as deployed: the real handlers (`functions/<name>/handler.py`), whose services
   build their boto3 clients the way they do in Lambda (`lambda_support.client`), with the function
   environment the stack sets from `infra/forescale_infra/config.py`'s defaults (REREAD_MINUTES,
   METRIC_DELAY_S, HISTORY_DAYS, ...), on the stack's schedules (collect and act's sweep every minute,
   forecast every 5 minutes); events are delivered by the local router (`forescale.local.router`).
4. `--warmup-minutes` first (not metered: the first plan warms every planner from history, the first
   forecast refits every target, the first changes bring every target from its initial capacity),
   then `--minutes` metered minutes. The cost of the warm-up's refit cycle is reported on its own
   and amortised as one refit per target per day (the forecaster's `refit_every_s`).

Measured: calls, units, events, CPU and Python memory per invocation, log bytes. Derived (said so in
the report): durations (CPU scaled by the vCPU share the memory buys, plus an assumed latency per AWS
call, plus act's simulated rate-limiter waits), storage at steady state, X-Ray traces, every figure
at 10,000 targets (per-target figures times 10,000; per-invocation work scaled by the targets an
invocation would carry).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import random
import re
import subprocess  # nosec B404  # runs only our own interpreter, to measure a cold import
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from forescale.demo import prices
from forescale.demo.fleet_meter import HARNESS, InvocationRecord, Meter, StageTotals, item_size
from forescale.domain.targets import TargetKind
from forescale.replay.trace import Trace, TraceTarget
from forescale.runtime.models import DemandSampleDetail, TargetConfig

REPO = Path(__file__).resolve().parents[5]
INFRA_DIR = REPO / "infra"
TABLE = "forescale-fleet"
REGION = "us-east-1"
STAGES = ("collect", "forecast", "plan", "act", "react")
DERIVED_TARGETS = 10_000
LAMBDA_VCPU_MB = 1769  # "At 1,769 MB, a function has the equivalent of one vCPU" (Lambda developer guide)
ASSUMED_CALL_LATENCY_S = 0.010  # per AWS call, in-Region: an assumption, not measured here
PUT_EVENTS_LIMIT_BYTES = 256 * 1024
ITEM_LIMIT_BYTES = 400 * 1024
LAMBDA_CONTROL_PLANE_PER_S = 15.0
DAY_MINUTES = 1440
ARCHETYPES_LAMBDA = ("api-steady", "batch-spiky", "sparse-hook")
GPU_TYPE = "ml.g5.xlarge"


@dataclass
class FleetOptions:
    targets: int = 100
    minutes: int = 30
    history_days: float = 1.1
    warmup_minutes: int = 8
    seed: int = 7
    out: Path | None = None
    memory_every: int = 2  # trace memory every n-th metered minute (tracing slows the CPU it would measure)
    baseline: bool = True  # measure each function's cold-import memory in a subprocess
    progress: bool = True


# ---------------------------------------------------------------- the infra config (what the stack deploys)


@dataclass(frozen=True)
class Deployed:
    """What the CDK stack configures, read from infra/forescale_infra/config.py (no synth)."""

    memory_mb: dict[str, int]
    timeout_s: dict[str, int]
    schedule_minutes: dict[str, int]
    env: dict[str, str]
    architecture: str
    shard_count: int
    shard_size: int
    act_concurrency: int = 1  # act processes at once (reserved concurrency = its queue's maximum concurrency)
    act_batch_size: int = 1  # records per act invocation from its queue


def _infra_constant(module: str, name: str) -> int:
    """An integer constant of an infra module, read from its source (importing it starts the CDK's jsii)."""
    m = re.search(rf"^{name} = (\d+)", (INFRA_DIR / "forescale_infra" / module).read_text(), re.M)
    if not m:
        raise ValueError(f"infra/forescale_infra/{module} has no integer constant {name}")
    return int(m.group(1))


def _schedule_minutes(expression: str) -> int:
    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if not m:
        raise ValueError(f"bench fleet runs rate() schedules only, got {expression!r}")
    unit = {"minute": 1, "hour": 60, "day": 1440}[m.group(2).rstrip("s")]
    return int(m.group(1)) * unit


def deployed_config(targets: int) -> Deployed:
    """The stack's function sizes, schedules and environment for a fleet of `targets` (cdk.json's context)."""
    if str(INFRA_DIR) not in sys.path:
        sys.path.insert(0, str(INFRA_DIR))
    config_module: Any = importlib.import_module("forescale_infra.config")
    context = json.loads((REPO / "cdk.json").read_text()).get("context", {})
    config = config_module.InfraConfig.load(context, REPO)
    sized = config.model_copy(update={"tag_discovery": True, "expected_targets": targets})
    # The architecture is a constant of functions.py; importing that module starts the CDK's jsii runtime.
    arch = re.search(
        r"^ARCHITECTURE = lambda_\.Architecture\.(\w+)", (INFRA_DIR / "forescale_infra/functions.py").read_text(), re.M
    )
    act_concurrency = _infra_constant("functions.py", "ACT_CONCURRENCY")
    env = {
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "SAMPLE_TTL_DAYS": str(config.sample_ttl_days),
        "DETAIL_EVERY_MINUTES": str(config.collect_detail_every_minutes),
        "POLL_EVERY_MINUTES": str(config.collect_poll_every_minutes),
        # What infra/forescale_infra/functions.py sets for the forecaster (constants there).
        "REFIT_SPREAD_S": "86400",
        "MAX_REFITS_PER_RUN": "2000",
        "LIST_TARGETS_EVERY_S": "900",
        "REREAD_MINUTES": str(config.collect_reread_minutes),
        "METRIC_DELAY_S": str(config.metric_delay_s),
        "TAG_DISCOVERY": "false",  # the bench registers its targets itself
        "DEFAULT_MODE": config.default_mode,
        "HISTORY_DAYS": str(config.forecast_history_days),
        "HORIZON_S": str(config.forecast_horizon_s),
        "SHARD_COUNT": str(sized.forecast_shard_count),
        "HISTORY_WARMUP_S": "86400",
        "LAMBDA_CALLS_PER_SECOND": repr(config.act_lambda_calls_per_second / act_concurrency),
        "LEASE_S": "120",
        "ROLLBACK_ALARM_NAMES": ",".join(config.rollback_alarm_names),
        "ALARM_PREFIX": config.alarm_prefix,
    }
    schedules = config.schedules
    return Deployed(
        memory_mb={k: v.memory_mb for k, v in config.functions.items()},
        timeout_s={k: v.timeout_s for k, v in config.functions.items()},
        schedule_minutes={
            "collect": _schedule_minutes(schedules.collect),
            "forecast": _schedule_minutes(schedules.forecast),
            "act": _schedule_minutes(schedules.act_sweep),
        },
        env=env,
        architecture=arch.group(1) if arch else "ARM_64",
        shard_count=sized.forecast_shard_count,
        shard_size=config.forecast_shard_size,
        act_concurrency=act_concurrency,
        act_batch_size=_infra_constant("events.py", "ACT_BATCH_SIZE"),
    )


# ---------------------------------------------------------------- the fleet


def fleet_trace(targets: int, days: float, seed: int) -> tuple[Trace, dict[str, TargetKind]]:
    """N varied targets built from the built-in workload's archetypes, and the kind each is registered as."""
    from forescale.replay.workload import GPU_CATALOG, generate

    shift_max = 720
    variants = max(1, min(12, targets // 8 or 1))
    extra_days = shift_max / DAY_MINUTES
    cache: dict[tuple[str, int], TraceTarget] = {}
    base_start = 0
    steps = math.ceil(days * DAY_MINUTES)
    series: dict[str, TraceTarget] = {}
    kinds: dict[str, TargetKind] = {}
    rng = random.Random(f"forescale-fleet/{seed}")  # nosec B311  # a seeded synthetic fleet, not crypto
    for i in range(targets):
        slot = i % 20
        if slot < 9:
            kind, archetype = TargetKind.LAMBDA_PROVISIONED, rng.choice(ARCHETYPES_LAMBDA)
        elif slot < 16:
            kind, archetype = TargetKind.LAMBDA_RESERVED, rng.choice(ARCHETYPES_LAMBDA)
        else:
            kind, archetype = TargetKind.SAGEMAKER_INSTANCE_COUNT, "gpu-endpoint"
        variant = rng.randrange(variants)
        key = (archetype, variant)
        if key not in cache:
            trace = generate(days=days + extra_days, step_s=60, seed=seed * 1000 + variant, targets=(archetype,))
            cache[key], base_start = trace.targets[archetype], trace.start
        base = cache[key]
        scale = math.exp(rng.uniform(math.log(0.3), math.log(3.0)))
        shift = rng.randrange(shift_max)
        requests = tuple(r * scale for r in base.requests[shift : shift + steps])
        params = dict(base.params)
        if kind is TargetKind.SAGEMAKER_INSTANCE_COUNT:
            params["instance_types"] = {GPU_TYPE: dict(GPU_CATALOG[GPU_TYPE])}  # one type: an instance-count target
        name = f"t{i:05d}-{archetype}"
        series[name] = TraceTarget(name, requests, params)
        kinds[name] = kind
    return Trace(60, base_start, steps, series, (), {"source": f"forescale bench fleet, seed {seed}"}), kinds


def fleet_configs(trace: Trace, kinds: dict[str, TargetKind]) -> dict[str, TargetConfig]:
    from forescale.demo.runner import target_config

    out: dict[str, TargetConfig] = {}
    for name in sorted(trace.targets):
        cfg = target_config(name, trace)
        if kinds[name] is TargetKind.LAMBDA_RESERVED:
            cfg = TargetConfig.model_validate(
                cfg.model_dump() | {"kind": TargetKind.LAMBDA_RESERVED, "qualifier": None}
            )
        out[name] = cfg
    return out


def put_minute_metrics(cw: Any, trace: Trace, i: int, configs: dict[str, TargetConfig]) -> None:
    """Step i's Invocations as AWS publishes them, with the dimension set collect queries for each kind, and
    the account-wide Lambda series (collect's heartbeat)."""
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(trace.time(i), UTC)
    data: dict[str, list[dict[str, Any]]] = {"AWS/Lambda": [], "AWS/SageMaker": []}
    account = 0.0
    for name, cfg in configs.items():
        requests = trace.targets[name].requests[i]
        if cfg.kind.is_lambda:
            account += requests
            if requests <= 0:
                continue  # Lambda publishes nothing for a minute without invocations
            dims = [{"Name": "FunctionName", "Value": name}]
            if cfg.qualifier:
                dims.append({"Name": "Resource", "Value": f"{name}:{cfg.qualifier}"})
            data["AWS/Lambda"].append(
                {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": at, "Value": requests}
            )
        else:
            dims = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}]
            data["AWS/SageMaker"].append(
                {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": at, "Value": requests}
            )
    data["AWS/Lambda"].append({"MetricName": "Invocations", "Dimensions": [], "Timestamp": at, "Value": account + 1})
    for namespace, points in data.items():
        for k in range(0, len(points), 1000):
            cw.put_metric_data(Namespace=namespace, MetricData=points[k : k + 1000])


@contextlib.contextmanager
def indexed_get_metric_data() -> Iterator[None]:
    """moto's GetMetricData scans every stored datapoint for every query (quadratic at a thousand targets):
    index them by metric once per call and hand each query only its own. Same answers, moto's own code."""
    from moto.cloudwatch.models import CloudWatchBackend

    original = CloudWatchBackend.get_metric_data

    def get_metric_data(
        self: Any, queries: list[dict[str, Any]], start_time: Any, end_time: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if any("MetricStat" not in q for q in queries):
            return original(self, queries, start_time, end_time, *args, **kwargs)
        everything = self.get_all_metrics()
        by_name: dict[tuple[str, str], list[Any]] = {}
        by_dims: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[Any]] = {}
        for md in everything:
            by_name.setdefault((md.namespace, md.name), []).append(md)
            dims = tuple(sorted((d.name, d.value) for d in md.dimensions))
            by_dims.setdefault((md.namespace, md.name, dims), []).append(md)
        results: list[Any] = []
        try:
            for q in queries:
                metric = q["MetricStat"]["Metric"]
                dims = tuple(sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
                key = (metric["Namespace"], metric["MetricName"])
                subset = by_dims.get((*key, dims), []) if dims else by_name.get(key, [])
                self.get_all_metrics = lambda subset=subset: subset
                results.extend(original(self, [q], start_time, end_time, *args, **kwargs))
        finally:
            with contextlib.suppress(AttributeError):
                del self.get_all_metrics
        return results

    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign]
    try:
        yield
    finally:
        CloudWatchBackend.get_metric_data = original  # type: ignore[method-assign]


@contextlib.contextmanager
def direct_dynamodb_answers() -> Iterator[None]:
    """moto builds DynamoDB answers with a generic shape-walking serializer (0.2 s for an answer full of
    items on this machine); its answer is already DynamoDB JSON, so dump it directly. Same bytes parsed."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.serialized
    own = "serialized" in DynamoHandler.__dict__

    def serialized(self: Any, action_result: Any) -> Any:
        result = action_result.result
        if isinstance(result, dict):
            try:
                body = json.dumps(result)
            except (TypeError, ValueError):
                return original(self, action_result)
            return 200, {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}, body
        return original(self, action_result)

    DynamoHandler.serialized = serialized  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own:
            DynamoHandler.serialized = original  # type: ignore[method-assign]
        else:
            del DynamoHandler.serialized


@contextlib.contextmanager
def moto_excluded(meter: Meter) -> Iterator[None]:
    """moto's request handling runs inside the caller's process here; in AWS it is the service's work."""
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def process_request(self: Any, request: Any) -> Any:
        with meter.excluded():
            return original(self, request)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.process_request = original  # type: ignore[method-assign]


@contextlib.contextmanager
def metered_pacing(meter: Meter) -> Iterator[None]:
    """act's simulated waits (rate limiter, retry backoff) cost no wall time here but are billed duration."""
    from forescale.runtime import lambda_support

    original = lambda_support.pacing

    def pacing() -> tuple[Callable[[], float], Callable[[float], None]]:
        clock, sleep = original()

        def metered_sleep(seconds: float) -> None:
            meter.add_wait(seconds)
            sleep(seconds)

        return clock, metered_sleep

    lambda_support.pacing = pacing
    try:
        yield
    finally:
        lambda_support.pacing = original


@contextlib.contextmanager
def bounded_reads(meter: Meter) -> Iterator[None]:
    """act's rotation (at most `rotation_per_sweep` quiet targets a sweep) and its re-reads of quiet
    targets (at most `reconcile_reads_per_sweep`) are bounded whatever the fleet: counted apart."""
    from forescale.runtime.act.service import ActService

    originals = {name: getattr(ActService, name) for name in ("_reconcile_quiet", "_rotate")}

    def bounded(original: Callable[..., None]) -> Callable[..., None]:
        def call(self: Any, *args: Any, **kwargs: Any) -> None:
            with meter.bounded_work():
                original(self, *args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(ActService, name, bounded(original))
    read_first = ActService._read_first

    def first(cfg: Any, actuator: Any) -> Any:
        with meter.first_read():
            return read_first(cfg, actuator)

    ActService._read_first = staticmethod(first)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(ActService, name, original)
        ActService._read_first = staticmethod(read_first)  # type: ignore[method-assign]


class _LogSink(io.TextIOBase):
    """The functions' stdout (EMF metrics) and Powertools logs, as CloudWatch Logs would ingest them:
    counted in bytes per invocation, and the EMF metric identities kept (each is a custom metric)."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.meter.add_log_bytes(len(text.encode()))
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            if line.startswith("{") and '"_aws"' in line:
                self._emf(line)
        return len(text)

    def _emf(self, line: str) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            doc = json.loads(line)
            for directive in doc["_aws"]["CloudWatchMetrics"]:
                for dims in directive.get("Dimensions", [[]]):
                    values = tuple((d, str(doc.get(d))) for d in dims)
                    for m in directive["Metrics"]:
                        self.metrics.add((directive["Namespace"], m["Name"], values))


# ---------------------------------------------------------------- the run


@dataclass
class FleetRun:
    targets: int
    minutes: int
    history_days: float
    warmup_minutes: int
    deployed: Deployed
    stages: dict[str, StageTotals] = field(default_factory=dict)
    invocations: list[InvocationRecord] = field(default_factory=list)
    refit_cycle: list[InvocationRecord] = field(default_factory=list)
    refit_totals: StageTotals | None = None
    custom_metrics: int = 0
    baseline_rss_mb: dict[str, float] = field(default_factory=dict)
    items_by_kind: dict[str, tuple[int, float]] = field(default_factory=dict)  # kind -> (count, mean bytes)
    dlq_messages: int = 0
    failed_deliveries: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    setup_s: float = 0.0
    unrecorded_calls: int = 0
    payload_kb_10k: dict[str, float] = field(default_factory=dict)  # stage -> largest listing request at 10,000


def _event_targets(event: dict[str, Any], everything: int) -> int:
    detail = event.get("detail") or {}
    if isinstance(detail, dict) and isinstance(detail.get("targets"), list):
        return len(detail["targets"])
    if isinstance(detail, dict) and "target" in detail:
        return 1
    return everything


def run_fleet(opts: FleetOptions, log: Callable[[str], None] = print) -> FleetRun:
    """Set up the fleet on in-process moto, run the warm-up and the metered minutes; return what was measured."""
    import boto3
    from moto import mock_aws

    from forescale.demo.runner import _function_logs_to, _prune_cloudwatch, provision_resources
    from forescale.local import moto_extension
    from forescale.local.environment import environment_variables, function_env, provision
    from forescale.local.router import LambdaContextStub, load_handler, scheduled_event
    from forescale.runtime import lambda_support

    if opts.targets < 1 or opts.minutes < 1:
        raise ValueError(f"need at least 1 target and 1 minute, got {opts.targets} targets, {opts.minutes} minutes")
    if opts.history_days < 1.0:
        raise ValueError(
            f"--history-days must be >= 1: plan and forecast need a day of history (got {opts.history_days})"
        )
    t_wall = time.perf_counter()
    deployed = deployed_config(opts.targets)
    total_days = opts.history_days + (opts.warmup_minutes + opts.minutes + 2) / DAY_MINUTES
    trace, kinds = fleet_trace(opts.targets, total_days, opts.seed)
    configs = fleet_configs(trace, kinds)
    history_steps = round(opts.history_days * DAY_MINUTES)
    run = FleetRun(opts.targets, opts.minutes, opts.history_days, opts.warmup_minutes, deployed)
    meter = Meter()
    meter.recording = False
    sink = _LogSink(meter)
    env = (
        function_env(TABLE, TABLE)
        | deployed.env
        | {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # nosec B105  # moto's placeholder, never a real credential
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_IDEMPOTENCY_DISABLED": "false",
        }
    )
    saved_endpoint = os.environ.pop("AWS_ENDPOINT_URL", None)  # never a real endpoint, never a moto server
    clock_now = [float(trace.time(history_steps))]
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(environment_variables(env))
            stack.enter_context(mock_aws())
            stack.enter_context(indexed_get_metric_data())
            stack.enter_context(direct_dynamodb_answers())
            stack.enter_context(moto_excluded(meter))
            stack.enter_context(metered_pacing(meter))
            stack.enter_context(bounded_reads(meter))
            moto_extension.install(clock=lambda: clock_now[0])
            stack.callback(moto_extension.reset)
            moto_extension.set_account_concurrency_limit(10_000_000)  # a fleet account's raised quota
            lambda_support.set_clock(lambda: clock_now[0])
            stack.callback(lambda_support.set_clock, None)
            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session()
            meter.install(boto3.DEFAULT_SESSION)
            stack.callback(meter.uninstall)
            local = provision(TABLE, TABLE, REGION, functions=("collect", "plan", "act", "react"))

            class _Clients:
                def client(self, name: str) -> Any:
                    return boto3.client(name, region_name=REGION)  # type: ignore[call-overload]

            initial: dict[str, tuple[int, str | None]] = {
                n: ((0, None) if c.kind.is_lambda else (1, GPU_TYPE)) for n, c in configs.items()
            }
            provision_resources(_Clients(), trace, configs, initial)
            store = local.store
            for cfg in configs.values():
                store.put_target(cfg)
            samples = [
                DemandSampleDetail(target=name, timestamp=trace.time(i), requests=trace.targets[name].requests[i])
                for name in configs
                for i in range(history_steps)
            ]
            store.import_samples(samples, ttl_s=int(deployed.env["SAMPLE_TTL_DAYS"]) * 86_400)
            del samples
            # A warm process: the forecaster's statsforecast import (its cold start) is not the refit's work.
            importlib.import_module("forescale.forecasting.statsforecast_adapter")
            routed = {sub.function: sub for sub in local.router.subscriptions}
            # As the stack deploys it: DecisionMade (and act's schedule) go to act's queue, and act takes
            # them in batches (an SQS event source), not one invocation per event.
            routed["act"].detail_types = frozenset()
            act_queue = ActQueue(local.clients["sqs"], local.clients["events"], TABLE, deployed.act_batch_size)
            handlers = {
                "collect": routed["collect"].handler,
                "act": routed["act"].handler,
                "forecast": load_handler("forecast"),
            }
            trace_memory = [False]

            def metered(stage: str, fn: Callable[[dict[str, Any], Any], Any]) -> Callable[[dict[str, Any], Any], Any]:
                def call(event: dict[str, Any], context: Any) -> Any:
                    trigger = str(event.get("detail-type", "shard" if "shard" in event else "?"))
                    if "Records" in event:
                        trigger = "batch"
                    with meter.invocation(stage, trigger, _event_targets(event, opts.targets), trace_memory[0]):
                        return fn(event, context)

                return call

            for sub in local.router.subscriptions:
                sub.handler = metered(sub.function, sub.handler)
            scheduled = {name: metered(name, fn) for name, fn in handlers.items()}
            cw = boto3.client("cloudwatch", region_name=REGION)
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(_function_logs_to(sink))  # type: ignore[arg-type]
            run.setup_s = time.perf_counter() - t_wall
            log(f"set up {opts.targets} targets and {opts.history_days:g} days of history in {run.setup_s:.0f} s")
            total = opts.warmup_minutes + opts.minutes
            progress = _Progress(total, sys.stderr, opts.progress)
            for k in range(total):
                i = history_steps + k
                now = trace.time(i)
                clock_now[0] = float(now)
                metered_minute = k - opts.warmup_minutes
                meter.recording = metered_minute >= 0
                meter.minute = metered_minute
                trace_memory[0] = metered_minute >= 0 and metered_minute % max(1, opts.memory_every) == 0
                if k == 0:
                    trace_memory[0] = True  # the refit cycle: its memory is the forecaster's worst case
                put_minute_metrics(cw, trace, i - 1, configs)
                if k % 10 == 0:
                    _prune_cloudwatch(now - 20 * 60)
                    moto_extension.expire_items(now)
                if _due(deployed.schedule_minutes["collect"], k):
                    scheduled["collect"](scheduled_event(now, "forescale-collect"), LambdaContextStub("collect"))
                if _due(deployed.schedule_minutes["forecast"], k):
                    if k == 0:
                        meter.recording, meter.minute = True, -1  # the warm-up's refit cycle, metered apart
                    _invoke_forecast(scheduled["forecast"], deployed, now, scheduled_event, LambdaContextStub)
                    if k == 0:
                        run.refit_cycle = list(meter.invocations)
                        run.refit_totals = meter.stages.pop("forecast", None)
                        meter.invocations.clear()
                        meter.stages.clear()
                        meter.recording = False
                run.failed_deliveries += [f"{d.function}: {d.error}" for d in local.router.drain() if not d.ok]
                if _due(deployed.schedule_minutes["act"], k):
                    act_queue.send(scheduled_event(now, "forescale-act-sweep"))
                for failed in act_queue.deliver(scheduled["act"], LambdaContextStub("act")):
                    run.failed_deliveries.append(f"act: record {failed} handed back")
                run.failed_deliveries += [f"{d.function}: {d.error}" for d in local.router.drain() if not d.ok]
                progress.update(k + 1)
            progress.close()
            meter.recording = False
            run.items_by_kind = _table_items()
            run.payload_kb_10k = listing_payloads_10k(_longest_model())
            for url in local.dlqs.values():
                attrs = local.clients["sqs"].get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )
                run.dlq_messages += int(attrs["Attributes"]["ApproximateNumberOfMessages"])
    finally:
        if saved_endpoint is not None:
            os.environ["AWS_ENDPOINT_URL"] = saved_endpoint
    run.stages = meter.stages
    run.invocations = meter.invocations
    run.custom_metrics = len(sink.metrics)
    run.unrecorded_calls = meter.unrecorded
    if opts.baseline:
        run.baseline_rss_mb = {s: cold_import_rss_mb(s) for s in STAGES}
    run.wall_s = time.perf_counter() - t_wall
    return run


class ActQueue:
    """act's input queue as the stack builds it, in moto: an EventBridge rule copies DecisionMade from the
    bus to the queue, the schedule is sent to it, and `deliver` plays the SQS event source (one batch of
    up to `batch_size` records per call, the minute's batching window; records the handler reports in
    `batchItemFailures` stay on the queue, the others are deleted)."""

    def __init__(self, sqs: Any, events: Any, bus: str, batch_size: int) -> None:
        self.sqs, self.batch_size = sqs, batch_size
        self.url = sqs.create_queue(QueueName=f"{bus}-act")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rule = f"{bus}-route-decisions"
        pattern = {"source": ["forescale"], "detail-type": ["forescale.DecisionMade"]}
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "act-queue", "Arn": arn}])
        self.arn = arn

    def send(self, event: dict[str, Any]) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(event))

    def deliver(self, act: Callable[[dict[str, Any], Any], Any], context: Any) -> list[str]:
        """One act invocation with what the queue holds (up to the batch size); the ids handed back."""
        messages: list[dict[str, Any]] = []
        while len(messages) < self.batch_size:
            got = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=min(10, self.batch_size - len(messages))
            ).get("Messages", [])
            if not got:
                break
            messages += got
        if not messages:
            return []
        records = []
        for m in messages:
            body = json.loads(m["Body"])
            body.setdefault("account", "123456789012")  # moto's SQS copy of an event lacks it
            records.append(
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": json.dumps(body),
                    "attributes": {},
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.arn,
                    "awsRegion": REGION,
                }
            )
        response = act({"Records": records}, context) or {}
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for k in range(0, len(done), 10):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[k : k + 10])]
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
        return sorted(failed)


def _due(every_minutes: int, k: int) -> bool:
    return k % every_minutes == 0


def _invoke_forecast(
    forecast: Callable[[dict[str, Any], Any], Any],
    deployed: Deployed,
    now: int,
    scheduled_event: Callable[[int, str], dict[str, Any]],
    context: Callable[[str], Any],
) -> None:
    """The forecaster on its schedule; through the Step Functions Map's shard inputs with several shards."""
    if deployed.shard_count == 1:
        forecast(scheduled_event(now, "forescale-forecast"), context("forecast"))
        return
    for shard in range(deployed.shard_count):
        forecast({"shard": shard, "shard_count": deployed.shard_count, "time": now}, context("forecast"))


def _table_items() -> dict[str, tuple[int, float]]:
    """Items in the table at the end, by kind (SK prefix): count and mean billed size."""
    from moto.dynamodb.models import dynamodb_backends

    sizes: dict[str, list[int]] = {}
    for account in dynamodb_backends.values():
        for backend in account.values():
            table = backend.tables.get(TABLE)
            if table is None:
                continue
            for item in table.all_items():
                attrs = item.to_json()["Attributes"]
                pk = str(attrs.get("PK", {}).get("S", ""))
                kind = (
                    "IDEMPOTENCY"
                    if pk.startswith("idempotency#")
                    else str(attrs.get("SK", {}).get("S", "?")).split("#")[0]
                )
                sizes.setdefault(kind, []).append(item_size(attrs))
    return {k: (len(v), sum(v) / len(v)) for k, v in sizes.items()}


def _longest_model() -> str:
    """The longest model name among the stored forecasts (ForecastReady carries one per target)."""
    from moto.dynamodb.models import dynamodb_backends

    longest = "AutoETS"
    for account in dynamodb_backends.values():
        for backend in account.values():
            table = backend.tables.get(TABLE)
            for item in table.all_items() if table is not None else ():
                model = item.to_json()["Attributes"].get("model", {}).get("S")
                if model and len(model) > len(longest):
                    longest = model
    return longest


def listing_payloads_10k(model: str) -> dict[str, float]:
    """The largest PutEvents request (KB) of SamplesCollected (collect) and ForecastReady (forecast, one shard
    of 10,000) at 10,000 targets, built by the functions' own byte-sized chunking from 10,000 names as long as
    the bench's longest, every one missing and every forecast with the longest model seen: measured bytes, not
    a linear extrapolation (the events are sized by bytes, so their size is not linear in the fleet)."""
    from types import SimpleNamespace

    from forescale.demo.fleet_meter import put_events_entry_size
    from forescale.runtime.collect import chunk_collected
    from forescale.runtime.forecast import ForecastService, ForecastSummary

    names = [f"t{i:05d}-gpu-endpoint" for i in range(DERIVED_TARGETS)]  # the longest archetype name
    built: dict[str, list[Any]] = {"collect": list(chunk_collected(0, names, set(names)))}
    captured: list[Any] = []
    publisher = SimpleNamespace(publish=lambda _type, details: captured.extend(details))
    ForecastService._announce(
        SimpleNamespace(publisher=publisher),  # type: ignore[arg-type]  # _announce uses only the publisher
        0,
        0,
        ForecastSummary(models=dict.fromkeys(names, model)),
    )
    built["forecast"] = captured
    out: dict[str, float] = {}
    for stage, details in built.items():
        detail_type = "forescale.SamplesCollected" if stage == "collect" else "forescale.ForecastReady"
        sizes = [
            put_events_entry_size(
                {"Source": "forescale", "DetailType": detail_type, "Detail": d.model_dump_json(), "EventBusName": TABLE}
            )
            for d in details
        ]
        requests = [sum(sizes[k : k + ENTRIES_PER_REQUEST]) for k in range(0, len(sizes), ENTRIES_PER_REQUEST)]
        out[stage] = max(requests, default=0) / 1024
    return out


def cold_import_rss_mb(stage: str) -> float:
    """Peak RSS (MB) of a fresh Python process that has imported the function and what its first call
    imports (boto3, a client, Powertools Idempotency; statsforecast for the forecaster)."""
    code = (
        "import boto3\n"
        "from forescale.local.router import load_handler\n"
        f"load_handler({stage!r})\n"
        "boto3.client('dynamodb', region_name='us-east-1')\n"
        "import aws_lambda_powertools.utilities.idempotency\n"
        + (
            "from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter\n"
            if stage == "forecast"
            else ""
        )
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec from the (large) parent.
        + "print([int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')][0])\n"
    )
    env = os.environ | {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}  # nosec B105  # placeholders: no AWS call
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=120)  # nosec B603  # our own interpreter and code
    return int(out.stdout.split()[-1]) / 1024


class _Progress:
    def __init__(self, total: int, stream: TextIO, enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled and stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, done: int) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.t0
            left = elapsed / done * (self.total - done)
            self.stream.write(f"\r  minute {done}/{self.total} · {elapsed:4.0f} s · about {left / 60:.0f} min left   ")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


# ---------------------------------------------------------------- from measurements to the report


@dataclass
class StageFigures:
    """One stage's row: measured at N, and derived at N (durations, $) and at 10,000 targets."""

    stage: str
    invocations_per_min: float
    cpu_mean_s: float
    cpu_max_s: float
    peak_growth_mb: float | None
    baseline_mb: float | None
    memory_mb: int
    timeout_s: int
    duration_max_s: float  # derived: CPU at the memory's vCPU share + calls x latency + waits
    rru_per_target_min: float
    wru_per_target_min: float
    gsi_wru_per_target_min: float
    metrics_per_target_min: float
    control_plane_per_target_min: float
    lambda_control_plane_per_target_min: float
    changes_per_target_min: float
    control_plane_per_change: float | None
    put_events_requests_per_min: float
    put_events_entries_per_min: float
    max_request_kb: float
    max_entry_kb: float
    largest_item_kb: float
    log_kb_per_target_min: float
    usd: dict[str, float]  # line item -> $ per target-month at N
    at_10k: dict[str, float]  # derived figures at 10,000 targets
    calls_per_target_min: float


def _wall_s(cpu_s: float, memory_mb: int) -> float:
    return cpu_s * max(1.0, LAMBDA_VCPU_MB / memory_mb)


def _duration_s(r: InvocationRecord, memory_mb: int) -> float:
    return _wall_s(r.cpu_s, memory_mb) + r.calls * ASSUMED_CALL_LATENCY_S + r.waited_s


def _xray_traces_per_month(invocations_per_min: float) -> float:
    per_s = invocations_per_min / 60
    sampled = min(per_s, prices.XRAY_RESERVOIR_PER_S) + prices.XRAY_RATE * max(0.0, per_s - prices.XRAY_RESERVOIR_PER_S)
    return sampled * 60 * prices.MONTH_MINUTES


def _scaled_targets(r: InvocationRecord, n: int, deployed: Deployed) -> int:
    """Targets the same invocation would carry at 10,000: a schedule takes them all (forecast one shard);
    an event carries what it carried, up to the 1,000 names an event holds."""
    if r.targets >= n:
        if r.stage == "forecast":
            return min(DERIVED_TARGETS, deployed.shard_size)
        if r.trigger in ("forescale.SamplesCollected", "forescale.ForecastReady"):
            return min(DERIVED_TARGETS, 1000)
        return DERIVED_TARGETS
    return r.targets


LISTING_TYPES = ("forescale.SamplesCollected", "forescale.ForecastReady")  # entries that name many targets
EVENT_NAMES_MAX = 1000  # target names per listing entry (the event models' max_length)
ENTRIES_PER_REQUEST = 10  # PutEvents entries per request (the publisher's batches, AWS's limit)


def _request_kb_10k(t: StageTotals, n: int) -> float:
    """The largest PutEvents request at 10,000 targets: entries that list targets grow with the names they
    carry (up to 1,000 each), others keep their size; a request holds at most 10 entries."""
    if not t.put_events_requests:
        return 0.0
    grows = any(k in LISTING_TYPES for k in t.entries_by_type)
    entry = t.max_entry_bytes * (min(DERIVED_TARGETS, EVENT_NAMES_MAX) / min(n, EVENT_NAMES_MAX) if grows else 1.0)
    linear = t.max_request_bytes * DERIVED_TARGETS / n if grows else t.max_request_bytes
    return min(linear, ENTRIES_PER_REQUEST * entry) / 1024


def stage_figures(run: FleetRun, stage: str) -> StageFigures:
    n, m, d = run.targets, run.minutes, run.deployed
    t = run.stages.get(stage) or StageTotals()
    recs = [r for r in run.invocations if r.stage == stage]
    untraced = [r for r in recs if r.peak_bytes is None] or recs
    traced = [r for r in recs if r.peak_bytes is not None]
    memory, timeout = d.memory_mb[stage], d.timeout_s[stage]
    tm = n * m
    inv_per_min = len(recs) / m
    cpu = [r.cpu_s for r in untraced] or [0.0]
    durations = [_duration_s(r, memory) for r in recs] or [0.0]
    baseline = run.baseline_rss_mb.get(stage)
    growth = max((r.peak_bytes or 0) for r in traced) / 2**20 if traced else None
    gb_s = sum(durations) / m * memory / 1024  # per minute
    log_bytes = sum(r.log_bytes for r in recs)
    usd = {
        "DynamoDB reads": t.read_units / tm * prices.MONTH_MINUTES * prices.DYNAMODB_READ.per_unit,
        "DynamoDB writes": (t.write_units + t.gsi_write_units)
        / tm
        * prices.MONTH_MINUTES
        * prices.DYNAMODB_WRITE.per_unit,
        "GetMetricData": t.metrics_requested / tm * prices.MONTH_MINUTES * prices.GET_METRIC_DATA.per_unit,
        "EventBridge": t.put_events_chunks / tm * prices.MONTH_MINUTES * prices.EVENTBRIDGE_EVENT.per_unit,
        "Lambda requests": len(recs) / tm * prices.MONTH_MINUTES * prices.LAMBDA_REQUEST.per_unit,
        "Lambda duration": gb_s / n * prices.MONTH_MINUTES * _gb_s_price(d).per_unit,
        "Logs ingestion": log_bytes / 2**30 / tm * prices.MONTH_MINUTES * prices.LOGS_INGESTION.per_unit,
        "X-Ray": _xray_traces_per_month(inv_per_min) / n * prices.XRAY_TRACE.per_unit,
    }
    # At 10,000: the same per-target figures; per-invocation work scaled to the targets an invocation carries.
    scale = [(_scaled_targets(r, n, d) / max(1, r.targets)) for r in recs]
    inv_10k = sum(1 / s for s in scale) * DERIVED_TARGETS / n / m if recs else 0.0
    # Per trigger, the mean invocation scaled (a first call's one-off work would dominate a scaled maximum).
    groups: dict[str, list[tuple[InvocationRecord, float]]] = {}
    for r, s in zip(recs, scale, strict=True):
        groups.setdefault(r.trigger, []).append((r, s))
    cpu_10k = max((sum(r.cpu_s * s for r, s in g) / len(g) for g in groups.values()), default=0.0)
    dur_10k = max(
        (
            sum(_wall_s(r.cpu_s * s, memory) + (r.calls * ASSUMED_CALL_LATENCY_S + r.waited_s) * s for r, s in g)
            / len(g)
            for g in groups.values()
        ),
        default=0.0,
    )
    traced_scale = [(r, _scaled_targets(r, n, d) / max(1, r.targets)) for r in traced]
    growth_10k = max(((r.peak_bytes or 0) * s for r, s in traced_scale), default=0) / 2**20 if traced else None
    request_kb_10k = _request_kb_10k(t, n)
    if stage == "forecast" and run.refit_totals is not None:
        request_kb_10k = max(request_kb_10k, _request_kb_10k(run.refit_totals, n))
    if stage in run.payload_kb_10k:  # built at 10,000 by the functions' own chunking (measured bytes)
        request_kb_10k = max(run.payload_kb_10k[stage], t.max_request_bytes / 1024)
    sweep = [r for r in recs if r.trigger == "Scheduled Event"]
    lambda_per_min_10k = lambda_calls_per_min_10k(t, n, m, d)
    at_10k = {
        "invocations_per_min": inv_10k,
        "cpu_max_s": cpu_10k,
        "duration_max_s": dur_10k,
        "peak_mb": (baseline or 0) + growth_10k if growth_10k is not None else float("nan"),
        "max_request_kb": request_kb_10k,
        "lambda_control_plane_per_s": lambda_per_min_10k / 60,
        "lambda_bounded_per_target_min": t.lambda_bounded / tm,
        "lambda_first_reads": float(t.lambda_first_reads),
        "sweep_limiter_s": max((r.waited_s for r in sweep), default=0.0) * DERIVED_TARGETS / n,
        "xray_usd": _xray_traces_per_month(inv_10k) / DERIVED_TARGETS * prices.XRAY_TRACE.per_unit,
    }
    if stage == "act" and recs:
        at_10k |= act_at_10k(recs, n, m, d, lambda_per_min_10k, t.changes / m * DERIVED_TARGETS / n)
        inv_10k = at_10k["invocations_per_min"]
        at_10k["xray_usd"] = _xray_traces_per_month(inv_10k) / DERIVED_TARGETS * prices.XRAY_TRACE.per_unit
    lambda_requests_10k = inv_10k / DERIVED_TARGETS * prices.MONTH_MINUTES * prices.LAMBDA_REQUEST.per_unit
    at_10k["usd"] = (
        sum(v for k, v in usd.items() if k not in ("Lambda requests", "X-Ray"))
        + lambda_requests_10k
        + at_10k["xray_usd"]
    )
    changes = t.changes
    return StageFigures(
        stage=stage,
        invocations_per_min=inv_per_min,
        cpu_mean_s=sum(cpu) / len(cpu),
        cpu_max_s=max(cpu),
        peak_growth_mb=growth,
        baseline_mb=baseline,
        memory_mb=memory,
        timeout_s=timeout,
        duration_max_s=max(durations),
        rru_per_target_min=t.read_units / tm,
        wru_per_target_min=t.write_units / tm,
        gsi_wru_per_target_min=t.gsi_write_units / tm,
        metrics_per_target_min=t.metrics_requested / tm,
        control_plane_per_target_min=sum(t.control_plane.values()) / tm,
        lambda_control_plane_per_target_min=t.lambda_control_plane / tm,
        changes_per_target_min=changes / tm,
        control_plane_per_change=sum(t.control_plane.values()) / changes if changes else None,
        put_events_requests_per_min=t.put_events_requests / m,
        put_events_entries_per_min=t.put_events_entries / m,
        max_request_kb=t.max_request_bytes / 1024,
        max_entry_kb=t.max_entry_bytes / 1024,
        largest_item_kb=max(t.largest_item.values(), default=0) / 1024,
        log_kb_per_target_min=log_bytes / 1024 / tm,
        usd=usd,
        at_10k=at_10k,
        calls_per_target_min=t.total_calls / tm,
    )


def lambda_calls_per_min_10k(t: StageTotals, n: int, m: int, d: Deployed) -> float:
    """Lambda control-plane calls a minute at 10,000 targets, in steady state: those that come with changes
    and decisions scale with the fleet; the bounded ones (quiet targets' re-reads, at most
    `reconcile_reads_per_sweep` a sweep of at most 2 calls each; GetAccountSettings, once a minute per act
    process) do not; a target's first read ever (the fleet's first minutes) is reported apart, not a rate."""
    from forescale.runtime.act.service import ActOptions

    scale = DERIVED_TARGETS / n
    per_change = (t.lambda_control_plane - t.lambda_bounded - t.lambda_first_reads) / m * scale
    cap = ActOptions().reconcile_reads_per_sweep * 2 * (60 / d.schedule_minutes["act"]) / 60 + d.act_concurrency
    return per_change + min(t.lambda_bounded / m * scale, cap)


def act_at_10k(
    recs: list[InvocationRecord], n: int, m: int, d: Deployed, lambda_per_min: float, changes_per_min: float
) -> dict[str, float]:
    """act at 10,000 targets: its seconds a minute (the larger of its work, CPU at the memory's vCPU share
    plus call latency, and the limiter's seconds for the Lambda calls at 10,000) spread over invocations
    that each stop starting decisions 10 s before the timeout; it fits when those fit the seconds its
    processes have. The work that comes with decisions scales with the fleet; the rotation's is bounded
    per sweep."""
    from forescale.runtime.act.service import ActOptions

    memory, timeout = d.memory_mb["act"], d.timeout_s["act"]
    scale = DERIVED_TARGETS / n
    # The rotation visits min(N, rotation_per_sweep) targets a sweep: at 10,000 that many, not 10,000.
    rotation = ActOptions().rotation_per_sweep
    bounded_scale = rotation / min(n, rotation)
    untraced = [r for r in recs if r.peak_bytes is None] or recs  # tracemalloc slows the CPU it would measure
    per_rec = len(recs) / len(untraced)
    cpu_per_min = (
        sum((r.cpu_s - r.bounded_cpu_s) * scale + r.bounded_cpu_s * bounded_scale for r in untraced) * per_rec / m
    )
    calls_per_min = sum((r.calls - r.bounded_calls) * scale + r.bounded_calls * bounded_scale for r in recs) / m
    latency_per_min = calls_per_min * ASSUMED_CALL_LATENCY_S
    rate = float(d.env["LAMBDA_CALLS_PER_SECOND"])  # each process's share of the account's rate
    work_s = _wall_s(cpu_per_min, memory) + latency_per_min
    limiter_s = lambda_per_min / rate
    # The limiter is a token bucket on wall time (GCRA, burst 1): the DynamoDB calls and CPU between two
    # Lambda calls use the interval the next call waits for, so a process's minute is the larger of the
    # two, not their sum, as long as work and Lambda calls are spread alike over its decisions
    # (tests/bench/act_throughput.py runs the real service on a clock advanced by both and shows it).
    busy_s = max(work_s, limiter_s)
    usable_s = timeout - ActOptions().stop_with_s_left
    capacity_s = d.act_concurrency * 60.0
    invocations = max(math.ceil(busy_s / usable_s), math.ceil(changes_per_min / d.act_batch_size), 1)
    fits = busy_s <= capacity_s
    return {
        "invocations_per_min": float(invocations),
        "cpu_max_s": cpu_per_min / invocations,
        "duration_max_s": min(busy_s / invocations, usable_s) if fits else busy_s / d.act_concurrency,
        "busy_s_per_min": busy_s,
        "work_s_per_min": work_s,
        "limiter_s_per_min": limiter_s,
        "capacity_s_per_min": capacity_s,
    }


def _gb_s_price(d: Deployed) -> prices.Price:
    return prices.LAMBDA_GB_S_ARM if d.architecture == "ARM_64" else prices.LAMBDA_GB_S_X86


SQS_IDLE_POLLS_PER_MIN = 15.0  # 5 pollers x 3 long polls of 20 s a minute (assumed, not measured)
FLEET_SQS_POLLING = "SQS polling and sweep (act's queue)"  # a fleet-level cost: shared by its targets


def fleet_costs(run: FleetRun) -> dict[str, float]:
    """Costs that belong to the fleet, not to a stage, in $ per target-month: storage at steady state
    (derived from the measured item sizes), custom metrics (measured EMF identities), the amortised daily refit."""
    n, d = run.targets, run.deployed
    per_target: dict[str, float] = {}
    ttl_days = int(d.env["SAMPLE_TTL_DAYS"])
    bytes_per_target = 0.0
    steady_counts = {"SAMPLES": ttl_days * 24 + 1, "CONFIG": 1, "STATE": 1, "PLANNER": 1, "FORECAST": 1}
    for kind, (count, mean) in run.items_by_kind.items():
        if kind in steady_counts:
            bytes_per_target += steady_counts[kind] * (mean + 100)
        elif kind == "DECISION":
            # Decisions are kept 400 days: the measured rate of new ones over the run, kept that long.
            per_min = count / n / max(1, run.minutes + run.warmup_minutes)
            bytes_per_target += per_min * 400 * DAY_MINUTES * (mean + 100)
        else:
            bytes_per_target += count / n * (mean + 100)
    per_target["DynamoDB storage"] = bytes_per_target / 2**30 * prices.DYNAMODB_STORAGE.per_unit
    per_target["Custom metrics (EMF)"] = run.custom_metrics * prices.CUSTOM_METRIC.per_unit / n
    # act's queue (derived): per record, EventBridge's SendMessage plus a tenth of a ReceiveMessage and of a
    # DeleteMessageBatch (10 records each); the event source's pollers' long polls while it is idle (an
    # assumption: 5 pollers, 20 s each) and the sweep's schedule record are the fleet's, shared by its targets.
    plan = run.stages.get("plan") or StageTotals()
    records_per_target_min = plan.entries_by_type["forescale.DecisionMade"] / n / max(1, run.minutes)
    per_record = records_per_target_min * (1 + 2 / ENTRIES_PER_REQUEST)
    per_target["SQS (act's queue)"] = per_record * prices.MONTH_MINUTES * prices.SQS_REQUEST.per_unit
    per_target[FLEET_SQS_POLLING] = (
        (SQS_IDLE_POLLS_PER_MIN + 1.2 / d.schedule_minutes["act"])
        * prices.MONTH_MINUTES
        * prices.SQS_REQUEST.per_unit
        / n
    )
    refit = run.refit_totals or StageTotals()
    refit_cpu = sum(r.cpu_s for r in run.refit_cycle)
    mem = d.memory_mb["forecast"]
    refit_gb_s = (_wall_s(refit_cpu, mem) + refit.total_calls * ASSUMED_CALL_LATENCY_S) * mem / 1024
    per_day = 1  # one refit per target per day (the forecaster's refit_every_s)
    per_target["Daily refit (amortised)"] = (
        per_day
        * 30
        * (
            refit.read_units * prices.DYNAMODB_READ.per_unit
            + (refit.write_units + refit.gsi_write_units) * prices.DYNAMODB_WRITE.per_unit
            + refit.put_events_chunks * prices.EVENTBRIDGE_EVENT.per_unit
            + refit_gb_s * _gb_s_price(d).per_unit
        )
        / n
    )
    return per_target


def result_json(run: FleetRun) -> dict[str, Any]:
    """Everything the report needs, as JSON (written beside the report; the report is rebuilt from these)."""
    figures = {s: asdict(stage_figures(run, s)) for s in STAGES}
    refit_cpu = [r.cpu_s for r in run.refit_cycle]
    refit_peak = [r.peak_bytes for r in run.refit_cycle if r.peak_bytes is not None]
    return {
        "targets": run.targets,
        "minutes": run.minutes,
        "history_days": run.history_days,
        "warmup_minutes": run.warmup_minutes,
        "wall_s": round(run.wall_s, 1),
        "setup_s": round(run.setup_s, 1),
        "deployed": asdict(run.deployed),
        "stages": figures,
        "fleet_usd": fleet_costs(run),
        "custom_metrics": run.custom_metrics,
        "items_by_kind": run.items_by_kind,
        "refit_cycle": {
            "invocations": len(run.refit_cycle),
            "cpu_s": sum(refit_cpu),
            "peak_growth_mb": max(refit_peak) / 2**20 if refit_peak else None,
            "read_units": run.refit_totals.read_units if run.refit_totals else 0.0,
            "calls": run.refit_totals.total_calls if run.refit_totals else 0,
        },
        "calls": {s: {f"{k[0]}.{k[1]}": v for k, v in sorted(t.calls.items())} for s, t in run.stages.items()},
        "errors": {s: dict(t.errors) for s, t in run.stages.items() if t.errors},
        "largest_items": {s: t.largest_item for s, t in run.stages.items()},
        "entries_by_type": {s: dict(t.entries_by_type) for s, t in run.stages.items() if t.entries_by_type},
        "approximate_reads": sum(t.approximate_reads for t in run.stages.values()),
        "dlq_messages": run.dlq_messages,
        "failed_deliveries": run.failed_deliveries[:20],
        "harness_calls": run.stages.get(HARNESS, StageTotals()).total_calls,
        "payload_kb_10k": run.payload_kb_10k,
    }


def run_fleet_bench(opts: FleetOptions, out: TextIO = sys.stdout) -> int:
    """`forescale bench fleet`: run, print the per-stage summary, write the report under `opts.out`; 0 on success."""
    from forescale.demo.fleet_report import cost_table, fits_table, stage_table, write_report

    def log(msg: str) -> None:
        print(msg, file=out, flush=True)

    run = run_fleet(opts, log)
    result = result_json(run)
    log(stage_table(result))
    log("")
    log(cost_table(result))
    log("")
    log(fits_table(result))
    if run.failed_deliveries or run.dlq_messages:
        log(f"warning: {len(run.failed_deliveries)} failed deliveries, {run.dlq_messages} dead-letter messages")
    if opts.out is not None:
        log(f"report: {write_report(opts.out, result)}")
    log(f"wall time {run.wall_s:.0f} s")
    return 0
