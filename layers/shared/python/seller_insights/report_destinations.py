"""The cached ids of the application's REPORT_PROCESSING_FINISHED destinations, one per SP-API region.

Amazon keeps Notifications API destinations per region and refuses another region's destination id, so
the report_notifications queue has one destination in each region it is needed in. The token refresher
creates them (grantless: it holds the LWA client secret) and stores their ids here; the report fetcher
reads them to subscribe sellers and drops one that Amazon refuses, so the refresher looks it up again.
Items of the idempotency table: `id=destination#report_notifications#{NA|EU|FE}` with `destination_id`,
`region`, `queue_arn` and `stored_at`. An item stored for another queue counts as no item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seller_insights import clock
from seller_insights.dynamo import applied
from seller_insights.marketplaces import Region

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table

DESTINATION_ITEM_PREFIX = "destination#report_notifications#"
LEGACY_DESTINATION_ITEM_ID = "destination#report_notifications"  # before destinations were per region


def destination_item_id(region: Region) -> str:
    """The idempotency-table item that caches the region's REPORT_PROCESSING_FINISHED destination id."""
    return f"{DESTINATION_ITEM_PREFIX}{region.value}"


class DestinationCache:
    """The destination ids of one queue (`queue_arn`), per region, in the idempotency table."""

    def __init__(self, table: Table, queue_arn: str) -> None:
        self._table = table
        self._queue_arn = queue_arn

    def get(self, region: Region) -> str | None:
        item: dict[str, Any] | None = self._table.get_item(
            Key={"id": destination_item_id(region)}, ConsistentRead=True).get("Item")
        if item and item.get("queue_arn") == self._queue_arn and item.get("destination_id"):
            return str(item["destination_id"])
        return None

    def store(self, region: Region, destination_id: str) -> None:
        stored_at = clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._table.put_item(Item={"id": destination_item_id(region), "destination_id": destination_id,
                                   "region": region.value, "queue_arn": self._queue_arn, "stored_at": stored_at})
        if region is Region.NA:
            # The single-destination cache of earlier versions held an NA destination for every region.
            self._table.delete_item(Key={"id": LEGACY_DESTINATION_ITEM_ID})

    def forget(self, region: Region, destination_id: str) -> bool:
        """Drops the region's item if it still holds `destination_id` (not if it was replaced meanwhile)."""
        return applied(lambda: self._table.delete_item(Key={"id": destination_item_id(region)},
                                                       ConditionExpression="destination_id = :refused",
                                                       ExpressionAttributeValues={":refused": destination_id}))
