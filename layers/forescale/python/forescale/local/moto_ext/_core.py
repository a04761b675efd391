"""Shared pieces of the moto extension: the knobs, the injectable clock and the one lock.

Everything here is process-wide configuration, not AWS state: the emulated AWS state lives on moto's
own per-account, per-region backend objects (see `_lambda.py` and `_sagemaker.py`), so moto's reset
clears it with everything else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

DEFAULT_ACCOUNT_CONCURRENCY_LIMIT = 1000
"""Lambda's default concurrent-executions quota per account and region (AWS Lambda quotas page)."""

MINIMUM_UNRESERVED_CAP = 100
"""Lambda keeps at least 100 concurrency unreserved; accounts whose limit is below 100 keep all of it."""

DEFAULT_PROVISIONED_READY_AFTER_S = 60.0
DEFAULT_ENDPOINT_UPDATE_AFTER_S = 300.0

# One re-entrant lock around every read-modify-write of emulated state. moto itself is not
# thread-safe; the threaded server runs each request on its own thread, so the emulation serialises
# its own check-then-write sequences (the account-wide sums) instead of trusting moto to.
LOCK = threading.RLock()


@dataclass
class Settings:
    """The knobs. Times are seconds on `clock`, which returns seconds since the epoch."""

    clock: Callable[[], float] = time.time
    account_concurrency_limit: int = DEFAULT_ACCOUNT_CONCURRENCY_LIMIT
    minimum_unreserved: int | None = None  # None: min(100, limit), as AWS does for small accounts
    provisioned_ready_after_s: float = DEFAULT_PROVISIONED_READY_AFTER_S
    endpoint_update_after_s: float = DEFAULT_ENDPOINT_UPDATE_AFTER_S
    # (function name, qualifier) -> StatusReason for the next allocation of that config, any account/region.
    failing_allocations: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def unreserved_floor(self) -> int:
        """Concurrency that must stay unreserved (executions)."""
        if self.minimum_unreserved is not None:
            return self.minimum_unreserved
        return min(MINIMUM_UNRESERVED_CAP, self.account_concurrency_limit)


SETTINGS = Settings()


def now() -> float:
    """The emulation's current time (s since the epoch), from the injected clock."""
    return float(SETTINGS.clock())


def to_datetime(epoch_s: float) -> datetime:
    """A clock reading as an aware UTC datetime (SageMaker timestamps)."""
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def moto_datetime(epoch_s: float) -> datetime:
    """A clock reading as the naive UTC datetime moto stores (it compares timestamps naively)."""
    return to_datetime(epoch_s).replace(tzinfo=None)


def lambda_timestamp(epoch_s: float) -> str:
    """A clock reading in Lambda's LastModified format, e.g. `2024-05-01T12:00:00.000+0000`."""
    moment = to_datetime(epoch_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def restore_defaults() -> None:
    """Put every knob back to its default (the real clock, 1000 concurrency, 60 s / 300 s delays)."""
    # In place, so every module that imported SETTINGS sees the change.
    with LOCK:
        SETTINGS.__dict__.update(Settings().__dict__)


# ---------------------------------------------------------------- moto's instance tracker

# Models written on every request of a long simulated run: every DynamoDB write builds new `Item`s and
# every SQS send a `Message`.
CHURNING_MODELS = (("moto.dynamodb.models.dynamo_type", "Item"), ("moto.sqs.models", "Message"))


def untrack_churning_models() -> None:
    """Stop moto keeping every DynamoDB item and SQS message it ever built.

    moto's `BaseModel.__new__` appends each instance to its class's `instances_tracked`, which only
    moto's dashboard (`/moto-api/data.json`) reads and only a reset empties. Item versions that were
    overwritten or deleted stay reachable there: 18,660 of them after 144 simulated minutes of the
    demo, against 1,602 items in its table, about 830 MB a simulated day. AWS keeps nothing of the
    sort. The tables and queues themselves are untouched; only the dashboard no longer lists these two
    models.
    """
    import importlib

    for module_name, class_name in CHURNING_MODELS:
        cls = getattr(importlib.import_module(module_name), class_name)
        if "__new__" not in vars(cls):
            cls.__new__ = staticmethod(_new_untracked)
        cls.instances_tracked = []


def _new_untracked(cls: type, *args: object, **kwargs: object) -> object:
    return object.__new__(cls)
