"""Lambda entry of the `/admin/sellers/{seller_id}...` routes: parse, dispatch, answer, audit.

Every request, whatever its outcome, writes one audit record (`request#{request_id}`) with the
seller's `seller_key` only and the caller's IAM principal ARN (`principal_arn`). A request without
an IAM identity (its route would have lost its IAM authorization) is refused with 403 before anything
else and recorded with `principal_arn` `unknown`, outcome `forbidden`. Logs carry `seller_key` and
counts, never the seller id, an e-mail, a token or the export's presigned URL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from data_requests.models import (
    AdminRequest,
    JsonResponse,
    MethodNotAllowed,
    NoIamIdentity,
    NotFound,
    RequestError,
    UnknownSeller,
)
from data_requests.service import Answer, DataRequestsService
from data_requests.settings import DataRequestsSettings
from seller_insights import aws, clock
from seller_insights.containers import per_container
from seller_insights.data_rights import UNKNOWN_PRINCIPAL, AuditLog, AuditOutcome, AuditType, DataRightsRepository
from seller_insights.observability import get_logger, get_metrics, get_tracer
from seller_insights.pseudonyms import seller_key
from seller_insights.redaction import invocation_scope

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


@per_container
def settings() -> DataRequestsSettings:
    return DataRequestsSettings.from_env()


@per_container
def service() -> DataRequestsService:
    config = settings()
    return DataRequestsService(config, DataRightsRepository(aws.table(config.connections_table)), aws.client("s3"))


@per_container
def audit() -> AuditLog:
    return AuditLog(aws.table(settings().audit_table))


@invocation_scope
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event).to_event()


_Action = Callable[[DataRequestsService, str, AdminRequest], Answer]

_ACTIONS: dict[str, dict[str, _Action]] = {
    "": {"GET": lambda s, seller, r: s.access(seller),
         "PATCH": lambda s, seller, r: s.correct(seller, r.json_object())},
    "/export": {"POST": lambda s, seller, r: s.export(seller, r.request_id)},
    "/deletion": {"POST": lambda s, seller, r: s.request_deletion(seller),
                  "DELETE": lambda s, seller, r: s.rollback_deletion(seller)},
    "/tokens/removal": {"POST": lambda s, seller, r: s.remove_tokens(seller)},
}


def handle(event: dict[str, Any]) -> JsonResponse:
    received_at = clock.now()
    try:
        return _handle(event, received_at)
    except Exception:  # the audit table itself failed: no answer without its record
        logger.exception("data request could not be recorded")
        _count("DataRequestFailed")
        return JsonResponse(503, {"message": "The request could not be recorded in the audit log. Send it again "
                                             "in a minute; every data request is safe to repeat."})


def _handle(event: dict[str, Any], received_at: datetime) -> JsonResponse:
    try:
        request = AdminRequest.from_event(event)
    except RequestError as exc:  # a body we cannot decode: still audited, without a seller
        request = AdminRequest.from_event({**event, "body": None, "isBase64Encoded": False})
        return _finish(request, received_at, None, _identity_missing(request) or exc)
    key = seller_key(request.raw_seller_id) if request.valid_seller_id else None
    if key:
        logger.append_keys(seller_key=key)
    logger.append_keys(request_type=request.audit_type.value)
    try:
        missing = _identity_missing(request)
        if missing:
            raise missing
        methods = _ACTIONS.get(request.suffix)
        if methods is None:
            raise NotFound("There is no such admin route. Use /admin/sellers/{seller_id} with /export, "
                           "/deletion or /tokens/removal.")
        action = methods.get(request.method)
        if action is None:
            allowed = sorted(methods)
            raise MethodNotAllowed(f"This address answers {', '.join(allowed)} only.", allowed)
        seller_id = request.seller_id()
        answer = action(service(), seller_id, request)
    except RequestError as exc:
        return _finish(request, received_at, key, exc)
    except Exception:
        logger.exception("data request failed")
        _audit(request, received_at, key, AuditOutcome.FAILED, {"status": 500})
        _count("DataRequestFailed")
        return JsonResponse(500, {"message": "The request failed and was recorded. Nothing was half-done that a "
                                             "retry cannot finish: send it again in a minute."})
    _audit(request, received_at, key, AuditOutcome.DONE, answer.detail)
    _count(f"DataRequest{_metric_name(request.audit_type)}")
    logger.info("data request done", extra={"detail": answer.detail})
    return JsonResponse(200, answer.body)


def _identity_missing(request: AdminRequest) -> NoIamIdentity | None:
    """Behind IAM authorization every event names its caller; one that does not is refused (and counted)."""
    if request.principal_arn is not None:
        return None
    _count("DataRequestWithoutIdentity")
    return NoIamIdentity("This route answers only requests signed with AWS credentials through the API's IAM "
                         "authorization: call it through the API as the OpsSupportRole (python -m ops).")


def _finish(request: AdminRequest, received_at: datetime, key: str | None, exc: RequestError) -> JsonResponse:
    outcome = (AuditOutcome.UNKNOWN_SELLER if isinstance(exc, UnknownSeller)
               else AuditOutcome.FORBIDDEN if isinstance(exc, NoIamIdentity) else AuditOutcome.BAD_REQUEST)
    _audit(request, received_at, key, outcome, {"status": exc.status})
    logger.info("data request refused", extra={"status": exc.status, "outcome": outcome.value})
    response = JsonResponse(exc.status, {"message": exc.message})
    if isinstance(exc, MethodNotAllowed):
        response.headers["Allow"] = ", ".join(exc.allow)
    return response


def _audit(request: AdminRequest, received_at: datetime, key: str | None, outcome: AuditOutcome,
           detail: dict[str, int]) -> None:
    audit().record_request(request_id=request.request_id, request_type=request.audit_type, seller_key=key,
                           principal_arn=request.principal_arn or UNKNOWN_PRINCIPAL, received_at=received_at,
                           completed_at=clock.now(), outcome=outcome, detail=detail)


def _metric_name(request_type: AuditType) -> str:
    return "".join(part.capitalize() for part in request_type.value.split("_"))


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
