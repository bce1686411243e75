"""`python -m local demo`: a stack of its own, the scenario played through the same HTTP interfaces a
browser, Amazon and an operator use, the story on stderr and one JSON summary line on stdout.

Scenario: two sellers connect through the website flow, one in North America and one in Europe; each
consent waits until Amazon confirms whose it is (the verify-consents schedule), then both refresh tokens
are stored encrypted and open to live tokens. A third seller consents with its own account and edits
the seller id in Amazon's redirect to the first seller's: Amazon names the real seller, the consent is
destroyed and the first seller's connection is untouched. Then the first seller re-authorizes from
the Appstore, which replaces the token without adding a connection. Then the token lifecycle: the
scheduled refresh sweep fills the shared, encrypted access-token cache; the first seller removes the app
in Seller Central; an hour later the sweep meets `invalid_grant` and marks the connection REVOKED
(tokens deleted, purge date set); the seller authorizes again from the Appstore and is ACTIVE again.
Then reports arrive: Amazon closes a settlement period for the first seller, the refresh sweep warms the
token cache, the plan finds the due connections and a drain of report_plans plans them (every due report
job on the job queue), drains request the reports, the clock
moves (Amazon finishes them and says so), and drains stream the documents into S3. Last, data rights:
the operator requests the first seller's export through the signed admin route (202), a drain runs the
export worker, the status route hands out the link (downloaded, checksums verified), the seller asks to
be deleted, a month passes, the retention sweep finds the connection and a drain of retention_purges purges
everything, and the AWS emulator's own listings show nothing left, with the receipt in the audit table.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import urljoin

import boto3
import requests
from boto3.dynamodb.conditions import ConditionBase, Key

from local.admin import AdminClient, Export, ExportInvalid, download_export, finished_export, verify_export
from local.browser import browser_session
from local.stack import LocalStack, StackOptions

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_REGION_OF = {"US": "NA", "DE": "EU"}
_TIMEOUT = 30
_MARKETPLACE_ID = {"US": "ATVPDKIKX0DER", "DE": "A1PA6795UKMFR9"}
_SETTLEMENT = "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2"
_TERMINAL = ("DONE", "NO_DATA", "FAILED", "ENDED")
_REPORT_STEP_SECONDS = 120  # the emulator finishes a report 90 s after it was requested
_MAX_REPORT_ROUNDS = 12
_PAST_THE_PURGE_DATE = 31 * 24 * 3600  # the purge date is 27 days after the request (30 - PITR 2 - 1)


class DemoFailure(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def expect(condition: bool, failure: str) -> None:
    if not condition:
        raise DemoFailure(failure)


def run_demo(options: StackOptions, out: TextIO) -> int:
    started = time.monotonic()
    stack = LocalStack(options)
    try:
        stack.start()
        summary = Demo(stack).play()
    except DemoFailure as exc:
        say(f"FAILED: {exc}")
        return 1
    except Exception as exc:
        say(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    finally:
        stack.stop()
    summary["seconds"] = round(time.monotonic() - started, 1)
    out.write(json.dumps(summary) + "\n")
    out.flush()
    say(f"done in {summary['seconds']} s")
    return 0


def seller_id() -> str:
    """A selling partner id in Amazon's shape (A + 13 upper-case letters and digits)."""
    return "A" + "".join(secrets.choice(_ALPHABET) for _ in range(13))


class Demo:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.api = stack.api_url
        self.amazon = stack.amazon_url
        self.table = boto3.resource("dynamodb").Table(stack.resources["tables"]["connections"])
        self.verified = 0  # consents Amazon confirmed

    # --- who a consent belongs to -----------------------------------------------------------------

    def verify_consents(self) -> dict[str, Any]:
        """The verify-consents schedule finds the consents waiting for Amazon and sends them to the
        token_refresh queue; the drain plays the queue's event source, which asks Amazon. The finder's
        report, with the consent audit outcomes that appeared meanwhile."""
        before = self.consent_outcomes()
        found = self.fire("verify-consents")
        self.drain()
        after = self.consent_outcomes()
        return {**found, **{outcome: after[outcome] - before.get(outcome, 0) for outcome in after}}

    def consent_outcomes(self) -> Counter[str]:
        audit = boto3.resource("dynamodb").Table(self.stack.resources["tables"]["audit"])
        records = audit.scan()["Items"]
        return Counter(str(r.get("outcome")) for r in records if r.get("type") == "consent_verification")

    def confirm_consent(self, seller: str) -> None:
        """The verify-consents schedule: Amazon names the seller of each waiting consent."""
        report = self.verify_consents()
        expect(report.get("done") == 1, f"verify-consents should have confirmed {seller}: {_report(report)}")
        self.verified += 1
        say("  the verify-consents schedule fired (every minute in AWS) and the drain delivered its work: "
            f"Amazon's Product Fees answer names {seller}, the seller the consent named, so the consent became "
            "the connection's token")

    def forged_consent(self, victim: str) -> dict[str, Any]:
        attacker = seller_id()
        before = self.item(victim, "NA")
        say(f"seller {attacker} consents with its own account, then edits selling_partner_id in Amazon's "
            f"redirect to {victim}")
        browser = browser_session()
        start = browser.get(f"{self.api}/connect", params={"marketplace": "US"}, allow_redirects=False,
                            timeout=_TIMEOUT)
        answer = requests.post(f"{self.amazon}/_emulator/consent",
                               json={"consent_url": self._redirect(start, 302, "/connect"),
                                     "selling_partner_id": attacker}, timeout=_TIMEOUT)
        expect(answer.status_code == 200, f"the emulator refused the consent: {answer.status_code}")
        forged = str(answer.json()["redirect"]).replace(attacker, victim)
        callback = browser.get(forged, allow_redirects=False, timeout=_TIMEOUT)
        page = browser.get(urljoin(forged, self._redirect(callback, 303, "/callback")), timeout=_TIMEOUT)
        expect("confirming with Amazon" in page.text, "the forged consent's page did not say it waits for Amazon")
        expect(self.item(victim, "NA") == before, "the consent alone changed the victim's connection")
        say("  /callback took it as a consent waiting for Amazon; the victim's connection is unchanged")
        report = self.verify_consents()
        expect(report.get("identity_mismatch") == 1, f"verify-consents should have refused the forged consent: "
                                                     f"{_report(report)}")
        expect(self.item(victim, "NA") == before, "the forged consent changed the victim's connection")
        audit = boto3.resource("dynamodb").Table(self.stack.resources["tables"]["audit"])
        mismatches = [r for r in audit.scan()["Items"] if r.get("outcome") == "identity_mismatch"]
        expect(len(mismatches) == 1, f"expected one identity_mismatch audit record, found {len(mismatches)}")
        say(f"  verify-consents: Amazon says the authorization belongs to {attacker}, not {victim}: the consent "
            "and its token are destroyed, the victim's connection is untouched, an audit record and the alarmed "
            "metric ConsentIdentityMismatch are written")
        return {"refused": True, "victim_untouched": True, "audited": True}

    def play(self) -> dict[str, Any]:
        say(f"stack up: api {self.api}, Amazon emulator {self.amazon}, AWS emulator {self.stack.aws_url}")
        sellers = [(seller_id(), "US"), (seller_id(), "DE")]
        connections = []
        for seller, marketplace in sellers:
            region = _REGION_OF[marketplace]
            say(f"seller {seller} connects from the website for marketplace {marketplace} ({region})")
            self.connect_from_website(seller, marketplace)
            connections.append(self.check_connection(seller, region))

        first, _ = sellers[0]
        forged = self.forged_consent(first)

        say(f"seller {first} re-authorizes from the Appstore (NA)")
        before = self.sealed_token(first, "NA")
        self.authorize_from_appstore(first, "NA")
        after = self.sealed_token(first, "NA")
        expect(after is not None and after != before, "re-authorization did not replace the sealed token")
        count = self.connection_count()
        expect(count == len(sellers), f"expected {len(sellers)} connections after re-authorization, found {count}")
        replaced = self.check_connection(first, "NA")
        connections[0] = replaced
        say(f"the token was replaced in place: still {count} connections, the new token is live")

        tokens_refreshed = self.refresh_sweep(sellers)
        revocation = self.revocation(first, "NA")
        reports = self.reports(sellers)

        stats = requests.get(f"{self.amazon}/_emulator/stats", timeout=_TIMEOUT).json()
        reports["throttled"] = int(stats.get("throttled", 0))
        expect(reports["throttled"] == 0, f"the emulator throttled {reports['throttled']} SP-API calls")
        coverage = self.coverage(sellers)
        deletion = self.deletion(first, "NA", sellers[1])
        fleet = self.fleet_status()
        return {
            "sellers_connected": len(sellers),
            "connections": connections,
            "consents": {"verified": self.verified, "forged": forged},
            "reauthorized": 1,
            "tokens_refreshed": tokens_refreshed,
            "revocation": revocation,
            "reports": reports,
            "coverage": coverage,
            "lwa_calls": stats.get("lwa", stats),
            "deletion": deletion,
            "fleet": fleet,
        }

    def fleet_status(self) -> dict[str, Any]:
        """The ending: `python -m ops status --local API`'s table on the story stream, its census in the summary."""
        from ops.fleet import Fleet  # noqa: PLC0415 (the operator's tool, only for this last scene)
        from ops.status import gather, render  # noqa: PLC0415

        say(f"the fleet at the end (python -m ops status --local {self.api}):")
        status = gather(Fleet.local(self.api))
        render(status, sys.stderr)
        expect(status["connections_total"] >= 1, "ops status counted no connection")
        dead_letters = {name: depth["messages"] for name, depth in status["queues"].items() if depth["dead_letter"]}
        expect(not any(dead_letters.values()), f"messages in dead-letter queues: {dead_letters}")
        return {name: status[name] for name in ("connections", "connections_total", "report_lag_periods",
                                                "pending_candidates", "deletions_pending", "purges_due_this_week")}

    def coverage(self, sellers: list[tuple[str, str]]) -> dict[str, list[dict[str, Any]]]:
        """Per seller, what the operator sees of each type's coverage (GET /admin/sellers/{id}): the covered
        range per type and marketplace, the history left and when it was last stored."""
        admin = AdminClient.from_info(self.stack.info())
        covered: dict[str, list[dict[str, Any]]] = {}
        for seller, marketplace in sellers:
            region = _REGION_OF[marketplace]
            shown = self.admin_json(admin, "GET", f"/admin/sellers/{seller}")
            (connection,) = [c for c in shown["connections"] if c["region"] == region]
            rows = [{key: row[key] for key in ("report_type", "marketplace_id", "covered_from", "covered_until",
                                               "backfill_left_days", "last_stored_at")}
                    for row in connection.get("coverage", [])]
            expect(bool(rows), f"no coverage cursor for {seller} ({region})")
            say(f"coverage of {seller} ({region}), as GET /admin/sellers/{{id}} shows it:")
            for row in rows:
                scope = f" {row['marketplace_id']}" if row["marketplace_id"] else ""
                say(f"  {row['report_type']}{scope}: {row['covered_from']} → {row['covered_until']}, "
                    f"{row['backfill_left_days']} days of history left")
            covered[seller] = rows
        return covered

    # --- data rights: export, deletion, the retention sweep -----------------------------------------

    def deletion(self, seller: str, region: str, other: tuple[str, str]) -> dict[str, Any]:
        admin = AdminClient.from_info(self.stack.info())
        path = f"/admin/sellers/{seller}"
        unsigned = requests.get(f"{self.api}{path}", timeout=_TIMEOUT)
        expect(unsigned.status_code == 401, f"an unsigned admin call answered {unsigned.status_code}, not 401")
        say(f"the operator asks for {seller}'s data (admin routes: SigV4 with the printed admin credentials; "
            "unsigned: 401)")
        shown = self.admin_json(admin, "GET", path)
        key = str(shown["seller_key"])
        stored = shown["stored_reports"].get(region, {"reports": 0, "bytes": 0})
        say(f"  access: {len(shown['connections'])} connection(s), {stored['reports']} reports, "
            f"{stored['bytes']} bytes stored")

        export = self.export(admin, seller, int(stored["reports"]))

        say(f"the seller asks to be forgotten: POST {path.replace(seller, '{id}')}/deletion")
        requested = self.admin_json(admin, "POST", f"{path}/deletion")
        purge_after = str(requested["purge_after"])
        keys = [str(item["sk"]) for item in self.items_of(seller, "")]
        left = [sk for sk in keys if sk.startswith(("PLAN#", "TOKEN#"))]
        expect(not left, f"pulls did not stop: {left} still stored")
        say(f"  DELETION_REQUESTED: report plan and access token gone (no more pulls), purge after {purge_after}")

        clock = requests.post(f"{self.api}/_local/clock", json={"advance_seconds": _PAST_THE_PURGE_DATE},
                              timeout=_TIMEOUT)
        expect(clock.status_code == 200, f"/_local/clock answered {clock.status_code}")
        say(f"31 days pass (virtual clock now {clock.json()['now']}); the sweep-retention schedule fires (daily)")
        swept = self.fire("sweep-retention")
        expect(swept.get("found") == 1 and swept.get("messages") == 1,
               f"sweep-retention should have found 1 connection to purge: {_report(swept)}")
        purged = self.drain(["retention_purges"])
        say(f"  it sends the due connection to retention_purges; drain: {_delivered(purged)} (the purge)")
        versions, items, deleted = self.check_purged(seller, region, key, purge_after)
        again = self.fire("sweep-retention")
        expect(again.get("found") == 0, f"a second sweep-retention found something: {_report(again)}")
        other_seller, other_marketplace = other
        kept = self.item(other_seller, _REGION_OF[other_marketplace])
        expect(kept is not None and kept.get("status") == "ACTIVE", f"the purge touched {other_seller}")
        say(f"  a second sweep finds nothing to do; {other_seller} is untouched (ACTIVE)")
        return {
            "exported_files": export.files,
            "export_bytes": export.size,
            "purged": True,
            "s3_versions_left": versions,
            "table_items_left": items,
            "receipt": True,
            "deleted": deleted,
        }

    def export(self, admin: AdminClient, seller: str, stored_reports: int) -> Export:
        try:
            answer = finished_export(admin, seller)
        except RuntimeError as exc:
            raise DemoFailure(f"the export did not finish: {exc}") from None
        expect(answer["status"] == "DONE", f"the export ended {answer['status']} ({answer.get('reason')})")
        say(f"  export requested (202), built by the export worker on the data_exports queue (drained): "
            f"{answer['objects_done']}/{answer['objects_total']} reports")
        url = str(answer.pop("url", ""))  # never printed
        try:
            export = verify_export(download_export(url))
        except ExportInvalid as exc:
            raise DemoFailure(f"the export failed verification: {exc}") from None
        counts = export.manifest["record_counts"]
        expect(counts["reports"] == stored_reports and counts["reports_missing"] == 0,
               f"the export holds {counts['reports']} reports of {stored_reports} stored")
        expect(export.files == answer["files"] and export.size == answer["zip_bytes"],
               "the downloaded export differs from what the API announced")
        say(f"  export: {export.files} files, {export.size} bytes, downloaded from the presigned S3 link, every "
            f"sha256 as in the manifest, no token in it")
        return export

    def check_purged(self, seller: str, region: str, key: str, purge_after: str) -> tuple[int, int, dict[str, int]]:
        """The AWS emulator's listings show nothing of the seller, and the receipt is there: versions and
        delete markers left, table items left, the receipt's deleted counts."""
        s3 = boto3.client("s3")
        bucket = self.stack.resources["buckets"]["data"]
        prefix = f"sellers/{key}/"  # objects name sellers by their opaque key only
        versions = markers = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            versions += len(page.get("Versions", []))
            markers += len(page.get("DeleteMarkers", []))
        uploads = len(s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []))
        items = len(self.items_of(seller, ""))
        expect(versions == markers == uploads == items == 0,
               f"the purge left {versions} object versions, {markers} delete markers, {uploads} uploads and "
               f"{items} table items")
        audit = boto3.resource("dynamodb").Table(self.stack.resources["tables"]["audit"])
        receipt: dict[str, Any] | None = audit.get_item(Key={"id": f"receipt#{key}#{region}#{purge_after}"},
                                                        ConsistentRead=True).get("Item")
        expect(receipt is not None, "no deletion receipt in the audit table")
        assert receipt is not None
        verification = {name: int(value) for name, value in receipt["verification"].items()}
        expect(not any(verification.values()), f"the receipt's verification is not all zeros: {verification}")
        deleted = {name: int(value) for name, value in receipt["deleted"].items()}
        say(f"  purged: {deleted['s3_versions']} object versions, {deleted['s3_delete_markers']} delete markers, "
            f"{deleted['table_items']} table items, {deleted['quota_items']} quota items; S3 and DynamoDB list "
            f"nothing of {seller} (ListObjectVersions, ListMultipartUploads, Query)")
        say(f"  the receipt is in the audit table under seller key {key} (no seller id), verification all zeros")
        return versions + markers, items, deleted

    def admin_json(self, admin: AdminClient, method: str, path: str) -> dict[str, Any]:
        try:
            return admin.json(method, path)
        except RuntimeError as exc:
            raise DemoFailure(str(exc)) from None

    # --- the token lifecycle --------------------------------------------------------------------

    def refresh_tokens(self) -> dict[str, Any]:
        """refresh-tokens finds the due connections and sends them to the token_refresh queue; the drain plays
        the queue's event source, whose batches renew them. The finder's report, with the LWA refresh calls
        the renewals made."""
        before = self.lwa_refreshes()
        found = self.fire("refresh-tokens")
        self.drain()
        return {**found, "lwa_refreshes": self.lwa_refreshes() - before}

    def lwa_refreshes(self) -> int:
        stats = requests.get(f"{self.amazon}/_emulator/stats", timeout=_TIMEOUT).json()
        return int(stats["lwa"]["refresh_token"])

    def refresh_sweep(self, sellers: list[tuple[str, str]]) -> int:
        say("the refresh-tokens schedule fires (every 5 minutes in AWS): it finds the due connections and sends "
            "them to the token_refresh queue, whose consumers renew them in parallel")
        report = self.refresh_tokens()
        refreshed = int(report["lwa_refreshes"])
        expect(
            report.get("found") == len(sellers) and refreshed == len(sellers),
            f"refresh-tokens should have refreshed {len(sellers)} connections: {_report(report)}",
        )
        for seller, marketplace in sellers:
            region = _REGION_OF[marketplace]
            cached = self.item(seller, region, "TOKEN")
            expect(cached is not None and bool(cached.get("token")), f"no cached access token for {seller} {region}")
            expect(not _contains(cached, b"Atza|"), f"the cached access token of {seller} {region} is plaintext")
        say(f"  {refreshed} access tokens refreshed into the shared cache, stored encrypted (no Atza| anywhere)")
        return refreshed

    def revocation(self, seller: str, region: str) -> dict[str, Any]:
        say(f"seller {seller} removes the app in Seller Central ({region})")
        answer = requests.post(
            f"{self.amazon}/_emulator/revoke", json={"selling_partner_id": seller, "region": region}, timeout=_TIMEOUT
        )
        expect(answer.status_code == 200, f"the emulator refused the revocation: {answer.status_code}")
        clock = requests.post(f"{self.api}/_local/clock", json={"advance_seconds": 3600}, timeout=_TIMEOUT)
        expect(clock.status_code == 200, f"/_local/clock answered {clock.status_code}")
        say(f"one hour passes (virtual clock now {clock.json()['now']}); the access tokens are due again")
        report = self.refresh_tokens()
        item = self.item(seller, region)
        expect(
            item is not None and item.get("status") == "REVOKED",
            f"the connection of {seller} in {region} is {item and item.get('status')}, not REVOKED",
        )
        assert item is not None
        tokens_left = int("refresh_token" in item) + int(self.item(seller, region, "TOKEN") is not None)
        expect(tokens_left == 0, f"{tokens_left} tokens of {seller} in {region} survived the revocation")
        purge_after = str(item.get("purge_after", ""))
        expect(bool(purge_after), "the REVOKED connection has no purge date")
        say(
            f"  LWA answered invalid_grant: {seller} {region} REVOKED, refresh and access tokens deleted, "
            f"the seller's data is purged after {purge_after}"
        )
        others = int(report["lwa_refreshes"]) - 1  # the revoked connection's refresh was refused
        say(f"  ({others} other connection{'' if others == 1 else 's'} refreshed in the same run)")

        say(f"seller {seller} authorizes the app again from the Appstore ({region})")
        self.authorize_from_appstore(seller, region)
        again = self.check_connection(seller, region)
        item = self.item(seller, region)
        expect(item is not None and "purge_after" not in item, "the purge date survived the new authorization")
        say(f"  {seller} {region} is ACTIVE again, purge date cleared")
        return {
            "detected": True,
            "purge_after": purge_after,
            "tokens_left": tokens_left,
            "reauthorized": again["status"] == "ACTIVE",
        }

    # --- reports ----------------------------------------------------------------------------------

    def reports(self, sellers: list[tuple[str, str]]) -> dict[str, Any]:
        first, marketplace = sellers[0]
        say(f"Amazon closes a settlement period for {first} (settlement reports are found, never requested)")
        answer = requests.post(
            f"{self.amazon}/_emulator/reports/documents",
            json={"selling_partner_id": first, "report_type": _SETTLEMENT, "outcome": "DONE",
                  "marketplace_ids": [_MARKETPLACE_ID[marketplace]]},
            timeout=_TIMEOUT,
        )
        expect(answer.status_code == 200, f"the emulator refused the settlement report: {answer.status_code}")
        # Data Kiosk (Sales and Traffic) takes minutes to hours; the demo asks the emulator for one to two minutes.
        say("Amazon's Data Kiosk is asked to finish Sales and Traffic queries within two minutes for the demo")
        timing = requests.post(f"{self.amazon}/_emulator/queries/timing", json={"min_seconds": 60, "max_seconds": 110},
                               timeout=_TIMEOUT)
        expect(timing.status_code == 200, f"the emulator refused the query timing: {timing.status_code}")

        say("the refresh-tokens schedule fires: the report fetcher only reads the shared token cache")
        refreshed = self.refresh_tokens()
        renewed = [self.item(seller, _REGION_OF[marketplace], "TOKEN") for seller, marketplace in sellers]
        expect(refreshed["lwa_refreshes"] == refreshed["found"] and all(item and item.get("token") for item in renewed),
               f"refresh-tokens failed before the reports: {_report(refreshed)}")
        say("the plan-reports schedule fires (every 15 minutes in AWS): it finds the due plans and sends them "
            "to report_plans")
        plan = self.fire("plan-reports")
        expect(plan.get("found") == len(sellers),
               f"plan-reports should have found {len(sellers)} due connections: {_report(plan)}")
        planned = self.drain(["report_plans"])
        jobs = int(planned["left"].get("report_jobs", 0))
        expect(jobs > 0, f"the planner sent no report job: {_report(planned['delivered'])}")
        say(f"  {plan['found']} due connections in {plan['messages']} report_plans message(s); drain: "
            f"{_delivered(planned)}, the planner sent {jobs} report job message(s)")
        # At most plan_max_jobs_per_connection new jobs per connection per run (createReport's burst): the EU
        # seller's five marketplaces need more, so it stays due and the next run plans the rest.
        rest = self.fire("plan-reports")
        more = int(self.drain(["report_plans"])["left"].get("report_jobs", 0)) - jobs
        say(f"the next plan-reports run finds {rest['found']} connection(s) still due (more windows than one run's "
            f"cap) and plans the rest: {more} more job message(s)")

        drained = self.drain()
        say(f"  drain: {_delivered(drained)}; the jobs requested their reports (createReport) and went back on "
            f"the queue with a delay ({drained['left'].get('report_jobs', 0)} waiting)")
        self.until_jobs_finish(sellers)

        summary = {"stored": 0, "bytes": 0, "no_data": 0}
        s3 = boto3.client("s3")
        bucket = self.stack.resources["buckets"]["data"]
        for seller, marketplace in sellers:
            region = _REGION_OF[marketplace]
            say(f"reports stored for {seller} ({region}):")
            for row in self.items_of(seller, f"REPORT#{region}#"):
                head = s3.head_object(Bucket=bucket, Key=row["s3_key"])
                expect(int(head["ContentLength"]) == int(row["bytes"]), f"{row['s3_key']} differs from its row")
                summary["stored"] += 1
                summary["bytes"] += int(row["bytes"])
                say(f"  {row['report_type']}: {_contents(row)}")
            no_data = [job for job in self.items_of(seller, "JOB#") if job["status"] == "NO_DATA"]
            summary["no_data"] += len(no_data)
            for job in no_data:
                say(f"  {job['report_type']}: no data ({job.get('error', '')})")
        expect(summary["stored"] > 0, "no report was stored")
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        expect(not uploads, f"{len(uploads)} multipart uploads were left open")
        say(f"  {summary['stored']} reports, {summary['bytes']} bytes in S3 (UTF-8, buyer addresses and comments "
            f"never kept), every job finished, no multipart upload left open")
        return summary

    def until_jobs_finish(self, sellers: list[tuple[str, str]]) -> None:
        """Moves the clock to the next job's check, wakes the parked jobs, drains; until every job ended."""
        for _ in range(_MAX_REPORT_ROUNDS):
            pending = self.pending_jobs(sellers)
            if not pending:
                break
            step = max(_REPORT_STEP_SECONDS, min(due for _, _, due in pending) - self.epoch_now())
            clock = requests.post(f"{self.api}/_local/clock", json={"advance_seconds": step}, timeout=_TIMEOUT)
            expect(clock.status_code == 200, f"/_local/clock answered {clock.status_code}")
            say(f"{_duration(step)} pass (Amazon finishes what is due and notifies); {_waiting(pending)}")
            # Parked jobs (waits longer than SQS's 15 minutes, or out of self-hops) go back on report_jobs
            # only through the wake-jobs schedule (every 5 minutes in AWS).
            woken = self.fire("wake-jobs")
            expect(woken.get("refused") == 0, f"wake-jobs could not send every woken job: {_report(woken)}")
            if woken.get("woken"):
                say(f"  the wake-jobs schedule sent {woken['woken']} parked job(s) back to the queue")
            drained = self.drain()
            say(f"  drain: {_delivered(drained)}")
        pending = self.pending_jobs(sellers)
        expect(not pending, f"report jobs still not finished after {_MAX_REPORT_ROUNDS} rounds: "
                            f"{_waiting(pending)}")

    def drain(self, queues: list[str] | None = None) -> dict[str, Any]:
        """Every queue's event source played (only those of `queues`, when given); no message may fail."""
        body: dict[str, Any] = {"max_seconds": 30, **({"queues": queues} if queues else {})}
        answer = requests.post(f"{self.api}/_local/drain", json=body, timeout=_TIMEOUT + 10)
        expect(answer.status_code == 200, f"/_local/drain answered {answer.status_code}")
        result: dict[str, Any] = answer.json()
        failed = {queue: n for queue, n in result["failed"].items() if n}
        expect(not failed, f"messages failed in the drain: {failed}")
        return result

    def pending_jobs(self, sellers: list[tuple[str, str]]) -> list[tuple[str, str, int]]:
        """(report type, status, next check as epoch seconds) of every job not finished yet."""
        return [(str(job["report_type"]), str(job["status"]), int(job["next_check_at"]))
                for seller, _ in sellers for job in self.items_of(seller, "JOB#")
                if job["status"] not in _TERMINAL]

    def epoch_now(self) -> int:
        now = requests.get(f"{self.api}/_local/clock", timeout=_TIMEOUT).json()["now"]
        return int(datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp())

    def items_of(self, seller: str, prefix: str) -> list[dict[str, Any]]:
        """The seller's items whose sort key starts with `prefix` (every item of the partition for "")."""
        condition: ConditionBase = Key("pk").eq(f"SELLER#{seller}")
        if prefix:
            condition = condition & Key("sk").begins_with(prefix)
        query: dict[str, Any] = {"KeyConditionExpression": condition, "ConsistentRead": True}
        items: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**query)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def fire(self, schedule: str) -> dict[str, Any]:
        answer = requests.post(f"{self.api}/_local/fire/{schedule}", timeout=_TIMEOUT)
        expect(answer.status_code == 200, f"/_local/fire/{schedule} answered {answer.status_code}")
        report: dict[str, Any] = answer.json()
        return report

    # --- the browser's part ---------------------------------------------------------------------

    def connect_from_website(self, seller: str, marketplace: str) -> None:
        browser = browser_session()
        start = browser.get(
            f"{self.api}/connect", params={"marketplace": marketplace}, allow_redirects=False, timeout=_TIMEOUT
        )
        consent_url = self._redirect(start, 302, "/connect")
        expect(consent_url.startswith(self.amazon), f"/connect sent the browser to {consent_url}, not to Amazon")
        say("  /connect answered 302 to the Seller Central consent page")
        answer = requests.post(
            f"{self.amazon}/_emulator/consent",
            json={"consent_url": consent_url, "selling_partner_id": seller},
            timeout=_TIMEOUT,
        )
        expect(answer.status_code == 200, f"the emulator refused the consent: {answer.status_code} {answer.text[:200]}")
        say("  the seller confirmed on the consent page; Amazon redirects to our /callback")
        self._finish_at_callback(browser, answer.json()["redirect"])
        self.confirm_consent(seller)

    def authorize_from_appstore(self, seller: str, region: str) -> None:
        answer = requests.post(
            f"{self.amazon}/_emulator/appstore", json={"selling_partner_id": seller, "region": region}, timeout=_TIMEOUT
        )
        expect(answer.status_code == 200, f"the emulator refused the Appstore authorization: {answer.status_code}")
        browser = browser_session()
        login = browser.get(answer.json()["login_url"], allow_redirects=False, timeout=_TIMEOUT)
        amazon_callback = self._redirect(login, 302, "/login")
        expect(amazon_callback.startswith(self.amazon), "/login did not send the browser back to Amazon")
        say("  our Log-in URI answered 302 to amazon_callback_uri")
        confirm = browser.get(amazon_callback, allow_redirects=False, timeout=_TIMEOUT)
        self._finish_at_callback(browser, self._redirect(confirm, 302, "amazon_callback_uri"))
        self.confirm_consent(seller)

    def _finish_at_callback(self, browser: requests.Session, callback_url: str) -> None:
        expect(callback_url.startswith(f"{self.api}/callback"), "Amazon did not redirect to our /callback")
        callback = browser.get(callback_url, allow_redirects=False, timeout=_TIMEOUT)
        success = urljoin(callback_url, self._redirect(callback, 303, "/callback"))
        page = browser.get(success, allow_redirects=False, timeout=_TIMEOUT)
        expect(page.status_code == 200 and "confirming with Amazon" in page.text,
               f"the success page {success} answered {page.status_code}")
        say("  /callback exchanged the code, kept the token as a consent waiting for Amazon, and answered 303 to "
            "the page 'Connected, confirming with Amazon'")

    @staticmethod
    def _redirect(response: requests.Response, status: int, step: str) -> str:
        expect(
            response.status_code == status and "Location" in response.headers,
            f"{step} answered {response.status_code} instead of a {status} redirect",
        )
        return response.headers["Location"]

    # --- what is stored -------------------------------------------------------------------------

    def item(self, seller: str, region: str, kind: str = "CONN") -> dict[str, Any] | None:
        key = {"pk": f"SELLER#{seller}", "sk": f"{kind}#{region}"}
        item: dict[str, Any] | None = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
        return item

    def connection_count(self) -> int:
        # A demo may scan a table it just filled; the product never does.
        items = self.table.scan(ProjectionExpression="sk")["Items"]
        return sum(1 for item in items if str(item["sk"]).startswith("CONN#"))

    def check_connection(self, seller: str, region: str) -> dict[str, Any]:
        item = self.item(seller, region)
        expect(item is not None, f"no connection stored for {seller} in {region}")
        assert item is not None
        expect(item.get("status") == "ACTIVE", f"the connection of {seller} in {region} is {item.get('status')}")
        encrypted = not _contains(item, b"Atzr|")
        expect(encrypted, f"the stored connection of {seller} in {region} holds a plaintext refresh token")
        live = self.token_is_live(seller, region)
        expect(live, f"the stored refresh token of {seller} in {region} does not refresh at LWA")
        say(f"  stored: {seller} {region} ACTIVE, token encrypted, decrypts through the vault to a live token")
        return {
            "seller": seller,
            "region": region,
            "status": "ACTIVE",
            "token_encrypted": encrypted,
            "token_live": live,
        }

    def sealed_token(self, seller: str, region: str) -> Any:
        """The stored ciphertext, read through the product's own repository."""
        # The shared layer's path is set by the stack at start, as Lambda sets it.
        from seller_insights.repositories import ConnectionsRepository  # noqa: PLC0415

        return ConnectionsRepository(self.table).sealed_refresh_token(seller, region)

    def token_is_live(self, seller: str, region: str) -> bool:
        """Open the sealed token through the product's own vault and use it once at LWA (never shown)."""
        from seller_insights.vault import Purpose, SecretContext, Vault  # noqa: PLC0415

        sealed = self.sealed_token(seller, region)
        expect(sealed is not None, f"no sealed refresh token for {seller} in {region}")
        assert sealed is not None
        vault = Vault(boto3.client("kms"), os.environ["TOKEN_KEY_ID"])
        refresh_token = vault.open(sealed, SecretContext(Purpose.REFRESH_TOKEN, seller, region))
        answer = requests.post(
            f"{self.amazon}/_hosts/api.amazon.com/auth/o2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.stack.amazon.client_id,
                "client_secret": self.stack.amazon.client_secret,
            },
            timeout=_TIMEOUT,
        )
        return answer.status_code == 200 and bool(answer.json().get("access_token"))


def _delivered(drained: dict[str, Any]) -> str:
    delivered = {queue: n for queue, n in drained["delivered"].items() if n}
    if not delivered:
        return "nothing to deliver"
    return ", ".join(f"{n} from {queue}" for queue, n in delivered.items())


_WAITING_FOR = {"WAITING": "at Amazon", "NEW": "waiting for a quota or a token", "COOLDOWN": "cooling down after FATAL"}


def _waiting(pending: list[tuple[str, str, int]]) -> str:
    """'3 reports at Amazon; 1 waiting for a quota or a token (SALES_AND_TRAFFIC_REPORT)'"""
    parts = []
    for status, meaning in _WAITING_FOR.items():
        types = sorted({t.removeprefix("GET_") for t, s, _ in pending if s == status})
        n = sum(1 for _, s, _ in pending if s == status)
        if n:
            parts.append(f"{n} {meaning} ({', '.join(types)})" if status != "WAITING" else f"{n} {meaning}")
    return "; ".join(parts)


def _contents(row: dict[str, Any]) -> str:
    if str(row["s3_key"]).endswith(".tsv"):
        dropped = len(row.get("dropped_columns") or [])
        kept = f", {dropped} column{'' if dropped == 1 else 's'} not kept" if dropped else ""
        return f"{row['rows']} rows, {row['bytes']} bytes{kept}"
    return f"{row['bytes']} bytes of {str(row['s3_key']).rsplit('.', 1)[-1].upper()}"


def _duration(seconds: int) -> str:
    return f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"


def _report(report: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in report.items() if v not in (None, 0))


def _contains(value: Any, needle: bytes) -> bool:
    if isinstance(value, dict):
        return any(_contains(v, needle) for v in value.values())
    if isinstance(value, list | set | tuple):
        return any(_contains(v, needle) for v in value)
    if isinstance(value, str):
        return needle.decode() in value
    raw = getattr(value, "value", value)  # boto3's Binary wraps bytes
    return isinstance(raw, bytes | bytearray) and needle in raw
