"""What every DynamoDB repository shares: conditional writes that fail as domain errors, queries paged by
boto3's paginator, and batch requests whose unprocessed part is retried a bounded number of times.

Repositories take a resource `Table` (plain Python values in and out). Its `meta.client` is a client with
the same (de)serialisation, so boto3's own `query` paginator pages a Table query without a hand-written
`LastEvaluatedKey` loop and without a TypeDeserializer of ours. No botocore exception about a failed
condition leaves this module: callers see `ConditionFailed` (or `TransactionCancelled`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from seller_insights.errors import CONDITION_FAILED_REASON, ConditionFailed, TransactionCancelled, UnprocessedRequests

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_dynamodb.service_resource import Table
    from types_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

BATCH_WRITE_MAX = 25  # BatchWriteItem: at most 25 requests per call
BATCH_GET_MAX = 100  # BatchGetItem: at most 100 keys per call
ATTEMPTS = 6  # per batch: the first call and five retries of what DynamoDB left unprocessed
FIRST_DELAY = 0.05
MAX_DELAY = 2.0
_CONDITION_FAILED = "ConditionalCheckFailedException"
_TRANSACTION_CANCELLED = "TransactionCanceledException"

Sleep = Callable[[float], None]


# --- conditional writes ----------------------------------------------------------------------------------


@contextmanager
def condition_checked() -> Iterator[None]:
    """Turns a failed condition of the writes inside into `ConditionFailed` (`TransactionCancelled` for a
    transaction); every other error passes unchanged."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == _CONDITION_FAILED:
            raise ConditionFailed("the condition of the write failed") from None
        if code == _TRANSACTION_CANCELLED:
            reasons = tuple(reason.get("Code") for reason in exc.response.get("CancellationReasons", []))
            if CONDITION_FAILED_REASON in reasons:
                raise TransactionCancelled(reasons) from None
        raise


def transact(client: DynamoDBClient, actions: list[dict[str, Any]]) -> None:
    """TransactWriteItems on a resource's `meta.client` (plain Python values in `actions`, which the
    client's stubs, written for the wire format, do not describe); `TransactionCancelled` when a condition
    failed."""
    with condition_checked():
        client.transact_write_items(TransactItems=cast("list[TransactWriteItemTypeDef]", actions))


def conditional[R](write: Callable[[], R]) -> R | None:
    """The answer of a conditional write, or None when its condition failed (nothing was written)."""
    try:
        with condition_checked():
            return write()
    except ConditionFailed:
        return None


def applied(write: Callable[[], object]) -> bool:
    """Whether a conditional write applied (False: its condition failed, nothing was written)."""
    try:
        with condition_checked():
            write()
    except ConditionFailed:
        return False
    return True


# --- queries -----------------------------------------------------------------------------------------------


def query(table: Table, **request: Any) -> Iterator[dict[str, Any]]:
    """Every item a Query of the table returns, page after page (boto3's paginator follows
    LastEvaluatedKey). `request` is what `Table.query` takes: `Key(...)` conditions, plain values."""
    return query_client(table.meta.client, TableName=table.name, **request)


def query_client(client: DynamoDBClient, **request: Any) -> Iterator[dict[str, Any]]:
    """The same with a client and `TableName`; the client must be a resource's `meta.client`, which takes
    and gives plain Python values."""
    for page in client.get_paginator("query").paginate(**request):
        for item in page.get("Items", []):
            yield cast(dict[str, Any], item)


# --- batches -----------------------------------------------------------------------------------------------


class Batches:
    """BatchWriteItem and BatchGetItem over any number of requests, in chunks of the API's maximum. What
    DynamoDB leaves unprocessed is sent again after a growing pause (it asks us to slow down), at most
    `attempts` calls per chunk; then `UnprocessedRequests` is raised. `sleep` is injected so tests never
    wait on the wall clock."""

    def __init__(self, client: DynamoDBClient, *, sleep: Sleep = time.sleep, attempts: int = ATTEMPTS,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY) -> None:
        self._client = client  # a resource's meta.client: plain Python values
        self._sleep = sleep
        self._attempts = attempts
        self._first_delay = first_delay
        self._max_delay = max_delay

    def put(self, table_name: str, items: list[dict[str, Any]]) -> int:
        return self.write(table_name, [{"PutRequest": {"Item": item}} for item in items])

    def delete(self, table_name: str, keys: list[dict[str, Any]]) -> int:
        return self.write(table_name, [{"DeleteRequest": {"Key": key}} for key in keys])

    def write(self, table_name: str, requests: list[dict[str, Any]]) -> int:
        """Every request written; how many there were."""
        for start in range(0, len(requests), BATCH_WRITE_MAX):
            chunk = {table_name: requests[start:start + BATCH_WRITE_MAX]}
            self._until_processed(lambda pending: dict(self._client.batch_write_item(RequestItems=pending)),
                                  chunk, "UnprocessedItems", lambda answer: None)
        return len(requests)

    def get(self, table_name: str, keys: list[dict[str, Any]], *, projection: str | None = None,
            consistent: bool = True) -> list[dict[str, Any]]:
        """The items of `keys` that exist (in no particular order)."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_MAX):
            request: dict[str, Any] = {"Keys": keys[start:start + BATCH_GET_MAX], "ConsistentRead": consistent}
            if projection:
                request["ProjectionExpression"] = projection
            self._until_processed(lambda pending: dict(self._client.batch_get_item(RequestItems=pending)),
                                  {table_name: request}, "UnprocessedKeys",
                                  lambda answer: found.extend(answer.get("Responses", {}).get(table_name, [])))
        return found

    def _until_processed(self, call: Callable[[Any], dict[str, Any]], pending: dict[str, Any], leftover: str,
                         collect: Callable[[dict[str, Any]], None]) -> None:
        delay = self._first_delay
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(delay)
                delay = min(delay * 2, self._max_delay)
            answer = call(pending)
            collect(answer)
            pending = answer.get(leftover) or {}
            if not pending:
                return
        raise UnprocessedRequests(self._attempts)


def plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints (or floats), recursively, for JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return value
