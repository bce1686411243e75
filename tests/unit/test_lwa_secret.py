"""Storing a new LWA client secret (seller_insights.lwa_secret), against moto's Secrets Manager in-process: one
version per secret whatever the retries, never an older secret over a newer one, never the secret in a repr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from seller_insights.errors import MalformedNotification
from seller_insights.lwa_secret import ClientSecretStore, NewClientSecret, Notification

CLIENT = "amzn1.application-oa2-client.0123456789abcdef0123456789abcdef"
OLD = "amzn1.oa2-cs.v1." + "a" * 64
NEW = "amzn1.oa2-cs.v1." + "b" * 64
NEWER = "amzn1.oa2-cs.v1." + "c" * 64
NOW = datetime(2026, 1, 10, tzinfo=UTC)


@pytest.fixture
def secrets() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="lwa", SecretString=json.dumps(
            {"client_id": CLIENT, "client_secret": OLD, "application_id": "amzn1.sp.solution.x"}))["ARN"]
        yield client, arn


def notification(secret: str, expires: str, notification_id: str = "n-1", client_id: str = CLIENT) -> Notification:
    return Notification.parse(json.dumps({
        "notificationType": "APPLICATION_OAUTH_CLIENT_NEW_SECRET", "eventTime": "2026-01-10T00:00:00Z",
        "payload": {"applicationOAuthClientNewSecret": {
            "clientId": client_id, "newClientSecret": secret, "newClientSecretExpiryTime": expires,
            "oldClientSecretExpiryTime": "2026-01-17T00:00:00Z"}},
        "notificationMetadata": {"notificationId": notification_id}}))


def new(secret: str, expires: str = "2026-07-08T00:00:00Z", notification_id: str = "n-1") -> NewClientSecret:
    return NewClientSecret.from_notification(notification(secret, expires, notification_id))


def value(secrets: tuple[Any, str]) -> dict[str, Any]:
    client, arn = secrets
    stored: dict[str, Any] = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    return stored


def versions(secrets: tuple[Any, str]) -> int:
    client, arn = secrets
    return len(client.list_secret_version_ids(SecretId=arn)["Versions"])


def test_stored_once_with_the_previous_secret_kept(secrets: tuple[Any, str]) -> None:
    store = ClientSecretStore(*secrets)
    assert store.store_new(new(NEW), now=NOW) == "stored"
    stored = value(secrets)
    assert (stored["client_secret"], stored["previous_client_secret"]) == (NEW, OLD)
    assert stored["client_secret_expires_at"] == "2026-07-08T00:00:00.000Z"
    assert stored["previous_client_secret_expires_at"] == "2026-01-17T00:00:00.000Z"
    count = versions(secrets)
    assert store.store_new(new(NEW), now=NOW) == "duplicate"
    assert versions(secrets) == count


def test_a_writer_that_read_before_another_stored_makes_no_second_version(secrets: tuple[Any, str]) -> None:
    """Two writers of one notification (the refresher and ops) both read the old secret: the second's
    PutSecretValue reuses the notification's version id with another stored_at, Secrets Manager refuses it,
    and the second writer finds the secret stored."""
    client, arn = secrets
    stale = value(secrets)

    class StaleFirstRead(ClientSecretStore):
        reads = 0

        def read(self) -> dict[str, Any]:
            self.reads += 1
            return stale if self.reads == 1 else super().read()

    assert ClientSecretStore(client, arn).store_new(new(NEW), now=NOW) == "stored"
    count = versions(secrets)
    later = datetime(2026, 1, 10, 0, 5, tzinfo=UTC)
    assert StaleFirstRead(client, arn).store_new(new(NEW), now=later) == "duplicate"
    assert versions(secrets) == count and value(secrets)["client_secret"] == NEW


def test_an_older_secret_is_superseded(secrets: tuple[Any, str]) -> None:
    store = ClientSecretStore(*secrets)
    assert store.store_new(new(NEW, "2026-07-08T00:00:00Z", "n-1"), now=NOW) == "stored"
    assert store.store_new(new(NEWER, "2026-07-09T00:00:00Z", "n-2"), now=NOW) == "stored"
    newest, count = value(secrets), versions(secrets)
    # The first one again (a redrive), and one claiming an earlier expiry: nothing written.
    assert store.store_new(new(NEW, "2026-07-08T00:00:00Z", "n-3"), now=NOW) == "superseded"
    other = "amzn1.oa2-cs.v1." + "d" * 64
    assert store.standing(new(other, "2026-07-01T00:00:00Z", "n-4")) == "superseded"
    assert (value(secrets), versions(secrets)) == (newest, count)


def test_another_clients_secret_is_not_stored(secrets: tuple[Any, str]) -> None:
    foreign = NewClientSecret.from_notification(notification(NEW, "2026-07-08T00:00:00Z", client_id="other"))
    assert ClientSecretStore(*secrets).store_new(foreign, now=NOW) == "other client"
    assert value(secrets)["client_secret"] == OLD


def test_the_secret_stays_out_of_reprs_and_an_expiry_notice_carries_none() -> None:
    secret = new(NEW)
    assert NEW not in repr(secret) and NEW not in repr(notification(NEW, "2026-07-08T00:00:00Z"))
    expiry = Notification.parse(json.dumps({
        "notificationType": "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY", "payload": {},
        "notificationMetadata": {"notificationId": "n-9"}}))
    with pytest.raises(MalformedNotification):
        NewClientSecret.from_notification(expiry)
