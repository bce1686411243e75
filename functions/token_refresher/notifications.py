"""The application notifications queue: each of Amazon's notifications handled once by SecretRotation.

Powertools' batch processing answers with the failed messages only; Powertools Idempotency keeps one
record per notification id in the idempotency table (`id = notification#<sha256 of the id>`):
- handled: the record holds the outcome ("stored", "rotated", ...; never the notification, never a
  secret) for 14 days, longer than SQS keeps a message, and a redelivery does nothing;
- being handled: a redelivery is deferred (RetryLater) until the handling invocation's deadline
  (`register_lambda_context`), so one whose handler crashed or timed out is taken again;
- failed: the record is deleted and the redelivery tries again.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.idempotency.persistence.dynamodb import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

from seller_insights.errors import MalformedNotification, RetryLater
from seller_insights.observability import get_logger
from seller_insights.sqs_batches import consume
from token_refresher.models import Notification
from token_refresher.service import SecretRotation

NOTIFICATION_KEPT_SECONDS = 14 * 24 * 3600  # a handled notification: longer than SQS keeps a message
NOTIFICATION_KEY_PREFIX = "notification"


class NotificationConsumer:
    """The queue's batches through SecretRotation, each notification id once."""

    def __init__(self, rotation: SecretRotation, *, idempotency_table: str, dynamodb: Any) -> None:
        self._rotation = rotation
        self._config = IdempotencyConfig(
            expires_after_seconds=NOTIFICATION_KEPT_SECONDS,
            raise_on_no_idempotency_key=True,
            hash_function="sha256",
        )
        self._once = idempotent_function(
            data_keyword_argument="notification_id",  # the key is the id alone, never the payload
            persistence_store=DynamoDBPersistenceLayer(table_name=idempotency_table, boto3_client=dynamodb),
            config=self._config,
            key_prefix=NOTIFICATION_KEY_PREFIX,
        )(self._handle)

    def consume(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        """Partial batch response: only the failed messages return to the queue. Bodies are never logged."""
        # A claim in progress lapses at this invocation's deadline (not after the 14 days).
        self._config.register_lambda_context(context)
        return consume(event, self._record, _log_failure, context)

    def _record(self, record: SQSRecord) -> None:
        notification = Notification.parse(record.body)
        try:
            self._once(notification_id=notification.notification_id, notification=notification)
        except IdempotencyAlreadyInProgressError:
            raise RetryLater("another worker is handling this notification") from None

    def _handle(self, *, notification_id: str, notification: Notification) -> str:
        # What Powertools stores as the result: the outcome's name, which holds no secret.
        return self._rotation.handle(notification)


def _log_failure(record: SQSRecord, error: BaseException) -> None:
    logger = get_logger()
    if isinstance(error, MalformedNotification):
        # Retrying cannot fix it; after maxReceiveCount it rests in the DLQ (alarmed) for a human.
        logger.error("unreadable notification", extra={"reason": str(error), "message_id": record.message_id})
    elif isinstance(error, RetryLater):
        logger.info("notification deferred", extra={"reason": str(error), "message_id": record.message_id})
    else:
        logger.error("notification failed", exc_info=error, extra={"message_id": record.message_id})
