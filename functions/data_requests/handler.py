"""Lambda entry of the `/admin/sellers/{seller_id}...` routes (routes.py) on Powertools' HTTP API resolver.

Every request, whatever its outcome, has one audit record (`request#{request_id}`) with the seller's
`seller_key` only and the caller's IAM principal ARN (`principal_arn`): the outermost middleware,
`audit_every_request`, writes it STARTED before anything else runs, and completes the same item
(SUCCEEDED or FAILED, with `outcome`, `detail`, `completed_at`) after the route, the 404/405 answer or
the refusal. A request the runtime kills (a timeout) leaves its STARTED record. A request without an IAM
identity (its route would have lost its IAM authorization) is refused with 403 before anything else
(`require_iam_identity`) and recorded with `principal_arn` `unknown`, outcome `forbidden`. Each error
type has an exception handler; nothing is done before the record is started and no answer goes out
before it is completed (503 when the audit table fails). One exception: an export request (`POST .../export`,
202) leaves its record STARTED; the export worker (functions/data_exports) completes it when the ZIP is
done or the request failed.
Logs carry `seller_key` and counts, never the seller id, an e-mail, a token or the export's presigned URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from data_requests.models import UNREADABLE_BODY, AdminRequest
from data_requests.routes import ROUTES, SUFFIXES, AdminRoute, methods_of
from data_requests.service import Answer, DataRequestsService
from data_requests.settings import DataRequestsSettings
from seller_insights import aws, clock
from seller_insights.containers import per_container
from seller_insights.data_rights import UNKNOWN_PRINCIPAL, AuditLog, AuditOutcome, AuditType, DataRightsRepository
from seller_insights.errors import AuditNotRecorded, BadInput, MethodNotAllowed, NoIamIdentity, NotFound, RequestError
from seller_insights.export_requests import ExportRequests
from seller_insights.http_api import HttpApi, resolver_rule
from seller_insights.observability import get_logger, get_metrics, get_tracer
from seller_insights.pseudonyms import seller_key
from seller_insights.redaction import invocation_scope
from seller_insights.report_jobs import PlanRepository

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()

FAILED_METRIC = "DataRequestFailed"
WITHOUT_IDENTITY_METRIC = "DataRequestWithoutIdentity"


@per_container
def settings() -> DataRequestsSettings:
    return DataRequestsSettings.from_env()


@per_container
def service() -> DataRequestsService:
    config = settings()
    table = aws.table(config.connections_table)
    return DataRequestsService(config, repository=DataRightsRepository(table), s3=aws.client("s3"),
                               exports=ExportRequests(table), sqs=aws.client("sqs"), plans=PlanRepository(table))


@per_container
def audit() -> AuditLog:
    return AuditLog(aws.table(settings().audit_table))


app = HttpApi(serializer=partial(json.dumps, separators=(",", ":"), default=str))


@invocation_scope
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """The routing alone, without the Lambda decorators."""
    return app.resolve(event, None)  # type: ignore[arg-type]  # no route reads the Lambda context


# --- middleware, outermost first ----------------------------------------------------------------------


def audit_every_request(resolver: HttpApi, next_middleware: NextMiddleware) -> Response[Any]:
    """One audit record per request, started before and completed after whatever happens below; a
    record that cannot be written is AuditNotRecorded (503)."""
    received_at = clock.now()
    request = AdminRequest.from_event(resolver.current_event.raw_event)
    try:
        # A request whose body cannot be read is recorded without a seller, as before its id was looked at.
        key = seller_key(request.raw_seller_id) if request.valid_seller_id and not request.body_unreadable else None
    except Exception as exc:  # the pseudonym key is out of reach: no record could name the seller
        raise AuditNotRecorded("the seller's pseudonym could not be computed") from exc
    if not request.body_unreadable:
        if key:
            logger.append_keys(seller_key=key)
        logger.append_keys(request_type=request.audit_type.value)
    resolver.append_context(admin_request=request)
    _start(request, received_at, key)
    try:
        response = next_middleware(resolver)
    except RequestError as exc:
        outcome = AuditOutcome(exc.audit_outcome)
        _complete(request, outcome, {"status": exc.response_status})
        logger.info("data request refused", extra={"status": exc.response_status, "outcome": outcome.value})
        raise
    except Exception:
        logger.exception("data request failed")
        _complete(request, AuditOutcome.FAILED, {"status": 500})
        raise
    route, answer = _done()
    if answer.completes_audit:
        _complete(request, AuditOutcome.DONE, answer.detail)
    _count(route.metric)
    logger.info("data request done", extra={"detail": answer.detail})
    return response


def require_iam_identity(resolver: HttpApi, next_middleware: NextMiddleware) -> Response[Any]:
    """Behind IAM authorization every event names its caller; one that does not is refused (and counted)."""
    if _request().principal_arn is None:
        _count(WITHOUT_IDENTITY_METRIC)
        raise NoIamIdentity("This route answers only requests signed with AWS credentials through the API's IAM "
                            "authorization: call it through the API as the OpsSupportRole (python -m ops).")
    return next_middleware(resolver)


def refuse_unreadable_body(resolver: HttpApi, next_middleware: NextMiddleware) -> Response[Any]:
    """A body sent as base64 that is not UTF-8 is refused on every route, before the route is looked at."""
    if _request().body_unreadable:
        raise BadInput(UNREADABLE_BODY)
    return next_middleware(resolver)


app.use([audit_every_request, require_iam_identity, refuse_unreadable_body])


def _request() -> AdminRequest:
    request: AdminRequest = app.context["admin_request"]
    return request


def _done() -> tuple[AdminRoute, Answer]:
    done: tuple[AdminRoute, Answer] = app.context["done"]
    return done


def _start(request: AdminRequest, received_at: datetime, key: str | None) -> None:
    try:
        audit().start_request(request_id=request.request_id, request_type=request.audit_type, seller_key=key,
                              principal_arn=request.principal_arn or UNKNOWN_PRINCIPAL, received_at=received_at)
    except Exception as exc:
        raise AuditNotRecorded("the audit record could not be started") from exc


def _complete(request: AdminRequest, outcome: AuditOutcome, detail: dict[str, int]) -> None:
    try:
        audit().complete_request(request_id=request.request_id, completed_at=clock.now(), outcome=outcome,
                                 detail=detail)
    except Exception as exc:
        raise AuditNotRecorded("the audit record could not be completed") from exc


# --- routes -------------------------------------------------------------------------------------------

_Action = Callable[[DataRequestsService, str, AdminRequest], Answer]

# What each route does, by the request type routes.py gives it.
_ACTIONS: dict[AuditType, _Action] = {
    AuditType.ACCESS: lambda s, seller, r: s.access(seller),
    AuditType.CORRECTION: lambda s, seller, r: s.correct(seller, r.json_object()),
    AuditType.EXPORT: lambda s, seller, r: s.export(seller, r.request_id),
    AuditType.EXPORT_STATUS: lambda s, seller, r: s.export_status(seller, r.export_request_id),
    AuditType.DELETION: lambda s, seller, r: s.request_deletion(seller),
    AuditType.DELETION_ROLLBACK: lambda s, seller, r: s.rollback_deletion(seller),
    AuditType.TOKEN_REMOVAL: lambda s, seller, r: s.remove_tokens(seller),
    AuditType.SELLER_KEY: lambda s, seller, r: s.seller_key(seller),
    AuditType.BACKFILL: lambda s, seller, r: s.backfill(seller, r.json_object()),
}


def _endpoint(route: AdminRoute) -> Callable[..., Response[dict[str, Any]]]:
    action = _ACTIONS[route.request_type]

    def endpoint(**_path_parameters: str) -> Response[dict[str, Any]]:
        # The seller id comes from API Gateway's pathParameters (AdminRequest), not the resolver's match.
        request = _request()
        answer = action(service(), request.seller_id(), request)
        app.append_context(done=(route, answer))
        response = _json(answer.status, answer.body)
        response.headers.update(answer.headers)
        return response

    endpoint.__name__ = f"{route.request_type.value}_endpoint"
    return endpoint


for _route in ROUTES:
    app.route(resolver_rule(_route.path), method=_route.method)(_endpoint(_route))


@app.not_found
def no_such_route(_: NotFoundError) -> Response[dict[str, Any]]:
    """No route matched: an unknown path is 404, a known one with another method 405 (with Allow), and a
    known path and method without a seller id 400."""
    request = _request()
    if request.suffix not in SUFFIXES:
        raise NotFound("There is no such admin route. Use /admin/sellers/{seller_id} with /export, "
                       "/export/{request_id}, /deletion or /tokens/removal.")
    allowed = methods_of(request.suffix)
    if request.method not in allowed:
        raise MethodNotAllowed(f"This address answers {', '.join(allowed)} only.", allowed)
    request.seller_id()  # raises BadInput: the resolver matches every route that has a seller id
    raise NotFound("There is no such admin route.")


# --- one exception handler per error type -------------------------------------------------------------


@app.exception_handler(MethodNotAllowed)
def method_not_allowed(exc: MethodNotAllowed) -> Response[dict[str, Any]]:
    response = _json(exc.response_status, {"message": exc.message})
    response.headers["Allow"] = ", ".join(exc.allow)
    return response


@app.exception_handler(RequestError)
def refused(exc: RequestError) -> Response[dict[str, Any]]:
    return _json(exc.response_status, {"message": exc.message})


@app.exception_handler(AuditNotRecorded)
def not_recorded(exc: AuditNotRecorded) -> Response[dict[str, Any]]:
    logger.exception("data request could not be recorded")
    _count(FAILED_METRIC)
    return _json(exc.response_status, {"message": "The request could not be recorded in the audit log. Send it again "
                                         "in a minute; every data request is safe to repeat."})


@app.exception_handler(Exception)
def failed(_: Exception) -> Response[dict[str, Any]]:
    # Logged and recorded by audit_every_request.
    _count(FAILED_METRIC)
    return _json(500, {"message": "The request failed and was recorded. Nothing was half-done that a "
                                  "retry cannot finish: send it again in a minute."})


def _json(status: int, body: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response(status_code=status, content_type="application/json", body=body,
                    headers={"Cache-Control": "no-store"})


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
