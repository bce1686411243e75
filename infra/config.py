"""Typed per-stage configuration: the ``stages`` entry of the cdk.json context, validated at synth time.

``StageConfig`` is a pydantic model (no unknown keys, strict types, bounds, literals). A bad value stops
the synth with a ``ConfigError`` that names the key as ``stages.<stage>.<key>`` and says what it must be.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import annotated_types
from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

DEFAULT_STAGE = "dev"
Removal = Literal["retain", "destroy"]
# Sales and Traffic through Data Kiosk (per-seller quotas) or the Reports API fallback (app-wide quota,
# 96 a day); its Data Kiosk rows per day and marketplace (DATE) or per day, marketplace and child ASIN.
SalesAndTrafficSource = Literal["DATA_KIOSK", "REPORTS"]
SalesAndTrafficGranularity = Literal["DATE", "ASIN"]
# CloudWatch Logs accepts only these retention periods (>= 365 days, the DPP's 12 months).
LogRetentionDays = Literal[365, 400, 545, 731, 1096, 1827]
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
_REDIRECT_URI = re.compile(r"https://[^\s?#]+/callback")
_PERMISSION_SET_NAME = re.compile(r"[\w+=,.@-]{1,32}", re.ASCII)
# API Gateway's account-level ceilings per Region (HTTP APIs): no route limit may exceed them.
ACCOUNT_RATE_LIMIT = 10_000
ACCOUNT_BURST_LIMIT = 5_000
# Caps on a report document (REPORT_MAX_DECOMPRESSED_MIB / REPORT_MAX_COMPRESSION_RATIO of report_fetcher,
# whose settings enforce the same bounds). MiB: 64 keeps ordinary reports in (and catches "4" meant as
# GiB); 80,000 is 10,000 parts of 8 MiB, where the multipart upload would stop anyway. Ratio: realistic
# documents reach 16:1 (bench/README.md, compression_ratios); gzip cannot exceed about 1032:1.
REPORT_MAX_DECOMPRESSED_MIB_RANGE = (64, 80_000)
# Items a sweep's finder sends per run (the settings of report_fetcher and retention_sweeper enforce the same).
FIND_LIMIT_RANGE = (100, 1_000_000)
REPORT_MAX_COMPRESSION_RATIO_RANGE = (20, 1032)
# Days of history a new coverage cursor fetches (REPORT_BACKFILL_DAYS of report_fetcher): ten years at
# most, far past any horizon Amazon keeps (two years for orders and Sales and Traffic).
REPORT_BACKFILL_DAYS_MAX = 3650
# New report jobs per connection per plan run (PLAN_MAX_JOBS_PER_CONNECTION; report_fetcher.planner).
PLAN_MAX_JOBS_RANGE = (1, 100)
# Concurrent batches of the report_jobs queue's event source (its MaximumConcurrency: 2..1000 is what Lambda
# accepts); sizing in docs/architecture.md, "Report job concurrency".
REPORT_JOBS_CONCURRENCY_RANGE = (2, 1000)
# The app-wide LWA refresh bucket (LWA_REFRESH_RATE / LWA_REFRESH_BURST of token_refresher, whose settings
# enforce the same bounds): refresh_token grants per second, and the burst.
LWA_REFRESH_RATE_RANGE = (0.1, 1000.0)
LWA_REFRESH_BURST_RANGE = (1, 10_000)


class ConfigError(ValueError):
    """cdk.json context is missing a stage or holds a bad value; the message names the key."""


def _route_path(path: str) -> str:
    if not _ROUTE_PATH.fullmatch(path):
        raise ValueError("is not a route path like '/connect' or '/admin' (no trailing slash)")
    return path


RoutePath = Annotated[str, AfterValidator(_route_path)]


class _Model(BaseModel):
    # Strict: a flag where a number belongs (or "7" for 7) is a typo, not something to coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    # What a value of this model looks like, for the error that finds something else in its place.
    shape: ClassVar[str] = "an object"


class Throttle(_Model):
    """One entry of ``api_limits.routes``: a token bucket, ``rate`` per second and ``burst`` deep."""

    shape: ClassVar[str] = '{"rate": requests per second, "burst": bucket size}'

    rate: float = Field(gt=0, le=ACCOUNT_RATE_LIMIT)
    burst: int = Field(ge=1, le=ACCOUNT_BURST_LIMIT)


@dataclass(frozen=True)
class RouteLimit:
    """The throttle that every route whose path is ``path`` or lies under it gets for itself (one bucket
    per route key)."""

    path: str
    rate: float
    burst: int

    def covers(self, route_path: str) -> bool:
        return route_path == self.path or route_path.startswith(self.path + "/")


class ApiLimits(_Model):
    """``cdk.json`` → ``context.stages.<name>.api_limits``: per-route throttles of the HTTP API and the
    reserved concurrency of the consent function (infra/constructs/oauth_callback.py checks that the consent
    routes' limits fit inside it)."""

    shape: ClassVar[str] = "an object with 'routes' and 'consent_reserved_concurrency'"

    throttles: dict[RoutePath, Throttle] = Field(alias="routes", min_length=1)
    # None (null or absent: CDK drops null context values): no reservation; the consent function shares
    # the unreserved pool.
    consent_reserved_concurrency: int | None = Field(default=None, ge=1)

    @property
    def routes(self) -> tuple[RouteLimit, ...]:
        return tuple(RouteLimit(path, throttle.rate, throttle.burst) for path, throttle in self.throttles.items())

    def for_path(self, route_path: str) -> RouteLimit | None:
        """The entry with the longest path that covers ``route_path``."""
        covering = [limit for limit in self.routes if limit.covers(route_path)]
        return max(covering, key=lambda limit: len(limit.path)) if covering else None


# A DNS name of at least two labels, lowercase, no wildcard, no trailing dot.
_DNS_NAME = re.compile(r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_CERTIFICATE_ARN = re.compile(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}")
_HOSTED_ZONE_ID = re.compile(r"Z[A-Z0-9]{1,31}")


class HostedZone(_Model):
    """A Route 53 public hosted zone the stack may write to: the certificate's DNS validation record and the
    domain's alias record. By id and name, because the stack is environment-agnostic (no lookups)."""

    shape: ClassVar[str] = '{"id": "Z0123456789ABCDEFGHIJ", "name": "example.com"}'

    id: str
    name: str

    @field_validator("id")
    @classmethod
    def _zone_id(cls, zone_id: str) -> str:
        if not _HOSTED_ZONE_ID.fullmatch(zone_id):
            raise ValueError(f"must be a Route 53 hosted zone id like 'Z0123456789ABCDEFGHIJ', got {zone_id!r}")
        return zone_id

    @field_validator("name")
    @classmethod
    def _zone_name(cls, name: str) -> str:
        if not _DNS_NAME.fullmatch(name):
            raise ValueError(f"must be the zone's domain name like 'example.com' (lowercase, no trailing dot), "
                             f"got {name!r}")
        return name


class CustomDomain(_Model):
    """``cdk.json`` → ``context.stages.<name>.domain``: the API's own domain name, so the redirect and Log-in
    URIs registered with Amazon survive a re-created API. The certificate is ``certificate_arn`` (an ACM
    certificate in the stack's Region) or, when that is null, one the stack requests with DNS validation in
    ``hosted_zone``. With ``hosted_zone`` the stack also points the name at the API (an alias record); without
    it, point a CNAME at the ``DomainTarget`` output yourself."""

    shape: ClassVar[str] = ('{"name": "api.example.com", "certificate_arn": ARN or null, '
                            '"hosted_zone": {"id": ..., "name": ...} or null}')

    name: str
    certificate_arn: str | None = None
    hosted_zone: HostedZone | None = None
    # With a custom domain, the execute-api URL is switched off, so the API has one address.
    disable_execute_api_endpoint: bool = True

    @field_validator("name")
    @classmethod
    def _domain_name(cls, name: str) -> str:
        if not _DNS_NAME.fullmatch(name):
            raise ValueError(f"must be a domain name like 'api.example.com' (lowercase, no wildcard, no trailing "
                             f"dot), got {name!r}")
        return name

    @field_validator("certificate_arn")
    @classmethod
    def _certificate(cls, arn: str | None) -> str | None:
        if arn is not None and not _CERTIFICATE_ARN.fullmatch(arn):
            raise ValueError("must be null or an ACM certificate ARN like "
                             f"'arn:aws:acm:eu-west-1:123456789012:certificate/<uuid>', got {arn!r}")
        return arn

    @field_validator("hosted_zone")
    @classmethod
    def _name_in_zone(cls, zone: HostedZone | None, info: ValidationInfo) -> HostedZone | None:
        name = info.data.get("name")
        if zone is not None and name is not None and not (name == zone.name or name.endswith("." + zone.name)):
            raise ValueError(f"{zone.name!r} does not hold the domain {name!r}")
        return zone

    @model_validator(mode="after")
    def _has_a_certificate(self) -> CustomDomain:
        if self.certificate_arn is None and self.hosted_zone is None:
            raise ValueError("needs a certificate: give certificate_arn (an ACM certificate in the stack's Region), "
                             "or hosted_zone (the Route 53 zone in which the stack validates a new one by DNS)")
        return self

    @property
    def url(self) -> str:
        return f"https://{self.name}"


class StageConfig(_Model):
    """Settings of one deployment stage (``cdk.json`` → ``context.stages.<name>``)."""

    # The stage's key in ``stages``; not a key of its own in cdk.json.
    name: str
    # Draft apps need ``version=beta`` on the consent URL. A stage that does not say is a draft: an app is
    # published only once Amazon approved it, and a new stage is a test of one (prod says false).
    app_draft: bool = True
    # Fixed, registered OAuth redirect URI; None = the custom domain's (else the execute-api URL's) /callback.
    redirect_uri: str | None = None
    # The API's own domain name, certificate and API mapping; None = the execute-api URL only.
    domain: CustomDomain | None = None
    # Country code used by /connect without ?marketplace= (e.g. "US").
    default_marketplace: str
    # Lambda and API access-log retention; the DPP asks for >= 12 months.
    log_retention_days: LogRetentionDays
    # The deletion promise: every trace of a seller is gone this many days after the request.
    retention_days: int = Field(ge=2, le=366)
    # Life of a pending OAuth state (OA-04: at most 10 minutes).
    state_ttl_seconds: int = Field(ge=60, le=600)
    # How long a consent may wait for Amazon to confirm its seller before it is destroyed.
    consent_verification_hours: int = Field(ge=1, le=72)
    # ReauthorizationDue is announced this many days before a seller's 365-day authorization ends.
    reauth_notice_days: int = Field(ge=1, le=364)
    # The LWA client secret is rotated when it expires within this many days (Amazon warns 90 days
    # ahead; the settings of token_refresher accept 1..89).
    rotate_when_days_left: int = Field(ge=1, le=89)
    # DynamoDB PITR window. Deleted items stay restorable this long, so the sweeper must purge at
    # retention_days - pitr_recovery_days - SWEEP_LAG_DAYS at the latest (see ``purge_after_days``).
    pitr_recovery_days: int = Field(ge=1, le=35)
    # "retain" keeps stateful resources (and turns on deletion protection) when the stack goes.
    removal: Removal
    api_throttle_rate: float = Field(ge=1, le=10_000)
    api_throttle_burst: int = Field(ge=1, le=5_000)
    function_memory_mb: int = Field(ge=128, le=10_240)
    function_timeout_seconds: int = Field(ge=1, le=900)
    # Per-route throttles and the consent function's reserved concurrency.
    api_limits: ApiLimits
    # Optional cap on concurrent executions per function; None leaves the account pool shared.
    reserved_concurrency: int | None = Field(default=None, ge=1)
    # Report types the planner requests for a connection without its own choice (DEFAULT_REPORT_TYPES
    # environment variable of report_fetcher, comma-separated). A JSON list, hence not strict.
    default_report_types: tuple[str, ...] = Field(default=DEFAULT_REPORT_TYPES, min_length=1, strict=False)
    # A report document decompressing to more than this many MiB, or at more than this ratio (once
    # 8 MiB came out), is corrupt: nothing is stored (REPORT_MAX_DECOMPRESSED_MIB, ..._COMPRESSION_RATIO).
    report_max_decompressed_mib: int = Field(ge=REPORT_MAX_DECOMPRESSED_MIB_RANGE[0],
                                             le=REPORT_MAX_DECOMPRESSED_MIB_RANGE[1])
    report_max_compression_ratio: int = Field(ge=REPORT_MAX_COMPRESSION_RATIO_RANGE[0],
                                              le=REPORT_MAX_COMPRESSION_RATIO_RANGE[1])
    # SALES_AND_TRAFFIC_SOURCE and SALES_AND_TRAFFIC_GRANULARITY of report_fetcher.
    sales_and_traffic_source: SalesAndTrafficSource = "DATA_KIOSK"
    sales_and_traffic_granularity: SalesAndTrafficGranularity = "DATE"
    # Days of history per report type a new coverage cursor fetches (a JSON object type -> days; a type not
    # named keeps the catalog's default, which report_catalog.py justifies from Amazon's limits).
    report_backfill_days: dict[str, int] = Field(default_factory=dict, strict=False)
    # At most this many new report jobs per connection per plan run (and history only while fewer windows
    # are in flight): 15 matches createReport's burst and its 1 a minute over the 15-minute plan schedule.
    plan_max_jobs_per_connection: int = Field(default=15, ge=PLAN_MAX_JOBS_RANGE[0], le=PLAN_MAX_JOBS_RANGE[1])
    # The report_jobs queue's event-source concurrency, sized to the fleet (docs/architecture.md); the
    # per-seller quota buckets keep every seller inside Amazon's limits whatever it is.
    report_jobs_concurrency: int = Field(ge=REPORT_JOBS_CONCURRENCY_RANGE[0], le=REPORT_JOBS_CONCURRENCY_RANGE[1])
    # The fan-out sweeps of planning and retention (cdk.json "//sweeps"): how many due plans / purges a finder
    # run sends (PLAN_FIND_LIMIT / PURGE_FIND_LIMIT; the rest stay due), and the max concurrency of the event
    # sources of report_plans and retention_purges (SQS event sources allow 2..1000).
    plan_concurrency: int = Field(ge=2, le=1000)
    plan_find_limit: int = Field(ge=FIND_LIMIT_RANGE[0], le=FIND_LIMIT_RANGE[1])
    purge_concurrency: int = Field(ge=2, le=1000)
    purge_find_limit: int = Field(ge=FIND_LIMIT_RANGE[0], le=FIND_LIMIT_RANGE[1])
    # The token lifecycle's fan-out (docs/architecture.md, "Token lifecycle"): the token_refresh queue's
    # event source runs at most this many batches at once; the app-wide LWA bucket lets through
    # lwa_refresh_rate refresh_token grants per second (our own limit) with bursts of lwa_refresh_burst; a
    # refresh-tokens run sends at most rate x 300 s + burst connections.
    refresh_concurrency: int = Field(ge=2, le=1000)
    lwa_refresh_rate: float = Field(ge=LWA_REFRESH_RATE_RANGE[0], le=LWA_REFRESH_RATE_RANGE[1])
    lwa_refresh_burst: int = Field(ge=LWA_REFRESH_BURST_RANGE[0], le=LWA_REFRESH_BURST_RANGE[1])
    # The IAM Identity Center permission set whose users may assume the OpsSupportRole without IAM MFA
    # (Identity Center's own MFA, "every time they sign in", stands in for it; cdk.json
    # "//ops_identity_center_permission_set"). None: only principals signed in with IAM MFA.
    ops_identity_center_permission_set: str | None = None

    @field_validator("ops_identity_center_permission_set")
    @classmethod
    def _permission_set_name(cls, name: str | None) -> str | None:
        # Identity Center's own rule for permission set names (1 to 32 of these characters).
        if name is not None and not _PERMISSION_SET_NAME.fullmatch(name):
            raise ValueError(f"must be null or a permission set name (1 to 32 of A-Z a-z 0-9 _ + = , . @ -), "
                             f"got {name!r}")
        return name

    @field_validator("redirect_uri")
    @classmethod
    def _registered_callback(cls, uri: str | None) -> str | None:
        if uri is not None and not _REDIRECT_URI.fullmatch(uri):
            raise ValueError(f"must be null or an https URL ending in /callback without query or fragment, got {uri!r}")
        return uri

    @field_validator("domain")
    @classmethod
    def _one_redirect_uri(cls, domain: CustomDomain | None, info: ValidationInfo) -> CustomDomain | None:
        if domain is not None and info.data.get("redirect_uri") is not None:
            raise ValueError(f"and redirect_uri are both set: with a domain the redirect URI is {domain.url}/callback"
                             " (set redirect_uri to null)")
        return domain

    @field_validator("default_marketplace")
    @classmethod
    def _country_code(cls, code: str) -> str:
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise ValueError(f"must be a country code like 'US', got {code!r}")
        return code

    @field_validator("pitr_recovery_days")
    @classmethod
    def _purge_before_backups_outlive_the_promise(cls, days: int, info: ValidationInfo) -> int:
        retention_days = info.data.get("retention_days")
        if retention_days is not None and retention_days - days - SWEEP_LAG_DAYS < 1:
            raise ValueError(f"({days}) leaves no time to purge within retention_days ({retention_days}): "
                             "restorable backups would outlive the deletion promise")
        return days

    @field_validator("default_report_types")
    @classmethod
    def _report_types(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in names if not _REPORT_TYPE.fullmatch(name)]
        if bad:
            raise ValueError(f"holds values that are not report types like 'GET_MERCHANT_LISTINGS_ALL_DATA': {bad!r}")
        if len(set(names)) != len(names):
            raise ValueError("lists a report type twice")
        return names

    @field_validator("report_backfill_days")
    @classmethod
    def _backfill_days(cls, days: dict[str, int]) -> dict[str, int]:
        bad = [name for name in days if not _REPORT_TYPE.fullmatch(name)]
        if bad:
            raise ValueError(f"names keys that are not report types like 'GET_MERCHANT_LISTINGS_ALL_DATA': {bad!r}")
        out_of_range = {name: value for name, value in days.items()
                        if not isinstance(value, int) or not 0 <= value <= REPORT_BACKFILL_DAYS_MAX}
        if out_of_range:
            raise ValueError(f"must map report types to days in 0..{REPORT_BACKFILL_DAYS_MAX}, got {out_of_range!r}")
        return days

    @property
    def backfill_days_setting(self) -> str:
        """REPORT_BACKFILL_DAYS as report_fetcher reads it: TYPE=DAYS,..."""
        return ",".join(f"{name}={days}" for name, days in sorted(self.report_backfill_days.items()))

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
        if "name" in raw:
            raise ConfigError(f"cdk.json context 'stages.{stage}' has unknown key(s): name "
                              "(a stage is named by its key in 'stages')")
        try:
            return cls.model_validate({**raw, "name": stage})
        except ValidationError as invalid:
            raise ConfigError(_explain(stage, invalid.errors())) from None


# --- ConfigError messages from pydantic's errors -----------------------------------------------------

_KINDS = {"bool_type": "bool", "int_type": "int", "string_type": "str", "float_type": "a number",
          "tuple_type": "a list", "list_type": "a list"}
_OBJECT_TYPES = {"model_type", "model_attributes_type", "dict_type"}
_MISSING_HINTS: dict[tuple[str, ...], str] = {
    ("api_limits",): ": give each route's rate and burst and the consent function's reserved concurrency",
}
_BOUND_TYPES = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _explain(stage: str, errors: list[ErrorDetails]) -> str:
    """One line per problem, each naming its key and what the key must hold, then where to fix it."""
    lines: list[str] = []
    unknown: dict[str, list[str]] = {}
    for error in errors:
        loc = tuple(str(part) for part in error["loc"] if part != "[key]")
        if error["type"] == "extra_forbidden":
            unknown.setdefault(_where(stage, loc[:-1]), []).append(loc[-1])
            continue
        lines.append(f"{_where(stage, loc)} {_problem(error, loc)}")
    lines += [f"{where} has unknown key(s): {', '.join(sorted(keys))}" for where, keys in unknown.items()]
    advice = f"Fix cdk.json → context.stages.{stage}; README.md (Deploying to AWS) describes each key."
    return "\n".join([*lines, advice])


def _where(stage: str, loc: tuple[str, ...]) -> str:
    # A route's own keys follow its path outside the quotes: the path holds slashes and dots itself.
    if loc[:2] == ("api_limits", "routes") and len(loc) > 3:
        return f"cdk.json context '{'.'.join(('stages', stage, *loc[:3]))}' {'.'.join(loc[3:])}"
    return f"cdk.json context '{'.'.join(('stages', stage, *loc))}'"


def _problem(error: ErrorDetails, loc: tuple[str, ...]) -> str:
    kind, ctx, given = error["type"], error.get("ctx", {}), error["input"]
    if kind == "missing":
        return "is missing" + _MISSING_HINTS.get(loc, "")
    if kind == "value_error":
        return str(ctx["error"])
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}, got {given!r}"
    if kind in _OBJECT_TYPES:
        expected = _required(_expected_at(loc)[1])
        shape = expected.shape if isinstance(expected, type) and issubclass(expected, _Model) else "an object"
        return f"must be {shape}, got {given!r}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}, got {given!r}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        what = "object" if ctx.get("field_type") == "Dictionary" else "list"
        return f"must be a non-empty {what}, got {given!r}"
    field = _expected_at(loc)[0]
    if kind in _BOUND_TYPES and field is not None:
        nullable = type(None) in typing.get_args(field.annotation)
        return f"must be {'null or an int ' if nullable else ''}{_bounds(field)}, got {given!r}"
    return f"is invalid: {error['msg']}"


def _expected_at(loc: tuple[str, ...]) -> tuple[FieldInfo | None, Any]:
    """The last model field on the way to a location, and the type expected there (through nested models
    and the route mapping)."""
    field: FieldInfo | None = None
    expected: Any = StageConfig
    for part in loc:
        expected = _required(expected)
        if isinstance(expected, type) and issubclass(expected, BaseModel):
            field = next(info for name, info in expected.model_fields.items() if part in (name, info.alias))
            expected = field.annotation
        elif typing.get_origin(expected) is dict:
            expected = typing.get_args(expected)[1]
    return field, expected


def _required(expected: Any) -> Any:
    """``X`` of an optional ``X | None`` (an optional object still has its shape); anything else as it is."""
    if type(None) in typing.get_args(expected):
        others = [arg for arg in typing.get_args(expected) if arg is not type(None)]
        return others[0] if len(others) == 1 else expected
    return expected


def _bounds(field: FieldInfo) -> str:
    """The field's bounds as the message says them: "in 1..89", "in (0, 10000]", ">= 1"."""
    low = next((item for item in field.metadata if isinstance(item, annotated_types.Ge | annotated_types.Gt)), None)
    high = next((item.le for item in field.metadata if isinstance(item, annotated_types.Le)), None)
    if isinstance(low, annotated_types.Gt):
        return f"in ({low.gt}, {high}]"
    assert isinstance(low, annotated_types.Ge), field
    return f">= {low.ge}" if high is None else f"in {low.ge}..{high}"
