"""Stage configuration parsing and the clear errors of a bad setup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from infra.app import build_app, load_cdk_context
from infra.config import DEFAULT_REPORT_TYPES, FIND_LIMIT_RANGE, ConfigError, StageConfig
from infra.constructs import service_function


def _stages() -> dict[str, Any]:
    stages: dict[str, Any] = load_cdk_context()["stages"]
    return stages


def test_cdk_json_defines_local_dev_and_prod() -> None:
    stages = _stages()
    assert {"local", "dev", "prod"} <= set(stages)
    for name in stages:
        config = StageConfig.from_context(name, stages)
        assert config.log_retention_days >= 365
        # Restorable PITR copies must not outlive the deletion promise.
        assert config.purge_after_days + config.pitr_recovery_days < config.retention_days
        # The token lifecycle defaults of docs/internal-contracts.md.
        assert (config.retention_days, config.reauth_notice_days, config.rotate_when_days_left) == (30, 30, 7)
    assert StageConfig.from_context("prod", stages).retain
    assert not StageConfig.from_context("dev", stages).retain


def test_unknown_stage_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown stage 'qa'.*dev"):
        StageConfig.from_context("qa", _stages())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("log_retention_days", 30, "stages.dev.log_retention_days"),
        ("app_draft", "yes", "stages.dev.app_draft' must be bool"),
        ("function_memory_mb", True, "stages.dev.function_memory_mb' must be int"),
        ("removal", "keep", "stages.dev.removal"),
        ("redirect_uri", "http://example.com/callback", "stages.dev.redirect_uri"),
        ("pitr_recovery_days", 35, "stages.dev.pitr_recovery_days"),
        ("state_ttl_seconds", 3600, "stages.dev.state_ttl_seconds"),
        ("reauth_notice_days", 0, "stages.dev.reauth_notice_days"),
        ("rotate_when_days_left", 180, "stages.dev.rotate_when_days_left"),
        ("rotate_when_days_left", "7", "stages.dev.rotate_when_days_left' must be int"),
        ("default_report_types", [], "stages.dev.default_report_types' must be a non-empty list"),
        ("default_report_types", "GET_MERCHANT_LISTINGS_ALL_DATA", "stages.dev.default_report_types' must be"),
        ("default_report_types", ["get_orders"], "stages.dev.default_report_types' holds values"),
        ("default_report_types", ["GET_X", "GET_X"], "stages.dev.default_report_types' lists a report type twice"),
        ("report_max_decompressed_mib", 4, r"stages.dev.report_max_decompressed_mib' must be in 64..80000"),
        ("report_max_decompressed_mib", 80_001, "stages.dev.report_max_decompressed_mib' must be in"),
        ("report_max_decompressed_mib", "4096", "stages.dev.report_max_decompressed_mib' must be int"),
        ("report_max_decompressed_mib", 4096.0, "stages.dev.report_max_decompressed_mib' must be int"),
        ("report_max_compression_ratio", 16, r"stages.dev.report_max_compression_ratio' must be in 20..1032"),
        ("report_max_compression_ratio", 2000, "stages.dev.report_max_compression_ratio' must be in"),
        ("report_max_compression_ratio", True, "stages.dev.report_max_compression_ratio' must be int"),
    ],
)
def test_bad_values_name_the_key(key: str, value: object, message: str) -> None:
    stages = _stages()
    stages["dev"] = {**stages["dev"], key: value}
    with pytest.raises(ConfigError, match=message):
        StageConfig.from_context("dev", stages)


def test_missing_and_unknown_keys_are_named() -> None:
    stages = _stages()
    dev = dict(stages["dev"])
    del dev["retention_days"]
    with pytest.raises(ConfigError, match=r"stages\.dev\.retention_days' is missing"):
        StageConfig.from_context("dev", {"dev": dev})
    with pytest.raises(ConfigError, match=r"unknown key.*log_retention"):
        StageConfig.from_context("dev", {"dev": {**stages["dev"], "log_retention": 365}})


def test_missing_deps_layer_asks_for_make_layer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(service_function, "DEPS_LAYER_DIR", tmp_path / "missing")
    with pytest.raises(service_function.AssetMissingError, match="make layer"):
        build_app("dev", outdir=str(tmp_path / "out"))


def test_default_report_types_default_to_the_six_catalog_types() -> None:
    stages = _stages()
    for name in stages:
        assert StageConfig.from_context(name, stages).default_report_types == DEFAULT_REPORT_TYPES
    dev = {key: value for key, value in stages["dev"].items() if key != "default_report_types"}
    assert StageConfig.from_context("dev", {"dev": dev}).default_report_types == DEFAULT_REPORT_TYPES
    chosen = {**stages["dev"], "default_report_types": ["GET_MERCHANT_LISTINGS_ALL_DATA"]}
    assert StageConfig.from_context("dev", {"dev": chosen}).default_report_types == ("GET_MERCHANT_LISTINGS_ALL_DATA",)


def test_report_document_caps_are_set_in_every_stage_within_the_functions_bounds() -> None:
    from infra.config import REPORT_MAX_COMPRESSION_RATIO_RANGE, REPORT_MAX_DECOMPRESSED_MIB_RANGE
    from report_fetcher.settings import MAX_COMPRESSION_RATIO_RANGE, MAX_DECOMPRESSED_MIB_RANGE

    # What the stage config accepts, the function's settings accept: a deploy never starts a function
    # that refuses its own environment.
    assert REPORT_MAX_DECOMPRESSED_MIB_RANGE == MAX_DECOMPRESSED_MIB_RANGE
    assert REPORT_MAX_COMPRESSION_RATIO_RANGE == MAX_COMPRESSION_RATIO_RANGE
    stages = _stages()
    for name in stages:
        assert {"report_max_decompressed_mib", "report_max_compression_ratio"} <= set(stages[name]), name
        config = StageConfig.from_context(name, stages)
        assert (config.report_max_decompressed_mib, config.report_max_compression_ratio) == (4096, 100), name
    for key in ("report_max_decompressed_mib", "report_max_compression_ratio"):
        dev = {k: v for k, v in stages["dev"].items() if k != key}
        with pytest.raises(ConfigError, match=rf"stages\.dev\.{key}' is missing"):
            StageConfig.from_context("dev", {"dev": dev})
    lowest = {**stages["dev"], "report_max_decompressed_mib": 64, "report_max_compression_ratio": 1032}
    config = StageConfig.from_context("dev", {"dev": lowest})
    assert (config.report_max_decompressed_mib, config.report_max_compression_ratio) == (64, 1032)


def test_every_bad_key_of_a_stage_is_named_at_once_with_where_to_fix_it() -> None:
    stages = _stages()
    dev = {**stages["dev"], "app_draft": 1, "removal": "keep", "log_retention": 365}
    del dev["retention_days"]
    with pytest.raises(ConfigError) as refused:
        StageConfig.from_context("dev", {"dev": dev})
    lines = str(refused.value).splitlines()
    assert lines == [
        "cdk.json context 'stages.dev.app_draft' must be bool, got 1",
        "cdk.json context 'stages.dev.retention_days' is missing",
        "cdk.json context 'stages.dev.removal' must be 'retain' or 'destroy', got 'keep'",
        "cdk.json context 'stages.dev' has unknown key(s): log_retention",
        "Fix cdk.json → context.stages.dev; README.md (Deploying to AWS) describes each key.",
    ]


def test_a_stage_is_named_by_its_key_only() -> None:
    stages = _stages()
    with pytest.raises(ConfigError, match=r"stages\.dev' has unknown key\(s\): name"):
        StageConfig.from_context("dev", {"dev": {**stages["dev"], "name": "prod"}})
    assert StageConfig.from_context("dev", stages).name == "dev"


def test_the_stage_config_cannot_change_once_read() -> None:
    config = StageConfig.from_context("dev", _stages())
    with pytest.raises(ValidationError):
        config.retention_days = 400  # type: ignore[misc]


def test_sales_and_traffic_source_and_granularity_are_stage_keys_the_fetcher_accepts() -> None:
    from report_fetcher.settings import ReportFetcherSettings

    stages = _stages()
    for name in stages:
        config = StageConfig.from_context(name, stages)
        assert (config.sales_and_traffic_source, config.sales_and_traffic_granularity) == ("DATA_KIOSK", "DATE")
    fallback = StageConfig.from_context("dev", {"dev": {**stages["dev"], "sales_and_traffic_source": "REPORTS",
                                                        "sales_and_traffic_granularity": "ASIN"}})
    assert (fallback.sales_and_traffic_source, fallback.sales_and_traffic_granularity) == ("REPORTS", "ASIN")
    for key, value in (("sales_and_traffic_source", "KIOSK"), ("sales_and_traffic_granularity", "WEEK")):
        with pytest.raises(ConfigError, match=rf"stages\.dev\.{key}'"):
            StageConfig.from_context("dev", {"dev": {**stages["dev"], key: value}})
    # Every value the stage accepts, the function's settings accept too.
    base = {"STAGE": "dev", "CONNECTIONS_TABLE": "t", "TOKEN_KEY_ID": "k", "DATA_BUCKET": "b",
            "REPORT_JOBS_QUEUE_URL": "q", "REPORT_PLANS_QUEUE_URL": "p",
            "DEFAULT_REPORT_TYPES": "GET_MERCHANT_LISTINGS_ALL_DATA",
            "SELLER_KEY_SECRET_ID": "s", "PURGE_AFTER_DAYS": "27"}
    for source in ("DATA_KIOSK", "REPORTS"):
        for granularity in ("DATE", "ASIN"):
            settings = ReportFetcherSettings.from_env({**base, "SALES_AND_TRAFFIC_SOURCE": source,
                                                       "SALES_AND_TRAFFIC_GRANULARITY": granularity})
            settings.validate()
            assert settings.sales_and_traffic.value == source


def test_backfill_days_and_the_planning_cap_are_set_per_stage_within_bounds() -> None:
    stages = load_cdk_context()["stages"]
    for stage in stages:
        config = StageConfig.from_context(stage, stages)
        assert 1 <= config.plan_max_jobs_per_connection <= 100
        assert set(config.report_backfill_days) <= set(DEFAULT_REPORT_TYPES)
        assert config.backfill_days_setting.count("=") == len(config.report_backfill_days)
    bad = {**stages["dev"], "report_backfill_days": {"GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL": 5000}}
    with pytest.raises(ConfigError, match=r"report_backfill_days' must map report types to days in 0\.\.3650"):
        StageConfig.from_context("dev", {"dev": bad})
    bad = {**stages["dev"], "report_backfill_days": {"orders": 5}}
    with pytest.raises(ConfigError, match="not report types"):
        StageConfig.from_context("dev", {"dev": bad})
    with pytest.raises(ConfigError, match="plan_max_jobs_per_connection"):
        StageConfig.from_context("dev", {"dev": {**stages["dev"], "plan_max_jobs_per_connection": 0}})


@pytest.mark.parametrize("value", [1, 1001, None, "20"])
def test_report_jobs_concurrency_is_required_and_bounded(value: object) -> None:
    stages = load_cdk_context()["stages"]
    for stage in stages:  # every stage sets it
        assert 2 <= StageConfig.from_context(stage, stages).report_jobs_concurrency <= 1000
    bad = {**stages["dev"], "report_jobs_concurrency": value}
    with pytest.raises(ConfigError, match="report_jobs_concurrency"):
        StageConfig.from_context("dev", {"dev": bad})
    missing = {key: v for key, v in stages["dev"].items() if key != "report_jobs_concurrency"}
    with pytest.raises(ConfigError, match="report_jobs_concurrency"):
        StageConfig.from_context("dev", {"dev": missing})


def test_the_sweeps_keys_are_set_in_every_stage_within_bounds() -> None:
    """plan_concurrency / purge_concurrency: SQS event sources allow 2..1000; the finders' limits are the
    range the functions' settings accept (PLAN_FIND_LIMIT, PURGE_FIND_LIMIT)."""
    from infra.constructs.report_fetcher import PLAN_SCHEDULE
    from infra.constructs.retention_sweeper import SCHEDULE
    from report_fetcher.planner import PLAN_FIND_LIMIT_RANGE, PLAN_PERIOD_SECONDS
    from retention_sweeper.service import PURGE_FIND_LIMIT_RANGE, SWEEP_PERIOD_SECONDS

    assert PLAN_FIND_LIMIT_RANGE == PURGE_FIND_LIMIT_RANGE == FIND_LIMIT_RANGE
    # The finders rotate their first shard once per run of their schedule.
    assert PLAN_SCHEDULE[1].to_seconds() == PLAN_PERIOD_SECONDS
    assert SCHEDULE[1].to_seconds() == SWEEP_PERIOD_SECONDS
    stages = load_cdk_context()["stages"]
    keys = ("plan_concurrency", "plan_find_limit", "purge_concurrency", "purge_find_limit")
    for name in stages:
        assert set(keys) <= set(stages[name]), name
        StageConfig.from_context(name, stages)
    for key, bad in (("plan_concurrency", 1), ("purge_concurrency", 1001), ("plan_find_limit", 99),
                     ("purge_find_limit", 1_000_001)):
        with pytest.raises(ConfigError, match=key):
            StageConfig.from_context("dev", {"dev": {**stages["dev"], key: bad}})


def test_the_token_refresh_keys_are_set_in_every_stage_and_checked() -> None:
    """refresh_concurrency (the token_refresh event source), lwa_refresh_rate and lwa_refresh_burst (the
    app-wide LWA bucket): required in every stage, within bounds."""
    stages = load_cdk_context()["stages"]
    for stage in stages:
        config = StageConfig.from_context(stage, stages)
        assert 2 <= config.refresh_concurrency <= 1000
        assert 0.1 <= config.lwa_refresh_rate <= 1000 and 1 <= config.lwa_refresh_burst <= 10_000
    # 100,000 connections refresh once an hour each: prod's bucket must let about 28 a second through.
    assert StageConfig.from_context("prod", stages).lwa_refresh_rate * 3600 >= 100_000
    for key, value, message in (("refresh_concurrency", 1, r"refresh_concurrency' must be in 2\.\.1000"),
                                ("lwa_refresh_rate", 0, "lwa_refresh_rate"),
                                ("lwa_refresh_burst", 0, r"lwa_refresh_burst' must be in 1\.\.10000")):
        with pytest.raises(ConfigError, match=message):
            StageConfig.from_context("dev", {"dev": {**stages["dev"], key: value}})
    missing = {key: value for key, value in stages["dev"].items() if key != "refresh_concurrency"}
    with pytest.raises(ConfigError, match="refresh_concurrency' is missing"):
        StageConfig.from_context("dev", {"dev": missing})


def test_the_ops_identity_center_permission_set_is_a_permission_set_name_or_null() -> None:
    stages = load_cdk_context()["stages"]
    for stage in stages:
        assert StageConfig.from_context(stage, stages).ops_identity_center_permission_set is None
    named = {**stages["dev"], "ops_identity_center_permission_set": "SellerInsights.Ops@team-1"}
    assert StageConfig.from_context("dev", {"dev": named}).ops_identity_center_permission_set == \
        "SellerInsights.Ops@team-1"
    # A pattern would widen the trust (aws:PrincipalArn ArnLike) to other permission sets: refused.
    for bad in ("Ops*", "Ops?", "Ops/Admin", "", "x" * 33, "Opś"):
        with pytest.raises(ConfigError, match="ops_identity_center_permission_set"):
            StageConfig.from_context("dev", {"dev": {**stages["dev"], "ops_identity_center_permission_set": bad}})
