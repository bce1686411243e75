"""The token_refresh queue: batches of work items `{"token_refresh": [{"seller_id", "region"}, ...]}` that
the refresh-tokens finder sent, renewed by RefreshWork.

Partial batch responses (seller_insights.sqs_batches): a message fails only when its body cannot be read
(after maxReceiveCount it rests in token_refresh_dlq, alarmed). Whatever happens to its items (renewed,
skipped, left for the app-wide LWA bucket), the message is done: an item not renewed stays due in the
table and the next finder run sends it again. Bodies are never logged.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from seller_insights.fanout import WorkQueue
from seller_insights.observability import get_logger
from seller_insights.sqs_batches import consume
from token_refresher.service import TOKEN_REFRESH_KIND, RefreshWork


class UnreadableWork(ValueError):
    """A token_refresh message that is not a list of {seller_id, region} items."""


def is_token_refresh(event: dict[str, Any]) -> bool:
    """True for a batch of the token_refresh queue (one event source per queue: its first record tells)."""
    records = event.get("Records") or []
    if not records:
        return False
    try:
        body = json.loads(records[0].get("body") or "")
    except ValueError:
        return False
    return isinstance(body, dict) and TOKEN_REFRESH_KIND in body


def consume_work(event: dict[str, Any], context: LambdaContext, work: RefreshWork, queue: WorkQueue) -> dict[str, Any]:
    def handle(record: SQSRecord) -> None:  # Powertools passes the record by this name
        work.renew(_items(queue, record.body))

    answer = consume(event, handle, _log_failure, context)
    get_logger().info("token refresh batch", extra={"report": work.report.as_dict()})
    return answer


def _items(queue: WorkQueue, body: str) -> list[dict[str, Any]]:
    try:
        items = queue.items_of(json.loads(body))
        for item in items:
            if not (isinstance(item, dict) and isinstance(item.get("seller_id"), str)
                    and isinstance(item.get("region"), str)):
                raise ValueError("not a {seller_id, region} item")
    except (ValueError, TypeError, AttributeError):
        raise UnreadableWork("a token_refresh message without readable work items") from None
    return items


def _log_failure(record: SQSRecord, error: BaseException) -> None:
    if isinstance(error, UnreadableWork):
        get_logger().error("unreadable token_refresh message", extra={"message_id": record.message_id})
    else:
        get_logger().error("token_refresh message failed", exc_info=error, extra={"message_id": record.message_id})
