"""seller_insights.http_api: the resolver both API functions use (no AWS, no handler)."""

from __future__ import annotations

import json
import threading
from typing import Any

from seller_insights.http_api import HttpApi, resolver_rule, with_gateway_defaults


def event(path: str, method: str = "GET") -> dict[str, Any]:
    return {"version": "2.0", "rawPath": path, "rawQueryString": "", "headers": {},
            "requestContext": {"http": {"method": method, "path": path}, "requestId": "r", "stage": "$default"}}


def test_each_thread_sees_its_own_request() -> None:
    app = HttpApi()
    both_routed = threading.Barrier(2)

    @app.get("/echo/<name>")
    def echo(name: str) -> dict[str, str]:
        both_routed.wait(timeout=10)  # the other thread has set its event by now
        return {"name": name, "path": app.current_event.raw_path, "routed": app.context["_path"]}

    answers: dict[str, dict[str, str]] = {}

    def call(name: str) -> None:
        answers[name] = json.loads(app.resolve(event(f"/echo/{name}"), None)["body"])  # type: ignore[arg-type]

    threads = [threading.Thread(target=call, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {name: {"name": name, "path": f"/echo/{name}", "routed": f"/echo/{name}"} for name in "ab"}


def test_a_trailing_slash_is_the_same_route_and_missing_gateway_fields_are_filled() -> None:
    app = HttpApi()

    @app.post("/things/<thing>")
    def thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    assert json.loads(app.resolve(event("/things/t1/", "POST"), None)["body"]) == {"thing": "t1"}  # type: ignore[arg-type]
    bare = {"rawPath": "/things/t2", "requestContext": {"http": {"method": "POST"}}}
    assert json.loads(app.resolve(bare, None)["body"]) == {"thing": "t2"}  # type: ignore[arg-type]
    assert app.resolve(event("/things"), None)["statusCode"] == 404  # type: ignore[arg-type]


def test_gateway_defaults_keep_what_the_event_has() -> None:
    filled = with_gateway_defaults({"requestContext": {"stage": "prod", "http": {"method": "PUT"}}})
    assert (filled["rawPath"], filled["rawQueryString"], filled["headers"]) == ("/", "", {})
    assert filled["requestContext"]["stage"] == "prod" and filled["requestContext"]["http"]["method"] == "PUT"
    assert resolver_rule("/admin/sellers/{seller_id}/export") == "/admin/sellers/<seller_id>/export"
