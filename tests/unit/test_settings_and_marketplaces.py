import pytest

from oauth_callback.settings import ConsentSettings
from seller_insights.endpoints import amazon_url, emulated_host
from seller_insights.errors import ConfigurationError, UnknownMarketplace
from seller_insights.marketplaces import (
    MARKETPLACES,
    Region,
    central_host_regions,
    main_seller_central,
    marketplace,
)

ENV = {
    "STAGE": "dev",
    "CONNECTIONS_TABLE": "c", "OAUTH_STATE_TABLE": "s", "IDEMPOTENCY_TABLE": "i", "AUDIT_TABLE": "a",
    "SELLER_KEY_SECRET_ID": "sk",
    "TOKEN_KEY_ID": "arn:aws:kms:us-east-1:1:key/x", "LWA_CLIENT_SECRET_ID": "arn:secret",
    "APP_DRAFT": "false", "REDIRECT_URI": "https://api.example.com/callback",
}


def test_settings_read_and_typed():
    settings = ConsentSettings.from_env({**ENV, "STATE_TTL_SECONDS": "300"})
    assert settings.app_draft is False
    assert settings.state_ttl_seconds == 300
    assert settings.default_marketplace == "US"


def test_missing_variables_are_all_named():
    with pytest.raises(ConfigurationError) as err:
        ConsentSettings.from_env({"STAGE": "dev"})
    for name in ("CONNECTIONS_TABLE", "TOKEN_KEY_ID", "REDIRECT_URI", "APP_DRAFT"):
        assert name in str(err.value)


@pytest.mark.parametrize(("key", "value"), [
    ("APP_DRAFT", "maybe"), ("STATE_TTL_SECONDS", "ten"), ("STATE_TTL_SECONDS", "3600"),
    ("REDIRECT_URI", "http://api.example.com/callback"), ("REDIRECT_URI", "https://api.example.com/cb?x=1"),
    ("DEFAULT_MARKETPLACE", "XX"), ("AMAZON_ENDPOINT_OVERRIDE", "http://127.0.0.1:1"),
    ("CONSENT_VERIFICATION_SECONDS", "60"), ("CONSENT_VERIFICATION_SECONDS", str(73 * 3600)),
])
def test_bad_values_are_refused(key, value):
    with pytest.raises(ConfigurationError):
        ConsentSettings.from_env({**ENV, key: value})


def test_local_stage_allows_loopback_and_the_override():
    settings = ConsentSettings.from_env({**ENV, "STAGE": "local", "REDIRECT_URI": "http://127.0.0.1:9/callback",
                                         "AMAZON_ENDPOINT_OVERRIDE": "http://127.0.0.1:1"})
    assert settings.is_local


def test_every_marketplace_of_the_reference_is_present():
    codes = {"US", "CA", "MX", "BR", "UK", "DE", "FR", "IT", "ES", "NL", "SE", "PL", "BE", "IE", "TR", "AE", "SA",
             "EG", "IN", "ZA", "JP", "AU", "SG"}
    assert set(MARKETPLACES) == codes
    assert marketplace("gb").code == "UK"
    assert marketplace("jp").marketplace_id == "A1VC38T7YXB528"
    assert marketplace("DE").seller_central == "https://sellercentral-europe.amazon.com"
    with pytest.raises(UnknownMarketplace):
        marketplace("XX")


def test_central_hosts_map_to_their_region():
    hosts = central_host_regions()
    assert hosts["sellercentral.amazon.com"] is Region.NA
    assert hosts["sellercentral-europe.amazon.com"] is Region.EU
    assert hosts["vendorcentral.amazon.me"] is Region.EU
    assert hosts["sellercentral.amazon.co.jp"] is Region.FE
    assert main_seller_central(Region.FE) == "https://sellercentral.amazon.co.jp"


def test_amazon_url_rewrites_only_the_origin():
    url = "https://sellercentral.amazon.de/apps/authorize/consent?a=1&b=2"
    assert amazon_url(url, None) == url
    assert amazon_url(url, "http://127.0.0.1:5000/") == (
        "http://127.0.0.1:5000/_hosts/sellercentral.amazon.de/apps/authorize/consent?a=1&b=2")
    assert emulated_host("http://127.0.0.1:5000/_hosts/sellercentral.amazon.de/x", "http://127.0.0.1:5000") == (
        "sellercentral.amazon.de", "/x")
    assert emulated_host("http://127.0.0.1:5001/_hosts/sellercentral.amazon.de/x", "http://127.0.0.1:5000") is None
    assert emulated_host("http://127.0.0.1:5000/other/x", "http://127.0.0.1:5000") is None


@pytest.mark.parametrize("settings_module", ["data_requests.settings", "report_fetcher.settings",
                                             "token_refresher.settings"])
@pytest.mark.parametrize("days", ["", "0", "31"])
def test_every_function_that_sets_a_purge_date_needs_one_within_the_promise(settings_module, days):
    import importlib

    from seller_insights.settings import BaseSettings, PurgeSchedule

    module = importlib.import_module(settings_module)
    [settings] = [value for value in vars(module).values()
                  if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings]
    assert issubclass(settings, PurgeSchedule)
    env = {"STAGE": "dev", "CONNECTIONS_TABLE": "c", "IDEMPOTENCY_TABLE": "i", "AUDIT_TABLE": "a", "DATA_BUCKET": "b",
           "SELLER_KEY_SECRET_ID": "sk", "TOKEN_KEY_ID": "k", "LWA_CLIENT_SECRET_ID": "l",
           "REPORT_JOBS_QUEUE_URL": "q", "REPORT_PLANS_QUEUE_URL": "p", "EXPORT_QUEUE_URL": "e",
            "DEFAULT_REPORT_TYPES": "GET_MERCHANT_LISTINGS_ALL_DATA",
            "REFRESH_WORK_QUEUE_URL": "q", "LWA_REFRESH_RATE": "5", "LWA_REFRESH_BURST": "10"}
    assert settings.from_env({**env, "PURGE_AFTER_DAYS": "27"}).purge_after_days == 27
    with pytest.raises(ConfigurationError, match="PURGE_AFTER_DAYS"):
        settings.from_env({**env, "PURGE_AFTER_DAYS": days})


TOKEN_ENV = {"STAGE": "dev", "CONNECTIONS_TABLE": "c", "IDEMPOTENCY_TABLE": "i", "AUDIT_TABLE": "a", "DATA_BUCKET": "b",
             "SELLER_KEY_SECRET_ID": "sk", "TOKEN_KEY_ID": "k", "LWA_CLIENT_SECRET_ID": "l", "PURGE_AFTER_DAYS": "27",
             "REFRESH_WORK_QUEUE_URL": "q"}


def test_the_app_wide_lwa_bucket_is_read_as_a_rate():
    from seller_insights.quotas import Rate
    from token_refresher.settings import TokenRefresherSettings

    settings = TokenRefresherSettings.from_env({**TOKEN_ENV, "LWA_REFRESH_RATE": "2.5", "LWA_REFRESH_BURST": "20"})
    assert settings.lwa_refresh == Rate(2.5, 20)


@pytest.mark.parametrize(("rate", "burst", "named"), [
    ("0", "10", "LWA_REFRESH_RATE"), ("fast", "10", "LWA_REFRESH_RATE"),
    ("5", "0", "LWA_REFRESH_BURST"), ("5", "", "LWA_REFRESH_BURST")])
def test_a_bad_lwa_bucket_is_refused_by_name(rate, burst, named):
    from token_refresher.settings import TokenRefresherSettings

    with pytest.raises(ConfigurationError, match=named):
        TokenRefresherSettings.from_env({**TOKEN_ENV, "LWA_REFRESH_RATE": rate, "LWA_REFRESH_BURST": burst})
