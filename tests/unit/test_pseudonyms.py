"""The opaque seller key: a keyed HMAC whose key lives in Secrets Manager (seller_insights.pseudonyms)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.base import clear_caches
from moto import mock_aws

from seller_insights import pseudonyms
from seller_insights.errors import ConfigurationError
from seller_insights.object_keys import export_key, report_key, seller_prefix
from tests.conftest import TEST_SELLER_KEY_KEY

SELLER = "A1B2C3D4E5F6G7"
KEY = "k" * 64


@pytest.fixture
def from_the_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """No fixed key: seller keys come from a secret in (in-process) Secrets Manager."""
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="seller-keys", SecretString=KEY)["ARN"]
        monkeypatch.setenv("SELLER_KEY_SECRET_ID", arn)
        pseudonyms.use_key(None)
        clear_caches()
        yield arn
        clear_caches()
        pseudonyms.use_key(TEST_SELLER_KEY_KEY)


def test_the_key_is_an_hmac_of_the_secret(from_the_secret: str, log_guard) -> None:  # type: ignore[no-untyped-def]
    key = pseudonyms.seller_key(SELLER)
    assert key == pseudonyms.keyed(KEY.encode(), SELLER) and len(key) == 32
    assert pseudonyms.seller_key(SELLER) == key  # stable
    assert pseudonyms.seller_key("A2OTHERSELLER9") != key
    # Not the unkeyed digest anyone with a list of seller ids could recompute.
    assert key != hashlib.sha256(f"seller:{SELLER}".encode()).hexdigest()[:32]
    assert pseudonyms.keyed(b"x" * 64, SELLER) != key


def test_without_the_secret_nothing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    pseudonyms.use_key(None)
    try:
        monkeypatch.delenv("SELLER_KEY_SECRET_ID")
        with pytest.raises(ConfigurationError, match="SELLER_KEY_SECRET_ID is not set"):
            pseudonyms.seller_key(SELLER)
        with mock_aws():
            arn = boto3.client("secretsmanager").create_secret(Name="short", SecretString="too-short")["ARN"]
            monkeypatch.setenv("SELLER_KEY_SECRET_ID", arn)
            clear_caches()
            with pytest.raises(ConfigurationError, match="at least 32"):
                pseudonyms.seller_key(SELLER)
    finally:
        clear_caches()
        pseudonyms.use_key(TEST_SELLER_KEY_KEY)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        pseudonyms.use_key(b"short")


def test_object_keys_never_name_the_seller() -> None:
    key = pseudonyms.seller_key(SELLER)
    assert seller_prefix(SELLER) == f"sellers/{key}/"
    assert seller_prefix(SELLER, "EU") == f"sellers/{key}/EU/"
    assert report_key(SELLER, "NA", "GET_X", "2026-11-29T10:00:00Z_2026-11-29T11:00:00Z", "tsv") == (
        f"sellers/{key}/NA/reports/GET_X/2026-11-29T10:00:00Z_2026-11-29T11:00:00Z.tsv")
    assert export_key(SELLER, "r1") == f"exports/{key}/r1.zip"
    for built in (seller_prefix(SELLER, "NA"), export_key(SELLER, "r1")):
        assert SELLER not in built
