"""LWA client secret rotation through the notifications queue (spapi-protocol.md §3)."""

from __future__ import annotations

import json

import boto3
import pytest
import requests
from aws_lambda_powertools.utilities.parameters.base import clear_caches

from seller_insights import clock
from seller_insights.clock import FixedClock
from tests.support.api import FakeContext
from tests.support.iam import acting_as

SELLER = "A1ROTATION00001"


@pytest.fixture
def queue(token_env, emulator):
    # Amazon's notices carry Amazon's time; the product must live in the same time for them.
    clock.set_clock(FixedClock(emulator.now()))
    url = boto3.client("sqs").create_queue(QueueName="notifications")["QueueUrl"]
    emulator.configure(notification_queue_url=url)
    yield url
    emulator.configure(notification_queue_url="")


def receive(queue_url):
    messages = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]


def consume(records):
    from token_refresher.handler import lambda_handler

    with acting_as("token_refresher"):
        return lambda_handler({"Records": records}, FakeContext(function_name="token_refresher"))


def expiry_notice(emulator, days_left):
    requests.post(f"{emulator.base_url}/_emulator/notifications/secret-expiry",
                  json={"days_left": days_left}, timeout=5).raise_for_status()


def stored_secret(resources):
    return json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=resources.secret_arn)["SecretString"])


def rotations(emulator):
    stats = requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()
    return stats["spapi"]["rotateApplicationClientSecret"]


def lwa_accepts(emulator, secret):
    answer = requests.post(f"{emulator.base_url}/_hosts/api.amazon.com/auth/o2/token", data={
        "grant_type": "client_credentials", "scope": "sellingpartnerapi::notifications",
        "client_id": emulator.client_id, "client_secret": secret}, timeout=5)
    return answer.status_code == 200


def test_expiry_far_away_does_not_rotate(queue, token_env, emulator):
    expiry_notice(emulator, 30)
    assert consume(receive(queue)) == {"batchItemFailures": []}
    assert rotations(emulator) == 0


def test_rotation_end_to_end(queue, token_env, emulator, product_clock, log_guard):
    old = emulator.client_secret
    expiry_notice(emulator, 5)
    assert consume(receive(queue)) == {"batchItemFailures": []}
    assert rotations(emulator) == 1

    new_secret_messages = receive(queue)
    assert [json.loads(m["body"])["notificationType"] for m in new_secret_messages] == [
        "APPLICATION_OAUTH_CLIENT_NEW_SECRET"]
    assert consume(new_secret_messages) == {"batchItemFailures": []}
    stored = stored_secret(token_env)
    log_guard.watch(stored["client_secret"])
    assert stored["client_secret"] == emulator.client_secret != old
    assert stored["previous_client_secret"] == old
    notice = json.loads(new_secret_messages[0]["body"])["payload"]["applicationOAuthClientNewSecret"]
    assert stored["previous_client_secret_expires_at"] == notice["oldClientSecretExpiryTime"]

    # The product's LWA calls now use the new secret; the old one still works inside the overlap.
    from token_refresher import handler

    clear_caches()
    handler.lwa().client_credentials("sellingpartnerapi::notifications")
    assert lwa_accepts(emulator, stored["client_secret"]) and lwa_accepts(emulator, old)

    # The same notification delivered again changes nothing.
    assert consume(new_secret_messages) == {"batchItemFailures": []}
    assert stored_secret(token_env) == stored


def test_one_rotation_per_minute(queue, token_env, emulator):
    expiry_notice(emulator, 5)
    expiry_notice(emulator, 4)
    records = receive(queue)
    result = consume(records)
    assert rotations(emulator) == 1
    assert len(result["batchItemFailures"]) == 1  # the second one goes back to the queue for later


def test_malformed_message_fails_alone_and_is_not_logged(queue, token_env, emulator, capfd):
    expiry_notice(emulator, 30)
    records = [*receive(queue), {"messageId": "bad-1", "body": '{"canary": "c4n4ry-v4lu3-xyz"}'}]
    assert consume(records) == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}
    assert "c4n4ry-v4lu3-xyz" not in "".join(capfd.readouterr())


def test_a_late_expiry_notice_about_a_replaced_secret_does_not_rotate_again(queue, token_env, emulator):
    expiry_notice(emulator, 5)
    first_notice = receive(queue)
    consume(first_notice)
    clock.get_clock().advance(30)  # our clock stands still otherwise; Amazon's runs
    consume(receive(queue))  # the new secret is stored
    clock.get_clock().advance(120)  # past the one-call-a-minute window
    late = json.loads(first_notice[0]["body"])
    late["notificationMetadata"]["notificationId"] = "another-delivery-of-the-old-notice"
    assert consume([{"messageId": "late", "body": json.dumps(late)}]) == {"batchItemFailures": []}
    assert rotations(emulator) == 1
