"""The token refresher's environment (names per docs/internal-contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass

from seller_insights.errors import ConfigurationError
from seller_insights.quotas import Rate
from seller_insights.settings import (
    AuditTable,
    BaseSettings,
    ConnectionsTable,
    DataBucket,
    IdempotencyTable,
    LwaClientSecret,
    PurgeSchedule,
    ReportNotificationsQueue,
    TokenKey,
    env_field,
)

# The stage config's bounds (infra/config.py StageConfig), checked again where the values are used.
LWA_REFRESH_RATE_RANGE = (0.1, 1000.0)
LWA_REFRESH_BURST_RANGE = (1, 10_000)


@dataclass(frozen=True, kw_only=True)
class TokenRefresherSettings(ConnectionsTable, IdempotencyTable, AuditTable, TokenKey, LwaClientSecret, PurgeSchedule,
                             ReportNotificationsQueue, DataBucket, BaseSettings):
    """REPORT_NOTIFICATIONS_QUEUE_ARN: the refresh finder keeps the queue's REPORT_PROCESSING_FINISHED
    destination in each region with a connection due (grantless; ids cached in the idempotency table).
    DATA_BUCKET: where the daily re-authorization digest goes (under notices/)."""

    # The token_refresh work queue: the refresh finder sends due connections to it, the function consumes it.
    refresh_work_queue_url: str = env_field()
    # The app-wide LWA refresh bucket (our own limit on refresh_token grants, every container together).
    lwa_refresh_rate: float = env_field()
    lwa_refresh_burst: int = env_field()
    # Re-authorization notices start this many days before the yearly due date.
    reauth_notice_days: int = env_field(default=30)
    # An expiry notice with fewer days left than this rotates the LWA client secret.
    rotate_when_days_left: int = env_field(default=7)
    event_bus_name: str = env_field(default="default")

    @property
    def lwa_refresh(self) -> Rate:
        return Rate(self.lwa_refresh_rate, self.lwa_refresh_burst)

    def validate(self) -> None:
        super().validate()
        for name, value, low, high in (("REAUTH_NOTICE_DAYS", self.reauth_notice_days, 1, 364),
                                       ("ROTATE_WHEN_DAYS_LEFT", self.rotate_when_days_left, 1, 89),
                                       ("LWA_REFRESH_RATE", self.lwa_refresh_rate, *LWA_REFRESH_RATE_RANGE),
                                       ("LWA_REFRESH_BURST", self.lwa_refresh_burst, *LWA_REFRESH_BURST_RANGE)):
            if not low <= value <= high:
                raise ConfigurationError(f"{name} must be between {low} and {high}")
