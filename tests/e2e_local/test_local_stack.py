"""The local stack through its HTTP interfaces (docs/local-stack.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import boto3
import pytest
import requests
from boto3.dynamodb.types import Binary

from local.admin import AdminClient
from local.browser import browser_session
from tests.support.e2e import verify_consents
from tests.support.flows import emulator_consent
from tests.support.local_stack import launch, secret_findings

pytestmark = pytest.mark.slow
TIMEOUT = 30


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_the_ready_line_has_the_contract_shape(info: dict[str, Any]) -> None:
    assert set(info) == {"api", "amazon", "aws", "region", "admin", "resources", "iam"}
    assert info["iam"] == "enforced"
    for url in ("api", "amazon", "aws"):
        assert info[url].startswith("http://127.0.0.1:")
    assert info["region"] == "us-east-1"
    assert info["admin"]["access_key_id"].startswith("AKIA") and len(info["admin"]["secret_access_key"]) >= 32
    assert set(info["resources"]) == {"tables", "buckets", "queues"}
    assert {"connections", "oauth_state", "idempotency"} <= set(info["resources"]["tables"])
    assert {"data", "access_logs"} <= set(info["resources"]["buckets"])
    tables = boto3.client("dynamodb", endpoint_url=info["aws"], region_name=info["region"]).list_tables()
    assert set(info["resources"]["tables"].values()) <= set(tables["TableNames"])


def test_unknown_routes_answer_like_api_gateway(info: dict[str, Any]) -> None:
    answer = requests.get(f"{info['api']}/no/such/route", timeout=TIMEOUT)
    assert answer.status_code == 404
    assert answer.json() == {"message": "Not Found"}
    assert requests.get(f"{info['api']}/_local/nothing", timeout=TIMEOUT).status_code == 404


def test_the_clock_moves_the_product_and_amazon_together(info: dict[str, Any]) -> None:
    api, amazon = info["api"], info["amazon"]
    product_before = when(requests.get(f"{api}/_local/clock", timeout=TIMEOUT).json()["now"])
    amazon_before = when(requests.get(f"{amazon}/_emulator/clock", timeout=TIMEOUT).json()["now"])

    answer = requests.post(f"{api}/_local/clock", json={"advance_seconds": 86_400}, timeout=TIMEOUT)

    assert answer.status_code == 200
    product_after = when(answer.json()["now"])
    amazon_after = when(requests.get(f"{amazon}/_emulator/clock", timeout=TIMEOUT).json()["now"])
    assert (product_after - product_before).total_seconds() >= 86_400
    assert (amazon_after - amazon_before).total_seconds() >= 86_400
    assert when(requests.get(f"{api}/_local/clock", timeout=TIMEOUT).json()["now"]) >= product_after


@pytest.mark.parametrize(
    "body", [{"advance_seconds": -1}, {"advance_seconds": "60"}, {"advance_seconds": True}, {}, []]
)
def test_the_clock_refuses_what_is_not_a_forward_move(info: dict[str, Any], body: Any) -> None:
    before = requests.get(f"{info['api']}/_local/clock", timeout=TIMEOUT).json()["now"]
    answer = requests.post(f"{info['api']}/_local/clock", json=body, timeout=TIMEOUT)
    assert answer.status_code == 400
    after = requests.get(f"{info['api']}/_local/clock", timeout=TIMEOUT).json()["now"]
    assert (when(after) - when(before)).total_seconds() < 60


def test_fire_lists_the_schedules_and_refuses_unknown_ones(info: dict[str, Any]) -> None:
    listed = requests.get(f"{info['api']}/_local/fire", timeout=TIMEOUT)
    assert listed.status_code == 200
    names = listed.json()["schedules"]
    assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    # The template's schedules that the e2e tests fire by name.
    assert {"verify-consents", "refresh-tokens", "plan-reports"} <= set(names), names

    unknown = requests.post(f"{info['api']}/_local/fire/no-such-schedule", timeout=TIMEOUT)
    assert unknown.status_code == 404
    assert unknown.json()["schedules"] == names


def test_drain_answers_per_queue_counts(info: dict[str, Any]) -> None:
    answer = requests.post(f"{info['api']}/_local/drain", json={"max_seconds": 2}, timeout=TIMEOUT)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"delivered", "failed", "left"}
    assert set(body["left"]) == set(info["resources"]["queues"])
    assert requests.post(f"{info['api']}/_local/drain", json={"max_seconds": "x"}, timeout=TIMEOUT).status_code == 400


def test_a_seller_connects_through_the_local_stack(info: dict[str, Any]) -> None:
    api, seller = info["api"], "A1LOCALSTACKE2E"
    browser = browser_session()

    start = browser.get(f"{api}/connect?marketplace=US", allow_redirects=False, timeout=TIMEOUT)
    assert start.status_code == 302
    consent_url = start.headers["Location"]
    assert consent_url.startswith(info["amazon"])
    redirect = emulator_consent(info["amazon"], consent_url, seller)
    assert redirect.startswith(f"{api}/callback?")
    callback = browser.get(redirect, allow_redirects=False, timeout=TIMEOUT)
    assert callback.status_code == 303, callback.text[:500]
    success = browser.get(urljoin(redirect, callback.headers["Location"]), allow_redirects=False, timeout=TIMEOUT)
    assert success.status_code == 200 and "confirming with Amazon" in success.text
    confirmed = verify_consents(info)  # the finder, then a drain of token_refresh
    assert confirmed["verified"] == 1, confirmed

    table = boto3.resource("dynamodb", endpoint_url=info["aws"], region_name=info["region"]).Table(
        info["resources"]["tables"]["connections"]
    )
    item = table.get_item(Key={"pk": f"SELLER#{seller}", "sk": "CONN#NA"}, ConsistentRead=True).get("Item")
    assert item is not None and item["status"] == "ACTIVE"
    assert "Atzr|" not in repr(item)
    # The refresh token is stored sealed (encrypted data key, nonce, ciphertext): binaries, none of them plain.
    sealed = _binaries(item.get("refresh_token"))
    assert len(sealed) >= 3, f"the connection's refresh_token holds {len(sealed)} binary values"
    assert all(b"Atzr|" not in value.value for value in _binaries(item))


def test_sigterm_stops_serve_with_exit_0_and_one_stdout_line(tmp_path: Path) -> None:
    started = launch(tmp_path / "stderr.log")
    assert requests.get(f"{started.info['api']}/_local/clock", timeout=TIMEOUT).status_code == 200

    code, rest = started.terminate()

    assert code == 0
    assert rest == ""
    assert not secret_findings(started.stderr())


def _binaries(value: Any) -> list[Binary]:
    if isinstance(value, Binary):
        return [value]
    if isinstance(value, dict):
        return [b for v in value.values() for b in _binaries(v)]
    return []


def test_an_eu_consent_gets_the_sellers_marketplaces_through_the_local_stack(info: dict[str, Any]) -> None:
    """verify-consents asks Amazon where the seller sells (under the stack's IAM guard): the seller set to DE,
    FR and IT (IT with suspended listings, ES not participating) connects from DE; the admin view shows them."""
    api, amazon, seller = info["api"], info["amazon"], "A1LOCALMARKETS1"
    countries = [{"country": "DE"}, {"country": "FR"}, {"country": "IT", "has_suspended_listings": True},
                 {"country": "ES", "is_participating": False}]
    assert requests.post(f"{amazon}/_emulator/participations", timeout=TIMEOUT, json={
        "selling_partner_id": seller, "region": "EU", "marketplaces": countries}).status_code == 200
    browser = browser_session()
    start = browser.get(f"{api}/connect?marketplace=DE", allow_redirects=False, timeout=TIMEOUT)
    redirect = emulator_consent(amazon, start.headers["Location"], seller)
    assert browser.get(redirect, allow_redirects=False, timeout=TIMEOUT).status_code == 303

    assert verify_consents(info)["verified"] == 1

    shown = AdminClient.from_info(info).json("GET", f"/admin/sellers/{seller}")
    (connection,) = shown["connections"]
    now = when(requests.get(f"{api}/_local/clock", timeout=TIMEOUT).json()["now"])
    marketplaces = connection["marketplaces"]
    assert marketplaces["participating"] == ["A1PA6795UKMFR9", "A13V1IB3VIYZZH", "APJ6JRA9NG5V4"]
    assert 0 <= (now - when(marketplaces["checked_at"])).total_seconds() < 60
