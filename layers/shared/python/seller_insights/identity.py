"""Which seller Amazon says an authorization belongs to.

The `selling_partner_id` of a consent callback is a query value the browser can edit, and LWA's token
response names no seller, so a new authorization proves nothing about its seller id by itself. Amazon
does name the seller an access token acts for: the Product Fees API's `getMyFeesEstimateForASIN`
answers with `payload.FeesEstimateResult.FeesEstimateIdentifier.SellerId` (model productFeesV0.json,
`FeesEstimateIdentifier.SellerId`: "The seller identifier"; it is present whatever the estimate's own
status). Any one of the roles Amazon Fulfillment, Finance and Accounting, Inventory and Order Tracking,
Pricing or Product Listing may call it, and the report pipeline already needs the first three; the
operation's own quota is 1 request per second, burst 2, per seller. So one call, answered by Amazon over
TLS for exactly the token we hold, proves the seller id: no report, no notification, no waiting.
docs/architecture.md ("Who a consent belongs to") keeps the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seller_insights.errors import IdentityNotProven, SpApiError, SpApiUnreachable
from seller_insights.marketplaces import Marketplace, main_marketplace, marketplace
from seller_insights.spapi import SpApiClient, SpApiTimeouts, http_session
from seller_insights.tokens import AccessToken

if TYPE_CHECKING:
    import requests

# Any valid ASIN serves: only the identifier of the estimate is read (the model's own example ASIN).
PROBE_ASIN = "B00V5DG6IQ"
PROBE_IDENTIFIER = "seller-insights-identity"
PROBE_PRICE = 10
# Inside an API request (the consent callback) the check must stay short.
IDENTITY_TIMEOUTS = SpApiTimeouts(connect=1.5, read=3.0)


def probe_marketplace(code: str | None, region: str) -> Marketplace:
    """Where to ask: the marketplace the seller connected from, else its region's main one."""
    return marketplace(code) if code else main_marketplace(region)


@dataclass(frozen=True)
class _OneToken:
    """A token source holding exactly one access token (one that is not in the shared cache)."""

    token: AccessToken

    def get(self, seller: str, region: str) -> AccessToken:
        return self.token

    def invalidate(self, seller: str, region: str, token: AccessToken) -> None:
        """Nothing to forget: the token lives only as long as this check."""


class SellerIdentity:
    def __init__(self, *, endpoint_override: str | None, session: requests.Session | None = None) -> None:
        self._override = endpoint_override
        self._session = session or http_session()

    def seller_of(self, access_token: str, region: str, marketplace: Marketplace) -> str:
        """The seller id Amazon names for `access_token`, or IdentityNotProven (never a guess)."""
        client = SpApiClient(_OneToken(AccessToken(access_token, 0)), endpoint_override=self._override,
                             session=self._session, timeouts=IDENTITY_TIMEOUTS)
        body = {"FeesEstimateRequest": {
            "MarketplaceId": marketplace.marketplace_id,
            "IsAmazonFulfilled": False,
            "PriceToEstimateFees": {"ListingPrice": {"CurrencyCode": marketplace.currency, "Amount": PROBE_PRICE}},
            "Identifier": PROBE_IDENTIFIER,
        }}
        try:
            answer = client.get_my_fees_estimate_for_asin("", region, PROBE_ASIN, body, retry_refused_token=False)
        except SpApiError as exc:
            # 429 and 5xx pass; 403 is a missing role or a refused token; 400 is a request Amazon rejects.
            raise IdentityNotProven(_reason(exc), retryable=exc.status == 429 or exc.status >= 500) from None
        except SpApiUnreachable as exc:  # "timeout" or "connection"
            raise IdentityNotProven(exc.reason, retryable=True) from None
        seller_id = _seller_id(answer)
        if seller_id is None:
            raise IdentityNotProven("no_seller_id", retryable=True)
        return seller_id


def _seller_id(answer: dict[str, Any]) -> str | None:
    payload = answer.get("payload")
    result = payload.get("FeesEstimateResult") if isinstance(payload, dict) else None
    identifier = result.get("FeesEstimateIdentifier") if isinstance(result, dict) else None
    value = identifier.get("SellerId") if isinstance(identifier, dict) else None
    return value if isinstance(value, str) and value else None


def _reason(exc: SpApiError) -> str:
    if exc.status == 429:
        return "throttled"
    if exc.status >= 500:
        return "amazon_unavailable"
    if exc.status == 403:
        return "refused"
    return "rejected"
