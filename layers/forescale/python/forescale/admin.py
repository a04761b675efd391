"""`forescale targets ...` and `forescale pause|resume`: operate a deployed forescale table.

    forescale targets add NAME --kind lambda-provisioned --function-name FN --qualifier live --min 2 --max 200
    forescale targets add NAME --kind sagemaker-instance-count --endpoint EP --variant V --catalog catalog.json
    forescale targets list | show NAME | remove NAME
    forescale targets set-mode NAME active|dry-run
    forescale targets discover [--apply]         # resources tagged forescale:managed=true
    forescale pause --reason "incident 123"      # the kill switch: act applies nothing until resume
    forescale resume

    forescale status [--output json] [--no-aws]  # per target: state, capacity in AWS, last decision, budget
    forescale explain NAME                       # why a target's capacity is what it is

The table comes from `--table` or `FORESCALE_TABLE`; the region from `--region`, `AWS_REGION`,
`AWS_DEFAULT_REGION` or the profile; credentials from the usual boto3 chain. New targets are
registered in dry-run unless `--mode active` is given.

`targets add` checks the resource before storing anything: the function (and its alias or version)
or the endpoint (and its variant) must exist. act may only change resources tagged
`forescale:managed=true`: without the tag, a dry-run target is registered with the command that tags
it, and an active one (or `set-mode active`) is refused with that command. A Lambda target's
`memory_mb` is the function's configured memory, and its `duration_s` the mean of its CloudWatch
`Duration` over the last DURATION_LOOKBACK_DAYS days (AWS/Lambda, by function name); with no such
datapoints, `targets add` refuses and asks for `--duration-s` (the configured timeout is a bound,
not a duration). Either option given on the command line wins.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from forescale.adapters.state import ConflictError, DynamoStateStore, StateStore
from forescale.adapters.tagging import MANAGED_TAG
from forescale.domain.targets import DEFAULT_MAX_CAPACITY, TargetKind
from forescale.runtime.models import Mode, TargetConfig, validation_problems
from forescale.status import format_table

DURATION_LOOKBACK_DAYS = 14  # two weeks of daily datapoints: weekdays and weekends alike


class AdminError(Exception):
    """A bad argument or state for an admin command; the message says what to fix."""


Clients = Callable[[str], Any]  # boto3 client by service name


def _add_connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--table",
        default=os.environ.get("FORESCALE_TABLE"),
        help="the forescale DynamoDB table, the stack output TableName (default: env FORESCALE_TABLE)",
    )
    p.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's)")


def add_parsers(sub: Any) -> None:
    tp = sub.add_parser("targets", help="register and inspect the targets forescale manages")
    _add_connection_options(tp)
    tsub = tp.add_subparsers(dest="targets_command", required=True)
    add = tsub.add_parser("add", help="register a target (dry-run by default)")
    add.add_argument("name", help="the target's name in forescale (letters, digits and _.:/-)")
    add.add_argument("--kind", required=True, choices=[k.value for k in TargetKind], help="what forescale sets")
    add.add_argument("--function-name", help="Lambda: the function's name (not its ARN)")
    add.add_argument("--qualifier", help="alias or version (provisioned concurrency; never $LATEST)")
    add.add_argument("--endpoint", help="SageMaker: the endpoint's name")
    add.add_argument("--variant", help="SageMaker: the production variant's name")
    add.add_argument("--catalog", type=Path, help="JSON list of {name, price_per_hour, capacity_rps}")
    add.add_argument("--instance-type", help="SageMaker: the variant's current instance type (from the catalog)")
    add.add_argument("--min", dest="min_capacity", type=int, default=0, help="capacity floor (default 0)")
    add.add_argument(
        "--max", dest="max_capacity", type=int, default=DEFAULT_MAX_CAPACITY, help="capacity ceiling (default 10000)"
    )
    add.add_argument("--slo", dest="slo_miss", type=float, default=0.01, help="acceptable spill share, e.g. 0.01")
    add.add_argument(
        "--duration-s",
        type=float,
        help="Lambda: mean duration in seconds (default: the mean of CloudWatch's Duration over the last "
        f"{DURATION_LOOKBACK_DAYS} days; refused when there is none)",
    )
    add.add_argument("--memory-mb", type=int, help="Lambda: memory in MB (default: the function's configuration)")
    add.add_argument("--policy", default="predictive", help="predictive (default), reactive, target-tracking, ...")
    add.add_argument(
        "--mode", choices=[m.value for m in Mode], default=Mode.DRY_RUN.value, help="dry-run (default) or active"
    )
    add.add_argument("--max-step-up", type=int, help="largest scale-out per decision (default: no limit)")
    add.add_argument("--max-step-down", type=int, help="largest scale-in per decision (default: no limit)")
    add.add_argument(
        "--stabilisation-window-s", type=int, default=300, help="a scale-in waits this long after a scale-out (300)"
    )
    add.add_argument("--budget-per-hour", type=float, help="$ per hour of capacity at most (default: no budget)")
    add.add_argument("--scale-out-step-factor", type=float, help="widen the per-step scale-out bound (default 10)")
    add.add_argument("--scale-out-hour-factor", type=float, help="widen the per-hour scale-out bound (default 10)")
    add.add_argument("--scale-out-allowance-per-hour", type=float, help="$/h of capacity both allow (default 10)")
    tsub.add_parser("list", help="list registered targets")
    show = tsub.add_parser("show", help="a target's config, applied state and latest decisions")
    show.add_argument("name", help="the target's name")
    show.add_argument("--decisions", type=int, default=5, help="how many of the newest decisions (default 5)")
    rm = tsub.add_parser("remove", help="unregister a target (its decisions stay as the audit trail)")
    rm.add_argument("name", help="the target's name")
    sm = tsub.add_parser("set-mode", help="switch a target between dry-run and active")
    sm.add_argument("name", help="the target's name")
    sm.add_argument("mode", choices=[m.value for m in Mode], help="active applies decisions; dry-run records them")
    disc = tsub.add_parser("discover", help="find resources tagged forescale:managed=true")
    disc.add_argument("--apply", action="store_true", help="register the discovered targets (in dry-run)")

    for cmd, text in (("pause", "stop all actions at once (the kill switch)"), ("resume", "allow actions again")):
        p = sub.add_parser(cmd, help=text)
        _add_connection_options(p)
        p.add_argument("--reason", default="", required=cmd == "pause", help="why (kept in the table with the switch)")

    at_help = "judge ages as of this time, ISO 8601 UTC or epoch seconds (default: env FORESCALE_NOW, else now)"
    st = sub.add_parser(
        "status",
        help="each target's state, capacity in AWS, last decision, budget and errors",
        description="STATE is the first that holds: INVALID (stored config invalid), PAUSED (kill switch), "
        "FAILING (AWS refused the plan), FALLBACK (no recent samples, or no or a stale forecast), "
        "ACTIVE (a change under way), READY (the plan is in effect).",
    )
    _add_connection_options(st)
    st.add_argument("--output", choices=("table", "json"), default="table", help="table (default) or json")
    st.add_argument("--no-aws", action="store_true", help="read the table only, not the capacity in AWS")
    st.add_argument("--at", default=os.environ.get("FORESCALE_NOW"), help=at_help)
    ex = sub.add_parser("explain", help="why a target's capacity is what it is, in words and numbers")
    _add_connection_options(ex)
    ex.add_argument("name", help="the target's name (see `forescale status`)")
    ex.add_argument("--output", choices=("text", "json"), default="text", help="text (default) or json")
    ex.add_argument("--no-aws", action="store_true", help="read the table only, not the capacity in AWS")
    ex.add_argument("--at", default=os.environ.get("FORESCALE_NOW"), help=at_help)


def region_of(explicit: str | None) -> str:
    """The region: `--region`, then AWS_REGION (what Lambda and docs/deploy.md set), AWS_DEFAULT_REGION,
    then the profile's (botocore itself reads only the last two)."""
    region = explicit or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        import boto3

        region = boto3.session.Session().region_name
    if not region:
        raise AdminError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or pass --region")
    return region


def boto_clients(region: str) -> Clients:
    import boto3

    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = boto3.client(service, region_name=region)  # type: ignore[call-overload]
        return made[service]

    return client


def _store(a: argparse.Namespace, clients: Clients) -> StateStore:
    if not a.table:
        raise AdminError("no table: pass --table or set FORESCALE_TABLE (the stack output TableName)")
    return DynamoStateStore(clients("dynamodb"), a.table)


def _config_from_args(a: argparse.Namespace, duration_s: float, memory_mb: int) -> TargetConfig:
    catalog: list[Any] = []
    if a.catalog:
        try:
            catalog = json.loads(a.catalog.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AdminError(f"--catalog {a.catalog}: {exc}") from exc
    guardrails = {
        "max_step_up": a.max_step_up,
        "max_step_down": a.max_step_down,
        "stabilisation_window_s": a.stabilisation_window_s,
        "budget_per_hour": a.budget_per_hour,
    }
    for knob in ("scale_out_step_factor", "scale_out_hour_factor", "scale_out_allowance_per_hour"):
        if getattr(a, knob) is not None:  # unset: the model's default (on), not None (off)
            guardrails[knob] = getattr(a, knob)
    try:
        return TargetConfig.model_validate(
            {
                "name": a.name,
                "kind": a.kind,
                "function_name": a.function_name,
                "qualifier": a.qualifier,
                "endpoint_name": a.endpoint,
                "variant_name": a.variant,
                "catalog": catalog,
                "instance_type": a.instance_type,
                "min_capacity": a.min_capacity,
                "max_capacity": a.max_capacity,
                "slo_miss": a.slo_miss,
                "duration_s": duration_s,
                "memory_mb": memory_mb,
                "policy": a.policy,
                "mode": a.mode,
                "guardrails": guardrails,
            }
        )
    except ValidationError as exc:
        raise AdminError(f"target {a.name}: {validation_problems(exc)}") from exc


@dataclass(frozen=True, slots=True)
class Resource:
    """A target's resource as AWS reports it: its ARN, whether it carries the managed tag, and for a
    Lambda function its configured memory (MB)."""

    arn: str
    managed: bool
    memory_mb: int | None = None

    @property
    def tag_command(self) -> str:
        """The AWS CLI command that opts the resource in (act's IAM role changes only tagged resources)."""
        if ":lambda:" in self.arn:
            return f"aws lambda tag-resource --resource {self.arn} --tags {MANAGED_TAG}=true"
        return f"aws sagemaker add-tags --resource-arn {self.arn} --tags Key={MANAGED_TAG},Value=true"


def _found(call: Callable[[], Any], missing_code: str, missing: str) -> Any:
    """`call()`'s answer; AdminError(`missing`) when AWS answers `missing_code` (any other error propagates)."""
    from botocore.exceptions import ClientError

    try:
        return call()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != missing_code:
            raise
        raise AdminError(missing) from None


def find_resource(cfg: TargetConfig, clients: Clients, region: str) -> Resource:
    """The target's function (and alias or version) or endpoint (and variant), read from AWS; AdminError
    naming what is missing."""
    if cfg.kind.is_lambda:
        lam = clients("lambda")
        fn = _found(
            lambda: lam.get_function(FunctionName=cfg.function_name),
            "ResourceNotFoundException",
            f"target {cfg.name}: no Lambda function {cfg.function_name!r} in {region}",
        )
        if cfg.qualifier:
            _found(
                lambda: lam.get_function_configuration(FunctionName=cfg.function_name, Qualifier=cfg.qualifier),
                "ResourceNotFoundException",
                f"target {cfg.name}: function {cfg.function_name} has no alias or version {cfg.qualifier!r}",
            )
        conf = fn["Configuration"]
        tags = fn.get("Tags") or {}
        return Resource(conf["FunctionArn"], tags.get(MANAGED_TAG) == "true", int(conf.get("MemorySize", 128)))
    sm = clients("sagemaker")
    ep = _found(
        lambda: sm.describe_endpoint(EndpointName=cfg.endpoint_name),
        "ValidationException",  # SageMaker's answer for an endpoint that does not exist
        f"target {cfg.name}: no SageMaker endpoint {cfg.endpoint_name!r} in {region}",
    )
    variants = [v["VariantName"] for v in ep.get("ProductionVariants", [])]
    if cfg.variant_name not in variants:
        raise AdminError(
            f"target {cfg.name}: endpoint {cfg.endpoint_name} has no variant {cfg.variant_name!r}; it has {variants}"
        )
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=ep["EndpointArn"]).get("Tags", [])}
    return Resource(ep["EndpointArn"], tags.get(MANAGED_TAG) == "true")


def mean_duration_s(cloudwatch: Any, function: str, now: float) -> float | None:
    """The function's mean duration (s) over the last DURATION_LOOKBACK_DAYS days from CloudWatch's
    AWS/Lambda Duration (daily averages weighted by their invocation counts); None without datapoints."""
    resp = cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="Duration",
        Dimensions=[{"Name": "FunctionName", "Value": function}],
        StartTime=int(now) - DURATION_LOOKBACK_DAYS * 86_400,
        EndTime=math.ceil(now),
        Period=86_400,
        Statistics=["Average", "SampleCount"],
    )
    points = [(p["Average"], p["SampleCount"]) for p in resp.get("Datapoints", []) if p.get("SampleCount")]
    total = sum(n for _, n in points)
    return sum(avg * n for avg, n in points) / total / 1000 if total else None


def _add(a: argparse.Namespace, st: StateStore, clients: Clients, region: str) -> int:
    # Validate what needs no AWS first, with placeholders for what is read from it.
    draft = _config_from_args(a, a.duration_s or 0.1, a.memory_mb or 1024)
    if st.target_record(draft.name) is not None:
        raise AdminError(
            f"target {draft.name} exists; use `forescale targets remove {draft.name}` first or pick another name"
        )
    resource = find_resource(draft, clients, region)
    if not resource.managed and draft.mode is Mode.ACTIVE:
        raise AdminError(
            f"target {draft.name}: {resource.arn} is not tagged {MANAGED_TAG}=true, so act may not change it; "
            f"tag it first: {resource.tag_command}"
        )
    duration_s, memory_mb, notes = a.duration_s, a.memory_mb, []
    if draft.kind.is_lambda:
        if memory_mb is None:
            memory_mb = resource.memory_mb
            notes.append(f"memory_mb {memory_mb} (the function's configuration)")
        if duration_s is None:
            duration_s = mean_duration_s(clients("cloudwatch"), str(draft.function_name), time.time())
            if duration_s is None:
                raise AdminError(
                    f"target {draft.name}: CloudWatch has no Duration for {draft.function_name} in the last "
                    f"{DURATION_LOOKBACK_DAYS} days; pass --duration-s (its mean duration in seconds)"
                )
            notes.append(f"duration_s {duration_s:.4g} (mean CloudWatch Duration, last {DURATION_LOOKBACK_DAYS} days)")
    cfg = _config_from_args(a, duration_s or 0.1, memory_mb or 1024)
    try:
        saved = st.put_target(cfg)
    except ConflictError as exc:
        raise AdminError(f"{exc}; use `forescale targets remove {cfg.name}` first or pick another name") from exc
    print(f"registered {saved.name} ({saved.kind}, {saved.resource_label}) in {saved.mode} mode")
    if notes:
        print("read from AWS: " + ", ".join(notes))
    if not resource.managed:
        print(
            f"note: {resource.arn} is not tagged {MANAGED_TAG}=true; act may change only tagged resources, "
            f"so tag it before `set-mode active`: {resource.tag_command}"
        )
    return 0


def _list(st: StateStore) -> int:
    records = st.target_records()
    paused, reason = st.get_paused()
    if paused:
        print(f"PAUSED (kill switch on: {reason or 'no reason given'}): act applies nothing until `forescale resume`")
    if not records:
        print("no targets registered: add one with `forescale targets add` (or `targets discover --apply`)")
        return 0
    header = ("NAME", "KIND", "RESOURCE", "MODE", "MIN", "MAX", "VERSION")
    rows: list[tuple[str, ...]] = []
    invalid = []
    for r in records:
        c = r.config
        if c is None:  # stored by an older version or by hand; forescale skips it until fixed or removed
            invalid.append(f"{r.name}  INVALID  {r.error}")
            continue
        mode = f"{c.mode} (paused)" if paused and c.mode is Mode.ACTIVE else c.mode.value
        rows.append((c.name, c.kind, c.resource_label, mode, str(c.min_capacity), str(c.max_capacity), f"v{c.version}"))
    print("\n".join(format_table(header, rows)))
    for line in invalid:
        print(line)
    return 0


def run_targets(a: argparse.Namespace, store: StateStore | None = None, clients: Clients | None = None) -> int:
    region = region_of(a.region)
    clients = clients or boto_clients(region)
    st = store or _store(a, clients)
    cmd = a.targets_command
    if cmd == "add":
        return _add(a, st, clients, region)
    if cmd == "list":
        return _list(st)
    if cmd == "show":
        record = st.target_record(a.name)
        if record is None:
            raise AdminError(f"unknown target {a.name!r}; `forescale targets list` shows the registered ones")
        config: Any = record.config.model_dump(mode="json") if record.config else {"invalid": record.error}
        if record.config is None:
            config["stored"] = record.raw
        out = {
            "config": config,
            "state": st.get_state(a.name).model_dump(mode="json"),
            "decisions": [d.model_dump(mode="json") for d in st.list_decisions(a.name, limit=a.decisions)],
        }
        print(json.dumps(out, indent=2))
        return 0
    if cmd == "remove":
        if st.target_record(a.name) is None:
            raise AdminError(f"unknown target {a.name!r}")
        st.delete_target(a.name)
        print(f"removed {a.name}; its decisions stay in the table as the audit trail")
        return 0
    if cmd == "set-mode":
        cur = st.get_target(a.name)
        if cur is None:
            raise AdminError(f"unknown target {a.name!r}")
        if Mode(a.mode) is Mode.ACTIVE:
            resource = find_resource(cur, clients, region)
            if not resource.managed:
                raise AdminError(
                    f"{resource.arn} is not tagged {MANAGED_TAG}=true, so act may not change it; "
                    f"tag it first: {resource.tag_command}"
                )
        st.put_target(cur.model_copy(update={"mode": Mode(a.mode)}), expected_version=cur.version)
        print(f"{a.name}: {cur.mode} -> {a.mode}")
        return 0
    if cmd == "discover":
        return _discover(a, st, clients)
    raise AdminError(f"unknown targets command {cmd!r}")


def _discover(a: argparse.Namespace, st: StateStore, clients: Clients) -> int:
    from forescale.adapters.tagging import TagDiscovery

    drafts, skipped = TagDiscovery(clients("resourcegroupstaggingapi"), clients("sagemaker")).discover()
    for draft in drafts:
        exists = st.target_record(draft.name) is not None
        action = "exists" if exists else ("registered" if a.apply else "would register")
        if a.apply and not exists:
            st.put_target(draft)
        print(f"{action}: {draft.name} ({draft.kind}, {draft.resource_label}, {draft.mode})")
    for skip in skipped:
        print(f"skipped: {skip.resource}: {skip.reason}")
    return 0


def run_pause(a: argparse.Namespace, store: StateStore | None = None) -> int:
    st = store or _store(a, boto_clients(region_of(a.region)))
    paused = a.command == "pause"
    st.set_paused(paused, a.reason, int(time.time()))
    print("paused: act applies nothing until `forescale resume`" if paused else "resumed: act applies decisions again")
    return 0


def parse_at(text: str | None) -> int:
    """`--at`: epoch seconds or an ISO 8601 time (UTC unless it says otherwise); None: now."""
    if not text:
        return int(time.time())
    from datetime import UTC, datetime

    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise AdminError(f"--at {text!r}: not epoch seconds nor an ISO 8601 time such as 2026-01-12T12:15") from None
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())


def run_status(a: argparse.Namespace, store: StateStore | None = None, clients: Clients | None = None) -> int:
    """`forescale status` and `forescale explain NAME`."""
    from forescale import status

    at = parse_at(a.at)
    clients = clients or boto_clients(region_of(a.region))
    st = store or _store(a, clients)
    aws = None if a.no_aws else status.aws_reader(st, {s: clients(s) for s in status.AWS_SERVICES})
    if a.command == "status":
        report = status.read_status(st, aws, at)
        print(status.status_json(report) if a.output == "json" else status.format_status(report, a.table))
        return 0
    try:
        explained = status.read_explanation(st, aws, a.name, at)
    except status.UnknownTargetError as exc:
        raise AdminError(str(exc)) from None
    print(status.explanation_json(explained) if a.output == "json" else status.format_explanation(explained))
    return 0


def aws_problem(exc: Exception) -> str | None:
    """One line for an AWS failure an operator can fix (credentials, region, endpoint, access, a missing
    table); None for anything else."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(for the demo sandbox, the exports `forescale demo --keep` prints)"
        )
    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or pass --region"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach AWS at {exc.kwargs.get('endpoint_url', '?')}: is AWS_ENDPOINT_URL right, is it running?"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"AWS refused {exc.operation_name}: {err.get('Code', '?')}: {err.get('Message', '')}"
    if isinstance(exc, BotoCoreError):
        return str(exc)
    return None


def main(a: argparse.Namespace, store: StateStore | None = None, clients: Clients | None = None) -> int:
    try:
        if a.command == "targets":
            return run_targets(a, store, clients)
        if a.command in ("status", "explain"):
            return run_status(a, store, clients)
        return run_pause(a, store)
    except AdminError as exc:
        print(f"forescale {a.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        problem = aws_problem(exc)
        if problem is None:
            raise
        print(f"forescale {a.command}: {problem}", file=sys.stderr)
        return 2
