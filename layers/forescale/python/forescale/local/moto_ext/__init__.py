"""The moto extension: the AWS APIs and behaviours forescale needs that moto 5.2.5 lacks. Local use only.

`install()` registers them inside moto itself (extra URL routes on moto's Lambda service and patched
methods on its Lambda and SageMaker backends and SageMaker response class), so plain boto3 clients see
them both under `moto.mock_aws()` and through `moto.server.ThreadedMotoServer` in the same process.
Call it before the server answers its first Lambda request: the server builds each service's routes
once. Emulated state lives on moto's per-account, per-region backends; moto's reset clears it.

Everything emulated, with the AWS API reference rule each check follows. Messages follow AWS's wording
as it appears in public error reports, except those marked "ours", where none was found:

Lambda PutProvisionedConcurrencyConfig, GetProvisionedConcurrencyConfig,
DeleteProvisionedConcurrencyConfig, ListProvisionedConcurrencyConfigs
(routes `/2019-09-30/functions/{FunctionName}/provisioned-concurrency[?List=ALL]`):
  - `ProvisionedConcurrentExecutions` < 1 -> 400 ValidationException ("Member must have value greater
    than or equal to 1"; the request shape's `min: 1`). boto3 itself refuses it before sending.
  - Qualifier `$LATEST`, or an alias that points at `$LATEST` -> 400 InvalidParameterValueException
    "Provisioned Concurrency Configs cannot be applied to unpublished function versions." (Put), and
    "The function resource provided must be an alias or a published version." (Get, Delete).
  - A qualifier in FunctionName (`name:q` or an ARN) that differs from `Qualifier` -> 400
    InvalidParameterValueException "The derived qualifier from the function name does not match the
    specified qualifier."
  - Unknown function or version -> 404 ResourceNotFoundException "Function not found: <arn>"; unknown
    alias -> 404 ResourceNotFoundException "Cannot find alias arn: <arn>".
  - Get on an existing alias or version without a config -> 404
    ProvisionedConcurrencyConfigNotFoundException "No Provisioned Concurrency Config found for this
    function". Delete of a missing config is a no-op (204), as in AWS.
  - An alias and the version it points at cannot both carry a config -> 409 ResourceConflictException
    ("Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version" /
    "Version is pointed by a Provisioned Concurrency alias").
  - Function with reserved concurrency: the sum of its qualifiers' provisioned concurrency must not
    exceed it -> 400 InvalidParameterValueException "Requested Provisioned Concurrency should not be
    greater than the reservedConcurrentExecution for function".
  - Function without reserved concurrency: its provisioned concurrency comes out of the unreserved pool,
    which must keep `min(100, limit)` -> 400 InvalidParameterValueException "Specified
    ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its
    minimum value of [100]." (Lambda developer guide, "Configuring provisioned concurrency").
  - Put answers 202 with Status IN_PROGRESS, Allocated = what was already allocated (0 for a new
    config). Once `provisioned_ready_after_s` (default 60 s) has passed on the clock: READY with
    Allocated = Available = Requested, or FAILED with StatusReason (and the old allocation) when
    `fail_next_provisioned_allocation` was armed for that function and qualifier.
  - List pages with MaxItems (1-50) and an opaque NextMarker; FunctionArn is the qualified ARN as
    configured (alias or version). Deleting a function, version or alias deletes its configs.

Lambda GetAccountSettings (route `/2016-08-19/account-settings`):
  - AccountLimit.ConcurrentExecutions = the configured limit (default 1000),
    UnreservedConcurrentExecutions = limit minus the sum of functions' reserved concurrency,
    TotalCodeSize / CodeSizeUnzipped / CodeSizeZipped = AWS's published quotas (not enforced);
    AccountUsage.FunctionCount and TotalCodeSize from moto's functions.

Lambda PutFunctionConcurrency (moto's operation, extra rules; moto enforces none unless the
MOTO_LAMBDA_CONCURRENCY_QUOTA environment variable is set):
  - limit - other functions' reserved - provisioned on functions without reserved - requested must
    stay >= min(100, limit) -> 400 InvalidParameterValueException "Specified ReservedConcurrentExecutions
    for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."
  - Reserved below the function's total provisioned concurrency -> 400 InvalidParameterValueException
    (ours: "Specified ReservedConcurrentExecutions for function [r] is less than the function's total
    provisioned concurrency [p].").

SageMaker instance types: every `ml.g4dn.*`, `ml.g5.*`, `ml.g6.*`, `ml.g6e.*`, `ml.p3.*`,
`ml.p4d.24xlarge`, `ml.p5.*`, `ml.inf2.*` and `ml.trn1.*` size in botocore's
`ProductionVariantInstanceType` enum is added to moto's own lists for CreateEndpointConfig production
variants and for model packages' SupportedRealtimeInferenceInstanceTypes. Any other type still gets
moto's ValidationException. (Notebook, transform and cluster instance lists are unchanged.)

SageMaker UpdateEndpoint (moto 5.2.5 has none):
  - Unknown endpoint -> ValidationException 'Could not find endpoint "<arn>".'; unknown config ->
    ValidationException 'Could not find endpoint configuration "<arn>".'; endpoint not InService ->
    ValidationException 'Cannot update in-progress endpoint "<arn>".'
  - A variant registered with Application Auto Scaling (namespace sagemaker, ResourceId
    `endpoint/<ep>/variant/<variant>`, moto's applicationautoscaling backend) whose instance type would
    change, or which the new config removes -> ValidationException (rule: SageMaker developer guide,
    "Update endpoints that use auto scaling"; wording ours).
  - Success: EndpointStatus Updating, PendingDeploymentSummary (new config, its variants with
    InstanceType, VariantStatus Creating, StartTime); ProductionVariants keep the old fleet's values.
    After `endpoint_update_after_s` (default 300 s) on the clock: EndpointConfigName is the new config,
    variants take its InitialInstanceCount/InitialVariantWeight (or, with RetainAllVariantProperties,
    the endpoint's current DesiredInstanceCount/DesiredWeight unless listed in
    ExcludeRetainedVariantProperties) as Desired and Current counts, status InService, and
    LastDeploymentConfig echoes DeploymentConfig. If an alarm named in
    DeploymentConfig.AutoRollbackConfiguration.Alarms is in ALARM (moto's CloudWatch) when the
    deployment completes, it rolls back instead: old config and variants, InService. AWS's
    DescribeEndpoint has no instance-type field on ProductionVariants; read it from
    DescribeEndpointConfig(EndpointConfigName), or from PendingDeploymentSummary while Updating.

SageMaker UpdateEndpointWeightsAndCapacities (moto's operation, AWS timing added): endpoint not
InService -> ValidationException 'Cannot update in-progress endpoint "<arn>".'; moto's variant-name
checks; then Updating with DesiredInstanceCount/DesiredWeight set (a field left out of the request
stays as it was; moto would blank it), CurrentInstanceCount/CurrentWeight unchanged until
`endpoint_update_after_s` has passed, then equal to the desired values and InService.
SageMaker DeleteEndpoint while Updating -> ValidationException 'Cannot update in-progress endpoint
"<arn>".' ListEndpoints shows settled statuses. DescribeEndpoint leaves out an empty DataCaptureConfig
(moto answers `{}`, which fails botocore's output shape; AWS omits the member).

DynamoDB Time to Live (moto records UpdateTimeToLive but never deletes anything): `expire_items(now)`
deletes every item whose TTL attribute is a Number below `now`, in tables with TTL enabled, as AWS's
background TTL process does (AWS: within a few days of expiry; reads may return an expired item until
then). Called explicitly; the local demo runs it every 10 simulated minutes.

DynamoDB Query without moto's whole-table sort (moto sorts every item of the table by primary key
on every Query, 50 ms a call at a few thousand items): a base-table Query is handed only the asked
partition, an index Query the table's items unsorted; moto's own matching and final sort give the
results, in moto's order. Scan is untouched.

moto's instance tracker: moto keeps every model instance it ever built for its dashboard
(`/moto-api/data.json`) until a reset. For DynamoDB `Item` and SQS `Message`, built on every write
and send, the extension stops that (`untrack_churning_models`): a long demo grew by about 830 MB a
simulated day holding overwritten item versions. The dashboard no longer lists those two models.

Not emulated: invocations using provisioned environments (Available always equals Allocated), the
control-plane rate limits, Creating time for CreateEndpoint (moto makes endpoints InService at once),
alarm existence checks, canary/linear traffic shifting steps (one switch at the end).

Knobs (process-wide, thread-safe): `install(clock)`, `set_clock`, `set_account_concurrency_limit`,
`set_ready_delays`, `fail_next_provisioned_allocation`, and `reset()` for tests; `expire_items(now)`
runs DynamoDB's TTL deletion once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from forescale.local.moto_ext import _core, _dynamodb, _lambda, _sagemaker
from forescale.local.moto_ext._dynamodb import expire_items
from forescale.local.moto_ext._sagemaker import gpu_instance_types

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

_installed = False


def install(clock: Callable[[], float] | None = None) -> None:
    """Make moto serve the emulated APIs; idempotent. `clock` (s since the epoch) drives the transitions.

    Each call sets the clock: `None` means `time.time`.
    """
    global _installed  # noqa: PLW0603 - installation is a process-wide fact about moto's classes
    with _core.LOCK:
        if not _installed:
            _lambda.patch()
            _sagemaker.patch()
            _dynamodb.patch_query()
            _dynamodb.patch_request_isolation()
            _dynamodb.patch_transaction_rollback()
            _core.untrack_churning_models()
            _installed = True
        _core.SETTINGS.clock = clock or time.time


def set_clock(clock: Callable[[], float]) -> None:
    """Drive the IN_PROGRESS→READY and Updating→InService transitions from `clock` (s since the epoch)."""
    with _core.LOCK:
        _core.SETTINGS.clock = clock


def set_account_concurrency_limit(limit: int, *, minimum_unreserved: int | None = None) -> None:
    """Set the Lambda concurrent-executions quota (executions, every account and region).

    `minimum_unreserved` is what must stay unreserved; by default min(100, limit), as AWS does.
    """
    if limit < 0:
        raise ValueError(f"account concurrency limit must be >= 0, got {limit}")
    if minimum_unreserved is not None and not 0 <= minimum_unreserved <= limit:
        raise ValueError(f"minimum_unreserved must be within 0..{limit}, got {minimum_unreserved}")
    with _core.LOCK:
        _core.SETTINGS.account_concurrency_limit = limit
        _core.SETTINGS.minimum_unreserved = minimum_unreserved


def set_ready_delays(
    *, provisioned_ready_after_s: float | None = None, endpoint_update_after_s: float | None = None
) -> None:
    """Set how long (clock seconds) new provisioned concurrency and endpoint changes take; None keeps one."""
    for label, value in (
        ("provisioned_ready_after_s", provisioned_ready_after_s),
        ("endpoint_update_after_s", endpoint_update_after_s),
    ):
        if value is not None and value < 0:
            raise ValueError(f"{label} must be >= 0 seconds, got {value}")
    with _core.LOCK:
        if provisioned_ready_after_s is not None:
            _core.SETTINGS.provisioned_ready_after_s = provisioned_ready_after_s
        if endpoint_update_after_s is not None:
            _core.SETTINGS.endpoint_update_after_s = endpoint_update_after_s


def fail_next_provisioned_allocation(
    function: str, qualifier: str, reason: str = "FUNCTION_ERROR_INIT_FAILURE: the function failed to initialize"
) -> None:
    """Make the next PutProvisionedConcurrencyConfig for `function`:`qualifier` end FAILED with `reason`.

    `function` is the function name (not an ARN); it applies in whichever account and region the Put runs.
    """
    if not function or ":" in function:
        raise ValueError(f"function must be a plain function name, got {function!r}")
    if not qualifier:
        raise ValueError("qualifier must be an alias name or a version number")
    with _core.LOCK:
        _core.SETTINGS.failing_allocations[(function, qualifier)] = reason


def reset() -> None:
    """For tests: default knobs and the real clock, and no emulated state in any existing backend."""
    with _core.LOCK:
        _core.restore_defaults()
        _lambda.clear_state()
        _sagemaker.clear_state()
