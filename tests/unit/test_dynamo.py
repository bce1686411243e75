"""The DynamoDB helpers: failed conditions as domain errors, paged queries, bounded batch retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from moto import mock_aws

from seller_insights import aws, dynamo
from seller_insights.containers import forget_all
from seller_insights.dynamo import Batches, applied, condition_checked, conditional
from seller_insights.errors import ConditionFailed, SellerInsightsError, TransactionCancelled, UnprocessedRequests


def client_error(code: str, operation: str = "PutItem", **extra: Any) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "from the service"}, **extra}
    return ClientError(response, operation)


def cancelled(*codes: str) -> ClientError:
    return client_error("TransactionCanceledException", "TransactWriteItems",
                        CancellationReasons=[{"Code": code} for code in codes])


def raising(error: Exception) -> Any:
    def write() -> Any:
        raise error
    return write


# --- conditional writes ------------------------------------------------------------------------------------


def test_a_failed_condition_becomes_a_domain_error() -> None:
    with pytest.raises(ConditionFailed) as failed, condition_checked():
        raising(client_error("ConditionalCheckFailedException"))()
    assert isinstance(failed.value, SellerInsightsError)
    assert not isinstance(failed.value, ClientError)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


def test_a_cancelled_transaction_names_the_actions_whose_condition_failed() -> None:
    with pytest.raises(TransactionCancelled) as failed, condition_checked():
        raising(cancelled("None", "ConditionalCheckFailed", "None"))()
    assert failed.value.reasons == ("None", "ConditionalCheckFailed", "None")
    assert failed.value.failed(1)
    assert not failed.value.failed(0) and not failed.value.failed(2) and not failed.value.failed(7)
    assert isinstance(failed.value, ConditionFailed)


@pytest.mark.parametrize("error", [
    client_error("ProvisionedThroughputExceededException"),
    client_error("ValidationException"),
    cancelled("None", "TransactionConflict"),  # cancelled, but no condition failed: not ours to hide
])
def test_every_other_error_passes_unchanged(error: ClientError) -> None:
    with pytest.raises(ClientError) as raised, condition_checked():
        raising(error)()
    assert raised.value is error


def test_applied_answers_whether_the_write_happened() -> None:
    assert applied(lambda: {"Attributes": {}}) is True
    assert applied(raising(client_error("ConditionalCheckFailedException"))) is False
    assert applied(raising(cancelled("ConditionalCheckFailed"))) is False
    with pytest.raises(ClientError):
        applied(raising(client_error("InternalServerError")))


def test_conditional_gives_the_answer_or_none() -> None:
    assert conditional(lambda: {"Attributes": {"n": 1}}) == {"Attributes": {"n": 1}}
    assert conditional(raising(client_error("ConditionalCheckFailedException", "UpdateItem"))) is None


# --- batches -----------------------------------------------------------------------------------------------


class RefusingClient:
    """Processes `accept` requests of each call and returns the rest as unprocessed."""

    def __init__(self, accept: list[int]) -> None:
        self.accept = accept
        self.calls: list[int] = []
        self.written: list[dict[str, Any]] = []

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        [(name, requests)] = RequestItems.items()
        self.calls.append(len(requests))
        taken = self.accept.pop(0) if self.accept else len(requests)
        self.written += requests[:taken]
        return {"UnprocessedItems": {name: requests[taken:]} if requests[taken:] else {}}

    def batch_get_item(self, RequestItems: dict[str, dict[str, Any]]) -> dict[str, Any]:
        [(name, request)] = RequestItems.items()
        keys = request["Keys"]
        self.calls.append(len(keys))
        taken = self.accept.pop(0) if self.accept else len(keys)
        answer: dict[str, Any] = {"Responses": {name: [dict(key, found=True) for key in keys[:taken]]}}
        if keys[taken:]:
            answer["UnprocessedKeys"] = {name: {**request, "Keys": keys[taken:]}}
        return answer


def keys(count: int) -> list[dict[str, str]]:
    return [{"pk": f"P{number}", "sk": "S"} for number in range(count)]


def test_batch_writes_go_in_chunks_of_25_and_retry_what_was_left_with_growing_pauses() -> None:
    client: Any = RefusingClient(accept=[10, 5, 15])
    sleeps: list[float] = []
    assert Batches(client, sleep=sleeps.append).delete("t", keys(30)) == 30
    assert client.calls == [25, 15, 10, 5]  # first chunk: 25 -> 15 left -> 10 left; then the 5 of chunk two
    assert sleeps == [0.05, 0.1]
    assert sorted(r["DeleteRequest"]["Key"]["pk"] for r in client.written) == sorted(k["pk"] for k in keys(30))


def test_batch_retries_are_bounded_and_then_fail_as_a_domain_error() -> None:
    client: Any = RefusingClient(accept=[0] * 100)
    sleeps: list[float] = []
    batches = Batches(client, sleep=sleeps.append, attempts=6, first_delay=0.5, max_delay=2.0)
    with pytest.raises(UnprocessedRequests) as failed:
        batches.put("t", [{"pk": "P", "sk": "S"}])
    assert client.calls == [1] * 6
    assert sleeps == [0.5, 1.0, 2.0, 2.0, 2.0]  # doubling, capped
    assert isinstance(failed.value, SellerInsightsError) and failed.value.attempts == 6


def test_batch_gets_collect_every_page_of_answers() -> None:
    client: Any = RefusingClient(accept=[60, 40, 0, 20])
    sleeps: list[float] = []
    found = Batches(client, sleep=sleeps.append).get("t", keys(120), projection="pk, sk")
    assert client.calls == [100, 40, 20, 20]  # chunk one: 60 + 40; chunk two: 0, then 20
    assert sleeps == [0.05, 0.05]  # each chunk starts its backoff anew
    assert sorted(item["pk"] for item in found) == sorted(k["pk"] for k in keys(120))


# --- paged queries -----------------------------------------------------------------------------------------


@pytest.fixture
def moto_table() -> Iterator[Any]:
    with mock_aws():
        forget_all()
        boto3.client("dynamodb").create_table(
            TableName="items", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "N"}])
        yield aws.table("items")
        forget_all()


def test_a_query_follows_every_page_with_plain_python_values(moto_table: Any) -> None:
    for number in range(7):
        moto_table.put_item(Item={"pk": "P", "sk": number, "payload": {"n": number}})
    moto_table.put_item(Item={"pk": "OTHER", "sk": 1})

    items = list(dynamo.query(moto_table, KeyConditionExpression=Key("pk").eq("P"), Limit=2))  # 4 pages

    assert [int(item["sk"]) for item in items] == list(range(7))
    assert items[3]["payload"] == {"n": 3}  # deserialised, as Table.query gives them


def test_one_session_serves_every_client_and_table_of_a_container(moto_table: Any) -> None:
    assert aws.table("items") is moto_table
    assert aws.client("sqs") is aws.client("sqs")
    assert aws.table("other").meta.client is moto_table.meta.client  # one resource for every table
    session = aws.session()
    forget_all()
    assert aws.session() is not session
