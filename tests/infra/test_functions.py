"""Lambda functions, their roles and their environment."""

from __future__ import annotations

import re
from typing import Any

import pytest

from infra.app import function_environments
from tests.infra.conftest import resources

pytestmark = pytest.mark.slow

# AWS offers no resource-level permissions for these actions: "*" is the only valid resource.
RESOURCE_STAR_ALLOWED = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
SECRET_LOOKING = re.compile(
    r"(Atz[ra]\||amzn1\.oa2-cs|-----BEGIN|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16})|^[A-Za-z0-9+/=_-]{40,}$"
)
SECRET_NAMES = re.compile(r"SECRET(?!_ID$)|PASSWORD|TOKEN(?!_KEY_ID$)|PRIVATE|CREDENTIAL", re.IGNORECASE)
CONSENT_ENV = {
    "STAGE",
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
    token_key = variables["TOKEN_KEY_ID"]
    assert isinstance(token_key, dict)
    assert token_key["Fn::GetAtt"][1] == "Arn"
    api_id = next(iter(resources(raw, "AWS::ApiGatewayV2::Api")))
    assert variables["REDIRECT_URI"] == {"Fn::Join": ["", [{"Fn::GetAtt": [api_id, "ApiEndpoint"]}, "/callback"]]}


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


def test_refresh_token_crypto_is_bound_to_its_purpose(raw: dict[str, Any]) -> None:
    statements = [
        statement
        for policy in resources(raw, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(action.startswith("kms:") for action in _as_list(statement["Action"]))
    ]
    assert statements
    for statement in statements:
        condition = statement["Condition"]["StringEquals"]
        # Either the token purpose, or only through a service (DynamoDB) that uses the key itself.
        assert condition.get("kms:EncryptionContext:purpose") == "refresh_token" or "kms:ViaService" in condition
    assert any("kms:EncryptionContext:purpose" in s["Condition"]["StringEquals"] for s in statements)
