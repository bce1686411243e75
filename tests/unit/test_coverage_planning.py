"""Coverage cursors through the planner, with an injected clock: outages, missed days, backfill pieces, the
per-connection cap, restatement pulls, retries after FAILED, denied types and marketplace scopes. The plan
store and the queue are in-memory; a job "ends" by telling its cursor, as JobRunner._finish does."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from report_fetcher.planner import Planner, PlanningLimits
from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.coverage import DAY, MAX_OPEN_WINDOWS, RESEND_AFTER, RETRY_AFTER, epoch_of, iso_of, key_of
from seller_insights.report_catalog import CATALOG, FBA_RETURNS, LISTINGS, ORDERS, SALES_AND_TRAFFIC, SETTLEMENT
from seller_insights.report_jobs import Job, Plan, job_id
from tests.support.sweeps import plan_all

US, CA, MX = "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2", "A1AM78C64UM0Y8"
SELLER = "A1SELLER01"
HOUR = 3600


@dataclass
class Plans:
    plans: list[Plan] = field(default_factory=list)

    def due(self, now: int) -> list[Plan]:
        return [plan for plan in self.plans if plan.next_plan_at <= now]

    def get(self, seller: str, region: str) -> Plan | None:
        return next((p for p in self.plans if (p.seller, p.region) == (seller, region)), None)

    def save(self, plan: Plan) -> bool:
        return True

    def end(self, job: dict[str, Any], status: str = "DONE") -> bool:
        """What PlanRepository.record_finished does to the cursor, in memory."""
        plan = self.plans[0]
        cursor = plan.coverage[key_of(job["report_type"], job.get("scope"))]
        return cursor.finish(CATALOG[job["report_type"]], epoch_of(job["window_end"]), job.get("pull"), status,
                             clock.epoch_seconds())


@dataclass
class Queue:
    sent: list[dict[str, Any]] = field(default_factory=list)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        for entry in Entries:
            self.sent += json.loads(entry["MessageBody"])["jobs"]
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def world(types: tuple[str, ...], *, marketplaces: tuple[str, ...] = (US,), max_jobs: int = 15,
          backfill: dict[str, int] | None = None) -> tuple[Plans, Any]:
    plans = Plans([Plan(SELLER, "NA", clock.epoch_seconds(), {}, None, list(marketplaces))])
    limits = PlanningLimits(max_jobs=max_jobs, backfill_days={t: 0 for t in CATALOG} | (backfill or {}))

    def run() -> list[dict[str, Any]]:
        queue = Queue()
        plan_all(Planner(plans, queue, "https://sqs.example/jobs", types, limits=limits), plans)  # type: ignore[arg-type]
        return queue.sent

    return plans, run


def span(job: dict[str, Any]) -> tuple[str, str]:
    return job["window_start"], job["window_end"]


def test_a_six_hour_planning_outage_requests_every_missed_hour_in_order(fixed_clock: FixedClock) -> None:
    plans, run = world((ORDERS,))  # 2026-11-29 12:00
    (first,) = run()
    assert span(first) == ("2026-11-29T10:00:00Z", "2026-11-29T12:00:00Z")
    plans.end(first)
    fixed_clock.advance(HOUR)
    (one,) = run()
    assert span(one) == ("2026-11-29T11:00:00Z", "2026-11-29T13:00:00Z")
    plans.end(one)
    # No planning from 13:00 to 19:00 (the outage); the jobs of the hours before all ended.
    fixed_clock.advance(7 * HOUR)  # 20:00
    jobs = run()
    # Every missed hour, from where the cursor stands, in order, less the lookback: one request (well
    # within the 30-day maximum window), not "the last hour".
    assert [span(j) for j in jobs] == [("2026-11-29T12:00:00Z", "2026-11-29T20:00:00Z")]
    plans.end(jobs[0], "NO_DATA")  # confirmed empty moves the cursor like stored data
    assert plans.plans[0].coverage[ORDERS].covered_until == epoch_of("2026-11-29T20:00:00Z")


def test_an_outage_longer_than_the_maximum_window_is_split_oldest_first(fixed_clock: FixedClock) -> None:
    plans, run = world((ORDERS,))
    plans.end(run()[0])
    fixed_clock.advance(40 * DAY)
    jobs = run()
    windows = [(epoch_of(j["window_start"]) + HOUR, epoch_of(j["window_end"])) for j in jobs]
    assert windows[0][0] == epoch_of("2026-11-29T12:00:00Z")
    assert all(end - start <= CATALOG[ORDERS].max_window.total_seconds() - HOUR for start, end in windows)  # type: ignore[union-attr]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert windows[-1][1] == clock.epoch_seconds()


def test_a_missed_day_of_a_daily_type_is_requested(fixed_clock: FixedClock) -> None:
    plans, run = world((FBA_RETURNS,))
    (first,) = run()
    assert span(first) == ("2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z")
    plans.end(first)
    fixed_clock.advance(3 * DAY)  # no planning on the 30th, 1st and 2nd
    jobs = run()
    assert [span(j) for j in jobs] == [("2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z"),
                                       ("2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"),
                                       ("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z")]


def test_a_missed_snapshot_is_not_fetched_later_only_the_current_one(fixed_clock: FixedClock) -> None:
    plans, run = world((LISTINGS,))
    plans.end(run()[0])
    fixed_clock.advance(3 * DAY)
    assert [span(j) for j in run()] == [("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z")]


def test_the_cursor_moves_only_over_finished_windows_that_touch_it(fixed_clock: FixedClock) -> None:
    plans, run = world((FBA_RETURNS,))
    plans.end(run()[0])
    fixed_clock.advance(3 * DAY)
    first, second, third = run()
    cursor = plans.plans[0].coverage[key_of(FBA_RETURNS, US)]
    before = cursor.covered_until
    plans.end(third)
    plans.end(second, "NO_DATA")
    assert cursor.covered_until == before  # the oldest is still out: nothing moves
    plans.end(first, "FAILED")
    assert cursor.covered_until == before
    fixed_clock.advance(RETRY_AFTER)
    retry = next(j for j in run() if span(j) == span(first))
    assert retry["pull"] == "r1" and retry["job_id"] != first["job_id"]  # a new job for the same window
    assert retry["job_id"] == job_id(SELLER, "NA", FBA_RETURNS, *span(first), scope=US, pull="r1")
    plans.end(retry)
    assert cursor.covered_until == epoch_of(third["window_end"])


def test_history_runs_behind_the_live_window_newest_first_in_pieces(fixed_clock: FixedClock) -> None:
    plans, run = world((ORDERS,), backfill={ORDERS: 60})
    jobs = run()
    windows = [(iso_of(epoch_of(j["window_start"]) + HOUR), j["window_end"]) for j in jobs]
    assert windows == [
        ("2026-11-29T11:00:00Z", "2026-11-29T12:00:00Z"),  # live first
        ("2026-10-31T11:00:00Z", "2026-11-29T11:00:00Z"),  # then 29-day pieces (30 days less the lookback)
        ("2026-10-02T11:00:00Z", "2026-10-31T11:00:00Z"),
        ("2026-09-30T12:00:00Z", "2026-10-02T11:00:00Z"),  # down to 60 days before the present
    ]
    for job in reversed(jobs):  # history arriving oldest first still ends in one covered range
        plans.end(job)
    cursor = plans.plans[0].coverage[ORDERS]
    assert (iso_of(cursor.covered_from), iso_of(cursor.covered_until)) == ("2026-09-30T12:00:00Z",
                                                                           "2026-11-29T12:00:00Z")
    assert cursor.backfill_left(CATALOG[ORDERS], clock.epoch_seconds(), 60) == 0
    assert run() == []  # nothing left, nothing new within the hour


def test_a_long_backfill_is_a_steady_backlog_within_the_cap(fixed_clock: FixedClock) -> None:
    plans, run = world((SALES_AND_TRAFFIC,), marketplaces=(US, CA), max_jobs=5, backfill={SALES_AND_TRAFFIC: 30})
    first = run()
    # Live days of both marketplaces first, then history up to the cap: never more than 5 new jobs.
    assert len(first) == 5
    assert [(j["scope"], j["window_start"]) for j in first[:2]] == [(CA, "2026-11-28T00:00:00Z"),
                                                                     (US, "2026-11-28T00:00:00Z")]
    assert plans.plans[0].next_plan_at <= clock.epoch_seconds()  # due again at the next run
    fixed_clock.advance(15 * 60)
    assert run() == []  # five in flight: no more history until some end
    for job in first[:3]:
        plans.end(job)
    fixed_clock.advance(15 * 60)
    assert len(run()) == 3
    seen = {j["job_id"] for j in first}
    for _ in range(200):  # run the backlog down, one plan run after another
        fixed_clock.advance(15 * 60)
        for job in run():
            assert job["job_id"] not in seen
            seen.add(job["job_id"])
        for plan_cursor in plans.plans[0].coverage.values():
            for window in list(plan_cursor.windows.values()):
                plans.end({"report_type": SALES_AND_TRAFFIC, "scope": plan_cursor.scope,
                           "window_end": iso_of(window.end), "pull": window.pull})
    for scope in (US, CA):
        cursor = plans.plans[0].coverage[key_of(SALES_AND_TRAFFIC, scope)]
        assert cursor.backfill_left(CATALOG[SALES_AND_TRAFFIC], clock.epoch_seconds(), 30) == 0


def test_restatement_pulls_the_three_days_before_yesterday_as_new_jobs_with_the_same_key(
        fixed_clock: FixedClock) -> None:
    plans, run = world((SALES_AND_TRAFFIC,), backfill={SALES_AND_TRAFFIC: 10})
    for _ in range(3):
        for job in run():
            plans.end(job)
    fixed_clock.advance(DAY)  # 2026-11-30 12:00
    jobs = run()
    restated = [j for j in jobs if j.get("pull")]
    assert [(span(j), j["pull"]) for j in restated] == [
        (("2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z"), "s20261130"),
        (("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"), "s20261130"),
        (("2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z"), "s20261130"),  # the last: 72 h after its end
    ]
    for job in restated:  # a new job per pull: the first pull's id stays its own
        assert job["job_id"] != job_id(SELLER, "NA", SALES_AND_TRAFFIC, *span(job), scope=US)
    assert [span(j) for j in jobs if not j.get("pull")] == [("2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z")]
    fixed_clock.advance(HOUR)
    assert [j for j in run() if j.get("pull")] == []  # once a day


def test_a_denied_type_is_skipped_until_its_retry_time(fixed_clock: FixedClock) -> None:
    plans, run = world((ORDERS, FBA_RETURNS))
    plans.plans[0].denied = {FBA_RETURNS: clock.epoch_seconds() + DAY}
    assert {j["report_type"] for j in run()} == {ORDERS}
    fixed_clock.advance(DAY)
    assert {j["report_type"] for j in run()} == {ORDERS, FBA_RETURNS}


def test_marketplace_scopes_per_type(fixed_clock: FixedClock) -> None:
    _, run = world((ORDERS, LISTINGS, SETTLEMENT), marketplaces=(US, CA))
    jobs = run()
    orders = [j for j in jobs if j["report_type"] == ORDERS]
    listings = sorted((j["scope"], j["marketplace_ids"]) for j in jobs if j["report_type"] == LISTINGS)
    settlement = [j for j in jobs if j["report_type"] == SETTLEMENT]
    assert [(j.get("scope"), j["marketplace_ids"]) for j in orders] == [(None, [US, CA])]
    assert listings == [(CA, [CA]), (US, [US])]
    assert [(j.get("scope"), j["marketplace_ids"]) for j in settlement] == [(None, [US, CA])]


def test_a_marketplace_that_leaves_stops_being_planned_and_one_that_joins_gets_its_history(
        fixed_clock: FixedClock) -> None:
    plans, run = world((ORDERS, LISTINGS), marketplaces=(US, CA), backfill={ORDERS: 10})
    for job in run():
        plans.end(job)
    plan = plans.plans[0]
    plan.marketplace_ids = [US, MX]  # CA left, MX joined
    fixed_clock.advance(DAY)
    jobs = run()
    assert {j.get("scope") for j in jobs if j["report_type"] == LISTINGS} == {US, MX}
    assert key_of(LISTINGS, CA) in plan.coverage  # CA's cursor stays (its data too)
    live_orders = [j for j in jobs if j["report_type"] == ORDERS and not j.get("scope")]
    assert all(j["marketplace_ids"] == [US, MX] for j in live_orders)
    # MX's order history before it joined, on a cursor of its own (its key names MX), never past the join.
    history = [j for j in jobs if j["report_type"] == ORDERS and j.get("scope") == MX]
    late = plan.coverage[key_of(ORDERS, MX)]
    assert history and all(j["marketplace_ids"] == [MX] for j in history)
    assert late.stop is not None and max(epoch_of(j["window_end"]) for j in history) <= late.stop


# --- property: no gap between planned windows, no cursor over an unfinished one ----------------------

@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 30), st.lists(st.tuples(st.integers(0, 50),
                                                                          st.sampled_from(["DONE", "NO_DATA",
                                                                                           "FAILED", None])),
                                                              max_size=6)), min_size=1, max_size=25),
       report_type=st.sampled_from([ORDERS, FBA_RETURNS]))
def test_planned_windows_have_no_gap_and_cursors_never_pass_an_unfinished_one(
        steps: list[tuple[int, list[tuple[int, str | None]]]], report_type: str) -> None:
    fixed = FixedClock(datetime(2026, 11, 29, 12, tzinfo=UTC))
    clock.set_clock(fixed)
    try:
        plans, run = world((report_type,), max_jobs=4, backfill={report_type: 20})
        spec = CATALOG[report_type]
        planned: dict[tuple[int, int], str | None] = {}  # window -> how its latest pull ended
        open_jobs: list[dict[str, Any]] = []
        known: set[str] = set()  # a job id sent again is the same job (the fetcher runs it once)
        for hours, endings in steps:
            fixed.advance(hours * HOUR)
            for job in run():
                window = (epoch_of(job["window_start"]) + int(spec.lookback.total_seconds()),
                          epoch_of(job["window_end"]))
                if job["job_id"] in known:
                    continue
                known.add(job["job_id"])
                if not job.get("pull", "").startswith("s"):
                    planned[window] = None
                    open_jobs.append(job)
            for pick, status in endings:
                if not open_jobs or status is None:
                    continue
                job = open_jobs.pop(pick % len(open_jobs))
                plans.end(job, status)
                window = (epoch_of(job["window_start"]) + int(spec.lookback.total_seconds()),
                          epoch_of(job["window_end"]))
                planned[window] = status
            cursor = plans.plans[0].coverage[key_of(report_type, US if spec.per_marketplace else None)]
            ordered = sorted(planned)
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ordered)), "a gap"
            for (start, end), status in planned.items():
                if cursor.covered_from <= start and end <= cursor.covered_until:
                    assert status in ("DONE", "NO_DATA"), "the cursor passed an unfinished window"
    finally:
        clock.set_clock(clock.SystemClock())


def test_jobs_round_trip_with_their_scope_and_pull() -> None:
    job = Job(job_id(SELLER, "NA", LISTINGS, "a", "b", scope=US, pull="s20261130"), SELLER, "NA", LISTINGS, "a",
              "b", [US], scope=US, pull="s20261130")
    assert Job.from_message(job.message()) == job
    assert job_id(SELLER, "NA", LISTINGS, "a", "b") == job_id(SELLER, "NA", LISTINGS, "a", "b", scope=None, pull=None)
    assert len({job_id(SELLER, "NA", LISTINGS, "a", "b", scope=s, pull=p)
                for s in (None, US, CA) for p in (None, "r1", "s20261130")}) == 9


def test_the_worst_lag_per_type_is_emitted_in_periods_of_its_cadence(fixed_clock: FixedClock, capfd: Any) -> None:
    plans, run = world((ORDERS, FBA_RETURNS), marketplaces=(US, CA))
    for job in run():
        if job["report_type"] == ORDERS or job.get("scope") == US:
            plans.end(job)  # CA's returns day stays unfinished
    fixed_clock.advance(3 * DAY)
    capfd.readouterr()
    run()

    lags = {}
    for line in capfd.readouterr().out.splitlines():
        blob = json.loads(line) if line.startswith("{") else {}
        if "ReportLagPeriods" in blob:
            lags[blob["report_type"]] = blob["ReportLagPeriods"]
    # Orders: 72 hours behind at the moment its next window is planned (the one just due is not lag);
    # returns: the worst marketplace (CA, stuck a day earlier than US) counts.
    assert lags == {ORDERS: [71.0], FBA_RETURNS: [3.0]}


def test_a_new_settlement_cursor_is_not_behind_for_the_days_it_discovers_first(fixed_clock: FixedClock) -> None:
    plans, run = world((SETTLEMENT,), backfill={SETTLEMENT: 90})
    (job,) = run()
    # createdSince: as far back as getReports reaches (90 days, less an hour of margin).
    assert job["window_start"] == iso_of(clock.epoch_seconds() - 90 * DAY + HOUR)
    cursor = plans.plans[0].coverage[SETTLEMENT]
    fixed_clock.advance(HOUR)
    assert cursor.lag_periods(CATALOG[SETTLEMENT], clock.epoch_seconds()) == 0  # discovery still running
    fixed_clock.advance(3 * DAY)  # and then it never ends: counted from the period before it was made
    assert cursor.lag_periods(CATALOG[SETTLEMENT], clock.epoch_seconds()) == 6
    plans.end(job)  # now covered up to when it was made, three days (six periods, one just due) ago
    assert cursor.lag_periods(CATALOG[SETTLEMENT], clock.epoch_seconds()) == 5


def test_a_window_whose_job_went_quiet_is_sent_again_with_the_same_id(fixed_clock: FixedClock) -> None:
    _, run = world((FBA_RETURNS,))
    (first,) = run()
    fixed_clock.advance(RESEND_AFTER - 60)
    assert run() == []
    fixed_clock.advance(60)
    (again,) = run()
    assert again == first  # same window, same id, same key: the fetcher runs it once


def test_a_type_that_keeps_failing_stops_planning_before_its_cursor_outgrows_the_item(
        fixed_clock: FixedClock) -> None:
    plans, run = world((ORDERS,))
    for _ in range(MAX_OPEN_WINDOWS + 20):
        for job in run():
            plans.end(job, "FAILED")
        fixed_clock.advance(HOUR)
    cursor = plans.plans[0].coverage[ORDERS]
    assert len(cursor.windows) == MAX_OPEN_WINDOWS
    assert cursor.lag_periods(CATALOG[ORDERS], clock.epoch_seconds()) > 2  # and the lag alarm says so


def test_a_backfill_fetches_the_days_again_from_its_date_as_new_pulls(fixed_clock: FixedClock) -> None:
    plans, run = world((FBA_RETURNS,))
    for _ in range(5):  # five days fetched, each day's job done
        for job in run():
            plans.end(job)
        fixed_clock.advance(DAY)
    for job in run():
        plans.end(job)
    cursor = plans.plans[0].coverage[key_of(FBA_RETURNS, US)]
    present = cursor.covered_until
    since = present - 3 * DAY

    assert cursor.rewind(CATALOG[FBA_RETURNS], since + 7 * HOUR, "b1")  # aligned down to the day
    plans.plans[0].next_plan_at = clock.epoch_seconds()
    assert cursor.lag_periods(CATALOG[FBA_RETURNS], clock.epoch_seconds()) == 0  # fetched once: not a lag
    again = run()

    assert [span(job) for job in again] == [(iso_of(since + n * DAY), iso_of(since + (n + 1) * DAY))
                                           for n in range(3)]
    assert {job["pull"] for job in again} == {"b1"}
    assert all(job["job_id"] == job_id(SELLER, "NA", FBA_RETURNS, *span(job), scope=US, pull="b1") for job in again)
    for job in again:
        plans.end(job)
    assert (cursor.covered_until, cursor.refetch) == (present, None)  # done: back to normal planning
    assert run() == []


def test_a_backfill_is_refused_for_types_without_history() -> None:
    now = int(datetime(2026, 11, 29, tzinfo=UTC).timestamp())
    from seller_insights.coverage import new_cursor

    for name in (LISTINGS, SETTLEMENT):
        cursor = new_cursor(CATALOG[name], None, now, 0)
        assert not cursor.rewind(CATALOG[name], now - 3 * DAY, "b1")
    stored = new_cursor(CATALOG[ORDERS], None, now, 30)
    assert stored.rewind(CATALOG[ORDERS], now - 3 * DAY, "b1")
    assert type(stored).from_item(json.loads(json.dumps(stored.to_item()))) == stored
