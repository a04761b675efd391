"""Least-privilege IAM, one policy set per function.

Facts from the IAM service authorization reference that shape these statements:

- Lambda: PutProvisionedConcurrencyConfig, DeleteProvisionedConcurrencyConfig, PutFunctionConcurrency,
  DeleteFunctionConcurrency and the matching Get/List calls act on the `function` (or alias / version)
  resource, which supports `aws:ResourceTag`; a function's tags apply to its versions and aliases.
  GetAccountSettings has no resource type (Resource must be "*").
- SageMaker: UpdateEndpointWeightsAndCapacities, UpdateEndpoint and DescribeEndpoint act on `endpoint`
  (UpdateEndpoint also on the new `endpoint-config`); both resource types support `aws:ResourceTag`.
  CreateEndpointConfig creates a resource, so there is no resource tag to test: it is narrowed to
  configs named `forescale-*` and must carry the tag in the request (`aws:RequestTag`), and tagging on
  create also needs sagemaker:AddTags, narrowed the same way.
- Application Auto Scaling: Register/DeregisterScalableTarget take the `scalable-target` resource, whose
  tags are Application Auto Scaling's own (not the function's or endpoint's), and a re-registration has
  no tagged resource yet; so they are narrowed by ARN pattern to this account and region and by the
  service-specific keys `service-namespace` and `scalable-dimension` instead of a tag.
- CloudWatch GetMetricData, Resource Groups Tagging GetResources, Application Auto Scaling
  DescribeScalableTargets and SageMaker ListInferenceRecommendationsJobs have no resource types.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam

from forescale_infra.config import InfraConfig

MANAGED_TAG_KEY = "forescale:managed"
MANAGED_TAG_VALUE = "true"
# act names the endpoint configs it creates for an instance-type switch with this prefix, and tags them.
NEW_ENDPOINT_CONFIG_PREFIX = "forescale-"

_AAS_DESCRIBE = "Application Auto Scaling Describe* calls have no resource types"

# The only actions any forescale role may use with Resource "*", each with the reason it needs it.
STAR_RESOURCE_ACTIONS: dict[str, str] = {
    "cloudwatch:GetMetricData": "CloudWatch GetMetricData has no resource-level permissions",
    "tag:GetResources": "Resource Groups Tagging GetResources has no resource-level permissions",
    "lambda:GetAccountSettings": "Lambda GetAccountSettings is account-wide and has no resource type",
    "application-autoscaling:DescribeScalableTargets": _AAS_DESCRIBE,
    "application-autoscaling:DescribeScalingPolicies": _AAS_DESCRIBE,
    "application-autoscaling:DescribeScheduledActions": _AAS_DESCRIBE,
    "sagemaker:ListInferenceRecommendationsJobs": "SageMaker List* calls have no resource-level permissions",
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions (added by tracing=ACTIVE)",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions (added by tracing=ACTIVE)",
}

# The mutating actions on managed resources: only act's role may hold them (tests enforce it).
LAMBDA_MUTATING = (
    "lambda:PutProvisionedConcurrencyConfig",
    "lambda:DeleteProvisionedConcurrencyConfig",
    "lambda:PutFunctionConcurrency",
    "lambda:DeleteFunctionConcurrency",
)
SAGEMAKER_MUTATING = (
    "sagemaker:UpdateEndpointWeightsAndCapacities",
    "sagemaker:UpdateEndpoint",
    "sagemaker:CreateEndpointConfig",
    "sagemaker:AddTags",
)
AUTOSCALING_MUTATING = (
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:DeregisterScalableTarget",
    # A SageMaker type switch deregisters the variant's target (which deletes its policies and scheduled
    # actions) and puts them back afterwards.
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:PutScheduledAction",
)
MANAGED_RESOURCE_MUTATING = LAMBDA_MUTATING + SAGEMAKER_MUTATING + AUTOSCALING_MUTATING

# DynamoDB item actions per function: what forescale.adapters.state and Powertools Idempotency call
# (GetItem, Query, PutItem, UpdateItem, DeleteItem; no batch writes, no Scan). Query is granted on the
# table and on gsi1 only. Reads are table-wide; writes are scoped by `dynamodb:LeadingKeys` to the
# partitions a function writes (`TARGET#<name>`, its own `idempotency#<function>`; never `GLOBAL`, the
# kill switch) and by `dynamodb:Attributes` to the attributes of the item kinds it writes, so that
# only collect's tag discovery can write a target's `config` (its mode, its bounds).
TABLE_READ = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
# BatchWriteItem: collect's sample merge and history import. A TransactWriteItems call (plan's checkpoint)
# is authorized as the PutItem/UpdateItem/DeleteItem of each item in it, with the same conditions.
TABLE_WRITE = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")
TABLE_ACCESS: dict[str, tuple[str, ...]] = {
    name: (*TABLE_READ, *TABLE_WRITE) for name in ("collect", "forecast", "plan", "act", "react", "rightsize")
}
# The attributes of each item kind under `TARGET#<name>` (the key design in forescale.adapters.state).
# Sample attributes are a letter and a two-digit minute (`r07`: the rate in minute 7).
ITEM_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "samples": ("PK", "SK", "expiration", *(f"{field}??" for field in "rdcstlg")),
    "config": ("PK", "SK", "gsi1pk", "gsi1sk", "config", "version"),
    "forecast": ("PK", "SK", "issued_at", "model", "blob", "refit_requested_at", "previous_at"),
    # The hot item (`PLANNER`) and the checkpoint (`PLANNER#CHECKPOINT`); `blob` is an older format's.
    "planner": ("PK", "SK", "blob", "observed_until", "version", "token", "checkpoint_version", "journal"),
    "decision": ("PK", "SK", "expiration", "record", "status"),
    "state": ("PK", "SK", "state", "version"),
}
# The item kinds each function writes under `TARGET#<name>` (config: collect with tag discovery only).
TARGET_ITEM_WRITES: dict[str, tuple[str, ...]] = {
    "collect": ("samples",),
    "forecast": ("forecast",),
    "plan": ("planner", "decision", "forecast"),  # forecast: a refit request
    "act": ("decision", "state"),
    "react": ("planner", "decision", "forecast"),
    "rightsize": (),
}
TARGET_PARTITION = "TARGET#*"
# act's own partitions (the open-work index, the user's autoscaling bounds, the rotation cursor) and
# the attributes of their items.
ACT_PARTITIONS = ("ACT#OPEN", "ACT#BOUNDS", "ACT#ROTATION")
ACT_ATTRIBUTES = ("PK", "SK", "decided_at", "urgency", "due_at", "bounds", "after")
IDEMPOTENCY_PARTITION = "idempotency#{function}"  # lambda_support.once's static partition key
# DynamoDB with a customer-managed key: what a reader/writer needs on the key (no wildcard actions).
KMS_TABLE_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")

_AUTOSCALING_NAMESPACES = ["lambda", "sagemaker"]
_AUTOSCALING_DIMENSIONS = ["lambda:function:ProvisionedConcurrency", "sagemaker:variant:DesiredInstanceCount"]


def _tagged() -> dict[str, dict[str, str]]:
    return {"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG_KEY}": MANAGED_TAG_VALUE}}


def _arn(stack: Stack, service: str, resource: str) -> str:
    return f"arn:{Aws.PARTITION}:{service}:{stack.region}:{stack.account}:{resource}"


def target_item_attributes(function: str, config: InfraConfig) -> list[str]:
    """The attribute names `function` may write under `TARGET#<name>`, sorted; empty if it writes none there."""
    kinds = TARGET_ITEM_WRITES[function] + (("config",) if function == "collect" and config.tag_discovery else ())
    return sorted({a for kind in kinds for a in ITEM_ATTRIBUTES[kind]})


def table_statements(
    table_arn: str, index_arn: str, actions: Sequence[str], function: str, config: InfraConfig
) -> list[iam.PolicyStatement]:
    """Item reads on the table and Query on gsi1 (never `index/*`, never Scan); writes only to the
    function's own idempotency records and to the target item kinds it writes."""
    reads = sorted(a for a in actions if a in TABLE_READ)
    writes = sorted(a for a in actions if a in TABLE_WRITE)
    statements = [iam.PolicyStatement(sid="Table", actions=reads, resources=[table_arn])]
    if "dynamodb:Query" in actions:
        statements.append(iam.PolicyStatement(sid="TargetIndex", actions=["dynamodb:Query"], resources=[index_arn]))
    if not writes:
        return statements
    own = IDEMPOTENCY_PARTITION.format(function=function)
    statements.append(
        iam.PolicyStatement(
            sid="OwnIdempotencyRecords",
            actions=writes,
            resources=[table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [own]}},
        )
    )
    attributes = target_item_attributes(function, config)
    if attributes:
        # StringLike: the partition is `TARGET#<name>`, and sample attributes are patterns (`r??`).
        statements.append(_item_writes("TargetItems", writes, table_arn, "StringLike", [TARGET_PARTITION], attributes))
    if function == "act":
        statements.append(
            _item_writes("ActWorkItems", writes, table_arn, "StringEquals", list(ACT_PARTITIONS), list(ACT_ATTRIBUTES))
        )
    return statements


def _item_writes(
    sid: str, writes: list[str], table_arn: str, operator: str, partitions: list[str], attributes: list[str]
) -> iam.PolicyStatement:
    """Item writes allowed only in `partitions` and only to `attributes` (every item of the request)."""
    return iam.PolicyStatement(
        sid=sid,
        actions=writes,
        resources=[table_arn],
        conditions={
            f"ForAllValues:{operator}": {"dynamodb:LeadingKeys": partitions, "dynamodb:Attributes": attributes}
        },
    )


def put_events_statement(bus_arn: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(sid="PublishForescaleEvents", actions=["events:PutEvents"], resources=[bus_arn])


def star(actions: Iterable[str], sid: str) -> iam.PolicyStatement:
    """Read-only actions without resource-level permissions; refuses anything not in the allowlist."""
    names = sorted(actions)
    unknown = [a for a in names if a not in STAR_RESOURCE_ACTIONS]
    if unknown:
        raise ValueError(f"{unknown} may not use Resource '*': add a resource ARN instead")
    return iam.PolicyStatement(sid=sid, actions=names, resources=["*"])


def _describe_managed_endpoints(stack: Stack, config: InfraConfig, sid: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid, actions=["sagemaker:DescribeEndpoint"], resources=_endpoint_arns(stack, config), conditions=_tagged()
    )


def collect_statements(stack: Stack, config: InfraConfig) -> list[iam.PolicyStatement]:
    actions = ["cloudwatch:GetMetricData"]
    if config.tag_discovery:
        actions.append("tag:GetResources")
    statements = [star(actions, "ReadDemandMetrics")]
    if config.tag_discovery:
        # Discovery describes each tagged endpoint and its current config to draft its variants.
        statements += [
            _describe_managed_endpoints(stack, config, "DescribeTaggedEndpoints"),
            iam.PolicyStatement(
                sid="DescribeEndpointConfigs",
                actions=["sagemaker:DescribeEndpointConfig"],
                resources=[_arn(stack, "sagemaker", "endpoint-config/*")],
            ),
        ]
    return statements


def plan_statements() -> list[iam.PolicyStatement]:
    # The account-headroom guardrail needs the account's unreserved concurrency.
    return [star(["lambda:GetAccountSettings"], "ReadAccountConcurrency")]


def _function_arns(stack: Stack, config: InfraConfig) -> list[str]:
    if config.narrow_to_declared_targets:
        names = sorted({t.function_name for t in config.targets if t.kind.is_lambda and t.function_name})
        # `name` for reserved concurrency, `name:*` for an alias or version's provisioned concurrency
        return [_arn(stack, "lambda", f"function:{n}{suffix}") for n in names for suffix in ("", ":*")]
    return [_arn(stack, "lambda", "function:*")]


def _endpoint_arns(stack: Stack, config: InfraConfig) -> list[str]:
    if config.narrow_to_declared_targets:
        # SageMaker ARNs carry the endpoint name in lower case.
        names = sorted({t.endpoint_name.lower() for t in config.targets if t.endpoint_name})
        return [_arn(stack, "sagemaker", f"endpoint/{n}") for n in names]
    return [_arn(stack, "sagemaker", "endpoint/*")]


def act_statements(stack: Stack, config: InfraConfig) -> list[iam.PolicyStatement]:
    """Every mutating call forescale makes, each on tagged (or declared) resources only."""
    statements: list[iam.PolicyStatement] = [star(["lambda:GetAccountSettings"], "ReadAccountConcurrency")]
    functions = _function_arns(stack, config)
    endpoints = _endpoint_arns(stack, config)
    if not config.narrow_to_declared_targets or any(t.kind.is_lambda for t in config.targets):
        statements += [
            iam.PolicyStatement(
                sid="LambdaConcurrencyOnManagedFunctions",
                actions=list(LAMBDA_MUTATING),
                resources=functions,
                conditions=_tagged(),
            ),
            iam.PolicyStatement(
                sid="ReadManagedFunctions",
                actions=[
                    "lambda:GetFunctionConcurrency",
                    "lambda:GetProvisionedConcurrencyConfig",
                    "lambda:ListProvisionedConcurrencyConfigs",
                    "lambda:GetFunctionConfiguration",
                    "lambda:GetAlias",
                ],
                resources=functions,
                conditions=_tagged(),
            ),
        ]
    if not config.narrow_to_declared_targets or any(not t.kind.is_lambda for t in config.targets):
        new_configs = _arn(stack, "sagemaker", f"endpoint-config/{NEW_ENDPOINT_CONFIG_PREFIX}*")
        statements += [
            iam.PolicyStatement(
                sid="SageMakerCapacityOnManagedEndpoints",
                actions=[
                    "sagemaker:UpdateEndpointWeightsAndCapacities",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DescribeEndpoint",
                ],
                # UpdateEndpoint is also authorised on the new config, which act tags when it creates it.
                resources=[*endpoints, _arn(stack, "sagemaker", "endpoint-config/*")],
                conditions=_tagged(),
            ),
            iam.PolicyStatement(
                # Read the endpoint's current config (the operator's, possibly untagged) to copy its variants.
                sid="ReadEndpointConfigs",
                actions=["sagemaker:DescribeEndpointConfig"],
                resources=[_arn(stack, "sagemaker", "endpoint-config/*")],
            ),
            iam.PolicyStatement(
                # Only the configured instance types: a poisoned catalog cannot switch to a p5 fleet. The
                # Null check refuses a request without instance types (ForAllValues alone would pass it).
                sid="CreateTaggedForescaleEndpointConfigs",
                actions=["sagemaker:CreateEndpointConfig"],
                resources=[new_configs],
                conditions={
                    "StringEquals": {f"aws:RequestTag/{MANAGED_TAG_KEY}": MANAGED_TAG_VALUE},
                    "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": sorted(config.endpoint_instance_types)},
                    "Null": {"sagemaker:InstanceTypes": "false"},
                },
            ),
            iam.PolicyStatement(
                sid="TagForescaleEndpointConfigs",
                actions=["sagemaker:AddTags"],
                resources=[new_configs],
                conditions={"StringEquals": {f"aws:RequestTag/{MANAGED_TAG_KEY}": MANAGED_TAG_VALUE}},
            ),
        ]
    statements += [
        star(
            [
                "application-autoscaling:DescribeScalableTargets",
                "application-autoscaling:DescribeScalingPolicies",
                "application-autoscaling:DescribeScheduledActions",
            ],
            "ReadScalableTargets",
        ),
        iam.PolicyStatement(
            sid="PredictiveFloorOnScalableTargets",
            actions=list(AUTOSCALING_MUTATING),
            resources=[_arn(stack, "application-autoscaling", "scalable-target/*")],
            conditions={
                "StringEquals": {
                    "application-autoscaling:service-namespace": _AUTOSCALING_NAMESPACES,
                    "application-autoscaling:scalable-dimension": _AUTOSCALING_DIMENSIONS,
                }
            },
        ),
        iam.PolicyStatement(
            # Restoring a target-tracking policy re-creates its alarms; Application Auto Scaling names them
            # TargetTracking-<resource>-... and checks that the caller may manage them.
            sid="TargetTrackingAlarms",
            actions=["cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
            resources=[_arn(stack, "cloudwatch", "alarm:TargetTracking-*")],
        ),
    ]
    return statements


def rightsize_statements(stack: Stack, config: InfraConfig) -> list[iam.PolicyStatement]:
    """Read-only: endpoints, their configs and Inference Recommender results. Switching is act's job."""
    return [
        _describe_managed_endpoints(stack, config, "ReadManagedEndpoints"),
        iam.PolicyStatement(
            sid="ReadEndpointConfigsAndRecommendations",
            actions=["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeInferenceRecommendationsJob"],
            resources=[
                _arn(stack, "sagemaker", "endpoint-config/*"),
                _arn(stack, "sagemaker", "inference-recommendations-job/*"),
            ],
        ),
        star(["sagemaker:ListInferenceRecommendationsJobs"], "ListRecommendationJobs"),
    ]


# Why each wildcard ARN pattern is as narrow as it can be (keys: service, resource part of the ARN).
WILDCARD_RESOURCE_REASONS: dict[tuple[str, str], str] = {
    ("lambda", "function:*"): (
        "Every statement on this pattern requires aws:ResourceTag/forescale:managed=true, which Lambda evaluates "
        "on functions, versions and aliases (ABAC); the tag, not the name, says which functions forescale manages."
    ),
    ("lambda", "function:<declared>:*"): (
        "The versions and aliases of a declared target function (provisioned concurrency is set per qualifier), "
        "still gated by aws:ResourceTag/forescale:managed=true."
    ),
    ("sagemaker", "endpoint/*"): (
        "Every statement on this pattern requires aws:ResourceTag/forescale:managed=true (SageMaker endpoints "
        "support aws:ResourceTag); the tag says which endpoints forescale manages."
    ),
    ("sagemaker", "endpoint-config/*"): (
        "DescribeEndpointConfig reads the endpoint's current configuration, which the operator created and may "
        "not tag, to copy its variants; UpdateEndpoint on configs stays gated by the forescale:managed tag."
    ),
    ("sagemaker", "endpoint-config/forescale-*"): (
        "CreateEndpointConfig and the AddTags it needs create a new resource, so there is no resource tag to test: "
        "narrowed to configs named forescale-* and to requests that tag them forescale:managed=true (aws:RequestTag)."
    ),
    ("sagemaker", "inference-recommendations-job/*"): (
        "rightsize only reads Inference Recommender results (DescribeInferenceRecommendationsJob); job names are "
        "the operator's, so they cannot be listed at deploy time."
    ),
    ("application-autoscaling", "scalable-target/*"): (
        "Scalable-target ARNs carry an opaque id and their tags are Application Auto Scaling's own, and a "
        "re-registration has no resource yet, so aws:ResourceTag cannot gate them: narrowed to this account and "
        "region and to service-namespace lambda/sagemaker and the two scalable dimensions forescale sets."
    ),
    ("cloudwatch", "alarm:TargetTracking-*"): (
        "Only the alarms Application Auto Scaling names TargetTracking-*, which it re-creates when act restores a "
        "target-tracking policy after a SageMaker instance-type switch."
    ),
}


def wildcard_resources(statements: Iterable[iam.PolicyStatement]) -> list[str]:
    """Resource ARNs with a wildcard (not the bare "*") used by these statements, deduplicated."""
    return sorted({r for s in statements for r in s.resources if r != "*" and "*" in r})


def wildcard_reason(resource: str) -> tuple[str, str]:
    """(cdk-nag's rendering of the ARN, the reason it is acceptable); KeyError if it has no reason."""
    _arn_word, _partition, service, _region, _account, rest = resource.split(":", 5)
    key = (service, rest)
    if key not in WILDCARD_RESOURCE_REASONS and service == "lambda" and rest.startswith("function:"):
        key = (service, "function:<declared>:*")
    if key not in WILDCARD_RESOURCE_REASONS:
        raise KeyError(f"no reason recorded for the wildcard resource {resource!r}")
    return rest, WILDCARD_RESOURCE_REASONS[key]
