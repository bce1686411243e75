"""The report fetcher's environment (names per docs/internal-contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass

from report_fetcher.planner import (
    DEFAULT_MAX_JOBS_PER_CONNECTION,
    DEFAULT_PLAN_FIND_LIMIT,
    MAX_JOBS_PER_CONNECTION,
    PLAN_FIND_LIMIT_RANGE,
    PlanningLimits,
)
from seller_insights.errors import ConfigurationError
from seller_insights.multipart_writer import PART_SIZE
from seller_insights.report_catalog import DataSource, parse_enabled
from seller_insights.report_gzip import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_RATIO,
    GZIP_MAX_RATIO,
    DocumentLimits,
    MiB,
)
from seller_insights.settings import (
    BaseSettings,
    ConnectionsTable,
    DataBucket,
    PurgeSchedule,
    ReportNotificationsQueue,
    TokenKey,
    env_field,
)

# The bounds infra/config.py enforces on the stage keys report_max_decompressed_mib and
# report_max_compression_ratio. Above 10,000 parts of PART_SIZE an S3 multipart upload cannot go on;
# below 64 MiB a cap would refuse ordinary reports (and "4" meant as GiB is caught). Ratios of realistic
# documents reach 16:1 (bench/README.md), so a cap below 20 would refuse them; above gzip's maximum it
# never applies.
MAX_DECOMPRESSED_MIB_RANGE = (64, 10_000 * PART_SIZE // MiB)
MAX_COMPRESSION_RATIO_RANGE = (20, GZIP_MAX_RATIO)


@dataclass(frozen=True, kw_only=True)
class ReportFetcherSettings(ConnectionsTable, TokenKey, DataBucket, PurgeSchedule, ReportNotificationsQueue,
                            BaseSettings):
    report_jobs_queue_url: str = env_field()
    # The plan-reports schedule sends due plans there ({"report_plans": [{seller_id, region}, ...]}), at most
    # PLAN_FIND_LIMIT a run; this function consumes it.
    report_plans_queue_url: str = env_field()
    plan_find_limit: int = env_field(default=DEFAULT_PLAN_FIND_LIMIT)
    # Report types a connection pulls unless its planning cursor lists its own (comma-separated).
    default_report_types: str = env_field()
    # Caps on a report document: above either it is DocumentCorrupt and nothing is stored.
    report_max_decompressed_mib: int = env_field(default=DEFAULT_MAX_DECOMPRESSED_BYTES // MiB)
    report_max_compression_ratio: int = env_field(default=DEFAULT_MAX_RATIO)
    # With REPORT_NOTIFICATIONS_QUEUE_ARN, connections are subscribed to REPORT_PROCESSING_FINISHED with their
    # region's destination for it before planning; the token refresher creates the destinations and caches
    # their ids here.
    idempotency_table: str | None = env_field(default=None)
    # Sales and Traffic through Data Kiosk (DATA_KIOSK, per-seller quotas) or the Reports API fallback
    # (REPORTS: app-wide quota, 96 requests a day); and its Data Kiosk rows: per day (DATE) or per ASIN.
    sales_and_traffic_source: str = env_field(default=DataSource.DATA_KIOSK.value)
    sales_and_traffic_granularity: str = env_field(default="DATE")
    # Planning (report_fetcher.planner): new jobs per connection per plan run, and windows in flight before
    # history is planned; days of history per type for new cursors ("TYPE=DAYS,..."; else the catalog's).
    plan_max_jobs_per_connection: int = env_field(default=DEFAULT_MAX_JOBS_PER_CONNECTION)
    report_backfill_days: str = env_field(default="")

    @property
    def enabled_by_default(self) -> tuple[str, ...]:
        return parse_enabled(self.default_report_types)

    @property
    def sales_and_traffic(self) -> DataSource:
        try:
            return DataSource(self.sales_and_traffic_source.strip().upper())
        except ValueError:
            raise ConfigurationError("SALES_AND_TRAFFIC_SOURCE must be DATA_KIOSK or REPORTS") from None

    @property
    def backfill_days(self) -> dict[str, int]:
        pairs = [pair.split("=", 1) for pair in self.report_backfill_days.split(",") if pair.strip()]
        if any(len(pair) != 2 or not pair[1].strip().isdigit() for pair in pairs):
            raise ConfigurationError("REPORT_BACKFILL_DAYS must read TYPE=DAYS[,TYPE=DAYS...]")
        days = {name.strip(): int(value) for name, value in pairs}
        parse_enabled(",".join(days))  # every name a catalog type
        return days

    @property
    def planning_limits(self) -> PlanningLimits:
        return PlanningLimits(max_jobs=self.plan_max_jobs_per_connection, backfill_days=self.backfill_days)

    @property
    def document_limits(self) -> DocumentLimits:
        return DocumentLimits(max_decompressed_bytes=self.report_max_decompressed_mib * MiB,
                              max_ratio=self.report_max_compression_ratio)

    def validate(self) -> None:
        super().validate()
        if not self.enabled_by_default:
            raise ConfigurationError("DEFAULT_REPORT_TYPES lists no report type")
        _ = self.sales_and_traffic
        if self.sales_and_traffic_granularity.strip().upper() not in ("DATE", "ASIN"):
            raise ConfigurationError("SALES_AND_TRAFFIC_GRANULARITY must be DATE or ASIN")
        if not 1 <= self.plan_max_jobs_per_connection <= MAX_JOBS_PER_CONNECTION:
            raise ConfigurationError(f"PLAN_MAX_JOBS_PER_CONNECTION must be in 1..{MAX_JOBS_PER_CONNECTION}")
        self.backfill_days  # noqa: B018 (validates REPORT_BACKFILL_DAYS)
        low, high = PLAN_FIND_LIMIT_RANGE
        if not low <= self.plan_find_limit <= high:
            raise ConfigurationError(f"PLAN_FIND_LIMIT must be in {low}..{high}")
        for name, value, (low, high) in (
            ("REPORT_MAX_DECOMPRESSED_MIB", self.report_max_decompressed_mib, MAX_DECOMPRESSED_MIB_RANGE),
            ("REPORT_MAX_COMPRESSION_RATIO", self.report_max_compression_ratio, MAX_COMPRESSION_RATIO_RANGE),
        ):
            if not low <= value <= high:
                raise ConfigurationError(f"{name} must be in {low}..{high}, got {value}; set it through the "
                                         "stage's cdk.json keys (see docs/internal-contracts.md)")
