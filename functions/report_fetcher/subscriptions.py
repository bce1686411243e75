"""REPORT_PROCESSING_FINISHED and DATA_KIOSK_QUERY_PROCESSING_FINISHED subscriptions of the report
pipeline (Notifications API v1).

Before the planner sends a connection's jobs, the connection is subscribed (once) so that Amazon tells the
report_notifications queue when its reports are done instead of the jobs polling until then. The
subscription acts for the seller (the cached access token, CachedTokensOnly, like every fetcher call), to
the region's destination for the queue. Destinations are the application's and need a grantless token,
so the token refresher keeps them (token_refresher.destinations): the fetcher only reads their cached
ids and never holds the LWA client secret, nor a refresh token.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from seller_insights.errors import SpApiError, SubscriptionFailed
from seller_insights.marketplaces import Region
from seller_insights.observability import get_logger, get_metrics
from seller_insights.report_destinations import DestinationCache
from seller_insights.repositories import ConnectionsRepository, ConnectionStatus
from seller_insights.spapi import SpApiClient

REPORT_PROCESSING_FINISHED = "REPORT_PROCESSING_FINISHED"
REPORT_PAYLOAD_VERSION = "2020-09-04"
QUERY_PROCESSING_FINISHED = "DATA_KIOSK_QUERY_PROCESSING_FINISHED"
QUERY_PAYLOAD_VERSION = "2023-11-15"
SUBSCRIPTION_EXISTS = "existing"
# Each notification type the jobs resume from: its payload version and the CONN attribute keeping its id.
NOTIFICATION_TYPES = (
    (REPORT_PROCESSING_FINISHED, REPORT_PAYLOAD_VERSION, "rpf_subscription_id"),
    (QUERY_PROCESSING_FINISHED, QUERY_PAYLOAD_VERSION, "dkq_subscription_id"),
)


class ReportSubscriptions:
    """Subscribes sellers to REPORT_PROCESSING_FINISHED, delivered to the report_notifications queue.

    Amazon keeps Notifications API destinations per region and refuses another region's destination id
    (400 "No destination with id ..."), so a seller is subscribed with its own region's destination, whose
    id the token refresher caches (seller_insights.report_destinations). Until the refresher has kept it,
    the subscription waits (deferred, not a failure). A 400 for a cached id drops that region's entry, so
    the refresher looks the destination up (or creates it) again. The subscription id is kept on the CONN
    item as `rpf_subscription_id` ("existing" when Amazon said 409: the seller was already subscribed).
    DATA_KIOSK_QUERY_PROCESSING_FINISHED is subscribed the same way, to the same destination (Amazon sends
    every notification type to the destination it was subscribed with), kept as `dkq_subscription_id`;
    a connection subscribed before Data Kiosk gets its second subscription at its next plan.
    """

    def __init__(self, *, sellers_api: SpApiClient, connections: ConnectionsRepository,
                 destinations: DestinationCache) -> None:
        """`sellers_api` sends the seller's access token (createSubscription)."""
        self._sellers_api = sellers_api
        self._connections = connections
        self._destinations = destinations

    def ensure(self, seller: str, region: str) -> bool | None:
        """True if the seller was subscribed now (to either type); False if it already was to both (or is
        no longer ACTIVE); None if its region has no destination yet (deferred to a later plan). Raises
        SubscriptionFailed."""
        kept = self._connections.report_subscriptions(seller, region)  # one read for every type
        missing = [entry for entry in NOTIFICATION_TYPES if entry[2] not in kept]
        if not missing:
            return False
        subscribed = False
        for notification_type, payload_version, attribute in missing:
            done = self._subscribe(seller, region, notification_type, payload_version, attribute)
            if done is None:
                return None
            subscribed = subscribed or done
        return subscribed

    def _subscribe(self, seller: str, region: str, notification_type: str, payload_version: str,
                   attribute: str) -> bool | None:
        connection = self._connections.get(seller, region)
        if connection is None or connection.status is not ConnectionStatus.ACTIVE:
            return False  # its jobs end without calling Amazon; no subscription for it
        home = Region(region)
        destination_id = self._destinations.get(home)
        if destination_id is None:
            get_logger().info("notification subscription waits for its region's destination",
                              extra={"region": home.value, "notification_type": notification_type})
            return None
        body = {"payloadVersion": payload_version, "destinationId": destination_id}
        try:
            created = self._sellers_api.create_subscription(seller, region, notification_type, body)
            subscription_id = str(created["subscriptionId"])
        except SpApiError as exc:
            if exc.status != 409:  # 409: the seller was already subscribed
                if exc.status == 400:
                    # The region no longer knows the cached destination: the refresher looks it up again.
                    self._forget_destination(home, destination_id)
                raise SubscriptionFailed(exc.status, exc.code, operation=exc.operation,
                                         rate_limit=exc.rate_limit) from None
            subscription_id = SUBSCRIPTION_EXISTS
        recorded = self._connections.record_report_subscription(seller, region, subscription_id, attribute)
        if recorded:
            get_metrics().add_metric(name="ReportSubscriptionCreated", unit=MetricUnit.Count, value=1)
        return recorded

    def _forget_destination(self, region: Region, destination_id: str) -> None:
        get_logger().warning("cached REPORT_PROCESSING_FINISHED destination refused; it will be looked up again",
                             extra={"region": region.value})
        self._destinations.forget(region, destination_id)  # unless another run has already replaced it
