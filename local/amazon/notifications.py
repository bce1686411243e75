"""Application notifications: their payloads, as Amazon sends them, and their delivery to SQS.

Amazon sends the two client-secret notifications to the queue the developer registered in the
Developer Console. Here that queue is registered with `AmazonEmulator.configure(
notification_queue_url=..., sqs_endpoint=...)`, and the emulator sends with its own boto3 SQS
client (credentials from the environment). A NEW_SECRET body carries a client secret: nothing
here logs a body, only the notification type and the queue's name.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from local.iam.guard import AMAZON_NOTIFICATIONS_ACCOUNT, as_account

from .clock import iso

logger = logging.getLogger(__name__)

# Notification type names, not secrets.
NEW_SECRET = "APPLICATION_OAUTH_CLIENT_NEW_SECRET"  # noqa: S105
SECRET_EXPIRY = "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY"  # noqa: S105
REPORT_FINISHED = "REPORT_PROCESSING_FINISHED"
PAYLOAD_VERSION = "2023-11-30"
REPORT_PAYLOAD_VERSION = "2020-09-04"
EXPIRY_REASON = "PERIODIC_ROTATION"
SQS_REGION = "us-east-1"


class NotificationError(Exception):
    """The notification could not be delivered (the message names no body)."""


def envelope(
    notification_type: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    application_id: str,
    subscription_id: str,
    notification_version: str = "1.0",
    payload_version: str = PAYLOAD_VERSION,
    event_time: datetime | None = None,
) -> dict[str, Any]:
    """The common notification shape around a type's payload."""
    return {
        "notificationVersion": notification_version,
        "notificationType": notification_type,
        "payloadVersion": payload_version,
        "eventTime": iso(event_time or now),
        "payload": payload,
        "notificationMetadata": {
            "applicationId": application_id,
            "subscriptionId": subscription_id,
            "publishTime": iso(now),
            "notificationId": str(uuid.uuid4()),
        },
    }


def new_secret_payload(
    client_id: str, new_secret: str, new_expires_at: datetime, old_expires_at: datetime
) -> dict[str, Any]:
    return {
        "applicationOAuthClientNewSecret": {
            "clientId": client_id,
            "newClientSecret": new_secret,
            "newClientSecretExpiryTime": iso(new_expires_at),
            "oldClientSecretExpiryTime": iso(old_expires_at),
        }
    }


def report_finished_payload(
    seller_id: str, report_id: str, report_type: str, status: str, document_id: str | None
) -> dict[str, Any]:
    """REPORT_PROCESSING_FINISHED (models/ReportProcessingFinishedNotification.json); `reportDocumentId` only if any."""
    body: dict[str, Any] = {
        "sellerId": seller_id,
        "accountId": f"amzn1.merchant.o.{seller_id}",
        "reportId": report_id,
        "reportType": report_type,
        "processingStatus": status,
    }
    if document_id is not None:
        body["reportDocumentId"] = document_id
    return {"reportProcessingFinishedNotification": body}


def secret_expiry_payload(client_id: str, expires_at: datetime) -> dict[str, Any]:
    return {
        "applicationOAuthClientSecretExpiry": {
            "clientId": client_id,
            "clientSecretExpiryTime": iso(expires_at),
            "clientSecretExpiryReason": EXPIRY_REASON,
        }
    }


class Notifier:
    """The registered notification queue and the SQS client that reaches it."""

    def __init__(
        self, queue_url: str | None = None, sqs_endpoint: str | None = None, group_id: str = "application-oauth-client"
    ) -> None:
        self._lock = threading.Lock()
        self._group_id = group_id
        self._queue_url = queue_url or None
        self._endpoint = sqs_endpoint or None
        self._client: Any = None  # a boto3 SQS client, built on first use
        # Amazon keeps one subscription per notification type; ids stay stable for the emulator's life.
        self._subscriptions: dict[str, str] = {}

    def configure(self, queue_url: str | None = None, sqs_endpoint: str | None = None) -> None:
        """None keeps a value; "" unregisters the queue (or goes back to boto3's default endpoint)."""
        with self._lock:
            if queue_url is not None:
                self._queue_url = queue_url or None
            if sqs_endpoint is not None:
                self._endpoint = sqs_endpoint or None
                self._client = None

    @property
    def queue_url(self) -> str | None:
        with self._lock:
            return self._queue_url

    @property
    def enrolled(self) -> bool:
        return self.queue_url is not None

    def subscription_id(self, notification_type: str) -> str:
        with self._lock:
            return self._subscriptions.setdefault(notification_type, str(uuid.uuid4()))

    def send(self, notification: Mapping[str, Any]) -> str:
        """Sends one notification to the registered queue; returns SQS's message id."""
        with self._lock:
            queue_url = self._queue_url
            if queue_url is None:
                raise NotificationError("no notification queue is registered")
            if self._client is None:
                # A session of its own: boto3's default session is not safe to share across threads.
                self._client = boto3.session.Session().client(
                    "sqs", region_name=SQS_REGION, endpoint_url=self._endpoint
                )
            client = self._client
        kind = str(notification.get("notificationType", "?"))
        extra: dict[str, str] = {}
        if queue_url.endswith(".fifo"):
            extra = {
                "MessageGroupId": self._group_id,
                "MessageDeduplicationId": str(notification["notificationMetadata"]["notificationId"]),
            }
        try:
            # Sent as Amazon's notifications account: the queue and key policies must let it in.
            with as_account(AMAZON_NOTIFICATIONS_ACCOUNT):
                answer = client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(notification), **extra)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise NotificationError(f"SQS refused the {kind} notification ({code})") from None
        except BotoCoreError as exc:
            reason = type(exc).__name__
            raise NotificationError(f"SQS could not be reached for the {kind} notification ({reason})") from None
        logger.info("sent %s to queue %s", kind, queue_url.rsplit("/", 1)[-1])
        return str(answer["MessageId"])
