"""LWA client secret rotation through the notifications queue (Application Management API)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass

import boto3
import pytest
import requests
from aws_lambda_powertools.utilities.parameters.base import clear_caches

from seller_insights import clock
from seller_insights.clock import FixedClock
from tests.support import iam
from tests.support.api import FakeContext
from tests.support.iam import acting_as
from tests.support.lwa_secret import version_count, without_the_refreshers_secret_store

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


def consume(records, remaining_millis=10_000, acting=acting_as):
    from token_refresher.handler import lambda_handler

    context = ContextWithTime(function_name="token_refresher", remaining_millis=remaining_millis)
    with acting("token_refresher"):
        return lambda_handler({"Records": records}, context)


@contextlib.contextmanager
def without_the_store(duty):
    """As `duty`'s role with its PutSecretValue grant cut: Secrets Manager refuses the new secret for real
    (the local IAM guard's AccessDeniedException), as AWS would with a broken grant or an explicit deny."""
    from local.iam import Authorizer, bind_environment, policy_set

    cut = without_the_refreshers_secret_store(iam.template())
    function = iam.function_id(duty)
    authorizer = Authorizer(policy_set(cut, bind_environment(cut, function, os.environ)))
    with authorizer.acting_as_function(function, session=duty):
        yield authorizer


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


# --- the new secret is stored before its notification is acknowledged ---------------------------------


def rotated_once(queue, emulator):
    """An expiry notice handled (Amazon rotated): the NEW_SECRET notification's records, not yet consumed."""
    expiry_notice(emulator, 5)
    receive_and_consume(queue)
    return receive(queue)


def notification_records():
    return [item for item in idempotency_items() if item["id"].startswith("notification#")]


def test_a_new_secret_that_cannot_be_stored_fails_its_message(queue, token_env, emulator, log_guard, capfd):
    before = stored_secret(token_env)
    records = rotated_once(queue, emulator)
    log_guard.watch(emulator.client_secret)
    handled = len(notification_records())
    capfd.readouterr()

    # Secrets Manager refuses PutSecretValue: the message is reported failed, never acknowledged.
    assert consume(records, acting=without_the_store) == {
        "batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    assert stored_secret(token_env) == before
    (failed,) = [line for line in log_lines(capfd) if line["message"] == "notification failed"]
    assert (failed["level"], failed["exception_name"]) == ("ERROR", "ClientError")
    assert len(notification_records()) == handled  # no record kept: the redelivery tries again

    # The redelivery, once storing works again, stores it.
    assert consume(records) == {"batchItemFailures": []}
    stored = stored_secret(token_env)
    assert stored["client_secret"] == emulator.client_secret and stored["previous_client_secret"] == \
        before["client_secret"]


def test_a_secret_already_stored_is_not_stored_again(queue, token_env, emulator, log_guard):
    records = rotated_once(queue, emulator)
    log_guard.watch(emulator.client_secret)
    assert consume(records) == {"batchItemFailures": []}
    stored, versions = stored_secret(token_env), version_count(boto3.client("secretsmanager"), token_env.secret_arn)

    # Its handling record gone (expired, or ops recover-secret stored it from the DLQ): still no second version.
    table = boto3.resource("dynamodb").Table("test-idempotency")
    for item in notification_records():
        table.delete_item(Key={"id": item["id"]})
    clock.get_clock().advance(5)
    assert consume(records) == {"batchItemFailures": []}
    assert stored_secret(token_env) == stored
    assert version_count(boto3.client("secretsmanager"), token_env.secret_arn) == versions


def test_an_older_secret_never_replaces_a_newer_one(queue, token_env, emulator, log_guard):
    first = rotated_once(queue, emulator)
    assert consume(first) == {"batchItemFailures": []}
    clock.get_clock().advance(120)  # past the one-call-a-minute window, ours and Amazon's
    emulator.advance_clock(120)
    second = rotated_once(queue, emulator)
    assert consume(second) == {"batchItemFailures": []}
    newest = stored_secret(token_env)
    log_guard.watch(newest["client_secret"], newest["previous_client_secret"])
    assert newest["client_secret"] == emulator.client_secret

    # The first notification again, under another id (a redrive, a recovered copy): superseded, nothing written.
    late = json.loads(first[0]["body"])
    late["notificationMetadata"]["notificationId"] = "a-late-copy-of-the-first-new-secret"
    assert consume([{"messageId": "late", "body": json.dumps(late)}]) == {"batchItemFailures": []}
    assert stored_secret(token_env) == newest
    outcomes = [json.loads(item["data"]) for item in notification_records() if item.get("data")]
    assert outcomes.count("superseded") == 1
