"""Application notifications (spapi-protocol.md §3.3): their payloads and their delivery to SQS.

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

from .clock import iso

logger = logging.getLogger(__name__)

# Notification type names, not secrets.
NEW_SECRET = "APPLICATION_OAUTH_CLIENT_NEW_SECRET"  # noqa: S105
SECRET_EXPIRY = "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY"  # noqa: S105
PAYLOAD_VERSION = "2023-11-30"
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
) -> dict[str, Any]:
    """The common notification shape around a type's payload."""
    return {
        "notificationVersion": "1.0",
        "notificationType": notification_type,
        "payloadVersion": PAYLOAD_VERSION,
        "eventTime": iso(now),
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

    def __init__(self, queue_url: str | None = None, sqs_endpoint: str | None = None) -> None:
        self._lock = threading.Lock()
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
                "MessageGroupId": "application-oauth-client",
                "MessageDeduplicationId": str(notification["notificationMetadata"]["notificationId"]),
            }
        try:
            answer = client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(notification), **extra)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise NotificationError(f"SQS refused the {kind} notification ({code})") from None
        except BotoCoreError as exc:
            reason = type(exc).__name__
            raise NotificationError(f"SQS could not be reached for the {kind} notification ({reason})") from None
        logger.info("sent %s to queue %s", kind, queue_url.rsplit("/", 1)[-1])
        return str(answer["MessageId"])
