"""DynamoDB in moto: Time to Live, which moto records (UpdateTimeToLive) but never acts on, and a
Query without moto's whole-table sort (a base-table Query reads only its partition).

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

import inspect
import threading
from decimal import Decimal, InvalidOperation
from typing import Any


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


# ---------------------------------------------------------------- Query without the whole-table sort

_query_candidates = threading.local()


def patch_query() -> None:
    """Make moto's Query skip its whole-table sort (same results, far less work).

    moto answers every Query by first sorting every item of the table by its primary key
    (`Table.all_items`), then keeping the matching items and sorting those again. The second sort
    alone fixes the answer's order: by sort key on the table; on an index by the index keys and then
    the table keys, a total order. So a base-table Query is handed only its partition's items, and an
    index Query the table's items unsorted; moto's own matching and sorting then give the same list
    without the whole-table sort that made each Query cost 20 to 50 ms at a few thousand items. Scan
    is left to moto as it is.
    """
    from moto.dynamodb.models.table import Table

    all_items, query = Table.all_items, Table.query
    signature = inspect.signature(query)

    def candidates_or_all_items(self: Table) -> Any:
        scope = getattr(_query_candidates, "scope", None)
        if scope is not None and scope[0] is self:
            return scope[1]
        return all_items(self)

    def query_without_table_sort(self: Table, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        hash_key = bound.arguments.get("hash_key")
        if not self.range_key_attr:
            return query(self, *args, **kwargs)
        if bound.arguments.get("index_name"):
            candidates = [item for partition in self.items.values() for item in partition.values()]
        elif hash_key is not None:
            partition = self.items.get(hash_key)  # .get: `items` is a defaultdict, and a lookup must not add
            candidates = list(partition.values()) if partition else []
        else:
            return query(self, *args, **kwargs)
        _query_candidates.scope = (self, candidates)
        try:
            return query(self, *args, **kwargs)
        finally:
            _query_candidates.scope = None

    Table.all_items = candidates_or_all_items  # type: ignore[method-assign]
    Table.query = query_without_table_sort  # type: ignore[method-assign]


_request_lock = threading.Lock()


def patch_request_isolation() -> None:
    """Serve each DynamoDB request whole, one at a time, as DynamoDB applies each request atomically.

    moto is not thread-safe: on `ThreadedMotoServer` a TransactWriteItems deep-copies the table for its
    rollback while another thread's PutItem changes it, and fails with "dictionary changed size during
    iteration" (an HTTP 500 no real table returns; seen in the 8-worker load test). Requests still
    interleave between one another exactly as concurrent clients' do; only a request's own reads and
    writes are no longer torn.
    """
    from moto.dynamodb.responses import DynamoHandler

    call_action = DynamoHandler.call_action

    def atomic_call_action(self: DynamoHandler) -> Any:
        with _request_lock:
            return call_action(self)

    DynamoHandler.call_action = atomic_call_action  # type: ignore[method-assign]
