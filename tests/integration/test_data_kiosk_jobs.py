"""Sales and Traffic through Data Kiosk, through the report fetcher's handler: moto in-process, the Amazon
emulator's Data Kiosk API over HTTP.

A seller's day is stored as JSON Lines with its REPORT# row; a restated day replaces its object and row;
a missing Brand Analytics role ends the job after one fresh-token retry, alarmed, without a loop; a 429
re-queues; more than 96 sellers all get their query the same day (no app-wide quota); and EU and FE
sellers' report and query jobs resume from their notifications, before any poll was due.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import boto3
import pytest
import requests

from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.containers import forget_all
from seller_insights.object_keys import seller_prefix
from seller_insights.report_catalog import LISTINGS, SALES_AND_TRAFFIC
from tests.support.api import ConsentClient, FakeContext
from tests.support.fetcher import refresher_sweep
from tests.support.flows import connect_and_confirm, refresh_tokens
from tests.support.iam import acting_as
from tests.support.sweeps import plan_reports
from tests.support.tokens import lwa_stats, provider

SELLER = "A1KIOSKSELLER01"
US = "ATVPDKIKX0DER"
EU_SELLER, FE_SELLER = "A3KIOSKEUROPE03", "A4KIOSKFAREAST4"
DAY = 86400


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    from report_fetcher.handler import lambda_handler

    with acting_as("report_fetcher"):
        return dict(lambda_handler(event, FakeContext(function_name="report_fetcher")))


def fetcher(task: str) -> dict[str, Any]:
    return invoke({"task": task})


def refresher(task: str) -> dict[str, Any]:
    from token_refresher.handler import lambda_handler

    with acting_as("token_refresher"):
        return dict(lambda_handler({"task": task}, FakeContext(function_name="token_refresher")))


def deliver(queue: str) -> int:
    """One poll of the job queue, as the event source mapping would do it; the failed stay."""
    sqs = boto3.client("sqs")
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    if not received:
        return 0
    result = invoke({"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in received]})
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    for message in received:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return len(received)


def advance(emulator: Any, seconds: float) -> None:
    """Both clocks: ours and Amazon's."""
    clock.get_clock().advance(seconds)  # type: ignore[attr-defined]
    emulator.advance_clock(seconds)


def messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return out
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def stats(emulator: Any) -> dict[str, Any]:
    return dict(requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json())


def fault(emulator: Any, operation: str, status: int) -> None:
    control(emulator, "faults", {"operation": operation, "status": status, "count": 1})


def control(emulator: Any, path: str, body: dict[str, Any]) -> Any:
    answer = requests.post(f"{emulator.base_url}/_emulator/{path}", json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()


def requested(emulator: Any, operation: str = "createQuery") -> list[dict[str, Any]]:
    answer = requests.get(f"{emulator.base_url}/_emulator/requests", params={"operation": operation}, timeout=5)
    return list(answer.json()["requests"])


@pytest.fixture
def kiosk_env(token_env, emulator, monkeypatch):
    clock.set_clock(FixedClock(emulator.now()))  # Amazon refuses dates in its future
    boto3.client("s3").create_bucket(Bucket="data")
    queue = boto3.client("sqs").create_queue(QueueName="report-jobs")["QueueUrl"]
    # The days these tests follow, not history (coverage has its own tests); SELLER sells in one marketplace.
    for key, value in {"DATA_BUCKET": "data", "REPORT_JOBS_QUEUE_URL": queue, "DEFAULT_REPORT_TYPES": SALES_AND_TRAFFIC,
                       "REPORT_BACKFILL_DAYS": f"{SALES_AND_TRAFFIC}=0"}.items():
        monkeypatch.setenv(key, value)
    forget_all()
    control(emulator, "participations", {"selling_partner_id": SELLER, "region": "NA",
                                         "marketplaces": [{"country": "US"}]})
    # Minutes, not hours: these tests move both clocks in steps (tests/local covers the full range).
    control(emulator, "queries/timing", {"min_seconds": 60, "max_seconds": 600})
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    provider(token_env, emulator.base_url).get(SELLER, "NA")  # the token refresher keeps one warm
    yield queue
    forget_all()


def run_until_settled(queue: str, emulator: Any, rounds: int = 10, step: int = 120) -> None:
    for _ in range(rounds):
        while deliver(queue):
            pass
        advance(emulator, step)


def items(seller: str, prefix: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table("test-connections")
    return [i for i in table.query(KeyConditionExpression="pk = :pk",
                                   ExpressionAttributeValues={":pk": f"SELLER#{seller}"})["Items"]
            if i["sk"].startswith(prefix)]


def objects(seller: str) -> dict[str, Any]:
    listing = boto3.client("s3").list_objects_v2(Bucket="data", Prefix=seller_prefix(seller))
    return {o["Key"]: o for o in listing.get("Contents", [])}


def body_of(key: str) -> bytes:
    return bytes(boto3.client("s3").get_object(Bucket="data", Key=key)["Body"].read())


def test_a_sellers_day_is_stored_as_json_lines_with_its_row(kiosk_env, emulator):
    assert plan_reports()["jobs"] == 1
    run_until_settled(kiosk_env, emulator)

    (job,) = items(SELLER, "JOB#")
    assert job["status"] == "DONE" and items(SELLER, "QUERYID#")[0]["job_id"] == job["job_id"]
    (row,) = items(SELLER, "REPORT#")
    assert row["sk"] == f"REPORT#NA#{SALES_AND_TRAFFIC}#{US}#{job['window_start']}#{job['window_end']}"
    assert row["s3_key"] == (f"{seller_prefix(SELLER, 'NA')}reports/{SALES_AND_TRAFFIC}/{US}/"
                             f"{job['window_start']}_{job['window_end']}.jsonl")
    assert list(objects(SELLER)) == [row["s3_key"]]
    body = body_of(row["s3_key"])
    assert hashlib.sha256(body).hexdigest() == row["sha256"] and len(body) == row["bytes"]
    (line,) = [json.loads(text) for text in body.decode().splitlines()]
    day = job["window_start"][:10]
    assert (line["marketplaceId"], line["startDate"], line["endDate"]) == (US, day, day)
    assert row["rows"] == 1 and line["sales"]["orderedProductSales"]["currencyCode"] == "USD"
    (query,) = requested(emulator)
    assert (query["selling_partner_id"], query["kind"], query["start"], query["end"]) == (
        SELLER, "salesAndTrafficByDate", day, day)
    counted = stats(emulator)
    assert counted["throttled"] == 0 and counted["spapi"]["createReport"] == 0


def test_a_restated_day_replaces_its_object_and_row(kiosk_env, emulator, token_env):
    planned_at = clock.epoch_seconds()
    assert plan_reports()["jobs"] == 1
    run_until_settled(kiosk_env, emulator)
    (first,) = items(SELLER, "REPORT#")
    (first_job,) = items(SELLER, "JOB#")
    day = first_job["window_start"][:10]
    # Amazon restates a day for 72 hours. Once a day the planner pulls the completed days before yesterday
    # again (Sales and Traffic's restate_days): the next day, the day just stored is one of them.
    advance(emulator, planned_at - planned_at % DAY + DAY + 3600 - clock.epoch_seconds())  # 01:00 the next day
    assert refresher_sweep(token_env, emulator, SELLER)  # the token refresher's run: a fresh token
    restatement = clock.now().strftime("s%Y%m%d")  # a restatement pull is named by the day it is planned
    assert plan_reports()["jobs"] == 2  # the stored day again, and the new yesterday
    run_until_settled(kiosk_env, emulator)

    jobs = {(j["window_start"], j.get("pull")): j for j in items(SELLER, "JOB#")}
    assert jobs[(first_job["window_start"], restatement)]["status"] == "DONE"  # a new job for the same window
    rows = {r["sk"]: r for r in items(SELLER, "REPORT#")}
    assert len(rows) == 2  # the restated day's row replaced, the new day's added
    again = rows[first["sk"]]
    assert again["s3_key"] == first["s3_key"]
    assert again["report_id"] != first["report_id"] and again["sha256"] != first["sha256"]
    assert sorted(objects(SELLER)) == sorted(r["s3_key"] for r in rows.values())  # one object per day
    assert hashlib.sha256(body_of(first["s3_key"])).hexdigest() == again["sha256"]
    pulled = [(q["start"], q["end"]) for q in requested(emulator)]
    assert pulled.count((day, day)) == 2 and len(pulled) == 3  # the day twice, the new day once


def test_a_missing_brand_analytics_role_ends_the_job_after_one_fresh_token_retry(kiosk_env, emulator, token_env,
                                                                                capfd):
    control(emulator, "roles", {"role": "Brand Analytics", "selling_partner_id": SELLER, "withheld": True})
    refreshes = lwa_stats(emulator.base_url)["refresh_token"]
    plan_reports()
    # Polls of the job queue, the token refresher's sweep after each (it renews the token the job asked for).
    for _ in range(5):
        while deliver(kiosk_env):
            pass
        refresher_sweep(token_env, emulator, SELLER)
        advance(emulator, 120)

    (job,) = items(SELLER, "JOB#")
    assert (job["status"], job["error"]) == ("FAILED", "permission_denied")
    counted = stats(emulator)
    assert counted["spapi_denied"]["createQuery"] == 2  # the first try and one with a fresh token; no loop
    assert lwa_stats(emulator.base_url)["refresh_token"] - refreshes == 1  # that one fresh token
    assert requested(emulator) == [] and items(SELLER, "REPORT#") == []
    assert boto3.client("sqs").receive_message(QueueUrl=kiosk_env).get("Messages", []) == []
    (plan,) = items(SELLER, "PLAN#")
    assert int(plan["denied"][SALES_AND_TRAFFIC]) > clock.epoch_seconds()  # planning leaves the type for now
    logged = "".join(capfd.readouterr())
    assert '"DataKioskRoleMissing":[1.0]' in logged and '"ReportPermissionDenied":[1.0]' in logged


def test_a_throttled_create_query_is_requeued_then_stored(kiosk_env, emulator):
    fault(emulator, "createQuery", 429)
    plan_reports()
    while deliver(kiosk_env):
        pass
    (job,) = items(SELLER, "JOB#")
    assert job["status"] == "NEW" and requested(emulator) == []  # waits on the queue, not failed

    run_until_settled(kiosk_env, emulator)

    assert items(SELLER, "JOB#")[0]["status"] == "DONE"
    assert stats(emulator)["throttled_by_operation"] == {"createQuery": 1}
    assert len(requested(emulator)) == 1 and len(items(SELLER, "REPORT#")) == 1


def test_more_than_96_sellers_all_get_their_query_the_same_day(kiosk_env, emulator, token_env):
    sellers = [f"A9KIOSK{n:08d}" for n in range(99)]  # and SELLER: 100
    tokens = provider(token_env, emulator.base_url)
    for seller in sellers:  # each sells in one marketplace: one query each
        control(emulator, "participations", {"selling_partner_id": seller, "region": "NA",
                                             "marketplaces": [{"country": "US"}]})
        assert connect_and_confirm(ConsentClient(), emulator.base_url, seller, "US").status == 303
        tokens.get(seller, "NA")

    assert plan_reports()["jobs"] == 100
    while deliver(kiosk_env):
        pass

    queries = requested(emulator)
    assert len({q["selling_partner_id"] for q in queries}) == len(queries) == 100
    assert {q["start"] for q in queries} == {items(SELLER, "JOB#")[0]["window_start"][:10]}
    counted = stats(emulator)
    assert counted["throttled"] == 0 and counted["spapi"]["createReport"] == 0


# --- notifications in every region ---------------------------------------------------------------------


@pytest.fixture
def notified_env(kiosk_env, emulator, sqs, moto_endpoint, monkeypatch):
    """Amazon's notifications queue (moto server: the emulator sends from its own thread), subscribed to."""
    url = sqs.create_queue(QueueName=f"report-notifications-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    emulator.configure(report_notification_queue_url=url, sqs_endpoint=moto_endpoint)
    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", arn)
    monkeypatch.setenv("DEFAULT_REPORT_TYPES", f"{LISTINGS},{SALES_AND_TRAFFIC}")
    forget_all()
    yield kiosk_env, url
    emulator.configure(report_notification_queue_url="", sqs_endpoint="")


def test_eu_and_fe_report_and_query_jobs_resume_from_their_notifications(notified_env, emulator, sqs):
    jobs_queue, notifications = notified_env
    for seller, region, marketplace in ((EU_SELLER, "EU", "DE"), (FE_SELLER, "FE", "JP")):  # one each: two jobs
        control(emulator, "participations", {"selling_partner_id": seller, "region": region,
                                             "marketplaces": [{"country": marketplace}]})
        assert connect_and_confirm(ConsentClient(), emulator.base_url, seller, marketplace).status == 303
    control(emulator, "queries/timing", {"min_seconds": 60, "max_seconds": 80})  # done before the reports
    refreshed = refresh_tokens()  # warm tokens, and each region's destination
    assert refreshed["failed"] == 0
    planned = plan_reports()
    assert planned["subscribed"] == 2  # each with both notification types (NA waits for its destination)
    for seller in (EU_SELLER, FE_SELLER):
        connection = items(seller, "CONN#")[0]
        assert connection["dkq_subscription_id"] not in ("", "existing") and connection["rpf_subscription_id"]
    while deliver(jobs_queue):  # every job requests its report or query, then waits (first poll in 30 s)
        pass
    waiting = {seller: items(seller, "JOB#") for seller in (EU_SELLER, FE_SELLER)}
    assert all(len(jobs) == 2 and {j["status"] for j in jobs} == {"WAITING"} for jobs in waiting.values())
    messages(sqs, notifications)  # nothing yet

    emulator.advance_clock(120)  # Amazon's clock only: ours stays before the first poll is due
    sent = messages(sqs, notifications)
    assert sorted(m["notificationType"] for m in sent if m["notificationType"] == "DATA_KIOSK_QUERY_PROCESSING_FINISHED"
                  ) == ["DATA_KIOSK_QUERY_PROCESSING_FINISHED"] * 2
    result = invoke({"Records": [{"messageId": str(n), "body": json.dumps(m)} for n, m in enumerate(sent)]})
    assert result["batchItemFailures"] == []
    while deliver(jobs_queue):
        pass

    for seller, region in ((EU_SELLER, "EU"), (FE_SELLER, "FE")):
        jobs = {j["report_type"]: j for j in items(seller, "JOB#")}
        assert {t: (j["status"], int(j["polls"])) for t, j in jobs.items()} == {
            LISTINGS: ("DONE", 0), SALES_AND_TRAFFIC: ("DONE", 0)}, seller
        assert {r["report_type"] for r in items(seller, f"REPORT#{region}#")} == {LISTINGS, SALES_AND_TRAFFIC}
    assert stats(emulator)["spapi"]["getQuery"] == 2  # one look each, after its notification


def test_a_query_notification_for_a_vendor_or_an_unknown_query_changes_nothing(kiosk_env, emulator):
    plan_reports()
    while deliver(kiosk_env):
        pass
    (job,) = items(SELLER, "JOB#")
    assert job["status"] == "WAITING"
    notification = {"notificationType": "DATA_KIOSK_QUERY_PROCESSING_FINISHED", "notificationVersion": "2023-11-15",
                    "payloadVersion": "2023-11-15", "eventTime": "2026-12-01T00:00:00Z",
                    "notificationMetadata": {"applicationId": "a", "subscriptionId": "s", "publishTime": "p",
                                             "notificationId": "n"}}
    payloads = [
        {"accountId": "amzn1.vg.6213651", "queryId": job["report_id"], "query": "q", "processingStatus": "DONE"},
        {"accountId": f"amzn1.merchant.o.{SELLER}", "queryId": "404", "query": "q", "processingStatus": "DONE"},
    ]
    records = [{"messageId": str(n), "body": json.dumps({**notification, "payload": payload})}
               for n, payload in enumerate(payloads)]

    assert invoke({"Records": records})["batchItemFailures"] == []
    assert items(SELLER, "JOB#")[0]["version"] == job["version"]  # not hurried
    assert boto3.client("sqs").receive_message(QueueUrl=kiosk_env).get("Messages", []) == []


def test_the_reports_api_fallback_pulls_sales_and_traffic_as_a_report(kiosk_env, emulator, monkeypatch):
    monkeypatch.setenv("SALES_AND_TRAFFIC_SOURCE", "REPORTS")
    forget_all()
    plan_reports()
    run_until_settled(kiosk_env, emulator, rounds=3)

    (job,) = items(SELLER, "JOB#")
    assert job["status"] == "DONE" and items(SELLER, "QUERYID#") == [] and len(items(SELLER, "REPORTID#")) == 1
    (row,) = items(SELLER, "REPORT#")
    # The same marketplace-scoped key and row as through Data Kiosk, as a JSON report.
    assert row["sk"] == f"REPORT#NA#{SALES_AND_TRAFFIC}#{US}#{job['window_start']}#{job['window_end']}"
    assert row["s3_key"] == (f"{seller_prefix(SELLER, 'NA')}reports/{SALES_AND_TRAFFIC}/{US}/"
                             f"{job['window_start']}_{job['window_end']}.json")
    counted = stats(emulator)
    assert (counted["spapi"]["createReport"], counted["spapi"]["createQuery"]) == (1, 0)
    (report,) = requested(emulator, "createReport")
    assert (report["kind"], report["marketplace_ids"]) == (SALES_AND_TRAFFIC, [US])
