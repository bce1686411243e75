"""One step of a report job. Never sleeps: a job that must wait goes back on the queue with a delay (a
self-hop), or, for a wait longer than SQS's 15 minutes or once its message has made MAX_SELF_HOPS
consecutive self-hops, is parked in the job table until the wake-jobs schedule sends it back
(report_fetcher.wakes; docs/architecture.md, "Long waits").

    NEW ──(reuse an in-flight report, else createReport)──▶ WAITING ──getReport──┬─ DONE → stream → DONE
                                                                               ├─ CANCELLED → NO_DATA
                                                                               └─ FATAL → COOLDOWN → NEW
                                                                                  (FAILED after max attempts)
    any step: connection not ACTIVE → ENDED (no Amazon call); 429/quota/5xx/token not ready → re-queue, and
    after MAX_STALL_SECONDS of re-queues without progress → EXPIRED (terminal; planning re-plans the window
    and a planner message starts the same job id again).
    403 Unauthorized → one retry with the token refresher's next token → FAILED permission_denied (the plan
    records the type, planning skips it for DENIED_RETRY_SECONDS).

Types whose source is Data Kiosk (Sales and Traffic unless the stage falls back to the Reports API) take
the same steps through Data Kiosk's operations: report_fetcher.data_kiosk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

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
from seller_insights.observability import get_logger, get_metrics, put_metric_per_type
from seller_insights.quotas import QuotaBuckets
from seller_insights.report_catalog import DataSource, ReportFormat, ReportSpec, WindowKind, source_of, spec
from seller_insights.report_gzip import DocumentLimits
from seller_insights.report_jobs import (
    DENIED_RETRY_SECONDS,
    PERMISSION_DENIED,
    Job,
    JobRepository,
    JobStatus,
    PlanRepository,
    ReportRepository,
    StoredReport,
)
from seller_insights.report_stream import StoredDocument, stream_document_to_s3
from seller_insights.repositories import ConnectionsRepository, ConnectionStatus, iso
from seller_insights.spapi import TOKEN_REFUSED, SpApiClient

FIRST_CHECK_SECONDS = 30
MAX_DELAY_SECONDS = 900  # SQS's longest message delay
RETRY_SECONDS = 60
MAX_DOCUMENT_ATTEMPTS = 5
# Below the job queue's visibility timeout (1800 s) less the longest delay (900 s) and the function's
# timeout (300 s): a copy redelivered after a lost re-queue still finds its job orphaned.
ORPHANED_AFTER_SECONDS = 300
IN_FLIGHT = ("IN_QUEUE", "IN_PROGRESS")
# A job re-queued this long without progress (quota waits, throttling, 5xx, no token) ends EXPIRED: the longest
# legitimate wait is a per-seller quota refill (minutes); six hours means something is stuck, and a fresh
# plan then asks again instead of a growing crowd of messages circling the queue.
MAX_STALL_SECONDS = 6 * 3600
WINDOWED = (WindowKind.UPDATED, WindowKind.DAY)
SETTLEMENT_PAGE_SIZE = 100  # getReports' maximum
GET_REPORTS_HORIZON = timedelta(days=90)  # getReports looks back at most 90 days
STEP_STATE = ("stalled_since", "token_retry", "discovery")  # the run's own keys in Job.extra
# Consecutive self-hops of a job (re-queued onto report_jobs by this function) before it is parked instead.
# Lambda stops an SQS -> function -> same-queue chain after about 16 hops unless the function allows it; the
# function allows it (infra/constructs/report_fetcher.py) and this bound, far below 16, is ours per job:
# a planner or wake-jobs message starts at 0, so no chain is longer than 1 + MAX_SELF_HOPS invocations.
MAX_SELF_HOPS = 10


@dataclass(frozen=True)
class Step:
    """What became of the job in this step: finished, to be looked at again after `delay` (re-queued, at
    most SQS's 15 minutes), or parked in the job table until `wake_at`."""

    status: JobStatus
    delay: int | None = None
    version: int | None = None  # the job version the re-queued message must carry
    wake_at: int | None = None  # parked: the wake-jobs schedule sends it back when due (no message now)
    # The re-queued message's consecutive self-hops (not part of what a step decides about the job: not compared).
    hops: int = field(default=0, compare=False)

    @property
    def again(self) -> bool:
        return self.delay is not None

    @property
    def parked(self) -> bool:
        return self.wake_at is not None


def count(name: str, value: float = 1) -> None:
    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_by_type(name: str, report_type: str) -> None:
    """The metric with the service dimension only (what the alarm watches), and a copy per report type."""
    count(name)
    put_metric_per_type(name, report_type, 1)


class TokenRenewals(Protocol):
    """What the fetcher may ask of the shared token cache (tokens.CachedTokensOnly): never a refresh itself."""

    def generation(self, seller: str, region: str) -> str | None: ...

    def request_renewal(self, seller: str, region: str) -> str | None: ...


class _NoTokenCache:
    """Without the shared token cache (a runner built by a test or a bench): nothing to renew; a refused job's
    one retry simply comes RETRY_SECONDS later."""

    def generation(self, seller: str, region: str) -> str | None:
        return "current"

    def request_renewal(self, seller: str, region: str) -> str | None:
        return None


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
        sales_and_traffic_source: DataSource | None = None,
        sales_and_traffic_granularity: str = "DATE",
        tokens: TokenRenewals | None = None,
    ) -> None:
        """`limits`: the caps on a report document (the stage's, through ReportFetcherSettings).
        `sales_and_traffic_source`: the stage's choice of API for Sales and Traffic (None: the catalog's,
        Data Kiosk); `sales_and_traffic_granularity`: DATE or ASIN rows for its Data Kiosk queries.
        `tokens`: the shared token cache, to ask the token refresher for an early renewal after a 403."""
        # Imported here: the Data Kiosk path builds on this module's steps.
        from report_fetcher.data_kiosk import DataKioskPath, parse_granularity  # noqa: PLC0415

        self._tokens = tokens or _NoTokenCache()
        self._jobs = jobs
        self._reports = reports
        self._plans = plans
        self._connections = connections
        self._spapi = spapi
        self._quotas = quotas
        self._s3 = s3
        self._bucket = bucket
        self._limits = limits or DocumentLimits()
        self._sales_and_traffic_source = sales_and_traffic_source
        self._kiosk = DataKioskPath(self, parse_granularity(sales_and_traffic_granularity))

    def run(self, message: Job, version: int | None = None) -> Step:
        """One step. `version` is the job version the message was sent for (None: from the planner).
        A message for an older version is a stale copy (a duplicate delivery, a poll overtaken by a
        notification, a plan that ran twice): it is dropped, so copies never multiply."""
        job = self._jobs.load_or_create(message)
        job.hops = message.hops  # the hops of the message being handled (the item has the last one sent)
        if job.status.terminal:
            # Only the planner's message (re-planning the window) starts a terminal job again, and only one
            # that expired or whose permission_denied retry time came; every other copy is stale.
            if version is None and job.restartable and self._restart(job):
                expected = job.version
            else:
                if version is None:
                    self._retell_cursor(job)
                return Step(job.status)
        else:
            expected = 0 if version is None else version  # the planner's message can only start a job
        if expected != job.version and not self._orphaned(job):
            return Step(job.status)
        job.wake_at = None  # a parked job is awake now; whatever this step saves says how it waits next
        connection = self._connections.get(job.seller, job.region)
        if connection is None or connection.status is not ConnectionStatus.ACTIVE:
            job.status = JobStatus.ENDED
            self._jobs.save(job)
            self._plans.delete(job.seller, job.region)
            return Step(JobStatus.ENDED)
        wait = job.next_check_at - clock.epoch_seconds()
        if wait > 0:  # delivered before its time: wait the rest (a hop like any other, or parked)
            return self._again(job, wait)
        report_spec = spec(job.report_type)
        try:
            if not self._token_renewed(job):
                return self._stalled(job, RETRY_SECONDS)
            if source_of(report_spec, self._sales_and_traffic_source) is DataSource.DATA_KIOSK:
                return self._kiosk.step(job, report_spec)
            if report_spec.window is WindowKind.DISCOVERED:
                return self._discover(job, report_spec)
            if job.status is JobStatus.COOLDOWN or job.report_id is None:
                return self._request(job, report_spec)
            return self._check(job, report_spec)
        except TokenUnavailable:
            return self._stalled(job, RETRY_SECONDS)
        except SpApiError as exc:
            if exc.status == 429:
                count("ReportsThrottled")
                return self._stalled(job, RETRY_SECONDS)
            if exc.status >= 500:
                return self._stalled(job, RETRY_SECONDS)
            if exc.status == 403 and exc.code in TOKEN_REFUSED:
                return self._refused(job)
            # Amazon refused the request itself (400, other 403s, 404): retrying cannot help. The job ends,
            # recorded and counted, instead of dragging its message (and other jobs) to the DLQ.
            count("ReportFailed")
            return self._finish(job, JobStatus.FAILED, f"SP-API answered {exc.status} ({exc.code})")

    # --- 403 Unauthorized: the token, or a role? --------------------------------------------------

    def _refused(self, job: Job) -> Step:
        """Amazon answers a bad token and a missing role alike (403 Unauthorized, "Access to requested resource
        is denied."), so the job tells them apart by trying once more with a token the refresher renewed
        after the refusal: refused again, the token was not the cause. The shared token is never evicted
        (other jobs keep using it); it is marked suspect, so the refresher renews it at its next run."""
        if "token_retry" not in job.extra:
            refused = self._tokens.request_renewal(job.seller, job.region)
            job.extra["token_retry"] = {"refused": refused or "", "renewed": False}
            count("ReportTokenRenewalRequested")
            return self._stalled(job, RETRY_SECONDS)
        retry_at = clock.epoch_seconds() + DENIED_RETRY_SECONDS
        self._plans.mark_denied(job.seller, job.region, job.report_type, retry_at)
        count_by_type("ReportPermissionDenied", job.report_type)
        if source_of(spec(job.report_type), self._sales_and_traffic_source) is DataSource.DATA_KIOSK:
            count("DataKioskRoleMissing")  # Data Kiosk needs the Brand Analytics role: its own alarm says so
        get_logger().warning("Amazon refused the report type: the application or the seller lacks its role",
                             extra={"report_type": job.report_type, "retry_at": iso_epoch(retry_at)})
        return self._finish(job, JobStatus.FAILED, PERMISSION_DENIED, next_check_at=retry_at)

    def _token_renewed(self, job: Job) -> bool:
        """False while a job that asked for a fresh token still finds the refused one in the shared cache."""
        retry = job.extra.get("token_retry")
        if retry is None or retry["renewed"]:
            return True
        current = self._tokens.generation(job.seller, job.region)
        if current is None or current == retry["refused"]:
            return False
        retry["renewed"] = True  # its one retry; saved with whatever this step saves
        return True

    def _restart(self, job: Job) -> bool:
        """The planner re-planned this job's window: start it over under the same id (False: a twin did)."""
        job.status = JobStatus.NEW
        job.report_id = job.error = None
        job.attempts = job.document_attempts = job.polls = job.next_check_at = 0
        for step_state in STEP_STATE:  # what the last run left; anything else in extra describes the job
            job.extra.pop(step_state, None)
        return self._jobs.save(job)

    def _retell_cursor(self, job: Job) -> None:
        """The planner sent an ended job's window again: its cursor never learned how the job ended (the
        conditional cursor write lost every race, or the function stopped between the job's save and it).
        Telling it again is harmless: a cursor that already knows changes nothing."""
        if job.status in (JobStatus.DONE, JobStatus.NO_DATA, JobStatus.FAILED):
            self._plans.record_finished(job, job.status.value, clock.epoch_seconds())

    @staticmethod
    def _orphaned(job: Job) -> bool:
        """No message carries this job any more: a step saved it and then crashed before re-queueing.
        Every live message is due within SQS's 15-minute delay of its check time, so a job this far
        overdue is adopted by whichever copy arrives (the optimistic save keeps twins from both going on)."""
        return clock.epoch_seconds() - job.next_check_at > ORPHANED_AFTER_SECONDS

    # --- requesting ---------------------------------------------------------------------------

    def _request(self, job: Job, report_spec: ReportSpec) -> Step:
        report_id = self._in_flight_match(job) if report_spec.window in WINDOWED else None
        if report_id is None:
            wait = self._quota(job, "createReport", report_spec)
            if wait:
                return self._stalled(job, wait)
            body: dict[str, Any] = {"reportType": job.report_type, "marketplaceIds": job.marketplace_ids}
            if report_spec.window is not WindowKind.SNAPSHOT:
                body.update(dataStartTime=job.window_start, dataEndTime=job.window_end)
            if report_spec.window is WindowKind.DAY and report_spec.format is ReportFormat.JSON:
                body["reportOptions"] = {"dateGranularity": "DAY", "asinGranularity": "CHILD"}
            report_id = self._spapi.create_report(job.seller, job.region, body)
            count("ReportsRequested")
        job.report_id = report_id
        job.status = JobStatus.WAITING
        job.polls = job.document_attempts = 0  # a new report: its document has not been tried yet
        job.extra.pop("stalled_since", None)
        self._schedule(job, FIRST_CHECK_SECONDS)
        if not self._jobs.save(job):
            return Step(job.status)  # a twin delivery got here first and carries on
        self._jobs.remember_report_id(job)
        return self._waiting(job)

    def _in_flight_match(self, job: Job) -> str | None:
        """A report of the same type, window and marketplaces already requested (by a crashed earlier
        attempt): reuse it instead of spending createReport quota (Airbyte does the same). Windowed types
        only: a snapshot's or a settlement's window names no data. The marketplaces must be the same set
        (Amazon's filter matches any overlap, and lists them in its own order)."""
        if self._quota(job, "getReports", None):
            return None
        listing = self._spapi.get_reports(job.seller, job.region, {
            "reportTypes": job.report_type, "processingStatuses": ",".join(IN_FLIGHT),
            "marketplaceIds": ",".join(job.marketplace_ids)})
        for report in listing.get("reports", []):
            if _same_window(report, job) and set(report.get("marketplaceIds") or ()) == set(job.marketplace_ids):
                return str(report["reportId"])
        return None

    # --- checking -----------------------------------------------------------------------------

    def _check(self, job: Job, report_spec: ReportSpec) -> Step:
        wait = self._quota(job, "getReport", None)
        if wait:
            return self._stalled(job, wait)
        assert job.report_id is not None
        report = self._spapi.get_report(job.seller, job.region, job.report_id)
        job.extra.pop("stalled_since", None)
        status = report["processingStatus"]
        if status in IN_FLIGHT:
            return self._poll_later(job)
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
        return self._cool_down(job, report_spec, f"FATAL (report {job.report_id})")

    def _poll_later(self, job: Job) -> Step:
        """Amazon is still at it: look again in 30 s, 60 s, 120 s ... capped at SQS's 15 minutes (Amazon's
        notification resumes the job sooner). Reports and Data Kiosk queries alike."""
        job.polls += 1
        return self._again(job, min(MAX_DELAY_SECONDS, FIRST_CHECK_SECONDS * 2 ** job.polls))

    def _cool_down(self, job: Job, report_spec: ReportSpec, error: str) -> Step:
        """After a FATAL report or query: FAILED once the type's attempts are spent, else wait the type's
        cooldown and request again (a new report or query)."""
        job.attempts += 1
        job.error = error
        if job.attempts >= report_spec.max_attempts:
            count("ReportFailed")
            return self._finish(job, JobStatus.FAILED, job.error)
        job.status = JobStatus.COOLDOWN
        job.report_id = None
        self._schedule(job, int(report_spec.fatal_cooldown.total_seconds()))  # hours: parked
        if not self._jobs.save(job):
            return Step(job.status)
        return self._waiting(job)

    # --- settlement: discovered, never requested ------------------------------------------------

    def _discover(self, job: Job, report_spec: ReportSpec) -> Step:
        """Every page of getReports since the window's start (the planner's, lookback included), each report stored once
        (by report id) under the marketplace it names. No marketplace filter: Amazon ignores it for settlement
        reports, so the discovery asks for all of the seller's and trusts only each report's own marketplaceIds.
        Quota-aware across pages: the page's reports still to store and the next page's token stay on the job,
        so a step that must wait resumes where it stopped instead of starting over."""
        state = job.extra.setdefault("discovery", {"pending": [], "next_token": None, "started": False})
        while True:
            while state["pending"]:
                report_id, document_id, marketplace_id = state["pending"][0]
                if not self._reports.exists(job.seller, job.region, job.report_type, report_id):
                    retry = self._store(job, report_spec, report_id, document_id, report_id,
                                        marketplace_id=marketplace_id)
                    if retry is not None:
                        return retry  # not stored now (quota, download failure): this report first, later
                state["pending"].pop(0)
            if state["started"] and not state["next_token"]:
                job.extra.pop("discovery")
                return self._finish(job, JobStatus.DONE, None)
            wait = self._quota(job, "getReports", None)
            if wait:
                return self._stalled(job, wait)
            listing = self._spapi.get_reports(job.seller, job.region, self._discovery_query(job, state))
            job.extra.pop("stalled_since", None)
            state["started"] = True
            state["next_token"] = listing.get("nextToken") or None
            seen = {entry[0] for entry in state["pending"]}
            for report in listing.get("reports", []):
                report_id = str(report["reportId"])
                if report_id in seen or not report.get("reportDocumentId"):
                    continue
                seen.add(report_id)
                marketplaces = report.get("marketplaceIds") or []
                state["pending"].append([report_id, str(report["reportDocumentId"]),
                                         str(marketplaces[0]) if marketplaces else None])

    @staticmethod
    def _discovery_query(job: Job, state: dict[str, Any]) -> dict[str, Any]:
        if state["next_token"]:
            return {"nextToken": state["next_token"]}  # with nextToken, Amazon takes no other parameter
        # The planner's window already reaches back the type's lookback (coverage.request_window).
        since = datetime.fromisoformat(job.window_start.replace("Z", "+00:00"))
        # getReports refuses a createdSince more than 90 days back; a minute's margin for the trip there.
        horizon = clock.now() - GET_REPORTS_HORIZON + timedelta(minutes=1)
        return {"reportTypes": job.report_type, "processingStatuses": "DONE", "pageSize": SETTLEMENT_PAGE_SIZE,
                "createdSince": iso(max(since, horizon))}

    # --- storing ------------------------------------------------------------------------------

    def _store(self, job: Job, report_spec: ReportSpec, report_id: str, document_id: str, name: str,
               *, marketplace_id: str | None = None) -> Step | None:
        """Stream one document into S3 and record its row; None when stored, else when to try again.
        `marketplace_id`: the one marketplace the report names, when its key is scoped to it (settlement)."""
        wait = self._quota(job, "getReportDocument", None)
        if wait:
            return self._stalled(job, wait)
        # A fresh URL on every attempt: they expire after 5 minutes.
        document = self._spapi.get_report_document(job.seller, job.region, document_id)
        key = _s3_key(job, report_spec, name, marketplace_id)
        try:
            stored = stream_document_to_s3(
                url=document["url"], compression_label=document.get("compressionAlgorithm"), s3_client=self._s3,
                bucket=self._bucket, key=key, fallback_charset=_fallback_charset(job.marketplace_ids),
                keep_columns=report_spec.kept_columns if report_spec.format is ReportFormat.TSV else None,
                document_format=report_spec.format.value, limits=self._limits)
        except (DocumentDownloadFailed, DocumentCorrupt, StorageFailed) as exc:
            # Its own counter: FATAL reports (attempts) and failed downloads never use up each other's retries.
            job.document_attempts += 1
            # The reason of a corrupt document is a fixed text (which check failed, which cap), never
            # content: it tells the operator what went wrong.
            job.error = f"DocumentCorrupt: {exc.reason}" if isinstance(exc, DocumentCorrupt) else type(exc).__name__
            if job.document_attempts >= MAX_DOCUMENT_ATTEMPTS:
                count("ReportFailed")
                return self._finish(job, JobStatus.FAILED, job.error)
            return self._again(job, RETRY_SECONDS)
        row = _stored_report(job, report_id=report_id, document_id=document_id, name=name, key=key, stored=stored)
        self._reports.put(row, clock.now())
        job.document_attempts = 0
        job.error = None
        job.extra.pop("stalled_since", None)
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

    def _stalled(self, job: Job, delay: float) -> Step:
        """Re-queue a job that could not move on (a quota, throttling, Amazon's 5xx, no token yet); one that has
        not moved for MAX_STALL_SECONDS ends EXPIRED instead, for planning to re-plan (its cursor stays)."""
        now = clock.epoch_seconds()
        since = int(job.extra.setdefault("stalled_since", now))
        if now - since >= MAX_STALL_SECONDS:
            count("ReportJobsExpired")
            return self._finish(job, JobStatus.EXPIRED, f"no progress for {MAX_STALL_SECONDS // 3600} hours")
        # A long wait (a spent app-wide quota, parked) still ends by the stall limit: the job expires on time.
        return self._again(job, min(delay, since + MAX_STALL_SECONDS - now))

    def _again(self, job: Job, delay: float) -> Step:
        self._schedule(job, max(1, int(delay)))
        if not self._jobs.save(job):
            return Step(job.status)  # another delivery moved the job on; it carries on
        return self._waiting(job)

    def hurry(self, job: Job) -> Step:
        """Amazon said the report (or query) the WAITING job waits on is finished: due now, by a message of its
        own (a self-hop after the one its delayed message made; that message becomes stale) or, out of hops,
        parked due now. A parked job is un-parked. Step(status) without a message: a twin moved it first."""
        # Due now (not 0): the superseded poll message must still count as stale, not as orphaned.
        self._schedule(job, 0)
        if not self._jobs.save(job):
            return Step(job.status)
        return self._waiting(job)

    @staticmethod
    def _schedule(job: Job, delay: int) -> None:
        """When the job is looked at next, and how: a delayed message of its own (one more self-hop) when the
        wait fits in SQS's delay and its message has hops left; else parked in the job table (`wake_at`),
        where the wake-jobs schedule finds it due and sends it with its hops back at 0."""
        job.next_check_at = clock.epoch_seconds() + delay
        if delay > MAX_DELAY_SECONDS or job.hops >= MAX_SELF_HOPS:
            job.wake_at, job.hops = job.next_check_at, 0
        else:
            job.wake_at, job.hops = None, job.hops + 1

    @staticmethod
    def _waiting(job: Job) -> Step:
        """The step of a job `_schedule`d and saved."""
        if job.wake_at is not None:
            count("ReportJobsParked")
            return Step(job.status, version=job.version, wake_at=job.wake_at)
        delay = max(0, job.next_check_at - clock.epoch_seconds())
        return Step(job.status, delay, job.version, hops=job.hops)

    def _finish(self, job: Job, status: JobStatus, error: str | None, *, next_check_at: int = 0) -> Step:
        """`next_check_at`: for a permission_denied job, when planning may start it again."""
        job.status = status
        job.error = error
        job.next_check_at = next_check_at
        if status in (JobStatus.DONE, JobStatus.NO_DATA) and "token_retry" in job.extra:
            job.extra.pop("token_retry")
        # Every way a job ends comes through here (reports, Data Kiosk, settlement discovery): DONE and
        # NO_DATA move the job's coverage cursor, FAILED marks its window for a retry (a twin delivery that
        # lost the save leaves it to the winner). ENDED and EXPIRED leave the cursor: the plan is gone with
        # the connection, or the window is still planned and is sent again.
        if not self._jobs.save(job):
            return Step(job.status)  # a twin finished it
        if status in (JobStatus.DONE, JobStatus.NO_DATA, JobStatus.FAILED):
            self._plans.record_finished(job, status.value, clock.epoch_seconds())
        if status in (JobStatus.DONE, JobStatus.NO_DATA):
            self._plans.clear_denied(job.seller, job.region, job.report_type)
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


def _s3_key(job: Job, report_spec: ReportSpec, name: str, marketplace_id: str | None = None) -> str:
    """Same window, same key: a re-pull replaces the object (PutObject and CompleteMultipartUpload replace
    atomically), it never adds a second one. `marketplace_id`: a settlement's own marketplace (else the
    job's scope)."""
    stem = name if report_spec.window is WindowKind.DISCOVERED else f"{job.window_start}_{job.window_end}"
    return report_key(job.seller, job.region, job.report_type, stem, report_spec.format.value,
                      marketplace_id=marketplace_id or job.scope)


def iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, tz=UTC))


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
