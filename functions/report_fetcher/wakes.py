"""The wake-jobs schedule: parked report jobs that are due go back on report_jobs.

A job is parked (report_fetcher.service, `JobRunner._schedule`) when it must wait longer than SQS's 15-minute
delay (a FATAL cooldown) or when its message has made MAX_SELF_HOPS consecutive self-hops; its item then has
`wake_at` and `wake_shard`, the keys of the sparse index `by_wake_due`. Every run (5 minutes) this finder
takes at most `limit` due jobs from the index, shard after shard in rotating order (seller_insights.fanout),
and for each:
- un-parks it: one conditional UpdateItem that removes `wake_at`/`wake_shard` and bumps the version, only if
  the job is still the version the index showed (a job that a step, a notification or another run moved on
  is left alone: never woken twice);
- sends it to report_jobs in the planner's message shape, `{"jobs": [...]}` with the new version and its
  hops back at 0. A copy that arrives late or twice is stale (older version) and dropped by the runner.
A chunk of messages SQS refused is parked again (due at once, conditional on the version it was woken with),
so the next run sends it; a job moved on meanwhile is not touched. What the limit leaves stays due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seller_insights import clock
from seller_insights.fanout import FanOutFailed, WorkQueue, due_items, rotating_shards
from seller_insights.observability import get_logger
from seller_insights.report_jobs import WAKE_DUE_INDEX, Job, JobRepository

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table
    from types_boto3_sqs.client import SQSClient

WAKE_PERIOD_SECONDS = 300  # the schedule's rate (infra/constructs/report_fetcher.py WAKE_SCHEDULE)
# Jobs woken per run: one conditional UpdateItem each (about 10 ms) and one SendMessageBatch per 100, well
# inside the function's timeout; 2,000 per 5 minutes is 576,000 a day. The rest stays due for the next run.
WAKE_LIMIT = 2000
JOBS_PER_MESSAGE = 10  # as the planner packs them
CHUNK = JOBS_PER_MESSAGE * 10  # one SendMessageBatch


@dataclass
class WakeRun:
    found: int = 0
    woken: int = 0
    moved_on: int = 0  # found due, but a step or another run changed the job first
    refused: int = 0  # SQS refused their messages: parked again, due at once

    def as_dict(self) -> dict[str, int]:
        return {"found": self.found, "woken": self.woken, "moved_on": self.moved_on, "refused": self.refused}


class JobWaker:
    def __init__(self, table: Table, sqs: SQSClient, queue_url: str, limit: int = WAKE_LIMIT) -> None:
        self._table = table
        self._jobs = JobRepository(table)
        self._queue = WorkQueue(sqs, queue_url, "jobs", per_message=JOBS_PER_MESSAGE)
        self._limit = limit

    def run(self) -> WakeRun:
        now = clock.epoch_seconds()
        run = WakeRun()
        due = due_items(self._table, index=WAKE_DUE_INDEX, shard_attribute="wake_shard", due_attribute="wake_at",
                        until=now, shards=rotating_shards(now, WAKE_PERIOD_SECONDS), limit=self._limit)
        chunk: list[tuple[Job, int]] = []
        for found in due:
            run.found += 1
            woken = self._wake(found)
            if woken is None:
                run.moved_on += 1
                continue
            chunk.append(woken)
            if len(chunk) == CHUNK:
                self._send(chunk, run, now)
                chunk = []
        if chunk:
            self._send(chunk, run, now)
        if run.refused:
            get_logger().warning("SQS refused woken report jobs; they were parked again", extra=run.as_dict())
        return run

    def _wake(self, key: dict[str, Any]) -> tuple[Job, int] | None:
        seller = str(key["pk"]).removeprefix("SELLER#")
        job_id = str(key["sk"]).removeprefix("JOB#")
        item = self._jobs.wake(seller, job_id, int(key["version"]))
        if item is None:
            return None
        return Job.from_message(item), int(item["version"])

    def _send(self, chunk: list[tuple[Job, int]], run: WakeRun, now: int) -> None:
        try:
            self._queue.send([{**job.message(), "version": version, "hops": 0} for job, version in chunk])
        except FanOutFailed:
            # Which messages went out is unknown: every job of the chunk goes back to sleep, due at once, unless
            # its message already arrived and moved it on (then the condition fails and it carries on).
            for job, version in chunk:
                self._jobs.park_again(job.seller, job.job_id, version, now)
            run.refused += len(chunk)
            return
        run.woken += len(chunk)
