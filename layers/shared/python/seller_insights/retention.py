"""The AWS side of the retention purge (docs/internal-contracts.md, "Retention and data rights").

Every operation here is idempotent and safe to repeat after a crash at any point: deleting what is
already gone is a no-op, and each step ends only when a fresh listing shows nothing left.
Every item of the connections table is deleted under a ConditionCheck of the connection's CONN item
(`PurgeClaim`), in the same TransactWriteItems: a re-authorization (or a rolled-back deletion request)
that lands while the purge runs cancels the deletions instead of losing the new connection's items.
Nothing here logs; errors never carry seller ids or object keys (they name counts and codes).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from seller_insights.dynamo import ATTEMPTS, FIRST_DELAY, MAX_DELAY, Batches, Sleep, applied, transact
from seller_insights.dynamo import query_client as query
from seller_insights.errors import PurgeIncomplete, TransactionCancelled, UnprocessedRequests
from seller_insights.quotas import OPERATION_RATES

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_s3.client import S3Client

PURGE_DUE_INDEX = "by_purge_due"
DELETE_OBJECTS_MAX = 1000  # S3 DeleteObjects: at most 1,000 keys per request
TRANSACTION_MAX = 100  # TransactWriteItems: at most 100 actions
# The claim's ConditionCheck takes one action of each transaction; the deletions the rest.
DELETES_PER_TRANSACTION = TRANSACTION_MAX - 1
AUDIT_RETENTION_MONTHS = 25  # the CCPA asks for at least 24 months


def quota_keys(seller: str, region: str) -> list[dict[str, str]]:
    """The seller's token buckets of the Reports operations in this region."""
    return [{"pk": f"QUOTA#{seller}#{region}#{operation}", "sk": "BUCKET"} for operation in OPERATION_RATES]


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` later (the month's last day when it is shorter)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _backoff(delay: float) -> float:
    return min(delay * 2, MAX_DELAY)


# --- The purge index -------------------------------------------------------------------------------


# --- The connection item's purge bookkeeping ---------------------------------------------------------


@dataclass(frozen=True)
class PurgeClaim:
    """The state a purge decided on: the connection still `status`, with `purge_after` as its purge date
    and as the purge run it started (`purge_run`). A re-authorization makes it ACTIVE and removes
    `purge_after`; a rollback restores the previous status; a new revocation sets another date: each
    breaks the claim."""

    key: dict[str, str]
    status: str
    purge_after: str

    CONDITION: ClassVar[str] = ("#status = :claimed_status AND purge_after = :claimed_purge "
                                "AND purge_run = :claimed_purge")

    def names(self) -> dict[str, str]:
        return {"#status": "status"}

    def values(self) -> dict[str, str]:
        return {":claimed_status": self.status, ":claimed_purge": self.purge_after}

    def holds(self, item: dict[str, Any] | None) -> bool:
        """Whether a CONN item, as read, still satisfies the claim."""
        return (item is not None and item.get("status") == self.status
                and item.get("purge_after") == self.purge_after == item.get("purge_run"))

    def check(self, table_name: str) -> dict[str, Any]:
        """The ConditionCheck that guards every deletion of the purge (TransactWriteItems action)."""
        return {"ConditionCheck": {"TableName": table_name, "Key": self.key, "ConditionExpression": self.CONDITION,
                                   "ExpressionAttributeNames": self.names(),
                                   "ExpressionAttributeValues": self.values()}}


class PurgeStates:
    """The purge's marks on the connection item (`purge_run`, `purge_started_at`, `purged_*` counters),
    each write conditional on the connection still being in the state the purge started from."""

    def __init__(self, db: DynamoDBClient, table_name: str) -> None:
        self._db = db  # Table.meta.client: plain Python values in and out
        self._table = table_name

    def read(self, key: dict[str, str]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._db.get_item(TableName=self._table, Key=key,
                                                        ConsistentRead=True).get("Item")
        return item

    def holds(self, claim: PurgeClaim) -> bool:
        """Whether the connection is still as the purge claimed it (a consistent read)."""
        return claim.holds(self.read(claim.key))

    def start(self, key: dict[str, str], *, status: str, purge_after: str, started_at: str,
              counters: tuple[str, ...]) -> bool:
        """Mark the purge of this `purge_after` as started, counters at zero; False if the connection left
        that state meanwhile."""
        return applied(lambda: self._db.update_item(
            TableName=self._table, Key=key,
            UpdateExpression="SET purge_run = :purge, purge_started_at = :now, "
                             + ", ".join(f"purged_{name} = :zero" for name in counters),
            ConditionExpression="#status = :status AND purge_after = :purge",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":purge": purge_after, ":now": started_at, ":zero": 0, ":status": status},
        ))

    def add(self, claim: PurgeClaim, counts: dict[str, int]) -> bool:
        """Add to the `purged_*` counters; False if the claim no longer holds."""
        return applied(lambda: self._db.update_item(
            TableName=self._table, Key=claim.key,
            UpdateExpression="ADD " + ", ".join(f"purged_{name} :{name}" for name in counts),
            ConditionExpression=claim.CONDITION, ExpressionAttributeNames=claim.names(),
            ExpressionAttributeValues={**{f":{name}": value for name, value in counts.items()}, **claim.values()},
        ))

    def delete(self, claim: PurgeClaim, also: list[dict[str, str]], *,
               absent: tuple[dict[str, str], ...] = ()) -> bool:
        """Delete the connection item and the items `also` (what was written since the verification), in
        one transaction under the claim and under a check that each key of `absent` does not exist (the
        seller's other connections, when this is its last one); False if the claim no longer holds
        (re-authorized meanwhile): then nothing is deleted. A key of `absent` that appeared, or more
        items than one transaction takes, is PurgeIncomplete (the next run looks again)."""
        if len(also) + len(absent) >= TRANSACTION_MAX:
            raise PurgeIncomplete(f"{len(also)} items were written during the purge")
        actions: list[dict[str, Any]] = [{"Delete": {
            "TableName": self._table, "Key": claim.key, "ConditionExpression": claim.CONDITION,
            "ExpressionAttributeNames": claim.names(), "ExpressionAttributeValues": claim.values()}}]
        actions += [{"Delete": {"TableName": self._table, "Key": key}} for key in also]
        actions += [{"ConditionCheck": {"TableName": self._table, "Key": key,
                                        "ConditionExpression": "attribute_not_exists(pk)"}} for key in absent]
        try:
            transact(self._db, actions)
        except TransactionCancelled as cancelled:
            if cancelled.failed(0):
                return False
            raise PurgeIncomplete("the seller connected in another region during its last purge") from None
        return True


# --- S3 ----------------------------------------------------------------------------------------------


@dataclass
class S3Counts:
    versions: int = 0
    delete_markers: int = 0
    multipart_uploads: int = 0
    stopped: bool = False  # delete_versions stopped early (its `stop` said so): versions may be left


class S3Purge:
    """Every object version, delete marker and incomplete multipart upload under a prefix of a
    versioned bucket, deleted permanently (a plain DeleteObject would only add a delete marker)."""

    def __init__(self, s3: S3Client, bucket: str, *, sleep: Sleep = time.sleep, attempts: int = ATTEMPTS) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._sleep = sleep
        self._attempts = attempts

    def abort_uploads(self, prefix: str) -> int:
        """Abort every incomplete multipart upload under `prefix`; how many were aborted.

        Done before the versions go, so an upload cannot complete behind the deletion."""
        aborted = 0
        for page in self._s3.get_paginator("list_multipart_uploads").paginate(Bucket=self._bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                try:
                    self._s3.abort_multipart_upload(Bucket=self._bucket, Key=upload["Key"],
                                                    UploadId=upload["UploadId"])
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "NoSuchUpload":  # aborted or completed meanwhile
                        raise
                aborted += 1
        return aborted

    def delete_versions(self, prefix: str, *, before_batch: Callable[[], None] = lambda: None,
                        stop: Callable[[], bool] = lambda: False) -> S3Counts:
        """Delete every version and delete marker under `prefix`, one DeleteObjects per listing page
        (≤ 1,000 keys), until a fresh listing from the start returns nothing. `before_batch` runs before
        each DeleteObjects and may raise to stop (the purge checks that its claim still holds); when `stop()`
        is true before a batch, the counts so far come back with `stopped` (the invocation runs short).

        Listing from the start each round (instead of following markers) makes the last listing the
        proof that nothing is left, and makes a repeated or resumed call cost one empty listing."""
        counts = S3Counts()
        deleted: set[tuple[str, str]] = set()
        while True:
            page = self._s3.list_object_versions(Bucket=self._bucket, Prefix=prefix, MaxKeys=DELETE_OBJECTS_MAX)
            versions = [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
            markers = [(m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", [])]
            if not versions and not markers:
                return counts
            batch = versions + markers
            if deleted.intersection(batch):
                # S3 confirmed these deletions, yet they are listed again: an Object Lock, a legal hold
                # or a policy that silently keeps them. Never loop forever; the next run retries.
                raise PurgeIncomplete(f"{len(deleted.intersection(batch))} object versions survived deletion")
            if stop():
                counts.stopped = True
                return counts
            before_batch()
            self._delete_batch(batch)
            deleted.update(batch)
            counts.versions += len(versions)
            counts.delete_markers += len(markers)

    def _delete_batch(self, batch: list[tuple[str, str]]) -> None:
        """DeleteObjects (Quiet: only errors are listed); retry only the keys reported in Errors."""
        pending = batch
        delay = FIRST_DELAY
        codes: set[str] = set()
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(delay)
                delay = _backoff(delay)
            answer = self._s3.delete_objects(Bucket=self._bucket, Delete={
                "Objects": [{"Key": key, "VersionId": version} for key, version in pending], "Quiet": True})
            errors = answer.get("Errors", [])
            if not errors:
                return
            codes = {str(e.get("Code", "unknown")) for e in errors}
            failed = {(e["Key"], e.get("VersionId", "")) for e in errors}
            pending = [entry for entry in pending if entry in failed]
            if not pending:  # an error entry we cannot match to what we sent: retry the whole batch
                pending = batch
        raise PurgeIncomplete(f"{len(pending)} object versions could not be deleted ({', '.join(sorted(codes))})")

    def remaining(self, prefix: str) -> S3Counts:
        """What a fresh listing still shows under `prefix` (one page is enough to see "anything")."""
        page = self._s3.list_object_versions(Bucket=self._bucket, Prefix=prefix, MaxKeys=DELETE_OBJECTS_MAX)
        uploads = self._s3.list_multipart_uploads(Bucket=self._bucket, Prefix=prefix, MaxUploads=1)
        return S3Counts(versions=len(page.get("Versions", [])), delete_markers=len(page.get("DeleteMarkers", [])),
                        multipart_uploads=len(uploads.get("Uploads", [])))


# --- DynamoDB ------------------------------------------------------------------------------------------


class TableItems:
    """Reads a seller's partition and deletes items by key, each TransactWriteItems holding the purge's
    ConditionCheck and up to 99 deletions. A transaction DynamoDB cancels for another reason than the
    claim (a conflicting write, throttling) is sent again a bounded number of times with backoff (then
    PurgeIncomplete: the next run resumes)."""

    def __init__(self, db: DynamoDBClient, table_name: str, *, sleep: Sleep = time.sleep,
                 attempts: int = ATTEMPTS) -> None:
        self._db = db  # Table.meta.client: plain Python values in and out
        self._table = table_name
        self._batches = Batches(db, sleep=sleep, attempts=attempts)
        self._sleep = sleep
        self._attempts = attempts

    def partition(self, pk: str) -> Iterator[dict[str, Any]]:
        """Keys and `region` of every item of a partition (strongly consistent, paged)."""
        return query(self._db, TableName=self._table, KeyConditionExpression=Key("pk").eq(pk), ConsistentRead=True,
                     ProjectionExpression="pk, sk, #region", ExpressionAttributeNames={"#region": "region"})

    def existing(self, keys: list[dict[str, str]]) -> list[dict[str, str]]:
        """Which of `keys` exist (BatchGetItem, strongly consistent, unprocessed keys retried)."""
        try:
            found = self._batches.get(self._table, list(keys), projection="pk, sk")
        except UnprocessedRequests as exc:
            raise PurgeIncomplete(str(exc)) from None
        return [{"pk": item["pk"], "sk": item["sk"]} for item in found]

    def delete(self, keys: list[dict[str, str]], claim: PurgeClaim) -> int:
        """Delete `keys` while `claim` holds; how many. TransactionCancelled when it stopped holding:
        the transactions before that one were applied (under the claim), none after."""
        for start in range(0, len(keys), DELETES_PER_TRANSACTION):
            actions = [claim.check(self._table)] + [{"Delete": {"TableName": self._table, "Key": key}}
                                                    for key in keys[start:start + DELETES_PER_TRANSACTION]]
            self._transact(actions)
        return len(keys)

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        delay = FIRST_DELAY
        codes: set[str] = set()
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(delay)
                delay = _backoff(delay)
            try:
                transact(self._db, actions)
            except ClientError as exc:  # the claim's failure is TransactionCancelled and passes through
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                codes = {str(reason.get("Code")) for reason in exc.response.get("CancellationReasons", [])
                         if reason.get("Code") not in (None, "None")}
                continue
            return
        raise PurgeIncomplete(f"a deletion transaction was cancelled {self._attempts} times "
                              f"({', '.join(sorted(codes)) or 'no reason given'})")


class Receipts:
    """PII-free deletion receipts in the audit table, written once per (seller_key, region, purge_after)."""

    def __init__(self, db: DynamoDBClient, table_name: str) -> None:
        self._db = db  # Table.meta.client: plain Python values in and out
        self._table = table_name

    def write(self, receipt: dict[str, Any]) -> bool:
        """True if written now, False if a receipt with this id was already there (a resumed purge
        that crashed after the receipt and before the connection item went)."""
        return applied(lambda: self._db.put_item(TableName=self._table, Item=receipt,
                                                 ConditionExpression="attribute_not_exists(id)"))


def receipt_id(seller_key: str, region: str, purge_after: str) -> str:
    return f"receipt#{seller_key}#{region}#{purge_after}"


def expiry_epoch(moment: datetime) -> int:
    return int(add_months(moment, AUDIT_RETENTION_MONTHS).timestamp())

