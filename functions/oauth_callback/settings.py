"""The consent function's environment (names per docs/internal-contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from seller_insights.errors import ConfigurationError, UnknownMarketplace
from seller_insights.marketplaces import marketplace
from seller_insights.settings import (
    AuditTable,
    BaseSettings,
    ConnectionsTable,
    IdempotencyTable,
    LwaClientSecret,
    TokenKey,
    env_field,
)

MAX_STATE_TTL_SECONDS = 600  # the state may live at most 10 minutes
# How long a consent may wait for Amazon to confirm its seller before it is destroyed.
MIN_VERIFICATION_SECONDS = 300
MAX_VERIFICATION_SECONDS = 72 * 3600


@dataclass(frozen=True, kw_only=True)
class ConsentSettings(ConnectionsTable, IdempotencyTable, AuditTable, TokenKey, LwaClientSecret, BaseSettings):
    oauth_state_table: str = env_field()
    app_draft: bool = env_field()
    redirect_uri: str = env_field()
    default_marketplace: str = env_field(default="US")
    state_ttl_seconds: int = env_field(default=MAX_STATE_TTL_SECONDS)
    consent_verification_seconds: int = env_field(default=6 * 3600)

    def validate(self) -> None:
        super().validate()
        uri = urlsplit(self.redirect_uri)
        if uri.query or uri.fragment or not uri.hostname:
            raise ConfigurationError("REDIRECT_URI must be an absolute URL without query or fragment")
        if uri.scheme != "https" and not (self.is_local and uri.hostname in ("127.0.0.1", "localhost")):
            raise ConfigurationError("REDIRECT_URI must use https (plain http only for the local stage on loopback)")
        if not 30 <= self.state_ttl_seconds <= MAX_STATE_TTL_SECONDS:
            raise ConfigurationError(f"STATE_TTL_SECONDS must be between 30 and {MAX_STATE_TTL_SECONDS}")
        if not MIN_VERIFICATION_SECONDS <= self.consent_verification_seconds <= MAX_VERIFICATION_SECONDS:
            raise ConfigurationError(f"CONSENT_VERIFICATION_SECONDS must be between {MIN_VERIFICATION_SECONDS} "
                                     f"and {MAX_VERIFICATION_SECONDS}")
        try:
            marketplace(self.default_marketplace)
        except UnknownMarketplace:
            raise ConfigurationError("DEFAULT_MARKETPLACE is not a known marketplace code") from None
