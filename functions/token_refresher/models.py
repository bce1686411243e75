"""What the token refresher receives and reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from seller_insights import fanout
from seller_insights.errors import MalformedNotification

SECRET_EXPIRY_TYPE = "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY"  # noqa: S105 - a notification type name
NEW_SECRET_TYPE = "APPLICATION_OAUTH_CLIENT_NEW_SECRET"  # noqa: S105 - a notification type name


@dataclass(frozen=True)
class Notification:
    notification_id: str
    notification_type: str
    payload: dict[str, Any]
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


@dataclass(frozen=True)
class FindReport(fanout.FindReport):
    """One run of a token finder (refresh-tokens, verify-consents): what it found due and sent to the
    token_refresh queue, and the run's limit (the LWA bucket's capacity over the schedule's interval)."""

    limit: int = 0


@dataclass
class RefreshReport:
    """One token_refresh batch: what became of its work items."""

    refreshed: int = 0
    revoked: int = 0
    skipped: int = 0  # not active any more, or another caller holds the refresh lease
    not_due: int = 0  # renewed since it was found (idempotent: a read, no LWA call)
    failed: int = 0  # stays due: the next finder run sends it again
    deferred: int = 0  # the app-wide LWA bucket said wait, or the invocation ran short of time: stays due
    stopped: str | None = None  # why the batch ended early ("invalid_client", "lwa_rate", "time")

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class DigestReport:
    """The daily re-authorization digest: how many connections are due, and whether it was announced."""

    due: int = 0
    published: int = 0
    key: str | None = None  # the digest object in the data bucket (none when nothing is due)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))
