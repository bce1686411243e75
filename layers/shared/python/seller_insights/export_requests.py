"""Portability export requests: the `EXPORT#{request_id}` item in the seller's partition, and its states.

    QUEUED   written by `POST /admin/sellers/{id}/export` with the counts it saw, message sent to data_exports
    RUNNING  an attempt of the export worker holds it: `attempt`, `upload_id` (its multipart upload),
             progress `objects_done`/`objects_total`, `bytes_done`/`bytes_total` (report bytes read),
             `zip_bytes` (archive bytes written so far)
    DONE     the ZIP is complete at `exports/{seller_key}/{request_id}.zip`: `files`, `zip_bytes`, counts
    FAILED   given up (`reason`): the last receive of its message failed, or it cannot fit one invocation

Every write after QUEUED names the attempt it belongs to: a newer attempt (the same message received again
after a worker died, or delivered twice) takes the item over, and an older one's next write fails
(`ExportSuperseded`), so it aborts its own upload and stops. DONE is written only after S3 completed the
multipart upload, and only by the attempt that uploaded it: a ZIP is never marked done half-written, and
every attempt writes the same key, so a request never has two ZIPs.

The item lives in the seller's partition of the connections table, so the retention purge deletes it
with the seller's last connection (its sort key names no region); `expires_at` (TTL) drops it a day after
the bucket's lifecycle has expired the ZIP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr

from seller_insights.dynamo import condition_checked
from seller_insights.errors import ConditionFailed, ExportSuperseded
from seller_insights.repositories import iso

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table

EXPORT_PREFIX = "EXPORT#"
# The bucket's lifecycle expires export ZIPs after 7 days (infra/constructs/data_stores.py); the request
# item outlives its ZIP by a day, so a status read in between says the ZIP is gone rather than unknown.
REQUEST_LIFETIME = timedelta(days=8)
# The message kind on the data_exports queue: {"export": [{"seller_id": ..., "request_id": ...}]}.
MESSAGE_KIND = "export"


class ExportStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


def export_request_key(seller_id: str, request_id: str) -> dict[str, str]:
    return {"pk": f"SELLER#{seller_id}", "sk": f"{EXPORT_PREFIX}{request_id}"}


@dataclass(frozen=True)
class Progress:
    objects_done: int
    bytes_done: int
    zip_bytes: int


class ExportRequests:
    def __init__(self, table: Table) -> None:
        self._table = table

    def create(self, seller_id: str, request_id: str, *, now: datetime, objects: int, report_bytes: int) -> None:
        """The QUEUED item; ConditionFailed if the request id exists (API Gateway's ids are unique)."""
        item: dict[str, Any] = {**export_request_key(seller_id, request_id), "status": ExportStatus.QUEUED.value,
                "requested_at": iso(now), "updated_at": iso(now), "attempt": 0,
                "objects_total": objects, "bytes_total": report_bytes, "objects_done": 0, "bytes_done": 0,
                "zip_bytes": 0, "expires_at": int((now + REQUEST_LIFETIME).timestamp())}
        with condition_checked():
            self._table.put_item(Item=item, ConditionExpression=Attr("pk").not_exists())

    def get(self, seller_id: str, request_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key=export_request_key(seller_id, request_id), ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def claim(self, seller_id: str, request_id: str, *, attempt: int, now: datetime, objects: int,
              report_bytes: int) -> None:
        """RUNNING for `attempt` (one more than the item's): progress back to zero, the counts as the worker
        sees them now. ConditionFailed when the request ended or another attempt claimed it first."""
        with condition_checked():
            self._table.update_item(
                Key=export_request_key(seller_id, request_id),
                UpdateExpression="SET #status = :running, attempt = :attempt, updated_at = :now, "
                                 "started_at = if_not_exists(started_at, :now), objects_total = :objects, "
                                 "bytes_total = :bytes, objects_done = :zero, bytes_done = :zero, zip_bytes = :zero "
                                 "REMOVE upload_id",
                ConditionExpression="attempt = :previous AND #status IN (:queued, :running)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":running": ExportStatus.RUNNING.value, ":queued": ExportStatus.QUEUED.value,
                                           ":attempt": attempt, ":previous": attempt - 1, ":now": iso(now),
                                           ":objects": objects, ":bytes": report_bytes, ":zero": 0},
            )

    def uploading(self, seller_id: str, request_id: str, *, attempt: int, upload_id: str) -> None:
        """Record the attempt's multipart upload, so a later attempt can abort it if this one dies."""
        self._running_update(seller_id, request_id, attempt, "SET upload_id = :upload", values={":upload": upload_id})

    def progress(self, seller_id: str, request_id: str, *, attempt: int, progress: Progress, now: datetime) -> None:
        self._running_update(
            seller_id, request_id, attempt,
            "SET objects_done = :objects, bytes_done = :bytes, zip_bytes = :zip, updated_at = :now",
            values={":objects": progress.objects_done, ":bytes": progress.bytes_done, ":zip": progress.zip_bytes,
             ":now": iso(now)})

    def done(self, seller_id: str, request_id: str, *, attempt: int, now: datetime, counts: dict[str, int]) -> None:
        """DONE, with the archive's counts (`files`, `zip_bytes`, `reports`, `reports_missing`, ...)."""
        names = sorted(counts)
        update = ", ".join(f"#c{n} = :c{n}" for n in range(len(names)))
        self._running_update(
            seller_id, request_id, attempt,
            f"SET #status = :done, completed_at = :now, updated_at = :now, {update} REMOVE upload_id",
            values={":done": ExportStatus.DONE.value, ":now": iso(now),
             **{f":c{n}": int(counts[name]) for n, name in enumerate(names)}},
            names={f"#c{n}": name for n, name in enumerate(names)})

    def failed(self, seller_id: str, request_id: str, *, reason: str, now: datetime,
               attempt: int | None = None) -> bool:
        """FAILED with `reason` unless the request is DONE or FAILED already, or (given `attempt`) another
        attempt holds it; False when it was not written."""
        condition = "#status IN (:queued, :running)"
        values: dict[str, Any] = {":failed": ExportStatus.FAILED.value, ":reason": reason, ":now": iso(now),
                                  ":queued": ExportStatus.QUEUED.value, ":running": ExportStatus.RUNNING.value}
        if attempt is not None:
            condition += " AND attempt = :attempt"
            values[":attempt"] = attempt
        try:
            with condition_checked():
                self._table.update_item(
                    Key=export_request_key(seller_id, request_id),
                    UpdateExpression="SET #status = :failed, reason = :reason, completed_at = :now, updated_at = :now",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues=values,
                )
        except ConditionFailed:
            return False
        return True

    def _running_update(self, seller_id: str, request_id: str, attempt: int, expression: str, *,
                        values: dict[str, Any], names: dict[str, str] | None = None) -> None:
        try:
            with condition_checked():
                self._table.update_item(
                    Key=export_request_key(seller_id, request_id),
                    UpdateExpression=expression,
                    ConditionExpression="attempt = :attempt AND #status = :running",
                    ExpressionAttributeNames={"#status": "status", **(names or {})},
                    ExpressionAttributeValues={**values, ":attempt": attempt, ":running": ExportStatus.RUNNING.value},
                )
        except ConditionFailed:
            raise ExportSuperseded("another attempt holds this export request, or it ended") from None
