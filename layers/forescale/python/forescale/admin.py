"""`forescale targets ...` and `forescale pause|resume`: operate a deployed forescale table.

    forescale targets add NAME --kind lambda-provisioned --function-name FN --qualifier live --min 2 --max 200
    forescale targets add NAME --kind sagemaker-instance-count --endpoint EP --variant V --catalog catalog.json
    forescale targets list | show NAME | remove NAME
    forescale targets set-mode NAME active|dry-run
    forescale targets discover [--apply]         # resources tagged forescale:managed=true
    forescale pause --reason "incident 123"      # the kill switch: act applies nothing until resume
    forescale resume

The table comes from `--table` or `FORESCALE_TABLE`; AWS credentials and region from the usual
boto3 chain. New targets are registered in dry-run unless `--mode active` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from forescale.adapters.state import ConflictError, DynamoStateStore, StateStore
from forescale.domain.targets import DEFAULT_MAX_CAPACITY, TargetKind
from forescale.runtime.models import Mode, TargetConfig, validation_problems


class AdminError(Exception):
    """A bad argument or state for an admin command; the message says what to fix."""


def add_parsers(sub: Any) -> None:
    tp = sub.add_parser("targets", help="register and inspect the targets forescale manages")
    tp.add_argument("--table", default=os.environ.get("FORESCALE_TABLE"), help="DynamoDB table (env FORESCALE_TABLE)")
    tsub = tp.add_subparsers(dest="targets_command", required=True)
    add = tsub.add_parser("add", help="register a target (dry-run by default)")
    add.add_argument("name")
    add.add_argument("--kind", required=True, choices=[k.value for k in TargetKind])
    add.add_argument("--function-name")
    add.add_argument("--qualifier", help="alias or version (provisioned concurrency; never $LATEST)")
    add.add_argument("--endpoint")
    add.add_argument("--variant")
    add.add_argument("--catalog", type=Path, help="JSON list of {name, price_per_hour, capacity_rps}")
    add.add_argument("--instance-type")
    add.add_argument("--min", dest="min_capacity", type=int, default=0)
    add.add_argument("--max", dest="max_capacity", type=int, default=DEFAULT_MAX_CAPACITY)
    add.add_argument("--slo", dest="slo_miss", type=float, default=0.01, help="acceptable spill share, e.g. 0.01")
    add.add_argument("--duration-s", type=float, default=0.1, help="mean Lambda duration until metrics exist")
    add.add_argument("--memory-mb", type=int, default=1024)
    add.add_argument("--policy", default="predictive")
    add.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.DRY_RUN.value)
    add.add_argument("--max-step-up", type=int)
    add.add_argument("--max-step-down", type=int)
    add.add_argument("--stabilisation-window-s", type=int, default=300)
    add.add_argument("--budget-per-hour", type=float)
    add.add_argument("--scale-out-step-factor", type=float, help="widen the per-step scale-out bound (default 10)")
    add.add_argument("--scale-out-hour-factor", type=float, help="widen the per-hour scale-out bound (default 10)")
    add.add_argument("--scale-out-allowance-per-hour", type=float, help="$/h of capacity both allow (default 10)")
    tsub.add_parser("list", help="list registered targets")
    show = tsub.add_parser("show", help="a target's config, applied state and latest decisions")
    show.add_argument("name")
    show.add_argument("--decisions", type=int, default=5)
    rm = tsub.add_parser("remove", help="unregister a target (its decisions stay as the audit trail)")
    rm.add_argument("name")
    sm = tsub.add_parser("set-mode", help="switch a target between dry-run and active")
    sm.add_argument("name")
    sm.add_argument("mode", choices=[m.value for m in Mode])
    disc = tsub.add_parser("discover", help="find resources tagged forescale:managed=true")
    disc.add_argument("--apply", action="store_true", help="register the discovered targets (in dry-run)")

    for cmd, text in (("pause", "stop all actions at once (the kill switch)"), ("resume", "allow actions again")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("--table", default=os.environ.get("FORESCALE_TABLE"))
        p.add_argument("--reason", default="", required=cmd == "pause")


def _store(table: str | None) -> StateStore:
    if not table:
        raise AdminError("no table: pass --table or set FORESCALE_TABLE (the stack output TableName)")
    import boto3

    return DynamoStateStore(boto3.client("dynamodb"), table)


def _config_from_args(a: argparse.Namespace) -> TargetConfig:
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
                "duration_s": a.duration_s,
                "memory_mb": a.memory_mb,
                "policy": a.policy,
                "mode": a.mode,
                "guardrails": guardrails,
            }
        )
    except ValidationError as exc:
        raise AdminError(f"target {a.name}: {validation_problems(exc)}") from exc


def run_targets(a: argparse.Namespace, store: StateStore | None = None) -> int:
    st = store or _store(a.table)
    cmd = a.targets_command
    if cmd == "add":
        cfg = _config_from_args(a)
        try:
            saved = st.put_target(cfg)
        except ConflictError as exc:
            raise AdminError(f"{exc}; use `forescale targets remove {cfg.name}` first or pick another name") from exc
        print(f"registered {saved.name} ({saved.kind}, {saved.resource_label}) in {saved.mode} mode")
        return 0
    if cmd == "list":
        for r in st.target_records():
            c = r.config
            if c is None:  # stored by an older version or by hand; forescale skips it until fixed or removed
                print(f"{r.name}\tINVALID\t{r.error}")
                continue
            print(
                f"{c.name}\t{c.kind}\t{c.resource_label}\t{c.mode}\t[{c.min_capacity}, {c.max_capacity}]\tv{c.version}"
            )
        return 0
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
        st.put_target(cur.model_copy(update={"mode": Mode(a.mode)}), expected_version=cur.version)
        print(f"{a.name}: {cur.mode} -> {a.mode}")
        return 0
    if cmd == "discover":
        return _discover(a, st)
    raise AdminError(f"unknown targets command {cmd!r}")


def _discover(a: argparse.Namespace, st: StateStore) -> int:
    import boto3

    from forescale.adapters.tagging import TagDiscovery

    drafts, skipped = TagDiscovery(boto3.client("resourcegroupstaggingapi"), boto3.client("sagemaker")).discover()
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
    st = store or _store(a.table)
    paused = a.command == "pause"
    st.set_paused(paused, a.reason, int(time.time()))
    print("paused: act applies nothing until `forescale resume`" if paused else "resumed: act applies decisions again")
    return 0


def main(a: argparse.Namespace, store: StateStore | None = None) -> int:
    try:
        return run_targets(a, store) if a.command == "targets" else run_pause(a, store)
    except AdminError as exc:
        print(f"forescale {a.command}: {exc}", file=sys.stderr)
        return 2
