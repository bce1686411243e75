"""Drive a seller through consent: our routes via the real handler, Amazon via the emulator."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from tests.support.api import ConsentClient, Response


def emulator_consent(emulator_url: str, consent_url: str, seller_id: str) -> str:
    """Press Confirm on the emulated consent page; return where Amazon sends the browser."""
    answer = requests.post(f"{emulator_url}/_emulator/consent",
                           json={"consent_url": consent_url, "selling_partner_id": seller_id}, timeout=5)
    answer.raise_for_status()
    return str(answer.json()["redirect"])


def callback_query(redirect: str) -> str:
    return urlsplit(redirect).query


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def connect(client: ConsentClient, emulator_url: str, seller_id: str, marketplace: str = "US") -> Response:
    """The whole website flow; returns our callback's response."""
    start = client.get(f"/connect?marketplace={marketplace}")
    assert start.status == 302, start.body
    redirect = emulator_consent(emulator_url, start.location, seller_id)
    return client.get(f"/callback?{callback_query(redirect)}")


def appstore_login_query(emulator_url: str, seller_id: str, region: str) -> str:
    """The seller clicks Authorize in the Appstore: the query Amazon sends to our Log-in URI."""
    answer = requests.post(f"{emulator_url}/_emulator/appstore",
                           json={"selling_partner_id": seller_id, "region": region}, timeout=5)
    answer.raise_for_status()
    return urlsplit(str(answer.json()["login_url"])).query


def confirm_consents() -> dict[str, object]:
    """The token refresher's `verify-consents` task: Amazon names the seller of each waiting consent."""
    from tests.support.api import FakeContext
    from tests.support.iam import acting_as
    from token_refresher.handler import lambda_handler

    # As the token refresher's role: its grants are checked against the template, as in AWS.
    with acting_as("token_refresher"):
        return dict(lambda_handler({"task": "verify-consents"}, FakeContext(function_name="token_refresher")))


def connect_and_confirm(client: ConsentClient, emulator_url: str, seller_id: str, marketplace: str = "US") -> Response:
    """The whole website flow, then Amazon's confirmation of the seller; returns our callback's response."""
    done = connect(client, emulator_url, seller_id, marketplace)
    assert done.status == 303, done.body
    report = confirm_consents()
    assert report["verified"] == 1, report
    return done
