"""Retention and data rights through `python -m local serve` (docs/internal-contracts.md, "Retention and
data rights (issue 5)"): the SigV4-only admin routes, the portability export, the deletion request and
the retention sweep that purges every S3 version, delete marker and table item and writes a receipt,
and the rollback of a deletion request before its date.

Driven over HTTP only (our API signed with the printed `admin` credentials, `python -m ops`, the control
calls); boto3 against the printed AWS endpoint only to verify what is stored. The tests move the
clock by a month, so they run against a serve process of their own. Nothing here prints a token, a
presigned URL or a secret: assertion messages carry statuses, counts and file names only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from local.admin import AdminClient, download_export, finished_export, signed_headers, verify_export, virtual_now
from tests.support.e2e import (
    MONTH_AND_A_DAY,
    TIMEOUT,
    advance,
    bucket,
    connect,
    drain,
    fire,
    new_seller,
    plan_reports,
    receipts,
    refresh_tokens,
    s3,
    sells_only_in,
    sweep_retention,
    versions_left,
)
from tests.support.local_stack import REPO, seller_items, stack_of_its_own, stack_seller_key

pytestmark = pytest.mark.slow
REPORT_SECONDS = 120
MAX_ROUNDS = 4
TERMINAL = {"DONE", "NO_DATA", "FAILED", "ENDED"}
PLAINTEXT_MARKERS = ("Atzr|", "Atza|")


# A stack of this module's own: it moves the clock.
info = stack_of_its_own("retention")


@pytest.fixture(scope="module")
def admin(info: dict[str, Any]) -> AdminClient:
    return AdminClient.from_info(info)


# --- helpers ------------------------------------------------------------------------------------


def pull_reports(info: dict[str, Any], seller: str) -> list[dict[str, Any]]:
    """refresh-tokens, plan-reports, drain, two minutes, drain (bounded): the seller's `REPORT#` rows."""
    refreshed = refresh_tokens(info)
    assert refreshed["failed"] == 0, refreshed
    plan = plan_reports(info)
    assert plan["found"] >= 1 and plan["planned"] >= 1 and plan["job_messages"] >= 1, plan
    drain(info)
    for _ in range(MAX_ROUNDS):
        advance(info, REPORT_SECONDS)
        result = drain(info)
        assert not any(result["failed"].values()), result["failed"]
        jobs = seller_items(info, seller, "JOB#")
        # Sales and traffic may wait for the app-wide quota (another seller spent it): not needed here.
        if all(job["status"] in TERMINAL for job in jobs if job["report_type"] != "GET_SALES_AND_TRAFFIC_REPORT"):
            break
    rows = seller_items(info, seller, "REPORT#")
    assert len(rows) >= 2, f"only {len(rows)} reports stored"
    return rows


def connected_with_reports(info: dict[str, Any], admin: AdminClient) -> dict[str, Any]:
    seller = new_seller()
    sells_only_in(info, seller, "NA", "US")  # one job per type
    connect(info, seller, "US")
    rows = pull_reports(info, seller)
    contact = {"contact_email": "owner@example.com", "contact_name": "Dana Example"}
    corrected = admin.json("PATCH", f"/admin/sellers/{seller}", contact)
    assert {name: corrected[name] for name in contact} == contact
    return {"seller": seller, "rows": rows, "contact": contact}


def uploads_left(info: dict[str, Any], prefix: str) -> int:
    return len(s3(info).list_multipart_uploads(Bucket=bucket(info), Prefix=prefix).get("Uploads", []))


def partition(info: dict[str, Any], seller: str) -> list[dict[str, Any]]:
    """Every item under `pk=SELLER#{seller}` in the connections table (a Query of the partition)."""
    return seller_items(info, seller)


def holds_plaintext(value: Any) -> bool:
    return any(marker in json.dumps(value, default=str) for marker in PLAINTEXT_MARKERS)


# --- the tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subject(info: dict[str, Any], admin: AdminClient) -> dict[str, Any]:
    """A US seller with reports stored and contact details: exported, then deleted."""
    return connected_with_reports(info, admin)


def test_admin_routes_answer_only_signed_requests(info: dict[str, Any], admin: AdminClient,
                                                  subject: dict[str, Any]) -> None:
    seller = subject["seller"]
    path = f"/admin/sellers/{seller}"
    unsigned = requests.get(f"{info['api']}{path}", timeout=TIMEOUT)
    assert unsigned.status_code == 401 and unsigned.json() == {"message": "Unauthorized"}
    wrong = admin.call("GET", path, secret_access_key="W" * 40)
    assert wrong.status_code == 403 and wrong.json() == {"message": "Forbidden"}
    # Signed long ago (outside the 5-minute window around the virtual clock): refused too.
    stale = signed_headers("GET", f"{info['api']}{path}", b"", access_key_id=admin.access_key_id,
                           secret_access_key=admin.secret_access_key,
                           at=min(virtual_now(info["api"]), datetime.now(UTC)) - timedelta(minutes=10))
    assert requests.get(f"{info['api']}{path}", headers=stale, timeout=TIMEOUT).status_code == 403

    shown = admin.json("GET", path)
    assert [(c["region"], c["status"]) for c in shown["connections"]] == [("NA", "ACTIVE")]
    assert shown["stored_reports"]["NA"]["reports"] == len(subject["rows"])
    assert shown["stored_reports"]["NA"]["bytes"] == sum(int(row["bytes"]) for row in subject["rows"])
    assert {name: shown["profile"][name] for name in subject["contact"]} == subject["contact"]
    assert not holds_plaintext(shown)
    assert shown["connections"][0]["has_refresh_token"] is True
    assert not {"refresh_token", "sealed_refresh_token", "token"} & set(shown["connections"][0])


def test_ops_cli_shows_the_seller_with_the_printed_credentials(info: dict[str, Any], subject: dict[str, Any]) -> None:
    # `python -m ops` signs with the wall clock, which the gateway accepts beside its virtual one.
    env = {name: value for name, value in os.environ.items()
           if name not in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")}
    env |= {"AWS_ACCESS_KEY_ID": info["admin"]["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": info["admin"]["secret_access_key"]}
    done = subprocess.run([sys.executable, "-m", "ops", "show", subject["seller"], "--api", info["api"]],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-500:]
    shown = json.loads(done.stdout)
    assert [c["status"] for c in shown["connections"]] == ["ACTIVE"]
    assert shown["profile"]["contact_email"] == subject["contact"]["contact_email"]


def test_ops_cli_exports_against_the_local_stack_with_drain(info: dict[str, Any], subject: dict[str, Any],
                                                            tmp_path: Any) -> None:
    env = {name: value for name, value in os.environ.items()
           if name not in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")}
    env |= {"AWS_ACCESS_KEY_ID": info["admin"]["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": info["admin"]["secret_access_key"]}
    out = tmp_path / "export.zip"
    done = subprocess.run([sys.executable, "-m", "ops", "export", subject["seller"], "--api", info["api"],
                           "--out", str(out), "--drain", "--wait", "5"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-800:]
    result = json.loads(done.stdout)
    assert result["verified"] is True and result["files"] == len(subject["rows"]) + 3
    assert out.stat().st_size == result["bytes"]
    assert "export DONE" in done.stderr and f"{len(subject['rows'])}/{len(subject['rows'])} reports" in done.stderr
    assert "X-Amz-Signature" not in done.stdout + done.stderr  # the URL is never printed


def test_export_holds_what_is_stored_with_checksums(info: dict[str, Any], admin: AdminClient,
                                                    subject: dict[str, Any]) -> None:
    seller, rows = subject["seller"], subject["rows"]
    answer = finished_export(admin, seller)  # 202, the export worker runs on a drain, then DONE
    assert (answer["status"], answer["objects_done"], answer["objects_total"]) == ("DONE", len(rows), len(rows))
    url = str(answer.pop("url"))
    assert url.startswith(info["aws"]), "the presigned URL does not point at the AWS emulator"
    assert answer["expires_in"] == 900
    export = verify_export(download_export(url))  # every file's sha256 and size, no Atzr|/Atza|
    assert export.files == answer["files"] and export.size == answer["zip_bytes"]

    counts = export.manifest["record_counts"]
    assert counts == {"connections": 1, "profile": 1, "reports": len(rows), "reports_missing": 0,
                      "report_rows": sum(int(row.get("rows", 0)) for row in rows)}
    listed = {entry["path"]: entry for entry in export.manifest["files"]}
    for row in rows:
        member = "reports/NA/" + str(row["s3_key"]).split("/NA/reports/", 1)[1]
        assert listed[member]["sha256"] == row["sha256"], member
        assert int(listed[member]["bytes"]) == int(row["bytes"]), member
        stored = s3(info).get_object(Bucket=bucket(info), Key=row["s3_key"])["Body"].read()
        assert export.member(member) == stored, member
    assert set(listed) == {"connections.json", "profile.json", "reports.csv"} | {
        "reports/NA/" + str(row["s3_key"]).split("/NA/reports/", 1)[1] for row in rows}
    connections = json.loads(export.member("connections.json"))
    assert [(c["seller_id"], c["region"], c["status"]) for c in connections] == [(seller, "NA", "ACTIVE")]
    assert not {"refresh_token", "sealed_refresh_token", "token"} & {k for c in connections for k in c}
    profile = json.loads(export.member("profile.json"))
    assert {name: profile[name] for name in subject["contact"]} == subject["contact"]
    assert len(export.member("reports.csv").decode().splitlines()) == len(rows) + 1


def test_deletion_stops_pulls_and_the_sweep_purges_everything(info: dict[str, Any], admin: AdminClient,
                                                                subject: dict[str, Any]) -> None:
    seller = subject["seller"]
    key = admin.json("GET", f"/admin/sellers/{seller}")["seller_key"]
    prefix = f"sellers/{key}/"
    stored_versions, _ = versions_left(info, prefix)
    assert stored_versions >= len(subject["rows"])

    requested = admin.json("POST", f"/admin/sellers/{seller}/deletion")
    assert requested["connections"] == 1
    purge_after = str(requested["purge_after"])
    assert abs(datetime.fromisoformat(purge_after.replace("Z", "+00:00"))
               - virtual_now(info["api"]) - timedelta(days=27)) < timedelta(days=1)
    items = partition(info, seller)
    conn = next(item for item in items if item["sk"] == "CONN#NA")
    assert conn["status"] == "DELETION_REQUESTED" and conn["purge_after"] == purge_after
    assert not [item["sk"] for item in items if item["sk"].startswith(("PLAN#", "TOKEN#"))]
    # Pulls stopped: the schedules find nothing of this seller to do.
    fire(info, "refresh-tokens")
    fire(info, "plan-reports")
    drain(info)
    assert not [item["sk"] for item in partition(info, seller) if item["sk"].startswith(("PLAN#", "TOKEN#"))]
    shown = admin.json("GET", f"/admin/sellers/{seller}")
    assert [c["status"] for c in shown["connections"]] == ["DELETION_REQUESTED"]

    # Before the date the sweep leaves it alone.
    early = sweep_retention(info)
    assert early["found"] == 0 and early["failed"] == 0, early
    assert partition(info, seller)

    advance(info, MONTH_AND_A_DAY)
    swept = sweep_retention(info)  # the finder sends the purge, the drain of retention_purges does it
    assert swept["found"] >= 1 and swept["handled"] >= 1 and swept["failed"] == 0, swept

    # The AWS emulator's own listings: nothing of the seller is left.
    assert versions_left(info, prefix) == (0, 0)
    assert uploads_left(info, prefix) == 0
    assert partition(info, seller) == []
    found = receipts(info, key)
    assert [r["id"] for r in found] == [f"receipt#{key}#NA#{purge_after}"]
    receipt = found[0]
    assert receipt["seller_key"] == key and receipt["region"] == "NA" and receipt["reason"] == "deletion_requested"
    assert receipt["purge_after"] == purge_after and receipt["verified_at"] >= purge_after
    deleted = {name: int(value) for name, value in receipt["deleted"].items()}
    assert deleted["s3_versions"] >= stored_versions and deleted["table_items"] >= len(subject["rows"])
    assert set(deleted) == {"s3_versions", "s3_delete_markers", "multipart_uploads", "table_items", "quota_items"}
    verification = {name: int(value) for name, value in receipt["verification"].items()}
    assert verification and set(verification.values()) == {0}
    assert {"s3_versions", "s3_delete_markers", "table_items"} <= set(verification)
    assert seller not in json.dumps(receipt, default=str) and "example.com" not in json.dumps(receipt, default=str)
    unknown = admin.call("GET", f"/admin/sellers/{seller}")
    assert unknown.status_code == 404

    # A second sweep has nothing to do and changes nothing.
    again = sweep_retention(info)
    assert again["found"] == 0 and again["handled"] == 0 and again["failed"] == 0, again
    assert [r["id"] for r in receipts(info, key)] == [receipt["id"]]


def test_a_rolled_back_deletion_keeps_the_seller_through_the_sweep(info: dict[str, Any],
                                                                   admin: AdminClient) -> None:
    seller = connected_with_reports(info, admin)["seller"]
    path = f"/admin/sellers/{seller}/deletion"
    key = admin.json("GET", f"/admin/sellers/{seller}")["seller_key"]
    admin.json("POST", path)
    assert not [item for item in partition(info, seller) if item["sk"].startswith("PLAN#")]

    rolled_back = admin.json("DELETE", path)
    assert rolled_back["connections"] == 1
    items = {item["sk"]: item for item in partition(info, seller)}
    assert items["CONN#NA"]["status"] == "ACTIVE"
    assert "purge_after" not in items["CONN#NA"] and "purge_shard" not in items["CONN#NA"]
    assert "PLAN#NA" in items, "the rollback did not re-create the report plan"
    again = admin.call("DELETE", path)
    assert again.status_code == 409
    before_keys = set(items)
    before_versions = versions_left(info, f"sellers/{stack_seller_key(info, seller)}/")
    assert before_versions[0] >= 2

    advance(info, MONTH_AND_A_DAY)
    swept = sweep_retention(info)
    assert swept["failed"] == 0, swept
    after = {item["sk"]: item for item in partition(info, seller)}
    assert after["CONN#NA"]["status"] == "ACTIVE"
    assert before_keys <= set(after), sorted(before_keys - set(after))
    assert versions_left(info, f"sellers/{stack_seller_key(info, seller)}/") == before_versions
    assert receipts(info, key) == []
    assert [c["status"] for c in admin.json("GET", f"/admin/sellers/{seller}")["connections"]] == ["ACTIVE"]
    # Pulls resumed: the plan finds the connection again and its token refreshes.
    refreshed = refresh_tokens(info)
    assert refreshed["failed"] == 0 and refreshed["lwa_refreshes"] >= 1, refreshed
    assert plan_reports(info)["found"] >= 1
