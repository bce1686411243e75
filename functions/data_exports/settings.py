"""The export worker's environment (names per docs/internal-contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass

from seller_insights.settings import AuditTable, BaseSettings, ConnectionsTable, DataBucket


@dataclass(frozen=True, kw_only=True)
class DataExportsSettings(ConnectionsTable, AuditTable, DataBucket, BaseSettings):
    """Everything it reads is shared with other functions."""
