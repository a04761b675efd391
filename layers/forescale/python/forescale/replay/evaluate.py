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
from typing import TYPE_CHECKING, Any

from forescale.domain.targets import (
    LAMBDA_ON_DEMAND_PRICE_PER_GB_S,
    LAMBDA_PC_DURATION_PRICE_PER_GB_S,
    LAMBDA_PC_PRICE_PER_GB_S,
    Target,
)
from forescale.replay.actuation import ActuationModel
from forescale.replay.engine import DecisionRow
from forescale.replay.trace import Trace

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


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


# --- per-step view (charts and reports) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepSeries:
    """One target's evaluation step by step, on the scorer's grid of `step_s` seconds (≤ 60 s sub-steps).

    Every array has one value per sub-step, starting at `times[i]` (epoch seconds, UTC). It follows
    `evaluate()` exactly, so its sums are that function's totals:
    - `requests.sum()` is `TargetScore.requests` and `missed.sum()` is `TargetScore.missed`;
    - `capacity_cost_usd.sum() + switch_cost_usd` is `TargetScore.capacity_cost_usd`;
    - `oracle_cost_usd.sum()` is `TargetScore.oracle_capacity_cost_usd`.

    `capacity` is what was in force at each sub-step (environments or instances of `instance_type`),
    gaps included, since that is what the policy held; the sums leave gaps out, as the scorer does.
    `capacity_rps` is the request rate that capacity serves within `eps` (Lambda: the largest offered
    rate with Erlang B(P, m) ≤ eps; SageMaker: N × the type's capacity_rps). The oracle fields are
    the zero-lead-time, perfect-foresight sizing of each sub-step.
    """

    target: str
    kind: str
    step_s: int
    eps: float
    times: npt.NDArray[np.int64]
    gap: npt.NDArray[np.bool_]
    requests: npt.NDArray[np.float64]
    capacity: npt.NDArray[np.int64]
    instance_type: tuple[str | None, ...]
    capacity_rps: npt.NDArray[np.float64]
    missed: npt.NDArray[np.float64]
    capacity_cost_usd: npt.NDArray[np.float64]
    switch_cost_usd: float
    oracle_capacity: npt.NDArray[np.int64]
    oracle_instance_type: tuple[str | None, ...]
    oracle_missed: npt.NDArray[np.float64]
    oracle_cost_usd: npt.NDArray[np.float64]


def per_step(trace: Trace, rows: Iterable[DecisionRow], target: str, eps: float = 0.01) -> StepSeries:
    """`evaluate()` for one target, kept per sub-step: capacity in force, what it serves, misses, cost.

    `rows` may hold every target's decisions; only `target`'s are used. Raises `KeyError` naming the
    known targets when `target` is not in the trace.
    """
    import numpy as np

    if target not in trace.targets:
        raise KeyError(f"target {target} is not in the trace; it has {', '.join(sorted(trace.targets))}")
    mine = [r for r in rows if r.target == target]
    t = trace.targets[target].to_target()
    sub = math.gcd(trace.step_s, 60)
    k = trace.step_s // sub
    n = trace.steps * k
    times = np.arange(n, dtype=np.int64) * sub + trace.start
    gap = np.zeros(n, dtype=bool)
    for a, b in trace.gaps:
        gap |= (times >= a) & (times < b)
    valid = ~gap
    req = np.where(valid, np.repeat(np.array(trace.targets[target].requests, dtype=float) / k, k), 0.0)
    caps, types, extra = _effective(t, mine, [int(x) for x in times])
    held = np.array(caps, dtype=np.int64)
    cap = np.where(valid, held, 0)
    rate = req / sub
    if t.is_lambda:
        gb = t.memory_mb / 1024
        m = rate * t.duration_s
        missed = req * _erlang_b(np, cap, m)
        oracle = np.where(req > 0, _lambda_oracle(np, m, eps), 0).astype(np.int64)
        oracle_missed = req * _erlang_b(np, oracle, m)
        capacity_cost = cap * sub * gb * LAMBDA_PC_PRICE_PER_GB_S
        oracle_cost = oracle * sub * gb * LAMBDA_PC_PRICE_PER_GB_S
        serves = _lambda_rate_within(np, held, eps) / t.duration_s
        oracle_types: tuple[str | None, ...] = (None,) * n
    else:
        specs = {it.name: it for it in t.catalog}
        cap_rps = np.array([specs[ty].capacity_rps if ty else 0.0 for ty in types])
        price = np.array([specs[ty].price_per_hour if ty else 0.0 for ty in types])
        missed = np.maximum(0.0, req - cap * cap_rps * sub)
        capacity_cost = cap * price * sub / 3600
        serves = held * cap_rps
        # The oracle's cheapest single-type fleet; ties go to the earlier catalog entry, as in evaluate().
        best = np.full(n, np.inf)
        oracle = np.zeros(n, dtype=np.int64)
        pick = np.full(n, -1)
        for i, it in enumerate(t.catalog):
            count = np.where(valid, np.maximum(np.ceil(rate / it.capacity_rps - 1e-9), t.min_capacity), 0)
            cost = count * it.price_per_hour
            better = cost < best
            best = np.where(better, cost, best)
            oracle = np.where(better, count, oracle).astype(np.int64)
            pick = np.where(better, i, pick)
        oracle_cost = best * sub / 3600
        oracle_rps = np.array([t.catalog[i].capacity_rps for i in pick])
        oracle_missed = np.maximum(0.0, req - oracle * oracle_rps * sub)
        oracle_types = tuple(t.catalog[i].name for i in pick)
    return StepSeries(
        target=target,
        kind="lambda" if t.is_lambda else "sagemaker",
        step_s=sub,
        eps=eps,
        times=times,
        gap=gap,
        requests=req,
        capacity=held,
        instance_type=tuple(types),
        capacity_rps=np.asarray(serves, dtype=np.float64),
        missed=np.asarray(missed, dtype=np.float64),
        capacity_cost_usd=np.asarray(capacity_cost, dtype=np.float64),
        switch_cost_usd=extra,
        oracle_capacity=oracle,
        oracle_instance_type=oracle_types,
        oracle_missed=np.asarray(oracle_missed, dtype=np.float64),
        oracle_cost_usd=np.asarray(oracle_cost, dtype=np.float64),
    )


def _lambda_rate_within(np: Any, capacity: Any, eps: float) -> Any:
    """Largest offered load m (concurrent executions) with Erlang B(P, m) ≤ eps, for each P in `capacity`.

    Solved by bisection once per distinct P (B rises with m; B(P, 2P + 1) > 1/2 > eps brackets it).
    """
    levels = np.unique(capacity)
    levels = levels[levels > 0]
    if not len(levels):
        return np.zeros(capacity.shape)
    lo = np.zeros(levels.shape)
    hi = 2.0 * levels + 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        ok = _erlang_b(np, levels, mid) <= eps
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    table = dict(zip(levels.tolist(), lo.tolist(), strict=True))
    return np.array([table.get(int(p), 0.0) for p in capacity], dtype=float)
