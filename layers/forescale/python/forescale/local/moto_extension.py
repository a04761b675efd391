"""The stable import path for the moto extension; the emulation itself is the `moto_ext` package.

See `forescale.local.moto_ext` for exactly which APIs and behaviours are emulated and the AWS rule
each check follows.
"""

from forescale.local.moto_ext import (
    expire_items,
    fail_next_provisioned_allocation,
    gpu_instance_types,
    install,
    reset,
    set_account_concurrency_limit,
    set_clock,
    set_ready_delays,
)

__all__ = [
    "expire_items",
    "fail_next_provisioned_allocation",
    "gpu_instance_types",
    "install",
    "reset",
    "set_account_concurrency_limit",
    "set_clock",
    "set_ready_delays",
]
