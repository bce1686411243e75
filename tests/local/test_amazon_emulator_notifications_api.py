"""The emulator's Notifications API over real HTTP: createDestination / getDestinations (grantless),
createSubscription for REPORT_PROCESSING_FINISHED (a seller's token), answers validated against the
model, and REPORT_PROCESSING_FINISHED sent only for subscribed sellers (to a real SQS queue, moto server).
Destinations are regional as on Amazon: each host keeps and lists its own, and a destination id of
another region is refused with Amazon's 400.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import requests

from local.amazon import AmazonEmulator

MODELS = Path(__file__).resolve().parents[2] / "local" / "amazon" / "models"
CALLBACK = "https://app.example.test/callback"
NA_HOST = "sellingpartnerapi-na.amazon.com"
EU_HOST = "sellingpartnerapi-eu.amazon.com"
FE_HOST = "sellingpartnerapi-fe.amazon.com"
HOSTS = {"NA": NA_HOST, "EU": EU_HOST, "FE": FE_HOST}
CENTRALS = {"NA": "sellercentral.amazon.com", "EU": "sellercentral-europe.amazon.com",
            "FE": "sellercentral.amazon.co.jp"}
MARKETPLACES = {"NA": "ATVPDKIKX0DER", "EU": "A1PA6795UKMFR9", "FE": "A1VC38T7YXB528"}
DESTINATIONS = "/notifications/v1/destinations"
SUBSCRIBE = "/notifications/v1/subscriptions/REPORT_PROCESSING_FINISHED"
ARN = "arn:aws:sqs:us-east-1:123456789012:report-notifications"
US = "ATVPDKIKX0DER"


@pytest.fixture(scope="module")
def queue_url(sqs: Any) -> str:
    return str(sqs.create_queue(QueueName=f"rpf-{uuid.uuid4().hex[:8]}")["QueueUrl"])


@pytest.fixture(scope="module")
def emu(queue_url: str, moto_endpoint: str) -> Iterator[AmazonEmulator]:
    with AmazonEmulator(redirect_uris=[CALLBACK], report_notification_queue_url=queue_url,
                        sqs_endpoint=moto_endpoint) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return dict(json.loads((MODELS / "notifications.json").read_text()))


@pytest.fixture(autouse=True)
def fresh(emu: AmazonEmulator, sqs: Any, queue_url: str) -> None:
    emu.reset()
    messages(sqs, queue_url)


def validate(body: Any, model: dict[str, Any], definition: str) -> None:
    jsonschema.validate(body, {**model["definitions"][definition], "definitions": model["definitions"]})


def messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return out
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def lwa(http: requests.Session, emu: AmazonEmulator, **fields: str) -> requests.Response:
    body = {"client_id": emu.client_id, "client_secret": emu.client_secret, **fields}
    return http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), data=body, timeout=5)


def grantless(http: requests.Session, emu: AmazonEmulator, scope: str = "sellingpartnerapi::notifications") -> str:
    response = lwa(http, emu, grant_type="client_credentials", scope=scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def seller_token(http: requests.Session, emu: AmazonEmulator, seller: str, central: str = "sellercentral.amazon.com"
                 ) -> str:
    consent = emu.host_url(central, "/apps/authorize/consent") + "?" + urlencode(
        {"application_id": emu.application_id, "state": "s1", "version": "beta"})
    answer = http.post(f"{emu.base_url}/_emulator/consent", json={"consent_url": consent, "selling_partner_id": seller},
                       timeout=5)
    code = parse_qs(urlsplit(answer.json()["redirect"]).query)["spapi_oauth_code"][0]
    response = lwa(http, emu, grant_type="authorization_code", code=code, redirect_uri=CALLBACK)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def call(http: requests.Session, emu: AmazonEmulator, token: str, method: str, path: str, *,
         host: str = NA_HOST, body: Any = None) -> requests.Response:
    return http.request(method, emu.host_url(host, path), headers={"x-amz-access-token": token}, json=body, timeout=5)


def create_destination(http: requests.Session, emu: AmazonEmulator, token: str, arn: str = ARN, *,
                       host: str = NA_HOST) -> requests.Response:
    return call(http, emu, token, "POST", DESTINATIONS, host=host,
                body={"name": "report-notifications", "resourceSpecification": {"sqs": {"arn": arn}}})


def subscribe(http: requests.Session, emu: AmazonEmulator, token: str, destination_id: str, *,
              host: str = NA_HOST) -> requests.Response:
    return call(http, emu, token, "POST", SUBSCRIBE, host=host,
                body={"payloadVersion": "2020-09-04", "destinationId": destination_id})


def stats(http: requests.Session, emu: AmazonEmulator) -> dict[str, Any]:
    return dict(http.get(f"{emu.base_url}/_emulator/stats", timeout=5).json())


def test_destinations_and_subscriptions_match_the_model(http: requests.Session, emu: AmazonEmulator,
                                                        model: dict[str, Any]) -> None:
    token = grantless(http, emu)
    created = create_destination(http, emu, token)
    assert created.status_code == 200, created.text
    validate(created.json(), model, "CreateDestinationResponse")
    destination = created.json()["payload"]
    assert destination["name"] == "report-notifications"
    assert destination["resource"] == {"sqs": {"arn": ARN}}

    listed = call(http, emu, token, "GET", DESTINATIONS)
    assert listed.status_code == 200
    validate(listed.json(), model, "GetDestinationsResponse")
    assert listed.json()["payload"] == [destination]

    seller = seller_token(http, emu, "A1SUBSCRIBER0001")
    subscribed = subscribe(http, emu, seller, destination["destinationId"])
    assert subscribed.status_code == 200, subscribed.text
    validate(subscribed.json(), model, "CreateSubscriptionResponse")
    payload = subscribed.json()["payload"]
    assert payload["payloadVersion"] == "2020-09-04"
    assert payload["destinationId"] == destination["destinationId"]
    assert subscribed.headers["x-amzn-RateLimit-Limit"]

    again = subscribe(http, emu, seller, destination["destinationId"])
    assert again.status_code == 409
    validate(again.json()["errors"], model, "ErrorList")
    assert again.json()["errors"][0]["code"] == "Conflict"

    counted = stats(http, emu)
    assert counted["destinations"] == 1 and counted["subscriptions"] == 1
    assert counted["spapi"]["createDestination"] == 1
    assert counted["spapi"]["getDestinations"] == 1
    assert counted["spapi"]["createSubscription"] == 2


def test_a_second_destination_for_the_same_queue_conflicts(http: requests.Session, emu: AmazonEmulator,
                                                           model: dict[str, Any]) -> None:
    token = grantless(http, emu)
    assert create_destination(http, emu, token).status_code == 200
    duplicate = create_destination(http, emu, token)
    assert duplicate.status_code == 409
    validate(duplicate.json()["errors"], model, "ErrorList")
    assert stats(http, emu)["destinations"] == 1


@pytest.mark.parametrize("body", [
    {},
    {"name": "x"},
    {"name": "x", "resourceSpecification": {"sqs": {"arn": "not-an-arn"}}},
    {"name": "", "resourceSpecification": {"sqs": {"arn": ARN}}},
    {"name": "x", "resourceSpecification": {"eventBridge": {"region": "us-east-1", "accountId": "1"}}},
    [],
])
def test_create_destination_400s(http: requests.Session, emu: AmazonEmulator, model: dict[str, Any],
                                 body: Any) -> None:
    response = call(http, emu, grantless(http, emu), "POST", DESTINATIONS, body=body)
    assert response.status_code == 400
    validate(response.json()["errors"], model, "ErrorList")
    assert response.json()["errors"][0]["code"] == "InvalidInput"


def test_destination_operations_need_the_notifications_scope(http: requests.Session, emu: AmazonEmulator) -> None:
    rotation = grantless(http, emu, "sellingpartnerapi::client_credential:rotation")
    seller = seller_token(http, emu, "A1SUBSCRIBER0002")
    for token in (rotation, seller, "Atc|unknown"):
        assert create_destination(http, emu, token).status_code == 403
        assert call(http, emu, token, "GET", DESTINATIONS).status_code == 403
    assert call(http, emu, "", "GET", DESTINATIONS).json()["errors"][0]["code"] == "MissingAuthenticationToken"
    counted = stats(http, emu)
    assert counted["destinations"] == 0
    assert counted["spapi_denied"]["createDestination"] == 3


def test_create_subscription_refusals(http: requests.Session, emu: AmazonEmulator, model: dict[str, Any]) -> None:
    token = grantless(http, emu)
    destination = create_destination(http, emu, token).json()["payload"]["destinationId"]
    seller = seller_token(http, emu, "A1SUBSCRIBER0003")

    unknown = subscribe(http, emu, seller, "no-such-destination")
    assert unknown.status_code == 400
    validate(unknown.json()["errors"], model, "ErrorList")
    assert unknown.json()["errors"][0]["details"] == (
        f"No destination with id no-such-destination for applicationId {emu.application_id}")
    # A grantless token is not a seller's; a seller's token works only on its own region's host.
    assert subscribe(http, emu, token, destination).status_code == 403
    assert subscribe(http, emu, seller, destination, host=EU_HOST).status_code == 403
    wrong_version = call(http, emu, seller, "POST", SUBSCRIBE, body={"payloadVersion": "1.0",
                                                                     "destinationId": destination})
    assert wrong_version.status_code == 400
    missing = call(http, emu, seller, "POST", SUBSCRIBE, body={"destinationId": destination})
    assert missing.status_code == 400
    other_type = call(http, emu, seller, "POST", "/notifications/v1/subscriptions/ANY_OFFER_CHANGED",
                      body={"payloadVersion": "1.0", "destinationId": destination})
    assert other_type.status_code == 400
    assert stats(http, emu)["subscriptions"] == 0


def test_report_notifications_go_to_subscribed_sellers_only(http: requests.Session, emu: AmazonEmulator, sqs: Any,
                                                            queue_url: str) -> None:
    destination = create_destination(http, emu, grantless(http, emu)).json()["payload"]["destinationId"]
    subscribed = seller_token(http, emu, "A1SUBSCRIBED0004")
    unsubscribed = seller_token(http, emu, "A1NOTSUBSCRIBED5")
    subscription = subscribe(http, emu, subscribed, destination).json()["payload"]["subscriptionId"]
    reports = {}
    for name, token in (("subscribed", subscribed), ("unsubscribed", unsubscribed)):
        created = call(http, emu, token, "POST", "/reports/2021-06-30/reports",
                       body={"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": [US]})
        assert created.status_code == 202, created.text
        reports[name] = created.json()["reportId"]

    emu.advance_clock(91)

    sent = messages(sqs, queue_url)
    assert len(sent) == 1
    notification = sent[0]
    assert notification["payload"]["reportProcessingFinishedNotification"]["reportId"] == reports["subscribed"]
    assert notification["payload"]["reportProcessingFinishedNotification"]["sellerId"] == "A1SUBSCRIBED0004"
    assert notification["notificationMetadata"]["subscriptionId"] == subscription
    assert stats(http, emu)["notifications"] == {"REPORT_PROCESSING_FINISHED": 1}


def test_reset_forgets_destinations_and_subscriptions(http: requests.Session, emu: AmazonEmulator) -> None:
    destination = create_destination(http, emu, grantless(http, emu)).json()["payload"]["destinationId"]
    assert subscribe(http, emu, seller_token(http, emu, "A1SUBSCRIBER0006"), destination).status_code == 200
    emu.reset()
    counted = stats(http, emu)
    assert counted["destinations"] == 0 and counted["subscriptions"] == 0
    assert call(http, emu, grantless(http, emu), "GET", DESTINATIONS).json() == {"payload": []}


def test_destinations_are_kept_per_region(http: requests.Session, emu: AmazonEmulator,
                                          model: dict[str, Any]) -> None:
    token = grantless(http, emu)  # one grantless token works on every region's host
    created = {}
    for region, host in HOSTS.items():
        answer = create_destination(http, emu, token, host=host)  # the same queue in each region
        assert answer.status_code == 200, (region, answer.text)
        created[region] = answer.json()["payload"]
    assert len({d["destinationId"] for d in created.values()}) == 3
    for region, host in HOSTS.items():
        listed = call(http, emu, token, "GET", DESTINATIONS, host=host)
        validate(listed.json(), model, "GetDestinationsResponse")
        assert listed.json()["payload"] == [created[region]], region  # that region's only
        assert create_destination(http, emu, token, host=host).status_code == 409  # within a region only
    counted = stats(http, emu)
    assert counted["destinations"] == 3
    assert counted["destinations_by_region"] == {"NA": 1, "EU": 1, "FE": 1}


@pytest.mark.parametrize("region", ["EU", "FE"])
def test_a_destination_of_another_region_is_refused(http: requests.Session, emu: AmazonEmulator,
                                                    model: dict[str, Any], region: str) -> None:
    token = grantless(http, emu)
    north_america = create_destination(http, emu, token).json()["payload"]["destinationId"]
    seller = seller_token(http, emu, f"A1FOREIGN{region}0001", CENTRALS[region])

    refused = subscribe(http, emu, seller, north_america, host=HOSTS[region])

    assert refused.status_code == 400
    validate(refused.json()["errors"], model, "ErrorList")
    (error,) = refused.json()["errors"]
    assert error == {"code": "InvalidInput",
                     "message": "Request has missing or invalid parameters and cannot be parsed.",
                     "details": f"No destination with id {north_america} for applicationId {emu.application_id}"}
    assert stats(http, emu)["subscriptions"] == 0

    own = create_destination(http, emu, token, host=HOSTS[region]).json()["payload"]["destinationId"]
    accepted = subscribe(http, emu, seller, own, host=HOSTS[region])
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["payload"]["destinationId"] == own
    assert stats(http, emu)["subscriptions_by_region"] == {"NA": 0, "EU": 0, "FE": 0, region: 1}


def test_report_notifications_reach_sellers_of_every_region(http: requests.Session, emu: AmazonEmulator, sqs: Any,
                                                            queue_url: str) -> None:
    token = grantless(http, emu)
    subscriptions, reports = {}, {}
    for region, host in HOSTS.items():
        destination = create_destination(http, emu, token, host=host).json()["payload"]["destinationId"]
        seller = f"A1EVERYREGION{region}"
        access = seller_token(http, emu, seller, CENTRALS[region])
        subscribed = subscribe(http, emu, access, destination, host=host)
        assert subscribed.status_code == 200, (region, subscribed.text)
        subscriptions[seller] = subscribed.json()["payload"]["subscriptionId"]
        created = call(http, emu, access, "POST", "/reports/2021-06-30/reports", host=host,
                       body={"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": [MARKETPLACES[region]]})
        assert created.status_code == 202, created.text
        reports[seller] = created.json()["reportId"]

    emu.advance_clock(91)

    sent = {m["payload"]["reportProcessingFinishedNotification"]["sellerId"]: m for m in messages(sqs, queue_url)}
    assert set(sent) == set(reports)
    for seller, notification in sent.items():
        assert notification["payload"]["reportProcessingFinishedNotification"]["reportId"] == reports[seller]
        assert notification["notificationMetadata"]["subscriptionId"] == subscriptions[seller]


def test_a_subscription_covers_its_own_region_only(http: requests.Session, emu: AmazonEmulator, sqs: Any,
                                                   queue_url: str) -> None:
    """The same seller authorized in NA and EU, subscribed in NA only: EU reports are not notified."""
    token = grantless(http, emu)
    seller = "A1TWOREGIONS0007"
    north_america = seller_token(http, emu, seller)
    europe = seller_token(http, emu, seller, CENTRALS["EU"])
    destination = create_destination(http, emu, token).json()["payload"]["destinationId"]
    assert subscribe(http, emu, north_america, destination).status_code == 200
    body = {"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA"}
    na_report = call(http, emu, north_america, "POST", "/reports/2021-06-30/reports",
                     body={**body, "marketplaceIds": [MARKETPLACES["NA"]]}).json()["reportId"]
    eu_answer = call(http, emu, europe, "POST", "/reports/2021-06-30/reports", host=EU_HOST,
                     body={**body, "marketplaceIds": [MARKETPLACES["EU"]]})
    assert eu_answer.status_code == 202, eu_answer.text

    emu.advance_clock(91)

    sent = messages(sqs, queue_url)
    assert [m["payload"]["reportProcessingFinishedNotification"]["reportId"] for m in sent] == [na_report]
