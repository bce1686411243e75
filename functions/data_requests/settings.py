"""The data-request function's environment (names per docs/internal-contracts.md, issue 5)."""

from __future__ import annotations

from dataclasses import dataclass

from seller_insights.settings import AuditTable, BaseSettings, ConnectionsTable, DataBucket, PurgeSchedule


@dataclass(frozen=True, kw_only=True)
class DataRequestsSettings(ConnectionsTable, AuditTable, DataBucket, PurgeSchedule, BaseSettings):
    """Everything it reads is shared with other functions."""
