"""The Data Kiosk path of a report job (report_fetcher.data_kiosk): the GraphQL query it builds, checked
against Amazon's schema, and its steps with the fetcher's collaborators faked (no HTTP)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from graphql import FieldNode, GraphQLObjectType, build_schema, get_named_type, parse, validate

from report_fetcher import data_kiosk
from report_fetcher.data_kiosk import Granularity, build_query, document_key, job_days, parse_granularity
from report_fetcher.service import FIRST_CHECK_SECONDS, RETRY_SECONDS, JobRunner, Step
from seller_insights import clock
from seller_insights.errors import ConfigurationError, SpApiError
from seller_insights.observability import get_metrics
from seller_insights.report_catalog import CATALOG, SALES_AND_TRAFFIC, DataSource, source_of
from seller_insights.report_jobs import Job, JobStatus, StoredReport, job_id
from seller_insights.report_stream import StoredDocument
from seller_insights.repositories import Connection, ConnectionStatus, iso

MODELS = Path(__file__).resolve().parents[2] / "local" / "amazon" / "models"
SCHEMA = MODELS / "analytics_salesAndTraffic_2024_04_24.graphql"
SELLER, REGION, DE = "A1KIOSKUNIT0001", "EU", "A1PA6795UKMFR9"


# --- the query ----------------------------------------------------------------------------------------


def _leaves(node: FieldNode, parent: GraphQLObjectType) -> set[str]:
    out: set[str] = set()
    assert node.selection_set is not None
    for child in node.selection_set.selections:
        assert isinstance(child, FieldNode)
        kind = get_named_type(parent.fields[child.name.value].type)
        if child.selection_set is not None and isinstance(kind, GraphQLObjectType):
            out |= {f"{child.name.value}.{leaf}" for leaf in _leaves(child, kind)}
        else:
            out.add(child.name.value)
    return out


def _all_leaves(kind: GraphQLObjectType) -> set[str]:
    out: set[str] = set()
    for name, definition in kind.fields.items():
        inner = get_named_type(definition.type)
        out |= {f"{name}.{leaf}" for leaf in _all_leaves(inner)} if isinstance(inner, GraphQLObjectType) else {name}
    return out


@pytest.mark.parametrize(("granularity", "name", "row_type", "aggregate"), [
    (Granularity.DATE, "salesAndTrafficByDate", "SalesAndTrafficByDate", "DAY"),
    (Granularity.ASIN, "salesAndTrafficByAsin", "SalesAndTrafficByAsin", "CHILD"),
])
def test_the_query_is_valid_for_amazons_schema_and_asks_every_field(granularity, name, row_type, aggregate):
    schema = build_schema(SCHEMA.read_text())
    text = build_query(granularity, date(2026, 11, 27), date(2026, 11, 27), DE)
    document = parse(text)

    assert validate(schema, document) == []
    assert len(text) < 8000  # Amazon's limit on a query
    root = document.definitions[0].selection_set.selections[0]  # type: ignore[attr-defined]
    (query,) = root.selection_set.selections
    assert query.name.value == name
    arguments = {a.name.value: a.value for a in query.arguments}
    assert arguments["startDate"].value == arguments["endDate"].value == "2026-11-27"
    assert arguments["aggregateBy"].value == aggregate
    assert [v.value for v in arguments["marketplaceIds"].values] == [DE]
    row = schema.get_type(row_type)
    assert isinstance(row, GraphQLObjectType)
    assert _leaves(query, row) == _all_leaves(row)  # the schema holds no buyer data: every metric is asked


def test_a_marketplace_id_that_is_not_an_identifier_never_reaches_the_query():
    with pytest.raises(ValueError, match="letters and digits"):
        build_query(Granularity.DATE, date(2026, 11, 27), date(2026, 11, 27), 'DE"]){x}')


def test_the_granularity_setting():
    assert parse_granularity(" asin ") is Granularity.ASIN
    with pytest.raises(ConfigurationError):
        parse_granularity("WEEK")


def test_a_day_window_is_one_day_and_its_key_names_the_marketplace():
    job = new_job()
    assert job_days(job) == (date(2026, 11, 28), date(2026, 11, 28))
    key = document_key(job)
    assert key.endswith(f"reports/{SALES_AND_TRAFFIC}/{DE}/{job.window_start}_{job.window_end}.jsonl")


# --- the steps ----------------------------------------------------------------------------------------


@dataclass
class Kiosk:
    """SpApiClient's Data Kiosk calls: answers set by the test, calls recorded."""

    query: dict[str, Any] = field(default_factory=lambda: {"processingStatus": "IN_QUEUE"})
    error: Exception | None = None
    queries: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def create_query(self, seller: str, region: str, query: str) -> str:
        self.calls.append("createQuery")
        if self.error is not None:
            raise self.error
        self.queries.append(query)
        return f"Q{len(self.queries)}"

    def get_query(self, seller: str, region: str, query_id: str) -> dict[str, Any]:
        self.calls.append("getQuery")
        return {"queryId": query_id, **self.query}

    def get_query_document(self, seller: str, region: str, document_id: str) -> dict[str, Any]:
        self.calls.append("getDocument")
        return {"documentId": document_id, "documentUrl": f"https://documents.example.com/{document_id}"}


# --- stand-ins of the fetcher's collaborators (their contracts, in memory) -------------------------------

STORED = StoredDocument(bytes_in=10, bytes_out=20, rows=2, sha256="0" * 64, source_charset="utf-8",
                        undecodable=0, dropped_columns=(), parts=1)


class QueryJobs:
    """JobRepository's contract: a save succeeds only over the version it read; query ids remembered."""

    def __init__(self) -> None:
        self.stored: dict[str, Job] = {}
        self.query_ids: dict[str, str] = {}

    def load_or_create(self, job: Job) -> Job:
        if job.job_id not in self.stored:
            self.stored[job.job_id] = copy.deepcopy(job)
            return job
        return copy.deepcopy(self.stored[job.job_id])

    def save(self, job: Job) -> bool:
        expected = job.version
        job.version += 1
        current = self.stored.get(job.job_id)
        if current is not None and current.version != expected:
            return False
        self.stored[job.job_id] = copy.deepcopy(job)
        return True

    def remember_query_id(self, job: Job) -> None:
        assert job.report_id is not None
        self.query_ids[job.report_id] = job.job_id


@dataclass
class Reports:
    rows: list[StoredReport] = field(default_factory=list)

    def put(self, report: StoredReport, stored_at: Any) -> None:
        self.rows.append(report)


@dataclass
class Plans:
    denied: dict[str, int] = field(default_factory=dict)
    finished: list[tuple[str, str]] = field(default_factory=list)  # (job id, status) told to the cursor

    def delete(self, seller: str, region: str) -> None:
        raise AssertionError("an ACTIVE connection's plan is never deleted")

    def mark_denied(self, seller: str, region: str, report_type: str, retry_at: int) -> None:
        self.denied[report_type] = retry_at

    def clear_denied(self, seller: str, region: str, report_type: str) -> bool:
        return self.denied.pop(report_type, None) is not None

    def record_finished(self, job: Job, status: str, now: int) -> bool:
        self.finished.append((job.job_id, status))
        return True


class Connections:
    def get(self, seller: str, region: str) -> Connection:
        return Connection(seller, region, ConnectionStatus.ACTIVE, "2026-11-01T00:00:00Z", "2027-11-01T00:00:00Z",
                          "DE", "2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z", True)


@dataclass
class Quotas:
    """Seconds to wait per operation (0: a token was taken); the app-wide quota must never be asked."""

    waits: dict[str, float] = field(default_factory=dict)
    taken: list[str] = field(default_factory=list)

    def take_operation(self, seller: str, region: str, operation: str) -> float:
        self.taken.append(operation)
        return self.waits.get(operation, 0.0)

    def take_app_quota(self, report_type: str, quota: Any) -> float:
        self.taken.append(f"app:{report_type}")
        return 0.0


@dataclass
class Setup:
    runner: JobRunner
    jobs: QueryJobs
    reports: Reports
    quotas: Quotas
    kiosk: Kiosk
    streamed: list[dict[str, Any]]
    plans: Plans


@pytest.fixture
def setup(fixed_clock, monkeypatch) -> Setup:
    jobs, reports, quotas, kiosk = QueryJobs(), Reports(), Quotas(), Kiosk()
    streamed: list[dict[str, Any]] = []

    def stream(**kwargs: Any) -> Any:
        streamed.append(kwargs)
        return STORED

    monkeypatch.setattr(data_kiosk, "stream_document_to_s3", stream)
    plans = Plans()
    runner = JobRunner(jobs=jobs, reports=reports, plans=plans, connections=Connections(),  # type: ignore[arg-type]
                       spapi=kiosk, quotas=quotas, s3=None, bucket="data")  # type: ignore[arg-type]
    return Setup(runner, jobs, reports, quotas, kiosk, streamed, plans)


def new_job(marketplaces: list[str] | None = None) -> Job:
    start, end = CATALOG[SALES_AND_TRAFFIC].window_for(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    window_start, window_end = iso(start), iso(end)
    return Job(job_id(SELLER, REGION, SALES_AND_TRAFFIC, window_start, window_end), SELLER, REGION,
               SALES_AND_TRAFFIC, window_start, window_end, marketplaces or [DE])


def test_sales_and_traffic_is_data_kiosk_by_default_and_the_stage_may_fall_back():
    assert CATALOG[SALES_AND_TRAFFIC].source is DataSource.DATA_KIOSK
    assert source_of(CATALOG[SALES_AND_TRAFFIC]) is DataSource.DATA_KIOSK
    assert source_of(CATALOG[SALES_AND_TRAFFIC], DataSource.REPORTS) is DataSource.REPORTS
    # Every other type comes from the Reports API, whatever the Sales and Traffic setting.
    others = [spec for name, spec in CATALOG.items() if name != SALES_AND_TRAFFIC]
    assert {source_of(spec, DataSource.DATA_KIOSK) for spec in others} == {DataSource.REPORTS}


def test_a_new_job_creates_a_query_without_the_app_wide_quota_and_remembers_its_id(setup: Setup):
    step = setup.runner.run(new_job())

    assert step == Step(JobStatus.WAITING, FIRST_CHECK_SECONDS, 1)
    assert setup.kiosk.calls == ["createQuery"]
    assert "salesAndTrafficByDate" in setup.kiosk.queries[0] and DE in setup.kiosk.queries[0]
    assert setup.quotas.taken == ["createQuery"]  # per seller; never app:GET_SALES_AND_TRAFFIC_REPORT
    assert setup.jobs.query_ids == {"Q1": new_job().job_id}


def test_the_asin_granularity_asks_by_asin(setup: Setup):
    runner = JobRunner(jobs=setup.jobs, reports=setup.reports, plans=Plans(), connections=Connections(),  # type: ignore[arg-type]
                       spapi=setup.kiosk, quotas=setup.quotas, s3=None, bucket="data",  # type: ignore[arg-type]
                       sales_and_traffic_granularity="ASIN")
    runner.run(new_job())
    assert "salesAndTrafficByAsin" in setup.kiosk.queries[0] and "aggregateBy:CHILD" in setup.kiosk.queries[0]


def test_a_quota_wait_requeues_without_calling_amazon(setup: Setup):
    setup.quotas.waits["createQuery"] = 40.0
    step = setup.runner.run(new_job())
    assert step.delay == 41 and setup.kiosk.calls == []


def _waiting(setup: Setup) -> tuple[Job, int]:
    job = new_job()
    step = setup.runner.run(job)
    assert step.version is not None
    clock.get_clock().advance(FIRST_CHECK_SECONDS)  # type: ignore[attr-defined]
    return job, step.version


def test_polling_backs_off_like_reports(setup: Setup):
    job, version = _waiting(setup)
    step = setup.runner.run(job, version=version)
    assert step.status is JobStatus.WAITING and step.delay == FIRST_CHECK_SECONDS * 2


def test_done_streams_the_jsonl_document_to_the_days_key_and_row(setup: Setup):
    setup.kiosk.query = {"processingStatus": "DONE", "dataDocumentId": "DOC-1"}
    job, version = _waiting(setup)

    assert setup.runner.run(job, version=version) == Step(JobStatus.DONE)
    (streamed,) = setup.streamed
    assert streamed["document_format"] == "jsonl" and streamed["keep_columns"] is None
    assert streamed["key"] == document_key(job)
    (row,) = setup.reports.rows
    assert (row.report_id, row.document_id, row.s3_key) == ("Q1", "DOC-1", document_key(job))
    assert row.name == f"{DE}#{job.window_start}#{job.window_end}"
    assert setup.kiosk.calls == ["createQuery", "getQuery", "getDocument"]


@pytest.mark.parametrize("answer", [{"processingStatus": "DONE"}, {"processingStatus": "CANCELLED"}])
def test_done_without_a_document_or_cancelled_is_no_data(setup: Setup, answer):
    setup.kiosk.query = answer
    job, version = _waiting(setup)
    assert setup.runner.run(job, version=version) == Step(JobStatus.NO_DATA)
    assert setup.streamed == [] and setup.reports.rows == []


def test_fatal_keeps_the_error_document_cools_down_then_fails(setup: Setup):
    setup.kiosk.query = {"processingStatus": "FATAL", "errorDocumentId": "ERR-1"}
    job, version = _waiting(setup)

    step = setup.runner.run(job, version=version)

    # The type's cooldown (hours) is longer than SQS delays: the job is parked, no message goes out.
    assert step.status is JobStatus.COOLDOWN and step.parked and not step.again
    (kept,) = setup.streamed
    assert kept["key"].endswith(f"reports/{SALES_AND_TRAFFIC}/errors/Q1.txt") and kept["document_format"] == "json"
    stored = setup.jobs.stored[job.job_id]
    assert stored.report_id is None and stored.attempts == 1


def test_a_403_on_create_query_ends_through_the_shared_handling_and_counts_the_missing_role(
        setup: Setup, fixed_clock, capfd):
    setup.kiosk.error = SpApiError(403, "Unauthorized", operation="createQuery")

    first = setup.runner.run(new_job())  # maybe the token: one retry with a renewed one first
    assert first.status is JobStatus.NEW and first.delay == RETRY_SECONDS
    get_metrics().flush_metrics()
    assert "DataKioskRoleMissing" not in capfd.readouterr().out

    fixed_clock.advance(RETRY_SECONDS)
    step = setup.runner.run(new_job(), version=first.version)

    assert step.status is JobStatus.FAILED and not step.again
    assert setup.jobs.stored[new_job().job_id].error == "permission_denied"
    assert list(setup.plans.denied) == [SALES_AND_TRAFFIC]
    get_metrics().flush_metrics()
    assert '"DataKioskRoleMissing":[1.0]' in capfd.readouterr().out


def test_a_429_requeues(setup: Setup):
    setup.kiosk.error = SpApiError(429, "QuotaExceeded", operation="createQuery")
    step = setup.runner.run(new_job())
    assert step.status is JobStatus.NEW and step.delay == RETRY_SECONDS


def test_a_job_of_several_marketplaces_fails_clearly(setup: Setup):
    step = setup.runner.run(new_job([DE, "A13V1IB3VIYZZH"]))
    assert step == Step(JobStatus.FAILED) and setup.kiosk.calls == []
