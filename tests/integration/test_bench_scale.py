"""bench.scale keeps working: a few connections for a short simulated period (seconds), and its arithmetic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench import scale
from local.scheduler import schedules
from local.template import load_template, resources

REPO = Path(__file__).resolve().parents[2]
# 23:50 to 00:20 UTC: the day's first firing of every schedule falls in the window.
SHORT = scale.Period(datetime(2026, 11, 30, 23, 50, tzinfo=UTC), timedelta(minutes=10), timedelta(minutes=20),
                     timedelta(minutes=10))


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    return scale.run(8, 3, period=SHORT, step_minutes=5, progress=lambda _: None)


def test_every_queue_and_schedule_of_the_template_is_played(measured: dict[str, Any]) -> None:
    template = load_template(REPO)
    queues = sum(1 for _ in resources(template, "AWS::SQS::Queue"))
    assert len(measured["backlog_at_end"]) == queues
    assert set(measured["schedules"]) == set(schedules(template))
    fired = {name.split("/")[0] for name in measured["firings_in_window"]}
    assert fired == set(schedules(template)), "each schedule fires in the window (its day's first firing)"
    assert measured["classes_without_a_firing"], "a 20-minute window has no hour-class firing of every schedule"


def test_the_pipeline_ran_and_its_calls_were_counted(measured: dict[str, Any]) -> None:
    day = measured["per_connection_day"]
    assert day["lambda.report_fetcher"] > 0 and day["lambda.token_refresher"] > 0
    assert day["amazon.lwa"] > 0 and day["amazon.spapi"] > 0
    assert day["aws.kms"] > 0 and day["sqs.sent"] > 0
    assert day["dynamodb.read_calls"] > 0 and day["dynamodb.write_calls"] > 0
    assert measured["records_delivered"]["report_fetcher"] > 0
    # Every message's cascade was known: nothing of the functions' work was left unattributed.
    assert not measured["unattributed_counts"]


def test_firing_classes_and_their_daily_counts() -> None:
    assert scale.firings_per_day(900) == {"day": 1.0, "hour": 23.0, "other": 72.0}
    assert scale.firings_per_day(scale.DAY) == {"day": 1.0}
    assert scale.firings_per_day(2 * scale.HOUR) == {"day": 1.0, "hour": 11.0}
    midnight = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    assert [scale.firing_class(midnight + s, 900) for s in (0, 900, 3600, 7200 + 1800)] == [
        "day", "other", "hour", "other"]
    assert scale.parse_rate("rate(15 minutes)") == 900 and scale.parse_rate("rate(1 day)") == scale.DAY


def scale_counts(values: dict[str, float]) -> scale.Counts:
    found = scale.counts()
    found.update(values)
    return found


def test_cost_per_firing_times_firings_a_day() -> None:
    midnight = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    cost = {("day", 0): 40.0, ("other", 900): 2.0, ("other", 1800): 4.0, ("hour", 3600): 10.0,
            ("other", -900): 1000.0}  # the last one fired before the window: not counted
    by_cause = {("plan", kind, midnight + at): scale_counts({"x": x}) for (kind, at), x in cost.items()}
    firings = {("plan", "day"): 1, ("plan", "other"): 2, ("plan", "hour"): 1}
    figures, missing = scale.per_connection_day(by_cause, firings, {"plan": 900}, step=300, connections=2,
                                                window=(midnight, midnight + 2 * scale.HOUR))
    assert figures == {"x": pytest.approx((40 + 3 * 72 + 10 * 23) / 2)}
    assert missing == []


def test_docs_section_is_generated_from_the_results(tmp_path: Path) -> None:
    figures = {"lambda.invocations": 10.0, "records.report_fetcher": 9.0, "aws.sqs": 20.0, "aws.kms": 2.0,
               "amazon.lwa": 1.0, "dynamodb.items_read": 100.0, "dynamodb.items_written": 50.0}
    whole_day = {"per_connection_day": {}, "direct_per_connection_day": figures, "period": {"window_hours": 24},
                 "firings_in_window": {"plan/day": 1, "plan/other": 9}, "schedules": {"plan": "8640 s"}}
    results = tmp_path / "scale.json"
    results.write_text(json.dumps({"sizes": {"10": whole_day, "100": {"per_connection_day": {}}}, "command": "c",
                                   "measured_at": "m"}))
    document = tmp_path / "capacity.md"
    document.write_text(f"before\n{scale.BEGIN}\nold\n{scale.END}\nafter\n")
    scale.write_docs(results, document)
    text = document.read_text()
    assert "old" not in text and text.startswith("before\n") and text.endswith("after\n")
    # The whole-day run's figures; its 10 scheduled invocations a day (1 over 10 connections) are fleet-wide.
    assert "| Lambda invocations (10 scheduled a day, any fleet, plus) | 9.00 | 9,010 | 90,010 | 900,010 |" in text
    assert "| SQS records (job steps) to report_fetcher | 9.00 | 9,000 | 90,000 | 900,000 |" in text
