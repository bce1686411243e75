"""Fixtures shared by every test, and the log guard that runs around each one.

The log guard captures everything the product writes (stdout/stderr at the file-descriptor level and
every logging record) and fails the test if a secret appears: anything shaped like an LWA token,
client secret, presigned-URL signature or OAuth parameter with a value, and every literal secret the
product or the fixtures registered (states, codes, binding cookies, refresh tokens).
"""

from __future__ import annotations

import os
import re

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
})
os.environ.pop("AWS_ENDPOINT_URL", None)

from seller_insights import redaction  # noqa: E402 - after the environment above
from seller_insights.observability import pin_noisy_loggers  # noqa: E402

DETECTORS = {
    "LWA refresh token": re.compile(r"Atzr(\||%7C)[A-Za-z0-9\-_=+/.%]{20,}"),
    "LWA access token": re.compile(r"Atza(\||%7C)[A-Za-z0-9\-_=+/.%]{20,}"),
    "LWA grantless token": re.compile(r"Atc(\||%7C)[A-Za-z0-9\-_=+/.%]{20,}"),
    "LWA client secret": re.compile(r"amzn1\.oa2-cs\.v1\.[0-9A-Za-z]{20,}"),
    "OAuth parameter": re.compile(r"(spapi_oauth_code|amazon_state|[?&]code|[?&]state)=(?!\[REDACTED\])[^&\s\"']{4,}"),
    "presigned URL": re.compile(r"X-Amz-(Signature|Credential|Security-Token)=(?!\[REDACTED\])"),
    "KMS plaintext": re.compile(r"\"Plaintext\""),
}


class LogGuard:
    def __init__(self) -> None:
        self.literals: set[str] = set()

    def watch(self, *values: str | None) -> None:
        """Fixture secrets (tokens the emulator issued, cookies...) that must never be printed."""
        self.literals.update(v for v in values if v and len(v) >= 8)

    def findings(self, text: str) -> list[str]:
        found = [name for name, pattern in DETECTORS.items() if pattern.search(text)]
        literals = self.literals | set(redaction._registry.snapshot())
        found += ["a registered secret value" for value in literals if value in text][:1]
        return found


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
