"""Every bad input is refused safely, with no exchange and nothing stored."""

from __future__ import annotations

import threading
from urllib.parse import quote

import boto3
import pytest
import requests

from tests.support.api import ConsentClient
from tests.support.flows import appstore_login_query, callback_query, connect, emulator_consent, params
from tests.support.iam import acting_as

SELLER = "A1B2C3D4E5F6G7"


def lwa_calls(emulator, grant="authorization_code"):
    return requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()["lwa"].get(grant, 0)


def connections(resources):
    """Authorizations stored: connections, and consents waiting for Amazon to confirm their seller."""
    items = boto3.resource("dynamodb").Table(resources.tables["connections"]).scan()["Items"]
    return sum(1 for item in items if item["sk"].startswith("CONN#") or item["pk"].startswith("CANDIDATE#"))


def states(resources):
    return boto3.resource("dynamodb").Table(resources.tables["oauth_state"]).scan()["Count"]


def started(client, emulator, seller=SELLER, marketplace="US"):
    """A started flow: (our state, the query Amazon sends back)."""
    start = client.get(f"/connect?marketplace={marketplace}")
    redirect = emulator_consent(emulator.base_url, start.location, seller)
    return params(start.location)["state"], callback_query(redirect)


def assert_refused(response, emulator, resources, status=400):
    assert response.status == status, response.body
    assert "Location" not in response.headers
    assert lwa_calls(emulator) == 0
    assert connections(resources) == 0


# 1. missing, empty, repeated state
@pytest.mark.parametrize("query", ["", "state=", "spapi_oauth_code=abcdefgh12&selling_partner_id=" + SELLER,
                                   "state=a&state=b"])
def test_missing_empty_or_repeated_state(consent_env, emulator, query):
    assert_refused(ConsentClient().get(f"/callback?{query}"), emulator, consent_env)


def test_repeated_state_with_valid_values_is_refused(consent_env, emulator):
    client = ConsentClient()
    state, query = started(client, emulator)
    assert_refused(client.get(f"/callback?{query}&state={state}"), emulator, consent_env)


# 2. never issued, expired, already used
def test_state_never_issued(consent_env, emulator):
    client = ConsentClient()
    _, query = started(client, emulator)
    forged = query.replace(params("?" + query)["state"], "A" * 43)
    r = client.get(f"/callback?{forged}")
    assert_refused(r, emulator, consent_env)
    assert "cannot be used" in r.body


def test_state_expired_after_ten_minutes(consent_env, emulator, product_clock):
    client = ConsentClient()
    _, query = started(client, emulator)
    product_clock.advance(601)
    r = client.get(f"/callback?{query}")
    assert_refused(r, emulator, consent_env)
    assert "expired" in r.body
    assert states(consent_env) == 0  # consumed all the same


def test_replay_after_success_gets_neutral_answer_and_one_exchange(consent_env, emulator):
    client = ConsentClient()
    _, query = started(client, emulator)
    assert client.get(f"/callback?{query}").status == 303
    again = client.get(f"/callback?{query}")
    assert again.status == 303 and again.location == "done?outcome=already_connected"
    assert lwa_calls(emulator) == 1
    assert client.get(again.location).status == 200


def test_replay_after_failure_is_refused(consent_env, emulator):
    client = ConsentClient()
    _, query = started(client, emulator)
    emulator.advance_clock(301)
    assert client.get(f"/callback?{query}").status == 400  # LWA: invalid_grant
    again = client.get(f"/callback?{query}")
    assert again.status == 400 and "cannot be used" in again.body
    assert lwa_calls(emulator) == 1


# 3. browser binding
def test_no_session_cookie(consent_env, emulator):
    client = ConsentClient()
    _, query = started(client, emulator)
    r = ConsentClient().get(f"/callback?{query}")
    assert_refused(r, emulator, consent_env)
    assert "another browser" in r.body


def test_other_browser_session_cookie(consent_env, emulator):
    victim, attacker = ConsentClient(), ConsentClient()
    _, attacker_query = started(attacker, emulator, seller="AATTACKER12345")
    victim.get("/connect")  # the victim has a session of their own
    r = victim.get(f"/callback?{attacker_query}")  # login-CSRF: attacker's code in victim's browser
    assert_refused(r, emulator, consent_env)


# 4. hostile state values
@pytest.mark.parametrize("value", [
    "A" * 10_000, "ＡＢＣ" * 15, "%00" + "A" * 42, "A" * 20 + "%0d%0aSet-Cookie:x=y",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "%7B%22%24ne%22%3A1%7D", "..%2F..%2Fetc%2Fpasswd", "' OR '1'='1",
])
def test_hostile_state_values(consent_env, emulator, value):
    r = ConsentClient().get(f"/callback?state={value}&selling_partner_id={SELLER}&spapi_oauth_code=abcdefghij")
    assert_refused(r, emulator, consent_env)
    assert "script" not in r.body and "passwd" not in r.body and "Set-Cookie" not in r.body


# 5. code missing, empty, oversized, bad characters: refused, state consumed
@pytest.mark.parametrize("code", [None, "", "x" * 600, "abc<def>ghij", "abcdefgh%0aij"])
def test_bad_codes(consent_env, emulator, code):
    client = ConsentClient()
    _, query = started(client, emulator)
    fields = params("?" + query)
    fields.pop("spapi_oauth_code")
    bad = "&".join(f"{k}={quote(v)}" for k, v in fields.items())
    if code is not None:
        bad += f"&spapi_oauth_code={code}"
    assert_refused(client.get(f"/callback?{bad}"), emulator, consent_env)
    assert states(consent_env) == 0


# 8. seller id missing or malformed; a different seller than Amazon named at the Log-in URI
@pytest.mark.parametrize("seller", [None, "", "a1b2c3d4e5", "A1<script>", "A" * 40])
def test_bad_seller_ids(consent_env, emulator, seller):
    client = ConsentClient()
    _, query = started(client, emulator)
    fields = params("?" + query)
    fields.pop("selling_partner_id")
    if seller is not None:
        fields["selling_partner_id"] = seller
    assert_refused(client.get("/callback?" + "&".join(f"{k}={quote(v)}" for k, v in fields.items())),
                   emulator, consent_env)


def test_seller_swap_after_login_hop_is_refused(consent_env, emulator):
    client = ConsentClient()
    hop = client.get("/login?" + appstore_login_query(emulator.base_url, SELLER, "NA"))
    amazon = requests.get(hop.location, allow_redirects=False, timeout=5).headers["Location"]
    swapped = callback_query(amazon).replace(SELLER, "AOTHERSELLER99")
    r = client.get(f"/callback?{swapped}")
    assert_refused(r, emulator, consent_env)
    assert "different seller" in r.body


# 9. no open redirects anywhere
EVIL_CALLBACKS = [
    "https://evil.example/apps/authorize/confirm/x", "//evil.example", "https:evil.example", "/\\evil.example",
    "https://sellercentral.amazon.com.evil.example/x", "https://evil.example#@sellercentral.amazon.com",
    "https://sellercentral.amazon.com@evil.example/", "http://sellercentral.amazon.com/x",
    "https://sellercentral.amazon.com:8443/x", "https://sellercentral.amazon.com./x",
    "https://xn--sellercentral-amazon-com.example/x", "https://sellercеntral.amazon.com/x",
    "javascript:alert(1)", "https://sellercentral.amazon.com\\@evil.example",
]


@pytest.mark.parametrize("callback", EVIL_CALLBACKS)
def test_login_refuses_untrusted_callback_uris(consent_env, emulator, callback):
    r = ConsentClient().get(f"/login?amazon_callback_uri={quote(callback, safe='')}&amazon_state=xyz123abc"
                            f"&selling_partner_id={SELLER}")
    assert r.status == 400
    assert "Location" not in r.headers
    assert states(consent_env) == 0


def test_login_accepts_real_seller_and_vendor_central_hosts(consent_env, emulator):
    for host in ("sellercentral.amazon.com", "sellercentral-europe.amazon.com", "vendorcentral.amazon.co.jp"):
        callback = f"https://{host}/apps/authorize/confirm/{emulator.application_id}"
        r = ConsentClient().get(f"/login?amazon_callback_uri={quote(callback, safe='')}&amazon_state=s0meAmazonState")
        assert r.status == 302
        assert r.location.startswith(callback + "?")


@pytest.mark.parametrize("path", [
    "/apps/authorize/confirm/amzn1.sp.solution.someone-else",  # another application's confirmation page
    "/apps/authorize/confirm/",
    "/apps/authorize/consent",
    "/gp/redirect",
    "/apps/authorize/confirm/{app}/more",
    "/apps/authorize/confirm/{app}?next=https://evil.example",  # a query Amazon never sends
    "/apps/authorize/confirm/{app}?",
    "/apps/authorize/confirm/{app}#top",
    "/APPS/authorize/confirm/{app}",
])
def test_login_only_returns_to_amazons_confirmation_page_of_this_app(consent_env, emulator, path):
    callback = "https://sellercentral.amazon.com" + path.replace("{app}", emulator.application_id)
    r = ConsentClient().get(f"/login?amazon_callback_uri={quote(callback, safe='')}&amazon_state=s0meAmazonState")
    assert r.status == 400
    assert "Location" not in r.headers
    assert "Untrusted return address" in r.body
    assert states(consent_env) == 0


def test_login_requires_amazon_state(consent_env):
    callback = quote("https://sellercentral.amazon.com/apps/authorize/confirm/x", safe="")
    assert ConsentClient().get(f"/login?amazon_callback_uri={callback}").status == 400


@pytest.mark.parametrize("extra", ["redirect_uri=https://evil.example", "next=https://evil.example",
                                   "return_to=//evil.example", "amazon_callback_uri=https://evil.example"])
def test_extra_parameters_never_steer_redirects(consent_env, emulator, extra):
    client = ConsentClient()
    start = client.get(f"/connect?{extra}")
    assert params(start.location)["redirect_uri"] == "https://seller-insights.example.com/callback"
    redirect = emulator_consent(emulator.base_url, start.location, SELLER)
    done = client.get(f"/callback?{callback_query(redirect)}&{extra}")
    assert done.status == 303 and done.location.startswith("done?")


# 10. methods
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
@pytest.mark.parametrize("path", ["/callback", "/connect", "/login", "/done"])
def test_other_methods_get_405(consent_env, emulator, method, path):
    r = ConsentClient().get(path, method=method)
    assert r.status == 405 and r.headers["Allow"] == "GET"
    assert lwa_calls(emulator) == 0 and states(consent_env) == 0


# 11. response headers, success and failure
REQUIRED_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


def test_security_headers_on_every_response(consent_env, emulator):
    client = ConsentClient()
    responses = [client.get("/connect"), client.get("/connect?marketplace=ZZ"), client.get("/callback?state=x"),
                 client.get("/callback", method="POST"), client.get("/nowhere"),
                 connect(ConsentClient(), emulator.base_url, SELLER)]
    for r in responses:
        for name, value in REQUIRED_HEADERS.items():
            assert r.headers[name] == value
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


# 12. redirect_uri is the constant whatever the Host headers say
def test_redirect_uri_ignores_host_headers(consent_env):
    from oauth_callback.handler import lambda_handler
    from tests.support.api import FakeContext, http_event

    event = http_event("GET", "/connect", headers={"host": "evil.example", "x-forwarded-host": "evil.example"})
    with acting_as("oauth_callback"):
        location = lambda_handler(event, FakeContext())["headers"]["Location"]
    assert params(location)["redirect_uri"] == "https://seller-insights.example.com/callback"


# 13. two parallel callbacks with the same state: exactly one wins
def test_parallel_callbacks_one_winner(consent_env, emulator):
    client = ConsentClient()
    _, query = started(client, emulator)
    barrier = threading.Barrier(4)
    results: list[int] = []

    def attempt() -> None:
        twin = ConsentClient(concurrent=True)
        twin.jar = dict(client.jar)
        barrier.wait()
        results.append(twin.get(f"/callback?{query}").status)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lwa_calls(emulator) == 1
    assert connections(consent_env) == 1
    assert results.count(303) >= 1  # the winner, and maybe "already connected" for late twins
    assert len(results) == 4 and all(r in (303, 400, 409) for r in results), results


# 14. a trailing slash is the same route; the strict checks run before any route, matched or not
def test_a_trailing_slash_is_the_same_route(consent_env, emulator):
    assert ConsentClient().get("/connect/").status == 302
    r = ConsentClient().get("/callback/", method="POST")
    assert r.status == 405 and r.headers["Allow"] == "GET"
    assert ConsentClient().get("/").status == 404


def test_a_repeated_parameter_is_refused_on_any_path(consent_env, emulator):
    for path in ("/nowhere?a=1&a=2", "/done?outcome=pending&outcome=pending"):
        r = ConsentClient().get(path)
        assert r.status == 400 and "This request is incomplete" in r.body


# 15. metric names are chosen, not built from class names at run time
def test_failure_metric_names_are_chosen_and_stable():
    from botocore.exceptions import ClientError, EndpointConnectionError

    from oauth_callback.handler import FAILURE_METRICS, UNEXPECTED_FAILURE_METRIC, failure_metric
    from seller_insights.errors import LwaInvalidGrant, SellerInsightsError, StateExpired

    for error_type, name in FAILURE_METRICS.items():
        # The names the product has always counted under (alarms and dashboards key on them).
        assert name == f"ConsentFailed{error_type.__name__}"
    assert len(set(FAILURE_METRICS.values())) == len(FAILURE_METRICS)
    assert failure_metric(StateExpired("x")) == "ConsentFailedStateExpired"
    assert failure_metric(LwaInvalidGrant("invalid_grant", 400)) == "ConsentFailedLwaInvalidGrant"
    assert failure_metric(ClientError({"Error": {"Code": "X"}}, "Op")) == "ConsentFailedClientError"
    assert failure_metric(EndpointConnectionError(endpoint_url="https://kms")) == "ConsentFailedBotoCoreError"

    class Surprise(SellerInsightsError):
        pass

    assert failure_metric(Surprise()) == failure_metric(KeyError("k")) == UNEXPECTED_FAILURE_METRIC


def test_each_failure_is_counted_once_whether_a_middleware_or_a_route_raised_it(consent_env, emulator, capfd):
    client = ConsentClient()
    _, query = started(client, emulator)
    forged = query.replace(params("?" + query)["state"], "A" * 43)
    capfd.readouterr()
    # strict_request (a middleware) refuses a repeated parameter; the callback route refuses an unknown state.
    assert client.get("/callback?state=a&state=b").status == 400
    assert "cannot be used" in client.get(f"/callback?{forged}").body
    out = capfd.readouterr().out
    assert out.count('"ConsentFailedBadRequest":[1.0]') == 1
    assert out.count('"ConsentFailedStateNotFound":[1.0]') == 1
    assert "ConsentFailedUnexpected" not in out
