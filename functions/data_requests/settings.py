"""The data-request function's environment (names per docs/internal-contracts.md, issue 5)."""

from __future__ import annotations

from dataclasses import dataclass

from seller_insights.settings import AuditTable, BaseSettings, ConnectionsTable, DataBucket, PurgeSchedule, env_field


@dataclass(frozen=True, kw_only=True)
class DataRequestsSettings(ConnectionsTable, AuditTable, DataBucket, PurgeSchedule, BaseSettings):
    # The data_exports queue: an export request is recorded here and built by the export worker.
    export_queue_url: str = env_field()
