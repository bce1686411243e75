"""The planner: due cursors only, deterministic jobs, batched sends, cursors moved after sending."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from report_fetcher.planner import MAX_JOBS_PER_MESSAGE, Planner, PlanningLimits
from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.report_catalog import CATALOG, ORDERS, SETTLEMENT
from seller_insights.report_jobs import PlanRepository, job_id
from tests.support.resources import create_resources
from tests.support.sweeps import plan_through_queue

ALL_TYPES = tuple(CATALOG)
# The first tests are about due cursors and batching: new cursors plan their live windows only (history:
# the tests at the end of the module).
NO_HISTORY = PlanningLimits(backfill_days=dict.fromkeys(CATALOG, 0))
QUIET = {"replanned": 0, "gone": 0, "skipped": 0}


@pytest.fixture
def world():
    fixed = FixedClock(datetime(2026, 11, 29, 10, 37, tzinfo=UTC))
    clock.set_clock(fixed)
    with mock_aws():
        resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                               "application_id": "c"})
        table = boto3.resource("dynamodb").Table(resources.tables["connections"])
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        yield PlanRepository(table), sqs, queue, fixed
    clock.set_clock(clock.SystemClock())


def planned(planner):
    """The plan-reports finder, then `planner` on each report_plans message: their reports summed."""
    return plan_through_queue(planner, boto3.resource("dynamodb").Table("test-connections"))[1]


def drain(sqs, queue):
    jobs = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return jobs
        for message in messages:
            body = json.loads(message["Body"])
            assert len(body["jobs"]) <= MAX_JOBS_PER_MESSAGE
            jobs.extend(body["jobs"])
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def test_a_new_connection_gets_every_enabled_type_once(world):
    plans, sqs, queue, fixed = world
    plans.ensure("A1SELLER000001", "NA", ["ATVPDKIKX0DER"], now=clock.epoch_seconds())
    report = planned(Planner(plans, sqs, queue, ALL_TYPES, limits=NO_HISTORY))
    assert report.as_dict() == {"connections": 1, "jobs": 6, "messages": 1, "subscribed": 0, **QUIET}
    jobs = drain(sqs, queue)
    assert sorted(j["report_type"] for j in jobs) == sorted(ALL_TYPES)
    orders = next(j for j in jobs if j["report_type"] == ORDERS)
    assert (orders["window_start"], orders["window_end"]) == ("2026-11-29T08:00:00Z", "2026-11-29T10:00:00Z")
    assert orders["job_id"] == job_id("A1SELLER000001", "NA", ORDERS, orders["window_start"], orders["window_end"])
    assert orders["marketplace_ids"] == ["ATVPDKIKX0DER"]

    # Nothing is due again until the next hour; then only the hourly orders report.
    assert planned(Planner(plans, sqs, queue, ALL_TYPES, limits=NO_HISTORY)).jobs == 0
    fixed.advance(23 * 60)
    planner = Planner(plans, sqs, queue, ALL_TYPES, limits=NO_HISTORY)
    assert [j["report_type"] for j in (planned(planner), drain(sqs, queue))[1]] == [ORDERS]


def test_connections_share_messages_but_are_never_split(world):
    plans, sqs, queue, _ = world
    for number in range(25):
        plans.ensure(f"A1SELLER{number:06d}", "EU", ["A1PA6795UKMFR9"], now=clock.epoch_seconds())
    report = planned(Planner(plans, sqs, queue, (ORDERS, SETTLEMENT), limits=NO_HISTORY))
    assert report.connections == 25 and report.jobs == 50
    assert report.messages == 5  # 10 jobs (5 connections) per message
    assert len(drain(sqs, queue)) == 50


def test_a_plan_that_fails_to_send_moves_no_cursor(world, monkeypatch):
    plans, sqs, queue, _ = world
    plans.ensure("A1SELLER000001", "NA", ["ATVPDKIKX0DER"], now=clock.epoch_seconds())
    monkeypatch.setattr(sqs, "send_message_batch", lambda **_: {"Failed": [{"Id": "0"}], "Successful": []})
    from seller_insights.errors import PlanningFailed

    with pytest.raises(PlanningFailed):
        planned(Planner(plans, sqs, queue, ALL_TYPES, limits=NO_HISTORY))
    monkeypatch.undo()
    assert planned(Planner(plans, sqs, queue, ALL_TYPES, limits=NO_HISTORY)).jobs == 6  # still due: planned again
