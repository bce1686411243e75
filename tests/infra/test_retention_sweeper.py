"""Retention and data rights (docs/internal-contracts.md, issue 5): the sweep-retention schedule, the
retention_sweeper and data_requests functions (environment, size, grants), the audit table, the
by_purge_due index, the alarms and the MFA-only ops role for the /admin routes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.app import function_environments, load_cdk_context
from infra.config import StageConfig
from tests.infra.conftest import by_purpose, invokes, resources

pytestmark = pytest.mark.slow

SWEEPER = "retention_sweeper.handler.lambda_handler"
DATA_REQUESTS = "data_requests.handler.lambda_handler"
COMMON_ENV = {"STAGE", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL", "SELLER_KEY_SECRET_ID"}
STORES_ENV = {"CONNECTIONS_TABLE", "AUDIT_TABLE", "DATA_BUCKET"}
SWEEPER_ENV = COMMON_ENV | STORES_ENV | {"RETENTION_PURGES_QUEUE_URL", "PURGE_FIND_LIMIT"}
DATA_REQUESTS_ENV = COMMON_ENV | STORES_ENV | {"PURGE_AFTER_DAYS", "EXPORT_QUEUE_URL"}
UNKEYED = ("dynamodb:Scan", "dynamodb:PartiQLSelect", "dynamodb:ExportTableToPointInTime")
MFA_KEY = "aws:MultiFactorAuthPresent"
# Every action of the OpsSupportRole, in one place (whoever adds an ops command adds its actions here).
OPS_ROLE_ACTIONS = {
    "execute-api:Invoke",  # the /admin data-request routes (ops show/export/delete/...)
    # ops recover-secret: the notifications DLQ, the LWA client secret, their keys (via SQS / Secrets Manager)
    "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage",
    "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
    # ops status: the fleet census, queue depths, the LWA secret's metadata
    "dynamodb:Query", "dynamodb:BatchGetItem", "sqs:GetQueueAttributes", "secretsmanager:DescribeSecret",
    "secretsmanager:ListSecretVersionIds",
    # ops redrive
    "sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks", "sqs:SendMessage",
    # ops incident (infra/constructs/incident_response.py)
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem",
    "dynamodb:Scan", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey",
    "events:DescribeRule", "events:DisableRule", "events:EnableRule", "lambda:InvokeFunction",
}
ADMIN_ROUTE_SUFFIXES = {
    "/*/GET/admin/sellers/*",
    "/*/PATCH/admin/sellers/*",
    "/*/POST/admin/sellers/*/export",
    "/*/GET/admin/sellers/*/export/*",
    "/*/POST/admin/sellers/*/deletion",
    "/*/DELETE/admin/sellers/*/deletion",
    "/*/POST/admin/sellers/*/tokens/removal",
    "/*/GET/admin/sellers/*/key",
    "/*/POST/admin/sellers/*/backfill",
}


def _arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _under(logical_id: str, suffix: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [_arn(logical_id), suffix]]}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _function(raw: dict[str, Any], handler: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, f) for k, f in resources(raw, "AWS::Lambda::Function").items()
                if f["Properties"]["Handler"] == handler]
    return found


def _role_statements(raw: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    role = raw["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    inline = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    # CDK moves what does not fit the inline policy's size limit into customer-managed "overflow" policies.
    return inline + [
        statement
        for policy in [*resources(raw, "AWS::IAM::Policy").values(),
                       *resources(raw, "AWS::IAM::ManagedPolicy").values()]
        if {"Ref": role_id} in policy["Properties"].get("Roles", [])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _function_statements(raw: dict[str, Any], handler: str) -> list[dict[str, Any]]:
    _, function = _function(raw, handler)
    return _role_statements(raw, function["Properties"]["Role"]["Fn::GetAtt"][0])


def _by_action(statements: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Action → sorted JSON of the resources it is allowed on (every statement must be an Allow)."""
    found: dict[str, set[str]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        for action in _as_list(statement["Action"]):
            found.setdefault(action, set()).update(_key(r) for r in _as_list(statement["Resource"]))
    return {action: sorted(arns) for action, arns in found.items()}


def _keys(*values: Any) -> list[str]:
    return sorted(_key(v) for v in values)


def _tag(resource: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in resource["Properties"].get("Tags", []) if t["Key"] == key), None)


# ---------------------------------------------------------------------------------------- schedule

def assert_only_the_seller_key_secret(raw: dict[str, Any], by_action: dict[str, list[str]]) -> None:
    seller_keys_id, _ = by_purpose(raw, "seller_keys")
    assert {a for a in by_action if a.startswith("secretsmanager:")} == {"secretsmanager:GetSecretValue"}
    assert by_action["secretsmanager:GetSecretValue"] == _keys({"Ref": seller_keys_id})


def _sweeper_rules(raw: dict[str, Any], function_id: str) -> dict[str, dict[str, Any]]:
    """The sweeper's schedules by name."""
    return {_tag(rule, "seller-insights:schedule") or "": rule for rule in resources(raw, "AWS::Events::Rule").values()
            if any(invokes(raw, target["Arn"], function_id) for target in rule["Properties"].get("Targets", []))}


def test_sweep_retention_schedule_drives_the_sweeper(raw: dict[str, Any]) -> None:
    function_id, function = _function(raw, SWEEPER)
    dlq_id, _ = by_purpose(raw, "retention_events_dlq")
    rules = _sweeper_rules(raw, function_id)
    assert set(rules) == {"sweep-retention", "fleet-census"}
    rule = rules["sweep-retention"]
    props = rule["Properties"]
    assert (props["ScheduleExpression"], props["State"]) == ("rate(1 day)", "ENABLED")
    (target,) = props["Targets"]
    assert json.loads(target["Input"]) == {"task": "sweep-retention"}
    assert target["DeadLetterConfig"] == {"Arn": _arn(dlq_id)}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    # A late sweep still beats waiting a day for the next one; never older than that next run.
    assert 3600 <= target["RetryPolicy"]["MaximumEventAgeInSeconds"] < 86400
    # Asynchronous invocations that fail every retry land in the same dead-letter queue.
    assert function["Properties"]["DeadLetterConfig"] == {"TargetArn": _arn(dlq_id)}


def test_fleet_census_schedule_runs_hourly_on_the_sweeper(raw: dict[str, Any]) -> None:
    function_id, _ = _function(raw, SWEEPER)
    dlq_id, _ = by_purpose(raw, "retention_events_dlq")
    props = _sweeper_rules(raw, function_id)["fleet-census"]["Properties"]
    assert (props["ScheduleExpression"], props["State"]) == ("rate(1 hour)", "ENABLED")
    (target,) = props["Targets"]
    assert json.loads(target["Input"]) == {"task": "fleet-census"}
    assert target["DeadLetterConfig"] == {"Arn": _arn(dlq_id)}
    # A census older than the next one is worth nothing.
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 3600


def test_retention_events_dlq_is_encrypted_and_kept_two_weeks(raw: dict[str, Any]) -> None:
    _, dlq = by_purpose(raw, "retention_events_dlq")
    events_key_id, _ = by_purpose(raw, "events_key")
    assert dlq["Properties"]["KmsMasterKeyId"] == _arn(events_key_id)
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 86400


# ------------------------------------------------------------------------------- function contract

def test_sweeper_environment_and_size(raw: dict[str, Any], stage: str) -> None:
    variables = function_environments(raw)[SWEEPER]
    assert set(variables) == SWEEPER_ENV
    assert (variables["STAGE"], variables["POWERTOOLS_SERVICE_NAME"]) == (stage, "retention_sweeper")
    assert variables["CONNECTIONS_TABLE"] == {"Ref": by_purpose(raw, "connections")[0]}
    assert variables["AUDIT_TABLE"] == {"Ref": by_purpose(raw, "audit")[0]}
    assert variables["DATA_BUCKET"] == {"Ref": by_purpose(raw, "data")[0]}
    assert variables["RETENTION_PURGES_QUEUE_URL"] == {"Ref": by_purpose(raw, "retention_purges")[0]}
    config = StageConfig.from_context(stage, load_cdk_context()["stages"])
    assert variables["PURGE_FIND_LIMIT"] == str(config.purge_find_limit)
    _, function = _function(raw, SWEEPER)
    assert (function["Properties"]["Timeout"], function["Properties"]["MemorySize"]) == (900, 1024)


def test_data_requests_environment_and_size(raw: dict[str, Any], stage: str) -> None:
    variables = function_environments(raw)[DATA_REQUESTS]
    assert set(variables) == DATA_REQUESTS_ENV
    assert (variables["STAGE"], variables["POWERTOOLS_SERVICE_NAME"]) == (stage, "data_requests")
    # retention_days - pitr_recovery_days - 1 (daily sweep lag) = 30 - 2 - 1.
    assert variables["PURGE_AFTER_DAYS"] == "27"
    sweeper = function_environments(raw)[SWEEPER]
    for shared in ("CONNECTIONS_TABLE", "AUDIT_TABLE", "DATA_BUCKET"):
        assert variables[shared] == sweeper[shared], shared
    _, function = _function(raw, DATA_REQUESTS)
    props = function["Properties"]
    # Below the HTTP API's 30 s integration limit, so the caller gets the function's own answer.
    assert (props["Timeout"], props["MemorySize"]) == (28, 1024)
    assert "DeadLetterConfig" not in props  # invoked synchronously only


def test_purge_after_days_is_the_same_everywhere(raw: dict[str, Any]) -> None:
    environments = function_environments(raw)
    values = {handler: env["PURGE_AFTER_DAYS"] for handler, env in environments.items() if "PURGE_AFTER_DAYS" in env}
    assert set(values) == {DATA_REQUESTS, "token_refresher.handler.lambda_handler",
                           "report_fetcher.handler.lambda_handler"}
    assert set(values.values()) == {"27"}
    assert not any("RETENTION_DAYS" in env for env in environments.values())


# ------------------------------------------------------------------------------ tables and indexes

def test_audit_table_outlives_the_stack(raw: dict[str, Any]) -> None:
    _, audit = by_purpose(raw, "audit")
    key_id, _ = by_purpose(raw, "token_key")
    props = audit["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert "GlobalSecondaryIndexes" not in props
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {"KMSMasterKeyId": _arn(key_id), "SSEEnabled": True, "SSEType": "KMS"}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True,
                                                         "RecoveryPeriodInDays": 2}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # Every stage: the records must stay 25 months, longer than any seller data.
    assert props["DeletionProtectionEnabled"] is True
    assert (audit["DeletionPolicy"], audit["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_connections_table_has_the_purge_due_index(raw: dict[str, Any]) -> None:
    _, table = by_purpose(raw, "connections")
    (index,) = [i for i in table["Properties"]["GlobalSecondaryIndexes"] if i["IndexName"] == "by_purge_due"]
    assert index["KeySchema"] == [
        {"AttributeName": "purge_shard", "KeyType": "HASH"},
        {"AttributeName": "purge_after", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    types = {a["AttributeName"]: a["AttributeType"] for a in table["Properties"]["AttributeDefinitions"]}
    assert (types["purge_shard"], types["purge_after"]) == ("S", "S")


def test_only_the_two_duties_read_the_audit_table(raw: dict[str, Any]) -> None:
    """The sweeper and the data requests read and write it; the consent and token functions only add
    consent records to it (PutItem); the export worker only completes an export's record (UpdateItem);
    nothing else touches it."""
    audit_id, _ = by_purpose(raw, "audit")
    actions: dict[str, set[str]] = {}
    for function in resources(raw, "AWS::Lambda::Function").values():
        for statement in _role_statements(raw, function["Properties"]["Role"]["Fn::GetAtt"][0]):
            if audit_id in json.dumps(statement["Resource"]) and "kms:" not in json.dumps(statement["Action"]):
                actions.setdefault(function["Properties"]["Handler"], set()).update(_as_list(statement["Action"]))
    assert set(actions) == {SWEEPER, DATA_REQUESTS, "oauth_callback.handler.lambda_handler",
                            "token_refresher.handler.lambda_handler", "data_exports.handler.lambda_handler"}
    assert actions["data_exports.handler.lambda_handler"] == {"dynamodb:UpdateItem"}
    assert actions["oauth_callback.handler.lambda_handler"] == {"dynamodb:PutItem"}
    assert actions["token_refresher.handler.lambda_handler"] == {"dynamodb:PutItem"}


# ------------------------------------------------------------------------------------------- grants

def test_sweeper_permissions_are_erase_only(raw: dict[str, Any]) -> None:
    statements = _function_statements(raw, SWEEPER)
    by_action = _by_action(statements)
    connections_id, _ = by_purpose(raw, "connections")
    audit_id, _ = by_purpose(raw, "audit")
    data_id, _ = by_purpose(raw, "data")

    # Connections by key, through by_purge_due and (the fleet census) three more sparse indexes; never a Scan.
    assert not any(action in by_action for action in UNKEYED)
    assert by_action["dynamodb:Query"] == _keys(_arn(connections_id), *(
        _under(connections_id, f"/index/{index}")
        for index in ("by_purge_due", "by_refresh_due", "by_verification_due", "by_plan_due")))
    # Deletions are transactions of DeleteItem actions under a ConditionCheck of the connection item.
    for action in ("dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:UpdateItem",
                   "dynamodb:BatchGetItem"):
        expected = [_arn(connections_id), _arn(audit_id)] if action == "dynamodb:GetItem" else [_arn(connections_id)]
        assert by_action[action] == _keys(*expected), action
    # Receipts: written and read back, never changed or deleted.
    assert by_action["dynamodb:PutItem"] == _keys(_arn(audit_id))
    dynamodb = {a for a in by_action if a.startswith("dynamodb:")}
    assert dynamodb == {"dynamodb:Query", "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem",
                        "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:BatchGetItem"}

    # S3: list versions under the two prefixes it owns (sellers/ and exports/: a seller's last purge takes
    # the portability archives too), delete versions and markers and abort uploads there; read nothing.
    s3 = {a for a in by_action if a.startswith("s3:")}
    assert s3 == {"s3:ListBucketVersions", "s3:ListBucketMultipartUploads", "s3:DeleteObjectVersion",
                  "s3:DeleteObject", "s3:AbortMultipartUpload"}
    for action in ("s3:DeleteObjectVersion", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert by_action[action] == _keys(_under(data_id, "/sellers/*"), _under(data_id, "/exports/*")), action
    (versions,) = [s for s in statements if "s3:ListBucketVersions" in _as_list(s["Action"])]
    assert _as_list(versions["Action"]) == ["s3:ListBucketVersions"]
    assert versions["Resource"] == _arn(data_id)
    assert versions["Condition"] == {"StringLike": {"s3:prefix": ["sellers/*", "exports/*"]}}
    # ListBucketMultipartUploads has no s3:prefix condition key (a condition on it would never match).
    (uploads,) = [s for s in statements if "s3:ListBucketMultipartUploads" in _as_list(s["Action"])]
    assert (_as_list(uploads["Action"]), uploads["Resource"]) == (["s3:ListBucketMultipartUploads"], _arn(data_id))

    # The seller-key secret only (to find a seller's prefixes), no events; the token key only through
    # DynamoDB and Secrets Manager: it opens no token and reads no object.
    assert_only_the_seller_key_secret(raw, by_action)
    assert not any(a.startswith(("events:", "cloudwatch:")) for a in by_action)
    # SQS: its own work queue only (test_the_sweeper_fans_out_through_its_own_queue).
    purges_id, _ = by_purpose(raw, "retention_purges")
    events_dlq_id, _ = by_purpose(raw, "retention_events_dlq")
    for action in (a for a in by_action if a.startswith("sqs:")):
        allowed = (purges_id, events_dlq_id) if action == "sqs:SendMessage" else (purges_id,)
        assert by_action[action] == _keys(*(_arn(i) for i in allowed)), action
    token_key = _key(_arn(by_purpose(raw, "token_key")[0]))
    on_key = [s for s in statements if token_key in (_key(r) for r in _as_list(s["Resource"]))]
    assert on_key
    services = set()
    for statement in on_key:
        assert set(statement["Condition"]["StringEquals"]) == {"kms:ViaService"}
        services.add(statement["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Join"][1][0])
    assert services == {"dynamodb.", "secretsmanager."}


def test_the_sweeper_fans_out_through_its_own_queue(raw: dict[str, Any], stage: str) -> None:
    config = StageConfig.from_context(stage, load_cdk_context()["stages"])
    function_id, function = _function(raw, SWEEPER)
    purges_id, purges = by_purpose(raw, "retention_purges")
    dlq_id, dlq = by_purpose(raw, "retention_purges_dlq")
    key_id, key = by_purpose(raw, "retention_purges_key")
    assert key_id not in {by_purpose(raw, p)[0] for p in ("token_key", "events_key")}
    assert key["Properties"]["EnableKeyRotation"] is True
    for queue in (purges, dlq):
        assert queue["Properties"]["KmsMasterKeyId"] == _arn(key_id)
    assert purges["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": _arn(dlq_id), "maxReceiveCount": 5}
    # A purge stops before the function's timeout; its message comes back after six of them.
    assert purges["Properties"]["VisibilityTimeout"] == 6 * function["Properties"]["Timeout"] == 6 * 900
    assert purges["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    (mapping,) = [m["Properties"] for m in resources(raw, "AWS::Lambda::EventSourceMapping").values()
                  if invokes(raw, m["Properties"]["FunctionName"], function_id)]
    assert mapping["EventSourceArn"] == _arn(purges_id)
    assert (mapping["BatchSize"], mapping["FunctionResponseTypes"]) == (1, ["ReportBatchItemFailures"])
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": config.purge_concurrency}
    # The key only through SQS: to send (the finder) and to read (the consumer).
    statements = _function_statements(raw, SWEEPER)
    on_key = [s for s in statements if _key(_arn(key_id)) in (_key(r) for r in _as_list(s["Resource"]))]
    assert {a for s in on_key for a in _as_list(s["Action"])} == {"kms:GenerateDataKey", "kms:Decrypt"}
    for statement in on_key:
        assert statement["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Join"][1][0] == "sqs."
    alarms = [a["Properties"] for a in resources(raw, "AWS::CloudWatch::Alarm").values()
              if json.dumps(a["Properties"].get("Dimensions", [])).count(dlq_id)]
    assert alarms, "the purges DLQ's depth is alarmed"


def test_data_requests_permissions_are_scoped(raw: dict[str, Any]) -> None:
    statements = _function_statements(raw, DATA_REQUESTS)
    by_action = _by_action(statements)
    connections_id, _ = by_purpose(raw, "connections")
    audit_id, _ = by_purpose(raw, "audit")
    data_id, _ = by_purpose(raw, "data")

    # One seller's partition of the connections table: by key and Query on the table, no index, no Scan.
    assert not any(action in by_action for action in UNKEYED)
    assert "index" not in json.dumps(by_action)
    assert by_action["dynamodb:Query"] == _keys(_arn(connections_id))
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"):
        assert by_action[action] == _keys(_arn(connections_id), _arn(audit_id)), action
    assert by_action["dynamodb:DeleteItem"] == _keys(_arn(connections_id))  # audit records are never deleted

    # S3: only reads of exports/ (what the status route's presigned GET is authorized as); the export
    # worker reads the reports and writes the archive.
    assert {a for a in by_action if a.startswith("s3:")} == {"s3:GetObject"}
    assert by_action["s3:GetObject"] == _keys(_under(data_id, "/exports/*"))
    # It queues export requests on data_exports: SendMessage there, nothing else of SQS.
    exports_queue, _ = by_purpose(raw, "data_exports")
    assert {a for a in by_action if a.startswith("sqs:")} == {"sqs:SendMessage"}
    assert by_action["sqs:SendMessage"] == _keys({"Fn::GetAtt": [exports_queue, "Arn"]})

    # No token purpose: exports never open tokens, token removal deletes items. Key only via services.
    assert "kms:EncryptionContext" not in json.dumps(statements)
    token_key = _key(_arn(by_purpose(raw, "token_key")[0]))
    services = sorted(
        s["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Join"][1][0]
        for s in statements if token_key in (_key(r) for r in _as_list(s["Resource"]))
    )
    assert services == ["dynamodb.", "s3.", "secretsmanager."]
    assert_only_the_seller_key_secret(raw, by_action)
    assert not any(a.startswith(("events:", "cloudwatch:")) for a in by_action)


# ------------------------------------------------------------------------------------------ alarms

def test_retention_alarms(raw: dict[str, Any]) -> None:
    topic_id, _ = by_purpose(raw, "alarms")
    alarms = [a["Properties"] for a in resources(raw, "AWS::CloudWatch::Alarm").values()]
    for handler in (SWEEPER, DATA_REQUESTS):
        function_id, _ = _function(raw, handler)
        (errors,) = [a for a in alarms if a.get("MetricName") == "Errors"
                     and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]]
        assert errors["AlarmActions"] == [{"Ref": topic_id}], handler
    dlq_id, _ = by_purpose(raw, "retention_events_dlq")
    dimension = {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}
    (depth,) = [a for a in alarms if dimension in a.get("Dimensions", [])
                and a["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    assert (depth["ComparisonOperator"], depth["Threshold"]) == ("GreaterThanThreshold", 0)
    assert depth["AlarmActions"] == [{"Ref": topic_id}]


# ----------------------------------------------------------------------------------------- ops role

def _ops_role(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    role_id = raw["Outputs"]["OpsSupportRoleArn"]["Value"]["Fn::GetAtt"][0]
    return role_id, raw["Resources"][role_id]


def _mfa_allows(statement: dict[str, Any], context: dict[str, str]) -> bool:
    """Whether an Allow statement's conditions hold for a request ``context`` (only the MFA key matters here).

    Bool: the key must be present with that value; BoolIfExists: absent passes. Conditions on other keys
    (kms:ViaService, dynamodb:Attributes...) only narrow a statement further: taken as met here.
    """
    conditions = statement.get("Condition", {})
    assert any(MFA_KEY in pairs for pairs in conditions.values()), statement
    for operator, pairs in conditions.items():
        if MFA_KEY not in pairs:
            continue
        assert operator in ("Bool", "BoolIfExists") and set(pairs) == {MFA_KEY}, statement
        if MFA_KEY not in context:
            if operator == "Bool":
                return False
        elif context[MFA_KEY] != pairs[MFA_KEY]:
            return False
    return True


def test_ops_role_trust_requires_mfa(raw: dict[str, Any]) -> None:
    _, role = _ops_role(raw)
    props = role["Properties"]
    assert "ManagedPolicyArns" not in props and "Policies" not in props
    assert props["MaxSessionDuration"] == 3600
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Effect"], trust["Action"]) == ("Allow", "sts:AssumeRole")
    # This account's principals (those allowed sts:AssumeRole on it), never a service or another account.
    assert trust["Principal"] == {"AWS": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::",
                                                             {"Ref": "AWS::AccountId"}, ":root"]]}}
    assert trust["Condition"] == {"Bool": {MFA_KEY: "true"}}


def test_ops_role_actions_are_exactly_these(raw: dict[str, Any]) -> None:
    """The whole of what `ops` may do; each command's resources are asserted by its own tests (the /admin
    routes here, `ops incident` in tests/infra/test_incident_response.py)."""
    role_id, _ = _ops_role(raw)
    assert _by_action(_role_statements(raw, role_id)).keys() == OPS_ROLE_ACTIONS


def test_ops_role_may_recover_the_secret_from_the_notifications_dlq_only(raw: dict[str, Any]) -> None:
    role_id, _ = _ops_role(raw)
    by_action = _by_action([s for s in _role_statements(raw, role_id) if s["Sid"].startswith("RecoverSecret")])
    dlq_id, _ = by_purpose(raw, "notifications_dlq")
    secret_id, _ = by_purpose(raw, "lwa_client")
    for action in ("sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"):
        assert by_action[action] == _keys(_arn(dlq_id))
    for action in ("secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"):
        assert by_action[action] == _keys({"Ref": secret_id})
    notifications_key, _ = by_purpose(raw, "notifications_key")
    data_key, _ = by_purpose(raw, "token_key")
    assert by_action["kms:Decrypt"] == _keys(_arn(notifications_key), _arn(data_key))
    assert by_action["kms:GenerateDataKey"] == _keys(_arn(data_key))
    for statement in _role_statements(raw, role_id):
        if any(a.startswith("kms:") for a in _as_list(statement["Action"])):
            assert "kms:ViaService" in statement["Condition"]["StringEquals"], statement


def test_ops_role_may_invoke_only_the_admin_routes(raw: dict[str, Any]) -> None:
    role_id, _ = _ops_role(raw)
    (api_id,) = resources(raw, "AWS::ApiGatewayV2::Api")
    statements = [s for s in _role_statements(raw, role_id) if "execute-api:Invoke" in _as_list(s["Action"])]
    assert _by_action(statements).keys() == {"execute-api:Invoke"}
    suffixes = set()
    for statement in statements:
        for arn in _as_list(statement["Resource"]):
            parts = arn["Fn::Join"][1]
            assert parts[:-1] == ["arn:", {"Ref": "AWS::Partition"}, ":execute-api:", {"Ref": "AWS::Region"}, ":",
                                  {"Ref": "AWS::AccountId"}, ":", {"Ref": api_id}], arn
            suffixes.add(parts[-1])
    assert suffixes == ADMIN_ROUTE_SUFFIXES
    routes = {r["Properties"]["RouteKey"] for r in resources(raw, "AWS::ApiGatewayV2::Route").values()}
    admin = {key for key in routes if " /admin/" in key}
    assert len(admin) == len(ADMIN_ROUTE_SUFFIXES)
    for key in admin:  # each suffix is one route: each "{parameter}" becomes "*"
        method, path = key.split(" ")
        assert f"/*/{method}{re.sub(r'{[a-z_]+}', '*', path)}" in suffixes, key


def test_ops_role_fleet_grants_are_narrow(raw: dict[str, Any]) -> None:
    """The statements of ops status and ops redrive (infra/constructs/fleet_operations.py, Sids Fleet*)."""
    role_id, _ = _ops_role(raw)
    statements = {s["Sid"]: s for s in _role_statements(raw, role_id) if s.get("Sid", "").startswith("Fleet")}
    connections_id, _ = by_purpose(raw, "connections")
    secret_id, _ = by_purpose(raw, "lwa_client")
    # The census: four sparse indexes; the table itself only for pk, sk and status.
    assert _keys(*_as_list(statements["FleetCensusIndexes"]["Resource"])) == _keys(*(
        _under(connections_id, f"/index/{index}")
        for index in ("by_refresh_due", "by_purge_due", "by_verification_due", "by_plan_due")))
    reads = statements["FleetCensusStatuses"]
    assert (sorted(_as_list(reads["Action"])), reads["Resource"]) == (["dynamodb:BatchGetItem", "dynamodb:Scan"],
                                                                      _arn(connections_id))
    assert reads["Condition"]["ForAllValues:StringEquals"] == {"dynamodb:Attributes": ["pk", "sk", "status"]}
    assert reads["Condition"]["StringEqualsIfExists"] == {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}
    # Keys only through DynamoDB (the table) and SQS (the queues): no sealed token can be opened.
    for sid, service in (("FleetCensusTableKey", "dynamodb."), ("FleetRedriveQueueKeys", "sqs.")):
        assert statements[sid]["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Join"][1][0] == service
    # The LWA client secret's metadata, not its value.
    metadata = statements["FleetLwaSecretMetadata"]
    assert sorted(_as_list(metadata["Action"])) == ["secretsmanager:DescribeSecret",
                                                    "secretsmanager:ListSecretVersionIds"]
    assert metadata["Resource"] == {"Ref": secret_id}
    # Redrive: SendMessage only to queues that have a dead-letter queue; receive only from those DLQs.
    queues = resources(raw, "AWS::SQS::Queue")
    sources = [logical for logical, queue in queues.items() if "RedrivePolicy" in queue["Properties"]]
    assert _keys(*_as_list(statements["FleetRedriveToSources"]["Resource"])) == _keys(*(_arn(q) for q in sources))
    dead_letters = {json.dumps(queues[q]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"], sort_keys=True)
                    for q in sources}
    assert {json.dumps(r, sort_keys=True) for r in _as_list(statements["FleetRedriveFromDeadLetters"]["Resource"])} \
        == dead_letters


@pytest.mark.parametrize("context", [{}, {MFA_KEY: "false"}], ids=["mfa-missing", "mfa-false"])
def test_ops_role_allows_nothing_without_mfa(raw: dict[str, Any], context: dict[str, str]) -> None:
    role_id, role = _ops_role(raw)
    statements = role["Properties"]["AssumeRolePolicyDocument"]["Statement"] + _role_statements(raw, role_id)
    assert all(s["Effect"] == "Allow" for s in statements)
    assert not [s for s in statements if _mfa_allows(s, context)]
    # ...and with MFA, the trust and every statement apply.
    assert len([s for s in statements if _mfa_allows(s, {MFA_KEY: "true"})]) == len(statements) > 2


def test_outputs_name_the_audit_table_and_the_ops_role(raw: dict[str, Any]) -> None:
    audit_id, _ = by_purpose(raw, "audit")
    outputs = raw["Outputs"]
    assert outputs["AuditTableName"]["Value"] == {"Ref": audit_id}
    role_id, role = _ops_role(raw)
    assert role["Type"] == "AWS::IAM::Role"
    assert outputs["OpsSupportRoleArn"]["Value"] == _arn(role_id)
