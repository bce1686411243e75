"""One export request, built once: claim it, stream the ZIP, mark it DONE and complete its audit record.

A message may arrive twice (SQS delivers at least once) or again after a worker died (its visibility
timeout ran out). Each receive is a new attempt (seller_insights.export_requests): it aborts the multipart
upload a dead attempt left, claims the request, and rebuilds the ZIP from the start under the same key, so
there is never a second ZIP and never a half one marked DONE. An older attempt still running loses its
claim at its next progress write and stops, aborting its upload.

Endings:
- DONE: the ZIP is complete; the audit record of the `POST .../export` completes SUCCEEDED with counts.
- FAILED `too_large`: less than `DEADLINE_MARGIN_MS` of the invocation was left before the next report;
  the upload is aborted and the message consumed (a retry would stop at the same place). The ceiling is
  measured in bench/README.md ("export_size").
- FAILED `unknown_seller`: the seller's data was purged between the request and the worker.
- FAILED `failed`: any other error on the last receive the queue allows (`LAST_RECEIVE`); the message
  still fails, so it reaches the dead-letter queue and its alarm. Earlier receives just fail and retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from data_exports.archive import ArchiveEvents, ExportBuilder
from seller_insights import clock
from seller_insights.data_rights import AuditLog, AuditOutcome, DataRightsRepository, public_profile
from seller_insights.dynamo import plain
from seller_insights.errors import ConditionFailed, ExportSuperseded, ExportTooLarge
from seller_insights.export_requests import ExportRequests, ExportStatus, Progress
from seller_insights.object_keys import export_key
from seller_insights.observability import get_logger

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

# Stop before the next report when less than this is left of the invocation (Lambda's timeout is 15 min).
DEADLINE_MARGIN_MS = 60_000
# The queue's maxReceiveCount (infra/constructs/messaging.py MAX_RECEIVE_COUNT; tests/infra checks it).
LAST_RECEIVE = 5


@dataclass(frozen=True)
class Outcome:
    status: str  # DONE, FAILED, or SKIPPED (already ended, unknown, or another attempt holds it)
    reason: str = ""


class _Events(ArchiveEvents):
    def __init__(self, requests: ExportRequests, seller_id: str, request_id: str, attempt: int,
                 remaining_ms: Callable[[], int]) -> None:
        self._requests, self._seller, self._request, self._attempt = requests, seller_id, request_id, attempt
        self._remaining_ms = remaining_ms

    def uploading(self, upload_id: str) -> None:
        self._requests.uploading(self._seller, self._request, attempt=self._attempt, upload_id=upload_id)

    def progress(self, progress: Progress) -> None:
        self._requests.progress(self._seller, self._request, attempt=self._attempt, progress=progress,
                                now=clock.now())

    def before_report(self) -> None:
        if self._remaining_ms() < DEADLINE_MARGIN_MS:
            raise ExportTooLarge("the invocation's time ran out before the export was complete")


class ExportWorker:
    def __init__(self, *, requests: ExportRequests, sellers: DataRightsRepository, audit: AuditLog, s3: S3Client,
                 bucket: str, builder: ExportBuilder | None = None) -> None:
        self._requests, self._sellers, self._audit = requests, sellers, audit
        self._s3, self._bucket = s3, bucket
        self._builder = builder or ExportBuilder(s3, bucket)

    def run(self, seller_id: str, request_id: str, *, receive_count: int, remaining_ms: Callable[[], int]) -> Outcome:
        item = self._requests.get(seller_id, request_id)
        if item is None or item["status"] in (ExportStatus.DONE.value, ExportStatus.FAILED.value):
            get_logger().info("export request already ended or unknown; nothing to do")
            return Outcome("SKIPPED")
        if item.get("upload_id"):  # an attempt that died left its upload open
            self._abort(seller_id, request_id, str(item["upload_id"]))
        attempt = int(item.get("attempt", 0)) + 1
        snapshot = self._sellers.snapshot(seller_id)
        if not snapshot.exists:
            return self._fail(seller_id, request_id, "unknown_seller")
        objects = report_bytes = 0
        for row in self._sellers.items(seller_id, "REPORT#", projection="#bytes", names={"#bytes": "bytes"}):
            objects += 1
            report_bytes += int(row.get("bytes", 0))
        try:
            self._requests.claim(seller_id, request_id, attempt=attempt, now=clock.now(), objects=objects,
                                 report_bytes=report_bytes)
        except ConditionFailed:
            get_logger().info("another attempt claimed the export request first")
            return Outcome("SKIPPED")
        get_logger().info("export started", extra={"attempt": attempt, "objects": objects, "bytes": report_bytes})
        events = _Events(self._requests, seller_id, request_id, attempt, remaining_ms)
        try:
            result = self._builder.build(
                key=export_key(seller_id, request_id), seller_id=seller_id, generated_at=clock.now(),
                connections=[plain({"seller_id": seller_id, **c})
                             for c in snapshot.public_connections(clock.epoch_seconds())],
                profile=public_profile(snapshot.profile),
                reports=(plain(r) for r in self._sellers.reports(seller_id)), events=events)
        except ExportSuperseded:
            get_logger().info("a newer attempt holds the export request; this one stopped")
            return Outcome("SKIPPED")
        except ExportTooLarge:
            return self._fail(seller_id, request_id, "too_large", attempt=attempt)
        except Exception:
            if receive_count >= LAST_RECEIVE:  # unless a newer attempt holds the request
                self._fail(seller_id, request_id, "failed", attempt=attempt)
            raise
        counts = {"files": result.files, "zip_bytes": result.bytes, "reports": result.reports,
                  "reports_missing": result.missing_reports}
        try:
            self._requests.done(seller_id, request_id, attempt=attempt, now=clock.now(), counts=counts)
        except ExportSuperseded:
            # A newer attempt writes the same key again; it marks the request when its ZIP is complete.
            return Outcome("SKIPPED")
        self._complete_audit(request_id, AuditOutcome.DONE, {"files": result.files, "bytes": result.bytes,
                                                              "reports": result.reports,
                                                              "reports_missing": result.missing_reports})
        get_logger().info("export done", extra={"files": result.files, "bytes": result.bytes})
        return Outcome("DONE")

    def _fail(self, seller_id: str, request_id: str, reason: str, *, attempt: int | None = None) -> Outcome:
        if self._requests.failed(seller_id, request_id, reason=reason, now=clock.now(), attempt=attempt):
            self._complete_audit(request_id, AuditOutcome.FAILED, {"status": 500})
        get_logger().warning("export failed", extra={"reason": reason})
        return Outcome("FAILED", reason)

    def _complete_audit(self, request_id: str, outcome: AuditOutcome, detail: dict[str, int]) -> None:
        try:
            self._audit.complete_request(request_id=request_id, completed_at=clock.now(), outcome=outcome,
                                         detail=detail)
        except ConditionFailed:
            get_logger().info("the export's audit record was already completed")

    def _abort(self, seller_id: str, request_id: str, upload_id: str) -> None:
        try:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=export_key(seller_id, request_id),
                                            UploadId=upload_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code != "NoSuchUpload":
                raise
        get_logger().info("aborted the upload an earlier attempt left")


def message_items(body: dict[str, Any]) -> list[dict[str, str]]:
    """`{"export": [{"seller_id", "request_id"}]}` -> the items, checked."""
    items = body.get("export")
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("seller_id"), str) and isinstance(i.get("request_id"), str)
            for i in items):
        raise ValueError("not an export message")
    return [{"seller_id": i["seller_id"], "request_id": i["request_id"]} for i in items]
