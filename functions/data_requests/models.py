"""The HTTP shapes of the data-request routes (API Gateway HTTP API payload 2.0) and their errors."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from seller_insights.data_rights import AuditType

ADMIN_PREFIX = "/admin/sellers/"
SELLER_ID = re.compile(r"[A-Z0-9]{8,20}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9=_-]{1,64}")
# An IAM or STS principal ARN as the IAM authorizer reports it (user, role, assumed-role session, root).
_PRINCIPAL_ARN = re.compile(r"arn:aws[a-z-]*:(iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/-]{1,1900}")
MAX_BODY = 16 * 1024

# (suffix after the seller id, method) -> audit type; the suffixes are the routes' paths.
ROUTES: dict[tuple[str, str], AuditType] = {
    ("", "GET"): AuditType.ACCESS,
    ("", "PATCH"): AuditType.CORRECTION,
    ("/export", "POST"): AuditType.EXPORT,
    ("/deletion", "POST"): AuditType.DELETION,
    ("/deletion", "DELETE"): AuditType.DELETION_ROLLBACK,
    ("/tokens/removal", "POST"): AuditType.TOKEN_REMOVAL,
}
# What an audit record calls a request with a method the path does not answer.
_PATH_TYPES: dict[str, AuditType] = {
    "": AuditType.ACCESS, "/export": AuditType.EXPORT, "/deletion": AuditType.DELETION,
    "/tokens/removal": AuditType.TOKEN_REMOVAL,
}


class RequestError(Exception):
    """A request we answer with `status` and `{"message": ...}`; the message says what to do next."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(RequestError):
    status = 400


class UnknownSeller(RequestError):
    status = 404


class NotFound(RequestError):
    status = 404


class MethodNotAllowed(RequestError):
    status = 405

    def __init__(self, message: str, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(RequestError):
    status = 409


class NoIamIdentity(RequestError):
    """The event carries no IAM caller: the route is not behind IAM authorization as it must be."""

    status = 403


@dataclass(frozen=True)
class AdminRequest:
    method: str
    suffix: str  # "", "/export", "/deletion", "/tokens/removal" (or anything else: 404)
    raw_seller_id: str
    request_id: str
    body: str | None
    # requestContext.authorizer.iam.userArn of payload 2.0: who signed the request; None without one.
    principal_arn: str | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> AdminRequest:
        context = event.get("requestContext") or {}
        http = context.get("http") or {}
        method = str(http.get("method") or "GET").upper()
        path = str(event.get("rawPath") or http.get("path") or "/")
        params = event.get("pathParameters") or {}
        rest = path.removeprefix(ADMIN_PREFIX) if path.startswith(ADMIN_PREFIX) else ""
        seller, _, tail = rest.partition("/")
        seller = str(params.get("seller_id") or seller)
        suffix = ("/" + tail).rstrip("/") if tail else ""
        request_id = str(context.get("requestId") or "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex  # only API Gateway's own ids are used as keys
        return cls(method=method, suffix=suffix, raw_seller_id=seller, request_id=request_id,
                   body=_body(event), principal_arn=_principal_arn(context))

    @property
    def audit_type(self) -> AuditType:
        return ROUTES.get((self.suffix, self.method)) or _PATH_TYPES.get(self.suffix, AuditType.ACCESS)

    @property
    def valid_seller_id(self) -> bool:
        return bool(SELLER_ID.fullmatch(self.raw_seller_id))

    def seller_id(self) -> str:
        if not self.raw_seller_id:
            raise BadInput("The seller id is missing: call /admin/sellers/{seller_id} with the seller's "
                           "Amazon selling partner id.")
        if not self.valid_seller_id:
            raise BadInput("The seller id must be 8 to 20 upper-case letters and digits (the Amazon selling "
                           "partner id, e.g. A1B2C3D4E5F6G7). Check the id and send the request again.")
        return self.raw_seller_id

    def json_object(self) -> dict[str, Any]:
        if not self.body or not self.body.strip():
            raise BadInput('The body is empty: send a JSON object such as {"contact_email": "..."}.')
        if len(self.body) > MAX_BODY:
            raise BadInput("The body is larger than 16 KiB: send only the fields to correct.")
        try:
            value = json.loads(self.body)
        except (json.JSONDecodeError, RecursionError):
            raise BadInput("The body is not valid JSON: send a JSON object such as "
                           '{"contact_name": "..."}.') from None
        if not isinstance(value, dict):
            raise BadInput('The body must be a JSON object such as {"contact_email": "..."}.')
        return value


def _principal_arn(context: dict[str, Any]) -> str | None:
    """The caller's principal ARN from the IAM authorizer's context, or None when absent or malformed."""
    authorizer = context.get("authorizer")
    iam = authorizer.get("iam") if isinstance(authorizer, dict) else None
    arn = iam.get("userArn") if isinstance(iam, dict) else None
    return arn if isinstance(arn, str) and _PRINCIPAL_ARN.fullmatch(arn) else None


def _body(event: dict[str, Any]) -> str | None:
    body = event.get("body")
    if body is None:
        return None
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(str(body), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadInput("The body is not valid UTF-8 JSON: send a JSON object.") from None
    return str(body)


@dataclass
class JsonResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def to_event(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": {"Content-Type": "application/json", "Cache-Control": "no-store", **self.headers},
            "body": json.dumps(self.body, separators=(",", ":"), default=str),
            "isBase64Encoded": False,
        }
