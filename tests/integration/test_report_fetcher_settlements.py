"""Settlement discovery through the fetcher (issue 10, section 7): moto in-process, the emulator over HTTP.

Settlement reports cannot be requested; the fetcher finds them with getReports. Amazon ignores the marketplace
filter for them and pages at most 100 reports: the discovery reads every page, stores each report once, under
the marketplace the report names, and the documents arrive uncompressed (no compressionAlgorithm)."""

from __future__ import annotations

import base64

import boto3
import pytest

from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.containers import forget_all
from seller_insights.object_keys import seller_prefix
from seller_insights.report_catalog import ORDERS, SETTLEMENT
from tests.support.api import ConsentClient
from tests.support.fetcher import advance, control, deliver, items, refresher_sweep, stats
from tests.support.flows import connect_and_confirm
from tests.support.sweeps import plan_reports
from tests.support.tokens import provider

SELLER = "A1SETTLEMENTS01"
US, CA, MX = "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2", "A1AM78C64UM0Y8"


@pytest.fixture
def fetcher_env(token_env, emulator, monkeypatch):
    clock.set_clock(FixedClock(emulator.now()))
    boto3.client("s3").create_bucket(Bucket="data")
    queue = boto3.client("sqs").create_queue(QueueName="report-jobs")["QueueUrl"]
    environment = {"DATA_BUCKET": "data", "REPORT_JOBS_QUEUE_URL": queue, "DEFAULT_REPORT_TYPES": SETTLEMENT}
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    forget_all()
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    provider(token_env, emulator.base_url).get(SELLER, "NA")
    yield queue
    forget_all()


def seed_settlement(emulator, marketplace):
    control(emulator, "reports/documents", {"selling_partner_id": SELLER, "report_type": SETTLEMENT,
                                            "marketplace_ids": [marketplace], "outcome": "DONE"})


def objects():
    listing = boto3.client("s3").list_objects_v2(Bucket="data", Prefix=seller_prefix(SELLER))
    return [o["Key"] for o in listing.get("Contents", [])]


def test_every_page_is_read_and_each_settlement_stored_once_under_its_marketplace(fetcher_env, emulator, token_env):
    for marketplace in [US] * 101 + [CA, MX]:
        seed_settlement(emulator, marketplace)
    assert plan_reports()["jobs"] == 1

    rounds = 0  # getReportDocument allows a burst of 15, then one a minute: some 90 minutes for 103 documents
    while rounds < 30 and [job["status"] for job in items(SELLER, "JOB#")] != ["DONE"]:
        while deliver(fetcher_env):
            pass
        refresher_sweep(token_env, emulator, SELLER)  # the token refresher keeps the access token fresh
        advance(emulator, 600)
        rounds += 1

    (job,) = items(SELLER, "JOB#")
    assert job["status"] == "DONE"
    rows = items(SELLER, "REPORT#")
    assert len(rows) == len({row["report_id"] for row in rows}) == 103
    scopes = [key.split(f"/{SETTLEMENT}/")[1].split("/")[0] for key in objects()]
    assert (scopes.count(US), scopes.count(CA), scopes.count(MX)) == (101, 1, 1)
    for row in rows:  # stored as served: the uncompressed flat file, decoded from cp1252
        body = boto3.client("s3").get_object(Bucket="data", Key=row["s3_key"])["Body"].read().decode()
        assert body.startswith("settlement-id\t") and row["rows"] > 0
    spapi = stats(emulator)["spapi"]
    assert (spapi["getReports"], spapi["getReportDocument"], spapi["createReport"]) == (2, 103, 0)
    assert stats(emulator)["throttled"] == 0

    # The next discovery finds nothing new: nothing is downloaded twice.
    advance(emulator, 12 * 3600)
    plan_reports()
    while deliver(fetcher_env):
        pass
    assert stats(emulator)["spapi"]["getReportDocument"] == 103
    assert len(items(SELLER, "REPORT#")) == 103


def test_an_uncompressed_orders_document_is_stored(fetcher_env, emulator, monkeypatch):
    """Amazon serves some flat files without compression (no compressionAlgorithm): stored all the same."""
    monkeypatch.setenv("DEFAULT_REPORT_TYPES", ORDERS)
    monkeypatch.setenv("REPORT_BACKFILL_DAYS", f"{ORDERS}=0")  # the live window only
    forget_all()
    body = "amazon-order-id\tproduct-name\tquantity\n111-1\tKaffeebecher Größe L\t2\n".encode("cp1252")
    control(emulator, "reports/documents", {"selling_partner_id": SELLER, "report_type": ORDERS,
                                            "marketplace_ids": [US], "outcome": "DONE", "gzip": False,
                                            "content_base64": base64.b64encode(body).decode(),
                                            "content_type": "text/plain; charset=Cp1252"})
    plan_reports()
    for _ in range(4):
        while deliver(fetcher_env):
            pass
        advance(emulator, 120)
    (row,) = items(SELLER, "REPORT#")
    stored = boto3.client("s3").get_object(Bucket="data", Key=row["s3_key"])["Body"].read().decode()
    assert stored == "amazon-order-id\tproduct-name\tquantity\n111-1\tKaffeebecher Größe L\t2\n"
