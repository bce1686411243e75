"""The retention sweeper's environment (names per docs/internal-contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass

from retention_sweeper.service import DEFAULT_PURGE_FIND_LIMIT, PURGE_FIND_LIMIT_RANGE
from seller_insights.errors import ConfigurationError
from seller_insights.settings import AuditTable, BaseSettings, ConnectionsTable, DataBucket, env_field


@dataclass(frozen=True, kw_only=True)
class RetentionSweeperSettings(ConnectionsTable, AuditTable, DataBucket, BaseSettings):
    # The sweep-retention schedule sends due purges there ({"retention_purges": [{seller_id, region}]}), at
    # most PURGE_FIND_LIMIT a run; this function consumes it, one purge per message.
    retention_purges_queue_url: str = env_field()
    purge_find_limit: int = env_field(default=DEFAULT_PURGE_FIND_LIMIT)

    def validate(self) -> None:
        super().validate()
        low, high = PURGE_FIND_LIMIT_RANGE
        if not low <= self.purge_find_limit <= high:
            raise ConfigurationError(f"PURGE_FIND_LIMIT must be in {low}..{high}")
