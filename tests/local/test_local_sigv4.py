"""The SigV4 gate of the local API gateway's IAM-authorized routes (`/admin/...`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local import sigv4
from tests.support.local_gateway import ACCESS_KEY, SECRET_KEY, echo_gateway, signed


def check(
    method: str, url: str, headers: dict[str, str], body: bytes = b"", now: datetime | None = None
) -> sigv4.Outcome:
    return sigv4.verify(
        method=method,
        url=url,
        headers=headers,
        body=body,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region="us-east-1",
        service="execute-api",
        now=now or datetime.now(UTC),
    )


URL = "http://127.0.0.1:8080/admin/sellers/A1B2C3?view=full&b=2&a=1"


def test_a_request_signed_by_botocore_verifies() -> None:
    assert check("GET", URL, signed("GET", URL)).verdict is sigv4.Verdict.OK
    body = b'{"reason": "seller asked"}'
    assert check("POST", URL, signed("POST", URL, body), body).verdict is sigv4.Verdict.OK


def test_no_signature_is_missing() -> None:
    assert check("GET", URL, {"Host": "127.0.0.1:8080"}).verdict is sigv4.Verdict.MISSING


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b, u: (h, b + b"x", u), id="body"),
        pytest.param(lambda h, b, u: (h, b, URL.replace("a=1", "a=2")), id="query"),
        pytest.param(lambda h, b, u: (h, b, URL.replace("A1B2C3", "A9")), id="path"),
        pytest.param(lambda h, b, u: ({**h, "X-Amz-Date": "20200101T000000Z"}, b, u), id="date"),
        pytest.param(lambda h, b, u: ({**h, "Authorization": h["Authorization"][:-4] + "0000"}, b, u), id="signature"),
        pytest.param(lambda h, b, u: ({**h, "Authorization": "Bearer abc"}, b, u), id="scheme"),
    ],
)
def test_a_tampered_request_is_forbidden(tamper: Any) -> None:
    body = b'{"reason": "x"}'
    headers, body2, url = tamper(signed("POST", URL, body), body, URL)
    assert check("POST", url, headers, body2).verdict is sigv4.Verdict.INVALID


@pytest.mark.parametrize(
    "kwargs",
    [{"secret": "another-secret"}, {"access_key": "AKIASOMEONEELSE00001"}, {"service": "s3"}, {"region": "eu-west-1"}],
)
def test_other_credentials_or_scopes_are_forbidden(kwargs: dict[str, Any]) -> None:
    assert check("GET", URL, signed("GET", URL, **kwargs)).verdict is sigv4.Verdict.INVALID


def test_the_signature_is_valid_five_minutes_around_the_virtual_clock() -> None:
    headers = signed("GET", URL)
    now = datetime.now(UTC)
    assert check("GET", URL, headers, now=now + timedelta(minutes=4)).verdict is sigv4.Verdict.OK
    assert check("GET", URL, headers, now=now + timedelta(minutes=6)).verdict is sigv4.Verdict.INVALID
    assert check("GET", URL, headers, now=now - timedelta(minutes=6)).verdict is sigv4.Verdict.INVALID


def test_the_gateway_answers_401_403_and_passes_signed_requests(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = echo_gateway(tmp_path, monkeypatch, ["GET /admin/sellers/{id}"], admin=(ACCESS_KEY, SECRET_KEY))
    url = "http://localhost/admin/sellers/A1B2C3?view=full"

    missing = client.get("/admin/sellers/A1B2C3?view=full")
    assert (missing.status_code, missing.json) == (401, {"message": "Unauthorized"})

    forged = client.get("/admin/sellers/A1B2C3?view=full", headers=signed("GET", url, secret="wrong"))
    assert (forged.status_code, forged.json) == (403, {"message": "Forbidden"})

    ok = client.get("/admin/sellers/A1B2C3?view=full", headers=signed("GET", url))
    assert ok.status_code == 200
    event = (ok.json or {})["event"]
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == ACCESS_KEY
    assert event["pathParameters"] == {"id": "A1B2C3"}
