"""Client secret rotation and the application notifications, delivered to a real SQS queue.

moto runs as a server on a free loopback port (the emulator sends from its own server thread with
its own boto3 client, so in-process mocking would not see those calls). The messages carry client
secrets: they are parsed and compared, never printed.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from local.amazon import AmazonEmulator

ROTATE = "/applications/2023-11-30/clientSecret"
ROTATION_SCOPE = "sellingpartnerapi::client_credential:rotation"
SPAPI_NA = "sellingpartnerapi-na.amazon.com"
CALLBACK = "https://app.example.test/callback"
SECRET_SHAPE = re.compile(r"amzn1\.oa2-cs\.v1\.[0-9a-f]{64}")
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Client authentication failed"}
UNAUTHORIZED = {
    "errors": [
        {
            "code": "Unauthorized",
            "message": "Access to requested resource is denied.",
            "details": "The access token you provided is revoked, malformed or invalid.",
        }
    ]
}
ENVELOPE_KEYS = {"notificationVersion", "notificationType", "payloadVersion", "eventTime", "payload",
                 "notificationMetadata"}
METADATA_KEYS = {"applicationId", "subscriptionId", "publishTime", "notificationId"}


@pytest.fixture(scope="module")
def queue_url(sqs: Any) -> str:
    return str(sqs.create_queue(QueueName=f"notifications-{uuid.uuid4().hex[:8]}")["QueueUrl"])


@pytest.fixture(scope="module")
def emu(queue_url: str, moto_endpoint: str) -> Iterator[AmazonEmulator]:
    with AmazonEmulator(redirect_uris=[CALLBACK], notification_queue_url=queue_url,
                        sqs_endpoint=moto_endpoint) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def fresh(emu: AmazonEmulator, sqs: Any, queue_url: str, moto_endpoint: str) -> Iterator[None]:
    emu.reset()
    emu.configure(notification_queue_url=queue_url, sqs_endpoint=moto_endpoint)
    messages(sqs, queue_url)  # PurgeQueue allows one call a minute
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


# -- helpers ------------------------------------------------------------------------------------


def lwa(
    http: requests.Session, emu: AmazonEmulator, client_secret: str | None = None, **fields: str
) -> requests.Response:
    body = {"client_id": emu.client_id, "client_secret": client_secret or emu.client_secret, **fields}
    return http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), data=body, timeout=5)


def grantless(http: requests.Session, emu: AmazonEmulator, scope: str = ROTATION_SCOPE) -> str:
    response = lwa(http, emu, grant_type="client_credentials", scope=scope)
    assert response.status_code == 200
    return str(response.json()["access_token"])


def works(http: requests.Session, emu: AmazonEmulator, client_secret: str) -> bool:
    """Whether LWA accepts this client secret (a grantless call, which needs no seller)."""
    response = lwa(http, emu, client_secret, grant_type="client_credentials", scope="sellingpartnerapi::notifications")
    if response.status_code == 401:
        assert response.json() == INVALID_CLIENT
        return False
    assert response.status_code == 200
    return True


def rotate(http: requests.Session, emu: AmazonEmulator, token: str | None, host: str = SPAPI_NA) -> requests.Response:
    headers = {} if token is None else {"x-amz-access-token": token}
    return http.post(emu.host_url(host, ROTATE), headers=headers, timeout=5)


def messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message now in the queue, parsed (and deleted)."""
    found: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        batch = answer.get("Messages", [])
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def moment(value: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value), value
    return datetime.fromisoformat(value)


def check_envelope(notification: dict[str, Any], emu: AmazonEmulator, notification_type: str) -> datetime:
    assert set(notification) == ENVELOPE_KEYS
    assert notification["notificationVersion"] == "1.0"
    assert notification["notificationType"] == notification_type
    assert notification["payloadVersion"] == "2023-11-30"
    metadata = notification["notificationMetadata"]
    assert set(metadata) == METADATA_KEYS
    assert metadata["applicationId"] == emu.application_id
    assert metadata["subscriptionId"]
    uuid.UUID(metadata["notificationId"])
    event_time = moment(notification["eventTime"])
    assert moment(metadata["publishTime"]) == event_time
    assert abs(event_time - emu.now()) < timedelta(seconds=5)
    return event_time


# -- rotateApplicationClientSecret ------------------------------------------------------------------


@pytest.mark.parametrize("host", [SPAPI_NA, "sellingpartnerapi-eu.amazon.com", "sellingpartnerapi-fe.amazon.com"])
def test_rotation_sends_the_new_secret_and_keeps_the_old_one_a_week(
    http: requests.Session, emu: AmazonEmulator, sqs: Any, queue_url: str, host: str
) -> None:
    old_secret = emu.client_secret

    response = rotate(http, emu, grantless(http, emu), host)

    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["x-amzn-RateLimit-Limit"] == "0.0167"
    assert response.headers["x-amzn-RequestId"]
    (notification,) = messages(sqs, queue_url)
    event_time = check_envelope(notification, emu, "APPLICATION_OAUTH_CLIENT_NEW_SECRET")
    assert set(notification["payload"]) == {"applicationOAuthClientNewSecret"}
    payload = notification["payload"]["applicationOAuthClientNewSecret"]
    assert set(payload) == {"clientId", "newClientSecret", "newClientSecretExpiryTime", "oldClientSecretExpiryTime"}
    assert payload["clientId"] == emu.client_id
    new_secret = payload["newClientSecret"]
    assert SECRET_SHAPE.fullmatch(new_secret)
    assert new_secret != old_secret
    assert new_secret == emu.client_secret  # the new one is current
    assert moment(payload["newClientSecretExpiryTime"]) - event_time == timedelta(days=180)
    assert moment(payload["oldClientSecretExpiryTime"]) - event_time == timedelta(days=7)

    assert works(http, emu, new_secret)
    assert works(http, emu, old_secret)
    emu.advance_clock(timedelta(days=7).total_seconds() - 5)
    assert works(http, emu, old_secret)
    emu.advance_clock(6)
    assert not works(http, emu, old_secret)
    assert works(http, emu, new_secret)

    stats = http.get(f"{emu.base_url}/_emulator/stats", timeout=5).json()
    assert stats["spapi"]["rotateApplicationClientSecret"] == 1
    assert stats["notifications"] == {"APPLICATION_OAUTH_CLIENT_NEW_SECRET": 1}


def test_the_new_secret_expires_after_180_days(http: requests.Session, emu: AmazonEmulator, sqs: Any,
                                               queue_url: str) -> None:
    assert rotate(http, emu, grantless(http, emu)).status_code == 204
    (notification,) = messages(sqs, queue_url)
    new_secret = notification["payload"]["applicationOAuthClientNewSecret"]["newClientSecret"]

    emu.advance_clock(timedelta(days=180).total_seconds() - 5)
    assert works(http, emu, new_secret)
    emu.advance_clock(6)
    assert not works(http, emu, new_secret)


def test_a_second_rotation_within_a_minute_is_throttled(
    http: requests.Session, emu: AmazonEmulator, sqs: Any, queue_url: str
) -> None:
    token = grantless(http, emu)
    assert rotate(http, emu, token).status_code == 204
    secret_after_first = emu.client_secret
    emu.advance_clock(59)

    throttled = rotate(http, emu, token)

    assert throttled.status_code == 429
    assert throttled.json() == {
        "errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource."}]
    }
    assert emu.client_secret == secret_after_first
    assert len(messages(sqs, queue_url)) == 1
    emu.advance_clock(1)
    assert rotate(http, emu, token).status_code == 204
    assert len(messages(sqs, queue_url)) == 1
    assert http.get(f"{emu.base_url}/_emulator/stats", timeout=5).json()["throttled"] == 1


def test_rotation_without_a_registered_queue(http: requests.Session, emu: AmazonEmulator) -> None:
    emu.configure(notification_queue_url="")
    secret = emu.client_secret

    response = rotate(http, emu, grantless(http, emu))

    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["code"] == "InvalidInput"
    assert "not enrolled for rotation notification" in error["message"]
    assert emu.client_secret == secret


def test_rotation_needs_a_grantless_token_with_the_rotation_scope(
    http: requests.Session, emu: AmazonEmulator, sqs: Any, queue_url: str
) -> None:
    secret = emu.client_secret
    missing = rotate(http, emu, None)
    assert missing.status_code == 403
    assert missing.json()["errors"][0]["code"] == "MissingAuthenticationToken"

    other_scope = grantless(http, emu, "sellingpartnerapi::notifications")
    expired = grantless(http, emu)
    emu.advance_clock(3601)
    for token in (other_scope, expired, "Atc|unknown-to-the-emulator"):
        response = rotate(http, emu, token)
        assert (response.status_code, response.json()) == (403, UNAUTHORIZED)
        assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"

    assert emu.client_secret == secret
    assert messages(sqs, queue_url) == []
    # The refused calls took no throttle slot.
    assert rotate(http, emu, grantless(http, emu)).status_code == 204


def test_a_sellers_token_cannot_rotate(http: requests.Session, emu: AmazonEmulator) -> None:
    consent = http.post(f"{emu.base_url}/_emulator/consent", json={
        "consent_url": emu.host_url("sellercentral.amazon.com", "/apps/authorize/consent")
        + f"?application_id={emu.application_id}&version=beta",
        "selling_partner_id": "A1EXAMPLESELLERN",
    }, timeout=5).json()["redirect"]
    code = consent.split("spapi_oauth_code=")[1].split("&")[0]
    seller_token = lwa(http, emu, grant_type="authorization_code", code=code, redirect_uri=CALLBACK).json()

    response = rotate(http, emu, seller_token["access_token"])

    assert (response.status_code, response.json()) == (403, UNAUTHORIZED)


def test_an_undeliverable_notification_undoes_the_rotation(
    http: requests.Session, emu: AmazonEmulator, queue_url: str
) -> None:
    secret = emu.client_secret
    emu.configure(notification_queue_url=queue_url.rsplit("/", 1)[0] + "/no-such-queue")

    response = rotate(http, emu, grantless(http, emu))

    assert response.status_code == 500
    assert response.json()["errors"][0]["code"] == "InternalFailure"
    assert emu.client_secret == secret
    assert works(http, emu, secret)


# -- APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY ---------------------------------------------------------


def test_secret_expiry_notification_and_the_secret_really_expires(
    http: requests.Session, emu: AmazonEmulator, sqs: Any, queue_url: str
) -> None:
    secret = emu.client_secret

    response = http.post(f"{emu.base_url}/_emulator/notifications/secret-expiry", json={"days_left": 5}, timeout=5)

    assert (response.status_code, response.json()) == (200, {})
    (notification,) = messages(sqs, queue_url)
    event_time = check_envelope(notification, emu, "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY")
    assert notification["payload"] == {
        "applicationOAuthClientSecretExpiry": {
            "clientId": emu.client_id,
            "clientSecretExpiryTime": notification["payload"]["applicationOAuthClientSecretExpiry"][
                "clientSecretExpiryTime"
            ],
            "clientSecretExpiryReason": "PERIODIC_ROTATION",
        }
    }
    expires_at = moment(notification["payload"]["applicationOAuthClientSecretExpiry"]["clientSecretExpiryTime"])
    assert expires_at - event_time == timedelta(days=5)
    app = http.get(f"{emu.base_url}/_emulator/app", timeout=5).json()
    assert moment(app["client_secret_expires_at"]) == expires_at
    assert app["notification_queue_url"] == queue_url

    emu.advance_clock(timedelta(days=5).total_seconds() - 5)
    assert works(http, emu, secret)
    emu.advance_clock(6)
    assert not works(http, emu, secret)


def test_rotating_in_time_saves_the_day(http: requests.Session, emu: AmazonEmulator, sqs: Any,
                                        queue_url: str) -> None:
    """What the product does: the expiry notice, a rotation, the new secret from the queue."""
    http.post(f"{emu.base_url}/_emulator/notifications/secret-expiry", json={"days_left": 3}, timeout=5)
    emu.advance_clock(timedelta(days=2).total_seconds())
    assert rotate(http, emu, grantless(http, emu)).status_code == 204
    new_secret = messages(sqs, queue_url)[-1]["payload"]["applicationOAuthClientNewSecret"]["newClientSecret"]

    emu.advance_clock(timedelta(days=30).total_seconds())

    assert works(http, emu, new_secret)


def test_zero_days_left_expires_the_secret_now(http: requests.Session, emu: AmazonEmulator) -> None:
    secret = emu.client_secret

    http.post(f"{emu.base_url}/_emulator/notifications/secret-expiry", json={"days_left": 0}, timeout=5)

    assert not works(http, emu, secret)


@pytest.mark.parametrize("body", [{}, {"days_left": -1}, {"days_left": "3"}, {"days_left": True},
                                  {"days_left": None}])
def test_bad_secret_expiry_requests(http: requests.Session, emu: AmazonEmulator, body: dict[str, Any]) -> None:
    response = http.post(f"{emu.base_url}/_emulator/notifications/secret-expiry", json=body, timeout=5)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_secret_expiry_needs_a_registered_queue(http: requests.Session, emu: AmazonEmulator) -> None:
    emu.configure(notification_queue_url="")
    secret = emu.client_secret

    response = http.post(f"{emu.base_url}/_emulator/notifications/secret-expiry", json={"days_left": 1}, timeout=5)

    assert response.status_code == 400
    assert response.json()["error"] == "no_notification_queue"
    emu.advance_clock(timedelta(days=2).total_seconds())
    assert works(http, emu, secret)
