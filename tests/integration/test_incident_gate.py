"""The incident switch (seller_insights.app_gate) as the functions honour it: consent answers the maintenance
page, refresh tokens are never opened, and nothing stored changes; lifting the switch restores both."""

from __future__ import annotations

import pytest

from seller_insights.app_gate import CACHE_SECONDS, CONSENT_CLOSED, GATE_KEY, REFRESH_BLOCKED, RETRY_AFTER_SECONDS
from seller_insights.containers import forget_all
from seller_insights.errors import RefreshBlocked
from tests.support.api import ConsentClient
from tests.support.flows import connect, connect_and_confirm, refresh_tokens
from tests.support.tokens import connection_item, lwa_stats, provider, table, token_item

SELLER = "A1INCIDENT0001"


def close(resources, *, consent: bool = True, refresh: bool = True) -> None:
    flags = {**({"consent": CONSENT_CLOSED} if consent else {}), **({"refresh": REFRESH_BLOCKED} if refresh else {})}
    table(resources).put_item(Item={**GATE_KEY, **flags})


def reopen(resources, product_clock) -> None:
    table(resources).delete_item(Key=GATE_KEY)
    product_clock.advance(CACHE_SECONDS)  # every container's cached switch has expired


def test_consent_routes_answer_the_maintenance_page_while_closed(consent_env, emulator, product_clock):
    client = ConsentClient()
    started = client.get("/connect?marketplace=US")  # a consent begun before the containment
    assert started.status == 302
    close(consent_env)
    product_clock.advance(CACHE_SECONDS)
    states_before = table(consent_env, "oauth_state").scan()["Count"]
    for path in ("/connect?marketplace=US", "/login?amazon_callback_uri=https://sellercentral.amazon.com/x",
                 "/callback?state=x&spapi_oauth_code=y&selling_partner_id=A1INCIDENT0001"):
        page = client.get(path)
        assert page.status == 503, path
        assert page.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
        assert "Connecting is paused" in page.body
        assert page.headers["Content-Type"].startswith("text/html")
    # Nothing was issued or taken meanwhile; the outcome page still answers.
    assert table(consent_env, "oauth_state").scan()["Count"] == states_before
    assert client.get("/done?outcome=already_connected").status == 200

    reopen(consent_env, product_clock)
    assert connect(client, emulator.base_url, SELLER).status == 303


def test_the_switch_is_read_at_most_once_per_cache_period(consent_env, product_clock):
    client = ConsentClient()
    assert client.get("/connect").status == 302
    close(consent_env)
    # Within the cache period a warm container still answers from its copy...
    assert client.get("/connect").status == 302
    product_clock.advance(CACHE_SECONDS)
    assert client.get("/connect").status == 503
    # ...and a new container reads the switch at once.
    table(consent_env).delete_item(Key=GATE_KEY)
    forget_all()
    assert client.get("/connect").status == 302


@pytest.fixture
def connected(token_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    return token_env


def test_refreshes_fail_closed_and_keep_the_connection(connected, emulator, product_clock):
    close(connected, consent=False)
    product_clock.advance(CACHE_SECONDS)
    before = connection_item(connected, SELLER, "NA")
    cached = token_item(connected, SELLER, "NA")
    calls = lwa_stats(emulator.base_url)["refresh_token"]

    report = refresh_tokens()

    assert report["found"] == 1 and report["refreshed"] == 0
    assert report["stopped"] == ["refresh_blocked"]
    assert lwa_stats(emulator.base_url)["refresh_token"] == calls  # no refresh token was used
    assert connection_item(connected, SELLER, "NA") == before  # still ACTIVE, same sealed token, still due
    assert token_item(connected, SELLER, "NA") == cached  # not even a refresh lease was written

    reopen(connected, product_clock)
    report = refresh_tokens()
    assert report["refreshed"] == 1 and not report["stopped"]
    assert lwa_stats(emulator.base_url)["refresh_token"] == calls + 1


def test_a_caller_without_a_cached_token_is_refused_before_any_lease(connected, emulator):
    tokens = provider(connected, emulator.base_url)
    table(connected).delete_item(Key={"pk": f"SELLER#{SELLER}", "sk": "TOKEN#NA"})  # what contain does
    blocked = provider(connected, emulator.base_url, refresh_blocked=lambda: True)
    with pytest.raises(RefreshBlocked):
        blocked.get(SELLER, "NA")
    assert token_item(connected, SELLER, "NA") is None
    assert tokens.get(SELLER, "NA").expires_at > 0  # unblocked, the same connection refreshes
