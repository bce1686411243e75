"""A seller in a real browser: headless Chromium (Debian's build, driven by Playwright) goes to
/connect, confirms on the emulated Seller Central consent page and lands on our success page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.e2e import verify_consents

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: no background calls to Google's services.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SELLER = "A2BROWSERSELLER1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is required for the browser test: `make chromium` installs it")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_seller_connects_in_a_browser(browser: Browser, info: dict[str, Any]) -> None:
    page = browser.new_page()
    page.goto(f"{info['api']}/connect?marketplace=UK")
    # The emulated Seller Central consent page: a real HTML form.
    assert page.url.startswith(f"{info['amazon']}/_hosts/sellercentral-europe.amazon.com/apps/authorize/consent")
    page.fill("input[name=selling_partner_id]", SELLER)
    page.click("#confirm")
    page.wait_for_url(f"{info['api']}/done?*")

    assert page.url == f"{info['api']}/done?outcome=pending&region=EU"
    assert page.locator("h1").inner_text() == "Connected, confirming with Amazon"
    assert "Europe" in page.content()
    cookie = next(c for c in page.context.cookies() if c["name"] == "__Host-si_consent")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"

    confirmed = verify_consents(info)  # the finder, then a drain of token_refresh
    assert confirmed["verified"] == 1, confirmed
    table = boto3.resource("dynamodb", endpoint_url=info["aws"]).Table(info["resources"]["tables"]["connections"])
    item = table.get_item(Key={"pk": f"SELLER#{SELLER}", "sk": "CONN#EU"})["Item"]
    assert item["status"] == "ACTIVE"
    assert "Atzr|" not in repr(item)


def test_cancel_in_a_browser_shows_a_clear_page(browser: Browser, info: dict[str, Any]) -> None:
    page = browser.new_page()
    page.goto(f"{info['api']}/connect?marketplace=US")
    page.click("#cancel")
    page.wait_for_url(f"{info['api']}/callback?*")
    assert page.locator("h1").inner_text() == "Authorization was cancelled"
    assert page.get_by_role("link", name="Start again").is_visible()
