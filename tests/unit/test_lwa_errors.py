"""LWA's error answers map to one error type each, and the error carries LWA's `error` code only: nothing
else of the body (its description, or a token LWA echoes) reaches the exception's text."""

from __future__ import annotations

from typing import Any

import pytest

from seller_insights.errors import LwaError, LwaInvalidClient, LwaInvalidGrant, LwaRejected, LwaUnavailable
from seller_insights.lwa import _error

# What an LWA error body may carry besides `error`: a description that quotes the refresh token, and
# token fields. None of it may reach the error's text.
SECRET_BEARING_FIELDS = {
    "error_description": "The refresh token Atzr|IwEBIDescriptionQuotesTheToken is revoked",
    "refresh_token": "Atzr|IwEBIEchoedRefreshToken",
    "access_token": "Atza|IwEBIEchoedAccessToken",
}


@pytest.mark.parametrize(("status", "body", "expected"), [
    (400, {"error": "invalid_grant"}, LwaInvalidGrant),
    (401, {"error": "invalid_client"}, LwaInvalidClient),
    (500, {"error": "server_error"}, LwaUnavailable),
    (503, {"error": "temporarily_unavailable"}, LwaUnavailable),
    (502, {}, LwaUnavailable),
    (400, {"error": "invalid_request"}, LwaRejected),
    (400, {"error": "invalid_scope"}, LwaRejected),
    (400, {"error": "unauthorized_client"}, LwaRejected),
    (400, {}, LwaRejected),
])
def test_lwa_error_codes_map_to_types(status: int, body: dict[str, Any], expected: type[LwaError]) -> None:
    error = _error(status, {**body, **SECRET_BEARING_FIELDS})

    assert type(error) is expected
    assert error.http_status == status
    assert error.code == body.get("error", error.code)
    for text in (str(error), repr(error), *map(str, error.args)):
        assert "Atz" not in text
        assert "revoked" not in text
