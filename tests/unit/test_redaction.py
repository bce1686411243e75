import logging

import pytest

from seller_insights import observability
from seller_insights.redaction import REDACTED, redact, register_secret


@pytest.mark.parametrize("text", [
    "token Atzr|IwEBIExampleRefreshToken0123456789abcdef",
    "token Atza%7CIwEBIExampleAccessToken0123456789abcdef",
    "grantless Atc|MQEWYExampleGrantless0123456789",
    "secret amzn1.oa2-cs.v1.3fa85f6457174562b3fc2c963f66afa6",
    "GET /callback?state=abcdef123456&spapi_oauth_code=ANxyzCODE123&selling_partner_id=A1",
    '{"refresh_token": "whatever-value", "client_secret": "s3cr3t-value"}',
    "{'access_token': 'whatever-value'}",
    "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=abc123&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F",
    "key AKIAIOSFODNN7EXAMPLE",
    "Authorization: Bearer abc.def.ghi",
])
def test_shaped_secrets_are_scrubbed(text):
    scrubbed = redact(text)
    assert REDACTED in scrubbed
    for secret in ("IwEBIExample", "MQEWYExample", "3fa85f6457", "abcdef123456", "ANxyzCODE123", "whatever-value",
                   "s3cr3t-value", "abc123", "AKIAIOSFODNN7EXAMPLE", "abc.def.ghi"):
        assert secret not in scrubbed


def test_registered_literals_are_scrubbed_wherever_they_appear():
    register_secret("k9Xq2ZpL0vR7sT4uW1yB3nM5cD8eF6gH")
    assert redact("the value k9Xq2ZpL0vR7sT4uW1yB3nM5cD8eF6gH leaked") == f"the value {REDACTED} leaked"


def test_short_values_are_not_registered():
    register_secret("abc")
    assert redact("abc abc") == "abc abc"


def test_harmless_text_is_unchanged():
    text = "seller connected region=EU first_connection=True"
    assert redact(text) == text


def test_powertools_logger_output_is_redacted(capfd):
    logger = observability.get_logger()
    logger.info("exchanging", extra={"url": "https://x/?code=ABCDEFGH1234&state=QWERTYUIOP12"})
    try:
        raise ValueError("boom Atzr|IwEBIExampleRefreshToken0123456789abcdef")
    except ValueError:
        logger.exception("failed")
    err = capfd.readouterr().err
    assert "ABCDEFGH1234" not in err and "QWERTYUIOP12" not in err and "IwEBIExample" not in err
    assert err.count(REDACTED) >= 3


def test_root_filter_redacts_standard_logging_records():
    token = "Atzr|IwEBIExampleToken0123456789"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "refresh %s\nforged", (token,), None)
    observability.RedactingFilter().filter(record)
    assert record.getMessage() == f"refresh {REDACTED}\\nforged"


def test_noisy_loggers_stay_at_warning_even_at_debug(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    for name in observability.NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    observability.pin_noisy_loggers()
    for name in observability.NOISY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING


def test_log_guard_catches_a_leak(log_guard):
    assert log_guard.findings("refresh Atzr|IwEBIExampleRefreshToken0123456789abcdef") == ["LWA refresh token"]
    log_guard.watch("literal-fixture-secret-value")
    assert log_guard.findings("x literal-fixture-secret-value y") == ["a registered secret value"]
    assert log_guard.findings("nothing to see") == []
