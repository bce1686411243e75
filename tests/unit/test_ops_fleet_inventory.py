"""ops/fleet.py's deployed path against moto's CloudFormation in-process: the stack's template (purpose tags)
and its resources (physical ids) make the inventory the fleet commands work from; a stack that does not
exist is a clear error."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from ops.api import OpsError
from ops.fleet import Fleet

TEMPLATE = {
    "Resources": {
        "JobsDlq": {"Type": "AWS::SQS::Queue", "Properties": {
            "Tags": [{"Key": "seller-insights:purpose", "Value": "report_jobs_dlq"}]}},
        "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {
            "Tags": [{"Key": "seller-insights:purpose", "Value": "report_jobs"}],
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["JobsDlq", "Arn"]}, "maxReceiveCount": 5}}},
        "Connections": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "Tags": [{"Key": "seller-insights:purpose", "Value": "connections"}]}},
        "Untagged": {"Type": "AWS::SQS::Queue"},
    },
}


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_PROFILE", "SELLER_INSIGHTS_LOCAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("cloudformation", region_name="eu-west-1").create_stack(
            StackName="SellerInsights-prod", TemplateBody=json.dumps(TEMPLATE))
        yield


def test_the_deployed_inventory_names_each_resource_by_purpose(deployed: None) -> None:
    fleet = Fleet.from_args(local=None, stage="prod", stack=None, region="eu-west-1", profile=None)

    assert (fleet.stack_name, fleet.region, fleet.local_api) == ("SellerInsights-prod", "eu-west-1", None)
    queues = fleet.queues()
    assert set(queues) == {"report_jobs_dlq", "report_jobs", "Untagged"}
    sqs = fleet.client("sqs")
    assert sqs.get_queue_attributes(QueueUrl=fleet.queue_url("report_jobs"), AttributeNames=["QueueArn"])
    assert [fleet.table("connections")] == boto3.client("dynamodb", region_name="eu-west-1").list_tables()["TableNames"]
    with pytest.raises(OpsError, match="0 resources with purpose 'notifications'"):
        fleet.queue_url("notifications")


def test_a_missing_stack_says_what_to_check(deployed: None) -> None:
    with pytest.raises(OpsError, match="--stage/--stack") as refused:
        Fleet.from_args(local=None, stage="nope", stack=None, region="eu-west-1", profile=None)
    assert refused.value.exit_code == 3
