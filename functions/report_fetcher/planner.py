"""The plan: due connections (sparse index, no Scan) → one message per connection's due jobs.

AWS calls grow with the due connections, not with the table: a Query page per shard, one
SendMessageBatch per 10 messages, one BatchWriteItem per 25 cursors. Job ids are deterministic, so a
plan that runs twice produces the same jobs, which the fetcher recognises as done or in flight.

Before its jobs are sent, a due connection not yet subscribed to REPORT_PROCESSING_FINISHED is subscribed
(report_fetcher.subscriptions; one GetItem when it already is). A subscription that fails never fails the
plan: it is counted (ReportSubscriptionFailed, alarmed) and the connection stays due, so the next run tries
again (and plans no job twice: each type's own due time has moved on). A subscription whose region has no
destination yet (the token refresher keeps them) is deferred the same way, without counting a failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from report_fetcher.participations import ParticipationsRefresh
from report_fetcher.subscriptions import ReportSubscriptions
from seller_insights import clock
from seller_insights.errors import PlanningFailed
from seller_insights.observability import get_logger, get_metrics
from seller_insights.report_catalog import CATALOG, align
from seller_insights.report_jobs import Job, Plan, PlanRepository, job_id
from seller_insights.repositories import iso

if TYPE_CHECKING:
    from types_boto3_sqs.client import SQSClient
    from types_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

_SQS_BATCH = 10
MAX_JOBS_PER_MESSAGE = 10


@dataclass
class PlanReport:
    connections: int = 0
    jobs: int = 0
    messages: int = 0
    subscribed: int = 0  # connections newly subscribed to REPORT_PROCESSING_FINISHED

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class Planner:
    def __init__(self, plans: PlanRepository, sqs: SQSClient, queue_url: str, default_types: tuple[str, ...],
                 subscriptions: ReportSubscriptions | None = None, *,
                 participations: ParticipationsRefresh | None = None) -> None:
        """`subscriptions`: None when no report_notifications queue is configured (jobs poll only).
        `participations`: None plans the marketplaces the plans hold without checking them."""
        self._plans = plans
        self._sqs = sqs
        self._queue_url = queue_url
        self._default_types = default_types
        self._subscriptions = subscriptions
        self._participations = participations

    def run(self) -> PlanReport:
        report = PlanReport()
        epoch = clock.epoch_seconds()
        bodies: list[str] = []
        batch: list[dict[str, Any]] = []
        updated: list[Plan] = []
        for plan in self._plans.due(epoch):
            if self._participations is not None:
                self._participations.refresh(plan)  # its marketplaces, checked daily (never raises)
            subscribed = self._subscribe(plan)
            jobs = self._due_jobs(plan, epoch)
            if subscribed is None:
                plan.next_plan_at = epoch  # not subscribed: due again at the next run
            report.subscribed += bool(subscribed)
            report.connections += 1
            report.jobs += len(jobs)
            updated.append(plan)
            # Several connections share a message (fewer SQS calls); one connection is never split.
            if batch and len(batch) + len(jobs) > MAX_JOBS_PER_MESSAGE:
                bodies.append(json.dumps({"jobs": batch}))
                batch = []
            batch.extend(job.message() for job in jobs)
        if batch:
            bodies.append(json.dumps({"jobs": batch}))
        self._send(bodies)
        report.messages = len(bodies)
        # Cursors move only after their jobs are on the queue: a crash in between re-plans the same
        # (deterministic) jobs, which the fetcher skips.
        self._plans.save_all(updated)
        return report

    def _due_jobs(self, plan: Plan, epoch: int) -> list[Job]:
        jobs = []
        now = clock.now()
        for report_type in plan.enabled or self._default_types:
            spec = CATALOG.get(report_type)
            if spec is None:  # a cursor naming a type the catalog no longer has: skip it, plan the rest
                get_logger().warning("planning cursor names an unknown report type", extra={"report_type": report_type})
                continue
            if plan.denied.get(report_type, 0) > epoch:
                # Refused for a missing role (PlanRepository.mark_denied): due again at its retry time.
                plan.due[report_type] = max(plan.due.get(report_type, 0), plan.denied[report_type])
                continue
            if plan.due.get(report_type, 0) > epoch:
                continue
            start, end = spec.window_for(now)
            window_start, window_end = iso(start), iso(end)
            jobs.append(Job(job_id(plan.seller, plan.region, report_type, window_start, window_end),
                            plan.seller, plan.region, report_type, window_start, window_end,
                            plan.marketplace_ids))
            plan.due[report_type] = int((align(now, spec.cadence) + spec.cadence).timestamp())
        enabled = [t for t in plan.enabled or self._default_types if t in CATALOG] or list(self._default_types)
        plan.next_plan_at = min(plan.due.get(t, epoch) for t in enabled)
        return jobs

    def _subscribe(self, plan: Plan) -> bool | None:
        """True: subscribed now; False: already (or no subscriptions configured); None: deferred or failed
        this time (the connection stays due)."""
        if self._subscriptions is None:
            return False
        try:
            return self._subscriptions.ensure(plan.seller, plan.region)
        except Exception as exc:  # the next run tries again; the jobs are planned all the same
            get_metrics().add_metric(name="ReportSubscriptionFailed", unit=MetricUnit.Count, value=1)
            get_logger().warning("REPORT_PROCESSING_FINISHED subscription deferred",
                                 extra={"reason": type(exc).__name__, "status": getattr(exc, "status", None)})
            return None

    def _send(self, bodies: list[str]) -> None:
        for start in range(0, len(bodies), _SQS_BATCH):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start:start + _SQS_BATCH])]
            answer = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            failed = answer.get("Failed") or []
            if failed:
                # Nothing is half-planned: the cursors are not moved, the next run sends them again.
                raise PlanningFailed(f"SQS refused {len(failed)} of {len(entries)} job messages")
