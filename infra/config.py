"""Typed per-stage configuration, parsed from the ``stages`` entry of the cdk.json context."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, cast

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs

DEFAULT_STAGE = "dev"
Removal = Literal["retain", "destroy"]

# CloudWatch Logs accepts only these retention periods (>= 365 days, the DPP's 12 months).
_RETENTION: dict[int, logs.RetentionDays] = {
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
}
# A sweep runs daily, so a purge can lag its due date by up to a day.
SWEEP_LAG_DAYS = 1
# The report types planned for a connection that chose none (seller_insights.report_catalog names them).
DEFAULT_REPORT_TYPES: tuple[str, ...] = (
    "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL",
    "GET_MERCHANT_LISTINGS_ALL_DATA",
    "GET_FBA_MYI_UNSUPPRESSED_INVENTORY_DATA",
    "GET_FBA_FULFILLMENT_CUSTOMER_RETURNS_DATA",
    "GET_SALES_AND_TRAFFIC_REPORT",
    "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2",
)
_REPORT_TYPE = re.compile(r"GET_[A-Z0-9_]+")
# A route path or a prefix of one, segment by segment: "/connect", "/admin", "/admin/sellers/{seller_id}".
_ROUTE_PATH = re.compile(r"(/[A-Za-z0-9._~{}+-]+)+")
# API Gateway's account-level ceilings per Region (HTTP APIs): no route limit may exceed them.
ACCOUNT_RATE_LIMIT = 10_000
ACCOUNT_BURST_LIMIT = 5_000
# Caps on a report document (REPORT_MAX_DECOMPRESSED_MIB / REPORT_MAX_COMPRESSION_RATIO of report_fetcher,
# whose settings enforce the same bounds). MiB: 64 keeps ordinary reports in (and catches "4" meant as
# GiB); 80,000 is 10,000 parts of 8 MiB, where the multipart upload would stop anyway. Ratio: realistic
# documents reach 16:1 (bench/README.md, compression_ratios); gzip cannot exceed about 1032:1.
REPORT_MAX_DECOMPRESSED_MIB_RANGE = (64, 80_000)
REPORT_MAX_COMPRESSION_RATIO_RANGE = (20, 1032)


class ConfigError(ValueError):
    """cdk.json context is missing a stage or holds a bad value; the message names the key."""


@dataclass(frozen=True)
class RouteLimit:
    """One entry of ``api_limits.routes``: a token bucket (``rate`` per second, ``burst`` deep) that every
    route whose path is ``path`` or lies under it gets for itself (one bucket per route key)."""

    path: str
    rate: float
    burst: int

    def covers(self, route_path: str) -> bool:
        return route_path == self.path or route_path.startswith(self.path + "/")


@dataclass(frozen=True)
class ApiLimits:
    """``cdk.json`` → ``context.stages.<name>.api_limits``: per-route throttles of the HTTP API and the
    reserved concurrency of the consent function (infra/constructs/oauth_callback.py checks that the consent
    routes' limits fit inside it)."""

    routes: tuple[RouteLimit, ...]
    # None (null or absent in cdk.json): no reservation; the consent function shares the unreserved pool.
    consent_reserved_concurrency: int | None

    def for_path(self, route_path: str) -> RouteLimit | None:
        """The entry with the longest path that covers ``route_path``."""
        covering = [limit for limit in self.routes if limit.covers(route_path)]
        return max(covering, key=lambda limit: len(limit.path)) if covering else None


@dataclass(frozen=True)
class StageConfig:
    """Settings of one deployment stage (``cdk.json`` → ``context.stages.<name>``)."""

    name: str
    # Draft apps need ``version=beta`` on the consent URL.
    app_draft: bool
    # Fixed, registered OAuth redirect URI; None = the HTTP API's execute-api URL + "/callback".
    redirect_uri: str | None
    # Country code used by /connect without ?marketplace= (e.g. "US").
    default_marketplace: str
    # Lambda and API access-log retention; the DPP asks for >= 12 months.
    log_retention_days: int
    # The deletion promise: every trace of a seller is gone this many days after the request.
    retention_days: int
    # Life of a pending OAuth state (OA-04: at most 10 minutes).
    state_ttl_seconds: int
    # How long a consent may wait for Amazon to confirm its seller before it is destroyed.
    consent_verification_hours: int
    # ReauthorizationDue is announced this many days before a seller's 365-day authorization ends.
    reauth_notice_days: int
    # The LWA client secret is rotated when it expires within this many days.
    rotate_when_days_left: int
    # DynamoDB PITR window. Deleted items stay restorable this long, so the sweeper must purge at
    # retention_days - pitr_recovery_days - SWEEP_LAG_DAYS at the latest (see ``purge_after_days``).
    pitr_recovery_days: int
    # "retain" keeps stateful resources (and turns on deletion protection) when the stack goes.
    removal: Removal
    api_throttle_rate: float
    api_throttle_burst: int
    function_memory_mb: int
    function_timeout_seconds: int
    # Per-route throttles and the consent function's reserved concurrency (``api_limits``).
    api_limits: ApiLimits
    # Optional cap on concurrent executions per function; None leaves the account pool shared.
    reserved_concurrency: int | None = None
    # Report types the planner requests for a connection without its own choice (DEFAULT_REPORT_TYPES
    # environment variable of report_fetcher, comma-separated).
    default_report_types: tuple[str, ...] = DEFAULT_REPORT_TYPES
    # A report document decompressing to more than this many MiB, or at more than this ratio (once
    # 8 MiB came out), is corrupt: nothing is stored (REPORT_MAX_DECOMPRESSED_MIB, ..._COMPRESSION_RATIO).
    report_max_decompressed_mib: int = 4096
    report_max_compression_ratio: int = 100

    @property
    def retain(self) -> bool:
        return self.removal == "retain"

    @property
    def removal_policy(self) -> RemovalPolicy:
        return RemovalPolicy.RETAIN if self.retain else RemovalPolicy.DESTROY

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.log_retention_days]

    @property
    def purge_after_days(self) -> int:
        """Latest day after a deletion request at which the sweeper must purge a seller."""
        return self.retention_days - self.pitr_recovery_days - SWEEP_LAG_DAYS

    @classmethod
    def from_context(cls, stage: str, stages: object) -> StageConfig:
        if not isinstance(stages, Mapping):
            raise ConfigError("cdk.json context 'stages' must be an object keyed by stage name")
        if stage not in stages:
            known = ", ".join(sorted(str(key) for key in stages))
            raise ConfigError(f"unknown stage {stage!r}: cdk.json context 'stages' has {known}")
        raw = stages[stage]
        if not isinstance(raw, Mapping):
            raise ConfigError(f"cdk.json context 'stages.{stage}' must be an object")
        return _parse(stage, raw)


def _parse(stage: str, raw: Mapping[str, Any]) -> StageConfig:
    prefix = f"stages.{stage}"
    expected = {field.name for field in fields(StageConfig)} - {"name"}
    unknown = sorted(set(raw) - expected)
    if unknown:
        raise ConfigError(f"cdk.json context '{prefix}' has unknown key(s): {', '.join(unknown)}")

    def value(key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        path = f"{prefix}.{key}"
        if key not in raw:
            if optional:
                return None
            raise ConfigError(f"cdk.json context '{path}' is missing")
        item = raw[key]
        if item is None and optional:
            return None
        # bool is an int subclass; a flag where a number belongs (or the reverse) is a typo.
        if isinstance(item, bool) != (kind is bool) or not isinstance(item, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ConfigError(f"cdk.json context '{path}' must be {names}, got {item!r}")
        return item

    def bounded(key: str, low: int, high: int, kind: type | tuple[type, ...] = int) -> Any:
        item = value(key, kind)
        if not low <= item <= high:
            raise ConfigError(f"cdk.json context '{prefix}.{key}' must be in {low}..{high}, got {item!r}")
        return item

    redirect_uri = value("redirect_uri", str, optional=True)
    if redirect_uri is not None and not re.fullmatch(r"https://[^\s?#]+/callback", redirect_uri):
        raise ConfigError(
            f"cdk.json context '{prefix}.redirect_uri' must be null or an https URL ending in /callback "
            f"without query or fragment, got {redirect_uri!r}"
        )
    marketplace = value("default_marketplace", str)
    if not re.fullmatch(r"[A-Z]{2}", marketplace):
        raise ConfigError(f"cdk.json context '{prefix}.default_marketplace' must be a country code like 'US'")
    log_retention_days = value("log_retention_days", int)
    if log_retention_days not in _RETENTION:
        allowed = ", ".join(str(days) for days in _RETENTION)
        raise ConfigError(f"cdk.json context '{prefix}.log_retention_days' must be one of {allowed}")
    removal = value("removal", str)
    if removal not in ("retain", "destroy"):
        raise ConfigError(f"cdk.json context '{prefix}.removal' must be 'retain' or 'destroy', got {removal!r}")
    reserved = value("reserved_concurrency", int, optional=True)
    if reserved is not None and reserved < 1:
        raise ConfigError(f"cdk.json context '{prefix}.reserved_concurrency' must be null or >= 1")

    report_types = _report_types(prefix, raw)
    api_limits = _api_limits(prefix, raw)

    config = StageConfig(
        name=stage,
        app_draft=value("app_draft", bool),
        redirect_uri=redirect_uri,
        default_marketplace=marketplace,
        log_retention_days=log_retention_days,
        retention_days=bounded("retention_days", 2, 366),
        state_ttl_seconds=bounded("state_ttl_seconds", 60, 600),
        consent_verification_hours=bounded("consent_verification_hours", 1, 72),
        reauth_notice_days=bounded("reauth_notice_days", 1, 364),
        # Amazon warns 90 days ahead; the settings of token_refresher accept 1..89.
        rotate_when_days_left=bounded("rotate_when_days_left", 1, 89),
        pitr_recovery_days=bounded("pitr_recovery_days", 1, 35),
        removal=cast(Removal, removal),
        api_throttle_rate=float(bounded("api_throttle_rate", 1, 10_000, (int, float))),
        api_throttle_burst=bounded("api_throttle_burst", 1, 5_000),
        function_memory_mb=bounded("function_memory_mb", 128, 10_240),
        function_timeout_seconds=bounded("function_timeout_seconds", 1, 900),
        api_limits=api_limits,
        reserved_concurrency=reserved,
        default_report_types=report_types,
        report_max_decompressed_mib=bounded("report_max_decompressed_mib", *REPORT_MAX_DECOMPRESSED_MIB_RANGE),
        report_max_compression_ratio=bounded("report_max_compression_ratio", *REPORT_MAX_COMPRESSION_RATIO_RANGE),
    )
    if config.purge_after_days < 1:
        raise ConfigError(
            f"cdk.json context '{prefix}.pitr_recovery_days' ({config.pitr_recovery_days}) leaves no time to purge "
            f"within retention_days ({config.retention_days}): restorable backups would outlive the deletion promise"
        )
    return config


def _report_types(prefix: str, raw: Mapping[str, Any]) -> tuple[str, ...]:
    """``default_report_types``: a non-empty list of distinct SP-API report type names (absent = the six)."""
    if "default_report_types" not in raw:
        return DEFAULT_REPORT_TYPES
    items = raw["default_report_types"]
    path = f"cdk.json context '{prefix}.default_report_types'"
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path} must be a non-empty list of report types, got {items!r}")
    bad = [item for item in items if not isinstance(item, str) or not _REPORT_TYPE.fullmatch(item)]
    if bad:
        raise ConfigError(
            f"{path} holds values that are not report types like 'GET_MERCHANT_LISTINGS_ALL_DATA': {bad!r}"
        )
    if len(set(items)) != len(items):
        raise ConfigError(f"{path} lists a report type twice")
    return tuple(items)


def _api_limits(prefix: str, raw: Mapping[str, Any]) -> ApiLimits:
    """``api_limits``: ``{"consent_reserved_concurrency": N|null, "routes": {"/path": {"rate": r, "burst": b}}}``."""
    path = f"cdk.json context '{prefix}.api_limits"
    if "api_limits" not in raw:
        raise ConfigError(f"{path}' is missing: give each route's rate and burst and the consent function's "
                          "reserved concurrency (see the deploy section of README.md)")
    limits = raw["api_limits"]
    if not isinstance(limits, Mapping):
        raise ConfigError(f"{path}' must be an object with 'routes' and 'consent_reserved_concurrency'")
    unknown = sorted(set(limits) - {"routes", "consent_reserved_concurrency"})
    if unknown:
        raise ConfigError(f"{path}' has unknown key(s): {', '.join(unknown)}")
    if "routes" not in limits:
        raise ConfigError(f"{path}.routes' is missing")
    # CDK drops null context values on the way in: absent is null, no reservation.
    reserved = limits.get("consent_reserved_concurrency")
    if reserved is not None and (isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 1):
        raise ConfigError(f"{path}.consent_reserved_concurrency' must be null or an int >= 1, got {reserved!r}")
    routes = limits["routes"]
    if not isinstance(routes, Mapping) or not routes:
        raise ConfigError(f"{path}.routes' must be a non-empty object like "
                          '{"/connect": {"rate": 1, "burst": 5}}, got ' + repr(routes))
    parsed = []
    for route_path, entry in routes.items():
        where = f"{path}.routes.{route_path}'"
        if not isinstance(route_path, str) or not _ROUTE_PATH.fullmatch(route_path):
            raise ConfigError(f"{where} is not a route path like '/connect' or '/admin' (no trailing slash)")
        if not isinstance(entry, Mapping) or set(entry) != {"rate", "burst"}:
            raise ConfigError(f'{where} must be {{"rate": requests per second, "burst": bucket size}}, got {entry!r}')
        rate, burst = entry["rate"], entry["burst"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= ACCOUNT_RATE_LIMIT:
            raise ConfigError(f"{where} rate must be a number in (0, {ACCOUNT_RATE_LIMIT}], got {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= ACCOUNT_BURST_LIMIT:
            raise ConfigError(f"{where} burst must be an int in 1..{ACCOUNT_BURST_LIMIT}, got {burst!r}")
        parsed.append(RouteLimit(route_path, float(rate), burst))
    return ApiLimits(routes=tuple(parsed), consent_reserved_concurrency=reserved)
