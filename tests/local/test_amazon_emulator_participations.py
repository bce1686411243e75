"""The emulator's getMarketplaceParticipations per seller: `/_emulator/participations` sets what one seller
participates in (the others keep the region's default), answers stay valid against Amazon's sellers.json
model, and the operation answers armed faults (its usage plan is the product's to keep)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import requests

from local.amazon import AmazonEmulator

# Amazon's model as published (selling-partner-api-models), kept with the emulator.
MODEL = Path(__file__).resolve().parents[2] / "local" / "amazon" / "models" / "sellers.json"
CALLBACK = "https://app.example.test/callback"
PARTICIPATIONS = "/sellers/v1/marketplaceParticipations"
EU_HOST = "sellingpartnerapi-eu.amazon.com"
SELLER = "A1PARTICIPANT01"
NEIGHBOUR = "A2NEIGHBOUR002"
DE, FR, IT, ES, UK = "A1PA6795UKMFR9", "A13V1IB3VIYZZH", "APJ6JRA9NG5V4", "A1RKKUPIHCS9HS", "A1F83G8C2ARO7P"


@pytest.fixture(scope="module")
def emu() -> Iterator[AmazonEmulator]:
    with AmazonEmulator(redirect_uris=[CALLBACK]) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def fresh(emu: AmazonEmulator) -> Iterator[None]:
    emu.reset()
    urllib3_logger = logging.getLogger("urllib3")  # it logs full URLs at DEBUG
    level = urllib3_logger.level
    urllib3_logger.setLevel(logging.WARNING)
    yield
    urllib3_logger.setLevel(level)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """GetMarketplaceParticipationsResponse of Amazon's model, with its definitions for `#/definitions/`."""
    model = json.loads(MODEL.read_text())
    return {**model["definitions"]["GetMarketplaceParticipationsResponse"], "definitions": model["definitions"]}


def control(emu: AmazonEmulator, body: dict[str, Any] | None = None) -> requests.Response:
    url = f"{emu.base_url}/_emulator/participations"
    return requests.post(url, json=body, timeout=5) if body is not None else requests.get(url, timeout=5)


def access_token(emu: AmazonEmulator, seller: str) -> str:
    consent = emu.host_url("sellercentral-europe.amazon.com", "/apps/authorize/consent") + "?" + urlencode(
        {"application_id": emu.application_id, "state": "s1", "version": "beta"})
    answer = requests.post(f"{emu.base_url}/_emulator/consent", timeout=5,
                           json={"consent_url": consent, "selling_partner_id": seller})
    code = parse_qs(urlsplit(answer.json()["redirect"]).query)["spapi_oauth_code"][0]
    tokens = requests.post(emu.host_url("api.amazon.com", "/auth/o2/token"), timeout=5, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
        "client_id": emu.client_id, "client_secret": emu.client_secret})
    return str(tokens.json()["access_token"])


def participations(emu: AmazonEmulator, token: str) -> requests.Response:
    return requests.get(emu.host_url(EU_HOST, PARTICIPATIONS), headers={"x-amz-access-token": token}, timeout=5)


def test_a_seller_set_by_the_control_call_gets_its_own_answer(emu: AmazonEmulator, schema: dict[str, Any]) -> None:
    mine, neighbours = access_token(emu, SELLER), access_token(emu, NEIGHBOUR)
    assert control(emu, {"selling_partner_id": SELLER, "region": "EU", "marketplaces": [
        {"country": "DE", "is_participating": True, "has_suspended_listings": False},
        {"country": "FR", "is_participating": False},
        {"country": "IT", "is_participating": True, "has_suspended_listings": True},
    ]}).status_code == 200

    body = participations(emu, mine).json()

    jsonschema.validate(body, schema)
    assert [(p["marketplace"]["id"], p["participation"]) for p in body["payload"]] == [
        (DE, {"isParticipating": True, "hasSuspendedListings": False}),
        (FR, {"isParticipating": False, "hasSuspendedListings": False}),
        (IT, {"isParticipating": True, "hasSuspendedListings": True}),
    ]
    assert body["payload"][0]["marketplace"]["countryCode"] == "DE"
    # Another seller of the region keeps the default: UK, DE, FR, IT, ES, all participating.
    others = participations(emu, neighbours).json()
    jsonschema.validate(others, schema)
    assert [p["marketplace"]["id"] for p in others["payload"]] == [UK, DE, FR, IT, ES]
    assert all(p["participation"]["isParticipating"] for p in others["payload"])
    assert control(emu).json() == {"participations": [{"selling_partner_id": SELLER, "region": "EU", "marketplaces": [
        {"country": "DE", "is_participating": True, "has_suspended_listings": False},
        {"country": "FR", "is_participating": False, "has_suspended_listings": False},
        {"country": "IT", "is_participating": True, "has_suspended_listings": True}]}]}


def test_null_goes_back_to_the_default_and_an_empty_list_is_an_answer(emu: AmazonEmulator) -> None:
    token = access_token(emu, SELLER)
    control(emu, {"selling_partner_id": SELLER, "region": "EU", "marketplaces": []})
    assert participations(emu, token).json() == {"payload": []}
    control(emu, {"selling_partner_id": SELLER, "region": "EU", "marketplaces": None})
    assert len(participations(emu, token).json()["payload"]) == 5
    assert control(emu).json() == {"participations": []}


def test_reset_forgets_what_was_set(emu: AmazonEmulator) -> None:
    control(emu, {"selling_partner_id": SELLER, "region": "EU", "marketplaces": [{"country": "DE"}]})
    emu.reset()
    assert control(emu).json() == {"participations": []}


@pytest.mark.parametrize(("body", "message"), [
    ({"region": "EU", "marketplaces": []}, "selling_partner_id"),
    ({"selling_partner_id": SELLER, "region": "XX", "marketplaces": []}, "region"),
    ({"selling_partner_id": SELLER, "region": "EU"}, "marketplaces is required"),
    ({"selling_partner_id": SELLER, "region": "EU", "marketplaces": "DE"}, "list"),
    ({"selling_partner_id": SELLER, "region": "EU", "marketplaces": [{"country": "US"}]}, "EU's"),
    ({"selling_partner_id": SELLER, "region": "EU", "marketplaces": [{"country": "GB"}]}, "EU's"),
    ({"selling_partner_id": SELLER, "region": "EU", "marketplaces": [{"country": "DE"}, {"country": "DE"}]},
     "twice"),
    ({"selling_partner_id": SELLER, "region": "EU", "marketplaces": [{"country": "DE", "is_participating": "yes"}]},
     "true or false"),
])
def test_a_malformed_control_call_is_refused(emu: AmazonEmulator, body: dict[str, Any], message: str) -> None:
    answer = control(emu, body)
    assert answer.status_code == 400
    assert message in answer.json()["message"]
    assert control(emu).json() == {"participations": []}


def test_no_usage_plan_is_enforced_but_the_header_names_it(emu: AmazonEmulator) -> None:
    """bench/lwa_economy.py calls it hundreds of times at once; the product keeps the quota itself."""
    token = access_token(emu, SELLER)
    answers = [participations(emu, token) for _ in range(20)]
    assert [a.status_code for a in answers] == [200] * 20
    assert {a.headers["x-amzn-RateLimit-Limit"] for a in answers} == {"0.016"}


@pytest.mark.parametrize(("status", "code"), [(429, "QuotaExceeded"), (500, "InternalFailure"),
                                              (503, "ServiceUnavailable")])
def test_an_armed_fault_answers_once(emu: AmazonEmulator, status: int, code: str) -> None:
    token = access_token(emu, SELLER)
    armed = requests.post(f"{emu.base_url}/_emulator/faults", timeout=5,
                          json={"operation": "getMarketplaceParticipations", "status": status})
    assert armed.status_code == 200
    failed = participations(emu, token)
    assert (failed.status_code, failed.json()["errors"][0]["code"]) == (status, code)
    assert participations(emu, token).status_code == 200
