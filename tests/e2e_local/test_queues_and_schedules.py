"""Schedules and SQS event source mappings, on a small template of their own (the product's first
slice has neither yet): `serve --template` with a worker function importable from a temporary folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from tests.support.local_stack import Serve, launch

pytestmark = pytest.mark.slow
TIMEOUT = 30
PURPOSE = "seller-insights:purpose"

WORKER = """
import os

def work(event, context):
    if "Records" in event:
        failed = [r["messageId"] for r in event["Records"] if r["body"] == "fail"]
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
    return {"source": event["source"], "queue": os.environ["JOBS_QUEUE_URL"], "key": os.environ["KEY_ARN"]}
"""

TEMPLATE: dict[str, Any] = {
    "Resources": {
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"Tags": [{"Key": PURPOSE, "Value": "token_key"}]}},
        "JobsDlq": {"Type": "AWS::SQS::Queue", "Properties": {"Tags": [{"Key": PURPOSE, "Value": "jobs_dlq"}]}},
        "Jobs": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": 30,
                "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["JobsDlq", "Arn"]}, "maxReceiveCount": 2},
                "Tags": [{"Key": PURPOSE, "Value": "jobs"}],
            },
        },
        # The local IAM guard runs the worker (and its mapping's polls) as this role.
        "WorkerRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": {"Statement": [{
                "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]}},
        },
        "WorkerPolicy": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyName": "WorkerPolicy",
                "Roles": [{"Ref": "WorkerRole"}],
                "PolicyDocument": {"Statement": [{
                    "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                               "sqs:GetQueueAttributes"],
                    "Effect": "Allow",
                    "Resource": {"Fn::GetAtt": ["Jobs", "Arn"]},
                }]},
            },
        },
        "Worker": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Role": {"Fn::GetAtt": ["WorkerRole", "Arn"]},
                "Handler": "local_fixture_worker.handler.work",
                "Environment": {
                    "Variables": {"JOBS_QUEUE_URL": {"Ref": "Jobs"}, "KEY_ARN": {"Fn::GetAtt": ["Key", "Arn"]}}
                },
            },
        },
        "Mapping": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "BatchSize": 5,
                "EventSourceArn": {"Fn::GetAtt": ["Jobs", "Arn"]},
                "FunctionName": {"Ref": "Worker"},
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            },
        },
        "Tick": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "ScheduleExpression": "rate(1 hour)",
                "Tags": [{"Key": "seller-insights:schedule", "Value": "tick"}],
                "Targets": [{"Arn": {"Fn::GetAtt": ["Worker", "Arn"]}, "Id": "Target0"}],
            },
        },
    }
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("small-stack")
    package = root / "code" / "local_fixture_worker"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "handler.py").write_text(WORKER)
    (root / "template.json").write_text(json.dumps(TEMPLATE))
    started = launch(
        root / "stderr.log", ("--template", str(root / "template.json")), {"PYTHONPATH": str(root / "code")}
    )
    yield started
    code, rest = started.terminate()
    assert (code, rest) == (0, "")


def post(serve: Serve, path: str, body: Any = None) -> requests.Response:
    return requests.post(f"{serve.info['api']}{path}", json=body, timeout=TIMEOUT)


def test_a_schedule_fires_its_target_with_the_scheduled_event(small: Serve) -> None:
    assert requests.get(f"{small.info['api']}/_local/fire", timeout=TIMEOUT).json() == {"schedules": ["tick"]}
    fired = post(small, "/_local/fire/tick")
    assert fired.status_code == 200
    result = fired.json()
    assert result["source"] == "aws.events"
    assert result["queue"] == small.info["resources"]["queues"]["jobs"]
    assert result["key"].startswith("arn:aws:kms:us-east-1:")


def test_drain_deletes_only_successes_and_redrives_after_the_virtual_visibility_timeout(small: Serve) -> None:
    queues = small.info["resources"]["queues"]
    sqs = boto3.client("sqs", endpoint_url=small.info["aws"], region_name=small.info["region"])
    for body in ("ok-1", "fail", "ok-2"):
        sqs.send_message(QueueUrl=queues["jobs"], MessageBody=body)

    first = post(small, "/_local/drain", {"max_seconds": 5}).json()
    assert first == {"delivered": {"jobs": 2}, "failed": {"jobs": 1}, "left": {"jobs": 1, "jobs_dlq": 0}}

    # Still invisible: the 30 s visibility timeout has not passed, in real or virtual time.
    assert post(small, "/_local/drain", {"max_seconds": 2}).json()["failed"] == {}

    assert post(small, "/_local/clock", {"advance_seconds": 31}).status_code == 200
    second = post(small, "/_local/drain", {"max_seconds": 5}).json()
    assert second["failed"] == {"jobs": 1}

    assert post(small, "/_local/clock", {"advance_seconds": 31}).status_code == 200
    third = post(small, "/_local/drain", {"max_seconds": 5}).json()
    assert third["left"] == {"jobs": 0, "jobs_dlq": 1}, third


def test_a_drain_can_play_only_the_queues_it_names(small: Serve) -> None:
    queues = small.info["resources"]["queues"]
    sqs = boto3.client("sqs", endpoint_url=small.info["aws"], region_name=small.info["region"])
    sqs.send_message(QueueUrl=queues["jobs"], MessageBody="ok-named")

    # jobs_dlq has no event source mapping: naming it (or anything unmapped) is refused, nothing is played.
    for refused in (["jobs_dlq"], ["nope"], [], "jobs", [1]):
        answer = post(small, "/_local/drain", {"max_seconds": 2, "queues": refused})
        assert answer.status_code == 400, refused
        assert "jobs" in answer.json()["message"]
    named = post(small, "/_local/drain", {"max_seconds": 5, "queues": ["jobs"]}).json()
    assert named["delivered"] == {"jobs": 1} and named["left"]["jobs"] == 0
