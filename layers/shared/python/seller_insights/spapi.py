"""The one SP-API adapter: the regional endpoint, the token, one user-agent, one set of timeouts, one
error family (seller_insights.errors.SpApiFailure) and the rate-limit header.

Every call goes through SpApiClient, the grantless ones included: the token source decides whose token
is sent (a seller's access token, or a grantless LWA client_credentials token with a scope, see
GrantlessTokens). A 403 that says the token is unauthorized (expired, revoked, malformed, or, with the
same code, a role the seller or the application lacks) makes the client tell its token source to forget
that token; with `retry_refused_token` (the default) it then asks for a new one and retries once, if it
got a different one. A second refusal is the caller's to handle. Responses and URLs are never
logged; errors carry the operation, the HTTP status, Amazon's error code and the rate limit only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import requests

from seller_insights import clock
from seller_insights.endpoints import amazon_url
from seller_insights.errors import SpApiError, SpApiUnreachable
from seller_insights.marketplaces import SPAPI_ENDPOINTS, Region
from seller_insights.redaction import register_secret
from seller_insights.tokens import AccessToken

REPORTS = "/reports/2021-06-30"
FEES = "/products/fees/v0"
DATA_KIOSK = "/dataKiosk/2023-11-15"
NOTIFICATIONS = "/notifications/v1"
APPLICATIONS = "/applications/2023-11-30"

USER_AGENT = "SellerInsights/0.1 (Language=Python/3.13; Platform=AWS Lambda)"
RATE_LIMIT_HEADER = "x-amzn-RateLimit-Limit"
TOKEN_REFUSED = {"Unauthorized", "MissingAuthenticationToken", "InvalidAccessToken"}
# A cached grantless token is used until this long before its expiry.
GRANTLESS_MARGIN_SECONDS = 60


class TokenSource(Protocol):
    def get(self, seller: str, region: str) -> AccessToken: ...

    def invalidate(self, seller: str, region: str, token: AccessToken) -> None: ...


class ClientCredentialsGrant(Protocol):
    """What GrantlessTokens needs of LWA (seller_insights.lwa.LwaClient)."""

    def client_credentials(self, scope: str) -> Any: ...


class GrantlessTokens:
    """A token source of grantless tokens (LWA client_credentials with one scope) for operations that act
    for the application, not a seller. One token serves every region's host; it is kept in memory until
    GRANTLESS_MARGIN_SECONDS before its expiry by our clock, or until Amazon refuses it."""

    def __init__(self, lwa: ClientCredentialsGrant, scope: str) -> None:
        self._lwa = lwa
        self._scope = scope
        self._token: AccessToken | None = None  # expires_at: the epoch second it stops being used

    def get(self, seller: str, region: str) -> AccessToken:
        now = clock.epoch_seconds()
        if self._token is not None and now < self._token.expires_at:
            return self._token
        grant = self._lwa.client_credentials(self._scope)
        self._token = AccessToken(grant.access_token, now + max(0, grant.expires_in - GRANTLESS_MARGIN_SECONDS))
        return self._token

    def invalidate(self, seller: str, region: str, token: AccessToken) -> None:
        if self._token == token:
            self._token = None


@dataclass(frozen=True)
class SpApiTimeouts:
    connect: float = 3.05
    read: float = 20.0


@dataclass(frozen=True)
class SpApiResponse:
    """A successful answer: its status, its JSON object ({} when empty) and Amazon's rate limit for the
    operation (requests per second, from x-amzn-RateLimit-Limit; None when absent)."""

    status: int
    body: dict[str, Any]
    rate_limit: float | None


def http_session() -> requests.Session:
    """A connection pool to share between clients (e.g. one per container)."""
    return requests.Session()


class SpApiClient:
    def __init__(
        self,
        tokens: TokenSource,
        *,
        endpoint_override: str | None = None,
        session: requests.Session | None = None,
        timeouts: SpApiTimeouts | None = None,
    ) -> None:
        self._tokens = tokens
        self._override = endpoint_override
        self._session = session or http_session()
        self._timeouts = timeouts or SpApiTimeouts()

    def get_marketplace_participations(self, seller: str, region: str) -> dict[str, Any]:
        """Sellers API getMarketplaceParticipations: the marketplaces this seller sells in."""
        return self.request(seller, region, "GET", "/sellers/v1/marketplaceParticipations",
                            operation="getMarketplaceParticipations")

    def get_my_fees_estimate_for_asin(self, seller: str, region: str, asin: str, body: dict[str, Any], *,
                                      retry_refused_token: bool = True) -> dict[str, Any]:
        """Product Fees API getMyFeesEstimateForASIN (its answer names the token's seller)."""
        return self.request(seller, region, "POST", f"{FEES}/items/{asin}/feesEstimate", json=body,
                            retry_refused_token=retry_refused_token, operation="getMyFeesEstimateForASIN")

    # --- Reports API 2021-06-30 ------------------------------------------------------------------

    def create_report(self, seller: str, region: str, body: dict[str, Any]) -> str:
        answer = self.request(seller, region, "POST", f"{REPORTS}/reports", json=body, operation="createReport")
        return str(answer["reportId"])

    def get_reports(self, seller: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.request(seller, region, "GET", f"{REPORTS}/reports", params=params, operation="getReports")

    def get_report(self, seller: str, region: str, report_id: str) -> dict[str, Any]:
        return self.request(seller, region, "GET", f"{REPORTS}/reports/{report_id}", operation="getReport")

    def get_report_document(self, seller: str, region: str, document_id: str) -> dict[str, Any]:
        document = self.request(seller, region, "GET", f"{REPORTS}/documents/{document_id}",
                                operation="getReportDocument")
        register_secret(str(document.get("url", "")))  # a presigned URL: never in a log
        return document

    # --- Data Kiosk API 2023-11-15 -----------------------------------------------------------------

    def create_query(self, seller: str, region: str, query: str) -> str:
        """createQuery: the GraphQL `query` string; the query id (unique per seller)."""
        answer = self.request(seller, region, "POST", f"{DATA_KIOSK}/queries", json={"query": query},
                              operation="createQuery")
        return str(answer["queryId"])

    def get_query(self, seller: str, region: str, query_id: str) -> dict[str, Any]:
        return self.request(seller, region, "GET", f"{DATA_KIOSK}/queries/{query_id}", operation="getQuery")

    def get_query_document(self, seller: str, region: str, document_id: str) -> dict[str, Any]:
        """getDocument: `documentUrl` is presigned (5 minutes) and registered as a secret."""
        document = self.request(seller, region, "GET", f"{DATA_KIOSK}/documents/{document_id}",
                                operation="getDocument")
        register_secret(str(document.get("documentUrl", "")))  # a presigned URL: never in a log
        return document

    # --- Notifications API v1 (destinations are grantless, subscriptions act for a seller) -------

    def get_destinations(self, region: str) -> list[dict[str, Any]]:
        answer = self.request("", region, "GET", f"{NOTIFICATIONS}/destinations", operation="getDestinations",
                              retry_refused_token=False)
        return [d for d in answer.get("payload") or [] if isinstance(d, dict)]

    def create_destination(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.request("", region, "POST", f"{NOTIFICATIONS}/destinations", json=body,
                              operation="createDestination", retry_refused_token=False)
        return dict(answer.get("payload") or {})

    def create_subscription(self, seller: str, region: str, notification_type: str,
                            body: dict[str, Any]) -> dict[str, Any]:
        answer = self.request(seller, region, "POST", f"{NOTIFICATIONS}/subscriptions/{notification_type}",
                              json=body, operation="createSubscription")
        return dict(answer.get("payload") or {})

    # --- Application Management API 2023-11-30 (grantless) ---------------------------------------

    def rotate_application_client_secret(self) -> SpApiResponse:
        """The new secret arrives later, by notification; Amazon answers 204 when it took the request."""
        return self.send("", Region.NA.value, "POST", f"{APPLICATIONS}/clientSecret",
                         operation="rotateApplicationClientSecret", retry_refused_token=False)

    # --- any operation ---------------------------------------------------------------------------

    def request(self, seller: str, region: str, method: str, path: str, *,
                params: dict[str, Any] | None = None, json: dict[str, Any] | None = None,
                retry_refused_token: bool = True, operation: str | None = None) -> dict[str, Any]:
        """The answer's JSON object; see `send`."""
        return self.send(seller, region, method, path, params=params, json=json,
                         retry_refused_token=retry_refused_token, operation=operation).body

    def send(self, seller: str, region: str, method: str, path: str, *,
             params: dict[str, Any] | None = None, json: dict[str, Any] | None = None,
             retry_refused_token: bool = True, operation: str | None = None) -> SpApiResponse:
        """SpApiError for an error status, SpApiUnreachable when there is no answer.
        `retry_refused_token=False`: a refused token is forgotten but not replaced and retried (a token
        that is not from the shared cache has no replacement; a grantless caller tries again later)."""
        url = amazon_url(SPAPI_ENDPOINTS[Region(region)] + path, self._override)
        token = self._tokens.get(seller, region)
        response = self._send(method, url, token.value, params, json, operation=operation)
        if response.status_code == 403 and _error_code(response) in TOKEN_REFUSED:
            self._tokens.invalidate(seller, region, token)
            if retry_refused_token:
                fresh = self._tokens.get(seller, region)
                if fresh != token:  # the same token again would only be refused again
                    response = self._send(method, url, fresh.value, params, json, operation=operation)
        rate_limit = _rate_limit(response)
        if response.status_code >= 400:
            raise SpApiError(response.status_code, _error_code(response), operation=operation,
                             rate_limit=rate_limit)
        if not response.content:
            return SpApiResponse(response.status_code, {}, rate_limit)
        try:
            body = response.json()
        except ValueError:
            raise SpApiError(response.status_code, "invalid_json", operation=operation) from None
        if not isinstance(body, dict):
            raise SpApiError(response.status_code, "invalid_json", operation=operation)
        return SpApiResponse(response.status_code, body, rate_limit)

    def _send(self, method: str, url: str, access_token: str, params: dict[str, Any] | None,
              json: dict[str, Any] | None, *, operation: str | None) -> requests.Response:
        try:
            return self._session.request(
                method, url, params=params, json=json,
                headers={"x-amz-access-token": access_token, "user-agent": USER_AGENT, "accept": "application/json"},
                timeout=(self._timeouts.connect, self._timeouts.read),
            )
        except requests.Timeout:
            raise SpApiUnreachable("timeout", operation=operation) from None
        except requests.RequestException:
            raise SpApiUnreachable("connection", operation=operation) from None


def _rate_limit(response: requests.Response) -> float | None:
    value = response.headers.get(RATE_LIMIT_HEADER)
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _error_code(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    errors = body.get("errors") or [] if isinstance(body, dict) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    return str(code) if code else None
