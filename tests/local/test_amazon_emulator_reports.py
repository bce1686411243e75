"""The emulator's Reports API over real HTTP: operations against the model, validation, throttling,
the status progression on the emulator clock, REPORT_PROCESSING_FINISHED to a real SQS queue (moto
server), pre-signed document URLs, generated content and encodings, streaming, faults, settlement.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import tracemalloc
import uuid
import zlib
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import requests

from local.amazon import AmazonEmulator

MODELS = Path(__file__).resolve().parents[2] / "local" / "amazon" / "models"
CALLBACK = "https://app.example.test/callback"
SPAPI = {"NA": "sellingpartnerapi-na.amazon.com", "EU": "sellingpartnerapi-eu.amazon.com",
         "FE": "sellingpartnerapi-fe.amazon.com"}
CENTRAL = {"NA": "sellercentral.amazon.com", "EU": "sellercentral-europe.amazon.com",
           "FE": "sellercentral.amazon.co.jp"}
SELLER = {"NA": "A1REPORTSELLERN", "EU": "A1REPORTSELLERE", "FE": "A1REPORTSELLERF"}
US, DE, JP = "ATVPDKIKX0DER", "A1PA6795UKMFR9", "A1VC38T7YXB528"
MARKETPLACE = {"NA": US, "EU": DE, "FE": JP}
REPORTS = "/reports/2021-06-30/reports"
DOCUMENTS = "/reports/2021-06-30/documents"
ORDERS = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL"
LISTINGS = "GET_MERCHANT_LISTINGS_ALL_DATA"
INVENTORY = "GET_FBA_MYI_UNSUPPRESSED_INVENTORY_DATA"
RETURNS = "GET_FBA_FULFILLMENT_CUSTOMER_RETURNS_DATA"
SETTLEMENT = "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2"
SALES = "GET_SALES_AND_TRAFFIC_REPORT"
QUOTA = {"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource.",
                     "details": ""}]}
HEADERS = {
    ORDERS: "amazon-order-id, merchant-order-id, purchase-date, last-updated-date, order-status, "
    "fulfillment-channel, sales-channel, order-channel, ship-service-level, product-name, sku, asin, item-status, "
    "quantity, currency, item-price, item-tax, shipping-price, shipping-tax, gift-wrap-price, gift-wrap-tax, "
    "item-promotion-discount, ship-promotion-discount, ship-city, ship-state, ship-postal-code, ship-country, "
    "promotion-ids, is-business-order, purchase-order-number, price-designation",
    LISTINGS: "item-name, item-description, listing-id, seller-sku, price, quantity, open-date, image-url, "
    "item-is-marketplace, product-id-type, zshop-shipping-fee, item-note, item-condition, zshop-category1, "
    "zshop-browse-path, zshop-storefront-feature, asin1, asin2, asin3, will-ship-internationally, "
    "expedited-shipping, zshop-boldface, product-id, bid-for-featured-placement, add-delete, pending-quantity, "
    "fulfillment-channel, merchant-shipping-group, status",
    INVENTORY: "sku, fnsku, asin, product-name, condition, your-price, mfn-listing-exists, mfn-fulfillable-quantity, "
    "afn-listing-exists, afn-warehouse-quantity, afn-fulfillable-quantity, afn-unsellable-quantity, "
    "afn-reserved-quantity, afn-total-quantity, per-unit-volume, afn-inbound-working-quantity, "
    "afn-inbound-shipped-quantity, afn-inbound-receiving-quantity, afn-researching-quantity, "
    "afn-reserved-future-supply, afn-future-supply-buyable",
    RETURNS: "return-date, order-id, sku, asin, fnsku, product-name, quantity, fulfillment-center-id, "
    "detailed-disposition, reason, status, license-plate-number, customer-comments",
    SETTLEMENT: "settlement-id, settlement-start-date, settlement-end-date, deposit-date, total-amount, currency, "
    "transaction-type, order-id, merchant-order-id, adjustment-id, shipment-id, marketplace-name, amount-type, "
    "amount-description, amount, fulfillment-id, posted-date, posted-date-time, order-item-code, "
    "merchant-order-item-id, merchant-adjustment-item-id, sku, quantity-purchased",
}


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def queue_url(sqs: Any) -> str:
    return str(sqs.create_queue(QueueName=f"report-notifications-{uuid.uuid4().hex[:8]}")["QueueUrl"])


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
    return dict(json.loads((MODELS / "reports_2021-06-30.json").read_text()))


def validate(body: Any, model: dict[str, Any], definition: str) -> None:
    jsonschema.validate(body, {**model["definitions"][definition], "definitions": model["definitions"]})


# -- helpers ---------------------------------------------------------------------------------------


def messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        batch = got.get("Messages", [])
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


def connect(http: requests.Session, emu: AmazonEmulator, region: str = "NA", seller: str | None = None) -> str:
    """A seller consents in its region; its access token."""
    seller = seller or SELLER[region]
    consent = emu.host_url(CENTRAL[region], "/apps/authorize/consent") + "?" + urlencode(
        {"application_id": emu.application_id, "state": "s1", "version": "beta"}
    )
    redirect = control(http, emu, "consent", {"consent_url": consent, "selling_partner_id": seller})["redirect"]
    code = parse_qs(urlsplit(redirect).query)["spapi_oauth_code"][0]
    body = {"client_id": emu.client_id, "client_secret": emu.client_secret, "grant_type": "authorization_code",
            "code": code, "redirect_uri": CALLBACK}
    response = http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), data=body, timeout=5)
    assert response.status_code == 200
    token = str(response.json()["access_token"])
    subscribe(http, emu, token, region)
    return token


def subscribe(http: requests.Session, emu: AmazonEmulator, token: str, region: str) -> None:
    """The seller subscribes to REPORT_PROCESSING_FINISHED (Amazon notifies only subscribers)."""
    grant = {"client_id": emu.client_id, "client_secret": emu.client_secret, "grant_type": "client_credentials",
             "scope": "sellingpartnerapi::notifications"}
    grantless = http.post(emu.host_url("api.amazon.com", "/auth/o2/token"), data=grant, timeout=5).json()
    headers = {"x-amz-access-token": grantless["access_token"]}
    # Destinations are regional: the seller's region's own, as Amazon requires.
    destinations = emu.host_url(SPAPI[region], "/notifications/v1/destinations")
    known = http.get(destinations, headers=headers, timeout=5).json()["payload"]
    if known:
        destination = known[0]["destinationId"]
    else:
        spec = {"sqs": {"arn": "arn:aws:sqs:us-east-1:123456789012:report-notifications"}}
        created = http.post(destinations, headers=headers, json={"name": "reports", "resourceSpecification": spec},
                            timeout=5)
        destination = created.json()["payload"]["destinationId"]
    answer = http.post(emu.host_url(SPAPI[region], "/notifications/v1/subscriptions/REPORT_PROCESSING_FINISHED"),
                       headers={"x-amz-access-token": token},
                       json={"payloadVersion": "2020-09-04", "destinationId": destination}, timeout=5)
    assert answer.status_code in (200, 409), answer.text


class Api:
    def __init__(self, http: requests.Session, emu: AmazonEmulator, token: str, region: str = "NA") -> None:
        self.http, self.emu, self.token, self.region = http, emu, token, region

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"x-amz-access-token": self.token}
        return self.http.request(method, self.emu.host_url(SPAPI[self.region], path), headers=headers, timeout=30,
                                 **kwargs)

    def create(
        self, report_type: str = ORDERS, marketplaces: list[str] | None = None, **extra: Any
    ) -> requests.Response:
        body = {"reportType": report_type, "marketplaceIds": marketplaces or [MARKETPLACE[self.region]], **extra}
        return self.call("POST", REPORTS, json=body)

    def created(self, report_type: str = ORDERS, marketplaces: list[str] | None = None) -> str:
        response = self.create(report_type, marketplaces)
        assert response.status_code == 202, response.text
        return str(response.json()["reportId"])

    def report(self, report_id: str) -> dict[str, Any]:
        response = self.call("GET", f"{REPORTS}/{report_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def document(self, document_id: str, **params: str) -> dict[str, Any]:
        response = self.call("GET", f"{DOCUMENTS}/{document_id}", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def finished(self, report_type: str = ORDERS, marketplaces: list[str] | None = None) -> dict[str, Any]:
        report_id = self.created(report_type, marketplaces)
        self.emu.advance_clock(91)
        return self.report(report_id)


@pytest.fixture
def na(http: requests.Session, emu: AmazonEmulator) -> Api:
    return Api(http, emu, connect(http, emu, "NA"), "NA")


def download(http: requests.Session, url: str) -> requests.Response:
    return http.get(url, timeout=60)


# -- the operations against the model ----------------------------------------------------------------


def test_every_operation_happy_path(http: requests.Session, na: Api, model: dict[str, Any]) -> None:
    created = na.create(ORDERS, dataStartTime="2026-01-01T00:00:00Z")
    assert created.status_code == 202
    assert created.headers["x-amzn-RateLimit-Limit"] == "0.0167"
    assert created.headers["x-amzn-RequestId"]
    validate(created.json(), model, "CreateReportResponse")
    report_id = created.json()["reportId"]

    report = na.report(report_id)
    validate(report, model, "Report")
    assert report["processingStatus"] == "IN_QUEUE"
    assert report["marketplaceIds"] == [US]
    assert report["dataStartTime"].startswith("2026-01-01T00:00:00")
    assert "processingStartTime" not in report and "reportDocumentId" not in report

    listed = na.call("GET", REPORTS, params={"reportTypes": f"{ORDERS},{LISTINGS}"})
    assert listed.status_code == 200
    validate(listed.json(), model, "GetReportsResponse")
    assert [r["reportId"] for r in listed.json()["reports"]] == [report_id]

    queued = na.created(LISTINGS)
    cancelled = na.call("DELETE", f"{REPORTS}/{queued}")
    assert cancelled.status_code == 200
    assert cancelled.content == b""
    assert na.report(queued)["processingStatus"] == "CANCELLED"

    na.emu.advance_clock(91)
    done = na.report(report_id)
    validate(done, model, "Report")
    assert done["processingStatus"] == "DONE"
    document = na.document(done["reportDocumentId"])
    validate(document, model, "ReportDocument")
    assert document["reportDocumentId"] == done["reportDocumentId"]
    assert document["compressionAlgorithm"] == "GZIP"
    got = download(http, document["url"])
    assert got.status_code == 200
    assert gzip.decompress(got.content).decode("cp1252").startswith("amazon-order-id\t")


def test_the_schema_check_has_teeth(model: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate({"reportId": "1", "reportType": "X", "processingStatus": "WAITING", "createdTime": "x"}, model,
                 "Report")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"marketplaceIds": [US]}, "One or more required parameters missing"),
        ({"reportType": "GET_NO_SUCH_REPORT", "marketplaceIds": [US]}, "Invalid Report Type GET_NO_SUCH_REPORT"),
        ({"reportType": SETTLEMENT, "marketplaceIds": [US]},
         f"Request for report type {SETTLEMENT} is not allowed at this time."),
        ({"reportType": ORDERS, "marketplaceIds": []}, "marketplaceIds must be a list of 1 to 25"),
        ({"reportType": ORDERS, "marketplaceIds": [US] * 26}, "marketplaceIds must be a list of 1 to 25"),
        ({"reportType": ORDERS, "marketplaceIds": ["NOPE"]}, "Invalid marketplaceId: NOPE"),
        ({"reportType": ORDERS, "marketplaceIds": [DE]}, "Report rejected for this client."),
        ({"reportType": ORDERS, "marketplaceIds": [US], "dataStartTime": "yesterday"}, "Invalid dataStartTime"),
        ({"reportType": ORDERS, "marketplaceIds": [US], "dataEndTime": "2999-01-01T00:00:00Z"},
         "dataEndTime cannot be in the future."),
    ],
)
def test_create_report_400s(na: Api, body: dict[str, Any], message: str, model: dict[str, Any]) -> None:
    response = na.call("POST", REPORTS, json=body)

    assert response.status_code == 400
    validate(response.json(), model, "ErrorList")
    error = response.json()["errors"][0]
    assert error["code"] == "InvalidInput"
    assert error["message"].startswith(message)


def test_missing_parameters_are_listed_in_details(na: Api) -> None:
    response = na.call("POST", REPORTS, json={})

    assert response.json()["errors"][0]["details"] == "marketplaceIds;reportType;"


@pytest.mark.parametrize(
    "params",
    [{}, {"reportTypes": ORDERS, "pageSize": "0"}, {"reportTypes": ORDERS, "pageSize": "101"},
     {"reportTypes": ORDERS, "processingStatuses": "FINISHED"}, {"reportTypes": ORDERS, "nextToken": "abc"},
     {"nextToken": "unknown"}, {"reportTypes": ",".join([ORDERS] * 11)}],
)
def test_get_reports_400s(na: Api, params: dict[str, str]) -> None:
    response = na.call("GET", REPORTS, params=params)

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "InvalidInput"


def test_get_reports_filters_and_paginates(na: Api, model: dict[str, Any]) -> None:
    ids = [na.created(ORDERS) for _ in range(5)]
    listing = na.created(LISTINGS)
    na.emu.advance_clock(91)
    later = na.created(ORDERS)

    first = na.call("GET", REPORTS, params={"reportTypes": ORDERS, "pageSize": "2"}).json()
    validate(first, model, "GetReportsResponse")
    seen = [r["reportId"] for r in first["reports"]]
    token = first["nextToken"]
    while token:
        page = na.call("GET", REPORTS, params={"nextToken": token}).json()
        validate(page, model, "GetReportsResponse")
        seen += [r["reportId"] for r in page["reports"]]
        token = page.get("nextToken")
    assert seen == [later, *reversed(ids)]  # newest first

    done = na.call("GET", REPORTS, params={"reportTypes": f"{ORDERS},{LISTINGS}", "processingStatuses": "DONE",
                                           "pageSize": "100"}).json()
    assert {r["reportId"] for r in done["reports"]} == {*ids, listing}
    assert "nextToken" not in done
    other_marketplace = na.call("GET", REPORTS, params={"reportTypes": ORDERS, "marketplaceIds": "A2EUQ1WTGCTBG2"})
    assert other_marketplace.json() == {"reports": []}
    since = na.call("GET", REPORTS, params={"reportTypes": ORDERS, "createdSince": na.report(later)["createdTime"]})
    assert [r["reportId"] for r in since.json()["reports"]] == [later]


def test_another_sellers_report_is_not_found(http: requests.Session, emu: AmazonEmulator, na: Api) -> None:
    report_id = na.created()
    other = Api(http, emu, connect(http, emu, "NA", "A2OTHERSELLERXX"))

    for method in ("GET", "DELETE"):
        response = other.call(method, f"{REPORTS}/{report_id}")
        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "NotFound"
    emu.advance_clock(91)
    document_id = na.report(report_id)["reportDocumentId"]
    assert other.call("GET", f"{DOCUMENTS}/{document_id}").status_code == 404
    assert other.call("GET", REPORTS, params={"reportTypes": ORDERS}).json() == {"reports": []}


def test_tokens_of_other_regions_and_grantless_tokens_are_refused(
    http: requests.Session, emu: AmazonEmulator, na: Api
) -> None:
    eu_host = Api(http, emu, na.token, "EU")
    assert eu_host.create(marketplaces=[DE]).status_code == 403
    assert Api(http, emu, "Atza|nope").call("GET", REPORTS, params={"reportTypes": ORDERS}).status_code == 403


def test_only_queued_reports_can_be_cancelled(na: Api) -> None:
    report_id = na.created()
    na.emu.advance_clock(31)

    response = na.call("DELETE", f"{REPORTS}/{report_id}")

    assert response.status_code == 400
    assert "IN_QUEUE" in response.json()["errors"][0]["message"]
    assert na.report(report_id)["processingStatus"] == "IN_PROGRESS"


# -- throttling ----------------------------------------------------------------------------------------


def test_token_bucket_burst_then_429_then_refill(http: requests.Session, na: Api) -> None:
    params = {"reportTypes": ORDERS}
    for _ in range(10):
        assert na.call("GET", REPORTS, params=params).status_code == 200

    throttled = na.call("GET", REPORTS, params=params)
    assert throttled.status_code == 429
    assert throttled.json() == QUOTA
    assert "x-amzn-RateLimit-Limit" not in throttled.headers

    na.emu.advance_clock(30)  # 0.67 of a token
    assert na.call("GET", REPORTS, params=params).status_code == 429
    na.emu.advance_clock(16)  # 1.02 tokens
    assert na.call("GET", REPORTS, params=params).status_code == 200
    stats = control(http, na.emu, "stats")
    assert stats["throttled"] == 2
    assert stats["throttled_by_operation"] == {"getReports": 2}
    assert stats["spapi"]["getReports"] == 13


def test_buckets_are_per_seller_and_operation(http: requests.Session, emu: AmazonEmulator, na: Api) -> None:
    for _ in range(15):
        assert na.create().status_code == 202
    assert na.create().status_code == 429
    assert na.call("GET", REPORTS, params={"reportTypes": ORDERS}).status_code == 200
    other = Api(http, emu, connect(http, emu, "NA", "A2OTHERSELLERXX"))
    assert other.create().status_code == 202


def test_sales_and_traffic_app_wide_quota(http: requests.Session, emu: AmazonEmulator, na: Api) -> None:
    other = Api(http, emu, connect(http, emu, "EU"), "EU")
    assert na.create(SALES).status_code == 202

    refused = other.create(SALES)
    assert refused.status_code == 429
    assert refused.json() == QUOTA
    assert other.create(ORDERS).status_code == 202  # other types are not affected
    emu.advance_clock(15 * 60)
    assert other.create(SALES).status_code == 202


# -- status progression and notifications ---------------------------------------------------------------


def test_status_progression_on_the_emulator_clock(na: Api, sqs: Any, queue_url: str) -> None:
    report_id = na.created()
    created = na.report(report_id)
    assert created["processingStatus"] == "IN_QUEUE"

    na.emu.advance_clock(31)
    running = na.report(report_id)
    assert running["processingStatus"] == "IN_PROGRESS"
    assert "processingStartTime" in running and "processingEndTime" not in running
    assert messages(sqs, queue_url) == []

    na.emu.advance_clock(60)
    done = na.report(report_id)
    assert done["processingStatus"] == "DONE"
    assert done["processingStartTime"] < done["processingEndTime"]
    assert done["reportDocumentId"].startswith("amzn1.spdoc.1.4.na.")


def test_clock_advance_alone_sends_the_notification(na: Api, sqs: Any, queue_url: str, http: requests.Session) -> None:
    report_id = na.created()

    control(http, na.emu, "clock", {"advance_seconds": 95})  # nothing looks at the report

    [notification] = messages(sqs, queue_url)
    assert notification["notificationType"] == "REPORT_PROCESSING_FINISHED"
    assert notification["notificationVersion"] == "2020-09-04"
    assert notification["payloadVersion"] == "2020-09-04"
    assert set(notification["notificationMetadata"]) == {"applicationId", "subscriptionId", "publishTime",
                                                         "notificationId"}
    assert notification["notificationMetadata"]["applicationId"] == na.emu.application_id
    payload = notification["payload"]["reportProcessingFinishedNotification"]
    document_id = na.report(report_id)["reportDocumentId"]
    assert payload == {"sellerId": SELLER["NA"], "accountId": f"amzn1.merchant.o.{SELLER['NA']}",
                       "reportId": report_id, "reportType": ORDERS, "processingStatus": "DONE",
                       "reportDocumentId": document_id}
    na.emu.advance_clock(100)
    assert messages(sqs, queue_url) == []  # once
    assert control(http, na.emu, "stats")["notifications"] == {"REPORT_PROCESSING_FINISHED": 1}


def test_notification_matches_amazons_schema(na: Api, sqs: Any, queue_url: str) -> None:
    schema = json.loads((MODELS / "ReportProcessingFinishedNotification.json").read_text())
    na.created()
    na.emu.advance_clock(91)
    [notification] = messages(sqs, queue_url)
    jsonschema.validate(notification, schema)


@pytest.mark.parametrize("outcome", ["CANCELLED", "FATAL"])
def test_seeded_outcomes_and_their_notifications(
    http: requests.Session, na: Api, sqs: Any, queue_url: str, outcome: str
) -> None:
    queued = control(http, na.emu, "reports/documents",
                     {"selling_partner_id": SELLER["NA"], "report_type": ORDERS, "marketplace_ids": [US],
                      "outcome": outcome})
    assert queued == {"queued": 1}

    report = na.finished()

    assert report["processingStatus"] == outcome
    [notification] = messages(sqs, queue_url)
    payload = notification["payload"]["reportProcessingFinishedNotification"]
    assert payload["processingStatus"] == outcome
    if outcome == "CANCELLED":
        assert "reportDocumentId" not in report and "reportDocumentId" not in payload
    else:
        assert payload["reportDocumentId"] == report["reportDocumentId"]
        document = na.document(report["reportDocumentId"])
        assert "compressionAlgorithm" not in document
        assert "errorDetails" in download(http, document["url"]).json()
    assert na.finished()["processingStatus"] == "DONE"  # the seed was for one report only


def test_an_explicit_cancel_notifies(na: Api, sqs: Any, queue_url: str) -> None:
    report_id = na.created()
    assert na.call("DELETE", f"{REPORTS}/{report_id}").status_code == 200

    [notification] = messages(sqs, queue_url)
    assert notification["payload"]["reportProcessingFinishedNotification"]["processingStatus"] == "CANCELLED"
    na.emu.advance_clock(100)
    assert na.report(report_id)["processingStatus"] == "CANCELLED"
    assert messages(sqs, queue_url) == []


# -- documents -------------------------------------------------------------------------------------------


def test_document_url_expires_after_300_seconds(http: requests.Session, na: Api) -> None:
    report = na.finished()
    document = na.document(report["reportDocumentId"])
    query = parse_qs(urlsplit(document["url"]).query)
    assert query["X-Amz-Expires"] == ["300"]
    assert {"X-Amz-Date", "X-Amz-Signature", "X-Amz-Credential"} <= set(query)

    na.emu.advance_clock(290)
    assert download(http, document["url"]).status_code == 200
    na.emu.advance_clock(20)
    expired = download(http, document["url"])
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text
    assert "<Message>Request has expired</Message>" in expired.text
    assert download(http, na.document(report["reportDocumentId"])["url"]).status_code == 200  # a fresh URL


def test_a_tampered_url_is_refused(http: requests.Session, na: Api) -> None:
    url = na.document(na.finished()["reportDocumentId"])["url"]

    response = download(http, url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000"))

    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text


def test_gzip_and_content_encoding_labels(http: requests.Session, na: Api) -> None:
    document_id = na.finished()["reportDocumentId"]

    plain = download(http, na.document(document_id)["url"])
    assert plain.headers["Content-Encoding"] == "identity"
    assert plain.headers["Content-Type"] == "text/plain; charset=Cp1252"
    assert plain.content[:2] == b"\x1f\x8b"
    labelled = na.document(document_id, enableContentEncodingUrlHeader="true")["url"]
    encoded = http.get(labelled, timeout=10, stream=True)
    assert encoded.headers["Content-Encoding"] == "gzip"
    assert encoded.raw.read(2, decode_content=False) == b"\x1f\x8b"
    encoded.close()


@pytest.mark.parametrize(("region", "report_type"), [
    ("NA", ORDERS), ("EU", LISTINGS), ("EU", INVENTORY), ("FE", RETURNS), ("FE", LISTINGS), ("NA", RETURNS),
])
def test_generated_flat_files(http: requests.Session, emu: AmazonEmulator, region: str, report_type: str) -> None:
    api = Api(http, emu, connect(http, emu, region), region)
    document = api.document(api.finished(report_type)["reportDocumentId"])
    got = download(http, document["url"])

    charset = "cp932" if region == "FE" else "cp1252"
    label = "Windows-31J" if region == "FE" else "Cp1252"
    assert got.headers["Content-Type"] == f"text/plain; charset={label}"
    assert document["compressionAlgorithm"] == "GZIP"
    raw = gzip.decompress(got.content)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # really not UTF-8
    lines = raw.decode(charset).splitlines()
    assert lines[0].split("\t") == HEADERS[report_type].split(", ")
    assert 5 <= len(lines) - 1 <= 20
    assert all(len(line.split("\t")) == len(lines[0].split("\t")) for line in lines)
    text = "\n".join(lines[1:])
    if region == "FE":
        assert any("\u3040" <= ch <= "\u9fff" for ch in text)  # Japanese
    else:
        assert any(ch in text for ch in "€äöüéß")


def test_sales_and_traffic_is_json(http: requests.Session, na: Api) -> None:
    document = na.document(na.finished(SALES)["reportDocumentId"])
    got = download(http, document["url"])

    assert got.headers["Content-Type"] == "application/json; charset=UTF-8"
    body = json.loads(gzip.decompress(got.content))
    assert set(body) == {"reportSpecification", "salesAndTrafficByDate", "salesAndTrafficByAsin"}
    assert body["reportSpecification"]["reportType"] == SALES


def test_seeded_and_mislabelled_documents(http: requests.Session, na: Api) -> None:
    content = "sku\tprice\nA-1\t9,99 €\n".encode("cp1252")
    seeds = [
        {"gzip": True, "label_gzip": False},  # gzip bytes, compressionAlgorithm absent
        {"gzip": False, "label_gzip": True},  # plain bytes labelled GZIP
        {"gzip": False},
    ]
    for seed in seeds:
        control(http, na.emu, "reports/documents", {
            "selling_partner_id": SELLER["NA"], "report_type": LISTINGS, "marketplace_ids": [US],
            "content_base64": base64.b64encode(content).decode(), "content_type": "text/plain; charset=Cp1252",
            **seed})
    served = []
    for _ in seeds:
        document = na.document(na.finished(LISTINGS)["reportDocumentId"])
        served.append((document.get("compressionAlgorithm"), download(http, document["url"]).content))

    assert served[0][0] is None and gzip.decompress(served[0][1]) == content
    assert served[1] == ("GZIP", content)
    assert served[2] == (None, content)


def test_large_generated_document_streams(http: requests.Session, na: Api) -> None:
    size = 50 * 1024 * 1024
    control(http, na.emu, "reports/documents", {"selling_partner_id": SELLER["NA"], "report_type": ORDERS,
                                                "marketplace_ids": [US], "generate_bytes": size})
    document = na.document(na.finished()["reportDocumentId"])

    tracemalloc.start()
    try:
        response = http.get(document["url"], timeout=60, stream=True)
        assert response.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in response.headers
        inflater = zlib.decompressobj(31)
        total = chunks = 0
        first = b""
        for chunk in response.iter_content(256 * 1024):
            out = inflater.decompress(chunk)
            first = first or out
            total += len(out)
            chunks += 1
        total += len(inflater.flush())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert inflater.eof
    assert size <= total < size + 1024
    assert chunks > 1
    assert first.decode("cp1252").split("\n", 1)[0].split("\t") == HEADERS[ORDERS].split(", ")
    assert peak < 20 * 1024 * 1024  # emulator and client together, far below the document's size
    assert control(http, na.emu, "stats")["documents_served"] == 1


# -- faults --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [(429, "QuotaExceeded"), (500, "InternalFailure"),
                                               (503, "ServiceUnavailable")])
def test_operation_faults(http: requests.Session, na: Api, status: int, code: str) -> None:
    control(http, na.emu, "faults", {"operation": "createReport", "status": status, "count": 2})

    assert [na.create().status_code for _ in range(3)] == [status, status, 202]
    assert na.create().status_code == 202
    response = na.create()
    assert response.status_code == 202
    control(http, na.emu, "faults", {"operation": "getReport", "status": status, "count": 1})
    failed = na.call("GET", f"{REPORTS}/{response.json()['reportId']}")
    assert failed.status_code == status
    assert failed.json()["errors"][0]["code"] == code


def test_timeout_fault_holds_the_answer(http: requests.Session, na: Api) -> None:
    control(http, na.emu, "faults", {"operation": "getReports", "status": "timeout", "count": 1,
                                     "hold_seconds": 0.5})
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(na.emu.host_url(SPAPI["NA"], REPORTS), params={"reportTypes": ORDERS},
                 headers={"x-amz-access-token": na.token}, timeout=0.2)


def test_truncated_document(http: requests.Session, na: Api) -> None:
    document = na.document(na.finished()["reportDocumentId"])
    whole = download(http, document["url"]).content
    control(http, na.emu, "faults", {"operation": "document", "status": "truncated", "count": 1})

    cut = download(http, document["url"])

    assert cut.status_code == 200
    assert cut.content == whole[: len(whole) // 2]
    with pytest.raises((EOFError, OSError)):
        gzip.decompress(cut.content)
    assert download(http, document["url"]).content == whole


def test_truncated_large_document(http: requests.Session, na: Api) -> None:
    control(http, na.emu, "reports/documents", {"selling_partner_id": SELLER["NA"], "report_type": ORDERS,
                                                "marketplace_ids": [US], "generate_bytes": 4 * 1024 * 1024})
    document = na.document(na.finished()["reportDocumentId"])
    control(http, na.emu, "faults", {"operation": "document", "status": "truncated", "count": 1})

    inflater = zlib.decompressobj(31)
    out = inflater.decompress(download(http, document["url"]).content)

    assert not inflater.eof
    assert 0 < len(out) <= 2 * 1024 * 1024


def test_document_server_errors(http: requests.Session, na: Api) -> None:
    url = na.document(na.finished()["reportDocumentId"])["url"]
    control(http, na.emu, "faults", {"operation": "document", "status": 503, "count": 1})

    failed = download(http, url)
    assert failed.status_code == 503
    assert "<Code>SlowDown</Code>" in failed.text
    assert download(http, url).status_code == 200


def test_unsupported_faults_are_refused(http: requests.Session, emu: AmazonEmulator) -> None:
    response = http.post(f"{emu.base_url}/_emulator/faults", json={"operation": "createReport",
                                                                   "status": "truncated"}, timeout=5)
    assert response.status_code == 400


# -- settlement -------------------------------------------------------------------------------------------


def test_settlement_reports_are_found_with_get_reports_only(
    http: requests.Session, na: Api, model: dict[str, Any], sqs: Any, queue_url: str
) -> None:
    assert na.create(SETTLEMENT).status_code == 400
    control(http, na.emu, "reports/documents", {"selling_partner_id": SELLER["NA"], "report_type": SETTLEMENT,
                                                "marketplace_ids": [US], "outcome": "DONE"})

    listed = na.call("GET", REPORTS, params={"reportTypes": SETTLEMENT, "processingStatuses": "DONE"}).json()

    validate(listed, model, "GetReportsResponse")
    [report] = listed["reports"]
    assert report["processingStatus"] == "DONE"
    document = na.document(report["reportDocumentId"])
    assert "compressionAlgorithm" not in document
    got = download(http, document["url"])
    lines = got.content.decode("cp1252").splitlines()
    assert lines[0].split("\t") == HEADERS[SETTLEMENT].split(", ")
    assert messages(sqs, queue_url) == []


def test_seed_validation(http: requests.Session, emu: AmazonEmulator) -> None:
    bad = [
        {"selling_partner_id": SELLER["NA"], "report_type": "NOPE"},
        {"selling_partner_id": SELLER["NA"], "report_type": ORDERS, "outcome": "LATER"},
        {"selling_partner_id": SELLER["NA"], "report_type": SALES, "generate_bytes": 10},
        {"selling_partner_id": SELLER["NA"], "report_type": SETTLEMENT},
        {"selling_partner_id": SELLER["NA"], "report_type": ORDERS, "marketplace_ids": [US, DE]},
        {"selling_partner_id": SELLER["NA"], "report_type": ORDERS, "content_base64": "***"},
    ]
    for body in bad:
        response = http.post(f"{emu.base_url}/_emulator/reports/documents", json=body, timeout=5)
        assert response.status_code == 400, body


def test_accepted_create_reports_are_listed_in_order(http: requests.Session, emu: AmazonEmulator, na: Api) -> None:
    na.created(ORDERS)
    assert na.create(ORDERS, dataStartTime="not a time").status_code == 400  # refused: not listed
    window = {"dataStartTime": "2026-01-01T00:00:00Z", "dataEndTime": "2026-01-01T01:00:00Z"}
    assert na.create(LISTINGS, **window).status_code == 202

    listed = control(http, emu, "requests?operation=createReport")["requests"]

    assert [(r["kind"], r["marketplace_ids"], r["start"], r["end"]) for r in listed] == [
        (ORDERS, [US], None, None), (LISTINGS, [US], window["dataStartTime"], window["dataEndTime"])]
    assert {r["region"] for r in listed} == {"NA"}
    assert control(http, emu, "requests?selling_partner_id=A0NOBODYHERE00")["requests"] == []


# -- roles ---------------------------------------------------------------------------------------------


def test_a_withheld_role_refuses_its_report_types_with_amazons_403(
    http: requests.Session, emu: AmazonEmulator, na: Api
) -> None:
    control(http, emu, "roles", {"role": "Inventory and Order Tracking", "selling_partner_id": SELLER["NA"]})
    control(http, emu, "roles", {"role": "Finance and Accounting"})  # for the whole application

    refused = na.create(ORDERS)
    listed = na.call("GET", REPORTS, params={"reportTypes": SETTLEMENT})

    for answer in (refused, listed):
        assert answer.status_code == 403
        assert answer.json() == {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is "
                                             "denied.", "details": ""}]}
    assert na.create(LISTINGS).status_code == 202  # the seller's other roles are intact
    assert control(http, emu, "requests?operation=createReport")["requests"][0]["kind"] == LISTINGS
    control(http, emu, "roles", {"role": "Inventory and Order Tracking", "selling_partner_id": SELLER["NA"],
                                 "withheld": False})
    assert na.create(ORDERS).status_code == 202


def test_settlement_reports_ignore_the_marketplace_filter_and_page_by_next_token_alone(
    http: requests.Session, emu: AmazonEmulator, na: Api
) -> None:
    canada = "A2EUQ1WTGCTBG2"
    for marketplace in [US] * 102 + [canada]:
        control(http, emu, "reports/documents", {"selling_partner_id": SELLER["NA"], "report_type": SETTLEMENT,
                                                 "marketplace_ids": [marketplace], "outcome": "DONE"})
    query = {"reportTypes": SETTLEMENT, "marketplaceIds": US, "pageSize": "100"}

    first = na.call("GET", REPORTS, params=query).json()
    assert na.call("GET", REPORTS, params={**query, "nextToken": first["nextToken"]}).status_code == 400
    second = na.call("GET", REPORTS, params={"nextToken": first["nextToken"]}).json()

    listed = first["reports"] + second["reports"]
    assert (len(first["reports"]), len(second["reports"]), "nextToken" in second) == (100, 3, False)
    assert len({r["reportId"] for r in listed}) == 103
    assert [r["marketplaceIds"] for r in listed].count([canada]) == 1  # listed despite the US filter
    # Other report types still honour the filter.
    na.created(ORDERS, [canada])
    assert na.call("GET", REPORTS, params={"reportTypes": ORDERS, "marketplaceIds": US}).json()["reports"] == []


# -- reportOptions ---------------------------------------------------------------------------------------


def sales_document(http: requests.Session, na: Api, **body: Any) -> dict[str, Any]:
    response = na.create(SALES, **body)
    assert response.status_code == 202, response.text
    report_id = response.json()["reportId"]
    na.emu.advance_clock(15 * 60)  # past the report's processing and Sales and Traffic's 15-minute quota
    got = download(http, na.document(na.report(report_id)["reportDocumentId"])["url"])
    return dict(json.loads(gzip.decompress(got.content)))


def test_sales_and_traffic_honours_its_report_options(http: requests.Session, emu: AmazonEmulator, na: Api) -> None:
    end = emu.now().replace(hour=0, minute=0, second=0, microsecond=0)
    window = {"dataStartTime": (end - timedelta(days=35)).isoformat(), "dataEndTime": end.isoformat()}

    default = sales_document(http, na, **window)
    weekly = sales_document(http, na, **window, reportOptions={"dateGranularity": "WEEK", "asinGranularity": "SKU"})
    monthly = sales_document(http, na, **window, reportOptions={"dateGranularity": "MONTH",
                                                                "asinGranularity": "CHILD"})

    assert default["reportSpecification"]["reportOptions"] == {"dateGranularity": "DAY", "asinGranularity": "PARENT"}
    assert len(default["salesAndTrafficByDate"]) == 35
    keys = {"parentAsin", "childAsin", "sku"}
    assert {tuple(sorted(keys & set(row))) for row in default["salesAndTrafficByAsin"]} == {("parentAsin",)}
    weeks = [date.fromisoformat(row["date"]) for row in weekly["salesAndTrafficByDate"]]
    assert all(d.weekday() == 6 for d in weeks) and 5 <= len(weeks) <= 6  # weeks start on Sunday
    assert all({"parentAsin", "childAsin", "sku"} <= set(row) for row in weekly["salesAndTrafficByAsin"])
    months = [row["date"] for row in monthly["salesAndTrafficByDate"]]
    assert all(m.endswith("-01") for m in months) and 2 <= len(months) <= 3
    assert all("childAsin" in row and "sku" not in row for row in monthly["salesAndTrafficByAsin"])
    assert monthly["reportSpecification"]["reportOptions"] == {"dateGranularity": "MONTH", "asinGranularity": "CHILD"}


@pytest.mark.parametrize("options", [{"dateGranularity": "HOUR"}, {"asinGranularity": "parent"}])
def test_invalid_sales_and_traffic_options_are_refused(na: Api, options: dict[str, str]) -> None:
    refused = na.create(SALES, reportOptions=options)

    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "InvalidInput"


def test_report_options_of_a_type_that_takes_none_are_ignored(http: requests.Session, na: Api) -> None:
    assert na.create(ORDERS, reportOptions={"dateGranularity": "HOUR", "anything": "goes"}).status_code == 202


# -- processing times ---------------------------------------------------------------------------------------


def processing_minutes(http: requests.Session, emu: AmazonEmulator, seed: int) -> list[float]:
    """Create twelve reports under realistic timings; how many minutes each took to finish (emulator clock)."""
    control(http, emu, "reports/timings", {"mode": "realistic", "seed": seed})
    na = Api(http, emu, connect(http, emu, "NA"), "NA")
    created = [na.created(ORDERS) for _ in range(12)]
    emu.advance_clock(5 * 3600)
    later = Api(http, emu, connect(http, emu, "NA"), "NA")  # the first access token has expired
    reports = [later.report(report_id) for report_id in created]
    assert {r["processingStatus"] for r in reports} == {"DONE"}
    return [(datetime.fromisoformat(r["processingEndTime"]) - datetime.fromisoformat(r["createdTime"])).total_seconds()
            / 60 for r in reports]


def test_realistic_processing_times_vary_from_minutes_to_hours_and_repeat_for_a_seed(
    http: requests.Session, emu: AmazonEmulator
) -> None:
    assert control(http, emu, "reports/timings")["mode"] == "fast"  # the default the other tests rely on

    first = processing_minutes(http, emu, seed=7)
    emu.reset()
    again = processing_minutes(http, emu, seed=7)

    assert first == again
    assert min(first) < 15 and max(first) > 60  # minutes to hours, not one fixed time
    assert max(first) <= 4 * 60 + 15
    emu.reset()
    assert control(http, emu, "reports/timings") == {"mode": "fast", "seed": None}
    assert http.post(f"{emu.base_url}/_emulator/reports/timings", json={"mode": "slow"}, timeout=5).status_code == 400
