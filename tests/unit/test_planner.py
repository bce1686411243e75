"""Planning (report_fetcher.planner.Planner) without AWS: which jobs a due cursor yields, where its cursor
moves, how jobs are packed into messages and messages into SendMessageBatch calls, and that a failed send
moves no cursor. The cursor store and the queue are in-memory stand-ins; the clock is fixed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from report_fetcher.planner import MAX_JOBS_PER_MESSAGE, Planner, PlanningFailed, PlanningLimits
from seller_insights.clock import FixedClock
from seller_insights.coverage import RESEND_AFTER
from seller_insights.report_catalog import CATALOG, FBA_RETURNS, LISTINGS, ORDERS, SETTLEMENT, align
from seller_insights.report_jobs import Plan, job_id
from tests.support.sweeps import plan_all

ALL_TYPES = tuple(CATALOG)
US = "ATVPDKIKX0DER"


@dataclass
class Cursors:
    """PlanRepository's planning side: the due cursors, and what the planner saved."""

    plans: list[Plan] = field(default_factory=list)
    saved: list[Plan] = field(default_factory=list)

    def due(self, now: int) -> list[Plan]:
        return [plan for plan in self.plans if plan.next_plan_at <= now]

    def get(self, seller: str, region: str) -> Plan | None:
        return next((p for p in self.plans if (p.seller, p.region) == (seller, region)), None)

    def save(self, plan: Plan) -> bool:
        self.saved.append(plan)
        return True


@dataclass
class Queue:
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    refuse: bool = False

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.batches.append(Entries)
        if self.refuse:
            return {"Successful": [], "Failed": [{"Id": Entries[0]["Id"], "SenderFault": False}]}
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def jobs(self) -> list[list[dict[str, Any]]]:
        """The jobs of each message, in order."""
        return [json.loads(entry["MessageBody"])["jobs"] for batch in self.batches for entry in batch]


def cursor(seller: str, now: FixedClock, *, enabled: list[str] | None = None, due: dict[str, int] | None = None,
           region: str = "NA") -> Plan:
    return Plan(seller, region, int(now.now().timestamp()), dict(due or {}), enabled, [US])


# History is tested in test_coverage_planning.py: here a new cursor plans its live windows only.
NO_HISTORY = PlanningLimits(backfill_days=dict.fromkeys(CATALOG, 0))
QUIET = {"replanned": 0, "gone": 0, "skipped": 0}


def plan(cursors: Cursors, queue: Queue, types: tuple[str, ...] = ALL_TYPES) -> Any:
    return plan_all(Planner(cursors, queue, "https://sqs.example/jobs", types, limits=NO_HISTORY),  # type: ignore[arg-type]
                    cursors)


def test_a_new_cursor_yields_one_job_per_type_with_deterministic_ids(fixed_clock: FixedClock) -> None:
    cursors, queue = Cursors([cursor("A1SELLER01", fixed_clock)]), Queue()

    report = plan(cursors, queue)

    assert report.as_dict() == {"connections": 1, "jobs": len(ALL_TYPES), "messages": 1, "subscribed": 0, **QUIET}
    (jobs,) = queue.jobs()
    assert sorted(job["report_type"] for job in jobs) == sorted(ALL_TYPES)
    for job in jobs:
        # The first live window of a new cursor is the window "now" used to give.
        start, end = CATALOG[job["report_type"]].window_for(fixed_clock.now())
        assert (job["window_start"], job["window_end"]) == (
            start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z"))
        # Per-marketplace types name their marketplace (in the id, the S3 key and the REPORT# row).
        scope = US if CATALOG[job["report_type"]].per_marketplace else None
        assert job.get("scope") == scope
        assert job["job_id"] == job_id("A1SELLER01", "NA", job["report_type"], job["window_start"], job["window_end"],
                                       scope=scope)
        assert job["marketplace_ids"] == [US]


def test_planning_the_same_moment_twice_yields_the_same_jobs(fixed_clock: FixedClock) -> None:
    first, second = Queue(), Queue()
    plan(Cursors([cursor("A1SELLER01", fixed_clock)]), first)
    plan(Cursors([cursor("A1SELLER01", fixed_clock)]), second)

    assert first.jobs() == second.jobs()


def test_each_type_becomes_due_at_its_next_cadence_boundary(fixed_clock: FixedClock) -> None:
    fixed_clock.advance(37 * 60)  # 12:37
    due_cursor = cursor("A1SELLER01", fixed_clock)
    cursors = Cursors([due_cursor])

    plan(cursors, Queue())

    now = fixed_clock.now()
    for report_type in ALL_TYPES:
        cadence = CATALOG[report_type].cadence
        assert due_cursor.due[report_type] == int((align(now, cadence) + cadence).timestamp()), report_type
    # The cursor is next due with its most frequent type: the hourly orders report at 13:00.
    assert due_cursor.next_plan_at == int(datetime(2026, 11, 29, 13, tzinfo=UTC).timestamp())
    assert cursors.saved == [due_cursor]


def test_only_the_types_whose_next_window_is_complete_are_planned(fixed_clock: FixedClock) -> None:
    # Planning follows the cursors, not a due map: an hour later only the hourly type has a new window.
    cursors = Cursors([cursor("A1SELLER01", fixed_clock)])
    plan(cursors, Queue(), (ORDERS, LISTINGS, SETTLEMENT))
    fixed_clock.advance(3600)
    queue = Queue()

    report = plan(cursors, queue, (ORDERS, LISTINGS, SETTLEMENT))

    assert report.jobs == 1
    assert [job["report_type"] for job in queue.jobs()[0]] == [ORDERS]


def test_a_cursors_own_types_replace_the_defaults_and_unknown_ones_are_skipped(fixed_clock: FixedClock) -> None:
    own = cursor("A1SELLER01", fixed_clock, enabled=[FBA_RETURNS, "GET_RETIRED_REPORT"])
    cursors, queue = Cursors([own]), Queue()

    report = plan(cursors, queue, (ORDERS, LISTINGS))

    assert report.jobs == 1
    assert [job["report_type"] for job in queue.jobs()[0]] == [FBA_RETURNS]
    # Due again when its window is sent again if its job has not ended by then (else at the next day).
    assert own.next_plan_at == min(own.due[FBA_RETURNS], int(fixed_clock.now().timestamp()) + RESEND_AFTER)


def test_a_cursor_naming_only_unknown_types_still_moves_on_the_defaults(fixed_clock: FixedClock) -> None:
    own = cursor("A1SELLER01", fixed_clock, enabled=["GET_RETIRED_REPORT"])
    cursors, queue = Cursors([own]), Queue()

    report = plan(cursors, queue, (ORDERS,))

    assert report.as_dict() == {"connections": 1, "jobs": 0, "messages": 0, "subscribed": 0, **QUIET}
    assert queue.batches == []
    # No default type was planned for it, so none is due later: the cursor stays due now.
    assert own.next_plan_at == int(fixed_clock.now().timestamp())


def test_connections_share_messages_but_one_is_never_split(fixed_clock: FixedClock) -> None:
    # 4 jobs per connection: two fit a message (8), a third would overflow it (12 > 10).
    types = (ORDERS, LISTINGS, FBA_RETURNS, SETTLEMENT)
    cursors = Cursors([cursor(f"A1SELLER{n:02d}", fixed_clock) for n in range(5)])
    queue = Queue()

    report = plan(cursors, queue, types)

    sizes = [len(jobs) for jobs in queue.jobs()]
    assert sizes == [8, 8, 4]
    assert report.messages == 3 and report.jobs == 20
    for jobs in queue.jobs():
        assert len(jobs) <= MAX_JOBS_PER_MESSAGE
        sellers = [job["seller"] for job in jobs]
        assert all(sellers.count(s) == len(types) for s in set(sellers))


def test_more_than_ten_messages_take_several_send_batches(fixed_clock: FixedClock) -> None:
    cursors = Cursors([cursor(f"A1SELLER{n:02d}", fixed_clock) for n in range(23)])
    queue = Queue()

    report = plan(cursors, queue)  # 6 jobs each: one connection per message

    assert report.messages == 23
    assert [len(batch) for batch in queue.batches] == [10, 10, 3]


def test_nothing_due_sends_nothing(fixed_clock: FixedClock) -> None:
    tomorrow = cursor("A1SELLER01", fixed_clock)
    tomorrow.next_plan_at += 86_400
    cursors, queue = Cursors([tomorrow]), Queue()

    assert plan(cursors, queue).as_dict() == {"connections": 0, "jobs": 0, "messages": 0, "subscribed": 0, **QUIET}
    assert queue.batches == []


def test_a_refused_send_moves_no_cursor(fixed_clock: FixedClock) -> None:
    cursors, queue = Cursors([cursor("A1SELLER01", fixed_clock)]), Queue(refuse=True)

    with pytest.raises(PlanningFailed, match="1 of 1"):
        plan(cursors, queue)

    assert cursors.saved == []


@dataclass
class Participations:
    """report_fetcher.participations.ParticipationsRefresh: Amazon's answer replaces the plan's marketplaces."""

    answer: list[str]
    refreshed: list[str] = field(default_factory=list)

    def refresh(self, plan: Plan) -> None:
        self.refreshed.append(plan.seller)
        plan.marketplace_ids = list(self.answer)


def test_each_due_connection_is_planned_with_the_marketplaces_its_check_found(fixed_clock: FixedClock) -> None:
    canada = "A2EUQ1WTGCTBG2"
    cursors = Cursors([cursor("A1SELLER01", fixed_clock), cursor("A2SELLER02", fixed_clock)])
    later = cursor("A3NOTDUE003", fixed_clock)
    later.next_plan_at += 3600
    cursors.plans.append(later)
    queue, participations = Queue(), Participations([US, canada])

    plan_all(Planner(cursors, queue, "https://sqs.example/jobs", (ORDERS,),  # type: ignore[arg-type]
                     participations=participations), cursors)  # type: ignore[arg-type]

    assert participations.refreshed == ["A1SELLER01", "A2SELLER02"]  # the due ones, once each
    planned = {m for jobs in queue.jobs() for job in jobs for m in job["marketplace_ids"]}
    assert planned == {US, canada}
    assert [p.marketplace_ids for p in cursors.saved] == [[US, canada]] * 2
