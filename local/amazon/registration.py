"""The SP-API application registered with the emulator, and its LWA client.

Amazon ties an application (consent, redirect URIs, Log-in URI, draft or published) to one LWA
client (client id and secret). The client keeps a list of secrets, each with an optional expiry,
so that a rotation can leave the previous secret valid for a while.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

# After rotateApplicationClientSecret, the new secret lives 180 days and the old one 7 more days.
NEW_SECRET_LIFETIME = timedelta(days=180)
OLD_SECRET_GRACE = timedelta(days=7)


def new_application_id() -> str:
    return f"amzn1.sp.solution.{uuid.uuid4()}"


def new_client_id() -> str:
    return f"amzn1.application-oa2-client.{secrets.token_hex(16)}"


def new_client_secret() -> str:
    return f"amzn1.oa2-cs.v1.{secrets.token_hex(32)}"


@dataclass(frozen=True)
class ClientSecret:
    value: str = field(repr=False)
    expires_at: datetime | None = None  # None: valid until rotated away

    def valid_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class LwaClient:
    client_id: str
    secrets: tuple[ClientSecret, ...]

    @property
    def current_secret(self) -> str:
        return self.secrets[0].value

    @property
    def current_expires_at(self) -> datetime | None:
        return self.secrets[0].expires_at

    def rotated(self, new_secret: str, now: datetime) -> LwaClient:
        """`new_secret` becomes current; the previous one stays valid for the grace period."""
        current, *older = self.secrets
        grace = now + OLD_SECRET_GRACE
        old_expiry = grace if current.expires_at is None else min(current.expires_at, grace)
        kept = tuple(s for s in older if s.valid_at(now))  # long-dead secrets need not be remembered
        new = ClientSecret(new_secret, now + NEW_SECRET_LIFETIME)
        return replace(self, secrets=(new, replace(current, expires_at=old_expiry), *kept))

    def with_current_expiry(self, expires_at: datetime) -> LwaClient:
        current, *older = self.secrets
        return replace(self, secrets=(replace(current, expires_at=expires_at), *older))

    def fresh(self) -> LwaClient:
        """Only the current secret, without expiry (what `reset()` leaves)."""
        return replace(self, secrets=(ClientSecret(self.current_secret),))

    def authenticates(self, client_id: str, client_secret: str, now: datetime) -> bool:
        # Compare every candidate in constant time; no early exit on the client id either.
        id_ok = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        secret_ok = False
        for candidate in self.secrets:
            if hmac.compare_digest(client_secret.encode(), candidate.value.encode()) and candidate.valid_at(now):
                secret_ok = True
        return id_ok and secret_ok


@dataclass(frozen=True)
class EmulatorApp:
    """An SP-API application as registered in the Solution Provider Portal."""

    application_id: str
    client: LwaClient
    redirect_uris: tuple[str, ...] = ()
    login_uri: str | None = None
    draft: bool = True
    name: str = "Seller Insights"

    @classmethod
    def create(
        cls,
        application_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        redirect_uris: Sequence[str] = (),
        login_uri: str | None = None,
        draft: bool = True,
        name: str = "Seller Insights",
    ) -> EmulatorApp:
        """Fill every credential not given with a fresh random one of Amazon's shape."""
        client = LwaClient(
            client_id or new_client_id(),
            (ClientSecret(client_secret or new_client_secret()),),
        )
        return cls(
            application_id=application_id or new_application_id(),
            client=client,
            redirect_uris=tuple(redirect_uris),
            login_uri=login_uri,
            draft=draft,
            name=name,
        )

    def with_client(self, client: LwaClient) -> EmulatorApp:
        return replace(self, client=client)

    def with_changes(
        self,
        *,
        redirect_uris: Sequence[str] | None = None,
        login_uri: str | None = None,
        draft: bool | None = None,
        name: str | None = None,
    ) -> EmulatorApp:
        return replace(
            self,
            redirect_uris=self.redirect_uris if redirect_uris is None else tuple(redirect_uris),
            login_uri=self.login_uri if login_uri is None else login_uri,
            draft=self.draft if draft is None else draft,
            name=self.name if name is None else name,
        )
