"""Every queue of the template, whichever duty added it, has an alarm on the age of its oldest message
(issue 11, section 2): a backlog is noticed long before the queue's retention would drop it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import by_purpose, resources

pytestmark = pytest.mark.slow

HOUR = 3600


def _age_alarms(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Queue logical id -> its ApproximateAgeOfOldestMessage alarm (one each)."""
    alarms: dict[str, dict[str, Any]] = {}
    for alarm in resources(raw, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props.get("MetricName") != "ApproximateAgeOfOldestMessage":
            continue
        assert props["Namespace"] == "AWS/SQS"
        (dimension,) = props["Dimensions"]
        assert dimension["Name"] == "QueueName"
        queue_id = dimension["Value"]["Fn::GetAtt"][0]
        assert dimension["Value"] == {"Fn::GetAtt": [queue_id, "QueueName"]}
        assert queue_id not in alarms, f"{queue_id} has two age alarms"
        alarms[queue_id] = props
    return alarms


def test_every_queue_has_an_oldest_message_age_alarm_to_the_alarm_topic(raw: dict[str, Any]) -> None:
    queues = resources(raw, "AWS::SQS::Queue")
    alarms = _age_alarms(raw)
    topic_id, _ = by_purpose(raw, "alarms")
    assert set(alarms) == set(queues)
    for queue_id, alarm in alarms.items():
        retention = queues[queue_id]["Properties"].get("MessageRetentionPeriod", 4 * 24 * HOUR)
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], queue_id
        assert (alarm["Statistic"], alarm["Period"], alarm["ComparisonOperator"]) == (
            "Maximum", 300, "GreaterThanThreshold"), queue_id
        # Well before the retention drops a message: at most half of it.
        assert 0 < alarm["Threshold"] <= retention / 2, queue_id


def test_work_queues_alarm_within_an_hour_and_dead_letter_queues_at_half_their_retention(
        raw: dict[str, Any]) -> None:
    alarms = _age_alarms(raw)
    dead_letter_ids = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
                       for q in resources(raw, "AWS::SQS::Queue").values() if "RedrivePolicy" in q["Properties"]}
    for purpose in ("report_jobs", "report_notifications", "notifications"):
        queue_id, _ = by_purpose(raw, purpose)
        assert queue_id not in dead_letter_ids
        assert alarms[queue_id]["Threshold"] == HOUR, purpose  # 15-minute delays at most, consumed at once
    for queue_id in dead_letter_ids:
        assert alarms[queue_id]["Threshold"] == 7 * 24 * HOUR, queue_id  # half of 14 days
    events_dlq_id, _ = by_purpose(raw, "report_events_dlq")
    assert alarms[events_dlq_id]["Threshold"] == 7 * 24 * HOUR
