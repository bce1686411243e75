"""The token refresher subscribes sellers to REPORT_PROCESSING_FINISHED (Notifications API): one
grantless destination for the report_notifications queue, one subscription per seller, recorded on the
CONN item; the emulator then notifies subscribed sellers only. Failures never fail the refresh."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from seller_insights.spapi import SpApiClient
from tests.support.api import ConsentClient, FakeContext
from tests.support.flows import connect
from tests.support.iam import acting_as
from tests.support.tokens import connection_item, provider

SELLER = "A1SUBSCRIBED0001"
OTHER = "A2UNSUBSCRIBED02"
LISTINGS = "GET_MERCHANT_LISTINGS_ALL_DATA"
US = "ATVPDKIKX0DER"


@pytest.fixture
def report_queue(sqs: Any, moto_endpoint: str, emulator: Any) -> Iterator[tuple[str, str]]:
    """A report notifications queue on the moto server (the emulator delivers from its own thread)."""
    url = sqs.create_queue(QueueName=f"report-notifications-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    emulator.configure(report_notification_queue_url=url, sqs_endpoint=moto_endpoint)
    yield url, arn
    emulator.configure(report_notification_queue_url="", sqs_endpoint="")  # back to the default (as other tests use)


@pytest.fixture
def subscribing(token_env, report_queue, monkeypatch, emulator):
    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", report_queue[1])
    from token_refresher import handler

    for factory in (handler.settings, handler.subscriptions):
        factory.cache_clear()
    assert connect(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    yield token_env
    for factory in (handler.settings, handler.subscriptions):
        factory.cache_clear()


def refresher(task: str) -> dict[str, Any]:
    from token_refresher.handler import lambda_handler

    with acting_as("token_refresher"):
        return dict(lambda_handler({"task": task}, FakeContext(function_name="token_refresher")))


def stats(emulator: Any) -> dict[str, Any]:
    return dict(requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json())


def destination_item(resources: Any) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb").Table(resources.tables["idempotency"])
    return table.get_item(Key={"id": "destination#report_notifications"}).get("Item")


def messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return out
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_a_refresh_subscribes_the_seller_once(subscribing, emulator, product_clock, report_queue):
    first = refresher("refresh-tokens")
    assert (first["refreshed"], first["subscribed"], first["failed"]) == (1, 1, 0)
    item = connection_item(subscribing, SELLER, "NA")
    assert item["rpf_subscription_id"] and item["rpf_subscription_id"] != "existing"
    cached = destination_item(subscribing)
    assert cached is not None and cached["queue_arn"] == report_queue[1]
    counted = stats(emulator)
    assert (counted["destinations"], counted["subscriptions"]) == (1, 1)
    assert counted["spapi"]["createDestination"] == 1 and counted["spapi"]["createSubscription"] == 1
    assert counted["lwa"]["client_credentials"] == 1

    product_clock.advance(3600 - 300)  # due again
    second = refresher("refresh-tokens")
    assert (second["refreshed"], second["subscribed"]) == (1, 0)
    counted = stats(emulator)
    assert (counted["destinations"], counted["subscriptions"]) == (1, 1)
    assert counted["spapi"]["createDestination"] == 1 and counted["spapi"]["createSubscription"] == 1
    assert counted["spapi"]["getDestinations"] == 1  # only before the one creation
    assert counted["lwa"]["client_credentials"] == 1  # the destination id came from the cache
    assert connection_item(subscribing, SELLER, "NA")["rpf_subscription_id"] == item["rpf_subscription_id"]


def test_an_existing_subscription_and_destination_are_reused(subscribing, emulator, product_clock):
    refresher("refresh-tokens")
    # Our records are lost (e.g. a restore): Amazon still has the destination and the subscription.
    table = boto3.resource("dynamodb").Table(subscribing.tables["connections"])
    table.update_item(Key={"pk": f"SELLER#{SELLER}", "sk": "CONN#NA"}, UpdateExpression="REMOVE rpf_subscription_id")
    boto3.resource("dynamodb").Table(subscribing.tables["idempotency"]).delete_item(
        Key={"id": "destination#report_notifications"})
    product_clock.advance(3600 - 300)
    again = refresher("refresh-tokens")
    assert (again["refreshed"], again["subscribed"], again["failed"]) == (1, 1, 0)
    assert connection_item(subscribing, SELLER, "NA")["rpf_subscription_id"] == "existing"
    counted = stats(emulator)
    assert (counted["destinations"], counted["subscriptions"]) == (1, 1)
    assert counted["spapi"]["createDestination"] == 1  # found by getDestinations


def test_reports_notify_subscribed_sellers_only(subscribing, emulator, sqs, report_queue):
    refresher("refresh-tokens")
    assert connect(ConsentClient(), emulator.base_url, OTHER, "US").status == 303  # never swept: not subscribed
    tokens = provider(subscribing, emulator.base_url)
    client = SpApiClient(tokens, endpoint_override=emulator.base_url)
    body = {"reportType": LISTINGS, "marketplaceIds": [US]}
    subscribed_report = client.create_report(SELLER, "NA", body)
    client.create_report(OTHER, "NA", body)
    messages(sqs, report_queue[0])

    emulator.advance_clock(91)

    sent = messages(sqs, report_queue[0])
    assert [m["payload"]["reportProcessingFinishedNotification"]["reportId"] for m in sent] == [subscribed_report]
    assert sent[0]["payload"]["reportProcessingFinishedNotification"]["sellerId"] == SELLER
    assert (sent[0]["notificationMetadata"]["subscriptionId"]
            == connection_item(subscribing, SELLER, "NA")["rpf_subscription_id"])
    assert stats(emulator)["notifications"] == {"REPORT_PROCESSING_FINISHED": 1}


def test_a_failed_subscription_never_fails_the_refresh(subscribing, emulator, product_clock, monkeypatch, capfd):
    from token_refresher import handler

    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", "not-an-sqs-arn")  # createDestination answers 400
    handler.settings.cache_clear()
    handler.subscriptions.cache_clear()
    report = refresher("refresh-tokens")
    assert (report["refreshed"], report["subscribed"], report["failed"]) == (1, 0, 0)
    assert "rpf_subscription_id" not in connection_item(subscribing, SELLER, "NA")
    assert destination_item(subscribing) is None
    out = capfd.readouterr().out
    assert '"ReportSubscriptionFailed":[1.0]' in out and "Atc|" not in out and "Atza|" not in out

    # Fixed configuration: the next refresh subscribes.
    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", "arn:aws:sqs:us-east-1:123456789012:report-notifications")
    handler.settings.cache_clear()
    handler.subscriptions.cache_clear()
    product_clock.advance(3600 - 300)
    assert refresher("refresh-tokens")["subscribed"] == 1
    assert connection_item(subscribing, SELLER, "NA")["rpf_subscription_id"]


def test_no_queue_arn_no_subscription(token_env, emulator):
    assert connect(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    report = refresher("refresh-tokens")
    assert (report["refreshed"], report["subscribed"]) == (1, 0)
    assert "rpf_subscription_id" not in connection_item(token_env, SELLER, "NA")
    assert stats(emulator)["spapi"]["createSubscription"] == 0
