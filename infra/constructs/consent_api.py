"""ConsentApi: the public HTTP API of the OAuth consent flow and its oauth_callback function."""

from __future__ import annotations

import json

import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from infra.config import ConfigError, StageConfig
from infra.constructs.log_groups import stage_log_group
from infra.constructs.service_function import ServiceFunction
from infra.constructs.token_vault import TokenVault
from infra.nag import acknowledge

DUTY = "oauth_callback"
# /done is the clean outcome page the callback 303s to (no code or state in its URL).
ROUTES = ("/connect", "/login", "/callback", "/done")
CALLBACK_PATH = "/callback"
# HTTP APIs give up on an integration after 30 s.
API_INTEGRATION_LIMIT_SECONDS = 30

# Only request metadata: never the query string (code, state), path with query, request overrides,
# bodies ($input) or authorizer/token fields (OA-18).
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "protocol": "$context.protocol",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, destination: apigwv2.IAccessLogDestination, log_format: apigw.AccessLogFormat) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


class ConsentApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, vault: TokenVault) -> None:
        super().__init__(scope, construct_id)
        if config.function_timeout_seconds >= API_INTEGRATION_LIMIT_SECONDS:
            raise ConfigError(
                f"cdk.json context 'stages.{config.name}.function_timeout_seconds' must be below "
                f"{API_INTEGRATION_LIMIT_SECONDS} for the API-facing {DUTY} function"
            )

        self.api = apigwv2.HttpApi(
            self,
            "HttpApi",
            description="Seller Insights consent flow (/connect, /login, /callback, /done) and the "
            "IAM-authorized /admin data-request routes",
            create_default_stage=False,
        )
        # The fixed redirect URI registered with Amazon; never built from request data (OA-07).
        self.redirect_uri = config.redirect_uri or f"{self.api.api_endpoint}{CALLBACK_PATH}"

        self.handler = ServiceFunction(
            self,
            "OAuthCallback",
            duty=DUTY,
            config=config,
            description="Consent flow: /connect, /login, /callback and /done of the SP-API website authorization",
            environment={
                "CONNECTIONS_TABLE": vault.connections.table_name,
                "OAUTH_STATE_TABLE": vault.oauth_state.table_name,
                "IDEMPOTENCY_TABLE": vault.idempotency.table_name,
                "AUDIT_TABLE": vault.audit.table_name,
                "TOKEN_KEY_ID": vault.key.key_arn,
                "LWA_CLIENT_SECRET_ID": vault.lwa_client_secret.secret_arn,
                "APP_DRAFT": "true" if config.app_draft else "false",
                "REDIRECT_URI": self.redirect_uri,
                "DEFAULT_MARKETPLACE": config.default_marketplace,
                "STATE_TTL_SECONDS": str(config.state_ttl_seconds),
                "CONSENT_VERIFICATION_SECONDS": str(config.consent_verification_hours * 3600),
            },
        )
        self.handler.acknowledge_synchronous_only("API Gateway (HTTP API)")
        vault.grant_tables_read_write(self.handler, vault.oauth_state, vault.connections, vault.idempotency)
        # A consent refused during a pending deletion is recorded; the audit table is write-only here.
        vault.grant_table_actions(self.handler, vault.audit, "dynamodb:PutItem")
        vault.grant_refresh_token_crypto(self.handler)
        vault.grant_lwa_client_read(self.handler)

        integration = HttpLambdaIntegration(
            "OAuthCallbackIntegration",
            self.handler.function,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
        )
        for path in ROUTES:
            for route in self.api.add_routes(path=path, methods=[apigwv2.HttpMethod.ANY], integration=integration):
                acknowledge(
                    route,
                    "AwsSolutions-APIG4",
                    "Public consent route: sellers' browsers arrive here redirected from Amazon, so there is "
                    "no caller identity to authorize; the flow is protected by a browser-bound, single-use, "
                    "short-lived OAuth state.",
                )

        self.access_log_group = stage_log_group(self, "AccessLogs", config)
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api_throttle_rate,
                burst_limit=config.api_throttle_burst,
            ),
            access_log_settings=_AccessLogSettings(
                apigwv2.LogGroupLogDestination(self.access_log_group),
                apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )

    @property
    def url(self) -> str:
        return self.stage.url
