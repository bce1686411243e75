"""The report job's state machine (report_fetcher.service.JobRunner): what one step decides, given the job
as stored, the connection, the quotas and what Amazon answers. Collaborators are in-memory stand-ins with
the repositories' contracts (optimistic versions for jobs); the clock is the product's, fixed."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from report_fetcher import service
from report_fetcher.service import (
    DENIED_RETRY_SECONDS,
    FIRST_CHECK_SECONDS,
    MAX_DELAY_SECONDS,
    MAX_DOCUMENT_ATTEMPTS,
    MAX_SELF_HOPS,
    MAX_STALL_SECONDS,
    ORPHANED_AFTER_SECONDS,
    RETRY_SECONDS,
    JobRunner,
    Step,
)
from seller_insights.clock import FixedClock
from seller_insights.errors import DocumentCorrupt, SpApiError, TokenUnavailable
from seller_insights.report_catalog import (
    CATALOG,
    FBA_RETURNS,
    LISTINGS,
    ORDERS,
    SALES_AND_TRAFFIC,
    SETTLEMENT,
    DataSource,
    WindowKind,
)
from seller_insights.report_jobs import Job, JobStatus, StoredReport, job_id
from seller_insights.report_stream import StoredDocument
from seller_insights.repositories import Connection, ConnectionStatus, iso

SELLER, REGION, US = "A1UNITSELLER01", "NA", "ATVPDKIKX0DER"


# --- stand-ins ------------------------------------------------------------------------------------


class Jobs:
    """JobRepository's contract: a save succeeds only over the version it read."""

    def __init__(self) -> None:
        self.stored: dict[str, Job] = {}
        self.report_ids: dict[str, str] = {}
        self.refuse_saves = False

    def load_or_create(self, job: Job) -> Job:
        if job.job_id not in self.stored:
            self.stored[job.job_id] = copy.deepcopy(job)
            return job
        return copy.deepcopy(self.stored[job.job_id])

    def save(self, job: Job) -> bool:
        expected = job.version
        job.version += 1
        current = self.stored.get(job.job_id)
        if self.refuse_saves or (current is not None and current.version != expected):
            return False
        self.stored[job.job_id] = copy.deepcopy(job)
        return True

    def remember_report_id(self, job: Job) -> None:
        assert job.report_id is not None
        self.report_ids[job.report_id] = job.job_id


@dataclass
class Reports:
    rows: list[StoredReport] = field(default_factory=list)
    present: set[str] = field(default_factory=set)

    def put(self, report: StoredReport, stored_at: Any) -> None:
        self.rows.append(report)
        self.present.add(report.name)

    def exists(self, seller: str, region: str, report_type: str, name: str) -> bool:
        return name in self.present


@dataclass
class Plans:
    deleted: list[tuple[str, str]] = field(default_factory=list)
    denied: dict[str, int] = field(default_factory=dict)
    cleared: list[str] = field(default_factory=list)
    finished: list[tuple[str, str]] = field(default_factory=list)  # (job id, status) told to the cursor

    def delete(self, seller: str, region: str) -> None:
        self.deleted.append((seller, region))

    def mark_denied(self, seller: str, region: str, report_type: str, retry_at: int) -> None:
        self.denied[report_type] = retry_at

    def clear_denied(self, seller: str, region: str, report_type: str) -> bool:
        self.cleared.append(report_type)
        return self.denied.pop(report_type, None) is not None


    def record_finished(self, job: Job, status: str, now: int) -> bool:
        self.finished.append((job.job_id, status))
        return True


@dataclass
class Tokens:
    """The shared token cache as the fetcher sees it: a generation that the token refresher moves."""

    current: str | None = "gen-1"
    renewals: int = 0

    def generation(self, seller: str, region: str) -> str | None:
        return self.current

    def request_renewal(self, seller: str, region: str) -> str | None:
        self.renewals += 1
        return self.current


@dataclass
class Connections:
    status: ConnectionStatus | None = ConnectionStatus.ACTIVE

    def get(self, seller: str, region: str) -> Connection | None:
        if self.status is None:
            return None
        return Connection(seller, region, self.status, "2026-11-01T00:00:00Z", "2027-11-01T00:00:00Z", "US",
                          "2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z", True)


@dataclass
class Quotas:
    """Seconds to wait per operation (0: a token was taken), and for the app-wide quota."""

    waits: dict[str, float] = field(default_factory=dict)
    app_wait: float = 0.0
    taken: list[str] = field(default_factory=list)
    script: dict[str, list[float]] = field(default_factory=dict)  # answers taken in turn, before `waits`

    def take_operation(self, seller: str, region: str, operation: str) -> float:
        self.taken.append(operation)
        if self.script.get(operation):
            return self.script[operation].pop(0)
        return self.waits.get(operation, 0.0)

    def take_app_quota(self, report_type: str, quota: Any) -> float:
        self.taken.append(f"app:{report_type}")
        return self.app_wait


@dataclass
class Amazon:
    """SpApiClient's report calls: answers set by the test, calls recorded."""

    listing: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None
    created: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    pages: dict[str | None, dict[str, Any]] | None = None  # getReports' answer per nextToken (None: first)
    queries: list[dict[str, Any]] = field(default_factory=list)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.error is not None:
            raise self.error

    def get_reports(self, seller: str, region: str, query: dict[str, str]) -> dict[str, Any]:
        self._call("getReports")
        self.queries.append(dict(query))
        if self.pages is not None:
            return self.pages[query.get("nextToken")]
        return {"reports": self.listing}

    def create_report(self, seller: str, region: str, body: dict[str, Any]) -> str:
        self._call("createReport")
        self.created.append(body)
        return "REPORT-NEW"

    def get_report(self, seller: str, region: str, report_id: str) -> dict[str, Any]:
        self._call("getReport")
        return self.report

    def get_report_document(self, seller: str, region: str, document_id: str) -> dict[str, Any]:
        self._call("getReportDocument")
        return {"url": f"https://documents.example.com/{document_id}", "compressionAlgorithm": "GZIP"}


@dataclass
class Fetcher:
    runner: JobRunner
    jobs: Jobs
    reports: Reports
    plans: Plans
    connections: Connections
    quotas: Quotas
    amazon: Amazon
    clock: FixedClock
    tokens: Tokens


@pytest.fixture
def fetcher(fixed_clock: FixedClock) -> Fetcher:
    jobs, reports, plans, connections, quotas, amazon = Jobs(), Reports(), Plans(), Connections(), Quotas(), Amazon()
    tokens = Tokens()
    runner = JobRunner(jobs=jobs, reports=reports, plans=plans, connections=connections,
                       spapi=amazon, quotas=quotas, s3=None, bucket="data", tokens=tokens)
    return Fetcher(runner, jobs, reports, plans, connections, quotas, amazon, fixed_clock, tokens)


def new_job(f: Fetcher, report_type: str = ORDERS) -> Job:
    start, end = CATALOG[report_type].window_for(f.clock.now())
    window_start, window_end = iso(start), iso(end)
    return Job(job_id(SELLER, REGION, report_type, window_start, window_end), SELLER, REGION, report_type,
               window_start, window_end, [US])


def stored_as(f: Fetcher, job: Job, **changes: Any) -> Job:
    """The job as a previous step left it in the table."""
    stored = copy.deepcopy(job)
    for name, value in changes.items():
        setattr(stored, name, value)
    f.jobs.stored[job.job_id] = stored
    return stored


def now(f: Fetcher) -> int:
    return int(f.clock.now().timestamp())


# --- starting a job -------------------------------------------------------------------------------


def test_a_new_job_requests_its_window_and_checks_back_in_thirty_seconds(fetcher: Fetcher) -> None:
    job = new_job(fetcher)

    step = fetcher.runner.run(job)

    assert step == Step(JobStatus.WAITING, FIRST_CHECK_SECONDS, 1)
    assert fetcher.amazon.created == [{"reportType": ORDERS, "marketplaceIds": [US],
                                       "dataStartTime": job.window_start, "dataEndTime": job.window_end}]
    saved = fetcher.jobs.stored[job.job_id]
    assert (saved.status, saved.report_id, saved.next_check_at) == (
        JobStatus.WAITING, "REPORT-NEW", now(fetcher) + FIRST_CHECK_SECONDS)
    assert fetcher.jobs.report_ids == {"REPORT-NEW": job.job_id}


def reports_fallback(f: Fetcher) -> None:
    """The stage chose the Reports API for Sales and Traffic (sales_and_traffic_source = REPORTS)."""
    f.runner = JobRunner(jobs=f.jobs, reports=f.reports, plans=f.plans, connections=f.connections,
                         spapi=f.amazon, quotas=f.quotas, s3=None, bucket="data",  # type: ignore[arg-type]
                         tokens=f.tokens, sales_and_traffic_source=DataSource.REPORTS)


def test_a_snapshot_names_no_window_and_a_daily_json_report_asks_for_daily_child_asins(fetcher: Fetcher) -> None:
    reports_fallback(fetcher)  # Sales and Traffic through Data Kiosk: tests/unit/test_data_kiosk_jobs.py
    fetcher.runner.run(new_job(fetcher, LISTINGS))
    fetcher.runner.run(new_job(fetcher, SALES_AND_TRAFFIC))

    listings, sales = fetcher.amazon.created
    assert "dataStartTime" not in listings and "dataEndTime" not in listings
    assert sales["reportOptions"] == {"dateGranularity": "DAY", "asinGranularity": "CHILD"}
    assert "dataStartTime" in sales
    # Sales and traffic also spends the application-wide quota; listings does not.
    assert fetcher.quotas.taken.count(f"app:{SALES_AND_TRAFFIC}") == 1
    assert f"app:{LISTINGS}" not in fetcher.quotas.taken


def test_a_report_already_in_flight_for_the_same_window_is_reused(fetcher: Fetcher) -> None:
    job = new_job(fetcher)
    # Amazon writes the instants its own way (milliseconds, +00:00): still the same window.
    start = job.window_start.replace("Z", ".000+00:00")
    fetcher.amazon.listing = [
        {"reportId": "OTHER-WINDOW", "dataStartTime": job.window_end, "dataEndTime": job.window_end,
         "marketplaceIds": [US]},
        {"reportId": "IN-FLIGHT", "dataStartTime": start, "dataEndTime": job.window_end, "marketplaceIds": [US]},
    ]

    step = fetcher.runner.run(job)

    assert step.status is JobStatus.WAITING
    assert fetcher.amazon.created == []
    assert fetcher.jobs.stored[job.job_id].report_id == "IN-FLIGHT"


def test_no_create_quota_puts_the_job_back_for_the_wait_rounded_up(fetcher: Fetcher) -> None:
    fetcher.quotas.waits = {"createReport": 12.3}
    job = new_job(fetcher)

    step = fetcher.runner.run(job)

    assert step == Step(JobStatus.NEW, 13, 1)
    assert "createReport" not in fetcher.amazon.calls
    assert fetcher.jobs.stored[job.job_id].next_check_at == now(fetcher) + 13


def test_an_app_quota_wait_longer_than_sqs_allows_is_parked(fetcher: Fetcher) -> None:
    reports_fallback(fetcher)  # the app-wide quota is the Reports API path's only
    fetcher.quotas.app_wait = 5 * 3600.0
    job = new_job(fetcher, SALES_AND_TRAFFIC)

    step = fetcher.runner.run(job)

    # No message (SQS delays 15 minutes at most): the job item waits, due when the quota has refilled.
    assert not step.again and step.wake_at == now(fetcher) + 5 * 3600 + 1
    assert fetcher.jobs.stored[job.job_id].wake_at == step.wake_at
    assert fetcher.amazon.created == []


# --- which deliveries act ---------------------------------------------------------------------------


def test_a_terminal_job_is_left_alone(fetcher: Fetcher) -> None:
    job = new_job(fetcher)
    stored_as(fetcher, job, status=JobStatus.DONE, version=4)

    assert fetcher.runner.run(job, version=4) == Step(JobStatus.DONE)
    assert fetcher.amazon.calls == []


def test_a_copy_for_an_older_version_is_dropped(fetcher: Fetcher) -> None:
    job = new_job(fetcher)
    stored_as(fetcher, job, status=JobStatus.WAITING, report_id="R1", version=3, next_check_at=now(fetcher) + 60)

    assert fetcher.runner.run(job, version=2) == Step(JobStatus.WAITING)
    assert fetcher.runner.run(job) == Step(JobStatus.WAITING)  # the planner's copy of a started job
    assert fetcher.amazon.calls == []
    assert fetcher.jobs.stored[job.job_id].version == 3


def test_an_orphaned_job_is_adopted_by_whichever_copy_arrives(fetcher: Fetcher) -> None:
    job = new_job(fetcher)
    overdue = now(fetcher) - ORPHANED_AFTER_SECONDS - 1
    stored_as(fetcher, job, status=JobStatus.WAITING, report_id="R1", version=3, next_check_at=overdue)
    fetcher.amazon.report = {"processingStatus": "CANCELLED"}

    assert fetcher.runner.run(job, version=1) == Step(JobStatus.NO_DATA)
    assert fetcher.amazon.calls == ["getReport"]


def test_a_job_not_overdue_enough_is_not_adopted(fetcher: Fetcher) -> None:
    job = new_job(fetcher)
    stored_as(fetcher, job, status=JobStatus.WAITING, report_id="R1", version=3,
              next_check_at=now(fetcher) - ORPHANED_AFTER_SECONDS)

    assert fetcher.runner.run(job, version=1) == Step(JobStatus.WAITING)
    assert fetcher.amazon.calls == []


def test_a_delivery_before_its_time_waits_the_rest(fetcher: Fetcher) -> None:
    job = new_job(fetcher)
    stored_as(fetcher, job, status=JobStatus.WAITING, report_id="R1", version=2, next_check_at=now(fetcher) + 45)

    # A re-queue like any other (a hop, saved with the hops of its message).
    assert fetcher.runner.run(job, version=2) == Step(JobStatus.WAITING, 45, 3)
    assert fetcher.jobs.stored[job.job_id].next_check_at == now(fetcher) + 45
    assert fetcher.amazon.calls == []


@pytest.mark.parametrize("status", [None, ConnectionStatus.REVOKED, ConnectionStatus.DELETION_REQUESTED,
                                    ConnectionStatus.TOKENS_REMOVED])
def test_a_connection_that_is_not_active_ends_the_job_without_calling_amazon(
    fetcher: Fetcher, status: ConnectionStatus | None
) -> None:
    fetcher.connections.status = status
    job = new_job(fetcher)

    assert fetcher.runner.run(job) == Step(JobStatus.ENDED)
    assert fetcher.amazon.calls == [] and fetcher.quotas.taken == []
    assert fetcher.jobs.stored[job.job_id].status is JobStatus.ENDED
    assert fetcher.plans.deleted == [(SELLER, REGION)]


def test_a_twin_that_saved_first_carries_on_alone(fetcher: Fetcher) -> None:
    fetcher.jobs.refuse_saves = True

    step = fetcher.runner.run(new_job(fetcher))

    assert step == Step(JobStatus.WAITING)
    assert not step.again
    assert fetcher.jobs.report_ids == {}


# --- checking -------------------------------------------------------------------------------------


def waiting(f: Fetcher, report_type: str = ORDERS, **changes: Any) -> tuple[Job, int]:
    job = new_job(f, report_type)
    stored = stored_as(f, job, **{"status": JobStatus.WAITING, "report_id": "R1", "version": 1,
                                  "next_check_at": now(f), **changes})
    return job, stored.version


def test_polls_back_off_from_thirty_seconds_to_sqs_longest_delay(fetcher: Fetcher) -> None:
    fetcher.amazon.report = {"processingStatus": "IN_PROGRESS"}
    job, version = waiting(fetcher)
    delays = []
    for _ in range(7):
        step = fetcher.runner.run(job, version=version)
        assert step.again and step.version is not None
        delays.append(step.delay)
        version = step.version
        fetcher.clock.advance(step.delay or 0)

    assert delays == [60, 120, 240, 480, MAX_DELAY_SECONDS, MAX_DELAY_SECONDS, MAX_DELAY_SECONDS]
    assert fetcher.jobs.stored[job.job_id].polls == 7


@pytest.mark.parametrize(("answer", "error"), [
    ({"processingStatus": "CANCELLED"}, "cancelled by Amazon: no data for this window"),
    ({"processingStatus": "DONE"}, "DONE without a document"),
])
def test_no_data_ends_the_job(fetcher: Fetcher, answer: dict[str, Any], error: str) -> None:
    fetcher.amazon.report = answer
    job, version = waiting(fetcher)

    assert fetcher.runner.run(job, version=version) == Step(JobStatus.NO_DATA)
    saved = fetcher.jobs.stored[job.job_id]
    assert (saved.status, saved.error, saved.next_check_at) == (JobStatus.NO_DATA, error, 0)


def test_fatal_cools_down_for_the_types_cooldown_then_requests_again(fetcher: Fetcher) -> None:
    fetcher.amazon.report = {"processingStatus": "FATAL"}
    job, version = waiting(fetcher, FBA_RETURNS)
    cooldown = int(CATALOG[FBA_RETURNS].fatal_cooldown.total_seconds())

    step = fetcher.runner.run(job, version=version)

    # Hours: parked in the job table, not sixteen 15-minute hops.
    assert step == Step(JobStatus.COOLDOWN, None, version + 1, wake_at=now(fetcher) + cooldown)
    saved = fetcher.jobs.stored[job.job_id]
    assert (saved.attempts, saved.report_id, saved.next_check_at) == (1, None, now(fetcher) + cooldown)
    assert saved.wake_at == now(fetcher) + cooldown
    assert saved.error == "FATAL (report R1)"

    # A stale copy meanwhile is dropped; woken at the cooldown's end, it requests again.
    fetcher.clock.advance(MAX_DELAY_SECONDS)
    assert fetcher.runner.run(job, version=version) == Step(JobStatus.COOLDOWN)
    fetcher.clock.advance(cooldown - MAX_DELAY_SECONDS)
    assert fetcher.runner.run(job, version=wake(fetcher, job)).status is JobStatus.WAITING
    assert len(fetcher.amazon.created) == 1
    assert fetcher.jobs.stored[job.job_id].wake_at is None


def test_fatal_too_often_fails_the_job(fetcher: Fetcher) -> None:
    fetcher.amazon.report = {"processingStatus": "FATAL"}
    max_attempts = CATALOG[ORDERS].max_attempts
    job, version = waiting(fetcher, attempts=max_attempts - 1)

    assert fetcher.runner.run(job, version=version) == Step(JobStatus.FAILED)
    assert fetcher.jobs.stored[job.job_id].attempts == max_attempts


@pytest.mark.parametrize(("error", "expected"), [
    (SpApiError(429, "QuotaExceeded"), Step(JobStatus.WAITING, RETRY_SECONDS, 2)),
    (SpApiError(503, "ServiceUnavailable"), Step(JobStatus.WAITING, RETRY_SECONDS, 2)),
    (TokenUnavailable("no fresh token"), Step(JobStatus.WAITING, RETRY_SECONDS, 2)),
    (SpApiError(403, "AccessDenied"), Step(JobStatus.FAILED)),  # a 403 that does not say Unauthorized
    (SpApiError(400, "InvalidInput"), Step(JobStatus.FAILED)),
])
def test_amazon_errors_retry_or_end_the_job(fetcher: Fetcher, error: Exception, expected: Step) -> None:
    fetcher.amazon.error = error
    job, version = waiting(fetcher)

    assert fetcher.runner.run(job, version=version) == expected
    saved = fetcher.jobs.stored[job.job_id]
    if expected.again:
        assert saved.next_check_at == now(fetcher) + RETRY_SECONDS and saved.error is None
        assert saved.extra == {"stalled_since": now(fetcher)}
    else:
        assert saved.error == f"SP-API answered {error.status} ({error.code})"


# --- storing --------------------------------------------------------------------------------------


STORED = StoredDocument(bytes_in=10, bytes_out=20, rows=2, sha256="0" * 64, source_charset="cp1252",
                        undecodable=0, dropped_columns=("buyer-name",), parts=1)


class DocumentStream:
    """Stands in for the streaming into S3: records each call; raises the queued outcomes, then stores."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failures: list[Exception] = []

    def __call__(self, **kwargs: Any) -> StoredDocument:
        self.calls.append(kwargs)
        if self.failures:
            raise self.failures.pop(0)
        return STORED


@pytest.fixture
def documents(monkeypatch: pytest.MonkeyPatch) -> DocumentStream:
    stream = DocumentStream()
    monkeypatch.setattr(service, "stream_document_to_s3", stream)
    return stream


def test_a_finished_report_is_stored_with_its_window(fetcher: Fetcher, documents: DocumentStream) -> None:
    fetcher.amazon.report = {"processingStatus": "DONE", "reportDocumentId": "DOC-1"}
    job, version = waiting(fetcher)

    assert fetcher.runner.run(job, version=version) == Step(JobStatus.DONE)
    (streamed,) = documents.calls
    assert streamed["keep_columns"] == CATALOG[ORDERS].kept_columns
    assert streamed["fallback_charset"] == "cp1252" and streamed["document_format"] == "tsv"
    (row,) = fetcher.reports.rows
    assert (row.report_id, row.document_id, row.window_start, row.window_end, row.rows) == (
        "R1", "DOC-1", job.window_start, job.window_end, 2)
    assert row.s3_key == streamed["key"]


def test_a_corrupt_document_is_retried_then_fails_the_job(fetcher: Fetcher, documents: DocumentStream) -> None:
    documents.failures = [DocumentCorrupt("truncated gzip stream") for _ in range(MAX_DOCUMENT_ATTEMPTS)]
    fetcher.amazon.report = {"processingStatus": "DONE", "reportDocumentId": "DOC-1"}
    job, version = waiting(fetcher)

    steps = []
    for _ in range(MAX_DOCUMENT_ATTEMPTS):
        step = fetcher.runner.run(job, version=version)
        steps.append(step)
        version = step.version or version
        fetcher.clock.advance(RETRY_SECONDS)

    assert [s.delay for s in steps[:-1]] == [RETRY_SECONDS] * (MAX_DOCUMENT_ATTEMPTS - 1)
    assert steps[-1] == Step(JobStatus.FAILED)
    assert fetcher.jobs.stored[job.job_id].error == "DocumentCorrupt: truncated gzip stream"
    assert fetcher.reports.rows == []
    # A fresh document URL for every attempt: they expire.
    assert fetcher.amazon.calls.count("getReportDocument") == MAX_DOCUMENT_ATTEMPTS


def test_settlement_stores_the_reports_it_has_not_stored_yet(fetcher: Fetcher, documents: DocumentStream) -> None:
    assert CATALOG[SETTLEMENT].window is WindowKind.DISCOVERED
    fetcher.amazon.listing = [{"reportId": "S1", "reportDocumentId": "D1"},
                              {"reportId": "S2", "reportDocumentId": "D2"},
                              {"reportId": "S3"}]
    fetcher.reports.present = {"S1"}

    assert fetcher.runner.run(new_job(fetcher, SETTLEMENT)) == Step(JobStatus.DONE)
    assert [(row.name, row.window_start) for row in fetcher.reports.rows] == [("S2", None)]
    assert fetcher.amazon.created == []


def test_a_japanese_marketplace_falls_back_to_cp932(fetcher: Fetcher, documents: DocumentStream) -> None:
    fetcher.amazon.report = {"processingStatus": "DONE", "reportDocumentId": "DOC-1"}
    job, version = waiting(fetcher, marketplace_ids=["A1VC38T7YXB528"])

    fetcher.runner.run(job, version=version)

    assert documents.calls[0]["fallback_charset"] == "cp932"



# --- races of issue 10 (section 8), each reproduced first ------------------------------------------


def test_the_in_flight_check_is_for_windowed_types_only(fetcher: Fetcher) -> None:
    """A snapshot's window only names the run: looking for an in-flight twin spends getReports quota for
    nothing (and could reuse an older snapshot)."""
    fetcher.runner.run(new_job(fetcher, LISTINGS))

    assert fetcher.amazon.calls == ["createReport"]
    assert "getReports" not in fetcher.quotas.taken


def test_an_in_flight_report_is_reused_only_for_the_same_set_of_marketplaces(fetcher: Fetcher) -> None:
    canada = "A2EUQ1WTGCTBG2"
    job = new_job(fetcher)
    job.marketplace_ids = [US, canada]
    window = {"dataStartTime": job.window_start, "dataEndTime": job.window_end}
    # Amazon's marketplace filter matches any overlap: a report of more, or fewer, marketplaces is listed too.
    fetcher.amazon.listing = [{"reportId": "WIDER", **window, "marketplaceIds": [US, canada, "A1AM78C64UM0Y8"]},
                              {"reportId": "NARROWER", **window, "marketplaceIds": [US]}]

    fetcher.runner.run(job)

    assert fetcher.jobs.stored[job.job_id].report_id == "REPORT-NEW"
    assert len(fetcher.amazon.created) == 1


def test_the_same_marketplaces_in_another_order_are_the_same_request(fetcher: Fetcher) -> None:
    canada = "A2EUQ1WTGCTBG2"
    job = new_job(fetcher)
    job.marketplace_ids = [US, canada]
    fetcher.amazon.listing = [{"reportId": "SAME", "dataStartTime": job.window_start,
                               "dataEndTime": job.window_end, "marketplaceIds": [canada, US]}]

    fetcher.runner.run(job)

    assert fetcher.jobs.stored[job.job_id].report_id == "SAME"
    assert fetcher.amazon.created == []


def test_fatal_reports_and_failed_downloads_count_apart(fetcher: Fetcher, documents: DocumentStream) -> None:
    """Two FATAL reports used two of the type's three attempts; the third report's document still gets all
    MAX_DOCUMENT_ATTEMPTS downloads (one shared counter used to fail the job after three)."""
    max_attempts = CATALOG[ORDERS].max_attempts
    documents.failures = [DocumentCorrupt("truncated gzip stream") for _ in range(MAX_DOCUMENT_ATTEMPTS - 1)]
    fetcher.amazon.report = {"processingStatus": "DONE", "reportDocumentId": "DOC-1"}
    job, version = waiting(fetcher, attempts=max_attempts - 1)

    steps = []
    for _ in range(MAX_DOCUMENT_ATTEMPTS):
        step = fetcher.runner.run(job, version=version)
        steps.append(step.status)
        version = step.version or version
        fetcher.clock.advance(RETRY_SECONDS)

    assert steps == [JobStatus.WAITING] * (MAX_DOCUMENT_ATTEMPTS - 1) + [JobStatus.DONE]
    saved = fetcher.jobs.stored[job.job_id]
    assert (saved.attempts, saved.document_attempts, saved.error) == (max_attempts - 1, 0, None)


def test_a_new_report_after_fatal_starts_its_document_count_afresh(fetcher: Fetcher) -> None:
    job = new_job(fetcher)
    stored_as(fetcher, job, status=JobStatus.COOLDOWN, attempts=1, document_attempts=3, version=2)

    fetcher.runner.run(job, version=2)

    saved = fetcher.jobs.stored[job.job_id]
    assert (saved.status, saved.attempts, saved.document_attempts) == (JobStatus.WAITING, 1, 0)


def wake(f: Fetcher, job: Job) -> int:
    """What the wake-jobs run does to a due parked job (JobRepository.wake): un-parked, one version on; the
    version its message carries."""
    stored = f.jobs.stored[job.job_id]
    assert stored.wake_at is not None and stored.wake_at <= now(f), "not parked, or not due"
    stored.wake_at, stored.hops = None, 0
    stored.version += 1
    return stored.version


def drive(f: Fetcher, job: Job, step: Step, limit: int = 200, hops: list[int] | None = None) -> tuple[Step, int]:
    """Deliver the job's re-queued message after each delay (with its hops), or wake it when parked (at its
    wake_at, hops back at 0), until it stops; (last step, steps taken). `hops`: each message's hops."""
    taken = 0
    while (step.again or step.parked) and taken < limit:
        if step.again:
            f.clock.advance(step.delay or 0)
            message, version = dataclasses.replace(job, hops=step.hops), step.version
        else:
            assert step.wake_at is not None
            f.clock.advance(max(0, step.wake_at - now(f)))
            message, version = dataclasses.replace(job, hops=0), wake(f, job)
        if hops is not None:
            hops.append(message.hops)
        step = f.runner.run(message, version=version)
        taken += 1
    return step, taken


def test_a_job_waiting_on_a_quota_expires_and_a_new_plan_starts_it_again(fetcher: Fetcher) -> None:
    reports_fallback(fetcher)  # the Reports API's Sales and Traffic: an application-wide quota
    fetcher.quotas.app_wait = 5 * 3600.0  # spent for the day
    job = new_job(fetcher, SALES_AND_TRAFFIC)
    start = now(fetcher)

    last, taken = drive(fetcher, job, fetcher.runner.run(job))

    assert last == Step(JobStatus.EXPIRED)
    assert MAX_STALL_SECONDS <= now(fetcher) - start < MAX_STALL_SECONDS + MAX_DELAY_SECONDS
    # Parked until the quota refills, then until the stall limit: two wakes, no stream of re-queues.
    assert taken == 2
    assert fetcher.amazon.created == []
    # A stale copy does not wake it; the planner's message for the same window (same id) starts it again.
    assert fetcher.runner.run(job, version=3) == Step(JobStatus.EXPIRED)
    fetcher.quotas.app_wait = 0.0
    assert fetcher.runner.run(job).status is JobStatus.WAITING
    saved = fetcher.jobs.stored[job.job_id]
    assert (saved.report_id, saved.extra) == ("REPORT-NEW", {})


def test_progress_resets_the_stall_clock(fetcher: Fetcher) -> None:
    fetcher.amazon.report = {"processingStatus": "IN_PROGRESS"}  # Amazon takes its time: that is progress
    job, version = waiting(fetcher, extra={"stalled_since": now(fetcher) - MAX_STALL_SECONDS + 10})

    step = fetcher.runner.run(job, version=version)

    assert step.status is JobStatus.WAITING and step.again
    assert "stalled_since" not in fetcher.jobs.stored[job.job_id].extra


# --- 403 Unauthorized: the token or a role (issue 10, section 6) ----------------------------------------


def test_a_403_waits_for_a_renewed_token_retries_once_then_ends_permission_denied(
    fetcher: Fetcher, capfd: pytest.CaptureFixture[str]
) -> None:
    fetcher.amazon.error = SpApiError(403, "Unauthorized")
    job = new_job(fetcher)

    first = fetcher.runner.run(job)
    assert first == Step(JobStatus.NEW, RETRY_SECONDS, 1)
    assert fetcher.tokens.renewals == 1  # the shared token marked suspect: the refresher renews it early

    # The refresher has not run yet: the job waits, without calling Amazon with the refused token.
    calls = len(fetcher.amazon.calls)
    fetcher.clock.advance(RETRY_SECONDS)
    second = fetcher.runner.run(job, version=first.version)
    assert second.again and len(fetcher.amazon.calls) == calls

    fetcher.tokens.current = "gen-2"  # renewed
    fetcher.clock.advance(RETRY_SECONDS)
    assert fetcher.runner.run(job, version=second.version) == Step(JobStatus.FAILED)
    saved = fetcher.jobs.stored[job.job_id]
    retry_at = now(fetcher) + DENIED_RETRY_SECONDS
    assert (saved.error, saved.next_check_at) == ("permission_denied", retry_at)
    assert fetcher.plans.denied == {ORDERS: retry_at}
    assert fetcher.tokens.renewals == 1  # at most one refresh per job
    assert len(fetcher.amazon.calls) == calls + 1
    metric = [line for line in capfd.readouterr().out.splitlines() if '"report_type"' in line]
    assert len(metric) == 1 and f'"report_type":"{ORDERS}"' in metric[0]
    assert '"ReportPermissionDenied":[1.0]' in metric[0]

    # A copy of the planner's message is not a re-plan before the retry time; after it, it starts the job.
    assert fetcher.runner.run(job) == Step(JobStatus.FAILED)
    fetcher.clock.advance(DENIED_RETRY_SECONDS)
    fetcher.amazon.error = None
    assert fetcher.runner.run(job).status is JobStatus.WAITING


def test_a_403_about_the_token_goes_on_with_the_renewed_token_and_clears_a_denial(
    fetcher: Fetcher, documents: DocumentStream
) -> None:
    fetcher.plans.denied = {ORDERS: now(fetcher) - 1}  # refused a day ago, re-planned now
    fetcher.amazon.error = SpApiError(403, "Unauthorized")
    job, version = waiting(fetcher)

    step = fetcher.runner.run(job, version=version)
    fetcher.tokens.current = "gen-2"
    fetcher.amazon.error = None
    fetcher.amazon.report = {"processingStatus": "DONE", "reportDocumentId": "DOC-1"}
    fetcher.clock.advance(RETRY_SECONDS)

    assert fetcher.runner.run(job, version=step.version) == Step(JobStatus.DONE)
    assert fetcher.plans.denied == {} and fetcher.plans.cleared == [ORDERS]
    assert "token_retry" not in fetcher.jobs.stored[job.job_id].extra


# --- settlement discovery (issue 10, section 7) -------------------------------------------------------

CA, MX = "A2EUQ1WTGCTBG2", "A1AM78C64UM0Y8"


def settlement(report_id: str, *marketplaces: str) -> dict[str, Any]:
    report: dict[str, Any] = {"reportId": report_id, "reportDocumentId": f"DOC-{report_id}",
                              "reportType": SETTLEMENT, "processingStatus": "DONE"}
    if marketplaces:
        report["marketplaceIds"] = list(marketplaces)
    return report


TWO_PAGES: dict[str | None, dict[str, Any]] = {
    None: {"reports": [settlement("S1", US), settlement("S2", CA)], "nextToken": "page-2"},
    "page-2": {"reports": [settlement("S2", CA), settlement("S3", MX), settlement("S4")]},
}


def test_settlement_discovery_reads_every_page_and_stores_each_report_once_under_its_marketplace(
    fetcher: Fetcher, documents: DocumentStream
) -> None:
    fetcher.amazon.pages = TWO_PAGES
    job = new_job(fetcher, SETTLEMENT)

    assert fetcher.runner.run(job) == Step(JobStatus.DONE)

    assert [row.name for row in fetcher.reports.rows] == ["S1", "S2", "S3", "S4"]  # S2 once
    keys = [call["key"] for call in documents.calls]
    assert [key.split(f"/{SETTLEMENT}/")[1] for key in keys] == [
        f"{US}/S1.tsv", f"{CA}/S2.tsv", f"{MX}/S3.tsv", "S4.tsv"]
    first, second = fetcher.amazon.queries
    since = datetime.fromisoformat(job.window_start.replace("Z", "+00:00"))  # the lookback is the planner's
    # No marketplace filter (Amazon ignores it for settlement reports); with nextToken, nothing else.
    assert first == {"reportTypes": SETTLEMENT, "processingStatuses": "DONE", "pageSize": 100,
                     "createdSince": iso(since)}
    assert second == {"nextToken": "page-2"}
    assert fetcher.jobs.stored[job.job_id].extra == {}


def test_settlement_discovery_resumes_where_a_quota_stopped_it(fetcher: Fetcher, documents: DocumentStream) -> None:
    fetcher.amazon.pages = TWO_PAGES
    # The second document waits for its quota; later the second page waits for getReports' quota.
    fetcher.quotas.script = {"getReportDocument": [0, 30.5], "getReports": [0, 40.5]}
    job = new_job(fetcher, SETTLEMENT)

    first = fetcher.runner.run(job)
    assert first == Step(JobStatus.NEW, 31, 1)
    fetcher.clock.advance(31)
    second = fetcher.runner.run(job, version=first.version)
    assert second == Step(JobStatus.NEW, 41, 2)
    fetcher.clock.advance(41)
    assert fetcher.runner.run(job, version=second.version) == Step(JobStatus.DONE)

    assert [row.name for row in fetcher.reports.rows] == ["S1", "S2", "S3", "S4"]
    assert [q.get("nextToken") for q in fetcher.amazon.queries] == [None, "page-2"]  # resumed, not restarted


def test_settlement_discovery_looks_back_at_most_ninety_days(fetcher: Fetcher, documents: DocumentStream) -> None:
    fetcher.amazon.pages = {None: {"reports": []}}
    job = new_job(fetcher, SETTLEMENT)
    job.window_start = iso(fetcher.clock.now() - timedelta(days=200))
    job.job_id = job_id(SELLER, REGION, SETTLEMENT, job.window_start, job.window_end)

    assert fetcher.runner.run(job) == Step(JobStatus.DONE)

    (query,) = fetcher.amazon.queries
    assert query["createdSince"] == iso(fetcher.clock.now() - timedelta(days=90) + timedelta(minutes=1))


def test_without_the_token_cache_the_one_retry_comes_a_minute_later(fixed_clock: FixedClock) -> None:
    """A runner built without the shared cache (benches, other tests) keeps the rule: one retry, then denied."""
    amazon, jobs, plans = Amazon(error=SpApiError(403, "Unauthorized")), Jobs(), Plans()
    runner = JobRunner(jobs=jobs, reports=Reports(), plans=plans, connections=Connections(), spapi=amazon,
                       quotas=Quotas(), s3=None, bucket="data")
    start, end = CATALOG[ORDERS].window_for(fixed_clock.now())
    job = Job(job_id(SELLER, REGION, ORDERS, iso(start), iso(end)), SELLER, REGION, ORDERS, iso(start), iso(end), [US])

    first = runner.run(job)
    fixed_clock.advance(RETRY_SECONDS)

    assert first.delay == RETRY_SECONDS
    assert runner.run(job, version=first.version) == Step(JobStatus.FAILED)
    assert amazon.calls == ["getReports", "getReports"] and list(plans.denied) == [ORDERS]


# --- coverage: how a job's end reaches its cursor, and where a marketplace's report is kept -----------


@pytest.mark.parametrize(("answer", "status"), [
    ({"processingStatus": "DONE", "reportDocumentId": "DOC-1"}, "DONE"),
    ({"processingStatus": "CANCELLED"}, "NO_DATA"),
])
def test_a_stored_or_empty_window_moves_its_cursor(fetcher: Fetcher, documents: DocumentStream,
                                                  answer: dict[str, Any], status: str) -> None:
    fetcher.amazon.report = answer
    job, version = waiting(fetcher)

    fetcher.runner.run(job, version=version)

    assert fetcher.plans.finished == [(job.job_id, status)]


def test_a_failed_job_is_told_to_its_cursor_and_an_ended_one_is_not(fetcher: Fetcher) -> None:
    fetcher.amazon.error = SpApiError(400, "InvalidInput")
    job = new_job(fetcher)
    fetcher.runner.run(job)
    fetcher.connections.status = ConnectionStatus.REVOKED
    fetcher.runner.run(new_job(fetcher, FBA_RETURNS))

    assert fetcher.plans.finished == [(job.job_id, "FAILED")]


def test_a_twin_that_lost_the_final_save_tells_no_cursor(fetcher: Fetcher, documents: DocumentStream) -> None:
    fetcher.amazon.report = {"processingStatus": "CANCELLED"}
    job, version = waiting(fetcher)
    fetcher.jobs.refuse_saves = True

    fetcher.runner.run(job, version=version)

    assert fetcher.plans.finished == []


def test_a_resent_window_of_an_ended_job_tells_its_cursor_again(fetcher: Fetcher) -> None:
    """The cursor missed how the job ended (its write lost every race, or the function stopped right after
    the job's save): the planner re-sends the window after a while, and that copy heals the cursor."""
    job = new_job(fetcher)
    stored_as(fetcher, job, status=JobStatus.DONE, version=3)

    assert fetcher.runner.run(job) == Step(JobStatus.DONE)  # the planner's copy (no version)
    assert fetcher.runner.run(job, version=2) == Step(JobStatus.DONE)  # a stale poll: not the planner's

    assert fetcher.plans.finished == [(job.job_id, "DONE")]
    assert fetcher.amazon.calls == []


def test_a_marketplace_scoped_report_names_its_marketplace_in_key_and_row(fetcher: Fetcher,
                                                                        documents: DocumentStream) -> None:
    fetcher.amazon.report = {"processingStatus": "DONE", "reportDocumentId": "DOC-1"}
    start, end = (iso(t) for t in CATALOG[LISTINGS].window_for(fetcher.clock.now()))
    for pull in (None, "s20261129"):  # a later pull of the same window: same key, same row name
        job = Job(job_id(SELLER, REGION, LISTINGS, start, end, scope=US, pull=pull), SELLER, REGION, LISTINGS,
                  start, end, [US], scope=US, pull=pull)
        stored_as(fetcher, job, status=JobStatus.WAITING, report_id="R1", version=1, next_check_at=now(fetcher))
        fetcher.runner.run(job, version=1)

    first, second = fetcher.reports.rows
    assert first.name == second.name == f"{US}#{start}#{end}"
    assert first.s3_key == second.s3_key
    assert f"/reports/{LISTINGS}/{US}/{start}_{end}.tsv" in first.s3_key


# --- self-hops: bounded per job, long waits parked (issue 11, section 2) ----------------------------------


def test_the_self_hop_bound_stays_well_below_lambdas_recursive_loop_limit() -> None:
    # Lambda stops an SQS -> function -> same-queue chain after about 16 invocations unless allowed; the
    # fetcher allows it and bounds each job itself. A chain is the first message and its hops.
    assert MAX_SELF_HOPS >= 1 and 1 + MAX_SELF_HOPS < 16


def _cooling(f: Fetcher) -> tuple[Job, Step]:
    f.amazon.report = {"processingStatus": "FATAL"}
    job, version = waiting(f, FBA_RETURNS)
    return job, f.runner.run(job, version=version)


def _polling(f: Fetcher) -> tuple[Job, Step]:
    f.amazon.report = {"processingStatus": "IN_PROGRESS"}  # Amazon never finishes (a 3-hour query, or worse)
    job, version = waiting(f)
    return job, f.runner.run(job, version=version)


def _throttled(f: Fetcher) -> tuple[Job, Step]:
    f.amazon.error = SpApiError(429, "QuotaExceeded")
    job, version = waiting(f)
    return job, f.runner.run(job, version=version)


def _seller_quota(f: Fetcher) -> tuple[Job, Step]:
    f.quotas.waits["getReport"] = 50.0  # the seller's getReport bucket never refills in time
    job, version = waiting(f)
    return job, f.runner.run(job, version=version)


def _token_not_renewed(f: Fetcher) -> tuple[Job, Step]:
    f.amazon.error = SpApiError(403, "Unauthorized")  # the refresher never renews: the job waits for it
    job = new_job(f)
    return job, f.runner.run(job)


def _app_quota(f: Fetcher) -> tuple[Job, Step]:
    reports_fallback(f)
    f.quotas.app_wait = 3 * 3600.0
    job = new_job(f, SALES_AND_TRAFFIC)
    return job, f.runner.run(job)


@pytest.mark.parametrize("start", [_cooling, _throttled, _seller_quota, _token_not_renewed, _app_quota])
def test_no_wait_re_queues_a_job_past_the_bound(fetcher: Fetcher, start: Any) -> None:
    job, step = start(fetcher)
    hops: list[int] = [0]  # the first message (the planner's, or one wake-jobs sent)

    last, taken = drive(fetcher, job, step, limit=1000, hops=hops)

    assert max(hops) <= MAX_SELF_HOPS
    assert hops.count(0) > 1  # it was parked and woken on the way
    assert taken < 1000 and not last.again and not last.parked  # every wait ended: failed or expired


def test_a_report_amazon_takes_hours_over_is_polled_within_the_bound(fetcher: Fetcher) -> None:
    job, step = _polling(fetcher)
    hops: list[int] = [0]
    began = now(fetcher)

    step, _ = drive(fetcher, job, step, limit=30, hops=hops)  # 30 looks: hours of 15-minute polls
    assert now(fetcher) - began > 3 * 3600
    fetcher.amazon.report = {"processingStatus": "CANCELLED"}
    last, _ = drive(fetcher, job, step, hops=hops)

    assert last == Step(JobStatus.NO_DATA)
    assert max(hops) == MAX_SELF_HOPS and hops.count(0) >= 2  # hopped to the bound, parked, woken, again


def test_a_job_out_of_hops_is_parked_and_woken_with_its_count_reset(fetcher: Fetcher) -> None:
    fetcher.amazon.error = SpApiError(429, "QuotaExceeded")
    job, version = waiting(fetcher)
    message = dataclasses.replace(job, hops=MAX_SELF_HOPS - 1)

    step = fetcher.runner.run(message, version=version)
    assert step.again and step.hops == MAX_SELF_HOPS and step.delay == RETRY_SECONDS

    fetcher.clock.advance(RETRY_SECONDS)
    parked = fetcher.runner.run(dataclasses.replace(job, hops=MAX_SELF_HOPS), version=step.version)
    assert not parked.again and parked.wake_at == now(fetcher) + RETRY_SECONDS
    stored = fetcher.jobs.stored[job.job_id]
    assert (stored.wake_at, stored.hops, stored.next_check_at) == (parked.wake_at, 0, parked.wake_at)

    fetcher.clock.advance(RETRY_SECONDS)
    fetcher.amazon.error = None
    fetcher.amazon.report = {"processingStatus": "IN_PROGRESS"}
    woken = fetcher.runner.run(job, version=wake(fetcher, job))  # wake-jobs' message: hops 0
    assert woken.again and woken.hops == 1
    assert fetcher.jobs.stored[job.job_id].wake_at is None


def test_a_hurried_job_takes_a_hop_and_a_parked_one_is_woken(fetcher: Fetcher) -> None:
    job, version = waiting(fetcher, hops=4, next_check_at=now(fetcher) + 600)
    waiting_job = fetcher.jobs.load_or_create(job)

    step = fetcher.runner.hurry(waiting_job)
    assert step == Step(JobStatus.WAITING, 0, version + 1) and step.hops == 5

    parked, _ = waiting(fetcher, hops=0, wake_at=now(fetcher) + 3600, next_check_at=now(fetcher) + 3600)
    step = fetcher.runner.hurry(fetcher.jobs.load_or_create(parked))
    assert step.again and step.hops == 1
    assert fetcher.jobs.stored[parked.job_id].wake_at is None  # un-parked: its message goes out now

    out_of_hops, _ = waiting(fetcher, hops=MAX_SELF_HOPS, next_check_at=now(fetcher) + 600)
    step = fetcher.runner.hurry(fetcher.jobs.load_or_create(out_of_hops))
    assert not step.again and step.wake_at == now(fetcher)  # due at once, for the next wake-jobs run
