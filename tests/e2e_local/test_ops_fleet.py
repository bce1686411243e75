"""The fleet commands against `python -m local serve` (issue 12, sections 4 and 7): `ops status` (table and
JSON) counts what the stack holds, the hourly `fleet-census` schedule runs under the retention sweeper's
role (the local IAM guard checks every call; the stack's teardown fails on a denial), `ops redrive` moves
dead letters back and refuses the notifications DLQ while it holds a new client secret, `ops seller-key`
answers the stack's key and `ops backfill` makes the planner fetch a type again.

The commands run as `python -m ops ... --local API` subprocesses (the inventory from GET /_local/stack);
boto3 against the printed AWS endpoint only to put dead letters in place and to look at the queues. A stack
of this module's own: the counts are exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import boto3
import pytest

from seller_insights.report_catalog import FBA_RETURNS
from tests.support.e2e import connect, fire, new_seller, plan_reports, sells_only_in, virtual_now
from tests.support.local_stack import REPO, seller_items, stack_of_its_own, stack_seller_key

pytestmark = pytest.mark.slow

info = stack_of_its_own("fleet")


def ops(info: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AWS_") and name != "SELLER_INSIGHTS_LOCAL"}
    return subprocess.run([sys.executable, "-m", "ops", *argv, "--local", info["api"]], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)


def sqs(info: dict[str, Any]) -> Any:
    return boto3.client("sqs", endpoint_url=info["aws"], region_name=info["region"],
                        aws_access_key_id=info["admin"]["access_key_id"],
                        aws_secret_access_key=info["admin"]["secret_access_key"])


def depth(info: dict[str, Any], purpose: str) -> int:
    attributes = sqs(info).get_queue_attributes(QueueUrl=info["resources"]["queues"][purpose],
                                                AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


@pytest.fixture(scope="module")
def sellers(info: dict[str, Any]) -> dict[str, str]:
    """One seller connected in NA (US only) and one in EU, planned once."""
    chosen = {"NA": new_seller(), "EU": new_seller()}
    sells_only_in(info, chosen["NA"], "NA", "US")
    connect(info, chosen["NA"], "US")
    connect(info, chosen["EU"], "DE")
    plan_reports(info)
    return chosen


def test_ops_status_counts_the_stack(info: dict[str, Any], sellers: dict[str, str]) -> None:
    done = ops(info, "status", "--json")
    assert done.returncode == 0, done.stderr[-800:]
    status = json.loads(done.stdout)

    assert status["connections"]["ACTIVE"] == {"NA": 1, "EU": 1}
    assert status["connections_total"] == 2
    assert (status["pending_candidates"], status["deletions_pending"], status["purges_due_this_week"]) == (0, 0, 0)
    assert status["report_lag_periods"] and all(lag >= 0 for lag in status["report_lag_periods"].values())
    assert set(status["queues"]) == set(info["resources"]["queues"])
    assert all(status["queues"][name]["dead_letter"] == name.endswith("_dlq") for name in status["queues"])
    assert status["lwa_client_secret"]["rotation"] == "current" and status["lwa_client_secret"]["stored_at"]

    table = ops(info, "status")
    assert table.returncode == 0, table.stderr[-800:]
    for heading in ("Connections by status and region", "Waiting", "Report lag", "Queues", "LWA client secret"):
        assert heading in table.stdout


def test_the_fleet_census_schedule_counts_the_same(info: dict[str, Any], sellers: dict[str, str]) -> None:
    census = fire(info, "fleet-census")

    assert census["connections"]["ACTIVE"] == {"NA": 1, "EU": 1}
    assert census["pending_candidates"] == 0
    assert "Scan" not in census["calls"]


def test_seller_key_is_the_stacks_key(info: dict[str, Any], sellers: dict[str, str]) -> None:
    done = ops(info, "seller-key", sellers["NA"])
    assert done.returncode == 0, done.stderr[-800:]
    assert json.loads(done.stdout) == {"seller_key": stack_seller_key(info, sellers["NA"])}


def test_backfill_makes_the_planner_fetch_the_days_again(info: dict[str, Any], sellers: dict[str, str]) -> None:
    seller = sellers["NA"]
    since = (virtual_now(info) - timedelta(days=3)).strftime("%Y-%m-%d")

    done = ops(info, "backfill", seller, "--type", FBA_RETURNS, "--since", since)

    assert done.returncode == 0, done.stderr[-800:]
    answer = json.loads(done.stdout)
    assert (answer["connections"], answer["cursors"]) == (1, 1)
    planned = plan_reports(info)
    assert planned["found"] >= 1, planned
    (plan,) = seller_items(info, seller, "PLAN#")
    windows = [window for cursor in plan["coverage"].values() if cursor["type"] == FBA_RETURNS
               for window in cursor["windows"].values()]
    assert sum(1 for window in windows if len(window) > 4 and window[4] == answer["pull"]) == 3

    refused = ops(info, "backfill", seller, "--type", FBA_RETURNS, "--since", "2020-01-01")
    assert refused.returncode == 4 and "days at most" in refused.stderr


def test_redrive_moves_dead_letters_back_once(info: dict[str, Any]) -> None:
    queues = info["resources"]["queues"]
    client = sqs(info)
    for n in range(3):
        client.send_message(QueueUrl=queues["retention_purges_dlq"], MessageBody=json.dumps(
            {"retention_purges": [{"seller_id": f"A{n:013d}", "region": "NA"}]}))

    done = ops(info, "redrive", "retention_purges_dlq", "--count", "2", "--yes")
    assert done.returncode == 0, done.stderr[-800:]
    assert json.loads(done.stdout)["moved"] == 2
    assert (depth(info, "retention_purges_dlq"), depth(info, "retention_purges")) == (1, 2)

    unconfirmed = ops(info, "redrive", "retention_purges")  # no terminal to ask on, no --yes
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    done = ops(info, "redrive", "retention_purges", "--yes")
    assert done.returncode == 0 and json.loads(done.stdout)["moved"] == 1
    assert (depth(info, "retention_purges_dlq"), depth(info, "retention_purges")) == (0, 3)
    client.purge_queue(QueueUrl=queues["retention_purges"])


def test_redrive_refuses_a_new_client_secret(info: dict[str, Any]) -> None:
    queues = info["resources"]["queues"]
    client = sqs(info)
    client.send_message(QueueUrl=queues["notifications_dlq"], MessageBody=json.dumps({
        "notificationType": "APPLICATION_OAUTH_CLIENT_NEW_SECRET", "notificationVersion": "1.0",
        "payload": {"applicationOAuthClientNewSecret": {"clientId": "amzn1.application-oa2-client.x",
                                                        "newClientSecret": "test-only-not-a-secret-value"}}}))

    done = ops(info, "redrive", "notifications_dlq", "--yes")

    assert done.returncode == 4 and "ops recover-secret" in done.stderr
    assert (depth(info, "notifications_dlq"), depth(info, "notifications")) == (1, 0)
    client.purge_queue(QueueUrl=queues["notifications_dlq"])
