"""Harness-only speed-ups of moto's DynamoDB for long in-process simulations (bench.completeness).

moto answers every Query by walking and sorting the whole table (`Table.all_items()`), for a key
condition on the table's partition as well as on a global secondary index. A simulated week of 100+
sellers writes tens of thousands of items (jobs, report rows, report-id pointers, quota buckets), and the
schedules query the sparse indexes every few minutes: the week would spend hours in that walk. These
patches hand moto's own query code a smaller candidate list, so its filtering, sorting, paging and
projections are unchanged:

- a Query on the table: the items of that partition only;
- a Query on an index: the items that ever carried one of the table's index partition attributes
  (kept by watching `put_item` and `update_item`; moto's own filter still checks each one, so an item
  that lost the attribute, or was deleted, is skipped exactly as before).

Nothing of the product changes. Single-threaded use only (the simulation drives every handler from one
thread; the emulator's thread never touches DynamoDB).
"""

from __future__ import annotations

from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_installed = False


def _index_partition_attributes(table: Table) -> set[str]:
    cached: set[str] | None = table.__dict__.get("_bench_index_attributes")
    if cached is None:
        cached = {key["AttributeName"] for index in table.all_indexes() for key in index.schema
                  if key["KeyType"] == "HASH"}
        table.__dict__["_bench_index_attributes"] = cached
    return cached


def _note(table: Table, item: Any) -> None:
    """Remember an item that an index may list (it carries one of the index partition attributes)."""
    if item is None:
        return
    attributes = _index_partition_attributes(table)
    if attributes and any(name in item.attrs for name in attributes):
        table.__dict__.setdefault("_bench_indexed", {})[(item.hash_key, item.range_key)] = None


def _indexed_items(table: Table) -> list[Any]:
    keys: dict[tuple[Any, Any], None] = table.__dict__.get("_bench_indexed", {})
    found = []
    for hash_key, range_key in list(keys):
        item = table.get_item(hash_key, range_key) if table.range_key_attr else table.items.get(hash_key)
        if item is None:
            del keys[(hash_key, range_key)]
        else:
            found.append(item)
    return found


def _partition_items(table: Table, hash_key: Any) -> list[Any]:
    partition = table.items.get(hash_key)
    if partition is None:
        return []
    if not table.range_key_attr:
        return [partition]
    return sorted(partition.values(), key=lambda item: item.range_key)


def install() -> None:
    """Idempotent; applies to every moto DynamoDB table of this process."""
    global _installed  # noqa: PLW0603 - a process-wide patch, applied once
    if _installed:
        return
    put_item, update_item, query = Table.put_item, DynamoDBBackend.update_item, Table.query

    def noting_put_item(self: Table, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        item = put_item(self, item_attrs, *args, **kwargs)
        _note(self, item)
        return item

    def noting_update_item(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
        item = update_item(self, table_name, *args, **kwargs)
        _note(self.get_table(table_name), item)
        return item

    def narrowed_query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        candidates = _indexed_items(self) if index_name else _partition_items(self, hash_key)
        self.__dict__["all_items"] = lambda: candidates
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            del self.__dict__["all_items"]

    Table.put_item = noting_put_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = noting_update_item  # type: ignore[method-assign]
    Table.query = narrowed_query  # type: ignore[method-assign]
    _installed = True
