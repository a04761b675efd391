"""DynamoDB Time to Live, which moto records (UpdateTimeToLive) but never acts on.

AWS: once TTL is enabled on an attribute, an item whose attribute is a Number (epoch seconds) lower
than the current time has expired, and DynamoDB deletes it in the background, "typically within a
few days"; until then reads may still return it. An attribute that is not a Number, or an item
without it, never expires. The deletion is a service-side delete (a stream record if streams are on)
and costs no write capacity.

`expire_items(now)` is that background process run once: it deletes every expired item from every
table with TTL enabled, in every account and region of moto's backends, and returns how many. moto's
DynamoDB Query sorts the whole table on each call, so a long simulated run that never deletes its
hour-long Idempotency records slows down with every simulated minute.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def expire_items(now: float) -> int:
    from moto.dynamodb.models import dynamodb_backends

    deleted = 0
    for account in dynamodb_backends.values():
        for backend in account.values():
            for table in backend.tables.values():
                if table.ttl.get("TimeToLiveStatus") != "ENABLED" or not table.ttl.get("AttributeName"):
                    continue
                name = table.ttl["AttributeName"]
                for item in [i for i in table.all_items() if _expired(i.attrs.get(name), now)]:
                    table.delete_item(item.hash_key, item.range_key)
                    deleted += 1
    return deleted


def _expired(value: object, now: float) -> bool:
    if value is None or getattr(value, "type", None) != "N":
        return False
    try:
        return Decimal(str(value.value)) < Decimal(repr(now))  # type: ignore[attr-defined]
    except InvalidOperation:
        return False
