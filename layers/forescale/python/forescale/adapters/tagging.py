"""Finding resources to manage by their tags, through the Resource Groups Tagging API.

A resource opts in with the tag `forescale:managed = true` (exact value). Discovery turns each one into
a draft `TargetConfig` in dry-run mode, for an operator to review and register, or says why it cannot:

- Lambda function (`lambda:function`; tags live on the function, not on its aliases):
  `forescale:kind` (default `lambda-provisioned`), `forescale:qualifier` (the alias or version that
  carries provisioned concurrency; required for that kind), optional `forescale:name`
  (default `<function>` or `<function>:<qualifier>`).
- SageMaker endpoint (`sagemaker:endpoint`): one draft per instance-based production variant, named
  `<endpoint>/<variant>` (or `<forescale:name>/<variant>`). `forescale:kind` (default
  `sagemaker-instance-count`), and `forescale:catalog`, the instance types forescale may use: space
  separated `<type>=<price per hour>/<requests per second one instance serves at the SLO>`, for
  example `ml.g4dn.xlarge=0.736/40 ml.g5.xlarge=1.41/75` (AWS tag values allow no commas). Each
  variant's current instance type (from its endpoint config) must be in the catalog. Drafts start at
  `min_capacity = 1`: an instance-based variant cannot run on zero instances.

Nothing is registered here; the caller (the `forescale targets discover` CLI) decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError
from pydantic import ValidationError

from forescale.domain.targets import TargetKind
from forescale.runtime.models import InstanceTypeSpec, Mode, TargetConfig, validation_problems

if TYPE_CHECKING:
    from mypy_boto3_resourcegroupstaggingapi.client import ResourceGroupsTaggingAPIClient
    from mypy_boto3_sagemaker.client import SageMakerClient

MANAGED_TAG = "forescale:managed"
KIND_TAG = "forescale:kind"
QUALIFIER_TAG = "forescale:qualifier"
NAME_TAG = "forescale:name"
CATALOG_TAG = "forescale:catalog"
RESOURCE_TYPES = ("lambda:function", "sagemaker:endpoint")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A tagged resource (or one variant of it) that could not become a draft, and why."""

    resource: str  # the ARN, with `#<variant>` for one variant of an endpoint
    reason: str


class Discovery(NamedTuple):
    drafts: list[TargetConfig]
    skipped: list[Skipped]


class TagDiscovery:
    """Lists `forescale:managed = true` resources and drafts their target configs."""

    def __init__(
        self, tagging: ResourceGroupsTaggingAPIClient, sagemaker: SageMakerClient, page_size: int = 100
    ) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be 1..100 (GetResources ResourcesPerPage), got {page_size}")
        self._tagging = tagging
        self._sagemaker = sagemaker
        self._page_size = page_size

    def tagged(self) -> list[tuple[str, dict[str, str]]]:
        """(ARN, tags) of every managed Lambda function and SageMaker endpoint, all pages."""
        out: list[tuple[str, dict[str, str]]] = []
        kwargs: dict[str, Any] = {
            "TagFilters": [{"Key": MANAGED_TAG, "Values": ["true"]}],
            "ResourceTypeFilters": list(RESOURCE_TYPES),
            "ResourcesPerPage": self._page_size,
        }
        while True:
            resp = self._tagging.get_resources(**kwargs)
            for mapping in resp.get("ResourceTagMappingList", []):
                tags = {t["Key"]: t["Value"] for t in mapping.get("Tags", [])}
                out.append((mapping.get("ResourceARN", ""), tags))
            token = resp.get("PaginationToken")
            if not token:
                return out
            kwargs["PaginationToken"] = token

    def discover(self) -> Discovery:
        """Drafts (dry-run) for every managed resource, and the resources skipped with their reasons."""
        drafts: list[TargetConfig] = []
        skipped: list[Skipped] = []
        for arn, tags in self.tagged():
            service = arn.split(":")[2] if arn.count(":") >= 5 else ""
            if service == "lambda":
                got = _lambda_draft(arn, tags)
                if isinstance(got, TargetConfig):
                    drafts.append(got)
                else:
                    skipped.append(got)
            elif service == "sagemaker":
                d, s = self._endpoint_drafts(arn, tags)
                drafts += d
                skipped += s
            else:
                skipped.append(Skipped(arn, "not a Lambda function or SageMaker endpoint ARN"))
        return Discovery(sorted(drafts, key=lambda c: c.name), skipped)

    def _endpoint_drafts(self, arn: str, tags: dict[str, str]) -> tuple[list[TargetConfig], list[Skipped]]:
        try:
            kind = _kind(tags, default=TargetKind.SAGEMAKER_INSTANCE_COUNT)
        except ValueError as exc:
            return [], [Skipped(arn, str(exc))]
        if kind.is_lambda:
            return [], [Skipped(arn, f"{KIND_TAG}={kind} is a Lambda kind, but this is a SageMaker endpoint")]
        if CATALOG_TAG not in tags:
            return [], [Skipped(arn, f"no {CATALOG_TAG} tag: forescale needs the instance types it may use")]
        try:
            catalog = parse_catalog(tags[CATALOG_TAG])
        except ValueError as exc:
            return [], [Skipped(arn, str(exc))]
        endpoint_name = arn.split("endpoint/", 1)[-1]
        try:
            endpoint = self._sagemaker.describe_endpoint(EndpointName=endpoint_name)
            config = self._sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        except ClientError as exc:
            return [], [Skipped(arn, f"cannot describe the endpoint: {exc.response.get('Error', {}).get('Message')}")]
        endpoint_name = endpoint["EndpointName"]  # the ARN lowercases it; metrics use the real name
        types = {v["VariantName"]: v.get("InstanceType") for v in config.get("ProductionVariants", [])}
        base = tags.get(NAME_TAG, endpoint_name)
        drafts: list[TargetConfig] = []
        skipped: list[Skipped] = []
        for variant in endpoint.get("ProductionVariants", []):
            name = variant["VariantName"]
            where = f"{arn}#{name}"
            instance_type = types.get(name)
            if "CurrentServerlessConfig" in variant or instance_type is None:
                skipped.append(Skipped(where, "a serverless variant: forescale sizes instance-based variants"))
                continue
            if instance_type not in {t.name for t in catalog}:
                skipped.append(
                    Skipped(where, f"it runs {instance_type}, which is not in the {CATALOG_TAG} tag; add its price")
                )
                continue
            got = _draft(
                where,
                name=f"{base}/{name}",
                kind=kind,
                endpoint_name=endpoint_name,
                variant_name=name,
                catalog=catalog,
                instance_type=instance_type,
                min_capacity=1,
            )
            if isinstance(got, TargetConfig):
                drafts.append(got)
            else:
                skipped.append(got)
        return drafts, skipped


def parse_catalog(text: str) -> tuple[InstanceTypeSpec, ...]:
    """`ml.g4dn.xlarge=0.736/40 ml.g5.xlarge=1.41/75` → instance type specs; ValueError names a bad entry."""
    specs: list[InstanceTypeSpec] = []
    for entry in text.split():
        name, _, rest = entry.partition("=")
        price, _, capacity = rest.partition("/")
        try:
            specs.append(InstanceTypeSpec(name=name, price_per_hour=float(price), capacity_rps=float(capacity)))
        except (ValueError, ValidationError) as exc:
            raise ValueError(
                f"{CATALOG_TAG} entry {entry!r} is not <type>=<price per hour>/<requests per second>: "
                f"{_first_error(exc)}"
            ) from None
    if not specs:
        raise ValueError(f"{CATALOG_TAG} is empty")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{CATALOG_TAG} names an instance type twice: {names}")
    return tuple(specs)


def _lambda_draft(arn: str, tags: dict[str, str]) -> TargetConfig | Skipped:
    try:
        kind = _kind(tags, default=TargetKind.LAMBDA_PROVISIONED)
    except ValueError as exc:
        return Skipped(arn, str(exc))
    if not kind.is_lambda:
        return Skipped(arn, f"{KIND_TAG}={kind} is a SageMaker kind, but this is a Lambda function")
    function_name = arn.split(":")[6] if arn.count(":") >= 6 else ""
    qualifier = tags.get(QUALIFIER_TAG)
    if kind is TargetKind.LAMBDA_PROVISIONED and not qualifier:
        return Skipped(arn, f"{kind} needs the tag {QUALIFIER_TAG} (the alias or version with provisioned concurrency)")
    default_name = function_name + (f":{qualifier}" if qualifier else "")
    return _draft(
        arn,
        name=tags.get(NAME_TAG, default_name),
        kind=kind,
        function_name=function_name,
        qualifier=qualifier,
    )


def _kind(tags: dict[str, str], default: TargetKind) -> TargetKind:
    """The kind from its tag, or `default`; ValueError says why the tag cannot be read."""
    raw = tags.get(KIND_TAG)
    if raw is None:
        return default
    try:
        return TargetKind(raw)
    except ValueError:
        raise ValueError(f"{KIND_TAG}={raw!r} is not one of {[k.value for k in TargetKind]}") from None


def _draft(resource: str, **fields: Any) -> TargetConfig | Skipped:
    try:
        return TargetConfig(mode=Mode.DRY_RUN, **fields)
    except ValidationError as exc:
        return Skipped(resource, f"the tags make an invalid target: {_first_error(exc)}")


def _first_error(exc: Exception) -> str:
    return validation_problems(exc) if isinstance(exc, ValidationError) else str(exc)
