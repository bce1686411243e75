"""What the consent function reads of a request (API Gateway HTTP API payload 2.0), strictly checked."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from seller_insights.errors import BadRequest

MAX_QUERY_LENGTH = 4096
_REQUEST_ID = re.compile(r"[A-Za-z0-9=_-]{1,64}")  # API Gateway's request ids; anything else is replaced
MAX_PARAMETERS = 20


@dataclass(frozen=True)
class ConsentRequest:
    """What the consent routes read of a request, after the strict checks of `parse_query`/`parse_cookies`."""

    query: dict[str, str]
    cookies: dict[str, str]
    request_id: str = ""

    @classmethod
    def from_event(cls, event: APIGatewayProxyEventV2) -> ConsentRequest:
        request_id = str(event.request_context.get("requestId") or "")
        return cls(query=parse_query(event.raw_query_string), cookies=parse_cookies(event.cookies),
                   request_id=request_id if _REQUEST_ID.fullmatch(request_id) else uuid.uuid4().hex)


def parse_query(raw: str) -> dict[str, str]:
    """Single-valued query parameters from the raw query string.

    `queryStringParameters` joins repeated keys with commas, which would hide `state=a&state=b`;
    the raw string does not. Any repeated key is refused.
    """
    if len(raw) > MAX_QUERY_LENGTH:
        raise BadRequest("query string too long")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_PARAMETERS)
    except ValueError:
        raise BadRequest("too many query parameters") from None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise BadRequest("a query parameter appears more than once")
        query[key] = value
    return query


def parse_cookies(cookies: list[str]) -> dict[str, str]:
    """Cookie name -> value. A name sent twice counts as absent: we cannot tell which is ours."""
    seen: dict[str, str] = {}
    repeated: set[str] = set()
    for cookie in cookies:
        name, sep, value = cookie.strip().partition("=")
        if not sep:
            continue
        if name in seen:
            repeated.add(name)
        seen[name] = value
    return {k: v for k, v in seen.items() if k not in repeated}
