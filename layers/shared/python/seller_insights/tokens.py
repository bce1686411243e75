"""Access tokens for any duty: one shared, encrypted cache and one refresh per token lifetime.

`AccessTokenProvider.get(seller, region)` answers from, in order:
1. this container's memory (until the token is within `margin` of expiry);
2. the tokens table, where the token is stored as vault ciphertext under `purpose=access_token` with a
   TTL at its expiry (so every container and every duty shares it);
3. a refresh at LWA, done by exactly one caller: the one that wins a conditional-write lease on the
   token item. Everyone else polls the item until the new token appears or the lease lapses.

`invalid_grant` on refresh means the seller revoked the app or the authorization lapsed: the
connection is marked REVOKED (tokens deleted, purge date set) and `AuthorizationRevoked` is raised;
it is never retried.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from boto3.dynamodb.conditions import Attr, ConditionBase

from seller_insights import clock
from seller_insights.dynamo import applied
from seller_insights.errors import (
    AuthorizationRevoked,
    ConnectionNotActive,
    LwaInvalidGrant,
    RefreshBlocked,
    TokenUnavailable,
)
from seller_insights.lwa import LwaClient
from seller_insights.observability import get_logger, get_metrics
from seller_insights.redaction import register_secret
from seller_insights.repositories import ConnectionsRepository, ConnectionStatus, access_token_key
from seller_insights.vault import Purpose, Sealed, SecretContext, Vault

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table


_EXPIRY_GENERATION = "expires:"


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: int  # epoch seconds

    def __repr__(self) -> str:
        return f"AccessToken(expires_at={self.expires_at})"


@dataclass(frozen=True)
class TokenPolicy:
    margin_seconds: int = 120  # a token this close to expiry counts as expired
    refresh_ahead_seconds: int = 300  # the refresher renews tokens this long before expiry
    lease_seconds: int = 30  # a refresh that takes longer loses its lease
    wait_seconds: float = 20.0  # how long a caller waits for another caller's refresh
    poll_seconds: float = 0.1


class AccessTokenCache:
    """The TOKEN#{region} items of the tokens table."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def read(self, seller: str, region: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._table.get_item(
            Key=access_token_key(seller, region), ConsistentRead=True).get("Item")
        return item

    def try_lease(self, seller: str, region: str, owner: str, *, now: int, lease_seconds: int,
                  stale_before: int) -> bool:
        """Take the refresh lease, atomically, if nobody holds it AND the stored token (if any)
        expires by `stale_before`: a caller that lost the race to a refresh that just finished
        must not refresh again."""
        free = Attr("lease_until").not_exists() | Attr("lease_until").lt(now)
        # A token a caller suspects (SP-API refused it) is renewed early, whatever its expiry.
        stale = (Attr("token_expires_at").not_exists() | Attr("token_expires_at").lte(stale_before)
                 | Attr("suspect_since").exists())
        return applied(lambda: self._table.update_item(
            Key=access_token_key(seller, region),
            UpdateExpression="SET lease_owner = :owner, lease_until = :until, "
                             "expires_at = if_not_exists(expires_at, :until)",
            ConditionExpression=free & stale,
            ExpressionAttributeValues={":owner": owner, ":until": now + lease_seconds},
        ))

    def store(self, seller: str, region: str, owner: str, sealed: Sealed, token_expires_at: int) -> bool:
        """Publish the new token and end the lease; False if the lease was lost (or the item deleted)."""
        return applied(lambda: self._table.update_item(
            Key=access_token_key(seller, region),
            UpdateExpression="SET #token = :token, token_expires_at = :exp, expires_at = :exp, "
                             "token_generation = :generation REMOVE lease_owner, lease_until, suspect_since",
            ConditionExpression=Attr("lease_owner").eq(owner),
            ExpressionAttributeNames={"#token": "token"},
            ExpressionAttributeValues={":token": sealed.to_item(), ":exp": token_expires_at,
                                       ":generation": uuid.uuid4().hex},
        ))

    def release(self, seller: str, region: str, owner: str) -> None:
        applied(lambda: self._table.update_item(
            Key=access_token_key(seller, region),
            UpdateExpression="REMOVE lease_owner, lease_until",
            ConditionExpression=Attr("lease_owner").eq(owner),
        ))

    def abandon(self, seller: str, region: str, owner: str) -> None:
        """The connection is not ACTIVE: leave no token item behind (only if we still hold the lease)."""
        applied(lambda: self._table.delete_item(Key=access_token_key(seller, region),
                                                ConditionExpression=Attr("lease_owner").eq(owner)))

    def generation(self, seller: str, region: str) -> str | None:
        """A name of the stored token that changes with every renewal, without opening it (a random id stored
        with it; for a token stored before ids existed, its expiry); None without a token."""
        item: dict[str, Any] | None = self._table.get_item(
            Key=access_token_key(seller, region), ConsistentRead=True,
            ProjectionExpression="token_generation, token_expires_at").get("Item")
        if not item or "token_expires_at" not in item:
            return None
        return str(item.get("token_generation") or f"{_EXPIRY_GENERATION}{int(item['token_expires_at'])}")

    def mark_suspect(self, seller: str, region: str, generation: str, now: int) -> bool:
        """Ask for this token's early renewal (the next lease may take it whatever its expiry) without taking
        it from anyone: it stays in use until its replacement is stored. False if it was replaced meanwhile."""
        same: ConditionBase
        if generation.startswith(_EXPIRY_GENERATION):
            same = (Attr("token_generation").not_exists()
                    & Attr("token_expires_at").eq(int(generation.removeprefix(_EXPIRY_GENERATION))))
        else:
            same = Attr("token_generation").eq(generation)
        return applied(lambda: self._table.update_item(
            Key=access_token_key(seller, region),
            UpdateExpression="SET suspect_since = if_not_exists(suspect_since, :now)",
            ConditionExpression=same,
            ExpressionAttributeValues={":now": now},
        ))

    def drop(self, seller: str, region: str, token_expires_at: int) -> None:
        """Forget a token SP-API refused, unless a newer one replaced it meanwhile."""
        applied(lambda: self._table.update_item(
            Key=access_token_key(seller, region),
            UpdateExpression="REMOVE #token, token_expires_at",
            ConditionExpression=Attr("token_expires_at").eq(token_expires_at),
            ExpressionAttributeNames={"#token": "token"},
        ))


class AccessTokenProvider:
    def __init__(
        self,
        *,
        connections: ConnectionsRepository,
        cache: AccessTokenCache,
        vault: Vault,
        lwa: LwaClient,
        purge_after_days: int,
        policy: TokenPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        refresh_blocked: Callable[[], bool] | None = None,
    ) -> None:
        """`refresh_blocked`: asked before any refresh token is opened (the incident switch,
        seller_insights.app_gate); True raises RefreshBlocked and nothing is read or changed."""
        self._connections = connections
        self._refresh_blocked = refresh_blocked
        self._cache = cache
        self._vault = vault
        self._lwa = lwa
        self._retention = timedelta(days=purge_after_days)
        self._policy = policy or TokenPolicy()
        self._sleep = sleep
        self._monotonic = monotonic
        self._owner = f"{uuid.uuid4()}"
        self._memory: dict[tuple[str, str], AccessToken] = {}
        self._memory_lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    def get(self, seller: str, region: str) -> AccessToken:
        remembered = self._remembered(seller, region)
        if remembered is not None:
            return remembered
        # One caller per container goes to the table (and maybe LWA); its threads wait here and then
        # find the token in memory, instead of each reading, leasing and decrypting on its own.
        with self._key_lock(seller, region):
            remembered = self._remembered(seller, region)
            if remembered is not None:
                return remembered
            return self._get_shared(seller, region)

    def _get_shared(self, seller: str, region: str) -> AccessToken:
        deadline = self._monotonic() + self._policy.wait_seconds
        while True:
            shared = self._from_table(seller, region)
            if shared is not None:
                return self._remember(seller, region, shared)
            if self._lease(seller, region, stale_within=self._policy.margin_seconds):
                return self._refresh_under_lease(seller, region)
            if self._monotonic() >= deadline:
                raise TokenUnavailable("another caller is still refreshing this token")
            self._sleep(self._policy.poll_seconds)

    def cached(self, seller: str, region: str) -> AccessToken | None:
        """A fresh token from memory or the shared table, never from LWA (for duties that may not
        decrypt refresh tokens)."""
        remembered = self._remembered(seller, region)
        if remembered is not None:
            return remembered
        shared = self._from_table(seller, region)
        return self._remember(seller, region, shared) if shared is not None else None

    def refresh(self, seller: str, region: str) -> AccessToken | None:
        """Renew now if nobody else is (the scheduled refresher). None if another caller holds the lease."""
        if not self._lease(seller, region, stale_within=self._policy.refresh_ahead_seconds):
            return None
        return self._refresh_under_lease(seller, region)

    def _lease(self, seller: str, region: str, *, stale_within: int) -> bool:
        """Every refresh starts here: while refresh tokens are blocked, not even the lease item is written."""
        if self._refresh_blocked is not None and self._refresh_blocked():
            raise RefreshBlocked("refresh tokens are blocked by an incident containment (ops incident restore)")
        now = clock.epoch_seconds()
        return self._cache.try_lease(seller, region, self._owner, now=now, lease_seconds=self._policy.lease_seconds,
                                     stale_before=now + stale_within)

    def invalidate(self, seller: str, region: str, token: AccessToken) -> None:
        """SP-API refused this token (expired or invalid): never hand it out again."""
        self.forget(seller, region, token.expires_at)
        self._cache.drop(seller, region, token.expires_at)

    def forget(self, seller: str, region: str, expires_at: int | None = None) -> None:
        """Drop this container's copy (only the one expiring at `expires_at`, when given); the shared one stays."""
        with self._memory_lock:
            remembered = self._memory.get((seller, region))
            if remembered is not None and expires_at in (None, remembered.expires_at):
                del self._memory[(seller, region)]

    def generation(self, seller: str, region: str) -> str | None:
        """The shared token's generation (AccessTokenCache.generation)."""
        return self._cache.generation(seller, region)

    def request_renewal(self, seller: str, region: str, generation: str) -> None:
        """Mark the shared token of this generation suspect, so the next refresh renews it early."""
        self._cache.mark_suspect(seller, region, generation, clock.epoch_seconds())

    def _refresh_under_lease(self, seller: str, region: str) -> AccessToken:
        try:
            token = self._refresh(seller, region)
        except (ConnectionNotActive, AuthorizationRevoked):
            self._cache.abandon(seller, region, self._owner)
            raise
        except BaseException:
            self._cache.release(seller, region, self._owner)
            raise
        return self._remember(seller, region, token)

    def _refresh(self, seller: str, region: str) -> AccessToken:
        connection = self._connections.get(seller, region)
        sealed_refresh = self._connections.sealed_refresh_token(seller, region)
        if connection is None or connection.status is not ConnectionStatus.ACTIVE or sealed_refresh is None:
            raise ConnectionNotActive(f"no active connection for this seller in {region}")
        refresh_context = SecretContext(Purpose.REFRESH_TOKEN, seller, region)
        refresh_token = self._vault.open(sealed_refresh, refresh_context)
        register_secret(refresh_token)
        try:
            grant = self._lwa.refresh(refresh_token)
        except LwaInvalidGrant:
            if not self._revoke(seller, region):
                # Someone else changed the connection meanwhile (revoked it, removed its tokens).
                raise ConnectionNotActive(f"the connection in {region} is no longer active") from None
            raise AuthorizationRevoked(f"LWA refused the refresh token for region {region}") from None
        if grant.refresh_token and grant.refresh_token != refresh_token:
            renewed = self._vault.seal(grant.refresh_token, refresh_context)
            self._connections.replace_refresh_token(seller, region, renewed)
        expires_at = clock.epoch_seconds() + grant.expires_in
        token = AccessToken(grant.access_token, expires_at)
        sealed = self._vault.seal(token.value, SecretContext(Purpose.ACCESS_TOKEN, seller, region))
        if self._cache.store(seller, region, self._owner, sealed, expires_at):
            self._connections.schedule_refresh(seller, region, expires_at - self._policy.refresh_ahead_seconds)
        get_metrics().add_metric(name="AccessTokenRefreshed", unit=MetricUnit.Count, value=1)
        return token

    def _revoke(self, seller: str, region: str) -> bool:
        now = clock.now()
        with self._memory_lock:
            self._memory.pop((seller, region), None)
        if not self._connections.mark_revoked(seller, region, now=now, purge_after=now + self._retention):
            return False
        get_metrics().add_metric(name="ConnectionsRevoked", unit=MetricUnit.Count, value=1)
        get_logger().warning("authorization revoked; connection marked REVOKED", extra={"region": region})
        return True

    def _from_table(self, seller: str, region: str) -> AccessToken | None:
        item = self._cache.read(seller, region)
        if not item or "token" not in item:
            return None
        expires_at = int(item["token_expires_at"])
        if not self._fresh(expires_at):
            return None
        value = self._vault.open(Sealed.from_item(item["token"]), SecretContext(Purpose.ACCESS_TOKEN, seller, region))
        register_secret(value)
        return AccessToken(value, expires_at)

    def _key_lock(self, seller: str, region: str) -> threading.Lock:
        with self._memory_lock:
            return self._key_locks.setdefault((seller, region), threading.Lock())

    def _remembered(self, seller: str, region: str) -> AccessToken | None:
        with self._memory_lock:
            token = self._memory.get((seller, region))
        return token if token is not None and self._fresh(token.expires_at) else None

    def _remember(self, seller: str, region: str, token: AccessToken) -> AccessToken:
        with self._memory_lock:
            self._memory[(seller, region)] = token
        return token

    def _fresh(self, expires_at: int) -> bool:
        return expires_at - self._policy.margin_seconds > clock.epoch_seconds()


class CachedTokensOnly:
    """The token source of a duty that may only decrypt access tokens (the report fetcher): it takes
    what the token refresher keeps warm, and when there is nothing fresh it asks for a refresh by
    making the connection due now, then raises TokenUnavailable so the caller re-queues its work.

    A token SP-API refuses is NOT evicted from the shared cache: Amazon answers a role the seller or the
    application lacks with the same 403 `Unauthorized` as a bad token, and evicting a good token for that
    made every job of the seller wait and the refused one loop. Only this container's copy is forgotten
    (`invalidate`); a caller that wants a fresh token asks for it with `request_renewal` (the token is marked
    suspect and the connection made due, so the token refresher renews it at its next run) and watches
    `generation` change."""

    def __init__(self, provider: AccessTokenProvider, connections: ConnectionsRepository) -> None:
        self._provider = provider
        self._connections = connections

    def get(self, seller: str, region: str) -> AccessToken:
        token = self._provider.cached(seller, region)
        if token is None:
            self._connections.schedule_refresh(seller, region, clock.epoch_seconds())
            raise TokenUnavailable("no fresh access token yet; the token refresher was asked for one")
        return token

    def invalidate(self, seller: str, region: str, token: AccessToken) -> None:
        self._provider.forget(seller, region, token.expires_at)

    def generation(self, seller: str, region: str) -> str | None:
        """The shared token's generation (None: there is none). This container's copy is dropped, so the next
        `get` takes whatever the shared cache holds now (the renewed token, once the refresher stored it)."""
        self._provider.forget(seller, region)
        return self._provider.generation(seller, region)

    def request_renewal(self, seller: str, region: str) -> str | None:
        """Ask the token refresher for a new token now; the generation of the one it replaces (None: none)."""
        generation = self._provider.generation(seller, region)
        if generation is not None:
            self._provider.request_renewal(seller, region, generation)
        self._connections.schedule_refresh(seller, region, clock.epoch_seconds())
        return generation
