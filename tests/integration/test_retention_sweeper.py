"""The retention sweep against moto in-process.

The oracle of every test is a fresh listing, never the sweep's own report: ListObjectVersions and
ListMultipartUploads of the prefix, a Query of the seller's partition, the quota buckets, and the
receipts in the audit table. The log guard watches the seller ids: they must never reach the logs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from retention_sweeper.service import RetentionSweep
from seller_insights import clock
from seller_insights.candidates import Candidate, CandidateRepository, new_candidate_id
from seller_insights.clock import FixedClock
from seller_insights.containers import forget_all
from seller_insights.errors import UnknownSeller
from seller_insights.object_keys import report_key, seller_prefix
from seller_insights.pseudonyms import seller_key
from seller_insights.quotas import OPERATION_RATES, QuotaBuckets
from seller_insights.report_jobs import Job, JobRepository, PlanRepository, ReportRepository, StoredReport, job_id
from seller_insights.repositories import ConnectionsRepository, ConnectionStatus, iso, shard
from seller_insights.retention import PurgeStates, Receipts, S3Purge, TableItems, add_months
from seller_insights.vault import Sealed
from tests.support.api import FakeContext
from tests.support.iam import acting_as
from tests.support.resources import Resources, create_resources
from tests.support.sweeps import purge_through_queue, sweep_retention
from tests.support.tokens import table

BUCKET = "data"
SELLER = "A1RETENTIONSELLER"
NEIGHBOUR = "A1RETENTIONSELLER2"  # shares a prefix of the seller id: its data must stay
OBJECT_NAMES = ("reports/GET_ORDERS/2026-10-01_2026-10-02.tsv", "reports/GET_ORDERS/2026-10-02_2026-10-03.tsv",
                "reports/GET_SETTLEMENT/123.tsv", "reports/GET_ORDERS/errors/9.txt")
VERSIONS_PER_OBJECT = 3
MARKED = 2  # objects that also got a delete marker


class LongContext(FakeContext):
    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, product_clock: FixedClock, log_guard: Any) -> Iterator[Resources]:
    for seller in (SELLER, NEIGHBOUR):
        log_guard.watch(seller)
    with mock_aws():
        resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                               "application_id": "c"})
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        purges = boto3.client("sqs").create_queue(QueueName="retention-purges")["QueueUrl"]
        for key, value in {"STAGE": "local", "CONNECTIONS_TABLE": resources.tables["connections"],
                           "AUDIT_TABLE": resources.tables["audit"], "DATA_BUCKET": BUCKET,
                           "RETENTION_PURGES_QUEUE_URL": purges}.items():
            monkeypatch.setenv(key, value)
        _reset()
        yield resources
        _reset()


def _reset() -> None:
    forget_all()


def invoke() -> dict[str, Any]:
    """The sweep-retention schedule, then every retention_purges message through the handler: the purges'
    reports summed."""
    return sweep_retention(LongContext(function_name="retention_sweeper"))


def sweep_with(resources: Resources, *, db: Any = None, s3: Any = None, sleeps: list[float] | None = None) -> Any:
    """The service with wrapped clients (the fault rows), driven through the finder and the queue; what it
    waited goes to `sleeps`."""
    waited = sleeps if sleeps is not None else []
    db = db or table(resources).meta.client
    connections = resources.tables["connections"]
    service = RetentionSweep(states=PurgeStates(db, connections),
                             items=TableItems(db, connections, sleep=waited.append),
                             objects=S3Purge(s3 or boto3.client("s3"), BUCKET, sleep=waited.append),
                             receipts=Receipts(db, resources.tables["audit"]))
    return purge_through_queue(service, table(resources))[1]


# --- seeding -------------------------------------------------------------------------------------------


def authorize(connections_table: Any, seller: str, region: str, consented_at: datetime) -> None:
    """A consent Amazon confirmed: the candidate promoted as the token refresher promotes it."""
    candidates = CandidateRepository(connections_table)
    candidate = Candidate(seller, region, new_candidate_id(), Sealed(b"k" * 16, b"n" * 12, b"c" * 32),
                          created_at=int(consented_at.timestamp()), verify_by=clock.epoch_seconds() + 3600,
                          flow="website", marketplace=None)
    candidates.create(candidate)
    assert candidates.promote(candidate, candidate.sealed, now=clock.now(),
                              marketplace_ids=["ATVPDKIKX0DER"]).value in ("connected", "renewed", "reactivated")


def seed(resources: Resources, seller: str, regions: tuple[str, ...] = ("NA", "EU")) -> None:
    """Connections, planning cursors, cached tokens, jobs, report rows, quota buckets, a profile, and
    S3 objects with several versions, delete markers and an incomplete multipart upload per region."""
    connections_table = table(resources)
    now = clock.now()
    jobs = JobRepository(connections_table)
    s3 = boto3.client("s3")
    for region in regions:
        authorize(connections_table, seller, region, consented_at=now - timedelta(days=90))
        connections_table.put_item(Item={"pk": f"SELLER#{seller}", "sk": f"TOKEN#{region}", "expires_at": 1})
        PlanRepository(connections_table).ensure(seller, region, ["ATVPDKIKX0DER"], clock.epoch_seconds())
        for day in (1, 2):
            start, end = f"2026-10-0{day}T00:00:00Z", f"2026-10-0{day + 1}T00:00:00Z"
            job = Job(job_id(seller, region, "GET_ORDERS", start, end), seller, region, "GET_ORDERS", start, end,
                      ["ATVPDKIKX0DER"], report_id=f"{region}{day}")
            jobs.load_or_create(job)
            ReportRepository(connections_table).put(StoredReport(
                seller, region, "GET_ORDERS", f"{start}#{end}", f"{region}{day}", f"doc{day}",
                report_key(seller, region, "GET_ORDERS", f"{start}_{end}", "tsv"), 10, 1, "0" * 64, "UTF-8", 0, ()),
                stored_at=now)
        jobs.remember_report_id(job)
        for operation in OPERATION_RATES:
            QuotaBuckets(connections_table).take_operation(seller, region, operation)
        prefix = seller_prefix(seller, region)
        for position, name in enumerate(OBJECT_NAMES):
            for version in range(VERSIONS_PER_OBJECT):
                s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=f"v{version}".encode())
            if position < MARKED:
                s3.delete_object(Bucket=BUCKET, Key=prefix + name)  # a delete marker over the versions
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=prefix + "reports/GET_ORDERS/big.tsv")
        s3.upload_part(Bucket=BUCKET, Key=prefix + "reports/GET_ORDERS/big.tsv", PartNumber=1,
                       UploadId=upload["UploadId"], Body=b"part")
    connections_table.put_item(Item={"pk": f"SELLER#{seller}", "sk": "PROFILE", "contact_email": "x@example.com",
                                     "updated_at": iso(now)})


def revoke(resources: Resources, seller: str, region: str, *, purge_in_days: float = -1) -> str:
    """REVOKED through the product's own transition, purge date `purge_in_days` from now."""
    now = clock.now()
    purge_after = now + timedelta(days=purge_in_days)
    assert ConnectionsRepository(table(resources)).mark_revoked(seller, region, now=now - timedelta(days=30),
                                                                purge_after=purge_after)
    # A cached access token written by a racing reader after the revocation: the purge takes it too.
    table(resources).put_item(Item={"pk": f"SELLER#{seller}", "sk": f"TOKEN#{region}", "expires_at": 1})
    return iso(purge_after)


def request_deletion(resources: Resources, seller: str, region: str, *, purge_in_days: float = -1) -> str:
    """What the data-request function does (the lead's code): DELETION_REQUESTED, purge date, shard."""
    purge_after = iso(clock.now() + timedelta(days=purge_in_days))
    connections_table = table(resources)
    connections_table.update_item(
        Key={"pk": f"SELLER#{seller}", "sk": f"CONN#{region}"},
        UpdateExpression="SET #status = :requested, previous_status = #status, purge_after = :purge, "
                         "purge_shard = :shard REMOVE refresh_shard, refresh_due_at, reauth_shard",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":requested": ConnectionStatus.DELETION_REQUESTED.value, ":purge": purge_after,
                                   ":shard": shard(seller, region)},
    )
    for sk in (f"TOKEN#{region}", f"PLAN#{region}"):
        connections_table.delete_item(Key={"pk": f"SELLER#{seller}", "sk": sk})
    return purge_after


# --- the oracle ----------------------------------------------------------------------------------------


def s3_left(seller: str, region: str) -> dict[str, int]:
    s3 = boto3.client("s3")
    prefix = seller_prefix(seller, region)
    versions = markers = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        versions += len(page.get("Versions", []))
        markers += len(page.get("DeleteMarkers", []))
    uploads = sum(len(page.get("Uploads", []))
                  for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=BUCKET, Prefix=prefix))
    return {"versions": versions, "markers": markers, "uploads": uploads}


SEEDED_S3 = {"versions": len(OBJECT_NAMES) * VERSIONS_PER_OBJECT, "markers": MARKED, "uploads": 1}


def partition(resources: Resources, seller: str) -> list[dict[str, Any]]:
    return table(resources).query(KeyConditionExpression="pk = :pk",
                                  ExpressionAttributeValues={":pk": f"SELLER#{seller}"},
                                  ConsistentRead=True)["Items"]


def region_items(resources: Resources, seller: str, region: str) -> list[str]:
    """Sort keys of the seller's items that belong to `region` (CONN included)."""
    return sorted(item["sk"] for item in partition(resources, seller)
                  if item.get("region") == region or item["sk"].split("#")[1:2] == [region])


def quota_items(resources: Resources, seller: str, region: str) -> int:
    return sum("Item" in table(resources).get_item(Key={"pk": f"QUOTA#{seller}#{region}#{op}", "sk": "BUCKET"})
               for op in OPERATION_RATES)


def receipts(resources: Resources) -> list[dict[str, Any]]:
    return table(resources, "audit").scan()["Items"]  # test oracle only; the product never scans


# --- the sweep -----------------------------------------------------------------------------------------


def test_sweep_purges_a_revoked_region_and_nothing_else(env: Resources) -> None:
    seed(env, SELLER)
    seed(env, NEIGHBOUR, regions=("EU",))
    na_before = region_items(env, SELLER, "NA")
    neighbour_before = partition(env, NEIGHBOUR)
    purge_after = revoke(env, SELLER, "EU")
    eu_items = len(region_items(env, SELLER, "EU")) - 1  # all but the CONN item

    report = invoke()

    assert report == {"due": 1, "purged": 1, "skipped": 0, "came_back": 0, "failed": 0, "stopped": None, "left": 0,
                      "receipts": 1,
                      "deleted": {"s3_versions": 12, "s3_delete_markers": 2, "multipart_uploads": 1,
                                  "table_items": eu_items, "quota_items": len(OPERATION_RATES)}}
    # Nothing of the region is left: versions, markers, uploads, items (CONN too), quota buckets.
    assert s3_left(SELLER, "EU") == {"versions": 0, "markers": 0, "uploads": 0}
    assert region_items(env, SELLER, "EU") == []
    assert quota_items(env, SELLER, "EU") == 0
    # The other region, the profile (NA still connected) and the other seller are untouched.
    assert s3_left(SELLER, "NA") == SEEDED_S3
    assert region_items(env, SELLER, "NA") == na_before
    assert quota_items(env, SELLER, "NA") == len(OPERATION_RATES)
    assert any(item["sk"] == "PROFILE" for item in partition(env, SELLER))
    assert s3_left(NEIGHBOUR, "EU") == SEEDED_S3
    assert partition(env, NEIGHBOUR) == neighbour_before
    # One PII-free receipt with the counts and the verification.
    [receipt] = receipts(env)
    now = clock.now()
    assert receipt == {
        "id": f"receipt#{seller_key(SELLER)}#EU#{purge_after}", "seller_key": seller_key(SELLER),
        "region": "EU", "reason": "revoked", "purge_after": purge_after, "started_at": iso(now),
        "verified_at": iso(now), "expires_at": int(add_months(now, 25).timestamp()),
        "deleted": {"s3_versions": 12, "s3_delete_markers": 2, "multipart_uploads": 1, "table_items": eu_items,
                    "quota_items": len(OPERATION_RATES)},
        "verification": {"s3_versions": 0, "s3_delete_markers": 0, "multipart_uploads": 0, "table_items": 0,
                         "quota_items": 0},
    }
    assert SELLER not in str(receipt)

    # A second sweep is a no-op: nothing is due any more.
    assert invoke() == {"due": 0, "purged": 0, "skipped": 0, "came_back": 0, "failed": 0, "stopped": None,
                        "left": 0, "receipts": 0, "deleted": dict.fromkeys(receipt["deleted"], 0)}
    assert len(receipts(env)) == 1


def test_last_connection_takes_the_profile_and_leaves_nothing_of_the_seller(env: Resources) -> None:
    seed(env, SELLER)
    revoke(env, SELLER, "EU", purge_in_days=-2)
    purge_after = request_deletion(env, SELLER, "NA")

    report = invoke()

    assert (report["due"], report["purged"], report["failed"]) == (2, 2, 0)
    assert partition(env, SELLER) == []
    for region in ("NA", "EU"):
        assert s3_left(SELLER, region) == {"versions": 0, "markers": 0, "uploads": 0}
        assert quota_items(env, SELLER, region) == 0
    by_region = {r["region"]: r for r in receipts(env)}
    assert by_region["NA"]["reason"] == "deletion_requested"
    assert by_region["NA"]["purge_after"] == purge_after
    assert by_region["EU"]["reason"] == "revoked"


def test_connections_not_due_are_untouched(env: Resources) -> None:
    seed(env, SELLER)
    revoke(env, SELLER, "EU", purge_in_days=5)
    request_deletion(env, SELLER, "NA", purge_in_days=1 / 24)
    before = partition(env, SELLER)

    assert invoke()["due"] == 0
    assert partition(env, SELLER) == before
    assert s3_left(SELLER, "EU") == SEEDED_S3 == s3_left(SELLER, "NA")
    assert receipts(env) == []


def test_reauthorized_connections_are_skipped(env: Resources) -> None:
    seed(env, SELLER)
    revoke(env, SELLER, "EU")
    # Re-authorized before the date: ACTIVE again, out of the purge index.
    authorize(table(env), SELLER, "EU", consented_at=clock.now())
    # A rolled-back deletion request whose index entry is still there (a GSI is eventually consistent):
    # the sweep must believe the item, not the index.
    request_deletion(env, SELLER, "NA")
    table(env).update_item(Key={"pk": f"SELLER#{SELLER}", "sk": "CONN#NA"}, UpdateExpression="SET #s = :active",
                           ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":active": "ACTIVE"})
    before = partition(env, SELLER)

    report = invoke()

    assert (report["due"], report["skipped"], report["purged"]) == (1, 1, 0)
    assert partition(env, SELLER) == before
    assert s3_left(SELLER, "EU") == SEEDED_S3 == s3_left(SELLER, "NA")
    assert receipts(env) == []


def test_the_handler_refuses_other_events(env: Resources) -> None:
    from retention_sweeper.handler import lambda_handler

    with pytest.raises(ValueError, match="sweep-retention"), acting_as("retention_sweeper"):
        lambda_handler({"task": "plan-reports"}, LongContext(function_name="retention_sweeper"))


# --- faults ---------------------------------------------------------------------------------------------


class Wrapped:
    """A real client with some operations replaced (everything else passes through)."""

    def __init__(self, real: Any, **overrides: Any) -> None:
        self._real = real
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._real, name)


def test_delete_objects_errors_are_retried_for_the_failed_keys_only(env: Resources) -> None:
    seed(env, SELLER, regions=("EU",))
    revoke(env, SELLER, "EU")
    real = boto3.client("s3")
    sent: list[int] = []

    def delete_objects(**kwargs: Any) -> dict[str, Any]:
        objects = kwargs["Delete"]["Objects"]
        sent.append(len(objects))
        if len(sent) > 1:
            return dict(real.delete_objects(**kwargs))
        refused, passed = objects[:3], objects[3:]
        real.delete_objects(**{**kwargs, "Delete": {"Objects": passed, "Quiet": True}})
        return {"Errors": [{**entry, "Code": "InternalError", "Message": "We encountered an internal error."}
                           for entry in refused]}

    sleeps: list[float] = []
    report = sweep_with(env, s3=Wrapped(real, delete_objects=delete_objects), sleeps=sleeps)

    assert (report.purged, report.failed) == (1, 0)
    assert sent == [14, 3]  # one page of 12 versions + 2 markers, then only the three refused keys
    assert len(sleeps) == 1
    assert s3_left(SELLER, "EU") == {"versions": 0, "markers": 0, "uploads": 0}
    assert receipts(env)[0]["deleted"]["s3_versions"] == 12


def test_delete_objects_errors_that_persist_leave_it_for_the_next_run(env: Resources) -> None:
    seed(env, SELLER, regions=("EU",))
    revoke(env, SELLER, "EU")
    real = boto3.client("s3")

    def always_refuse_one(**kwargs: Any) -> dict[str, Any]:
        [first, *rest] = kwargs["Delete"]["Objects"]
        if rest:
            real.delete_objects(**{**kwargs, "Delete": {"Objects": rest, "Quiet": True}})
        return {"Errors": [{**first, "Code": "SlowDown", "Message": "Please reduce your request rate."}]}

    report = sweep_with(env, s3=Wrapped(real, delete_objects=always_refuse_one))
    assert (report.purged, report.failed) == (0, 1)
    assert receipts(env) == []
    assert region_items(env, SELLER, "EU") != []  # the table is untouched until S3 is clean

    report = sweep_with(env)
    assert (report.purged, report.failed) == (1, 0)
    assert s3_left(SELLER, "EU") == {"versions": 0, "markers": 0, "uploads": 0}
    assert region_items(env, SELLER, "EU") == []


def conflict(actions: list[dict[str, Any]]) -> ClientError:
    """What DynamoDB answers when another write touched an item of the transaction meanwhile."""
    reasons = [{"Code": "TransactionConflict" if position == 1 else "None"} for position in range(len(actions))]
    return ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                        "CancellationReasons": reasons}, "TransactWriteItems")


def test_cancelled_deletion_transactions_are_sent_again_until_applied(env: Resources) -> None:
    seed(env, SELLER, regions=("EU",))
    revoke(env, SELLER, "EU")
    db = table(env).meta.client
    sizes: list[int] = []

    def transact_write_items(TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        sizes.append(len(TransactItems))
        if len(sizes) <= 2:
            raise conflict(TransactItems)
        return dict(db.transact_write_items(TransactItems=TransactItems))

    sleeps: list[float] = []
    report = sweep_with(env, db=Wrapped(db, transact_write_items=transact_write_items), sleeps=sleeps)

    assert (report.purged, report.failed) == (1, 0)
    # The claim's check and 7 deletions (6 of the region, and PROFILE: its last connection), refused twice;
    # then the check and the quota buckets (one per operation with a per-seller bucket); then the CONN item
    # with PROFILE and the other regions' checks.
    assert sizes == [8, 8, 8, 1 + len(OPERATION_RATES), 4]
    assert sleeps[:2] == [0.05, 0.1]  # backoff between the retries
    assert partition(env, SELLER) == []
    assert quota_items(env, SELLER, "EU") == 0


def test_a_crash_between_s3_and_the_table_resumes_with_one_receipt(env: Resources) -> None:
    seed(env, SELLER)
    purge_after = revoke(env, SELLER, "EU")
    db = table(env).meta.client

    def crash(**_: Any) -> dict[str, Any]:
        raise RuntimeError("the function timed out")

    report = sweep_with(env, db=Wrapped(db, transact_write_items=crash))
    assert (report.purged, report.failed) == (0, 1)
    assert s3_left(SELLER, "EU") == {"versions": 0, "markers": 0, "uploads": 0}
    assert "CONN#EU" in region_items(env, SELLER, "EU")
    assert len(region_items(env, SELLER, "EU")) > 1
    assert receipts(env) == []  # no receipt before the verification

    clock.get_clock().advance(86_400)  # the next daily run
    report = invoke()
    assert (report["due"], report["purged"], report["failed"], report["receipts"]) == (1, 1, 0, 1)
    assert region_items(env, SELLER, "EU") == []
    assert quota_items(env, SELLER, "EU") == 0
    [receipt] = receipts(env)
    assert receipt["purge_after"] == purge_after
    # The counts of the crashed run survive in the connection's counters until the receipt.
    assert receipt["deleted"]["s3_versions"] == 12
    assert receipt["deleted"]["multipart_uploads"] == 1
    assert receipt["started_at"] < receipt["verified_at"]
    assert invoke()["due"] == 0


def test_a_crash_after_the_receipt_resumes_without_a_second_receipt(env: Resources) -> None:
    seed(env, SELLER)
    revoke(env, SELLER, "EU")
    db = table(env).meta.client

    def crash_at_the_connection(TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        if any(action.get("Delete", {}).get("Key", {}).get("sk") == "CONN#EU" for action in TransactItems):
            raise RuntimeError("the function timed out")
        return dict(db.transact_write_items(TransactItems=TransactItems))

    report = sweep_with(env, db=Wrapped(db, transact_write_items=crash_at_the_connection))
    assert (report.purged, report.failed, report.receipts) == (0, 1, 1)
    assert region_items(env, SELLER, "EU") == ["CONN#EU"]

    report = invoke()
    assert (report["purged"], report["receipts"]) == (1, 0)
    assert region_items(env, SELLER, "EU") == []
    [receipt] = receipts(env)
    assert receipt["deleted"]["s3_versions"] == 12


# --- races -----------------------------------------------------------------------------------------------


class Interleaved:
    """The connections table's client with `step` run once, just before the sweep's first write to the
    seller's items (after its claim and its S3 step): the race driven in the order it happens."""

    def __init__(self, real: Any, step: Any) -> None:
        self._real = real
        self._step: Any = step

    def _first(self, operation: str) -> Any:
        def call(**kwargs: Any) -> Any:
            step, self._step = self._step, None
            if step is not None:
                step()
            return getattr(self._real, operation)(**kwargs)
        return call

    def __getattr__(self, name: str) -> Any:
        if name in ("batch_write_item", "transact_write_items"):
            return self._first(name)
        return getattr(self._real, name)


def test_a_reauthorization_racing_the_purge_keeps_every_item_of_the_connection(env: Resources) -> None:
    seed(env, SELLER)
    revoke(env, SELLER, "EU")
    region_before = region_items(env, SELLER, "EU")

    def reauthorize() -> None:
        # The seller consents again and Amazon confirms it: the connection is ACTIVE, with a planning
        # cursor; the token refresher caches an access token at once.
        authorize(table(env), SELLER, "EU", consented_at=clock.now())
        table(env).put_item(Item={"pk": f"SELLER#{SELLER}", "sk": "TOKEN#EU", "expires_at": 2})

    report = sweep_with(env, db=Interleaved(table(env).meta.client, reauthorize))

    # Nothing of the connection went: its cursor and token (the new authorization's), its jobs and rows.
    left = region_items(env, SELLER, "EU")
    assert {"PLAN#EU", "TOKEN#EU"} <= set(left)
    assert left == sorted({*region_before, "PLAN#EU"})
    connection = table(env).get_item(Key={"pk": f"SELLER#{SELLER}", "sk": "CONN#EU"})["Item"]
    assert connection["status"] == "ACTIVE" and "purge_after" not in connection
    assert quota_items(env, SELLER, "EU") == len(OPERATION_RATES)
    # Counted and logged as a connection that came back, not as a purge or a failure; no receipt.
    assert (report.purged, report.failed, report.came_back) == (0, 0, 1)
    assert receipts(env) == []


def test_a_revoked_sellers_waiting_consent_survives_its_last_purge(env: Resources) -> None:
    seed(env, SELLER, regions=("EU",))
    revoke(env, SELLER, "EU")
    # The seller consents again; Amazon has not confirmed it yet when the sweep comes.
    candidates = CandidateRepository(table(env))
    candidate = Candidate(SELLER, "EU", new_candidate_id(), Sealed(b"k" * 16, b"n" * 12, b"c" * 32),
                          created_at=clock.epoch_seconds(), verify_by=clock.epoch_seconds() + 3600,
                          flow="website", marketplace=None)
    candidates.create(candidate)

    assert invoke()["purged"] == 1

    assert partition(env, SELLER) == []
    # Confirmed after the purge, the consent becomes a new connection.
    assert candidates.get(SELLER, "EU", candidate.candidate_id) is not None
    assert candidates.promote(candidate, candidate.sealed, now=clock.now(),
                              marketplace_ids=["A1PA6795UKMFR9"]).value == "connected"


def correction_service(monkeypatch: pytest.MonkeyPatch, connections_table: Any) -> Any:
    """The data-request function's correction over `connections_table` (its own client)."""
    from data_requests.service import DataRequestsService
    from data_requests.settings import DataRequestsSettings
    from seller_insights.data_rights import DataRightsRepository
    from seller_insights.export_requests import ExportRequests

    monkeypatch.setenv("PURGE_AFTER_DAYS", "20")
    monkeypatch.setenv("EXPORT_QUEUE_URL", "unused: a correction queues nothing")
    return DataRequestsService(DataRequestsSettings.from_env(), repository=DataRightsRepository(connections_table),
                               s3=boto3.client("s3"), exports=ExportRequests(connections_table),
                               sqs=boto3.client("sqs"))


def test_a_correction_whose_write_lands_after_the_last_purge_leaves_no_profile(
        env: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(env, SELLER, regions=("EU",))
    request_deletion(env, SELLER, "EU")
    corrections = table(env)
    service = correction_service(monkeypatch, corrections)
    purged: list[int] = []

    def purge_first(params: dict[str, Any], **_: Any) -> None:
        # The correction has read the seller and is about to write PROFILE: the whole purge runs now.
        if "PROFILE" in str(params) and not purged:
            purged.append(sweep_with(env).purged)

    for operation in ("UpdateItem", "TransactWriteItems"):
        corrections.meta.client.meta.events.register(f"before-call.dynamodb.{operation}", purge_first)
    refused: list[str] = []
    try:
        service.correct(SELLER, {"contact_email": "new.owner@example.com"})
    except UnknownSeller as exc:
        refused.append(exc.message)

    assert purged == [1]
    assert partition(env, SELLER) == []  # no PROFILE came back after the purge
    assert refused and "already purged" in refused[0]  # the operator is told the seller is gone


def test_a_correction_between_the_verification_and_the_connections_deletion_goes_with_it(
        env: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(env, SELLER, regions=("EU",))
    request_deletion(env, SELLER, "EU")
    service = correction_service(monkeypatch, table(env))
    db = table(env).meta.client
    corrected: list[dict[str, Any]] = []

    def deletes_the_connection(operation: str, request: dict[str, Any]) -> bool:
        if operation == "delete_item":
            return bool(request["Key"]["sk"] == "CONN#EU")
        return any(action.get("Delete", {}).get("Key", {}).get("sk") == "CONN#EU"
                   for action in request["TransactItems"])

    def correct_first(operation: str) -> Any:
        def call(**request: Any) -> Any:
            # The sweep verified and wrote its receipt; it is about to delete the CONN item.
            if deletes_the_connection(operation, request) and not corrected:
                corrected.append(service.correct(SELLER, {"contact_email": "new.owner@example.com"}).body)
            return getattr(db, operation)(**request)
        return call

    report = sweep_with(env, db=Wrapped(db, delete_item=correct_first("delete_item"),
                                        transact_write_items=correct_first("transact_write_items")))

    assert report.purged == 1 and corrected and corrected[0]["contact_email"] == "new.owner@example.com"
    assert partition(env, SELLER) == []  # the PROFILE the correction wrote went with the CONN item


def test_a_connection_in_another_region_during_the_last_purge_keeps_the_profile(env: Resources) -> None:
    seed(env, SELLER, regions=("EU",))
    revoke(env, SELLER, "EU")
    db = table(env).meta.client
    connected: list[str] = []

    def connect_first(TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        if any(action.get("Delete", {}).get("Key", {}).get("sk") == "CONN#EU" for action in TransactItems) \
                and not connected:
            # The seller connects in NA and corrects its contact before the EU purge ends.
            authorize(table(env), SELLER, "NA", consented_at=clock.now())
            table(env).put_item(Item={"pk": f"SELLER#{SELLER}", "sk": "PROFILE", "contact_email": "n@example.com"})
            connected.append("NA")
        return dict(db.transact_write_items(TransactItems=TransactItems))

    report = sweep_with(env, db=Wrapped(db, transact_write_items=connect_first))
    assert (report.purged, report.failed) == (0, 1)  # left for the next run, which sees NA
    assert len(receipts(env)) == 1

    report = sweep_with(env)
    assert (report.purged, report.failed) == (1, 0)
    assert region_items(env, SELLER, "EU") == []
    assert {"CONN#NA", "PLAN#NA", "PROFILE"} <= {item["sk"] for item in partition(env, SELLER)}
    assert len(receipts(env)) == 1
