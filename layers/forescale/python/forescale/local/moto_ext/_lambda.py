"""Lambda half of the moto extension: provisioned-concurrency configs, GetAccountSettings, and the
account-wide concurrency rules on PutFunctionConcurrency.

The rules and messages, and where they come from, are listed in the package docstring
(`forescale.local.moto_ext`). State: a dict on each moto `LambdaBackend` (one per account and region),
function name -> qualifier -> `ProvisionedConfig`, so moto's reset drops it with the functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from moto.awslambda import urls as lambda_urls
from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaBackend, LambdaFunction, lambda_backends
from moto.awslambda.responses import LambdaResponse
from moto.core.common_types import TYPE_RESPONSE
from moto.utilities.utils import get_partition

from forescale.local.moto_ext import _core

STATE_ATTR = "forescale_provisioned_concurrency"
# Account limits that AWS reports and this emulation does not enforce (bytes).
TOTAL_CODE_SIZE_LIMIT = 80_530_636_800
CODE_SIZE_UNZIPPED_LIMIT = 262_144_000
CODE_SIZE_ZIPPED_LIMIT = 52_428_800
LIST_MAX_ITEMS = 50

MSG_UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
MSG_NOT_ALIAS_OR_VERSION = "The function resource provided must be an alias or a published version."
MSG_NO_CONFIG = "No Provisioned Concurrency Config found for this function"
MSG_OVER_RESERVED = (
    "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function"
)
MSG_PROVISIONED_FLOOR = (
    "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
    "below its minimum value of [{floor}]."
)
MSG_RESERVED_FLOOR = (
    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
    "below its minimum value of [{floor}]."
)
MSG_RESERVED_BELOW_PROVISIONED = (
    "Specified ReservedConcurrentExecutions for function [{reserved}] is less than the function's total "
    "provisioned concurrency [{provisioned}]."
)
MSG_ALIAS_ON_PROVISIONED_VERSION = (
    "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
)
MSG_VERSION_UNDER_PROVISIONED_ALIAS = "Version is pointed by a Provisioned Concurrency alias"
MSG_QUALIFIER_MISMATCH = "The derived qualifier from the function name does not match the specified qualifier."


class LambdaApiError(LambdaClientError):
    """An AWS-shaped Lambda error: JSON body `{"__type", "message"}`, `X-Amzn-ErrorType`, HTTP status."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(error_type, message)
        self.code = status


def _invalid(message: str) -> LambdaApiError:
    return LambdaApiError(400, "InvalidParameterValueException", message)


def _validation(value: object, member: str, constraint: str) -> LambdaApiError:
    return LambdaApiError(
        400,
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}",
    )


def _not_found(message: str) -> LambdaApiError:
    return LambdaApiError(404, "ResourceNotFoundException", message)


def _conflict(message: str) -> LambdaApiError:
    return LambdaApiError(409, "ResourceConflictException", message)


@dataclass
class ProvisionedConfig:
    """One provisioned-concurrency config (executions; times in clock seconds)."""

    requested: int
    allocated_before: int  # environments already allocated when this request arrived; kept until it settles
    ready_at: float
    failure_reason: str | None
    last_modified: str

    def status_at(self, moment: float) -> tuple[str, int, str | None]:
        """(Status, AllocatedProvisionedConcurrentExecutions, StatusReason) at clock time `moment`."""
        if moment < self.ready_at:
            return "IN_PROGRESS", self.allocated_before, None
        if self.failure_reason is not None:
            return "FAILED", self.allocated_before, self.failure_reason
        return "READY", self.requested, None

    def to_json(self, moment: float, *, in_progress: bool = False) -> dict[str, Any]:
        status, allocated, reason = (
            ("IN_PROGRESS", self.allocated_before, None) if in_progress else self.status_at(moment)
        )
        body: dict[str, Any] = {
            "RequestedProvisionedConcurrentExecutions": self.requested,
            # Nothing invokes emulated functions, so every allocated environment is available.
            "AvailableProvisionedConcurrentExecutions": allocated,
            "AllocatedProvisionedConcurrentExecutions": allocated,
            "Status": status,
            "LastModified": self.last_modified,
        }
        if reason is not None:
            body["StatusReason"] = reason
        return body


Store = dict[str, dict[str, ProvisionedConfig]]


def _store(backend: LambdaBackend) -> Store:
    store: Store | None = getattr(backend, STATE_ATTR, None)
    if store is None:
        store = {}
        setattr(backend, STATE_ATTR, store)
    return store


def clear_state() -> None:
    """Drop every provisioned-concurrency config from every existing Lambda backend."""
    with _core.LOCK:
        for backend in _all_backends():
            if hasattr(backend, STATE_ATTR):
                delattr(backend, STATE_ATTR)


def _all_backends() -> Iterator[LambdaBackend]:
    for account_backends in list(lambda_backends.values()):
        yield from list(account_backends.values())


# -- reading moto's Lambda model (its storage is private; these are the only places that touch it)


def _functions(backend: LambdaBackend) -> dict[str, dict[str, Any]]:
    functions: dict[str, dict[str, Any]] = backend._lambdas._functions
    return functions


def _reserved(group: dict[str, Any]) -> int | None:
    latest: LambdaFunction | None = group.get("latest")
    if latest is None or latest.reserved_concurrency is None:
        return None
    return int(latest.reserved_concurrency)


def _function_arn(backend: LambdaBackend, name: str, qualifier: str | None = None) -> str:
    region = backend.region_name
    arn = f"arn:{get_partition(region)}:lambda:{region}:{backend.account_id}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def _aliases(backend: LambdaBackend, name: str) -> dict[str, Any]:
    aliases: dict[str, Any] = backend._lambdas._aliases.get(_function_arn(backend, name), {})
    return aliases


def _has_version(group: dict[str, Any], version: str) -> bool:
    return any(str(fn.version) == version for fn in group.get("versions", []))


def split_function_name(raw: str) -> tuple[str, str | None]:
    """(name, qualifier in the name) from a name, `name:qualifier`, a full ARN or a partial ARN."""
    tail = raw.split(":function:", 1)[1] if ":function:" in raw else raw
    name, _, qualifier = tail.partition(":")
    return name, (qualifier or None)


# -- the rules


@dataclass(frozen=True)
class _Target:
    name: str
    qualifier: str
    group: dict[str, Any]
    alias_version: str | None  # the version an alias points at; None for a version qualifier


def _resolve(backend: LambdaBackend, raw_name: str, qualifier: str | None, *, for_put: bool) -> _Target:
    """Find the function and its alias or published version, raising what AWS raises when absent."""
    name, name_qualifier = split_function_name(unquote(raw_name))
    if name_qualifier and qualifier and name_qualifier != qualifier:
        raise _invalid(MSG_QUALIFIER_MISMATCH)
    qualifier = qualifier or name_qualifier
    if not qualifier:
        raise _validation("null", "qualifier", "Member must not be null")
    if qualifier.upper() == "$LATEST":
        raise _invalid(MSG_UNPUBLISHED if for_put else MSG_NOT_ALIAS_OR_VERSION)
    group = _functions(backend).get(name)
    if group is None:
        raise _not_found(f"Function not found: {_function_arn(backend, name, qualifier)}")
    if qualifier.isdigit():
        if not _has_version(group, qualifier):
            raise _not_found(f"Function not found: {_function_arn(backend, name, qualifier)}")
        return _Target(name, qualifier, group, None)
    alias = _aliases(backend, name).get(qualifier)
    if alias is None:
        raise _not_found(f"Cannot find alias arn: {_function_arn(backend, name, qualifier)}")
    alias_version = str(alias.function_version)
    if for_put and alias_version.upper() == "$LATEST":
        raise _invalid(MSG_UNPUBLISHED)
    return _Target(name, qualifier, group, alias_version)


def _check_conflicts(backend: LambdaBackend, target: _Target, configs: dict[str, ProvisionedConfig]) -> None:
    """An alias and the version it points at cannot both carry a config (ResourceConflictException)."""
    if target.alias_version is not None:
        if target.alias_version in configs:
            raise _conflict(MSG_ALIAS_ON_PROVISIONED_VERSION)
        return
    for alias_name, alias in _aliases(backend, target.name).items():
        if str(alias.function_version) == target.qualifier and alias_name in configs:
            raise _conflict(MSG_VERSION_UNDER_PROVISIONED_ALIAS)


def _reserved_total(backend: LambdaBackend, *, excluding: str | None = None) -> int:
    return sum(
        reserved
        for name, group in _functions(backend).items()
        if name != excluding and (reserved := _reserved(group)) is not None
    )


def _provisioned_on_unreserved(backend: LambdaBackend, *, excluding: tuple[str, str | None]) -> int:
    """Provisioned concurrency of functions without reserved concurrency: it comes out of the unreserved pool.

    `excluding` is (function, qualifier) to leave out; qualifier None leaves out the whole function.
    """
    functions = _functions(backend)
    total = 0
    for name, configs in _store(backend).items():
        group = functions.get(name)
        if group is None or _reserved(group) is not None:
            continue
        for qualifier, config in configs.items():
            if name == excluding[0] and excluding[1] in (None, qualifier):
                continue
            total += config.requested
    return total


def put_provisioned(backend: LambdaBackend, raw_name: str, qualifier: str | None, requested: object) -> dict[str, Any]:
    """PutProvisionedConcurrencyConfig: validate, store IN_PROGRESS, return the 202 body."""
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
        raise _validation(
            requested, "provisionedConcurrentExecutions", "Member must have value greater than or equal to 1"
        )
    settings = _core.SETTINGS
    with _core.LOCK:
        target = _resolve(backend, raw_name, qualifier, for_put=True)
        store = _store(backend)
        configs = store.setdefault(target.name, {})
        _check_conflicts(backend, target, configs)
        reserved = _reserved(target.group)
        if reserved is not None:
            others = sum(c.requested for q, c in configs.items() if q != target.qualifier)
            if others + requested > reserved:
                raise _invalid(MSG_OVER_RESERVED)
        else:
            unreserved_left = (
                settings.account_concurrency_limit
                - _reserved_total(backend)
                - _provisioned_on_unreserved(backend, excluding=(target.name, target.qualifier))
                - requested
            )
            if unreserved_left < settings.unreserved_floor:
                raise _invalid(MSG_PROVISIONED_FLOOR.format(floor=settings.unreserved_floor))
        moment = _core.now()
        previous = configs.get(target.qualifier)
        allocated_before = min(previous.status_at(moment)[1], requested) if previous is not None else 0
        config = ProvisionedConfig(
            requested=requested,
            allocated_before=allocated_before,
            ready_at=moment + settings.provisioned_ready_after_s,
            failure_reason=settings.failing_allocations.pop((target.name, target.qualifier), None),
            last_modified=_core.lambda_timestamp(moment),
        )
        configs[target.qualifier] = config
        # AWS answers every accepted Put with IN_PROGRESS, however short the allocation will be.
        return config.to_json(moment, in_progress=True)


def get_provisioned(backend: LambdaBackend, raw_name: str, qualifier: str | None) -> dict[str, Any]:
    """GetProvisionedConcurrencyConfig at the clock's current time."""
    with _core.LOCK:
        target = _resolve(backend, raw_name, qualifier, for_put=False)
        config = _store(backend).get(target.name, {}).get(target.qualifier)
        if config is None:
            raise LambdaApiError(404, "ProvisionedConcurrencyConfigNotFoundException", MSG_NO_CONFIG)
        return config.to_json(_core.now())


def delete_provisioned(backend: LambdaBackend, raw_name: str, qualifier: str | None) -> None:
    """DeleteProvisionedConcurrencyConfig: idempotent once the alias or version exists."""
    with _core.LOCK:
        target = _resolve(backend, raw_name, qualifier, for_put=False)
        _store(backend).get(target.name, {}).pop(target.qualifier, None)


def list_provisioned(
    backend: LambdaBackend, raw_name: str, marker: str | None, max_items: int | None
) -> dict[str, Any]:
    """ListProvisionedConcurrencyConfigs, paged by an opaque index marker."""
    name, _ = split_function_name(unquote(raw_name))
    if max_items is not None and not 1 <= max_items <= LIST_MAX_ITEMS:
        raise _validation(max_items, "maxItems", f"Member must have value less than or equal to {LIST_MAX_ITEMS}")
    with _core.LOCK:
        if name not in _functions(backend):
            raise _not_found(f"Function not found: {_function_arn(backend, name)}")
        moment = _core.now()
        items = [
            {"FunctionArn": _function_arn(backend, name, qualifier), **config.to_json(moment)}
            for qualifier, config in _store(backend).get(name, {}).items()
        ]
    start = int(marker) if marker and marker.isdigit() else 0
    page_size = max_items or LIST_MAX_ITEMS
    body: dict[str, Any] = {"ProvisionedConcurrencyConfigs": items[start : start + page_size]}
    if start + page_size < len(items):
        body["NextMarker"] = str(start + page_size)
    return body


def account_settings(backend: LambdaBackend) -> dict[str, Any]:
    """GetAccountSettings: the configured limit, minus reserved concurrency, plus usage from moto's functions."""
    with _core.LOCK:
        functions = _functions(backend)
        code_size = 0
        for group in functions.values():
            versions = [group.get("latest"), *group.get("versions", [])]
            code_size += sum(int(getattr(fn, "code_size", 0) or 0) for fn in versions if fn is not None)
        limit = _core.SETTINGS.account_concurrency_limit
        return {
            "AccountLimit": {
                "TotalCodeSize": TOTAL_CODE_SIZE_LIMIT,
                "CodeSizeUnzipped": CODE_SIZE_UNZIPPED_LIMIT,
                "CodeSizeZipped": CODE_SIZE_ZIPPED_LIMIT,
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": max(0, limit - _reserved_total(backend)),
            },
            "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": len(functions)},
        }


def check_reserved(backend: LambdaBackend, raw_name: str, reserved: object) -> None:
    """PutFunctionConcurrency's account rules, which moto 5.2.5 skips unless MOTO_LAMBDA_CONCURRENCY_QUOTA is set."""
    if not isinstance(reserved, int) or isinstance(reserved, bool) or reserved < 0:
        raise _validation(reserved, "reservedConcurrentExecutions", "Member must have value greater than or equal to 0")
    settings = _core.SETTINGS
    name = backend.get_function(raw_name).function_name  # moto's own 404 for an unknown function
    provisioned = sum(c.requested for c in _store(backend).get(name, {}).values())
    if reserved < provisioned:
        raise _invalid(MSG_RESERVED_BELOW_PROVISIONED.format(reserved=reserved, provisioned=provisioned))
    unreserved_left = (
        settings.account_concurrency_limit
        - _reserved_total(backend, excluding=name)
        - _provisioned_on_unreserved(backend, excluding=(name, None))
        - reserved
    )
    if unreserved_left < settings.unreserved_floor:
        raise _invalid(MSG_RESERVED_FLOOR.format(floor=settings.unreserved_floor))


# -- wiring into moto


class ExtendedLambdaResponse(LambdaResponse):
    """moto's Lambda response class plus the operations moto 5.2.5 lacks (routed by the URLs below)."""

    def _path_function_name(self) -> str:
        return unquote(self.path.rstrip("/").split("/")[-2])

    def _query(self, key: str) -> str | None:
        values = self.querystring.get(key)
        return str(values[0]) if values else None

    def put_provisioned_concurrency_config(self) -> TYPE_RESPONSE:
        try:
            body = json.loads(self.body or "{}")
        except ValueError as err:
            raise LambdaApiError(400, "SerializationException", "Request body is not valid JSON") from err
        result = put_provisioned(
            self.backend,
            self._path_function_name(),
            self._query("Qualifier"),
            body.get("ProvisionedConcurrentExecutions"),
        )
        return 202, {"status": "202", "content-type": "application/json"}, json.dumps(result)

    def get_provisioned_concurrency_config(self) -> TYPE_RESPONSE:
        result = get_provisioned(self.backend, self._path_function_name(), self._query("Qualifier"))
        return 200, {"status": "200", "content-type": "application/json"}, json.dumps(result)

    def delete_provisioned_concurrency_config(self) -> TYPE_RESPONSE:
        delete_provisioned(self.backend, self._path_function_name(), self._query("Qualifier"))
        return 204, {"status": "204"}, ""

    def list_provisioned_concurrency_configs(self) -> TYPE_RESPONSE:
        max_items = self._query("MaxItems")
        result = list_provisioned(
            self.backend,
            self._path_function_name(),
            self._query("Marker"),
            int(max_items) if max_items and re.fullmatch(r"-?\d+", max_items) else None,
        )
        return 200, {"status": "200", "content-type": "application/json"}, json.dumps(result)

    def get_account_settings(self) -> TYPE_RESPONSE:
        return 200, {"status": "200", "content-type": "application/json"}, json.dumps(account_settings(self.backend))


NEW_URL_PATHS = {
    r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$": (
        ExtendedLambdaResponse.dispatch
    ),
    r"{0}/(?P<api_version>[^/]+)/account-settings/?$": ExtendedLambdaResponse.dispatch,
}


def _wrap_put_function_concurrency(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_function_concurrency(self: LambdaBackend, function_name: str, reserved_concurrency: Any) -> Any:
        with _core.LOCK:
            check_reserved(self, function_name, reserved_concurrency)
            return original(self, function_name, reserved_concurrency)

    return put_function_concurrency


def _wrap_delete_function(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_function(self: LambdaBackend, function_name: str, qualifier: str | None = None) -> Any:
        with _core.LOCK:
            result = original(self, function_name, qualifier)
            name, name_qualifier = split_function_name(function_name)
            removed = qualifier or name_qualifier
            configs = _store(self)
            if removed is None:
                configs.pop(name, None)  # AWS deletes a function's configs with the function
            else:
                configs.get(name, {}).pop(removed, None)
            return result

    return delete_function


def _wrap_delete_alias(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_alias(self: LambdaBackend, name: str, function_name: str) -> Any:
        with _core.LOCK:
            result = original(self, name, function_name)
            _store(self).get(split_function_name(function_name)[0], {}).pop(name, None)
            return result

    return delete_alias


PATCHED_MARK = "__forescale_patched__"


def patch() -> None:
    """Register the routes and wrap moto's backend methods (once; callers hold the lock)."""
    lambda_urls.url_paths.update(NEW_URL_PATHS)
    for method_name, wrapper in (
        ("put_function_concurrency", _wrap_put_function_concurrency),
        ("delete_function", _wrap_delete_function),
        ("delete_alias", _wrap_delete_alias),
    ):
        original = getattr(LambdaBackend, method_name)
        if getattr(original, PATCHED_MARK, False):
            continue
        patched = wrapper(original)
        setattr(patched, PATCHED_MARK, True)
        patched.__doc__ = original.__doc__
        setattr(LambdaBackend, method_name, patched)
