"""The report fetcher driven as its queue and schedules would drive it, against moto in-process and the Amazon
emulator: one poll of the job queue, the token refresher's sweep of due connections, both clocks advanced."""

from __future__ import annotations

from typing import Any

import boto3
import requests

from seller_insights import clock
from seller_insights.repositories import connection_key
from tests.support.api import FakeContext
from tests.support.iam import acting_as
from tests.support.resources import Resources
from tests.support.tokens import provider

TABLE = "test-connections"


def invoke(event: dict[str, Any]) -> Any:
    from report_fetcher.handler import lambda_handler

    with acting_as("report_fetcher"):
        return lambda_handler(event, FakeContext(function_name="report_fetcher"))


def deliver(queue: str) -> int:
    """One poll of the job queue, as the event source mapping would do it; the failed stay."""
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    if not messages:
        return 0
    result = invoke({"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]})
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    for message in messages:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


def advance(emulator: Any, seconds: float) -> None:
    clock.get_clock().advance(seconds)
    emulator.advance_clock(seconds)


def refresher_sweep(resources: Resources, emulator: Any, seller: str, region: str = "NA") -> bool:
    """The token refresher's run for one seller: renew when the connection is due (True when renewed)."""
    connection = boto3.resource("dynamodb").Table(TABLE).get_item(Key=connection_key(seller, region))["Item"]
    if int(connection.get("refresh_due_at", 2**40)) > clock.epoch_seconds():
        return False
    return provider(resources, emulator.base_url).refresh(seller, region) is not None


def items(seller: str, prefix: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(TABLE)
    found = table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"SELLER#{seller}"})
    return [i for i in found["Items"] if i["sk"].startswith(prefix)]


def stats(emulator: Any) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()
    return answer


def control(emulator: Any, path: str, body: dict[str, Any]) -> Any:
    answer = requests.post(f"{emulator.base_url}/_emulator/{path}", json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()
