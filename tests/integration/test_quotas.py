"""The shared token buckets (DynamoDB, moto in-process)."""

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.quotas import QuotaBuckets, Rate
from seller_insights.report_catalog import AppQuota
from tests.support.resources import create_resources


@pytest.fixture
def buckets():
    fixed = FixedClock(datetime(2026, 11, 29, 12, tzinfo=UTC))
    clock.set_clock(fixed)
    with mock_aws():
        resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                               "application_id": "c"})
        yield QuotaBuckets(boto3.resource("dynamodb").Table(resources.tables["connections"])), fixed
    clock.set_clock(clock.SystemClock())


def test_burst_then_wait_then_refill(buckets):
    quotas, fixed = buckets
    rate = Rate(0.0167, 15)
    assert [quotas.take("s#NA#createReport", rate) for _ in range(15)] == [0.0] * 15
    wait = quotas.take("s#NA#createReport", rate)
    assert 59 < wait < 61  # one token a minute
    fixed.advance(60)
    assert quotas.take("s#NA#createReport", rate) == 0.0


def test_buckets_are_per_scope(buckets):
    quotas, _ = buckets
    rate = Rate(0.0167, 1)
    assert quotas.take("a#NA#createReport", rate) == 0.0
    assert quotas.take("b#NA#createReport", rate) == 0.0
    assert quotas.take("a#NA#createReport", rate) > 0


def test_app_quota_interval_and_daily_cap(buckets):
    quotas, fixed = buckets
    quota = AppQuota(min_interval=timedelta(minutes=15), max_per_day=3)
    assert quotas.take_app_quota("GET_SALES_AND_TRAFFIC_REPORT", quota) == 0.0
    assert 899 < quotas.take_app_quota("GET_SALES_AND_TRAFFIC_REPORT", quota) <= 900
    for _ in range(2):
        fixed.advance(900)
        assert quotas.take_app_quota("GET_SALES_AND_TRAFFIC_REPORT", quota) == 0.0
    fixed.advance(900)
    wait = quotas.take_app_quota("GET_SALES_AND_TRAFFIC_REPORT", quota)
    assert wait == (datetime(2026, 11, 30, tzinfo=UTC) - fixed.now()).total_seconds()  # until midnight
