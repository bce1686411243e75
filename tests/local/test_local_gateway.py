"""The local API gateway builds payload 2.0 events and maps responses as API Gateway HTTP APIs do."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from local.template import Resolver, TemplateError
from tests.support.local_gateway import echo_gateway

ROUTES = ["ANY /callback", "GET /items/{id}", "ANY /files/{path+}", "POST /items/{id}"]


@pytest.fixture
def client(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    return echo_gateway(tmp_path, monkeypatch, ROUTES)[0]


def event_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.data
    return dict(response.json["event"])


def test_the_event_keeps_the_raw_query_and_joins_repeated_keys(client: Any) -> None:
    event = event_of(client.get("/callback?state=a%2Bb&x=1&x=2&empty="))
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /callback"
    assert event["rawPath"] == "/callback"
    assert event["rawQueryString"] == "state=a%2Bb&x=1&x=2&empty="
    assert event["queryStringParameters"] == {"state": "a+b", "x": "1,2", "empty": ""}
    context = event["requestContext"]
    assert context["http"]["method"] == "GET" and context["http"]["path"] == "/callback"
    assert context["stage"] == "$default" and context["routeKey"] == "ANY /callback"
    assert isinstance(context["timeEpoch"], int) and context["requestId"]
    assert "body" not in event and event["isBase64Encoded"] is False


def test_cookies_leave_the_headers_and_headers_are_lower_case(client: Any) -> None:
    event = event_of(client.get("/callback", headers={"Cookie": "a=1; __Host-b=2", "X-Custom-Thing": "v"}))
    assert event["cookies"] == ["a=1", "__Host-b=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-custom-thing"] == "v"
    assert "queryStringParameters" not in event


def test_path_parameters_and_method_routes(client: Any) -> None:
    assert event_of(client.get("/items/42"))["pathParameters"] == {"id": "42"}
    assert event_of(client.get("/files/a/b/c.txt"))["pathParameters"] == {"path": "a/b/c.txt"}
    assert client.delete("/items/42").status_code == 404
    assert client.get("/elsewhere").json == {"message": "Not Found"}


def test_text_bodies_stay_text_and_others_are_base64(client: Any) -> None:
    text = event_of(client.post("/items/1", data='{"a": 1}', content_type="application/json"))
    assert text["body"] == '{"a": 1}' and text["isBase64Encoded"] is False
    form = event_of(client.post("/items/1", data="a=1", content_type="application/x-www-form-urlencoded"))
    assert form["isBase64Encoded"] is True and base64.b64decode(form["body"]) == b"a=1"


def test_responses_map_cookies_base64_and_plain_returns(client: Any) -> None:
    binary = client.get("/callback?answer=binary")
    assert binary.status_code == 201 and binary.data == b"\x00\x01"
    assert binary.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    plain = client.get("/callback?answer=string")
    assert plain.status_code == 200 and plain.data == b"plain string"
    assert plain.headers["content-type"] == "application/json"


def test_a_handler_error_is_a_500_without_details(client: Any, capfd: pytest.CaptureFixture[str]) -> None:
    failed = client.get("/callback?answer=raise")
    assert failed.status_code == 500
    assert failed.json == {"message": "Internal Server Error"}


def test_the_context_offers_what_powertools_reads(client: Any) -> None:
    body = client.get("/callback").json
    assert body["function"] == "si-local-Echo" and 0 < body["remaining"] <= 3000


def test_unsupported_intrinsics_are_named() -> None:
    resolver = Resolver({"Resources": {"Param": {"Type": "AWS::SSM::Parameter"}}})
    resolver.record("Table", "si-local-connections-abc", "arn:aws:dynamodb:us-east-1:123456789012:table/x")
    assert resolver.resolve({"Fn::Join": ["/", ["a", {"Ref": "Table"}, {"Ref": "AWS::Region"}]]}) == (
        "a/si-local-connections-abc/us-east-1"
    )
    assert resolver.resolve({"Fn::GetAtt": ["Table", "Arn"]}).startswith("arn:aws:dynamodb")
    with pytest.raises(TemplateError, match="Fn::Sub"):
        resolver.resolve({"Fn::Sub": "${AWS::Region}"})
    with pytest.raises(TemplateError, match=r"Param \(AWS::SSM::Parameter\)"):
        resolver.resolve({"Ref": "Param"})
    assert json.dumps(resolver.refs)
