"""REPORT_PROCESSING_FINISHED subscriptions of the report pipeline (Notifications API v1).

Before the planner sends a connection's jobs, the connection is subscribed (once) so that Amazon tells the
report_notifications queue when its reports are done instead of the jobs polling until then. The
subscription acts for the seller (the cached access token, CachedTokensOnly, like every fetcher call); the
region's destination for the queue is created with a grantless token (GrantlessTokens, scope
sellingpartnerapi::notifications), which needs the LWA client id and secret: the fetcher may read that
secret, never a refresh token (the key policy lets only the consent and token functions open those).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from seller_insights import clock
from seller_insights.dynamo import applied
from seller_insights.errors import SpApiError, SubscriptionFailed
from seller_insights.marketplaces import Region
from seller_insights.observability import get_logger, get_metrics
from seller_insights.repositories import ConnectionsRepository, ConnectionStatus
from seller_insights.spapi import SpApiClient

NOTIFICATIONS_SCOPE = "sellingpartnerapi::notifications"
REPORT_PROCESSING_FINISHED = "REPORT_PROCESSING_FINISHED"
REPORT_PAYLOAD_VERSION = "2020-09-04"
# One cached destination id per SP-API region: `destination#report_notifications#{NA|EU|FE}`.
DESTINATION_ITEM_PREFIX = "destination#report_notifications#"
LEGACY_DESTINATION_ITEM_ID = "destination#report_notifications"  # before destinations were per region
DESTINATION_NAME = "seller-insights-report-notifications"
SUBSCRIPTION_EXISTS = "existing"


def count(name: str, value: float = 1) -> None:
    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


class ReportSubscriptions:
    """Subscribes sellers to REPORT_PROCESSING_FINISHED, delivered to the report_notifications queue.

    Amazon keeps Notifications API destinations per region and refuses another region's destination id
    (400 "No destination with id ..."), so there is one destination per SP-API region, created grantless on
    that region's host the first time a seller of the region is subscribed (found first with
    getDestinations; a 409 means another run created it meanwhile). Each is cached in the idempotency
    table as `id=destination#report_notifications#{region}`; a 400 for a cached id drops that region's entry
    so the next attempt looks it up again. The subscription id is kept on the CONN item as
    `rpf_subscription_id` ("existing" when Amazon said 409: the seller was already subscribed).
    """

    def __init__(
        self,
        *,
        queue_arn: str,
        sellers_api: SpApiClient,
        grantless_api: SpApiClient,
        connections: ConnectionsRepository,
        idempotency_table: Any,
    ) -> None:
        """`sellers_api` sends the seller's access token (createSubscription); `grantless_api` a grantless
        token with the notifications scope (seller_insights.spapi.GrantlessTokens), kept in memory and
        shared by every region's host (getDestinations, createDestination)."""
        self._queue_arn = queue_arn
        self._sellers_api = sellers_api
        self._grantless_api = grantless_api
        self._connections = connections
        self._table = idempotency_table

    def ensure(self, seller: str, region: str) -> bool:
        """True if the seller was subscribed now; False if it already was (or is no longer ACTIVE)."""
        if self._connections.report_subscription(seller, region) is not None:
            return False
        connection = self._connections.get(seller, region)
        if connection is None or connection.status is not ConnectionStatus.ACTIVE:
            return False  # its jobs end without calling Amazon; no subscription for it
        home = Region(region)
        destination_id, cached = self._destination(home)
        body = {"payloadVersion": REPORT_PAYLOAD_VERSION, "destinationId": destination_id}
        try:
            created = self._sellers_api.create_subscription(seller, region, REPORT_PROCESSING_FINISHED, body)
            subscription_id = str(created["subscriptionId"])
        except SpApiError as exc:
            if exc.status != 409:  # 409: the seller was already subscribed
                if exc.status == 400 and cached:
                    # The region no longer knows the cached destination: look it up (or create it) next time.
                    self._forget_destination(home, destination_id)
                raise _failed(exc) from None
            subscription_id = SUBSCRIPTION_EXISTS
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
        destination_id = self._find_or_create(region)
        self._table.put_item(Item={"id": item_id, "destination_id": destination_id, "region": region.value,
                                   "queue_arn": self._queue_arn, "stored_at": iso_millis(clock.now())})
        if region is Region.NA:
            # The single-destination cache of earlier versions held an NA destination for every region.
            self._table.delete_item(Key={"id": LEGACY_DESTINATION_ITEM_ID})
        return destination_id, False

    def _find_or_create(self, region: Region) -> str:
        destination_id = self._find(region)
        if destination_id is not None:
            return destination_id
        body = {"name": DESTINATION_NAME, "resourceSpecification": {"sqs": {"arn": self._queue_arn}}}
        try:
            destination_id = str(self._grantless_api.create_destination(region.value, body)["destinationId"])
        except SpApiError as exc:
            if exc.status != 409:
                raise _failed(exc) from None
            destination_id = self._find(region)  # created meanwhile by another run
            if destination_id is None:
                raise _failed(exc) from None
        count("ReportDestinationCreated")
        return destination_id

    def _forget_destination(self, region: Region, destination_id: str) -> None:
        """Drops the region's cache entry, unless another run has already replaced it."""
        get_logger().warning("cached REPORT_PROCESSING_FINISHED destination refused; it will be looked up again",
                             extra={"region": region.value})
        applied(lambda: self._table.delete_item(Key={"id": destination_item_id(region)},
                                                ConditionExpression="destination_id = :refused",
                                                ExpressionAttributeValues={":refused": destination_id}))

    def _find(self, region: Region) -> str | None:
        try:
            destinations = self._grantless_api.get_destinations(region.value)
        except SpApiError as exc:
            raise _failed(exc) from None
        for destination in destinations:
            if (destination.get("resource") or {}).get("sqs", {}).get("arn") == self._queue_arn:
                return str(destination["destinationId"])
        return None


def _failed(exc: SpApiError) -> SubscriptionFailed:
    return SubscriptionFailed(exc.status, exc.code, operation=exc.operation, rate_limit=exc.rate_limit)


def destination_item_id(region: Region) -> str:
    """The idempotency-table item that caches the region's REPORT_PROCESSING_FINISHED destination id."""
    return f"{DESTINATION_ITEM_PREFIX}{region.value}"


def iso_millis(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
