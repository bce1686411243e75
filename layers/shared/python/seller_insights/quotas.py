"""Token buckets kept in DynamoDB, so every container shares them (SP-API quotas are per seller and
application, and some per application across all sellers).

`take()` answers 0 when a token was taken, or how many seconds until one will be there: the caller
re-queues its job with that delay instead of calling Amazon and getting a 429.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr

from seller_insights import clock
from seller_insights.dynamo import applied, condition_checked
from seller_insights.errors import ConditionFailed
from seller_insights.report_catalog import AppQuota

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int


# Reports API 2021-06-30 and Data Kiosk 2023-11-15, per selling partner and application (usage plans).
OPERATION_RATES: dict[str, Rate] = {
    "getReports": Rate(0.0222, 10),
    "createReport": Rate(0.0167, 15),
    "getReport": Rate(2.0, 15),
    "cancelReport": Rate(0.0222, 10),
    "getReportDocument": Rate(0.0167, 15),
    # Sellers API (sellers.json usage plan), per selling partner and application.
    "getMarketplaceParticipations": Rate(0.016, 15),
    # Data Kiosk API 2023-11-15, per selling partner and application (its usage plans).
    "createQuery": Rate(0.0167, 15),
    "getQueries": Rate(0.0222, 10),
    "getQuery": Rate(2.0, 15),
    "cancelQuery": Rate(0.0222, 10),
    "getDocument": Rate(0.0167, 15),
}
_RETRIES = 5
_TTL_SECONDS = 2 * 24 * 3600


class QuotaBuckets:
    def __init__(self, table: Table) -> None:
        self._table = table

    def take_operation(self, seller: str, region: str, operation: str) -> float:
        return self.take(f"{seller}#{region}#{operation}", OPERATION_RATES[operation])

    def take_app_quota(self, report_type: str, quota: AppQuota) -> float:
        """One request per `min_interval` across the application, and at most `max_per_day`."""
        wait = self.take(f"app#{report_type}", Rate(1 / quota.min_interval.total_seconds(), 1))
        if wait:
            return wait
        today = clock.now().strftime("%Y-%m-%d")
        return self._count_today(f"app#{report_type}#day#{today}", quota.max_per_day)

    def take(self, scope: str, rate: Rate) -> float:
        key = {"pk": f"QUOTA#{scope}", "sk": "BUCKET"}
        for _ in range(_RETRIES):
            now_ms = int(clock.now().timestamp() * 1000)
            item: dict[str, Any] | None = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
            if item is None:
                tokens, previous = float(rate.burst), None
            else:
                elapsed = max(0, now_ms - int(item["updated_at"])) / 1000
                tokens, previous = min(float(rate.burst), float(item["tokens"]) + elapsed * rate.per_second), item
            if tokens < 1:
                return (1 - tokens) / rate.per_second
            condition = (Attr("pk").not_exists() if previous is None
                         else Attr("updated_at").eq(previous["updated_at"]) & Attr("tokens").eq(previous["tokens"]))
            try:
                with condition_checked():
                    self._table.put_item(
                        Item={**key, "tokens": str(tokens - 1), "updated_at": now_ms,
                              "expires_at": now_ms // 1000 + _TTL_SECONDS},
                        ConditionExpression=condition,
                    )
            except ConditionFailed:
                continue  # another container took a token meanwhile: look again
            return 0.0
        return 1.0  # heavy contention: try again in a second

    def _count_today(self, scope: str, maximum: int) -> float:
        key = {"pk": f"QUOTA#{scope}", "sk": "BUCKET"}
        if applied(lambda: self._table.update_item(
            Key=key,
            UpdateExpression="ADD used :one SET expires_at = if_not_exists(expires_at, :ttl)",
            ConditionExpression=Attr("used").not_exists() | Attr("used").lt(maximum),
            ExpressionAttributeValues={":one": 1, ":ttl": clock.epoch_seconds() + _TTL_SECONDS},
        )):
            return 0.0
        # Today's allowance is used up: wait for the next day.
        now = clock.now()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86400
        return midnight - now.timestamp()
