"""`forescale demo`: the whole deployed system on loopback, on a simulated clock.

1. AWS on 127.0.0.1: moto's ThreadedMotoServer on a free port, with forescale's moto extension.
2. Into it, what a user's account and the CDK stack would hold: one Lambda function with a `live`
   alias per Lambda target and a SageMaker GPU endpoint per SageMaker target (tagged
   `forescale:managed=true`), the DynamoDB table, the event bus, a DLQ per function and the routes.
3. The targets are registered (active), and the history before the demo window is loaded into the
   table as if collect had been running (samples only; nothing was decided then).
4. Every simulated minute: the minute's CloudWatch metrics are written into moto; the real handlers
   run with real-shaped events: collect (schedule), forecast (schedule; every minute here, so its
   daily refits happen when replay's do), then the events they publish are delivered (plan, react,
   act) by the local router, and act's schedule sweeps in-flight work. act changes the capacities in
   moto through boto3.
5. At the end the capacities read back from moto are compared with the last decisions, and the
   report is written (forescale.demo.report).

The same decisions come out of `forescale replay` with `ReplayConfig(start_at=..., react=True)` on
the same workload and seed: a test holds the demo to that.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from forescale.domain.forecast import Forecast
from forescale.replay.engine import DecisionRow
from forescale.replay.trace import Trace
from forescale.runtime.models import DecisionRecord, InstanceTypeSpec, Mode, TargetConfig

DAY_S = 86_400
ALIAS = "live"
VARIANT = "AllTraffic"
TABLE = "forescale-demo"
ROLE = "arn:aws:iam::123456789012:role/forescale-demo-function"


# The built-in workload's default window: Monday 10:05-12:15 UTC after 7 days of history, the end of
# api-steady's morning ramp (about 220 -> 280 req/s) and the unannounced 3.2x spike at 11:30, where
# target tracking lags and forescale does not. Its minutes make more AWS calls than the old default's
# quiet night (87 a minute against 73), so 130 of them keep `uv run forescale demo` within 1.2x the
# wall time of the old 144-minute default (README, "The local demo").
DEFAULT_DAYS = 130 / 1440
BUILTIN_START_TIME = "10:05"


@dataclass
class DemoOptions:
    """What `forescale demo` runs. `days` is the window's length and `history_days` the data loaded
    before it; `start_time` ("HH:MM" UTC) moves the window's start to the first such time at or after
    the history's end (None: the built-in workload starts at BUILTIN_START_TIME, a trace right after
    its history). `keep` leaves moto running after the report, for trying the CLI against it."""

    days: float = DEFAULT_DAYS
    history_days: float = 7.0
    seed: int = 7
    out: Path = Path("out/demo")
    targets: tuple[str, ...] | None = None
    trace: Path | None = None
    port: int = 0
    progress: bool = True
    start_time: str | None = None
    keep: bool = False

    def __post_init__(self) -> None:
        for name in ("days", "history_days"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be a number of days > 0, got {v!r}")
        if self.start_time is not None:
            _time_of_day_s(self.start_time)


@dataclass
class DemoRun:
    trace: Trace
    start_at: int
    configs: dict[str, TargetConfig]
    rows: list[DecisionRow] = field(default_factory=list)
    initial_rows: list[DecisionRow] = field(default_factory=list)
    records: list[DecisionRecord] = field(default_factory=list)
    forecasts: dict[str, list[tuple[int, Forecast]]] = field(default_factory=dict)
    in_aws: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # read back at the end
    wall_s: float = 0.0
    api_calls: int = 0
    port: int = 0
    port_note: str = ""
    dlq_messages: dict[str, int] = field(default_factory=dict)
    calls_by_operation: dict[str, int] = field(default_factory=dict)
    wall_by_phase: dict[str, float] = field(default_factory=dict)


def target_config(name: str, trace: Trace) -> TargetConfig:
    """The registration a user would make for this workload target (active; resource names = target name)."""
    t = trace.targets[name].to_target()
    common: dict[str, Any] = {
        "name": name,
        "kind": t.kind,
        "min_capacity": t.min_capacity,
        "max_capacity": t.max_capacity,
        "slo_miss": t.slo_miss,
        "duration_s": t.duration_s,
        "memory_mb": t.memory_mb,
        "mode": Mode.ACTIVE,
        "lead_up_s": t.lead_times.up_s,
        "guardrails": {"stabilisation_window_s": 0},  # replay's default settings: bounds only
    }
    if t.is_lambda:
        return TargetConfig(**common, function_name=name, qualifier=ALIAS)
    catalog = tuple(
        InstanceTypeSpec(name=c.name, price_per_hour=c.price_per_hour, capacity_rps=c.capacity_rps) for c in t.catalog
    )
    return TargetConfig(
        **common, endpoint_name=name, variant_name=VARIANT, catalog=catalog, instance_type=t.instance_type
    )


STEP_S = 60
WEEK_S = 7 * DAY_S
# Forescale's events and AWS refuse timestamps before 2000 (pydantic: >= 946684800); older traces move.
OLDEST_EPOCH = 946_684_800


def _time_of_day_s(text: str) -> int:
    """ "HH:MM" (UTC) as seconds after midnight; a clear error otherwise."""
    hh, sep, mm = text.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise ValueError(f"--start-time must be HH:MM (UTC), got {text!r}")
    return int(hh) * 3600 + int(mm) * 60


def _window_start(earliest: int, start_time: str | None) -> int:
    """The first minute at or after `earliest` that is `start_time` (UTC), or `earliest` on the minute grid."""
    at = -(-earliest // STEP_S) * STEP_S
    if start_time is None:
        return at
    day = at - at % DAY_S
    t = day + _time_of_day_s(start_time)
    return t if t >= at else t + DAY_S


def load_workload(opts: DemoOptions) -> tuple[Trace, int]:
    """The workload on one-minute steps, cut at the window's end, and the window's start (epoch s).

    The built-in workload is generated long enough that its unannounced spike falls on the window's
    first day (the generator puts it on the second-to-last day) and then cut. A trace is resampled to
    one-minute steps, moved to after 2000 if older, and cut after `days` of window.
    """
    from forescale.replay.trace import load_trace, select_targets
    from forescale.replay.workload import DEFAULT_START, generate

    window_s = max(1, round(opts.days * DAY_S / STEP_S)) * STEP_S
    if opts.trace is not None:
        trace = load_trace(opts.trace)
        trace = select_targets(trace, opts.targets) if opts.targets else trace
        trace = since_2000(to_one_minute(trace, opts.trace))
        start_at = _window_start(trace.start + round(opts.history_days * DAY_S), opts.start_time)
    else:
        start_time = opts.start_time or BUILTIN_START_TIME
        start_at = _window_start(DEFAULT_START + round(opts.history_days * DAY_S), start_time)
        day_index = (start_at - DEFAULT_START) // DAY_S
        days = max((start_at + window_s - DEFAULT_START) / DAY_S, day_index + 2)
        trace = generate(days=days, step_s=STEP_S, seed=opts.seed, targets=opts.targets)
    end_at = start_at + window_s
    if not trace.start < start_at < trace.end:
        span = (trace.end - trace.start) / DAY_S
        raise ValueError(
            f"need history (--history-days {opts.history_days:g}) shorter than the workload ({span:.2f} days)"
        )
    # Exactly `history_days` of history before a window moved to a time of day: no more to load.
    first = max(trace.start, start_at - round(opts.history_days * DAY_S / STEP_S) * STEP_S)
    return _steps_from(trace.truncated(min(end_at, trace.end)), first), start_at


def _steps_from(trace: Trace, first: int) -> Trace:
    """`trace` without its steps before `first` (on its step grid)."""
    from forescale.replay.trace import TraceTarget

    skip = (first - trace.start) // trace.step_s
    if skip <= 0:
        return trace
    targets = {k: TraceTarget(k, t.requests[skip:], t.params) for k, t in trace.targets.items()}
    gaps = tuple(g for g in trace.gaps if g[1] > trace.time(skip))
    return Trace(trace.step_s, trace.time(skip), trace.steps - skip, targets, gaps, trace.meta, trace.path)


def to_one_minute(trace: Trace, source: Path | str = "the trace") -> Trace:
    """The trace on the deployed pipeline's one-minute steps.

    A step that divides 60 s is summed into minutes (a minute with any gap is a gap; a partial first
    minute is dropped); a step that is a multiple of 60 s is spread evenly over its minutes. Any other
    step is refused with how to convert it.
    """
    from forescale.replay.trace import TraceError, TraceTarget

    step = trace.step_s
    if step == STEP_S:
        return trace
    if STEP_S % step == 0:
        k = STEP_S // step
        skip = (-trace.start) % STEP_S // step
        start = trace.start + skip * step
        minutes = (trace.steps - skip) // k
        targets = {
            name: TraceTarget(
                name,
                tuple(float(sum(t.requests[skip + j * k : skip + (j + 1) * k])) for j in range(minutes)),
                t.params,
            )
            for name, t in trace.targets.items()
        }
        gaps = tuple((a - a % STEP_S, -(-b // STEP_S) * STEP_S) for a, b in trace.gaps)
    elif step % STEP_S == 0:
        k = step // STEP_S
        start, minutes = trace.start, trace.steps * k
        targets = {
            name: TraceTarget(name, tuple(r / k for r in t.requests for _ in range(k)), t.params)
            for name, t in trace.targets.items()
        }
        gaps = trace.gaps
    else:
        raise TraceError(
            f"{source}: the demo runs the deployed one-minute pipeline and cannot resample a {step} s step "
            "(it must divide 60 s or be a multiple of it); convert the trace to 60 s steps first, e.g. sum "
            "its requests per minute (pandas: df.resample('60s', on='timestamp').sum()), and set step_s to 60 "
            "in its .targets.json"
        )
    meta = {**trace.meta, "step_s": STEP_S, "resampled_from_step_s": step}
    return Trace(STEP_S, start, minutes, targets, gaps, meta, trace.path)


def since_2000(trace: Trace) -> Trace:
    """A trace from before 2000 moved forward by whole weeks (weekday and time of day kept) to 2026."""
    from forescale.replay.workload import DEFAULT_START

    if trace.start >= OLDEST_EPOCH:
        return trace
    shift = -(-(DEFAULT_START - trace.start) // WEEK_S) * WEEK_S
    gaps = tuple((a + shift, b + shift) for a, b in trace.gaps)
    meta = {**trace.meta, "shifted_by_s": shift}
    return Trace(trace.step_s, trace.start + shift, trace.steps, trace.targets, gaps, meta, trace.path)


def initial_capacities(trace: Trace, start_at: int) -> dict[str, tuple[int, str | None]]:
    """What target tracking had set when forescale takes over: the demo account ran it until `start_at`."""
    from forescale.replay.engine import ReplayConfig, replay

    before = trace.truncated(start_at)
    rows = replay(before, ReplayConfig(policy="target-tracking")).rows
    out: dict[str, tuple[int, str | None]] = {}
    for name, tt in trace.targets.items():
        t = tt.to_target()
        last = [r for r in rows if r.target == name]
        capacity = last[-1].capacity if last else (0 if t.is_lambda else max(1, t.min_capacity))
        out[name] = (capacity, None if t.is_lambda else t.instance_type)
    return out


def provision_resources(
    aws: Any, trace: Trace, configs: dict[str, TargetConfig], initial: dict[str, tuple[int, str | None]]
) -> None:
    """The user's resources forescale manages: Lambda functions with an alias, SageMaker endpoints,
    at the capacity target tracking had given them."""
    iam, lam, sm = aws.client("iam"), aws.client("lambda"), aws.client("sagemaker")
    iam.create_role(RoleName="forescale-demo-function", AssumeRolePolicyDocument="{}")
    from forescale.local.environment import create_stand_in_function, function_zip

    code = function_zip()
    for name, cfg in configs.items():
        tags = {"forescale:managed": "true"}
        if cfg.kind.is_lambda:
            create_stand_in_function(lam, name, ROLE, alias=ALIAS, memory_mb=cfg.memory_mb, tags=tags, code=code)
            if initial[name][0] > 0:
                lam.put_provisioned_concurrency_config(
                    FunctionName=name, Qualifier=ALIAS, ProvisionedConcurrentExecutions=initial[name][0]
                )
        else:
            sm.create_model(
                ModelName=f"{name}-model",
                ExecutionRoleArn=ROLE,
                PrimaryContainer={"Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/demo:latest"},
            )
            sm.create_endpoint_config(
                EndpointConfigName=f"{name}-config-0",
                ProductionVariants=[
                    {
                        "VariantName": VARIANT,
                        "ModelName": f"{name}-model",
                        "InitialInstanceCount": max(1, initial[name][0]),
                        "InstanceType": str(initial[name][1] or cfg.instance_type),
                    }
                ],
            )
            sm.create_endpoint(
                EndpointName=name,
                EndpointConfigName=f"{name}-config-0",
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )


def put_minute_metrics(cw: Any, trace: Trace, i: int, configs: dict[str, TargetConfig]) -> None:
    """Step i's CloudWatch metrics, as AWS would publish them (nothing during a source gap)."""
    at = datetime.fromtimestamp(trace.time(i), UTC)
    lam: list[dict[str, Any]] = []
    sm: list[dict[str, Any]] = []
    for name, cfg in configs.items():
        requests = trace.targets[name].requests[i]
        if cfg.kind.is_lambda:
            dims = [{"Name": "FunctionName", "Value": name}, {"Name": "Resource", "Value": f"{name}:{ALIAS}"}]
            if requests > 0:  # Lambda publishes nothing for a minute without invocations
                lam += [
                    {
                        "MetricName": "Invocations",
                        "Dimensions": dims,
                        "Timestamp": at,
                        "Value": requests,
                        "Unit": "Count",
                    },
                    {
                        "MetricName": "Duration",
                        "Dimensions": dims,
                        "Timestamp": at,
                        "Value": cfg.duration_s * 1000,
                        "Unit": "Milliseconds",
                    },
                    {
                        "MetricName": "ConcurrentExecutions",
                        "Dimensions": dims,
                        "Timestamp": at,
                        "Value": requests / trace.step_s * cfg.duration_s,
                        "Unit": "Count",
                    },
                ]
        else:
            dims = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": VARIANT}]
            sm.append(
                {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": at, "Value": requests, "Unit": "None"}
            )
            sm.append(
                {
                    "MetricName": "ModelLatency",
                    "Dimensions": dims,
                    "Timestamp": at,
                    "Value": 45_000.0,
                    "Unit": "Microseconds",
                }
            )
    for namespace, data in (("AWS/Lambda", lam), ("AWS/SageMaker", sm)):
        for k in range(0, len(data), 1000):
            cw.put_metric_data(Namespace=namespace, MetricData=data[k : k + 1000])


def _prune_cloudwatch(keep_after: int) -> None:
    """Demo housekeeping: moto scans every stored datapoint on each GetMetricData; keep the last hour."""
    from moto.cloudwatch.models import cloudwatch_backends

    aware = datetime.fromtimestamp(keep_after, UTC)
    naive = aware.replace(tzinfo=None)  # moto stores some timestamps naive (UTC), some aware
    for account in cloudwatch_backends.values():
        for backend in account.values():
            backend.metric_data = [
                m for m in backend.metric_data if m.timestamp >= (naive if m.timestamp.tzinfo is None else aware)
            ]


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%a %Y-%m-%d %H:%M")


class DemoProgress:
    """The minute loop's progress: a rich progress bar on a terminal (simulated time, minutes done,
    decisions, capacity changes, elapsed and time left); elsewhere (a pipe, a CI log) the same facts
    as a plain line every `every_s` seconds of wall time, so a long run is never silent."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        enabled: bool = True,
        every_s: float = 15.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.total, self.stream, self.enabled, self.every_s, self.clock = total, stream, enabled, every_s, clock
        self.t0 = self.last_line = clock()
        self.bar: Any = None
        if enabled and stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("  {task.fields[sim]} UTC"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("min · {task.fields[decisions]} decisions · {task.fields[changes]} changes ·"),
                TimeElapsedColumn(),
                TextColumn("·"),
                TimeRemainingColumn(),
                TextColumn("left"),
                console=Console(file=stream),
                # The functions' output is redirected to files meanwhile; the bar must not take it back.
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.task = self.bar.add_task("demo", total=total, sim="", decisions=0, changes=0)
            self.bar.start()

    def update(self, done: int, sim_at: int, decisions: int, changes: int) -> None:
        """`done` of `total` simulated minutes run; the simulated clock is at `sim_at` (epoch s)."""
        stamp = datetime.fromtimestamp(sim_at, UTC).strftime("%a %H:%M")
        if self.bar is not None:
            self.bar.update(self.task, completed=done, sim=stamp, decisions=decisions, changes=changes)
            return
        now = self.clock()
        if not self.enabled or (now - self.last_line < self.every_s and done < self.total):
            return
        self.last_line = now
        elapsed = now - self.t0
        left = f" · about {elapsed / done * (self.total - done) / 60:.1f} min left" if 0 < done < self.total else ""
        self.stream.write(
            f"  {stamp} UTC · {done}/{self.total} min · {decisions} decisions · {changes} capacity changes · "
            f"{elapsed:.0f} s{left}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run_pipeline(
    opts: DemoOptions,
    log: Callable[[str], None] = print,
    while_up: Callable[[DemoRun, Any], None] | None = None,
) -> DemoRun:
    """Steps 1-5 of the module docstring; returns what happened (the report is written by `run_demo`).

    `while_up(run, aws)`, if given, is called when the run is over but moto is still up (`--keep`)."""
    from forescale.local.environment import environment_variables, function_env, provision
    from forescale.local.moto_extension import expire_items
    from forescale.local.router import LambdaContextStub, load_handler, scheduled_event
    from forescale.local.server import LocalAws, SimClock
    from forescale.runtime import lambda_support

    t_wall = time.perf_counter()
    trace, start_at = load_workload(opts)
    history_steps = (start_at - trace.start) // trace.step_s
    configs = {name: target_config(name, trace) for name in sorted(trace.targets)}
    run = DemoRun(trace=trace, start_at=start_at, configs=configs)
    clock = SimClock(start_at)
    env = function_env(TABLE, "forescale-demo") | {
        "METRIC_DELAY_S": "0",  # the simulation publishes each minute as it ends
        "REREAD_MINUTES": "1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_IDEMPOTENCY_DISABLED": "false",
    }
    calls = [0]
    with contextlib.ExitStack() as stack, LocalAws(opts.port, clock) as aws, environment_variables(env):
        run.port, run.port_note = aws.port, aws.note
        log(f"moto (AWS on loopback) at {aws.endpoint}" + (f" ({aws.note})" if aws.note else ""))
        lambda_support.set_clock(clock)
        import botocore.client

        def count_call(**kwargs: Any) -> None:
            calls[0] += 1
            op = kwargs.get("event_name", "?").split(".", 1)[-1]
            run.calls_by_operation[op] = run.calls_by_operation.get(op, 0) + 1

        # Every client in this process (handlers, router, this loop) reports its calls here.
        original = botocore.client.BaseClient.__init__

        def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.meta.events.register("before-call.*.*", count_call)

        botocore.client.BaseClient.__init__ = counting_init  # type: ignore[method-assign]

        try:
            local = provision(TABLE, "forescale-demo", functions=("collect", "plan", "act", "react"))
            initial = initial_capacities(trace, start_at)
            provision_resources(aws, trace, configs, initial)
            # For the report: the capacity in force when forescale took over (set an hour before).
            run.initial_rows = [DecisionRow(start_at - 3600, n, c, t) for n, (c, t) in initial.items()]
            store = local.store
            for cfg in configs.values():
                store.put_target(cfg)
            # History, as collect would have stored it (gaps stay missing).
            gaps = trace.gap_flags()
            from forescale.runtime.models import DemandSampleDetail

            store.import_samples(
                [
                    DemandSampleDetail(target=name, timestamp=trace.time(i), requests=trace.targets[name].requests[i])
                    for name in configs
                    for i in range(history_steps)
                    if not gaps[i]
                ],
                ttl_s=30 * DAY_S,
            )
            shifted = trace.meta.get("shifted_by_s")
            if shifted:
                log(
                    f"the trace is from before 2000, which AWS refuses: moved forward {shifted // WEEK_S:,} weeks "
                    "(weekday and time of day kept)"
                )
            if trace.meta.get("resampled_from_step_s"):
                log(f"the trace's {trace.meta['resampled_from_step_s']} s steps resampled to 60 s")
            log(
                f"provisioned {len(configs)} target{'s'[: len(configs) != 1]}; "
                f"{(start_at - trace.start) / DAY_S:.2f} days of history loaded; "
                f"running {_when(start_at)} → {_when(trace.end)} UTC ({trace.steps - history_steps} simulated minutes)"
            )
            collect, forecast, act = load_handler("collect"), load_handler("forecast"), load_handler("act")

            def keep_forecasts(event: dict[str, Any], _ctx: Any) -> None:
                for name in event["detail"]["targets"]:
                    fc = store.get_forecast(name)
                    if fc is not None:
                        run.forecasts.setdefault(name, []).append((fc.issued_at, fc))

            local.router.subscribe("report", ("forescale.ForecastReady",), keep_forecasts)
            requested = dict(initial)
            made = {"decisions": 0, "changes": 0}

            def count_decisions(event: dict[str, Any], _ctx: Any) -> None:
                # The same count as the report's: a change asks for other than what was requested before.
                d = event["detail"]
                made["decisions"] += 1
                key = (d["capacity"], d.get("instance_type") or requested[d["target"]][1])
                made["changes"] += key != requested[d["target"]]
                requested[d["target"]] = key

            local.router.subscribe("progress", ("forescale.DecisionMade",), count_decisions)
            cw = aws.client("cloudwatch")
            progress = DemoProgress(trace.steps - history_steps, sys.stderr, opts.progress)
            # The functions' EMF metrics and JSON logs print to stdout, as in Lambda; here they go to
            # files, as CloudWatch Logs would keep them, and the terminal keeps the progress bar.
            opts.out.mkdir(parents=True, exist_ok=True)
            function_output = stack.enter_context(open(opts.out / "function-metrics.jsonl", "w"))
            stack.enter_context(contextlib.redirect_stdout(function_output))
            stack.enter_context(_function_logs_to(stack.enter_context(open(opts.out / FUNCTION_LOGS, "w"))))
            try:
                for i in range(history_steps, trace.steps):
                    now = trace.time(i)
                    clock.now = now
                    if not gaps[i - 1]:
                        put_minute_metrics(cw, trace, i - 1, configs)
                    if (i - history_steps) % 60 == 0:
                        _prune_cloudwatch(now - 3600)
                    if (i - history_steps) % 10 == 0:
                        expire_items(now)  # DynamoDB's TTL deletion, which moto lacks (expired Idempotency records)
                    t0 = time.perf_counter()
                    collect(scheduled_event(now, "forescale-collect"), LambdaContextStub("collect"))
                    t1 = time.perf_counter()
                    forecast(scheduled_event(now, "forescale-forecast"), LambdaContextStub("forecast"))
                    t2 = time.perf_counter()
                    local.router.drain()
                    t3 = time.perf_counter()
                    act(scheduled_event(now, "forescale-act-sweep"), LambdaContextStub("act"))
                    local.router.drain()
                    t4 = time.perf_counter()
                    for key, dt in (
                        ("collect", t1 - t0),
                        ("forecast", t2 - t1),
                        ("events", t3 - t2),
                        ("act-sweep", t4 - t3),
                    ):
                        run.wall_by_phase[key] = run.wall_by_phase.get(key, 0.0) + dt
                    progress.update(i - history_steps + 1, now + STEP_S, made["decisions"], made["changes"])
            finally:
                progress.close()
            # Settle: no new decisions, act's schedule keeps running until what was decided is in place.
            for k in range(1, SETTLE_MINUTES + 1):
                if not _open_work(store, configs):
                    break
                clock.now = trace.end + 60 * k
                act(scheduled_event(int(clock.now), "forescale-act-sweep"), LambdaContextStub("act"))
                local.router.drain()
            _collect_results(run, local, aws)
            run.api_calls = calls[0]
            run.wall_s = time.perf_counter() - t_wall
            if while_up is not None:
                while_up(run, aws)
        finally:
            lambda_support.set_clock(None)
            botocore.client.BaseClient.__init__ = original  # type: ignore[method-assign]
    return run


FUNCTION_LOGS = "function-logs.jsonl"


@contextlib.contextmanager
def _function_logs_to(stream: TextIO) -> Iterator[None]:
    """Send the functions' Powertools logs to `stream` (its handler holds the stdout it was built with,
    so redirecting sys.stdout does not move it)."""
    from forescale.runtime.observability import logger

    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.setStream(stream)
    try:
        yield
    finally:
        if previous is not None:
            handler.setStream(previous)


SETTLE_MINUTES = 20
OPEN = frozenset({"pending", "applying", "in-flight", "deferred"})


def _open_work(store: Any, configs: dict[str, TargetConfig]) -> bool:
    for name in configs:
        newest = store.list_decisions(name, limit=1)
        if newest and newest[0].status.value in OPEN:
            return True
        if store.get_state(name).in_flight is not None:
            return True
    return False


def _collect_results(run: DemoRun, local: Any, aws: Any) -> None:
    store = local.store
    lam, sm = aws.client("lambda"), aws.client("sagemaker")
    for name, cfg in run.configs.items():
        records = store.list_decisions(name, limit=100_000, newest_first=False)
        run.records += records
        run.rows += [DecisionRow(r.decided_at, name, r.capacity, r.instance_type) for r in records]
        if cfg.kind.is_lambda:
            try:
                pc = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=ALIAS)
                run.in_aws[name] = (int(pc["RequestedProvisionedConcurrentExecutions"]), None)
            except lam.exceptions.ProvisionedConcurrencyConfigNotFoundException:
                run.in_aws[name] = (0, None)
        else:
            ep = sm.describe_endpoint(EndpointName=name)
            variant = ep["ProductionVariants"][0]
            config = sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
            itype = config["ProductionVariants"][0].get("InstanceType")
            run.in_aws[name] = (
                int(variant.get("DesiredInstanceCount") or variant.get("CurrentInstanceCount") or 0),
                itype,
            )
    for fn, url in local.dlqs.items():
        attrs = local.clients["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        run.dlq_messages[fn] = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
    run.rows.sort(key=lambda r: r.decided_at)


def run_demo(opts: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the pipeline, compare with the target-tracking baseline, write the report; 0 on success.

    With `opts.keep`, moto stays up after the report, with the environment to reach it printed, until
    Ctrl-C (KeyboardInterrupt, which the CLI turns into exit 130)."""

    def log(msg: str) -> None:
        print(msg, file=out, flush=True)

    def report_then_hold(run: DemoRun, aws: Any) -> None:
        write_outputs(run, opts, log)
        hold(aws, log, simulated_now=run.trace.end)

    run = run_pipeline(opts, log, while_up=report_then_hold if opts.keep else None)
    if not opts.keep:
        write_outputs(run, opts, log)
    return 0


def sandbox_environment(endpoint: str, simulated_now: int | None = None) -> dict[str, str]:
    """What another shell exports to reach the demo's local AWS with the forescale CLI (fake credentials).

    `simulated_now` (epoch seconds) is the demo clock's end: `status` and `explain` judge ages against
    FORESCALE_NOW, and against the wall clock the simulated Monday looks long stale."""
    from forescale.local.server import ENV

    env = {**ENV, "AWS_ENDPOINT_URL": endpoint, "FORESCALE_TABLE": TABLE}
    if simulated_now is not None:
        env["FORESCALE_NOW"] = datetime.fromtimestamp(simulated_now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return env


def hold(
    aws: Any,
    log: Callable[[str], None],
    wait: Callable[[float], None] = time.sleep,
    simulated_now: int | None = None,
) -> None:
    """Keep the local AWS up and say how to use it, until interrupted."""
    log("\nthe local AWS stays up until Ctrl-C; in another shell:")
    for key, value in sandbox_environment(aws.endpoint, simulated_now).items():
        log(f"  export {key}={value}")
    log("  uv run forescale status          # or: explain api-steady, targets list, pause --reason test, resume")
    while True:
        wait(3600)


def write_outputs(run: DemoRun, opts: DemoOptions, log: Callable[[str], None]) -> None:
    """Score target tracking on the same workload, write the report and print the summary."""
    from forescale.demo.report import Report, RunFacts, format_summary, trace_window, write_report
    from forescale.replay.engine import ReplayConfig, replay

    baseline = replay(run.trace, ReplayConfig(policy="target-tracking"))
    window = trace_window(run.trace, run.start_at)
    source = str(opts.trace) if opts.trace else "built-in workload"
    facts = RunFacts(
        source=source,
        simulated_days=(window.end - window.start) / DAY_S,
        seed=None if opts.trace else opts.seed,
        history_days=(run.start_at - run.trace.start) / DAY_S,
        wall_s=run.wall_s,
        decisions=len(run.rows),
        api_calls=run.api_calls,
        moto_port=run.port,
    )
    report = Report(
        trace=window,
        forescale_rows=run.initial_rows + run.rows,
        baseline_rows=baseline.rows,
        facts=facts,
        forecasts=run.forecasts,
        records=run.records,
    )
    paths = write_report(report, opts.out)
    log(format_summary(report))
    mismatched = _check_capacities(run)
    for line in mismatched:
        log(f"warning: {line}")
    dead = {fn: n for fn, n in run.dlq_messages.items() if n}
    if dead:
        log(f"warning: events in dead-letter queues: {dead}")
    top = sorted(run.calls_by_operation.items(), key=lambda kv: -kv[1])[:12]
    log("wall time by phase (s): " + ", ".join(f"{k} {v:.1f}" for k, v in run.wall_by_phase.items()))
    log("AWS calls by operation: " + ", ".join(f"{op} {n}" for op, n in top))
    levels = log_levels(opts.out / FUNCTION_LOGS)
    log(
        f"function logs: {opts.out / FUNCTION_LOGS} ({sum(levels.values())} lines: "
        + ", ".join(f"{n} {level}" for level, n in sorted(levels.items()))
        + ")"
    )
    log(
        f"report: {paths['html']}  ({len(run.rows)} decisions, {report.summary.overall.forescale.changes} capacity "
        f"changes, {run.api_calls} AWS calls to moto, wall time {run.wall_s:.0f} s)"
    )


def log_levels(path: Path) -> dict[str, int]:
    """Lines per level in a file of Powertools JSON log lines."""
    import json

    counts: dict[str, int] = {}
    with open(path) as lines:
        for line in lines:
            level = str(json.loads(line).get("level", "?"))
            counts[level] = counts.get(level, 0) + 1
    return counts


def _check_capacities(run: DemoRun) -> list[str]:
    """The capacity in moto must equal each target's last decision (act applied it, or it is in flight)."""
    problems = []
    for name in run.configs:
        last = [r for r in run.rows if r.target == name]
        if not last:
            continue
        want = last[-1].capacity
        got, _ = run.in_aws.get(name, (None, None))
        if got != want:
            problems.append(f"{name}: moto has {got}, the last decision asked for {want}")
    return problems
