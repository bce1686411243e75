"""The report pipeline through `python -m local serve` (docs/internal-contracts.md, "Report pipeline"):
plan → createReport → delayed re-check → Amazon finishes on the clock (REPORT_PROCESSING_FINISHED) →
the documents streamed into S3 with their `REPORT#` rows; settlement discovered; CANCELLED and FATAL.

Driven over HTTP only (our control calls, the Amazon emulator's control calls); boto3 against the
printed AWS endpoint only to verify what is stored. The tests move the clock by half an hour, so they
run against a serve process of their own. Nothing here prints a token, a URL or a document.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest

from seller_insights.report_catalog import (
    CATALOG,
    FBA_RETURNS,
    LISTINGS,
    SALES_AND_TRAFFIC,
    SETTLEMENT,
    DataSource,
    ReportFormat,
)
from tests.support.e2e import (
    advance,
    bucket,
    connect,
    drain,
    fire,
    new_seller,
    plan_reports,
    post,
    refresh_tokens,
    s3,
    sells_only_in,
    stats,
)
from tests.support.local_stack import seller_items, stack_of_its_own, stack_seller_key

pytestmark = pytest.mark.slow
US = "ATVPDKIKX0DER"
TERMINAL = {"DONE", "NO_DATA", "FAILED", "ENDED"}
PII_COLUMNS = {
    "ship-city", "ship-postal-code", "ship-address-1", "ship-address-2", "ship-address-3", "customer-comments",
    "buyer-name", "buyer-email", "buyer-phone-number", "recipient-name", "ship-phone-number",
}
# How long the emulator takes to finish a report (IN_QUEUE 30 s, IN_PROGRESS until 90 s), with margin.
REPORT_MINUTES = 120
MAX_ROUNDS = 4


# A stack of this module's own: it moves the clock.
info = stack_of_its_own("reports")


# --- helpers ------------------------------------------------------------------------------------


def jobs_by_type(info: dict[str, Any], seller: str) -> dict[str, dict[str, Any]]:
    return {str(job["report_type"]): job for job in seller_items(info, seller, "JOB#")}


def objects(info: dict[str, Any], seller: str) -> dict[str, int]:
    """Every object under the seller's report prefix → its size."""
    found: dict[str, int] = {}
    pages = s3(info).get_paginator("list_objects_v2").paginate(
        Bucket=bucket(info), Prefix=f"sellers/{stack_seller_key(info, seller)}/NA/reports/"
    )
    for page in pages:
        found.update({obj["Key"]: int(obj["Size"]) for obj in page.get("Contents", [])})
    return found


def seed(info: dict[str, Any], seller: str, report_type: str, outcome: str, **document: Any) -> None:
    body = {"selling_partner_id": seller, "report_type": report_type, "marketplace_ids": [US], "outcome": outcome}
    assert post(f"{info['amazon']}/_emulator/reports/documents", {**body, **document})["queued"] == 1


def start_reports(info: dict[str, Any]) -> None:
    """The two schedules the pipeline needs: a fresh access token in the shared cache (the fetcher may
    not refresh), then the plan."""
    refreshed = refresh_tokens(info)
    assert refreshed["failed"] == 0 and refreshed["lwa_refreshes"] >= 1, refreshed
    plan = plan_reports(info)
    assert plan["found"] >= 1 and plan["planned"] >= 1 and plan["job_messages"] >= 1, plan


def settle(info: dict[str, Any], seller: str, *, waiting: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Drain; while a job other than the `waiting` types is not terminal, let two minutes pass and
    drain again (bounded). Answers the drain results."""
    results = [drain(info)]
    for _ in range(MAX_ROUNDS):
        pending = {t for t, job in jobs_by_type(info, seller).items() if job["status"] not in TERMINAL} - waiting
        if not pending:
            break
        advance(info, REPORT_MINUTES)
        results.append(wake_and_drain(info))
    return results


def wake_and_drain(info: dict[str, Any]) -> dict[str, Any]:
    """The wake-jobs schedule (parked jobs that are due back on report_jobs: every 5 minutes in AWS), then
    the queues drained. The local stack wakes parked jobs only when the schedule is fired."""
    woken = fire(info, "wake-jobs")
    assert woken["refused"] == 0, woken
    return drain(info)


def assert_no_failed_deliveries(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert not any(result["failed"].values()), result["failed"]
        assert not any(n for queue, n in result["left"].items() if queue.endswith("_dlq")), result["left"]


def assert_no_orphan_uploads(info: dict[str, Any]) -> None:
    assert s3(info).list_multipart_uploads(Bucket=bucket(info)).get("Uploads", []) == []


def read_object(info: dict[str, Any], key: str) -> bytes:
    body: bytes = s3(info).get_object(Bucket=bucket(info), Key=key)["Body"].read()
    return body


# --- the tests ----------------------------------------------------------------------------------


SETTLEMENT_TSV = (
    "settlement-id\tsettlement-start-date\tsettlement-end-date\tdeposit-date\ttotal-amount\tcurrency\t"
    "transaction-type\torder-id\tamount-type\tamount-description\tamount\n"
    "11912345678\t2026-11-01T00:00:00+00:00\t2026-11-15T00:00:00+00:00\t2026-11-17T00:00:00+00:00\t"
    "1234.56\tUSD\t\t\t\t\t\n"
    "11912345678\t\t\t\t\t\tOrder\t112-0000000-0000001\tItemPrice\tPrincipal \u20ac Geb\u00fchr\t19.99\n"
)


def test_reports_arrive_in_s3_with_matching_rows(info: dict[str, Any]) -> None:
    seller = new_seller()
    sells_only_in(info, seller, "NA", "US")  # one job per type
    connect(info, seller, "US")
    # Amazon closed a settlement period for this seller (found by getReports, never requested).
    seed(info, seller, SETTLEMENT, "DONE", content_base64=base64.b64encode(SETTLEMENT_TSV.encode("cp1252")).decode(),
         content_type="text/plain; charset=Cp1252", gzip=False)
    before = stats(info)
    start_reports(info)
    jobs = jobs_by_type(info, seller)
    assert jobs == {} or all(job["status"] == "NEW" for job in jobs.values())

    first = drain(info)  # every job takes one step: createReport, then back on the queue with a delay
    assert first["delivered"].get("report_jobs", 0) >= 1
    jobs = jobs_by_type(info, seller)
    assert set(jobs) == set(CATALOG), sorted(jobs)
    assert jobs[SETTLEMENT]["status"] == "DONE"  # discovered and stored at once
    # Reports only: Sales and Traffic is a Data Kiosk query (minutes to hours; see test_data_kiosk_jobs.py).
    requested = {t for t, job in jobs.items() if job["status"] == "WAITING" and t != SALES_AND_TRAFFIC}
    assert requested >= set(CATALOG) - {SETTLEMENT, SALES_AND_TRAFFIC}, {t: j["status"] for t, j in jobs.items()}
    assert all(job.get("report_id") for t, job in jobs.items() if t in requested)
    assert first["left"]["report_jobs"] >= len(requested)  # re-queued with a delay, not visible yet
    assert stats(info)["spapi"]["createReport"] - before["spapi"]["createReport"] == len(requested)

    results = [first, *settle(info, seller, waiting=frozenset(CATALOG) - requested - {SETTLEMENT})]
    assert_no_failed_deliveries(results)
    assert sum(r["delivered"].get("report_notifications", 0) for r in results) >= len(requested)

    jobs = jobs_by_type(info, seller)
    done = {t for t, job in jobs.items() if job["status"] == "DONE"}
    assert done >= requested | {SETTLEMENT}, {t: j["status"] for t, j in jobs.items()}

    rows = {str(row["report_type"]): row for row in seller_items(info, seller, "REPORT#NA#")}
    assert set(rows) == done
    stored = objects(info, seller)
    assert set(stored) == {row["s3_key"] for row in rows.values()}, "an object without a row, or a row without one"
    for report_type, row in rows.items():
        key = str(row["s3_key"])
        report_spec = CATALOG[report_type]
        assert key.startswith(f"sellers/{stack_seller_key(info, seller)}/NA/reports/{report_type}/")
        extension = "jsonl" if report_spec.source is DataSource.DATA_KIOSK else report_spec.format.value
        assert key.endswith(f".{extension}")
        body = read_object(info, key)
        assert len(body) == int(row["bytes"]) == stored[key]
        assert hashlib.sha256(body).hexdigest() == row["sha256"]
        text = body.decode("utf-8")  # UTF-8 always, whatever Amazon's charset
        assert int(row["undecodable"]) == 0
        if report_spec.format is ReportFormat.TSV:
            lines = [line for line in text.splitlines() if line]
            header = lines[0].split("\t")
            assert not PII_COLUMNS & set(header), f"{report_type}: PII columns stored"
            assert set(header) <= set(report_spec.kept_columns or ()), f"{report_type}: columns outside the allowlist"
            assert int(row["rows"]) == len(lines) - 1

    settlement = rows[SETTLEMENT]
    assert settlement["sk"] == f"REPORT#NA#{SETTLEMENT}#{settlement['report_id']}"
    assert settlement["s3_key"] == (
        # Under the marketplace the settlement report names (issue 10, section 7).
        f"sellers/{stack_seller_key(info, seller)}/NA/reports/{SETTLEMENT}/{US}/{settlement['report_id']}.tsv")
    assert "window_start" not in settlement
    assert settlement["source_charset"] == "cp1252"
    assert read_object(info, str(settlement["s3_key"])).decode("utf-8") == SETTLEMENT_TSV
    assert int(settlement["rows"]) == 2

    assert_no_orphan_uploads(info)
    after = stats(info)
    assert after["throttled"] == 0, after["throttled_by_operation"]
    assert after["documents_served"] - before["documents_served"] == len(done)


FATAL_DOCUMENT = b'{"errorDetails": "The report could not be generated for this window."}'


def test_cancelled_is_no_data_and_fatal_keeps_its_error_and_cools_down(info: dict[str, Any]) -> None:
    seller = new_seller()
    sells_only_in(info, seller, "NA", "US")  # one job per type
    connect(info, seller, "US")
    seed(info, seller, FBA_RETURNS, "CANCELLED")
    seed(info, seller, LISTINGS, "FATAL", content_base64=base64.b64encode(FATAL_DOCUMENT).decode(),
         content_type="application/json", gzip=False)
    start_reports(info)
    # Sales and traffic may wait for the app-wide quota (another seller spent it): not this test's subject.
    results = settle(info, seller, waiting=frozenset({LISTINGS, SALES_AND_TRAFFIC}))
    assert_no_failed_deliveries(results)

    jobs = jobs_by_type(info, seller)
    cancelled, fatal = jobs[FBA_RETURNS], jobs[LISTINGS]
    assert cancelled["status"] == "NO_DATA"
    assert not [key for key in objects(info, seller) if f"/reports/{FBA_RETURNS}/" in key]
    assert not [row for row in seller_items(info, seller, f"REPORT#NA#{FBA_RETURNS}#")]

    # FATAL: cooling down (30 minutes for this type), even after Amazon's REPORT_PROCESSING_FINISHED
    # for the FATAL report has been delivered.
    assert sum(r["delivered"].get("report_notifications", 0) for r in results) >= 2
    assert fatal["status"] == "COOLDOWN", fatal["status"]
    assert int(fatal["attempts"]) == 1 and "report_id" not in fatal
    match = re.fullmatch(r"FATAL \(report (\d+)\)", str(fatal["error"]))
    assert match, fatal["error"]
    fatal_report = match.group(1)
    error_key = f"sellers/{stack_seller_key(info, seller)}/NA/reports/{LISTINGS}/errors/{fatal_report}.txt"
    listing_keys = [key for key in objects(info, seller) if f"/reports/{LISTINGS}/" in key]
    assert listing_keys == [error_key]
    assert read_object(info, error_key) == FATAL_DOCUMENT
    assert not seller_items(info, seller, f"REPORT#NA#{LISTINGS}#")

    # Past the cooldown: the job requests a new report (the seed is spent, so this one is DONE).
    created = stats(info)["spapi"]["createReport"]
    cooldown = int(CATALOG[LISTINGS].fatal_cooldown.total_seconds())
    assert int(fatal["wake_at"]) == int(fatal["next_check_at"])  # hours: parked in the job table, no message
    advance(info, cooldown)
    # The schedule keeps the cached access token fresh (every 5 minutes): the drain renews it (the
    # token_refresh queue's batch comes before the jobs').
    fire(info, "refresh-tokens")
    results = [wake_and_drain(info)]
    again = jobs_by_type(info, seller)[LISTINGS]
    assert again["status"] == "WAITING" and again["report_id"] != fatal_report
    assert stats(info)["spapi"]["createReport"] > created
    # Sales and Traffic is a Data Kiosk query (minutes to hours at the emulator): not this test's subject.
    results += settle(info, seller, waiting=frozenset({SALES_AND_TRAFFIC}))
    assert_no_failed_deliveries(results)

    jobs = jobs_by_type(info, seller)
    assert {t: job["status"] for t, job in jobs.items()
            if job["status"] not in TERMINAL and t != SALES_AND_TRAFFIC} == {}
    assert jobs[LISTINGS]["status"] == "DONE" and int(jobs[LISTINGS]["attempts"]) == 1
    row = seller_items(info, seller, f"REPORT#NA#{LISTINGS}#")[0]
    assert row["report_id"] == again["report_id"]
    assert hashlib.sha256(read_object(info, str(row["s3_key"]))).hexdigest() == row["sha256"]
    assert_no_orphan_uploads(info)
    assert stats(info)["throttled"] == 0
