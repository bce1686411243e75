"""Lambda functions, their roles and their environment."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.app import function_environments
from tests.infra.conftest import by_purpose, resources

pytestmark = pytest.mark.slow

# AWS offers no resource-level permissions for these actions: "*" is the only valid resource.
RESOURCE_STAR_ALLOWED = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
SECRET_LOOKING = re.compile(
    r"(Atz[ra]\||amzn1\.oa2-cs|-----BEGIN|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16})|^[A-Za-z0-9+/=_-]{40,}$"
)
SECRET_NAMES = re.compile(r"SECRET(?!_ID$)|PASSWORD|TOKEN(?!_KEY_ID$)|PRIVATE|CREDENTIAL", re.IGNORECASE)
CONSENT_ENV = {
    "STAGE",
    "SELLER_KEY_SECRET_ID",
    "AUDIT_TABLE",
    "CONSENT_VERIFICATION_SECONDS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
    "CONNECTIONS_TABLE",
    "OAUTH_STATE_TABLE",
    "IDEMPOTENCY_TABLE",
    "TOKEN_KEY_ID",
    "LWA_CLIENT_SECRET_ID",
    "APP_DRAFT",
    "REDIRECT_URI",
    "DEFAULT_MARKETPLACE",
    "STATE_TTL_SECONDS",
}


CONSENT_HANDLER = "oauth_callback.handler.lambda_handler"
TOKEN_HANDLER = "token_refresher.handler.lambda_handler"
TOKEN_ENV = {
    "STAGE",
    "SELLER_KEY_SECRET_ID",
    "AUDIT_TABLE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
    "CONNECTIONS_TABLE",
    "IDEMPOTENCY_TABLE",
    "TOKEN_KEY_ID",
    "LWA_CLIENT_SECRET_ID",
    "PURGE_AFTER_DAYS",
    "REAUTH_NOTICE_DAYS",
    "DATA_BUCKET",
    "REFRESH_WORK_QUEUE_URL",
    "LWA_REFRESH_RATE",
    "LWA_REFRESH_BURST",
    "ROTATE_WHEN_DAYS_LEFT",
    "EVENT_BUS_NAME",
    "REPORT_NOTIFICATIONS_QUEUE_ARN",
}
REFRESH_TOKEN_CONDITION = ("kms:EncryptionContext:purpose", "refresh_token")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_function_has_the_service_shape(raw: dict[str, Any]) -> None:
    functions = resources(raw, "AWS::Lambda::Function")
    log_groups = resources(raw, "AWS::Logs::LogGroup")
    assert functions
    for name, function in functions.items():
        props = function["Properties"]
        assert props["Runtime"] == "python3.13", name
        assert props["Architectures"] == ["arm64"], name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert isinstance(props["MemorySize"], int), name
        assert isinstance(props["Timeout"], int), name
        assert len(props["Layers"]) == 2, name
        logging = props["LoggingConfig"]
        assert logging["LogFormat"] == "JSON", name
        log_group = log_groups[logging["LogGroup"]["Ref"]]["Properties"]
        assert log_group["RetentionInDays"] >= 365, name
        assert "KmsKeyId" in log_group, name


def test_every_log_group_keeps_a_year_encrypted(raw: dict[str, Any]) -> None:
    for name, group in resources(raw, "AWS::Logs::LogGroup").items():
        assert group["Properties"]["RetentionInDays"] >= 365, name
        assert "KmsKeyId" in group["Properties"], name


def test_no_secret_looking_values_in_environments(raw: dict[str, Any]) -> None:
    for handler, variables in function_environments(raw).items():
        for name, value in variables.items():
            assert not SECRET_NAMES.search(name), f"{handler}: {name} looks like a secret"
            if isinstance(value, str):
                assert not SECRET_LOOKING.search(value), f"{handler}: {name} holds a secret-looking value"


def test_consent_environment_follows_the_contract(raw: dict[str, Any], stage: str) -> None:
    variables = function_environments(raw)["oauth_callback.handler.lambda_handler"]
    assert set(variables) == CONSENT_ENV
    assert variables["STAGE"] == stage
    assert variables["POWERTOOLS_SERVICE_NAME"] == "oauth_callback"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "SellerInsights"
    assert variables["LOG_LEVEL"] == "INFO"
    assert variables["APP_DRAFT"] == ("false" if stage == "prod" else "true")
    assert variables["DEFAULT_MARKETPLACE"] == "US"
    assert variables["STATE_TTL_SECONDS"] == "600"
    assert variables["CONSENT_VERIFICATION_SECONDS"] == str(6 * 3600)
    token_key = variables["TOKEN_KEY_ID"]
    assert isinstance(token_key, dict)
    assert token_key["Fn::GetAtt"][1] == "Arn"
    api_id = next(iter(resources(raw, "AWS::ApiGatewayV2::Api")))
    assert variables["REDIRECT_URI"] == {"Fn::Join": ["", [{"Fn::GetAtt": [api_id, "ApiEndpoint"]}, "/callback"]]}


def test_every_function_names_sellers_by_the_keyed_seller_key(raw: dict[str, Any]) -> None:
    """One secret keys the opaque seller keys of every function (seller_insights.pseudonyms); retained."""
    secret_id, secret = by_purpose(raw, "seller_keys")
    assert (secret["DeletionPolicy"], secret["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] == 64
    for handler, variables in function_environments(raw).items():
        assert variables["SELLER_KEY_SECRET_ID"] == {"Ref": secret_id}, handler
    for handler, statements in _function_policies(raw).items():
        # (policy minimization may merge it with another secret's GetSecretValue into one statement)
        reading = [s for s in statements if {"Ref": secret_id} in _as_list(s.get("Resource"))]
        assert [s["Action"] for s in reading] == ["secretsmanager:GetSecretValue"], handler


def test_only_the_consent_and_token_functions_hold_the_lwa_client_secret(raw: dict[str, Any]) -> None:
    """With the client secret a function could mint grantless tokens of any scope, rotation included: the
    consent callback (code exchange) and the token refresher (refresh, destinations, rotation) only."""
    secret_id, _ = by_purpose(raw, "lwa_client")
    holders = {handler for handler, statements in _function_policies(raw).items()
               if any({"Ref": secret_id} in _as_list(s.get("Resource")) for s in statements)}
    assert holders == {CONSENT_HANDLER, TOKEN_HANDLER}
    told = {handler for handler, variables in function_environments(raw).items() if "LWA_CLIENT_SECRET_ID" in variables}
    assert told == {CONSENT_HANDLER, TOKEN_HANDLER}


def test_no_wildcard_permissions(raw: dict[str, Any]) -> None:
    documents = [p["Properties"]["PolicyDocument"] for p in resources(raw, "AWS::IAM::Policy").values()]
    for role in resources(raw, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"], "prefer inline least-privilege policies"
        documents += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
    for document in documents:
        for statement in document["Statement"]:
            actions = _as_list(statement["Action"])
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), statement
            if "*" in _as_list(statement["Resource"]):
                assert set(actions) <= RESOURCE_STAR_ALLOWED, statement


def _function_policies(raw: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each function's handler mapped to the statements of the inline policies on its role."""
    role_to_handler = {
        function["Properties"]["Role"]["Fn::GetAtt"][0]: function["Properties"]["Handler"]
        for function in resources(raw, "AWS::Lambda::Function").values()
    }
    statements: dict[str, list[dict[str, Any]]] = {handler: [] for handler in role_to_handler.values()}
    for policy in resources(raw, "AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            if role["Ref"] in role_to_handler:
                statements[role_to_handler[role["Ref"]]] += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _on_token_key(raw: dict[str, Any], statement: dict[str, Any]) -> bool:
    key_id, _ = by_purpose(raw, "token_key")
    return key_id in json.dumps(statement["Resource"])


def test_only_consent_and_token_functions_touch_refresh_tokens(raw: dict[str, Any]) -> None:
    touching = {
        handler
        for handler, statements in _function_policies(raw).items()
        if any(REFRESH_TOKEN_CONDITION in s.get("Condition", {}).get("StringEquals", {}).items() for s in statements)
    }
    assert touching == {CONSENT_HANDLER, TOKEN_HANDLER}
    # Nor may anything else (another role's policy, an allowing key-policy statement) name the purpose.
    allowed_roles = {
        f["Properties"]["Role"]["Fn::GetAtt"][0]
        for f in resources(raw, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] in (CONSENT_HANDLER, TOKEN_HANDLER)
    }
    for name, resource in raw["Resources"].items():
        if "refresh_token" not in json.dumps(resource.get("Properties", {})):
            continue
        if resource["Type"] == "AWS::KMS::Key":  # the token key's Deny for everyone else (test below)
            naming = [s for s in resource["Properties"]["KeyPolicy"]["Statement"] if "refresh_token" in json.dumps(s)]
            assert [s["Effect"] for s in naming] == ["Deny"], name
            continue
        assert resource["Type"] == "AWS::IAM::Policy", name
        assert {role["Ref"] for role in resource["Properties"]["Roles"]} <= allowed_roles, name


def test_token_key_is_never_granted_without_purpose_or_service(raw: dict[str, Any]) -> None:
    statements = [s for policy in _function_policies(raw).values() for s in policy]
    kms_on_token_key = [
        s for s in statements
        if _on_token_key(raw, s) and any(action.startswith("kms:") for action in _as_list(s["Action"]))
    ]
    assert kms_on_token_key
    for statement in kms_on_token_key:
        assert statement["Effect"] == "Allow"
        condition = statement["Condition"]
        assert set(condition) == {"StringEquals"}, statement
        equals = condition["StringEquals"]
        # Either one token purpose, or only through a service (DynamoDB, Secrets Manager) that uses the key.
        assert set(equals) in ({"kms:EncryptionContext:purpose"}, {"kms:ViaService"}), statement
    # The token key's own policy: function roles appear there only through a service.
    _, key = by_purpose(raw, "token_key")
    role_ids = {f["Properties"]["Role"]["Fn::GetAtt"][0] for f in resources(raw, "AWS::Lambda::Function").values()}
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        if any(role_id in json.dumps(statement["Principal"]) for role_id in role_ids):
            assert set(statement["Condition"]["StringEquals"]) == {"kms:ViaService"}, statement


def test_refresh_tokens_open_for_the_consent_and_token_roles_only(raw: dict[str, Any]) -> None:
    """The token key's policy denies every use under purpose=refresh_token to every other principal (an
    account administrator, the deploy role, the other functions), and no service principal has a grant."""
    _, key = by_purpose(raw, "token_key")
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    assert not [s for s in statements if "Service" in s["Principal"]]
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    roles = {f["Properties"]["Handler"]: f["Properties"]["Role"]
             for f in resources(raw, "AWS::Lambda::Function").values()}
    assert deny["Principal"] == {"AWS": "*"} and deny["Resource"] == "*"
    assert deny["Action"] == ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
    assert deny["Condition"] == {
        "StringEquals": {"kms:EncryptionContext:purpose": "refresh_token"},
        "ArnNotEquals": {"aws:PrincipalArn": [roles[CONSENT_HANDLER], roles[TOKEN_HANDLER]]},
    }


def test_token_function_gets_exactly_its_purposes(raw: dict[str, Any]) -> None:
    purposes = {
        s["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"]
        for s in _function_policies(raw)[TOKEN_HANDLER]
        if "kms:EncryptionContext:purpose" in s.get("Condition", {}).get("StringEquals", {})
    }
    assert purposes == {"refresh_token", "access_token"}
    consent = {
        s["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"]
        for s in _function_policies(raw)[CONSENT_HANDLER]
        if "kms:EncryptionContext:purpose" in s.get("Condition", {}).get("StringEquals", {})
    }
    assert consent == {"refresh_token"}


def test_token_function_permissions_are_scoped(raw: dict[str, Any]) -> None:
    statements = _function_policies(raw)[TOKEN_HANDLER]
    by_action: dict[str, list[Any]] = {}
    for statement in statements:
        for action in _as_list(statement["Action"]):
            by_action.setdefault(action, []).append(statement["Resource"])
    connections_id, _ = by_purpose(raw, "connections")
    idempotency_id, _ = by_purpose(raw, "idempotency")
    secret_id, _ = by_purpose(raw, "lwa_client")
    # Items of its two tables, no Scan, and Query on the three named indexes only.
    assert "dynamodb:Scan" not in by_action
    item_resources = json.dumps(by_action["dynamodb:PutItem"])
    assert connections_id in item_resources and idempotency_id in item_resources
    assert "index" not in item_resources
    index_arns = [r for rs in by_action["dynamodb:Query"] for r in _as_list(rs) if "Fn::Join" in r]
    index_suffixes = sorted(r["Fn::Join"][1][-1] for r in index_arns)
    assert index_suffixes == ["/index/by_reauthorization_due", "/index/by_refresh_due", "/index/by_verification_due"]
    # What became of each consent goes to the audit table, which it may only add records to.
    audit_id, _ = by_purpose(raw, "audit")
    audit_actions = {a for a, rs in by_action.items() if audit_id in json.dumps(rs)}
    assert audit_actions == {"dynamodb:PutItem"}
    # Reads the LWA client secret and stores new versions of it, nothing else in Secrets Manager.
    secret_actions = {a for a in by_action if a.startswith("secretsmanager:")}
    assert secret_actions == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
                              "secretsmanager:PutSecretValue"}
    assert by_action["secretsmanager:PutSecretValue"] == [{"Ref": secret_id}]
    # Events only to the default bus; metrics go through EMF (logs), not PutMetricData.
    (bus,) = by_action["events:PutEvents"]
    assert bus["Fn::Join"][1][-1] == ":event-bus/default"
    assert "cloudwatch:PutMetricData" not in by_action


def test_token_environment_follows_the_contract(raw: dict[str, Any], stage: str) -> None:
    variables = function_environments(raw)[TOKEN_HANDLER]
    assert set(variables) == TOKEN_ENV
    assert variables["STAGE"] == stage
    assert variables["POWERTOOLS_SERVICE_NAME"] == "token_refresher"
    # A revoked connection is purged retention_days - pitr_recovery_days - 1 = 30 - 2 - 1 days later.
    assert (variables["PURGE_AFTER_DAYS"], variables["REAUTH_NOTICE_DAYS"], variables["ROTATE_WHEN_DAYS_LEFT"]) == (
        "27", "30", "7"
    )
    assert variables["EVENT_BUS_NAME"] == "default"
    bucket_id, _ = by_purpose(raw, "data")
    assert variables["DATA_BUCKET"] == {"Ref": bucket_id}  # the re-authorization digest, under notices/
    # The refresh finder keeps the REPORT_PROCESSING_FINISHED destinations of the report pipeline's queue.
    report_queue_id, _ = by_purpose(raw, "report_notifications")
    assert variables["REPORT_NOTIFICATIONS_QUEUE_ARN"] == {"Fn::GetAtt": [report_queue_id, "Arn"]}
    consent = function_environments(raw)[CONSENT_HANDLER]
    for shared in ("CONNECTIONS_TABLE", "IDEMPOTENCY_TABLE", "AUDIT_TABLE", "TOKEN_KEY_ID", "LWA_CLIENT_SECRET_ID"):
        assert variables[shared] == consent[shared], shared


def test_token_function_dead_letters_failed_async_invocations(raw: dict[str, Any]) -> None:
    function = next(f for f in resources(raw, "AWS::Lambda::Function").values()
                    if f["Properties"]["Handler"] == TOKEN_HANDLER)
    dlq_id, _ = by_purpose(raw, "token_events_dlq")
    assert function["Properties"]["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
