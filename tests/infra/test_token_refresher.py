"""The token lifecycle: schedules, the notifications queue, operator notices, alarms and the grants."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from infra.app import load_cdk_context
from infra.config import StageConfig
from infra.constructs.data_stores import DataStores
from tests.infra.conftest import alarm_at_first_count, by_purpose, invokes, resources

pytestmark = pytest.mark.slow

TOKEN_HANDLER = "token_refresher.handler.lambda_handler"
AMAZON = "arn:aws:iam::437568002678:root"
SCHEDULES = {"refresh-tokens": "rate(5 minutes)", "verify-consents": "rate(1 minute)",
             "check-reauthorization": "rate(1 day)"}
SSL_DENY = {"Bool": {"aws:SecureTransport": "false"}}


def _arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _token_function(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, f) for k, f in resources(raw, "AWS::Lambda::Function").items()
                if f["Properties"]["Handler"] == TOKEN_HANDLER]
    return found


def _tag(resource: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in resource["Properties"].get("Tags", []) if t["Key"] == key), None)


def _queue_policy(raw: dict[str, Any], queue_id: str) -> list[dict[str, Any]]:
    (policy,) = [p for p in resources(raw, "AWS::SQS::QueuePolicy").values()
                 if {"Ref": queue_id} in p["Properties"]["Queues"]]
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


# ----------------------------------------------------------------------------------------- schedules

def test_schedules_drive_the_function_with_constant_inputs(raw: dict[str, Any]) -> None:
    function_id, _ = _token_function(raw)
    dlq_id, _ = by_purpose(raw, "token_events_dlq")
    rules = {
        _tag(rule, "seller-insights:schedule"): rule["Properties"]
        for rule in resources(raw, "AWS::Events::Rule").values()
        if "ScheduleExpression" in rule["Properties"]
        and invokes(raw, rule["Properties"]["Targets"][0]["Arn"], function_id)
    }
    assert {name: rule["ScheduleExpression"] for name, rule in rules.items()} == SCHEDULES
    for name, rule in rules.items():
        assert rule["State"] == "ENABLED"
        (target,) = rule["Targets"]
        assert invokes(raw, target["Arn"], function_id), name
        assert json.loads(target["Input"]) == {"task": name}
        assert target["DeadLetterConfig"] == {"Arn": _arn(dlq_id)}, name
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, name
        assert 60 <= target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 3600, name


def test_event_targets_may_dead_letter_only_from_their_rules(raw: dict[str, Any]) -> None:
    dlq_id, _ = by_purpose(raw, "token_events_dlq")
    rule_ids = set(resources(raw, "AWS::Events::Rule"))
    allows = [s for s in _queue_policy(raw, dlq_id) if s["Effect"] == "Allow"]
    assert allows
    for statement in allows:
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0] in rule_ids


# ------------------------------------------------------------------------------------ notifications

def test_notifications_queue_is_encrypted_with_its_own_rotating_key(raw: dict[str, Any]) -> None:
    key_id, key = by_purpose(raw, "notifications_key")
    token_key_id, _ = by_purpose(raw, "token_key")
    assert key_id != token_key_id
    assert key["Properties"]["EnableKeyRotation"] is True
    dlq_id, dlq = by_purpose(raw, "notifications_dlq")
    _, queue = by_purpose(raw, "notifications")
    for props in (queue["Properties"], dlq["Properties"]):
        assert props["KmsMasterKeyId"] == _arn(key_id)
    assert queue["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": _arn(dlq_id), "maxReceiveCount": 5}
    assert queue["Properties"]["MessageRetentionPeriod"] <= 4 * 86400
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 86400


def test_amazon_may_use_the_notifications_key_only_through_sqs(raw: dict[str, Any]) -> None:
    _, key = by_purpose(raw, "notifications_key")
    (statement,) = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if s["Principal"] == {"AWS": AMAZON}]
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statement["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Join": ["", ["sqs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}
    }
    # No other key names Amazon's account.
    for key_id, other in resources(raw, "AWS::KMS::Key").items():
        if other is not key:
            assert "437568002678" not in json.dumps(other), key_id


def test_notifications_queue_policy_admits_only_amazon_to_send(raw: dict[str, Any]) -> None:
    queue_id, _ = by_purpose(raw, "notifications")
    statements = _queue_policy(raw, queue_id)
    allows = [s for s in statements if s["Effect"] == "Allow"]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert len(allows) == 1 and len(denies) == 1 and len(statements) == 2
    (allow,) = allows
    assert allow["Principal"] == {"AWS": AMAZON}
    assert sorted(allow["Action"]) == ["sqs:GetQueueAttributes", "sqs:SendMessage"]
    assert allow["Resource"] == _arn(queue_id)
    assert "Condition" not in allow
    (deny,) = denies
    assert deny["Principal"] == {"AWS": "*"} and deny["Condition"] == SSL_DENY


def test_notifications_feed_the_function_in_bounded_partial_batches(raw: dict[str, Any]) -> None:
    function_id, function = _token_function(raw)
    queue_id, queue = by_purpose(raw, "notifications")
    (mapping,) = [m for m in resources(raw, "AWS::Lambda::EventSourceMapping").values()
                  if m["Properties"]["EventSourceArn"] == _arn(queue_id)]
    props = mapping["Properties"]
    assert invokes(raw, props["FunctionName"], function_id)
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == 10
    assert props["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert queue["Properties"]["VisibilityTimeout"] >= 6 * function["Properties"]["Timeout"]


def test_every_queue_is_encrypted_tls_only_and_dead_lettered(raw: dict[str, Any]) -> None:
    queues = resources(raw, "AWS::SQS::Queue")
    alarmed = {
        dimension["Value"]["Fn::GetAtt"][0]
        for alarm in resources(raw, "AWS::CloudWatch::Alarm").values()
        for dimension in alarm["Properties"].get("Dimensions", [])
        if dimension["Name"] == "QueueName"
        and alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"  # depth, not age
    }
    dead_letter_ids = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values() if "RedrivePolicy" in q["Properties"]
    }
    dead_letter_ids |= {
        f["Properties"]["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
        for f in resources(raw, "AWS::Lambda::Function").values() if "DeadLetterConfig" in f["Properties"]
    }
    for queue_id, queue in queues.items():
        props = queue["Properties"]
        assert "KmsMasterKeyId" in props, queue_id
        assert any(s["Effect"] == "Deny" and s["Condition"] == SSL_DENY for s in _queue_policy(raw, queue_id))
        if queue_id in dead_letter_ids:
            assert props["MessageRetentionPeriod"] >= 14 * 86400, queue_id
            assert queue_id in alarmed, f"{queue_id}: a dead-letter queue without a depth alarm"
        else:
            assert 3 <= props["RedrivePolicy"]["maxReceiveCount"] <= 5, queue_id


# --------------------------------------------------------------------------------- token_refresh queue

def _stage_config(stage: str) -> StageConfig:
    return StageConfig.from_context(stage, load_cdk_context()["stages"])


def _role_statements(raw: dict[str, Any], function: dict[str, Any]) -> list[dict[str, Any]]:
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [statement
            for policy in resources(raw, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"] if statement["Effect"] == "Allow"]


def test_the_token_refresh_queue_is_consumed_at_the_configured_concurrency(raw: dict[str, Any], stage: str) -> None:
    function_id, function = _token_function(raw)
    queue_id, queue = by_purpose(raw, "token_refresh")
    dlq_id, dlq = by_purpose(raw, "token_refresh_dlq")
    work_key_id, _ = by_purpose(raw, "token_work_key")
    token_key_id, _ = by_purpose(raw, "token_key")
    (mapping,) = [m["Properties"] for m in resources(raw, "AWS::Lambda::EventSourceMapping").values()
                  if m["Properties"]["EventSourceArn"] == _arn(queue_id)]
    assert invokes(raw, mapping["FunctionName"], function_id)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 5
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": _stage_config(stage).refresh_concurrency}
    props = queue["Properties"]
    assert props["KmsMasterKeyId"] == _arn(work_key_id) != _arn(token_key_id)
    assert dlq["Properties"]["KmsMasterKeyId"] == _arn(work_key_id)
    assert props["MessageRetentionPeriod"] == 14 * 86400
    assert props["VisibilityTimeout"] >= 6 * function["Properties"]["Timeout"]
    assert props["RedrivePolicy"]["deadLetterTargetArn"] == _arn(dlq_id)
    environment = function["Properties"]["Environment"]["Variables"]
    assert environment["REFRESH_WORK_QUEUE_URL"] == {"Ref": queue_id}
    config = _stage_config(stage)
    assert float(environment["LWA_REFRESH_RATE"]) == config.lwa_refresh_rate
    assert int(environment["LWA_REFRESH_BURST"]) == config.lwa_refresh_burst


def test_the_schedule_rates_are_the_finders_intervals() -> None:
    """Each finder sends at most rate x its interval + burst: the intervals are the schedules'."""
    from infra.constructs.token_refresher import SCHEDULES
    from token_refresher.service import REFRESH_INTERVAL_SECONDS
    from token_refresher.verification import VERIFY_INTERVAL_SECONDS

    rates = {name: rate.to_seconds() for name, rate, _ in SCHEDULES}
    assert rates["refresh-tokens"] == REFRESH_INTERVAL_SECONDS
    assert rates["verify-consents"] == VERIFY_INTERVAL_SECONDS


def test_the_function_sends_to_its_work_queue_only_and_with_the_work_key_through_sqs(raw: dict[str, Any]) -> None:
    _, function = _token_function(raw)
    queue_id, _ = by_purpose(raw, "token_refresh")
    work_key_id, _ = by_purpose(raw, "token_work_key")
    statements = _role_statements(raw, function)
    failed_events_id, _ = by_purpose(raw, "token_events_dlq")
    sent_to = [r for s in statements if "sqs:SendMessage" in _listed(s["Action"]) for r in _listed(s["Resource"])]
    # Its work queue, and the failed-events queue (the function's asynchronous-invocation DLQ).
    assert sorted(sent_to, key=json.dumps) == sorted([_arn(queue_id), _arn(failed_events_id)], key=json.dumps)
    on_work_key = {action for s in statements if _arn(work_key_id) in _listed(s["Resource"])
                   for action in _listed(s["Action"])}
    assert on_work_key == {"kms:GenerateDataKey", "kms:Decrypt"}
    for statement in statements:
        if _arn(work_key_id) in _listed(statement["Resource"]):
            assert "kms:ViaService" in statement["Condition"]["StringEquals"]


def test_the_digest_may_only_be_put_under_notices(raw: dict[str, Any]) -> None:
    _, function = _token_function(raw)
    bucket_id, _ = by_purpose(raw, "data")
    statements = _role_statements(raw, function)
    on_bucket = [s for s in statements if bucket_id in json.dumps(s["Resource"])]
    assert [(_listed(s["Action"]), json.dumps(s["Resource"])) for s in on_bucket] == [
        (["s3:PutObject"], json.dumps({"Fn::Join": ["", [_arn(bucket_id), "/notices/*"]]}))]


def test_notices_expire_after_a_week(raw: dict[str, Any]) -> None:
    _, bucket = by_purpose(raw, "data")
    rules = {rule["Id"]: rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert (rules["expire-notices"]["Prefix"], rules["expire-notices"]["ExpirationInDays"]) == ("notices/", 7)


# --------------------------------------------------------------------------------- operator notices

def test_the_reauthorization_digest_reaches_the_operator_notices(raw: dict[str, Any]) -> None:
    topic_id, topic = by_purpose(raw, "operator_notices")
    events_key_id, _ = by_purpose(raw, "events_key")
    token_key_id, _ = by_purpose(raw, "token_key")
    assert topic["Properties"]["KmsMasterKeyId"] == _arn(events_key_id) != _arn(token_key_id)
    rules = resources(raw, "AWS::Events::Rule").values()
    (rule,) = [r["Properties"] for r in rules if "EventPattern" in r["Properties"]]
    assert rule["EventPattern"] == {"source": ["seller-insights.tokens"], "detail-type": ["ReauthorizationDigest"]}
    assert rule.get("EventBusName", "default") == "default"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": topic_id}
    assert "Arn" in target["DeadLetterConfig"]
    assert "RoleArn" in target  # publishes through a role, not a key-policy grant to all of EventBridge
    (policy,) = [p for p in resources(raw, "AWS::SNS::TopicPolicy").values()
                 if p["Properties"]["Topics"] == [{"Ref": topic_id}]]
    assert any(s["Effect"] == "Deny" and s["Condition"] == SSL_DENY
               for s in policy["Properties"]["PolicyDocument"]["Statement"])


def test_eventbridge_uses_the_events_key_only_for_this_account(raw: dict[str, Any]) -> None:
    _, key = by_purpose(raw, "events_key")
    service = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if "Service" in s["Principal"]]
    assert service
    for statement in service:
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


# ---------------------------------------------------------------------------------- table and alarms

def test_connections_table_has_the_due_date_indexes(raw: dict[str, Any]) -> None:
    _, table = by_purpose(raw, "connections")
    indexes = {index["IndexName"]: index for index in table["Properties"]["GlobalSecondaryIndexes"]}
    expected = {
        "by_refresh_due": (("refresh_shard", "S"), ("refresh_due_at", "N")),
        "by_reauthorization_due": (("reauth_shard", "S"), ("reauthorization_due_at", "S")),
    }
    assert set(expected) <= set(indexes)  # by_plan_due: tests/infra/test_report_fetcher.py
    types = {a["AttributeName"]: a["AttributeType"] for a in table["Properties"]["AttributeDefinitions"]}
    for name, ((partition, partition_type), (sort, sort_type)) in expected.items():
        assert indexes[name]["KeySchema"] == [
            {"AttributeName": partition, "KeyType": "HASH"},
            {"AttributeName": sort, "KeyType": "RANGE"},
        ]
        assert indexes[name]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
        assert (types[partition], types[sort]) == (partition_type, sort_type)


def test_token_lifecycle_alarms(raw: dict[str, Any]) -> None:
    topic_id, _ = by_purpose(raw, "alarms")
    alarms = list(resources(raw, "AWS::CloudWatch::Alarm").values())
    for purpose in ("notifications_dlq", "token_events_dlq", "token_refresh_dlq"):
        queue_id, _ = by_purpose(raw, purpose)
        (depth,) = [a["Properties"] for a in alarms
                    if {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
                    in a["Properties"].get("Dimensions", [])
                    and a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"]
        assert (depth["ComparisonOperator"], depth["Threshold"]) == ("GreaterThanThreshold", 0)
        assert depth["AlarmActions"] == [{"Ref": topic_id}]
    (invalid_client,) = [a["Properties"] for a in alarms if a["Properties"].get("MetricName") == "LwaInvalidClient"]
    assert invalid_client["Namespace"] == "SellerInsights"
    assert invalid_client["Dimensions"] == [{"Name": "service", "Value": "token_refresher"}]
    assert (invalid_client["Statistic"], invalid_client["Period"]) == ("Sum", 300)
    assert (invalid_client["ComparisonOperator"], invalid_client["Threshold"]) == ("GreaterThanThreshold", 0)
    assert invalid_client["AlarmActions"] == [{"Ref": topic_id}]


def test_consent_identity_alarms(raw: dict[str, Any]) -> None:
    """ConsentIdentityMismatch from the verifier and the callback (a metric-math sum), and expired consents."""
    topic_id, _ = by_purpose(raw, "alarms")
    alarms = [a["Properties"] for a in resources(raw, "AWS::CloudWatch::Alarm").values()]
    (mismatch,) = [a for a in alarms if "selling_partner_id" in a.get("AlarmDescription", "")]
    (expression,) = [m for m in mismatch["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "FILL(verifier, 0) + FILL(callback, 0)" and expression["ReturnData"] is True
    stats = [m["MetricStat"] for m in mismatch["Metrics"] if "MetricStat" in m]
    assert sorted((m["Metric"]["MetricName"], m["Metric"]["Dimensions"][0]["Value"]) for m in stats) == [
        ("ConsentIdentityMismatch", "oauth_callback"), ("ConsentIdentityMismatch", "token_refresher")]
    assert all((m["Stat"], m["Period"]) == ("Sum", 300) for m in stats)
    (expired,) = [a for a in alarms if a.get("MetricName") == "ConsentVerificationExpired"]
    assert expired["Dimensions"] == [{"Name": "service", "Value": "token_refresher"}]
    for alarm in (mismatch, expired):
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]


def test_a_failed_report_destination_is_alarmed(raw: dict[str, Any]) -> None:
    alarm = alarm_at_first_count(raw, "ReportDestinationFailed", "token_refresher")
    assert "REPORT_PROCESSING_FINISHED" in alarm["AlarmDescription"]


def test_outputs_name_the_queue_and_the_notices_topic(raw: dict[str, Any]) -> None:
    queue_id, _ = by_purpose(raw, "notifications")
    topic_id, _ = by_purpose(raw, "operator_notices")
    outputs = raw["Outputs"]
    assert outputs["NotificationsQueueUrl"]["Value"] == {"Ref": queue_id}
    assert outputs["NotificationsQueueArn"]["Value"] == _arn(queue_id)
    assert outputs["OperatorNoticesTopicArn"]["Value"] == {"Ref": topic_id}


# ------------------------------------------------------------------------------------------- grants

def test_access_token_grant_is_bound_to_its_purpose_only() -> None:
    # A role that gets nothing but grant_access_token_crypto, as the report fetcher will.
    context = load_cdk_context()  # the feature flags the real app runs with
    app = cdk.App(context=context)
    stack = cdk.Stack(app, "GrantProbe")
    config = StageConfig.from_context("dev", context["stages"])
    vault = DataStores(stack, "Vault", config=config)
    role = iam.Role(stack, "Probe", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    vault.grant_access_token_crypto(role)
    raw = dict(Template.from_stack(stack).to_json())

    role_id = next(k for k, r in resources(raw, "AWS::IAM::Role").items() if k.startswith("Probe"))
    statements = [
        statement
        for policy in resources(raw, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    key_id, _ = by_purpose(raw, "token_key")
    (statement,) = statements
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    assert statement["Resource"] == _arn(key_id)
    assert statement["Condition"] == {"StringEquals": {"kms:EncryptionContext:purpose": "access_token"}}
    # Nor did the grant slip the role into the key policy.
    assert role_id not in json.dumps(by_purpose(raw, "token_key")[1]["Properties"]["KeyPolicy"])


def test_the_function_may_make_every_call_of_powertools_idempotency(raw: dict[str, Any]) -> None:
    """Each notification once: Powertools puts the claim, reads it, records the outcome, deletes it on failure."""
    _, function = _token_function(raw)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    idempotency_id, _ = by_purpose(raw, "idempotency")
    allowed = {
        action
        for policy in resources(raw, "AWS::IAM::Policy").values() if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow" and _arn(idempotency_id) in _listed(statement["Resource"])
        for action in _listed(statement["Action"])
    }
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"} <= allowed
    assert "dynamodb:Scan" not in allowed


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_a_consent_may_record_its_marketplaces_within_the_quota(raw: dict[str, Any]) -> None:
    """verify-consents takes from the seller's getMarketplaceParticipations bucket (GetItem, conditional
    PutItem) and records the answer on the plan (UpdateItem), in the connections table."""
    _, function = _token_function(raw)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    connections_id, _ = by_purpose(raw, "connections")
    allowed = {
        action
        for policy in resources(raw, "AWS::IAM::Policy").values() if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow" and _arn(connections_id) in _listed(statement["Resource"])
        for action in _listed(statement["Action"])
    }
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"} <= allowed
    assert "dynamodb:Scan" not in allowed
