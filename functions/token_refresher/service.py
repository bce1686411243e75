"""The token lifecycle: the refresh finder and its work, the re-authorization digest, the LWA secret rotation."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from seller_insights import clock
from seller_insights.credentials import CredentialsSource
from seller_insights.errors import (
    AuthorizationRevoked,
    ConnectionNotActive,
    LwaInvalidClient,
    LwaRejected,
    LwaUnavailable,
    RefreshBlocked,
    RetryLater,
    RotationFailed,
    SpApiError,
    TokenUnavailable,
    VaultError,
)
from seller_insights.events import EventPublisher
from seller_insights.fanout import WorkQueue, rotating_shards
from seller_insights.lwa_secret import ClientSecretStore, NewClientSecret, parse_time
from seller_insights.object_keys import reauthorization_digest_key
from seller_insights.observability import get_logger, get_metrics
from seller_insights.quotas import QuotaBuckets, Rate
from seller_insights.repositories import ConnectionsRepository, OneTimeClaims
from seller_insights.spapi import SpApiClient
from seller_insights.tokens import AccessTokenProvider
from token_refresher.destinations import DestinationKeeper
from token_refresher.models import (
    NEW_SECRET_TYPE,
    SECRET_EXPIRY_TYPE,
    DigestReport,
    FindReport,
    Notification,
    RefreshReport,
)

ROTATION_SCOPE = "sellingpartnerapi::client_credential:rotation"
# The refresh-tokens schedule's rate (infra/constructs/token_refresher.py SCHEDULES; a test keeps them equal).
REFRESH_INTERVAL_SECONDS = 300
# Work items of the token_refresh queue: {"token_refresh": [{"seller_id", "region"}, ...]}.
TOKEN_REFRESH_KIND = "token_refresh"  # noqa: S105 - a message kind
# The app-wide LWA refresh bucket (QuotaBuckets): our own limit on refresh_token grants per second.
APP_LWA_BUCKET = "app#lwa_refresh"
REAUTHORIZATION_DIGEST = "ReauthorizationDigest"
ROTATION_INTERVAL_SECONDS = 60  # rotateApplicationClientSecret: rate 0.0167/s, burst 1
# Leave the rest of a batch when the invocation has less than this left.
SAFETY_MILLIS = 10_000


def count(name: str, value: float = 1) -> None:
    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def refresh_limit(rate: Rate) -> int:
    """Connections one finder run sends at most: what the app-wide LWA bucket lets through until the next
    run (its rate over the schedule's interval, plus the burst), so nothing sent waits long for a token."""
    return int(rate.per_second * REFRESH_INTERVAL_SECONDS) + rate.burst


class RefreshFinder:
    """The refresh-tokens schedule: finds the connections whose access token is due (sparse index pages,
    shards in an order that rotates with each run, at most `limit`) and sends them to the token_refresh
    queue. No per-connection work: no item reads, no LWA call.

    With `destinations` (a report_notifications queue is configured), each region with a due connection
    gets its REPORT_PROCESSING_FINISHED destination kept once per run, before the connections go out, so
    the report fetcher can subscribe those sellers with the tokens refreshed next."""

    def __init__(self, connections: ConnectionsRepository, queue: WorkQueue, *, limit: int,
                 destinations: DestinationKeeper | None = None) -> None:
        self._connections = connections
        self._queue = queue
        self._limit = limit
        self._destinations = destinations

    def run(self) -> FindReport:
        now = clock.epoch_seconds()
        # refresh_due_at is already set refresh_ahead_seconds before each token's expiry.
        due = list(self._connections.refresh_due(now, shards=rotating_shards(now, REFRESH_INTERVAL_SECONDS),
                                                 limit=self._limit))
        if self._destinations is not None:
            for region in dict.fromkeys(region for _, region in due):
                self._destinations.keep(region)
        messages = self._queue.send({"seller_id": seller, "region": region} for seller, region in due)
        count("TokenRefreshesSent", len(due))
        return FindReport(found=len(due), messages=messages, limit=self._limit)


class LwaPace:
    """What every LWA call of a token_refresh batch passes first: enough time left in the invocation, then a
    token of the app-wide LWA bucket (our own limit, shared by every container)."""

    def __init__(self, buckets: QuotaBuckets, rate: Rate, remaining_millis: Callable[[], int]) -> None:
        self._buckets = buckets
        self._rate = rate
        self._remaining_millis = remaining_millis

    def refusal(self) -> str | None:
        """None: go ahead; else why the rest of the batch is left due ("time" or "lwa_rate")."""
        if self._remaining_millis() < SAFETY_MILLIS:
            return "time"
        if self._buckets.take(APP_LWA_BUCKET, self._rate):
            count("LwaRefreshRateLimited")
            return "lwa_rate"
        return None


class RefreshWork:
    """Renews the access tokens of token_refresh work items, one invocation's batch at a time. Every
    refresh also proves the refresh token still works, so a revocation is seen within one token lifetime
    even for idle sellers.

    Each item is read again and skipped when it is no longer due (a finder may send it twice). A refresh
    takes a token from the app-wide LWA bucket first; when the bucket says wait, or the invocation runs
    short of time, this item and the rest of the batch are left: they stay due and the next finder run
    sends them again (nothing is re-queued here)."""

    def __init__(self, connections: ConnectionsRepository, tokens: AccessTokenProvider, buckets: QuotaBuckets,
                 lwa_rate: Rate, remaining_millis: Callable[[], int]) -> None:
        self._connections = connections
        self._tokens = tokens
        self._pace = LwaPace(buckets, lwa_rate, remaining_millis)
        self.report = RefreshReport()

    def renew(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            seller, region = str(item["seller_id"]), str(item["region"])
            if self.report.stopped is not None:
                self.report.deferred += 1
                continue
            self._renew(seller, region)

    def _renew(self, seller: str, region: str) -> None:
        due_at = self._connections.refresh_due_at(seller, region)
        if due_at is None or due_at > clock.epoch_seconds():
            self.report.not_due += 1
            return
        refusal = self._pace.refusal()
        if refusal is not None:
            self._stop(refusal)
            return
        try:
            refreshed = self._tokens.refresh(seller, region)
        except AuthorizationRevoked:
            self.report.revoked += 1
        except ConnectionNotActive:
            self.report.skipped += 1
        except LwaInvalidClient:
            # Our credentials, not the seller's: touch no connection, alarm; every item stays due.
            count("LwaInvalidClient")
            get_logger().error("LWA rejected our client credentials; rotation or configuration needed")
            self._stop("invalid_client")
        except RefreshBlocked:
            # An incident containment: nothing was opened; this item and the rest stay due.
            self._stop("refresh_blocked")
        except (LwaUnavailable, TokenUnavailable) as exc:
            get_logger().warning("token refresh deferred", extra={"reason": type(exc).__name__})
            self.report.failed += 1
        except (VaultError, LwaRejected, ClientError) as exc:
            # One bad connection (unreadable ciphertext, KMS refusal, a DynamoDB error) must not stop the
            # others; it stays due and the next finder run sends it again.
            get_logger().error("token refresh failed", extra={"reason": type(exc).__name__})
            count("TokenRefreshFailed")
            self.report.failed += 1
        else:
            if refreshed is None:
                self.report.skipped += 1  # another caller is refreshing it right now
            else:
                self.report.refreshed += 1

    def _stop(self, reason: str) -> None:
        self.report.stopped = reason
        self.report.deferred += 1


# Days-left ranges of the digest's counts (a connection past its date but still ACTIVE is "overdue").
DAYS_LEFT_RANGES = (("overdue", -(10**6), -1), ("0-7", 0, 7), ("8-14", 8, 14), ("15-30", 15, 30),
                    ("31+", 31, 10**6))
# The digest is written to a temporary file that stays in memory up to this size, then spills to /tmp.
DIGEST_MEMORY_BYTES = 8 * 1024 * 1024


def days_left_range(days_left: int) -> str:
    return next(name for name, low, high in DAYS_LEFT_RANGES if low <= days_left <= high)


class ReauthorizationDigest:
    """Daily: one digest of the connections whose yearly re-authorization is due within the notice period.

    The list (one JSON line per connection) goes to `notices/reauthorization/{date}.jsonl` in the data
    bucket (the bucket's key); one ReauthorizationDigest event carries the counts and the object's key.
    The index is read page by page and the lines go to a spooled file: memory stays bounded whatever the
    fleet. Nothing is due: no object, no event."""

    def __init__(self, connections: ConnectionsRepository, s3: Any, bucket: str, publisher: EventPublisher,
                 notice_days: int, *, page_size: int = 1000) -> None:
        self._connections = connections
        self._page_size = page_size
        self._s3 = s3
        self._bucket = bucket
        self._publisher = publisher
        self._notice_days = notice_days

    def run(self) -> DigestReport:
        now = clock.now()
        by_days_left: Counter[str] = Counter()
        by_region: Counter[str] = Counter()
        with tempfile.SpooledTemporaryFile(max_size=DIGEST_MEMORY_BYTES, mode="w+b") as lines:
            until = now + timedelta(days=self._notice_days)
            for seller, region, due_at in self._connections.reauthorization_due(until, page_size=self._page_size):
                days_left = (_parse(due_at) - now).days
                by_days_left[days_left_range(days_left)] += 1
                by_region[region] += 1
                line = {"seller_id": seller, "region": region, "reauthorization_due_at": due_at,
                        "days_left": days_left}
                lines.write(json.dumps(line, sort_keys=True).encode() + b"\n")
            due = sum(by_region.values())
            count("ReauthorizationDue", due)
            if not due:
                return DigestReport()
            key = reauthorization_digest_key(now.strftime("%Y-%m-%d"))
            size = lines.tell()
            lines.seek(0)
            # The bucket's default encryption (its customer key) applies; a day's second run replaces the object.
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=lines, ContentLength=size,
                                ContentType="application/x-ndjson")
        detail = {"date": now.strftime("%Y-%m-%d"), "notice_days": self._notice_days, "due": due,
                  "by_days_left": {name: by_days_left[name] for name, _, _ in DAYS_LEFT_RANGES if by_days_left[name]},
                  "by_region": dict(sorted(by_region.items())), "bucket": self._bucket, "key": key}
        published = self._publisher.publish(REAUTHORIZATION_DIGEST, [detail])
        return DigestReport(due=due, published=published, key=key)


# The store is shared with `ops recover-secret` (seller_insights.lwa_secret); the name stays for callers here.
SecretStore = ClientSecretStore


class SecretRotation:
    """APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY → rotate when few days are left;
    APPLICATION_OAUTH_CLIENT_NEW_SECRET → store the new secret, keep the old one for its overlap."""

    def __init__(
        self,
        *,
        store: SecretStore,
        claims: OneTimeClaims,
        application_api: SpApiClient,
        credentials: CredentialsSource,
        rotate_when_days_left: int,
    ) -> None:
        """`application_api` sends a grantless token with the rotation scope (GrantlessTokens)."""
        self._store = store
        # Only for "rotation-call", the one-call-a-minute limit of rotateApplicationClientSecret shared by
        # every notice and container: a rate limit that defers other notices, not a de-duplication.
        self._claims = claims
        self._application_api = application_api
        self._credentials = credentials
        self._rotate_when = timedelta(days=rotate_when_days_left)

    def handle(self, notification: Notification) -> str:
        """What was done: "rotated", "stored", "not yet", "already rotated", "duplicate", "other client".

        Each notification comes here once (token_refresher.notifications keeps it to one handling)."""
        outcome = self._dispatch(notification)
        get_logger().info("application notification handled",
                          extra={"notification_type": notification.notification_type, "outcome": outcome})
        return outcome

    def _dispatch(self, notification: Notification) -> str:
        section = ("applicationOAuthClientSecretExpiry" if notification.notification_type == SECRET_EXPIRY_TYPE
                   else "applicationOAuthClientNewSecret")
        if notification.field(section, "clientId") != self._credentials().client_id:
            return "other client"
        if notification.notification_type == SECRET_EXPIRY_TYPE:
            if self._secret_replaced_after(notification.event_time):
                return "already rotated"
            return self._maybe_rotate(notification.time(section, "clientSecretExpiryTime"))
        assert notification.notification_type == NEW_SECRET_TYPE
        return self._store_new_secret(notification)

    def rotate_now(self) -> str:
        """An operator's rotation whatever the expiry (`ops incident revoke-all`): "rotated" once Amazon took
        the request; the new secret arrives by notification and is stored like any other."""
        return self._rotate()

    def _maybe_rotate(self, expires_at: datetime) -> str:
        if expires_at - clock.now() >= self._rotate_when:
            return "not yet"
        return self._rotate()

    def _rotate(self) -> str:
        # One call per minute across every container: a claim that expires after the interval.
        if not self._claims.claim("rotation-call", owner="token_refresher", now=clock.epoch_seconds(),
                                  ttl_seconds=ROTATION_INTERVAL_SECONDS):
            raise RetryLater("rotateApplicationClientSecret was called less than a minute ago")
        try:
            answer = self._application_api.rotate_application_client_secret()
        except SpApiError as exc:
            if exc.status == 429:
                raise RetryLater("rotateApplicationClientSecret is throttled") from None
            raise RotationFailed(exc.status, exc.code, operation=exc.operation, rate_limit=exc.rate_limit) from None
        if answer.status != 204:
            raise RotationFailed(answer.status, None, operation="rotateApplicationClientSecret",
                                 rate_limit=answer.rate_limit)
        count("ClientSecretRotated")
        return "rotated"

    def _secret_replaced_after(self, event_time: str) -> bool:
        """A late or repeated expiry notice about a secret we have already replaced."""
        stored_at = self._store.read().get("stored_at")
        if not stored_at or not event_time:
            return False
        try:
            return _parse(event_time) < _parse(str(stored_at))
        except ValueError:
            return False

    def _store_new_secret(self, notification: Notification) -> str:
        """Stored before the notification is acknowledged: a Secrets Manager error is raised, so the message
        fails and comes back (after 5 receives it rests in the DLQ for `ops recover-secret`)."""
        outcome = self._store.store_new(NewClientSecret.from_notification(notification), now=clock.now())
        if outcome == "stored":
            self._credentials(force_fetch=True)  # this container switches at once
            count("ClientSecretStored")
        return outcome


def _parse(value: str) -> datetime:
    return parse_time(value)
