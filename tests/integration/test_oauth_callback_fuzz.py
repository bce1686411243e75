"""Arbitrary query dicts against /callback.

Invariants: the status is a 303 to our own /done page, 400 or 405; LWA is never called unless the
(state, browser) pair is valid — and a fuzzer cannot forge one; no input value of 8 characters or
more appears in any log line.
"""

from __future__ import annotations

from urllib.parse import urlencode

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api import ConsentClient

KEYS = st.sampled_from(["state", "spapi_oauth_code", "selling_partner_id", "error", "error_description",
                        "mws_auth_token", "redirect_uri", "next", "amazon_callback_uri"]) | st.text(max_size=12)
VALUES = st.text(max_size=64) | st.sampled_from(["A" * 43, "https://evil.example", "//evil", "<script>", "\r\n"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(KEYS, VALUES, max_size=6), with_cookie=st.booleans())
def test_callback_fuzz(consent_env, emulator, capfd, query, with_cookie):
    client = ConsentClient()
    if with_cookie:
        client.get("/connect")  # a real session cookie, but never the state that goes with it
    before = _exchanges(emulator)
    client.get("/callback")
    # What the function always prints (field names, metric names): a value found there is no echo.
    baseline = "\n".join(capfd.readouterr())
    r = client.get("/callback?" + urlencode(query))
    assert r.status in (400, 405) or (r.status == 303 and r.location.startswith("done?")), r.status
    assert "Location" not in r.headers or not r.location.startswith(("http", "//"))
    assert _exchanges(emulator) == before
    output = "\n".join(capfd.readouterr())
    for value in query.values():
        if len(value) >= 8 and value not in baseline:
            assert value not in output


def _exchanges(emulator) -> int:
    return requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()["lwa"].get("authorization_code", 0)
