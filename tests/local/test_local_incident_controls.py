"""The local stack's support for `ops incident`: schedules whose EventBridge rule is DISABLED are not fired
(409, as EventBridge would not invoke them), and `POST /_local/invoke/{function}` stands for Lambda's Invoke."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws
from werkzeug.test import Client

from local.functions import FunctionRuntime, FunctionSpec
from local.gateway import AdminCredentials, Gateway
from local.poller import QueuePoller
from local.scheduler import Schedule, Target
from seller_insights.clock import FixedClock
from tests.support.local_gateway import ECHO


@pytest.fixture
def gateway(tmp_path, monkeypatch) -> Iterator[Client]:
    package = tmp_path / "local_incident_echo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "handler.py").write_text(ECHO)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = FunctionSpec("Echo", "si-local-Echo", "local_incident_echo.handler.lambda_handler", {}, 3, 128)
    with mock_aws():
        boto3.client("events").put_rule(Name="si-local-TickSchedule", ScheduleExpression="rate(1 hour)")
        app = Gateway(
            routes=[], runtime=FunctionRuntime({"Echo": spec}),
            schedules={"tick": Schedule("tick", "TickSchedule", "rate(1 hour)", (Target("Echo", '{"task": "tick"}'),))},
            poller=cast(QueuePoller, None), clock=cast(Any, FixedClock(datetime(2026, 12, 1, tzinfo=UTC))),
            admin=AdminCredentials("AKIAX", "secret"), amazon_url="http://127.0.0.1:9", queue_urls={},
            rule_names={"TickSchedule": "si-local-TickSchedule"},
        )
        yield Client(app, use_cookies=False)


def test_a_disabled_schedule_is_refused_and_an_enabled_one_fires(gateway):
    assert gateway.post("/_local/fire/tick").status_code == 200
    boto3.client("events").disable_rule(Name="si-local-TickSchedule")
    refused = gateway.post("/_local/fire/tick")
    assert refused.status_code == 409
    answer = json.loads(refused.get_data())
    assert answer["state"] == "DISABLED" and "ops incident restore" in answer["message"]
    boto3.client("events").enable_rule(Name="si-local-TickSchedule")
    assert gateway.post("/_local/fire/tick").status_code == 200


def test_invoke_runs_a_function_with_the_body_as_its_event(gateway):
    answer = gateway.post("/_local/invoke/Echo", data=json.dumps({"task": "rotate-client-secret"}))
    assert answer.status_code == 200
    assert json.loads(json.loads(answer.get_data())["body"])["event"] == {"task": "rotate-client-secret"}
    assert gateway.post("/_local/invoke/Nope", data="{}").status_code == 404
    assert gateway.post("/_local/invoke/Echo", data="not json").status_code == 400
    assert gateway.get("/_local/invoke/Echo").status_code == 405
