from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seller_insights.errors import ConfigurationError
from seller_insights.report_catalog import (
    CATALOG,
    FBA_RETURNS,
    ORDERS,
    SETTLEMENT,
    WindowKind,
    align,
    parse_enabled,
)

PII = ("buyer-name", "buyer-email", "buyer-phone-number", "ship-address-1", "ship-address-2", "ship-city",
       "ship-postal-code", "recipient-name", "customer-comments")


def test_the_six_report_types_of_the_issue_are_declared():
    assert set(CATALOG) == {
        "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL", "GET_MERCHANT_LISTINGS_ALL_DATA",
        "GET_FBA_MYI_UNSUPPRESSED_INVENTORY_DATA", "GET_FBA_FULFILLMENT_CUSTOMER_RETURNS_DATA",
        "GET_SALES_AND_TRAFFIC_REPORT", "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2"}


@pytest.mark.parametrize("report_type", [t for t, s in CATALOG.items() if s.kept_columns])
def test_no_allowlist_keeps_buyer_identity_or_addresses(report_type):
    assert not set(CATALOG[report_type].kept_columns or ()) & set(PII)


def test_orders_windows_are_hourly_with_a_lookback_and_stable_ids():
    spec = CATALOG[ORDERS]
    start, end = spec.window_for(datetime(2026, 11, 29, 10, 37, 12, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 11, 29, 8, tzinfo=UTC), datetime(2026, 11, 29, 10, tzinfo=UTC))
    assert spec.window_for(datetime(2026, 11, 29, 10, 59, tzinfo=UTC)) == (start, end)
    assert spec.max_window == timedelta(days=30)


def test_daily_reports_ask_for_the_finished_day():
    start, end = CATALOG[FBA_RETURNS].window_for(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 11, 28, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC))
    assert CATALOG[FBA_RETURNS].fatal_cooldown == timedelta(hours=4)


def test_settlement_cannot_be_requested_and_sales_and_traffic_has_an_app_quota():
    assert CATALOG[SETTLEMENT].window is WindowKind.DISCOVERED and not CATALOG[SETTLEMENT].requestable
    quota = CATALOG["GET_SALES_AND_TRAFFIC_REPORT"].app_quota
    assert quota is not None and quota.min_interval == timedelta(minutes=15) and quota.max_per_day == 96


def test_align_and_parse():
    four_hours = timedelta(hours=4)
    assert align(datetime(2026, 11, 29, 10, 37, tzinfo=UTC), four_hours) == datetime(2026, 11, 29, 8, tzinfo=UTC)
    assert parse_enabled(f" {ORDERS} ,{SETTLEMENT}") == (ORDERS, SETTLEMENT)
    with pytest.raises(ConfigurationError, match="GET_NOT_A_REPORT"):
        parse_enabled("GET_NOT_A_REPORT")


@pytest.mark.parametrize("report_type", [t for t, s in CATALOG.items() if s.kept_columns])
def test_known_dropped_columns_are_never_kept(report_type):
    report_spec = CATALOG[report_type]
    assert not set(report_spec.known_dropped) & set(report_spec.kept_columns or ())


@pytest.mark.parametrize("report_type", [t for t, s in CATALOG.items() if s.kept_columns])
def test_catalog_columns_are_shaped_like_column_names(report_type):
    # Only header cells of this shape are ever named in logs and REPORT# rows: a known-dropped column of
    # another shape could never be recognised as known, and would count as unexpected for ever.
    from seller_insights.report_tsv import COLUMN_NAME

    report_spec = CATALOG[report_type]
    for name in (*(report_spec.kept_columns or ()), *report_spec.known_dropped):
        assert COLUMN_NAME.fullmatch(name), name


# --- windows ----------------------------------------------------------------------------------------


def test_a_window_longer_than_the_types_maximum_is_cut_at_its_start():
    from seller_insights.report_catalog import ReportFormat, ReportSpec

    wide = ReportSpec("GET_TEST_REPORT", ReportFormat.TSV, WindowKind.UPDATED, cadence=timedelta(days=1),
                      lookback=timedelta(days=45), max_window=timedelta(days=30))
    start, end = wide.window_for(datetime(2026, 11, 29, 10, tzinfo=UTC))
    assert end == datetime(2026, 11, 29, tzinfo=UTC)
    assert end - start == timedelta(days=30)


def test_settlement_is_looked_for_over_its_cadence_and_three_days_back():
    start, end = CATALOG[SETTLEMENT].window_for(datetime(2026, 11, 29, 13, 5, tzinfo=UTC))
    assert end == datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert end - start == timedelta(hours=12) + timedelta(days=3)


def test_an_unknown_type_is_a_configuration_error():
    from seller_insights.report_catalog import spec

    assert spec(ORDERS) is CATALOG[ORDERS]
    with pytest.raises(ConfigurationError, match="GET_NOT_A_REPORT"):
        spec("GET_NOT_A_REPORT")


@given(due=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
       report_type=st.sampled_from(sorted(CATALOG)))
def test_every_window_is_over_before_it_is_due_and_names_its_run(due, report_type):
    report_spec = CATALOG[report_type]
    start, end = report_spec.window_for(due)
    assert start < end <= due
    # Any moment of the same cadence step is the same run: the same window, so the same job id.
    step_start = align(due, report_spec.cadence)
    assert report_spec.window_for(step_start) == (start, end)
    assert report_spec.window_for(step_start + report_spec.cadence - timedelta(seconds=1)) == (start, end)
    # The next run's window starts no later than this one ends: consecutive runs leave no gap.
    next_start, next_end = report_spec.window_for(step_start + report_spec.cadence)
    assert next_end > end
    if report_spec.window is not WindowKind.SNAPSHOT:
        assert next_start <= end
