"""Detectors for secret material in logs (tokens, secrets, signatures, OAuth values), used by the log guard fixture."""

from __future__ import annotations

import re

from seller_insights import redaction

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
