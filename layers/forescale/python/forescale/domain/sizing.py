"""Capacity math: Erlang B for Lambda provisioned concurrency, instance counts for SageMaker.

Provisioned environments take requests first and overflow goes on-demand, so the provisioned pool
is a loss system and the share of requests that spill is Erlang B(P, m) for offered load m
(Poisson arrivals, any duration distribution). Offered load comes from Little's law.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from forescale.domain.targets import InstanceType

# Beyond this many environments the exact recursion is still cheap, but no real account goes there.
MAX_LAMBDA_CONCURRENCY = 100_000


def _finite(**values: float) -> None:
    for name, v in values.items():
        if not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v}")


def offered_load(rate_rps: float, duration_s: float) -> float:
    """Concurrent executions needed on average (Little's law): arrivals/s × seconds each."""
    _finite(rate_rps=rate_rps, duration_s=duration_s)
    if rate_rps < 0 or duration_s < 0:
        raise ValueError(f"rate_rps ({rate_rps}) and duration_s ({duration_s}) must be >= 0")
    return rate_rps * duration_s


def erlang_b(servers: int, load: float) -> float:
    """Share of arrivals that find all `servers` busy at offered `load` (Erlang B).

    Uses the stable recursion 1/B(k) = 1 + (k/m)/B(k-1) on the inverse.
    """
    _finite(load=load)
    if servers < 0 or load < 0:
        raise ValueError(f"servers ({servers}) and load ({load}) must be >= 0")
    if load == 0:
        return 0.0
    inv = 1.0
    for k in range(1, servers + 1):
        inv = 1.0 + (k / load) * inv
        if inv > 1e300:
            return 0.0
    return 1.0 / inv


def lambda_concurrency_for(load: float, max_spill: float) -> int:
    """Smallest P with Erlang B(P, load) <= max_spill: provisioned environments for an SLO.

    0 for no load. `max_spill` is the acceptable share of requests that go on-demand. The search
    stops at MAX_LAMBDA_CONCURRENCY (far above any account's concurrency limit).
    """
    if not 0 < max_spill < 1:
        raise ValueError(f"max_spill must be in (0, 1), got {max_spill}")
    _finite(load=load)
    if load < 0:
        raise ValueError(f"load must be >= 0, got {load}")
    if load == 0:
        return 0
    inv = 1.0
    k = 0
    threshold = 1.0 / max_spill
    while inv < threshold:
        k += 1
        inv = 1.0 + (k / load) * inv
        if k >= MAX_LAMBDA_CONCURRENCY:
            break
    return k


def sagemaker_instances(rate_rps: float, capacity_rps: float, min_instances: int = 1) -> int:
    """N = ceil(rate / per-instance capacity), at least `min_instances`."""
    _finite(rate_rps=rate_rps, capacity_rps=capacity_rps)
    if capacity_rps <= 0:
        raise ValueError(f"capacity_rps must be > 0, got {capacity_rps}")
    if rate_rps < 0:
        raise ValueError(f"rate_rps must be >= 0, got {rate_rps}")
    return max(min_instances, math.ceil(rate_rps / capacity_rps - 1e-9))


@dataclass(frozen=True, slots=True)
class Fleet:
    """A single-type SageMaker fleet and its hourly price."""

    instance_type: str
    instances: int
    price_per_hour: float


def cheapest_fleet(rate_rps: float, catalog: Sequence[InstanceType], min_instances: int = 1) -> Fleet:
    """The cheapest single-type fleet that serves `rate_rps` (ties go to the larger capacity)."""
    if not catalog:
        raise ValueError("the instance catalog is empty")
    best: Fleet | None = None
    best_key: tuple[float, float, str] | None = None
    for it in catalog:
        n = sagemaker_instances(rate_rps, it.capacity_rps, min_instances)
        price = n * it.price_per_hour
        key = (round(price, 9), -n * it.capacity_rps, it.name)
        if best_key is None or key < best_key:
            best, best_key = Fleet(it.name, n, price), key
    assert best is not None  # nosec B101  # the catalog is non-empty (checked above); narrows the type for mypy
    return best


def type_switch_pays(
    current: Fleet,
    candidate: Fleet,
    horizon_s: float,
    switch_s: float = 600,
) -> bool:
    """Whether moving to `candidate` saves more over `horizon_s` than the blue/green switch costs.

    During a blue/green switch both fleets are billed for `switch_s`, so the switch costs the new
    fleet's price for that long. The old fleet keeps serving meanwhile.
    """
    if candidate.instance_type == current.instance_type:
        return False
    saving = (current.price_per_hour - candidate.price_per_hour) * horizon_s / 3600
    switch_cost = candidate.price_per_hour * switch_s / 3600
    return saving > switch_cost


def cost_optimal_instances(
    demand_scenarios_rps: Sequence[float],
    capacity_rps: float,
    price_per_hour: float,
    miss_cost_usd: float,
    min_instances: int = 0,
    max_instances: int = 100_000,
) -> int:
    """Instances that minimise instance cost + `miss_cost_usd` × expected violating requests.

    The scenarios are equally likely demand rates (for example the forecast scaled by the quantiles
    of its own recent errors). Adding one instance removes, per second, the expected demand between
    n and n+1 instances' capacity; it is worth it while that saving beats the instance's price.
    """
    if capacity_rps <= 0 or price_per_hour < 0 or miss_cost_usd < 0:
        raise ValueError("capacity_rps must be > 0, price_per_hour and miss_cost_usd >= 0")
    if not demand_scenarios_rps:
        return min_instances
    k = len(demand_scenarios_rps)
    price_per_s = price_per_hour / 3600
    n = min_instances
    while n < max_instances:
        low = n * capacity_rps
        saved = sum(min(capacity_rps, d - low) for d in demand_scenarios_rps if d > low) / k
        if miss_cost_usd * saved <= price_per_s:
            break
        n += 1
    return n


def cost_optimal_concurrency(
    load_scenarios: Sequence[float],
    duration_s: float,
    price_per_env_hour: float,
    miss_cost_usd: float,
    max_concurrency: int = MAX_LAMBDA_CONCURRENCY,
) -> int:
    """Provisioned environments that minimise their cost + `miss_cost_usd` × expected spilled requests.

    The scenarios are equally likely offered loads (concurrent executions). Spilled requests per
    second at P environments are rate × Erlang B(P, m) with rate = m / duration; environment P+1 is
    worth it while the spill it removes, priced at `miss_cost_usd`, beats its price.
    """
    if duration_s <= 0 or price_per_env_hour < 0 or miss_cost_usd < 0:
        raise ValueError("duration_s must be > 0, price_per_env_hour and miss_cost_usd >= 0")
    loads = [m for m in load_scenarios if m > 0]
    if not loads:
        return 0
    k = len(load_scenarios)
    price_per_s = price_per_env_hour / 3600
    inv = [1.0] * len(loads)  # 1 / Erlang B(P, m) per scenario, P = 0
    spill_prev = sum(m / duration_s for m in loads) / k  # all requests spill with no environment
    p = 0
    while p < max_concurrency:
        p += 1
        spill = 0.0
        for i, m in enumerate(loads):
            inv[i] = 1.0 + (p / m) * inv[i] if inv[i] < 1e300 else inv[i]
            spill += (m / duration_s) / inv[i]
        spill /= k
        # Erlang B is convex and decreasing in P, so the first environment not worth its price ends it.
        if miss_cost_usd * (spill_prev - spill) <= price_per_s:
            return p - 1
        spill_prev = spill
    return p
