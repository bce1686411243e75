"""The stored side of the report job state machine (seller_insights.report_jobs): deterministic job ids,
messages that must match their id, terminal states, planning cursors as items, and the optimistic
versions that let exactly one of two twin deliveries go on. The repositories' seam is a DynamoDB table:
moto in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from seller_insights.clock import FixedClock
from seller_insights.report_jobs import (
    JOB_TTL_SECONDS,
    Job,
    JobRepository,
    JobStatus,
    Plan,
    PlanRepository,
    job_id,
)

SELLER, REGION, US = "A1UNITSELLER01", "NA", "ATVPDKIKX0DER"
WINDOW = ("2026-11-29T08:00:00Z", "2026-11-29T10:00:00Z")
ORDERS = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL"


def a_job(**changes: Any) -> Job:
    job = Job(job_id(SELLER, REGION, ORDERS, *WINDOW), SELLER, REGION, ORDERS, *WINDOW, [US])
    for name, value in changes.items():
        setattr(job, name, value)
    return job


def test_a_job_id_names_seller_region_type_and_window() -> None:
    base = job_id(SELLER, REGION, ORDERS, *WINDOW)
    assert base == job_id(SELLER, REGION, ORDERS, *WINDOW) and len(base) == 32
    others = {job_id("A1OTHER", REGION, ORDERS, *WINDOW), job_id(SELLER, "EU", ORDERS, *WINDOW),
              job_id(SELLER, REGION, "GET_MERCHANT_LISTINGS_ALL_DATA", *WINDOW),
              job_id(SELLER, REGION, ORDERS, WINDOW[0], "2026-11-29T11:00:00Z")}
    assert base not in others and len(others) == 4


def test_a_message_round_trips_and_one_whose_id_does_not_match_is_refused() -> None:
    job = a_job()
    assert Job.from_message(job.message()) == job

    forged = {**job.message(), "seller": "A1OTHERSELLER"}
    with pytest.raises(ValueError, match="does not match"):
        Job.from_message(forged)


@pytest.mark.parametrize(("status", "terminal"), [
    (JobStatus.NEW, False), (JobStatus.WAITING, False), (JobStatus.COOLDOWN, False),
    (JobStatus.DONE, True), (JobStatus.NO_DATA, True), (JobStatus.FAILED, True), (JobStatus.ENDED, True),
    (JobStatus.EXPIRED, True),
])
def test_terminal_states(status: JobStatus, terminal: bool) -> None:
    assert status.terminal is terminal


def test_a_cursor_round_trips_through_its_item() -> None:
    plan = Plan(SELLER, REGION, 1_700_000_000, {ORDERS: 1_700_003_600}, [ORDERS], [US])
    item = plan.to_item()
    assert (item["pk"], item["sk"]) == (f"SELLER#{SELLER}", f"PLAN#{REGION}")
    assert Plan.from_item(item) == plan
    # No own list of types: the defaults apply, and the item says nothing.
    assert "enabled" not in Plan(SELLER, REGION, 0, {}, None, [US]).to_item()


@pytest.fixture
def table(fixed_clock: FixedClock) -> Iterator[Any]:
    with mock_aws():
        db = boto3.resource("dynamodb", region_name="us-east-1")
        yield db.create_table(
            TableName="connections", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])


def test_of_two_twin_deliveries_only_the_first_save_lands(table: Any, fixed_clock: FixedClock) -> None:
    jobs = JobRepository(table)
    first, second = jobs.load_or_create(a_job()), jobs.load_or_create(a_job())
    assert first.version == second.version == 0

    first.status, second.status = JobStatus.WAITING, JobStatus.DONE
    assert jobs.save(first) is True
    assert jobs.save(second) is False

    stored = jobs.load_or_create(a_job())
    assert (stored.status, stored.version) == (JobStatus.WAITING, 1)
    item = table.get_item(Key={"pk": f"SELLER#{SELLER}", "sk": f"JOB#{stored.job_id}"})["Item"]
    assert item["expires_at"] == int(fixed_clock.now().timestamp()) + JOB_TTL_SECONDS


def test_a_job_is_found_again_by_its_report_id(table: Any) -> None:
    jobs = JobRepository(table)
    job = jobs.load_or_create(a_job())
    job.report_id, job.status, job.error, job.extra = "R1", JobStatus.WAITING, None, {"hint": "kept"}
    assert jobs.save(job)
    jobs.remember_report_id(job)

    found = jobs.find_by_report_id(SELLER, "R1")

    assert found is not None and (found.job_id, found.report_id, found.extra) == (job.job_id, "R1", {"hint": "kept"})
    assert jobs.find_by_report_id(SELLER, "R-UNKNOWN") is None
    assert jobs.find_by_report_id("A1OTHERSELLER", "R1") is None


def test_a_new_cursor_is_due_at_once_and_an_existing_one_is_kept(table: Any, fixed_clock: FixedClock) -> None:
    plans = PlanRepository(table)
    now = int(fixed_clock.now().timestamp())
    plans.ensure(SELLER, REGION, [US], now)
    item = table.get_item(Key={"pk": f"SELLER#{SELLER}", "sk": f"PLAN#{REGION}"})["Item"]
    assert int(item["next_plan_at"]) == now and item["due"] == {}

    table.update_item(Key={"pk": f"SELLER#{SELLER}", "sk": f"PLAN#{REGION}"},
                      UpdateExpression="SET next_plan_at = :later", ExpressionAttributeValues={":later": now + 3600})
    plans.ensure(SELLER, REGION, [US], now)  # the connection is confirmed again: its cursor stays

    kept = table.get_item(Key={"pk": f"SELLER#{SELLER}", "sk": f"PLAN#{REGION}"})["Item"]
    assert int(kept["next_plan_at"]) == now + 3600


# --- permission_denied on the plan (issue 10, section 6) -----------------------------------------------

SETTLEMENT = "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2"


def plan_item(table: Any) -> dict[str, Any]:
    item: dict[str, Any] = table.get_item(Key={"pk": f"SELLER#{SELLER}", "sk": f"PLAN#{REGION}"})["Item"]
    return item


def test_a_denied_type_is_recorded_and_cleared_with_one_update_that_moves_the_version(
    table: Any, fixed_clock: FixedClock
) -> None:
    plans = PlanRepository(table)
    plans.ensure(SELLER, REGION, [US], 1_700_000_000)

    plans.mark_denied(SELLER, REGION, ORDERS, 1_700_086_400)
    plans.mark_denied(SELLER, REGION, SETTLEMENT, 1_700_090_000)
    assert plan_item(table)["denied"] == {ORDERS: 1_700_086_400, SETTLEMENT: 1_700_090_000}
    assert plan_item(table)["version"] == 2
    assert Plan.from_item(plan_item(table)).denied == {ORDERS: 1_700_086_400, SETTLEMENT: 1_700_090_000}

    assert plans.clear_denied(SELLER, REGION, ORDERS) is True
    assert plans.clear_denied(SELLER, REGION, ORDERS) is False  # nothing to clear: no write
    assert plan_item(table)["denied"] == {SETTLEMENT: 1_700_090_000} and plan_item(table)["version"] == 3


def test_a_plan_from_before_denied_gets_the_map_and_a_deleted_plan_stays_deleted(table: Any) -> None:
    plans = PlanRepository(table)
    table.put_item(Item={"pk": f"SELLER#{SELLER}", "sk": f"PLAN#{REGION}", "seller_id": SELLER, "region": REGION,
                         "next_plan_at": 1, "due": {}, "marketplace_ids": [US]})

    plans.mark_denied(SELLER, REGION, ORDERS, 5)
    assert plan_item(table)["denied"] == {ORDERS: 5} and plan_item(table)["version"] == 1

    plans.delete(SELLER, REGION)
    plans.mark_denied(SELLER, REGION, ORDERS, 6)
    assert "Item" not in table.get_item(Key={"pk": f"SELLER#{SELLER}", "sk": f"PLAN#{REGION}"})
