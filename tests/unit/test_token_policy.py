"""The access-token policy (seller_insights.tokens.TokenPolicy as AccessTokenProvider applies it): when a
token counts as expired, when the scheduled refresher renews one, how long a lease lasts, how long a
caller waits for another caller's refresh. The shared cache keeps the lease conditions of
AccessTokenCache in memory; the vault, LWA and the connection are stand-ins; the product clock is fixed
and the waiting clock (monotonic, sleep) is the test's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from seller_insights.clock import FixedClock
from seller_insights.errors import AuthorizationRevoked, LwaInvalidGrant, TokenUnavailable
from seller_insights.lwa import TokenGrant
from seller_insights.repositories import Connection, ConnectionStatus
from seller_insights.tokens import AccessTokenProvider, TokenPolicy
from seller_insights.vault import Sealed, SecretContext

SELLER, REGION = "A1UNITSELLER01", "NA"
POLICY = TokenPolicy(margin_seconds=120, refresh_ahead_seconds=300, lease_seconds=30, wait_seconds=20.0,
                     poll_seconds=0.5)


class Cache:
    """AccessTokenCache's contract for one token item: the lease is free when unheld or lapsed, and taken
    only while the stored token (if any) expires by `stale_before`."""

    def __init__(self) -> None:
        self.item: dict[str, Any] = {}
        self.reads = 0
        self.leases: list[tuple[str, int]] = []

    def read(self, seller: str, region: str) -> dict[str, Any] | None:
        self.reads += 1
        return dict(self.item) or None

    def try_lease(self, seller: str, region: str, owner: str, *, now: int, lease_seconds: int,
                  stale_before: int) -> bool:
        free = self.item.get("lease_until") is None or self.item["lease_until"] < now
        stale = self.item.get("token_expires_at") is None or self.item["token_expires_at"] <= stale_before
        if not (free and stale):
            return False
        self.item.update(lease_owner=owner, lease_until=now + lease_seconds)
        self.leases.append((owner, now + lease_seconds))
        return True

    def store(self, seller: str, region: str, owner: str, sealed: Sealed, token_expires_at: int) -> bool:
        if self.item.get("lease_owner") != owner:
            return False
        self.item = {"token": sealed.to_item(), "token_expires_at": token_expires_at}
        return True

    def release(self, seller: str, region: str, owner: str) -> None:
        if self.item.get("lease_owner") == owner:
            self.item.pop("lease_owner"), self.item.pop("lease_until")

    def abandon(self, seller: str, region: str, owner: str) -> None:
        if self.item.get("lease_owner") == owner:
            self.item = {}

    def drop(self, seller: str, region: str, token_expires_at: int) -> None:
        if self.item.get("token_expires_at") == token_expires_at:
            self.item.pop("token"), self.item.pop("token_expires_at")

    def publish(self, value: str, expires_at: int) -> None:
        """Another container's refresh landed."""
        self.item = {"token": Vault().seal(value, None).to_item(), "token_expires_at": expires_at}


class Vault:
    """Seals by reversing the bytes: enough to tell sealed from plain, and to open again."""

    def seal(self, value: str, context: SecretContext | None) -> Sealed:
        return Sealed(b"data-key", b"n" * 12, value.encode()[::-1])

    def open(self, sealed: Sealed, context: SecretContext) -> str:
        return sealed.ciphertext[::-1].decode()


@dataclass
class Lwa:
    grants: list[TokenGrant | Exception] = field(default_factory=list)
    calls: int = 0

    def refresh(self, refresh_token: str) -> TokenGrant:
        self.calls += 1
        outcome = self.grants.pop(0) if self.grants else TokenGrant(f"access-{self.calls}", 3600)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@dataclass
class Connections:
    status: ConnectionStatus = ConnectionStatus.ACTIVE
    scheduled: list[int] = field(default_factory=list)
    revoked: list[tuple[datetime, datetime]] = field(default_factory=list)

    def get(self, seller: str, region: str) -> Connection:
        return Connection(seller, region, self.status, "2026-11-01T00:00:00Z", "2027-11-01T00:00:00Z", "US",
                          "2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z", True)

    def sealed_refresh_token(self, seller: str, region: str) -> Sealed:
        return Vault().seal("refresh-token-1", None)

    def replace_refresh_token(self, seller: str, region: str, sealed: Sealed) -> None:
        raise AssertionError("LWA returned the same refresh token")

    def schedule_refresh(self, seller: str, region: str, due_epoch: int) -> None:
        self.scheduled.append(due_epoch)

    def mark_revoked(self, seller: str, region: str, *, now: datetime, purge_after: datetime) -> bool:
        self.status = ConnectionStatus.REVOKED
        self.revoked.append((now, purge_after))
        return True


class Waiting:
    """The provider's monotonic clock and sleep: sleeping moves the clock, nothing really waits.
    `meanwhile` runs after each sleep: what other containers did in the meantime."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.meanwhile: Callable[[int], None] = lambda slept: None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.meanwhile(len(self.sleeps))


@dataclass
class World:
    cache: Cache
    lwa: Lwa
    connections: Connections
    waiting: Waiting
    clock: FixedClock

    def provider(self, policy: TokenPolicy = POLICY) -> AccessTokenProvider:
        """A provider of a new container (empty memory, its own lease owner)."""
        return AccessTokenProvider(connections=self.connections, cache=self.cache, vault=Vault(),
                                   lwa=self.lwa, purge_after_days=27, policy=policy,
                                   sleep=self.waiting.sleep, monotonic=self.waiting.monotonic)

    def epoch(self) -> int:
        return int(self.clock.now().timestamp())


@pytest.fixture
def world(fixed_clock: FixedClock) -> World:
    return World(Cache(), Lwa(), Connections(), Waiting(), fixed_clock)


def test_the_first_caller_refreshes_shares_the_token_and_schedules_the_next_refresh(world: World) -> None:
    token = world.provider().get(SELLER, REGION)

    assert (token.value, token.expires_at) == ("access-1", world.epoch() + 3600)
    assert world.cache.item["token_expires_at"] == token.expires_at and "lease_owner" not in world.cache.item
    assert world.connections.scheduled == [token.expires_at - POLICY.refresh_ahead_seconds]
    assert world.cache.leases[0][1] == world.epoch() + POLICY.lease_seconds

    # Another container takes the shared token: no second refresh.
    assert world.provider().get(SELLER, REGION) == token
    assert world.lwa.calls == 1


def test_a_remembered_token_is_served_from_memory_until_the_margin(world: World) -> None:
    provider = world.provider()
    token = provider.get(SELLER, REGION)
    reads = world.cache.reads

    world.clock.advance(3600 - POLICY.margin_seconds - 1)
    assert provider.get(SELLER, REGION) == token
    assert world.cache.reads == reads  # memory, not the table

    world.clock.advance(1)  # now within the margin: expired for every caller
    renewed = provider.get(SELLER, REGION)
    assert renewed.value == "access-2" and world.lwa.calls == 2


def test_a_shared_token_within_the_margin_is_not_handed_out(world: World) -> None:
    world.cache.publish("access-old", world.epoch() + POLICY.margin_seconds)

    assert world.provider().get(SELLER, REGION).value == "access-1"
    assert world.lwa.calls == 1


def test_the_scheduled_refresh_renews_only_tokens_that_expire_within_its_lead(world: World) -> None:
    world.cache.publish("access-shared", world.epoch() + POLICY.refresh_ahead_seconds + 1)
    assert world.provider().refresh(SELLER, REGION) is None
    assert world.lwa.calls == 0

    world.clock.advance(1)
    renewed = world.provider().refresh(SELLER, REGION)
    assert renewed is not None and renewed.value == "access-1"


def test_a_caller_waits_for_anothers_refresh_and_takes_its_token(world: World) -> None:
    assert world.cache.try_lease(SELLER, REGION, "other-container", now=world.epoch(), lease_seconds=30,
                                 stale_before=world.epoch() + 120)

    def refreshed_by_the_other(slept: int) -> None:
        if slept == 3:
            world.cache.publish("access-from-other", world.epoch() + 3600)

    world.waiting.meanwhile = refreshed_by_the_other
    token = world.provider().get(SELLER, REGION)

    assert token.value == "access-from-other"
    assert world.waiting.sleeps == [POLICY.poll_seconds] * 3
    assert world.lwa.calls == 0


def test_a_caller_gives_up_after_the_wait_and_the_job_retries_later(world: World) -> None:
    # Another caller holds the lease for longer than anyone waits (the product clock stands still).
    world.cache.try_lease(SELLER, REGION, "other-container", now=world.epoch(), lease_seconds=30,
                          stale_before=world.epoch() + 120)

    with pytest.raises(TokenUnavailable):
        world.provider().get(SELLER, REGION)

    assert sum(world.waiting.sleeps) == pytest.approx(POLICY.wait_seconds)
    assert set(world.waiting.sleeps) == {POLICY.poll_seconds}
    assert world.lwa.calls == 0


def test_a_lapsed_lease_is_taken_over(world: World) -> None:
    world.cache.try_lease(SELLER, REGION, "crashed-container", now=world.epoch(), lease_seconds=30,
                          stale_before=world.epoch() + 120)
    world.clock.advance(POLICY.lease_seconds + 1)

    assert world.provider().get(SELLER, REGION).value == "access-1"
    assert world.waiting.sleeps == []


def test_a_refused_refresh_token_revokes_the_connection_with_its_purge_date(world: World) -> None:
    world.lwa.grants = [LwaInvalidGrant("invalid_grant", 400)]

    with pytest.raises(AuthorizationRevoked):
        world.provider().get(SELLER, REGION)

    ((revoked_at, purge_after),) = world.connections.revoked
    assert purge_after - revoked_at == timedelta(days=27)
    assert world.cache.item == {}  # no token item, no lease left behind


def test_a_failed_refresh_releases_the_lease_for_the_next_caller(world: World) -> None:
    world.lwa.grants = [RuntimeError("LWA timed out")]

    with pytest.raises(RuntimeError):
        world.provider().get(SELLER, REGION)

    assert "lease_owner" not in world.cache.item
    assert world.provider().get(SELLER, REGION).value == "access-2"
    assert world.waiting.sleeps == []


def test_a_token_amazon_refused_is_never_handed_out_again(world: World) -> None:
    provider = world.provider()
    refused = provider.get(SELLER, REGION)

    provider.invalidate(SELLER, REGION, refused)

    assert provider.get(SELLER, REGION).value == "access-2"


def test_the_default_policy_keeps_its_documented_figures() -> None:
    default = TokenPolicy()
    assert (default.margin_seconds, default.refresh_ahead_seconds, default.lease_seconds) == (120, 300, 30)
    # A caller waits less than a lease lasts: a crashed refresher's lease lapses for the next delivery, not
    # while a caller holds its invocation.
    assert default.wait_seconds < default.lease_seconds
    assert default.margin_seconds < default.refresh_ahead_seconds
