"""`ops destroy-check` (what `make destroy` runs first) against moto in-process: it refuses while the
connections table or the data bucket hold seller data, and with --purge-first requests the missing deletions."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops.api import OpsError
from ops.destroy_guard import REFUSED, check
from ops.fleet import Fleet, Resource

REGION = "eu-west-1"
TABLE, BUCKET = "si-test-connections", "si-test-data"
SELLERS = {"A1ACTIVESELLER01": "ACTIVE", "A2REVOKEDSELLER2": "REVOKED", "A3DELETIONREQ003": "DELETION_REQUESTED",
           "A4TOKENSREMOVED4": "TOKENS_REMOVED"}
PURGE_DATES = {"A2REVOKEDSELLER2": "2026-12-20T00:00:00Z", "A3DELETIONREQ003": "2026-12-27T00:00:00Z"}


class Stack:
    def __init__(self) -> None:
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                              {"AttributeName": "sk", "KeyType": "RANGE"}],
                                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                         {"AttributeName": "sk", "AttributeType": "S"}])
        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.fleet = Fleet("SellerInsights-test", REGION, boto3.session.Session(region_name=REGION), [
            Resource("Connections", "AWS::DynamoDB::Table", TABLE, "connections"),
            Resource("DataBucket", "AWS::S3::Bucket", BUCKET, "data"),
        ])

    def connection(self, seller: str, status: str, purge_after: str | None = None) -> None:
        item = {"pk": {"S": f"SELLER#{seller}"}, "sk": {"S": "CONN#NA"}, "status": {"S": status}}
        if purge_after:
            item["purge_after"] = {"S": purge_after}
        self.dynamodb.put_item(TableName=TABLE, Item=item)
        self.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": f"SELLER#{seller}"}, "sk": {"S": "PROFILE"}})

    def purge(self) -> None:
        """What the retention sweeper leaves: no seller partitions, no object versions under sellers/."""
        for item in self.dynamodb.scan(TableName=TABLE)["Items"]:
            self.dynamodb.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})
        for version in self.s3.list_object_versions(Bucket=BUCKET).get("Versions", []):
            self.s3.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield Stack()


def _fill(stack: Stack) -> None:
    for seller, status in SELLERS.items():
        stack.connection(seller, status, PURGE_DATES.get(seller))
    stack.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "CANDIDATE#A5WAITINGCONSENT"}, "sk": {"S": "NA"}})
    for day in ("2026-11-01", "2026-11-02"):
        stack.s3.put_object(Bucket=BUCKET, Key=f"sellers/k1/NA/T/{day}.tsv", Body=b"report")  # 2 versions
    stack.s3.put_object(Bucket=BUCKET, Key="sellers/k1/NA/T/2026-11-01.tsv", Body=b"again")
    stack.s3.put_object(Bucket=BUCKET, Key="exports/k1/r.zip", Body=b"not counted: expires in 7 days")


def _no_seller_id(text: str) -> None:
    assert not [seller for seller in [*SELLERS, "A5WAITINGCONSENT", "k1"] if seller in text], text


def test_an_empty_stack_may_be_destroyed(stack: Stack) -> None:
    out = io.StringIO()
    stack.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "LWA#bucket"}, "sk": {"S": "STATE"}})  # app-wide
    stack.s3.put_object(Bucket=BUCKET, Key="notices/digest.json", Body=b"{}")
    assert check(stack.fleet, out) == 0
    assert "holds no seller data: it may be destroyed" in out.getvalue()


def test_seller_data_refuses_with_counts_only(stack: Stack) -> None:
    _fill(stack)
    out = io.StringIO()
    assert check(stack.fleet, out) == REFUSED
    text = out.getvalue()
    assert ("still holds seller data: 4 sellers, 2 sellers purge pending, 2 sellers without deletion request, "
            "1 pending consents, 3 report object versions") in text
    assert "PURGE_FIRST=1" in text
    _no_seller_id(text)


def test_objects_alone_refuse_too(stack: Stack) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key="sellers/k1/EU/T/2026-11-01.tsv", Body=b"left behind")
    stack.s3.delete_object(Bucket=BUCKET, Key="sellers/k1/EU/T/2026-11-01.tsv")  # a delete marker; the data stays
    out = io.StringIO()
    assert check(stack.fleet, out) == REFUSED
    assert "1 report object versions" in out.getvalue()


def test_purge_first_requests_the_missing_deletions_and_says_when_to_come_back(stack: Stack) -> None:
    _fill(stack)
    asked: list[str] = []

    def request_deletion(seller: str) -> dict[str, Any]:
        asked.append(seller)
        if seller == "A4TOKENSREMOVED4":
            raise OpsError(f"HTTP 409: the seller {seller}'s connections changed", exit_code=4)
        stack.connection(seller, "DELETION_REQUESTED", "2027-01-02T12:00:00Z")
        return {"purge_after": "2027-01-02T12:00:00Z", "connections": 1, "pending_consents_destroyed": 0}

    out = io.StringIO()
    assert check(stack.fleet, out, request_deletion=request_deletion) == REFUSED
    assert sorted(asked) == ["A1ACTIVESELLER01", "A4TOKENSREMOVED4"]  # not those with a purge already due
    text = out.getvalue()
    assert "Deletion requested for 1 seller(s), 1 failed (run again); 2 already had a purge due." in text
    assert "purges the last of them on its daily run after 2027-01-02T12:00:00Z" in text
    assert "Keep the stack running until then" in text
    _no_seller_id(text)

    # Run again: only the failed one is asked for; once the sweeper purged everything, destroy may go on.
    asked.clear()
    assert check(stack.fleet, io.StringIO(), request_deletion=request_deletion) == REFUSED
    assert asked == ["A4TOKENSREMOVED4"]
    stack.purge()
    out = io.StringIO()
    assert check(stack.fleet, out, request_deletion=request_deletion) == 0
    assert "it may be destroyed" in out.getvalue()


def test_a_table_it_cannot_read_is_an_error_not_a_pass(stack: Stack) -> None:
    stack.dynamodb.delete_table(TableName=TABLE)
    with pytest.raises(OpsError, match="cannot count the stack's seller data") as error:
        check(stack.fleet, io.StringIO())
    assert error.value.exit_code == 3
