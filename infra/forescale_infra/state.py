"""State: the one DynamoDB table (key design in forescale.adapters.state), kept when the stack goes."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from forescale_infra.config import InfraConfig

# Must match forescale.adapters.state.table_definition() (a test compares the two).
PARTITION_KEY = "PK"
SORT_KEY = "SK"
INDEX_NAME = "gsi1"
INDEX_PARTITION_KEY = "gsi1pk"
INDEX_SORT_KEY = "gsi1sk"
TTL_ATTRIBUTE = "expiration"


class StateTable(Construct):
    """On-demand table with PITR, encryption, TTL on `expiration`, deletion protection and RETAIN.

    The decisions in it are the audit trail, so neither `cdk destroy` nor a replacement may delete it:
    RemovalPolicy.RETAIN keeps it when the stack goes, and deletion protection stops a direct delete.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig) -> None:
        super().__init__(scope, construct_id)
        self.encryption_key: kms.IKey | None = (
            kms.Key.from_key_arn(self, "CustomerKey", config.kms_key_arn) if config.kms_key_arn else None
        )
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=config.table_name,
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=(
                dynamodb.TableEncryption.CUSTOMER_MANAGED
                if self.encryption_key
                else dynamodb.TableEncryption.AWS_MANAGED
            ),
            encryption_key=self.encryption_key,
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.table.add_global_secondary_index(
            index_name=INDEX_NAME,
            partition_key=dynamodb.Attribute(name=INDEX_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=INDEX_SORT_KEY, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )

    @property
    def index_arn(self) -> str:
        """The ARN of `gsi1` (explicit, so no role needs `index/*`)."""
        return f"{self.table.table_arn}/index/{INDEX_NAME}"
