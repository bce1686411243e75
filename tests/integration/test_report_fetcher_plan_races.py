"""The planner's cursor writes against concurrent writers of the PLAN# item (issue 10, section 8): a plan
deleted (revocation, deletion request, retention sweep) or changed (a marketplace, a denial, a finished
job) between the planner's read and its write. Reproduced against moto with the race injected between
PlanRepository.due (the read) and the write."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from report_fetcher.planner import Planner
from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.report_catalog import FBA_RETURNS, ORDERS
from seller_insights.report_jobs import PlanRepository, plan_key
from tests.support.resources import create_resources
from tests.support.sweeps import plan_through_queue

SELLER, US, CA = "A1SELLER000001", "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"


@pytest.fixture
def world():
    clock.set_clock(FixedClock(datetime(2026, 11, 29, 10, 37, tzinfo=UTC)))
    with mock_aws():
        resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                               "application_id": "c"})
        table = boto3.resource("dynamodb").Table(resources.tables["connections"])
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        plans = PlanRepository(table)
        plans.ensure(SELLER, "NA", [US], now=clock.epoch_seconds())
        yield plans, table, sqs, queue
    clock.set_clock(clock.SystemClock())


def race(monkeypatch, plans, meanwhile):
    """Run `meanwhile` after the planner has read the due plan and before it writes."""
    read = plans.get
    pending = [meanwhile]

    def get(seller, region):
        found = read(seller, region)
        while pending:
            pending.pop()()
        return found

    monkeypatch.setattr(plans, "get", get)


def planned(planner, table):
    """The plan-reports finder, then `planner` on each report_plans message: their reports summed."""
    return plan_through_queue(planner, table)[1]


def test_a_plan_deleted_between_read_and_write_stays_deleted(world, monkeypatch):
    plans, table, sqs, queue = world
    race(monkeypatch, plans, lambda: table.delete_item(Key=plan_key(SELLER, "NA")))

    planned(Planner(plans, sqs, queue, (ORDERS,)), table)

    assert "Item" not in table.get_item(Key=plan_key(SELLER, "NA"), ConsistentRead=True)


def test_a_change_between_read_and_write_is_not_undone(world, monkeypatch):
    plans, table, sqs, queue = world

    def markets_and_perms():  # the writers ISSUE10 names: each one UpdateItem with ADD version
        table.update_item(Key=plan_key(SELLER, "NA"), UpdateExpression="SET marketplace_ids = :m ADD version :one",
                          ExpressionAttributeValues={":m": [US, CA], ":one": 1})
        table.update_item(Key=plan_key(SELLER, "NA"), UpdateExpression="SET denied = :d ADD version :one",
                          ExpressionAttributeValues={":d": {FBA_RETURNS: 2_000_000_000}, ":one": 1})

    race(monkeypatch, plans, markets_and_perms)

    planned(Planner(plans, sqs, queue, (ORDERS, FBA_RETURNS)), table)

    item = table.get_item(Key=plan_key(SELLER, "NA"), ConsistentRead=True)["Item"]
    assert item["marketplace_ids"] == [US, CA]
    assert item["denied"] == {FBA_RETURNS: 2_000_000_000}


def test_a_job_ending_between_read_and_write_keeps_its_cursor_move(world, monkeypatch):
    from seller_insights.report_jobs import Job, job_id

    plans, table, sqs, queue = world
    first = Planner(plans, sqs, queue, (ORDERS,))
    planned(first, table)  # the live hour and history pieces, recorded as planned
    cursor = plans.get(SELLER, "NA").coverage[ORDERS]
    live = max(cursor.windows.values(), key=lambda w: w.end)
    start, end = "2026-11-29T08:00:00Z", "2026-11-29T10:00:00Z"  # the live window, with its lookback
    assert (live.start, live.end) == (cursor.covered_until, cursor.covered_until + 3600)
    job = Job(job_id(SELLER, "NA", ORDERS, start, end), SELLER, "NA", ORDERS, start, end, [US])
    clock.get_clock().advance(3600)  # the next hour: the plan is due again
    race(monkeypatch, plans, lambda: plans.record_finished(job, "DONE", clock.epoch_seconds()))

    report = planned(Planner(plans, sqs, queue, (ORDERS,)), table)

    assert report.replanned == 1 and report.gone == 0
    cursor = plans.get(SELLER, "NA").coverage[ORDERS]
    assert cursor.covered_until == live.end  # the job's end was not undone by the planner's write
    assert cursor.last_stored_at is not None
    assert max(cursor.windows) == live.end + 3600  # and the planner's next hour is recorded too


def test_a_job_ending_after_its_plan_was_deleted_brings_nothing_back(world):
    from seller_insights.report_jobs import Job, job_id

    plans, table, sqs, queue = world
    planned(Planner(plans, sqs, queue, (ORDERS,)), table)
    table.delete_item(Key=plan_key(SELLER, "NA"))  # revoked, or swept
    start, end = "2026-11-29T08:00:00Z", "2026-11-29T10:00:00Z"
    job = Job(job_id(SELLER, "NA", ORDERS, start, end), SELLER, "NA", ORDERS, start, end, [US])

    assert plans.record_finished(job, "DONE", clock.epoch_seconds()) is False
    assert "Item" not in table.get_item(Key=plan_key(SELLER, "NA"), ConsistentRead=True)
