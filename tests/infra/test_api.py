"""The consent HTTP API, its access logs and the alarms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.conftest import by_purpose, resources

pytestmark = pytest.mark.slow

FORBIDDEN_IN_ACCESS_LOGS = (
    "querystring",
    "$context.requestoverride",
    "$input",
    "$context.authorizer",
    "$context.path",
    "$request",
    "$context.identity.user",
)


CONSENT_ROUTES = {"ANY /connect", "ANY /login", "ANY /callback", "ANY /done"}
ADMIN_ROUTES = {
    "GET /admin/sellers/{seller_id}",
    "PATCH /admin/sellers/{seller_id}",
    "POST /admin/sellers/{seller_id}/export",
    "POST /admin/sellers/{seller_id}/deletion",
    "DELETE /admin/sellers/{seller_id}/deletion",
    "POST /admin/sellers/{seller_id}/tokens/removal",
}
HANDLERS = {
    "oauth_callback.handler.lambda_handler": CONSENT_ROUTES,
    "data_requests.handler.lambda_handler": ADMIN_ROUTES,
}


def _routes(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["RouteKey"]: r["Properties"] for r in resources(raw, "AWS::ApiGatewayV2::Route").values()}


def test_routes_are_the_contract(raw: dict[str, Any]) -> None:
    assert set(_routes(raw)) == CONSENT_ROUTES | ADMIN_ROUTES
    integrations = list(resources(raw, "AWS::ApiGatewayV2::Integration").values())
    assert [i["Properties"]["PayloadFormatVersion"] for i in integrations] == ["2.0", "2.0"]


def test_each_route_goes_to_its_function(raw: dict[str, Any]) -> None:
    functions = {name: f["Properties"]["Handler"] for name, f in resources(raw, "AWS::Lambda::Function").items()}
    integrations = {
        name: functions[i["Properties"]["IntegrationUri"]["Fn::GetAtt"][0]]
        for name, i in resources(raw, "AWS::ApiGatewayV2::Integration").items()
    }
    served: dict[str, set[str]] = {}
    for key, route in _routes(raw).items():
        integration = route["Target"]["Fn::Join"][1][1]["Ref"]
        served.setdefault(integrations[integration], set()).add(key)
    assert served == HANDLERS


def test_admin_routes_need_iam_and_consent_routes_stay_public(raw: dict[str, Any]) -> None:
    routes = _routes(raw)
    for key in ADMIN_ROUTES:
        assert routes[key]["AuthorizationType"] == "AWS_IAM", key
        assert "AuthorizerId" not in routes[key], key
    for key in CONSENT_ROUTES:
        # Sellers' browsers arrive redirected from Amazon: no caller identity to check.
        assert routes[key].get("AuthorizationType", "NONE") == "NONE", key
    # IAM authorization needs no authorizer resource; nothing else authorizes anything.
    assert not resources(raw, "AWS::ApiGatewayV2::Authorizer")


def test_access_logs_are_json_without_request_data(raw: dict[str, Any]) -> None:
    for name, stage in resources(raw, "AWS::ApiGatewayV2::Stage").items():
        settings = stage["Properties"]["AccessLogSettings"]
        log_format = settings["Format"]
        fields = json.loads(log_format)
        assert {"requestId", "status", "routeKey"} <= set(fields), name
        for forbidden in FORBIDDEN_IN_ACCESS_LOGS:
            assert forbidden not in log_format.lower(), f"{name}: {forbidden} in access log format"
        log_group = raw["Resources"][settings["DestinationArn"]["Fn::GetAtt"][0]]
        assert log_group["Properties"]["RetentionInDays"] >= 365


def test_default_stage_is_throttled(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": Match.any_value(),
                "ThrottlingBurstLimit": Match.any_value(),
            },
        },
    )


def test_alarm_topic_is_encrypted_and_tls_only(raw: dict[str, Any]) -> None:
    topic_id, topic = by_purpose(raw, "alarms")
    key_id, _ = by_purpose(raw, "token_key")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    policy = next(
        p for p in resources(raw, "AWS::SNS::TopicPolicy").values() if p["Properties"]["Topics"] == [{"Ref": topic_id}]
    )
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    )


def test_alarms_on_every_function_and_the_api(raw: dict[str, Any]) -> None:
    topic_id, _ = by_purpose(raw, "alarms")
    alarms = list(resources(raw, "AWS::CloudWatch::Alarm").values())
    assert all(alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}] for alarm in alarms)
    watched = {
        dimension["Value"]["Ref"]
        for alarm in alarms
        for dimension in alarm["Properties"].get("Dimensions", [])
        if dimension["Name"] in ("FunctionName", "ApiId")
    }
    assert set(resources(raw, "AWS::Lambda::Function")) <= watched
    assert set(resources(raw, "AWS::ApiGatewayV2::Api")) <= watched
    assert {a["Properties"]["MetricName"] for a in alarms} >= {"Errors", "5xx"}


def test_outputs_carry_no_secret_values(raw: dict[str, Any]) -> None:
    outputs = raw["Outputs"]
    assert {"ApiUrl", "DataBucketName", "LwaClientSecretArn", "AlarmTopicArn", "ConnectionsTableName",
            "NotificationsQueueUrl", "NotificationsQueueArn", "OperatorNoticesTopicArn"} <= set(outputs)
    assert "SecretString" not in json.dumps(outputs)
    assert "resolve:secretsmanager" not in json.dumps(raw)
