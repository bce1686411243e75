"""Completeness of stored data: one simulated week of the real report pipeline for 100+ sellers.

Usage: python -m bench.completeness [--sellers 100] [--days 7] [--seed 10] [--step-minutes 5]
                                    [--error-share 0.5] [--loopback] [--output bench/results/completeness.json]

Method. Everything runs in this process, on one virtual clock (the product's `seller_insights.clock`
and the Amazon emulator's clock are one `FixedClock`; nothing waits on the wall clock):

- AWS is moto in-process (`mock_aws`), with the contract's tables, key and LWA secret made as the tests
  make them (tests/support/resources.py), the data bucket, the report_plans and report_jobs queues
  (visibility timeout and redrive as infra/constructs/messaging.py gives them), the report_notifications
  queue and the token refresher's token_refresh queue. moto's SQS
  delays follow the product clock (local/moto_fixes.py); bench/moto_speed.py only narrows moto's Query walk.
- Amazon is the emulator (local/amazon). Its WSGI app answers the product's requests in the caller's
  thread (bench/inprocess_http.py: requests and urllib3 as usual, no socket; `--loopback` sends them over
  loopback HTTP to its server instead, same results, about 30% slower). Its report notifications go to
  the report_notifications queue.
- World: N sellers spread over NA, EU and FE (seeded), each participating in every marketplace the
  emulator's getMarketplaceParticipations lists for its region (`seller_marketplaces`) and connecting
  from one of them, through the real consent path: `/connect` and `/callback` of the consent function's
  handler, the emulator's consent page, then the token refresher's `verify-consents` task (its finder, then
  the token_refresh queue delivered to the refresher).
- Time moves in steps (default 5 minutes). At each step the schedules of the template fire at their
  rate (rates read from infra/constructs: `plan-reports` and `wake-jobs` (parked jobs back on the queue) of
  the report fetcher, `refresh-tokens`,
  `verify-consents` and `check-reauthorization` of the token refresher; a rate shorter than the step
  fires once per step; `plan-reports` only finds the due plans and sends them to report_plans), then every
  visible message of token_refresh goes to the token refresher's `lambda_handler` (the connections
  `refresh-tokens` found are renewed there, before the jobs run), and every visible message of report_plans
  (the planner), report_jobs and report_notifications to the fetcher's `lambda_handler`, each as an SQS
  event of up to 10 records (the event source mapping's batch);
  the messages it does not report as failed are deleted, the failed ones come back after the visibility
  timeout. Delayed messages become visible when the virtual clock reaches their delay.
- Amazon creates one settlement report per (seller, marketplace) at a seeded moment of the week.
- Faults (`default_faults`): a 6-hour planning outage (the plan schedule does not fire) and one simulated
  day on which each call of a Reports API operation (createReport, getReports, getReport,
  getReportDocument) answers 503 with probability `--error-share` (default 0.5; seeded), through the
  emulator's own fault book (`ReportsErrors`). `--error-share 1` is a day-long outage: today's fetcher
  then retries every waiting job every minute all day, one fetcher step per waiting job per time step
  here, so such a run takes much longer.

Measured:
- share of (seller, marketplace, report type, window) stored, against `expected_units()`: computed from
  the catalog's cadences and each seller's marketplaces only, never from what the pipeline planned.
  Every cadence period of a requestable type that starts at or after the connection and ends at least
  GRACE before the end of the run; each settlement report Amazon created that long before the end.
  Stored data is read by `stored_units()` (REPORT# rows of the connections table); a stored window
  covers every period it contains, for each marketplace it was requested for;
- throttled SP-API calls (429s the emulator answered), from the emulator's stats;
- sellers with Sales and Traffic for every expected day (in every marketplace; in the home marketplace);
- LWA and SP-API calls per seller-day (emulator stats; consent included);
- wall time of the whole run.

Result: `--output` (default bench/results/completeness.json) and one JSON line on stdout; progress on
stderr; the product's own log lines in build/bench/completeness/product.log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shlex
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from local.amazon.faults import Fault, FaultBook

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "completeness.json"
PRODUCT_LOG = REPO / "build" / "bench" / "completeness" / "product.log"
START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # a Monday, midnight UTC
REDIRECT_URI = "https://seller-insights.example.com/callback"
# A period counts as expected only if it ended this long before the run's end (time to fetch it).
GRACE = timedelta(hours=2)
REGION_WEIGHTS = (("NA", 0.4), ("EU", 0.4), ("FE", 0.2))
REPORTS_OPERATIONS = ("createReport", "getReports", "getReport", "getReportDocument")
FAULT_STATUS = 503
# The share of Reports API calls answering 503 during the 5xx day (--error-share).
DEFAULT_ERROR_SHARE = 0.5
HTTP_TIMEOUT = 10
BACKFILL_DAYS = 2


def say(message: str) -> None:
    print(f"[completeness] {message}", file=sys.stderr, flush=True)


def _setup_paths() -> None:
    for path in (REPO / "functions", REPO / "layers" / "shared" / "python", REPO):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


# --- the world: sellers and their marketplaces ------------------------------------------------------


@dataclass(frozen=True)
class Seller:
    seller_id: str
    region: str
    home: str  # the marketplace code the seller connected from
    marketplaces: tuple[str, ...]  # codes of every marketplace the seller sells in


def seller_marketplaces(region: str) -> tuple[str, ...]:
    """Where a seller of `region` sells: what the emulator's getMarketplaceParticipations answers
    (isParticipating) for every seller of that region. Change here if the emulator gets per-seller
    participations."""
    from local.amazon.marketplaces import PARTICIPATIONS, Region

    return tuple(PARTICIPATIONS[Region(region)])


def make_world(sellers: int, seed: int) -> list[Seller]:
    rng = random.Random(seed)
    regions = [name for name, _ in REGION_WEIGHTS]
    world = []
    for number in range(sellers):
        # The first three cover every region; the rest are drawn by weight.
        region = regions[number] if number < len(regions) else rng.choices(
            regions, weights=[w for _, w in REGION_WEIGHTS])[0]
        marketplaces = seller_marketplaces(region)
        seller_id = "A" + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=12)) + f"{number % 10}"
        world.append(Seller(seller_id, region, rng.choice(marketplaces), marketplaces))
    return world


# --- what should be stored, and what is --------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One expected piece of data: a cadence period of a type in a marketplace, or one settlement report."""

    seller: str
    marketplace: str  # code, e.g. "DE"
    report_type: str
    start: int  # epoch seconds; a settlement report: its creation time
    end: int
    report_id: str | None = None  # settlement reports only


@dataclass(frozen=True)
class StoredWindow:
    """One stored piece of data, as `stored_units()` reads it."""

    seller: str
    report_type: str
    marketplaces: frozenset[str]  # codes
    start: int | None
    end: int | None
    report_id: str | None


@dataclass(frozen=True)
class Settlement:
    """A settlement report Amazon created during the run."""

    seller: str
    marketplace: str
    report_id: str
    created: int


def expected_units(world: list[Seller], connected_at: datetime, until: datetime, settlements: list[Settlement],
                   planning_outage: tuple[datetime, datetime] | None = None) -> list[Unit]:
    """THE EXPECTATION, from the catalog's cadences and the sellers' marketplaces only.

    For every seller, every marketplace it sells in and every requestable catalog type: each period of
    the type's cadence (aligned to the epoch, as the catalog aligns) that starts at or after the
    connection and ends by `until`. Settlement reports cannot be requested: each one Amazon created by
    `until` less one discovery period (12 hours: the discovery that finds it runs by then) is expected, in
    the marketplace it was created for.

    Two things no pipeline can fetch are not expected: a snapshot (the state now: listings, FBA inventory)
    of a period whose next whole period passed inside the planning outage (nothing ran that could ask
    for it, and Amazon cannot give a past state); and history before the connection (the backfill's, a
    separate measure). Adapt here if the pipeline's expected scope changes (e.g. a type's granularity)."""
    from seller_insights.report_catalog import CATALOG, SETTLEMENT, WindowKind, align

    units: list[Unit] = []
    begin, last = int(connected_at.timestamp()), int(until.timestamp())
    down = (int(planning_outage[0].timestamp()), int(planning_outage[1].timestamp())) if planning_outage else None
    for seller in world:
        for spec in CATALOG.values():
            if not spec.requestable:
                continue
            cadence = int(spec.cadence.total_seconds())
            first = int(align(connected_at, spec.cadence).timestamp())
            if first < begin:
                first += cadence
            for start in range(first, last - cadence + 1, cadence):
                end = start + cadence
                if spec.window is WindowKind.SNAPSHOT and down and down[0] <= end and end + cadence <= down[1]:
                    continue  # its run was due only while planning was down: a past state cannot be asked for
                units.extend(Unit(seller.seller_id, code, spec.report_type, start, end) for code in seller.marketplaces)
    discovery = int(CATALOG[SETTLEMENT].cadence.total_seconds())
    units.extend(Unit(s.seller, s.marketplace, _settlement_type(), s.created, s.created, s.report_id)
                 for s in settlements if s.created <= last - discovery)
    return units


def stored_units(table: Any, world: list[Seller], settlements: list[Settlement]) -> list[StoredWindow]:
    """THE ADAPTER: what the pipeline stored, read from the REPORT# rows of the connections table.

    Today a row is `REPORT#{region}#{type}#{window_start}#{window_end}` (settlement:
    `...#{report_id}`) with `window_start`/`window_end` and `report_id`; its marketplaces are not on
    the row, so they come from the row itself if it ever names them (`marketplace_ids` or
    `marketplace_id`), else from the job that requested its report or query (JOB# with REPORTID# or QUERYID#
    items), else, for a
    settlement report, from the marketplace Amazon created it for. Adapt here when the keys or rows
    change (e.g. the marketplace in the key, Data Kiosk rows for Sales and Traffic)."""
    from boto3.dynamodb.conditions import Key

    from seller_insights import dynamo
    from seller_insights.marketplaces import MARKETPLACES

    code_of = {m.marketplace_id: code for code, m in MARKETPLACES.items()}
    settlement_marketplace = {s.report_id: s.marketplace for s in settlements}
    found = []
    for seller in world:
        items = list(dynamo.query(table, KeyConditionExpression=Key("pk").eq(f"SELLER#{seller.seller_id}")))
        jobs = {i["sk"][len("JOB#"):]: i for i in items if i["sk"].startswith("JOB#")}
        # A report's job by its REPORTID# pointer; a Data Kiosk query's by its QUERYID# pointer.
        job_of_report = {i["sk"].split("#", 1)[1]: jobs.get(i["job_id"]) for i in items
                         if i["sk"].startswith(("REPORTID#", "QUERYID#"))}
        for row in (i for i in items if i["sk"].startswith("REPORT#")):
            report_id = str(row.get("report_id") or "") or None
            ids = row.get("marketplace_ids") or ([row["marketplace_id"]] if row.get("marketplace_id") else None)
            job = job_of_report.get(report_id) if report_id else None
            if ids is None and job is not None:
                ids = job["marketplace_ids"]
            codes = {code_of.get(str(i), str(i)) for i in ids or ()}
            if not codes and report_id in settlement_marketplace:
                codes = {settlement_marketplace[report_id]}
            start, end = row.get("window_start"), row.get("window_end")
            found.append(StoredWindow(seller.seller_id, str(row["report_type"]), frozenset(codes),
                                      _epoch(start) if start else None, _epoch(end) if end else None, report_id))
    return found


def _settlement_type() -> str:
    from seller_insights.report_catalog import SETTLEMENT

    return SETTLEMENT


def _epoch(value: str) -> int:
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def covered(expected: list[Unit], stored: list[StoredWindow]) -> set[Unit]:
    """The expected units some stored window covers: same seller and type, the unit's marketplace among
    the window's, the unit's period inside the window (a settlement report: the same report id)."""
    from seller_insights.report_catalog import CATALOG

    windows: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    reports: set[tuple[str, str]] = set()
    for window in stored:
        if window.report_id:
            reports.add((window.seller, window.report_id))
        if window.start is None or window.end is None:
            continue
        for code in window.marketplaces:
            windows[(window.seller, window.report_type, code)].append((window.start, window.end))
    hit = set()
    periods: dict[tuple[str, str, str], set[int]] = {}
    for unit in expected:
        if unit.report_id is not None:
            if (unit.seller, unit.report_id) in reports:
                hit.add(unit)
            continue
        key = (unit.seller, unit.report_type, unit.marketplace)
        if key not in periods:
            cadence = int(CATALOG[unit.report_type].cadence.total_seconds())
            starts: set[int] = set()
            for start, end in windows.get(key, ()):
                first = start + (-start % cadence)
                starts.update(range(first, end - cadence + 1, cadence))
            periods[key] = starts
        if unit.start in periods[key]:
            hit.add(unit)
    return hit


# --- the simulation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    planning_outage: tuple[datetime, datetime] | None
    amazon_5xx: tuple[datetime, datetime] | None


def default_faults(start: datetime, days: int) -> Faults:
    """A 6-hour planning outage, 03:00-09:00 of the second day (of the first in a run shorter than 5 days),
    and a day of 5xx: the fourth day of a run of 5 days or more, the last day of a run of 2 to 4 days, two
    hours after the outage for two hours in a one-day run."""
    outage_start = start + timedelta(days=1 if days >= 5 else 0, hours=3)
    outage = (outage_start, outage_start + timedelta(hours=6))
    if days >= 5:
        errors = (start + timedelta(days=3), start + timedelta(days=4))
    elif days >= 2:
        errors = (start + timedelta(days=days - 1), start + timedelta(days=days))
    else:
        errors = (outage[1] + timedelta(hours=2), outage[1] + timedelta(hours=4))
    return Faults(outage, errors)


class ReportsErrors(FaultBook):
    """The emulator's fault book (faults armed through `/_emulator/faults` still come first), plus Amazon's
    5xx day: while `active`, each call of a Reports API operation answers 503 with probability `share`
    (seeded). A share below 1 stands for a day of intermittent server errors; 1 for a day-long outage."""

    def __init__(self, share: float, rng: random.Random) -> None:
        super().__init__()
        self.share = share
        self.active = False
        self._rng = rng

    def take(self, operation: str) -> Fault | None:
        armed = super().take(operation)
        if armed is not None or not self.active or operation not in REPORTS_OPERATIONS:
            return armed
        return Fault(FAULT_STATUS) if self._rng.random() < self.share else None


@dataclass
class Counts:
    deliveries: int = 0  # SQS events given to the fetcher
    records: int = 0
    failed_records: int = 0
    refresh_deliveries: int = 0  # token_refresh events given to the token refresher
    refresh_failed_records: int = 0
    schedule_runs: Counter[str] = field(default_factory=Counter)
    planned_jobs: int = 0
    woken_jobs: int = 0  # parked jobs the wake-jobs schedule sent back to report_jobs


class FakeContext:
    """What the handlers read of Lambda's context."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


class Simulation:
    def __init__(self, world: list[Seller], *, emulator: Any, sqs: Any, plans_queue: str, jobs_queue: str,
                 notifications_queue: str, refresh_queue: str, schedules: dict[str, int], faults: Faults,
                 settlement_times: dict[tuple[str, str], datetime], error_share: float = 1.0,
                 error_seed: int = 0) -> None:
        self.world = world
        self.emulator = emulator
        self.sqs = sqs
        self.refresh_queue = (refresh_queue, self._arn(refresh_queue))
        # report_plans first: the plans of this step send their jobs before report_jobs is drained.
        self.queues = [(url, self._arn(url)) for url in (plans_queue, jobs_queue, notifications_queue)]
        self.schedules = schedules
        self.faults = faults
        self.settlement_times = dict(settlement_times)
        self.settlements: list[Settlement] = []
        self.counts = Counts()
        self._next_fire: dict[str, datetime] = {}
        # Amazon's 5xx day: the emulator's fault book, with a seeded share of Reports calls failing while active.
        self.errors = ReportsErrors(error_share, random.Random(error_seed))
        emulator.state.faults = self.errors

    def _arn(self, url: str) -> str:
        return str(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

    # -- the product's entry points --

    @staticmethod
    def fetcher(event: dict[str, Any]) -> dict[str, Any]:
        from report_fetcher.handler import lambda_handler

        return dict(lambda_handler(event, FakeContext("report_fetcher")))

    @staticmethod
    def refresher(task: str) -> dict[str, Any]:
        from token_refresher.handler import lambda_handler

        return dict(lambda_handler({"task": task}, FakeContext("token_refresher")))

    def verify_consents(self) -> int:
        """verify-consents (the finder), then its work on token_refresh: how many consents were sent."""
        found = int(self.refresher("verify-consents").get("found", 0))
        self.drain_refreshes(*self.refresh_queue)
        return found

    def fire(self, name: str) -> None:
        self.counts.schedule_runs[name] += 1
        if name == "plan-reports":
            self.fetcher({"task": "plan-reports"})  # the finder: the due plans go to report_plans
        elif name == "wake-jobs":  # parked report jobs (long waits) back on report_jobs
            self.counts.woken_jobs += int(self.fetcher({"task": "wake-jobs"}).get("woken", 0))
        else:
            self.refresher(name)

    @contextlib.contextmanager
    def counting_planned_jobs(self) -> Iterator[None]:
        """The jobs each report_plans message planned, added to `counts.planned_jobs` (the planner's own
        report; the handler answers SQS with the failed records only)."""
        from report_fetcher.planner import Planner

        original = Planner.plan

        def plan(planner: Planner, items: list[dict[str, Any]]) -> Any:
            report = original(planner, items)
            self.counts.planned_jobs += report.jobs
            return report

        with mock.patch.object(Planner, "plan", plan):
            yield

    # -- one step --

    def step(self, now: datetime, step: timedelta) -> None:
        self._amazon_faults(now)
        self._settlements(now)
        for name, rate in self.schedules.items():
            due = self._next_fire.setdefault(name, now)
            if now < due:
                continue
            while due <= now:
                due += timedelta(seconds=rate)
            self._next_fire[name] = due
            if name == "plan-reports" and self._in(now, self.faults.planning_outage):
                self.counts.schedule_runs["plan-reports (skipped: outage)"] += 1
                continue
            self.fire(name)
        self.drain_refreshes(*self.refresh_queue)
        for url, arn in self.queues:
            self.drain(url, arn)
        self.emulator.advance_clock(step.total_seconds())  # moves the product clock too: one clock

    @staticmethod
    def _in(now: datetime, period: tuple[datetime, datetime] | None) -> bool:
        return period is not None and period[0] <= now < period[1]

    def drain(self, url: str, arn: str, limit: int = 100_000) -> None:
        for _ in range(limit):
            delivered = self._deliver(url, arn, self.fetcher)
            if delivered is None:
                return
            self.counts.deliveries += 1
            self.counts.records += delivered[0]
            self.counts.failed_records += delivered[1]
        raise RuntimeError(f"{url} did not empty after {limit} receives in one step")

    def drain_refreshes(self, url: str, arn: str, limit: int = 100_000) -> None:
        """The token_refresh queue to the token refresher, as its event source would."""
        from token_refresher.handler import lambda_handler

        def refresher(event: dict[str, Any]) -> dict[str, Any]:
            return dict(lambda_handler(event, FakeContext("token_refresher")))

        for _ in range(limit):
            delivered = self._deliver(url, arn, refresher)
            if delivered is None:
                return
            self.counts.refresh_deliveries += 1
            self.counts.refresh_failed_records += delivered[1]
        raise RuntimeError(f"{url} did not empty after {limit} receives in one step")

    def _deliver(self, url: str, arn: str,
                 handler: Callable[[dict[str, Any]], dict[str, Any]]) -> tuple[int, int] | None:
        """One receive of up to 10 messages through `handler`; (records, failed), or None when none was visible."""
        messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return None
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": {}, "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"}
                   for m in messages]
        result = handler({"Records": records})
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        done = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                for n, m in enumerate(messages) if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(QueueUrl=url, Entries=done)
        return len(records), len(failed)

    def _amazon_faults(self, now: datetime) -> None:
        self.errors.active = self._in(now, self.faults.amazon_5xx)

    def _settlements(self, now: datetime) -> None:
        """Amazon generates settlement reports on its own schedule: one per (seller, marketplace) this run."""
        import requests

        from local.amazon.marketplaces import Region
        from seller_insights.marketplaces import MARKETPLACES

        by_id = {s.seller_id: s for s in self.world}
        for (seller_id, code), when in list(self.settlement_times.items()):
            if when > now:
                continue
            del self.settlement_times[(seller_id, code)]
            requests.post(f"{self.emulator.base_url}/_emulator/reports/documents", timeout=HTTP_TIMEOUT, json={
                "selling_partner_id": seller_id, "report_type": _settlement_type(),
                "marketplace_ids": [MARKETPLACES[code].marketplace_id], "outcome": "DONE"}).raise_for_status()
            # The control call does not name the report: the newest settlement report of the seller is it.
            newest = next(r for r in self.emulator.state.reports.find(seller_id, Region(by_id[seller_id].region))
                          if r.report_type == _settlement_type())
            self.settlements.append(Settlement(seller_id, code, str(newest.report_id), int(now.timestamp())))


# --- consent through the real routes ------------------------------------------------------------------


class ConsentBrowser:
    """A browser on the consent function's routes (its handler, called as API Gateway would) and the
    emulator's consent page."""

    def __init__(self, emulator_url: str) -> None:
        self.emulator_url = emulator_url
        self.jar: dict[str, str] = {}

    def get(self, path: str, query: str) -> dict[str, Any]:
        from oauth_callback.handler import lambda_handler
        from tests.support.api import http_event

        event = http_event("GET", path, query, [f"{k}={v}" for k, v in self.jar.items()])
        answer = dict(lambda_handler(event, FakeContext("oauth_callback")))
        for cookie in answer.get("cookies", []):
            pair, _, attributes = cookie.partition(";")
            name, _, value = pair.partition("=")
            if "Max-Age=0" in attributes or not value:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return answer

    def connect(self, seller: Seller) -> None:
        import requests

        start = self.get("/connect", f"marketplace={seller.home}")
        if start["statusCode"] != 302:
            raise RuntimeError(f"/connect answered {start['statusCode']}")
        consent = requests.post(f"{self.emulator_url}/_emulator/consent", timeout=HTTP_TIMEOUT, json={
            "consent_url": start["headers"]["Location"], "selling_partner_id": seller.seller_id})
        consent.raise_for_status()
        done = self.get("/callback", urlsplit(str(consent.json()["redirect"])).query)
        if done["statusCode"] != 303:
            raise RuntimeError(f"/callback answered {done['statusCode']}")


# --- the run ------------------------------------------------------------------------------------------


def settlement_schedule(world: list[Seller], end: datetime, seed: int) -> dict[tuple[str, str], datetime]:
    """When Amazon creates each (seller, marketplace)'s settlement report: a seeded moment from 6 hours
    after the start to an hour before the last expected moment."""
    rng = random.Random(seed)
    latest = max(6 * 3600 + 1, int((end - START - GRACE).total_seconds()) - 3600)
    return {(s.seller_id, code): START + timedelta(seconds=rng.randrange(6 * 3600, latest))
            for s in world for code in s.marketplaces}


def template_rates() -> dict[str, int]:
    """The schedules of the template, by name, in seconds (infra/constructs)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from infra.constructs import report_fetcher
    from infra.constructs.token_refresher import SCHEDULES

    rates = {name: int(rate.to_seconds()) for name, rate, _ in SCHEDULES}
    rates.update({name: int(rate.to_seconds()) for name, rate in report_fetcher.SCHEDULES})
    return rates


def queue_shape() -> tuple[int, int, int]:
    """The report_jobs queue as the template makes it: visibility timeout, maxReceiveCount, batch size."""
    from infra.constructs import messaging
    from infra.constructs.report_fetcher import FETCH_TIMEOUT_SECONDS, JOBS_BATCH_SIZE

    return FETCH_TIMEOUT_SECONDS * messaging.VISIBILITY_TIMEOUT_FACTOR, messaging.MAX_RECEIVE_COUNT, JOBS_BATCH_SIZE


def _aws_for_the_functions(emulator: Any, visibility: int, max_receives: int) -> tuple[Any, dict[str, str]]:
    """In moto: the contract's tables, key and secrets, the data bucket and the fetcher's queues; the
    functions' environment (one process for every function, as the local stack has it)."""
    import boto3

    from seller_insights.report_catalog import CATALOG
    from tests.support.resources import create_resources

    session = boto3.session.Session()
    resources = create_resources(session, emulator.credentials(), prefix="bench")
    sqs = session.client("sqs")
    secret = session.client("secretsmanager").create_secret(
        Name="bench-seller-keys", SecretString=os.urandom(32).hex())["ARN"]
    session.client("s3").create_bucket(Bucket="bench-data")

    def arn(url: str) -> str:
        return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

    dead = sqs.create_queue(QueueName="bench-report-jobs-dlq")["QueueUrl"]
    redrive = json.dumps({"deadLetterTargetArn": arn(dead), "maxReceiveCount": max_receives})
    jobs = sqs.create_queue(QueueName="bench-report-jobs", Attributes={
        "VisibilityTimeout": str(visibility), "RedrivePolicy": redrive})["QueueUrl"]
    plans = sqs.create_queue(QueueName="bench-report-plans", Attributes={
        "VisibilityTimeout": str(visibility)})["QueueUrl"]
    notifications = sqs.create_queue(QueueName="bench-report-notifications", Attributes={
        "VisibilityTimeout": str(visibility)})["QueueUrl"]
    refresh = sqs.create_queue(QueueName="bench-token-refresh", Attributes={
        "VisibilityTimeout": str(visibility)})["QueueUrl"]
    lwa_bucket = _local_stage()
    emulator.configure(report_notification_queue_url=notifications, sqs_endpoint="")
    os.environ.update({
        "STAGE": "local", "AMAZON_ENDPOINT_OVERRIDE": emulator.base_url,
        "CONNECTIONS_TABLE": resources.tables["connections"], "OAUTH_STATE_TABLE": resources.tables["oauth_state"],
        "IDEMPOTENCY_TABLE": resources.tables["idempotency"], "AUDIT_TABLE": resources.tables["audit"],
        "TOKEN_KEY_ID": resources.key_arn, "LWA_CLIENT_SECRET_ID": resources.secret_arn,
        "SELLER_KEY_SECRET_ID": secret, "APP_DRAFT": "true", "REDIRECT_URI": REDIRECT_URI,
        "DEFAULT_MARKETPLACE": "US", "STATE_TTL_SECONDS": "600", "PURGE_AFTER_DAYS": "27",
        "REAUTH_NOTICE_DAYS": "30", "ROTATE_WHEN_DAYS_LEFT": "7", "EVENT_BUS_NAME": "default",
        "DATA_BUCKET": "bench-data", "REPORT_JOBS_QUEUE_URL": jobs, "REPORT_PLANS_QUEUE_URL": plans,
        "REFRESH_WORK_QUEUE_URL": refresh,
        "LWA_REFRESH_RATE": str(lwa_bucket.lwa_refresh_rate), "LWA_REFRESH_BURST": str(lwa_bucket.lwa_refresh_burst),
        "DEFAULT_REPORT_TYPES": ",".join(CATALOG), "REPORT_NOTIFICATIONS_QUEUE_ARN": arn(notifications),
        # Two days of history for the types that have any: backfill runs behind the live windows within the
        # same quotas, which the live share then shows (a stage's years of history would be a separate run).
        "REPORT_BACKFILL_DAYS": ",".join(f"{spec.report_type}={BACKFILL_DAYS}" for spec in CATALOG.values()
                                         if spec.backfill_days),
    })
    return sqs, {"plans": plans, "jobs": jobs, "dead_letters": dead, "notifications": notifications, "refresh": refresh}


def _local_stage() -> Any:
    """The local stage's settings (cdk.json): the app-wide LWA bucket the token refresher takes from."""
    from infra.app import load_cdk_context
    from infra.config import StageConfig

    return StageConfig.from_context("local", load_cdk_context()["stages"])


def _emulator_calls(emulator: Any, loopback: bool) -> contextlib.AbstractContextManager[None]:
    """Requests to the emulator: over loopback HTTP, or answered by its WSGI app in the caller's thread."""
    from bench.inprocess_http import routed

    return contextlib.nullcontext() if loopback else routed(emulator.base_url, emulator.wsgi_app)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run(sellers: int, days: int, seed: int, *, step_minutes: float = 5.0, error_share: float = DEFAULT_ERROR_SHARE,
        loopback: bool = False, faults: Faults | None = None,
        progress: Callable[[str], None] = say) -> dict[str, Any]:
    _setup_paths()
    from aws_lambda_powertools.utilities.parameters.base import clear_caches
    from moto import mock_aws

    from bench import moto_speed
    from local.amazon import AmazonEmulator
    from local.moto_fixes import make_dynamodb_writes_atomic, make_sqs_follow_the_product_clock
    from seller_insights import clock
    from seller_insights.clock import FixedClock
    from seller_insights.containers import forget_all
    from seller_insights.report_catalog import SALES_AND_TRAFFIC

    started = time.monotonic()
    rates = template_rates()
    visibility, max_receives, _ = queue_shape()
    step = timedelta(minutes=step_minutes)
    end = START + timedelta(days=days)
    faults = faults or default_faults(START, days)
    world = make_world(sellers, seed)
    settlement_times = settlement_schedule(world, end, seed + 1)

    make_dynamodb_writes_atomic()
    make_sqs_follow_the_product_clock()
    moto_speed.install()
    one_clock = FixedClock(START)
    previous_clock = clock.get_clock()
    clock.set_clock(one_clock)
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "bench", "POWERTOOLS_TRACE_DISABLED": "true",
           "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING",
           "POWERTOOLS_METRICS_NAMESPACE": "SellerInsights"}
    try:
        with _environment(env), mock_aws(), AmazonEmulator(
                redirect_uris=[REDIRECT_URI], login_uri="https://seller-insights.example.com/login", draft=True,
                clock=one_clock) as emulator, _emulator_calls(emulator, loopback):
            os.environ.pop("AWS_ENDPOINT_URL", None)
            sqs, queues = _aws_for_the_functions(emulator, visibility, max_receives)
            jobs, dead, notifications = queues["jobs"], queues["dead_letters"], queues["notifications"]
            forget_all()
            clear_caches()  # type: ignore[no-untyped-call]

            simulation = Simulation(world, emulator=emulator, sqs=sqs, plans_queue=queues["plans"], jobs_queue=jobs,
                                    notifications_queue=notifications, refresh_queue=queues["refresh"],
                                    schedules=rates, faults=faults,
                                    settlement_times=settlement_times, error_share=error_share, error_seed=seed + 2)
            for seller in world:
                ConsentBrowser(emulator.base_url).connect(seller)
            progress(f"{len(world)} sellers consented ({simulation.verify_consents()} sent for verification) in "
                     f"{time.monotonic() - started:.0f} s; simulating {days} days in {step_minutes:g}-minute steps")
            connected_at = one_clock.now()

            with simulation.counting_planned_jobs():
                _simulate(simulation, one_clock, connected_at, end, step=step, progress=progress)

            measured = _measure(world, simulation, emulator.base_url, connected_at=connected_at, end=end,
                                sqs=sqs, jobs=jobs, dead=dead, refresh=queues["refresh"])
    finally:
        clock.set_clock(previous_clock)
        forget_all()

    return summarise(world=world, days=days, seed=seed, step_minutes=step_minutes, faults=faults,
                     error_share=error_share, counts=simulation.counts, settlements=len(simulation.settlements),
                     sales_and_traffic=SALES_AND_TRAFFIC, wall=time.monotonic() - started, **measured)


def _simulate(simulation: Simulation, one_clock: Any, now: datetime, end: datetime, *, step: timedelta,
              progress: Callable[[str], None]) -> None:
    day_started = time.monotonic()
    while now < end:
        simulation.step(now, step)
        now = one_clock.now()
        if (now - START) % timedelta(days=1) < step:
            progress(f"day {(now - START).days} simulated in {time.monotonic() - day_started:.0f} s "
                     f"(jobs planned {simulation.counts.planned_jobs}, records {simulation.counts.records})")
            day_started = time.monotonic()


def _measure(world: list[Seller], simulation: Simulation, amazon: str, *, connected_at: datetime, end: datetime,
             sqs: Any, jobs: str, dead: str, refresh: str) -> dict[str, Any]:
    import boto3
    import requests

    table = boto3.resource("dynamodb").Table(os.environ["CONNECTIONS_TABLE"])
    expected = expected_units(world, connected_at, end - GRACE, simulation.settlements,
                              simulation.faults.planning_outage)
    stored = stored_units(table, world, simulation.settlements)

    def waiting(url: str) -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesDelayed"])

    return {
        "expected": expected, "stored": stored, "hit": covered(expected, stored),
        "stats": requests.get(f"{amazon}/_emulator/stats", timeout=HTTP_TIMEOUT).json(),
        "queues": {"report_jobs": waiting(jobs), "dead_letters": waiting(dead), "token_refresh": waiting(refresh)},
        "job_statuses": Counter(str(i["status"]) for i in _scan(table) if str(i["sk"]).startswith("JOB#")),
    }


def _scan(table: Any) -> Iterator[dict[str, Any]]:
    request: dict[str, Any] = {}
    while True:
        page = table.scan(**request)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summarise(*, world: list[Seller], days: int, seed: int, step_minutes: float, faults: Faults, error_share: float,
              expected: list[Unit], hit: set[Unit], stored: list[StoredWindow], stats: dict[str, Any],
              counts: Counts, settlements: int, queues: dict[str, int], job_statuses: Counter[str],
              sales_and_traffic: str, wall: float) -> dict[str, Any]:
    home = {s.seller_id: s.home for s in world}
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for unit in expected:
        row = by_type[unit.report_type]
        row["expected"] += 1
        row["stored"] += unit in hit
        if unit.marketplace == home[unit.seller]:
            row["expected_home"] += 1
            row["stored_home"] += unit in hit
    types = {name: {"expected": c["expected"], "stored": c["stored"], "share": _share(c["stored"], c["expected"]),
                    "share_home_marketplace": _share(c["stored_home"], c["expected_home"])}
             for name, c in sorted(by_type.items())}
    st_days: dict[str, list[bool]] = defaultdict(list)
    st_home: dict[str, list[bool]] = defaultdict(list)
    for unit in expected:
        if unit.report_type == sales_and_traffic:
            st_days[unit.seller].append(unit in hit)
            if unit.marketplace == home[unit.seller]:
                st_home[unit.seller].append(unit in hit)
    seller_days = len(world) * days
    lwa_calls = sum(stats.get("lwa", {}).values())
    spapi_calls = sum(stats.get("spapi", {}).values())
    missing = [u for u in expected if u not in hit]
    fmt = "%Y-%m-%dT%H:%MZ"
    return {
        "sellers": len(world),
        "sellers_by_region": dict(Counter(s.region for s in world)),
        "marketplaces_per_seller": round(sum(len(s.marketplaces) for s in world) / len(world), 2),
        "days": days,
        "seed": seed,
        "step_minutes": step_minutes,
        "faults": {
            "planning_outage": [t.strftime(fmt) for t in faults.planning_outage] if faults.planning_outage else None,
            "amazon_5xx_on_reports_operations": [t.strftime(fmt) for t in faults.amazon_5xx]
            if faults.amazon_5xx else None,
            "share_of_reports_calls_answering_503": error_share,
        },
        "expected_units": len(expected),
        "stored_units": len(hit),
        "share_stored": _share(len(hit), len(expected)),
        "share_stored_home_marketplace": _share(
            sum(1 for u in hit if u.marketplace == home[u.seller]),
            sum(1 for u in expected if u.marketplace == home[u.seller])),
        "by_report_type": types,
        "sales_and_traffic_every_day": {
            "sellers": len(world),
            "every_marketplace": sum(1 for days_ in st_days.values() if days_ and all(days_)),
            "home_marketplace": sum(1 for days_ in st_home.values() if days_ and all(days_)),
        },
        "throttled_calls": stats.get("throttled"),
        "throttled_by_operation": stats.get("throttled_by_operation"),
        "lwa_calls": stats.get("lwa"),
        "lwa_calls_per_seller_day": round(lwa_calls / seller_days, 3),
        "spapi_calls": stats.get("spapi"),
        "spapi_calls_per_seller_day": round(spapi_calls / seller_days, 2),
        "settlement_reports_created": settlements,
        "stored_rows": len(stored),
        "job_statuses_at_end": dict(job_statuses),
        "messages_left": queues,
        "fetcher_deliveries": counts.deliveries,
        "fetcher_records": counts.records,
        "fetcher_failed_records": counts.failed_records,
        "refresher_deliveries": counts.refresh_deliveries,
        "refresher_failed_records": counts.refresh_failed_records,
        "schedule_runs": dict(counts.schedule_runs),
        "jobs_planned": counts.planned_jobs,
        "jobs_woken": counts.woken_jobs,
        "missing_examples": [
            {"seller": u.seller, "marketplace": u.marketplace, "report_type": u.report_type,
             "start": datetime.fromtimestamp(u.start, UTC).strftime(fmt)}
            for u in _spread(missing, 12)],
        "wall_seconds": round(wall, 1),
    }


def _spread(units: list[Unit], count: int) -> list[Unit]:
    """A few missing units of different types, for a first look at where the gaps are."""
    by_type: dict[str, list[Unit]] = defaultdict(list)
    for unit in units:
        by_type[unit.report_type].append(unit)
    picked: list[Unit] = []
    while len(picked) < count and any(by_type.values()):
        for name in list(by_type):
            if by_type[name]:
                picked.append(by_type[name].pop(len(by_type[name]) // 2))
    return picked[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sellers", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--step-minutes", type=float, default=5.0)
    parser.add_argument("--error-share", type=float, default=DEFAULT_ERROR_SHARE,
                        help="share of Reports API calls answering 503 during the 5xx day (1 = every call)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--loopback", action="store_true",
                        help="call the emulator over loopback HTTP instead of its WSGI app in this thread (slower)")
    args = parser.parse_args(argv)
    if args.sellers < 1 or args.days < 1 or not 1 <= args.step_minutes <= 15 or not 0 <= args.error_share <= 1:
        parser.error("--sellers and --days must be at least 1, --step-minutes from 1 to 15, --error-share 0 to 1")
    _setup_paths()
    from bench import measured_on

    # Stdout is for the one JSON line; the product's log lines and metrics go to a file.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    PRODUCT_LOG.parent.mkdir(parents=True, exist_ok=True)
    log = PRODUCT_LOG.open("w", buffering=1)  # open until the process ends: fd 1 and sys.stdout write here
    os.dup2(log.fileno(), 1)
    sys.stdout = log
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    for name in ("werkzeug", "botocore", "boto3", "urllib3", "moto", "jsii"):
        logging.getLogger(name).setLevel(logging.WARNING)
    result = run(args.sellers, args.days, args.seed, step_minutes=args.step_minutes, error_share=args.error_share,
                 loopback=args.loopback)
    executable = Path(sys.executable)
    python = str(executable.relative_to(REPO)) if executable.is_relative_to(REPO) else "python"
    result.update(measured_on())
    result["command"] = shlex.join([python, "-m", "bench.completeness", *(sys.argv[1:] if argv is None else argv)])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
