"""AWS Signature Version 4 verification for the IAM-authorized routes (`/admin/...`).

API Gateway recomputes the signature of the request it received and compares. So do we, with
botocore's own SigV4 implementation, over exactly the headers the client says it signed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

MAX_SKEW = timedelta(minutes=5)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class Verdict(Enum):
    OK = 200
    MISSING = 401  # no signature at all
    INVALID = 403  # a signature that does not verify


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reason: str = ""
    access_key: str = ""


class _ExactHeadersSigV4(SigV4Auth):  # type: ignore[misc, unused-ignore]  # Any without botocore-stubs
    """botocore's signer, told to use exactly the client's signed headers (botocore skips some)."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed: list[str]) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        selected = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                selected[name] = value
        return selected


def verify(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    now: datetime,
    wall_clock: datetime | None = None,
) -> Outcome:
    """`url` is scheme://host/path?query with the query string exactly as received."""
    lowered = {name.lower(): value for name, value in headers.items()}
    authorization = lowered.get("authorization")
    if not authorization:
        return Outcome(Verdict.MISSING, "no Authorization header")
    match = _AUTHORIZATION.match(authorization.strip())
    if not match:
        return Outcome(Verdict.INVALID, "malformed Authorization header")
    try:
        key_id, date, scope_region, scope_service, terminator = match["credential"].split("/")
    except ValueError:
        return Outcome(Verdict.INVALID, "malformed credential scope")
    if not hmac.compare_digest(key_id, access_key):
        return Outcome(Verdict.INVALID, "unknown access key")
    if (scope_region, scope_service, terminator) != (region, service, "aws4_request"):
        return Outcome(Verdict.INVALID, "wrong credential scope")
    signed = match["signed"].split(";")
    if "host" not in signed or ("x-amz-date" not in signed and "date" not in signed):
        return Outcome(Verdict.INVALID, "host and date must be signed")
    timestamp = lowered.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(timestamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return Outcome(Verdict.INVALID, "missing or malformed X-Amz-Date")
    # AWS checks the time against its own clock. Locally the product's clock may have been moved forward
    # (the demo's 31 days), so a signature made at either the virtual or the wall-clock time is current.
    current = any(abs(moment - signed_at) <= MAX_SKEW for moment in (now, wall_clock) if moment is not None)
    if not current or not timestamp.startswith(date):
        return Outcome(Verdict.INVALID, "signature expired or not yet valid")
    body_hash = hashlib.sha256(body).hexdigest()
    claimed_hash = lowered.get("x-amz-content-sha256")
    if claimed_hash is not None and claimed_hash != body_hash:
        return Outcome(Verdict.INVALID, "payload hash mismatch")

    request = AWSRequest(method=method, url=url, data=body)
    for name in signed:
        if name not in lowered:
            return Outcome(Verdict.INVALID, f"signed header {name} is missing")
        request.headers[name] = lowered[name]
    request.context["timestamp"] = timestamp
    signer = _ExactHeadersSigV4(Credentials(access_key, secret_key), service, region, signed)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return Outcome(Verdict.INVALID, "signature mismatch")
    return Outcome(Verdict.OK, access_key=access_key)
