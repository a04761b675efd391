"""us-east-1 list prices for what forescale's deployed stack consumes: the price table of `forescale bench fleet`.

Every price is in US dollars, on-demand, no free tier applied (a fleet of thousands of targets is far past
every free tier; applying it would flatter small fleets). Checked on the pages cited beside each value.
Change a value here, not in the bench: the report prints this table next to its results.
"""

from __future__ import annotations

from dataclasses import dataclass

MONTH_MINUTES = 30 * 24 * 60  # a billing month of 30 days, in minutes (43,200)


@dataclass(frozen=True)
class Price:
    """One line of the table: `usd` per `per` units of `unit`, and where it comes from."""

    item: str
    usd: float
    per: float
    unit: str
    source: str

    @property
    def per_unit(self) -> float:
        return self.usd / self.per


# DynamoDB on-demand after the November 2024 cut (50 % off throughput):
# https://aws.amazon.com/dynamodb/pricing/on-demand/ (and the AWS News Blog post on DynamoDB on-demand,
# updated January 31, 2025, "to clarify the reduced on-demand pricing").
DYNAMODB_WRITE = Price(
    "DynamoDB write request units", 0.625, 1e6, "WRU", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
)
DYNAMODB_READ = Price(
    "DynamoDB read request units", 0.125, 1e6, "RRU", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
)
DYNAMODB_STORAGE = Price(
    "DynamoDB storage (Standard)", 0.25, 1.0, "GB-month", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
)
# CloudWatch: https://aws.amazon.com/cloudwatch/pricing/ ("GetMetricData: $0.01 per 1,000 metrics requested";
# custom metrics $0.30 per metric-month for the first 10,000; PutMetricData $0.01 per 1,000 requests;
# Logs standard ingestion $0.50 per GB).
GET_METRIC_DATA = Price(
    "CloudWatch GetMetricData", 0.01, 1000, "metrics requested", "https://aws.amazon.com/cloudwatch/pricing/"
)
CUSTOM_METRIC = Price(
    "CloudWatch custom metrics (EMF)", 0.30, 1.0, "metric-month", "https://aws.amazon.com/cloudwatch/pricing/"
)
PUT_METRIC_DATA = Price(
    "CloudWatch PutMetricData", 0.01, 1000, "requests", "https://aws.amazon.com/cloudwatch/pricing/"
)
LOGS_INGESTION = Price("CloudWatch Logs ingestion", 0.50, 1.0, "GB", "https://aws.amazon.com/cloudwatch/pricing/")
# EventBridge: https://aws.amazon.com/eventbridge/pricing/ ("custom events $1.00/million"; each 64 KB chunk
# of a payload is billed as one event). Scheduled rules and same-account delivery to targets cost nothing.
EVENTBRIDGE_EVENT = Price(
    "EventBridge custom events", 1.00, 1e6, "64 KB chunks", "https://aws.amazon.com/eventbridge/pricing/"
)
EVENT_CHUNK_BYTES = 64 * 1024
# SQS standard: https://aws.amazon.com/sqs/pricing/ ($0.40 per million requests, each 64 KB chunk a request).
# The deployed runtime uses SQS for act's input queue and the dead-letter queues.
SQS_REQUEST = Price("SQS requests", 0.40, 1e6, "64 KB chunks", "https://aws.amazon.com/sqs/pricing/")
# Lambda: https://aws.amazon.com/lambda/pricing/ (requests $0.20 per million; duration per GB-second,
# first tier: x86 $0.0000166667, Arm $0.0000133334). The stack deploys every function on ARM_64
# (infra/forescale_infra/functions.py, ARCHITECTURE).
LAMBDA_REQUEST = Price("Lambda requests", 0.20, 1e6, "requests", "https://aws.amazon.com/lambda/pricing/")
LAMBDA_GB_S_ARM = Price("Lambda duration (Arm)", 0.0000133334, 1.0, "GB-s", "https://aws.amazon.com/lambda/pricing/")
LAMBDA_GB_S_X86 = Price("Lambda duration (x86)", 0.0000166667, 1.0, "GB-s", "https://aws.amazon.com/lambda/pricing/")
# Step Functions: https://aws.amazon.com/step-functions/pricing/ (Standard $25 per million state transitions).
# The forecast fan-out exists only with more than one shard (forecast_shard_size, default 10,000 targets).
STEP_FUNCTIONS_TRANSITION = Price(
    "Step Functions Standard transitions", 25.0, 1e6, "transitions", "https://aws.amazon.com/step-functions/pricing/"
)
# X-Ray: https://aws.amazon.com/xray/pricing/ ($5.00 per million traces recorded). Every function has
# tracing ACTIVE; the default sampling rule records 1 request a second and 5 % of the rest, per function.
XRAY_TRACE = Price("X-Ray traces recorded", 5.00, 1e6, "traces", "https://aws.amazon.com/xray/pricing/")
XRAY_RESERVOIR_PER_S = 1.0
XRAY_RATE = 0.05
# Free: Application Auto Scaling (https://aws.amazon.com/autoscaling/pricing/), the Lambda and SageMaker
# control-plane APIs (no per-call price on https://aws.amazon.com/lambda/pricing/ or .../sagemaker/pricing/).

TABLE: tuple[Price, ...] = (
    DYNAMODB_WRITE,
    DYNAMODB_READ,
    DYNAMODB_STORAGE,
    GET_METRIC_DATA,
    CUSTOM_METRIC,
    PUT_METRIC_DATA,
    LOGS_INGESTION,
    EVENTBRIDGE_EVENT,
    SQS_REQUEST,
    LAMBDA_REQUEST,
    LAMBDA_GB_S_ARM,
    LAMBDA_GB_S_X86,
    STEP_FUNCTIONS_TRANSITION,
    XRAY_TRACE,
)


def markdown_table() -> str:
    """The price table as markdown, for the report."""
    lines = ["| item | price (USD) | per | source |", "|---|---:|---|---|"]
    for p in TABLE:
        per = f"{p.per:,.0f} {p.unit}" if p.per != 1 else p.unit
        lines.append(f"| {p.item} | {p.usd:g} | {per} | {p.source} |")
    return "\n".join(lines)
