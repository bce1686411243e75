"""The report pipeline: the plan-reports schedule, the two queues, the mappings, the planning index,
the report fetcher's grants, its alarms and its environment (docs/internal-contracts.md, issue 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.app import function_environments, load_cdk_context
from infra.config import DEFAULT_REPORT_TYPES, StageConfig
from tests.infra.conftest import alarm_at_first_count, by_purpose, invokes, resources

pytestmark = pytest.mark.slow

REPORT_HANDLER = "report_fetcher.handler.lambda_handler"
TOKEN_HANDLER = "token_refresher.handler.lambda_handler"
AMAZON = "arn:aws:iam::437568002678:root"
SSL_DENY = {"Bool": {"aws:SecureTransport": "false"}}
REPORT_ENV = {
    "SELLER_KEY_SECRET_ID",
    "STAGE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
    "CONNECTIONS_TABLE",
    "TOKEN_KEY_ID",
    "DATA_BUCKET",
    "REPORT_JOBS_QUEUE_URL",
    "REPORT_PLANS_QUEUE_URL",
    "PLAN_FIND_LIMIT",
    "DEFAULT_REPORT_TYPES",
    "PURGE_AFTER_DAYS",
    "REPORT_MAX_DECOMPRESSED_MIB",
    "REPORT_MAX_COMPRESSION_RATIO",
    "SALES_AND_TRAFFIC_SOURCE",
    "SALES_AND_TRAFFIC_GRANULARITY",
    "PLAN_MAX_JOBS_PER_CONNECTION",
    "REPORT_BACKFILL_DAYS",
    "REPORT_NOTIFICATIONS_QUEUE_ARN",
    "IDEMPOTENCY_TABLE",
}
SELLER_OBJECT_ACTIONS = ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"]
TOKEN_CRYPTO_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
QUEUES = {  # purpose: (dead-letter purpose, key purpose)
    "report_jobs": ("report_jobs_dlq", "report_jobs_key"),
    "report_plans": ("report_plans_dlq", "report_jobs_key"),
    "report_notifications": ("report_notifications_dlq", "notifications_key"),
}


def _arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _function(raw: dict[str, Any], handler: str = REPORT_HANDLER) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, f) for k, f in resources(raw, "AWS::Lambda::Function").items()
                if f["Properties"]["Handler"] == handler]
    return found


def _role_statements(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of every inline policy on the report fetcher's role."""
    _, function = _function(raw)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    role = raw["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    return [
        statement
        for policy in resources(raw, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _tag(resource: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in resource["Properties"].get("Tags", []) if t["Key"] == key), None)


def _queue_policy(raw: dict[str, Any], queue_id: str) -> list[dict[str, Any]]:
    (policy,) = [p for p in resources(raw, "AWS::SQS::QueuePolicy").values()
                 if {"Ref": queue_id} in p["Properties"]["Queues"]]
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _allows(statements: list[dict[str, Any]], action: str, resource: Any, context: dict[str, str]) -> bool:
    """Whether an identity policy allows ``action`` on ``resource`` for a request with ``context``.

    Enough of IAM's evaluation for these templates: exact actions, resources compared as synthesized,
    and StringEquals conditions (a condition key missing from the request fails the condition).
    """
    for statement in statements:
        if statement["Effect"] != "Allow" or action not in _as_list(statement["Action"]):
            continue
        if resource not in _as_list(statement["Resource"]):
            continue
        conditions = statement.get("Condition", {})
        assert set(conditions) <= {"StringEquals"}, f"the evaluator does not know {set(conditions)}: {statement}"
        if all(context.get(key) == value for key, value in conditions.get("StringEquals", {}).items()):
            return True
    return False


# ---------------------------------------------------------------------------------------- schedule

def test_plan_reports_schedule_drives_the_fetcher(raw: dict[str, Any]) -> None:
    function_id, _ = _function(raw)
    dlq_id, _ = by_purpose(raw, "report_events_dlq")
    rules = {
        _tag(rule, "seller-insights:schedule"): rule["Properties"]
        for rule in resources(raw, "AWS::Events::Rule").values()
        if "ScheduleExpression" in rule["Properties"]
        and any(invokes(raw, target["Arn"], function_id) for target in rule["Properties"]["Targets"])
    }
    assert set(rules) == {"plan-reports", "wake-jobs"}  # wake-jobs: test_wake_jobs_runs_every_five_minutes
    rule = rules["plan-reports"]
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(15 minutes)", "ENABLED")
    (target,) = rule["Targets"]
    assert json.loads(target["Input"]) == {"task": "plan-reports"}
    assert target["DeadLetterConfig"] == {"Arn": _arn(dlq_id)}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    # A run older than the next one is not worth delivering: the next run plans the same work.
    assert 60 <= target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 900


def test_schedule_names_are_unique_for_the_local_stack(raw: dict[str, Any]) -> None:
    names = [_tag(rule, "seller-insights:schedule") for rule in resources(raw, "AWS::Events::Rule").values()
             if "ScheduleExpression" in rule["Properties"]]
    assert None not in names
    assert sorted(names) == sorted(set(names)) and "plan-reports" in names  # type: ignore[type-var]


def test_report_events_dlq_takes_only_its_rules_and_the_function(raw: dict[str, Any]) -> None:
    dlq_id, dlq = by_purpose(raw, "report_events_dlq")
    events_key_id, _ = by_purpose(raw, "events_key")
    assert dlq["Properties"]["KmsMasterKeyId"] == _arn(events_key_id)
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    _, function = _function(raw)
    assert function["Properties"]["DeadLetterConfig"] == {"TargetArn": _arn(dlq_id)}
    rule_ids = set(resources(raw, "AWS::Events::Rule"))
    allows = [s for s in _queue_policy(raw, dlq_id) if s["Effect"] == "Allow"]
    assert allows
    for statement in allows:
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0] in rule_ids


# ------------------------------------------------------------------------------------------ queues

@pytest.mark.parametrize("purpose", sorted(QUEUES))
def test_queues_are_encrypted_dead_lettered_and_outlast_the_function(raw: dict[str, Any], purpose: str) -> None:
    dlq_purpose, key_purpose = QUEUES[purpose]
    _, function = _function(raw)
    key_id, key = by_purpose(raw, key_purpose)
    token_key_id, _ = by_purpose(raw, "token_key")
    assert key_id != token_key_id
    assert key["Properties"]["EnableKeyRotation"] is True
    queue_id, queue = by_purpose(raw, purpose)
    dlq_id, dlq = by_purpose(raw, dlq_purpose)
    for props in (queue["Properties"], dlq["Properties"]):
        assert props["KmsMasterKeyId"] == _arn(key_id)
    assert queue["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": _arn(dlq_id), "maxReceiveCount": 5}
    assert queue["Properties"]["VisibilityTimeout"] >= 6 * function["Properties"]["Timeout"] == 6 * 300
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    assert "RedrivePolicy" not in dlq["Properties"]
    for queue_id_ in (queue_id, dlq_id):
        assert any(s["Effect"] == "Deny" and s["Principal"] == {"AWS": "*"} and s["Condition"] == SSL_DENY
                   for s in _queue_policy(raw, queue_id_)), queue_id_


def test_report_notifications_policy_admits_only_amazon_to_send(raw: dict[str, Any]) -> None:
    queue_id, _ = by_purpose(raw, "report_notifications")
    statements = _queue_policy(raw, queue_id)
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert len(statements) == 2 and len(allows) == 1
    (allow,) = allows
    assert allow["Principal"] == {"AWS": AMAZON}
    assert sorted(allow["Action"]) == ["sqs:GetQueueAttributes", "sqs:SendMessage"]
    assert allow["Resource"] == _arn(queue_id)
    assert "Condition" not in allow


def test_report_jobs_queue_admits_no_one_by_policy(raw: dict[str, Any]) -> None:
    # Only the fetcher's own role sends (by IAM, same account); the queue policy only denies plain HTTP.
    for purpose in ("report_jobs", "report_jobs_dlq", "report_notifications_dlq"):
        queue_id, _ = by_purpose(raw, purpose)
        assert [s["Effect"] for s in _queue_policy(raw, queue_id)] == ["Deny"], purpose


def test_report_jobs_key_serves_this_account_only(raw: dict[str, Any]) -> None:
    _, key = by_purpose(raw, "report_jobs_key")
    (statement,) = key["Properties"]["KeyPolicy"]["Statement"]  # CDK's default: the account administers it
    assert statement["Principal"] == {"AWS": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::",
                                                                 {"Ref": "AWS::AccountId"}, ":root"]]}}
    # Amazon's account may use the notifications key (through SQS) and no other.
    amazon_keys = [key_id for key_id, k in resources(raw, "AWS::KMS::Key").items() if "437568002678" in json.dumps(k)]
    assert amazon_keys == [by_purpose(raw, "notifications_key")[0]]


def test_queues_feed_the_fetcher_in_bounded_partial_batches(raw: dict[str, Any], stage: str) -> None:
    function_id, _ = _function(raw)
    mappings = {
        m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]: m["Properties"]
        for m in resources(raw, "AWS::Lambda::EventSourceMapping").values()
        if invokes(raw, m["Properties"]["FunctionName"], function_id)
    }
    jobs_id, _ = by_purpose(raw, "report_jobs")
    notifications_id, _ = by_purpose(raw, "report_notifications")
    plans_id, _ = by_purpose(raw, "report_plans")
    assert set(mappings) == {jobs_id, notifications_id, plans_id}
    config = StageConfig.from_context(stage, load_cdk_context()["stages"])
    for queue_id, props in mappings.items():
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["BatchSize"] == 10
        concurrency = {plans_id: config.plan_concurrency, jobs_id: config.report_jobs_concurrency}.get(queue_id, 2)
        assert props["ScalingConfig"] == {"MaximumConcurrency": concurrency}
        assert props.get("Enabled", True) is True
    assert mappings[notifications_id]["ScalingConfig"] == {"MaximumConcurrency": 2}


def test_report_jobs_concurrency_is_the_stages(raw: dict[str, Any], stage: str) -> None:
    config = StageConfig.from_context(stage, load_cdk_context()["stages"])
    jobs_id, _ = by_purpose(raw, "report_jobs")
    (mapping,) = [m["Properties"] for m in resources(raw, "AWS::Lambda::EventSourceMapping").values()
                  if m["Properties"]["EventSourceArn"] == _arn(jobs_id)]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": config.report_jobs_concurrency}


def test_work_queues_keep_messages_fourteen_days(raw: dict[str, Any]) -> None:
    # Far past any planned wait (15 minutes at most in a queue; longer waits are parked in the job table).
    for purpose in QUEUES:
        _, queue = by_purpose(raw, purpose)
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 86400, purpose


def test_the_fetcher_declares_its_recursive_loop(raw: dict[str, Any]) -> None:
    # It sends to the queue that invokes it by design (bounded per job by MAX_SELF_HOPS); the other
    # functions keep Lambda's default.
    _, function = _function(raw)
    assert function["Properties"]["RecursiveLoop"] == "Allow"
    others = [f for f in resources(raw, "AWS::Lambda::Function").values()
              if f["Properties"].get("Handler") != REPORT_HANDLER]
    assert all(f["Properties"].get("RecursiveLoop", "Terminate") == "Terminate" for f in others)


def test_wake_jobs_runs_every_five_minutes(raw: dict[str, Any]) -> None:
    (rule,) = [r["Properties"] for r in resources(raw, "AWS::Events::Rule").values()
               if _tag(r, "seller-insights:schedule") == "wake-jobs"]
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(5 minutes)", "ENABLED")
    from report_fetcher.wakes import WAKE_PERIOD_SECONDS  # its shard rotation moves on once per run

    assert WAKE_PERIOD_SECONDS == 5 * 60
    (target,) = rule["Targets"]
    function_id, _ = _function(raw)
    assert invokes(raw, target["Arn"], function_id)
    assert json.loads(target["Input"]) == {"task": "wake-jobs"}
    assert target["DeadLetterConfig"] == {"Arn": _arn(by_purpose(raw, "report_events_dlq")[0])}


# --------------------------------------------------------------------------------- planning index

def test_connections_table_has_the_plan_due_index(raw: dict[str, Any]) -> None:
    _, table = by_purpose(raw, "connections")
    (index,) = [i for i in table["Properties"]["GlobalSecondaryIndexes"] if i["IndexName"] == "by_plan_due"]
    assert index["KeySchema"] == [
        {"AttributeName": "plan_shard", "KeyType": "HASH"},
        {"AttributeName": "next_plan_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    types = {a["AttributeName"]: a["AttributeType"] for a in table["Properties"]["AttributeDefinitions"]}
    assert (types["plan_shard"], types["next_plan_at"]) == ("S", "N")


def test_connections_table_has_the_wake_due_index(raw: dict[str, Any]) -> None:
    _, table = by_purpose(raw, "connections")
    (index,) = [i for i in table["Properties"]["GlobalSecondaryIndexes"] if i["IndexName"] == "by_wake_due"]
    assert index["KeySchema"] == [
        {"AttributeName": "wake_shard", "KeyType": "HASH"},
        {"AttributeName": "wake_at", "KeyType": "RANGE"},
    ]
    # The version, for the conditional un-park without a read.
    assert index["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["version"]}


# ------------------------------------------------------------------------------------------- grants

def test_fetcher_cannot_use_refresh_tokens(raw: dict[str, Any]) -> None:
    statements = _role_statements(raw)
    token_key = _arn(by_purpose(raw, "token_key")[0])
    for action in TOKEN_CRYPTO_ACTIONS:
        # Direct KMS calls (no kms:ViaService in the request): refresh tokens never, access tokens yes.
        assert not _allows(statements, action, token_key, {"kms:EncryptionContext:purpose": "refresh_token"}), action
        assert not _allows(statements, action, token_key, {}), action
        assert _allows(statements, action, token_key, {"kms:EncryptionContext:purpose": "access_token"}), action
    # Nothing in its policies names the purpose, and the key policy does not name its role.
    assert "refresh_token" not in json.dumps(statements)
    _, function = _function(raw)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    assert role_id not in json.dumps(by_purpose(raw, "token_key")[1]["Properties"]["KeyPolicy"])


def test_fetcher_uses_the_token_key_only_for_access_tokens_or_through_services(raw: dict[str, Any]) -> None:
    token_key = _arn(by_purpose(raw, "token_key")[0])
    conditions = sorted(
        json.dumps(statement["Condition"], sort_keys=True)
        for statement in _role_statements(raw)
        if token_key in _as_list(statement["Resource"]) and statement["Effect"] == "Allow"
    )
    purposes_or_services = [json.loads(c)["StringEquals"] for c in conditions]
    assert {"kms:EncryptionContext:purpose": "access_token"} in purposes_or_services
    services = sorted(c["kms:ViaService"]["Fn::Join"][1][0] for c in purposes_or_services if "kms:ViaService" in c)
    assert services == ["dynamodb.", "s3.", "secretsmanager."]  # tables, report objects, the seller-key secret
    assert len(purposes_or_services) == 4


def test_fetcher_permissions_are_scoped(raw: dict[str, Any]) -> None:
    statements = _role_statements(raw)
    by_action: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            by_action.setdefault(action, []).extend(_as_list(statement["Resource"]))
    connections_id, _ = by_purpose(raw, "connections")
    data_id, _ = by_purpose(raw, "data")
    jobs_id, _ = by_purpose(raw, "report_jobs")
    notifications_id, _ = by_purpose(raw, "report_notifications")
    events_dlq_id, _ = by_purpose(raw, "report_events_dlq")

    # The connections table by key, Query on by_plan_due and by_wake_due only; no Scan, no other table.
    unkeyed = ("dynamodb:Scan", "dynamodb:PartiQLSelect", "dynamodb:ExportTableToPointInTime")
    assert not any(action in by_action for action in unkeyed)
    idempotency_id, _ = by_purpose(raw, "idempotency")
    assert by_action["dynamodb:PutItem"] == [_arn(connections_id)]
    # The idempotency table only for the destination ids the token refresher caches: get, and delete by
    # key when Amazon refuses one; never a write of its own.
    assert {a for a, rs in by_action.items() if _arn(idempotency_id) in rs} == {
        "dynamodb:GetItem", "dynamodb:DeleteItem"}
    queried = sorted(json.dumps(r) for r in by_action["dynamodb:Query"])
    assert queried == sorted([
        json.dumps(_arn(connections_id)),
        json.dumps({"Fn::Join": ["", [_arn(connections_id), "/index/by_plan_due"]]}),
        json.dumps({"Fn::Join": ["", [_arn(connections_id), "/index/by_wake_due"]]}),
    ])
    # Objects under sellers/ of the data bucket: put, multipart, get. No list, delete or bucket-level action.
    s3_actions = sorted(a for a in by_action if a.startswith("s3:"))
    assert s3_actions == SELLER_OBJECT_ACTIONS
    for action in s3_actions:
        assert by_action[action] == [{"Fn::Join": ["", [_arn(data_id), "/sellers/*"]]}], action
    # Sends to report_jobs (re-queued waiting jobs), report_plans (the plan-reports finder) and its async
    # DLQ; consumes the three queues.
    plans_id, _ = by_purpose(raw, "report_plans")
    assert sorted(json.dumps(r) for r in by_action["sqs:SendMessage"]) == sorted(
        json.dumps(_arn(i)) for i in (jobs_id, plans_id, events_dlq_id)
    )
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert sorted(json.dumps(r) for r in by_action[action]) == sorted(
            json.dumps(_arn(i)) for i in (jobs_id, notifications_id, plans_id)
        ), action
    # No LWA client secret (only the seller-key secret: it cannot mint grantless tokens nor rotate the
    # client secret), no events, no metrics API (EMF through logs).
    seller_keys_id, _ = by_purpose(raw, "seller_keys")
    lwa_secret_id, _ = by_purpose(raw, "lwa_client")
    assert {a for a in by_action if a.startswith("secretsmanager:")} == {"secretsmanager:GetSecretValue"}
    assert by_action["secretsmanager:GetSecretValue"] == [{"Ref": seller_keys_id}]
    assert {"Ref": lwa_secret_id} not in [r for rs in by_action.values() for r in rs]
    assert not any(a.startswith(("events:", "cloudwatch:", "ssm:")) for a in by_action)


def test_fetcher_uses_queue_keys_only_through_sqs(raw: dict[str, Any]) -> None:
    queue_keys = {_arn(by_purpose(raw, p)[0])["Fn::GetAtt"][0] for p in ("report_jobs_key", "notifications_key",
                                                                           "events_key")}
    for statement in _role_statements(raw):
        named = {r["Fn::GetAtt"][0] for r in _as_list(statement["Resource"])
                 if isinstance(r, dict) and "Fn::GetAtt" in r}
        if named & queue_keys:
            assert named <= queue_keys, statement
            assert set(_as_list(statement["Action"])) <= {"kms:Decrypt", "kms:GenerateDataKey"}, statement
            service = statement["Condition"]["StringEquals"]["kms:ViaService"]
            assert service == {"Fn::Join": ["", ["sqs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}


# ------------------------------------------------------------------------------------------ alarms

def test_report_pipeline_alarms(raw: dict[str, Any]) -> None:
    topic_id, _ = by_purpose(raw, "alarms")
    alarms = [a["Properties"] for a in resources(raw, "AWS::CloudWatch::Alarm").values()]
    for purpose in ("report_jobs_dlq", "report_notifications_dlq", "report_events_dlq"):
        queue_id, _ = by_purpose(raw, purpose)
        dimension = {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
        # Its depth (the age of its oldest message: tests/infra/test_queue_age_alarms.py).
        (depth,) = [a for a in alarms if dimension in a.get("Dimensions", [])
                    and a["MetricName"] == "ApproximateNumberOfMessagesVisible"]
        assert (depth["ComparisonOperator"], depth["Threshold"]) == ("GreaterThanThreshold", 0), purpose
        assert depth["AlarmActions"] == [{"Ref": topic_id}]
    for metric in ("ReportFailed", "UnexpectedColumnsDropped"):
        (alarm,) = [a for a in alarms if a.get("MetricName") == metric]
        assert alarm["Namespace"] == "SellerInsights"
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "report_fetcher"}]
        assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 3600, 1), metric
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0), metric
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    assert not [a for a in alarms if a.get("MetricName") == "ReportsThrottled"]
    function_id, _ = _function(raw)
    # At the first error; the second, in each of three periods, is part of PipelineDown (test_observability.py).
    errors, sustained = sorted((a for a in alarms if a.get("MetricName") == "Errors"
                                and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]),
                               key=lambda a: a["EvaluationPeriods"])
    assert (errors["EvaluationPeriods"], sustained["EvaluationPeriods"]) == (1, 3)
    assert errors["AlarmActions"] == sustained["AlarmActions"] == [{"Ref": topic_id}]


def test_a_missing_brand_analytics_role_is_alarmed(raw: dict[str, Any]) -> None:
    alarm = alarm_at_first_count(raw, "DataKioskRoleMissing", "report_fetcher")
    assert "Brand Analytics" in alarm["AlarmDescription"]


def test_a_failed_report_subscription_is_alarmed(raw: dict[str, Any]) -> None:
    alarm = alarm_at_first_count(raw, "ReportSubscriptionFailed", "report_fetcher")
    assert "REPORT_PROCESSING_FINISHED" in alarm["AlarmDescription"]


def test_a_failed_participations_check_is_alarmed(raw: dict[str, Any]) -> None:
    alarm = alarm_at_first_count(raw, "ParticipationsFailed", "report_fetcher")
    assert "getMarketplaceParticipations" in alarm["AlarmDescription"]


# ------------------------------------------------------------------------------- function contract

def test_fetcher_environment_follows_the_contract(raw: dict[str, Any], stage: str) -> None:
    variables = function_environments(raw)[REPORT_HANDLER]
    assert set(variables) == REPORT_ENV
    assert (variables["STAGE"], variables["POWERTOOLS_SERVICE_NAME"]) == (stage, "report_fetcher")
    assert variables["PURGE_AFTER_DAYS"] == "27"
    # The stage's caps on a report document (cdk.json), which ReportFetcherSettings reads back.
    assert (variables["REPORT_MAX_DECOMPRESSED_MIB"], variables["REPORT_MAX_COMPRESSION_RATIO"]) == ("4096", "100")
    assert variables["DEFAULT_REPORT_TYPES"] == ",".join(DEFAULT_REPORT_TYPES)
    # Sales and Traffic through Data Kiosk, a row per day and marketplace (cdk.json).
    assert (variables["SALES_AND_TRAFFIC_SOURCE"], variables["SALES_AND_TRAFFIC_GRANULARITY"]) == ("DATA_KIOSK", "DATE")
    assert variables["REPORT_JOBS_QUEUE_URL"] == {"Ref": by_purpose(raw, "report_jobs")[0]}
    assert variables["DATA_BUCKET"] == {"Ref": by_purpose(raw, "data")[0]}
    tokens = function_environments(raw)[TOKEN_HANDLER]
    for shared in ("CONNECTIONS_TABLE", "TOKEN_KEY_ID", "IDEMPOTENCY_TABLE"):
        assert variables[shared] == tokens[shared], shared
    # It never calls LWA, so it is not told where the client secret lives.
    assert "LWA_CLIENT_SECRET_ID" not in variables
    # Its plan subscribes sellers to REPORT_PROCESSING_FINISHED with the destinations the token refresher
    # keeps for the same queue.
    report_queue_id, _ = by_purpose(raw, "report_notifications")
    assert variables["REPORT_NOTIFICATIONS_QUEUE_ARN"] == {"Fn::GetAtt": [report_queue_id, "Arn"]}
    assert tokens["REPORT_NOTIFICATIONS_QUEUE_ARN"] == variables["REPORT_NOTIFICATIONS_QUEUE_ARN"]


def test_fetcher_has_room_to_stream_documents(raw: dict[str, Any]) -> None:
    _, function = _function(raw)
    props = function["Properties"]
    assert (props["Timeout"], props["MemorySize"]) == (300, 1024)


def test_outputs_name_the_report_queues(raw: dict[str, Any]) -> None:
    jobs_id, _ = by_purpose(raw, "report_jobs")
    notifications_id, _ = by_purpose(raw, "report_notifications")
    outputs = raw["Outputs"]
    assert outputs["ReportJobsQueueUrl"]["Value"] == {"Ref": jobs_id}
    assert outputs["ReportNotificationsQueueUrl"]["Value"] == {"Ref": notifications_id}
    assert outputs["ReportNotificationsQueueArn"]["Value"] == _arn(notifications_id)


def test_default_report_types_are_catalog_types() -> None:
    from seller_insights.report_catalog import CATALOG

    stages = load_cdk_context()["stages"]
    assert len(set(DEFAULT_REPORT_TYPES)) == 6 and set(DEFAULT_REPORT_TYPES) <= set(CATALOG)
    for name in stages:
        assert set(StageConfig.from_context(name, stages).default_report_types) <= set(CATALOG), name


def test_the_plan_may_check_participations_within_the_quota(raw: dict[str, Any]) -> None:
    """The daily marketplaces check reads and takes the seller's quota bucket (GetItem, conditional PutItem)
    and records the answer on the plan (UpdateItem), all in the connections table; SP-API itself is HTTPS."""
    _, function = _function(raw)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    connections_id, _ = by_purpose(raw, "connections")
    allowed = {
        action
        for policy in resources(raw, "AWS::IAM::Policy").values() if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow" and _arn(connections_id) in _as_list(statement["Resource"])
        for action in _as_list(statement["Action"])
    }
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"} <= allowed
    assert "dynamodb:Scan" not in allowed


def test_a_report_type_refused_for_permission_is_alarmed(raw: dict[str, Any]) -> None:
    alarm = alarm_at_first_count(raw, "ReportPermissionDenied", "report_fetcher")
    assert "role" in alarm["AlarmDescription"] and "permission_denied" in alarm["AlarmDescription"]


# ------------------------------------------------------------------------------- coverage (issue 10)

def test_the_stage_sets_the_planners_cap_and_each_types_history(raw: dict[str, Any], stage: str) -> None:
    from report_fetcher.settings import ReportFetcherSettings

    variables = function_environments(raw)[REPORT_HANDLER]
    config = StageConfig.from_context(stage, load_cdk_context()["stages"])
    assert variables["PLAN_MAX_JOBS_PER_CONNECTION"] == str(config.plan_max_jobs_per_connection)
    assert variables["PLAN_FIND_LIMIT"] == str(config.plan_find_limit)
    assert variables["REPORT_PLANS_QUEUE_URL"] == {"Ref": by_purpose(raw, "report_plans")[0]}
    # The function reads back what cdk.json says, type by type.
    settings = ReportFetcherSettings.from_env({k: v for k, v in variables.items() if isinstance(v, str)}
                                              | {"REPORT_JOBS_QUEUE_URL": "q", "REPORT_PLANS_QUEUE_URL": "p",
                                                 "DATA_BUCKET": "b",
                                                 "CONNECTIONS_TABLE": "t", "TOKEN_KEY_ID": "k",
                                                 "SELLER_KEY_SECRET_ID": "s"})
    assert settings.backfill_days == config.report_backfill_days
    assert settings.planning_limits.max_jobs == config.plan_max_jobs_per_connection
    assert settings.plan_find_limit == config.plan_find_limit


def test_every_default_type_falling_more_than_two_periods_behind_is_alarmed(raw: dict[str, Any]) -> None:
    topic_id, _ = by_purpose(raw, "alarms")
    alarms = [a["Properties"] for a in resources(raw, "AWS::CloudWatch::Alarm").values()
              if a["Properties"].get("MetricName") == "ReportLagPeriods"]
    by_type = {next(d["Value"] for d in a["Dimensions"] if d["Name"] == "report_type"): a for a in alarms}
    assert set(by_type) == set(DEFAULT_REPORT_TYPES)
    for report_type, alarm in by_type.items():
        assert alarm["Namespace"] == "SellerInsights"
        assert {"Name": "service", "Value": "report_fetcher"} in alarm["Dimensions"]
        assert (alarm["Statistic"], alarm["Period"]) == ("Maximum", 3600)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 2), report_type
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert report_type in alarm["AlarmDescription"]
