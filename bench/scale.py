"""Capacity at scale: the template's functions, queues and schedules for 1,000 and 10,000 connections.

Usage: python -m bench.scale [--sizes 1000,10000] [--seed 11] [--step-minutes 1]
                             [--output bench/results/scale.json] [--write-docs]

Template-driven. Everything the run plays comes from the synthesized `local` template (local/template.py),
so queues, functions and schedules added to the template are measured without changing this file:
- AWS is moto in-process; every stateful resource of the template (tables, keys, secrets, buckets, every
  queue with its redrive policy) is created by local/aws.py `create_resources`, as the local stack does;
  the functions' environment is the template's (local/functions.py `merged_environment`).
- every schedule (local/scheduler.py) fires at its rate, phased on the epoch (a daily schedule at 00:00 UTC);
  a rate shorter than the step fires once per step;
- every SQS event source mapping (local/poller.py) delivers its queue to the function it names, in
  batches of its BatchSize, after the schedules of each step, until the visible messages are gone;
- Amazon is the emulator (local/amazon) with its fast report timings, answering in the caller's thread
  (bench/inprocess_http.py). One virtual clock for the product, moto's SQS delays and the emulator.

World: N connections seeded as a verified consent leaves them (no browser, no consent verification):
the emulator issues each seller a refresh token; the product's Vault seals it; the product's
CandidateRepository stores the candidate and promotes it (the CONN# item, in the refresh and
re-authorization indexes, and the PLAN# item with the stage's default report types). One marketplace
each (the home marketplace, also what getMarketplaceParticipations answers for the seller), regions
seeded 40% NA, 40% EU, 20% FE. No history backfill beyond the `local` stage's keys.

Counting (only what the functions, the event source mappings and Amazon's notifications cause; setup and
measurement are not counted): every botocore call by service and operation (KMS included; SQS messages
sent = entries of SendMessage and SendMessageBatch), DynamoDB read and write calls and items, Lambda
invocations per function, records per function, LWA and SP-API calls (requests reaching the emulator).
An event source mapping's poll counts one ReceiveMessage per batch delivered (empty polls are not
counted: in AWS they do not depend on the load).

Normalization to a connection-day (both sizes, the same method): each count is attributed to the schedule
firing whose cascade caused it. A firing's own invocation is its cascade's start; every message sent
inside a cascade carries the cascade on (by message id); a batch's invocation is shared among the
cascades of its records, by record count; Amazon's report notifications follow the cascade that created
the report (by report id). Firings are counted in the measured window only (after a warm-up that
absorbs the start, with a tail that lets the window's cascades finish): per schedule and firing class
(`day`: the first firing of a UTC day, `hour`: the first of an hour, `other`), the cost of a firing is the
cascade cost over the class's firings, times the class's firings per day. The 1,000 run measures one
whole day, so it also gives the direct figure (counts that happened in the window divided by
connections x days); both are printed, so the method is checked. The 10,000 run's window contains a
firing of every class of every schedule (00:00 and 01:00 UTC).

Output: bench/results/scale.json, one JSON line on stdout, progress on stderr. `--write-docs` rewrites the
generated section of docs/capacity.md from the results file (no run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import shlex
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.completeness import REGION_WEIGHTS, _environment, _setup_paths

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "scale.json"
PRODUCT_LOG = REPO / "build" / "bench" / "scale" / "product.log"
DAY = 86_400
HOUR = 3_600
REDIRECT_URI = "https://seller-insights.example.com/callback"
HTTP_TIMEOUT = 10
LWA_PATH = "/auth/o2/token"
DYNAMODB_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
# Causes that are not a schedule's cascade.
UNATTRIBUTED = "unattributed"


def say(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


# --- the simulated period -------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """warm-up (not measured), window (measured firings), tail (the window's cascades finish)."""

    start: datetime
    warmup: timedelta
    window: timedelta
    tail: timedelta

    @property
    def window_start(self) -> datetime:
        return self.start + self.warmup

    @property
    def window_end(self) -> datetime:
        return self.window_start + self.window

    @property
    def end(self) -> datetime:
        return self.window_end + self.tail


# The 1,000 run: one whole day. The 10,000 run: 23:45 to 01:15 UTC, with the day's first firing of every
# schedule (00:00, daily ones included) and an hour's first (01:00), and the quarter-hours between.
DAY_PERIOD = Period(datetime(2026, 11, 30, 23, 30, tzinfo=UTC), timedelta(minutes=15), timedelta(days=1),
                    timedelta(minutes=30))
SHORT_PERIOD = Period(datetime(2026, 11, 30, 23, 30, tzinfo=UTC), timedelta(minutes=15),
                      timedelta(hours=1, minutes=30), timedelta(minutes=30))


def parse_rate(expression: str) -> int:
    """`rate(5 minutes)` in seconds; other expressions are not played here."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not match:
        raise ValueError(f"bench.scale plays rate() schedules only, not {expression!r}")
    unit = {"minute": 60, "hour": HOUR, "day": DAY}[match.group(2).rstrip("s")]
    return int(match.group(1)) * unit


def firing_class(epoch: int, rate: int) -> str:
    """`day`: the schedule's first firing of a UTC day; `hour`: of an hour; else `other`."""
    if rate >= DAY or epoch % DAY < rate:
        return "day"
    if rate >= HOUR or epoch % HOUR < rate:
        return "hour"
    return "other"


def firings_per_day(rate: int) -> dict[str, float]:
    """How many firings of each class a schedule of `rate` seconds (phased on the epoch) has a day."""
    if rate >= DAY:
        return {"day": DAY / rate}
    if rate >= HOUR:
        return {"day": 1.0, "hour": DAY / rate - 1}
    return {"day": 1.0, "hour": 23.0, "other": DAY / rate - 24}


# --- counting, with the cascade each count belongs to ------------------------------------------------

Cause = tuple[str, str, int]  # (schedule, firing class, firing epoch); UNATTRIBUTED: ("unattributed", "", 0)
Share = dict[Cause, float]  # the causes of what runs now, summing to 1
NO_CAUSE: Cause = (UNATTRIBUTED, "", 0)
Counts = defaultdict[str, float]  # metric -> count (shares of a batch make fractions)


def counts() -> Counts:
    return defaultdict(float)


def added(parts: Iterator[Counts] | list[Counts]) -> Counts:
    total = counts()
    for part in parts:
        for metric, value in part.items():
            total[metric] += value
    return total


class Recorder:
    """Counts by cause and by the step they happened in. `share` is what is running now (None: the
    harness itself, not counted)."""

    def __init__(self) -> None:
        self.share: Share | None = None
        self.by_cause: dict[Cause, Counts] = defaultdict(counts)
        self.by_step: dict[int, Counts] = defaultdict(counts)
        self.step_epoch = 0
        self.message_cause: dict[str, Share] = {}
        self.report_cause: dict[str, Share] = {}
        self.counting = False  # the emulator's own sends (notifications) count while the run is on
        self._lock = threading.Lock()

    def add(self, metric: str, amount: float = 1.0, share: Share | None = None) -> None:
        share = share if share is not None else self.share
        if share is None:
            return
        with self._lock:
            for cause, weight in share.items():
                self.by_cause[cause][metric] += amount * weight
            self.by_step[self.step_epoch][metric] += amount

    @contextlib.contextmanager
    def running(self, share: Share) -> Iterator[None]:
        previous, self.share = self.share, share
        try:
            yield
        finally:
            self.share = previous

    def share_of_records(self, message_ids: list[str]) -> Share:
        total: dict[Cause, float] = defaultdict(float)
        for message_id in message_ids:
            for cause, weight in self.message_cause.pop(message_id, {NO_CAUSE: 1.0}).items():
                total[cause] += weight / len(message_ids)
        return dict(total)


RECORDER = Recorder()
_REPORT_ID = re.compile(r'"(?:reportId|queryId)"\s*:\s*"([^"]+)"')


def _aws_call(original: Callable[..., Any]) -> Callable[..., Any]:
    def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
        service = client.meta.service_model.service_name
        share = RECORDER.share
        if share is None and RECORDER.counting and service == "sqs" and operation.startswith("SendMessage"):
            share = _amazon_send_share(params)  # the emulator's notification (its own boto3 client)
        result = original(client, operation, params)
        if share is not None:
            _count_aws(service, operation, params, result, share)
        return result

    return counted


def _amazon_send_share(params: dict[str, Any]) -> Share:
    bodies = [params.get("MessageBody", "")] + [e.get("MessageBody", "") for e in params.get("Entries", [])]
    for body in bodies:
        match = _REPORT_ID.search(str(body))
        if match and match.group(1) in RECORDER.report_cause:
            return RECORDER.report_cause[match.group(1)]
    return {NO_CAUSE: 1.0}


def _count_aws(service: str, operation: str, params: dict[str, Any], result: Any, share: Share) -> None:
    add = RECORDER.add
    add(f"aws.{service}", share=share)
    add(f"aws_op.{service}.{operation}", share=share)
    if service == "sqs" and operation in ("SendMessage", "SendMessageBatch"):
        queue = _queue_name(params.get("QueueUrl", ""))
        sent = [result.get("MessageId")] if operation == "SendMessage" else [
            entry["MessageId"] for entry in result.get("Successful", [])]
        add("sqs.sent", len(sent), share)
        add(f"sqs.sent.{queue}", len(sent), share)
        for message_id in sent:
            RECORDER.message_cause[str(message_id)] = share
    elif service == "dynamodb":
        _count_dynamodb(operation, params, result, share)


def _count_dynamodb(operation: str, params: dict[str, Any], result: Any, share: Share) -> None:
    add = RECORDER.add
    if operation in DYNAMODB_READS:
        add("dynamodb.read_calls", share=share)
        if operation in ("Query", "Scan"):
            items = int(result.get("ScannedCount", result.get("Count", 0)))
        elif operation == "GetItem":
            items = 1
        elif operation == "BatchGetItem":
            items = sum(len(v.get("Keys", [])) for v in params.get("RequestItems", {}).values())
        else:
            items = len(params.get("TransactItems", []))
        add("dynamodb.items_read", items, share)
    elif operation in DYNAMODB_WRITES:
        add("dynamodb.write_calls", share=share)
        if operation == "BatchWriteItem":
            items = sum(len(v) for v in params.get("RequestItems", {}).values())
        elif operation == "TransactWriteItems":
            items = sum(1 for a in params.get("TransactItems", []) if "ConditionCheck" not in a)
        else:
            items = 1
        add("dynamodb.items_written", items, share)


def _queue_name(url: str) -> str:
    return QUEUE_PURPOSES.get(url, url.rsplit("/", 1)[-1])


QUEUE_PURPOSES: dict[str, str] = {}  # queue url -> purpose tag, filled once the queues exist


@contextlib.contextmanager
def counting_aws_calls() -> Iterator[None]:
    from botocore.client import BaseClient

    original = BaseClient._make_api_call  # type: ignore[attr-defined]
    BaseClient._make_api_call = _aws_call(original)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        BaseClient._make_api_call = original  # type: ignore[attr-defined]


class CountingAmazon:
    """The emulator's WSGI app, counting LWA and SP-API requests by cause and noting which cascade
    created each report (for the notification Amazon sends when it is done)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        share = RECORDER.share
        if share is None or path.startswith("/_emulator"):
            return self.app(environ, start_response)
        lwa = path.endswith(LWA_PATH)
        RECORDER.add("amazon.lwa" if lwa else "amazon.spapi")
        if lwa:
            return self.app(environ, start_response)
        body = b"".join(self.app(environ, start_response))
        if environ.get("REQUEST_METHOD") == "POST":
            match = _REPORT_ID.search(body[:2000].decode("utf-8", "replace"))
            if match:
                RECORDER.report_cause[match.group(1)] = share
        return [body]


# --- the functions and their event sources --------------------------------------------------------


def _runtime_classes() -> tuple[type, type]:
    from local.functions import FunctionRuntime
    from local.poller import QueuePoller

    class CountingRuntime(FunctionRuntime):
        def invoke(self, logical_id: str, event: Any) -> Any:
            name = FUNCTION_NAMES.get(logical_id, logical_id)
            RECORDER.add(f"lambda.{name}")
            RECORDER.add("lambda.invocations")
            records = event.get("Records") if isinstance(event, dict) else None
            if records:
                RECORDER.add(f"records.{name}", len(records))
            return super().invoke(logical_id, event)

    class AttributingPoller(QueuePoller):
        def _deliver(self, mapping: Any, batch: list[dict[str, Any]]) -> tuple[int, int]:
            share = RECORDER.share_of_records([m["MessageId"] for m in batch])
            with RECORDER.running(share):
                RECORDER.add("aws.sqs")  # the mapping's poll that found the batch
                RECORDER.add("aws_op.sqs.ReceiveMessage")
                result: tuple[int, int] = super()._deliver(mapping, batch)
            # A failed message comes back to a later batch: it keeps its cascade.
            return result

    return CountingRuntime, AttributingPoller


FUNCTION_NAMES: dict[str, str] = {}  # logical id -> the handler's package (report_fetcher, ...)


@dataclass
class Fired:
    firings: Counter[tuple[str, str]] = field(default_factory=Counter)  # (schedule, class) in the window


class Harness:
    def __init__(self, template: dict[str, Any], emulator: Any, clock: Any, step: timedelta) -> None:
        from local.aws import create_resources
        from local.functions import function_specs, merged_environment
        from local.poller import mappings
        from local.scheduler import schedules
        from local.stack import register_notification_queue, register_report_notification_queue

        self.emulator = emulator
        self.clock = clock
        self.step = step
        created = create_resources(template, emulator.credentials(), "https://bench.invalid")
        register_notification_queue(emulator, created, "")
        register_report_notification_queue(emulator, created, "")
        self.queues = dict(created.queues)
        QUEUE_PURPOSES.update({url: purpose for purpose, url in self.queues.items()})
        specs = function_specs(template, created.resolver)
        FUNCTION_NAMES.update({lid: spec.handler.split(".", 1)[0] for lid, spec in specs.items()})
        os.environ.update(merged_environment(specs, {
            "STAGE": "local", "AMAZON_ENDPOINT_OVERRIDE": emulator.base_url, "REDIRECT_URI": REDIRECT_URI,
            "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true", "LOG_LEVEL": "WARNING",
            "POWERTOOLS_LOG_LEVEL": "WARNING"}))
        runtime_class, poller_class = _runtime_classes()
        self.runtime = runtime_class(specs, None)
        self.mappings = mappings(template, created)
        self.poller = poller_class(self.mappings, self.runtime, self.queues, clock.now)
        self.schedules = schedules(template)
        self.rates = {name: parse_rate(s.expression) for name, s in self.schedules.items()}
        self.specs = specs
        self.queue_urls = created.queue_urls
        self.fired = Fired()
        self._sqs: Any = None

    def fire_due(self, now: datetime, period: Period) -> None:
        epoch = int(now.timestamp())
        step = int(self.step.total_seconds())
        for name, schedule in self.schedules.items():
            rate = self.rates[name]
            # Phased on the epoch: fires in the step that contains a multiple of its rate.
            if (epoch - 1) // rate == (epoch + step - 1) // rate and epoch % rate:
                continue
            kind = firing_class(epoch, max(rate, step))
            cause: Cause = (name, kind, epoch)
            if period.window_start <= now < period.window_end:
                self.fired.firings[(name, kind)] += 1
            with RECORDER.running({cause: 1.0}):
                for target in schedule.targets:
                    event = schedule.event(now, target)
                    if target.logical_id in self.specs:
                        self.runtime.invoke(target.logical_id, event)
                    else:
                        self.sqs().send_message(QueueUrl=self.queue_urls[target.logical_id],
                                                MessageBody=json.dumps(event))

    def sqs(self) -> Any:
        import boto3

        if self._sqs is None:
            self._sqs = boto3.client("sqs")
        return self._sqs

    def backlog(self) -> dict[str, int]:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        found = {}
        for purpose, url in sorted(self.queues.items()):
            attributes = self.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            found[purpose] = sum(int(attributes.get(n, 0)) for n in names)
        return found


# --- the world ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    seller_id: str
    region: str
    marketplace: str  # code, e.g. "DE"


def make_connections(count: int, seed: int) -> list[Connection]:
    """Seeded: each connection's region drawn by REGION_WEIGHTS, then one marketplace of the region."""
    from local.amazon.marketplaces import PARTICIPATIONS, Region

    rng = random.Random(seed)
    regions = [name for name, _ in REGION_WEIGHTS]
    found = []
    for number in range(count):
        region = rng.choices(regions, weights=[w for _, w in REGION_WEIGHTS])[0]
        seller_id = "A" + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=12)) + f"{number % 10}"
        found.append(Connection(seller_id, region, rng.choice(PARTICIPATIONS[Region(region)])))
    return found


def seed_connections(connections: list[Connection], emulator: Any, seed: int) -> None:
    """What a verified consent leaves, written by the product's own repositories and Vault. A fleet's
    access tokens expire at any moment of the hour, not all at once: each connection's first refresh is
    due at a seeded moment of the first hour (the product's `schedule_refresh`), so that refresh work is
    spread as in a fleet that has run for a while."""
    import boto3

    from local.amazon.marketplaces import Region
    from local.amazon.participations import Participation
    from seller_insights.candidates import Candidate, CandidateRepository, new_candidate_id
    from seller_insights.clock import epoch_seconds, now
    from seller_insights.marketplaces import MARKETPLACES
    from seller_insights.repositories import ConnectionsRepository
    from seller_insights.vault import Purpose, SecretContext, Vault

    rng = random.Random(seed)
    table = boto3.resource("dynamodb").Table(os.environ["CONNECTIONS_TABLE"])
    candidates = CandidateRepository(table)
    repository = ConnectionsRepository(table)
    vault = Vault(boto3.client("kms"), os.environ["TOKEN_KEY_ID"])
    state = emulator.state
    for connection in connections:
        region = Region(connection.region)
        state.participations.set(connection.seller_id, region, (Participation(connection.marketplace),))
        code = state.issue_code(connection.seller_id, region, REDIRECT_URI)
        refresh_token = state.redeem_code(code, emulator.client_id, REDIRECT_URI).refresh_token
        at = epoch_seconds()
        candidate = Candidate(
            seller_id=connection.seller_id, region=connection.region, candidate_id=new_candidate_id(),
            sealed=vault.seal(refresh_token, SecretContext(Purpose.REFRESH_TOKEN, connection.seller_id,
                                                           connection.region)),
            created_at=at, verify_by=at + 6 * HOUR, flow="website", marketplace=connection.marketplace,
            verify_due_at=at)
        candidates.create(candidate)
        candidates.promote(candidate, candidate.sealed, now=now(),
                           marketplace_ids=[MARKETPLACES[connection.marketplace].marketplace_id])
        repository.schedule_refresh(connection.seller_id, connection.region, at + rng.randrange(HOUR))


# --- the run --------------------------------------------------------------------------------------


def run(connections: int, seed: int, *, period: Period | None = None, step_minutes: float = 5.0,
        progress: Callable[[str], None] = say) -> dict[str, Any]:
    _setup_paths()
    from aws_lambda_powertools.utilities.parameters.base import clear_caches
    from moto import mock_aws

    from bench import moto_speed
    from bench.inprocess_http import routed
    from local.amazon import AmazonEmulator
    from local.moto_fixes import make_dynamodb_writes_atomic, make_sqs_follow_the_product_clock
    from local.template import load_template
    from seller_insights import clock
    from seller_insights.clock import FixedClock
    from seller_insights.containers import forget_all

    period = period or DAY_PERIOD
    step = timedelta(minutes=step_minutes)
    started, cpu_started = time.monotonic(), time.process_time()
    template = load_template(REPO)
    make_dynamodb_writes_atomic()
    make_sqs_follow_the_product_clock()
    moto_speed.install()
    one_clock = FixedClock(period.start)
    previous_clock = clock.get_clock()
    clock.set_clock(one_clock)
    RECORDER.__init__()  # type: ignore[misc]
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "bench"}
    world = make_connections(connections, seed)
    seconds: Counts = counts()
    try:
        with _environment(env), mock_aws(), AmazonEmulator(
                redirect_uris=[REDIRECT_URI], login_uri="https://seller-insights.example.com/login", draft=True,
                clock=one_clock) as emulator, routed(emulator.base_url, CountingAmazon(emulator.wsgi_app)), \
                counting_aws_calls():
            os.environ.pop("AWS_ENDPOINT_URL", None)
            harness = Harness(template, emulator, one_clock, step)
            forget_all()
            clear_caches()  # type: ignore[no-untyped-call]
            seed_connections(world, emulator, seed + 1)
            seconds["seed"] = time.monotonic() - started
            progress(f"{connections} connections seeded in {seconds['seed']:.0f} s; simulating "
                     f"{period.start:%H:%M} + {_hours(period.end - period.start)} h in {step_minutes:g}-minute steps")
            backlog_by_hour = simulate(harness, period, seconds, progress)
            backlog_end = harness.backlog()
            rates = dict(harness.rates)
            firings = dict(harness.fired.firings)
            mapping_shapes = [{"queue": m.queue, "function": FUNCTION_NAMES.get(m.function_id, m.function_id),
                               "batch_size": m.batch_size} for m in harness.mappings]
    finally:
        clock.set_clock(previous_clock)
        forget_all()
    wall = time.monotonic() - started
    seconds["cpu"] = time.process_time() - cpu_started
    return summarise(connections=connections, world=world, period=period, step=step, rates=rates, firings=firings,
                     backlog_by_hour=backlog_by_hour, backlog_end=backlog_end, mappings=mapping_shapes,
                     wall=wall, seconds=seconds)


def simulate(harness: Harness, period: Period, seconds: Counts,
             progress: Callable[[str], None]) -> dict[str, dict[str, int]]:
    """Step by step: the due schedules fire, the mappings drain their queues, the clock moves on.
    Returns every queue's backlog at each full hour."""
    backlog_by_hour: dict[str, dict[str, int]] = {}
    RECORDER.counting = True
    now = period.start
    hour_started = time.monotonic()
    while now < period.end:
        RECORDER.step_epoch = int(now.timestamp())
        tick = time.monotonic()
        harness.fire_due(now, period)
        seconds["schedules"] += time.monotonic() - tick
        tick = time.monotonic()
        harness.poller.drain(max_seconds=3600)
        seconds["queues"] += time.monotonic() - tick
        harness.emulator.advance_clock(harness.step.total_seconds())
        now = harness.clock.now()
        if int(now.timestamp()) % HOUR == 0:
            RECORDER.counting = False
            backlog_by_hour[now.strftime("%Y-%m-%dT%H:%MZ")] = harness.backlog()
            RECORDER.counting = True
            progress(f"{now:%d %H:%M} simulated; the hour took {time.monotonic() - hour_started:.0f} s")
            hour_started = time.monotonic()
    RECORDER.counting = False
    return backlog_by_hour


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / HOUR:g}"


# --- the figures ----------------------------------------------------------------------------------


def per_connection_day(by_cause: dict[Cause, Counts], firings: dict[tuple[str, str], int],
                       rates: dict[str, int], *, step: int, connections: int,
                       window: tuple[int, int]) -> tuple[dict[str, float], list[str]]:
    """Each schedule's cost per firing of a class, times the class's firings a day, over connections.
    Also the classes that should fire daily but had no firing in the window (then the figure misses them)."""
    totals = counts()
    missing = []
    for name, rate in rates.items():
        for kind, per_day in firings_per_day(max(rate, step)).items():
            count = firings.get((name, kind), 0)
            if not count:
                if per_day >= 1:
                    missing.append(f"{name}/{kind}")
                continue
            for (cause_name, cause_kind, epoch), caused in by_cause.items():
                if cause_name == name and cause_kind == kind and window[0] <= epoch < window[1]:
                    for metric, value in caused.items():
                        totals[metric] += value * per_day / count
    return {k: v / connections for k, v in totals.items()}, missing


def direct_per_connection_day(by_step: dict[int, Counts], window: tuple[int, int],
                              connections: int) -> dict[str, float]:
    totals = added([c for epoch, c in by_step.items() if window[0] <= epoch < window[1]])
    days = (window[1] - window[0]) / DAY
    return {k: v / connections / days for k, v in totals.items()}


def in_interval_per_connection(by_step: dict[int, Counts], interval: tuple[int, int],
                               connections: int) -> dict[str, float]:
    totals = added([c for epoch, c in by_step.items() if interval[0] <= epoch < interval[1]])
    return {k: v / connections for k, v in totals.items()}


HEADLINE = ("aws.calls", "amazon.lwa", "amazon.spapi", "aws.kms", "sqs.sent", "lambda.invocations",
            "dynamodb.read_calls", "dynamodb.write_calls", "dynamodb.items_read", "dynamodb.items_written")


def _with_total(figures: dict[str, float]) -> dict[str, float]:
    figures = dict(figures)
    figures["aws.calls"] = sum(v for k, v in figures.items() if k.startswith("aws.") and k.count(".") == 1)
    return figures


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in sorted(figures.items())}


def summarise(*, connections: int, world: list[Connection], period: Period, step: timedelta, rates: dict[str, int],
              firings: dict[tuple[str, str], int], backlog_by_hour: dict[str, dict[str, int]],
              backlog_end: dict[str, int], mappings: list[dict[str, Any]], wall: float,
              seconds: Counts) -> dict[str, Any]:
    window = (int(period.window_start.timestamp()), int(period.window_end.timestamp()))
    attributed, missing = per_connection_day(RECORDER.by_cause, firings, rates, step=int(step.total_seconds()),
                                             connections=connections, window=window)
    attributed = _with_total(attributed)
    unattributed = added([c for (name, _, _), c in RECORDER.by_cause.items() if name == UNATTRIBUTED])
    short = (int(SHORT_PERIOD.window_start.timestamp()), int(SHORT_PERIOD.window_end.timestamp()))
    result: dict[str, Any] = {
        "connections": connections,
        "marketplaces_per_connection": 1,
        "connections_by_region": dict(Counter(c.region for c in world)),
        "period": {"start": period.start.isoformat(), "warmup_minutes": period.warmup.total_seconds() / 60,
                   "window_hours": period.window.total_seconds() / HOUR,
                   "tail_minutes": period.tail.total_seconds() / 60},
        "step_minutes": step.total_seconds() / 60,
        "schedules": {name: f"{rate} s" for name, rate in sorted(rates.items())},
        "event_source_mappings": mappings,
        "firings_in_window": {f"{n}/{k}": c for (n, k), c in sorted(firings.items())},
        "classes_without_a_firing": missing,
        "per_connection_day": _rounded(attributed),
        "headline_per_connection_day": {k: round(attributed.get(k, 0.0), 4) for k in HEADLINE},
        # The same interval at both sizes (23:45 to 01:15 UTC), counts as they happened, per connection.
        "short_window_per_connection": _rounded(_with_total(
            in_interval_per_connection(RECORDER.by_step, short, connections))),
        "unattributed_counts": dict(sorted(unattributed.items())),
        "backlog_by_hour": backlog_by_hour,
        "backlog_at_end": backlog_end,
        "wall_seconds": round(wall, 1),
        # The machine is shared: CPU seconds of this process say what the run costs on an idle core.
        "cpu_seconds": round(seconds["cpu"], 1),
        "wall_seconds_by_part": {k: round(v, 1) for k, v in seconds.items() if k != "cpu"},
    }
    records = sum(v for k, v in _all_counts().items() if k.startswith("records."))
    result["records_delivered"] = {k.removeprefix("records."): int(v) for k, v in sorted(_all_counts().items())
                                   if k.startswith("records.")}
    simulated = seconds["schedules"] + seconds["queues"]
    result["job_steps_per_wall_second"] = round(records / simulated, 1) if simulated else None
    busiest = max((sum(v for k, v in c.items() if k.startswith("records.")) for c in RECORDER.by_step.values()),
                  default=0)
    result["peak_records_per_simulated_second"] = round(busiest / step.total_seconds(), 2)
    if period.window >= timedelta(days=1):
        direct = _with_total(direct_per_connection_day(RECORDER.by_step, window, connections))
        result["direct_per_connection_day"] = _rounded(direct)
        result["attributed_vs_direct"] = {k: _ratio(attributed.get(k, 0.0), direct.get(k, 0.0)) for k in HEADLINE}
    return result


def _all_counts() -> Counts:
    return added(list(RECORDER.by_step.values()))


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def compare(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """Large over small, per connection-day (target: within 5%), and over the same interval."""
    day = {k: _ratio(large["per_connection_day"].get(k, 0.0), small["per_connection_day"].get(k, 0.0))
           for k in sorted(set(small["per_connection_day"]) | set(large["per_connection_day"]))}
    same = {k: _ratio(large["short_window_per_connection"].get(k, 0.0),
                      small["short_window_per_connection"].get(k, 0.0))
            for k in sorted(set(small["short_window_per_connection"]) | set(large["short_window_per_connection"]))}
    headline = {k: day.get(k) for k in HEADLINE}
    outside = {k: v for k, v in headline.items() if v is not None and abs(v - 1) > 0.05}
    return {"per_connection_day_ratio": day, "headline_ratio": headline, "same_interval_ratio": same,
            "headline_outside_5_percent": outside}


# --- docs/capacity.md ------------------------------------------------------------------------------

CAPACITY = REPO / "docs" / "capacity.md"
BEGIN = "<!-- BEGIN bench.scale figures (python -m bench.scale --write-docs) -->"
END = "<!-- END bench.scale figures -->"
FLEETS = (1_000, 10_000, 100_000)
# us-east-1 list prices (USD) as published in 2025 (DynamoDB on-demand after its November 2024 cut); not
# re-read from the pricing pages on the day of the run (this machine has no web access).
PRICES = {
    "lambda_per_million_requests": 0.20,
    "lambda_per_gb_second": 0.0000166667,
    "dynamodb_per_million_read_units": 0.125,  # on-demand read request units
    "dynamodb_per_million_write_units": 0.625,  # on-demand write request units
    "sqs_per_million_requests": 0.40,  # standard queue, after the free tier, 64 KiB chunks
    "kms_per_10000_requests": 0.03,
    "kms_per_key_month": 1.00,
    "secrets_manager_per_secret_month": 0.40,
    "secrets_manager_per_10000_calls": 0.05,
    "s3_per_1000_put": 0.005,
    "s3_per_1000_get": 0.0004,
}
DAYS_PER_MONTH = 30


def monthly_costs(figures: dict[str, float], connections: int, gb_seconds_per_invocation: float,
                  scheduled_per_day: float = 0.0) -> dict[str, float]:
    """USD a month for `connections`, from per-connection-day figures (request-priced services only);
    `scheduled_per_day`: the schedules' own invocations, the same for any fleet."""
    def month(metric: str) -> float:
        return figures.get(metric, 0.0) * connections * DAYS_PER_MONTH

    invocations = month("lambda.invocations") + scheduled_per_day * DAYS_PER_MONTH
    sqs_requests = month("aws.sqs")
    s3_puts = sum(month(k) for k in figures if k.startswith("aws_op.s3.") and ("Put" in k or "Upload" in k))
    s3_gets = sum(month(k) for k in figures if k.startswith("aws_op.s3.") and ("Get" in k or "Head" in k))
    return {
        "lambda": round(invocations / 1e6 * PRICES["lambda_per_million_requests"]
                        + invocations * gb_seconds_per_invocation * PRICES["lambda_per_gb_second"], 2),
        "dynamodb": round(month("dynamodb.items_read") / 1e6 * PRICES["dynamodb_per_million_read_units"]
                          + month("dynamodb.items_written") / 1e6 * PRICES["dynamodb_per_million_write_units"], 2),
        "sqs": round(sqs_requests / 1e6 * PRICES["sqs_per_million_requests"], 2),
        "kms": round(month("aws.kms") / 1e4 * PRICES["kms_per_10000_requests"], 2),
        "secrets_manager": round(month("aws.secretsmanager") / 1e4 * PRICES["secrets_manager_per_10000_calls"], 2),
        "s3_requests": round(s3_puts / 1e3 * PRICES["s3_per_1000_put"] + s3_gets / 1e3 * PRICES["s3_per_1000_get"],
                             2),
    }


def fleet_figures(result: dict[str, Any]) -> tuple[int, dict[str, float], float]:
    """What the capacity tables multiply out: the largest whole-day run's direct per-connection-day
    figures (counted over a real day: nothing extrapolated from a shorter window), else the largest
    run's. The schedules' own invocations (one per firing, whatever the fleet) are taken out of the
    per-connection invocations and given back as a daily constant at the template's rates."""
    sizes = result["sizes"]
    whole = [int(k) for k, r in sizes.items() if "direct_per_connection_day" in r]
    size = max(whole) if whole else max(int(k) for k in sizes)
    run = sizes[str(size)]
    figures = dict(run.get("direct_per_connection_day") or run["per_connection_day"])
    window_days = float(run.get("period", {}).get("window_hours", 24)) / 24
    fired_per_day = sum(run.get("firings_in_window", {}).values()) / window_days
    figures["lambda.invocations"] = figures.get("lambda.invocations", 0.0) - fired_per_day / size
    scheduled = sum(DAY / int(str(rate).split()[0]) for rate in run.get("schedules", {}).values())
    return size, figures, scheduled


# Assumed mean billed duration x memory of an invocation (the report fetcher's 1,024 MB for 1 s): the
# bench does not measure Lambda duration (in-process, no cold starts); stated in the document.
GB_SECONDS_PER_INVOCATION = 1.0


def capacity_tables(result: dict[str, Any]) -> str:
    size, figures, scheduled = fleet_figures(result)
    rows = [("DynamoDB read calls", "dynamodb.read_calls"),
            ("DynamoDB items read (~read units)", "dynamodb.items_read"),
            ("DynamoDB write calls", "dynamodb.write_calls"),
            ("DynamoDB items written (~write units)", "dynamodb.items_written"), ("SQS messages sent", "sqs.sent"),
            ("SQS requests", "aws.sqs"), ("KMS calls", "aws.kms"), ("LWA calls", "amazon.lwa"),
            ("SP-API calls", "amazon.spapi"), ("AWS calls (all services)", "aws.calls")]
    rows += [(f"SQS records (job steps) to {k.removeprefix('records.')}", k)
             for k in sorted(figures) if k.startswith("records.")]
    lines = [f"Measured per connection-day (`{result.get('command', 'python -m bench.scale')}`, "
             f"{result.get('measured_at', '?')}): the {size:,}-connection whole-day run's counts; the "
             "comparison with the other sizes is in bench/results/scale.json `comparison` and bench/README.md.", "",
             "| per day | per connection | " + " | ".join(f"{n:,} connections" for n in FLEETS) + " |",
             "|---|---:|" + "---:|" * len(FLEETS)]
    invocations = figures["lambda.invocations"]
    lines.append(f"| Lambda invocations ({scheduled:,.0f} scheduled a day, any fleet, plus) | {invocations:,.2f} | "
                 + " | ".join(f"{invocations * n + scheduled:,.0f}" for n in FLEETS) + " |")
    for label, metric in rows:
        value = figures.get(metric, 0.0)
        lines.append(f"| {label} | {value:,.2f} | " + " | ".join(f"{value * n:,.0f}" for n in FLEETS) + " |")
    lines += ["", "Monthly cost of the request-priced services, USD (30 days; prices below):", "",
              "| service | " + " | ".join(f"{n:,} connections" for n in FLEETS) + " |",
              "|---|" + "---:|" * len(FLEETS)]
    costs = {n: monthly_costs(figures, n, GB_SECONDS_PER_INVOCATION, scheduled) for n in FLEETS}
    for service in costs[FLEETS[0]]:
        lines.append(f"| {service} | " + " | ".join(f"{costs[n][service]:,.2f}" for n in FLEETS) + " |")
    lines.append("| total | " + " | ".join(f"{sum(costs[n].values()):,.2f}" for n in FLEETS) + " |")
    lines += ["", "Prices (us-east-1 list prices as published in 2025, not re-checked on the day of the run): "
              + "; ".join(f"{k} = {v}" for k, v in PRICES.items()) + f"; Lambda duration assumed "
              f"{GB_SECONDS_PER_INVOCATION} GB-s per invocation (not measured here)."]
    return "\n".join(lines)


def write_docs(results: Path = RESULTS, document: Path = CAPACITY) -> None:
    result = json.loads(results.read_text())
    text = document.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{document} has no section between {BEGIN!r} and {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    document.write_text(f"{head}{BEGIN}\n{capacity_tables(result)}\n{END}{tail}")


# --- entry ----------------------------------------------------------------------------------------


def _quiet_stdout() -> Any:
    """Stdout is for the one JSON line; the product's log lines go to a file."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    PRODUCT_LOG.parent.mkdir(parents=True, exist_ok=True)
    log = PRODUCT_LOG.open("w", buffering=1)  # open until the process ends
    os.dup2(log.fileno(), 1)
    sys.stdout = log
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    for name in ("werkzeug", "botocore", "boto3", "urllib3", "moto", "jsii", "local"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="connections per run, comma-separated")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--step-minutes", type=float, default=5.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--write-docs", action="store_true",
                        help="rewrite docs/capacity.md's generated section from --output, and do not run")
    args = parser.parse_args(argv)
    if args.write_docs:
        write_docs(args.output)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or not 1 <= args.step_minutes <= 15:
        parser.error("--sizes must be positive, --step-minutes from 1 to 15")
    _setup_paths()
    from bench import measured_on

    out = _quiet_stdout()
    started = time.monotonic()
    result: dict[str, Any] = {"sizes": {}}
    for size in sizes:
        # The smallest size runs a whole day (the direct figure checks the method); the others the short period.
        period = DAY_PERIOD if size == min(sizes) else SHORT_PERIOD
        result["sizes"][str(size)] = run(size, args.seed, period=period, step_minutes=args.step_minutes)
        say(f"{size} connections: {result['sizes'][str(size)]['wall_seconds']} s")
        partial = args.output.with_suffix(".partial.json")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(result, indent=2) + "\n")  # a long run's first sizes, kept early
    if len(sizes) >= 2:
        result["comparison"] = compare(result["sizes"][str(min(sizes))], result["sizes"][str(max(sizes))])
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    executable = Path(sys.executable)
    python = str(executable.relative_to(REPO)) if executable.is_relative_to(REPO) else "python"
    result.update(measured_on())
    result["command"] = shlex.join([python, "-m", "bench.scale", *(sys.argv[1:] if argv is None else argv)])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    args.output.with_suffix(".partial.json").unlink(missing_ok=True)
    out.write(json.dumps({"comparison": result.get("comparison", {}).get("headline_ratio"),
                          "wall_seconds": result["wall_seconds"],
                          "per_connection_day": {s: r["headline_per_connection_day"]
                                                 for s, r in result["sizes"].items()}}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
