"""Guardrails: small pure functions that shape a recommended capacity into a safe decision.

They compose as a chain, like the Kubernetes VPA's post-processors, in this order:

0. hold on missing data (never scale in when metrics are missing);
1. clamp to min/max;
2. account headroom (Lambda: 100 unreserved concurrency stays free; provisioned <= reserved);
3. maximum step;
3a. scale-out per step: at most `scale_out_step_factor` × current (or current + the allowance);
3b. scale-out per hour: at most `scale_out_hour_factor` × the largest capacity decided between a day
    and an hour ago (or that peak + the allowance), once there is an hour of decisions;
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

The two scale-out bounds are on by default, so that a poisoned metric (one huge sample) cannot take a
target to `max_capacity`: they bound what a bad input can cost per hour. Their defaults are generous
next to real flash crowds (measured on the shared traces, sized for the observed demand: a GPU
endpoint grows at most 7× in a step (azure-llm-2023's code service, 10 s steps) and 1.9× over its
peak of the day before the last hour; the steepest Lambda client, servegen-large 073, grows 122×
from 2 to 220 environments, which the $10/h allowance covers). The allowance, in
$/hour of capacity, lets small and cheap targets grow from near zero; an operator widens the bounds
per target or turns them off (`None`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from forescale.domain.targets import DEFAULT_MAX_CAPACITY

LAMBDA_MIN_UNRESERVED = 100  # AWS keeps this much account concurrency unreserved
# Scale-out bounds on by default (see the module docstring for the traces they were checked on).
DEFAULT_SCALE_OUT_STEP_FACTOR = 10.0
DEFAULT_SCALE_OUT_HOUR_FACTOR = 10.0
DEFAULT_SCALE_OUT_ALLOWANCE_PER_HOUR = 10.0  # $/hour of capacity either bound allows on top of its factor


@dataclass(frozen=True, slots=True)
class GuardrailSettings:
    """Per-target knobs. `None` disables a limit. Steps are in capacity units (environments, instances).

    `scale_out_step_factor` and `scale_out_hour_factor` bound growth relative to the current capacity
    and to the peak decided between a day and an hour ago; `scale_out_allowance_per_hour` ($/hour) is
    the capacity both allow on top, whatever the factor, so that a target near zero can still grow.
    """

    min_capacity: int = 0
    max_capacity: int = DEFAULT_MAX_CAPACITY
    max_step_up: int | None = None
    max_step_down: int | None = None
    stabilisation_window_s: int = 0
    scale_out_cooldown_s: int = 0
    scale_in_cooldown_s: int = 0
    dead_band: float = 0.0
    budget_per_hour: float | None = None
    scale_out_step_factor: float | None = DEFAULT_SCALE_OUT_STEP_FACTOR
    scale_out_hour_factor: float | None = DEFAULT_SCALE_OUT_HOUR_FACTOR
    scale_out_allowance_per_hour: float = DEFAULT_SCALE_OUT_ALLOWANCE_PER_HOUR

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
        for name in ("scale_out_step_factor", "scale_out_hour_factor"):
            v = getattr(self, name)
            if v is not None and not 1 <= v < math.inf:
                raise ValueError(f"{name} must be a finite number >= 1 or None, got {v}")
        if not 0 <= self.scale_out_allowance_per_hour < math.inf:
            raise ValueError(
                f"scale_out_allowance_per_hour must be a finite number >= 0, got {self.scale_out_allowance_per_hour}"
            )


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
    # The largest capacity decided between a day and an hour ago; None with under an hour of decisions.
    peak_before_last_hour: int | None = None


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


def _allowance_units(ctx: GuardrailContext) -> int:
    """Capacity units that `scale_out_allowance_per_hour` buys ($/hour over $/hour of one unit); free
    (unpriced) capacity is unbounded, as the budget treats it."""
    if ctx.unit_price_per_hour <= 0:
        return 2**31 - 1
    return int(min(ctx.settings.scale_out_allowance_per_hour / ctx.unit_price_per_hour + 1e-9, 2**31 - 1))


def _scale_out_bound(p: Proposal, ctx: GuardrailContext, name: str, base: int, factor: float, of: str) -> Proposal:
    """Cap a scale-out at max(base × factor, base + the allowance); never below current or the floor."""
    if p.capacity <= ctx.current:
        return p
    allowance = _allowance_units(ctx)
    limit = max(math.ceil(min(base * factor, 2**31 - 1) - 1e-9), base + allowance)
    if p.capacity <= limit:
        return p
    new = p.bounded(max(limit, ctx.current))
    return p.shaped(
        name,
        new,
        f"{name}: {ctx.current}→{p.capacity} capped at {new}, {factor:g}× {of} {base}"
        f" or +{allowance} (${ctx.settings.scale_out_allowance_per_hour:g}/h)",
    )


def scale_out_per_step(p: Proposal, ctx: GuardrailContext) -> Proposal:
    """One decision may raise capacity to at most `scale_out_step_factor` × current (or + the allowance)."""
    factor = ctx.settings.scale_out_step_factor
    if factor is None:
        return p
    return _scale_out_bound(p, ctx, "scale-out-step", ctx.current, factor, "the current")


def scale_out_per_hour(p: Proposal, ctx: GuardrailContext) -> Proposal:
    """Capacity may reach at most `scale_out_hour_factor` × the peak decided between a day and an hour
    ago (or that peak + the allowance): a poisoned metric costs a bounded amount per hour."""
    factor = ctx.settings.scale_out_hour_factor
    if factor is None or ctx.peak_before_last_hour is None:
        return p
    return _scale_out_bound(p, ctx, "scale-out-hour", ctx.peak_before_last_hour, factor, "the peak an hour ago")


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
    scale_out_per_step,
    scale_out_per_hour,
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
