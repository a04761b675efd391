"""forescale's own evaluation of decisions against a trace: misses, capacity cost, and the oracle.

It follows the yardstick's model (../shared/bench/README.md) so that the numbers `replay` and the
demo print agree with the independent scorer (a test checks within 1 %):
- decisions take effect after the actuation lead times (`ActuationModel`);
- steps longer than 60 s are split into 60 s sub-steps, requests spread evenly;
- Lambda: spilled requests = requests × Erlang B(P, m), m = rate × duration; cost per GB-second;
- SageMaker: requests above N × capacity_rps are violations; cost = instance-hours, and a type
  switch bills the new fleet for the switch time as well (blue/green);
- source gaps count for nothing, for the policy and the oracle alike;
- the oracle sizes every step from that step's own demand with zero lead time.
numpy is used here (the replay/bench side), never in the light Lambdas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from forescale.domain.targets import (
    LAMBDA_ON_DEMAND_PRICE_PER_GB_S,
    LAMBDA_PC_DURATION_PRICE_PER_GB_S,
    LAMBDA_PC_PRICE_PER_GB_S,
    Target,
)
from forescale.replay.actuation import ActuationModel
from forescale.replay.engine import DecisionRow
from forescale.replay.trace import Trace


@dataclass(frozen=True, slots=True)
class TargetScore:
    target: str
    kind: str
    requests: float
    missed: float
    capacity_cost_usd: float
    oracle_capacity_cost_usd: float
    cost_usd: float
    api_calls: int

    @property
    def miss_pct(self) -> float:
        return 100 * self.missed / self.requests if self.requests else 0.0

    @property
    def capacity_vs_oracle(self) -> float | None:
        return self.capacity_cost_usd / self.oracle_capacity_cost_usd if self.oracle_capacity_cost_usd else None


@dataclass(frozen=True, slots=True)
class Score:
    targets: dict[str, TargetScore]

    def overall(self, kind: str | None = None) -> TargetScore:
        rs = [r for r in self.targets.values() if kind is None or r.kind == kind]
        return TargetScore(
            "overall",
            kind or "all",
            sum(r.requests for r in rs),
            sum(r.missed for r in rs),
            sum(r.capacity_cost_usd for r in rs),
            sum(r.oracle_capacity_cost_usd for r in rs),
            sum(r.cost_usd for r in rs),
            sum(r.api_calls for r in rs),
        )

    def to_dict(self) -> dict[str, Any]:
        def one(r: TargetScore) -> dict[str, Any]:
            return {
                "kind": r.kind,
                "requests": r.requests,
                "missed": r.missed,
                "miss_pct": r.miss_pct,
                "capacity_cost_usd": r.capacity_cost_usd,
                "oracle_capacity_cost_usd": r.oracle_capacity_cost_usd,
                "capacity_vs_oracle": r.capacity_vs_oracle,
                "cost_usd": r.cost_usd,
                "api_calls": r.api_calls,
            }

        return {"overall": one(self.overall()), "targets": {k: one(v) for k, v in self.targets.items()}}


def _erlang_b(np: Any, p: Any, m: Any) -> Any:
    inv = np.ones(m.shape)
    safe = np.where(m > 0, m, 1.0)
    with np.errstate(over="ignore"):
        for k in range(1, int(p.max(initial=0)) + 1):
            inv = np.where(p >= k, 1.0 + (k / safe) * inv, inv)
    return np.where(m > 0, 1.0 / inv, 0.0)


def _lambda_oracle(np: Any, m: Any, eps: float) -> Any:
    out = np.zeros(m.shape, dtype=np.int64)
    todo = m > 0
    inv = np.ones(m.shape)
    safe = np.where(todo, m, 1.0)
    k = 0
    with np.errstate(over="ignore"):
        while todo.any():
            k += 1
            inv = 1.0 + (k / safe) * inv
            hit = todo & (inv >= 1.0 / eps)
            out[hit] = k
            todo &= ~hit
    return out


def evaluate(trace: Trace, rows: Iterable[DecisionRow], eps: float = 0.01) -> Score:
    """Score decision rows against `trace` with the yardstick's model."""
    import numpy as np

    by_target: dict[str, list[DecisionRow]] = {name: [] for name in trace.targets}
    for r in rows:
        if r.target not in by_target:
            raise ValueError(f"decision for unknown target {r.target}")
        by_target[r.target].append(r)
    sub = math.gcd(trace.step_s, 60)
    k = trace.step_s // sub
    n = trace.steps * k
    times = [trace.start + j * sub for j in range(n)]
    # Gaps are [start, end) in seconds: mask the sub-steps, as the yardstick does after refining.
    sub_times = np.array(times)
    gap = np.zeros(n, dtype=bool)
    for a, b in trace.gaps:
        gap |= (sub_times >= a) & (sub_times < b)
    valid = ~gap
    out: dict[str, TargetScore] = {}
    for name, tt in trace.targets.items():
        target = tt.to_target()
        req = np.where(valid, np.repeat(np.array(tt.requests, dtype=float) / k, k), 0.0)
        caps, types, extra = _effective(target, by_target[name], times)
        cap = np.where(valid, np.array(caps, dtype=float), 0.0)
        calls = _api_calls(by_target[name])
        if target.is_lambda:
            out[name] = _score_lambda(np, target, req, cap, sub, eps, calls)
        else:
            out[name] = _score_sagemaker(np, target, req, cap, types, extra, sub, valid, calls)
    return Score(out)


def _effective(
    target: Target, rows: Sequence[DecisionRow], times: Sequence[int]
) -> tuple[list[int], list[str | None], float]:
    initial = 0 if target.is_lambda else max(target.min_capacity, 0)
    itype = None if target.is_lambda else target.cheapest_type().name
    model = ActuationModel(target, initial, itype)
    extra = 0.0
    caps: list[int] = []
    types: list[str | None] = []
    j = 0
    for t in times:
        while j < len(rows) and rows[j].decided_at <= t:
            r = rows[j]
            if not target.is_lambda and r.instance_type and r.instance_type != model.requested_type:
                extra += (
                    r.capacity
                    * target.instance(r.instance_type).price_per_hour
                    * target.lead_times.type_change_s
                    / 3600
                )
            model.record(r.decided_at, r.capacity, r.instance_type)
            j += 1
        c, ty = model.at(t)
        caps.append(c)
        types.append(ty)
    return caps, types, extra


def _api_calls(rows: Sequence[DecisionRow]) -> int:
    calls = 0
    prev: tuple[int, str | None] | None = None
    for r in rows:
        key = (r.capacity, r.instance_type)
        if prev is None or key != prev:
            calls += 1
        prev = key
    return calls


def _score_lambda(np: Any, t: Target, req: Any, cap: Any, step: int, eps: float, calls: int) -> TargetScore:
    gb = t.memory_mb / 1024
    m = req / step * t.duration_s
    spilled = req * _erlang_b(np, cap.astype(np.int64), m)
    oracle = np.where(req > 0, _lambda_oracle(np, m, eps), 0)
    pc = float((cap * step * gb).sum() * LAMBDA_PC_PRICE_PER_GB_S)
    served = float(((req - spilled) * t.duration_s * gb).sum())
    cost = (
        pc
        + served * LAMBDA_PC_DURATION_PRICE_PER_GB_S
        + float((spilled * t.duration_s * gb).sum() * LAMBDA_ON_DEMAND_PRICE_PER_GB_S)
    )
    return TargetScore(
        t.name,
        "lambda",
        float(req.sum()),
        float(spilled.sum()),
        pc,
        float((oracle * step * gb).sum() * LAMBDA_PC_PRICE_PER_GB_S),
        cost,
        calls,
    )


def _score_sagemaker(
    np: Any, t: Target, req: Any, cap: Any, types: list[str | None], extra: float, step: int, valid: Any, calls: int
) -> TargetScore:
    specs = {it.name: it for it in t.catalog}
    cap_rps = np.array([specs[ty].capacity_rps for ty in types if ty])
    price = np.array([specs[ty].price_per_hour for ty in types if ty])
    served_max = cap * cap_rps * step
    over = np.maximum(0.0, req - served_max)
    rate = req / step
    best = np.full(req.shape, np.inf)
    for it in t.catalog:
        n = np.where(valid, np.maximum(np.ceil(rate / it.capacity_rps - 1e-9), t.min_capacity), 0)
        best = np.minimum(best, n * it.price_per_hour)
    cost = float((cap * price).sum() * step / 3600 + extra)
    return TargetScore(
        t.name, "sagemaker", float(req.sum()), float(over.sum()), cost, float(best.sum() * step / 3600), cost, calls
    )
