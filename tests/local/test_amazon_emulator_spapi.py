"""The emulator's SP-API hosts over real HTTP: getMarketplaceParticipations and its 403s, revocation,
the 365-day lapse of an authorization, and the SP-API counters of /_emulator/stats.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import requests

from local.amazon import AmazonEmulator
from local.amazon.state import SPAPI_OPERATIONS

MODELS = Path(__file__).resolve().parents[2] / "local" / "amazon" / "models"
CALLBACK = "https://app.example.test/callback"
LOGIN = "https://app.example.test/login"
PARTICIPATIONS = "/sellers/v1/marketplaceParticipations"
SPAPI = {
    "NA": "sellingpartnerapi-na.amazon.com",
    "EU": "sellingpartnerapi-eu.amazon.com",
    "FE": "sellingpartnerapi-fe.amazon.com",
}
CENTRAL = {
    "NA": "sellercentral.amazon.com",
    "EU": "sellercentral-europe.amazon.com",
    "FE": "sellercentral.amazon.co.jp",
}
SELLER = {"NA": "A1EXAMPLESELLERN", "EU": "A1EXAMPLESELLERE", "FE": "A1EXAMPLESELLERF"}
MARKETPLACES = {
    "NA": ["ATVPDKIKX0DER", "A2EUQ1WTGCTBG2", "A1AM78C64UM0Y8"],
    "EU": ["A1F83G8C2ARO7P", "A1PA6795UKMFR9", "A13V1IB3VIYZZH", "APJ6JRA9NG5V4", "A1RKKUPIHCS9HS"],
    "FE": ["A1VC38T7YXB528"],
}

MISSING = {"errors": [{"code": "MissingAuthenticationToken", "message": "Access to requested resource is denied."}]}
UNAUTHORIZED = {
    "errors": [
        {
            "code": "Unauthorized",
            "message": "Access to requested resource is denied.",
            "details": "The access token you provided is revoked, malformed or invalid.",
        }
    ]
}
INVALID_REFRESH = {
    "error": "invalid_grant",
    "error_description": (
        "The request has an invalid grant parameter : refresh_token. "
        "User may have revoked or didn't grant the permission."
    ),
}


@pytest.fixture(scope="module")
def emu() -> Iterator[AmazonEmulator]:
    with AmazonEmulator(redirect_uris=[CALLBACK], login_uri=LOGIN) as emulator:
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
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture(scope="module")
def participations_schema() -> dict[str, Any]:
    """GetMarketplaceParticipationsResponse with the swagger file's definitions, for `#/definitions/` refs."""
    model = json.loads((MODELS / "sellers.json").read_text())
    return {**model["definitions"]["GetMarketplaceParticipationsResponse"], "definitions": model["definitions"]}


# -- helpers ------------------------------------------------------------------------------------


def lwa(http: requests.Session, emu: AmazonEmulator, **fields: str) -> requests.Response:
    body = {"client_id": emu.client_id, "client_secret": emu.client_secret, **fields}
    return http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), data=body, timeout=5)


def control(http: requests.Session, emu: AmazonEmulator, path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"{emu.base_url}/_emulator/{path}"
    response = http.post(url, json=body, timeout=5) if body is not None else http.get(url, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def connect(http: requests.Session, emu: AmazonEmulator, region: str = "NA", seller: str | None = None) -> Any:
    """A seller consents on its region's Seller Central; the code is exchanged for tokens."""
    seller = seller or SELLER[region]
    consent = emu.host_url(CENTRAL[region], "/apps/authorize/consent") + "?" + urlencode(
        {"application_id": emu.application_id, "state": "s1", "version": "beta"}
    )
    redirect = control(http, emu, "consent", {"consent_url": consent, "selling_partner_id": seller})["redirect"]
    code = parse_qs(urlsplit(redirect).query)["spapi_oauth_code"][0]
    response = lwa(http, emu, grant_type="authorization_code", code=code, redirect_uri=CALLBACK)
    assert response.status_code == 200
    return response.json()


def participations(
    http: requests.Session, emu: AmazonEmulator, access_token: str | None, region: str = "NA"
) -> requests.Response:
    headers = {} if access_token is None else {"x-amz-access-token": access_token}
    return http.get(emu.host_url(SPAPI[region], PARTICIPATIONS), headers=headers, timeout=5)


def assert_unauthorized(response: requests.Response) -> None:
    assert response.status_code == 403
    assert response.json() == UNAUTHORIZED
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert response.headers["x-amzn-RequestId"]


# -- getMarketplaceParticipations ----------------------------------------------------------------


@pytest.mark.parametrize("region", ["NA", "EU", "FE"])
def test_participations_of_a_seller_in_its_region(
    http: requests.Session, emu: AmazonEmulator, participations_schema: dict[str, Any], region: str
) -> None:
    tokens = connect(http, emu, region)

    response = participations(http, emu, tokens["access_token"], region)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["x-amzn-RateLimit-Limit"] == "0.016"
    assert re.fullmatch(r"[0-9a-f-]{36}", response.headers["x-amzn-RequestId"])
    body = response.json()
    jsonschema.validate(body, participations_schema)
    assert [p["marketplace"]["id"] for p in body["payload"]] == MARKETPLACES[region]
    for entry in body["payload"]:
        assert entry["participation"] == {"isParticipating": True, "hasSuspendedListings": False}
        assert SELLER[region] in entry["storeName"]


def test_the_schema_check_has_teeth(participations_schema: dict[str, Any]) -> None:
    bad = {"payload": [{"marketplace": {"id": "X"}, "storeName": "s", "participation": {"isParticipating": True}}]}

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, participations_schema)


def test_missing_access_token(http: requests.Session, emu: AmazonEmulator) -> None:
    response = participations(http, emu, None)

    assert response.status_code == 403
    assert response.json() == MISSING
    assert response.headers["x-amzn-RequestId"]


@pytest.mark.parametrize("value", ["Atza|not-a-token-the-emulator-issued", "garbage"])
def test_unknown_access_token(http: requests.Session, emu: AmazonEmulator, value: str) -> None:
    assert_unauthorized(participations(http, emu, value))


def test_a_refresh_token_is_no_access_token(http: requests.Session, emu: AmazonEmulator) -> None:
    assert_unauthorized(participations(http, emu, connect(http, emu)["refresh_token"]))


def test_a_token_works_only_on_its_regions_host(http: requests.Session, emu: AmazonEmulator) -> None:
    tokens = connect(http, emu, "EU")

    assert_unauthorized(participations(http, emu, tokens["access_token"], "NA"))
    assert_unauthorized(participations(http, emu, tokens["access_token"], "FE"))
    assert participations(http, emu, tokens["access_token"], "EU").status_code == 200


def test_a_grantless_token_is_not_a_sellers(http: requests.Session, emu: AmazonEmulator) -> None:
    grantless = lwa(http, emu, grant_type="client_credentials", scope="sellingpartnerapi::notifications").json()

    assert_unauthorized(participations(http, emu, grantless["access_token"]))


def test_access_token_expires_after_an_hour(http: requests.Session, emu: AmazonEmulator) -> None:
    tokens = connect(http, emu)
    emu.advance_clock(3599)
    assert participations(http, emu, tokens["access_token"]).status_code == 200

    emu.advance_clock(2)

    assert_unauthorized(participations(http, emu, tokens["access_token"]))
    fresh = lwa(http, emu, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    assert participations(http, emu, fresh["access_token"]).status_code == 200


def test_unknown_path_and_method_on_an_spapi_host(http: requests.Session, emu: AmazonEmulator) -> None:
    missing = http.get(emu.host_url(SPAPI["NA"], "/sellers/v1/nothing"), timeout=5)
    wrong_method = http.delete(emu.host_url(SPAPI["NA"], PARTICIPATIONS), timeout=5)

    # Issue 10, section 9: what Amazon answers for an operation it does not have, in SP-API's error shape.
    for answer in (missing, wrong_method):
        assert answer.status_code == 403
        assert answer.json() == {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is "
                                             "denied.", "details": ""}]}


def test_stats_count_spapi_calls_and_denials(http: requests.Session, emu: AmazonEmulator) -> None:
    tokens = connect(http, emu)
    participations(http, emu, tokens["access_token"])
    participations(http, emu, tokens["access_token"])
    participations(http, emu, None)
    participations(http, emu, "bogus")
    http.post(emu.host_url(SPAPI["EU"], "/applications/2023-11-30/clientSecret"), timeout=5)

    stats = control(http, emu, "stats")

    assert stats["spapi"] == {**dict.fromkeys(SPAPI_OPERATIONS, 0),
                              "getMarketplaceParticipations": 4, "rotateApplicationClientSecret": 1}
    assert stats["spapi_denied"] == {**dict.fromkeys(SPAPI_OPERATIONS, 0),
                                     "getMarketplaceParticipations": 2, "rotateApplicationClientSecret": 1}
    assert stats["throttled"] == 0


# -- revocation ---------------------------------------------------------------------------------


def test_revoke_kills_refresh_and_access_tokens_of_that_seller_and_region(
    http: requests.Session, emu: AmazonEmulator
) -> None:
    revoked = connect(http, emu, "NA")
    same_seller_other_region = connect(http, emu, "EU", seller=SELLER["NA"])
    other_seller = connect(http, emu, "NA", seller="A2OTHERSELLERNA")
    refreshed = lwa(http, emu, grant_type="refresh_token", refresh_token=revoked["refresh_token"]).json()

    assert control(http, emu, "revoke", {"selling_partner_id": SELLER["NA"], "region": "NA"}) == {}

    denied = lwa(http, emu, grant_type="refresh_token", refresh_token=revoked["refresh_token"])
    assert (denied.status_code, denied.json()) == (400, INVALID_REFRESH)
    assert_unauthorized(participations(http, emu, revoked["access_token"]))
    assert_unauthorized(participations(http, emu, refreshed["access_token"]))
    assert participations(http, emu, same_seller_other_region["access_token"], "EU").status_code == 200
    assert participations(http, emu, other_seller["access_token"]).status_code == 200
    again = lwa(http, emu, grant_type="refresh_token", refresh_token=other_seller["refresh_token"])
    assert again.status_code == 200


def test_a_new_consent_after_revocation_issues_working_tokens(http: requests.Session, emu: AmazonEmulator) -> None:
    old = connect(http, emu)
    control(http, emu, "revoke", {"selling_partner_id": SELLER["NA"], "region": "NA"})

    new = connect(http, emu)

    assert new["refresh_token"] != old["refresh_token"]
    assert participations(http, emu, new["access_token"]).status_code == 200
    assert lwa(http, emu, grant_type="refresh_token", refresh_token=new["refresh_token"]).status_code == 200
    assert lwa(http, emu, grant_type="refresh_token", refresh_token=old["refresh_token"]).status_code == 400


def test_revoking_a_seller_without_tokens_is_fine(http: requests.Session, emu: AmazonEmulator) -> None:
    assert control(http, emu, "revoke", {"selling_partner_id": "A9NEVERCONSENTED", "region": "FE"}) == {}


@pytest.mark.parametrize(
    "body",
    [
        {"region": "NA"},
        {"selling_partner_id": "A1EXAMPLESELLERN"},
        {"selling_partner_id": "A1EXAMPLESELLERN", "region": "US"},
        {"selling_partner_id": "lower-case", "region": "NA"},
    ],
)
def test_bad_revoke_requests(http: requests.Session, emu: AmazonEmulator, body: dict[str, Any]) -> None:
    response = http.post(f"{emu.base_url}/_emulator/revoke", json=body, timeout=5)

    assert response.status_code == 400
    assert response.json()["message"]


# -- the yearly lapse ----------------------------------------------------------------------------


def test_an_authorization_lapses_365_days_after_consent(http: requests.Session, emu: AmazonEmulator) -> None:
    tokens = connect(http, emu)
    emu.advance_clock(timedelta(days=365).total_seconds() - 60)
    assert lwa(http, emu, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 200

    emu.advance_clock(61)

    lapsed = lwa(http, emu, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert (lapsed.status_code, lapsed.json()) == (400, INVALID_REFRESH)


def test_reauthorization_renews_the_year(http: requests.Session, emu: AmazonEmulator) -> None:
    first = connect(http, emu)
    emu.advance_clock(timedelta(days=300).total_seconds())
    # The Appstore hop: Log-in URI → the confirm URL on Seller Central → a fresh code.
    hop = control(http, emu, "appstore", {"selling_partner_id": SELLER["NA"], "region": "NA"})["login_url"]
    query = parse_qs(urlsplit(hop).query)
    confirm = query["amazon_callback_uri"][0] + "?" + urlencode(
        {"amazon_state": query["amazon_state"][0], "state": "s2", "version": "beta"}
    )
    location = http.get(confirm, allow_redirects=False, timeout=5).headers["Location"]
    code = parse_qs(urlsplit(location).query)["spapi_oauth_code"][0]
    second = lwa(http, emu, grant_type="authorization_code", code=code, redirect_uri=CALLBACK).json()

    emu.advance_clock(timedelta(days=100).total_seconds())

    assert lwa(http, emu, grant_type="refresh_token", refresh_token=first["refresh_token"]).status_code == 400
    renewed = lwa(http, emu, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert renewed.status_code == 200
    assert participations(http, emu, renewed.json()["access_token"]).status_code == 200


# -- Product Fees getMyFeesEstimateForASIN: the answer names the token's seller -------------------

FEES = "/products/fees/v0/items/{asin}/feesEstimate"


def fees(http: requests.Session, emu: AmazonEmulator, access_token: str | None, region: str = "NA", *,
         marketplace_id: str = "ATVPDKIKX0DER", currency: str = "USD", asin: str = "B00V5DG6IQ",
         body: Any = None) -> requests.Response:
    request = {"FeesEstimateRequest": {
        "MarketplaceId": marketplace_id, "IsAmazonFulfilled": False, "Identifier": "probe-1",
        "PriceToEstimateFees": {"ListingPrice": {"CurrencyCode": currency, "Amount": 10}}}}
    headers = {} if access_token is None else {"x-amz-access-token": access_token}
    return http.post(emu.host_url(SPAPI[region], FEES.format(asin=asin)), headers=headers,
                     json=request if body is None else body, timeout=5)


@pytest.mark.parametrize(("region", "marketplace_id", "currency"),
                         [("NA", "ATVPDKIKX0DER", "USD"), ("EU", "A1PA6795UKMFR9", "EUR"),
                          ("FE", "A1VC38T7YXB528", "JPY")])
def test_fees_estimate_names_the_seller_of_the_token(http: requests.Session, emu: AmazonEmulator, region: str,
                                                     marketplace_id: str, currency: str) -> None:
    tokens = connect(http, emu, region)
    answer = fees(http, emu, tokens["access_token"], region, marketplace_id=marketplace_id, currency=currency)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-amzn-RateLimit-Limit"] == "1"
    result = answer.json()["payload"]["FeesEstimateResult"]
    assert result["Status"] == "Success"
    identifier = result["FeesEstimateIdentifier"]
    assert identifier["SellerId"] == SELLER[region]
    assert (identifier["MarketplaceId"], identifier["IdType"], identifier["IdValue"],
            identifier["SellerInputIdentifier"]) == (marketplace_id, "ASIN", "B00V5DG6IQ", "probe-1")
    assert result["FeesEstimate"]["TotalFeesEstimate"]["CurrencyCode"] == currency


def test_fees_estimate_client_error_still_names_the_seller(http: requests.Session, emu: AmazonEmulator) -> None:
    tokens = connect(http, emu, "NA", seller="A2OTHERSELLERNA")
    result = fees(http, emu, tokens["access_token"], currency="EUR").json()["payload"]["FeesEstimateResult"]
    assert result["Status"] == "ClientError" and result["Error"]["Code"] == "InvalidParameterValue"
    assert result["FeesEstimateIdentifier"]["SellerId"] == "A2OTHERSELLERNA"


def test_fees_estimate_refuses_tokens_it_cannot_attribute(http: requests.Session, emu: AmazonEmulator) -> None:
    tokens = connect(http, emu, "NA")
    assert fees(http, emu, None).json() == MISSING
    assert_unauthorized(fees(http, emu, tokens["access_token"], "EU", marketplace_id="A1PA6795UKMFR9",
                             currency="EUR"))  # another region's host
    grantless = lwa(http, emu, grant_type="client_credentials", scope="sellingpartnerapi::notifications").json()
    assert_unauthorized(fees(http, emu, grantless["access_token"]))
    control(http, emu, "revoke", {"selling_partner_id": SELLER["NA"], "region": "NA"})
    assert_unauthorized(fees(http, emu, tokens["access_token"]))


@pytest.mark.parametrize(("change", "message"), [
    ({"marketplace_id": "A1PA6795UKMFR9", "currency": "EUR"}, "Incorrect Marketplace identifier."),
    ({"asin": "not-an-asin"}, "The ASIN is not valid."),
    ({"body": {"FeesEstimateRequest": {"MarketplaceId": "ATVPDKIKX0DER"}}}, "Identifier is required."),
    ({"body": []}, "FeesEstimateRequest is required."),
])
def test_fees_estimate_validates_the_request(http: requests.Session, emu: AmazonEmulator, change: dict[str, Any],
                                            message: str) -> None:
    tokens = connect(http, emu, "NA")
    answer = fees(http, emu, tokens["access_token"], **change)
    assert answer.status_code == 400
    assert answer.json()["errors"][0] == {"code": "InvalidInput", "message": message, "details": ""}


def test_fees_estimate_throttles_at_burst_two_and_obeys_faults(http: requests.Session, emu: AmazonEmulator) -> None:
    tokens = connect(http, emu, "NA")
    assert [fees(http, emu, tokens["access_token"]).status_code for _ in range(3)] == [200, 200, 429]
    emu.advance_clock(1)
    assert fees(http, emu, tokens["access_token"]).status_code == 200
    control(http, emu, "faults", {"operation": "getMyFeesEstimateForASIN", "status": 403, "count": 1})
    emu.advance_clock(2)
    assert_unauthorized(fees(http, emu, tokens["access_token"]))
    stats = control(http, emu, "stats")
    assert stats["spapi"]["getMyFeesEstimateForASIN"] == 5
    assert stats["throttled_by_operation"]["getMyFeesEstimateForASIN"] == 1
