"""The shape every sweep shares: find due work through a sparse index, fan it out to a work queue in
batches, process the batches in parallel (the queue's event source, with a configured concurrency).

Finding: `due_items` pages a sparse index shard by shard, starting at a shard that rotates with every run
(`rotating_shards`), so a run that stops at its limit never starves the same shards. A run takes at most
`limit` items: what is left stays due and the next run finds it. Items come in due order within a shard.

Fanning out: `WorkQueue.send` packs work items into messages of `per_message` items (`{kind: [items]}`),
ten messages per SendMessageBatch. Entries SQS refused are sent again; what is still refused raises
`FanOutFailed` after every other entry went out. Work items are idempotent by design (each consumer
re-reads its item and skips what is no longer due), so an item sent twice costs a read, never a
duplicate effect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from seller_insights.errors import FanOutFailed
from seller_insights.repositories import SHARDS

__all__ = ["FanOutFailed", "FindReport", "WorkQueue", "due_items", "rotating_shards"]

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table
    from types_boto3_sqs.client import SQSClient
    from types_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SQS_BATCH = 10  # SendMessageBatch's maximum
SEND_ATTEMPTS = 3
MAX_DELAY_SECONDS = 900  # SQS's DelaySeconds ceiling


@dataclass(frozen=True)
class FindReport:
    """One finder run: items found due and sent (at most the run's limit; the rest stay due), in `messages`."""

    found: int
    messages: int

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def rotating_shards(epoch: int, period_seconds: int) -> list[str]:
    """Every shard once, starting at one that moves on with each period (each run of a schedule)."""
    start = (epoch // max(1, period_seconds)) % SHARDS
    return [str((start + offset) % SHARDS) for offset in range(SHARDS)]


def due_items(table: Table, *, index: str, shard_attribute: str, due_attribute: str, until: Any,
              shards: list[str], limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Items of the sparse `index` whose `due_attribute` is at most `until`, shard after shard in the order
    given, at most `limit` of them. Pages are read only as far as needed."""
    taken = 0
    for number in shards:
        request: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": Key(shard_attribute).eq(number) & Key(due_attribute).lte(until),
        }
        while True:
            if limit is not None:
                request["Limit"] = max(1, min(1000, limit - taken))
            page = table.query(**request)
            for item in page.get("Items", []):
                yield item
                taken += 1
                if limit is not None and taken >= limit:
                    return
            start = page.get("LastEvaluatedKey")
            if not start:
                break
            request["ExclusiveStartKey"] = start


class WorkQueue:
    """Work items of one kind, sent in messages of `per_message` items: `{"<kind>": [item, ...]}`."""

    def __init__(self, sqs: SQSClient, queue_url: str, kind: str, per_message: int = 10) -> None:
        if per_message < 1:
            raise ValueError("per_message must be at least 1")
        self._sqs = sqs
        self._queue_url = queue_url
        self._kind = kind
        self._per_message = per_message

    @property
    def kind(self) -> str:
        return self._kind

    def items_of(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The work items of a message body of this kind."""
        items = body.get(self._kind)
        if not isinstance(items, list):
            raise ValueError(f"not a {self._kind} message")
        return items

    def send(self, items: Iterable[dict[str, Any]], *, delay_seconds: int = 0) -> int:
        """Sends every item; returns the number of messages. Raises FanOutFailed if some stayed refused."""
        bodies = [json.dumps({self._kind: chunk}) for chunk in _chunks(list(items), self._per_message)]
        delay = max(0, min(MAX_DELAY_SECONDS, int(delay_seconds)))
        refused = 0
        for start in range(0, len(bodies), SQS_BATCH):
            refused += self._send_batch(bodies[start:start + SQS_BATCH], delay)
        if refused:
            raise FanOutFailed(f"SQS refused {refused} of {len(bodies)} {self._kind} messages")
        return len(bodies)

    def _send_batch(self, bodies: list[str], delay: int) -> int:
        pending: dict[str, str] = {str(i): body for i, body in enumerate(bodies)}
        for _ in range(SEND_ATTEMPTS):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": entry_id, "MessageBody": body, "DelaySeconds": delay} for entry_id, body in pending.items()]
            answer = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            pending = {failure["Id"]: pending[failure["Id"]] for failure in answer.get("Failed") or []}
            if not pending:
                return 0
        return len(pending)


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
