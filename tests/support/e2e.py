"""Helpers of the e2e tests against `python -m local serve`: HTTP calls to our API, its control calls and
the Amazon emulator's, the website's consent flow, and boto3 against the printed AWS endpoint to look at
what is stored. Shared by the modules of tests/e2e_local (a test module never imports another)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import boto3
import requests

from local.browser import browser_session
from tests.support.local_stack import every_item, stack_table

TIMEOUT = 30
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# A month and a day: past a deletion request's grace period.
MONTH_AND_A_DAY = 31 * 24 * 3600


# --- helpers: HTTP ------------------------------------------------------------------------------


def new_seller() -> str:
    return "A" + "".join(secrets.choice(ALPHABET) for _ in range(13))


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def post(url: str, body: Any = None) -> dict[str, Any]:
    answer = requests.post(url, json=body, timeout=TIMEOUT)
    assert answer.status_code == 200, f"POST {url.split('/', 3)[-1]}: {answer.status_code} {answer.text[:300]}"
    result: dict[str, Any] = answer.json()
    return result


def fire(info: dict[str, Any], schedule: str) -> dict[str, Any]:
    return post(f"{info['api']}/_local/fire/{schedule}")


def advance(info: dict[str, Any], seconds: int) -> datetime:
    return when(post(f"{info['api']}/_local/clock", {"advance_seconds": seconds})["now"])


def virtual_now(info: dict[str, Any]) -> datetime:
    return when(requests.get(f"{info['api']}/_local/clock", timeout=TIMEOUT).json()["now"])


def drain(info: dict[str, Any], max_seconds: int = 30, queues: list[str] | None = None) -> dict[str, Any]:
    """Plays the event source mappings (only those of `queues`, when given) until the queues are empty."""
    body: dict[str, Any] = {"max_seconds": max_seconds}
    if queues is not None:
        body["queues"] = queues
    return post(f"{info['api']}/_local/drain", body)


def plan_reports(info: dict[str, Any]) -> dict[str, Any]:
    """The plan-reports schedule (it finds the due plans and sends them to report_plans), then report_plans
    drained (the planner sends the jobs to report_jobs, which is left alone). Answers what the finder found
    (`found`, `messages`), what the drain did with the plans (`planned`: messages handled) and the job
    messages waiting (`job_messages`)."""
    found = fire(info, "plan-reports")
    drained = drain(info, queues=["report_plans"])
    assert not drained["failed"].get("report_plans"), drained
    return {**found, "planned": drained["delivered"].get("report_plans", 0),
            "job_messages": drained["left"].get("report_jobs", 0)}


def sweep_retention(info: dict[str, Any]) -> dict[str, Any]:
    """The sweep-retention schedule (it finds the due purges and sends them to retention_purges), then
    retention_purges drained: `found`, and the purge messages `handled` (purged, or skipped as no longer
    due) and `failed`."""
    found = fire(info, "sweep-retention")
    drained = drain(info, queues=["retention_purges"])
    return {**found, "handled": drained["delivered"].get("retention_purges", 0),
            "failed": drained["failed"].get("retention_purges", 0)}


def refresh_tokens(info: dict[str, Any]) -> dict[str, Any]:
    """The refresh-tokens schedule (it finds the due connections and sends them to the token_refresh queue),
    then a drain (the queue's event source renews them). The finder's report, with the token_refresh
    messages delivered and failed, and the LWA refresh_token calls made meanwhile (`lwa_refreshes`)."""
    before = int(stats(info)["lwa"]["refresh_token"])
    found = fire(info, "refresh-tokens")
    drained = drain(info)
    return {**found, "delivered": drained["delivered"].get("token_refresh", 0),
            "failed": drained["failed"].get("token_refresh", 0),
            "lwa_refreshes": int(stats(info)["lwa"]["refresh_token"]) - before}


# What became of a consent Amazon was asked about (the audit record's outcome) → the verify-consents count.
VERIFICATION_OUTCOMES = {"done": "verified", "identity_mismatch": "mismatched", "expired": "expired",
                         "revoked": "revoked", "deletion_pending": "deletion_pending"}


def verify_consents(info: dict[str, Any]) -> dict[str, Any]:
    """The verify-consents schedule (it finds the consents waiting for Amazon and sends them to the
    token_refresh queue), then a drain (the queue's event source checks them). The candidates found
    (`due`), the messages failed, and what became of the consents, counted from the audit records that
    appeared meanwhile (`verified`, `mismatched`, `expired`, `revoked`, `deletion_pending`)."""
    def outcomes() -> dict[str, int]:
        records = [r for r in every_item(stack_table(info, "audit").scan) if r.get("type") == "consent_verification"]
        return {name: sum(1 for r in records if r.get("outcome") == outcome)
                for outcome, name in VERIFICATION_OUTCOMES.items()}

    before = outcomes()
    found = fire(info, "verify-consents")
    drained = drain(info)
    after = outcomes()
    return {"due": found["found"], **found, "failed": drained["failed"].get("token_refresh", 0),
            **{name: after[name] - before[name] for name in after}}


def stats(info: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(f"{info['amazon']}/_emulator/stats", timeout=TIMEOUT).json()
    return result


def redirect(response: requests.Response, status: int) -> str:
    assert response.status_code == status, f"{response.url.split('?')[0]}: {response.status_code}"
    return response.headers["Location"]


def finish_at_callback(info: dict[str, Any], browser: requests.Session, callback_url: str) -> None:
    """The callback, its page, then Amazon confirms the seller (the `verify-consents` schedule)."""
    assert callback_url.startswith(f"{info['api']}/callback?")
    callback = browser.get(callback_url, allow_redirects=False, timeout=TIMEOUT)
    success = urljoin(callback_url, redirect(callback, 303))
    assert browser.get(success, allow_redirects=False, timeout=TIMEOUT).status_code == 200
    confirmed = verify_consents(info)
    assert confirmed["verified"] == 1, confirmed


def sells_only_in(info: dict[str, Any], seller: str, region: str, *countries: str) -> None:
    """What Amazon's getMarketplaceParticipations answers for the seller (default: every marketplace of the
    region): a test that follows one job per type pins one marketplace."""
    post(f"{info['amazon']}/_emulator/participations",
         {"selling_partner_id": seller, "region": region, "marketplaces": [{"country": c} for c in countries]})


def connect(info: dict[str, Any], seller: str, marketplace: str = "US") -> None:
    """The website flow: /connect → Amazon's consent page → /callback."""
    browser = browser_session()
    start = browser.get(
        f"{info['api']}/connect", params={"marketplace": marketplace}, allow_redirects=False, timeout=TIMEOUT
    )
    consent_url = redirect(start, 302)
    assert consent_url.startswith(info["amazon"])
    answer = post(f"{info['amazon']}/_emulator/consent", {"consent_url": consent_url, "selling_partner_id": seller})
    finish_at_callback(info, browser, answer["redirect"])


def authorize_from_appstore(info: dict[str, Any], seller: str, region: str) -> None:
    """The Appstore flow: Amazon → our Log-in URI → Amazon's confirm hop → /callback."""
    login_url = post(f"{info['amazon']}/_emulator/appstore", {"selling_partner_id": seller, "region": region})[
        "login_url"
    ]
    assert login_url.startswith(f"{info['api']}/login?")
    browser = browser_session()
    confirm_url = redirect(browser.get(login_url, allow_redirects=False, timeout=TIMEOUT), 302)
    assert confirm_url.startswith(info["amazon"])
    callback_url = redirect(browser.get(confirm_url, allow_redirects=False, timeout=TIMEOUT), 302)
    finish_at_callback(info, browser, callback_url)


# --- helpers: what is stored --------------------------------------------------------------------


def stored(info: dict[str, Any], seller: str, sort_key: str) -> dict[str, Any] | None:
    table = stack_table(info, "connections")
    item: dict[str, Any] | None = table.get_item(Key={"pk": f"SELLER#{seller}", "sk": sort_key},
                                                 ConsistentRead=True).get("Item")
    return item


# --- helpers: S3 --------------------------------------------------------------------------------


def s3(info: dict[str, Any]) -> Any:
    return boto3.client("s3", endpoint_url=info["aws"], region_name=info["region"])


def bucket(info: dict[str, Any]) -> str:
    return str(info["resources"]["buckets"]["data"])


def versions_left(info: dict[str, Any], prefix: str) -> tuple[int, int]:
    """(object versions, delete markers) under a prefix of the data bucket."""
    versions = markers = 0
    for page in s3(info).get_paginator("list_object_versions").paginate(Bucket=bucket(info), Prefix=prefix):
        versions += len(page.get("Versions", []))
        markers += len(page.get("DeleteMarkers", []))
    return versions, markers


def receipts(info: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Receipts of a seller key (a scan of a test's own audit table; the product never scans it)."""
    return every_item(stack_table(info, "audit").scan, FilterExpression="begins_with(id, :p)",
                      ExpressionAttributeValues={":p": f"receipt#{key}"})
