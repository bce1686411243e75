"""The data-subject-request routes (`/admin/sellers/{seller_id}...`): the real handler, moto in-process.

A seller with two regions, sealed refresh tokens, cached access tokens, plans, jobs, stored reports
(rows and S3 objects) and a profile; each right is exercised against what the contract says the
items must look like afterwards (docs/internal-contracts.md, "Retention and data rights").
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from seller_insights import aws, clock
from seller_insights.candidates import Candidate, CandidateRepository, new_candidate_id
from seller_insights.clock import FixedClock
from seller_insights.containers import forget_all
from seller_insights.object_keys import seller_prefix
from seller_insights.pseudonyms import seller_key
from seller_insights.redaction import register_secret
from seller_insights.repositories import iso, shard
from seller_insights.vault import Purpose, Sealed, SecretContext, Vault
from tests.support.api import FakeContext
from tests.support.iam import acting_as
from tests.support.resources import create_resources

SELLER = "A1DATARIGHTS01"
OTHER = "A2UNKNOWNSELLER"
EMAIL = "owner@example-seller.com"
NAME = "Ada Example"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
PURGE_AFTER_DAYS = 20
BUCKET = "data"
REFRESH = {"NA": "Atzr|IwEBIRefreshTokenNA" + "x" * 40, "EU": "Atzr|IwEBIRefreshTokenEU" + "y" * 40}
ACCESS = {"NA": "Atza|IwEBIAccessTokenNA" + "x" * 40, "EU": "Atza|IwEBIAccessTokenEU" + "y" * 40}
MARKETPLACE_IDS = {"NA": ["ATVPDKIKX0DER"], "EU": ["A1PA6795UKMFR9", "A13V1IB3VIYZZH"]}
# An operator's session of the ops role, as API Gateway's IAM authorization reports it.
OPS_ARN = "arn:aws:sts::123456789012:assumed-role/OpsSupportRole/alice"
OPS_IDENTITY = {"accessKey": "ASIAOPSEXAMPLE000000", "accountId": "123456789012",
                "callerId": "AROAOPSEXAMPLE:alice", "cognitoIdentity": None, "principalOrgId": None,
                "userArn": OPS_ARN, "userId": "AROAOPSEXAMPLE:alice"}
SECRET_KEYS = {"refresh_token", "token", "lease_owner", "lease_until", "refresh_shard", "reauth_shard",
               "refresh_due_at", "purge_shard", "k", "n", "c"}


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, log_guard: Any) -> Iterator[dict[str, Any]]:
    clock.set_clock(FixedClock(NOW))
    with mock_aws():
        session = boto3.session.Session()
        resources = create_resources(session, {"client_id": "c", "client_secret": "s", "application_id": "a"})
        audit_table = resources.tables["audit"]
        session.client("s3").create_bucket(Bucket=BUCKET)
        exports_queue = session.client("sqs").create_queue(QueueName="data-exports")["QueueUrl"]
        for key, value in {"STAGE": "local", "CONNECTIONS_TABLE": resources.tables["connections"],
                           "AUDIT_TABLE": audit_table, "DATA_BUCKET": BUCKET, "EXPORT_QUEUE_URL": exports_queue,
                           "PURGE_AFTER_DAYS": str(PURGE_AFTER_DAYS)}.items():
            monkeypatch.setenv(key, value)
        _reset()
        for value in (*REFRESH.values(), *ACCESS.values()):
            log_guard.watch(value)
        seeded = seed(resources.tables["connections"], resources.key_arn)
        yield {"connections": aws.table(resources.tables["connections"]), "audit": aws.table(audit_table),
               "s3": boto3.client("s3"), "reports": seeded, "sqs": boto3.client("sqs"), "exports_queue": exports_queue}
        _reset()
    clock.set_clock(clock.SystemClock())


def _reset() -> None:
    forget_all()


def seed(table_name: str, key_arn: str) -> dict[str, bytes]:
    """Two ACTIVE regions with tokens, plans, jobs, report rows and objects, and a profile."""
    table = boto3.resource("dynamodb").Table(table_name)
    s3 = boto3.client("s3")
    vault = Vault(boto3.client("kms"), key_arn)
    pk = f"SELLER#{SELLER}"
    reports: dict[str, bytes] = {}
    for region, marketplace in (("NA", "US"), ("EU", "DE")):
        sealed = vault.seal(REFRESH[region], SecretContext(Purpose.REFRESH_TOKEN, SELLER, region))
        access = vault.seal(ACCESS[region], SecretContext(Purpose.ACCESS_TOKEN, SELLER, region))
        table.put_item(Item={
            "pk": pk, "sk": f"CONN#{region}", "seller_id": SELLER, "region": region, "status": "ACTIVE",
            "refresh_token": sealed.to_item(), "consented_at": "2026-06-01T10:00:00Z",
            "reauthorization_due_at": "2027-06-01T10:00:00Z", "updated_at": "2026-06-01T10:00:00Z",
            "created_at": "2026-06-01T10:00:00Z", "consent_flow": "website", "marketplace": marketplace,
            "refresh_shard": shard(SELLER, region), "refresh_due_at": int(NOW.timestamp()) + 600,
            "reauth_shard": shard(SELLER, region)})
        table.put_item(Item={"pk": pk, "sk": f"TOKEN#{region}", "token": access.to_item(),
                             "token_expires_at": int(NOW.timestamp()) + 3000, "expires_at": int(NOW.timestamp()) + 3000,
                             "lease_owner": "someone", "lease_until": int(NOW.timestamp()) + 5})
        plan: dict[str, Any] = {"pk": pk, "sk": f"PLAN#{region}", "seller_id": SELLER, "region": region,
                                "plan_shard": shard(SELLER, region), "next_plan_at": int(NOW.timestamp()) + 900,
                                "due": {"GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL": 1},
                                "marketplace_ids": MARKETPLACE_IDS[region]}
        if region == "EU":
            plan["enabled"] = ["GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL"]
        else:  # Amazon refused settlements for lack of the Finance and Accounting role: retried tomorrow
            plan["denied"] = {"GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2": int(NOW.timestamp()) + 86400 - 600}
        table.put_item(Item=plan)
        table.put_item(Item={"pk": pk, "sk": f"JOB#{uuid.uuid4().hex}", "status": "WAITING", "region": region,
                             "expires_at": int(NOW.timestamp()) + 86400})
        for day in range(3):
            start, end = f"2026-11-{20 + day:02d}T00:00:00Z", f"2026-11-{21 + day:02d}T00:00:00Z"
            body = "order-id\tsku\tquantity\n" + "".join(f"{region}-{day}-{n}\tSKU{n}\t{n}\n" for n in range(50))
            data = body.encode() + ("€ü".encode() if region == "EU" else b"")
            key = (f"{seller_prefix(SELLER, region)}reports/GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL/"
                   f"{start}_{end}.tsv")
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            reports[key] = data
            table.put_item(Item={
                "pk": pk, "sk": f"REPORT#{region}#GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL#{start}#{end}",
                "region": region, "report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL",
                "report_id": f"5000{day}", "document_id": f"amzn1.doc.{day}", "s3_key": key, "bytes": len(data),
                "rows": 50, "sha256": hashlib.sha256(data).hexdigest(), "source_charset": "cp1252",
                "undecodable": 0, "dropped_columns": [], "stored_at": "2026-11-25T00:00:00Z",
                "window_start": start, "window_end": end})
    table.put_item(Item={"pk": pk, "sk": "PROFILE", "contact_email": EMAIL, "contact_name": NAME,
                         "updated_at": "2026-06-01T10:00:00Z"})
    # Another seller's report must never appear in this seller's answers.
    s3.put_object(Bucket=BUCKET, Key=f"{seller_prefix('A9SOMEONEELSE1', 'NA')}reports/X/y.tsv", Body=b"other")
    return reports


# --- calling the handler ------------------------------------------------------------------------------


def call(method: str, path: str, body: Any = None, *, raw_body: str | None = None,
         authorizer: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """The handler behind the IAM-authorized route; ``authorizer`` replaces requestContext.authorizer
    (``{}`` for none); ``headers``, when given, receives the answer's headers."""
    from data_requests.handler import lambda_handler

    request_id = base64.b32encode(os.urandom(10)).decode().rstrip("=")
    parts = path.split("/")
    route_path = "/admin/sellers/{seller_id}" + "".join(f"/{p}" for p in parts[4:])
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": f"{method} {route_path}", "rawPath": path, "rawQueryString": "",
        "headers": {"host": "api.example.com", "content-type": "application/json"},
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
                           "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "192.0.2.1", "userAgent": "pytest"},
                           "requestId": request_id, "routeKey": f"{method} {route_path}", "stage": "$default",
                           "timeEpoch": 0,
                           "authorizer": {"iam": OPS_IDENTITY} if authorizer is None else authorizer},
        "pathParameters": {"seller_id": parts[3]},
        "isBase64Encoded": False,
    }
    if body is not None or raw_body is not None:
        event["body"] = raw_body if raw_body is not None else json.dumps(body)
    with acting_as("data_requests"):
        raw = lambda_handler(event, FakeContext(function_name="data_requests"))
    assert raw["headers"]["Content-Type"] == "application/json"
    if headers is not None:
        headers.update(raw["headers"])
    return raw["statusCode"], json.loads(raw["body"])


class Deadline:
    """The Lambda context's remaining time, as the test sets it."""

    def __init__(self, millis: int = 900_000) -> None:
        self.millis = millis

    def __call__(self) -> int:
        return self.millis


def run_exports(env: dict[str, Any], *, receive_count: int = 1, remaining: Deadline | None = None,
                expect_failures: int = 0) -> list[dict[str, Any]]:
    """The export worker on every message of the data_exports queue (one SQS event each, as its role); a
    message that failed is deleted too (the test looks at what the failure left), and counted."""
    failures = 0
    messages = []
    while batch := env["sqs"].receive_message(QueueUrl=env["exports_queue"], MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            answer = invoke_worker(message, receive_count=receive_count, remaining=remaining)
            failures += len(answer["batchItemFailures"])
            env["sqs"].delete_message(QueueUrl=env["exports_queue"], ReceiptHandle=message["ReceiptHandle"])
            messages.append(message)
    assert failures == expect_failures
    return messages


def invoke_worker(message: dict[str, Any], *, receive_count: int = 1,
                  remaining: Deadline | None = None) -> dict[str, Any]:
    """One invocation of the export worker with `message` as the SQS event's record, as its role."""
    from data_exports.handler import lambda_handler

    event = {"Records": [{
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "0"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:data-exports", "awsRegion": "us-east-1"}]}
    context = FakeContext(function_name="data_exports")
    context.get_remaining_time_in_millis = remaining or Deadline()  # type: ignore[method-assign]
    with acting_as("data_exports"):
        answer: dict[str, Any] = lambda_handler(event, context)
    return answer


def export_done(env: dict[str, Any]) -> dict[str, Any]:
    """POST the export, run the worker, GET its status (DONE, with the URL)."""
    status, started = call("POST", f"/admin/sellers/{SELLER}/export")
    assert status == 202
    run_exports(env)
    status, body = call("GET", started["status_path"])
    assert status == 200 and body["status"] == "DONE", body
    return body


def item(env: dict[str, Any], sk: str, seller: str = SELLER) -> dict[str, Any] | None:
    return env["connections"].get_item(Key={"pk": f"SELLER#{seller}", "sk": sk}, ConsistentRead=True).get("Item")


def seller_items(env: dict[str, Any], seller: str = SELLER) -> list[dict[str, Any]]:
    return env["connections"].query(KeyConditionExpression="pk = :pk",
                                    ExpressionAttributeValues={":pk": f"SELLER#{seller}"})["Items"]


def audit_records(env: dict[str, Any]) -> list[dict[str, Any]]:
    return env["audit"].scan()["Items"]


def assert_no_secrets(text: str) -> None:
    assert "Atzr|" not in text and "Atza|" not in text
    assert not any(value in text for value in (*REFRESH.values(), *ACCESS.values()))


def keys_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | set().union(*(keys_of(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_of(v) for v in value)) if value else set()
    return set()


# --- access -----------------------------------------------------------------------------------------


def test_access_answers_connections_storage_and_profile_without_token_material(env):
    status, body = call("GET", f"/admin/sellers/{SELLER}")
    assert status == 200
    text = json.dumps(body)
    assert_no_secrets(text)
    assert not keys_of(body) & SECRET_KEYS
    regions = {c["region"]: c for c in body["connections"]}
    assert set(regions) == {"NA", "EU"}
    assert regions["NA"]["status"] == "ACTIVE" and regions["NA"]["marketplace"] == "US"
    assert regions["NA"]["report_types"] == "default"
    assert regions["EU"]["report_types"] == ["GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL"]
    assert regions["NA"]["consented_at"] == "2026-06-01T10:00:00Z"
    since, retry_at = (NOW - timedelta(minutes=10)), (NOW + timedelta(days=1, minutes=-10))
    assert regions["NA"]["permission_denied"] == {"GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2": {
        "since": iso(since), "retry_at": iso(retry_at)}}
    assert regions["EU"]["permission_denied"] == {}
    assert regions["NA"]["reauthorization_due_at"] == "2027-06-01T10:00:00Z"
    sizes = {key.split("/")[2]: 0 for key in env["reports"]}
    for key, data in env["reports"].items():
        sizes[key.split("/")[2]] += len(data)
    assert body["stored_reports"] == {r: {"reports": 3, "bytes": sizes[r]} for r in ("EU", "NA")}
    assert body["profile"]["contact_email"] == EMAIL and body["profile"]["contact_name"] == NAME
    [record] = audit_records(env)
    assert record["type"] == "access" and record["outcome"] == "done"
    assert record["seller_key"] == seller_key(SELLER)


# --- export -----------------------------------------------------------------------------------------


def download(env: dict[str, Any], request_id: str) -> zipfile.ZipFile:
    key = f"exports/{seller_key(SELLER)}/{request_id}.zip"
    data = env["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return zipfile.ZipFile(io.BytesIO(data))


def test_export_is_a_zip_with_manifest_index_and_every_report(env):
    headers: dict[str, str] = {}
    status, queued = call("POST", f"/admin/sellers/{SELLER}/export", headers=headers)
    assert status == 202
    assert queued["status"] == "QUEUED" and (queued["objects_total"], queued["bytes_total"]) == (
        6, sum(len(data) for data in env["reports"].values()))
    assert headers["Location"] == queued["status_path"] == f"/admin/sellers/{SELLER}/export/{queued['request_id']}"
    assert "url" not in queued
    status, body = call("GET", queued["status_path"])
    assert (status, body["status"], body["objects_done"]) == (200, "QUEUED", 0) and "url" not in body
    run_exports(env)
    status, body = call("GET", queued["status_path"])
    assert status == 200 and body["status"] == "DONE"
    assert (body["objects_done"], body["objects_total"]) == (6, 6)
    assert body["bytes_done"] == body["bytes_total"] == queued["bytes_total"]
    assert body["expires_in"] == 900
    url = body["url"]
    assert "X-Amz-Signature=" in url or "Signature=" in url
    assert f"exports/{seller_key(SELLER)}/{body['request_id']}.zip" in url
    archive = download(env, body["request_id"])
    names = set(archive.namelist())
    assert {"manifest.json", "connections.json", "profile.json", "reports.csv"} <= names
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["schema_version"] == "1"
    assert manifest["source"] == "Amazon SP-API via Seller Insights"
    assert manifest["generated_at"] == iso(NOW)
    assert manifest["record_counts"] == {"connections": 2, "profile": 1, "reports": 6, "report_rows": 300,
                                         "reports_missing": 0}
    assert body["files"] == len(names) == len(manifest["files"]) + 1
    head = env["s3"].head_object(Bucket=BUCKET, Key=f"exports/{seller_key(SELLER)}/{body['request_id']}.zip")
    assert body["zip_bytes"] == head["ContentLength"]
    for entry in manifest["files"]:
        data = archive.read(entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    stored = {key.split("/", 2)[2]: data for key, data in env["reports"].items()}  # region/reports/type/file
    index = list(csv.DictReader(io.StringIO(archive.read("reports.csv").decode())))
    assert len(index) == 6
    for row in index:
        _, region, report_type, file = row["file"].split("/")
        data = stored[f"{region}/reports/{report_type}/{file}"]
        assert archive.read(row["file"]) == data  # byte-equal to S3
        assert row["sha256"] == hashlib.sha256(data).hexdigest() and int(row["bytes"]) == len(data)
        assert row["rows"] == "50" and row["region"] == region and row["stored_at"] == "2026-11-25T00:00:00Z"
    connections = json.loads(archive.read("connections.json"))
    assert {c["region"] for c in connections} == {"NA", "EU"}
    assert not keys_of(connections) & SECRET_KEYS
    for name in names:
        assert_no_secrets(archive.read(name).decode("utf-8"))
    assert not any("A9SOMEONEELSE1" in name for name in names)
    records = {record["type"]: record for record in audit_records(env)}
    assert sorted(records) == ["export", "export_status"]  # the second status request overwrote nothing
    record = records["export"]
    assert (record["status"], record["outcome"]) == ("SUCCEEDED", "done")
    assert int(record["detail"]["files"]) == body["files"] and int(record["detail"]["bytes"]) == body["zip_bytes"]
    assert url not in json.dumps(audit_records(env), default=str)


def test_export_streams_large_reports_in_several_parts(env):
    key = f"{seller_prefix(SELLER, 'NA')}reports/GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE/9999.tsv"
    data = os.urandom(11 * 1024 * 1024)  # incompressible: the ZIP needs two 8 MiB parts
    env["s3"].put_object(Bucket=BUCKET, Key=key, Body=data)
    env["connections"].put_item(Item={
        "pk": f"SELLER#{SELLER}", "sk": "REPORT#NA#GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE#9999", "region": "NA",
        "report_type": "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE", "report_id": "9999", "s3_key": key,
        "bytes": len(data), "rows": 0, "sha256": hashlib.sha256(data).hexdigest(), "stored_at": iso(NOW)})
    body = export_done(env)
    head = env["s3"].head_object(Bucket=BUCKET, Key=f"exports/{seller_key(SELLER)}/{body['request_id']}.zip",
                                 PartNumber=2)
    assert head["PartsCount"] == 2
    archive = download(env, body["request_id"])
    assert archive.read("reports/NA/GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE/9999.tsv") == data
    assert archive.testzip() is None


def queued_export(env: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """POST an export; its request id and the message the worker will receive."""
    status, body = call("POST", f"/admin/sellers/{SELLER}/export")
    assert status == 202
    [message] = env["sqs"].receive_message(QueueUrl=env["exports_queue"], MaxNumberOfMessages=10)["Messages"]
    return body["request_id"], message


def open_uploads(env: dict[str, Any]) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = env["s3"].list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    return uploads


def export_objects(env: dict[str, Any]) -> list[str]:
    listed = env["s3"].list_objects_v2(Bucket=BUCKET, Prefix="exports/").get("Contents", [])
    return [entry["Key"] for entry in listed]


def test_a_worker_killed_midway_is_restarted_by_the_next_receive_without_a_second_zip(env, monkeypatch):
    from data_exports import archive

    from seller_insights.multipart_writer import MultipartWriter

    request_id, message = queued_export(env)
    monkeypatch.setattr(archive, "PROGRESS_OBJECTS", 1)
    real_add, added = archive.ExportBuilder._add_object, []

    def killed_on_the_fourth(self, *args, **kwargs):
        added.append(1)
        if len(added) == 4:
            raise Killed()
        return real_add(self, *args, **kwargs)

    with monkeypatch.context() as dying:
        dying.setattr(archive.ExportBuilder, "_add_object", killed_on_the_fourth)
        dying.setattr(MultipartWriter, "abort", lambda self: None)  # a killed runtime cleans nothing up
        with pytest.raises(Killed):
            invoke_worker(message)
    left = item(env, f"EXPORT#{request_id}")
    assert (left["status"], int(left["attempt"]), int(left["objects_done"])) == ("RUNNING", 1, 3)
    assert [u["UploadId"] for u in open_uploads(env)] == [left["upload_id"]]
    status, body = call("GET", f"/admin/sellers/{SELLER}/export/{request_id}")
    assert (status, body["status"], body["objects_done"], body["objects_total"]) == (200, "RUNNING", 3, 6)
    assert "url" not in body

    assert invoke_worker(message, receive_count=2) == {"batchItemFailures": []}
    done = item(env, f"EXPORT#{request_id}")
    assert (done["status"], int(done["attempt"]), int(done["objects_done"])) == ("DONE", 2, 6)
    assert "upload_id" not in done
    assert open_uploads(env) == []  # the dead attempt's upload was aborted
    assert export_objects(env) == [f"exports/{seller_key(SELLER)}/{request_id}.zip"]
    assert download(env, request_id).testzip() is None
    [record] = [r for r in audit_records(env) if r["type"] == "export"]
    assert (record["status"], record["outcome"]) == ("SUCCEEDED", "done")


def test_a_message_received_again_after_done_changes_nothing(env):
    request_id, message = queued_export(env)
    assert invoke_worker(message) == {"batchItemFailures": []}
    key = f"exports/{seller_key(SELLER)}/{request_id}.zip"
    before = env["s3"].head_object(Bucket=BUCKET, Key=key)["ETag"]
    assert invoke_worker(message, receive_count=2) == {"batchItemFailures": []}
    assert env["s3"].head_object(Bucket=BUCKET, Key=key)["ETag"] == before
    assert int(item(env, f"EXPORT#{request_id}")["attempt"]) == 1
    assert open_uploads(env) == [] and export_objects(env) == [key]


def test_an_older_attempt_loses_the_request_to_a_newer_one(env):
    from seller_insights.errors import ExportSuperseded
    from seller_insights.export_requests import ExportRequests, Progress

    requests = ExportRequests(env["connections"])
    requests.create(SELLER, "R1", now=NOW, objects=6, report_bytes=10)
    requests.claim(SELLER, "R1", attempt=1, now=NOW, objects=6, report_bytes=10)
    requests.uploading(SELLER, "R1", attempt=1, upload_id="first")
    requests.claim(SELLER, "R1", attempt=2, now=NOW, objects=6, report_bytes=10)  # the same message, again
    with pytest.raises(ExportSuperseded):
        requests.progress(SELLER, "R1", attempt=1, progress=Progress(1, 1, 1), now=NOW)
    with pytest.raises(ExportSuperseded):
        requests.done(SELLER, "R1", attempt=1, now=NOW, counts={"files": 1})
    assert not requests.failed(SELLER, "R1", reason="failed", now=NOW, attempt=1)  # not the older one's to end
    requests.done(SELLER, "R1", attempt=2, now=NOW, counts={"files": 9})
    assert (item(env, "EXPORT#R1")["status"], int(item(env, "EXPORT#R1")["files"])) == ("DONE", 9)
    assert not requests.failed(SELLER, "R1", reason="failed", now=NOW)  # DONE stays DONE


def test_a_failure_retries_and_the_last_receive_marks_the_request_failed(env, monkeypatch):
    from data_exports import archive

    request_id, message = queued_export(env)

    def storage_down(*_args, **_kwargs):
        raise RuntimeError("S3 is down")

    monkeypatch.setattr(archive.ExportBuilder, "_add_object", storage_down)
    assert len(invoke_worker(message, receive_count=1)["batchItemFailures"]) == 1
    assert item(env, f"EXPORT#{request_id}")["status"] == "RUNNING"  # retried by the queue
    assert len(invoke_worker(message, receive_count=5)["batchItemFailures"]) == 1  # on to the DLQ, alarmed
    failed = item(env, f"EXPORT#{request_id}")
    assert (failed["status"], failed["reason"]) == ("FAILED", "failed")
    assert open_uploads(env) == [] and export_objects(env) == []
    [record] = [r for r in audit_records(env) if r["type"] == "export"]
    assert (record["status"], record["outcome"]) == ("FAILED", "failed")
    status, body = call("GET", f"/admin/sellers/{SELLER}/export/{request_id}")
    assert (status, body["status"], body["reason"]) == (200, "FAILED", "failed") and "url" not in body


def test_an_export_that_cannot_finish_in_one_invocation_fails_without_a_zip(env):
    request_id, message = queued_export(env)
    assert invoke_worker(message, remaining=Deadline(30_000)) == {"batchItemFailures": []}
    failed = item(env, f"EXPORT#{request_id}")
    assert (failed["status"], failed["reason"]) == ("FAILED", "too_large")
    assert open_uploads(env) == [] and export_objects(env) == []


def test_export_status_of_an_unknown_or_malformed_request(env):
    status, body = call("GET", f"/admin/sellers/{SELLER}/export/NOSUCHREQUEST")
    assert status == 404 and "No export request" in body["message"]
    status, body = call("GET", f"/admin/sellers/{SELLER}/export/not.an.id")
    assert status == 400
    headers: dict[str, str] = {}
    status, body = call("POST", f"/admin/sellers/{SELLER}/export/ABC", headers=headers)
    assert (status, headers["Allow"]) == (405, "GET")
    assert {(r["type"], r["outcome"]) for r in audit_records(env)} == {("export_status", "bad_request")}


def test_a_done_export_expires_with_its_zip(env):
    body = export_done(env)
    clock.set_clock(FixedClock(NOW + timedelta(days=7)))
    status, later = call("GET", f"/admin/sellers/{SELLER}/export/{body['request_id']}")
    assert (status, later["status"]) == (200, "EXPIRED") and "url" not in later


# --- deletion request and rollback --------------------------------------------------------------------


def test_deletion_request_stops_pulls_and_sets_the_purge_date(env):
    status, body = call("POST", f"/admin/sellers/{SELLER}/deletion")
    purge = iso(NOW + timedelta(days=PURGE_AFTER_DAYS))
    assert status == 200 and body == {"purge_after": purge, "connections": 2, "pending_consents_destroyed": 0}
    for region in ("NA", "EU"):
        conn = item(env, f"CONN#{region}")
        assert conn["status"] == "DELETION_REQUESTED" and conn["previous_status"] == "ACTIVE"
        assert conn["purge_after"] == purge and conn["purge_shard"] == shard(SELLER, region)
        assert not {"refresh_shard", "refresh_due_at", "reauth_shard"} & set(conn)
        assert "refresh_token" in conn  # kept sealed for a rollback
        assert item(env, f"TOKEN#{region}") is None and item(env, f"PLAN#{region}") is None
    # Reports stay until the purge.
    assert len([i for i in seller_items(env) if i["sk"].startswith("REPORT#")]) == 6

    clock.get_clock().advance(3600)  # type: ignore[attr-defined]
    status, again = call("POST", f"/admin/sellers/{SELLER}/deletion")
    assert status == 200 and again["purge_after"] == purge and again["connections"] == 2  # the first date stands
    records = audit_records(env)
    assert [r["type"] for r in records] == ["deletion", "deletion"]
    assert {int(r["detail"]["new"]) for r in records} == {0, 1}


def test_rollback_restores_pulls_and_refreshes(env):
    before = {region: item(env, f"PLAN#{region}") for region in ("NA", "EU")}
    assert call("POST", f"/admin/sellers/{SELLER}/deletion")[0] == 200
    clock.get_clock().advance(86400)  # type: ignore[attr-defined]
    status, body = call("DELETE", f"/admin/sellers/{SELLER}/deletion")
    assert status == 200 and body == {"connections": 2, "statuses": {"NA": "ACTIVE", "EU": "ACTIVE"}}
    now = clock.now()
    for region in ("NA", "EU"):
        conn = item(env, f"CONN#{region}")
        assert conn["status"] == "ACTIVE" and "refresh_token" in conn
        assert not {"purge_after", "purge_shard", "previous_status", "plan_marketplace_ids"} & set(conn)
        assert conn["refresh_shard"] == conn["reauth_shard"] == shard(SELLER, region)
        assert int(conn["refresh_due_at"]) == int(now.timestamp())
        plan = item(env, f"PLAN#{region}")
        assert plan["marketplace_ids"] == before[region]["marketplace_ids"]
        assert plan.get("enabled") == before[region].get("enabled")
        assert plan["plan_shard"] == shard(SELLER, region) and int(plan["next_plan_at"]) == int(now.timestamp())
    status, body = call("DELETE", f"/admin/sellers/{SELLER}/deletion")
    assert status == 409 and "No deletion request is pending" in body["message"]


def test_rollback_after_the_purge_date_is_refused(env):
    assert call("POST", f"/admin/sellers/{SELLER}/deletion")[0] == 200
    clock.get_clock().advance(PURGE_AFTER_DAYS * 86400 + 1)  # type: ignore[attr-defined]
    status, body = call("DELETE", f"/admin/sellers/{SELLER}/deletion")
    assert status == 409 and "purge date" in body["message"]
    assert item(env, "CONN#NA")["status"] == "DELETION_REQUESTED"
    assert item(env, "PLAN#NA") is None


# --- token removal ----------------------------------------------------------------------------------


def test_token_removal_deletes_tokens_and_keeps_the_connection(env):
    status, body = call("POST", f"/admin/sellers/{SELLER}/tokens/removal")
    assert status == 200 and body == {"connections": 2, "pending_consents_destroyed": 0}
    for region in ("NA", "EU"):
        conn = item(env, f"CONN#{region}")
        assert conn["status"] == "TOKENS_REMOVED"
        assert not {"refresh_token", "refresh_shard", "refresh_due_at", "reauth_shard", "purge_after"} & set(conn)
        assert item(env, f"TOKEN#{region}") is None and item(env, f"PLAN#{region}") is None
    # A later deletion request and its rollback come back without tokens.
    assert call("POST", f"/admin/sellers/{SELLER}/deletion")[0] == 200
    status, body = call("DELETE", f"/admin/sellers/{SELLER}/deletion")
    assert body["statuses"] == {"NA": "TOKENS_REMOVED", "EU": "TOKENS_REMOVED"}
    assert item(env, "PLAN#NA") is None and "refresh_shard" not in item(env, "CONN#NA")


# --- correction ------------------------------------------------------------------------------------


def test_correction_writes_the_profile(env):
    new_email = "new.owner@example-seller.com"
    status, body = call("PATCH", f"/admin/sellers/{SELLER}", {"contact_email": new_email})
    assert status == 200
    assert body == {"contact_email": new_email, "contact_name": NAME, "updated_at": iso(NOW)}
    assert item(env, "PROFILE")["contact_email"] == new_email
    status, body = call("PATCH", f"/admin/sellers/{SELLER}", {"contact_name": None})
    assert status == 200 and body["contact_name"] is None and "contact_name" not in item(env, "PROFILE")
    records = audit_records(env)
    assert {r["type"] for r in records} == {"correction"}
    assert EMAIL not in json.dumps(records, default=str) and new_email not in json.dumps(records, default=str)


def test_a_correction_needs_a_connection_not_only_a_waiting_consent(env):
    waiting = "A3WAITINGSELLER1"
    CandidateRepository(env["connections"]).create(Candidate(
        waiting, "NA", new_candidate_id(), Sealed(b"k" * 16, b"n" * 12, b"c" * 32),
        created_at=int(NOW.timestamp()), verify_by=int(NOW.timestamp()) + 3600, flow="website", marketplace=None))
    status, body = call("PATCH", f"/admin/sellers/{waiting}", {"contact_name": "X"})
    # A profile of a seller Amazon has not confirmed would belong to no connection (and outlive the consent).
    assert status == 404 and "No seller with this id" in body["message"]
    assert item(env, "PROFILE", waiting) is None
    [record] = audit_records(env)
    assert (record["type"], record["outcome"]) == ("correction", "unknown_seller")


@pytest.mark.parametrize(("body", "raw", "needle"), [
    ({"contact_email": "not-an-email"}, None, "contact_email is not an e-mail"),
    ({"contact_name": ""}, None, "contact_name must be"),
    ({"contact_name": "x" * 201}, None, "contact_name must be"),
    ({"contact_email": 5}, None, "must be a string"),
    ({"phone": "1", "address": "x"}, None, "'address', 'phone'"),
    ({}, None, "Nothing to correct"),
    (None, "{not json", "not valid JSON"),
    (None, "", "The body is empty"),
    (None, "[1]", "must be a JSON object"),
])
def test_bad_corrections_are_refused(env, body, raw, needle):
    before = item(env, "PROFILE")
    status, answer = call("PATCH", f"/admin/sellers/{SELLER}", body, raw_body=raw)
    assert status == 400 and needle in answer["message"]
    assert item(env, "PROFILE") == before
    [record] = audit_records(env)
    assert record["outcome"] == "bad_request" and record["type"] == "correction"


# --- refusals and the audit trail --------------------------------------------------------------------


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None), ("POST", "/export", None), ("POST", "/deletion", None), ("DELETE", "/deletion", None),
    ("POST", "/tokens/removal", None), ("PATCH", "", {"contact_name": "X"}),
])
def test_unknown_seller_is_404_without_side_effects(env, method, suffix, body):
    items_before = sorted((i["pk"], i["sk"]) for i in env["connections"].scan()["Items"])
    objects_before = env["s3"].list_objects_v2(Bucket=BUCKET)["KeyCount"]
    status, answer = call(method, f"/admin/sellers/{OTHER}{suffix}", body)
    assert status == 404 and "No seller with this id" in answer["message"]
    assert sorted((i["pk"], i["sk"]) for i in env["connections"].scan()["Items"]) == items_before
    assert env["s3"].list_objects_v2(Bucket=BUCKET)["KeyCount"] == objects_before
    [record] = audit_records(env)
    assert record["outcome"] == "unknown_seller" and record["seller_key"] == seller_key(OTHER)


@pytest.mark.parametrize("seller", ["a1lowercase0", "A1SHORT", "A1" + "X" * 19, "A1-DASHES-01"])
def test_a_malformed_seller_id_is_400(env, seller):
    status, answer = call("GET", f"/admin/sellers/{seller}")
    assert status == 400 and "8 to 20 upper-case letters and digits" in answer["message"]
    [record] = audit_records(env)
    assert record["outcome"] == "bad_request" and "seller_key" not in record


@pytest.mark.parametrize(("method", "suffix", "allow"), [
    ("PUT", "", "GET, PATCH"), ("GET", "/export", "POST"), ("PATCH", "/deletion", "DELETE, POST"),
    ("GET", "/tokens/removal", "POST"),
])
def test_other_methods_are_405(env, method, suffix, allow):
    from tests.support.api import admin_answer, http_event

    event = http_event(method, f"/admin/sellers/{SELLER}{suffix}")
    event["requestContext"]["authorizer"] = {"iam": OPS_IDENTITY}
    with acting_as("data_requests"):
        response = admin_answer(event)
    assert response.status == 405 and response.headers["Allow"] == allow
    assert allow.split(", ")[0] in response.body["message"]


def test_path_parameters_win_over_the_raw_path(env):
    from tests.support.api import admin_answer, http_event

    event = http_event("GET", f"/admin/sellers/{SELLER}")
    event["requestContext"]["authorizer"] = {"iam": OPS_IDENTITY}
    event["pathParameters"] = {"seller_id": OTHER}
    with acting_as("data_requests"):
        assert admin_answer(event).status == 404


def test_audit_records_are_pii_free_and_complete(env):
    call("GET", f"/admin/sellers/{SELLER}")
    call("POST", f"/admin/sellers/{SELLER}/export")
    run_exports(env)  # the worker completes the export's record
    call("PATCH", f"/admin/sellers/{SELLER}", {"contact_email": "second@example.org"})
    call("POST", f"/admin/sellers/{SELLER}/tokens/removal")
    call("POST", f"/admin/sellers/{SELLER}/deletion")
    call("DELETE", f"/admin/sellers/{SELLER}/deletion")
    call("GET", f"/admin/sellers/{OTHER}")
    records = audit_records(env)
    assert sorted(r["type"] for r in records) == sorted(
        ["access", "export", "correction", "token_removal", "deletion", "deletion_rollback", "access"])
    text = json.dumps(records, default=str)
    for forbidden in (SELLER, OTHER, EMAIL, "second@example.org", "Atzr|", "Atza|", "X-Amz-"):
        assert forbidden not in text
    for record in records:
        assert record["id"].startswith("request#")
        assert set(record) == {"id", "type", "seller_key", "principal_arn", "received_at", "completed_at",
                               "outcome", "detail", "expires_at", "status"}
        assert record["status"] == ("SUCCEEDED" if record["outcome"] == "done" else "FAILED")
        assert record["principal_arn"] == OPS_ARN
        received = datetime.fromisoformat(record["received_at"])
        assert int(record["expires_at"]) == int(received.replace(year=received.year + 2, month=12).timestamp())


def test_each_record_names_the_callers_principal(env):
    bob = "arn:aws:sts::123456789012:assumed-role/OpsSupportRole/bob@example.com"
    as_bob = {"iam": {**OPS_IDENTITY, "userArn": bob}}
    assert call("GET", f"/admin/sellers/{SELLER}")[0] == 200
    assert call("POST", f"/admin/sellers/{SELLER}/deletion", authorizer=as_bob)[0] == 200
    assert call("GET", f"/admin/sellers/{OTHER}", authorizer=as_bob)[0] == 404
    records = {(r["type"], r["outcome"]): r["principal_arn"] for r in audit_records(env)}
    assert records == {("access", "done"): OPS_ARN, ("deletion", "done"): bob, ("access", "unknown_seller"): bob}


@pytest.mark.parametrize("authorizer", [
    {},  # no authorizer context: the route is not behind IAM authorization
    {"iam": None},
    {"iam": {**OPS_IDENTITY, "userArn": None}},
    {"iam": {**OPS_IDENTITY, "userArn": "alice"}},  # not an IAM or STS principal ARN
    {"lambda": {"userArn": OPS_ARN}},  # another authorizer's context is no IAM identity
], ids=["none", "iam-null", "arn-null", "not-an-arn", "lambda-authorizer"])
def test_a_request_without_an_iam_identity_is_refused_and_still_audited(env, authorizer):
    before = seller_items(env)
    status, body = call("POST", f"/admin/sellers/{SELLER}/deletion", authorizer=authorizer)
    assert status == 403 and "IAM authorization" in body["message"]
    assert seller_items(env) == before  # nothing done
    [record] = audit_records(env)
    assert (record["principal_arn"], record["outcome"], record["type"]) == ("unknown", "forbidden", "deletion")
    assert record["seller_key"] == seller_key(SELLER) and int(record["detail"]["status"]) == 403


def test_an_undecodable_body_without_identity_is_refused_as_forbidden(env):
    from tests.support.api import admin_answer

    event = {"version": "2.0", "rawPath": f"/admin/sellers/{SELLER}", "body": "%%%", "isBase64Encoded": True,
             "pathParameters": {"seller_id": SELLER},
             "requestContext": {"http": {"method": "PATCH"}, "requestId": "abc123"}}
    assert admin_answer(event).status == 403
    [record] = audit_records(env)
    assert (record["principal_arn"], record["outcome"], record["id"]) == ("unknown", "forbidden", "request#abc123")


def test_a_failure_is_audited_and_answers_500(env, monkeypatch):
    from data_requests import handler

    def boom(self, seller_id):
        raise RuntimeError("storage down")

    monkeypatch.setattr(handler.DataRequestsService, "access", boom)
    status, body = call("GET", f"/admin/sellers/{SELLER}")
    assert status == 500 and "send it again" in body["message"]
    [record] = audit_records(env)
    assert record["outcome"] == "failed"


class Killed(BaseException):
    """The Lambda runtime ending an invocation at its timeout: nothing after that point runs."""


# method, path suffix, body, the service's method, the audit record's type
EVERY_ROUTE = [("GET", "", None, "access", "access"), ("POST", "/export", None, "export", "export"),
               ("PATCH", "", {"contact_name": "X"}, "correct", "correction"),
               ("POST", "/deletion", None, "request_deletion", "deletion"),
               ("DELETE", "/deletion", None, "rollback_deletion", "deletion_rollback"),
               ("POST", "/tokens/removal", None, "remove_tokens", "token_removal")]


@pytest.mark.parametrize("route", EVERY_ROUTE, ids=[route[3] for route in EVERY_ROUTE])
def test_a_request_killed_midway_leaves_its_started_record(env, monkeypatch, route):
    from data_requests import handler

    method, suffix, body, action, request_type = route

    def killed(*_args, **_kwargs):
        raise Killed()

    monkeypatch.setattr(handler.DataRequestsService, action, killed)
    with pytest.raises(Killed):
        call(method, f"/admin/sellers/{SELLER}{suffix}", body)
    [record] = audit_records(env)
    # What the operator sees of a request that never finished: who asked what, when, and that it started.
    assert record["status"] == "STARTED"
    assert (record["seller_key"], record["principal_arn"], record["received_at"]) == (
        seller_key(SELLER), OPS_ARN, iso(NOW))
    assert record["type"] == request_type
    assert not {"completed_at", "outcome", "detail"} & set(record)


@pytest.mark.parametrize("route", EVERY_ROUTE, ids=[route[3] for route in EVERY_ROUTE])
def test_a_finished_request_leaves_one_completed_record(env, route):
    method, suffix, body, action, request_type = route
    if action == "rollback_deletion":
        assert call("POST", f"/admin/sellers/{SELLER}/deletion")[0] == 200
        env["audit"].delete_item(Key={"id": audit_records(env)[0]["id"]})
    status, _ = call(method, f"/admin/sellers/{SELLER}{suffix}", body)
    assert status == (202 if action == "export" else 200)
    if action == "export":  # its record stays STARTED until the worker completes it
        assert [r["status"] for r in audit_records(env)] == ["STARTED"]
        run_exports(env)
    [record] = audit_records(env)
    assert (record["type"], record["status"], record["outcome"]) == (request_type, "SUCCEEDED", "done")
    assert record["completed_at"] == iso(NOW)


def test_a_refused_or_failed_request_completes_its_record_as_failed(env, monkeypatch):
    from data_requests import handler

    assert call("PATCH", f"/admin/sellers/{SELLER}", {"phone": "1"})[0] == 400
    [refused] = audit_records(env)
    assert (refused["status"], refused["outcome"], int(refused["detail"]["status"])) == ("FAILED", "bad_request", 400)

    def boom(self, seller_id):
        raise RuntimeError("storage down")

    monkeypatch.setattr(handler.DataRequestsService, "access", boom)
    assert call("GET", f"/admin/sellers/{SELLER}")[0] == 500
    failed = next(r for r in audit_records(env) if r["id"] != refused["id"])
    assert (failed["status"], failed["outcome"], int(failed["detail"]["status"])) == ("FAILED", "failed", 500)


def test_the_url_never_reaches_the_logs(env, capfd, caplog):
    body = export_done(env)
    register_secret(body["url"])
    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert body["url"] not in logs and SELLER not in logs and EMAIL not in logs
    assert seller_key(SELLER) in logs
    print(out, end="")


def test_an_unknown_admin_path_is_404_and_audited(env):
    status, body = call("GET", f"/admin/sellers/{SELLER}/nothing")
    assert status == 404 and "no such admin route" in body["message"]
    [record] = audit_records(env)
    assert (record["type"], record["outcome"], int(record["detail"]["status"])) == ("access", "bad_request", 404)


def test_a_trailing_slash_is_the_same_route(env):
    assert call("GET", f"/admin/sellers/{SELLER}/")[0] == 200
    assert call("POST", f"/admin/sellers/{SELLER}/tokens/removal/")[0] == 200


def test_a_missing_seller_id_is_400(env):
    status, body = call("POST", "/admin/sellers//export")
    assert status == 400 and "The seller id is missing" in body["message"]
    [record] = audit_records(env)
    assert (record["type"], record["outcome"]) == ("export", "bad_request") and "seller_key" not in record


def test_no_answer_goes_out_without_its_audit_record(env, monkeypatch):
    from botocore.exceptions import ClientError

    from seller_insights.data_rights import AuditLog

    def refused(self, **_record):
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutItem")

    # The record cannot be started: nothing is done, the answer is 503.
    with monkeypatch.context() as patched:
        patched.setattr(AuditLog, "start_request", refused)
        for method, suffix in (("GET", ""), ("POST", "/deletion"), ("PUT", "")):
            status, body = call(method, f"/admin/sellers/{SELLER}{suffix}")
            assert status == 503 and "could not be recorded in the audit log" in body["message"]
    assert item(env, "CONN#NA")["status"] == "ACTIVE"
    # Started but not completed: the request ran (it is safe to repeat), yet no answer goes out but 503, and
    # its record stays STARTED.
    monkeypatch.setattr(AuditLog, "complete_request", refused)
    for method, suffix in (("GET", ""), ("POST", "/deletion"), ("PUT", "")):
        status, body = call(method, f"/admin/sellers/{SELLER}{suffix}")
        assert status == 503 and "could not be recorded in the audit log" in body["message"]
    assert {record["status"] for record in audit_records(env)} == {"STARTED"}
    assert len(audit_records(env)) == 3


def test_access_shows_each_connections_marketplaces_and_when_amazon_was_asked(env):
    checked = int(NOW.timestamp()) - 3600
    env["connections"].update_item(Key={"pk": f"SELLER#{SELLER}", "sk": "PLAN#EU"},
                                   UpdateExpression="SET participations_checked_at = :at",
                                   ExpressionAttributeValues={":at": checked})

    regions = {c["region"]: c for c in call("GET", f"/admin/sellers/{SELLER}")[1]["connections"]}

    assert regions["EU"]["marketplaces"] == {"participating": MARKETPLACE_IDS["EU"],
                                             "checked_at": "2026-11-29T11:00:00Z"}
    assert regions["NA"]["marketplaces"] == {"participating": MARKETPLACE_IDS["NA"], "checked_at": None}
    # Paused by a deletion request: the marketplaces it will pull again, not when they were checked.
    assert call("POST", f"/admin/sellers/{SELLER}/deletion")[0] == 200
    paused = {c["region"]: c for c in call("GET", f"/admin/sellers/{SELLER}")[1]["connections"]}
    assert paused["EU"]["marketplaces"] == {"participating": MARKETPLACE_IDS["EU"], "checked_at": None}


# --- coverage (issue 10): what of each type and marketplace is stored, and what history is left ----------


def test_access_lists_coverage_per_type_and_marketplace(env):
    from seller_insights.coverage import Cursor, Window, epoch_of

    def at(text: str) -> int:
        return epoch_of(text)

    listings = Cursor("GET_MERCHANT_LISTINGS_ALL_DATA", "ATVPDKIKX0DER", at("2026-11-20T00:00:00Z"),
                      at("2026-11-25T00:00:00Z"), at("2026-11-20T00:00:00Z"), last_stored_at=at("2026-11-25T01:00:00Z"))
    orders = Cursor("GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL", None, at("2026-10-01T00:00:00Z"),
                    at("2026-11-25T11:00:00Z"), at("2025-11-25T00:00:00Z"),
                    windows={at("2026-11-25T12:00:00Z"): Window(at("2026-11-25T11:00:00Z"),
                                                                at("2026-11-25T12:00:00Z"))})
    env["connections"].update_item(
        Key={"pk": f"SELLER#{SELLER}", "sk": "PLAN#NA"}, UpdateExpression="SET coverage = :c",
        ExpressionAttributeValues={":c": {c.key: c.to_item() for c in (listings, orders)}})

    status, body = call("GET", f"/admin/sellers/{SELLER}")

    assert status == 200
    regions = {c["region"]: c for c in body["connections"]}
    assert regions["EU"]["coverage"] == []
    assert regions["NA"]["coverage"] == [
        {"report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL", "marketplace_id": None,
         "covered_from": "2026-10-01T00:00:00Z", "covered_until": "2026-11-25T11:00:00Z",
         "backfill_left_days": 310.0, "last_stored_at": None, "windows_in_flight": 1, "windows_failed": 0,
         "history_only": False},
        {"report_type": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplace_id": "ATVPDKIKX0DER",
         "covered_from": "2026-11-20T00:00:00Z", "covered_until": "2026-11-25T00:00:00Z",
         "backfill_left_days": 0.0, "last_stored_at": "2026-11-25T01:00:00Z", "windows_in_flight": 0,
         "windows_failed": 0, "history_only": False},
    ]


# --- operators' tools: the seller key and backfills -------------------------------------------------------


def test_the_seller_key_route_answers_the_opaque_key_audited(env):
    status, body = call("GET", f"/admin/sellers/{SELLER}/key")
    assert (status, body) == (200, {"seller_key": seller_key(SELLER)})
    # A purged (or never seen) seller's old log lines are named by a key too.
    status, body = call("GET", "/admin/sellers/A9NEVERSEEN0001/key")
    assert (status, body) == (200, {"seller_key": seller_key("A9NEVERSEEN0001")})
    records = audit_records(env)
    assert sorted(r["type"] for r in records) == ["seller_key", "seller_key"]
    assert {r["outcome"] for r in records} == {"done"}


def test_a_backfill_rewinds_the_types_cursors_and_makes_the_plan_due(env):
    from seller_insights.coverage import DAY, Cursor, epoch_of
    from seller_insights.report_jobs import PlanRepository

    orders_type = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL"
    orders = Cursor(orders_type, None, epoch_of("2026-10-01T00:00:00Z"), epoch_of("2026-11-29T11:00:00Z"),
                    epoch_of("2026-10-01T00:00:00Z"))
    env["connections"].update_item(
        Key={"pk": f"SELLER#{SELLER}", "sk": "PLAN#NA"}, UpdateExpression="SET coverage = :c, version = :v",
        ExpressionAttributeValues={":c": {orders.key: orders.to_item()}, ":v": 4})

    status, body = call("POST", f"/admin/sellers/{SELLER}/backfill", {"report_type": orders_type,
                                                                    "since": "2026-11-20"})

    assert status == 200, body
    # Both connections have a plan; only NA's has planned orders yet.
    assert body["connections"] == 2 and body["cursors"] == 1 and body["not_planned"] == 0
    assert body["pull"] == f"b{int(NOW.timestamp())}"
    plan = PlanRepository(env["connections"]).get(SELLER, "NA")
    assert plan is not None and plan.next_plan_at <= int(NOW.timestamp())
    cursor = plan.coverage[orders_type]
    assert (cursor.covered_from, cursor.covered_until) == (epoch_of("2026-10-01T00:00:00Z"),
                                                           epoch_of("2026-11-20T00:00:00Z"))
    assert cursor.refetch == (epoch_of("2026-11-29T11:00:00Z"), body["pull"])
    assert cursor.covered_until - epoch_of("2026-11-20T00:00:00Z") < DAY
    (record,) = [r for r in audit_records(env) if r["type"] == "backfill"]
    assert record["outcome"] == "done" and record["seller_key"] == seller_key(SELLER)


@pytest.mark.parametrize(("body", "needle"), [
    ({"report_type": "GET_NOTHING", "since": "2026-11-20"}, "catalog"),
    ({"report_type": "GET_MERCHANT_LISTINGS_ALL_DATA", "since": "2026-11-20"}, "no history"),
    ({"report_type": "GET_FBA_FULFILLMENT_CUSTOMER_RETURNS_DATA", "since": "2024-01-01"}, "545 days at most"),
    ({"report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL", "since": "20.11.2026"}, "a date"),
    ({"report_type": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL", "since": "2026-12-01"}, "past"),
])
def test_a_backfill_beyond_the_types_history_or_malformed_is_refused(env, body, needle):
    status, answer = call("POST", f"/admin/sellers/{SELLER}/backfill", body)
    assert status == 400 and needle in answer["message"], answer
