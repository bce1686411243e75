"""The LWA client secret Amazon rotates: its application notifications, and storing a new secret.

One place for the token refresher (the notifications queue's consumer) and `ops recover-secret` (the
same notification taken from the dead-letter queue), so both store a new secret the same way:

- PutSecretValue of the whole JSON (docs/internal-contracts.md) as the AWSCURRENT version, with a
  ClientRequestToken derived from the notification id: Secrets Manager ignores a repeat of the same
  version, so a write retried after a lost answer makes no second version;
- nothing is written when the secret is already the current one ("duplicate"), or when a later secret
  has been stored since ("superseded": the notification's secret is the previous one, or expires no later
  than the current one); a redelivered or recovered notification is a no-op;
- the secret value is never logged, put in an exception or shown by `repr`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from seller_insights.errors import MalformedNotification
from seller_insights.redaction import register_secret

SECRET_EXPIRY_TYPE = "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY"  # noqa: S105 - a notification type name
NEW_SECRET_TYPE = "APPLICATION_OAUTH_CLIENT_NEW_SECRET"  # noqa: S105 - a notification type name
NEW_SECRET_SECTION = "applicationOAuthClientNewSecret"  # noqa: S105 - a payload section name
# Version ids of stored secrets: uuid5(this, notification id), the same for every attempt of one notification.
VERSION_NAMESPACE = uuid.UUID("5b2f1c4e-8a3d-4f6b-9e1a-7c0d2b3a4e5f")


@dataclass(frozen=True)
class Notification:
    """One of Amazon's application notifications about the client secret (SECRET_EXPIRY or NEW_SECRET)."""

    notification_id: str
    notification_type: str
    payload: dict[str, Any] = field(repr=False)  # NEW_SECRET's holds the secret
    event_time: str = ""

    @classmethod
    def parse(cls, body: str) -> Notification:
        try:
            message = json.loads(body)
            metadata = message["notificationMetadata"]
            notification_type = message["notificationType"]
            payload = message["payload"]
            notification_id = str(metadata["notificationId"])
        except (ValueError, KeyError, TypeError):
            raise MalformedNotification("not an Amazon application notification") from None
        if not notification_id:
            raise MalformedNotification("a notification without its notificationId")
        if notification_type not in (SECRET_EXPIRY_TYPE, NEW_SECRET_TYPE) or not isinstance(payload, dict):
            raise MalformedNotification(f"unsupported notification type {str(notification_type)[:64]!r}")
        return cls(notification_id, notification_type, payload, str(message.get("eventTime") or ""))

    def field(self, section: str, name: str) -> str:
        try:
            return str(self.payload[section][name])
        except (KeyError, TypeError):
            raise MalformedNotification(f"{self.notification_type} without {section}.{name}") from None

    def time(self, section: str, name: str) -> datetime:
        try:
            return datetime.fromisoformat(self.field(section, name).replace("Z", "+00:00"))
        except ValueError:
            raise MalformedNotification(f"{section}.{name} is not an ISO-8601 time") from None

    def optional_time(self, section: str, name: str) -> str | None:
        """The time as ISO-8601 with milliseconds, or None when missing or malformed."""
        try:
            return iso_millis(self.time(section, name))
        except MalformedNotification:
            return None


@dataclass(frozen=True)
class NewClientSecret:
    """What an APPLICATION_OAUTH_CLIENT_NEW_SECRET notification says; `repr` leaves the secret out."""

    notification_id: str
    client_id: str
    value: str = field(repr=False)
    expires_at: str | None  # newClientSecretExpiryTime: a later rotation's secret expires later
    old_expires_at: str | None  # oldClientSecretExpiryTime: the overlap of the secret it replaces
    event_time: str

    @classmethod
    def from_notification(cls, notification: Notification) -> NewClientSecret:
        if notification.notification_type != NEW_SECRET_TYPE:
            raise MalformedNotification(f"{notification.notification_type} carries no new secret")
        value = notification.field(NEW_SECRET_SECTION, "newClientSecret")
        register_secret(value)
        return cls(
            notification_id=notification.notification_id,
            client_id=notification.field(NEW_SECRET_SECTION, "clientId"),
            value=value,
            # The new secret must be stored even if an expiry is missing or malformed: without the old
            # one's there is simply no overlap for it.
            expires_at=notification.optional_time(NEW_SECRET_SECTION, "newClientSecretExpiryTime"),
            old_expires_at=notification.optional_time(NEW_SECRET_SECTION, "oldClientSecretExpiryTime"),
            event_time=notification.event_time,
        )

    @property
    def version_id(self) -> str:
        return str(uuid.uuid5(VERSION_NAMESPACE, f"lwa-client-secret:{self.notification_id}"))


class ClientSecretStore:
    """The LWA client secret in Secrets Manager, read without a cache (rotation needs the truth)."""

    def __init__(self, secrets_client: Any, secret_id: str) -> None:
        self._client = secrets_client
        self._secret_id = secret_id

    def read(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._client.get_secret_value(SecretId=self._secret_id)["SecretString"])
        return value

    def standing(self, new: NewClientSecret) -> str:
        """What storing `new` would do now: "store", "duplicate", "superseded" or "other client"."""
        return _standing(self.read(), new)

    def store_new(self, new: NewClientSecret, *, now: datetime) -> str:
        """Stores `new` as the current secret, the current one kept as previous until its expiry.

        Answers "stored", or without writing "duplicate", "superseded" or "other client". Any error of
        Secrets Manager is raised: the notification must not be acknowledged then."""
        current = self.read()
        standing = _standing(current, new)
        if standing != "store":
            return standing
        value = {
            "client_id": current["client_id"],
            "application_id": current["application_id"],
            "client_secret": new.value,
            "client_secret_expires_at": new.expires_at,
            "previous_client_secret": current["client_secret"],
            "previous_client_secret_expires_at": new.old_expires_at,
            "stored_at": iso_millis(now),
        }
        try:
            self._client.put_secret_value(SecretId=self._secret_id, SecretString=json.dumps(value),
                                          ClientRequestToken=new.version_id, VersionStages=["AWSCURRENT"])
        except ClientError as exc:
            # This notification's version exists with another stored_at: another worker (or ops) stored it.
            if exc.response.get("Error", {}).get("Code") == "ResourceExistsException" and \
                    self.read().get("client_secret") == new.value:
                return "duplicate"
            raise
        return "stored"


def _standing(current: dict[str, Any], new: NewClientSecret) -> str:
    if current.get("client_id") != new.client_id:
        return "other client"
    if current.get("client_secret") == new.value:
        return "duplicate"
    if new.value == current.get("previous_client_secret"):
        return "superseded"
    stored_expiry = current.get("client_secret_expires_at")
    if new.expires_at and isinstance(stored_expiry, str) and _before_or_at(new.expires_at, stored_expiry):
        return "superseded"
    return "store"


def _before_or_at(first: str, second: str) -> bool:
    try:
        return parse_time(first) <= parse_time(second)
    except ValueError:
        return False


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def iso_millis(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
