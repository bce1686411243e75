"""A connection's marketplaces come from Amazon's getMarketplaceParticipations (the emulator over HTTP, moto
in-process): asked when Amazon confirms a consent (token refresher, verify-consents) and once a day before the
report fetcher plans the connection. Only isParticipating decides; a call that fails never fails a consent or
a plan; the seller's quota of the operation (0.016/s, burst 15) is respected; a marketplace the seller leaves
is no longer requested and what was stored for it stays."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
import requests

from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.containers import forget_all
from seller_insights.object_keys import seller_prefix
from seller_insights.quotas import QuotaBuckets
from seller_insights.report_catalog import ORDERS
from seller_insights.report_jobs import PlanRepository, plan_key
from tests.support.api import ConsentClient, FakeContext
from tests.support.flows import confirm_consents, connect, connect_and_confirm, refresh_tokens
from tests.support.iam import acting_as
from tests.support.sweeps import plan_reports
from tests.support.tokens import connection_item, table

SELLER = "A1EUROSELLER001"
UK, DE, FR, IT, ES = "A1F83G8C2ARO7P", "A1PA6795UKMFR9", "A13V1IB3VIYZZH", "APJ6JRA9NG5V4", "A1RKKUPIHCS9HS"
DAY = 24 * 3600
OPERATION = "getMarketplaceParticipations"


@pytest.fixture
def world(token_env, emulator, monkeypatch):
    """The refresher's and the fetcher's environment; the product clock at the emulator's (Amazon refuses
    report windows in its future)."""
    clock.set_clock(FixedClock(emulator.now()))
    boto3.client("s3").create_bucket(Bucket="data")
    queue = boto3.client("sqs").create_queue(QueueName="report-jobs")["QueueUrl"]
    # No history: these tests follow the live window of each marketplace (coverage has its own tests).
    for key, value in {"DATA_BUCKET": "data", "REPORT_JOBS_QUEUE_URL": queue, "DEFAULT_REPORT_TYPES": ORDERS,
                       "REPORT_BACKFILL_DAYS": f"{ORDERS}=0"}.items():
        monkeypatch.setenv(key, value)
    forget_all()
    yield {"resources": token_env, "queue": queue}
    forget_all()


def participate(emulator, *countries: str, seller: str = SELLER, **flags: dict[str, bool]) -> None:
    """What Amazon answers the seller from now on: these EU countries, participating unless `flags` say."""
    entries = [{"country": c, **flags.get(c, {})} for c in countries]
    answer = requests.post(f"{emulator.base_url}/_emulator/participations", timeout=5,
                           json={"selling_partner_id": seller, "region": "EU", "marketplaces": entries})
    assert answer.status_code == 200, answer.text


def fault(emulator, status, count=1, **extra: float) -> None:
    requests.post(f"{emulator.base_url}/_emulator/faults", timeout=5,
                  json={"operation": OPERATION, "status": status, "count": count, **extra}).raise_for_status()


def calls(emulator) -> int:
    return int(requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()["spapi"][OPERATION])


def plan_item(world, seller: str = SELLER) -> dict[str, Any]:
    item: dict[str, Any] = table(world["resources"]).get_item(Key=plan_key(seller, "EU"))["Item"]
    return item


def requested_marketplaces(emulator, seller: str = SELLER) -> list[list[str]]:
    """The marketplaces of each createReport Amazon received from this seller, oldest first."""
    answer = requests.get(f"{emulator.base_url}/_emulator/requests", timeout=5,
                          params={"operation": "createReport", "selling_partner_id": seller})
    return [list(r["marketplace_ids"]) for r in answer.json()["requests"]]


def lambda_task(duty: str, task: str) -> dict[str, Any]:
    if duty == "token_refresher":
        from token_refresher.handler import lambda_handler
    else:
        from report_fetcher.handler import lambda_handler
    with acting_as(duty):
        return dict(lambda_handler({"task": task}, FakeContext(function_name=duty)))


def plan_run() -> dict[str, Any]:
    """One round of the schedules: access tokens kept warm by the refresher, then the fetcher's plan."""
    refresh_tokens()
    return plan_reports()


def deliver_all(queue: str) -> None:
    sqs = boto3.client("sqs")
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        from report_fetcher.handler import lambda_handler

        with acting_as("report_fetcher"):
            result = lambda_handler({"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]},
                                    FakeContext(function_name="report_fetcher"))
        assert result["batchItemFailures"] == []
        for message in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def advance(emulator, seconds: float) -> None:
    clock.get_clock().advance(seconds)
    emulator.advance_clock(seconds)


def stored(seller: str = SELLER) -> tuple[set[str], set[str]]:
    """(S3 keys, REPORT# sort keys) of what is stored for the seller in EU."""
    listing = boto3.client("s3").list_objects_v2(Bucket="data", Prefix=seller_prefix(seller, "EU"))
    rows = boto3.resource("dynamodb").Table("test-connections").query(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :report)",
        ExpressionAttributeValues={":pk": f"SELLER#{seller}", ":report": "REPORT#"})["Items"]
    return {o["Key"] for o in listing.get("Contents", [])}, {r["sk"] for r in rows}


# ------------------------------------------------------------------------------------------- at consent

def test_a_seller_in_five_marketplaces_gets_all_five_at_consent(world, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "DE").status == 303

    plan = plan_item(world)
    assert plan["marketplace_ids"] == [UK, DE, FR, IT, ES]
    assert plan["participations_checked_at"] == clock.epoch_seconds()
    assert plan["version"] == 1
    assert calls(emulator) == 1
    # The fetcher's first plan asks nothing more (checked less than a day ago) and requests all five.
    assert plan_run()["jobs"] == 1
    assert calls(emulator) == 1
    deliver_all(world["queue"])
    assert requested_marketplaces(emulator) == [[UK, DE, FR, IT, ES]]


def test_only_is_participating_decides(world, emulator, capfd):
    participate(emulator, "DE", "FR", "IT", "ES",
                FR={"is_participating": False},
                IT={"is_participating": True, "has_suspended_listings": True},
                ES={"is_participating": False, "has_suspended_listings": True})

    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "DE").status == 303

    # UK is not in the answer, FR and ES are not participating; IT's suspended listings keep it planned.
    assert plan_item(world)["marketplace_ids"] == [DE, IT]
    assert "ConsentParticipationsDeferred" not in capfd.readouterr().out


@pytest.mark.parametrize("status", [429, 500, 503, "timeout"])
def test_a_failed_call_at_consent_still_connects_with_the_marketplace_it_came_from(world, emulator, capfd,
                                                                                   log_guard, status):
    # "timeout": Amazon holds the answer longer than the consent's 3 s read timeout.
    fault(emulator, status, **({"hold_seconds": 3.5} if status == "timeout" else {}))

    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "FR").status == 303

    connection = connection_item(world["resources"], SELLER, "EU")
    assert connection is not None and connection["status"] == "ACTIVE"
    plan = plan_item(world)
    assert plan["marketplace_ids"] == [FR]
    assert "participations_checked_at" not in plan
    out, err = capfd.readouterr()
    assert '"ConsentParticipationsDeferred":[1.0]' in out
    assert "a consent's marketplaces are left to the daily check" in err
    assert log_guard.findings(out + err) == []

    # The next plan does not wait a day: an unchecked plan is checked before it is planned.
    assert plan_run()["jobs"] == 1
    assert plan_item(world)["marketplace_ids"] == [UK, DE, FR, IT, ES]
    assert calls(emulator) == 2


def test_a_consent_with_the_sellers_bucket_used_up_does_not_ask(world, emulator, capfd):
    buckets = QuotaBuckets(table(world["resources"]))
    while buckets.take_operation(SELLER, "EU", OPERATION) == 0:
        pass

    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "IT").status == 303

    assert calls(emulator) == 0
    assert plan_item(world)["marketplace_ids"] == [IT]
    assert '"ConsentParticipationsDeferred":[1.0]' in capfd.readouterr().out


def test_a_renewed_consent_takes_the_marketplaces_of_now(world, emulator):
    participate(emulator, "DE")
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "DE").status == 303
    assert plan_item(world)["marketplace_ids"] == [DE]
    participate(emulator, "DE", "ES")
    advance(emulator, 600)

    assert connect(ConsentClient(), emulator.base_url, SELLER, "DE").status == 303
    assert confirm_consents()["verified"] == 1

    plan = plan_item(world)
    assert plan["marketplace_ids"] == [DE, ES]
    assert (plan["participations_checked_at"], plan["version"]) == (clock.epoch_seconds(), 2)


# ------------------------------------------------------------------------------------------- daily

def test_the_daily_check_drops_a_left_marketplace_adds_a_joined_one_and_deletes_nothing(world, emulator, capfd):
    participate(emulator, "DE", "FR")
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "DE").status == 303
    assert plan_run()["jobs"] == 1
    for _ in range(3):
        deliver_all(world["queue"])
        advance(emulator, 120)
    keys, rows = stored()
    assert len(keys) == len(rows) == 1  # the DE+FR orders of the first hour
    # The seller leaves FR and joins IT; within the day nobody asks.
    participate(emulator, "DE", "IT")
    advance(emulator, 3600)
    plan_run()
    deliver_all(world["queue"])
    assert plan_item(world)["marketplace_ids"] == [DE, FR]
    assert calls(emulator) == 1

    advance(emulator, DAY - 3600)
    plan_run()
    deliver_all(world["queue"])

    assert plan_item(world)["marketplace_ids"] == [DE, IT]
    assert calls(emulator) == 2
    assert requested_marketplaces(emulator) == [[DE, FR], [DE, FR], [DE, IT]]
    assert stored()[0] >= keys and stored()[1] >= rows  # what FR's requests stored is still there
    out, err = capfd.readouterr()
    assert '"ParticipationsChanged":[1.0]' in out and "ParticipationsFailed" not in out
    assert "a connection's marketplaces changed" in err


def test_a_failed_daily_check_never_fails_the_plan_and_is_tried_at_the_next_plan(world, emulator, capfd):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "DE").status == 303
    checked_at = plan_item(world)["participations_checked_at"]
    participate(emulator, "DE")
    advance(emulator, DAY)
    fault(emulator, 503)

    assert plan_run()["jobs"] == 1  # planned with the marketplaces it had

    plan = plan_item(world)
    assert (plan["marketplace_ids"], plan["participations_checked_at"]) == ([UK, DE, FR, IT, ES], checked_at)
    out, err = capfd.readouterr()
    assert '"ParticipationsFailed":[1.0]' in out
    assert "marketplace participations check failed; tried again at the connection's next plan" in err

    advance(emulator, 3600)  # the connection's next plan (hourly orders)
    plan_run()
    assert plan_item(world)["marketplace_ids"] == [DE]
    assert calls(emulator) == 3


def test_the_daily_check_respects_the_sellers_quota(world, emulator, capfd):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "DE").status == 303
    participate(emulator, "DE")
    advance(emulator, DAY)
    # Someone else used the seller's bucket up (burst 15, one token per 62.5 s).
    buckets = QuotaBuckets(table(world["resources"]))
    while buckets.take_operation(SELLER, "EU", OPERATION) == 0:
        pass

    assert plan_run()["jobs"] == 1

    assert calls(emulator) == 1  # not asked: no 429 from Amazon
    assert plan_item(world)["marketplace_ids"] == [UK, DE, FR, IT, ES]
    out, err = capfd.readouterr()
    assert "ParticipationsFailed" not in out and "check deferred to the connection's next plan" in err
    advance(emulator, 3600)  # the connection's next plan: the bucket has refilled
    plan_run()
    assert plan_item(world)["marketplace_ids"] == [DE]
    counted = requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()
    assert counted["spapi"][OPERATION] == 2 and counted["throttled"] == 0


def test_a_plan_gone_meanwhile_is_not_recreated(world, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "DE").status == 303
    plans = PlanRepository(table(world["resources"]))
    plans.delete(SELLER, "EU")

    assert plans.record_participations(SELLER, "EU", [DE], clock.epoch_seconds()) is None
    assert "Item" not in table(world["resources"]).get_item(Key=plan_key(SELLER, "EU"))
