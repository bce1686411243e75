"""The report fetcher's environment (names per docs/internal-contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass

from seller_insights.errors import ConfigurationError
from seller_insights.report_catalog import parse_enabled
from seller_insights.settings import BaseSettings, env_field


@dataclass(frozen=True, kw_only=True)
class ReportFetcherSettings(BaseSettings):
    connections_table: str = env_field()
    token_key_id: str = env_field()
    data_bucket: str = env_field()
    report_jobs_queue_url: str = env_field()
    # Report types a connection pulls unless its planning cursor lists its own (comma-separated).
    default_report_types: str = env_field()
    purge_after_days: int = env_field(default=27)

    @property
    def enabled_by_default(self) -> tuple[str, ...]:
        return parse_enabled(self.default_report_types)

    def validate(self) -> None:
        super().validate()
        if not self.enabled_by_default:
            raise ConfigurationError("DEFAULT_REPORT_TYPES lists no report type")
