"""The fleet census against moto in-process: every number asserted, read from the sparse indexes (no Scan
unless TOKENS_REMOVED is asked for), and the gauges it emits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from seller_insights import fleet_census
from seller_insights.coverage import new_cursor
from seller_insights.fleet_census import FleetCensus
from seller_insights.report_catalog import CATALOG, ORDERS, SALES_AND_TRAFFIC
from seller_insights.report_jobs import Plan
from seller_insights.repositories import connection_key, iso, shard
from tests.support.resources import create_resources

NOW = datetime(2026, 11, 29, 10, 37, tzinfo=UTC)
EPOCH = int(NOW.timestamp())
US, CA = "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"


@pytest.fixture
def table():
    with mock_aws():
        resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                               "application_id": "c"})
        yield boto3.resource("dynamodb").Table(resources.tables["connections"])


def connection(seller: str, region: str, status: str, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {**connection_key(seller, region), "status": status, "seller_id": seller, "region": region}
    if status == "ACTIVE":
        item |= {"refresh_shard": shard(seller, region), "refresh_due_at": EPOCH + 600}
    return item | extra


def purgeable(seller: str, region: str, status: str, purge_in: timedelta) -> dict[str, Any]:
    return connection(seller, region, status, purge_after=iso(NOW + purge_in), purge_shard=shard(seller, region))


def candidate(seller: str, region: str, number: int) -> dict[str, Any]:
    return {"pk": f"CANDIDATE#{seller}", "sk": f"{region}#{number:032x}", "verify_shard": shard(seller, region),
            "verify_due_at": EPOCH + number}


def lagging_plan(seller: str, *, orders_hours_behind: int, sales_days_behind: int) -> dict[str, Any]:
    orders = new_cursor(CATALOG[ORDERS], None, EPOCH - 86400, 0)
    orders.covered_until = orders.covered_from = (EPOCH - EPOCH % 3600) - 3600 * (orders_hours_behind + 1)
    sales = new_cursor(CATALOG[SALES_AND_TRAFFIC], US, EPOCH - 86400 * 3, 0)
    sales.covered_until = sales.covered_from = (EPOCH - EPOCH % 86400) - 86400 * (sales_days_behind + 1)
    late = new_cursor(CATALOG[SALES_AND_TRAFFIC], CA, EPOCH - 86400 * 30, 0, stop=EPOCH - 86400 * 20)  # history only
    plan = Plan(seller, "NA", EPOCH + 900, {}, None, [US, CA],
                coverage={orders.key: orders, sales.key: sales, late.key: late})
    return plan.to_item()


def seed(table: Any) -> None:
    with table.batch_writer() as writer:
        for n in range(7):
            writer.put_item(Item=connection(f"ACT{n:05d}NA", "NA", "ACTIVE"))
        for n in range(3):
            writer.put_item(Item=connection(f"ACT{n:05d}EU", "EU", "ACTIVE"))
        writer.put_item(Item=purgeable("REV00001", "NA", "REVOKED", timedelta(days=2)))
        writer.put_item(Item=purgeable("REV00002", "FE", "REVOKED", timedelta(days=20)))
        writer.put_item(Item=purgeable("DEL00001", "NA", "DELETION_REQUESTED", timedelta(days=6, hours=23)))
        writer.put_item(Item=purgeable("DEL00001", "EU", "DELETION_REQUESTED", timedelta(days=6, hours=23)))
        writer.put_item(Item=purgeable("DEL00002", "EU", "DELETION_REQUESTED", timedelta(days=8)))
        writer.put_item(Item=connection("RMV00001", "EU", "TOKENS_REMOVED"))
        for n in range(4):
            writer.put_item(Item=candidate("NEW00001", "NA", n))
        writer.put_item(Item=lagging_plan("ACT00000NA", orders_hours_behind=5, sales_days_behind=1))
        writer.put_item(Item=lagging_plan("ACT00001NA", orders_hours_behind=2, sales_days_behind=3))
        # Rows the census must never read: report metadata and jobs.
        writer.put_item(Item={"pk": "SELLER#ACT00000NA", "sk": f"REPORT#NA#{ORDERS}#a#b", "status": "TOKENS_REMOVED"})


def test_the_census_counts_every_question_from_the_indexes(table: Any) -> None:
    seed(table)

    census = FleetCensus(table.meta.client, table.name).count(EPOCH)

    assert census.connections == {"ACTIVE": {"NA": 7, "EU": 3}, "REVOKED": {"NA": 1, "FE": 1},
                                  "DELETION_REQUESTED": {"NA": 1, "EU": 2}}
    assert census.deletions_pending == 3
    assert census.purges_due_this_week == 3  # 2 days, and both 6 d 23 h; not 8 or 20 days
    assert census.pending_candidates == 4
    # Orders 5 h behind the hour just due; sales 3 days (the late marketplace's history-only cursor ignored).
    assert census.report_lag_periods == {ORDERS: 5.0, SALES_AND_TRAFFIC: 3.0}
    assert not census.tokens_removed_counted
    assert "Scan" not in census.calls
    assert census.calls["BatchGetItem"] == 1  # five purge-index entries' status, in one call
    summary = census.as_dict()
    assert summary["connections_total"] == 15
    assert json.loads(json.dumps(summary)) == summary


def test_tokens_removed_needs_the_parallel_scan(table: Any) -> None:
    seed(table)

    census = FleetCensus(table.meta.client, table.name, scan_segments=4).count(EPOCH)

    assert census.connections["TOKENS_REMOVED"] == {"EU": 1}  # the REPORT# row with that word is not a connection
    assert census.tokens_removed_counted
    assert census.calls["Scan"] >= 4


def test_an_empty_fleet_counts_zero(table: Any) -> None:
    census = FleetCensus(table.meta.client, table.name).count(EPOCH)

    assert census.as_dict()["connections_total"] == 0
    assert (census.pending_candidates, census.deletions_pending, census.purges_due_this_week) == (0, 0, 0)
    assert census.report_lag_periods == {}


def test_the_gauges(table: Any, capfd: pytest.CaptureFixture[str]) -> None:
    seed(table)
    census = FleetCensus(table.meta.client, table.name).count(EPOCH)

    fleet_census.emit(census)

    blobs = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    gauges = {}
    for blob in blobs:
        definition = blob["_aws"]["CloudWatchMetrics"][0]
        name = definition["Metrics"][0]["Name"]
        dimensions = tuple(sorted((key, blob[key]) for key in definition["Dimensions"][0] if key != "service"))
        gauges[name, dimensions] = blob[name][0] if isinstance(blob[name], list) else blob[name]
    assert gauges[("FleetConnections", (("region", "NA"), ("status", "ACTIVE")))] == 7.0
    assert gauges[("FleetConnections", (("region", "FE"), ("status", "ACTIVE")))] == 0.0  # zeros, not gaps
    assert gauges[("FleetConnections", (("region", "EU"), ("status", "DELETION_REQUESTED")))] == 2.0
    assert gauges[("FleetDeletionsPending", ())] == 3.0
    assert gauges[("FleetPurgesDueThisWeek", ())] == 3.0
    assert gauges[("FleetPendingCandidates", ())] == 4.0
    assert not any(name == "SweepCompleted" for name, _ in gauges)  # the handler beats, once the run finished
    assert not any(name == "FleetConnections" and ("status", "TOKENS_REMOVED") in dims for name, dims in gauges)
