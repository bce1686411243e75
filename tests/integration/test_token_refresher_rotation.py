"""LWA client secret rotation through the notifications queue (Application Management API)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

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


@dataclass
class ContextWithTime(FakeContext):
    """A Lambda context with `remaining_millis` left before the invocation's deadline."""

    remaining_millis: int = 10_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


class InvocationKilled(BaseException):
    """What Lambda does to an invocation at its deadline: nothing in the handler can catch it."""


def consume(records, remaining_millis=10_000):
    from token_refresher.handler import lambda_handler

    context = ContextWithTime(function_name="token_refresher", remaining_millis=remaining_millis)
    with acting_as("token_refresher"):
        return lambda_handler({"Records": records}, context)


def killed_while_handling(monkeypatch, records, remaining_millis):
    """The first handling of `records` dies inside the work, with `remaining_millis` left at its start."""
    from token_refresher.service import SecretStore

    def killed(self):
        raise InvocationKilled

    with monkeypatch.context() as patched:
        patched.setattr(SecretStore, "read", killed)
        with pytest.raises(InvocationKilled):
            consume(records, remaining_millis)


def log_lines(capfd):
    lines = []
    for line in "".join(capfd.readouterr()).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "level" in record:
            lines.append(record)
    return lines


def idempotency_items():
    return boto3.resource("dynamodb").Table("test-idempotency").scan()["Items"]


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


def test_a_handled_notice_delivered_again_rotates_nothing(queue, token_env, emulator):
    expiry_notice(emulator, 5)
    records = receive(queue)
    assert consume(records) == {"batchItemFailures": []}
    clock.get_clock().advance(120)  # past the one-call-a-minute window: only the record of the notice is left
    assert consume(records) == {"batchItemFailures": []}
    assert rotations(emulator) == 1


def test_the_stored_record_holds_the_outcome_never_the_notification(queue, token_env, emulator, log_guard):
    expiry_notice(emulator, 5)
    notice_id = json.loads(receive_and_consume(queue)[0]["body"])["notificationMetadata"]["notificationId"]
    new_secret_messages = receive(queue)
    assert consume(new_secret_messages) == {"batchItemFailures": []}
    new_secret = stored_secret(token_env)["client_secret"]
    log_guard.watch(new_secret)

    new_secret_id = json.loads(new_secret_messages[0]["body"])["notificationMetadata"]["notificationId"]
    records = {item["id"]: item for item in idempotency_items() if item["id"].startswith("notification#")}
    key = hashlib.sha256(json.dumps(new_secret_id).encode()).hexdigest()
    assert set(records) == {f"notification#{hashlib.sha256(json.dumps(i).encode()).hexdigest()}"
                            for i in (notice_id, new_secret_id)}
    stored = records[f"notification#{key}"]
    assert (stored["status"], json.loads(stored["data"])) == ("COMPLETED", "stored")
    # Kept 14 days from now (Powertools counts in the wall clock's seconds).
    assert int(stored["expiration"]) - int(time.time()) in range(14 * 86400 - 60, 14 * 86400 + 1)
    everything = json.dumps(idempotency_items(), default=str)
    assert new_secret not in everything and new_secret_id not in everything


def test_a_notice_whose_handler_timed_out_is_taken_again(queue, token_env, emulator, monkeypatch):
    expiry_notice(emulator, 5)
    records = receive(queue)
    # The invocation is killed at its deadline: its claim stays "in progress" but lapses at that deadline,
    # which has passed by the time SQS delivers the message again (after the visibility timeout).
    killed_while_handling(monkeypatch, records, remaining_millis=0)
    assert rotations(emulator) == 0
    assert consume(records) == {"batchItemFailures": []}
    assert rotations(emulator) == 1


def test_a_notice_being_handled_elsewhere_is_deferred(queue, token_env, emulator, monkeypatch, capfd):
    expiry_notice(emulator, 5)
    records = receive(queue)
    # Another invocation took the notice and still has ten minutes: a second delivery waits for it.
    killed_while_handling(monkeypatch, records, remaining_millis=600_000)
    capfd.readouterr()
    assert consume(records) == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    assert rotations(emulator) == 0
    (deferred,) = [line for line in log_lines(capfd) if line["message"] == "notification deferred"]
    assert (deferred["level"], deferred["message_id"]) == ("INFO", records[0]["messageId"])
    assert deferred["reason"] == "another worker is handling this notification"


def test_a_failed_notice_is_logged_and_taken_again(queue, token_env, emulator, capfd):
    expiry_notice(emulator, 5)
    records = receive(queue)
    emulator.configure(notification_queue_url="")  # not enrolled: Amazon refuses the rotation (400)
    capfd.readouterr()
    assert consume(records) == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    (failed,) = [line for line in log_lines(capfd) if line["message"] == "notification failed"]
    assert (failed["level"], failed["message_id"]) == ("ERROR", records[0]["messageId"])
    assert failed["exception_name"] == "RotationFailed"

    emulator.configure(notification_queue_url=queue)
    clock.get_clock().advance(120)  # past the one-call-a-minute window, ours and Amazon's
    emulator.advance_clock(120)
    assert consume(records) == {"batchItemFailures": []}
    assert rotations(emulator) == 2  # the refused call and the one that rotated
    stats = requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()
    assert stats["notifications"]["APPLICATION_OAUTH_CLIENT_NEW_SECRET"] == 1  # rotated once


def test_unreadable_notices_are_logged_as_errors_without_their_bodies(queue, token_env, capfd):
    records = [{"messageId": "no-json", "body": "c4n4ry-v4lu3-xyz"},
               {"messageId": "no-id", "body": json.dumps({
                   "notificationType": "APPLICATION_OAUTH_CLIENT_NEW_SECRET", "payload": {"canary": "c4n4ry-v4lu3-xyz"},
                   "notificationMetadata": {"notificationId": ""}})}]
    capfd.readouterr()
    assert consume(records) == {"batchItemFailures": [{"itemIdentifier": "no-json"}, {"itemIdentifier": "no-id"}]}
    output = capfd.readouterr()
    assert "c4n4ry-v4lu3-xyz" not in "".join(output)
    lines = [json.loads(line) for line in output.err.splitlines() if '"unreadable notification"' in line]
    assert [(line["level"], line["message_id"]) for line in lines] == [("ERROR", "no-json"), ("ERROR", "no-id")]
    assert lines[1]["reason"] == "a notification without its notificationId"
    assert not [item for item in idempotency_items() if item["id"].startswith("notification#")]


def receive_and_consume(queue):
    records = receive(queue)
    assert consume(records) == {"batchItemFailures": []}
    return records
