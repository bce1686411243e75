"""bench.completeness still runs: a tiny simulation (3 sellers, one per region, one simulated day with
its planning outage and its two hours of 5xx) through the real handlers, and its oracle is sound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench import completeness
from bench.completeness import Seller, Settlement, StoredWindow, Unit, covered, expected_units
from seller_insights.report_catalog import CATALOG, FBA_INVENTORY, ORDERS, SALES_AND_TRAFFIC, SETTLEMENT

START = datetime(2026, 11, 30, tzinfo=UTC)
HOUR = 3600


def test_the_expectation_counts_every_period_of_every_marketplace_after_the_connection():
    seller = Seller("A1EXPECTED0001", "EU", "DE", ("DE", "FR"))
    settlement = Settlement(seller.seller_id, "FR", "51234", int((START + timedelta(hours=5)).timestamp()))
    units = expected_units([seller], START + timedelta(minutes=30), START + timedelta(days=2), [settlement])
    orders = [u for u in units if u.report_type == ORDERS]
    assert len(orders) == 2 * 47  # 01:00 day 1 .. 23:00 day 2, in both marketplaces
    days = sorted({u.start for u in units if u.report_type == SALES_AND_TRAFFIC})
    assert days == [int((START + timedelta(days=1)).timestamp())]  # day 1 only: day 0 began before the connection
    assert [u.report_id for u in units if u.report_type == SETTLEMENT] == ["51234"]
    assert {u.report_type for u in units} == set(CATALOG)


def test_what_no_pipeline_can_fetch_is_not_expected():
    """A snapshot whose run fell only inside the planning outage (a past state cannot be asked for), and a
    settlement report created after the last discovery of the run."""
    seller = Seller("A1EXPECTED0001", "EU", "DE", ("DE",))
    late = Settlement(seller.seller_id, "DE", "99", int((START + timedelta(days=2) - timedelta(hours=1)).timestamp()))
    outage = (START + timedelta(hours=3), START + timedelta(hours=9))
    units = expected_units([seller], START, START + timedelta(days=2), [late], outage)
    inventory = sorted(u.start - int(START.timestamp()) for u in units if u.report_type == FBA_INVENTORY)
    assert 0 not in inventory and 4 * HOUR in inventory  # due at 04:00, inside the outage; due at 08:00: at 09:00
    assert [u for u in units if u.report_type == SETTLEMENT] == []
    assert len([u for u in units if u.report_type == ORDERS]) == 48  # windowed types: every hour is expected


def test_a_stored_window_covers_the_periods_inside_it_in_its_marketplaces_only():
    at = int(START.timestamp())
    units = [Unit("S", code, ORDERS, at + h * HOUR, at + (h + 1) * HOUR) for code in ("DE", "FR") for h in range(3)]
    stored = [StoredWindow("S", ORDERS, frozenset({"DE"}), at - HOUR, at + 2 * HOUR, "1")]
    assert covered(units, stored) == {units[0], units[1]}
    assert covered([Unit("S", "FR", SETTLEMENT, at, at, "7")], [StoredWindow("S", SETTLEMENT, frozenset(), None, None,
                                                                              "7")])


def test_a_tiny_week_runs_through_the_real_handlers():
    result = completeness.run(sellers=3, days=1, seed=3, step_minutes=15, progress=lambda _: None)
    assert result["sellers_by_region"] == {"NA": 1, "EU": 1, "FE": 1}
    assert result["expected_units"] > 0 and 0 < result["stored_units"] <= result["expected_units"]
    assert result["schedule_runs"]["plan-reports (skipped: outage)"] == 24  # 6 hours of a 15-minute schedule
    assert result["spapi_calls"]["createReport"] > 0 and result["lwa_calls"]["refresh_token"] > 0
    assert result["fetcher_records"] > 0 and result["messages_left"]["dead_letters"] == 0
    # The refresh finder's work went through the token_refresh queue, all of it.
    assert result["refresher_deliveries"] > 0 and result["refresher_failed_records"] == 0
    assert result["messages_left"]["token_refresh"] == 0
