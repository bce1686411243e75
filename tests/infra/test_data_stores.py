"""Stateful resources: buckets, tables, the token key and the LWA client secret."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import by_purpose, resources

pytestmark = pytest.mark.slow

BLOCK_ALL = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}
TABLES = {
    # purpose: (key schema, TTL attribute) as in docs/internal-contracts.md
    "connections": ({"pk": "HASH", "sk": "RANGE"}, "expires_at"),
    "oauth_state": ({"state_hash": "HASH"}, "expires_at"),
    "idempotency": ({"id": "HASH"}, "expiration"),
    "audit": ({"id": "HASH"}, "expires_at"),
}


def _key_arn(raw: dict[str, Any]) -> dict[str, Any]:
    key_id, _ = by_purpose(raw, "token_key")
    return {"Fn::GetAtt": [key_id, "Arn"]}


def test_every_bucket_blocks_public_access_and_is_versioned(raw: dict[str, Any]) -> None:
    buckets = resources(raw, "AWS::S3::Bucket")
    assert len(buckets) == 2
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == BLOCK_ALL, name
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert "ObjectLockConfiguration" not in props, name


def test_every_bucket_denies_insecure_transport(raw: dict[str, Any]) -> None:
    policies = {p["Properties"]["Bucket"]["Ref"]: p for p in resources(raw, "AWS::S3::BucketPolicy").values()}
    for name in resources(raw, "AWS::S3::Bucket"):
        statements = policies[name]["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny"
            and s["Principal"] == {"AWS": "*"}
            and s["Action"] == "s3:*"
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ), name


def test_data_bucket_uses_the_token_key_and_logs_to_the_log_bucket(raw: dict[str, Any]) -> None:
    _, data = by_purpose(raw, "data")
    logs_id, access_logs = by_purpose(raw, "access_logs")
    rule = data["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": _key_arn(raw)}
    assert rule["BucketKeyEnabled"] is True
    assert data["Properties"]["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
    # S3 server access logging cannot deliver into an SSE-KMS bucket.
    log_rule = access_logs["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert log_rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_data_bucket_lifecycle(raw: dict[str, Any]) -> None:
    _, data = by_purpose(raw, "data")
    rules = data["Properties"]["LifecycleConfiguration"]["Rules"]
    assert all(rule["Status"] == "Enabled" for rule in rules)
    assert any(rule.get("Prefix") == "exports/" and rule.get("ExpirationInDays") == 7 for rule in rules)
    assert any(rule.get("NoncurrentVersionExpiration") == {"NoncurrentDays": 1} for rule in rules)
    assert any(rule.get("ExpiredObjectDeleteMarker") is True for rule in rules)
    assert any(rule.get("AbortIncompleteMultipartUpload") == {"DaysAfterInitiation": 1} for rule in rules)


def test_access_log_bucket_keeps_logs_a_year(raw: dict[str, Any]) -> None:
    _, access_logs = by_purpose(raw, "access_logs")
    rules = access_logs["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(rule.get("ExpirationInDays") == 365 for rule in rules)
    assert any(rule.get("AbortIncompleteMultipartUpload") == {"DaysAfterInitiation": 1} for rule in rules)


@pytest.mark.parametrize("purpose", sorted(TABLES))
def test_tables_follow_the_contract(raw: dict[str, Any], stage: str, purpose: str) -> None:
    key_schema, ttl_attribute = TABLES[purpose]
    _, table = by_purpose(raw, purpose)
    props = table["Properties"]
    assert {k["AttributeName"]: k["KeyType"] for k in props["KeySchema"]} == key_schema
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {"KMSMasterKeyId": _key_arn(raw), "SSEEnabled": True, "SSEType": "KMS"}
    assert props["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True,
        "RecoveryPeriodInDays": 2,
    }
    assert props["TimeToLiveSpecification"] == {"AttributeName": ttl_attribute, "Enabled": True}
    if stage == "prod" or purpose == "audit":  # audit records outlive the stack's data in every stage
        assert props["DeletionProtectionEnabled"] is True
        assert table["DeletionPolicy"] == "Retain"
    else:
        assert not props.get("DeletionProtectionEnabled", False)


def test_keys_rotate(raw: dict[str, Any]) -> None:
    keys = resources(raw, "AWS::KMS::Key")
    assert keys
    assert all(key["Properties"]["EnableKeyRotation"] is True for key in keys.values())
    assert all("Principal" not in s or s["Principal"] != "*" for k in keys.values() for s in _key_statements(k))


def _key_statements(key: dict[str, Any]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = key["Properties"]["KeyPolicy"]["Statement"]
    return statements


def test_stateful_resources_are_retained_in_prod(templates: dict[str, dict[str, Any]]) -> None:
    stateful = ("token_key", "notifications_key", "events_key", "connections", "oauth_state", "idempotency", "data",
                "lwa_client")
    for purpose in stateful:
        assert by_purpose(templates["prod"], purpose)[1]["DeletionPolicy"] == "Retain", purpose
        assert by_purpose(templates["dev"], purpose)[1]["DeletionPolicy"] == "Delete", purpose
    # Data-request records and deletion receipts are kept 25 months whatever the stage.
    for template in templates.values():
        _, audit = by_purpose(template, "audit")
        assert (audit["DeletionPolicy"], audit["UpdateReplacePolicy"]) == ("Retain", "Retain")
        assert audit["Properties"]["DeletionProtectionEnabled"] is True


def test_lwa_client_secret_is_a_generated_placeholder(raw: dict[str, Any]) -> None:
    _, secret = by_purpose(raw, "lwa_client")
    props = secret["Properties"]
    assert "SecretString" not in props
    assert props["KmsKeyId"] == _key_arn(raw)
    generator = props["GenerateSecretString"]
    assert generator["GenerateStringKey"] == "client_secret"
    assert generator["SecretStringTemplate"] == '{"client_id": "REPLACE_ME", "application_id": "REPLACE_ME"}'


def test_every_contract_purpose_is_tagged_once(raw: dict[str, Any]) -> None:
    expected = {
        "connections": "AWS::DynamoDB::Table",
        "oauth_state": "AWS::DynamoDB::Table",
        "idempotency": "AWS::DynamoDB::Table",
        "data": "AWS::S3::Bucket",
        "access_logs": "AWS::S3::Bucket",
        "token_key": "AWS::KMS::Key",
        "lwa_client": "AWS::SecretsManager::Secret",
        "alarms": "AWS::SNS::Topic",
        "notifications": "AWS::SQS::Queue",
        "notifications_dlq": "AWS::SQS::Queue",
        "notifications_key": "AWS::KMS::Key",
        "token_events_dlq": "AWS::SQS::Queue",
        "events_key": "AWS::KMS::Key",
        "operator_notices": "AWS::SNS::Topic",
        "audit": "AWS::DynamoDB::Table",
        "retention_events_dlq": "AWS::SQS::Queue",
    }
    for purpose, resource_type in expected.items():
        assert by_purpose(raw, purpose)[1]["Type"] == resource_type, purpose
