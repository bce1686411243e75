"""A local API gateway in front of an echo handler, for unit tests through werkzeug's test client, and
SigV4-signed headers for its IAM-authorized routes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from werkzeug.test import Client

from local.functions import FunctionRuntime, FunctionSpec
from local.gateway import AdminCredentials, Gateway, Route
from local.poller import QueuePoller
from seller_insights.clock import FixedClock

# The local admin credentials the gateway is given in these tests.
ACCESS_KEY, SECRET_KEY = "AKIALOCALADMINTEST01", "local-admin-secret-key-for-the-unit-tests"


def signed(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    secret: str = SECRET_KEY,
    service: str = "execute-api",
    region: str = "us-east-1",
    access_key: str = ACCESS_KEY,
) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(access_key, secret), service, region).add_auth(request)
    headers = dict(request.headers.items())
    headers["Host"] = url.split("/")[2]
    return headers


ECHO = '''
import base64, json

def lambda_handler(event, context):
    """Echo the event; the query says what to answer with."""
    query = event.get("queryStringParameters") or {}
    if query.get("answer") == "raise":
        raise RuntimeError("boom")
    if query.get("answer") == "string":
        return "plain string"
    if query.get("answer") == "binary":
        return {"statusCode": 201, "isBase64Encoded": True, "body": base64.b64encode(b"\\x00\\x01").decode(),
                "headers": {"content-type": "application/octet-stream"}, "cookies": ["a=1; Path=/", "b=2; Path=/"]}
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "function": context.function_name,
                                "remaining": context.get_remaining_time_in_millis()})}
'''


def echo_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route_keys: list[str], admin: tuple[str, str] = ("AKIAX", "secret")
) -> tuple[Client, FixedClock]:
    package = tmp_path / "local_gateway_echo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "handler.py").write_text(ECHO)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = FunctionSpec("Echo", "si-local-Echo", "local_gateway_echo.handler.lambda_handler", {}, 3, 128)
    clock = FixedClock(datetime.now(UTC))
    gateway = Gateway(
        routes=[Route(key, "Echo") for key in route_keys],
        runtime=FunctionRuntime({"Echo": spec}),
        schedules={},
        poller=cast(QueuePoller, None),
        clock=cast(Any, clock),
        admin=AdminCredentials(*admin),
        amazon_url="http://127.0.0.1:9",
        queue_urls={},
    )
    return Client(gateway, use_cookies=False), clock
