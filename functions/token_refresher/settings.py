"""The token refresher's environment (names per docs/internal-contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass

from seller_insights.errors import ConfigurationError
from seller_insights.settings import (
    AuditTable,
    BaseSettings,
    ConnectionsTable,
    IdempotencyTable,
    LwaClientSecret,
    PurgeSchedule,
    ReportNotificationsQueue,
    TokenKey,
    env_field,
)


@dataclass(frozen=True, kw_only=True)
class TokenRefresherSettings(ConnectionsTable, IdempotencyTable, AuditTable, TokenKey, LwaClientSecret, PurgeSchedule,
                             ReportNotificationsQueue, BaseSettings):
    """REPORT_NOTIFICATIONS_QUEUE_ARN: the refresh sweep keeps the queue's REPORT_PROCESSING_FINISHED
    destination in each region with a connection due (grantless; ids cached in the idempotency table)."""

    # Re-authorization notices start this many days before the yearly due date.
    reauth_notice_days: int = env_field(default=30)
    # An expiry notice with fewer days left than this rotates the LWA client secret.
    rotate_when_days_left: int = env_field(default=7)
    event_bus_name: str = env_field(default="default")

    def validate(self) -> None:
        super().validate()
        for name, value, low, high in (("REAUTH_NOTICE_DAYS", self.reauth_notice_days, 1, 364),
                                       ("ROTATE_WHEN_DAYS_LEFT", self.rotate_when_days_left, 1, 89)):
            if not low <= value <= high:
                raise ConfigurationError(f"{name} must be between {low} and {high}")
