"""The retention sweep: for each connection whose purge date came, delete everything it left.

Two steps, the sweep shape (seller_insights.fanout): `PurgeFinder`, the daily `sweep-retention` schedule,
pages the `by_purge_due` index in rotating shard order, at most `limit` connections a run, and sends one
`{"seller_id", "region"}` item per message to the `retention_purges` queue; it reads and deletes nothing.
`RetentionSweep.purge_item`, the queue's consumer (one message per invocation, in parallel up to the
stage's `purge_concurrency`), purges one connection as below, re-reading it first (no longer due: skipped).
A purge that runs short of time records what it deleted and fails its message: the message comes back
after the queue's visibility timeout and the purge resumes (step a finds its claim). A purge that keeps
failing reaches the dead-letter queue (alarmed) and, still due, is found again by the next run.

Per (seller, region), in this order, each step idempotent so that a crash anywhere resumes on the next
run and ends in the same state:

a. re-read the connection: still REVOKED / DELETION_REQUESTED with this purge date, or skip it; claim
   it (`purge_run` = its purge date);
b. S3: abort the incomplete multipart uploads, then delete every version and delete marker under
   `sellers/{seller_key}/{region}/` (seller_insights.object_keys), the claim re-read before each batch;
c. the table: every item of that region under `pk=SELLER#{seller}` except the CONN item (the last
   connection also takes PROFILE and anything else of the seller, and, for a deletion request, the
   consents under `pk=CANDIDATE#{seller}`), and the region's quota buckets, each TransactWriteItems
   under a ConditionCheck of the claim on the CONN item;
d. verify by listing: nothing left in S3 or the table but the CONN item, or raise (resume next run);
e. the PII-free receipt in the audit table, THEN the CONN item, in one transaction under the claim with
   whatever of the connection (PROFILE, for the last one) was written since the verification.

A re-authorization (or a rolled-back deletion request) racing the purge breaks the claim: the sweep then
stops and deletes nothing more, and counts the connection as `came_back` (metric
`PurgeStoppedConnectionBack`). Objects deleted from S3 before that stay deleted: they were due.
A REVOKED seller's waiting consent is its re-authorization in flight: no purge takes it (the verifier
promotes it or destroys it by its deadline).

What each run deleted is added to counters on the CONN item (`purged_*`), so a receipt written by a
resumed run still counts what the crashed runs deleted. Logs and metrics carry `seller_key` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from seller_insights import clock
from seller_insights.candidates import candidate_partition
from seller_insights.data_rights import profile_key
from seller_insights.errors import ConnectionChanged, PurgeIncomplete, PurgeOutOfTime, TransactionCancelled
from seller_insights.fanout import FindReport, WorkQueue, due_items, rotating_shards
from seller_insights.marketplaces import Region
from seller_insights.object_keys import export_prefix, seller_prefix
from seller_insights.observability import get_logger, get_metrics
from seller_insights.pseudonyms import seller_key
from seller_insights.repositories import ConnectionStatus, connection_key, iso, parse_key
from seller_insights.retention import (
    PURGE_DUE_INDEX,
    PurgeClaim,
    PurgeStates,
    Receipts,
    S3Purge,
    TableItems,
    expiry_epoch,
    quota_keys,
    receipt_id,
)

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table

# A purge stops (recording what it deleted) when its invocation has less than this left; its message
# comes back and it resumes. Above one DeleteObjects batch and the claim's re-read, with margin.
SAFETY_MILLIS = 60_000
PURGES_KIND = "retention_purges"  # the work items' key in a retention_purges message
SWEEP_PERIOD_SECONDS = 86_400  # the sweep-retention schedule's rate: each run starts one shard further
DEFAULT_PURGE_FIND_LIMIT = 10_000  # connections sent per finder run (stage key purge_find_limit)
PURGE_FIND_LIMIT_RANGE = (100, 1_000_000)
REASONS = {ConnectionStatus.REVOKED.value: "revoked", ConnectionStatus.DELETION_REQUESTED.value: "deletion_requested"}
COUNTERS = ("s3_versions", "s3_delete_markers", "multipart_uploads", "table_items", "quota_items")


def count(name: str, value: float = 1) -> None:
    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


class PurgeFinder:
    """The sweep-retention schedule: due connections of the `by_purge_due` index → `retention_purges`, one
    per message. One Query page per shard read and one SendMessageBatch per 10 connections, nothing else."""

    def __init__(self, table: Table, work: WorkQueue, limit: int = DEFAULT_PURGE_FIND_LIMIT) -> None:
        self._table = table
        self._work = work
        self._limit = limit

    def run(self) -> FindReport:
        now = clock.now()
        found = due_items(self._table, index=PURGE_DUE_INDEX, shard_attribute="purge_shard",
                          due_attribute="purge_after", until=iso(now),
                          shards=rotating_shards(int(now.timestamp()), SWEEP_PERIOD_SECONDS), limit=self._limit)
        items = [purge_item(*parse_key(item)) for item in found]
        return FindReport(found=len(items), messages=self._work.send(items))


def purge_item(seller: str, region: str) -> dict[str, str]:
    """A retention_purges work item: the connection whose purge date came."""
    return {"seller_id": seller, "region": region}


@dataclass
class SweepReport:
    due: int = 0
    purged: int = 0
    skipped: int = 0  # no longer due when claimed: re-authorized, rolled back, or already gone
    came_back: int = 0  # re-authorized or rolled back while its purge ran: stopped, nothing more deleted
    failed: int = 0  # left for the next run (PurgeFailed metric)
    stopped: str | None = None  # "time" when the invocation ran short
    left: int = 0
    receipts: int = 0  # receipts written by this run (a resumed purge may find its receipt already there)
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "deleted": dict(self.deleted)}

    def add(self, other: SweepReport) -> None:
        """`other`'s counts added to these (a sweep's purges summed)."""
        for name in ("due", "purged", "skipped", "came_back", "failed", "left", "receipts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.stopped = self.stopped or other.stopped
        for name, value in other.deleted.items():
            self.deleted[name] += value


@dataclass(frozen=True)
class _Due:
    seller: str
    region: str
    status: str
    purge_after: str
    started_at: str
    counted: dict[str, int]  # what earlier (crashed) runs of this purge already deleted

    @property
    def key(self) -> dict[str, str]:
        return connection_key(self.seller, self.region)

    @property
    def seller_key(self) -> str:
        return seller_key(self.seller)

    @property
    def claim(self) -> PurgeClaim:
        return PurgeClaim(self.key, self.status, self.purge_after)


class RetentionSweep:
    def __init__(self, *, states: PurgeStates, items: TableItems, objects: S3Purge, receipts: Receipts) -> None:
        self._states = states
        self._items = items
        self._s3 = objects
        self._receipts = receipts

    def purge_item(self, item: dict[str, Any], remaining_millis: Callable[[], int], report: SweepReport) -> None:
        """One retention_purges item, counted in `report`. Raises when the purge must be tried again (failed,
        or out of time): its message then comes back."""
        report.due += 1
        seller, region = str(item["seller_id"]), str(item["region"])
        log = {"seller_key": seller_key(seller), "region": region}
        try:
            outcome = self.purge(seller, region, report, remaining_millis)
        except ConnectionChanged:
            get_logger().warning("connection came back (re-authorized or rolled back) during its purge; "
                                 "stopped, nothing more deleted", extra=log)
            count("PurgeStoppedConnectionBack")
            report.came_back += 1
            return
        except PurgeOutOfTime:
            get_logger().info("purge ran short of time; it resumes when its message comes back", extra=log)
            report.stopped = "time"
            report.left += 1
            raise
        except Exception as exc:
            code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else None
            # The type and AWS error code only: messages may quote keys that hold the seller id.
            get_logger().error("purge failed; it is tried again when its message comes back",
                               extra={**log, "error": type(exc).__name__, "code": code})
            count("PurgeFailed")
            report.failed += 1
            raise
        if outcome:
            count("SellersPurged")
            report.purged += 1
        else:
            report.skipped += 1

    def purge(self, seller: str, region: str, report: SweepReport,
              remaining_millis: Callable[[], int] = lambda: 2**31) -> bool:
        """Purge one connection; False if it is not (or no longer) due. Raises to leave it for the next try
        (PurgeOutOfTime when less than SAFETY_MILLIS are left, what was deleted recorded)."""
        def short() -> bool:
            return remaining_millis() < SAFETY_MILLIS

        due = self._claim(seller, region)
        if due is None:
            get_logger().info("connection no longer due for purge",
                              extra={"seller_key": seller_key(seller), "region": region})
            return False
        deleted = dict.fromkeys(COUNTERS, 0)
        prefixes = self._prefixes(due)
        try:
            self._purge_s3(due, deleted, prefixes, short)
            if short():
                raise PurgeOutOfTime("stopped before the table's items")
            self._purge_table(due, deleted)
        finally:
            for name, value in deleted.items():
                report.deleted[name] += value
        verification = self._verify(due, prefixes)
        totals = {name: due.counted[name] + deleted[name] for name in COUNTERS}
        now = clock.now()
        if self._receipts.write(self._receipt(due, totals, verification, now)):
            report.receipts += 1
        if not self._delete_connection(due):
            count("PurgeStoppedConnectionBack")
            report.came_back += 1
        get_logger().info("connection purged", extra={"seller_key": due.seller_key, "region": region,
                                                      "reason": REASONS[due.status], **totals})
        return True

    # a. ------------------------------------------------------------------------------------------------

    def _claim(self, seller: str, region: str) -> _Due | None:
        """The connection as it is now, if it is still due; starts this purge's counters on first sight."""
        item = self._states.read(connection_key(seller, region))
        if item is None or item.get("status") not in REASONS or not item.get("purge_after"):
            return None
        purge_after = str(item["purge_after"])
        if _parse(purge_after) > clock.now():
            return None
        if item.get("purge_run") == purge_after:  # resumed: an earlier run started this very purge
            counted = {name: int(item.get(f"purged_{name}", 0)) for name in COUNTERS}
            return _Due(seller, region, str(item["status"]), purge_after, str(item["purge_started_at"]), counted)
        started_at = iso(clock.now())
        if not self._states.start(connection_key(seller, region), status=str(item["status"]),
                                  purge_after=purge_after, started_at=started_at, counters=COUNTERS):
            return None
        return _Due(seller, region, str(item["status"]), purge_after, started_at, dict.fromkeys(COUNTERS, 0))

    def _add_progress(self, due: _Due, counts: dict[str, int]) -> None:
        """Add what was just deleted to the CONN item's counters (only while the purge is still ours)."""
        counts = {name: value for name, value in counts.items() if value}
        if not counts:
            return
        if not self._states.add(due.claim, counts):
            raise ConnectionChanged("the connection left its purge state during the purge")

    def _ensure_claimed(self, due: _Due) -> None:
        if not self._states.holds(due.claim):
            raise ConnectionChanged("the connection left its purge state during the purge")

    # b. ------------------------------------------------------------------------------------------------

    def _prefixes(self, due: _Due) -> list[str]:
        """The region's prefix; with the seller's last connection, everything of the seller in the bucket:
        any region's objects and the portability exports (they hold the reports and the contact)."""
        if not self._last_connection(due):
            return [seller_prefix(due.seller, due.region)]
        return [seller_prefix(due.seller), export_prefix(due.seller)]

    def _purge_s3(self, due: _Due, deleted: dict[str, int], prefixes: list[str], short: Callable[[], bool]) -> None:
        step = {"multipart_uploads": 0, "s3_versions": 0, "s3_delete_markers": 0}
        stopped = False
        for prefix in prefixes:
            self._ensure_claimed(due)
            step["multipart_uploads"] += self._s3.abort_uploads(prefix)
            # Re-read before each batch of 1,000: a re-authorization stops the deletion within one batch.
            counts = self._s3.delete_versions(prefix, before_batch=lambda: self._ensure_claimed(due), stop=short)
            step["s3_versions"] += counts.versions
            step["s3_delete_markers"] += counts.delete_markers
            if counts.stopped:
                stopped = True
                break
        deleted.update(step)
        self._add_progress(due, step)  # what this try deleted counts in the receipt of the try that ends it
        if stopped:
            raise PurgeOutOfTime("stopped while deleting object versions")

    # c. ------------------------------------------------------------------------------------------------

    def _doomed(self, due: _Due) -> list[dict[str, str]]:
        """Keys of the partition's items this purge deletes: everything of the region but its CONN item
        (any item kind: by its `region` or its sort key, `_of_region`); for the seller's last connection,
        everything but that CONN item and, for a deletion request, any consent of the seller still
        waiting for Amazon's confirmation (a revoked seller's waiting consent is a re-authorization)."""
        items = list(self._items.partition(f"SELLER#{due.seller}"))
        own = f"CONN#{due.region}"
        last = _only_connection(items, own)
        doomed = [{"pk": item["pk"], "sk": item["sk"]} for item in items
                  if item["sk"] != own and (last or _of_region(item, due.region))]
        if last and due.status == ConnectionStatus.DELETION_REQUESTED.value:
            doomed += [{"pk": item["pk"], "sk": item["sk"]}
                       for item in self._items.partition(candidate_partition(due.seller))]
        return doomed

    def _last_connection(self, due: _Due) -> bool:
        return _only_connection(self._items.partition(f"SELLER#{due.seller}"), f"CONN#{due.region}")

    def _purge_table(self, due: _Due, deleted: dict[str, int]) -> None:
        try:
            items = self._items.delete(self._doomed(due), due.claim)
            quotas = self._items.delete(self._items.existing(quota_keys(due.seller, due.region)), due.claim)
        except TransactionCancelled:
            raise ConnectionChanged("the connection left its purge state during the purge") from None
        step = {"table_items": items, "quota_items": quotas}
        deleted.update(step)
        self._add_progress(due, step)

    # d. ------------------------------------------------------------------------------------------------

    def _verify(self, due: _Due, prefixes: list[str]) -> dict[str, int]:
        listings = [self._s3.remaining(prefix) for prefix in prefixes]
        verification = {"s3_versions": sum(left.versions for left in listings),
                        "s3_delete_markers": sum(left.delete_markers for left in listings),
                        "multipart_uploads": sum(left.multipart_uploads for left in listings),
                        "table_items": len(self._doomed(due)),
                        "quota_items": len(self._items.existing(quota_keys(due.seller, due.region)))}
        if any(verification.values()):
            self._ensure_claimed(due)  # left over, or written by the connection that came back?
            raise PurgeIncomplete("verification found data left: "
                                  + ", ".join(f"{name}={value}" for name, value in verification.items() if value))
        return verification

    # e. ------------------------------------------------------------------------------------------------

    def _receipt(self, due: _Due, totals: dict[str, int], verification: dict[str, int],
                 now: datetime) -> dict[str, Any]:
        return {
            "id": receipt_id(due.seller_key, due.region, due.purge_after),
            "seller_key": due.seller_key,
            "region": due.region,
            "reason": REASONS[due.status],
            "purge_after": due.purge_after,
            "started_at": due.started_at,
            "verified_at": iso(now),
            "deleted": totals,
            "verification": verification,
            "expires_at": expiry_epoch(now),
        }

    def _delete_connection(self, due: _Due) -> bool:
        """The CONN item, with what was written of the connection since the verification (for the last
        connection, PROFILE whatever the listing said: a correction commits before this transaction, and
        is then deleted with it, or after, and then fails its own check of the CONN item). False if the
        connection came back meanwhile: it keeps everything."""
        late = self._doomed(due) + self._items.existing(quota_keys(due.seller, due.region))
        absent: tuple[dict[str, str], ...] = ()
        if self._last_connection(due):
            late = [key for key in late if key != profile_key(due.seller)] + [profile_key(due.seller)]
            absent = tuple(connection_key(due.seller, region) for region in Region if region != due.region)
        if self._states.delete(due.claim, late, absent=absent):
            return True
        # Re-authorized between the verification and now: its data is gone and receipted; the new
        # authorization keeps its connection.
        get_logger().warning("connection re-authorized during its purge; kept",
                             extra={"seller_key": due.seller_key, "region": due.region})
        return False


def _only_connection(items: Iterable[dict[str, Any]], own: str) -> bool:
    return not any(item["sk"].startswith("CONN#") and item["sk"] != own for item in items)


def _of_region(item: dict[str, Any], region: str) -> bool:
    """Whether an item of the seller's partition belongs to `region`'s connection, whatever its kind: its
    `region` attribute names it, or (without one) its sort key does as its second part (`TOKEN#{region}`,
    `PLAN#{region}`, `REPORT#{region}#...`, `COVER#{region}#...`). Items naming no region (PROFILE) are
    the seller's: its last connection takes them."""
    if "region" in item:
        return bool(item["region"] == region)
    return str(item["sk"]).split("#")[1:2] == [region]


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
