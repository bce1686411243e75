"""The export worker in the synthesized template: its function, its data_exports queue (and DLQ), the
event source, the alarms and its permissions (infra/constructs/data_exports.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.app import function_environments
from tests.infra.conftest import by_purpose, invokes, resources

pytestmark = pytest.mark.slow

WORKER = "data_exports.handler.lambda_handler"
DATA_REQUESTS = "data_requests.handler.lambda_handler"


def _arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _function(raw: dict[str, Any], handler: str) -> tuple[str, dict[str, Any]]:
    [(function_id, function)] = [(i, f) for i, f in resources(raw, "AWS::Lambda::Function").items()
                                 if f["Properties"].get("Handler") == handler]
    return function_id, function


def _statements(raw: dict[str, Any], handler: str) -> list[dict[str, Any]]:
    _, function = _function(raw, handler)
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    found: list[dict[str, Any]] = []
    for policy in resources(raw, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _by_action(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            found.setdefault(action, set()).update(json.dumps(t, sort_keys=True) for t in targets)
    return found


def test_the_worker_has_lambdas_longest_timeout_and_its_own_environment(raw: dict[str, Any]) -> None:
    _, function = _function(raw, WORKER)
    assert (function["Properties"]["Timeout"], function["Properties"]["MemorySize"]) == (900, 1769)
    variables = function_environments(raw)[WORKER]
    assert {"CONNECTIONS_TABLE", "AUDIT_TABLE", "DATA_BUCKET", "SELLER_KEY_SECRET_ID"} <= set(variables)
    assert variables["POWERTOOLS_SERVICE_NAME"] == "data_exports"
    queue_id, _ = by_purpose(raw, "data_exports")
    assert function_environments(raw)[DATA_REQUESTS]["EXPORT_QUEUE_URL"] == {"Ref": queue_id}


def test_the_queue_is_encrypted_with_its_own_key_dead_lettered_and_kept_14_days(raw: dict[str, Any]) -> None:
    from data_exports.worker import LAST_RECEIVE

    key_id, key = by_purpose(raw, "data_exports_key")
    assert key_id != by_purpose(raw, "token_key")[0]
    assert key["Properties"]["EnableKeyRotation"] is True
    queue_id, queue = by_purpose(raw, "data_exports")
    dlq_id, dlq = by_purpose(raw, "data_exports_dlq")
    for props in (queue["Properties"], dlq["Properties"]):
        assert props["KmsMasterKeyId"] == _arn(key_id)
        assert props["MessageRetentionPeriod"] == 14 * 86400
    # The worker's last receive (LAST_RECEIVE) is the one after which SQS moves the message to the DLQ.
    redrive = {"deadLetterTargetArn": _arn(dlq_id), "maxReceiveCount": LAST_RECEIVE}
    assert queue["Properties"]["RedrivePolicy"] == redrive
    assert queue["Properties"]["VisibilityTimeout"] == 6 * 900
    function_id, _ = _function(raw, WORKER)
    [mapping] = [m["Properties"] for m in resources(raw, "AWS::Lambda::EventSourceMapping").values()
                 if m["Properties"]["EventSourceArn"] == _arn(queue_id)]
    assert invokes(raw, mapping["FunctionName"], function_id)
    assert (mapping["BatchSize"], mapping["ScalingConfig"], mapping["FunctionResponseTypes"]) == (
        1, {"MaximumConcurrency": 2}, ["ReportBatchItemFailures"])
    alarms = [a["Properties"] for a in resources(raw, "AWS::CloudWatch::Alarm").values()]
    assert any(a.get("Dimensions") == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
               for a in alarms)
    assert any(a.get("MetricName") == "Errors"
               and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}] for a in alarms)


def test_the_worker_reads_reports_and_writes_exports_only(raw: dict[str, Any]) -> None:
    by_action = _by_action(_statements(raw, WORKER))
    data_id, _ = by_purpose(raw, "data")
    sellers = json.dumps({"Fn::Join": ["", [_arn(data_id), "/sellers/*"]]}, sort_keys=True)
    exports = json.dumps({"Fn::Join": ["", [_arn(data_id), "/exports/*"]]}, sort_keys=True)
    assert by_action["s3:GetObject"] == {sellers, exports}
    for action in ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"):
        assert by_action[action] == {exports}, action
    assert {a for a in by_action if a.startswith("s3:")} == {
        "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
    assert not any(a in by_action for a in ("dynamodb:Scan", "s3:DeleteObject", "s3:ListBucket"))
    audit_id, _ = by_purpose(raw, "audit")
    assert json.dumps(_arn(audit_id), sort_keys=True) in by_action["dynamodb:UpdateItem"]
    assert json.dumps(_arn(audit_id), sort_keys=True) not in by_action["dynamodb:PutItem"]
    queue_id, _ = by_purpose(raw, "data_exports")
    assert by_action["sqs:ReceiveMessage"] == {json.dumps(_arn(queue_id), sort_keys=True)}
    assert "sqs:SendMessage" not in by_action
    assert "kms:EncryptionContext" not in json.dumps(_statements(raw, WORKER))
