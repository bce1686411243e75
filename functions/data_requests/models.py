"""What the data-request routes read of a request (API Gateway HTTP API payload 2.0), and their errors."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from data_requests.routes import SELLER_PREFIX, request_type, route_suffix
from seller_insights.data_rights import AuditType
from seller_insights.errors import BadInput

SELLER_ID = re.compile(r"[A-Z0-9]{8,20}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9=_-]{1,64}")
# An IAM or STS principal ARN as the IAM authorizer reports it (user, role, assumed-role session, root).
_PRINCIPAL_ARN = re.compile(r"arn:aws[a-z-]*:(iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/-]{1,1900}")
MAX_BODY = 16 * 1024
UNREADABLE_BODY = "The body is not valid UTF-8 JSON: send a JSON object."


@dataclass(frozen=True)
class AdminRequest:
    method: str
    suffix: str  # the route's declared suffix: "", "/export", "/export/{request_id}", ... (or anything else: 404)
    raw_seller_id: str
    request_id: str
    body: str | None
    # requestContext.authorizer.iam.userArn of payload 2.0: who signed the request; None without one.
    principal_arn: str | None = None
    body_unreadable: bool = False  # base64 that does not decode to UTF-8 (refused after the identity check)
    # The export request a status request names (`/export/{request_id}`): not validated here.
    export_request_id: str = ""

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> AdminRequest:
        context = event.get("requestContext") or {}
        http = context.get("http") or {}
        method = str(http.get("method") or "GET").upper()
        path = str(event.get("rawPath") or http.get("path") or "/")
        params = event.get("pathParameters") or {}
        rest = path.removeprefix(SELLER_PREFIX) if path.startswith(SELLER_PREFIX) else ""
        seller, _, tail = rest.partition("/")
        seller = str(params.get("seller_id") or seller)
        suffix, values = route_suffix(("/" + tail).rstrip("/") if tail else "")
        export_request_id = str(params.get("request_id") or values.get("request_id") or "")
        request_id = str(context.get("requestId") or "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex  # only API Gateway's own ids are used as keys
        try:
            body, unreadable = _body(event), False
        except BadInput:
            body, unreadable = None, True
        return cls(method=method, suffix=suffix, raw_seller_id=seller, request_id=request_id,
                   body=body, principal_arn=_principal_arn(context), body_unreadable=unreadable,
                   export_request_id=export_request_id)

    @property
    def audit_type(self) -> AuditType:
        return request_type(self.suffix, self.method)

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
            raise BadInput(UNREADABLE_BODY) from None
    return str(body)
