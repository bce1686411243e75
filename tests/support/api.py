"""Builds API Gateway HTTP API (payload 2.0) events and calls a real handler with them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.support.iam import acting_as


@dataclass
class FakeContext:
    function_name: str = "oauth_callback"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:oauth_callback"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def http_event(method: str, path: str, raw_query: str = "", cookies: list[str] | None = None,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"ANY {path}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {"host": "seller-insights.example.com", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "seller-insights.example.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
                     "userAgent": "pytest"},
            "requestId": str(uuid.uuid4()),
            "routeKey": f"ANY {path}",
            "stage": "$default",
            "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    return event


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: str

    @property
    def location(self) -> str:
        return self.headers["Location"]

    def cookie_pair(self, name: str) -> str | None:
        """`name=value` of a Set-Cookie, as a browser would send it back."""
        for cookie in self.cookies:
            pair = cookie.split(";", 1)[0]
            if pair.startswith(f"{name}="):
                return pair
        return None


@dataclass
class JsonAnswer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def admin_answer(event: dict[str, Any]) -> JsonAnswer:
    """data_requests.handler's routing alone (no Lambda decorators), its JSON answer parsed."""
    from data_requests.handler import handle

    raw = handle(event)
    return JsonAnswer(raw["statusCode"], raw["headers"], json.loads(raw["body"]))


class ConsentClient:
    """Calls oauth_callback.handler.lambda_handler like API Gateway would, keeping a cookie jar."""

    def __init__(self, *, concurrent: bool = False) -> None:
        self.jar: dict[str, str] = {}
        # Threads of one test process stand for separate Lambda containers; Powertools' per-process
        # metrics would be shared between them, so concurrent callers skip the handler's decorators.
        self._concurrent = concurrent

    def get(self, path_and_query: str, method: str = "GET") -> Response:
        from oauth_callback.handler import handle, lambda_handler

        parts = urlsplit(path_and_query)
        path = parts.path if parts.path.startswith("/") else "/" + parts.path
        cookies = [f"{k}={v}" for k, v in self.jar.items()]
        event = http_event(method, path, parts.query, cookies)
        with acting_as("oauth_callback"):
            raw = handle(event) if self._concurrent else lambda_handler(event, FakeContext())
        response = Response(raw["statusCode"], raw.get("headers", {}), raw.get("cookies", []), raw.get("body", ""))
        for cookie in response.cookies:
            pair, _, attributes = cookie.partition(";")
            name, _, value = pair.partition("=")
            if "Max-Age=0" in attributes or not value:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return response
