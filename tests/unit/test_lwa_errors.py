import pytest

from seller_insights.errors import LwaInvalidClient, LwaInvalidGrant, LwaRejected, LwaUnavailable
from seller_insights.lwa import _error


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
def test_lwa_error_codes_map_to_types(status, body, expected):
    error = _error(status, body)
    assert type(error) is expected
    assert "Atz" not in str(error)
