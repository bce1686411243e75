"""A confirmed consent's marketplaces (seller_insights.participations): asked once Amazon has named the
consent's seller, with the access token of that very check, before the connection is promoted.

Amazon not answering never holds up or fails a consent: the connection starts with the marketplace it
connected from (as before participations were asked), `ConsentParticipationsDeferred` is counted, and the
plan's daily check (report_fetcher.participations) asks again at its next run, since the plan has no
`participations_checked_at`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit

from seller_insights import clock
from seller_insights.errors import ParticipationsDeferred, ParticipationsUnknown
from seller_insights.observability import get_logger, get_metrics
from seller_insights.participations import ParticipationsReader, consent_client
from seller_insights.pseudonyms import seller_key
from seller_insights.report_jobs import PlanRepository

if TYPE_CHECKING:
    import requests

DEFERRED_METRIC = "ConsentParticipationsDeferred"


class ConsentMarketplaces:
    def __init__(self, *, reader: ParticipationsReader, plans: PlanRepository, endpoint_override: str | None,
                 session: requests.Session | None = None) -> None:
        self._reader = reader
        self._plans = plans
        self._override = endpoint_override
        self._session = session

    def ask(self, access_token: str, seller: str, region: str) -> list[str] | None:
        """The marketplaces Amazon says the seller participates in, or None when it did not say (one call,
        short timeouts, within the seller's quota)."""
        client = consent_client(access_token, endpoint_override=self._override, session=self._session)
        try:
            return self._reader.read(client, seller, region)
        except (ParticipationsUnknown, ParticipationsDeferred) as exc:
            reason = exc.reason if isinstance(exc, ParticipationsUnknown) else "quota"
            self._deferred(seller, region, reason)
            return None

    def record(self, seller: str, region: str, marketplace_ids: list[str]) -> None:
        """Store them on the connection's plan; a failure here is the daily check's to correct."""
        try:
            self._plans.record_participations(seller, region, marketplace_ids, clock.epoch_seconds())
        except Exception as exc:  # the connection is promoted already: never fail it for this
            self._deferred(seller, region, type(exc).__name__)

    @staticmethod
    def _deferred(seller: str, region: str, reason: str) -> None:
        get_metrics().add_metric(name=DEFERRED_METRIC, unit=MetricUnit.Count, value=1)
        get_logger().warning("a consent's marketplaces are left to the daily check", extra={
            "seller_key": seller_key(seller), "region": region, "reason": reason})
