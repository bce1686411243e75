"""The fleet census: how many connections in which state and region, how far behind each report type is,
what waits (consents to verify, deletions, purges due this week). The hourly `fleet-census` schedule (the
retention sweeper) emits it as gauges; `ops status` prints it (ops/status.py, with the operator's
credentials).

Every number comes from the connections table's sparse indexes, page by page, keeping counters only, so
memory does not grow with the fleet and no Scan reads the report rows and jobs that make most of the table:

- ACTIVE connections by region: `by_refresh_due` (every ACTIVE connection is in it; KEYS_ONLY, the sort
  key names the region).
- REVOKED and DELETION_REQUESTED by region, purges due within 7 days: `by_purge_due` (KEYS_ONLY, with
  `purge_after`), then those items' `status` (BatchGetItem, 100 keys a call).
- Consents awaiting verification: `by_verification_due`, `Select=COUNT`.
- Worst report lag per type: `by_plan_due` (projection ALL; only `coverage`, `marketplace_ids` and
  `enabled` are asked for).
- TOKENS_REMOVED is in no index: only a parallel Scan (`scan_segments` > 0) counts it, so the schedule
  never does.

The lag is the planner's own measure (`coverage.worst_lags`): whole cadence periods a live cursor is behind.
A plan without `enabled` follows the stage's default types, which only the report fetcher knows: its
cursors (a cursor exists only for a type that was planned) are counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from seller_insights.candidates import VERIFICATION_DUE_INDEX
from seller_insights.coverage import Cursor, worst_lags
from seller_insights.errors import UnprocessedRequests
from seller_insights.marketplaces import Region
from seller_insights.observability import get_metrics
from seller_insights.report_catalog import CATALOG
from seller_insights.report_jobs import PLAN_DUE_INDEX
from seller_insights.repositories import REFRESH_DUE_INDEX, SHARDS, ConnectionStatus, iso
from seller_insights.retention import PURGE_DUE_INDEX

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient

SCHEDULE = "fleet-census"
WEEK_SECONDS = 7 * 86400
BATCH_GET_MAX = 100
BATCH_ATTEMPTS = 5
# Statuses an index answers; TOKENS_REMOVED only a Scan does.
INDEXED_STATUSES = (ConnectionStatus.ACTIVE.value, ConnectionStatus.REVOKED.value,
                    ConnectionStatus.DELETION_REQUESTED.value)


@dataclass
class Census:
    connections: dict[str, dict[str, int]]  # status -> region -> connections
    report_lag_periods: dict[str, float]  # report type -> worst lag (periods)
    pending_candidates: int
    deletions_pending: int  # connections whose seller asked for deletion (DELETION_REQUESTED)
    purges_due_this_week: int  # REVOKED or DELETION_REQUESTED connections whose purge date is within 7 days
    tokens_removed_counted: bool  # False: TOKENS_REMOVED was not counted (no Scan)
    taken_at: str
    calls: dict[str, int] = field(default_factory=dict)  # DynamoDB calls of the run, by operation

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "connections": {status: dict(sorted(regions.items()))
                            for status, regions in sorted(self.connections.items())},
            "connections_total": sum(sum(regions.values()) for regions in self.connections.values()),
            "report_lag_periods": dict(sorted(self.report_lag_periods.items())),
            "pending_candidates": self.pending_candidates,
            "deletions_pending": self.deletions_pending,
            "purges_due_this_week": self.purges_due_this_week,
            "tokens_removed_counted": self.tokens_removed_counted,
            "calls": dict(sorted(self.calls.items())),
        }


class FleetCensus:
    """Counts the fleet from the connections table. `db` is a resource's `meta.client` (plain Python values);
    `scan_segments` > 0 also counts TOKENS_REMOVED with a parallel Scan of that many segments (reads the
    whole table: an operator's choice, never the schedule's). `sleep` is injected so tests never wait."""

    def __init__(self, db: DynamoDBClient, table_name: str, *, scan_segments: int = 0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._db = db
        self._table = table_name
        self._scan_segments = scan_segments
        self._sleep = sleep
        self._calls: Counter[str] = Counter()

    def count(self, now: int) -> Census:
        self._calls = Counter()
        self._db.meta.events.register("before-call.dynamodb", self._count_call)
        try:
            connections: dict[str, dict[str, int]] = {status: {} for status in INDEXED_STATUSES}
            self._active(connections["ACTIVE"])
            purges_due = self._purge_index(connections, now)
            if self._scan_segments:
                connections[ConnectionStatus.TOKENS_REMOVED.value] = self._scanned_tokens_removed()
            return Census(
                connections=connections,
                report_lag_periods=self._lags(now),
                pending_candidates=self._pending_candidates(),
                deletions_pending=sum(connections[ConnectionStatus.DELETION_REQUESTED.value].values()),
                purges_due_this_week=purges_due,
                tokens_removed_counted=bool(self._scan_segments),
                taken_at=iso(datetime.fromtimestamp(now, tz=UTC)),
                calls=dict(self._calls),
            )
        finally:
            self._db.meta.events.unregister("before-call.dynamodb", self._count_call)

    # --- the questions ----------------------------------------------------------------------------

    def _active(self, by_region: dict[str, int]) -> None:
        for item in self._index(REFRESH_DUE_INDEX, "refresh_shard"):
            region = _region(item)
            by_region[region] = by_region.get(region, 0) + 1

    def _purge_index(self, connections: dict[str, dict[str, int]], now: int) -> int:
        """REVOKED and DELETION_REQUESTED by region (their status read 100 at a time); purges due in a week."""
        week = iso(datetime.fromtimestamp(now + WEEK_SECONDS, tz=UTC))
        due = 0
        keys: list[dict[str, str]] = []
        for item in self._index(PURGE_DUE_INDEX, "purge_shard"):
            due += str(item.get("purge_after", "")) <= week
            keys.append({"pk": item["pk"], "sk": item["sk"]})
            if len(keys) == BATCH_GET_MAX:
                self._statuses(keys, connections)
                keys = []
        if keys:
            self._statuses(keys, connections)
        return due

    def _pending_candidates(self) -> int:
        total = 0
        for number in range(SHARDS):
            for page in self._db.get_paginator("query").paginate(
                    TableName=self._table, IndexName=VERIFICATION_DUE_INDEX, Select="COUNT",
                    KeyConditionExpression="verify_shard = :shard", ExpressionAttributeValues={":shard": str(number)}):
                total += int(page.get("Count", 0))
        return total

    def _lags(self, now: int) -> dict[str, float]:
        lags: dict[str, float] = {}
        for item in self._index(PLAN_DUE_INDEX, "plan_shard", projection=("coverage", "marketplace_ids", "enabled")):
            cursors = [Cursor.from_item(value) for value in (item.get("coverage") or {}).values()]
            types = item.get("enabled") or {cursor.report_type for cursor in cursors}
            specs = [CATALOG[name] for name in types if name in CATALOG]
            worst_lags(cursors, specs, list(item.get("marketplace_ids") or []), now, lags)
        return lags

    def _scanned_tokens_removed(self) -> dict[str, int]:
        def segment(number: int) -> Counter[str]:
            found: Counter[str] = Counter()
            for page in self._db.get_paginator("scan").paginate(
                    TableName=self._table, Segment=number, TotalSegments=self._scan_segments,
                    ProjectionExpression="sk", FilterExpression="begins_with(sk, :conn) AND #status = :removed",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":conn": "CONN#", ":removed": ConnectionStatus.TOKENS_REMOVED.value}):
                found.update(_region(item) for item in page.get("Items", []))
            return found

        total: Counter[str] = Counter()
        with ThreadPoolExecutor(max_workers=min(self._scan_segments, 16)) as pool:
            for found in pool.map(segment, range(self._scan_segments)):
                total.update(found)
        return dict(total)

    # --- reading ----------------------------------------------------------------------------------

    def _index(self, index: str, shard_attribute: str,
               projection: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
        """Every item of a sharded sparse index, shard after shard, page after page (only the attributes
        of `projection`, when given; names as placeholders, whatever DynamoDB reserves)."""
        for number in range(SHARDS):
            names = {"#shard": shard_attribute, **{f"#p{n}": name for n, name in enumerate(projection)}}
            request: dict[str, Any] = {"TableName": self._table, "IndexName": index,
                                       "KeyConditionExpression": "#shard = :shard",
                                       "ExpressionAttributeNames": names,
                                       "ExpressionAttributeValues": {":shard": str(number)}}
            if projection:
                request["ProjectionExpression"] = ", ".join(f"#p{n}" for n in range(len(projection)))
            for page in self._db.get_paginator("query").paginate(**request):
                yield from page.get("Items", [])

    def _statuses(self, keys: list[dict[str, str]], connections: dict[str, dict[str, int]]) -> None:
        pending: dict[str, Any] = {self._table: {"Keys": keys, "ProjectionExpression": "sk, #status",
                                                "ExpressionAttributeNames": {"#status": "status"}}}
        delay = 0.05
        for attempt in range(BATCH_ATTEMPTS):
            if attempt:
                self._sleep(delay)
                delay *= 2
            answer = self._db.batch_get_item(RequestItems=pending)
            for item in answer.get("Responses", {}).get(self._table, []):
                status = str(item.get("status"))
                if status in connections:
                    region = _region(item)
                    connections[status][region] = connections[status].get(region, 0) + 1
            pending = dict(answer.get("UnprocessedKeys") or {})
            if not pending:
                return
        raise UnprocessedRequests(BATCH_ATTEMPTS)

    def _count_call(self, model: Any, **_: Any) -> None:
        self._calls[model.name] += 1


def _region(item: dict[str, Any]) -> str:
    return str(item["sk"]).split("#", 1)[1]


# --- the gauges ----------------------------------------------------------------------------------------


def emit(census: Census) -> None:
    """The census as gauges (namespace SellerInsights, dimension `service` = the emitting duty). Every status
    and region an index answers is emitted, zeros included, so a graph shows 0 rather than a gap. The
    caller emits the schedule's heartbeat (`observability.sweep_completed`) once the run finished."""
    for status, by_region in census.connections.items():
        for region in sorted({*(r.value for r in Region), *by_region}):
            _gauge("FleetConnections", by_region.get(region, 0), status=status, region=region)
    _gauge("FleetDeletionsPending", census.deletions_pending)
    _gauge("FleetPurgesDueThisWeek", census.purges_due_this_week)
    _gauge("FleetPendingCandidates", census.pending_candidates)


def _gauge(name: str, value: float, **dimensions: str) -> None:
    metrics = get_metrics()
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=metrics.namespace,
                       default_dimensions={"service": str(metrics.service)}) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)
