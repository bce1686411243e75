"""The shared sweep shape: due items from a sparse index in rotating shard order, work messages in batches."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from seller_insights.fanout import FanOutFailed, WorkQueue, due_items, rotating_shards
from seller_insights.repositories import SHARDS
from tests.support.resources import TABLES


@pytest.fixture
def aws() -> Any:
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        spec = TABLES["connections"]
        session.client("dynamodb").create_table(
            TableName="connections", KeySchema=spec["KeySchema"], AttributeDefinitions=spec["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST", GlobalSecondaryIndexes=spec["GlobalSecondaryIndexes"])
        yield session


def test_every_shard_once_starting_where_the_period_says() -> None:
    first = rotating_shards(0, 300)
    assert sorted(first, key=int) == [str(n) for n in range(SHARDS)]
    assert first[0] == "0"
    assert rotating_shards(300, 300)[0] == "1"
    assert rotating_shards(300 * SHARDS, 300)[0] == "0"
    assert rotating_shards(299, 300) == first


def test_due_items_in_shard_order_due_only_and_bounded(aws: Any) -> None:
    table = aws.resource("dynamodb").Table("connections")
    for shard in range(3):
        for n in range(5):
            table.put_item(Item={"pk": f"SELLER#{shard}-{n}", "sk": "CONN#NA", "refresh_shard": str(shard),
                                 "refresh_due_at": 100 + n})
    found = list(due_items(table, index="by_refresh_due", shard_attribute="refresh_shard",
                           due_attribute="refresh_due_at", until=102, shards=["2", "0", "1"]))
    assert [item["pk"] for item in found] == [f"SELLER#{s}-{n}" for s in (2, 0, 1) for n in range(3)]

    bounded = list(due_items(table, index="by_refresh_due", shard_attribute="refresh_shard",
                             due_attribute="refresh_due_at", until=200, shards=["1", "2", "0"], limit=7))
    assert [item["pk"] for item in bounded] == [f"SELLER#1-{n}" for n in range(5)] + ["SELLER#2-0", "SELLER#2-1"]


def test_items_packed_into_messages_and_batches(aws: Any) -> None:
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    queue = WorkQueue(sqs, url, "refresh", per_message=3)
    assert queue.send([{"n": n} for n in range(31)]) == 11
    bodies = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        if not answer.get("Messages"):
            break
        for message in answer["Messages"]:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    items = sorted(item["n"] for body in bodies for item in queue.items_of(body))
    assert items == list(range(31))
    assert max(len(queue.items_of(body)) for body in bodies) == 3
    assert queue.send([]) == 0


def test_refused_entries_are_sent_again_then_reported() -> None:
    class FlakySqs:
        def __init__(self, refusals: int) -> None:
            self.refusals = refusals
            self.sent: list[str] = []

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            failed = []
            for entry in Entries:
                if self.refusals:
                    self.refusals -= 1
                    failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"})
                else:
                    self.sent.append(entry["MessageBody"])
            return {"Successful": [], "Failed": failed}

    recovering = FlakySqs(refusals=2)
    assert WorkQueue(recovering, "url", "purge", per_message=1).send([{"n": n} for n in range(4)]) == 4  # type: ignore[arg-type]
    assert len(recovering.sent) == 4

    failing = FlakySqs(refusals=100)
    with pytest.raises(FanOutFailed, match="refused 2 of 2 purge messages"):
        WorkQueue(failing, "url", "purge", per_message=1).send([{"n": 1}, {"n": 2}])  # type: ignore[arg-type]


def test_a_message_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not a refresh message"):
        WorkQueue(None, "url", "refresh").items_of({"jobs": []})  # type: ignore[arg-type]
