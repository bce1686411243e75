"""LWA economy: Login with Amazon refreshes for W concurrent workers calling SP-API for one seller.

Usage: python -m bench.lwa_economy [--processes 4] [--threads 8] [--calls 25]

Method. One local stack is started in this process (moto in server mode, the Amazon emulator and the
local API on loopback; docs/local-stack.md) and one seller is connected through the real consent routes
with `local.demo`'s browser steps (marketplace US, so region NA). Then two runs on that same stack, each
with P worker processes (multiprocessing, spawn context) of T threads, so W = P x T workers each making
C getMarketplaceParticipations calls for that seller, all released together by one barrier:

1. shared cache, the product: each process is one warm Lambda container. It sets up the same imports
   (`functions/`, `layers/shared/python`) and environment the local stack gives the handlers, builds
   ONE `AccessTokenProvider` (the token refresher's own wiring, `token_refresher.handler.tokens()`) and
   one `SpApiClient` on it, shared by its threads. Memory cache per container, encrypted token in
   DynamoDB shared by all, a conditional-write lease so one caller refreshes.
2. per-process cache, the comparison (the python-amazon-sp-api way, whose `AccessTokenClient` keeps
   tokens in a module-level `TTLCache(ttl=3200)` keyed by the refresh token, with no lock): each
   process has its own dict; a thread that finds no token there asks LWA itself and stores the answer.
   SP-API is called with `requests` at the same emulator endpoint. The refresh token is read ONCE, in
   this process, through the product's repository and vault (a harness step), and handed to the
   workers. The baseline never touches DynamoDB: the shared token item is deleted before it runs and
   must still be absent afterwards.

Both runs use one `requests.Session` per process (as the product's client does), so the wall times
differ by the token handling, not by connection reuse. Times: `wall_seconds` from the barrier's release
to the last call's answer; `all_first_answers_seconds` until the slowest worker had its first answer
(for the shared cache: the one refresh, plus the other callers' polls of the table every 0.2 s and their
own read and KMS decryption of the stored token). Wall times on a small machine are noisy; the counts
are not. The emulator counts every LWA grant and SP-API
call (`GET {amazon}/_emulator/stats`); the counts are read before and after each run, and each run is
judged on the difference. Assertions: every call answered 200 with a payload, the emulator saw exactly
W x C SP-API calls and no 403, and the shared-cache run made exactly ONE refresh (the whole run lasts
far less than one access token lifetime, 3600 s). The per-process run must make between P (one per
process at least) and W (one per thread at most) refreshes; its exact count depends on the race.

Results go to bench/results/lwa_economy.json and, as one JSON line, to stdout; the story to stderr.
Exit 1 with the reason if any assertion fails (no result file is written then). No token, secret or
URL with a token ever reaches the output: errors are reported by type, HTTP status and Amazon's code.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import queue
import shlex
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests

from bench import measured_on

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "lwa_economy.json"
CODE_PATHS = (REPO / "layers" / "shared" / "python", REPO / "functions", REPO)
MARKETPLACE, REGION = "US", "NA"
PARTICIPATIONS_PATH = "/sellers/v1/marketplaceParticipations"
OPERATION = "getMarketplaceParticipations"
# python-amazon-sp-api: `cache = TTLCache(maxsize=10, ttl=3200)` in sp_api/auth/access_token_client.py
BASELINE_TTL_SECONDS = 3200
START_TIMEOUT = 120.0  # spawning and importing P processes on a small machine
RUN_TIMEOUT = 600.0
HTTP_TIMEOUT = (3.05, 20.0)


class BenchFailure(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"[lwa_economy] {message}", file=sys.stderr, flush=True)


# --- what the parent hands each worker process, and what it gets back ----------------------------


@dataclass(frozen=True)
class Job:
    kind: str  # "shared" or "baseline"
    seller: str
    region: str
    threads: int
    calls: int
    env: dict[str, str] = field(repr=False)
    # The baseline only: the seller's refresh token and the app's LWA credentials (never printed).
    refresh_token: str = field(default="", repr=False)
    client_id: str = field(default="", repr=False)
    client_secret: str = field(default="", repr=False)


@dataclass
class ThreadOutcome:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    # time.monotonic() values: system-wide on Linux, so comparable across processes
    first_answer: float = 0.0
    finished: float = 0.0


@dataclass(frozen=True)
class ProcessOutcome:
    ok: int
    errors: dict[str, int]
    first_answer: float  # the slowest thread's first answer
    finished: float


# --- worker processes ---------------------------------------------------------------------------


def _enter_container(env: dict[str, str]) -> None:
    """What Lambda gives a handler, as the local stack gives it: the code paths and the environment."""
    for path in CODE_PATHS:
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    os.environ.update(env)


def _describe(exc: BaseException) -> str:
    """An error's kind without its message (a message could carry a URL or a body)."""
    status, code = getattr(exc, "status", None), getattr(exc, "code", None)
    return " ".join(str(part) for part in (type(exc).__name__, status, code) if part is not None)


def _shared_caller(job: Job) -> Callable[[], dict[str, Any]]:
    """The product: one provider and one SP-API client per container, shared by its threads."""
    from seller_insights.spapi import SpApiClient
    from token_refresher.handler import settings, tokens

    client = SpApiClient(tokens(), endpoint_override=settings().amazon_endpoint_override)
    return lambda: client.get_marketplace_participations(job.seller, job.region)


# The comparison: python-amazon-sp-api's module-level cache, one per process, no lock.
_PER_PROCESS_CACHE: dict[str, tuple[str, float]] = {}


class BaselineCallFailed(RuntimeError):
    def __init__(self, step: str, status: int) -> None:
        self.status = status
        super().__init__(f"{step} answered {status}")


def _baseline_caller(job: Job) -> Callable[[], dict[str, Any]]:
    """The per-process way: check this process's dict; on a miss, refresh at LWA and store."""
    from seller_insights.endpoints import amazon_url
    from seller_insights.marketplaces import LWA_TOKEN_URL, SPAPI_ENDPOINTS, Region

    override = os.environ["AMAZON_ENDPOINT_OVERRIDE"]
    lwa_url = amazon_url(LWA_TOKEN_URL, override)
    spapi_url = amazon_url(SPAPI_ENDPOINTS[Region(job.region)] + PARTICIPATIONS_PATH, override)
    cache_key = hashlib.sha256(job.refresh_token.encode()).hexdigest()
    session = requests.Session()

    def access_token() -> str:
        cached = _PER_PROCESS_CACHE.get(cache_key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        answer = session.post(lwa_url, data={
            "grant_type": "refresh_token", "refresh_token": job.refresh_token,
            "client_id": job.client_id, "client_secret": job.client_secret,
        }, timeout=HTTP_TIMEOUT)
        if answer.status_code != 200:
            raise BaselineCallFailed("LWA", answer.status_code)
        token = str(answer.json()["access_token"])
        _PER_PROCESS_CACHE[cache_key] = (token, time.monotonic() + BASELINE_TTL_SECONDS)
        return token

    def call() -> dict[str, Any]:
        answer = session.get(spapi_url, headers={"x-amz-access-token": access_token(),
                                                 "accept": "application/json"}, timeout=HTTP_TIMEOUT)
        if answer.status_code != 200:
            raise BaselineCallFailed("SP-API", answer.status_code)
        body: dict[str, Any] = answer.json()
        return body

    return call


def _thread(call: Callable[[], dict[str, Any]], calls: int, barrier: Any, outcome: ThreadOutcome) -> None:
    try:
        barrier.wait(START_TIMEOUT)
    except threading.BrokenBarrierError:
        outcome.errors["start barrier broken"] += 1
        return
    for _ in range(calls):
        try:
            answer = call()
        except Exception as exc:
            outcome.errors[_describe(exc)] += 1
            continue
        finally:
            outcome.first_answer = outcome.first_answer or time.monotonic()
        if answer.get("payload"):
            outcome.ok += 1
        else:
            outcome.errors["answer without payload"] += 1
    outcome.finished = time.monotonic()


def worker(job: Job, barrier: Any, results: Any) -> None:
    """One worker process: T threads, each making C calls once every thread of every process is ready."""
    try:
        _enter_container(job.env)
        call = _shared_caller(job) if job.kind == "shared" else _baseline_caller(job)
    except Exception as exc:
        barrier.abort()  # everyone stops waiting
        results.put(ProcessOutcome(0, {f"worker setup: {_describe(exc)}": 1}, time.monotonic(), time.monotonic()))
        return
    outcomes = [ThreadOutcome() for _ in range(job.threads)]
    threads = [threading.Thread(target=_thread, args=(call, job.calls, barrier, outcome)) for outcome in outcomes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors: Counter[str] = Counter()
    for outcome in outcomes:
        errors.update(outcome.errors)
    results.put(ProcessOutcome(sum(o.ok for o in outcomes), dict(errors), max(o.first_answer for o in outcomes),
                               max(o.finished for o in outcomes)))


# --- the parent: the stack, the seller, the two runs ----------------------------------------------


@dataclass(frozen=True)
class RunResult:
    lwa_refreshes: int
    spapi_calls_seen: int
    spapi_denied: int
    lwa_errors: int
    succeeded: int
    errors: dict[str, int]
    wall_seconds: float
    first_answer_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "lwa_refreshes": self.lwa_refreshes,
            "spapi_calls_seen": self.spapi_calls_seen,
            "spapi_denied": self.spapi_denied,
            "lwa_errors": self.lwa_errors,
            "calls_succeeded": self.succeeded,
            "wall_seconds": round(self.wall_seconds, 3),
            "all_first_answers_seconds": round(self.first_answer_seconds, 3),
            "calls_per_second": round(self.spapi_calls_seen / self.wall_seconds, 1) if self.wall_seconds else None,
        }


def emulator_stats(amazon: str) -> dict[str, Any]:
    stats: dict[str, Any] = requests.get(f"{amazon}/_emulator/stats", timeout=HTTP_TIMEOUT).json()
    return stats


def measure(job: Job, processes: int, amazon: str) -> RunResult:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes * job.threads + 1)  # every thread, and this process to start the clock
    results = context.Queue()
    workers = [context.Process(target=worker, args=(job, barrier, results), name=f"{job.kind}-{n}")
               for n in range(processes)]
    before = emulator_stats(amazon)
    for process in workers:
        process.start()
    outcomes: list[ProcessOutcome] = []
    try:
        with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed its setup: its outcome says why
            barrier.wait(START_TIMEOUT)
        started = time.monotonic()
        deadline = started + RUN_TIMEOUT
        while len(outcomes) < processes:
            try:
                outcomes.append(results.get(timeout=1.0))
            except queue.Empty:
                if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in workers):
                    raise BenchFailure(f"{job.kind} run: a worker process died or hung "
                                       f"(exit codes {[p.exitcode for p in workers]})") from None
    finally:
        for process in workers:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
    after = emulator_stats(amazon)
    errors: Counter[str] = Counter()
    for outcome in outcomes:
        errors.update(outcome.errors)
    return RunResult(
        lwa_refreshes=after["lwa"]["refresh_token"] - before["lwa"]["refresh_token"],
        spapi_calls_seen=after["spapi"][OPERATION] - before["spapi"][OPERATION],
        spapi_denied=after["spapi_denied"][OPERATION] - before["spapi_denied"][OPERATION],
        lwa_errors=sum(after["lwa_errors"].values()) - sum(before["lwa_errors"].values()),
        succeeded=sum(o.ok for o in outcomes),
        errors=dict(errors),
        wall_seconds=max(o.finished for o in outcomes) - started,
        first_answer_seconds=max(o.first_answer for o in outcomes) - started,
    )


def check_calls(name: str, run: RunResult, expected: int) -> None:
    if run.errors or run.succeeded != expected:
        raise BenchFailure(f"{name}: {run.succeeded} of {expected} calls succeeded; errors {run.errors}")
    if run.spapi_calls_seen != expected or run.spapi_denied:
        raise BenchFailure(f"{name}: the emulator saw {run.spapi_calls_seen} SP-API calls ({run.spapi_denied} "
                           f"refused) for {expected} made")
    if run.lwa_errors:
        raise BenchFailure(f"{name}: LWA answered {run.lwa_errors} errors")


def run(processes: int, threads: int, calls: int) -> dict[str, Any]:
    # The stack puts the shared layer on sys.path; these imports need it.
    from local.amazon.state import ACCESS_TOKEN_SECONDS
    from local.demo import Demo, DemoFailure, seller_id
    from local.stack import LocalStack, StackOptions

    workers = processes * threads
    expected = workers * calls
    with LocalStack(StackOptions(quiet_functions=True)) as stack:
        from seller_insights.repositories import access_token_key
        from seller_insights.vault import Purpose, SecretContext, Vault

        demo = Demo(stack)
        seller = seller_id()
        say(f"stack up; seller {seller} connects from the website for marketplace {MARKETPLACE} ({REGION})")
        try:
            demo.connect_from_website(seller, MARKETPLACE)
            demo.check_connection(seller, REGION)  # ACTIVE, encrypted, live (one refresh, outside the runs)
        except DemoFailure as exc:
            raise BenchFailure(f"connecting the seller failed: {exc}") from None
        token_key = access_token_key(seller, REGION)
        if demo.table.get_item(Key=token_key, ConsistentRead=True).get("Item"):
            raise BenchFailure("an access token is already cached for the seller before the shared-cache run")
        base_job = Job("shared", seller, REGION, threads, calls, env=dict(os.environ))

        say(f"shared-cache run (the product): {processes} processes x {threads} threads x {calls} calls")
        shared = measure(base_job, processes, stack.amazon_url)
        check_calls("shared-cache run", shared, expected)
        if shared.wall_seconds >= ACCESS_TOKEN_SECONDS:
            raise BenchFailure(f"the shared-cache run lasted {shared.wall_seconds:.0f} s, more than one token "
                               "lifetime: its refresh count says nothing about one lifetime")
        if shared.lwa_refreshes != 1:
            raise BenchFailure(f"the shared cache made {shared.lwa_refreshes} LWA refreshes for one token "
                               f"lifetime with {workers} workers; expected exactly 1")
        say(f"  {expected} calls, {shared.lwa_refreshes} refresh, {shared.wall_seconds:.2f} s")

        # The baseline must not find the product's token: drop it, and check it never comes back.
        demo.table.delete_item(Key=token_key)
        sealed = demo.sealed_token(seller, REGION)
        if sealed is None:
            raise BenchFailure("no sealed refresh token stored for the seller")
        vault = Vault(boto3.client("kms"), os.environ["TOKEN_KEY_ID"])
        refresh_token = vault.open(sealed, SecretContext(Purpose.REFRESH_TOKEN, seller, REGION))
        baseline_job = Job("baseline", seller, REGION, threads, calls, env=dict(os.environ),
                           refresh_token=refresh_token, client_id=stack.amazon.client_id,
                           client_secret=stack.amazon.client_secret)

        say(f"per-process cache run (the comparison): {processes} processes x {threads} threads x {calls} calls")
        baseline = measure(baseline_job, processes, stack.amazon_url)
        check_calls("per-process cache run", baseline, expected)
        if demo.table.get_item(Key=token_key, ConsistentRead=True).get("Item"):
            raise BenchFailure("the per-process cache run left a shared token item: it was not independent")
        if not processes <= baseline.lwa_refreshes <= workers:
            raise BenchFailure(f"the per-process cache made {baseline.lwa_refreshes} refreshes; between "
                               f"{processes} and {workers} are possible")
        say(f"  {expected} calls, {baseline.lwa_refreshes} refreshes, {baseline.wall_seconds:.2f} s")

    return {
        "workers": workers,
        "processes": processes,
        "threads_per_process": threads,
        "calls_per_worker": calls,
        "spapi_calls": expected,
        "token_lifetime_seconds": ACCESS_TOKEN_SECONDS,
        "shared_cache": shared.as_dict(),
        "per_process_cache": baseline.as_dict(),
        "refreshes_saved": baseline.lwa_refreshes - shared.lwa_refreshes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--processes", type=int, default=4, help="worker processes (Lambda containers)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process")
    parser.add_argument("--calls", type=int, default=25, help="SP-API calls per thread")
    args = parser.parse_args(argv)
    if min(args.processes, args.threads, args.calls) < 1:
        parser.error("--processes, --threads and --calls must be at least 1")
    # Stdout is for the one JSON line, as for `python -m local demo`: everything else goes to stderr.
    # Imported here, not at the top, so that worker processes never import the stack.
    from local.__main__ import claim_stdout, configure_logging

    out = claim_stdout()
    configure_logging(logging.WARNING)  # also quiets moto's and werkzeug's request lines
    started = time.monotonic()
    try:
        measured = run(args.processes, args.threads, args.calls)
    except BenchFailure as exc:
        say(f"FAILED: {exc}")
        return 1
    executable = Path(sys.executable)
    python = str(executable.relative_to(REPO)) if executable.is_relative_to(REPO) else "python"
    argv_used = sys.argv[1:] if argv is None else argv
    result = {
        **measured,
        **measured_on(),
        "command": shlex.join([python, "-m", "bench.lwa_economy", *argv_used]),
        "bench_seconds": round(time.monotonic() - started, 1),
        "note": "emulator counts (GET /_emulator/stats), one local stack for both runs; the per-process "
                "cache is python-amazon-sp-api's way (a module-level dict per process, no lock)",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
