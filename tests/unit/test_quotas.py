"""The token buckets (seller_insights.quotas): refill arithmetic, scopes, the answer under contention.

The buckets' only seam is a DynamoDB table with conditional writes, so these run on moto in-process (no
HTTP). Contention is staged by a table that lets another container's write land first. A pure
`refill(tokens, updated_at, now, rate)` function in quotas.py would let the arithmetic be tested alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from seller_insights.clock import FixedClock
from seller_insights.quotas import OPERATION_RATES, QuotaBuckets, Rate


@pytest.fixture(scope="module")
def table() -> Iterator[Any]:
    """One table for the module: each test takes buckets of its own (scope, sellers of its own)."""
    with mock_aws():
        db = boto3.resource("dynamodb", region_name="us-east-1")
        yield db.create_table(
            TableName="quotas", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])


@pytest.fixture
def scope(request: pytest.FixtureRequest, fixed_clock: FixedClock) -> str:
    return f"{request.node.name}#NA#getReport"


class Contended:
    """A table where another container's write lands just before each of ours, `times` times."""

    def __init__(self, table: Any, times: int) -> None:
        self._table = table
        self.times = times
        self.attempts = 0

    def get_item(self, **kwargs: Any) -> Any:
        return self._table.get_item(**kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.times:
            self.times -= 1
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException", "Message": "lost"}}, "PutItem")
        return self._table.put_item(**kwargs)


def test_a_bucket_refills_at_its_rate_and_never_above_its_burst(
    table: Any, scope: str, fixed_clock: FixedClock
) -> None:
    buckets, rate = QuotaBuckets(table), Rate(per_second=2.0, burst=3)
    assert [buckets.take(scope, rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(scope, rate) == pytest.approx(0.5)  # one token every half second

    fixed_clock.advance(0.25)
    assert buckets.take(scope, rate) == pytest.approx(0.25)  # half a token is there: wait for the rest

    fixed_clock.advance(3600)  # an idle hour refills to the burst, not to 7,200 tokens
    assert [buckets.take(scope, rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(scope, rate) > 0


def test_each_operation_of_each_seller_and_region_has_its_own_bucket(table: Any, scope: str) -> None:
    buckets = QuotaBuckets(table)
    burst = OPERATION_RATES["createReport"].burst
    assert [buckets.take_operation("A1SELLER01", "NA", "createReport") for _ in range(burst)] == [0.0] * burst
    assert buckets.take_operation("A1SELLER01", "NA", "createReport") == pytest.approx(
        1 / OPERATION_RATES["createReport"].per_second)

    assert buckets.take_operation("A1SELLER01", "EU", "createReport") == 0.0
    assert buckets.take_operation("A1SELLER02", "NA", "createReport") == 0.0
    assert buckets.take_operation("A1SELLER01", "NA", "getReport") == 0.0


def test_a_lost_race_looks_again_and_takes_the_next_token(table: Any, scope: str) -> None:
    contended = Contended(table, times=2)

    assert QuotaBuckets(contended).take(scope, Rate(1.0, 5)) == 0.0
    assert contended.attempts == 3


def test_heavy_contention_answers_try_again_in_a_second(table: Any, scope: str) -> None:
    contended = Contended(table, times=100)

    assert QuotaBuckets(contended).take(scope, Rate(1.0, 5)) == 1.0
    assert contended.attempts == 5  # bounded: no container spins on a hot bucket


def test_other_errors_are_not_taken_for_contention(table: Any, scope: str) -> None:
    class Throttled(Contended):
        def put_item(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                              "PutItem")

    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        QuotaBuckets(Throttled(table, 0)).take(scope, Rate(1.0, 5))


def test_a_clock_that_stands_still_or_goes_back_refills_nothing(
    table: Any, scope: str, fixed_clock: FixedClock
) -> None:
    buckets, rate = QuotaBuckets(table), Rate(per_second=1.0, burst=1)
    assert buckets.take(scope, rate) == 0.0
    # Another container's clock is a little ahead: its write is "in the future" for us.
    item = table.get_item(Key={"pk": f"QUOTA#{scope}", "sk": "BUCKET"})["Item"]
    table.put_item(Item={**item, "updated_at": int(item["updated_at"]) + 500})

    assert buckets.take(scope, rate) == pytest.approx(1.0)
