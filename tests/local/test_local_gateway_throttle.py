"""The local API gateway's per-route throttles (the template stage's RouteSettings), the IAM identity it
reports for the admin credentials, and the dev server's log lines without client addresses."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from werkzeug.test import Client

from local.functions import FunctionRuntime, FunctionSpec
from local.gateway import (
    ACCOUNT_BURST_LIMIT,
    ACCOUNT_RATE_LIMIT,
    AdminCredentials,
    Gateway,
    GatewayServer,
    Route,
    Throttle,
    TokenBucket,
    routes_from,
)
from local.poller import QueuePoller
from seller_insights.clock import FixedClock
from tests.support.local_gateway import ACCESS_KEY, ECHO, SECRET_KEY, signed


class FakeMonotonic:
    """The throttles' clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the bucket ------------------------------------------------------------------------------------


def test_a_bucket_admits_its_burst_then_refills_at_its_rate() -> None:
    clock = FakeMonotonic()
    bucket = TokenBucket(Throttle(rate=2, burst=3), clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.4  # 0.8 of a token
    assert not bucket.take()
    clock.now += 0.1  # one token
    assert bucket.take() and not bucket.take()
    clock.now += 60  # refills to the burst, never beyond
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_a_fractional_rate_refills_slowly() -> None:
    clock = FakeMonotonic()
    bucket = TokenBucket(Throttle(rate=0.5, burst=1), clock)
    assert bucket.take() and not bucket.take()
    clock.now += 1.9
    assert not bucket.take()
    clock.now += 0.1
    assert bucket.take()


# --- limits from the template ---------------------------------------------------------------------


def _template(route_settings: dict[str, Any], default: dict[str, Any] | None) -> dict[str, Any]:
    stage: dict[str, Any] = {"ApiId": {"Ref": "Api"}, "StageName": "$default", "RouteSettings": route_settings}
    if default is not None:
        stage["DefaultRouteSettings"] = default
    resources: dict[str, Any] = {
        "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}},
        "Fn": {"Type": "AWS::Lambda::Function", "Properties": {}},
        "Integration": {"Type": "AWS::ApiGatewayV2::Integration",
                        "Properties": {"ApiId": {"Ref": "Api"}, "IntegrationUri": {"Fn::GetAtt": ["Fn", "Arn"]}}},
        "Stage": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": stage},
        # Another stage of the API is not served locally and does not count.
        "Beta": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {
            "ApiId": {"Ref": "Api"}, "StageName": "beta",
            "RouteSettings": {"ANY /connect": {"ThrottlingRateLimit": 99, "ThrottlingBurstLimit": 99}}}},
    }
    for n, key in enumerate(("ANY /connect", "ANY /done", "GET /admin/sellers/{seller_id}")):
        resources[f"Route{n}"] = {"Type": "AWS::ApiGatewayV2::Route", "Properties": {
            "ApiId": {"Ref": "Api"}, "RouteKey": key,
            "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "Integration"}]]}}}
    return {"Resources": resources}


def test_routes_take_their_own_settings_else_the_stage_default_else_the_account_limits() -> None:
    own = {"ANY /connect": {"ThrottlingRateLimit": 1.5, "ThrottlingBurstLimit": 3},
           "GET /admin/sellers/{seller_id}": {"ThrottlingBurstLimit": 7}}
    routes = {r.key: r.throttle for r in routes_from(_template(own, {"ThrottlingRateLimit": 10,
                                                                      "ThrottlingBurstLimit": 20}))}
    assert routes == {
        "ANY /connect": Throttle(1.5, 3),
        "ANY /done": Throttle(10, 20),  # the stage's default
        "GET /admin/sellers/{seller_id}": Throttle(10, 7),  # own burst, the default's rate
    }
    bare = {r.key: r.throttle for r in routes_from(_template({}, None))}
    assert bare["ANY /done"] == Throttle(ACCOUNT_RATE_LIMIT, ACCOUNT_BURST_LIMIT)


# --- through the gateway ---------------------------------------------------------------------------


def _gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, routes: list[Route]) -> tuple[Client, FakeMonotonic]:
    package = tmp_path / "local_gateway_throttle_echo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "handler.py").write_text(ECHO)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = FunctionSpec("Echo", "si-local-Echo", "local_gateway_throttle_echo.handler.lambda_handler", {}, 3, 128)
    monotonic = FakeMonotonic()
    gateway = Gateway(
        routes=routes,
        runtime=FunctionRuntime({"Echo": spec}),
        schedules={},
        poller=cast(QueuePoller, None),
        clock=cast(Any, FixedClock(datetime.now(UTC))),
        admin=AdminCredentials(ACCESS_KEY, SECRET_KEY),
        amazon_url="http://127.0.0.1:9",
        queue_urls={},
        monotonic=monotonic,
    )
    return Client(gateway, use_cookies=False), monotonic


def test_a_flooded_route_answers_429_while_the_others_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, monotonic = _gateway(tmp_path, monkeypatch, [
        Route("ANY /connect", "Echo", throttle=Throttle(1, 2)),
        Route("ANY /done", "Echo", throttle=Throttle(1, 2)),
        Route("GET /admin/sellers/{seller_id}", "Echo", "AWS_IAM", throttle=Throttle(1, 2)),
    ])
    flood = [client.get("/connect?marketplace=US") for _ in range(10)]
    assert [r.status_code for r in flood] == [200, 200] + [429] * 8
    throttled = flood[-1]
    assert throttled.json == {"message": "Too Many Requests"}
    assert throttled.headers["content-type"] == "application/json" and throttled.headers["apigw-requestid"]

    # Each route key has its own bucket: the flood took none of /done's or the admin route's tokens.
    assert client.get("/done").status_code == 200
    url = "http://localhost/admin/sellers/A1B2C3D4E5"
    admin = client.get("/admin/sellers/A1B2C3D4E5", headers=signed("GET", url))
    assert admin.status_code == 200

    monotonic.now += 1.0  # one token back
    assert client.get("/connect").status_code == 200
    assert client.get("/connect").status_code == 429


def test_routes_without_a_throttle_are_never_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = _gateway(tmp_path, monkeypatch, [Route("ANY /connect", "Echo")])
    assert {client.get("/connect").status_code for _ in range(50)} == {200}


def test_the_admin_identity_is_an_assumed_role_session_of_the_ops_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = _gateway(tmp_path, monkeypatch, [Route("GET /admin/sellers/{seller_id}", "Echo", "AWS_IAM")])
    url = "http://localhost/admin/sellers/A1B2C3D4E5"
    answer = client.get("/admin/sellers/A1B2C3D4E5", headers=signed("GET", url))
    iam = (answer.json or {})["event"]["requestContext"]["authorizer"]["iam"]
    assert iam["userArn"] == "arn:aws:sts::123456789012:assumed-role/OpsSupportRole/local-admin"
    assert iam["accessKey"] == ACCESS_KEY and iam["accountId"] == "123456789012"
    assert iam["userId"] == iam["callerId"] and iam["userId"].endswith(":local-admin")


def test_the_servers_own_log_lines_carry_no_client_address(caplog: pytest.LogCaptureFixture) -> None:
    server = GatewayServer("127.0.0.1", 0)
    server.serve(cast(Any, lambda environ, start_response: []))
    try:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(b"NOT A REQUEST LINE AT ALL\r\n\r\n")
            answer = connection.recv(1024)
    finally:
        server.stop()
    assert b"400" in answer  # the dev server refused it (as HTTP/0.9, given no usable version)
    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert any("400" in line for line in lines), lines
    assert not any("127.0.0.1" in line for line in lines), lines
    assert all(record.levelno >= logging.INFO for record in caplog.records if record.name == "werkzeug")
