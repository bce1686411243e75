"""The plan: due connections (sparse index, no Scan) → their next windows, from coverage cursors → jobs.

Two steps, so that no one invocation bounds planning (the sweep shape, seller_insights.fanout):
`PlanFinder`, the `plan-reports` schedule (every 15 minutes), pages the `by_plan_due` index in rotating
shard order, at most `limit` plans a run, and sends `{"seller_id", "region"}` items to the `report_plans`
queue, ten to a message; it reads nothing else and calls no one. `Planner.plan`, the queue's consumer (in
parallel up to the stage's `plan_concurrency`), plans the connections of one message: each plan re-read
(consistently) and skipped when no longer due, so a plan found by two runs costs one more read.

Each (connection, marketplace scope, report type) has a coverage cursor (seller_insights.coverage) in the
connection's PLAN# item. A due connection gets, per enabled type not denied (`denied[type]` still ahead):
every live window between its cursor and the aligned present, oldest first (all of an outage is
requested); windows whose job went quiet, sent again with the same id, and failed ones, retried as a new
pull; the restatement pulls of the day (`restate_days`); then history, newest first, as far as the
connection's budget allows: at most `max_jobs` new jobs per run, and history only while fewer than
`max_jobs` windows are in flight. So a long outage or a two-year backfill becomes a steady backlog at the
pace the fetcher's per-seller quotas allow (seller_insights.quotas), never a burst that would be throttled.
A connection with a backlog stays due: the next run (15 minutes) plans more.

Per-marketplace types (catalog `per_marketplace`) get a cursor and jobs per marketplace of the plan
(`marketplace_ids`, which the daily participations check keeps: report_fetcher.participations, run for
each due plan first); the others one cursor and jobs carrying every
marketplace. A marketplace that left stops being planned (its cursor and data stay); one that joins a
shared type late gets a history-only cursor of its own for the time before it joined.

AWS calls grow with the due connections, not with the table: for the finder a Query page per shard and
one SendMessageBatch per 100 plans; for the consumer one consistent GetItem per plan, one SendMessageBatch
of job messages per message of plans, one conditional UpdateItem per changed plan. Job ids are deterministic,
so a plan that runs twice produces the same jobs, which the fetcher recognises as done or in flight.
Jobs are sent before their windows are recorded: a crash in between plans the same windows again.
The write is conditional on the version the planner read: a plan changed meanwhile (a job finished, a
marketplace or a denial was recorded) is read again and planned again, a deleted one stays deleted.

Before its jobs are sent, a due connection not yet subscribed to REPORT_PROCESSING_FINISHED is subscribed
(report_fetcher.subscriptions; one GetItem when it already is). A subscription that fails never fails the
plan: it is counted (ReportSubscriptionFailed, alarmed) and the connection stays due, so the next run tries
again. A subscription whose region has no destination yet (the token refresher keeps them) is deferred the
same way, without counting a failure.

Freshness: for each type, the worst lag of the cursors it planned (`ReportLagPeriods`, in periods of the
type's cadence beyond the one just due; dimension report_type) is emitted per run and alarmed above 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from report_fetcher.participations import ParticipationsRefresh
from report_fetcher.subscriptions import ReportSubscriptions
from seller_insights import clock
from seller_insights.coverage import (
    Cursor,
    Window,
    aligned,
    iso_of,
    key_of,
    new_cursor,
    request_window,
    worst_lags,
)
from seller_insights.errors import PlanningFailed
from seller_insights.fanout import FindReport, WorkQueue, due_items, rotating_shards
from seller_insights.observability import get_logger, get_metrics, put_metric_per_type
from seller_insights.report_catalog import CATALOG, ReportSpec, WindowKind
from seller_insights.report_jobs import PLAN_DUE_INDEX, Job, Plan, PlanRepository, job_id
from seller_insights.repositories import parse_key

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table
    from types_boto3_sqs.client import SQSClient
    from types_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

_SQS_BATCH = 10
MAX_JOBS_PER_MESSAGE = 10
# createReport allows 15 at once, then 1 a minute per seller: 15 every 15-minute run is its steady pace.
DEFAULT_MAX_JOBS_PER_CONNECTION = 15
MAX_JOBS_PER_CONNECTION = 100  # stage config bound: above it a backfill would burst past the quotas anyway
SAVE_ATTEMPTS = 3
LAG_METRIC = "ReportLagPeriods"
PLANS_KIND = "report_plans"  # the work items' key in a report_plans message: {"report_plans": [items]}
PLAN_PERIOD_SECONDS = 15 * 60  # the plan-reports schedule's rate: each run starts one shard further
DEFAULT_PLAN_FIND_LIMIT = 50_000  # plans sent per finder run (stage key plan_find_limit)
PLAN_FIND_LIMIT_RANGE = (100, 1_000_000)


@dataclass
class PlanReport:
    connections: int = 0
    jobs: int = 0
    messages: int = 0
    subscribed: int = 0  # connections newly subscribed to REPORT_PROCESSING_FINISHED
    replanned: int = 0  # plans changed between read and write: read and planned again
    gone: int = 0  # plans deleted between read and write: left deleted
    skipped: int = 0  # work items whose plan was no longer due (or gone) when read

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))

    def add(self, other: PlanReport) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


class PlanFinder:
    """The plan-reports schedule: due plans of the `by_plan_due` index → `report_plans` work items. One Query
    page per shard read and one SendMessageBatch per 100 plans; nothing per plan (the consumer re-reads it)."""

    def __init__(self, table: Table, work: WorkQueue, limit: int = DEFAULT_PLAN_FIND_LIMIT) -> None:
        self._table = table
        self._work = work
        self._limit = limit

    def run(self) -> FindReport:
        epoch = clock.epoch_seconds()
        # Only the keys are used: the index could project KEYS_ONLY without a change here.
        found = due_items(self._table, index=PLAN_DUE_INDEX, shard_attribute="plan_shard",
                          due_attribute="next_plan_at", until=epoch,
                          shards=rotating_shards(epoch, PLAN_PERIOD_SECONDS), limit=self._limit)
        items = [plan_item(*parse_key(item)) for item in found]
        return FindReport(found=len(items), messages=self._work.send(items))


def plan_item(seller: str, region: str) -> dict[str, str]:
    """A report_plans work item: the connection whose plan is due."""
    return {"seller_id": seller, "region": region}


@dataclass(frozen=True)
class PlanningLimits:
    max_jobs: int = DEFAULT_MAX_JOBS_PER_CONNECTION  # new jobs per connection per run; windows in flight
    backfill_days: dict[str, int] = field(default_factory=dict)  # per type; else the catalog's


@dataclass
class _Planned:
    plan: Plan
    jobs: list[Job]
    deferred: bool  # subscription deferred: due again at the next run


class Planner:
    def __init__(self, plans: PlanRepository, sqs: SQSClient, queue_url: str, default_types: tuple[str, ...],  # noqa: PLR0917
                 subscriptions: ReportSubscriptions | None = None, limits: PlanningLimits | None = None, *,
                 participations: ParticipationsRefresh | None = None) -> None:
        """`subscriptions`: None when no report_notifications queue is configured (jobs poll only).
        `participations`: None plans the marketplaces the plans hold without checking them."""
        self._plans = plans
        self._sqs = sqs
        self._queue_url = queue_url
        self._default_types = default_types
        self._subscriptions = subscriptions
        self._limits = limits or PlanningLimits()
        self._participations = participations

    def plan(self, items: list[dict[str, Any]]) -> PlanReport:
        """Plan the connections of one report_plans message, each as it is stored now: a plan no longer due
        (planned since it was found) or gone is skipped. Their jobs share messages; each plan's write is
        conditional on the version read. A connection that fails is left due (the finder sends it again)
        after the others are planned, and the message fails."""
        report = PlanReport()
        epoch = clock.epoch_seconds()
        planned: list[_Planned] = []
        failed = 0
        for item in items:
            try:
                plan = self._plans.get(str(item["seller_id"]), str(item["region"]))
                if plan is None or plan.next_plan_at > epoch:
                    report.skipped += 1
                    continue
                if self._participations is not None:
                    self._participations.refresh(plan)  # its marketplaces, checked daily (never raises)
                subscribed = self._subscribe(plan)
                report.subscribed += bool(subscribed)
                planned.append(_Planned(plan, self.plan_connection(plan, epoch, deferred=subscribed is None),
                                        subscribed is None))
            except Exception as exc:
                get_logger().warning("connection not planned; it stays due", extra={"reason": type(exc).__name__})
                failed += 1
        report.connections = len(planned)
        sent: set[str] = set()
        report.messages += self._send([p.jobs for p in planned], sent)
        lags: dict[str, float] = {}
        for entry in planned:
            self._save(entry, epoch, sent, report)
            self._lags(entry.plan, epoch, lags)
        report.jobs = len(sent)
        for report_type, lag in sorted(lags.items()):
            put_metric_per_type(LAG_METRIC, report_type, lag)
        if failed:
            raise PlanningFailed(f"{failed} of {len(items)} connections not planned; they stay due")
        return report

    # --- one connection -------------------------------------------------------------------------

    def plan_connection(self, plan: Plan, epoch: int, *, deferred: bool = False) -> list[Job]:
        """The connection's jobs of this run; its cursors and schedule are updated in `plan` (not saved)."""
        budget = self._limits.max_jobs
        outstanding = sum(cursor.outstanding() for cursor in plan.coverage.values())
        live: list[tuple[ReportSpec, Cursor, Window]] = []
        again: list[tuple[ReportSpec, Cursor, Window, str | None]] = []
        history: list[tuple[ReportSpec, Cursor, Iterator[Window]]] = []
        next_times: list[int] = []
        for report_spec in self._types(plan):
            cadence = int(report_spec.cadence.total_seconds())
            plan.due[report_spec.report_type] = aligned(epoch, cadence) + cadence
            next_times.append(plan.due[report_spec.report_type])
            if plan.denied.get(report_spec.report_type, 0) > epoch:
                continue  # no permission for this type yet (perms records when to try again)
            for cursor in self._cursors(plan, report_spec, epoch):
                live += [(report_spec, cursor, w) for w in cursor.live_windows(report_spec, epoch)]
                again += [(report_spec, cursor, w, w.pull) for w in cursor.resend(epoch)]
                restatement = f"s{iso_of(aligned(epoch, 86400))[:10].replace('-', '')}"  # named by its day
                again += [(report_spec, cursor, w, restatement) for w in cursor.take_restatements(report_spec, epoch)]
                history.append((report_spec, cursor, cursor.backfill_windows(
                    report_spec, epoch, self._backfill_days(report_spec))))
        jobs = [self._job(plan, s, c, w, pull) for s, c, w, pull in again]
        live.sort(key=lambda item: (item[2].start, item[0].report_type, item[1].scope or ""))
        for report_spec, cursor, window in live[:budget]:
            cursor.add(window, epoch)
            jobs.append(self._job(plan, report_spec, cursor, window, window.pull))
        backlog = len(live) > budget
        room = max(0, min(budget - min(len(live), budget), budget - outstanding))
        while room and history:  # one piece per cursor in turn, so every type's history moves
            for entry in list(history):
                report_spec, cursor, pieces = entry
                piece = next(pieces, None)
                if piece is None:
                    history.remove(entry)
                    continue
                if not room:
                    backlog = True
                    break
                cursor.add(piece, epoch)
                jobs.append(self._job(plan, report_spec, cursor, piece, piece.pull))
                room -= 1
        backlog = backlog or any(next(pieces, None) is not None for _, _, pieces in history)
        next_times += [t for t in (cursor.wake_at() for cursor in plan.coverage.values()) if t is not None]
        if backlog or deferred:
            next_times.append(epoch)  # due again at the next run
        # Nothing known to plan (a cursor naming retired types only): it stays due, as before.
        plan.next_plan_at = min(next_times) if next_times else epoch
        return jobs

    def _types(self, plan: Plan) -> list[ReportSpec]:
        specs = []
        for report_type in plan.enabled or self._default_types:
            report_spec = CATALOG.get(report_type)
            if report_spec is None:  # a cursor naming a type the catalog no longer has: skip it, plan the rest
                get_logger().warning("planning cursor names an unknown report type", extra={"report_type": report_type})
                continue
            specs.append(report_spec)
        return specs

    def _backfill_days(self, report_spec: ReportSpec) -> int:
        return self._limits.backfill_days.get(report_spec.report_type, report_spec.backfill_days)

    def _cursors(self, plan: Plan, report_spec: ReportSpec, epoch: int) -> list[Cursor]:
        """The cursors to plan for a type: one per marketplace of the plan, or one shared (and the
        history-only cursors of marketplaces that joined the shared one late). Missing ones are made."""
        days = self._backfill_days(report_spec)
        report_type = report_spec.report_type
        if report_spec.per_marketplace:
            return [plan.coverage.setdefault(key_of(report_type, m), new_cursor(report_spec, m, epoch, days))
                    for m in plan.marketplace_ids]
        shared = plan.coverage.get(report_type)
        if shared is None:
            shared = plan.coverage[report_type] = new_cursor(report_spec, None, epoch, days)
            shared.marketplaces = list(plan.marketplace_ids)
        cursors = [shared]
        if report_spec.window not in (WindowKind.UPDATED, WindowKind.DAY):
            shared.marketplaces = list(plan.marketplace_ids)  # no history to fill per marketplace
            return cursors
        frontier = max([shared.covered_until, *shared.windows])
        for marketplace in plan.marketplace_ids:
            late = plan.coverage.get(key_of(report_type, marketplace))
            if marketplace not in shared.marketplaces:  # joined (or came back): the time before, on its own
                if late is None:
                    late = plan.coverage[key_of(report_type, marketplace)] = new_cursor(
                        report_spec, marketplace, epoch, days, stop=frontier)
                else:
                    late.stop = frontier
                shared.marketplaces.append(marketplace)
            if late is not None:
                cursors.append(late)
        shared.marketplaces = [m for m in shared.marketplaces if m in plan.marketplace_ids]
        return cursors

    @staticmethod
    def _job(plan: Plan, report_spec: ReportSpec, cursor: Cursor, window: Window, pull: str | None) -> Job:
        start, end = request_window(report_spec, window)
        marketplaces = [cursor.scope] if cursor.scope else list(plan.marketplace_ids)
        return Job(job_id(plan.seller, plan.region, report_spec.report_type, start, end, scope=cursor.scope, pull=pull),
                   plan.seller, plan.region, report_spec.report_type, start, end, marketplaces,
                   scope=cursor.scope, pull=pull)

    def _lags(self, plan: Plan, epoch: int, lags: dict[str, float]) -> None:
        worst_lags(plan.coverage.values(), self._types(plan), plan.marketplace_ids, epoch, lags)

    # --- writing ------------------------------------------------------------------------------

    def _save(self, item: _Planned, epoch: int, sent: set[str], report: PlanReport) -> None:
        """The plan's conditional write; a plan changed meanwhile is read and planned again (its new jobs
        sent first), a deleted one is left deleted."""
        plan = item.plan
        for _ in range(SAVE_ATTEMPTS):
            if self._plans.save(plan):
                item.plan = plan
                return
            report.replanned += 1
            fresh = self._plans.get(plan.seller, plan.region)
            if fresh is None:
                report.gone += 1
                return
            plan = fresh
            jobs = self.plan_connection(plan, epoch, deferred=item.deferred)
            report.messages += self._send([[job for job in jobs if job.job_id not in sent]], sent)
        get_logger().warning("plan not saved: it kept changing; the next run plans it again")

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

    def _send(self, per_connection: list[list[Job]], sent: set[str]) -> int:
        """Several connections share a message (fewer SQS calls); one connection's jobs are split only
        when they are more than a message holds. Returns the number of messages."""
        bodies: list[str] = []
        batch: list[dict[str, Any]] = []
        for jobs in per_connection:
            if batch and len(batch) + len(jobs) > MAX_JOBS_PER_MESSAGE:
                bodies.append(json.dumps({"jobs": batch}))
                batch = []
            for job in jobs:
                if len(batch) == MAX_JOBS_PER_MESSAGE:
                    bodies.append(json.dumps({"jobs": batch}))
                    batch = []
                batch.append(job.message())
        if batch:
            bodies.append(json.dumps({"jobs": batch}))
        for start in range(0, len(bodies), _SQS_BATCH):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start:start + _SQS_BATCH])]
            answer = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            failed = answer.get("Failed") or []
            if failed:
                # Nothing is half-planned: the cursors are not moved, the next run sends them again.
                raise PlanningFailed(f"SQS refused {len(failed)} of {len(entries)} job messages")
        sent.update(job.job_id for jobs in per_connection for job in jobs)
        return len(bodies)
