"""The consent duty end to end through the real handler, moto and the Amazon emulator."""

from __future__ import annotations

from datetime import timedelta

import requests

from seller_insights.containers import forget_all
from tests.support.api import ConsentClient
from tests.support.flows import (
    appstore_login_query,
    callback_query,
    confirm_consents,
    connect,
    connect_and_confirm,
    emulator_consent,
    params,
)
from tests.support.tokens import open_refresh_token, table

SELLER = "A1B2C3D4E5F6G7"


def _refresh_works(emulator, refresh_token):
    answer = requests.post(f"{emulator.base_url}/_hosts/api.amazon.com/auth/o2/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": emulator.client_id, "client_secret": emulator.client_secret}, timeout=5)
    return answer.status_code == 200


def test_connect_builds_consent_url_for_the_marketplace(consent_env, emulator):
    client = ConsentClient()
    r = client.get("/connect?marketplace=JP")
    assert r.status == 302
    assert r.location.startswith(f"{emulator.base_url}/_hosts/sellercentral.amazon.co.jp/apps/authorize/consent?")
    query = params(r.location)
    assert query["application_id"] == emulator.application_id
    assert query["redirect_uri"] == "https://seller-insights.example.com/callback"
    assert query["version"] == "beta"
    assert len(query["state"]) == 43
    cookie = next(c for c in r.cookies if c.startswith("__Host-si_consent="))
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie


def test_connect_without_marketplace_uses_the_default(consent_env, emulator):
    r = ConsentClient().get("/connect")
    assert "/_hosts/sellercentral.amazon.com/apps/authorize/consent" in r.location


def test_published_app_omits_version_beta(consent_env, emulator, monkeypatch):
    monkeypatch.setenv("APP_DRAFT", "false")
    forget_all()
    emulator.configure(draft=False)
    client = ConsentClient()
    r = client.get("/connect?marketplace=US")
    assert "version" not in params(r.location)
    done = client.get(f"/callback?{callback_query(emulator_consent(emulator.base_url, r.location, SELLER))}")
    assert done.status == 303


def test_unknown_marketplace_lists_valid_codes(consent_env):
    r = ConsentClient().get("/connect?marketplace=XX")
    assert r.status == 400
    assert "Unknown marketplace" in r.body
    for code in ("US", "DE", "JP", "SG", "ZA"):
        assert f"connect?marketplace={code}" in r.body
    assert "XX" not in r.body


def test_full_consent_stores_the_token_encrypted(consent_env, emulator, log_guard):
    client = ConsentClient()
    done = connect(client, emulator.base_url, SELLER, "DE")
    assert done.status == 303
    assert done.location == "done?outcome=pending&region=EU"
    page = client.get(done.location)
    assert page.status == 200 and "Connected, confirming with Amazon" in page.body
    # Nothing under the seller's id until Amazon confirmed the seller.
    partition = table(consent_env).query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"SELLER#{SELLER}"})["Items"]
    assert partition == []
    assert confirm_consents()["verified"] == 1

    item = table(consent_env).get_item(Key={"pk": f"SELLER#{SELLER}", "sk": "CONN#EU"})["Item"]
    assert item["status"] == "ACTIVE"
    assert item["marketplace"] == "DE"
    assert item["consented_at"] == "2026-11-29T12:00:00Z"
    assert item["reauthorization_due_at"] == "2027-11-29T12:00:00Z"
    assert "Atzr|" not in repr(item)
    token = open_refresh_token(consent_env, SELLER, "EU")
    log_guard.watch(token)
    assert token.startswith("Atzr|")
    assert _refresh_works(emulator, token)


def test_success_redirect_carries_no_code_or_state(consent_env, emulator):
    done = connect(ConsentClient(), emulator.base_url, SELLER)
    assert "state" not in done.location and "code" not in done.location
    assert done.headers["Referrer-Policy"] == "no-referrer"
    assert done.headers["Cache-Control"] == "no-store"


def test_two_regions_are_two_connections(consent_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "JP").status == 303
    items = table(consent_env).query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"SELLER#{SELLER}"})["Items"]
    assert sorted(i["sk"] for i in items) == ["CONN#FE", "CONN#NA", "PLAN#FE", "PLAN#NA"]
    plan = next(i for i in items if i["sk"] == "PLAN#FE")
    assert plan["marketplace_ids"] == ["A1VC38T7YXB528"]  # reports are requested for Japan


def test_reauthorization_replaces_the_token(consent_env, emulator, product_clock, log_guard):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER).status == 303
    first = open_refresh_token(consent_env, SELLER, "NA")
    product_clock.advance(timedelta(days=300).total_seconds())
    assert connect(ConsentClient(), emulator.base_url, SELLER).status == 303
    # Until Amazon confirms the seller, the connection keeps its token.
    assert open_refresh_token(consent_env, SELLER, "NA") == first
    assert confirm_consents()["verified"] == 1
    second = open_refresh_token(consent_env, SELLER, "NA")
    log_guard.watch(first, second)
    assert first != second
    item = table(consent_env).get_item(Key={"pk": f"SELLER#{SELLER}", "sk": "CONN#NA"})["Item"]
    assert item["created_at"] == "2026-11-29T12:00:00Z"
    assert item["consented_at"] == "2027-09-25T12:00:00Z"


def test_appstore_login_hop(consent_env, emulator):
    query = appstore_login_query(emulator.base_url, SELLER, "EU")
    client = ConsentClient()
    hop = client.get(f"/login?{query}")
    assert hop.status == 302, hop.body
    back = params(hop.location)
    confirm = f"{emulator.base_url}/_hosts/sellercentral-europe.amazon.com/apps/authorize/confirm/"
    assert hop.location.startswith(confirm)
    assert back["redirect_uri"] == "https://seller-insights.example.com/callback"
    assert back["version"] == "beta"
    assert back["amazon_state"] == params(f"?{query}")["amazon_state"]
    amazon = requests.get(hop.location, allow_redirects=False, timeout=5)
    assert amazon.status_code == 302
    done = client.get(f"/callback?{callback_query(amazon.headers['Location'])}")
    assert done.status == 303 and done.location.endswith("region=EU")


def test_seller_cancelled(consent_env, emulator):
    client = ConsentClient()
    start = client.get("/connect")
    state = params(start.location)["state"]
    r = client.get(f"/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C/script%3E&state={state}")
    assert r.status == 400
    assert "cancelled" in r.body
    assert "<script>" not in r.body
    # the state is consumed: the same link cannot be used again
    again = client.get(f"/callback?error=access_denied&state={state}")
    assert "cannot be used" in again.body


def test_expired_code_means_start_again(consent_env, emulator):
    client = ConsentClient()
    start = client.get("/connect")
    redirect = emulator_consent(emulator.base_url, start.location, SELLER)
    emulator.advance_clock(301)  # codes live 5 minutes on Amazon's side
    r = client.get(f"/callback?{callback_query(redirect)}")
    assert r.status == 400 and "expired" in r.body
    assert table(consent_env).scan()["Count"] == 0
