"""The data-request function's environment (names per docs/internal-contracts.md, issue 5)."""

from __future__ import annotations

from dataclasses import dataclass

from seller_insights.errors import ConfigurationError
from seller_insights.settings import BaseSettings, env_field


@dataclass(frozen=True, kw_only=True)
class DataRequestsSettings(BaseSettings):
    connections_table: str = env_field()
    audit_table: str = env_field()
    data_bucket: str = env_field()
    # Days between a deletion request and the purge (retention_days - pitr_recovery_days - 1).
    purge_after_days: int = env_field()

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.purge_after_days <= 30:
            raise ConfigurationError("PURGE_AFTER_DAYS must be between 1 and 30 (the 30-day deletion promise)")
