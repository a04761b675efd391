"""Each Lambda's settings, read from its environment into a typed model.

The CDK stack sets exactly these variables on each function; a test checks that the function's
environment keys equal its model's fields (the contract between infra/ and functions/).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class FunctionSettings(BaseModel):
    """What every forescale function needs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    TABLE_NAME: str = Field(min_length=3)
    EVENT_BUS_NAME: str = Field(min_length=1)
    POWERTOOLS_SERVICE_NAME: str = "forescale"
    POWERTOOLS_METRICS_NAMESPACE: str = "forescale"
    POWERTOOLS_LOG_LEVEL: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        source = os.environ if env is None else env
        return cls.model_validate({k: source[k] for k in cls.model_fields if k in source})


class CollectSettings(FunctionSettings):
    SAMPLE_TTL_DAYS: PositiveInt = 15
    DETAIL_EVERY_MINUTES: PositiveInt = 15  # duration/concurrency/latency/GPU per target every N minutes
    REREAD_MINUTES: PositiveInt = 5  # re-read this many recent minutes: CloudWatch corrects late datapoints
    METRIC_DELAY_S: int = Field(default=120, ge=0, description="CloudWatch publishes a minute late; read this far back")
    TARGET_METRICS: str = ""  # comma-separated targets whose per-target dashboard metrics are emitted (opt-in)
    POLL_EVERY_MINUTES: PositiveInt = 1  # read each target every N minutes (N minutes at a time): price / N
    TAG_DISCOVERY: bool = False  # also manage resources tagged forescale:managed=true (Resource Groups Tagging API)
    DEFAULT_MODE: Literal["dry-run", "active"] = "dry-run"  # mode of a target registered by tag discovery
    # Fleet scale: a warm process lists registered targets at most this often (0: every run; the stack: 15 min).
    LIST_TARGETS_EVERY_S: int = Field(default=0, ge=0, description="list registered targets at most this often")


class ForecastSettings(FunctionSettings):
    HISTORY_DAYS: PositiveInt = 14
    HORIZON_S: PositiveInt = 86_400
    SHARD_COUNT: PositiveInt = 1
    # Fleet scale (runtime/forecast.py). The defaults keep replay's refit moments (the demo equals
    # replay); the stack staggers daily refits over the day and lists targets every 15 minutes.
    REFIT_SPREAD_S: int = Field(default=0, ge=0, le=86_400, description="spread daily refits by name over this")
    MAX_REFITS_PER_RUN: PositiveInt = 2000  # more wait for the next cycle (so does whatever the time left allows)
    LIST_TARGETS_EVERY_S: int = Field(default=0, ge=0, description="list registered targets at most this often")


class PlanSettings(FunctionSettings):
    HISTORY_WARMUP_S: PositiveInt = 86_400


class ActSettings(FunctionSettings):
    LAMBDA_CALLS_PER_SECOND: float = Field(default=15.0, gt=0, le=15.0)
    LEASE_S: PositiveInt = 120
    ROLLBACK_ALARM_NAMES: str = ""  # comma-separated CloudWatch alarms for SageMaker blue/green rollbacks


class ReactSettings(FunctionSettings):
    ALARM_PREFIX: str = "forescale-"


class RightsizeSettings(FunctionSettings):
    HORIZON_S: PositiveInt = 86_400
