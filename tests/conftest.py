"""Fixtures shared by every test, and the log guard that runs around each one.

The log guard captures everything the product writes (stdout/stderr at the file-descriptor level and
every logging record) and fails the test if a secret appears: anything shaped like an LWA token,
client secret, presigned-URL signature or OAuth parameter with a value, and every literal secret the
product or the fixtures registered (states, codes, binding cookies, refresh tokens).
"""

from __future__ import annotations

import os

import pytest

# No test may reach real AWS: fake credentials and a fixed region before anything builds a client.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "tests",
    "POWERTOOLS_METRICS_NAMESPACE": "SellerInsights",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    # Every function names it; in-process tests use TEST_SELLER_KEY_KEY below instead of reading it.
    "SELLER_KEY_SECRET_ID": "tests-seller-keys",
})
os.environ.pop("AWS_ENDPOINT_URL", None)

from local.iam import install as install_iam_guard
from local.moto_fixes import make_dynamodb_writes_atomic, make_sqs_follow_the_product_clock
from seller_insights import pseudonyms
from seller_insights.observability import pin_noisy_loggers
from tests.support.local_stack import info, serve  # noqa: F401 - session fixtures for e2e and browser
from tests.support.log_guard import LogGuard

# In-process tests key seller keys with a fixed key (tests/unit/test_pseudonyms.py reads the secret itself).
TEST_SELLER_KEY_KEY = b"seller-insights-tests-seller-key-0123456789"
pseudonyms.use_key(TEST_SELLER_KEY_KEY)

# DynamoDB's conditional writes are atomic; moto's are not without this (local/moto_fixes.py).
make_dynamodb_writes_atomic()
make_sqs_follow_the_product_clock()
# Handlers invoked through tests.support.iam.acting_as run as their role of the synthesized template.
install_iam_guard()


@pytest.fixture(autouse=True)
def log_guard(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    guard = LogGuard()
    caplog.set_level("DEBUG")
    # As in every function: HTTP client libraries never log below WARNING (they print full URLs).
    pin_noisy_loggers()
    yield guard
    out, err = capfd.readouterr()
    phases = caplog.get_records("setup") + caplog.get_records("call")
    records = "\n".join(caplog.handler.format(r) for r in phases)
    findings = guard.findings("\n".join((out, err, records)))
    # Give the output back to pytest so failures still show it.
    print(out, end="")
    if findings:
        pytest.fail(f"log guard: secret material reached the logs ({', '.join(sorted(set(findings)))})")
