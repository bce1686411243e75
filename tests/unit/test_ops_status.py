"""`ops status` against moto in-process: the census, every queue's depth, and the LWA secret's age and
rotation state from its versions' metadata only (never its value, which the log guard watches)."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops import status
from ops.fleet import Fleet, Resource
from seller_insights.repositories import connection_key, shard
from tests.support.resources import create_resources

CLIENT_SECRET = "amzn1.oa2-cs.v1.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def fleet(log_guard: Any):
    log_guard.watch(CLIENT_SECRET)
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        resources = create_resources(session, {"client_id": "c", "client_secret": CLIENT_SECRET, "application_id": "a"})
        sqs = session.client("sqs")
        inventory = [Resource("Connections", "AWS::DynamoDB::Table", resources.tables["connections"], "connections"),
                     Resource("Lwa", "AWS::SecretsManager::Secret", resources.secret_arn, "lwa_client")]
        for purpose in ("report_jobs", "report_jobs_dlq", "notifications_dlq"):
            inventory.append(Resource(purpose, "AWS::SQS::Queue", sqs.create_queue(QueueName=purpose)["QueueUrl"],
                                      purpose))
        table = session.resource("dynamodb").Table(resources.tables["connections"])
        for n, region in enumerate(("NA", "NA", "EU")):
            seller = f"A{n:013d}"
            table.put_item(Item={**connection_key(seller, region), "status": "ACTIVE",
                                 "refresh_shard": shard(seller, region), "refresh_due_at": 1})
        yield Fleet("SellerInsights-test", "us-east-1", session, inventory)


def run(fleet: Fleet, *flags: str) -> str:
    out = io.StringIO()
    args = argparse.Namespace(json="--json" in flags, tokens_removed=False)
    assert status.run(fleet, args, out, io.StringIO()) == 0
    return out.getvalue()


def test_the_status_counts_queues_and_describes_the_secret(fleet: Fleet) -> None:
    sqs = fleet.client("sqs")
    for _ in range(2):
        sqs.send_message(QueueUrl=fleet.queue_url("report_jobs_dlq"), MessageBody="{}")

    shown = json.loads(run(fleet, "--json"))

    assert shown["connections"]["ACTIVE"] == {"NA": 2, "EU": 1}
    assert shown["queues"]["report_jobs_dlq"] == {"dead_letter": True, "messages": 2, "in_flight": 0, "delayed": 0}
    assert shown["queues"]["report_jobs"]["dead_letter"] is False
    secret = shown["lwa_client_secret"]
    assert (secret["rotation"], secret["versions"], secret["previous_stored_at"]) == ("current", 1, None)
    assert 0 <= secret["age_days"] < 1
    assert CLIENT_SECRET not in json.dumps(shown)

    table = run(fleet)
    assert "report_jobs_dlq" in table and "Connections by status and region" in table


def test_a_rotated_secret_shows_the_overlap_and_a_dead_letter_points_at_recover_secret(fleet: Fleet) -> None:
    secrets = fleet.client("secretsmanager")
    secrets.put_secret_value(SecretId=fleet.secret_arn("lwa_client"),
                             SecretString=json.dumps({"client_secret": CLIENT_SECRET[::-1]}))

    secret = json.loads(run(fleet, "--json"))["lwa_client_secret"]

    assert secret["rotation"].startswith("overlap: the previous secret stays valid until about ")
    until = datetime.fromisoformat(secret["rotation"].rsplit(" ", 1)[-1].replace("Z", "+00:00"))
    assert timedelta(days=6) < until - datetime.now(UTC) <= timedelta(days=7)
    assert secret["previous_stored_at"] is not None

    fleet.client("sqs").send_message(QueueUrl=fleet.queue_url("notifications_dlq"), MessageBody="{}")
    secret = json.loads(run(fleet, "--json"))["lwa_client_secret"]
    assert "ops recover-secret" in secret["rotation"]
