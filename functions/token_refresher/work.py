"""The token_refresh queue: batches of work items the schedules' finders sent, of two kinds:
`{"token_refresh": [{"seller_id", "region"}, ...]}` (refresh-tokens, renewed by RefreshWork) and
`{"consent_verification": [{"seller_id", "region", "candidate_id"}, ...]}` (verify-consents, checked by
VerificationWork).

Partial batch responses (seller_insights.sqs_batches): a message fails only when its body cannot be read
(after maxReceiveCount it rests in token_refresh_dlq, alarmed). Whatever happens to its items (done,
skipped, left for the app-wide LWA bucket), the message is done: an item not done stays due in the table
and the next finder run sends it again. Bodies are never logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from seller_insights.errors import UnreadableWork
from seller_insights.observability import get_logger
from seller_insights.sqs_batches import consume
from token_refresher.service import TOKEN_REFRESH_KIND
from token_refresher.verification import CONSENT_VERIFICATION_KIND

# The string fields each kind's items carry.
ITEM_FIELDS = {TOKEN_REFRESH_KIND: ("seller_id", "region"),
               CONSENT_VERIFICATION_KIND: ("seller_id", "region", "candidate_id")}


def is_token_work(event: dict[str, Any]) -> bool:
    """True for a batch of the token_refresh queue (one event source per queue: its first record tells)."""
    records = event.get("Records") or []
    if not records:
        return False
    try:
        body = json.loads(records[0].get("body") or "")
    except ValueError:
        return False
    return isinstance(body, dict) and any(kind in body for kind in ITEM_FIELDS)


def consume_work(event: dict[str, Any], context: LambdaContext,
                 handlers: dict[str, Callable[[list[dict[str, Any]]], None]],
                 reports: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Each message's items to the handler of its kind; `reports` (the batch's counts) is logged at the end."""
    def handle(record: SQSRecord) -> None:  # Powertools passes the record by this name
        kind, items = _items(record.body)
        handlers[kind](items)

    answer = consume(event, handle, _log_failure, context)
    get_logger().info("token work batch", extra={"report": reports()})
    return answer


def _items(body: str) -> tuple[str, list[dict[str, Any]]]:
    try:
        message = json.loads(body)
        (kind,) = [kind for kind in ITEM_FIELDS if kind in message]
        items = message[kind]
        if not isinstance(items, list):
            raise ValueError("not a list")
        for item in items:
            if not (isinstance(item, dict) and all(isinstance(item.get(name), str) for name in ITEM_FIELDS[kind])):
                raise ValueError("not a work item")
    except (ValueError, TypeError, AttributeError):
        raise UnreadableWork("a token_refresh message without readable work items") from None
    return kind, items


def _log_failure(record: SQSRecord, error: BaseException) -> None:
    if isinstance(error, UnreadableWork):
        get_logger().error("unreadable token_refresh message", extra={"message_id": record.message_id})
    else:
        get_logger().error("token_refresh message failed", exc_info=error, extra={"message_id": record.message_id})
