"""The Data Kiosk path of a report job (Sales and Traffic; docs/internal-contracts.md, "Data Kiosk jobs").

    NEW ──createQuery──▶ WAITING ──getQuery──┬─ DONE + dataDocumentId → getDocument → JSONL to S3 → DONE
                                            ├─ DONE without a document, or CANCELLED → NO_DATA
                                            └─ FATAL (error document kept) → COOLDOWN → NEW (FAILED after max)

The job's `report_id` holds the query id and a QUERYID# pointer finds the job when
DATA_KIOSK_QUERY_PROCESSING_FINISHED arrives. Quotas are Data Kiosk's, per seller (createQuery 0.0167/s
burst 15); the Reports API's app-wide Sales and Traffic quota does not apply. Polling backs off as for
reports. SP-API errors are not handled here: they reach JobRunner.run like the Reports path's do (429 and
5xx re-queue, a 403 takes the shared permission handling), so both paths end the same way. A type of this
path refused for permission is also counted as DataKioskRoleMissing (alarmed): the Brand Analytics role.
The stored object replaces the day's (same S3 key, same REPORT# row), so a restated day re-pulled later
overwrites, never duplicates.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from report_fetcher.service import (
    FIRST_CHECK_SECONDS,
    IN_FLIGHT,
    MAX_DOCUMENT_ATTEMPTS,
    RETRY_SECONDS,
    Step,
    count,
)
from seller_insights import clock
from seller_insights.errors import (
    ConfigurationError,
    DocumentCorrupt,
    DocumentDownloadFailed,
    SpApiError,
    StorageFailed,
)
from seller_insights.object_keys import error_document_key, report_key
from seller_insights.observability import get_logger
from seller_insights.report_catalog import ReportSpec
from seller_insights.report_jobs import Job, JobStatus, StoredReport
from seller_insights.report_stream import StoredDocument, stream_document_to_s3

if TYPE_CHECKING:
    from report_fetcher.service import JobRunner

DATASET = "analytics_salesAndTraffic_2024_04_24"
EXTENSION = "jsonl"


class Granularity(StrEnum):
    """The stage key sales_and_traffic_granularity: one row per day and marketplace (DATE) or per day,
    marketplace and child ASIN (ASIN)."""

    DATE = "DATE"
    ASIN = "ASIN"


def parse_granularity(value: str) -> Granularity:
    try:
        return Granularity(value.strip().upper())
    except ValueError:
        raise ConfigurationError(f"SALES_AND_TRAFFIC_GRANULARITY must be DATE or ASIN, got {value!r}") from None


# Every metric of the schema's row types (analytics_salesAndTraffic_2024_04_24.graphql), each with its B2B
# twin (null unless the seller sells to Amazon Business); the schema holds no buyer data, so nothing needs
# leaving out. Amounts are objects: {amount currencyCode}.
def _metrics(plain: str, amounts: str = "", *, without_twin: str = "") -> str:
    amount = "{amount currencyCode}"
    fields = [f"{name}{suffix}" for name in plain.split() for suffix in ("", "B2B")]
    fields += [f"{name}{suffix}{amount}" for name in amounts.split() for suffix in ("", "B2B")]
    return " ".join([*fields, *without_twin.split()])


_BY_DATE_SALES = _metrics("averageUnitsPerOrderItem claimsGranted ordersShipped refundRate totalOrderItems "
                          "unitsOrdered unitsRefunded unitsShipped",
                          "averageSalesPerOrderItem averageSellingPrice claimsAmount orderedProductSales "
                          "shippedProductSales")
_BY_DATE_TRAFFIC = _metrics("browserPageViews browserSessions buyBoxPercentage feedbackReceived mobileAppPageViews "
                            "mobileAppSessions negativeFeedbackReceived orderItemSessionPercentage pageViews "
                            "receivedNegativeFeedbackRate sessions unitSessionPercentage",
                            without_twin="averageOfferCount averageParentItems")
_BY_ASIN_SALES = _metrics("ordersShipped refundRate totalOrderItems unitsOrdered unitsRefunded unitsShipped",
                          "orderedProductSales shippedProductSales")
_BY_ASIN_TRAFFIC = _metrics("browserPageViews browserPageViewsPercentage browserSessionPercentage browserSessions "
                            "buyBoxPercentage mobileAppPageViews mobileAppPageViewsPercentage "
                            "mobileAppSessionPercentage mobileAppSessions pageViews pageViewsPercentage "
                            "sessionPercentage sessions unitSessionPercentage")
QUERIES: dict[Granularity, tuple[str, str, str]] = {
    # granularity: (query, aggregateBy, selection)
    Granularity.DATE: ("salesAndTrafficByDate", "DAY",
                       f"marketplaceId startDate endDate sales{{{_BY_DATE_SALES}}} traffic{{{_BY_DATE_TRAFFIC}}}"),
    Granularity.ASIN: ("salesAndTrafficByAsin", "CHILD",
                       "marketplaceId startDate endDate parentAsin childAsin sku "
                       f"sales{{{_BY_ASIN_SALES}}} traffic{{{_BY_ASIN_TRAFFIC}}}"),
}


def build_query(granularity: Granularity, first_day: date, last_day: date, marketplace_id: str) -> str:
    """The createQuery `query` for the days [first_day, last_day] (both included) of one marketplace. By ASIN,
    Amazon sums the whole range per ASIN: the planner's DAY windows make that one day."""
    if not marketplace_id.isalnum():  # it goes into the query text: only an identifier may
        raise ValueError("a marketplace id is letters and digits")
    name, aggregate, selection = QUERIES[granularity]
    return (f'query {{{DATASET}{{{name}(startDate:"{first_day.isoformat()}" endDate:"{last_day.isoformat()}" '
            f'aggregateBy:{aggregate} marketplaceIds:["{marketplace_id}"]){{{selection}}}}}}}')


def job_days(job: Job) -> tuple[date, date]:
    """The UTC days a DAY-window job covers: from its start to the day before its (exclusive) end."""
    start = datetime.fromisoformat(job.window_start.replace("Z", "+00:00")).date()
    end = datetime.fromisoformat(job.window_end.replace("Z", "+00:00"))
    last = (end - timedelta(microseconds=1)).date()
    return start, max(start, last)


def document_key(job: Job) -> str:
    """One object per (job window, marketplace): a re-pulled day replaces it (S3's atomic replace)."""
    return report_key(job.seller, job.region, job.report_type, f"{job.window_start}_{job.window_end}", EXTENSION,
                      marketplace_id=job.marketplace_ids[0])


class DataKioskPath:
    """The steps of a DATA_KIOSK job; JobRunner calls `step` and handles what it raises."""

    def __init__(self, runner: JobRunner, granularity: Granularity) -> None:
        self._runner = runner
        self._granularity = granularity

    def step(self, job: Job, report_spec: ReportSpec) -> Step:
        if len(job.marketplace_ids) != 1:
            # Data Kiosk takes one marketplace per query: the type must be planned per marketplace.
            count("ReportFailed")
            return self._runner._finish(job, JobStatus.FAILED, "Data Kiosk needs one marketplace per job")
        if job.status is JobStatus.COOLDOWN or job.report_id is None:
            return self._request(job)
        return self._check(job, report_spec)

    def _request(self, job: Job) -> Step:
        runner = self._runner
        wait = runner._quota(job, "createQuery", None)
        if wait:
            return runner._stalled(job, wait)
        first, last = job_days(job)
        query = build_query(self._granularity, first, last, job.marketplace_ids[0])
        # A 403 takes JobRunner.run's shared handling: one retry with a renewed token, then permission_denied
        # (and DataKioskRoleMissing: the Brand Analytics role is missing).
        query_id = runner._spapi.create_query(job.seller, job.region, query)
        count("QueriesRequested")
        job.report_id = query_id
        job.status = JobStatus.WAITING
        job.polls = job.document_attempts = 0  # a new query: its document has not been tried yet
        job.extra.pop("stalled_since", None)
        runner._schedule(job, FIRST_CHECK_SECONDS)
        if not runner._jobs.save(job):
            return Step(job.status)  # a twin delivery got here first and carries on
        runner._jobs.remember_query_id(job)
        return runner._waiting(job)

    def _check(self, job: Job, report_spec: ReportSpec) -> Step:
        runner = self._runner
        wait = runner._quota(job, "getQuery", None)
        if wait:
            return runner._stalled(job, wait)
        assert job.report_id is not None
        query = runner._spapi.get_query(job.seller, job.region, job.report_id)
        job.extra.pop("stalled_since", None)
        status = query["processingStatus"]
        if status in IN_FLIGHT:
            return runner._poll_later(job)
        if status == "CANCELLED":
            return runner._finish(job, JobStatus.NO_DATA, "query cancelled: no data for this window")
        if status == "FATAL":
            return self._fatal(job, query, report_spec)
        document_id = query.get("dataDocumentId")
        if not document_id:
            # Amazon: DONE without a data document means no data for the dates asked.
            return runner._finish(job, JobStatus.NO_DATA, "DONE without a document: no data for this window")
        retry = self._store(job, str(document_id))
        return retry or runner._finish(job, JobStatus.DONE, None)

    def _fatal(self, job: Job, query: dict[str, Any], report_spec: ReportSpec) -> Step:
        runner = self._runner
        count("ReportsFatal")
        if query.get("errorDocumentId") and job.report_id:
            try:
                self._keep_error_document(job, str(query["errorDocumentId"]))
            except (DocumentDownloadFailed, DocumentCorrupt, StorageFailed, SpApiError):
                get_logger().warning("FATAL query's error document could not be kept",
                                     extra={"report_type": job.report_type})
        return runner._cool_down(job, report_spec, f"FATAL (query {job.report_id})")

    def _store(self, job: Job, document_id: str) -> Step | None:
        """The JSONL document streamed into the day's object and its REPORT# row; None when stored."""
        runner = self._runner
        wait = runner._quota(job, "getDocument", None)
        if wait:
            return runner._stalled(job, wait)
        document = runner._spapi.get_query_document(job.seller, job.region, document_id)  # a fresh URL each time
        key = document_key(job)
        try:
            stored = self._stream(document, key)
        except (DocumentDownloadFailed, DocumentCorrupt, StorageFailed) as exc:
            # Its own counter, as for reports: FATAL queries and failed downloads never use up each other's.
            job.document_attempts += 1
            job.error = f"DocumentCorrupt: {exc.reason}" if isinstance(exc, DocumentCorrupt) else type(exc).__name__
            if job.document_attempts >= MAX_DOCUMENT_ATTEMPTS:
                count("ReportFailed")
                return runner._finish(job, JobStatus.FAILED, job.error)
            return runner._again(job, RETRY_SECONDS)
        assert job.report_id is not None
        runner._reports.put(_row(job, job.report_id, document_id, key, stored), clock.now())
        job.document_attempts = 0
        job.error = None
        job.extra.pop("stalled_since", None)
        count("ReportsStored")
        count("ReportBytes", stored.bytes_out)
        return None

    def _stream(self, document: dict[str, Any], key: str) -> StoredDocument:
        runner = self._runner
        # Data Kiosk says compression with Content-Encoding only; the stream goes by the bytes anyway.
        return stream_document_to_s3(url=str(document["documentUrl"]), compression_label=None,
                                     s3_client=runner._s3, bucket=runner._bucket, key=key,
                                     fallback_charset="utf-8", keep_columns=None, document_format="jsonl",
                                     limits=runner._limits)

    def _keep_error_document(self, job: Job, document_id: str) -> None:
        document = self._runner._spapi.get_query_document(job.seller, job.region, document_id)
        assert job.report_id is not None
        key = error_document_key(job.seller, job.region, job.report_type, job.report_id)
        stream_document_to_s3(url=str(document["documentUrl"]), compression_label=None, s3_client=self._runner._s3,
                              bucket=self._runner._bucket, key=key, fallback_charset="utf-8", keep_columns=None,
                              document_format="json", limits=self._runner._limits)


def _row(job: Job, query_id: str, document_id: str, key: str, stored: StoredDocument) -> StoredReport:
    """The window's REPORT# row, named `{marketplace}#{window_start}#{window_end}` like its key: a restated day's
    row is replaced, not added, and the marketplaces of one day never share a row."""
    name = f"{job.marketplace_ids[0]}#{job.window_start}#{job.window_end}"
    return StoredReport(
        seller=job.seller, region=job.region, report_type=job.report_type, name=name,
        report_id=query_id, document_id=document_id, s3_key=key, bytes=stored.bytes_out, rows=stored.rows,
        sha256=stored.sha256, source_charset=stored.source_charset, undecodable=stored.undecodable,
        dropped_columns=(), nul_bytes=stored.nul_bytes, window_start=job.window_start, window_end=job.window_end)
