"""The token lifecycle's fan-out: the refresh-tokens finder (rotating shards, bounded, no per-connection
work), the token_refresh consumer (idempotent, the app-wide LWA bucket, one connection's failure alone) and
the daily re-authorization digest (one event, its counts, its object, paged reads)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

import boto3
import pytest
import requests

from seller_insights import clock
from seller_insights.containers import forget_all
from seller_insights.events import EventPublisher
from seller_insights.fanout import WorkQueue, rotating_shards
from seller_insights.quotas import Rate
from seller_insights.repositories import ConnectionsRepository, connection_key, shard
from tests.support.api import ConsentClient, FakeContext
from tests.support.flows import connect_and_confirm, refresh_tokens
from tests.support.iam import acting_as
from tests.support.tokens import connection_item, lwa_stats, table
from token_refresher.service import (
    REFRESH_INTERVAL_SECONDS,
    TOKEN_REFRESH_KIND,
    ReauthorizationDigest,
    RefreshFinder,
    refresh_limit,
)

SELLER = "A1FANOUT00001"
OTHER = "A2FANOUT00002"


def calls_of(client: Any) -> Counter[str]:
    """Every operation `client` makes from now on, by name."""
    made: Counter[str] = Counter()
    client.meta.events.register("before-call.*.*", lambda model, **_: made.update([model.name]))
    return made


def work_queue() -> WorkQueue:
    import os

    return WorkQueue(boto3.client("sqs"), os.environ["REFRESH_WORK_QUEUE_URL"], TOKEN_REFRESH_KIND)


def sent_items() -> list[dict[str, Any]]:
    import os

    sqs = boto3.client("sqs")
    queue = os.environ["REFRESH_WORK_QUEUE_URL"]
    items: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            items += work_queue().items_of(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return items


# --- the finder ------------------------------------------------------------------------------------

def test_the_limit_is_the_lwa_bucket_over_the_schedule_interval():
    assert refresh_limit(Rate(50, 100)) == 50 * 300 + 100
    assert refresh_limit(Rate(0.1, 1)) == 31
    assert REFRESH_INTERVAL_SECONDS == 300


def test_the_finder_sends_at_most_its_limit_in_rotating_shard_order_and_reads_no_item(token_env, product_clock):
    connections = table(token_env)
    now = clock.epoch_seconds()
    due: dict[tuple[str, str], int] = {}
    for number in range(40):
        seller = f"A{number:02d}FINDER"
        due[(seller, "NA")] = now - 1000 + number  # distinct due times: the index orders each shard by them
        connections.put_item(Item={**connection_key(seller, "NA"), "refresh_shard": shard(seller, "NA"),
                                   "refresh_due_at": due[(seller, "NA")]})
    for number in range(5):  # not due yet
        connections.put_item(Item={**connection_key(f"B{number}LATER", "NA"),
                                   "refresh_shard": shard(f"B{number}LATER", "NA"), "refresh_due_at": now + 3600})
    made = calls_of(connections.meta.client)

    report = RefreshFinder(ConnectionsRepository(connections), work_queue(), limit=12).run()

    assert report.as_dict() == {"found": 12, "messages": 2, "limit": 12}
    order = rotating_shards(now, REFRESH_INTERVAL_SECONDS)
    expected = sorted(due, key=lambda key: (order.index(shard(*key)), due[key]))[:12]
    assert [(item["seller_id"], item["region"]) for item in sent_items()] == expected
    assert set(made) == {"Query"}  # index pages only: no per-connection read

    # The next run (one schedule period later) starts one shard further: the first shards do not starve.
    product_clock.advance(REFRESH_INTERVAL_SECONDS)
    later = rotating_shards(clock.epoch_seconds(), REFRESH_INTERVAL_SECONDS)
    assert later[0] == order[1]
    RefreshFinder(ConnectionsRepository(connections), work_queue(), limit=12).run()
    expected = sorted(due, key=lambda key: (later.index(shard(*key)), due[key]))[:12]
    assert [(item["seller_id"], item["region"]) for item in sent_items()] == expected


def test_nothing_due_sends_nothing(token_env):
    report = RefreshFinder(ConnectionsRepository(table(token_env)), work_queue(), limit=10).run()
    assert report.as_dict() == {"found": 0, "messages": 0, "limit": 10}
    assert sent_items() == []


# --- the consumer ----------------------------------------------------------------------------------

@pytest.fixture
def two_sellers(token_env, emulator):
    for seller, marketplace in ((SELLER, "US"), (OTHER, "CA")):
        assert connect_and_confirm(ConsentClient(), emulator.base_url, seller, marketplace).status == 303
    return token_env


def test_an_item_no_longer_due_is_skipped_without_an_lwa_call(two_sellers, emulator):
    assert refresh_tokens()["refreshed"] == 2
    before = lwa_stats(emulator.base_url)["refresh_token"]
    work_queue().send([{"seller_id": SELLER, "region": "NA"}])  # a second finder run sent it again

    again = refresh_tokens()

    assert (again["found"], again["not_due"], again["refreshed"]) == (0, 1, 0)
    assert lwa_stats(emulator.base_url)["refresh_token"] == before


def test_when_the_lwa_bucket_says_wait_the_rest_stays_due_and_is_not_requeued(two_sellers, emulator, monkeypatch,
                                                                           product_clock, capfd):
    monkeypatch.setenv("LWA_REFRESH_RATE", "0.1")
    monkeypatch.setenv("LWA_REFRESH_BURST", "1")
    forget_all()
    before = lwa_stats(emulator.base_url)["refresh_token"]

    first = refresh_tokens()

    assert (first["found"], first["limit"]) == (2, 31)
    assert (first["refreshed"], first["deferred"], first["stopped"]) == (1, 1, ["lwa_rate"])
    assert lwa_stats(emulator.base_url)["refresh_token"] == before + 1
    waiting = [seller for seller, region in ((SELLER, "NA"), (OTHER, "NA"))
               if int(connection_item(two_sellers, seller, region)["refresh_due_at"]) <= clock.epoch_seconds()]
    assert len(waiting) == 1  # still due: the next finder run sends it again
    assert sent_items() == []  # nothing went back onto the queue
    assert '"LwaRefreshRateLimited":[1.0]' in capfd.readouterr().out

    product_clock.advance(10)  # a token is back in the bucket
    second = refresh_tokens()
    assert (second["found"], second["refreshed"], second["deferred"]) == (1, 1, 0)


def test_one_unreadable_refresh_token_does_not_stop_the_others(two_sellers, emulator, capfd):
    connections = table(two_sellers)
    sealed = connections.get_item(Key=connection_key(SELLER, "NA"))["Item"]["refresh_token"]
    connections.update_item(Key=connection_key(SELLER, "NA"), UpdateExpression="SET refresh_token = :sealed",
                            ExpressionAttributeValues={":sealed": {**sealed, "c": b"\x00" * len(bytes(sealed["c"]))}})
    due_before = connection_item(two_sellers, SELLER, "NA")["refresh_due_at"]

    report = refresh_tokens()

    assert (report["refreshed"], report["failed"], report["stopped"]) == (1, 1, [])
    item = connection_item(two_sellers, SELLER, "NA")
    assert item["status"] == "ACTIVE" and item["refresh_due_at"] == due_before  # stays due
    assert '"TokenRefreshFailed":[1.0]' in capfd.readouterr().out


def test_an_lwa_outage_leaves_every_connection_due(two_sellers, emulator):
    requests.post(f"{emulator.base_url}/_emulator/faults", json={"operation": "lwa_token", "status": 503,
                                                                 "count": 100}, timeout=5).raise_for_status()
    report = refresh_tokens()
    assert (report["found"], report["refreshed"], report["failed"], report["revoked"]) == (2, 0, 2, 0)
    for seller in (SELLER, OTHER):
        item = connection_item(two_sellers, seller, "NA")
        assert item["status"] == "ACTIVE" and int(item["refresh_due_at"]) <= clock.epoch_seconds()


def test_an_unreadable_message_fails_alone(token_env, capfd):
    from token_refresher.handler import lambda_handler

    records = [{"messageId": "bad", "body": json.dumps({TOKEN_REFRESH_KIND: [{"seller": "x"}]})},
               {"messageId": "good", "body": json.dumps({TOKEN_REFRESH_KIND: []})}]
    with acting_as("token_refresher"):
        answer = lambda_handler({"Records": records}, FakeContext(function_name="token_refresher"))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert "unreadable token_refresh message" in capfd.readouterr().err


# --- the re-authorization digest -------------------------------------------------------------------

def test_the_digest_pages_the_index_and_counts_by_days_left_and_region(token_env, product_clock):
    connections = table(token_env)
    now = clock.now()
    days = [-1] * 2 + [3] * 5 + [10] * 6 + [20] * 9 + [29] * 3 + [40] * 4  # 25 within the notice, 4 beyond
    regions = ("NA", "EU", "FE")
    for number, days_left in enumerate(days):
        seller, region = f"A{number:02d}DIGEST", regions[number % 3]
        due_at = (now + timedelta(days=days_left, hours=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
        connections.put_item(Item={**connection_key(seller, region), "reauth_shard": shard(seller, region),
                                   "reauthorization_due_at": due_at})
    s3 = boto3.client("s3")
    events = boto3.client("events")
    sent: list[dict[str, Any]] = []
    events.meta.events.register("provide-client-params.events.PutEvents",
                                lambda params, **_: sent.extend(params["Entries"]))
    made = calls_of(connections.meta.client)

    digest = ReauthorizationDigest(ConnectionsRepository(connections), s3, "test-data",
                                   EventPublisher(events, "default", "seller-insights.tokens"), 30, page_size=2)
    report = digest.run()

    assert report.as_dict() == {"due": 25, "published": 1, "key": "notices/reauthorization/2026-11-29.jsonl"}
    assert set(made) == {"Query"} and made["Query"] >= 25 // 2  # pages of two, no item reads
    (entry,) = sent
    detail = json.loads(entry["Detail"])
    assert (entry["DetailType"], entry["Source"]) == ("ReauthorizationDigest", "seller-insights.tokens")
    assert detail["by_days_left"] == {"overdue": 2, "0-7": 5, "8-14": 6, "15-30": 12}
    expected_regions = Counter(regions[number % 3] for number, days_left in enumerate(days) if days_left <= 30)
    assert detail["by_region"] == dict(sorted(expected_regions.items()))
    assert (detail["due"], detail["bucket"], detail["key"]) == (25, "test-data", report.key)
    body = s3.get_object(Bucket="test-data", Key=report.key)["Body"].read().decode()
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == 25 and {line["seller_id"] for line in lines} == {
        f"A{number:02d}DIGEST" for number, days_left in enumerate(days) if days_left <= 30}
    assert sorted(Counter(line["days_left"] for line in lines).items()) == [(-1, 2), (3, 5), (10, 6), (20, 9), (29, 3)]


# --- consent verification: the same shape -----------------------------------------------------------

def test_verify_consents_finds_then_the_queue_verifies_once(token_env, emulator):
    from seller_insights.candidates import CandidateRepository
    from tests.support.flows import confirm_consents, connect
    from token_refresher.verification import CONSENT_VERIFICATION_KIND

    for seller, marketplace in ((SELLER, "US"), (OTHER, "DE")):
        assert connect(ConsentClient(), emulator.base_url, seller, marketplace).status == 303  # waits for Amazon
    import os

    from token_refresher.verification import VerificationFinder

    connections = table(token_env)
    made = calls_of(connections.meta.client)
    queue = WorkQueue(boto3.client("sqs"), os.environ["REFRESH_WORK_QUEUE_URL"], CONSENT_VERIFICATION_KIND)
    found = VerificationFinder(CandidateRepository(connections), queue, limit=10).run()
    assert found.as_dict() == {"found": 2, "messages": 1, "limit": 10}
    assert set(made) == {"Query"}  # the finder reads index pages only
    (message,) = boto3.client("sqs").receive_message(QueueUrl=os.environ["REFRESH_WORK_QUEUE_URL"],
                                                     VisibilityTimeout=0)["Messages"]
    items = queue.items_of(json.loads(message["Body"]))
    assert sorted(item["seller_id"] for item in items) == sorted([SELLER, OTHER])
    assert all(set(item) == {"seller_id", "region", "candidate_id"} for item in items)
    queue.send(items[:1])  # another finder run sent one of them again
    before = lwa_stats(emulator.base_url)["refresh_token"]

    report = confirm_consents()  # this run finds both again: five items for two consents

    assert (report["due"], report["verified"], report["skipped"]) == (2, 2, 3)  # each copy costs a read only
    assert lwa_stats(emulator.base_url)["refresh_token"] == before + 2
    for seller, region in ((SELLER, "NA"), (OTHER, "EU")):
        assert connection_item(token_env, seller, region)["status"] == "ACTIVE"
        assert CandidateRepository(table(token_env)).for_seller(seller) == []


def test_a_consent_left_by_the_lwa_bucket_stays_due(token_env, emulator, monkeypatch, product_clock):
    from tests.support.flows import confirm_consents, connect

    monkeypatch.setenv("LWA_REFRESH_RATE", "0.1")
    monkeypatch.setenv("LWA_REFRESH_BURST", "1")
    forget_all()
    for seller, marketplace in ((SELLER, "US"), (OTHER, "DE")):
        assert connect(ConsentClient(), emulator.base_url, seller, marketplace).status == 303

    first = confirm_consents()

    assert (first["due"], first["limit"], first["verified"], first["left"], first["stopped"]) == (
        2, 7, 1, 1, ["lwa_rate"])
    product_clock.advance(10)
    second = confirm_consents()  # found again: it stayed due
    assert (second["due"], second["verified"]) == (1, 1)
