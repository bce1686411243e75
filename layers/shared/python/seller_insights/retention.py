"""The AWS side of the retention purge (docs/internal-contracts.md, "Retention and data rights").

Every operation here is idempotent and safe to repeat after a crash at any point: deleting what is
already gone is a no-op, and each step ends only when a fresh listing shows nothing left.
Nothing here logs; errors never carry seller ids or object keys (they name counts and codes).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from seller_insights.dynamo import ATTEMPTS, FIRST_DELAY, MAX_DELAY, Batches, Sleep, applied
from seller_insights.dynamo import query_client as query
from seller_insights.errors import PurgeIncomplete, UnprocessedRequests
from seller_insights.quotas import OPERATION_RATES
from seller_insights.repositories import SHARDS, parse_key

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_s3.client import S3Client

PURGE_DUE_INDEX = "by_purge_due"
DELETE_OBJECTS_MAX = 1000  # S3 DeleteObjects: at most 1,000 keys per request
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


class PurgeIndex:
    """(seller, region) of REVOKED / DELETION_REQUESTED connections whose purge date has come: one
    Query per shard of the sparse KEYS_ONLY index `by_purge_due`, never a Scan."""

    def __init__(self, db: DynamoDBClient, table_name: str) -> None:
        self._db = db  # a DynamoDB client with the resource layer's (de)serialisation: Table.meta.client
        self._table = table_name

    def due(self, now_iso: str) -> Iterator[tuple[str, str]]:
        for number in range(SHARDS):
            condition = Key("purge_shard").eq(str(number)) & Key("purge_after").lte(now_iso)
            for item in query(self._db, TableName=self._table, IndexName=PURGE_DUE_INDEX,
                              KeyConditionExpression=condition):
                yield parse_key(item)


# --- The connection item's purge bookkeeping ---------------------------------------------------------


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

    def add(self, key: dict[str, str], *, status: str, purge_after: str, counts: dict[str, int]) -> bool:
        """Add to the `purged_*` counters; False if the purge is no longer the connection's."""
        return applied(lambda: self._db.update_item(
            TableName=self._table, Key=key,
            UpdateExpression="ADD " + ", ".join(f"purged_{name} :{name}" for name in counts),
            ConditionExpression="#status = :status AND purge_run = :purge",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={**{f":{name}": value for name, value in counts.items()},
                                       ":status": status, ":purge": purge_after},
        ))

    def delete(self, key: dict[str, str], *, status: str, purge_after: str) -> bool:
        """Delete the connection item; False if it left its purge state (re-authorized) meanwhile."""
        return applied(lambda: self._db.delete_item(
            TableName=self._table, Key=key,
            ConditionExpression="#status = :status AND purge_after = :purge",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":status": status, ":purge": purge_after},
        ))


# --- S3 ----------------------------------------------------------------------------------------------


@dataclass
class S3Counts:
    versions: int = 0
    delete_markers: int = 0
    multipart_uploads: int = 0


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

    def delete_versions(self, prefix: str) -> S3Counts:
        """Delete every version and delete marker under `prefix`, one DeleteObjects per listing page
        (≤ 1,000 keys), until a fresh listing from the start returns nothing.

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
    """Reads a seller's partition and deletes items by key: BatchWriteItem 25 at a time, what DynamoDB left
    unprocessed retried a bounded number of times with backoff (then PurgeIncomplete: the next run resumes)."""

    def __init__(self, db: DynamoDBClient, table_name: str, *, sleep: Sleep = time.sleep,
                 attempts: int = ATTEMPTS) -> None:
        self._db = db  # Table.meta.client: plain Python values in and out
        self._table = table_name
        self._batches = Batches(db, sleep=sleep, attempts=attempts)

    def partition(self, pk: str) -> Iterator[dict[str, Any]]:
        """Keys and `region` of every item of a partition (strongly consistent, paged)."""
        return query(self._db, TableName=self._table, KeyConditionExpression=Key("pk").eq(pk), ConsistentRead=True,
                     ProjectionExpression="pk, sk, #region", ExpressionAttributeNames={"#region": "region"})

    def existing(self, keys: list[dict[str, str]]) -> list[dict[str, str]]:
        """Which of `keys` exist (BatchGetItem, strongly consistent, unprocessed keys retried)."""
        with _incomplete_when_unprocessed():
            found = self._batches.get(self._table, list(keys), projection="pk, sk")
        return [{"pk": item["pk"], "sk": item["sk"]} for item in found]

    def delete(self, keys: list[dict[str, str]]) -> int:
        with _incomplete_when_unprocessed():
            return self._batches.delete(self._table, list(keys))


@contextmanager
def _incomplete_when_unprocessed() -> Iterator[None]:
    try:
        yield
    except UnprocessedRequests as exc:
        raise PurgeIncomplete(str(exc)) from None


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

