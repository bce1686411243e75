"""The retention sweeper's environment (names per docs/internal-contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass

from seller_insights.settings import BaseSettings, env_field


@dataclass(frozen=True, kw_only=True)
class RetentionSweeperSettings(BaseSettings):
    connections_table: str = env_field()
    audit_table: str = env_field()
    data_bucket: str = env_field()
