"""The report fetcher's plan subscribes sellers to REPORT_PROCESSING_FINISHED (Notifications API): one
grantless destination for the report_notifications queue in each SP-API region (Amazon keeps them per
region), kept by the token refresher (the one duty with the LWA client secret) and cached per region, one
subscription per seller in its own region, recorded on the CONN item; the emulator then notifies
subscribed sellers only. Failures never fail the plan nor the refresh.

`sweep()` is one round of the schedules: the token refresher's refresh-tokens (which keeps the access
tokens the fetcher uses warm, and first the destination of each region with a connection due), then the
fetcher's plan-reports (which subscribes the due connections with their region's cached destination)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from seller_insights.containers import forget_all
from seller_insights.report_catalog import ORDERS
from seller_insights.spapi import SpApiClient
from tests.support.api import ConsentClient, FakeContext
from tests.support.flows import connect_and_confirm, refresh_tokens
from tests.support.iam import acting_as
from tests.support.sweeps import plan_reports
from tests.support.tokens import connection_item, provider

SELLER = "A1SUBSCRIBED0001"
OTHER = "A2UNSUBSCRIBED02"
EU_SELLER = "A3EUROPEAN00003"
FE_SELLER = "A4FAREAST000004"
LISTINGS = "GET_MERCHANT_LISTINGS_ALL_DATA"
US = "ATVPDKIKX0DER"
# region -> (a seller of that region, a marketplace code for /connect, its marketplace id)
REGIONS = {"NA": (SELLER, "US", US), "EU": (EU_SELLER, "DE", "A1PA6795UKMFR9"),
           "FE": (FE_SELLER, "JP", "A1VC38T7YXB528")}
HOSTS = {"NA": "sellingpartnerapi-na.amazon.com", "EU": "sellingpartnerapi-eu.amazon.com",
         "FE": "sellingpartnerapi-fe.amazon.com"}
LEGACY_ITEM = "destination#report_notifications"


@pytest.fixture
def report_queue(sqs: Any, moto_endpoint: str, emulator: Any) -> Iterator[tuple[str, str]]:
    """A report notifications queue on the moto server (the emulator delivers from its own thread)."""
    url = sqs.create_queue(QueueName=f"report-notifications-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    emulator.configure(report_notification_queue_url=url, sqs_endpoint=moto_endpoint)
    yield url, arn
    emulator.configure(report_notification_queue_url="", sqs_endpoint="")  # back to the default (as other tests use)


@pytest.fixture
def fetcher_env(token_env, monkeypatch):
    """token_env plus the report fetcher's own environment (hourly ORDERS: a plan is due every hour)."""
    jobs = boto3.client("sqs").create_queue(QueueName="report-jobs")["QueueUrl"]
    boto3.client("s3").create_bucket(Bucket="data")
    for key, value in {"DATA_BUCKET": "data", "REPORT_JOBS_QUEUE_URL": jobs, "DEFAULT_REPORT_TYPES": ORDERS,
                       "REPORT_BACKFILL_DAYS": f"{ORDERS}=0"}.items():
        monkeypatch.setenv(key, value)
    forget_all()
    return token_env


@pytest.fixture
def subscribing(fetcher_env, report_queue, monkeypatch, emulator):
    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", report_queue[1])
    forget_all()
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    yield fetcher_env
    forget_all()


def refresher(task: str) -> dict[str, Any]:
    from token_refresher.handler import lambda_handler

    with acting_as("token_refresher"):
        return dict(lambda_handler({"task": task}, FakeContext(function_name="token_refresher")))


def fetcher(task: str) -> dict[str, Any]:
    from report_fetcher.handler import lambda_handler

    with acting_as("report_fetcher"):
        return dict(lambda_handler({"task": task}, FakeContext(function_name="report_fetcher")))


def sweep() -> dict[str, Any]:
    """The refresh report, with the number of sellers the plan after it subscribed."""
    refreshed = refresh_tokens()
    planned = plan_reports()
    return {**refreshed, "subscribed": planned["subscribed"]}


def stats(emulator: Any) -> dict[str, Any]:
    return dict(requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json())


def idempotency(resources: Any) -> Any:
    return boto3.resource("dynamodb").Table(resources.tables["idempotency"])


def destination_item(resources: Any, region: str = "NA") -> dict[str, Any] | None:
    item: dict[str, Any] | None = idempotency(resources).get_item(
        Key={"id": f"destination#report_notifications#{region}"}).get("Item")
    return item


def amazon_destinations(emulator: Any, region: str) -> list[str]:
    """The destination ids Amazon holds in a region (getDestinations on its host, grantless)."""
    lwa = requests.post(emulator.host_url("api.amazon.com", "/auth/o2/token"), timeout=5, data={
        "grant_type": "client_credentials", "scope": "sellingpartnerapi::notifications",
        "client_id": emulator.client_id, "client_secret": emulator.client_secret})
    listed = requests.get(emulator.host_url(HOSTS[region], "/notifications/v1/destinations"), timeout=5,
                          headers={"x-amz-access-token": lwa.json()["access_token"]})
    return [str(d["destinationId"]) for d in listed.json()["payload"]]


def connect_every_region() -> None:
    for seller, marketplace, _ in REGIONS.values():
        emulator_url = os.environ["AMAZON_ENDPOINT_OVERRIDE"]
        assert connect_and_confirm(ConsentClient(), emulator_url, seller, marketplace).status == 303


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
    # The single cache item of earlier versions (an NA destination for every region) is cleared.
    idempotency(subscribing).put_item(Item={"id": LEGACY_ITEM, "destination_id": "from-before",
                                            "queue_arn": report_queue[1]})
    first = sweep()
    assert (first["refreshed"], first["subscribed"], first["failed"]) == (1, 1, 0)
    item = connection_item(subscribing, SELLER, "NA")
    assert item["rpf_subscription_id"] and item["rpf_subscription_id"] != "existing"
    counted = stats(emulator)
    # Two subscriptions, one destination: REPORT_PROCESSING_FINISHED and DATA_KIOSK_QUERY_PROCESSING_FINISHED.
    assert (counted["destinations"], counted["subscriptions"]) == (1, 2)
    assert counted["spapi"]["createDestination"] == 1 and counted["spapi"]["createSubscription"] == 2
    assert counted["lwa"]["client_credentials"] == 1
    cached = destination_item(subscribing)
    assert cached is not None and cached["queue_arn"] == report_queue[1]
    assert idempotency(subscribing).get_item(Key={"id": LEGACY_ITEM}).get("Item") is None

    product_clock.advance(3600 - 300)  # due again
    second = sweep()
    assert (second["refreshed"], second["subscribed"]) == (1, 0)
    counted = stats(emulator)
    # Two subscriptions, one destination: REPORT_PROCESSING_FINISHED and DATA_KIOSK_QUERY_PROCESSING_FINISHED.
    assert (counted["destinations"], counted["subscriptions"]) == (1, 2)
    assert counted["spapi"]["createDestination"] == 1 and counted["spapi"]["createSubscription"] == 2
    assert counted["spapi"]["getDestinations"] == 1  # only before the one creation
    assert counted["lwa"]["client_credentials"] == 1  # the destination id came from the cache
    assert [cached["destination_id"]] == amazon_destinations(emulator, "NA")
    assert connection_item(subscribing, SELLER, "NA")["rpf_subscription_id"] == item["rpf_subscription_id"]


def test_an_existing_subscription_and_destination_are_reused(subscribing, emulator, product_clock):
    sweep()
    # Our records are lost (e.g. a restore): Amazon still has the destination and the subscription.
    table = boto3.resource("dynamodb").Table(subscribing.tables["connections"])
    table.update_item(Key={"pk": f"SELLER#{SELLER}", "sk": "CONN#NA"}, UpdateExpression="REMOVE rpf_subscription_id")
    idempotency(subscribing).delete_item(Key={"id": "destination#report_notifications#NA"})
    product_clock.advance(3600)  # the connection's next plan (and a refresh)
    again = sweep()
    assert (again["refreshed"], again["subscribed"], again["failed"]) == (1, 1, 0)
    assert connection_item(subscribing, SELLER, "NA")["rpf_subscription_id"] == "existing"
    counted = stats(emulator)
    assert (counted["destinations"], counted["subscriptions"]) == (1, 2)
    assert counted["spapi"]["createDestination"] == 1  # found by getDestinations


def test_reports_notify_subscribed_sellers_only(subscribing, emulator, sqs, report_queue):
    sweep()
    # never swept: not subscribed
    assert connect_and_confirm(ConsentClient(), emulator.base_url, OTHER, "US").status == 303
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


def test_a_failed_destination_never_fails_the_refresh_nor_the_plan(subscribing, emulator, product_clock,
                                                                   monkeypatch, capfd):
    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", "not-an-sqs-arn")  # createDestination answers 400
    forget_all()
    report = sweep()
    assert (report["refreshed"], report["subscribed"], report["failed"]) == (1, 0, 0)
    assert "rpf_subscription_id" not in connection_item(subscribing, SELLER, "NA")
    assert destination_item(subscribing) is None
    out, err = capfd.readouterr()
    # Counted (and alarmed) where it failed, in the refresher; the plan only waits for the destination.
    assert '"ReportDestinationFailed":[1.0]' in out and "Atc|" not in out and "Atza|" not in out
    assert "ReportSubscriptionFailed" not in out
    assert "REPORT_PROCESSING_FINISHED destination not kept" in err
    assert "subscription waits for its region's destination" in err
    assert stats(emulator)["spapi"]["createSubscription"] == 0

    # Fixed configuration: the next refresh subscribes.
    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", "arn:aws:sqs:us-east-1:123456789012:report-notifications")
    forget_all()
    product_clock.advance(3600 - 300)
    assert sweep()["subscribed"] == 1
    assert connection_item(subscribing, SELLER, "NA")["rpf_subscription_id"]


def test_a_deferred_subscription_is_tried_at_the_next_plan_without_planning_jobs_twice(subscribing, product_clock,
                                                                                        monkeypatch, report_queue,
                                                                                        capfd):
    """The plan finds no destination kept for its queue (here: its queue is not the one the refresher kept
    the NA destination for): the subscription waits, not a failure; the jobs are planned and poll, and the
    next plan that finds the destination subscribes."""
    refresh_tokens()  # the access token the fetcher will use, and the NA destination
    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", "not-an-sqs-arn")
    forget_all()
    failed = plan_reports()
    assert (failed["connections"], failed["jobs"], failed["subscribed"]) == (1, 1, 0)
    out, err = capfd.readouterr()
    assert "ReportSubscriptionFailed" not in out and "subscription waits for its region's destination" in err

    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", report_queue[1])
    forget_all()
    product_clock.advance(15 * 60)  # the next plan-reports run; no report type is due again yet
    retried = plan_reports()
    assert (retried["connections"], retried["jobs"], retried["subscribed"]) == (1, 0, 1)
    assert connection_item(subscribing, SELLER, "NA")["rpf_subscription_id"]

    product_clock.advance(15 * 60)
    assert plan_reports()["connections"] == 0  # subscribed: due again only for its reports


def test_no_queue_arn_no_subscription(fetcher_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    report = sweep()
    assert (report["refreshed"], report["subscribed"]) == (1, 0)
    assert "rpf_subscription_id" not in connection_item(fetcher_env, SELLER, "NA")
    assert stats(emulator)["spapi"]["createSubscription"] == 0


def test_sellers_of_every_region_are_subscribed_with_their_regions_destination(subscribing, emulator, product_clock,
                                                                               capfd, log_guard):
    connect_every_region()  # SELLER (NA) is connected already: a re-authorization, still one connection

    first = sweep()

    assert (first["refreshed"], first["subscribed"], first["failed"]) == (3, 3, 0)
    counted = stats(emulator)
    assert counted["destinations_by_region"] == {"NA": 1, "EU": 1, "FE": 1}
    assert counted["subscriptions_by_region"] == {"NA": 2, "EU": 2, "FE": 2}  # reports' and queries'
    assert counted["spapi"]["createDestination"] == 3 and counted["spapi"]["createSubscription"] == 6
    assert counted["lwa"]["client_credentials"] == 1  # one grantless token serves every host
    assert counted["spapi"]["getDestinations"] == 3  # once per region, before its creation
    out, err = capfd.readouterr()
    assert "ReportSubscriptionFailed" not in out and log_guard.findings(out + err) == []

    product_clock.advance(3600 - 300)  # due again: every destination id comes from its region's cache
    second = sweep()
    assert (second["refreshed"], second["subscribed"], second["failed"]) == (3, 0, 0)
    assert stats(emulator)["spapi"] == counted["spapi"]  # not one more Notifications API call
    for region, (seller, _, _) in REGIONS.items():
        cached = destination_item(subscribing, region)
        assert cached is not None and [cached["destination_id"]] == amazon_destinations(emulator, region), region
        subscription = connection_item(subscribing, seller, region)["rpf_subscription_id"]
        assert subscription and subscription != "existing"


def test_report_notifications_arrive_for_eu_and_fe_sellers(subscribing, emulator, sqs, report_queue):
    connect_every_region()
    assert sweep()["subscribed"] == 3
    client = SpApiClient(provider(subscribing, emulator.base_url), endpoint_override=emulator.base_url)
    reports = {}
    for region in ("EU", "FE"):
        seller, _, marketplace = REGIONS[region]
        body = {"reportType": LISTINGS, "marketplaceIds": [marketplace]}
        reports[seller] = client.create_report(seller, region, body)
    messages(sqs, report_queue[0])

    emulator.advance_clock(91)

    sent = {m["payload"]["reportProcessingFinishedNotification"]["sellerId"]: m for m in messages(sqs, report_queue[0])}
    assert set(sent) == set(reports)
    for region in ("EU", "FE"):
        seller = REGIONS[region][0]
        assert sent[seller]["payload"]["reportProcessingFinishedNotification"]["reportId"] == reports[seller]
        assert (sent[seller]["notificationMetadata"]["subscriptionId"]
                == connection_item(subscribing, seller, region)["rpf_subscription_id"])


def test_a_refused_cached_destination_is_dropped_and_looked_up_again(subscribing, emulator, product_clock, capfd,
                                                                     log_guard):
    """The EU cache entry holds a destination id Amazon's EU region does not know (here: NA's, which the
    single-destination design subscribed every seller with): the plan's 400 drops that entry (a failure,
    counted), the next sweep with an EU connection due finds or creates the EU destination again and the plan
    after it subscribes the seller; NA's entry is left alone."""
    assert connect_and_confirm(ConsentClient(), emulator.base_url, EU_SELLER, "DE").status == 303
    assert sweep()["subscribed"] == 2  # NA and EU, each with its own destination
    north_america = destination_item(subscribing, "NA")
    assert north_america is not None
    table = boto3.resource("dynamodb").Table(subscribing.tables["connections"])
    table.update_item(Key={"pk": f"SELLER#{EU_SELLER}", "sk": "CONN#EU"}, UpdateExpression="REMOVE rpf_subscription_id")
    idempotency(subscribing).put_item(Item={**north_america, "id": "destination#report_notifications#EU",
                                            "region": "EU"})
    out, err = capfd.readouterr()
    assert log_guard.findings(out + err) == []

    product_clock.advance(3600)  # the connections' next plan (and a refresh)
    refused = sweep()

    assert (refused["refreshed"], refused["subscribed"], refused["failed"]) == (2, 0, 0)  # the refresh stands
    assert destination_item(subscribing, "EU") is None  # dropped
    assert destination_item(subscribing, "NA") == north_america  # untouched
    assert "rpf_subscription_id" not in connection_item(subscribing, EU_SELLER, "EU")
    out, err = capfd.readouterr()
    assert '"ReportSubscriptionFailed":[1.0]' in out and "cached REPORT_PROCESSING_FINISHED destination refused" in err
    assert log_guard.findings(out + err) == []
    assert stats(emulator)["spapi"]["createSubscription"] == 5  # 2 + 2, then the refused one

    product_clock.advance(3600 - 300)
    recovered = sweep()

    assert (recovered["refreshed"], recovered["subscribed"], recovered["failed"]) == (2, 1, 0)
    cached = destination_item(subscribing, "EU")
    assert cached is not None and [cached["destination_id"]] == amazon_destinations(emulator, "EU")
    assert connection_item(subscribing, EU_SELLER, "EU")["rpf_subscription_id"] == "existing"  # Amazon kept it
    counted = stats(emulator)
    assert counted["destinations_by_region"] == {"NA": 1, "EU": 1, "FE": 0}  # found again, not duplicated
    assert counted["subscriptions_by_region"] == {"NA": 2, "EU": 2, "FE": 0}
    out, err = capfd.readouterr()
    assert "ReportSubscriptionFailed" not in out and log_guard.findings(out + err) == []


def test_a_refused_grantless_token_is_not_used_again(subscribing, emulator, product_clock, capfd, log_guard):
    """The refresher's grantless token is kept in memory until shortly before its expiry by our clock; if
    Amazon refuses it sooner (here: Amazon's clock is an hour ahead), the next run asks LWA for a new one."""
    assert sweep()["subscribed"] == 1  # NA, with a new grantless token
    emulator.advance_clock(3600)  # Amazon considers that token expired; our clock does not
    assert connect_and_confirm(ConsentClient(), emulator.base_url, EU_SELLER, "DE").status == 303

    refused = sweep()

    assert (refused["refreshed"], refused["subscribed"], refused["failed"]) == (1, 0, 0)
    assert stats(emulator)["spapi_denied"]["getDestinations"] == 1
    out, err = capfd.readouterr()
    assert '"ReportDestinationFailed":[1.0]' in out and log_guard.findings(out + err) == []
    assert "ReportSubscriptionFailed" not in out  # the EU seller's subscription waits for its destination

    product_clock.advance(3600 - 300)  # due again; the first token would still look fresh to us
    again = sweep()

    assert (again["refreshed"], again["subscribed"], again["failed"]) == (2, 1, 0)
    assert stats(emulator)["lwa"]["client_credentials"] == 2
    assert connection_item(subscribing, EU_SELLER, "EU")["rpf_subscription_id"] not in ("", "existing")


class _SubscribedConnections:
    """ConnectionsRepository's subscription side for a connection already subscribed; records each read."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    def report_subscriptions(self, seller: str, region: str) -> dict[str, str]:
        self.reads.append((seller, region))
        return {"rpf_subscription_id": "subscription-1", "dkq_subscription_id": "subscription-2"}


class _NotToBeReached:
    """Amazon (createSubscription) or the destination cache: an already subscribed connection needs neither."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was called for a connection that is already subscribed")


def test_an_already_subscribed_connection_costs_the_plan_one_read_and_no_call_to_amazon() -> None:
    from report_fetcher.subscriptions import ReportSubscriptions

    connections = _SubscribedConnections()
    subscriptions = ReportSubscriptions(sellers_api=_NotToBeReached(), connections=connections,  # type: ignore[arg-type]
                                        destinations=_NotToBeReached())  # type: ignore[arg-type]

    assert subscriptions.ensure(SELLER, "NA") is False
    assert connections.reads == [(SELLER, "NA")]
