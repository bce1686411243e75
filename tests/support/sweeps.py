"""The fan-out sweeps of planning and retention driven to the end in-process (moto): the finder sends its
work items to a queue, then every message is received and handed to the consumer, as the event source
mapping would (a message whose consumer raised stays in the queue, invisible, as in SQS). What the
consumers reported is summed, so a test can assert what one sweep did across its messages.

`plan_reports()` and `sweep_retention()` go through the functions' handlers (IAM acting as the function);
`plan_through_queue()` and `purge_through_queue()` drive a given Planner / RetentionSweep (tests and
benches that wrap their clients)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import boto3

from report_fetcher.planner import PLANS_KIND, FindReport, PlanFinder, Planner, PlanReport, plan_item
from retention_sweeper.service import PURGES_KIND, PurgeFinder, RetentionSweep, SweepReport
from seller_insights import clock
from seller_insights.fanout import WorkQueue
from tests.support.api import FakeContext
from tests.support.iam import acting_as

PLANS_QUEUE = "report-plans"
PURGES_QUEUE = "retention-purges"
_RUNS = itertools.count()
PLANS_PER_MESSAGE = 10  # WorkQueue's default, as the plan-reports finder sends them


def messages(sqs: Any, queue: str) -> Iterator[dict[str, Any]]:
    """Every message of the queue once (the consumer deletes those it handled)."""
    while received := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        yield from received


def plan_all(planner: Planner, plans: Any) -> PlanReport:
    """What the finder would send for the plans `plans.due(now)` lists (a unit test's in-memory stand-in of
    the index), planned ten to a message as the consumer gets them: the reports summed."""
    items = [plan_item(plan.seller, plan.region) for plan in plans.due(clock.epoch_seconds())]
    total = PlanReport()
    for start in range(0, len(items), PLANS_PER_MESSAGE):
        total.add(planner.plan(items[start:start + PLANS_PER_MESSAGE]))
    return total


def plan_through_queue(planner: Planner, table: Any, *, limit: int = 50_000) -> tuple[FindReport, PlanReport]:
    """The plan-reports finder over `table`, then `planner` on every report_plans message (on SQS clients
    of their own, so a test that breaks the planner's client breaks only the planner)."""
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=PLANS_QUEUE)["QueueUrl"]
    work = WorkQueue(sqs, queue, PLANS_KIND)
    found = PlanFinder(table, work, limit).run()
    total = PlanReport()
    for message in messages(sqs, queue):
        total.add(planner.plan(work.items_of(json.loads(message["Body"]))))
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return found, total


def purge_through_queue(sweep: RetentionSweep, table: Any, *,
                        remaining_millis: Callable[[], int] = lambda: 900_000) -> tuple[FindReport, SweepReport]:
    """The sweep-retention finder over `table`, then `sweep` on every retention_purges message; a purge that
    raised leaves its message in a queue of this call's own (the connection stays due: the next finder run
    sends it again), so a later sweep in the same test sees only what its own finder sent."""
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"{PURGES_QUEUE}-{next(_RUNS)}")["QueueUrl"]
    work = WorkQueue(sqs, queue, PURGES_KIND, per_message=1)
    found = PurgeFinder(table, work).run()
    total = SweepReport()
    for message in messages(sqs, queue):
        try:
            for item in work.items_of(json.loads(message["Body"])):
                sweep.purge_item(item, remaining_millis, total)
        except Exception:  # noqa: S112 - the message stays, as SQS keeps a failed one
            continue
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return found, total


def deliver_to(handler: Callable[[dict[str, Any], Any], Any], function: str, queue: str,
               context: FakeContext | None = None) -> None:
    """Every message of `queue` to the function's handler, ten at a time; the failed stay."""
    sqs = boto3.client("sqs")
    while received := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        with acting_as(function):
            answer = handler({"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in received]},
                             context or FakeContext(function_name=function))
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for message in received:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def plan_reports() -> dict[str, int]:
    """The plan-reports schedule through the fetcher's handler, then its report_plans messages through the
    same handler: the planner's reports of every message, summed (PlanReport.as_dict)."""
    from report_fetcher.handler import lambda_handler

    with acting_as("report_fetcher"):
        lambda_handler({"task": "plan-reports"}, FakeContext(function_name="report_fetcher"))
    total = PlanReport()
    original = Planner.plan

    def recorded(planner: Planner, items: list[dict[str, Any]]) -> PlanReport:
        report = original(planner, items)
        total.add(report)
        return report

    with mock.patch.object(Planner, "plan", recorded):
        deliver_to(lambda_handler, "report_fetcher", os.environ["REPORT_PLANS_QUEUE_URL"])
    return total.as_dict()


def sweep_retention(context: FakeContext | None = None) -> dict[str, Any]:
    """The sweep-retention schedule through the sweeper's handler, then its retention_purges messages through
    the same handler: what the purges did, summed (SweepReport.as_dict)."""
    from retention_sweeper.handler import lambda_handler

    context = context or FakeContext(function_name="retention_sweeper")
    with acting_as("retention_sweeper"):
        lambda_handler({"task": "sweep-retention"}, context)
    total = SweepReport()
    original = RetentionSweep.purge_item

    def recorded(sweep: RetentionSweep, item: dict[str, Any], remaining: Callable[[], int],
                 report: SweepReport) -> None:
        own = SweepReport()
        try:
            original(sweep, item, remaining, own)
        finally:
            total.add(own)
            report.add(own)

    with mock.patch.object(RetentionSweep, "purge_item", recorded):
        deliver_to(lambda_handler, "retention_sweeper", os.environ["RETENTION_PURGES_QUEUE_URL"], context)
    return total.as_dict()
