"""The forged-callback attack through `python -m local serve` (issue "Trust", section 1 and 2).

Seller X consents with its own Amazon account and edits `selling_partner_id` in Amazon's redirect to
seller Y (X's own state and cookie). Before this issue that overwrote Y's connection with X's token,
cancelled Y's pending deletion, and X's later revocation revoked Y. Now: the consent waits for Amazon,
which names X, so it is destroyed; Y's connection, token and pending deletion are untouched; X removing
the app changes nothing for Y. Driven over HTTP only (our routes, the schedules, the Amazon emulator's
control calls, the signed admin routes); boto3 against the printed AWS endpoint only to look. A stack
of its own: it moves the clock.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from local.admin import AdminClient
from local.browser import browser_session
from tests.support.e2e import (
    TIMEOUT,
    advance,
    connect,
    new_seller,
    post,
    redirect,
    refresh_tokens,
    stored,
    verify_consents,
)
from tests.support.local_stack import every_item, stack_of_its_own, stack_seller_key, stack_table

pytestmark = pytest.mark.slow


info = stack_of_its_own("consent-identity")


def forge(info: dict[str, Any], attacker: str, victim: str) -> requests.Response:
    """X's own consent, with Y's id written into Amazon's redirect; the page our callback leads to."""
    browser = browser_session()
    start = browser.get(f"{info['api']}/connect", params={"marketplace": "US"}, allow_redirects=False,
                        timeout=TIMEOUT)
    answer = post(f"{info['amazon']}/_emulator/consent",
                  {"consent_url": redirect(start, 302), "selling_partner_id": attacker})
    forged = str(answer["redirect"]).replace(f"selling_partner_id={attacker}", f"selling_partner_id={victim}")
    assert forged != answer["redirect"]
    callback = browser.get(forged, allow_redirects=False, timeout=TIMEOUT)
    if callback.status_code != 303:
        return callback
    return browser.get(urljoin(forged, callback.headers["Location"]), allow_redirects=False, timeout=TIMEOUT)


def audit(info: dict[str, Any], outcome: str) -> list[dict[str, Any]]:
    records = every_item(stack_table(info, "audit").scan)
    return [record for record in records if record.get("outcome") == outcome]


def candidates(info: dict[str, Any], seller: str) -> list[dict[str, Any]]:
    return stack_table(info, "connections").query(KeyConditionExpression="pk = :pk",
                                   ExpressionAttributeValues={":pk": f"CANDIDATE#{seller}"})["Items"]


def test_a_forged_callback_takes_over_nothing(info: dict[str, Any]) -> None:
    victim, attacker = new_seller(), new_seller()
    connect(info, victim)  # the victim's own consent, confirmed by Amazon
    before = stored(info, victim, "CONN#NA")
    assert before is not None and before["status"] == "ACTIVE"

    page = forge(info, attacker, victim)
    assert page.status_code == 200 and "Connected, confirming with Amazon" in page.text
    assert stored(info, victim, "CONN#NA") == before  # the consent alone changed nothing

    report = verify_consents(info)
    assert (report["mismatched"], report["verified"]) == (1, 0), report
    assert stored(info, victim, "CONN#NA") == before
    assert candidates(info, victim) == []
    assert stored(info, attacker, "CONN#NA") is None
    (record,) = [r for r in audit(info, "identity_mismatch") if r["seller_key"] == stack_seller_key(info, victim)]
    assert record["other_seller_key"] == stack_seller_key(info, attacker)
    assert victim not in repr(record) and attacker not in repr(record)

    # The attacker removes the app: its revocation reaches nothing of the victim's.
    post(f"{info['amazon']}/_emulator/revoke", {"selling_partner_id": attacker, "region": "NA"})
    advance(info, 3600)
    swept = refresh_tokens(info)
    assert swept["failed"] == 0, swept
    after = stored(info, victim, "CONN#NA")
    assert after is not None and after["status"] == "ACTIVE" and "purge_after" not in after
    assert after["refresh_token"] == before["refresh_token"]


def test_a_consent_never_cancels_a_pending_deletion(info: dict[str, Any]) -> None:
    victim, attacker = new_seller(), new_seller()
    connect(info, victim)
    admin = AdminClient.from_info(info)
    purge_after = str(admin.json("POST", f"/admin/sellers/{victim}/deletion")["purge_after"])
    before = stored(info, victim, "CONN#NA")
    assert before is not None and before["status"] == "DELETION_REQUESTED"

    # Someone else claiming the victim learns nothing and changes nothing.
    forged = forge(info, attacker, victim)
    assert forged.status_code == 400 and "belongs to another account" in forged.text
    assert purge_after[:10] not in forged.text
    # The victim itself is told the date and how to keep its data; nothing is stored.
    browser = browser_session()
    start = browser.get(f"{info['api']}/connect", params={"marketplace": "US"}, allow_redirects=False,
                        timeout=TIMEOUT)
    answer = post(f"{info['amazon']}/_emulator/consent",
                  {"consent_url": redirect(start, 302), "selling_partner_id": victim})
    own = browser.get(answer["redirect"], allow_redirects=False, timeout=TIMEOUT)
    assert own.status_code == 409 and purge_after[:10] in own.text and "support" in own.text

    assert stored(info, victim, "CONN#NA") == before
    assert candidates(info, victim) == []
    assert verify_consents(info)["due"] == 0
    shown = admin.json("GET", f"/admin/sellers/{victim}")
    assert shown["connections"][0]["status"] == "DELETION_REQUESTED"
    assert shown["connections"][0]["purge_after"] == purge_after
    assert [r for r in audit(info, "deletion_pending") if r["seller_key"] == stack_seller_key(info, victim)]


def test_the_admin_view_shows_a_waiting_consent_with_its_age(info: dict[str, Any]) -> None:
    seller = new_seller()
    browser = browser_session()
    start = browser.get(f"{info['api']}/connect", params={"marketplace": "DE"}, allow_redirects=False,
                        timeout=TIMEOUT)
    answer = post(f"{info['amazon']}/_emulator/consent", {"consent_url": redirect(start, 302),
                                                          "selling_partner_id": seller})
    assert browser.get(answer["redirect"], allow_redirects=False, timeout=TIMEOUT).status_code == 303
    advance(info, 30)
    shown = AdminClient.from_info(info).json("GET", f"/admin/sellers/{seller}")
    (waiting,) = shown["connections"]
    assert waiting["status"] == "PENDING_VERIFICATION" and waiting["region"] == "EU"
    (candidate,) = waiting["pending_candidates"]
    # The stack's virtual clock runs on from the wall clock: the 30 moved seconds plus what the calls took.
    assert 30 <= candidate["age_seconds"] < 60 and candidate["attempts"] == 0
    assert verify_consents(info)["verified"] == 1
    shown = AdminClient.from_info(info).json("GET", f"/admin/sellers/{seller}")
    assert shown["connections"][0]["status"] == "ACTIVE" and shown["connections"][0]["pending_candidates"] == []
