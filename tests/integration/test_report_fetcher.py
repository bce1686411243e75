"""The report fetcher through its handler: moto in-process, the Amazon emulator's Reports API over HTTP.

Each test ends with the "nothing lost" oracle: every job in a recorded terminal
state (or knowingly waiting), one object and one row per report, no orphan multipart upload.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json

import boto3
import pytest
import requests

from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.containers import forget_all
from seller_insights.object_keys import seller_prefix
from seller_insights.report_catalog import ORDERS, SETTLEMENT
from tests.support.api import ConsentClient, FakeContext
from tests.support.flows import connect_and_confirm
from tests.support.iam import acting_as
from tests.support.sweeps import plan_reports
from tests.support.tokens import provider

SELLER = "A1REPORTS000001"


@pytest.fixture
def reports_env(token_env, emulator, monkeypatch):
    clock.set_clock(FixedClock(emulator.now()))  # Amazon refuses windows in its future
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="data")
    queue = boto3.client("sqs").create_queue(QueueName="report-jobs")["QueueUrl"]
    # One job's life per test: no history for new cursors (backfill: test_report_fetcher_coverage.py).
    for key, value in {"DATA_BUCKET": "data", "REPORT_JOBS_QUEUE_URL": queue,
                       "DEFAULT_REPORT_TYPES": ORDERS, "REPORT_BACKFILL_DAYS": f"{ORDERS}=0"}.items():
        monkeypatch.setenv(key, value)
    forget_all()
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    provider(token_env, emulator.base_url).get(SELLER, "NA")  # the token refresher keeps one warm
    yield queue
    forget_all()


def invoke(event):
    from report_fetcher.handler import lambda_handler

    with acting_as("report_fetcher"):
        return lambda_handler(event, FakeContext(function_name="report_fetcher"))


def deliver(queue):
    """One poll of the job queue, as the event source mapping would do it; the failed stay."""
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    if not messages:
        return 0
    result = invoke({"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]})
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    for message in messages:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


def advance(emulator, seconds):
    clock.get_clock().advance(seconds)
    emulator.advance_clock(seconds)


def run_until_settled(queue, emulator, rounds=8, step=120):
    """The queue drained, then the wake-jobs schedule (parked jobs that are due), each round."""
    for _ in range(rounds):
        while deliver(queue):
            pass
        invoke({"task": "wake-jobs"})
        advance(emulator, step)


def items(prefix):
    table = boto3.resource("dynamodb").Table("test-connections")
    return [i for i in table.query(KeyConditionExpression="pk = :pk",
                                   ExpressionAttributeValues={":pk": f"SELLER#{SELLER}"})["Items"]
            if i["sk"].startswith(prefix)]


def objects():
    listing = boto3.client("s3").list_objects_v2(Bucket="data", Prefix=seller_prefix(SELLER))
    return {o["Key"]: o for o in listing.get("Contents", [])}


def stats(emulator):
    return requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()


def seed(emulator, report_type, outcome, content=None, *, content_type="text/plain; charset=Cp1252", gzip=True):
    body = {"selling_partner_id": SELLER, "report_type": report_type, "marketplace_ids": ["ATVPDKIKX0DER"],
            "outcome": outcome, "content_type": content_type, "gzip": gzip}
    if content is not None:
        body["content_base64"] = base64.b64encode(content).decode()
    answer = requests.post(f"{emulator.base_url}/_emulator/reports/documents", json=body, timeout=5)
    assert answer.status_code == 200, answer.text


def fault(emulator, operation, status, count=1):
    requests.post(f"{emulator.base_url}/_emulator/faults",
                  json={"operation": operation, "status": status, "count": count}, timeout=5).raise_for_status()


def assert_nothing_lost():
    stored = objects()
    rows = items("REPORT#")
    assert len(rows) == len(stored)
    for row in rows:
        body = boto3.client("s3").get_object(Bucket="data", Key=row["s3_key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == row["sha256"] and len(body) == row["bytes"]
        body.decode("utf-8")
    assert boto3.client("s3").list_multipart_uploads(Bucket="data").get("Uploads", []) == []


def test_plan_fetch_store(reports_env, emulator):
    assert plan_reports() == {"connections": 1, "jobs": 1, "messages": 1, "subscribed": 0,
                              "replanned": 0, "gone": 0, "skipped": 0}
    run_until_settled(reports_env, emulator)
    (job,) = items("JOB#")
    assert job["status"] == "DONE"
    (row,) = items("REPORT#")
    assert row["rows"] > 0 and row["source_charset"] == "cp1252" and row["undecodable"] == 0
    assert "ship-city" in row["dropped_columns"] and "ship-postal-code" in row["dropped_columns"]
    key = row["s3_key"]
    assert key == f"{seller_prefix(SELLER, 'NA')}reports/{ORDERS}/{job['window_start']}_{job['window_end']}.tsv"
    header = boto3.client("s3").get_object(Bucket="data", Key=key)["Body"].read().decode().splitlines()[0]
    assert "ship-city" not in header and "amazon-order-id" in header
    assert stats(emulator)["throttled"] == 0
    assert_nothing_lost()


def test_a_plan_that_runs_twice_requests_once(reports_env, emulator):
    plan_reports()
    from report_fetcher import handler

    handler._enqueue(handler.Job.from_message(json.loads(
        boto3.client("sqs").receive_message(QueueUrl=reports_env, VisibilityTimeout=0)["Messages"][0]["Body"]
    )["jobs"][0]), 0, None)  # the same planner message delivered twice
    run_until_settled(reports_env, emulator)
    assert stats(emulator)["spapi"]["createReport"] == 1
    assert len(objects()) == 1
    assert_nothing_lost()


def test_throttling_requeues_without_looping(reports_env, emulator):
    fault(emulator, "createReport", 429, 2)
    plan_reports()
    deliver(reports_env)
    assert items("JOB#")[0]["status"] == "NEW"  # not requested yet: back on the queue, delayed
    run_until_settled(reports_env, emulator)
    assert items("JOB#")[0]["status"] == "DONE"
    assert stats(emulator)["spapi"]["createReport"] == 3
    assert_nothing_lost()


def test_server_errors_while_polling_are_retried(reports_env, emulator):
    fault(emulator, "getReport", 503, 2)
    plan_reports()
    run_until_settled(reports_env, emulator)
    assert items("JOB#")[0]["status"] == "DONE"
    assert_nothing_lost()


def test_cancelled_means_no_data(reports_env, emulator):
    seed(emulator, ORDERS, "CANCELLED")
    plan_reports()
    run_until_settled(reports_env, emulator)
    assert items("JOB#")[0]["status"] == "NO_DATA"
    assert objects() == {} and items("REPORT#") == []


def test_fatal_keeps_the_error_document_cools_down_and_retries(reports_env, emulator):
    seed(emulator, ORDERS, "FATAL", b'{"errorDetails": "bad window"}', content_type="application/json", gzip=False)
    plan_reports()
    run_until_settled(reports_env, emulator, rounds=3)
    (job,) = items("JOB#")
    assert job["status"] == "COOLDOWN" and job["attempts"] == 1
    assert [k for k in objects() if "/errors/" in k]  # the error document is kept
    run_until_settled(reports_env, emulator, rounds=6, step=600)  # 30-minute cooldown, then a new request
    assert items("JOB#")[0]["status"] == "DONE"
    assert stats(emulator)["spapi"]["createReport"] == 2


def test_truncated_document_is_fetched_again_with_a_fresh_url(reports_env, emulator):
    fault(emulator, "document", "truncated")
    plan_reports()
    run_until_settled(reports_env, emulator)
    assert items("JOB#")[0]["status"] == "DONE"
    assert stats(emulator)["spapi"]["getReportDocument"] == 2
    assert_nothing_lost()


def test_metadata_write_failure_after_upload_ends_with_one_object_and_one_row(reports_env, emulator, monkeypatch):
    from seller_insights.report_jobs import ReportRepository

    real_put = ReportRepository.put
    failures = iter([RuntimeError("DynamoDB unavailable")])

    def flaky(self, report, stored_at):
        for error in failures:
            raise error
        return real_put(self, report, stored_at)

    monkeypatch.setattr(ReportRepository, "put", flaky)
    plan_reports()
    run_until_settled(reports_env, emulator)
    assert items("JOB#")[0]["status"] == "DONE"
    assert len(objects()) == 1 and len(items("REPORT#")) == 1  # the retry overwrote the same key
    assert_nothing_lost()


def test_settlement_reports_are_discovered_not_requested(reports_env, emulator, monkeypatch):
    monkeypatch.setenv("DEFAULT_REPORT_TYPES", SETTLEMENT)
    forget_all()
    seed(emulator, SETTLEMENT, "DONE", "settlement-id\ttotal-amount\tcurrency\n1\t10,00 €\tEUR\n".encode("cp1252"))
    plan_reports()
    run_until_settled(reports_env, emulator, rounds=2)
    assert stats(emulator)["spapi"]["createReport"] == 0
    (row,) = items("REPORT#")
    assert row["s3_key"].endswith(f"/{row['report_id']}.tsv")
    body = boto3.client("s3").get_object(Bucket="data", Key=row["s3_key"])["Body"].read().decode()
    assert "10,00 €" in body
    assert_nothing_lost()


def test_a_revoked_connection_ends_its_jobs_without_calling_amazon(reports_env, emulator, token_env):
    plan_reports()
    from seller_insights.repositories import ConnectionsRepository

    table = boto3.resource("dynamodb").Table("test-connections")
    now = clock.now()
    assert ConnectionsRepository(table).mark_revoked(SELLER, "NA", now=now, purge_after=now)
    before = stats(emulator)["spapi"]
    run_until_settled(reports_env, emulator, rounds=1)
    assert items("JOB#")[0]["status"] == "ENDED"
    assert stats(emulator)["spapi"] == before


def test_without_a_cached_token_the_job_waits_and_asks_for_a_refresh(reports_env, emulator):
    table = boto3.resource("dynamodb").Table("test-connections")
    table.delete_item(Key={"pk": f"SELLER#{SELLER}", "sk": "TOKEN#NA"})
    forget_all()  # a new container: nothing in memory either
    refreshes = stats(emulator)["lwa"]["refresh_token"]
    plan_reports()
    deliver(reports_env)
    assert items("JOB#")[0]["status"] == "NEW"
    connection = table.get_item(Key={"pk": f"SELLER#{SELLER}", "sk": "CONN#NA"})["Item"]
    assert connection["refresh_due_at"] <= clock.epoch_seconds()
    assert stats(emulator)["lwa"]["refresh_token"] == refreshes  # the fetcher itself never refreshed


def test_a_malformed_message_fails_alone(reports_env):
    result = invoke({"Records": [{"messageId": "bad", "body": "{not json"},
                                 {"messageId": "odd", "body": json.dumps({"something": "else"})}]})
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}, {"itemIdentifier": "odd"}]}


def test_an_unknown_column_is_dropped_and_counted(reports_env, emulator, capfd):
    header = "amazon-order-id\tship-city\tgift-message-text\tquantity"
    seed(emulator, ORDERS, "DONE", f"{header}\n111-1\tBerlin\tHappy birthday, Jane\t2\n".encode("cp1252"))
    plan_reports()
    run_until_settled(reports_env, emulator)
    (row,) = items("REPORT#")
    assert row["dropped_columns"] == ["ship-city", "gift-message-text"]
    body = boto3.client("s3").get_object(Bucket="data", Key=row["s3_key"])["Body"].read().decode()
    assert body == "amazon-order-id\tquantity\n111-1\t2\n"
    output = "".join(capfd.readouterr())
    assert '"UnexpectedColumnsDropped":[1.0]' in output  # ship-city is expected; the new column is not


def test_a_late_planner_copy_after_a_quota_wait_is_dropped(reports_env, emulator):
    fault(emulator, "createReport", 429, 1)
    plan_reports()
    planner_message = boto3.client("sqs").receive_message(QueueUrl=reports_env, VisibilityTimeout=0)["Messages"][0]
    deliver(reports_env)  # 429: the job waits, NEW, at version 1
    invoke({"Records": [{"messageId": "copy", "body": planner_message["Body"]}]})  # a duplicate delivery
    run_until_settled(reports_env, emulator)
    assert stats(emulator)["spapi"]["createReport"] == 2  # the throttled call and one more: no twin
    assert_nothing_lost()


def test_an_orphaned_job_is_adopted(reports_env, emulator):
    plan_reports()
    body = boto3.client("sqs").receive_message(QueueUrl=reports_env)["Messages"][0]["Body"]
    deliver_result = invoke({"Records": [{"messageId": "m", "body": body}]})
    assert deliver_result == {"batchItemFailures": []}
    boto3.client("sqs").purge_queue(QueueUrl=reports_env)  # the step's re-queued message is lost
    advance(emulator, 1900)
    invoke({"Records": [{"messageId": "m", "body": body}]})  # SQS delivers the old message again
    run_until_settled(reports_env, emulator)
    assert items("JOB#")[0]["status"] == "DONE"
    assert stats(emulator)["spapi"]["createReport"] == 1
    assert_nothing_lost()


# --- report bytes that try to move data between columns ----------------------------------------------

E_MAIL = "max.mustermann@example.de"


def stored_body(row):
    return boto3.client("s3").get_object(Bucket="data", Key=row["s3_key"])["Body"].read().decode()


def test_rows_of_another_width_are_dropped_counted_and_never_logged(reports_env, emulator, capfd):
    header = "amazon-order-id\tproduct-name\tbuyer-email\tsku\tquantity"
    rows = ["111-1\tBrotdose Öko\ta1@marketplace.amazon.com\tSKU-1\t1",
            f"111-2\tBrotdose\tÖko Deluxe\t{E_MAIL}\tSKU-2\t2",  # a tab typed into the product name
            "111-3\tKaffeebecher\nGröße L\tz9@marketplace.amazon.com\tSKU-3\t3",  # a line break
            "",
            "111-4\tTasse\tb2@marketplace.amazon.com\tSKU-4\t4"]
    seed(emulator, ORDERS, "DONE", "\r\n".join([header, *rows]).encode("cp1252"))
    plan_reports()
    run_until_settled(reports_env, emulator)
    (row,) = items("REPORT#")
    assert (row["rows"], row["malformed_rows"], row["blank_lines"]) == (2, 3, 1)
    assert stored_body(row) == "amazon-order-id\tproduct-name\tsku\tquantity\n111-1\tBrotdose Öko\tSKU-1\t1\n" \
                               "111-4\tTasse\tSKU-4\t4"
    output = "".join(capfd.readouterr())
    assert '"MalformedRowsDropped":[3.0]' in output
    for content in (E_MAIL, "Deluxe", "Größe", "111-2", "111-3"):
        assert content not in output  # neither the rows nor anything that points at them
    assert_nothing_lost()


def test_a_charset_amazon_does_not_send_falls_back_and_is_counted(reports_env, emulator, capfd):
    body = "amazon-order-id\tproduct-name\n111-1\t+AEA- Größe\n".encode("cp1252")
    seed(emulator, ORDERS, "DONE", body, content_type="text/plain; charset=UTF-7")
    plan_reports()
    run_until_settled(reports_env, emulator)
    (row,) = items("REPORT#")
    assert (row["source_charset"], row["charset_rejected"]) == ("cp1252", True)
    assert stored_body(row) == "amazon-order-id\tproduct-name\n111-1\t+AEA- Größe\n"  # utf-7 would give "@"
    output = "".join(capfd.readouterr())
    assert '"CharsetRejected":[1.0]' in output
    assert "UTF-7" not in output
    assert_nothing_lost()


def test_nul_bytes_are_removed_and_counted_on_the_row(reports_env, emulator):
    seed(emulator, ORDERS, "DONE", b"amazon-order-id\tquantity\n111-1\x00\x00\t2\n")
    plan_reports()
    run_until_settled(reports_env, emulator)
    (row,) = items("REPORT#")
    assert (row["nul_bytes"], row["charset_rejected"], row["malformed_rows"]) == (2, False, 0)
    assert stored_body(row) == "amazon-order-id\tquantity\n111-1\t2\n"


def test_header_cells_that_are_not_column_names_are_only_counted(reports_env, emulator, capfd):
    header = f"amazon-order-id\tship-city\tBitte an {E_MAIL}\tgift-message-text\t購入者名\tquantity"
    seed(emulator, ORDERS, "DONE", f"{header}\n111-1\tKöln\ta\tb\tc\t2\n".encode(),
         content_type="text/plain; charset=UTF-8")
    plan_reports()
    run_until_settled(reports_env, emulator)
    (row,) = items("REPORT#")
    assert (row["dropped_columns"], row["dropped_unnamed"]) == (["ship-city", "gift-message-text"], 2)
    assert stored_body(row) == "amazon-order-id\tquantity\n111-1\t2\n"
    output = "".join(capfd.readouterr())
    assert '"UnexpectedColumnsDropped":[3.0]' in output  # gift-message-text and the two unnamed cells
    assert E_MAIL not in output and "購入者名" not in output and "Bitte an" not in output
    assert_nothing_lost()


def repeated_rows_gzip(size):
    """An orders document of one row repeated, gzipped at level 9: about 250:1, a bomb of plausible bytes."""
    row = b"111-1\tBrotdose\t1\n"
    return gzip.compress(b"amazon-order-id\tproduct-name\tquantity\n" + row * (size // len(row)), 9)


@pytest.mark.parametrize(("env", "reason"), [
    ({}, "compression ratio above the cap of 100:1"),  # the defaults
    ({"REPORT_MAX_COMPRESSION_RATIO": "20"}, "compression ratio above the cap of 20:1"),  # the stage's cap
])
def test_a_document_above_a_cap_is_corrupt_and_leaves_nothing(reports_env, emulator, monkeypatch, capfd, *, env,
                                                              reason):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    forget_all()
    if env:  # about 35:1: under the default cap, over a cap of 20
        name = "Brotdose Öko, Größe L, Edelstahl, spülmaschinenfest, 2er-Pack für Kinder und Erwachsene"
        body = "amazon-order-id\tproduct-name\tquantity\n" + "".join(
            f"111-{n:07d}\t{name}\t{n % 7}\n" for n in range(100_000))
        document = gzip.compress(body.encode("cp1252"), 9)
        assert 25 < len(body) / len(document) < 100 and len(body) > 9 * 2**20
    else:
        document = repeated_rows_gzip(32 * 2**20)
    seed(emulator, ORDERS, "DONE", document, gzip=False)  # served as they are: gzip bytes
    plan_reports()
    run_until_settled(reports_env, emulator, rounds=10)
    (job,) = items("JOB#")
    assert (job["status"], job["error"]) == ("FAILED", f"DocumentCorrupt: {reason}")
    assert (job["document_attempts"], job["attempts"]) == (5, 0)  # fresh URLs, then given up; no FATAL
    assert objects() == {} and items("REPORT#") == []
    assert boto3.client("s3").list_multipart_uploads(Bucket="data").get("Uploads", []) == []
    assert '"ReportFailed":[1.0]' in "".join(capfd.readouterr())


def test_a_document_whose_first_line_is_not_a_header_is_corrupt(reports_env, emulator):
    seed(emulator, ORDERS, "DONE", f"111-1\tBrotdose\t{E_MAIL}\t2\n111-2\tTasse\tx@example.com\t1\n".encode())
    plan_reports()
    run_until_settled(reports_env, emulator, rounds=10)
    (job,) = items("JOB#")
    assert job["status"] == "FAILED"
    assert job["error"] == "DocumentCorrupt: the first line is not a header: it names none of the kept columns"
    assert objects() == {} and items("REPORT#") == []
    assert boto3.client("s3").list_multipart_uploads(Bucket="data").get("Uploads", []) == []


def test_the_caps_come_from_the_environment_and_are_checked():
    from report_fetcher.settings import ReportFetcherSettings
    from seller_insights.errors import ConfigurationError

    base = {"STAGE": "dev", "CONNECTIONS_TABLE": "t", "TOKEN_KEY_ID": "k", "DATA_BUCKET": "b",
            "REPORT_JOBS_QUEUE_URL": "q", "REPORT_PLANS_QUEUE_URL": "p",
            "DEFAULT_REPORT_TYPES": ORDERS, "SELLER_KEY_SECRET_ID": "sk",
            "PURGE_AFTER_DAYS": "27"}
    limits = ReportFetcherSettings.from_env(base).document_limits
    assert (limits.max_decompressed_bytes, limits.max_ratio) == (4096 * 2**20, 100)
    limits = ReportFetcherSettings.from_env({**base, "REPORT_MAX_DECOMPRESSED_MIB": "512",
                                             "REPORT_MAX_COMPRESSION_RATIO": "250"}).document_limits
    assert (limits.max_decompressed_bytes, limits.max_ratio) == (512 * 2**20, 250)
    for name, value in (("REPORT_MAX_DECOMPRESSED_MIB", "4"), ("REPORT_MAX_DECOMPRESSED_MIB", "100000"),
                        ("REPORT_MAX_COMPRESSION_RATIO", "10"), ("REPORT_MAX_COMPRESSION_RATIO", "5000"),
                        ("REPORT_MAX_COMPRESSION_RATIO", "many")):
        with pytest.raises(ConfigurationError, match=name):
            ReportFetcherSettings.from_env({**base, name: value})


def test_a_message_with_a_refused_job_fails_after_its_other_jobs_ran(reports_env, emulator, capfd):
    plan_reports()
    (job,) = json.loads(boto3.client("sqs").receive_message(QueueUrl=reports_env)["Messages"][0]["Body"])["jobs"]
    forged = {**job, "window_end": "c4n4ry-v4lu3-xyz"}  # its id no longer matches the job: refused
    capfd.readouterr()
    message = {"messageId": "two-jobs", "body": json.dumps({"jobs": [forged, job]})}
    assert invoke({"Records": [message]}) == {"batchItemFailures": [{"itemIdentifier": "two-jobs"}]}
    assert stats(emulator)["spapi"]["createReport"] == 1  # the other job took its step
    assert items("JOB#")[0]["job_id"] == job["job_id"]
    err = capfd.readouterr().err
    assert "c4n4ry-v4lu3-xyz" not in err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{") and '"level"' in line]
    step, message_line = [line for line in lines if line["message"] in ("report job step failed",
                                                                        "report message failed")]
    assert (step["message"], step["level"], step["report_type"]) == ("report job step failed", "ERROR", ORDERS)
    assert (message_line["message"], message_line["level"]) == ("report message failed", "ERROR")
    assert message_line["message_id"] == "two-jobs"
    assert message_line["exception"].endswith("RuntimeError: 1 of 2 jobs failed; the message is retried")


# --- long waits: parked in the job table, woken by the wake-jobs schedule (issue 11, section 2) -------------


def deliver_recording(queue, hops):
    """`deliver`, noting the hops every job message carries."""
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    if not messages:
        return 0
    for message in messages:
        hops += [job.get("hops", 0) for job in json.loads(message["Body"])["jobs"]]
    result = invoke({"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]})
    assert result == {"batchItemFailures": []}
    for message in messages:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


def test_a_fatal_cooldown_is_parked_and_woken_once_by_wake_jobs(reports_env, emulator):
    from report_fetcher.service import MAX_DELAY_SECONDS

    seed(emulator, ORDERS, "FATAL", b'{"errorDetails": "bad window"}', content_type="application/json", gzip=False)
    plan_reports()
    run_until_settled(reports_env, emulator, rounds=3)
    (job,) = items("JOB#")
    assert job["status"] == "COOLDOWN" and int(job["wake_at"]) == int(job["next_check_at"])
    assert job["wake_shard"] in {str(n) for n in range(8)}
    assert int(job["wake_at"]) - clock.epoch_seconds() > MAX_DELAY_SECONDS - 3 * 120  # longer than SQS delays
    assert deliver(reports_env) == 0  # no message carries it: it waits in the table

    assert invoke({"task": "wake-jobs"}) == {"found": 0, "woken": 0, "moved_on": 0, "refused": 0}  # not due
    advance(emulator, int(job["wake_at"]) - clock.epoch_seconds())
    assert invoke({"task": "wake-jobs"}) == {"found": 1, "woken": 1, "moved_on": 0, "refused": 0}
    assert invoke({"task": "wake-jobs"})["found"] == 0  # un-parked: never woken twice
    (woken,) = items("JOB#")
    assert "wake_at" not in woken and "wake_shard" not in woken and woken["version"] == job["version"] + 1
    (message,) = boto3.client("sqs").receive_message(QueueUrl=reports_env, VisibilityTimeout=0)["Messages"]
    (sent,) = json.loads(message["Body"])["jobs"]
    assert (sent["job_id"], sent["version"], sent["hops"]) == (job["job_id"], woken["version"], 0)

    run_until_settled(reports_env, emulator)
    assert items("JOB#")[0]["status"] == "DONE"
    assert stats(emulator)["spapi"]["createReport"] == 2


def test_a_job_moved_on_after_it_was_found_is_not_woken(reports_env):
    from seller_insights.report_jobs import Job, JobRepository, JobStatus, job_id

    table = boto3.resource("dynamodb").Table("test-connections")
    start, end = "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"
    job = Job(job_id(SELLER, "NA", ORDERS, start, end), SELLER, "NA", ORDERS, start, end, ["ATVPDKIKX0DER"],
              status=JobStatus.COOLDOWN, next_check_at=clock.epoch_seconds() - 1,
              wake_at=clock.epoch_seconds() - 1)
    jobs = JobRepository(table)
    assert jobs.load_or_create(job).wake_at is not None
    assert jobs.wake(SELLER, job.job_id, version=job.version + 1) is None  # the index showed an older version
    assert "wake_at" in items("JOB#")[0]
    job.wake_at = None
    assert jobs.save(job)  # a step (a notification, an adopted copy) moved it on: un-parked by its save
    assert invoke({"task": "wake-jobs"})["found"] == 0
    assert deliver(reports_env) == 0


def test_throttled_job_hops_at_most_the_bound_then_is_parked_and_woken(reports_env, emulator):
    from report_fetcher.service import MAX_SELF_HOPS, RETRY_SECONDS

    fault(emulator, "getReport", 429, 2 * MAX_SELF_HOPS + 5)
    plan_reports()
    hops: list[int] = []
    parked = 0
    for _ in range(60):
        while deliver_recording(reports_env, hops):
            pass
        parked += "wake_at" in items("JOB#")[0]
        invoke({"task": "wake-jobs"})
        advance(emulator, RETRY_SECONDS)
        if items("JOB#")[0]["status"] == "DONE":
            break
    assert items("JOB#")[0]["status"] == "DONE"
    assert max(hops) == MAX_SELF_HOPS  # the bound reached, never passed
    assert parked >= 2 and hops.count(0) >= 3  # the planner's message, then every wake-jobs message
    assert_nothing_lost()


def test_woken_jobs_whose_messages_sqs_refused_are_parked_again(reports_env):
    from report_fetcher.wakes import JobWaker
    from seller_insights.report_jobs import Job, JobRepository, JobStatus, job_id

    class RefusingSqs:
        def send_message_batch(self, QueueUrl, Entries):  # boto3's keyword names
            return {"Failed": [{"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"}
                               for entry in Entries]}

    table = boto3.resource("dynamodb").Table("test-connections")
    start, end = "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"
    due = clock.epoch_seconds() - 1
    job = Job(job_id(SELLER, "NA", ORDERS, start, end), SELLER, "NA", ORDERS, start, end, ["ATVPDKIKX0DER"],
              status=JobStatus.COOLDOWN, next_check_at=due, wake_at=due)
    JobRepository(table).load_or_create(job)

    run = JobWaker(table, RefusingSqs(), reports_env).run()  # type: ignore[arg-type]

    assert run.as_dict() == {"found": 1, "woken": 0, "moved_on": 0, "refused": 1}
    (stored,) = items("JOB#")
    assert int(stored["wake_at"]) == clock.epoch_seconds() and stored["version"] == job.version + 2
    assert invoke({"task": "wake-jobs"})["woken"] == 1  # the next run sends it
    assert deliver(reports_env) == 1
