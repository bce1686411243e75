"""The report job's state machine (report_fetcher.service.JobRunner): what one step decides, given the job
as stored, the connection, the quotas and what Amazon answers. Collaborators are in-memory stand-ins with
the repositories' contracts (optimistic versions for jobs); the clock is the product's, fixed."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from report_fetcher import service
from report_fetcher.service import (
    FIRST_CHECK_SECONDS,
    MAX_DELAY_SECONDS,
    MAX_DOCUMENT_ATTEMPTS,
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

    def exists(self, seller: str, region: str, report_type: str, name: str) -> bool:
        return name in self.present


@dataclass
class Plans:
    deleted: list[tuple[str, str]] = field(default_factory=list)
    finished: list[tuple[str, str]] = field(default_factory=list)  # (job id, status) told to the cursor

    def delete(self, seller: str, region: str) -> None:
        self.deleted.append((seller, region))

    def record_finished(self, job: Job, status: str, now: int) -> bool:
        self.finished.append((job.job_id, status))
        return True


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

    def take_operation(self, seller: str, region: str, operation: str) -> float:
        self.taken.append(operation)
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

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.error is not None:
            raise self.error

    def get_reports(self, seller: str, region: str, query: dict[str, str]) -> dict[str, Any]:
        self._call("getReports")
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


@pytest.fixture
def fetcher(fixed_clock: FixedClock) -> Fetcher:
    jobs, reports, plans, connections, quotas, amazon = Jobs(), Reports(), Plans(), Connections(), Quotas(), Amazon()
    runner = JobRunner(jobs=jobs, reports=reports, plans=plans, connections=connections,
                       spapi=amazon, quotas=quotas, s3=None, bucket="data")
    return Fetcher(runner, jobs, reports, plans, connections, quotas, amazon, fixed_clock)


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


def test_a_snapshot_names_no_window_and_a_daily_json_report_asks_for_daily_child_asins(fetcher: Fetcher) -> None:
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
        {"reportId": "OTHER-WINDOW", "dataStartTime": job.window_end, "dataEndTime": job.window_end},
        {"reportId": "IN-FLIGHT", "dataStartTime": start, "dataEndTime": job.window_end},
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


def test_an_app_quota_wait_longer_than_sqs_allows_is_capped(fetcher: Fetcher) -> None:
    fetcher.quotas.app_wait = 5 * 3600.0

    step = fetcher.runner.run(new_job(fetcher, SALES_AND_TRAFFIC))

    assert step.delay == MAX_DELAY_SECONDS
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

    assert fetcher.runner.run(job, version=2) == Step(JobStatus.WAITING, 45, 2)
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

    assert step == Step(JobStatus.COOLDOWN, MAX_DELAY_SECONDS, version + 1)
    saved = fetcher.jobs.stored[job.job_id]
    assert (saved.attempts, saved.report_id, saved.next_check_at) == (1, None, now(fetcher) + cooldown)
    assert saved.error == "FATAL (report R1)"

    # Woken early (the 15-minute delay), it waits out the rest; after the cooldown it requests again.
    fetcher.clock.advance(MAX_DELAY_SECONDS)
    assert fetcher.runner.run(job, version=step.version) == Step(JobStatus.COOLDOWN, MAX_DELAY_SECONDS, step.version)
    fetcher.clock.advance(cooldown - MAX_DELAY_SECONDS)
    assert fetcher.runner.run(job, version=step.version).status is JobStatus.WAITING
    assert len(fetcher.amazon.created) == 1


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
    (SpApiError(403, "Unauthorized"), Step(JobStatus.FAILED)),
    (SpApiError(400, "InvalidInput"), Step(JobStatus.FAILED)),
])
def test_amazon_errors_retry_or_end_the_job(fetcher: Fetcher, error: Exception, expected: Step) -> None:
    fetcher.amazon.error = error
    job, version = waiting(fetcher)

    assert fetcher.runner.run(job, version=version) == expected
    saved = fetcher.jobs.stored[job.job_id]
    if expected.again:
        assert saved.next_check_at == now(fetcher) + RETRY_SECONDS and saved.error is None
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
