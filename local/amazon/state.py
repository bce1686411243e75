"""Everything the emulator remembers, in memory, behind one lock.

Handlers never touch the dictionaries directly: they call the methods below, which read the
emulator clock and enforce lifetimes (authorization code 5 min, amazon_state 10 min, access
token 1 h, authorization 365 days, client secrets) the way Amazon does.
"""

from __future__ import annotations

import secrets
import string
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from .buckets import BucketBook, WindowLimit, WindowQuota
from .clock import EmulatorClock, VirtualClock
from .documents import DocumentStore
from .faults import FaultBook
from .marketplaces import Region
from .notifications import Notifier
from .participations import ParticipationBook
from .querystore import QUERY_FINISHED, QueryStore
from .registration import EmulatorApp, LwaClient, new_client_secret
from .reportstore import ReportStore
from .request_log import RequestLog
from .roles import RoleBook

CODE_LIFETIME = timedelta(minutes=5)
AMAZON_STATE_LIFETIME = timedelta(minutes=10)
ACCESS_TOKEN_SECONDS = 3600
# A seller's consent lapses a year after it was given (re-authorization renews it).
AUTHORIZATION_LIFETIME = timedelta(days=365)
# GET_SALES_AND_TRAFFIC_REPORT createReport, app-wide (selling-partner-api-models issue 5210).
SALES_AND_TRAFFIC_LIMITS = (WindowLimit(1, timedelta(minutes=15)), WindowLimit(96, timedelta(days=1)))
# rotateApplicationClientSecret: rate 0.0167/s, burst 1, i.e. one call per minute.
ROTATION_INTERVAL = timedelta(seconds=60)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
SPAPI_OPERATIONS = (
    "getMarketplaceParticipations",
    "rotateApplicationClientSecret",
    "createReport",
    "getReports",
    "getReport",
    "cancelReport",
    "getReportDocument",
    "createDestination",
    "getDestinations",
    "createSubscription",
    "getMyFeesEstimateForASIN",
    "createQuery",
    "getQueries",
    "getQuery",
    "cancelQuery",
    "getDocument",
)

_CODE_ALPHABET = string.ascii_letters


def _code() -> str:
    # spapi_oauth_code values look like "ANDGXVQqJbwXvxjIvWYW": 20 letters.
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(20))


def _token(prefix: str, random_bytes: int) -> str:
    # Real LWA tokens are a few hundred characters, well under the 2048-byte limit.
    return prefix + secrets.token_urlsafe(random_bytes)


class GrantError(Exception):
    """The grant presented is not usable; `parameter` names the one at fault (LWA's wording)."""

    def __init__(self, parameter: str) -> None:
        super().__init__(parameter)
        self.parameter = parameter


class AmazonStateError(Exception):
    """An amazon_state that cannot be used (the message is safe to show)."""


@dataclass
class AuthorizationCode:
    client_id: str
    selling_partner_id: str
    region: Region
    redirect_uri: str
    expires_at: datetime
    consented_at: datetime
    used: bool = False


@dataclass
class PendingAmazonState:
    application_id: str
    selling_partner_id: str
    region: Region
    expires_at: datetime
    used: bool = False


@dataclass(frozen=True)
class Authorization:
    """A seller's consent to the app in one region (what a revocation will remove)."""

    selling_partner_id: str
    region: Region


@dataclass
class RefreshToken:
    client_id: str
    authorization: Authorization
    issued_at: datetime
    consented_at: datetime
    revoked: bool = False


@dataclass(frozen=True)
class AccessToken:
    client_id: str
    expires_at: datetime
    # None for a grantless (client_credentials) token
    authorization: Authorization | None = None
    scopes: tuple[str, ...] = ()
    revoked: bool = False


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    refresh_token: str


@dataclass(frozen=True)
class Destination:
    """A Notifications API destination: an SQS queue the application registered (grantless) in one
    region. Amazon keeps destinations per region: the host a call arrives on decides which."""

    destination_id: str
    region: Region
    name: str
    arn: str


@dataclass(frozen=True)
class Subscription:
    """A seller's subscription to one notification type, to a destination."""

    subscription_id: str
    notification_type: str
    payload_version: str
    destination_id: str


class SubscriptionExists(Exception):
    """The seller already has a subscription of that type (409 Conflict)."""


class UnknownDestination(Exception):
    """No destination of the region has that id (400 InvalidInput), even if another region has one."""


@dataclass
class Seller:
    selling_partner_id: str
    region: Region


@dataclass(frozen=True)
class Rotation:
    """A client secret rotation as done, with what it replaced (to undo it if delivery fails)."""

    previous: LwaClient
    client: LwaClient
    new_secret: str = field(repr=False)
    rotated_at: datetime
    new_expires_at: datetime
    old_expires_at: datetime


class EmulatorState:
    def __init__(
        self,
        app: EmulatorApp,
        clock: EmulatorClock | None = None,
        notifier: Notifier | None = None,
        report_notifier: Notifier | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._app = app
        self.clock: EmulatorClock = clock or VirtualClock()
        self.faults = FaultBook()
        self.roles = RoleBook()
        self.request_log = RequestLog()
        self.participations = ParticipationBook()
        # Part of the app's registration (Developer Console notification preferences): reset() keeps it.
        self.notifier = notifier or Notifier()
        self.buckets = BucketBook()
        self.sales_and_traffic_quota = WindowQuota(SALES_AND_TRAFFIC_LIMITS)
        self.documents = DocumentStore()
        # The REPORT_PROCESSING_FINISHED destination (Notifications API subscription): reset() keeps it.
        self.reports = ReportStore(
            self.now,
            self.documents,
            report_notifier or Notifier(group_id="report-processing-finished"),
            lambda: self.app.application_id,
            self.count_notification,
            subscription=lambda seller, region: self.subscription(seller, region, "REPORT_PROCESSING_FINISHED"),
        )
        # Data Kiosk queries: their notifications go to the same registered queue (every destination
        # stands for it here), to sellers subscribed to DATA_KIOSK_QUERY_PROCESSING_FINISHED in the region.
        self.queries = QueryStore(
            self.now,
            self.documents,
            self.reports.notifier,
            lambda: self.app.application_id,
            self.count_notification,
            subscription=lambda seller, region: self.subscription(seller, region, QUERY_FINISHED),
        )
        self._clock_listeners: list[Callable[[], None]] = [self.reports.process_due, self.queries.process_due]
        self._init_stores()

    def _init_stores(self) -> None:
        self._codes: dict[str, AuthorizationCode] = {}
        self._amazon_states: dict[str, PendingAmazonState] = {}
        self._refresh_tokens: dict[str, RefreshToken] = {}
        self._access_tokens: dict[str, AccessToken] = {}
        self._sellers: dict[tuple[str, Region], Seller] = {}
        self._lwa_calls: Counter[str] = Counter()
        self._lwa_errors: Counter[str] = Counter()
        self._spapi_calls: Counter[str] = Counter()
        self._spapi_denied: Counter[str] = Counter()
        self._notifications: Counter[str] = Counter()
        self._throttled = 0
        self._throttled_by_operation: Counter[str] = Counter()
        self._documents_served = 0
        self._last_rotation_call: datetime | None = None
        # destination id -> destination (each knows its region)
        self._destinations: dict[str, Destination] = {}
        # (selling_partner_id, region, notification type) -> its subscription: a seller subscribes in
        # each region it authorized, with that region's destination.
        self._subscriptions: dict[tuple[str, Region, str], Subscription] = {}

    def reset(self) -> None:
        """Forget every code, state, token, seller, fault and count; keep the app and the clock.

        The app keeps its current client secret, without expiry; older secrets are forgotten.
        """
        with self._lock:
            self._init_stores()
            fresh = self._app.client.fresh()
            if fresh != self._app.client:
                self._app = self._app.with_client(fresh)
        self.faults.clear()
        self.roles.clear()
        self.request_log.clear()
        self.participations.clear()
        self.buckets.clear()
        self.sales_and_traffic_quota.clear()
        self.reports.clear()
        self.queries.clear()
        self.documents.clear()

    def now(self) -> datetime:
        return self.clock.now()

    def advance_clock(self, seconds: float) -> datetime:
        """Moves the emulator clock, then lets what is due happen (reports finish and notify)."""
        now = self.clock.advance(seconds)
        for listener in list(self._clock_listeners):
            listener()
        return now

    def add_clock_listener(self, listener: Callable[[], None]) -> None:
        self._clock_listeners.append(listener)

    # -- the registered application -------------------------------------------------------

    @property
    def app(self) -> EmulatorApp:
        with self._lock:
            return self._app

    def configure(
        self,
        *,
        redirect_uris: Sequence[str] | None = None,
        login_uri: str | None = None,
        draft: bool | None = None,
        name: str | None = None,
    ) -> EmulatorApp:
        with self._lock:
            self._app = self._app.with_changes(redirect_uris=redirect_uris, login_uri=login_uri, draft=draft, name=name)
            return self._app

    # -- sellers ----------------------------------------------------------------------------

    def register_seller(self, selling_partner_id: str, region: Region) -> Seller:
        with self._lock:
            key = (selling_partner_id, region)
            return self._sellers.setdefault(key, Seller(selling_partner_id, region))

    def sellers(self) -> list[Seller]:
        with self._lock:
            return list(self._sellers.values())

    # -- consent: authorization codes and the Log-in URI hop ----------------------------------

    def issue_code(self, selling_partner_id: str, region: Region, redirect_uri: str) -> str:
        with self._lock:
            self.register_seller(selling_partner_id, region)
            code = _code()
            self._codes[code] = AuthorizationCode(
                client_id=self._app.client.client_id,
                selling_partner_id=selling_partner_id,
                region=region,
                redirect_uri=redirect_uri,
                expires_at=self.now() + CODE_LIFETIME,
                consented_at=self.now(),
            )
            return code

    def issue_amazon_state(self, selling_partner_id: str, region: Region) -> str:
        with self._lock:
            self.register_seller(selling_partner_id, region)
            value = secrets.token_urlsafe(32)
            self._amazon_states[value] = PendingAmazonState(
                application_id=self._app.application_id,
                selling_partner_id=selling_partner_id,
                region=region,
                expires_at=self.now() + AMAZON_STATE_LIFETIME,
            )
            return value

    def consume_amazon_state(self, value: str, application_id: str, region: Region) -> PendingAmazonState:
        """Use an amazon_state once; raises AmazonStateError with a reason fit for the page."""
        with self._lock:
            pending = self._amazon_states.get(value)
            if pending is None:
                raise AmazonStateError("amazon_state is unknown: it was not issued by Amazon")
            if pending.used:
                raise AmazonStateError("amazon_state has already been used")
            if self.now() >= pending.expires_at:
                raise AmazonStateError("amazon_state has expired")
            if pending.application_id != application_id:
                raise AmazonStateError("amazon_state was issued for another application")
            if pending.region != region:
                raise AmazonStateError(f"amazon_state was issued for region {pending.region}, not {region}")
            pending.used = True
            return pending

    # -- LWA --------------------------------------------------------------------------------

    def redeem_code(self, code: str, client_id: str, redirect_uri: str) -> TokenGrant:
        """Exchange an authorization code once. Any presentation of a known code uses it up."""
        with self._lock:
            issued = self._codes.get(code)
            if issued is None or issued.used or self.now() >= issued.expires_at:
                raise GrantError("code")
            issued.used = True
            if issued.client_id != client_id:
                raise GrantError("code")
            if issued.redirect_uri != redirect_uri:
                raise GrantError("redirect_uri")
            authorization = Authorization(issued.selling_partner_id, issued.region)
            refresh_token = _token("Atzr|", 330)
            self._refresh_tokens[refresh_token] = RefreshToken(
                client_id, authorization, self.now(), consented_at=issued.consented_at
            )
            return TokenGrant(self._new_access_token(client_id, authorization), refresh_token)

    def refresh(self, refresh_token: str, client_id: str) -> TokenGrant:
        with self._lock:
            record = self._refresh_tokens.get(refresh_token)
            if record is None or record.revoked or record.client_id != client_id:
                raise GrantError("refresh_token")
            if self.now() - record.consented_at > AUTHORIZATION_LIFETIME:
                raise GrantError("refresh_token")
            return TokenGrant(self._new_access_token(client_id, record.authorization), refresh_token)

    def revoke(self, selling_partner_id: str, region: Region) -> int:
        """The seller removed the app: its refresh tokens, access tokens and pending codes die.

        Returns how many refresh tokens were revoked. A later consent issues new, working tokens.
        """
        authorization = Authorization(selling_partner_id, region)
        with self._lock:
            revoked = 0
            for record in self._refresh_tokens.values():
                if record.authorization == authorization and not record.revoked:
                    record.revoked = True
                    revoked += 1
            for value, access in self._access_tokens.items():
                if access.authorization == authorization:
                    self._access_tokens[value] = replace(access, revoked=True)
            for code in self._codes.values():
                if (code.selling_partner_id, code.region) == (selling_partner_id, region):
                    code.used = True
            return revoked

    def issue_grantless(self, client_id: str, scopes: tuple[str, ...]) -> str:
        with self._lock:
            token = _token("Atc|", 280)
            self._access_tokens[token] = AccessToken(
                client_id=client_id,
                expires_at=self.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS),
                scopes=scopes,
            )
            return token

    def _new_access_token(self, client_id: str, authorization: Authorization) -> str:
        token = _token("Atza|", 280)
        self._access_tokens[token] = AccessToken(
            client_id=client_id,
            expires_at=self.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS),
            authorization=authorization,
        )
        return token

    def access_token(self, token: str) -> AccessToken | None:
        """The live access token with this value (for the SP-API side), or None."""
        with self._lock:
            record = self._access_tokens.get(token)
            if record is None or record.revoked or self.now() >= record.expires_at:
                return None
            return record

    # -- the client secret: rotation and expiry ----------------------------------------------

    def take_rotation_slot(self) -> bool:
        """The rotation operation's throttle: False if the last accepted call is under a minute old."""
        with self._lock:
            now = self.now()
            last = self._last_rotation_call
            if last is not None and now - last < ROTATION_INTERVAL:
                self._throttled += 1
                self._throttled_by_operation["rotateApplicationClientSecret"] += 1
                return False
            self._last_rotation_call = now
            return True

    def rotate_client_secret(self) -> Rotation:
        with self._lock:
            now = self.now()
            previous = self._app.client
            new_secret = new_client_secret()
            client = previous.rotated(new_secret, now)
            self._app = self._app.with_client(client)
            old_expires_at = client.secrets[1].expires_at
            new_expires_at = client.current_expires_at
            assert old_expires_at is not None and new_expires_at is not None
            return Rotation(previous, client, new_secret, now, new_expires_at, old_expires_at)

    def undo_rotation(self, rotation: Rotation) -> None:
        with self._lock:
            if self._app.client == rotation.client:
                self._app = self._app.with_client(rotation.previous)

    def expire_current_secret(self, expires_at: datetime) -> None:
        """The current client secret stops authenticating at `expires_at` (emulator clock)."""
        with self._lock:
            self._app = self._app.with_client(self._app.client.with_current_expiry(expires_at))

    # -- the Notifications API: destinations and subscriptions ---------------------------------

    def create_destination(self, region: Region, name: str, arn: str) -> Destination | None:
        """A new destination in `region`; None if that region has one with that ARN (409 Conflict)."""
        with self._lock:
            if any(known.arn == arn and known.region == region for known in self._destinations.values()):
                return None
            destination = Destination(str(uuid.uuid4()), region, name, arn)
            self._destinations[destination.destination_id] = destination
            return destination

    def destinations(self, region: Region) -> list[Destination]:
        """The region's destinations only (getDestinations on that region's host)."""
        with self._lock:
            return [known for known in self._destinations.values() if known.region == region]

    def subscribe(
        self,
        selling_partner_id: str,
        region: Region,
        notification_type: str,
        payload_version: str,
        destination_id: str,
    ) -> Subscription:
        with self._lock:
            destination = self._destinations.get(destination_id)
            if destination is None or destination.region != region:
                raise UnknownDestination(destination_id)
            key = (selling_partner_id, region, notification_type)
            if key in self._subscriptions:
                raise SubscriptionExists(notification_type)
            subscription = Subscription(str(uuid.uuid4()), notification_type, payload_version, destination_id)
            self._subscriptions[key] = subscription
            return subscription

    def subscription(self, selling_partner_id: str, region: Region, notification_type: str) -> Subscription | None:
        """The seller's subscription in that region, while its destination exists."""
        with self._lock:
            subscription = self._subscriptions.get((selling_partner_id, region, notification_type))
            if subscription is None or subscription.destination_id not in self._destinations:
                return None
            return subscription

    # -- statistics -------------------------------------------------------------------------

    def count_lwa_call(self, grant_type: str) -> None:
        if grant_type in GRANT_TYPES:
            with self._lock:
                self._lwa_calls[grant_type] += 1

    def count_lwa_error(self, error: str) -> None:
        with self._lock:
            self._lwa_errors[error] += 1

    def count_spapi_call(self, operation: str) -> None:
        with self._lock:
            self._spapi_calls[operation] += 1

    def count_spapi_denied(self, operation: str) -> None:
        with self._lock:
            self._spapi_denied[operation] += 1

    def count_throttled(self, operation: str) -> None:
        with self._lock:
            self._throttled += 1
            self._throttled_by_operation[operation] += 1

    def count_document_served(self) -> None:
        with self._lock:
            self._documents_served += 1

    def count_notification(self, notification_type: str) -> None:
        with self._lock:
            self._notifications[notification_type] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "lwa": {grant: self._lwa_calls[grant] for grant in GRANT_TYPES},
                "lwa_errors": dict(self._lwa_errors),
                "spapi": {op: self._spapi_calls[op] for op in SPAPI_OPERATIONS},
                "spapi_denied": {op: self._spapi_denied[op] for op in SPAPI_OPERATIONS},
                "throttled": self._throttled,
                "throttled_by_operation": dict(self._throttled_by_operation),
                "notifications": dict(self._notifications),
                "documents_served": self._documents_served,
                "destinations": len(self._destinations),
                "subscriptions": len(self._subscriptions),
                "destinations_by_region": {
                    region.value: sum(1 for d in self._destinations.values() if d.region == region) for region in Region
                },
                "subscriptions_by_region": {
                    region.value: sum(1 for key in self._subscriptions if key[1] == region) for region in Region
                },
            }
