"""A rotated LWA client secret that could not be stored is recovered from the dead-letter queue with
`ops recover-secret`, on the local stack (`serve --template`) whose token refresher may not store the secret.

Amazon's emulator warns that the secret expires in a day; the refresher rotates (rotateApplicationClientSecret)
and Amazon sends APPLICATION_OAUTH_CLIENT_NEW_SECRET to the notifications queue. Storing it fails for real:
the template's PutSecretValue grant of the refresher is cut, so the local IAM guard denies it as AWS would.
The message fails five times (each after the queue's visibility timeout, in virtual time) and rests in
`notifications_dlq`. `ops recover-secret --dry-run` says what it would do and changes nothing; `ops
recover-secret` verifies the secret with the emulator's LWA, stores it and empties the DLQ; after the old
secret's expiry the refresher renews tokens with the new one. Then a DLQ message whose secret LWA refuses stays
there with nothing stored (exit 1), and one carrying the secret the recovery replaced is deleted unwritten
("superseded"). Secret values are compared, never printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from local.template import load_template
from tests.support.e2e import advance, connect, drain, new_seller, post, refresh_tokens, stats
from tests.support.local_stack import REPO, Serve, serving
from tests.support.lwa_secret import secret_value, version_count, without_the_refreshers_secret_store

pytestmark = pytest.mark.slow
SECRET_SHAPE = "amzn1.oa2-cs."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("recover-secret")
    path = root / "template.json"
    path.write_text(json.dumps(without_the_refreshers_secret_store(load_template(REPO))))
    with serving(root / "stderr.log", ("--template", str(path)), denials_expected=True) as started:
        yield started


def aws(info: dict[str, Any], service: str) -> Any:
    return boto3.client(service, endpoint_url=info["aws"], region_name=info["region"])


def lwa_secret_arn(info: dict[str, Any]) -> str:
    (arn,) = [entry["ARN"] for entry in aws(info, "secretsmanager").list_secrets()["SecretList"]
              if {"Key": "seller-insights:purpose", "Value": "lwa_client"} in entry.get("Tags", [])]
    return str(arn)


def queue_depth(info: dict[str, Any], purpose: str) -> int:
    attributes = aws(info, "sqs").get_queue_attributes(
        QueueUrl=info["resources"]["queues"][purpose],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def ops(info: dict[str, Any], *args: str) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, "-m", "ops", "recover-secret", "--local", info["api"], *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert SECRET_SHAPE not in output, "ops recover-secret printed a client secret"
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def test_a_secret_left_in_the_dlq_is_recovered_with_ops(stack: Serve) -> None:
    info = stack.info
    assert info["iam"] == "enforced"
    seller = new_seller()
    connect(info, seller, "US")
    assert refresh_tokens(info)["failed"] == 0
    client, arn = aws(info, "secretsmanager"), lwa_secret_arn(info)
    before, versions = secret_value(client, arn), version_count(client, arn)

    # Amazon: the secret expires in a day. The refresher rotates; the NEW_SECRET cannot be stored.
    assert post(f"{info['amazon']}/_emulator/notifications/secret-expiry", {"days_left": 1}) == {}
    first = drain(info)
    assert first["delivered"].get("notifications") == 1 and first["failed"].get("notifications") == 1, first
    visibility = int(aws(info, "sqs").get_queue_attributes(
        QueueUrl=info["resources"]["queues"]["notifications"],
        AttributeNames=["VisibilityTimeout"])["Attributes"]["VisibilityTimeout"])
    failures = 1
    for _ in range(8):  # each receive fails; after the fifth, SQS moves the message to the DLQ
        if queue_depth(info, "notifications_dlq"):
            break
        advance(info, visibility + 1)
        failures += drain(info)["failed"].get("notifications", 0)
    assert failures == 5
    assert queue_depth(info, "notifications_dlq") == 1 and queue_depth(info, "notifications") == 0
    assert secret_value(client, arn) == before, "the secret changed although storing was denied"
    assert "secretsmanager:PutSecretValue" in "\n".join(
        line for line in stack.stderr().splitlines() if "IAM denied" in line)

    # --dry-run: says what it would do, changes nothing, leaves the message visible.
    code, plan, _ = ops(info, "--dry-run")
    assert code == 0, plan
    assert (plan["found"], plan["would"], len(plan["would_delete"]), plan["deleted"]) == (
        1, "verify with LWA, then store", 1, [])
    assert secret_value(client, arn) == before and queue_depth(info, "notifications_dlq") == 1

    # The real run: verified against the emulator's LWA, stored as the refresher would, the DLQ emptied.
    code, result, progress = ops(info)
    assert code == 0, progress
    assert (result["outcome"], result["verified"], result["deleted"]) == ("stored", True, plan["would_delete"])
    after = secret_value(client, arn)
    assert after["client_secret"] != before["client_secret"], "the new secret was not stored"
    assert after["previous_client_secret"] == before["client_secret"]
    assert after["client_secret_expires_at"] == result["new_secret_expires_at"]
    assert version_count(client, arn) == versions + 1
    assert queue_depth(info, "notifications_dlq") == 0

    # Again: nothing left to recover, nothing written.
    code, again, _ = ops(info)
    assert (code, again["found"], again["outcome"]) == (0, 0, "nothing to recover")
    assert version_count(client, arn) == versions + 1

    # Two days on, the old secret has expired at Amazon: the refresher renews with the new one.
    advance(info, 2 * 86400)
    assert refresh_tokens(info)["lwa_refreshes"] >= 1
    invalid_before = stats(info)["lwa_errors"].get("invalid_client", 0)
    advance(info, 3600)
    renewed = refresh_tokens(info)
    assert renewed["lwa_refreshes"] >= 1 and renewed["failed"] == 0, renewed
    assert stats(info)["lwa_errors"].get("invalid_client", 0) == invalid_before

    a_refused_secret_is_not_stored_and_an_older_one_is_only_cleared(info)


def dead_letter(info: dict[str, Any], client_id: str, secret: str, expires_at: str, notification_id: str) -> None:
    """A NEW_SECRET notification put straight into the DLQ (as if it had failed five times)."""
    body = {"notificationVersion": "1.0", "notificationType": "APPLICATION_OAUTH_CLIENT_NEW_SECRET",
            "payloadVersion": "2023-11-30", "eventTime": "2026-01-01T00:00:00.000Z",
            "payload": {"applicationOAuthClientNewSecret": {
                "clientId": client_id, "newClientSecret": secret, "newClientSecretExpiryTime": expires_at,
                "oldClientSecretExpiryTime": "2026-01-08T00:00:00.000Z"}},
            "notificationMetadata": {"applicationId": "amzn1.sp.solution.e2e", "subscriptionId": "e2e",
                                     "publishTime": "2026-01-01T00:00:00.000Z", "notificationId": notification_id}}
    aws(info, "sqs").send_message(QueueUrl=info["resources"]["queues"]["notifications_dlq"],
                                  MessageBody=json.dumps(body))


def a_refused_secret_is_not_stored_and_an_older_one_is_only_cleared(info: dict[str, Any]) -> None:
    """After a recovery: what LWA refuses stays in the DLQ, what the recovery replaced is deleted unwritten."""
    client, arn = aws(info, "secretsmanager"), lwa_secret_arn(info)
    current, versions = secret_value(client, arn), version_count(client, arn)
    unknown = f"{SECRET_SHAPE}v1.{'0' * 64}"  # a secret the emulator's LWA never issued

    # Newer than the stored one but refused by LWA: exit 1, nothing stored, nothing deleted.
    dead_letter(info, current["client_id"], unknown, "2099-01-01T00:00:00.000Z", "e2e-refused")
    code, _, progress = ops(info)
    assert code == 1 and "LWA refused the secret of notification e2e-refused" in progress, progress
    assert secret_value(client, arn) == current and version_count(client, arn) == versions
    assert queue_depth(info, "notifications_dlq") == 1
    aws(info, "sqs").purge_queue(QueueUrl=info["resources"]["queues"]["notifications_dlq"])

    # The secret stored before the current one, redriven late: superseded, deleted, never written (no LWA call).
    dead_letter(info, current["client_id"], current["previous_client_secret"], "2020-01-01T00:00:00.000Z",
                "e2e-older")
    code, result, progress = ops(info)
    assert code == 0, progress
    assert (result["outcome"], result["verified"], result["deleted"]) == ("superseded", False, ["e2e-older"])
    assert secret_value(client, arn) == current and version_count(client, arn) == versions
    assert queue_depth(info, "notifications_dlq") == 0
