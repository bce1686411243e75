"""The marketplaces of a connection: what Amazon's getMarketplaceParticipations (Sellers API, sellers.json)
says the seller sells in, asked at consent (token_refresher.verification, once Amazon has confirmed the
seller) and again once a day before planning (report_fetcher.participations).

A connection's marketplaces are the marketplaces of its region (seller_insights.marketplaces) whose
`participation.isParticipating` is true, in the order of that table; nothing else decides.
`hasSuspendedListings` says that some of the seller's listings there are suspended, not that the seller
left: such a marketplace still has orders, inventory and settlements to report, so it stays planned.
Marketplaces of another region, or unknown to us, are left out. An answer with none is an answer too:
the connection then has no marketplace to plan until a later check finds one.

The call shares one token bucket per (seller, region) with every other caller (seller_insights.quotas,
rate 0.016/s, burst 15 per seller and application): a caller that finds it empty waits for a later
check rather than being throttled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seller_insights.errors import ParticipationsDeferred, ParticipationsUnknown, SpApiError, SpApiUnreachable
from seller_insights.marketplaces import MARKETPLACES
from seller_insights.quotas import QuotaBuckets
from seller_insights.spapi import SpApiClient, SpApiTimeouts
from seller_insights.tokens import AccessToken

if TYPE_CHECKING:
    import requests

PARTICIPATIONS_OPERATION = "getMarketplaceParticipations"
# A connection's marketplaces are checked again once they are this old.
CHECK_INTERVAL_SECONDS = 24 * 3600
# At consent, one call as short as the identity check's (seller_insights.identity): on a timeout the
# connection starts with the marketplace it connected from and the daily check corrects it.
CONSENT_TIMEOUTS = SpApiTimeouts(connect=1.5, read=3.0)


def participating_marketplaces(answer: dict[str, Any], region: str) -> list[str]:
    """The ids of `region`'s marketplaces where the answer says isParticipating is true, in table order."""
    payload = answer.get("payload")
    if not isinstance(payload, list):
        raise ParticipationsUnknown("malformed")
    participating: set[str] = set()
    for entry in payload:
        if not isinstance(entry, dict):
            continue
        marketplace, participation = entry.get("marketplace"), entry.get("participation")
        if isinstance(marketplace, dict) and isinstance(participation, dict) \
                and participation.get("isParticipating") is True:
            participating.add(str(marketplace.get("id")))
    return [m.marketplace_id for m in MARKETPLACES.values()
            if m.region.value == region and m.marketplace_id in participating]


@dataclass(frozen=True)
class _OneToken:
    """A token source holding exactly the access token of a consent being confirmed (never cached)."""

    token: AccessToken

    def get(self, seller: str, region: str) -> AccessToken:
        return self.token

    def invalidate(self, seller: str, region: str, token: AccessToken) -> None:
        """Nothing to forget: the token lives only as long as the consent's check."""


def consent_client(access_token: str, *, endpoint_override: str | None,
                   session: requests.Session | None = None) -> SpApiClient:
    """An SP-API client sending exactly `access_token` (a consent's, before any cache holds it), with
    the short timeouts of a check that must not hold up the consents behind it."""
    return SpApiClient(_OneToken(AccessToken(access_token, 0)), endpoint_override=endpoint_override,
                       session=session, timeouts=CONSENT_TIMEOUTS)


class ParticipationsReader:
    def __init__(self, quotas: QuotaBuckets) -> None:
        self._quotas = quotas

    def read(self, client: SpApiClient, seller: str, region: str) -> list[str]:
        """The connection's marketplaces (see the module doc). ParticipationsDeferred when the seller's
        bucket is empty (Amazon not called); ParticipationsUnknown when Amazon did not say."""
        wait = self._quotas.take_operation(seller, region, PARTICIPATIONS_OPERATION)
        if wait:
            raise ParticipationsDeferred(wait)
        try:
            answer = client.get_marketplace_participations(seller, region)
        except SpApiError as exc:
            raise ParticipationsUnknown(_reason(exc)) from None
        except SpApiUnreachable as exc:  # "timeout" or "connection"
            raise ParticipationsUnknown(exc.reason) from None
        return participating_marketplaces(answer, region)


def _reason(exc: SpApiError) -> str:
    if exc.status == 429:
        return "throttled"
    if exc.status >= 500:
        return "amazon_unavailable"
    if exc.status == 403:
        return "refused"
    return "rejected"
