"""The token lifecycle: the refresh sweep, the re-authorization notices, the LWA secret rotation."""

from __future__ import annotations

import json
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
    MalformedNotification,
    RetryLater,
    RotationFailed,
    SpApiError,
    TokenUnavailable,
    VaultError,
)
from seller_insights.events import EventPublisher
from seller_insights.observability import get_logger, get_metrics
from seller_insights.redaction import register_secret
from seller_insights.repositories import ConnectionsRepository, OneTimeClaims
from seller_insights.spapi import SpApiClient
from seller_insights.tokens import AccessTokenProvider, TokenPolicy
from token_refresher.destinations import DestinationKeeper
from token_refresher.models import (
    NEW_SECRET_TYPE,
    SECRET_EXPIRY_TYPE,
    Notification,
    ReauthorizationReport,
    RefreshReport,
)

ROTATION_SCOPE = "sellingpartnerapi::client_credential:rotation"
ROTATION_INTERVAL_SECONDS = 60  # rotateApplicationClientSecret: rate 0.0167/s, burst 1
# Stop taking new connections when the invocation has less than this left.
SAFETY_MILLIS = 10_000


def count(name: str, value: float = 1) -> None:
    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


class RefreshSweep:
    """Renews the access tokens that are due (sparse index, no Scan). Every refresh also proves the
    refresh token still works, so a revocation is seen within one token lifetime even for idle sellers.

    With `destinations` (a report_notifications queue is configured), each region with a due connection
    gets its REPORT_PROCESSING_FINISHED destination kept first, once per run (at most three regions, while
    the whole time budget is left), so the report fetcher can subscribe those sellers with the tokens
    refreshed next."""

    def __init__(self, connections: ConnectionsRepository, tokens: AccessTokenProvider, policy: TokenPolicy,
                 destinations: DestinationKeeper | None = None) -> None:
        self._connections = connections
        self._tokens = tokens
        self._policy = policy
        self._destinations = destinations

    def run(self, remaining_millis: Callable[[], int]) -> RefreshReport:
        report = RefreshReport()
        # refresh_due_at is already set refresh_ahead_seconds before each token's expiry.
        due = list(self._connections.refresh_due(clock.epoch_seconds()))
        report.due = len(due)
        if self._destinations is not None:
            for region in dict.fromkeys(region for _, region in due):
                self._destinations.keep(region)
        for position, (seller, region) in enumerate(due):
            if remaining_millis() < SAFETY_MILLIS:
                report.left = report.due - position
                report.stopped = "time"
                break
            try:
                refreshed = self._tokens.refresh(seller, region)
            except AuthorizationRevoked:
                report.revoked += 1
            except ConnectionNotActive:
                report.skipped += 1
            except LwaInvalidClient:
                # Our credentials, not the seller's: touch no connection, alarm, retry on the next run.
                count("LwaInvalidClient")
                get_logger().error("LWA rejected our client credentials; rotation or configuration needed")
                report.stopped = "invalid_client"
                report.left = report.due - position
                break
            except (LwaUnavailable, TokenUnavailable) as exc:
                get_logger().warning("token refresh deferred", extra={"reason": type(exc).__name__})
                report.failed += 1
            except (VaultError, LwaRejected, ClientError) as exc:
                # One bad connection (unreadable ciphertext, KMS refusal, a DynamoDB error) must not stop
                # the sweep for every seller after it; it stays due and is tried on the next run.
                get_logger().error("token refresh failed", extra={"reason": type(exc).__name__})
                count("TokenRefreshFailed")
                report.failed += 1
            else:
                if refreshed is None:
                    report.skipped += 1  # another caller is refreshing it right now
                else:
                    report.refreshed += 1
        return report


class ReauthorizationCheck:
    """Daily: a ReauthorizationDue event for each connection due within the notice period."""

    def __init__(self, connections: ConnectionsRepository, publisher: EventPublisher, notice_days: int) -> None:
        self._connections = connections
        self._publisher = publisher
        self._notice = timedelta(days=notice_days)

    def run(self) -> ReauthorizationReport:
        now = clock.now()
        report = ReauthorizationReport()
        details = []
        for seller, region in self._connections.reauthorization_due(now + self._notice):
            connection = self._connections.get(seller, region)
            if connection is None:
                continue
            due_at = datetime.fromisoformat(connection.reauthorization_due_at.replace("Z", "+00:00"))
            days_left = (due_at - now).days
            details.append({"seller_id": seller, "region": region,
                            "reauthorization_due_at": connection.reauthorization_due_at, "days_left": days_left})
        report.due = len(details)
        report.published = self._publisher.publish("ReauthorizationDue", details)
        count("ReauthorizationDue", report.due)
        return report


class SecretStore:
    """The LWA client secret in Secrets Manager, read without a cache (rotation needs the truth)."""

    def __init__(self, secrets_client: Any, secret_id: str) -> None:
        self._client = secrets_client
        self._secret_id = secret_id

    def read(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._client.get_secret_value(SecretId=self._secret_id)["SecretString"])
        return value

    def write(self, value: dict[str, Any]) -> None:
        self._client.put_secret_value(SecretId=self._secret_id, SecretString=json.dumps(value))


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

    def _maybe_rotate(self, expires_at: datetime) -> str:
        if expires_at - clock.now() >= self._rotate_when:
            return "not yet"
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
        section = "applicationOAuthClientNewSecret"
        new_secret = notification.field(section, "newClientSecret")
        register_secret(new_secret)
        current = self._store.read()
        if current.get("client_secret") == new_secret:
            return "duplicate"
        # The new secret must be stored even if Amazon's old-secret expiry is missing or malformed:
        # without an expiry there is simply no overlap for the old one.
        try:
            old_expiry: str | None = iso_millis(notification.time(section, "oldClientSecretExpiryTime"))
        except MalformedNotification:
            old_expiry = None
        self._store.write({
            "client_id": current["client_id"],
            "application_id": current["application_id"],
            "client_secret": new_secret,
            "previous_client_secret": current["client_secret"],
            "previous_client_secret_expires_at": old_expiry,
            "stored_at": iso_millis(clock.now()),
        })
        self._credentials(force_fetch=True)  # this container switches at once
        count("ClientSecretStored")
        return "stored"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def iso_millis(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
