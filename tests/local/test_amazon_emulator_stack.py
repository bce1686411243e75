"""The local stack registers the template's `notifications` queue with the Amazon emulator.

`python -m local serve --template` with a template of one such queue, driven over HTTP; the
messages are read from moto through the printed AWS endpoint, parsed, never printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from local.amazon import AmazonEmulator
from local.aws import CreatedResources
from local.stack import register_notification_queue
from local.template import Resolver
from tests.support.local_stack import Serve, launch, secret_findings

pytestmark = pytest.mark.slow
TIMEOUT = 30
PURPOSE = "seller-insights:purpose"
TEMPLATE = {
    "Resources": {
        "LwaClient": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {"Tags": [{"Key": PURPOSE, "Value": "lwa_client"}]},
        },
        "NotificationsDlq": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"Tags": [{"Key": PURPOSE, "Value": "notifications_dlq"}]},
        },
        "Notifications": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["NotificationsDlq", "Arn"]},
                    "maxReceiveCount": 3,
                },
                "Tags": [{"Key": PURPOSE, "Value": "notifications"}],
            },
        },
        # As in the product (infra/constructs/messaging.py): without it the local IAM guard, like SQS,
        # refuses Amazon's notifications account.
        "NotificationsPolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": "Notifications"}],
                "PolicyDocument": {"Statement": [{
                    "Action": ["sqs:GetQueueAttributes", "sqs:SendMessage"],
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::437568002678:root"},
                    "Resource": {"Fn::GetAtt": ["Notifications", "Arn"]},
                }]},
            },
        },
    }
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("notifications-stack")
    (root / "template.json").write_text(json.dumps(TEMPLATE))
    started = launch(root / "stderr.log", ("--template", str(root / "template.json")))
    yield started
    code, rest = started.terminate()
    assert (code, rest) == (0, "")
    assert not secret_findings(started.stderr())


def received(stack: Serve) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", endpoint_url=stack.info["aws"], region_name=stack.info["region"])
    url = stack.info["resources"]["queues"]["notifications"]
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    bodies = []
    for message in answer.get("Messages", []):
        bodies.append(json.loads(message["Body"]))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_the_notifications_queue_is_registered(stack: Serve) -> None:
    app = requests.get(f"{stack.info['amazon']}/_emulator/app", timeout=TIMEOUT).json()

    assert app["notification_queue_url"] == stack.info["resources"]["queues"]["notifications"]


def test_notifications_reach_the_queue_in_moto(stack: Serve) -> None:
    amazon = stack.info["amazon"]
    expiry = requests.post(f"{amazon}/_emulator/notifications/secret-expiry", json={"days_left": 7}, timeout=TIMEOUT)
    assert (expiry.status_code, expiry.json()) == (200, {})
    (notice,) = received(stack)
    assert notice["notificationType"] == "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY"

    # The product's rotation: the seeded LWA credentials, a grantless token, the call, the new secret.
    sm = boto3.client("secretsmanager", endpoint_url=stack.info["aws"], region_name=stack.info["region"])
    (listed,) = sm.list_secrets()["SecretList"]
    credentials = json.loads(sm.get_secret_value(SecretId=listed["ARN"])["SecretString"])
    lwa = f"{amazon}/_hosts/api.amazon.com/auth/o2/token"
    grant = {
        "grant_type": "client_credentials",
        "scope": "sellingpartnerapi::client_credential:rotation",
        "client_id": credentials["client_id"],
        "client_secret": credentials["client_secret"],
    }
    token = requests.post(lwa, data=grant, timeout=TIMEOUT).json()["access_token"]
    rotated = requests.post(
        f"{amazon}/_hosts/sellingpartnerapi-na.amazon.com/applications/2023-11-30/clientSecret",
        headers={"x-amz-access-token": token},
        timeout=TIMEOUT,
    )
    assert rotated.status_code == 204
    (new,) = received(stack)
    assert new["notificationType"] == "APPLICATION_OAUTH_CLIENT_NEW_SECRET"
    new_secret = new["payload"]["applicationOAuthClientNewSecret"]["newClientSecret"]
    assert new_secret != credentials["client_secret"]
    again = requests.post(lwa, data={**grant, "client_secret": new_secret}, timeout=TIMEOUT)
    assert again.status_code == 200


def test_register_notification_queue_without_such_a_queue_does_nothing() -> None:
    emulator = AmazonEmulator()
    created = CreatedResources(resolver=Resolver({"Resources": {}}), queues={"jobs": "http://x/1/jobs"})

    assert register_notification_queue(emulator, created, "http://127.0.0.1:1") is None
    assert emulator.notification_queue_url is None

    created.queues["notifications"] = "http://127.0.0.1:1/123456789012/n"
    assert register_notification_queue(emulator, created, "http://127.0.0.1:1") == created.queues["notifications"]
    assert emulator.notification_queue_url == created.queues["notifications"]
