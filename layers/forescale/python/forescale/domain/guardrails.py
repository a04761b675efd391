"""Guardrails: small pure functions that shape a recommended capacity into a safe decision.

They compose as a chain, like the Kubernetes VPA's post-processors, in this order:

0. hold on missing data (never scale in when metrics are missing);
1. clamp to min/max;
2. account headroom (Lambda: 100 unreserved concurrency stays free; provisioned <= reserved);
3. maximum step;
4. scale-in stabilisation window (the largest recommendation of the last W seconds);
5. cooldown;
6. dead-band;
7. $/hour budget.

Each guardrail receives a `Proposal` and the `GuardrailContext` and returns a new `Proposal`; when it
changes the capacity it records its name and a human-readable note, so every decision says which
guardrail shaped it. `floor` and `ceiling` carry the hard limits set by the early guardrails so that
the later ones never undo them.

Precedence: hard limits outrank the missing-data hold. With data missing, capacity can still drop
when an operator lowers `max_capacity`, when the account ceiling shrinks (other functions reserved
concurrency; AWS would reject more), or when the $/hour budget is exceeded. The account ceiling can
push below `min_capacity` for the same reason: AWS cannot grant it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

LAMBDA_MIN_UNRESERVED = 100  # AWS keeps this much account concurrency unreserved


@dataclass(frozen=True, slots=True)
class GuardrailSettings:
    """Per-target knobs. `None` disables a limit. Steps are in capacity units (environments, instances)."""

    min_capacity: int = 0
    max_capacity: int = 10_000
    max_step_up: int | None = None
    max_step_down: int | None = None
    stabilisation_window_s: int = 0
    scale_out_cooldown_s: int = 0
    scale_in_cooldown_s: int = 0
    dead_band: float = 0.0
    budget_per_hour: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_capacity <= self.max_capacity:
            raise ValueError(f"need 0 <= min_capacity <= max_capacity, got {self.min_capacity}, {self.max_capacity}")
        for name in ("max_step_up", "max_step_down"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v}")
        if not 0 <= self.dead_band < 1:
            raise ValueError(f"dead_band must be in [0, 1), got {self.dead_band}")
        if min(self.stabilisation_window_s, self.scale_in_cooldown_s, self.scale_out_cooldown_s) < 0:
            raise ValueError("windows and cooldowns must be >= 0 seconds")
        if self.budget_per_hour is not None and not self.budget_per_hour >= 0:  # NaN fails too; inf: unlimited
            raise ValueError(f"budget_per_hour must be a number >= 0 ($/hour), got {self.budget_per_hour}")


@dataclass(frozen=True, slots=True)
class AccountHeadroom:
    """Lambda account concurrency as last read (GetAccountSettings and the function's own settings).

    `reserved_elsewhere` is the reserved concurrency of every other function in the account.
    `function_reserved` is this function's reserved concurrency, if set: provisioned may not exceed it.
    For a reserved-concurrency target, pass `function_reserved=None`.
    """

    account_limit: int = 1000
    reserved_elsewhere: int = 0
    function_reserved: int | None = None
    min_unreserved: int = LAMBDA_MIN_UNRESERVED

    def ceiling(self) -> int:
        """The most this target may hold without breaking the account's rules."""
        limit = self.account_limit - self.min_unreserved - self.reserved_elsewhere
        if self.function_reserved is not None:
            limit = min(limit, self.function_reserved)
        return max(0, limit)


@dataclass(frozen=True, slots=True)
class GuardrailContext:
    """What the chain knows about now: the current capacity, recent history and limits."""

    now: int
    current: int
    settings: GuardrailSettings
    unit_price_per_hour: float = 0.0
    data_missing: bool = False
    last_change_at: int | None = None
    recent_recommendations: Sequence[tuple[int, int]] = ()  # (epoch s, capacity), oldest first
    account: AccountHeadroom | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    capacity: int
    floor: int = 0
    ceiling: int = 2**31 - 1
    shaped_by: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def shaped(self, name: str, capacity: int, note: str) -> Proposal:
        if capacity == self.capacity:
            return self
        return replace(self, capacity=capacity, shaped_by=(*self.shaped_by, name), notes=(*self.notes, note))

    def bounded(self, capacity: int) -> int:
        return max(self.floor, min(self.ceiling, capacity))


Guardrail = Callable[[Proposal, GuardrailContext], Proposal]


def hold_on_missing_data(p: Proposal, ctx: GuardrailContext) -> Proposal:
    """Missing metrics are not zero demand: never scale in while data is missing."""
    if ctx.data_missing and p.capacity < ctx.current:
        return p.shaped(
            "missing-data",
            ctx.current,
            f"missing-data: metrics missing, holding {ctx.current} instead of scaling in to {p.capacity}",
        )
    return p


def clamp_min_max(p: Proposal, ctx: GuardrailContext) -> Proposal:
    s = ctx.settings
    p = replace(p, floor=s.min_capacity, ceiling=min(p.ceiling, s.max_capacity))
    if p.capacity < s.min_capacity:
        return p.shaped("min", s.min_capacity, f"min: raised {p.capacity} to the floor {s.min_capacity}")
    if p.capacity > s.max_capacity:
        return p.shaped("max", s.max_capacity, f"max: capped {p.capacity} at {s.max_capacity}")
    return p


def account_headroom(p: Proposal, ctx: GuardrailContext) -> Proposal:
    """Lambda only: keep 100 unreserved concurrency free and provisioned <= reserved."""
    if ctx.account is None:
        return p
    limit = ctx.account.ceiling()
    p = replace(p, ceiling=min(p.ceiling, limit), floor=min(p.floor, limit))
    if p.capacity > limit:
        why = (
            f"function reserved concurrency {ctx.account.function_reserved}"
            if ctx.account.function_reserved is not None and limit == ctx.account.function_reserved
            else f"account limit {ctx.account.account_limit} - {ctx.account.min_unreserved} unreserved"
            f" - {ctx.account.reserved_elsewhere} reserved elsewhere"
        )
        return p.shaped("account-headroom", limit, f"account-headroom: capped {p.capacity} at {limit} ({why})")
    return p


def max_step(p: Proposal, ctx: GuardrailContext) -> Proposal:
    s = ctx.settings
    delta = p.capacity - ctx.current
    if s.max_step_up is not None and delta > s.max_step_up:
        new = p.bounded(ctx.current + s.max_step_up)
        return p.shaped("max-step", new, f"max-step: {ctx.current}→{p.capacity} limited to +{s.max_step_up}")
    if s.max_step_down is not None and -delta > s.max_step_down:
        new = p.bounded(ctx.current - s.max_step_down)
        return p.shaped("max-step", new, f"max-step: {ctx.current}→{p.capacity} limited to -{s.max_step_down}")
    return p


def stabilisation_window(p: Proposal, ctx: GuardrailContext) -> Proposal:
    """Scale in only to the largest recommendation of the last W seconds (never above current)."""
    w = ctx.settings.stabilisation_window_s
    if w <= 0 or p.capacity >= ctx.current:
        return p
    recent = [c for t, c in ctx.recent_recommendations if ctx.now - t < w]
    if not recent:
        return p
    held = p.bounded(min(ctx.current, max(*recent, p.capacity)))
    return p.shaped(
        "stabilisation",
        held,
        f"stabilisation: scale-in {ctx.current}→{p.capacity} held at {held}, "
        f"the largest recommendation of the last {w}s",
    )


def cooldown(p: Proposal, ctx: GuardrailContext) -> Proposal:
    if ctx.last_change_at is None or p.capacity == ctx.current:
        return p
    s = ctx.settings
    wait = s.scale_out_cooldown_s if p.capacity > ctx.current else s.scale_in_cooldown_s
    since = ctx.now - ctx.last_change_at
    if since >= wait:
        return p
    held = p.bounded(ctx.current)
    return p.shaped(
        "cooldown", held, f"cooldown: {ctx.current}→{p.capacity} deferred, last change {since}s ago (< {wait}s)"
    )


def dead_band(p: Proposal, ctx: GuardrailContext) -> Proposal:
    band = ctx.settings.dead_band
    if band <= 0 or ctx.current <= 0 or p.capacity == ctx.current:
        return p
    if abs(p.capacity - ctx.current) / ctx.current >= band:
        return p
    held = p.bounded(ctx.current)
    return p.shaped("dead-band", held, f"dead-band: {ctx.current}→{p.capacity} is under {band:.0%}, keeping {held}")


def budget(p: Proposal, ctx: GuardrailContext) -> Proposal:
    """Cap the $/hour of this target's capacity; the configured floor still wins."""
    cap = ctx.settings.budget_per_hour
    if cap is None or ctx.unit_price_per_hour <= 0:
        return p
    # Compare before flooring: a budget that buys more units than a float can count (cap / price = inf)
    # caps nothing, and for an integer capacity `capacity <= floor(x)` is `capacity <= x`.
    units = cap / ctx.unit_price_per_hour + 1e-9
    if p.capacity <= units:
        return p
    affordable = math.floor(units)
    new = max(p.floor, affordable)
    note = (
        f"budget: {p.capacity} costs ${p.capacity * ctx.unit_price_per_hour:.2f}/h over ${cap:.2f}/h, capped at {new}"
    )
    if new > affordable:
        note += f" (the floor {p.floor} outranks the budget)"
    return p.shaped("budget", new, note)


DEFAULT_CHAIN: tuple[Guardrail, ...] = (
    hold_on_missing_data,
    clamp_min_max,
    account_headroom,
    max_step,
    stabilisation_window,
    cooldown,
    dead_band,
    budget,
)


def apply_chain(recommended: int, ctx: GuardrailContext, chain: Sequence[Guardrail] = DEFAULT_CHAIN) -> Proposal:
    """Run `recommended` through the guardrails in order and return the shaped proposal."""
    if recommended < 0:
        raise ValueError(f"recommended capacity must be >= 0, got {recommended}")
    p = Proposal(capacity=recommended)
    for guard in chain:
        p = guard(p, ctx)
    return p
