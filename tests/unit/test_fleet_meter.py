"""The billing rules of `forescale bench fleet`'s meter, on the AWS documentation's worked examples.

Sources: "DynamoDB item sizes and formats" (CapacityUnitCalculations.html), "DynamoDB read and write
operations" (read-write-operations.html), "Calculating PutEvents event entry size" (eb-putevent-size.html).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from forescale.demo import prices
from forescale.demo.fleet_meter import (
    attribute_value_size,
    item_size,
    number_size,
    put_events_entry_size,
    read_units,
    write_units,
)

KB = 1024


def test_item_size_is_names_plus_values_the_docs_two_string_attributes() -> None:
    # "shirt-color" (11) + "R" (1) + "shirt-size" (10) + "M" (1) = 23 bytes
    assert item_size({"shirt-color": {"S": "R"}, "shirt-size": {"S": "M"}}) == 23


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ({"S": "héllo"}, 6),  # UTF-8 bytes, not characters
        ({"N": "12345"}, 4),  # 5 significant digits: ceil(5/2) + 1
        ({"N": "0.00100"}, 2),  # leading and trailing zeroes trimmed: one digit
        ({"N": "-1.5"}, 2),  # two digits
        ({"N": "1000000"}, 2),  # trailing zeroes trimmed
        ({"B": b"0123456789"}, 10),  # raw bytes
        ({"B": base64.b64encode(b"0123456789").decode()}, 10),  # base64 on the wire: the raw length is billed
        ({"BOOL": True}, 1),
        ({"NULL": True}, 1),
        ({"L": []}, 3),  # an empty List: 3 bytes of overhead
        ({"L": [{"S": "ab"}, {"N": "1"}]}, 3 + (2 + 1) + (2 + 1)),  # + each element + 1 byte per element
        ({"M": {"a": {"S": "xy"}}}, 3 + (1 + 2) + 1),  # a Map's element: its name, its value, 1 byte
        ({"SS": ["ab", "c"]}, 3),
    ],
)
def test_attribute_value_sizes_follow_item_sizes_and_formats(value: dict[str, object], size: int) -> None:
    assert attribute_value_size(value) == size


def test_number_size_grows_one_byte_per_two_digits() -> None:
    assert number_size("7") == 2
    assert number_size("12") == 2
    assert number_size("123") == 3
    assert number_size("1e5") == 2


def test_unknown_attribute_type_is_named() -> None:
    with pytest.raises(ValueError, match="'X'"):
        attribute_value_size({"X": 1})


@pytest.mark.parametrize(
    ("size", "consistent", "transactional", "units"),
    [
        (3500, True, False, 1.0),  # "reading a 3,500-byte item consumes the same throughput as a 4 KB item"
        (8 * KB, True, False, 2.0),  # 8 KB: 2 units strongly consistent ...
        (8 * KB, False, False, 1.0),  # ... 1 eventually consistent ...
        (8 * KB, True, True, 4.0),  # ... 4 transactional
        (10 * KB, True, False, 3.0),  # "a 10 KB item ... rounds the item size to 12 KB"
        (0, True, False, 1.0),  # a missing item still consumes read throughput
        (0, False, False, 0.5),
    ],
)
def test_read_units(size: int, consistent: bool, transactional: bool, units: float) -> None:
    assert read_units(size, consistent, transactional) == units


def test_batch_get_rounds_each_item_the_docs_example() -> None:
    # "BatchGetItem reads a 1.5 KB item and a 6.5 KB item: 12 KB (4 KB + 8 KB), not 8 KB"
    assert read_units(int(1.5 * KB)) + read_units(int(6.5 * KB)) == 3.0


def test_query_rounds_the_sum_once_the_docs_example() -> None:
    # "a query returns 10 items whose combined size is 40.8 KB: DynamoDB rounds ... to 44 KB"
    assert read_units(int(40.8 * KB)) == 11.0


@pytest.mark.parametrize(
    ("old", "new", "transactional", "units"),
    [
        (0, 500, False, 1),  # "writing a 500-byte item consumes the same throughput as a 1 KB item"
        (0, int(2.5 * KB), False, 3),
        (3 * KB, 500, False, 3),  # an update bills the larger of the item before and after
        (500, 0, False, 1),  # a delete of a small item
        (0, 0, False, 1),  # a delete of nothing still costs one unit
        (0, int(1.5 * KB), True, 4),  # transactions double
    ],
)
def test_write_units(old: int, new: int, transactional: bool, units: int) -> None:
    assert write_units(old, new, transactional) == units


def test_put_events_entry_size_the_docs_rule() -> None:
    entry = {
        "Time": "2026-12-07T00:00:00Z",
        "Source": "forescale",
        "DetailType": "forescale.DecisionMade",
        "Detail": '{"target":"é"}',
        "Resources": ["arn:aws:lambda:us-east-1:123456789012:function:f"],
        "EventBusName": "forescale",  # not part of the entry size
    }
    expected = 14 + len("forescale") + len("forescale.DecisionMade") + len('{"target":"é"}'.encode()) + 48
    assert put_events_entry_size(entry) == expected
    assert put_events_entry_size({"Source": "s", "DetailType": "d"}) == 2


def test_price_table_has_a_source_for_every_price() -> None:
    for p in prices.TABLE:
        assert p.source.startswith("https://aws.amazon.com/"), p.item
        assert p.usd > 0 and p.per > 0
    assert prices.DYNAMODB_WRITE.per_unit == pytest.approx(0.625e-6)
    assert prices.DYNAMODB_READ.per_unit == pytest.approx(0.125e-6)
    assert "| DynamoDB read request units |" in prices.markdown_table()


# ---------------------------------------------------------------- derivations at 10,000 targets


def _deployed(act_concurrency: int = 2, rate: float = 7.5) -> Any:
    from forescale.demo.fleet_bench import Deployed

    return Deployed(
        memory_mb={"act": 256},
        timeout_s={"act": 55},
        schedule_minutes={"act": 1},
        env={"LAMBDA_CALLS_PER_SECOND": repr(rate)},
        architecture="ARM_64",
        shard_count=1,
        shard_size=10_000,
        act_concurrency=act_concurrency,
        act_batch_size=500,
    )


@pytest.mark.parametrize(
    ("calls", "bounded", "per_min_10k"),
    [
        (300, 0, 300 / 30 * 100),  # every call comes with changes: scaled with the fleet
        (300, 100, 200 / 30 * 100 + 30 * 2 + 2),  # bounded ones capped: 30 reads of ≤ 2 calls, 1 account read each
        (300, 1, 299 / 30 * 100 + 1 / 30 * 100),  # fewer bounded calls than the cap: scaled, not raised to it
    ],
)
@pytest.mark.parametrize("first_reads", [0, 20])  # a target's first read ever is not a steady-state rate
def test_lambda_calls_at_10k_scale_changes_and_cap_bounded_reads(
    calls: int, bounded: int, per_min_10k: float, first_reads: int
) -> None:
    from forescale.demo.fleet_bench import lambda_calls_per_min_10k
    from forescale.demo.fleet_meter import StageTotals

    t = StageTotals(lambda_control_plane=calls + first_reads, lambda_bounded=bounded, lambda_first_reads=first_reads)
    assert lambda_calls_per_min_10k(t, 100, 30, _deployed()) == pytest.approx(per_min_10k)


def test_act_at_10k_spreads_its_work_over_invocations_and_fails_past_its_processes_seconds() -> None:
    from forescale.demo.fleet_bench import InvocationRecord, act_at_10k

    rec = InvocationRecord("act", 0, "batch", 100, 0.01, None, 2.0, 10, 0, True)
    # 100 targets, 1 minute: at 10,000, 1 s CPU (x 6.9 at 256 MB), 10 s of call latency, 600 calls / 7.5 per s
    fits = act_at_10k([rec], 100, 1, _deployed(), 600.0, 10.0)
    work, limiter = 1 * 1769 / 256 + 10, 80
    assert fits["work_s_per_min"] == pytest.approx(work) and fits["limiter_s_per_min"] == pytest.approx(limiter)
    busy = max(work, limiter)  # the work between Lambda calls overlaps the limiter's waits
    assert fits["busy_s_per_min"] == pytest.approx(busy) and fits["capacity_s_per_min"] == 120
    assert fits["invocations_per_min"] == -(-busy // 45) and fits["duration_max_s"] <= 45
    # twice the Lambda calls need more seconds than two processes have in a minute
    over = act_at_10k([rec], 100, 1, _deployed(), 1200.0, 10.0)
    assert over["busy_s_per_min"] > 120 and over["duration_max_s"] > 55


def test_listing_events_at_10k_stay_under_put_events_limit_whatever_the_model_name() -> None:
    from forescale.demo.fleet_bench import listing_payloads_10k

    short, long = listing_payloads_10k("Naive"), listing_payloads_10k("SeasonalNaive+AutoETS+MSTL" * 3)
    for sizes in (short, long):
        assert set(sizes) == {"collect", "forecast"}
        assert all(100 < kb <= 256 for kb in sizes.values())  # many names, sized by bytes: near, never over
