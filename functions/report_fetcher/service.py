"""One step of a report job. Never sleeps: a job that must wait goes back on the queue with a delay.

    NEW ──(reuse an in-flight report, else createReport)──▶ WAITING ──getReport──┬─ DONE → stream → DONE
                                                                               ├─ CANCELLED → NO_DATA
                                                                               └─ FATAL → COOLDOWN → NEW
                                                                                  (FAILED after max attempts)
    any step: connection not ACTIVE → ENDED (no Amazon call); 429/quota/token not ready → re-queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from seller_insights import clock
from seller_insights.errors import (
    DocumentCorrupt,
    DocumentDownloadFailed,
    SpApiError,
    StorageFailed,
    TokenUnavailable,
)
from seller_insights.marketplaces import MARKETPLACES
from seller_insights.object_keys import error_document_key, report_key
from seller_insights.observability import get_logger, get_metrics
from seller_insights.quotas import QuotaBuckets
from seller_insights.report_catalog import ReportFormat, ReportSpec, WindowKind, spec
from seller_insights.report_gzip import DocumentLimits
from seller_insights.report_jobs import Job, JobRepository, JobStatus, PlanRepository, ReportRepository, StoredReport
from seller_insights.report_stream import StoredDocument, stream_document_to_s3
from seller_insights.repositories import ConnectionsRepository, ConnectionStatus
from seller_insights.spapi import SpApiClient

FIRST_CHECK_SECONDS = 30
MAX_DELAY_SECONDS = 900  # SQS's longest message delay
RETRY_SECONDS = 60
MAX_DOCUMENT_ATTEMPTS = 5
# Below the job queue's visibility timeout (1800 s) less the longest delay (900 s) and the function's
# timeout (300 s): a copy redelivered after a lost re-queue still finds its job orphaned.
ORPHANED_AFTER_SECONDS = 300
IN_FLIGHT = ("IN_QUEUE", "IN_PROGRESS")


@dataclass(frozen=True)
class Step:
    """What became of the job in this step: finished, or to be looked at again after `delay`."""

    status: JobStatus
    delay: int | None = None
    version: int | None = None  # the job version the re-queued message must carry

    @property
    def again(self) -> bool:
        return self.delay is not None


def count(name: str, value: float = 1) -> None:
    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


class JobRunner:
    def __init__(
        self,
        *,
        jobs: JobRepository,
        reports: ReportRepository,
        plans: PlanRepository,
        connections: ConnectionsRepository,
        spapi: SpApiClient,
        quotas: QuotaBuckets,
        s3: Any,
        bucket: str,
        limits: DocumentLimits | None = None,
    ) -> None:
        """`limits`: the caps on a report document (the stage's, through ReportFetcherSettings)."""
        self._jobs = jobs
        self._reports = reports
        self._plans = plans
        self._connections = connections
        self._spapi = spapi
        self._quotas = quotas
        self._s3 = s3
        self._bucket = bucket
        self._limits = limits or DocumentLimits()

    def run(self, message: Job, version: int | None = None) -> Step:
        """One step. `version` is the job version the message was sent for (None: from the planner).
        A message for an older version is a stale copy (a duplicate delivery, a poll overtaken by a
        notification, a plan that ran twice): it is dropped, so copies never multiply."""
        job = self._jobs.load_or_create(message)
        if job.status.terminal:
            return Step(job.status)
        expected = 0 if version is None else version  # the planner's message can only start a job
        if expected != job.version and not self._orphaned(job):
            return Step(job.status)
        connection = self._connections.get(job.seller, job.region)
        if connection is None or connection.status is not ConnectionStatus.ACTIVE:
            job.status = JobStatus.ENDED
            self._jobs.save(job)
            self._plans.delete(job.seller, job.region)
            return Step(JobStatus.ENDED)
        wait = job.next_check_at - clock.epoch_seconds()
        if wait > 0:  # delivered before its time: wait the rest
            return Step(job.status, min(wait, MAX_DELAY_SECONDS), job.version)
        report_spec = spec(job.report_type)
        try:
            if report_spec.window is WindowKind.DISCOVERED:
                return self._discover(job, report_spec)
            if job.status is JobStatus.COOLDOWN or job.report_id is None:
                return self._request(job, report_spec)
            return self._check(job, report_spec)
        except TokenUnavailable:
            return self._again(job, RETRY_SECONDS)
        except SpApiError as exc:
            if exc.status == 429:
                count("ReportsThrottled")
                return self._again(job, RETRY_SECONDS)
            if exc.status >= 500:
                return self._again(job, RETRY_SECONDS)
            # Amazon refused the request itself (400, 403, 404): retrying cannot help. The job ends,
            # recorded and counted, instead of dragging its message (and other jobs) to the DLQ.
            count("ReportFailed")
            return self._finish(job, JobStatus.FAILED, f"SP-API answered {exc.status} ({exc.code})")

    @staticmethod
    def _orphaned(job: Job) -> bool:
        """No message carries this job any more: a step saved it and then crashed before re-queueing.
        Every live message is due within SQS's 15-minute delay of its check time, so a job this far
        overdue is adopted by whichever copy arrives (the optimistic save keeps twins from both going on)."""
        return clock.epoch_seconds() - job.next_check_at > ORPHANED_AFTER_SECONDS

    # --- requesting ---------------------------------------------------------------------------

    def _request(self, job: Job, report_spec: ReportSpec) -> Step:
        report_id = self._in_flight_match(job)
        if report_id is None:
            wait = self._quota(job, "createReport", report_spec)
            if wait:
                return self._again(job, wait)
            body: dict[str, Any] = {"reportType": job.report_type, "marketplaceIds": job.marketplace_ids}
            if report_spec.window is not WindowKind.SNAPSHOT:
                body.update(dataStartTime=job.window_start, dataEndTime=job.window_end)
            if report_spec.window is WindowKind.DAY and report_spec.format is ReportFormat.JSON:
                body["reportOptions"] = {"dateGranularity": "DAY", "asinGranularity": "CHILD"}
            report_id = self._spapi.create_report(job.seller, job.region, body)
            count("ReportsRequested")
        job.report_id = report_id
        job.status = JobStatus.WAITING
        job.polls = 0
        job.next_check_at = clock.epoch_seconds() + FIRST_CHECK_SECONDS
        if not self._jobs.save(job):
            return Step(job.status)  # a twin delivery got here first and carries on
        self._jobs.remember_report_id(job)
        return Step(JobStatus.WAITING, FIRST_CHECK_SECONDS, job.version)

    def _in_flight_match(self, job: Job) -> str | None:
        """A report of the same type, window and marketplaces already requested (by a crashed earlier
        attempt): reuse it instead of spending createReport quota (Airbyte does the same)."""
        if self._quota(job, "getReports", None):
            return None
        listing = self._spapi.get_reports(job.seller, job.region, {
            "reportTypes": job.report_type, "processingStatuses": ",".join(IN_FLIGHT),
            "marketplaceIds": ",".join(job.marketplace_ids)})
        for report in listing.get("reports", []):
            if _same_window(report, job):
                return str(report["reportId"])
        return None

    # --- checking -----------------------------------------------------------------------------

    def _check(self, job: Job, report_spec: ReportSpec) -> Step:
        wait = self._quota(job, "getReport", None)
        if wait:
            return self._again(job, wait)
        assert job.report_id is not None
        report = self._spapi.get_report(job.seller, job.region, job.report_id)
        status = report["processingStatus"]
        if status in IN_FLIGHT:
            job.polls += 1
            # 30 s, 60 s, 120 s ... capped at SQS's 15 minutes; a notification resumes it sooner.
            return self._again(job, min(MAX_DELAY_SECONDS, FIRST_CHECK_SECONDS * 2 ** job.polls))
        if status == "CANCELLED":
            return self._finish(job, JobStatus.NO_DATA, "cancelled by Amazon: no data for this window")
        if status == "FATAL":
            return self._fatal(job, report, report_spec)
        document_id = report.get("reportDocumentId")
        if not document_id:
            return self._finish(job, JobStatus.NO_DATA, "DONE without a document")
        retry = self._store(job, report_spec, job.report_id, str(document_id), _name(job))
        return retry or self._finish(job, JobStatus.DONE, None)

    def _fatal(self, job: Job, report: dict[str, Any], report_spec: ReportSpec) -> Step:
        count("ReportsFatal")
        if report.get("reportDocumentId") and job.report_id:
            try:
                self._store_error_document(job, str(report["reportDocumentId"]))
            except (DocumentDownloadFailed, DocumentCorrupt, StorageFailed, SpApiError):
                get_logger().warning("FATAL report's error document could not be kept",
                                     extra={"report_type": job.report_type})
        job.attempts += 1
        job.error = f"FATAL (report {job.report_id})"
        if job.attempts >= report_spec.max_attempts:
            count("ReportFailed")
            return self._finish(job, JobStatus.FAILED, job.error)
        job.status = JobStatus.COOLDOWN
        job.report_id = None
        cooldown = int(report_spec.fatal_cooldown.total_seconds())
        job.next_check_at = clock.epoch_seconds() + cooldown
        if not self._jobs.save(job):
            return Step(job.status)
        return Step(JobStatus.COOLDOWN, min(cooldown, MAX_DELAY_SECONDS), job.version)

    # --- settlement: discovered, never requested ------------------------------------------------

    def _discover(self, job: Job, report_spec: ReportSpec) -> Step:
        wait = self._quota(job, "getReports", None)
        if wait:
            return self._again(job, wait)
        listing = self._spapi.get_reports(job.seller, job.region, {
            "reportTypes": job.report_type, "processingStatuses": "DONE", "createdSince": job.window_start,
            "marketplaceIds": ",".join(job.marketplace_ids)})
        for report in listing.get("reports", []):
            name = str(report["reportId"])
            if self._reports.exists(job.seller, job.region, job.report_type, name):
                continue
            if not report.get("reportDocumentId"):
                continue
            retry = self._store(job, report_spec, name, str(report["reportDocumentId"]), name)
            if retry is not None:
                return retry  # not stored now (quota, download failure): look again later
        return self._finish(job, JobStatus.DONE, None)

    # --- storing ------------------------------------------------------------------------------

    def _store(self, job: Job, report_spec: ReportSpec, report_id: str, document_id: str, name: str) -> Step | None:
        """Stream one document into S3 and record its row; None when stored, else when to try again."""
        wait = self._quota(job, "getReportDocument", None)
        if wait:
            return self._again(job, wait)
        # A fresh URL on every attempt: they expire after 5 minutes.
        document = self._spapi.get_report_document(job.seller, job.region, document_id)
        key = _s3_key(job, report_spec, name)
        try:
            stored = stream_document_to_s3(
                url=document["url"], compression_label=document.get("compressionAlgorithm"), s3_client=self._s3,
                bucket=self._bucket, key=key, fallback_charset=_fallback_charset(job.marketplace_ids),
                keep_columns=report_spec.kept_columns if report_spec.format is ReportFormat.TSV else None,
                document_format=report_spec.format.value, limits=self._limits)
        except (DocumentDownloadFailed, DocumentCorrupt, StorageFailed) as exc:
            job.attempts += 1
            # The reason of a corrupt document is a fixed text (which check failed, which cap), never
            # content: it tells the operator what went wrong.
            job.error = f"DocumentCorrupt: {exc.reason}" if isinstance(exc, DocumentCorrupt) else type(exc).__name__
            if job.attempts >= MAX_DOCUMENT_ATTEMPTS:
                count("ReportFailed")
                return self._finish(job, JobStatus.FAILED, job.error)
            return self._again(job, RETRY_SECONDS)
        row = _stored_report(job, report_id=report_id, document_id=document_id, name=name, key=key, stored=stored)
        self._reports.put(row, clock.now())
        self._count_anomalies(job, report_spec, stored)
        count("ReportsStored")
        count("ReportBytes", stored.bytes_out)
        return None

    @staticmethod
    def _count_anomalies(job: Job, report_spec: ReportSpec, stored: StoredDocument) -> None:
        """Metrics for what the document held that we did not store. Counts only: no row, no line
        number, no header cell that is not shaped like a column name, no charset label."""
        # Cells not shaped like column names are never in the catalog's known_dropped: unexpected.
        unexpected = [c for c in stored.dropped_columns if c not in report_spec.known_dropped]
        if unexpected or stored.dropped_unnamed:
            count("UnexpectedColumnsDropped", len(unexpected) + stored.dropped_unnamed)
            get_logger().warning("report has columns the catalog does not know; they were not stored",
                                 extra={"report_type": job.report_type, "columns": unexpected,
                                        "unnamed_columns": stored.dropped_unnamed})
        if stored.malformed_rows:
            count("MalformedRowsDropped", stored.malformed_rows)
        if stored.charset_rejected:
            count("CharsetRejected")

    def _store_error_document(self, job: Job, document_id: str) -> None:
        document = self._spapi.get_report_document(job.seller, job.region, document_id)
        assert job.report_id is not None
        key = error_document_key(job.seller, job.region, job.report_type, job.report_id)
        stream_document_to_s3(url=document["url"], compression_label=document.get("compressionAlgorithm"),
                              s3_client=self._s3, bucket=self._bucket, key=key,
                              fallback_charset=_fallback_charset(job.marketplace_ids), keep_columns=None,
                              document_format="json", limits=self._limits)

    # --- helpers ------------------------------------------------------------------------------

    def _quota(self, job: Job, operation: str, report_spec: ReportSpec | None) -> int:
        wait = self._quotas.take_operation(job.seller, job.region, operation)
        if not wait and report_spec is not None and report_spec.app_quota is not None:
            wait = self._quotas.take_app_quota(job.report_type, report_spec.app_quota)
        return int(wait) + 1 if wait else 0

    def _again(self, job: Job, delay: float) -> Step:
        delay = max(1, min(int(delay), MAX_DELAY_SECONDS))
        job.next_check_at = clock.epoch_seconds() + delay
        if not self._jobs.save(job):
            return Step(job.status)  # another delivery moved the job on; it carries on
        return Step(job.status, delay, job.version)

    def _finish(self, job: Job, status: JobStatus, error: str | None) -> Step:
        job.status = status
        job.error = error
        job.next_check_at = 0
        # Every way a job ends comes through here (reports, Data Kiosk, settlement discovery): DONE and
        # NO_DATA move the job's coverage cursor, FAILED marks its window for a retry (a twin delivery that
        # lost the save leaves it to the winner). ENDED: the plan is gone with the connection.
        if self._jobs.save(job) and status in (JobStatus.DONE, JobStatus.NO_DATA, JobStatus.FAILED):
            self._plans.record_finished(job, status.value, clock.epoch_seconds())
        get_logger().info("report job finished", extra={"report_type": job.report_type, "status": status.value})
        return Step(status)


def _same_window(report: dict[str, Any], job: Job) -> bool:
    return (_instant(report.get("dataStartTime")) == _instant(job.window_start)
            and _instant(report.get("dataEndTime")) == _instant(job.window_end))


def _instant(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(microsecond=0)


def _name(job: Job) -> str:
    """The REPORT# row's name: the window, after its marketplace for a per-marketplace job. A later pull
    of the window (retry, restatement) has the same name: its row replaces the earlier one."""
    window = f"{job.window_start}#{job.window_end}"
    return f"{job.scope}#{window}" if job.scope else window


def _s3_key(job: Job, report_spec: ReportSpec, name: str) -> str:
    """Same window, same key: a re-pull replaces the object (PutObject and CompleteMultipartUpload replace
    atomically), it never adds a second one."""
    stem = name if report_spec.window is WindowKind.DISCOVERED else f"{job.window_start}_{job.window_end}"
    return report_key(job.seller, job.region, job.report_type, stem, report_spec.format.value,
                      marketplace_id=job.scope)


def _fallback_charset(marketplace_ids: list[str]) -> str:
    """When Content-Type names no charset: cp932 for Japan, cp1252 for Europe and the Americas."""
    japan = MARKETPLACES["JP"].marketplace_id
    return "cp932" if japan in marketplace_ids else "cp1252"


def _stored_report(job: Job, *, report_id: str, document_id: str, name: str, key: str,
                   stored: StoredDocument) -> StoredReport:
    windowed = name == _name(job)
    return StoredReport(
        seller=job.seller, region=job.region, report_type=job.report_type, name=name, report_id=report_id,
        document_id=document_id, s3_key=key, bytes=stored.bytes_out, rows=stored.rows, sha256=stored.sha256,
        source_charset=stored.source_charset, undecodable=stored.undecodable,
        dropped_columns=tuple(stored.dropped_columns), dropped_unnamed=stored.dropped_unnamed,
        malformed_rows=stored.malformed_rows, blank_lines=stored.blank_lines, nul_bytes=stored.nul_bytes,
        charset_rejected=stored.charset_rejected,
        window_start=job.window_start if windowed else None, window_end=job.window_end if windowed else None)
