"""The emulator's Data Kiosk API over real HTTP: answers against the model, validation of the GraphQL
query against Amazon's schema, the Brand Analytics role, per-seller throttling, timings that vary on the
emulator clock, seeded outcomes, JSONL documents and DATA_KIOSK_QUERY_PROCESSING_FINISHED to a real SQS
queue (moto server), and the request log.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import requests
from graphql import build_schema, parse, validate

from local.amazon import AmazonEmulator

MODELS = Path(__file__).resolve().parents[2] / "local" / "amazon" / "models"
CALLBACK = "https://app.example.test/callback"
SPAPI = {"NA": "sellingpartnerapi-na.amazon.com", "EU": "sellingpartnerapi-eu.amazon.com",
         "FE": "sellingpartnerapi-fe.amazon.com"}
CENTRAL = {"NA": "sellercentral.amazon.com", "EU": "sellercentral-europe.amazon.com",
           "FE": "sellercentral.amazon.co.jp"}
BASE = "/dataKiosk/2023-11-15"
US, DE, FR, JP = "ATVPDKIKX0DER", "A1PA6795UKMFR9", "A13V1IB3VIYZZH", "A1VC38T7YXB528"
MARKETPLACE = {"NA": US, "EU": DE, "FE": JP}
BY_DATE_FIELDS = ("marketplaceId startDate endDate sales{orderedProductSales{amount currencyCode} unitsOrdered "
                  "totalOrderItems} traffic{pageViews sessions buyBoxPercentage}")
BY_ASIN_FIELDS = ("marketplaceId startDate endDate parentAsin childAsin sku sales{unitsOrdered "
                  "orderedProductSales{amount currencyCode}} traffic{pageViews sessions}")
FINISHED = "DATA_KIOSK_QUERY_PROCESSING_FINISHED"


@pytest.fixture(scope="module")
def queue_url(sqs: Any) -> str:
    return str(sqs.create_queue(QueueName=f"kiosk-notifications-{uuid.uuid4().hex[:8]}")["QueueUrl"])


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


@pytest.fixture(autouse=True)
def fresh(emu: AmazonEmulator, sqs: Any, queue_url: str) -> Iterator[None]:
    emu.reset()
    messages(sqs, queue_url)
    urllib3_logger = logging.getLogger("urllib3")  # it logs full URLs (signatures) at DEBUG
    level = urllib3_logger.level
    urllib3_logger.setLevel(logging.WARNING)
    yield
    urllib3_logger.setLevel(level)


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return dict(json.loads((MODELS / "dataKiosk_2023-11-15.json").read_text()))


def validate_body(body: Any, model: dict[str, Any], definition: str) -> None:
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


def control(http: requests.Session, emu: AmazonEmulator, path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"{emu.base_url}/_emulator/{path}"
    response = http.post(url, json=body, timeout=5) if body is not None else http.get(url, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def connect(http: requests.Session, emu: AmazonEmulator, region: str, seller: str) -> str:
    """The seller consents in its region (again, when its token is about to lapse); its access token."""
    consent = emu.host_url(CENTRAL[region], "/apps/authorize/consent") + "?" + urlencode(
        {"application_id": emu.application_id, "state": "s1", "version": "beta"})
    redirect = control(http, emu, "consent", {"consent_url": consent, "selling_partner_id": seller})["redirect"]
    code = parse_qs(urlsplit(redirect).query)["spapi_oauth_code"][0]
    body = {"client_id": emu.client_id, "client_secret": emu.client_secret, "grant_type": "authorization_code",
            "code": code, "redirect_uri": CALLBACK}
    response = http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), data=body, timeout=5)
    assert response.status_code == 200
    return str(response.json()["access_token"])


def subscribe_queries(http: requests.Session, emu: AmazonEmulator, token: str, region: str) -> None:
    """The seller subscribes to DATA_KIOSK_QUERY_PROCESSING_FINISHED with its region's destination."""
    grant = {"client_id": emu.client_id, "client_secret": emu.client_secret, "grant_type": "client_credentials",
             "scope": "sellingpartnerapi::notifications"}
    grantless = http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), data=grant, timeout=5).json()
    headers = {"x-amz-access-token": grantless["access_token"]}
    destinations = emu.host_url(SPAPI[region], "/notifications/v1/destinations")
    known = http.get(destinations, headers=headers, timeout=5).json()["payload"]
    if known:
        destination = known[0]["destinationId"]
    else:
        spec = {"sqs": {"arn": "arn:aws:sqs:us-east-1:123456789012:report-notifications"}}
        created = http.post(destinations, headers=headers, json={"name": "reports", "resourceSpecification": spec},
                            timeout=5)
        destination = created.json()["payload"]["destinationId"]
    answer = http.post(emu.host_url(SPAPI[region], f"/notifications/v1/subscriptions/{FINISHED}"),
                       headers={"x-amz-access-token": token},
                       json={"payloadVersion": "2023-11-15", "destinationId": destination}, timeout=5)
    assert answer.status_code in (200, 409), answer.text


class Kiosk:
    def __init__(self, http: requests.Session, emu: AmazonEmulator, region: str = "NA",
                 seller: str | None = None, subscribed: bool = True) -> None:
        self.http, self.emu, self.region = http, emu, region
        self.seller = seller or f"A1KIOSK{region}{uuid.uuid4().hex[:6].upper()}"
        self.token = connect(http, emu, region, self.seller)
        self.token_at = emu.now()
        if subscribed:
            subscribe_queries(http, emu, self.token, region)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if self.emu.now() - self.token_at > timedelta(minutes=50):  # access tokens live an hour
            self.token, self.token_at = connect(self.http, self.emu, self.region, self.seller), self.emu.now()
        return self.http.request(method, self.emu.host_url(SPAPI[self.region], BASE + path),
                                 headers={"x-amz-access-token": self.token}, timeout=30, **kwargs)

    def query_text(self, day: str | None = None, marketplaces: list[str] | None = None, *, end: str | None = None,
                   name: str = "salesAndTrafficByDate", aggregate: str = "DAY") -> str:
        day = day or (self.emu.now() - timedelta(days=2)).date().isoformat()
        ids = ",".join(f'"{m}"' for m in (marketplaces or [MARKETPLACE[self.region]]))
        fields = BY_DATE_FIELDS if name == "salesAndTrafficByDate" else BY_ASIN_FIELDS
        return (f'query {{ analytics_salesAndTraffic_2024_04_24 {{ {name}(startDate: "{day}", '
                f'endDate: "{end or day}", aggregateBy: {aggregate}, marketplaceIds: [{ids}]) {{ {fields} }} }} }}')

    def create(self, query: str | None = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", "/queries", json={"query": query or self.query_text(**kwargs)})

    def created(self, query: str | None = None, **kwargs: Any) -> str:
        answer = self.create(query, **kwargs)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["queryId"])

    def get(self, query_id: str) -> dict[str, Any]:
        answer = self.call("GET", f"/queries/{query_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def finish(self, query_id: str) -> dict[str, Any]:
        """Moves the emulator clock until the query is terminal (at most a day)."""
        for _ in range(150):
            query = self.get(query_id)
            if query["processingStatus"] in ("DONE", "CANCELLED", "FATAL"):
                return query
            self.emu.advance_clock(600)
        raise AssertionError("the query never finished")

    def download(self, document_id: str, model: dict[str, Any] | None = None) -> bytes:
        answer = self.call("GET", f"/documents/{document_id}")
        assert answer.status_code == 200, answer.text
        if model is not None:
            validate_body(answer.json(), model, "GetDocumentResponse")
        got = self.http.get(answer.json()["documentUrl"], timeout=30)
        assert got.status_code == 200
        return got.content


def test_a_query_runs_to_a_jsonl_document_valid_against_the_model(http, emu, model, sqs, queue_url):
    kiosk = Kiosk(http, emu)
    answer = kiosk.create()
    assert answer.status_code == 202 and answer.headers["x-amzn-RateLimit-Limit"] == "0.0167"
    validate_body(answer.json(), model, "CreateQueryResponse")
    query_id = answer.json()["queryId"]
    first = kiosk.get(query_id)
    validate_body(first, model, "Query")
    assert first["processingStatus"] == "IN_QUEUE" and "dataDocumentId" not in first
    done = kiosk.finish(query_id)
    validate_body(done, model, "Query")
    assert done["processingStatus"] == "DONE" and done["processingStartTime"] <= done["processingEndTime"]
    lines = kiosk.download(done["dataDocumentId"], model).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 1
    (row,) = rows
    day = (emu.now() - timedelta(days=2)).date().isoformat()
    # Exactly the selection, as GraphQL answers it.
    assert set(row) == {"marketplaceId", "startDate", "endDate", "sales", "traffic"}
    assert set(row["sales"]) == {"orderedProductSales", "unitsOrdered", "totalOrderItems"}
    assert row["marketplaceId"] == US and row["startDate"] == row["endDate"] <= day
    assert row["sales"]["orderedProductSales"]["currencyCode"] == "USD"
    listing = kiosk.call("GET", "/queries", params={"processingStatuses": "DONE"})
    assert listing.status_code == 200 and listing.headers["x-amzn-RateLimit-Limit"] == "0.0222"
    validate_body(listing.json(), model, "GetQueriesResponse")
    assert [q["queryId"] for q in listing.json()["queries"]] == [query_id]
    # The notification, as Amazon's model shapes it.
    [notification] = [m for m in messages(sqs, queue_url) if m["notificationType"] == FINISHED]
    schema = json.loads((MODELS / "DataKioskQueryProcessingFinishedNotification.json").read_text())
    jsonschema.validate(notification, schema)
    assert notification["payload"] == {"accountId": f"amzn1.merchant.o.{kiosk.seller}", "queryId": query_id,
                                       "query": first["query"], "processingStatus": "DONE",
                                       "dataDocumentId": done["dataDocumentId"]}
    assert notification["notificationVersion"] == notification["payloadVersion"] == "2023-11-15"


def test_by_asin_rows_name_asins_and_every_requested_day_of_by_date(http, emu):
    kiosk = Kiosk(http, emu, "EU")
    query_id = kiosk.created(name="salesAndTrafficByAsin", aggregate="CHILD", marketplaces=[FR])
    rows = [json.loads(line) for line in kiosk.download(kiosk.finish(query_id)["dataDocumentId"]).splitlines()]
    assert len(rows) >= 3 and {r["marketplaceId"] for r in rows} == {FR}
    assert all(len(r["childAsin"]) == 10 and r["sku"] for r in rows)
    assert rows[0]["sales"]["orderedProductSales"]["currencyCode"] == "EUR"
    start = (emu.now() - timedelta(days=9)).date()
    week = kiosk.created(day=start.isoformat(), end=(start + timedelta(days=6)).isoformat())
    days = [json.loads(line)["startDate"] for line in kiosk.download(kiosk.finish(week)["dataDocumentId"]).splitlines()]
    assert days == [(start + timedelta(days=i)).isoformat() for i in range(7)]


@pytest.mark.parametrize(("query", "reason"), [
    ("query {", "parsed"),
    ("query { analytics_salesAndTraffic_2024_04_24 { salesAndTrafficByDate(startDate: \"2026-01-01\", "
     "endDate: \"2026-01-01\", aggregateBy: DAY) { marketplaceId } } }", "marketplaceIds"),
    ("query { analytics_salesAndTraffic_2023_11_15 { salesAndTrafficByDate(startDate: \"2026-01-01\", "
     "endDate: \"2026-01-01\", aggregateBy: DAY, marketplaceIds: [\"ATVPDKIKX0DER\"]) { marketplaceId } } }",
     "analytics_salesAndTraffic_2023_11_15"),
    ("query { analytics_salesAndTraffic_2024_04_24 { salesAndTrafficByDate(startDate: \"2026-01-01\", "
     "endDate: \"2026-01-01\", aggregateBy: DAY, marketplaceIds: [\"ATVPDKIKX0DER\"]) { buyerEmail } } }",
     "buyerEmail"),
])
def test_queries_the_schema_refuses_are_400(http, emu, query, reason):
    kiosk = Kiosk(http, emu, subscribed=False)
    answer = kiosk.create(query)
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["errors"]
    assert error["code"] == "InvalidInput" and reason in error["message"]


def test_dates_in_the_future_too_many_marketplaces_another_region_are_400(http, emu):
    kiosk = Kiosk(http, emu, "EU", subscribed=False)
    tomorrow = (emu.now() + timedelta(days=1)).date().isoformat()
    old = (emu.now() - timedelta(days=800)).date().isoformat()
    for kwargs, reason in (({"day": tomorrow}, "future"), ({"day": old}, "two years"),
                           ({"marketplaces": [DE, FR]}, "marketplaceIds"), ({"marketplaces": [US]}, US)):
        answer = kiosk.create(**kwargs)
        assert answer.status_code == 400 and reason in answer.json()["errors"][0]["message"], (kwargs, answer.text)
    assert control(http, emu, "requests")["requests"] == []


def test_brand_analytics_withheld_is_403_for_that_seller_only(http, emu):
    kiosk, other = Kiosk(http, emu, subscribed=False), Kiosk(http, emu, subscribed=False)
    control(http, emu, "roles", {"role": "Brand Analytics", "selling_partner_id": kiosk.seller, "withheld": True})
    answer = kiosk.create()
    assert answer.status_code == 403
    assert answer.json()["errors"][0]["code"] == "Unauthorized"
    assert other.create().status_code == 202


def test_create_query_is_throttled_per_seller_at_the_models_burst(http, emu):
    kiosk, other = Kiosk(http, emu, subscribed=False), Kiosk(http, emu, subscribed=False)
    codes = [kiosk.create().status_code for _ in range(16)]
    assert codes == [202] * 15 + [429]
    assert other.create().status_code == 202  # buckets are per selling partner
    emu.advance_clock(60)  # 0.0167/s: one token a minute
    assert kiosk.create().status_code == 202
    assert control(http, emu, "stats")["throttled_by_operation"] == {"createQuery": 1}


def test_processing_times_vary_from_minutes_to_hours(http, emu):
    kiosk = Kiosk(http, emu, subscribed=False)
    for _ in range(12):
        kiosk.created()
    for _ in range(4):
        emu.advance_clock(3600)
    created = kiosk.call("GET", "/queries", params={"pageSize": 100}).json()["queries"]
    spans = [(datetime.fromisoformat(q["processingEndTime"]) - datetime.fromisoformat(q["createdTime"]))
             .total_seconds() for q in created]
    assert len(spans) == 12 and min(spans) >= 120 and max(spans) > 1800 and len(set(spans)) == 12


def test_seeded_outcomes_and_their_documents(http, emu, model, sqs, queue_url):
    kiosk = Kiosk(http, emu)
    for outcome in ("FATAL", "CANCELLED", "NO_DATA"):
        control(http, emu, "queries/outcomes", {"selling_partner_id": kiosk.seller, "outcome": outcome,
                                                "processing_seconds": 60})
    fatal, cancelled, empty = (kiosk.finish(kiosk.created()) for _ in range(3))
    assert fatal["processingStatus"] == "FATAL" and "dataDocumentId" not in fatal
    assert "errorMessage" in json.loads(kiosk.download(fatal["errorDocumentId"], model))
    assert cancelled["processingStatus"] == "CANCELLED" and "errorDocumentId" not in cancelled
    assert empty["processingStatus"] == "DONE" and "dataDocumentId" not in empty and "errorDocumentId" not in empty
    statuses = [m["payload"]["processingStatus"] for m in messages(sqs, queue_url) if m["notificationType"] == FINISHED]
    assert sorted(statuses) == ["CANCELLED", "DONE", "FATAL"]


def test_cancel_in_queue_then_not_after_done(http, emu):
    kiosk = Kiosk(http, emu, subscribed=False)
    query_id = kiosk.created()
    assert kiosk.call("DELETE", f"/queries/{query_id}").status_code == 204
    assert kiosk.get(query_id)["processingStatus"] == "CANCELLED"
    assert kiosk.call("DELETE", f"/queries/{query_id}").status_code == 204  # a no-op
    done = kiosk.finish(kiosk.created())["queryId"]
    assert kiosk.call("DELETE", f"/queries/{done}").status_code == 400
    assert kiosk.call("GET", "/queries/123").status_code == 404


def test_an_unsubscribed_seller_gets_no_notification_and_another_region_is_404(http, emu, sqs, queue_url):
    kiosk = Kiosk(http, emu, "FE", subscribed=False)
    query_id = kiosk.created()
    kiosk.finish(query_id)
    assert [m for m in messages(sqs, queue_url) if m["notificationType"] == FINISHED] == []
    other = Kiosk(http, emu, "FE", subscribed=False)
    assert other.call("GET", f"/queries/{query_id}").status_code == 404


def test_each_accepted_create_query_is_in_the_request_log(http, emu):
    kiosk = Kiosk(http, emu, "EU", subscribed=False)
    day = (emu.now() - timedelta(days=3)).date().isoformat()
    kiosk.created(day=day, marketplaces=[FR], name="salesAndTrafficByAsin", aggregate="CHILD")
    kiosk.create(day="bad")
    (entry,) = control(http, emu, "requests?operation=createQuery")["requests"]
    assert entry["selling_partner_id"] == kiosk.seller and entry["region"] == "EU"
    assert entry["kind"] == "salesAndTrafficByAsin" and entry["marketplace_ids"] == [FR]
    assert entry["start"] == entry["end"] == day


def test_the_shipped_schema_is_amazons_and_valid():
    schema = build_schema((MODELS / "analytics_salesAndTraffic_2024_04_24.graphql").read_text())
    query = parse('{ analytics_salesAndTraffic_2024_04_24 { salesAndTrafficByDate(startDate: "2026-01-01", '
                  'endDate: "2026-01-01", aggregateBy: DAY, marketplaceIds: ["x"]) { marketplaceId } } }')
    assert validate(schema, query) == []


def test_timings_are_replayed_for_the_same_seed_and_calls(http, emu):
    def spans() -> list[float]:
        kiosk = Kiosk(http, emu, subscribed=False)
        for _ in range(5):
            kiosk.created()
        emu.advance_clock(4 * 3600)
        listed = kiosk.call("GET", "/queries", params={"pageSize": 100}).json()["queries"]
        return sorted((datetime.fromisoformat(q["processingEndTime"]) - datetime.fromisoformat(q["createdTime"]))
                      .total_seconds() for q in listed)

    control(http, emu, "queries/timing", {"seed": 7})
    first = spans()
    emu.reset()
    control(http, emu, "queries/timing", {"seed": 7})
    # The same to the millisecond the answers are rounded to.
    assert all(abs(a - b) <= 0.002 for a, b in zip(spans(), first, strict=True))
    emu.reset()
    control(http, emu, "queries/timing", {"seed": 8})
    assert not all(abs(a - b) <= 0.002 for a, b in zip(spans(), first, strict=True))
