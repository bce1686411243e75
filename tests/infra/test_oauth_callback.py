"""The consent HTTP API, its access logs and the alarms."""

from __future__ import annotations

import json
import math
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk.assertions import Match, Template
from aws_cdk.aws_apigatewayv2_integrations import HttpUrlIntegration

from infra.app import load_cdk_context
from infra.config import ConfigError, StageConfig
from infra.constructs.oauth_callback import ThrottledRoutes, check_consent_limits, consent_concurrency_needed
from tests.infra.conftest import by_purpose, resources

pytestmark = pytest.mark.slow

# Request data and personal data (the source IP, the user agent) never reach the API access logs.
FORBIDDEN_IN_ACCESS_LOGS = (
    "querystring",
    "$context.requestoverride",
    "$input",
    "$context.authorizer",
    "$context.path",
    "$request",
    "$context.identity.sourceip",
    "$context.identity.useragent",
    "$context.identity.user\"",
    "x-forwarded-for",
)


CONSENT_ROUTES = {"ANY /connect", "ANY /login", "ANY /callback", "ANY /done"}
ADMIN_ROUTES = {
    "GET /admin/sellers/{seller_id}",
    "PATCH /admin/sellers/{seller_id}",
    "POST /admin/sellers/{seller_id}/export",
    "GET /admin/sellers/{seller_id}/export/{request_id}",
    "POST /admin/sellers/{seller_id}/deletion",
    "DELETE /admin/sellers/{seller_id}/deletion",
    "POST /admin/sellers/{seller_id}/tokens/removal",
    "GET /admin/sellers/{seller_id}/key",
    "POST /admin/sellers/{seller_id}/backfill",
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


def _served(raw: dict[str, Any]) -> dict[str, set[str]]:
    """Handler -> the route keys the template sends to its function."""
    functions = {name: f["Properties"]["Handler"] for name, f in resources(raw, "AWS::Lambda::Function").items()}
    # Each integration invokes its function's `live` alias (infra/constructs/service_function.py).
    aliases = {name: a["Properties"]["FunctionName"]["Ref"] for name, a in resources(raw, "AWS::Lambda::Alias").items()}
    integrations = {
        name: functions[aliases[i["Properties"]["IntegrationUri"]["Ref"]]]
        for name, i in resources(raw, "AWS::ApiGatewayV2::Integration").items()
    }
    served: dict[str, set[str]] = {}
    for key, route in _routes(raw).items():
        integration = route["Target"]["Fn::Join"][1][1]["Ref"]
        served.setdefault(integrations[integration], set()).add(key)
    return served


def test_each_route_goes_to_its_function(raw: dict[str, Any]) -> None:
    assert _served(raw) == HANDLERS


def _resolver_routes(module: str) -> dict[str, set[str]]:
    """Path (API Gateway syntax) -> methods, as a handler's Powertools resolver has them registered."""
    import importlib

    app = importlib.import_module(module).app
    return {path: {method.upper() for method in ("get", "put", "post", "delete", "patch", "head", "options")
                   if getattr(item, method) is not None}
            for path, item in app.get_openapi_schema().paths.items()}


def test_the_template_routes_each_function_exactly_what_its_handler_declares(raw: dict[str, Any]) -> None:
    """One declaration per function (functions/<duty>/routes.py): the template's route keys, the infra's
    route list and the routes the handler's resolver registers are all that declaration."""
    from data_requests import routes as admin
    from infra.constructs import data_requests as admin_infra
    from infra.constructs import oauth_callback as consent_infra
    from oauth_callback import routes as consent

    served = _served(raw)
    assert served["oauth_callback.handler.lambda_handler"] == consent.route_keys()
    assert consent_infra.ROUTES == consent.PATHS
    assert _resolver_routes("oauth_callback.handler") == {path: {consent.METHOD} for path in consent.PATHS}

    assert served["data_requests.handler.lambda_handler"] == {route.key for route in admin.ROUTES}
    assert {(method.value, path) for method, path in admin_infra.ROUTES} == {(r.method, r.path) for r in admin.ROUTES}
    declared: dict[str, set[str]] = {}
    for route in admin.ROUTES:
        declared.setdefault(route.path, set()).add(route.method)
    assert _resolver_routes("data_requests.handler") == declared


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


def test_access_logs_name_the_iam_principal_and_not_the_source_ip(raw: dict[str, Any]) -> None:
    [stage] = resources(raw, "AWS::ApiGatewayV2::Stage").values()
    fields = json.loads(stage["Properties"]["AccessLogSettings"]["Format"])
    assert fields["principalArn"] == "$context.identity.userArn"
    assert not any("sourceip" in value.lower() or "querystring" in value.lower() for value in fields.values())
    assert "ip" not in {name.lower() for name in fields}


def _stage_config(stage: str, **limits: Any) -> StageConfig:
    stages = load_cdk_context()["stages"]
    if limits:
        stages[stage] = {**stages[stage], "api_limits": {**stages[stage]["api_limits"], **limits}}
    return StageConfig.from_context(stage, stages)


def test_every_route_has_its_own_throttle_from_the_stage_config(raw: dict[str, Any], stage: str) -> None:
    [api_stage] = resources(raw, "AWS::ApiGatewayV2::Stage").values()
    settings = api_stage["Properties"]["RouteSettings"]
    # One entry per route the template has, and nothing else: no second list to drift.
    assert set(settings) == set(_routes(raw)) == CONSENT_ROUTES | ADMIN_ROUTES
    limits = _stage_config(stage).api_limits
    for key, setting in settings.items():
        limit = limits.for_path(key.split(" ", 1)[1])
        assert limit is not None, key
        assert setting == {"ThrottlingRateLimit": limit.rate, "ThrottlingBurstLimit": limit.burst}, key
    # A flood of /connect cannot reach /callback's tokens, nor anyone's the /admin ones.
    assert settings["ANY /callback"]["ThrottlingRateLimit"] >= (
        settings["ANY /connect"]["ThrottlingRateLimit"] + settings["ANY /login"]["ThrottlingRateLimit"])
    assert settings["ANY /done"]["ThrottlingBurstLimit"] >= settings["ANY /callback"]["ThrottlingBurstLimit"]


def test_consent_function_reserves_what_its_routes_can_admit(raw: dict[str, Any], stage: str) -> None:
    functions = {f["Properties"]["Handler"]: f["Properties"] for f in resources(raw, "AWS::Lambda::Function").values()}
    consent = functions["oauth_callback.handler.lambda_handler"]
    reserved = consent["ReservedConcurrentExecutions"]
    assert reserved == _stage_config(stage).api_limits.consent_reserved_concurrency
    [api_stage] = resources(raw, "AWS::ApiGatewayV2::Stage").values()
    settings = api_stage["Properties"]["RouteSettings"]
    # Within one timeout a route admits at most burst + rate x timeout requests, none outliving it.
    needed = sum(settings[key]["ThrottlingBurstLimit"] + settings[key]["ThrottlingRateLimit"] * consent["Timeout"]
                 for key in CONSENT_ROUTES)
    assert needed <= reserved
    # The other functions keep the account's pool: only the consent function reserves.
    assert [h for h, f in functions.items() if "ReservedConcurrentExecutions" in f] == [
        "oauth_callback.handler.lambda_handler"]


def test_concurrency_formula_is_burst_plus_rate_times_timeout() -> None:
    limits = _stage_config("prod").api_limits
    consent = [limits.for_path(path) for path in ("/connect", "/login", "/callback", "/done")]
    assert all(consent)
    assert consent_concurrency_needed([limit for limit in consent if limit], 15) == math.ceil(
        sum(limit.burst + limit.rate * 15 for limit in consent if limit))
    assert consent_concurrency_needed([limit for limit in consent if limit], 15) == 120


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"consent_reserved_concurrency": 0}, r"api_limits\.consent_reserved_concurrency' must be null or an int"),
        ({"consent_reserved_concurrency": "120"}, r"api_limits\.consent_reserved_concurrency'"),
        ({"routes": {}}, r"api_limits\.routes' must be a non-empty object"),
        ({"routes": {"connect": {"rate": 1, "burst": 5}}}, r"api_limits\.routes\.connect' is not a route path"),
        ({"routes": {"/connect/": {"rate": 1, "burst": 5}}}, r"api_limits\.routes\./connect/' is not a route path"),
        ({"routes": {"/connect": [1, 5]}}, r"api_limits\.routes\./connect' must be \{\"rate\""),
        ({"routes": {"/connect": {"rate": 0, "burst": 5}}}, r"api_limits\.routes\./connect' rate must be"),
        ({"routes": {"/connect": {"rate": 1, "burst": 0}}}, r"api_limits\.routes\./connect' burst must be"),
        ({"routes": {"/connect": {"rate": 1, "burst": 2.5}}}, r"api_limits\.routes\./connect' burst must be"),
        ({"routes": {"/connect": {"rate": True, "burst": 5}}}, r"api_limits\.routes\./connect' rate must be"),
        ({"route": {}}, r"api_limits' has unknown key\(s\): route"),
    ],
)
def test_bad_api_limits_name_the_key(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _stage_config("dev", **limits)


def test_missing_api_limits_is_named() -> None:
    stages = load_cdk_context()["stages"]
    dev = {key: value for key, value in stages["dev"].items() if key != "api_limits"}
    with pytest.raises(ConfigError, match=r"stages\.dev\.api_limits' is missing"):
        StageConfig.from_context("dev", {"dev": dev})
    del stages["dev"]["api_limits"]["routes"]
    with pytest.raises(ConfigError, match=r"stages\.dev\.api_limits\.routes' is missing"):
        StageConfig.from_context("dev", stages)
    # CDK drops null context values: an absent reservation is null, no reservation.
    local = load_cdk_context()["stages"]["local"]
    del local["api_limits"]["consent_reserved_concurrency"]
    assert StageConfig.from_context("local", {"local": local}).api_limits.consent_reserved_concurrency is None


def test_reserved_concurrency_must_hold_the_consent_routes() -> None:
    config = _stage_config("prod", consent_reserved_concurrency=119)
    with pytest.raises(ConfigError, match=r"stages\.prod\.api_limits\.consent_reserved_concurrency' \(119\).*= 120"):
        check_consent_limits(config)
    assert set(check_consent_limits(_stage_config("prod"))) == {"/connect", "/login", "/callback", "/done"}
    # No reservation (an account without room for one): nothing to hold, the routes are still throttled.
    assert check_consent_limits(_stage_config("prod", consent_reserved_concurrency=None))


def test_callback_and_done_must_admit_every_consent() -> None:
    routes = load_cdk_context()["stages"]["prod"]["api_limits"]["routes"]
    narrow_callback = {**routes, "/callback": {"rate": 1, "burst": 10}}
    with pytest.raises(ConfigError, match=r"routes\./callback' \(rate 1, burst 10\) admits less than /connect \+"):
        check_consent_limits(_stage_config("prod", routes=narrow_callback))
    narrow_done = {**routes, "/done": {"rate": 2, "burst": 9}}
    with pytest.raises(ConfigError, match=r"routes\./done'.*admits less than /callback"):
        check_consent_limits(_stage_config("prod", routes=narrow_done))
    no_login = {key: value for key, value in routes.items() if key != "/login"}
    with pytest.raises(ConfigError, match=r"routes' has no entry for /login"):
        check_consent_limits(_stage_config("prod", routes=no_login))


def _bare_api(config: StageConfig) -> tuple[cdk.App, ThrottledRoutes]:
    app = cdk.App()
    stack = cdk.Stack(app, "Bare")
    api = apigwv2.HttpApi(stack, "Api", create_default_stage=False)
    stage = apigwv2.HttpStage(stack, "Stage", http_api=api, stage_name="$default")
    return app, ThrottledRoutes(api, stage=stage, config=config)


def test_a_route_without_limits_is_refused_and_a_limit_without_route_fails_synthesis() -> None:
    routes = {"/connect": {"rate": 1, "burst": 5}, "/admin": {"rate": 2, "burst": 5}, "/gone": {"rate": 1, "burst": 1}}
    app, throttled = _bare_api(_stage_config("dev", routes=routes))
    integration = HttpUrlIntegration("Echo", "https://example.com")
    with pytest.raises(ConfigError, match=r"stages\.dev\.api_limits\.routes' has no entry for /report"):
        throttled.add("/report", [apigwv2.HttpMethod.GET], integration)
    throttled.add("/connect", [apigwv2.HttpMethod.ANY], integration)
    throttled.add("/admin/sellers/{seller_id}", [apigwv2.HttpMethod.GET, apigwv2.HttpMethod.PATCH], integration)
    assert throttled.limits == {
        "ANY /connect": throttled.limits["ANY /connect"],
        "GET /admin/sellers/{seller_id}": throttled.limits["PATCH /admin/sellers/{seller_id}"],
        "PATCH /admin/sellers/{seller_id}": throttled.limits["GET /admin/sellers/{seller_id}"],
    }
    assert throttled.limits["GET /admin/sellers/{seller_id}"].path == "/admin"
    with pytest.raises(Exception, match=r"api_limits\.routes\./gone' covers no route"):
        app.synth()


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
    """With a key of its own: CloudWatch publishes as a service, and no service may use the token key."""
    topic_id, topic = by_purpose(raw, "alarms")
    key_id, key = by_purpose(raw, "alarms_key")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    services = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if "Service" in s["Principal"]]
    assert services == [{"Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Effect": "Allow",
                         "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Resource": "*",
                         "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}]
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
    assert {a["Properties"].get("MetricName") for a in alarms} >= {"Errors", "5xx"}


def test_outputs_carry_no_secret_values(raw: dict[str, Any]) -> None:
    outputs = raw["Outputs"]
    assert {"ApiUrl", "DataBucketName", "LwaClientSecretArn", "AlarmTopicArn", "ConnectionsTableName",
            "NotificationsQueueUrl", "NotificationsQueueArn", "OperatorNoticesTopicArn"} <= set(outputs)
    assert "SecretString" not in json.dumps(outputs)
    assert "resolve:secretsmanager" not in json.dumps(raw)
