"""The token lifecycle: the refresh sweep, the re-authorization notices, the LWA secret rotation."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import requests
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from seller_insights import clock
from seller_insights.credentials import CredentialsSource
from seller_insights.endpoints import amazon_url
from seller_insights.errors import (
    AuthorizationRevoked,
    ConnectionNotActive,
    LwaInvalidClient,
    LwaRejected,
    LwaUnavailable,
    TokenUnavailable,
    VaultError,
)
from seller_insights.events import EventPublisher
from seller_insights.lwa import LwaClient
from seller_insights.marketplaces import SPAPI_ENDPOINTS, Region
from seller_insights.observability import get_logger, get_metrics
from seller_insights.redaction import register_secret
from seller_insights.repositories import ConnectionsRepository, OneTimeClaims
from seller_insights.tokens import AccessToken, AccessTokenProvider, TokenPolicy
from token_refresher.models import (
    NEW_SECRET_TYPE,
    SECRET_EXPIRY_TYPE,
    MalformedNotification,
    Notification,
    ReauthorizationReport,
    RefreshReport,
    RetryLater,
)

ROTATION_SCOPE = "sellingpartnerapi::client_credential:rotation"
ROTATE_PATH = "/applications/2023-11-30/clientSecret"
ROTATION_INTERVAL_SECONDS = 60  # rotateApplicationClientSecret: rate 0.0167/s, burst 1
# Stop taking new connections when the invocation has less than this left.
SAFETY_MILLIS = 10_000
NOTIFICATIONS_SCOPE = "sellingpartnerapi::notifications"
DESTINATIONS_PATH = "/notifications/v1/destinations"
SUBSCRIBE_PATH = "/notifications/v1/subscriptions/REPORT_PROCESSING_FINISHED"
REPORT_PAYLOAD_VERSION = "2020-09-04"
# One cached destination id per SP-API region: `destination#report_notifications#{NA|EU|FE}`.
DESTINATION_ITEM_PREFIX = "destination#report_notifications#"
LEGACY_DESTINATION_ITEM_ID = "destination#report_notifications"  # before destinations were per region
# A cached grantless token is used until this long before its expiry.
GRANTLESS_MARGIN_SECONDS = 60
DESTINATION_NAME = "seller-insights-report-notifications"
SUBSCRIPTION_EXISTS = "existing"


def count(name: str, value: float = 1) -> None:
    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


class RefreshSweep:
    """Renews the access tokens that are due (sparse index, no Scan). Every refresh also proves the
    refresh token still works, so a revocation is seen within one token lifetime even for idle sellers."""

    def __init__(self, connections: ConnectionsRepository, tokens: AccessTokenProvider, policy: TokenPolicy,
                 subscriptions: ReportSubscriptions | None = None) -> None:
        self._connections = connections
        self._tokens = tokens
        self._policy = policy
        self._subscriptions = subscriptions

    def run(self, remaining_millis: Callable[[], int]) -> RefreshReport:
        report = RefreshReport()
        # refresh_due_at is already set refresh_ahead_seconds before each token's expiry.
        due = list(self._connections.refresh_due(clock.epoch_seconds()))
        report.due = len(due)
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
                    if self._subscribe(seller, region, refreshed):
                        report.subscribed += 1
        return report

    def _subscribe(self, seller: str, region: str, token: AccessToken) -> bool:
        """Subscribes the seller to REPORT_PROCESSING_FINISHED if not yet; never fails the refresh."""
        if self._subscriptions is None:
            return False
        try:
            return self._subscriptions.ensure(seller, region, token)
        except Exception as exc:  # the next refresh tries again
            count("ReportSubscriptionFailed")
            get_logger().warning("REPORT_PROCESSING_FINISHED subscription deferred",
                                 extra={"reason": type(exc).__name__, "status": getattr(exc, "status", None)})
            return False


class SubscriptionFailed(Exception):
    """A Notifications API call answered an unexpected status (the message names only the status)."""

    def __init__(self, operation: str, status: int) -> None:
        self.status = status
        super().__init__(f"{operation} answered HTTP {status}")


class ReportSubscriptions:
    """Subscribes sellers to REPORT_PROCESSING_FINISHED, delivered to the report_notifications queue.

    Amazon keeps Notifications API destinations per region and refuses another region's destination id
    (400 "No destination with id ..."), so there is one destination per SP-API region, created grantless on
    that region's host the first time a seller of the region is subscribed (found first with
    getDestinations; a 409 means another run created it meanwhile). Each is cached in the idempotency
    table as `id=destination#report_notifications#{region}`; a 400 for a cached id drops that region's entry
    so the next refresh looks it up again. The subscription id is kept on the CONN item as
    `rpf_subscription_id` ("existing" when Amazon said 409: the seller was already subscribed).
    """

    def __init__(
        self,
        *,
        queue_arn: str,
        lwa: LwaClient,
        connections: ConnectionsRepository,
        idempotency_table: Any,
        endpoint_override: str | None,
        session: requests.Session | None = None,
    ) -> None:
        self._queue_arn = queue_arn
        self._lwa = lwa
        self._connections = connections
        self._table = idempotency_table
        self._override = endpoint_override
        self._session = session or requests.Session()
        # One grantless token serves every region's host (value, epoch second it stops being used).
        self._grantless: tuple[str, int] | None = None

    def ensure(self, seller: str, region: str, token: AccessToken) -> bool:
        """True if the seller was subscribed now; False if it already was (or is no longer ACTIVE)."""
        if self._connections.report_subscription(seller, region) is not None:
            return False
        home = Region(region)
        destination_id, cached = self._destination(home)
        response = self._post(SPAPI_ENDPOINTS[home] + SUBSCRIBE_PATH, token.value,
                              {"payloadVersion": REPORT_PAYLOAD_VERSION, "destinationId": destination_id})
        if response.status_code == 409:
            subscription_id = SUBSCRIPTION_EXISTS
        elif response.status_code == 200:
            subscription_id = str(response.json()["payload"]["subscriptionId"])
        else:
            if response.status_code == 400 and cached:
                # The region no longer knows the cached destination: look it up (or create it) next time.
                self._forget_destination(home, destination_id)
            raise SubscriptionFailed("createSubscription", response.status_code)
        recorded = self._connections.record_report_subscription(seller, region, subscription_id)
        if recorded:
            count("ReportSubscriptionCreated")
        return recorded

    def _destination(self, region: Region) -> tuple[str, bool]:
        """The region's destination id for the queue, and whether it came from the cache."""
        item_id = destination_item_id(region)
        item = self._table.get_item(Key={"id": item_id}, ConsistentRead=True).get("Item")
        if item and item.get("queue_arn") == self._queue_arn and item.get("destination_id"):
            return str(item["destination_id"]), True
        try:
            destination_id = self._find_or_create(region, self._grantless_token())
        except SubscriptionFailed as exc:
            if exc.status == 403:  # the cached grantless token was refused: ask LWA for a new one next time
                self._grantless = None
            raise
        self._table.put_item(Item={"id": item_id, "destination_id": destination_id, "region": region.value,
                                   "queue_arn": self._queue_arn, "stored_at": iso_millis(clock.now())})
        if region is Region.NA:
            # The single-destination cache of earlier versions held an NA destination for every region.
            self._table.delete_item(Key={"id": LEGACY_DESTINATION_ITEM_ID})
        return destination_id, False

    def _find_or_create(self, region: Region, access_token: str) -> str:
        destination_id = self._find(region, access_token)
        if destination_id is not None:
            return destination_id
        body = {"name": DESTINATION_NAME, "resourceSpecification": {"sqs": {"arn": self._queue_arn}}}
        response = self._post(SPAPI_ENDPOINTS[region] + DESTINATIONS_PATH, access_token, body)
        if response.status_code == 200:
            destination_id = str(response.json()["payload"]["destinationId"])
        elif response.status_code == 409:  # created meanwhile by another run
            destination_id = self._find(region, access_token)
        if destination_id is None:
            raise SubscriptionFailed("createDestination", response.status_code)
        count("ReportDestinationCreated")
        return destination_id

    def _forget_destination(self, region: Region, destination_id: str) -> None:
        """Drops the region's cache entry, unless another run has already replaced it."""
        get_logger().warning("cached REPORT_PROCESSING_FINISHED destination refused; it will be looked up again",
                             extra={"region": region.value})
        try:
            self._table.delete_item(Key={"id": destination_item_id(region)},
                                    ConditionExpression="destination_id = :refused",
                                    ExpressionAttributeValues={":refused": destination_id})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def _grantless_token(self) -> str:
        now = clock.epoch_seconds()
        if self._grantless is not None and now < self._grantless[1]:
            return self._grantless[0]
        grant = self._lwa.client_credentials(NOTIFICATIONS_SCOPE)
        self._grantless = (grant.access_token, now + max(0, grant.expires_in - GRANTLESS_MARGIN_SECONDS))
        return grant.access_token

    def _find(self, region: Region, access_token: str) -> str | None:
        url = amazon_url(SPAPI_ENDPOINTS[region] + DESTINATIONS_PATH, self._override)
        response = self._session.get(url, headers={"x-amz-access-token": access_token}, timeout=(3.05, 20))
        if response.status_code != 200:
            raise SubscriptionFailed("getDestinations", response.status_code)
        for destination in response.json().get("payload") or []:
            if (destination.get("resource") or {}).get("sqs", {}).get("arn") == self._queue_arn:
                return str(destination["destinationId"])
        return None

    def _post(self, endpoint_url: str, access_token: str, body: dict[str, Any]) -> requests.Response:
        return self._session.post(amazon_url(endpoint_url, self._override), json=body,
                                  headers={"x-amz-access-token": access_token}, timeout=(3.05, 20))


def destination_item_id(region: Region) -> str:
    """The idempotency-table item that caches the region's REPORT_PROCESSING_FINISHED destination id."""
    return f"{DESTINATION_ITEM_PREFIX}{region.value}"


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
        lwa: LwaClient,
        credentials: CredentialsSource,
        rotate_when_days_left: int,
        endpoint_override: str | None,
        session: requests.Session | None = None,
    ) -> None:
        self._store = store
        # Only for "rotation-call", the one-call-a-minute limit of rotateApplicationClientSecret shared by
        # every notice and container: a rate limit that defers other notices, not a de-duplication.
        self._claims = claims
        self._lwa = lwa
        self._credentials = credentials
        self._rotate_when = timedelta(days=rotate_when_days_left)
        self._override = endpoint_override
        self._session = session or requests.Session()

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
        grant = self._lwa.client_credentials(ROTATION_SCOPE)
        url = amazon_url(SPAPI_ENDPOINTS[Region.NA] + ROTATE_PATH, self._override)
        response = self._session.post(url, headers={"x-amz-access-token": grant.access_token}, timeout=(3.05, 20))
        if response.status_code == 429:
            raise RetryLater("rotateApplicationClientSecret is throttled")
        if response.status_code != 204:
            raise RotationFailed(response.status_code)
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


class RotationFailed(Exception):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"rotateApplicationClientSecret answered HTTP {status}")
