"""The Amazon emulator over real HTTP on loopback: consent page, Log-in URI hop, LWA, control API."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from local.amazon import AmazonEmulator
from local.amazon.state import SPAPI_OPERATIONS

CALLBACK = "https://app.example.test/callback"
OTHER_CALLBACK = "https://app.example.test/other-callback"
LOGIN = "https://app.example.test/login"
CENTRAL = "sellercentral.amazon.com"
TRICKY_STATE = 'st&te=1 /+?#é"<x>'

INVALID_CODE = {
    "error": "invalid_grant",
    "error_description": "The request has an invalid grant parameter : code",
}


@pytest.fixture(scope="module")
def emu() -> Iterator[AmazonEmulator]:
    with AmazonEmulator(redirect_uris=[CALLBACK, OTHER_CALLBACK], login_uri=LOGIN) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def fresh(emu: AmazonEmulator) -> None:
    """One server per module; each test starts from an empty state and the default registration."""
    emu.reset()
    emu.configure(redirect_uris=[CALLBACK, OTHER_CALLBACK], login_uri=LOGIN, draft=True, app_name="Seller Insights")


@pytest.fixture(autouse=True)
def quiet_http_client() -> Iterator[None]:
    """urllib3 logs every URL it requests at DEBUG, query string included (states, codes)."""
    urllib3_logger = logging.getLogger("urllib3")
    level = urllib3_logger.level
    urllib3_logger.setLevel(logging.WARNING)
    yield
    urllib3_logger.setLevel(level)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only, never through a proxy from the environment
        yield session


# -- helpers ------------------------------------------------------------------------------------


def consent_url(emu: AmazonEmulator, host: str = CENTRAL, **params: str | None) -> str:
    """A consent URL in the emulator's /_hosts/ form; a parameter set to None is left out."""
    query: dict[str, str | None] = {"application_id": emu.application_id, "state": "s1", "version": "beta", **params}
    return (
        emu.host_url(host, "/apps/authorize/consent")
        + "?"
        + urlencode({k: v for k, v in query.items() if v is not None})
    )


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def answer(http: requests.Session, url: str, action: str = "confirm", seller: str = "A1EXAMPLESELLERN") -> str:
    response = http.post(url, data={"selling_partner_id": seller, "action": action}, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    return str(response.headers["Location"])


def token(http: requests.Session, emu: AmazonEmulator, timeout: float = 5, **fields: str) -> requests.Response:
    body = {"client_id": emu.client_id, "client_secret": emu.client_secret, **fields}
    return http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), data=body, timeout=timeout)


def exchange(http: requests.Session, emu: AmazonEmulator, code: str, redirect_uri: str = CALLBACK) -> requests.Response:
    return token(http, emu, grant_type="authorization_code", code=code, redirect_uri=redirect_uri)


def new_code(http: requests.Session, emu: AmazonEmulator, seller: str = "A1EXAMPLESELLERN") -> str:
    return query_of(answer(http, consent_url(emu), seller=seller))["spapi_oauth_code"][0]


def control(http: requests.Session, emu: AmazonEmulator, path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"{emu.base_url}/_emulator/{path}"
    response = http.post(url, json=body, timeout=5) if body is not None else http.get(url, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


# -- the consent page ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("sellercentral.amazon.com", "NA"),
        ("sellercentral.amazon.com.br", "NA"),
        ("sellercentral-europe.amazon.com", "EU"),
        ("sellercentral.amazon.de", "EU"),
        ("sellercentral.amazon.co.uk", "EU"),
        ("vendorcentral.amazon.me", "EU"),
        ("sellercentral.amazon.co.jp", "FE"),
        ("sellercentral.amazon.com.au", "FE"),
        ("sellercentral.amazon.sg", "FE"),
    ],
)
def test_consent_page_is_a_form_for_the_host_region(
    http: requests.Session, emu: AmazonEmulator, host: str, region: str
) -> None:
    response = http.get(consent_url(emu, host), timeout=5)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = response.text
    assert '<form method="post"' in page
    assert 'id="confirm"' in page and 'id="cancel"' in page
    assert f'<strong id="region-code">{region}</strong>' in page
    assert f'value="A1EXAMPLESELLER{region[0]}"' in page
    assert "Seller Insights" in page


def test_consent_page_escapes_what_it_echoes(http: requests.Session, emu: AmazonEmulator) -> None:
    emu.configure(app_name='<script>alert("name")</script> & Co')
    url = consent_url(emu, state='"><script>alert(1)</script>')

    page = http.get(url, timeout=5).text

    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt; &amp; Co" in page


def test_invalid_seller_id_in_the_form_is_shown_escaped(http: requests.Session, emu: AmazonEmulator) -> None:
    response = http.post(
        consent_url(emu), data={"selling_partner_id": '"><img src=x>', "action": "confirm"}, allow_redirects=False
    )

    assert response.status_code == 400
    assert "<img" not in response.text
    assert "&#34;&gt;&lt;img src=x&gt;" in response.text


@pytest.mark.parametrize(
    ("draft", "version", "reason"),
    [
        (True, "beta", None),
        (True, None, "this app is in draft; add version=beta"),
        (False, None, None),
        (False, "beta", "version=beta is only for draft apps"),
        (True, "gamma", "only version=beta"),
    ],
)
def test_version_beta_rules(
    http: requests.Session, emu: AmazonEmulator, draft: bool, version: str | None, reason: str | None
) -> None:
    emu.configure(draft=draft)
    response = http.get(consent_url(emu, version=version), allow_redirects=False, timeout=5)

    assert response.status_code == (400 if reason else 200)
    assert response.headers["Content-Type"].startswith("text/html")
    if reason:
        assert reason in response.text


def test_unknown_application_id_is_an_error_page(http: requests.Session, emu: AmazonEmulator) -> None:
    response = http.get(consent_url(emu, application_id="amzn1.sp.solution.nope"), timeout=5)

    assert response.status_code == 400
    assert "unknown application_id" in response.text


def test_redirect_uri_must_match_exactly(http: requests.Session, emu: AmazonEmulator) -> None:
    for near_miss in (CALLBACK + "/", CALLBACK.upper(), CALLBACK + "?x=1", "https://evil.example/callback"):
        response = http.get(consent_url(emu, redirect_uri=near_miss), allow_redirects=False, timeout=5)
        assert response.status_code == 400, near_miss
        assert "redirect_uri is not one of the OAuth redirect URIs registered" in response.text

    assert answer(http, consent_url(emu, redirect_uri=OTHER_CALLBACK)).startswith(OTHER_CALLBACK + "?")
    assert answer(http, consent_url(emu)).startswith(CALLBACK + "?")  # absent: the first registered


def test_confirm_redirects_with_state_seller_and_code(http: requests.Session, emu: AmazonEmulator) -> None:
    url = consent_url(emu, "sellercentral-europe.amazon.com", state=TRICKY_STATE)

    location = answer(http, url, seller="A2SELLER1234")

    assert location.startswith(CALLBACK + "?state=")
    params = query_of(location)
    assert list(params) == ["state", "selling_partner_id", "spapi_oauth_code"]
    assert params["state"] == [TRICKY_STATE]
    assert params["selling_partner_id"] == ["A2SELLER1234"]
    granted = exchange(http, emu, params["spapi_oauth_code"][0])
    assert granted.status_code == 200
    access = emu.state.access_token(granted.json()["access_token"])
    assert access is not None and access.authorization is not None
    assert (access.authorization.selling_partner_id, access.authorization.region) == ("A2SELLER1234", "EU")


def test_cancel_redirects_with_access_denied_and_state(http: requests.Session, emu: AmazonEmulator) -> None:
    location = answer(http, consent_url(emu, state=TRICKY_STATE), action="cancel")

    assert location.startswith(CALLBACK + "?error=access_denied&error_description=The+user+denied+the+request&state=")
    params = query_of(location)
    assert params["state"] == [TRICKY_STATE]
    assert "spapi_oauth_code" not in params


# -- control: consent and appstore --------------------------------------------------------------


def test_control_consent_accepts_real_and_emulator_urls(http: requests.Session, emu: AmazonEmulator) -> None:
    real = "https://sellercentral.amazon.co.jp/apps/authorize/consent?" + urlencode(
        {"application_id": emu.application_id, "state": TRICKY_STATE, "version": "beta"}
    )
    for url in (real, consent_url(emu, state=TRICKY_STATE)):
        redirect = control(http, emu, "consent", {"consent_url": url, "selling_partner_id": "A3SELLERFE99"})["redirect"]
        params = query_of(redirect)
        assert params["state"] == [TRICKY_STATE]
        assert params["selling_partner_id"] == ["A3SELLERFE99"]
        assert exchange(http, emu, params["spapi_oauth_code"][0]).status_code == 200


def test_control_consent_rejects_what_the_page_rejects(http: requests.Session, emu: AmazonEmulator) -> None:
    url = consent_url(emu, version=None)
    page = http.get(url, timeout=5)
    response = http.post(
        f"{emu.base_url}/_emulator/consent", json={"consent_url": url, "selling_partner_id": "A1EXAMPLESELLERN"}
    )

    assert page.status_code == response.status_code == 400
    assert response.json()["message"] == "this app is in draft; add version=beta"
    assert response.json()["message"] in page.text
    for bad in (
        {"consent_url": "https://example.com/apps/authorize/consent", "selling_partner_id": "A1EXAMPLESELLERN"},
        {"consent_url": consent_url(emu), "selling_partner_id": "lowercase-id"},
        {"consent_url": consent_url(emu)},
    ):
        assert http.post(f"{emu.base_url}/_emulator/consent", json=bad, timeout=5).status_code == 400


def test_appstore_login_uri_hop_gives_a_code(http: requests.Session, emu: AmazonEmulator) -> None:
    login_url = control(http, emu, "appstore", {"selling_partner_id": "A1EXAMPLESELLERE", "region": "EU"})["login_url"]

    assert login_url.startswith(LOGIN + "?amazon_callback_uri=")
    hop = query_of(login_url)
    assert hop["selling_partner_id"] == ["A1EXAMPLESELLERE"]
    assert hop["version"] == ["beta"]
    callback = hop["amazon_callback_uri"][0]
    expected = emu.host_url("sellercentral-europe.amazon.com", f"/apps/authorize/confirm/{emu.application_id}")
    assert callback == expected

    # What our Log-in URI handler does: back to amazon_callback_uri with amazon_state and its own state.
    back = (
        callback + "?" + urlencode({"amazon_state": hop["amazon_state"][0], "state": TRICKY_STATE, "version": "beta"})
    )
    response = http.get(back, allow_redirects=False, timeout=5)

    assert response.status_code == 302
    final = query_of(response.headers["Location"])
    assert final["state"] == [TRICKY_STATE]
    assert final["selling_partner_id"] == ["A1EXAMPLESELLERE"]
    assert exchange(http, emu, final["spapi_oauth_code"][0]).status_code == 200
    # amazon_state is single use
    again = http.get(back, allow_redirects=False, timeout=5)
    assert again.status_code == 400
    assert "already been used" in again.text


def test_confirm_hop_rejects_bad_input(http: requests.Session, emu: AmazonEmulator) -> None:
    def hop(callback: str | None = None, **overrides: str | None) -> requests.Response:
        login = control(http, emu, "appstore", {"selling_partner_id": "A1EXAMPLESELLERN", "region": "NA"})["login_url"]
        params = query_of(login)
        query = {"amazon_state": params["amazon_state"][0], "state": "s", "version": "beta", **overrides}
        url = (callback or params["amazon_callback_uri"][0]) + "?"
        return http.get(url + urlencode({k: v for k, v in query.items() if v is not None}), allow_redirects=False)

    assert hop().status_code == 302
    assert "amazon_state is unknown" in hop(amazon_state="forged").text
    assert "amazon_state is required" in hop(amazon_state=None).text
    assert "add version=beta" in hop(version=None).text
    assert "redirect URIs registered for this app" in hop(redirect_uri="https://evil.example/cb").text
    wrong_app = emu.host_url(CENTRAL, "/apps/authorize/confirm/amzn1.sp.solution.other")
    assert "unknown application_id" in hop(callback=wrong_app).text
    other_region = emu.host_url("sellercentral.amazon.co.jp", f"/apps/authorize/confirm/{emu.application_id}")
    assert "issued for region NA" in hop(callback=other_region).text

    login = control(http, emu, "appstore", {"selling_partner_id": "A1EXAMPLESELLERN", "region": "NA"})["login_url"]
    control(http, emu, "clock", {"advance_seconds": 601})
    params = query_of(login)
    late = (
        params["amazon_callback_uri"][0]
        + "?"
        + urlencode({"amazon_state": params["amazon_state"][0], "version": "beta"})
    )
    response = http.get(late, allow_redirects=False, timeout=5)
    assert response.status_code == 400
    assert "amazon_state has expired" in response.text


def test_appstore_for_a_published_app_has_no_version(http: requests.Session, emu: AmazonEmulator) -> None:
    emu.configure(draft=False)

    login_url = control(http, emu, "appstore", {"selling_partner_id": "A1EXAMPLESELLERF", "region": "FE"})["login_url"]

    assert "version" not in query_of(login_url)
    assert "/_hosts/sellercentral.amazon.co.jp/apps/authorize/confirm/" in query_of(login_url)["amazon_callback_uri"][0]
    for bad in ({"selling_partner_id": "A1EXAMPLESELLERF", "region": "XX"}, {"region": "NA"}):
        assert http.post(f"{emu.base_url}/_emulator/appstore", json=bad, timeout=5).status_code == 400


# -- LWA ----------------------------------------------------------------------------------------


def test_code_exchange_gives_lwa_tokens(http: requests.Session, emu: AmazonEmulator) -> None:
    response = exchange(http, emu, new_code(http, emu))

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["access_token"].startswith("Atza|") and 300 < len(body["access_token"]) < 2048
    assert body["refresh_token"].startswith("Atzr|") and 300 < len(body["refresh_token"]) < 2048


def test_json_body_is_accepted(http: requests.Session, emu: AmazonEmulator) -> None:
    body = {
        "grant_type": "authorization_code",
        "code": new_code(http, emu),
        "redirect_uri": CALLBACK,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
    }
    response = http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), json=body, timeout=5)

    assert response.status_code == 200
    assert response.json()["refresh_token"].startswith("Atzr|")


def test_code_works_once(http: requests.Session, emu: AmazonEmulator) -> None:
    code = new_code(http, emu)

    assert exchange(http, emu, code).status_code == 200
    second = exchange(http, emu, code)
    assert second.status_code == 400
    assert second.json() == INVALID_CODE


def test_code_expires_after_five_minutes_of_emulator_time(http: requests.Session, emu: AmazonEmulator) -> None:
    fresh_code, stale_code = new_code(http, emu), new_code(http, emu)
    control(http, emu, "clock", {"advance_seconds": 299})
    assert exchange(http, emu, fresh_code).status_code == 200

    control(http, emu, "clock", {"advance_seconds": 2})
    response = exchange(http, emu, stale_code)
    assert response.status_code == 400
    assert response.json() == INVALID_CODE


def test_unknown_code_is_invalid_grant(http: requests.Session, emu: AmazonEmulator) -> None:
    response = exchange(http, emu, "ANDGXVQqJbwXvxjIvWYW")

    assert response.status_code == 400
    assert response.json() == INVALID_CODE


def test_redirect_uri_must_match_the_one_of_the_code(http: requests.Session, emu: AmazonEmulator) -> None:
    response = exchange(http, emu, new_code(http, emu), redirect_uri=OTHER_CALLBACK)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_refresh_grant(http: requests.Session, emu: AmazonEmulator) -> None:
    first = exchange(http, emu, new_code(http, emu)).json()

    refreshed = token(http, emu, grant_type="refresh_token", refresh_token=first["refresh_token"])

    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["refresh_token"] == first["refresh_token"]
    assert body["access_token"].startswith("Atza|") and body["access_token"] != first["access_token"]
    assert body["expires_in"] == 3600 and body["token_type"] == "bearer"
    assert control(http, emu, "stats")["lwa"]["refresh_token"] == 1

    unknown = token(http, emu, grant_type="refresh_token", refresh_token="Atzr|forged")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": "invalid_grant",
        "error_description": "The request has an invalid grant parameter : refresh_token. "
        "User may have revoked or didn't grant the permission.",
    }


def test_access_token_lives_an_hour_of_emulator_time(http: requests.Session, emu: AmazonEmulator) -> None:
    access = exchange(http, emu, new_code(http, emu)).json()["access_token"]

    assert emu.state.access_token(access) is not None
    emu.advance_clock(3600)
    assert emu.state.access_token(access) is None


@pytest.mark.parametrize(
    "scope",
    [
        "sellingpartnerapi::notifications",
        "sellingpartnerapi::client_credential:rotation",
        "sellingpartnerapi::migration",
    ],
)
def test_client_credentials_with_a_supported_scope(http: requests.Session, emu: AmazonEmulator, scope: str) -> None:
    response = token(http, emu, grant_type="client_credentials", scope=scope)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "scope", "token_type", "expires_in"}
    assert body["access_token"].startswith("Atc|")
    assert body["scope"] == scope


def test_client_credentials_scope_errors(http: requests.Session, emu: AmazonEmulator) -> None:
    bad = token(http, emu, grant_type="client_credentials", scope="sellingpartnerapi::everything")
    missing = token(http, emu, grant_type="client_credentials")

    assert bad.status_code == 400 and bad.json()["error"] == "invalid_scope"
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "wrong",
    [{"client_id": "amzn1.application-oa2-client.0000"}, {"client_secret": "amzn1.oa2-cs.v1.0000"}],
)
def test_wrong_client_credentials_are_invalid_client(
    http: requests.Session, emu: AmazonEmulator, wrong: dict[str, str]
) -> None:
    body = {"client_id": emu.client_id, "client_secret": emu.client_secret, **wrong}
    body |= {"grant_type": "client_credentials", "scope": "sellingpartnerapi::notifications"}

    response = http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), data=body, timeout=5)

    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": "Client authentication failed"}


def test_request_errors(http: requests.Session, emu: AmazonEmulator) -> None:
    unsupported = token(http, emu, grant_type="password")
    missing_code = token(http, emu, grant_type="authorization_code", redirect_uri=CALLBACK)
    missing_grant = token(http, emu)
    repeated = http.post(
        emu.host_url("api.amazon.com", "/auth/o2/token"),
        data=[("grant_type", "client_credentials"), ("grant_type", "refresh_token")],
        timeout=5,
    )
    wrong_method = http.get(emu.host_url("api.amazon.com", "/auth/o2/token"), timeout=5)

    assert unsupported.status_code == 400 and unsupported.json()["error"] == "unsupported_grant_type"
    assert missing_code.status_code == 400 and missing_code.json()["error"] == "invalid_request"
    assert "code" in missing_code.json()["error_description"]
    assert missing_grant.status_code == 400 and missing_grant.json()["error"] == "invalid_request"
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"
    assert wrong_method.status_code == 405


# -- faults, stats, clock -----------------------------------------------------------------------


@pytest.mark.parametrize(("status", "error"), [(500, "server_error"), (503, "temporarily_unavailable")])
def test_faults_fail_the_next_calls(http: requests.Session, emu: AmazonEmulator, status: int, error: str) -> None:
    control(http, emu, "faults", {"operation": "lwa_token", "status": status, "count": 2})
    scope = "sellingpartnerapi::notifications"

    answers = [token(http, emu, grant_type="client_credentials", scope=scope) for _ in range(3)]

    assert [a.status_code for a in answers] == [status, status, 200]
    assert answers[0].json()["error"] == error
    assert control(http, emu, "stats")["lwa_errors"] == {error: 2}


def test_timeout_fault_holds_the_answer(http: requests.Session, emu: AmazonEmulator) -> None:
    control(http, emu, "faults", {"operation": "lwa_token", "status": "timeout", "count": 1, "hold_seconds": 1.0})

    with pytest.raises(requests.exceptions.ReadTimeout):
        token(http, emu, timeout=0.2, grant_type="client_credentials", scope="sellingpartnerapi::notifications")
    after = token(http, emu, grant_type="client_credentials", scope="sellingpartnerapi::notifications")
    assert after.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"operation": "getOrders", "status": 500, "count": 1},
        {"operation": "lwa_token", "status": 429, "count": 1},
        {"operation": "lwa_token", "status": 500, "count": 0},
        {"operation": "lwa_token", "status": 500, "count": 1, "hold_seconds": 1},
        {"operation": "lwa_token", "status": "timeout", "count": 1, "hold_seconds": -1},
        {"status": 500, "count": 1},
    ],
)
def test_bad_fault_requests(http: requests.Session, emu: AmazonEmulator, body: dict[str, Any]) -> None:
    response = http.post(f"{emu.base_url}/_emulator/faults", json=body, timeout=5)

    assert response.status_code == 400
    assert response.json()["message"]


def test_stats_count_every_token_call_by_grant(http: requests.Session, emu: AmazonEmulator) -> None:
    code = new_code(http, emu)
    refresh = exchange(http, emu, code).json()["refresh_token"]
    exchange(http, emu, code)  # invalid_grant
    token(http, emu, grant_type="refresh_token", refresh_token=refresh)
    token(http, emu, grant_type="refresh_token", refresh_token=refresh, client_secret="wrong")
    token(http, emu, grant_type="client_credentials", scope="sellingpartnerapi::migration")

    assert control(http, emu, "stats") == {
        "lwa": {"authorization_code": 2, "refresh_token": 2, "client_credentials": 1},
        "lwa_errors": {"invalid_grant": 1, "invalid_client": 1},
        "spapi": dict.fromkeys(SPAPI_OPERATIONS, 0),
        "spapi_denied": dict.fromkeys(SPAPI_OPERATIONS, 0),
        "throttled": 0,
        "throttled_by_operation": {},
        "notifications": {},
        "documents_served": 0,
        "destinations": 0,
        "subscriptions": 0,
        "destinations_by_region": {"NA": 0, "EU": 0, "FE": 0},
        "subscriptions_by_region": {"NA": 0, "EU": 0, "FE": 0},
    }


def test_clock(http: requests.Session, emu: AmazonEmulator) -> None:
    before = datetime.fromisoformat(control(http, emu, "clock")["now"])
    after = datetime.fromisoformat(control(http, emu, "clock", {"advance_seconds": 86400})["now"])

    assert 86400 <= (after - before).total_seconds() < 86460
    for bad in ({"advance_seconds": -1}, {"advance_seconds": "10"}, {}):
        assert http.post(f"{emu.base_url}/_emulator/clock", json=bad, timeout=5).status_code == 400


def test_sellers_and_unknown_routes(http: requests.Session, emu: AmazonEmulator) -> None:
    assert control(http, emu, "sellers", {"selling_partner_id": "A9SEEDEDSELLER", "region": "NA"}) == {
        "selling_partner_id": "A9SEEDEDSELLER",
        "region": "NA",
    }
    assert {"selling_partner_id": "A9SEEDEDSELLER", "region": "NA"} in control(http, emu, "sellers")["sellers"]
    assert http.get(emu.host_url("www.example.com", "/"), timeout=5).status_code == 404
    assert http.get(f"{emu.base_url}/_emulator/nothing", timeout=5).status_code == 404
    assert http.post(f"{emu.base_url}/_emulator/appstore", data="not json", timeout=5).status_code == 400


def test_nothing_secret_reaches_the_logs(
    http: requests.Session, emu: AmazonEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    location = answer(http, consent_url(emu, state="secret-state-value"))
    code = query_of(location)["spapi_oauth_code"][0]
    tokens = exchange(http, emu, code).json()
    token(http, emu, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    exchange(http, emu, code)

    # The emulator's own records (the HTTP client's debug lines would show URLs it sent).
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("local.amazon", "werkzeug")))
    assert "POST /_hosts/api.amazon.com/auth/o2/token" in text  # it does log, just not the secrets
    for secret in ("secret-state-value", code, tokens["access_token"], tokens["refresh_token"], emu.client_secret):
        assert secret not in text


def test_roles_are_withheld_per_application_or_seller_and_given_back(
    http: requests.Session, emu: AmazonEmulator
) -> None:
    listed = control(http, emu, "roles", {"role": "Brand Analytics", "selling_partner_id": "A1EXAMPLESELLERN"})
    assert listed == {"withheld": [{"role": "Brand Analytics", "selling_partner_id": "A1EXAMPLESELLERN"}]}
    assert emu.state.roles.withheld("A1EXAMPLESELLERN", "Brand Analytics")
    assert not emu.state.roles.withheld("A2OTHERSELLERXX", "Brand Analytics")

    control(http, emu, "roles", {"role": "Finance and Accounting"})  # the whole application
    assert emu.state.roles.report_type_withheld("A2OTHERSELLERXX", "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2")

    control(http, emu, "roles", {"role": "Brand Analytics", "selling_partner_id": "A1EXAMPLESELLERN",
                                 "withheld": False})
    assert control(http, emu, "roles") == {"withheld": [{"role": "Finance and Accounting",
                                                         "selling_partner_id": None}]}
    control(http, emu, "reset", {})
    assert control(http, emu, "roles") == {"withheld": []}


def test_an_unknown_role_is_refused(http: requests.Session, emu: AmazonEmulator) -> None:
    response = http.post(f"{emu.base_url}/_emulator/roles", json={"role": "Everything"}, timeout=5)

    assert response.status_code == 400
    assert "known:" in response.json()["message"]
