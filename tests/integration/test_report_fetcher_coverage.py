"""Coverage cursors through the report fetcher's handler: moto in-process, the Amazon emulator's Reports API
over HTTP, and its log of the createReport requests it received (what was asked, for which window and
marketplaces). A planning outage is filled in order, history is fetched behind the live window, and a
per-marketplace type is requested, stored and keyed one marketplace at a time."""

from __future__ import annotations

import boto3
import pytest
import requests

from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.containers import forget_all
from seller_insights.coverage import epoch_of
from seller_insights.object_keys import seller_prefix
from seller_insights.report_catalog import LISTINGS, ORDERS
from tests.support.api import ConsentClient, FakeContext
from tests.support.flows import connect_and_confirm
from tests.support.iam import acting_as
from tests.support.sweeps import plan_reports
from tests.support.tokens import provider

US, CA = "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"
HOUR = 3600


@pytest.fixture
def coverage_env(token_env, emulator, monkeypatch):
    clock.set_clock(FixedClock(emulator.now()))  # Amazon refuses windows in its future
    boto3.client("s3").create_bucket(Bucket="data")
    queue = boto3.client("sqs").create_queue(QueueName="report-jobs")["QueueUrl"]
    for key, value in {"DATA_BUCKET": "data", "REPORT_JOBS_QUEUE_URL": queue, "DEFAULT_REPORT_TYPES": ORDERS,
                       "REPORT_BACKFILL_DAYS": f"{ORDERS}=0"}.items():
        monkeypatch.setenv(key, value)
    forget_all()
    yield queue
    forget_all()


def connect(token_env, emulator, seller):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, seller, "US").status == 303
    provider(token_env, emulator.base_url).get(seller, "NA")  # the token refresher keeps one warm


def invoke(event):
    from report_fetcher.handler import lambda_handler

    with acting_as("report_fetcher"):
        return lambda_handler(event, FakeContext(function_name="report_fetcher"))


def settle(queue, emulator, rounds=10, step=120):
    sqs = boto3.client("sqs")
    for _ in range(rounds):
        while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            result = invoke({"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]})
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        advance(emulator, step)


def advance(emulator, seconds):
    clock.get_clock().advance(seconds)
    emulator.advance_clock(seconds)


def items(seller, prefix):
    table = boto3.resource("dynamodb").Table("test-connections")
    return [i for i in table.query(KeyConditionExpression="pk = :pk",
                                   ExpressionAttributeValues={":pk": f"SELLER#{seller}"})["Items"]
            if i["sk"].startswith(prefix)]


def requested(emulator, seller):
    answer = requests.get(f"{emulator.base_url}/_emulator/requests",
                          params={"operation": "createReport", "selling_partner_id": seller}, timeout=5)
    return answer.json()["requests"]


def cursor(seller, key):
    (plan,) = items(seller, "PLAN#")
    return plan["coverage"][key]


def test_a_planning_outage_is_requested_in_order_and_the_cursor_follows_what_was_stored(
        token_env, emulator, coverage_env):
    seller = "A1COVERAGE00001"
    connect(token_env, emulator, seller)
    plan_reports()
    settle(coverage_env, emulator, rounds=3)
    first_until = int(cursor(seller, ORDERS)["until"])
    advance(emulator, 7 * HOUR)  # no plan-reports for seven hours
    provider(token_env, emulator.base_url).get(seller, "NA")  # the refresher went on meanwhile
    plan_reports()
    settle(coverage_env, emulator)

    asked = [(r["start"], r["end"]) for r in requested(emulator, seller)]
    covered = [(epoch_of(start) + HOUR, epoch_of(end)) for start, end in asked]  # less the lookback
    assert len(covered) == 2 and covered[0][1] == first_until
    assert covered[1][0] == first_until  # from where the cursor stood, not from "now less an hour"
    assert all(job["status"] == "DONE" for job in items(seller, "JOB#"))
    assert int(cursor(seller, ORDERS)["until"]) == covered[1][1]
    assert len(items(seller, "REPORT#")) == 2


def test_history_is_fetched_behind_the_live_window(token_env, emulator, coverage_env, monkeypatch):
    seller = "A1COVERAGE00002"
    monkeypatch.setenv("REPORT_BACKFILL_DAYS", f"{ORDERS}=40")
    forget_all()
    connect(token_env, emulator, seller)
    present = clock.epoch_seconds() - clock.epoch_seconds() % HOUR
    plan_reports()
    settle(coverage_env, emulator)

    ends = [epoch_of(r["end"]) for r in requested(emulator, seller)]
    assert ends[0] == max(ends) == present  # the live window first, then history newest first
    assert ends[1:] == sorted(ends[1:], reverse=True)
    state = cursor(seller, ORDERS)
    # One covered range: 40 days back from the present the first plan saw, up to it.
    assert (int(state["from"]), int(state["until"])) == (present - 40 * 86400, present)
    assert state["windows"] == {}
    assert len(items(seller, "REPORT#")) == len(ends)


def test_a_per_marketplace_type_is_requested_stored_and_keyed_per_marketplace(
        token_env, emulator, coverage_env, monkeypatch):
    seller = "A1COVERAGE00003"
    monkeypatch.setenv("DEFAULT_REPORT_TYPES", LISTINGS)
    forget_all()
    connect(token_env, emulator, seller)
    table = boto3.resource("dynamodb").Table("test-connections")
    table.update_item(Key={"pk": f"SELLER#{seller}", "sk": "PLAN#NA"},  # as the participations check does
                      UpdateExpression="SET marketplace_ids = :m ADD version :one",
                      ExpressionAttributeValues={":m": [US, CA], ":one": 1})
    plan_reports()
    settle(coverage_env, emulator, rounds=3)

    assert sorted(r["marketplace_ids"] for r in requested(emulator, seller)) == [[CA], [US]]
    rows = items(seller, "REPORT#")
    assert len(rows) == 2
    for row in rows:
        marketplace = CA if f"#{CA}#" in row["sk"] else US
        assert row["sk"].startswith(f"REPORT#NA#{LISTINGS}#{marketplace}#")
        assert row["s3_key"].startswith(f"{seller_prefix(seller, 'NA')}reports/{LISTINGS}/{marketplace}/")
        assert int(cursor(seller, f"{LISTINGS}#{marketplace}")["until"]) > 0
    keys = boto3.client("s3").list_objects_v2(Bucket="data", Prefix=seller_prefix(seller)).get("Contents", [])
    assert len(keys) == 2
