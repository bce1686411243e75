"""A small SP-API client: the regional endpoint, the shared access token, and the 403 rule.

A 403 that says the access token is unauthorized (expired, revoked, malformed) drops the cached
token, refreshes once and retries once. A second refusal is the caller's to handle. Responses and URLs
are never logged; errors carry the HTTP status and Amazon's error code only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import requests

from seller_insights.endpoints import amazon_url
from seller_insights.errors import SpApiError
from seller_insights.marketplaces import SPAPI_ENDPOINTS, Region
from seller_insights.redaction import register_secret
from seller_insights.tokens import AccessToken

REPORTS = "/reports/2021-06-30"
FEES = "/products/fees/v0"


class TokenSource(Protocol):
    def get(self, seller: str, region: str) -> AccessToken: ...

    def invalidate(self, seller: str, region: str, token: AccessToken) -> None: ...

USER_AGENT = "SellerInsights/0.1 (Language=Python/3.13; Platform=AWS Lambda)"
_TOKEN_REFUSED = {"Unauthorized", "MissingAuthenticationToken", "InvalidAccessToken"}


@dataclass(frozen=True)
class SpApiTimeouts:
    connect: float = 3.05
    read: float = 20.0


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
        self._session = session or requests.Session()
        self._timeouts = timeouts or SpApiTimeouts()

    def get_marketplace_participations(self, seller: str, region: str) -> dict[str, Any]:
        """Sellers API getMarketplaceParticipations: the marketplaces this seller sells in."""
        return self.request(seller, region, "GET", "/sellers/v1/marketplaceParticipations")

    def get_my_fees_estimate_for_asin(self, seller: str, region: str, asin: str, body: dict[str, Any], *,
                                      retry_refused_token: bool = True) -> dict[str, Any]:
        """Product Fees API getMyFeesEstimateForASIN (its answer names the token's seller)."""
        return self.request(seller, region, "POST", f"{FEES}/items/{asin}/feesEstimate", json=body,
                            retry_refused_token=retry_refused_token)

    # --- Reports API 2021-06-30 ------------------------------------------------------------------

    def create_report(self, seller: str, region: str, body: dict[str, Any]) -> str:
        return str(self.request(seller, region, "POST", f"{REPORTS}/reports", json=body)["reportId"])

    def get_reports(self, seller: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.request(seller, region, "GET", f"{REPORTS}/reports", params=params)

    def get_report(self, seller: str, region: str, report_id: str) -> dict[str, Any]:
        return self.request(seller, region, "GET", f"{REPORTS}/reports/{report_id}")

    def get_report_document(self, seller: str, region: str, document_id: str) -> dict[str, Any]:
        document = self.request(seller, region, "GET", f"{REPORTS}/documents/{document_id}")
        register_secret(str(document.get("url", "")))  # a presigned URL: never in a log
        return document

    def request(self, seller: str, region: str, method: str, path: str, *,
                params: dict[str, Any] | None = None, json: dict[str, Any] | None = None,
                retry_refused_token: bool = True) -> dict[str, Any]:
        """`retry_refused_token=False`: a refused token is not replaced and retried (a token that is not
        from the shared cache has no replacement)."""
        url = amazon_url(SPAPI_ENDPOINTS[Region(region)] + path, self._override)
        token = self._tokens.get(seller, region)
        response = self._send(method, url, token.value, params, json)
        if retry_refused_token and response.status_code == 403 and _error_code(response) in _TOKEN_REFUSED:
            self._tokens.invalidate(seller, region, token)
            token = self._tokens.get(seller, region)
            response = self._send(method, url, token.value, params, json)
        if response.status_code >= 400:
            raise SpApiError(response.status_code, _error_code(response))
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise SpApiError(response.status_code, "invalid_json") from None
        if not isinstance(body, dict):
            raise SpApiError(response.status_code, "invalid_json")
        return body

    def _send(self, method: str, url: str, access_token: str, params: dict[str, Any] | None,
              json: dict[str, Any] | None) -> requests.Response:
        return self._session.request(
            method, url, params=params, json=json,
            headers={"x-amz-access-token": access_token, "user-agent": USER_AGENT, "accept": "application/json"},
            timeout=(self._timeouts.connect, self._timeouts.read),
        )


def _error_code(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    errors = body.get("errors") or [] if isinstance(body, dict) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    return str(code) if code else None
