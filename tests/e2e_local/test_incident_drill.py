"""The incident drill (docs/incident-response.md, "Drill") on `python -m local serve`: sellers connect, then
`ops incident contain` → `ops incident affected` → `ops incident restore`, checking at each step what the
product does (consent, schedules, the token cache, refreshes) and what the audit table records.

The ops commands run in this process against the stack (`--local`), as an operator would run them. Contact
data appears only in the CSV the test reads from the command's stdout; assertion messages carry counts.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from local.admin import AdminClient
from ops.cli import main as ops
from seller_insights.app_gate import CACHE_SECONDS, RETRY_AFTER_SECONDS
from tests.support.e2e import (
    TIMEOUT,
    advance,
    connect,
    drain,
    fire,
    new_seller,
    refresh_tokens,
    stats,
    virtual_now,
)
from tests.support.local_stack import every_item, stack_of_its_own, stack_table

pytestmark = pytest.mark.slow

# A stack of this module's own: it moves the clock and disables its schedules.
info = stack_of_its_own("incident")


def run_ops(info: dict[str, Any], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = ops(["incident", *argv, "--local", info["api"]], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def token_items(info: dict[str, Any]) -> list[dict[str, Any]]:
    return every_item(stack_table(info, "connections").scan, FilterExpression="begins_with(sk, :t)",
                      ExpressionAttributeValues={":t": "TOKEN#"}, ProjectionExpression="pk, sk")


def connection(info: dict[str, Any], seller: str) -> dict[str, Any]:
    item: dict[str, Any] = stack_table(info, "connections").get_item(
        Key={"pk": f"SELLER#{seller}", "sk": "CONN#NA"}, ConsistentRead=True)["Item"]
    return item


def incident_records(info: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in every_item(stack_table(info, "audit").scan) if str(r.get("type", "")).startswith("incident_")]


def token_refresher(info: dict[str, Any]) -> str:
    inventory = requests.get(f"{info['api']}/_local/stack", timeout=TIMEOUT).json()["inventory"]
    (logical_id,) = [r["logical_id"] for r in inventory if r["purpose"] == "token_refresher"]
    return str(logical_id)


def find_due_refreshes_by_hand(info: dict[str, Any]) -> dict[str, Any]:
    """The refresh-tokens finder invoked directly (its schedule is disabled), then the queues drained: what an
    operator or a stray trigger could still cause while contained."""
    answer = requests.post(f"{info['api']}/_local/invoke/{token_refresher(info)}", json={"task": "refresh-tokens"},
                           timeout=TIMEOUT)
    assert answer.status_code == 200, answer.status_code
    drained = drain(info)
    return {**answer.json(), "failed": drained["failed"].get("token_refresh", 0)}


def test_drill_contain_affected_restore(info: dict[str, Any], tmp_path: Path) -> None:
    # --- before: two connected sellers, one with contact data, their access tokens cached ---
    contacted, silent = new_seller(), new_seller()
    for seller in (contacted, silent):
        connect(info, seller)  # the consent, and Amazon's confirmation of the seller
    assert refresh_tokens(info)["lwa_refreshes"] == 2
    AdminClient.from_info(info).json("PATCH", f"/admin/sellers/{contacted}",
                                     {"contact_email": "drill.contact@example.com", "contact_name": "Drill Contact"})
    assert len(token_items(info)) == 2
    started = virtual_now(info)

    # --- contain ---
    code, out, err = run_ops(info, "contain", "--reason", "drill", "--settle", "0")
    assert code == 0, err
    contained = json.loads(out)
    assert contained["access_tokens_deleted"] == 2 and not contained["already_contained"]
    schedules = contained["schedules_disabled"]
    assert len(schedules) == contained["schedules_found"] >= 6
    # A second contain changes nothing more and keeps the first one's record.
    code, out, _ = run_ops(info, "contain", "--settle", "0")
    assert code == 0 and json.loads(out)["already_contained"] and json.loads(out)["schedules_disabled"] == []
    advance(info, CACHE_SECONDS)  # every container's cached switch expires

    consent = requests.get(f"{info['api']}/connect", params={"marketplace": "US"}, allow_redirects=False,
                           timeout=TIMEOUT)
    assert consent.status_code == 503
    assert consent.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert "Connecting is paused" in consent.text
    fired = requests.post(f"{info['api']}/_local/fire/refresh-tokens", timeout=TIMEOUT)
    assert fired.status_code == 409 and fired.json()["state"] == "DISABLED"
    assert token_items(info) == []
    # An hour later the connections are due; a refresh attempted anyway fails closed: no refresh token used,
    # the connection as it was.
    advance(info, 3600)
    before = {seller: connection(info, seller) for seller in (contacted, silent)}
    refreshes = stats(info)["lwa"]["refresh_token"]
    found = find_due_refreshes_by_hand(info)
    assert found["found"] == 2 and found["failed"] == 0
    assert stats(info)["lwa"]["refresh_token"] == refreshes
    assert {seller: connection(info, seller) for seller in before} == before
    assert all(item["status"] == "ACTIVE" for item in before.values())
    assert token_items(info) == []

    # --- affected ---
    draft = tmp_path / "amazon-notification.md"
    code, out, err = run_ops(info, "affected", "--since", (started - timedelta(hours=1)).isoformat(),
                             "--until", (started + timedelta(hours=2)).isoformat(), "--draft", str(draft))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(row["seller_id"] for row in rows) == sorted([contacted, silent])
    by_seller = {row["seller_id"]: row for row in rows}
    assert (by_seller[contacted]["contact_email"], by_seller[contacted]["contact_name"]) == (
        "drill.contact@example.com", "Drill Contact")
    assert by_seller[silent]["contact_email"] == "" and by_seller[silent]["contact_name"] == ""
    assert all(row["region"] == "NA" and row["tokens_held_in_window"] == "yes" for row in rows)
    text = draft.read_text()
    assert "security@amazon.com" in text
    assert "reachable: 2 (2 regional connections; by region: NA: 2)" in text
    assert "refresh tokens held in the window: 2" in text
    assert contacted not in text and "drill.contact@example.com" not in text  # counts only

    # --- restore ---
    code, out, err = run_ops(info, "restore", "--reason", "drill over")
    assert code == 0, err
    restored = json.loads(out)
    assert restored["restored"] and sorted(restored["schedules_enabled"]) == sorted(schedules)
    advance(info, CACHE_SECONDS)
    again = requests.get(f"{info['api']}/connect", params={"marketplace": "US"}, allow_redirects=False,
                         timeout=TIMEOUT)
    assert again.status_code == 302
    renewed = refresh_tokens(info)
    assert renewed["found"] == 2 and renewed["lwa_refreshes"] == 2
    assert len(token_items(info)) == 2
    code, out, _ = run_ops(info, "restore")
    assert code == 0 and json.loads(out) == {"restored": False, "contained": False}

    # --- the audit trail: who did what, with counts, never contact data ---
    records = incident_records(info)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_type.setdefault(record["type"], []).append(record)
    assert sorted((kind, len(found)) for kind, found in by_type.items()) == [
        ("incident_affected", 1), ("incident_contain", 2), ("incident_restore", 1)]
    (first,) = [r for r in by_type["incident_contain"] if r.get("reason") == "drill"]
    assert first["reason"] == "drill" and first["principal_arn"].startswith("arn:aws:")
    assert int(first["detail"]["access_tokens_deleted"]) == 2
    assert sorted(by_type["incident_restore"][0]["changes"]["rules_enabled"]) == sorted(schedules)
    assert int(by_type["incident_affected"][0]["detail"]["sellers"]) == 2
    dumped = json.dumps(records, default=str)
    assert "drill.contact@example.com" not in dumped and contacted not in dumped


def lwa_client_secret(info: dict[str, Any]) -> dict[str, Any]:
    client = boto3.client("secretsmanager", endpoint_url=info["aws"], region_name=info["region"])
    (arn,) = [entry["ARN"] for entry in client.list_secrets()["SecretList"]
              if {"Key": "seller-insights:purpose", "Value": "lwa_client"} in entry.get("Tags", [])]
    value: dict[str, Any] = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    return value


def test_revoke_all_rotates_the_secret_and_asks_every_seller_to_authorize_again(info: dict[str, Any]) -> None:
    seller = new_seller()
    connect(info, seller)
    before = lwa_client_secret(info)
    code, _, err = run_ops(info, "revoke-all")
    assert code == 2 and "--yes" in err
    assert lwa_client_secret(info)["client_secret"] == before["client_secret"]

    code, out, err = run_ops(info, "revoke-all", "--yes", "--reason", "drill: worst case")
    assert code == 0, err
    revoked = json.loads(out)
    assert revoked["rotation"] == "rotated" and revoked["connections_marked"] >= 1
    # Amazon sends the new secret by notification; the token refresher stores it, keeping the old one's overlap.
    assert drain(info)["delivered"].get("notifications", 0) == 1
    after = lwa_client_secret(info)
    assert after["client_secret"] != before["client_secret"]
    assert after["previous_client_secret"] == before["client_secret"]
    # Every ACTIVE connection is due for re-authorization now: the daily digest lists them all.
    now = virtual_now(info)
    assert datetime.fromisoformat(connection(info, seller)["reauthorization_due_at"].replace("Z", "+00:00")) <= now
    digest = fire(info, "check-reauthorization")
    assert digest["due"] == revoked["connections_marked"], digest
    # The product goes on with the new secret.
    advance(info, 3600)
    assert refresh_tokens(info)["failed"] == 0
    (record,) = [r for r in incident_records(info) if r["type"] == "incident_revoke_all"]
    assert int(record["detail"]["connections_marked"]) == revoked["connections_marked"]
    assert record["changes"]["rotation"] == "rotated"
