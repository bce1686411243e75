"""Heartbeats (issue 12, section 2): every schedule's finder run that finished emits one `SweepCompleted` with
the dimensions `service` and `sweep` (= the schedule's name); a run that raised emits none, so the stack's
heartbeat alarms (infra/constructs/observability.py) see a stopped or failing schedule as silence."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import boto3
import pytest

from report_fetcher.planner import PlanFinder
from seller_insights.containers import forget_all
from seller_insights.observability import get_metrics
from seller_insights.report_catalog import ORDERS
from tests.support.api import FakeContext
from tests.support.iam import acting_as


def heartbeats(stdout: str) -> list[str]:
    """The sweep of every SweepCompleted EMF blob printed, checked to be a Count of 1 of the function's service
    (POWERTOOLS_SERVICE_NAME: the duty in Lambda) whose declared dimensions are exactly service and sweep
    (what the alarms name)."""
    beats = []
    for line in stdout.splitlines():
        blob = json.loads(line) if line.startswith("{") else {}
        if "SweepCompleted" not in blob:
            continue
        (declared,) = blob["_aws"]["CloudWatchMetrics"]
        assert declared["Namespace"] == "SellerInsights"
        assert declared["Dimensions"] == [["service", "sweep"]]
        assert declared["Metrics"] == [{"Name": "SweepCompleted", "Unit": "Count"}]
        assert blob["SweepCompleted"] in (1.0, [1.0])
        assert blob["service"] == get_metrics().service
        beats.append(blob["sweep"])
    return beats


def invoke(duty: str, task: str) -> Any:
    handler = __import__(f"{duty}.handler", fromlist=["lambda_handler"]).lambda_handler
    with acting_as(duty):
        return handler({"task": task}, FakeContext(function_name=duty))


@pytest.fixture
def schedules_env(token_env: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """token_env plus the report fetcher's job queue (wake-jobs sends woken jobs there)."""
    jobs = boto3.client("sqs").create_queue(QueueName="report-jobs")["QueueUrl"]
    monkeypatch.setenv("REPORT_JOBS_QUEUE_URL", jobs)
    monkeypatch.setenv("DEFAULT_REPORT_TYPES", ORDERS)
    forget_all()
    yield token_env
    forget_all()


@pytest.mark.parametrize(("duty", "task"), [
    ("token_refresher", "refresh-tokens"),
    ("token_refresher", "verify-consents"),
    ("token_refresher", "check-reauthorization"),
    ("report_fetcher", "plan-reports"),
    ("report_fetcher", "wake-jobs"),
    ("retention_sweeper", "sweep-retention"),
    ("retention_sweeper", "fleet-census"),
])
def test_each_finished_schedule_run_emits_one_heartbeat_named_after_it(schedules_env: Any, capfd: Any,
                                                                       duty: str, task: str) -> None:
    capfd.readouterr()
    invoke(duty, task)
    assert heartbeats(capfd.readouterr().out) == [task]


def test_a_finder_run_that_raised_emits_no_heartbeat(schedules_env: Any, capfd: Any) -> None:
    capfd.readouterr()
    with mock.patch.object(PlanFinder, "run", side_effect=RuntimeError("index unavailable")), \
            pytest.raises(RuntimeError, match="index unavailable"):
        invoke("report_fetcher", "plan-reports")
    assert heartbeats(capfd.readouterr().out) == []
    invoke("report_fetcher", "plan-reports")  # the next run finishes: the heartbeat is back
    assert heartbeats(capfd.readouterr().out) == ["plan-reports"]
