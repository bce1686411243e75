"""The application's REPORT_PROCESSING_FINISHED destinations, kept by the token refresher.

A Notifications API destination is the application's, not a seller's: it is created with a grantless token
(LWA client_credentials, scope sellingpartnerapi::notifications), which needs the LWA client secret. Only
the token lifecycle holds that secret, so the destinations are kept here and the report fetcher, which
subscribes sellers with their cached access tokens, only reads their ids (seller_insights.report_destinations).

The refresh sweep asks for the regions of the connections it is about to refresh, once per region and run:
a region's destination exists as soon as it has a seller whose token the fetcher can use, and no
destination is created in a region without sellers.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from seller_insights.errors import SpApiError
from seller_insights.marketplaces import Region
from seller_insights.observability import get_logger, get_metrics
from seller_insights.report_destinations import DestinationCache
from seller_insights.spapi import SpApiClient

NOTIFICATIONS_SCOPE = "sellingpartnerapi::notifications"
DESTINATION_NAME = "seller-insights-report-notifications"
# Counted when a region's destination could not be found or created (alarmed); its sellers' subscriptions
# wait, their reports are polled meanwhile.
DESTINATION_FAILED_METRIC = "ReportDestinationFailed"


class DestinationKeeper:
    """Makes sure the report_notifications queue (`queue_arn`) has a destination in a region: the cached
    id, else the one Amazon already has for the queue (getDestinations), else a new one (createDestination;
    409: another run created it meanwhile, so it is looked up again). Never raises: a failure is counted
    and logged, and the region is tried again at the next sweep with a connection of it due."""

    def __init__(self, *, queue_arn: str, application_api: SpApiClient, cache: DestinationCache) -> None:
        """`application_api` sends a grantless token of NOTIFICATIONS_SCOPE (seller_insights.spapi.GrantlessTokens),
        one token for every region's host."""
        self._queue_arn = queue_arn
        self._api = application_api
        self._cache = cache

    def keep(self, region: str) -> bool:
        """True if the region's destination id was stored now; False if it was cached or could not be had."""
        home = Region(region)
        try:
            if self._cache.get(home) is not None:
                return False
            self._cache.store(home, self._find_or_create(home))
        except Exception as exc:  # the refresh goes on; the next sweep with a due connection here tries again
            get_metrics().add_metric(name=DESTINATION_FAILED_METRIC, unit=MetricUnit.Count, value=1)
            get_logger().warning("REPORT_PROCESSING_FINISHED destination not kept", extra={
                "region": home.value, "reason": type(exc).__name__, "status": getattr(exc, "status", None),
                "operation": getattr(exc, "operation", None)})
            return False
        get_metrics().add_metric(name="ReportDestinationCreated", unit=MetricUnit.Count, value=1)
        return True

    def _find_or_create(self, region: Region) -> str:
        found = self._find(region)
        if found is not None:
            return found
        body = {"name": DESTINATION_NAME, "resourceSpecification": {"sqs": {"arn": self._queue_arn}}}
        try:
            return str(self._api.create_destination(region.value, body)["destinationId"])
        except SpApiError as exc:
            if exc.status != 409:
                raise
            found = self._find(region)  # created meanwhile by another run
            if found is None:
                raise
            return found

    def _find(self, region: Region) -> str | None:
        for destination in self._api.get_destinations(region.value):
            if (destination.get("resource") or {}).get("sqs", {}).get("arn") == self._queue_arn:
                return str(destination["destinationId"])
        return None
