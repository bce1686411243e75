"""The consent flows: website (/connect), Log-in URI (/login) and the final callback.

The rules: state is 256-bit random, stored only as a hash, bound to this browser by
a cookie, at most STATE_TTL_SECONDS old and consumed with a conditional delete before anything else;
the code is exchanged at LWA at most once; the region comes from the stored state, never from the
callback; the refresh token is sealed before it is written.

The callback's `selling_partner_id` is a value the browser can edit, so a consent changes no
connection: the new token becomes a candidate (seller_insights.candidates) that the token refresher
promotes once Amazon has named its seller. A seller that asked for deletion gets nothing stored; the
page names the purge date only after Amazon confirmed that seller (else the date of another seller
would be one edited query value away).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn
from urllib.parse import urlencode, urlsplit, urlunsplit

from aws_lambda_powertools.metrics import MetricUnit

from oauth_callback.settings import ConsentSettings
from seller_insights import clock
from seller_insights.candidates import Candidate, CandidateRepository, new_candidate_id
from seller_insights.credentials import LwaClientCredentials
from seller_insights.data_rights import AuditLog, AuditOutcome, AuditType
from seller_insights.endpoints import amazon_url, emulated_host
from seller_insights.errors import (
    AlreadyConnected,
    AuthorizationCancelled,
    BadRequest,
    BrowserMismatch,
    ConnectionInProgress,
    DeletionPending,
    IdentityMismatch,
    IdentityNotProven,
    IdentityUnconfirmed,
    LwaError,
    SellerMismatch,
    StateExpired,
    StateNotFound,
    UntrustedCallbackUri,
)
from seller_insights.identity import SellerIdentity, probe_marketplace
from seller_insights.lwa import LwaClient, TokenGrant
from seller_insights.marketplaces import CONFIRM_PATH, CONSENT_PATH, Region, central_host_regions, marketplace
from seller_insights.observability import get_logger, get_metrics
from seller_insights.pseudonyms import seller_key
from seller_insights.redaction import register_secret
from seller_insights.repositories import (
    ClaimStatus,
    ConnectionsRepository,
    OAuthStateRepository,
    OneTimeClaims,
    PendingState,
)
from seller_insights.vault import Purpose, SecretContext, Vault

BINDING_COOKIE = "__Host-si_consent"
CODE_CLAIM_TTL_SECONDS = 24 * 3600

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_SELLER_ID = re.compile(r"[A-Z0-9]{8,20}")
_CODE = re.compile(r"[A-Za-z0-9._~+/=-]{8,512}")
_PRINTABLE = set(string.ascii_letters + string.digits + string.punctuation)
MAX_AMAZON_STATE = 2048
MAX_CALLBACK_URI = 2048


@dataclass(frozen=True)
class Redirect:
    location: str
    binding: str  # the browser-binding cookie value to (re)set


@dataclass(frozen=True)
class Completion:
    """A consent taken: its token waits as a candidate until Amazon confirms the seller."""

    seller_id: str
    region: str
    marketplace: str | None


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class ConsentService:
    def __init__(
        self,
        settings: ConsentSettings,
        *,
        states: OAuthStateRepository,
        connections: ConnectionsRepository,
        candidates: CandidateRepository,
        claims: OneTimeClaims,
        vault: Vault,
        lwa: LwaClient,
        identity: SellerIdentity,
        audit: AuditLog,
        credentials: Callable[[], LwaClientCredentials],
    ) -> None:
        self._settings = settings
        self._states = states
        self._connections = connections
        self._candidates = candidates
        self._claims = claims
        self._vault = vault
        self._lwa = lwa
        self._identity = identity
        self._audit = audit
        self._credentials = credentials

    # --- /connect ---------------------------------------------------------------------------------

    def start_website_flow(self, query: Mapping[str, str], binding: str | None) -> Redirect:
        chosen = marketplace(query.get("marketplace") or self._settings.default_marketplace)
        application_id = self._credentials().application_id
        state, binding = self._issue_state(binding, flow="website", region=chosen.region,
                                           marketplace=chosen.code)
        params = {"application_id": application_id, "state": state, "redirect_uri": self._settings.redirect_uri}
        if self._settings.app_draft:
            params["version"] = "beta"
        consent = f"{chosen.consent_base()}{CONSENT_PATH}?{urlencode(params)}"
        return Redirect(amazon_url(consent, self._settings.amazon_endpoint_override), binding)

    # --- /login (Appstore authorization and yearly re-authorization) ------------------------------

    def start_login_flow(self, query: Mapping[str, str], binding: str | None) -> Redirect:
        callback_uri = query.get("amazon_callback_uri") or ""
        amazon_state = query.get("amazon_state") or ""
        if not callback_uri or not amazon_state:
            raise BadRequest("amazon_callback_uri and amazon_state are required")
        if len(amazon_state) > MAX_AMAZON_STATE or not set(amazon_state) <= _PRINTABLE:
            raise BadRequest("amazon_state is malformed")
        register_secret(amazon_state)
        region = self.trusted_callback_region(callback_uri)
        seller_id = query.get("selling_partner_id") or None
        if seller_id is not None and not _SELLER_ID.fullmatch(seller_id):
            raise BadRequest("selling_partner_id is malformed")
        state, binding = self._issue_state(binding, flow="login", region=region, marketplace=None,
                                           selling_partner_id=seller_id)
        params = {"amazon_state": amazon_state, "state": state, "redirect_uri": self._settings.redirect_uri}
        if self._settings.app_draft:
            params["version"] = "beta"
        parts = urlsplit(callback_uri)
        return Redirect(urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(params), "")), binding)

    def trusted_callback_region(self, uri: str) -> Region:
        """The region of an allowlisted Seller/Vendor Central callback URI, or UntrustedCallbackUri.

        Exact host match on https without port, user info, query or fragment, and exactly the path
        Amazon confirms our own application on (`/apps/authorize/confirm/{application id}`); in the
        local stage, also the Amazon emulator's own origin standing in for an allowlisted host.
        """
        if len(uri) > MAX_CALLBACK_URI or any(c in uri for c in "\\ \t\r\n\x00") or not uri.isascii():
            raise UntrustedCallbackUri("amazon_callback_uri has forbidden characters")
        parts = urlsplit(uri)
        if parts.fragment or parts.query or "?" in uri or "#" in uri or "@" in parts.netloc:
            raise UntrustedCallbackUri("amazon_callback_uri has a query, a fragment or user info")
        emulated = emulated_host(uri, self._settings.amazon_endpoint_override)
        if emulated is not None:
            host, path = emulated
        else:
            host, path = parts.netloc.lower(), parts.path
            if parts.scheme != "https" or host != (parts.hostname or ""):
                raise UntrustedCallbackUri("amazon_callback_uri must be https on a bare host name")
        regions = central_host_regions()
        if host not in regions:
            raise UntrustedCallbackUri("amazon_callback_uri is not a Seller Central or Vendor Central host")
        if path != f"{CONFIRM_PATH}{self._credentials().application_id}":
            raise UntrustedCallbackUri("amazon_callback_uri is not Amazon's confirmation page for this application")
        return regions[host]

    # --- /callback --------------------------------------------------------------------------------

    def complete(self, query: Mapping[str, str], binding: str | None, request_id: str) -> Completion:
        state = query.get("state") or ""
        code = query.get("spapi_oauth_code") or ""
        register_secret(state, code)
        if not _TOKEN.fullmatch(state):
            raise BadRequest("state is missing or malformed")
        # Consumed first, whatever follows: a state works once, even if the rest of the request fails.
        pending = self._states.consume(digest(state))
        if pending is None:
            self._raise_for_reused_code(code, binding)
        if clock.epoch_seconds() - pending.created_at > self._settings.state_ttl_seconds:
            raise StateExpired()
        if not binding or not hmac.compare_digest(digest(binding), pending.binding_hash):
            raise BrowserMismatch()
        if "error" in query:
            raise AuthorizationCancelled()

        seller_id = query.get("selling_partner_id") or ""
        if not _SELLER_ID.fullmatch(seller_id):
            raise BadRequest("selling_partner_id is missing or malformed")
        if not _CODE.fullmatch(code):
            raise BadRequest("spapi_oauth_code is missing or malformed")
        if pending.selling_partner_id and pending.selling_partner_id != seller_id:
            raise SellerMismatch()

        claim_id = f"authcode#{digest(code)}"
        if not self._claims.claim(claim_id, owner=pending.binding_hash, now=clock.epoch_seconds(),
                                  ttl_seconds=CODE_CLAIM_TTL_SECONDS):
            self._raise_for_reused_code(code, binding)
        try:
            completion = self._exchange_and_hold(code, seller_id, pending, request_id)
        except Exception:
            self._claims.finish(claim_id, ClaimStatus.FAILED)
            raise
        self._claims.finish(claim_id, ClaimStatus.COMPLETED)
        return completion

    def _exchange_and_hold(self, code: str, seller_id: str, pending: PendingState, request_id: str) -> Completion:
        received_at = clock.now()
        grant = self._lwa.exchange_code(code, self._settings.redirect_uri)
        if grant.refresh_token is None:  # exchange_code guarantees it; kept for the type checker
            raise LwaError("missing_refresh_token")
        register_secret(grant.access_token, grant.refresh_token)
        purge_after = self._connections.pending_deletion(seller_id)
        if purge_after is not None:
            self._refuse_during_deletion(grant, seller_id, pending, purge_after=purge_after, request_id=request_id,
                                         received_at=received_at)
        now = clock.epoch_seconds()
        self._candidates.create(Candidate(
            seller_id=seller_id,
            region=pending.region,
            candidate_id=new_candidate_id(),
            sealed=self._vault.seal(grant.refresh_token,
                                    SecretContext(Purpose.REFRESH_TOKEN, seller_id, pending.region)),
            created_at=now,
            verify_by=now + self._settings.consent_verification_seconds,
            flow=pending.flow,
            marketplace=pending.marketplace,
            verify_due_at=now,
        ))
        return Completion(seller_id, pending.region, pending.marketplace)

    def _refuse_during_deletion(self, grant: TokenGrant, seller_id: str, pending: PendingState, *,
                                purge_after: str, request_id: str, received_at: datetime) -> NoReturn:
        """Nothing is stored while the seller's deletion is pending. Which page: Amazon decides, with the
        access token of this very exchange (held in memory only, then dropped)."""
        try:
            confirmed = self._identity.seller_of(grant.access_token, pending.region,
                                                 probe_marketplace(pending.marketplace, pending.region))
        except IdentityNotProven as exc:
            self._record(request_id, seller_id, received_at, AuditOutcome.UNCONFIRMED)
            get_logger().warning("consent during a pending deletion: Amazon did not confirm the seller",
                                 extra={"reason": exc.reason})
            raise IdentityUnconfirmed() from None
        if confirmed != seller_id:
            self._record(request_id, seller_id, received_at, AuditOutcome.IDENTITY_MISMATCH,
                         other_seller_key=seller_key(confirmed))
            get_metrics().add_metric(name="ConsentIdentityMismatch", unit=MetricUnit.Count, value=1)
            get_logger().warning("consent names another seller than Amazon does; nothing stored",
                                 extra={"seller_key": seller_key(seller_id), "region": pending.region})
            raise IdentityMismatch()
        self._record(request_id, seller_id, received_at, AuditOutcome.DELETION_PENDING)
        raise DeletionPending(purge_after)

    def _record(self, request_id: str, seller_id: str, received_at: datetime, outcome: AuditOutcome,
                other_seller_key: str | None = None) -> None:
        self._audit.record_request(request_id=request_id, request_type=AuditType.CONSENT,
                                   seller_key=seller_key(seller_id), received_at=received_at,
                                   completed_at=clock.now(), outcome=outcome, detail={},
                                   other_seller_key=other_seller_key)

    def _raise_for_reused_code(self, code: str, binding: str | None) -> NoReturn:
        """The same browser bringing back a code we already took: say how that went; else StateNotFound."""
        if code and binding and _CODE.fullmatch(code):
            claim = self._claims.get(f"authcode#{digest(code)}", now=clock.epoch_seconds())
            if claim is not None and hmac.compare_digest(claim.owner, digest(binding)):
                if claim.status is ClaimStatus.COMPLETED:
                    raise AlreadyConnected()
                if claim.status is ClaimStatus.IN_PROGRESS:
                    raise ConnectionInProgress()
        raise StateNotFound()

    # --- state ------------------------------------------------------------------------------------

    def _issue_state(
        self,
        binding: str | None,
        *,
        flow: str,
        region: Region,
        marketplace: str | None,
        selling_partner_id: str | None = None,
    ) -> tuple[str, str]:
        if not binding or not _TOKEN.fullmatch(binding):
            binding = secrets.token_urlsafe(32)
        state = secrets.token_urlsafe(32)
        register_secret(state, binding)
        now = clock.epoch_seconds()
        self._states.create(PendingState(
            state_hash=digest(state),
            binding_hash=digest(binding),
            flow=flow,
            region=region.value,
            marketplace=marketplace,
            created_at=now,
            expires_at=now + self._settings.state_ttl_seconds,
            selling_partner_id=selling_partner_id,
        ))
        return state, binding
