"""AWS calls made to plan reports for N connections, counted with botocore's event hooks.

Usage: python -m bench.planning_cost [--sizes 1000,3000]

For each size, moto (in-process) gets N planning cursors of ACTIVE connections, then planning runs twice:
the first plan of new connections (every enabled report type due at once) and a steady-state plan an hour
later (only the hourly orders report due). Planning is the sweep shape since issue 11: the plan-reports
finder (`PlanFinder`) pages the due index and sends `report_plans` messages of 10 connections; the
consumer (`Planner.plan`) plans each message. Every API call of the finder's and the consumer's DynamoDB
and SQS clients is counted through a `before-call` hook (the event source mapping's ReceiveMessage and
DeleteMessage are SQS's, not the function's: reported apart, per received batch of 10 messages).

The target: at most 2.25 calls per connection, and the same ratio at both sizes. The floor is two calls per
planned connection: the consumer's consistent GetItem (the item may have been planned since the finder
saw it, and the finder reads keys only) and one conditional UpdateItem on the version read (a blind
BatchWriteItem could bring back a plan the retention sweep deleted, or undo a concurrent change); the
Query pages (8 and up) and the SendMessageBatch calls stay shared: 0.01 for the finder, at most 0.2 for
the jobs when each connection sends its capped 15 jobs in two messages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import measured_on

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "planning_cost.json"
TARGET = 2.25


def _setup_paths() -> None:
    for path in (REPO / "functions", REPO / "layers" / "shared" / "python", REPO):
        sys.path.insert(0, str(path))
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      POWERTOOLS_SERVICE_NAME="bench")
    os.environ.pop("AWS_ENDPOINT_URL", None)


def measure(size: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from report_fetcher.planner import PLANS_KIND, PlanFinder, Planner, PlanReport
    from seller_insights import clock
    from seller_insights.clock import FixedClock
    from seller_insights.fanout import WorkQueue
    from seller_insights.report_catalog import CATALOG
    from seller_insights.report_jobs import Plan, PlanRepository
    from tests.support.resources import create_resources

    fixed = FixedClock(datetime(2026, 11, 29, 10, 37, tzinfo=UTC))
    clock.set_clock(fixed)
    with mock_aws():
        resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                               "application_id": "c"})
        table = boto3.resource("dynamodb").Table(resources.tables["connections"])
        sqs = boto3.client("sqs")
        mapping = boto3.client("sqs")  # the event source mapping's polls: counted apart
        plans = PlanRepository(table)
        now = clock.epoch_seconds()
        with table.batch_writer() as seed:  # the bench's own setup, not counted
            for n in range(size):
                seed.put_item(Item=Plan(f"A{n:013d}", "NA", now, {}, None, ["ATVPDKIKX0DER"]).to_item())

        calls: Counter[str] = Counter()
        polls: Counter[str] = Counter()

        def count(model: Any, **_: Any) -> None:
            calls[model.name] += 1

        def count_poll(model: Any, **_: Any) -> None:
            polls[model.name] += 1

        for client in (table.meta.client, sqs):
            client.meta.events.register("before-call", count)
        mapping.meta.events.register("before-call", count_poll)
        runs = {}
        for label, advance in (("first_plan", 0), ("steady_state", 3600)):
            fixed.advance(advance)
            jobs_queue = sqs.create_queue(QueueName=f"jobs-{label}")["QueueUrl"]
            plans_queue = sqs.create_queue(QueueName=f"plans-{label}")["QueueUrl"]
            work = WorkQueue(sqs, plans_queue, PLANS_KIND)
            calls.clear()
            polls.clear()
            found = PlanFinder(table, work, limit=max(100, 2 * size)).run()
            finder = dict(calls)
            calls.clear()
            planner = Planner(plans, sqs, jobs_queue, tuple(CATALOG))
            report = PlanReport()
            while batch := mapping.receive_message(QueueUrl=plans_queue, MaxNumberOfMessages=10).get("Messages", []):
                for message in batch:
                    report.add(planner.plan(work.items_of(json.loads(message["Body"]))))
                mapping.delete_message_batch(QueueUrl=plans_queue, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
            consumer = dict(calls)
            total = sum(finder.values()) + sum(consumer.values())
            runs[label] = {"connections": report.connections, "found": found.found, "jobs": report.jobs,
                           "plan_messages": found.messages, "job_messages": report.messages,
                           "aws_calls": total, "finder_calls": finder, "consumer_calls": consumer,
                           "calls_per_connection": round(total / size, 4),
                           "event_source_polls": dict(polls)}
    return {"connections": size, **runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000")
    args = parser.parse_args()
    _setup_paths()
    results = [measure(int(size)) for size in args.sizes.split(",")]
    worst = max(r[run]["calls_per_connection"] for r in results for run in ("first_plan", "steady_state"))
    summary = {
        "sizes": results,
        "target_calls_per_connection": TARGET,
        "worst_calls_per_connection": worst,
        **measured_on(),
        "command": "python -m bench.planning_cost --sizes " + args.sizes,
    }
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    if worst > TARGET:
        sys.exit(f"planning costs {worst} AWS calls per connection, over the {TARGET} target")


if __name__ == "__main__":
    main()
