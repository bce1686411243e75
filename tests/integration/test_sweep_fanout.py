"""The planning and retention sweeps as fan-outs (moto in-process): the finders page their sparse index in
rotating shard order within their limit and do nothing per item (every AWS call counted); the consumers
re-read each item and skip what is no longer due; a purge short of time keeps its counts and resumes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from report_fetcher.planner import PLAN_PERIOD_SECONDS, PLANS_KIND, PlanFinder, Planner, PlanningLimits, plan_item
from retention_sweeper.service import (
    PURGES_KIND,
    SAFETY_MILLIS,
    SWEEP_PERIOD_SECONDS,
    PurgeFinder,
    RetentionSweep,
    SweepReport,
    purge_item,
)
from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.errors import PurgeOutOfTime
from seller_insights.fanout import WorkQueue, rotating_shards
from seller_insights.object_keys import seller_prefix
from seller_insights.report_catalog import CATALOG, ORDERS
from seller_insights.report_jobs import Plan, PlanRepository
from seller_insights.repositories import connection_key, iso, shard
from seller_insights.retention import PurgeStates, Receipts, S3Purge, TableItems
from tests.support.resources import create_resources

US = "ATVPDKIKX0DER"
BUCKET = "fanout-data"
NO_HISTORY = PlanningLimits(backfill_days=dict.fromkeys(CATALOG, 0))


@pytest.fixture
def world():
    fixed = FixedClock(datetime(2026, 11, 29, 10, 37, tzinfo=UTC))
    clock.set_clock(fixed)
    with mock_aws():
        resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                               "application_id": "c"})
        table = boto3.resource("dynamodb").Table(resources.tables["connections"])
        yield {"table": table, "fixed": fixed, "audit": resources.tables["audit"], "sqs": boto3.client("sqs")}
    clock.set_clock(clock.SystemClock())


def counted(*clients: Any) -> Counter[str]:
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    for client in clients:
        client.meta.events.register("before-call", count)
    return calls


def sent_items(sqs: Any, queue: str, kind: str) -> list[list[dict[str, Any]]]:
    """The items of each message, in the order sent (moto keeps a standard queue's order)."""
    bodies = []
    while received := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        for message in received:
            bodies.append(json.loads(message["Body"])[kind])
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def seed_plans(table: Any, due: int, later: int = 0) -> None:
    now = clock.epoch_seconds()
    with table.batch_writer() as writer:
        for n in range(due + later):
            writer.put_item(Item=Plan(f"A{n:013d}", "NA", now if n < due else now + 3600, {}, None, [US]).to_item())


def in_rotation(items: list[dict[str, str]], order: list[str]) -> bool:
    positions = [order.index(shard(item["seller_id"], item["region"])) for item in items]
    return positions == sorted(positions)


# --- the plan-reports finder ------------------------------------------------------------------------------


def test_the_plan_finder_sends_every_due_plan_and_nothing_else_per_plan(world):
    table, sqs = world["table"], world["sqs"]
    seed_plans(table, due=45, later=5)
    queue = sqs.create_queue(QueueName="report-plans")["QueueUrl"]
    calls = counted(table.meta.client, sqs)

    found = PlanFinder(table, WorkQueue(sqs, queue, PLANS_KIND), limit=1000).run()

    assert (found.found, found.messages) == (45, 5)
    # One Query page per shard, one SendMessageBatch for the five messages: no read or call per plan.
    assert calls == {"Query": 8, "SendMessageBatch": 1}
    messages = sent_items(sqs, queue, PLANS_KIND)
    assert [len(items) for items in messages] == [10, 10, 10, 10, 5]
    items = [item for batch in messages for item in batch]
    assert sorted(i["seller_id"] for i in items) == [f"A{n:013d}" for n in range(45)]
    assert all(set(item) == {"seller_id", "region"} for item in items)
    assert in_rotation(items, rotating_shards(clock.epoch_seconds(), PLAN_PERIOD_SECONDS))


def test_the_plan_finder_stops_at_its_limit_and_the_next_run_starts_one_shard_further(world):
    table, sqs, fixed = world["table"], world["sqs"], world["fixed"]
    seed_plans(table, due=60)
    queue = sqs.create_queue(QueueName="report-plans")["QueueUrl"]
    finder = PlanFinder(table, WorkQueue(sqs, queue, PLANS_KIND), limit=12)

    first_order = rotating_shards(clock.epoch_seconds(), PLAN_PERIOD_SECONDS)
    assert finder.run().found == 12
    first = [item for batch in sent_items(sqs, queue, PLANS_KIND) for item in batch]
    fixed.advance(PLAN_PERIOD_SECONDS)  # nothing was planned: all still due
    second_order = rotating_shards(clock.epoch_seconds(), PLAN_PERIOD_SECONDS)
    assert finder.run().found == 12
    second = [item for batch in sent_items(sqs, queue, PLANS_KIND) for item in batch]

    assert second_order[0] == first_order[1]  # each run starts one shard further: no shard starves
    assert in_rotation(first, first_order) and in_rotation(second, second_order)
    assert shard(first[0]["seller_id"], "NA") == first_order[0]
    assert shard(second[0]["seller_id"], "NA") in second_order[:2]


# --- the report_plans consumer -----------------------------------------------------------------------------


def test_a_plan_sent_twice_is_planned_once(world):
    table, sqs = world["table"], world["sqs"]
    seed_plans(table, due=1)
    jobs = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    planner = Planner(PlanRepository(table), sqs, jobs, (ORDERS,), limits=NO_HISTORY)
    item = plan_item(f"A{0:013d}", "NA")

    first = planner.plan([item])
    calls = counted(table.meta.client, sqs)
    again = planner.plan([item])  # found by two finder runs, or its message delivered twice

    assert (first.connections, first.jobs, first.skipped) == (1, 1, 0)
    assert (again.connections, again.jobs, again.messages, again.skipped) == (0, 0, 0, 1)
    assert calls == {"GetItem": 1}  # one consistent read, no write, no job message


def test_a_gone_plan_is_skipped_and_the_others_of_its_message_are_planned(world):
    table, sqs = world["table"], world["sqs"]
    seed_plans(table, due=3)
    jobs = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    planner = Planner(PlanRepository(table), sqs, jobs, (ORDERS,), limits=NO_HISTORY)

    report = planner.plan([plan_item(f"A{n:013d}", "NA") for n in (0, 1, 2)] + [plan_item("A9GONE", "NA")])

    assert (report.connections, report.jobs, report.messages, report.skipped) == (3, 3, 1, 1)


# --- the sweep-retention finder and the retention_purges consumer ---------------------------------------


def revoked(table: Any, seller: str, region: str, purge_after: datetime) -> None:
    table.put_item(Item={**connection_key(seller, region), "seller_id": seller, "region": region,
                         "status": "REVOKED", "consented_at": "2025-11-29T12:00:00Z",
                         "reauthorization_due_at": "2026-11-29T12:00:00Z", "created_at": "2025-11-29T12:00:00Z",
                         "updated_at": "2026-11-01T12:00:00Z", "purge_after": iso(purge_after),
                         "purge_shard": shard(seller, region)})


def test_the_purge_finder_sends_one_due_connection_a_message_within_its_limit(world):
    table, sqs = world["table"], world["sqs"]
    now = clock.now()
    for n in range(25):
        revoked(table, f"A{n:013d}", "NA", now - timedelta(hours=1) if n < 20 else now + timedelta(days=3))
    queue = sqs.create_queue(QueueName="retention-purges")["QueueUrl"]
    calls = counted(table.meta.client, sqs)

    found = PurgeFinder(table, WorkQueue(sqs, queue, PURGES_KIND, per_message=1), limit=15).run()

    assert (found.found, found.messages) == (15, 15)
    assert set(calls) == {"Query", "SendMessageBatch"} and calls["SendMessageBatch"] == 2
    assert calls["Query"] <= 8
    items = [batch for batch in sent_items(sqs, queue, PURGES_KIND)]
    assert all(len(batch) == 1 for batch in items)
    flat = [batch[0] for batch in items]
    assert in_rotation(flat, rotating_shards(int(now.timestamp()), SWEEP_PERIOD_SECONDS))
    assert all(int(item["seller_id"][1:]) < 20 for item in flat)  # only the due ones


def test_a_purge_short_of_time_keeps_its_counts_fails_and_resumes(world):
    table, audit = world["table"], world["audit"]
    seller, region = "A1SHORTOFTIME", "EU"
    revoked(table, seller, region, clock.now() - timedelta(hours=1))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    prefix = seller_prefix(seller, region)
    for n in range(1_200):  # two DeleteObjects batches of at most 1,000
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}reports/{n:05d}.tsv", Body=b"x")
    db = table.meta.client
    connections = table.name
    sweep = RetentionSweep(states=PurgeStates(db, connections), items=TableItems(db, connections),
                           objects=S3Purge(s3, BUCKET), receipts=Receipts(db, audit))
    checks = iter([900_000])  # time for the first batch, then short

    report = SweepReport()
    with pytest.raises(PurgeOutOfTime):
        sweep.purge_item(purge_item(seller, region), lambda: next(checks, SAFETY_MILLIS - 1), report)

    assert (report.stopped, report.left, report.failed, report.receipts) == ("time", 1, 0, 0)
    assert report.deleted["s3_versions"] == 1_000
    conn = table.get_item(Key=connection_key(seller, region), ConsistentRead=True)["Item"]
    assert conn["purged_s3_versions"] == 1_000  # recorded before the message failed

    resumed = SweepReport()  # the message came back after the visibility timeout
    sweep.purge_item(purge_item(seller, region), lambda: 900_000, resumed)

    assert (resumed.purged, resumed.receipts, resumed.deleted["s3_versions"]) == (1, 1, 200)
    [receipt] = boto3.resource("dynamodb").Table(audit).scan()["Items"]
    assert receipt["deleted"]["s3_versions"] == 1_200  # both tries counted in the one receipt
    assert "Item" not in table.get_item(Key=connection_key(seller, region), ConsistentRead=True)
