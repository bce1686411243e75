"""DataRequests: the data_requests function behind the IAM-authorized ``/admin`` routes.

Routes (docs/internal-contracts.md, "Retention and data rights") on the consent HTTP API, each with
``AWS_IAM`` authorization and its own throttle on the stage (``ThrottledRoutes``): access, correction,
export, deletion request and its rollback, token removal. Callers sign with SigV4; the
``OpsSupportRole`` (infra/constructs/operators.py) may invoke these seven routes, only with MFA.

The function works on one seller's partition of the connections table (no index, no Scan) and records
every request in the audit table. An export request is recorded (``EXPORT#{request_id}``) and queued on
``data_exports`` for the export worker (infra/constructs/data_exports.py), which streams the archive into
``exports/`` (expired by the bucket's lifecycle after 7 days); the status route hands a finished one out
as a presigned GET URL, so this function reads ``exports/`` and nothing else of the bucket. It holds no
token purpose of the key: exports never open tokens and token removal deletes items.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk.aws_apigatewayv2_authorizers import HttpIamAuthorizer
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import logical_ref
from infra.constructs.data_exports import DataExports
from infra.constructs.data_stores import EXPORTS_PREFIX, DataStores
from infra.constructs.oauth_callback import API_INTEGRATION_LIMIT_SECONDS, ThrottledRoutes
from infra.constructs.operators import Operators
from infra.constructs.service_function import ServiceFunction
from infra.nag import acknowledge

DUTY = "data_requests"
# Under the HTTP API's 30 s integration limit: the caller gets the function's own answer or error.
REQUEST_TIMEOUT_SECONDS = 28
REQUEST_MEMORY_MB = 1024
SELLER_PATH = "/admin/sellers/{seller_id}"
# (method, path) of every admin route, as functions/data_requests/routes.py declares them (a test proves
# the two equal; synthesis does not import function code).
ROUTES: tuple[tuple[apigwv2.HttpMethod, str], ...] = (
    (apigwv2.HttpMethod.GET, SELLER_PATH),
    (apigwv2.HttpMethod.PATCH, SELLER_PATH),
    (apigwv2.HttpMethod.POST, f"{SELLER_PATH}/export"),
    (apigwv2.HttpMethod.GET, f"{SELLER_PATH}/export/{{request_id}}"),
    (apigwv2.HttpMethod.POST, f"{SELLER_PATH}/deletion"),
    (apigwv2.HttpMethod.DELETE, f"{SELLER_PATH}/deletion"),
    (apigwv2.HttpMethod.POST, f"{SELLER_PATH}/tokens/removal"),
    (apigwv2.HttpMethod.GET, f"{SELLER_PATH}/key"),
    (apigwv2.HttpMethod.POST, f"{SELLER_PATH}/backfill"),
)
AUDIT_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem")


def execute_api_path(path: str) -> str:
    """A route path as it appears in execute-api ARNs: each ``{parameter}`` matches any value (``*``)."""
    return "/".join("*" if part.startswith("{") and part.endswith("}") else part for part in path.split("/"))


class DataRequests(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        stores: DataStores,
        api: apigwv2.HttpApi,
        exports: DataExports,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = ServiceFunction(
            self,
            "DataRequests",
            duty=DUTY,
            config=config,
            description="Data rights: access, correction, export requests, deletion (and rollback), token removal",
            memory_mb=REQUEST_MEMORY_MB,
            timeout=Duration.seconds(REQUEST_TIMEOUT_SECONDS),
            environment={
                "CONNECTIONS_TABLE": stores.connections.table_name,
                "AUDIT_TABLE": stores.audit.table_name,
                "DATA_BUCKET": stores.data_bucket.bucket_name,
                "PURGE_AFTER_DAYS": str(config.purge_after_days),
            },
        )
        assert REQUEST_TIMEOUT_SECONDS < API_INTEGRATION_LIMIT_SECONDS
        self.handler.acknowledge_synchronous_only("API Gateway (HTTP API, AWS_IAM routes)")
        self._grant(stores)
        exports.grant_send(self.handler)

        integration = self.handler.http_integration("DataRequestsIntegration")
        authorizer = HttpIamAuthorizer()
        # Each route gets its own throttle (the stage's api_limits entry for /admin) from the same call.
        throttled = ThrottledRoutes.of(api)
        self.routes: list[apigwv2.HttpRoute] = []
        for method, path in ROUTES:
            self.routes += throttled.add(path, [method], integration, authorizer)

        self._api = api

    def allow_operators(self, operators: Operators) -> None:
        """Operators may invoke these routes (method and path exact), and only these of the API."""
        api = self._api
        # Any stage ("*"): the API has the single $default stage; "*" also stands for each {parameter}.
        route_arns = [api.arn_for_execute_api(method.value, execute_api_path(path), "*") for method, path in ROUTES]
        operators.allow(
            "InvokeAdminRoutesWithMfa",
            ["execute-api:Invoke"],
            route_arns,
            wildcards=[(
                f"Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:"
                f"<{logical_ref(api.node.default_child)}>/*/{method.value}{execute_api_path(path)}",
                "execute-api ARN of one admin route: the stage segment is '*' (the API has only the $default "
                "stage) and the {seller_id} path parameter must match any seller; method and path are fixed, "
                "and the statement requires MFA.",
            ) for method, path in ROUTES],
        )

    def _grant(self, stores: DataStores) -> None:
        fn = self.handler
        # A seller's items share one partition: item read/write and Query on the table, no index.
        stores.grant_tables_read_write(fn, stores.connections)
        stores.grant_table_actions(fn, stores.audit, *AUDIT_ACTIONS)
        stores.grant_seller_keys(fn)
        stores.grant_exports_read(fn)
        bucket = logical_ref(stores.data_bucket.node.default_child)
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{EXPORTS_PREFIX}*]",
            f"The status route of a finished export hands out a presigned GET of {EXPORTS_PREFIX}{{seller_key}}/"
            "{request_id}.zip, signed by this role (ids made per request); GetObject only, on the exports/ prefix, "
            "which the bucket's lifecycle expires after 7 days.",
        )
