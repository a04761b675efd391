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


# ---------------------------------------------------------------- TransactWriteItems: roll back what it touched

_transaction = threading.local()


class _CopyWithoutTables:
    """`copy` for moto's DynamoDB backend module: inside a transaction a Table is not copied (the
    transaction keeps its touched items instead); everything else is copied as `copy` would."""

    def __getattr__(self, name: str) -> Any:
        import copy

        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        import copy

        from moto.dynamodb.models.table import Table

        if getattr(_transaction, "active", False) and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def patch_transaction_rollback() -> None:
    """Make TransactWriteItems keep, for its rollback, the items it touches rather than whole tables.

    moto deep-copies every table a transaction names before applying it, so that a cancelled
    transaction can put the table back: O(table size) per request, 4.6 s a transaction once the
    fleet bench's table held 50 targets' day of samples, and most of the bench's time. DynamoDB's
    contract is unchanged: all the writes apply or none do (a cancelled transaction leaves every
    item as it was: each touched item is put back, or removed if it did not exist), conditions
    are checked by moto as before, and errors are moto's.
    """
    import copy

    import moto.dynamodb.models as backend_module
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType

    transact = DynamoDBBackend.transact_write_items
    backend_module.copy = _CopyWithoutTables()  # type: ignore[attr-defined,assignment]

    def touched(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        kept: list[tuple[Any, ...]] = []
        for entry in transact_items:
            if not isinstance(entry, dict) or len(entry) != 1:
                continue  # moto refuses it
            op = next(iter(entry.values()))
            table = backend.tables.get(str(op.get("TableName"))) if isinstance(op, dict) else None
            key = (op.get("Item") if "Item" in op else op.get("Key")) if table is not None else None
            if table is None or not isinstance(key, dict) or table.hash_key_attr not in key:
                continue
            if table.range_key_attr and table.range_key_attr not in key:
                continue
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            kept.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        return kept

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        kept = touched(self, transact_items)
        _transaction.active = True
        try:
            return transact(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(kept):
                if item is None:
                    table.delete_item(hash_key, range_key)
                elif range_key is not None:
                    table.items[hash_key][range_key] = item
                else:
                    table.items[hash_key] = item
            raise
        finally:
            _transaction.active = False

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
