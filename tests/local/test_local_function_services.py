"""The local stack runs every function in one process; each still logs under its own service name.

The handlers below are what the runtime imports (by their dotted name, as from a template's Handler):
like the product's handlers they take the process's cached Logger at import and log through it.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from local.functions import FunctionRuntime, FunctionSpec
from seller_insights.observability import get_logger

logger = get_logger()


@logger.inject_lambda_context(clear_state=True)
def warn(event: dict[str, Any], context: Any) -> None:
    logger.warning("a warning", extra={"step": event["step"], "sent_to": event.get("sent_to")})


def _spec(logical_id: str, service: str) -> FunctionSpec:
    return FunctionSpec(logical_id=logical_id, name=f"SellerInsights-{logical_id}", handler=f"{__name__}.warn",
                        environment={"POWERTOOLS_SERVICE_NAME": service}, timeout_seconds=5, memory_mb=128)


def _records(captured: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "a warning"]


@pytest.fixture
def runtime() -> FunctionRuntime:
    return FunctionRuntime({"DataRequests": _spec("DataRequests", "data_requests"),
                            "TokenRefresher": _spec("TokenRefresher", "token_refresher")})


def test_each_invocation_logs_under_its_functions_service(runtime: FunctionRuntime,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    runtime.invoke("DataRequests", {"step": 1})
    runtime.invoke("TokenRefresher", {"step": 2})
    runtime.invoke("DataRequests", {"step": 3})
    logger.warning("a warning", extra={"step": 4})  # outside any invocation: the process's own service

    records = _records(capfd.readouterr().err)
    assert [(r["step"], r["service"]) for r in records] == [
        (1, "data_requests"), (2, "token_refresher"), (3, "data_requests"), (4, "tests")]
    assert [r["function_name"] for r in records[:3]] == [
        "SellerInsights-DataRequests", "SellerInsights-TokenRefresher", "SellerInsights-DataRequests"]


def test_concurrent_invocations_of_two_functions_keep_their_services(runtime: FunctionRuntime,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    threads = [threading.Thread(target=runtime.invoke, args=(logical_id, {"step": step, "sent_to": logical_id}))
               for step in range(20) for logical_id in ("DataRequests", "TokenRefresher")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = _records(capfd.readouterr().err)
    assert len(records) == 40
    # (Keys a handler appends, such as function_name, live on the one Logger both functions share here.)
    services = {"DataRequests": "data_requests", "TokenRefresher": "token_refresher"}
    assert sorted((r["sent_to"], r["step"], r["service"]) for r in records) == sorted(
        (sent_to, step, services[sent_to]) for step in range(20) for sent_to in services)
