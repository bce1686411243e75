"""Every report type the product pulls, declared once. Planning, fetching and storage read this.

Columns: for TSV reports only the columns listed in `kept_columns` are stored (an allowlist), so a
buyer's name, e-mail, phone or address never lands in S3, even if Amazon adds such a column later.
Names here are lowercase ASCII letters, digits and hyphens (`report_tsv.COLUMN_NAME`): the header
cells of that shape are the only ones ever named in logs and REPORT# rows. The English names are the
only header language understood: a document whose header names none of the kept columns (a JP account
whose report language is Japanese, Amazon's report encodings) is DocumentCorrupt, not stored empty.
Cooldowns after FATAL follow Airbyte's experience (30 minutes; 4 hours for daily FBA reports).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from seller_insights.errors import ConfigurationError


class ReportFormat(StrEnum):
    TSV = "tsv"
    XML = "xml"
    JSON = "json"


class WindowKind(StrEnum):
    UPDATED = "updated"  # rows changed in [start, end): windowed, with a lookback overlap
    SNAPSHOT = "snapshot"  # the state now; the window only names the run
    DAY = "day"  # one whole UTC day, requested once it is over
    DISCOVERED = "discovered"  # cannot be requested: found with getReports (settlement)


class DataSource(StrEnum):
    """Which Amazon API a type is pulled through."""

    REPORTS = "REPORTS"  # Reports API 2021-06-30: createReport, getReport, getReportDocument
    DATA_KIOSK = "DATA_KIOSK"  # Data Kiosk API 2023-11-15: createQuery, getQuery, getDocument (JSONL)


@dataclass(frozen=True)
class AppQuota:
    """A limit Amazon applies per application, across every seller."""

    min_interval: timedelta
    max_per_day: int


@dataclass(frozen=True)
class ReportSpec:
    report_type: str
    format: ReportFormat
    window: WindowKind
    cadence: timedelta
    lookback: timedelta = timedelta()
    max_window: timedelta | None = None
    fatal_cooldown: timedelta = timedelta(minutes=30)
    max_attempts: int = 3
    app_quota: AppQuota | None = None
    kept_columns: tuple[str, ...] | None = None
    # Columns Amazon sends that we drop on purpose (buyer data, free text): expected, not alarming.
    # Anything neither kept nor listed here is new, and counted in UnexpectedColumnsDropped (by name in
    # the log when shaped like a column name, else only counted).
    known_dropped: tuple[str, ...] = ()
    # Where the type comes from. Sales and Traffic defaults to Data Kiosk (per-seller quotas); the stage
    # key sales_and_traffic_source = REPORTS falls back to the Reports API type (app-wide quota, 96 a day).
    source: DataSource = DataSource.REPORTS
    # Coverage (seller_insights.coverage). per_marketplace: Amazon answers one marketplace per request, so
    # each marketplace gets its own jobs, cursor, S3 key and REPORT# row; otherwise one job carries all the
    # connection's marketplaces. backfill_days: how far back a new cursor fetches history (overridable per
    # stage: cdk.json `report_backfill_days`). restate_days: the last N completed days before yesterday
    # are pulled again every day (new jobs whose object replaces the same key), for data Amazon restates.
    per_marketplace: bool = False
    backfill_days: int = 0
    restate_days: int = 0

    @property
    def requestable(self) -> bool:
        return self.window is not WindowKind.DISCOVERED

    def window_for(self, due_at: datetime) -> tuple[datetime, datetime]:
        """The data window of the run due at `due_at` (aligned, so the same run gets the same id)."""
        end = align(due_at, self.cadence)
        if self.window is WindowKind.DAY:
            day = end.replace(hour=0, minute=0, second=0, microsecond=0)
            return day - timedelta(days=1), day
        start = end - self.cadence - self.lookback
        if self.max_window is not None and end - start > self.max_window:
            start = end - self.max_window
        return start, end


def align(moment: datetime, step: timedelta) -> datetime:
    """The latest multiple of `step` since the epoch at or before `moment` (UTC)."""
    seconds = int(step.total_seconds())
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


ORDERS = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL"
LISTINGS = "GET_MERCHANT_LISTINGS_ALL_DATA"
FBA_INVENTORY = "GET_FBA_MYI_UNSUPPRESSED_INVENTORY_DATA"
FBA_RETURNS = "GET_FBA_FULFILLMENT_CUSTOMER_RETURNS_DATA"
SALES_AND_TRAFFIC = "GET_SALES_AND_TRAFFIC_REPORT"
SETTLEMENT = "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2"

CATALOG: dict[str, ReportSpec] = {spec.report_type: spec for spec in (
    ReportSpec(
        ORDERS, ReportFormat.TSV, WindowKind.UPDATED, cadence=timedelta(hours=1),
        lookback=timedelta(hours=1), max_window=timedelta(days=30),
        # Order reports return every marketplace of the request in one document (Reports API model,
        # CreateReportSpecification.marketplaceIds: "data for all of the specified marketplaces, unless the
        # report type indicates otherwise"; Order Reports says nothing otherwise). Two years of history:
        # what Seller Central's order reports offer; older windows come back empty (NO_DATA), not failed.
        per_marketplace=False, backfill_days=730,
        # ship-city and ship-postal-code are address parts: never stored. State and country are kept.
        kept_columns=(
            "amazon-order-id", "merchant-order-id", "purchase-date", "last-updated-date", "order-status",
            "fulfillment-channel", "sales-channel", "order-channel", "ship-service-level", "product-name",
            "sku", "asin", "item-status", "quantity", "currency", "item-price", "item-tax", "shipping-price",
            "shipping-tax", "gift-wrap-price", "gift-wrap-tax", "item-promotion-discount",
            "ship-promotion-discount", "ship-state", "ship-country", "promotion-ids", "is-business-order",
            "purchase-order-number", "price-designation", "number-of-items", "url", "tax-collection-model",
            "tax-collection-responsible-party", "address-type",
        ),
        known_dropped=("ship-city", "ship-postal-code", "cpf", "buyer-name", "buyer-email",
                       "buyer-phone-number", "recipient-name", "ship-address-1", "ship-address-2",
                       "ship-address-3"),
    ),
    ReportSpec(
        LISTINGS, ReportFormat.TSV, WindowKind.SNAPSHOT, cadence=timedelta(days=1),
        # Report Type Values, "Inventory Reports": "You can only specify one marketplace per report. When
        # requesting a report with multiple marketplaceIds, only the first marketplaceId in the list will be
        # accepted." A snapshot has no history: no backfill.
        per_marketplace=True,
        kept_columns=(
            "item-name", "item-description", "listing-id", "seller-sku", "price", "quantity", "open-date",
            "image-url", "item-is-marketplace", "product-id-type", "item-note", "item-condition", "asin1",
            "asin2", "asin3", "will-ship-internationally", "expedited-shipping", "product-id",
            "pending-quantity", "fulfillment-channel", "merchant-shipping-group", "status",
        ),
        # Legacy zShops fields of the listings layout: empty in practice, of no analytic use.
        known_dropped=("zshop-shipping-fee", "zshop-category1", "zshop-browse-path", "zshop-storefront-feature",
                       "zshop-boldface", "bid-for-featured-placement", "add-delete"),
    ),
    ReportSpec(
        # Near-real-time FBA report: Amazon regenerates it at most every 30 minutes.
        FBA_INVENTORY, ReportFormat.TSV, WindowKind.SNAPSHOT, cadence=timedelta(hours=4),
        # Report Type Values, "FBA Reports": inventory is kept per marketplace's fulfilment network; asked
        # one marketplace at a time so a marketplace's stock is never merged into another's. No history.
        per_marketplace=True,
        kept_columns=(
            "sku", "fnsku", "asin", "product-name", "condition", "your-price", "mfn-listing-exists",
            "mfn-fulfillable-quantity", "afn-listing-exists", "afn-warehouse-quantity",
            "afn-fulfillable-quantity", "afn-unsellable-quantity", "afn-reserved-quantity",
            "afn-total-quantity", "per-unit-volume", "afn-inbound-working-quantity",
            "afn-inbound-shipped-quantity", "afn-inbound-receiving-quantity", "afn-researching-quantity",
            "afn-reserved-future-supply", "afn-future-supply-buyable",
        ),
    ),
    ReportSpec(
        # Daily FBA report (regenerated at most every 4 hours): 4-hour cooldown after FATAL.
        # customer-comments is free text written by buyers: never stored.
        FBA_RETURNS, ReportFormat.TSV, WindowKind.DAY, cadence=timedelta(days=1),
        fatal_cooldown=timedelta(hours=4),
        # One marketplace per request (FBA Reports), 18 months of history (the returns Seller Central
        # shows; older days come back empty, not failed).
        per_marketplace=True, backfill_days=545,
        kept_columns=(
            "return-date", "order-id", "sku", "asin", "fnsku", "product-name", "quantity",
            "fulfillment-center-id", "detailed-disposition", "reason", "status", "license-plate-number",
        ),
        known_dropped=("customer-comments",),
    ),
    ReportSpec(
        # Pulled through Data Kiosk (salesAndTrafficByDate/ByAsin, one query per day and marketplace,
        # per-seller quotas). The Reports API fallback has an app-wide quota since 2026-04-24: one request
        # per 15 minutes per application, 96 a day (it applies only on that path).
        SALES_AND_TRAFFIC, ReportFormat.JSON, WindowKind.DAY, cadence=timedelta(days=1),
        app_quota=AppQuota(min_interval=timedelta(minutes=15), max_per_day=96),
        source=DataSource.DATA_KIOSK,
        # "Seller Retail Analytics Reports": one marketplace per request. Amazon restates this data for up
        # to 72 hours: the 3 days before yesterday are pulled again every day. Two years of history (what
        # Data Kiosk's salesAndTraffic datasets keep).
        per_marketplace=True, backfill_days=730, restate_days=3,
    ),
    ReportSpec(
        # Settlement reports cannot be requested: Amazon generates them; we discover them twice a day.
        SETTLEMENT, ReportFormat.TSV, WindowKind.DISCOVERED, cadence=timedelta(hours=12),
        lookback=timedelta(days=3),
        # Discovered per connection: Amazon ignores the marketplace filter of settlement reports. 90 days:
        # getReports' createdSince reaches back at most that far ("Reports are retained for a maximum of
        # 90 days", Reports API model).
        per_marketplace=False, backfill_days=90,
        kept_columns=(
            "settlement-id", "settlement-start-date", "settlement-end-date", "deposit-date", "total-amount",
            "currency", "transaction-type", "order-id", "merchant-order-id", "adjustment-id", "shipment-id",
            "marketplace-name", "amount-type", "amount-description", "amount", "fulfillment-id",
            "posted-date", "posted-date-time", "order-item-code", "merchant-order-item-id",
            "merchant-adjustment-item-id", "sku", "quantity-purchased", "promotion-id",
        ),
    ),
)}


def spec(report_type: str) -> ReportSpec:
    try:
        return CATALOG[report_type]
    except KeyError:
        raise ConfigurationError(f"report type {report_type} is not in the catalog") from None


def source_of(report_spec: ReportSpec, sales_and_traffic_source: DataSource | None = None) -> DataSource:
    """The type's source, with the stage's choice for Sales and Traffic (None: the catalog's)."""
    if report_spec.report_type == SALES_AND_TRAFFIC and sales_and_traffic_source is not None:
        return sales_and_traffic_source
    return report_spec.source


def parse_enabled(value: str) -> tuple[str, ...]:
    """A comma-separated list of catalog report types (DEFAULT_REPORT_TYPES)."""
    types = tuple(t.strip() for t in value.split(",") if t.strip())
    unknown = [t for t in types if t not in CATALOG]
    if unknown:
        raise ConfigurationError(f"unknown report types: {', '.join(unknown)}; known: {', '.join(CATALOG)}")
    return types
