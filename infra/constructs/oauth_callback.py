"""OAuthCallback: the public HTTP API of the OAuth consent flow and its oauth_callback function.

Every route of the API (these four and the ``/admin`` routes of data_requests.py) is added through
``ThrottledRoutes``, which gives each route key its own throttle in the stage's ``RouteSettings``
from the stage's ``api_limits`` (cdk.json): a flood on one route empties only that route's bucket.
The consent function's reserved concurrency holds what its four routes' buckets can admit within one
function timeout, so none of them can take another's executions and the function never takes more
than that from the account's pool.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from constructs import Construct, IValidation

from infra.config import ConfigError, RouteLimit, StageConfig
from infra.constructs.api_domain import ApiDomain
from infra.constructs.data_stores import DataStores
from infra.constructs.log_groups import stage_log_group
from infra.constructs.service_function import ServiceFunction
from infra.nag import acknowledge

DUTY = "oauth_callback"
# The consent function's paths as functions/oauth_callback/routes.py declares them (a test proves the two
# equal; synthesis does not import function code). /done is the clean outcome page the callback 303s to.
ROUTES = ("/connect", "/login", "/callback", "/done")
CALLBACK_PATH = "/callback"
# HTTP APIs give up on an integration after 30 s.
API_INTEGRATION_LIMIT_SECONDS = 30

# A consent is one /connect (website) or /login (Appstore, yearly re-authorization), then one /callback,
# then one /done: each step must admit what the steps before it can send, or a seller who has just
# consented at Amazon gets a 429 on the way back.
CONSENT_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/callback", ("/connect", "/login")),
    ("/done", ("/callback",)),
)

# Only request metadata: never the query string (code, state), path with query, request overrides,
# bodies ($input) or authorizer/token fields (OA-18). Never the source IP either: these logs are kept
# 365 days and a seller's IP address is personal data beyond the 30-day deletion promise.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "protocol": "$context.protocol",
    # "The Amazon Resource Name (ARN) of the effective user identified after authentication. Supported for
    # routes that use IAM authorization" (HTTP API access-log variables,
    # https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-logging-variables.html):
    # the operator's role session on /admin routes, "-" on the public consent routes.
    "principalArn": "$context.identity.userArn",
}


def consent_concurrency_needed(limits: Sequence[RouteLimit], timeout_seconds: int) -> int:
    """Executions the consent routes can hold at once, however slow the function: within any window of
    one timeout a route's bucket admits at most ``burst + rate x timeout`` requests, and none of them
    runs longer than the timeout. Summed over the routes (one bucket per route key)."""
    return math.ceil(sum(limit.burst + limit.rate * timeout_seconds for limit in limits))


def check_consent_limits(config: StageConfig) -> dict[str, RouteLimit]:
    """The limit of each consent route; ConfigError (naming the key) when a route has none, a later step of
    the flow admits less than an earlier one, or the reserved concurrency cannot hold the routes."""
    key = f"cdk.json context 'stages.{config.name}.api_limits"
    limits: dict[str, RouteLimit] = {}
    for path in ROUTES:
        limit = config.api_limits.for_path(path)
        if limit is None:
            raise ConfigError(f"{key}.routes' has no entry for {path}: add one with its rate and burst")
        limits[path] = limit
    for step, before in CONSENT_STEPS:
        rate = sum(limits[path].rate for path in before)
        burst = sum(limits[path].burst for path in before)
        if limits[step].rate < rate or limits[step].burst < burst:
            raise ConfigError(
                f"{key}.routes.{step}' (rate {limits[step].rate:g}, burst {limits[step].burst}) admits less than "
                f"{' + '.join(before)} (rate {rate:g}, burst {burst}) can send it: every consent passes through "
                f"{step}, so raise its limits"
            )
    reserved = config.api_limits.consent_reserved_concurrency
    needed = consent_concurrency_needed(list(limits.values()), config.function_timeout_seconds)
    if reserved is not None and reserved < needed:
        terms = " + ".join(
            f"({limits[p].burst} + {limits[p].rate:g} x {config.function_timeout_seconds})" for p in ROUTES
        )
        raise ConfigError(
            f"{key}.consent_reserved_concurrency' ({reserved}) cannot hold the consent routes: "
            f"sum of (burst + rate x function_timeout_seconds) = {terms} = {needed}; raise it to {needed} or "
            "lower the routes' limits"
        )
    return limits


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


def route_key(route: apigwv2.HttpRoute) -> str:
    """``METHOD /path`` as in the template (``ANY /connect``, ``GET /admin/sellers/{seller_id}``)."""
    resource = route.node.default_child
    assert isinstance(resource, apigwv2.CfnRoute)
    return resource.route_key


class ThrottledRoutes(Construct):
    """The only way routes are added to the HTTP API: each route created gets its own throttle.

    API Gateway applies ``RouteSettings`` per route key, one token bucket each (rate per second, burst
    deep); routes without an entry would fall back to the stage's default. The limit of a route is the
    ``api_limits.routes`` entry with the longest path covering the route's path, so ``"/admin"`` gives
    every admin route a bucket of that size of its own. Lives under the API, found with ``of(api)``.
    """

    ID = "ThrottledRoutes"

    def __init__(self, api: apigwv2.HttpApi, *, stage: apigwv2.HttpStage, config: StageConfig) -> None:
        super().__init__(api, self.ID)
        resource = stage.node.default_child
        assert isinstance(resource, apigwv2.CfnStage)
        self._api = api
        self._stage = resource
        self._config = config
        self.stage_name = config.name
        self.limits: dict[str, RouteLimit] = {}  # route key -> its limit
        self.node.add_validation(_EveryLimitCoversARoute(self))

    @classmethod
    def of(cls, api: apigwv2.HttpApi) -> ThrottledRoutes:
        found = api.node.try_find_child(cls.ID)
        if not isinstance(found, ThrottledRoutes):
            raise LookupError(f"{api.node.path} has no {cls.ID}: routes are added through ThrottledRoutes")
        return found

    def add(
        self,
        path: str,
        methods: Sequence[apigwv2.HttpMethod],
        integration: apigwv2.HttpRouteIntegration,
        authorizer: apigwv2.IHttpRouteAuthorizer | None = None,
    ) -> list[apigwv2.HttpRoute]:
        limit = self._config.api_limits.for_path(path)
        if limit is None:
            raise ConfigError(
                f"cdk.json context 'stages.{self._config.name}.api_limits.routes' has no entry for {path} or a "
                f"prefix of it: add one with its rate and burst"
            )
        routes = self._api.add_routes(path=path, methods=list(methods), integration=integration, authorizer=authorizer)
        for route in routes:
            self.limits[route_key(route)] = limit
        self._stage.route_settings = {
            key: {"ThrottlingBurstLimit": limit.burst, "ThrottlingRateLimit": limit.rate}
            for key, limit in sorted(self.limits.items())
        }
        return routes

    def unused_limits(self) -> list[RouteLimit]:
        used = set(self.limits.values())
        return [limit for limit in self._config.api_limits.routes if limit not in used]


@jsii.implements(IValidation)
class _EveryLimitCoversARoute:
    """Synthesis fails on an ``api_limits.routes`` entry that covers no route (a typo, a removed route)."""

    def __init__(self, routes: ThrottledRoutes) -> None:
        self._routes = routes

    def validate(self) -> list[str]:
        return [
            f"cdk.json context 'stages.{self._routes.stage_name}.api_limits.routes.{limit.path}' covers no route of "
            "the HTTP API: fix the path or remove the entry"
            for limit in self._routes.unused_limits()
        ]


class OAuthCallback(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, stores: DataStores) -> None:
        super().__init__(scope, construct_id)
        if config.function_timeout_seconds >= API_INTEGRATION_LIMIT_SECONDS:
            raise ConfigError(
                f"cdk.json context 'stages.{config.name}.function_timeout_seconds' must be below "
                f"{API_INTEGRATION_LIMIT_SECONDS} for the API-facing {DUTY} function"
            )
        self.route_limits = check_consent_limits(config)

        self.api = apigwv2.HttpApi(
            self,
            "HttpApi",
            description="Seller Insights consent flow (/connect, /login, /callback, /done) and the "
            "IAM-authorized /admin data-request routes",
            create_default_stage=False,
            # With a custom domain the API has that one address (the HTTPS-only rule); /admin signs for it too.
            disable_execute_api_endpoint=config.domain is not None and config.domain.disable_execute_api_endpoint,
        )
        # The fixed redirect URI registered with Amazon; never built from request data (OA-07). With a custom
        # domain it survives a re-created API.
        base_url = config.domain.url if config.domain is not None else self.api.api_endpoint
        self.redirect_uri = config.redirect_uri or f"{base_url}{CALLBACK_PATH}"

        self.handler = ServiceFunction(
            self,
            "OAuthCallback",
            duty=DUTY,
            config=config,
            description="Consent flow: /connect, /login, /callback and /done of the SP-API website authorization",
            environment={
                "CONNECTIONS_TABLE": stores.connections.table_name,
                "OAUTH_STATE_TABLE": stores.oauth_state.table_name,
                "IDEMPOTENCY_TABLE": stores.idempotency.table_name,
                "AUDIT_TABLE": stores.audit.table_name,
                "TOKEN_KEY_ID": stores.key.key_arn,
                "LWA_CLIENT_SECRET_ID": stores.lwa_client_secret.secret_arn,
                "APP_DRAFT": "true" if config.app_draft else "false",
                "REDIRECT_URI": self.redirect_uri,
                "DEFAULT_MARKETPLACE": config.default_marketplace,
                "STATE_TTL_SECONDS": str(config.state_ttl_seconds),
                "CONSENT_VERIFICATION_SECONDS": str(config.consent_verification_hours * 3600),
            },
            # Neither starved by the other functions nor able to starve them (check_consent_limits).
            reserved_concurrency=config.api_limits.consent_reserved_concurrency,
        )
        self.handler.acknowledge_synchronous_only("API Gateway (HTTP API)")
        stores.grant_tables_read_write(self.handler, stores.oauth_state, stores.connections, stores.idempotency)
        # A consent refused during a pending deletion is recorded; the audit table is write-only here.
        stores.grant_table_actions(self.handler, stores.audit, "dynamodb:PutItem")
        stores.grant_refresh_token_crypto(self.handler)
        stores.grant_seller_keys(self.handler)
        stores.grant_lwa_client_read(self.handler)

        self.access_log_group = stage_log_group(self, "AccessLogs", config)
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            # The default for a route without its own settings; ThrottledRoutes gives every route its own.
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api_throttle_rate,
                burst_limit=config.api_throttle_burst,
            ),
            access_log_settings=_AccessLogSettings(
                apigwv2.LogGroupLogDestination(self.access_log_group),
                apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        self.routes = ThrottledRoutes(self.api, stage=self.stage, config=config)
        self.domain = (
            ApiDomain(self, "Domain", domain=config.domain, api=self.api, stage=self.stage)
            if config.domain is not None
            else None
        )

        integration = self.handler.http_integration("OAuthCallbackIntegration")
        for path in ROUTES:
            for route in self.routes.add(path, [apigwv2.HttpMethod.ANY], integration):
                acknowledge(
                    route,
                    "AwsSolutions-APIG4",
                    "Public consent route: sellers' browsers arrive here redirected from Amazon, so there is "
                    "no caller identity to authorize; the flow is protected by a browser-bound, single-use, "
                    "short-lived OAuth state.",
                )

    @property
    def url(self) -> str:
        """The API's base URL, ending in '/': the custom domain's when there is one."""
        return f"{self.domain.url}/" if self.domain is not None else self.stage.url

    @property
    def login_uri(self) -> str:
        """The Log-in URI registered with Amazon (the app's /login route)."""
        return f"{self.url}login"
