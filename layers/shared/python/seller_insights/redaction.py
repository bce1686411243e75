"""Scrubs secrets out of any text bound for a log, trace or error message.

Two layers: patterns for everything with a recognisable shape (LWA tokens, client secrets, OAuth
parameters in URLs or JSON, presigned-URL signatures, AWS keys), and a registry of literal values
that have no shape of their own (our state values, authorization codes) which the code registers
the moment it sees them.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

REDACTED = "[REDACTED]"

_SENSITIVE_PARAMS = (
    "spapi_oauth_code|code|state|amazon_state|client_secret|refresh_token|access_token|"
    "newClientSecret|new_client_secret|client_assertion|password|X-Amz-Signature|"
    "X-Amz-Credential|X-Amz-Security-Token|Signature|restrictedDataToken"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # LWA refresh (Atzr|), access (Atza|) and grantless (Atc|) tokens, raw or URL-encoded.
    (re.compile(r"Atz[ar](?:\||%7C)[^\s\"'&,;<>]+", re.IGNORECASE), REDACTED),
    (re.compile(r"Atc(?:\||%7C)[^\s\"'&,;<>]+", re.IGNORECASE), REDACTED),
    (re.compile(r"amzn1\.oa2-cs\.v1\.[0-9A-Za-z]+"), REDACTED),
    # key=value in query strings and form bodies
    (re.compile(rf"(?i)\b({_SENSITIVE_PARAMS})=[^&\s\"'<>]*"), rf"\1={REDACTED}"),
    # "key": "value" in JSON
    (re.compile(rf"(?i)\"({_SENSITIVE_PARAMS})\"\s*:\s*\"[^\"]*\""), rf'"\1": "{REDACTED}"'),
    # 'key': 'value' in Python reprs
    (re.compile(rf"(?i)'({_SENSITIVE_PARAMS})'\s*:\s*'[^']*'"), rf"'\1': '{REDACTED}'"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"(?i)(authorization|x-amz-access-token|cookie|set-cookie)(\"?\s*[:=]\s*\"?)[^\"\n]+"),
     rf"\1\2{REDACTED}"),
)

_MIN_LITERAL = 8


class _LiteralRegistry:
    """Bounded, thread-safe set of literal secret values seen by this process."""

    def __init__(self, capacity: int = 2048) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) < _MIN_LITERAL:
            return
        with self._lock:
            self._values[value] = None
            self._values.move_to_end(value)
            while len(self._values) > self._capacity:
                self._values.popitem(last=False)

    def snapshot(self) -> list[str]:
        with self._lock:
            # Longest first, so a value that contains another is replaced whole.
            return sorted(self._values, key=len, reverse=True)


_registry = _LiteralRegistry()


def register_secret(*values: str | None) -> None:
    """Never let these exact values reach a log line."""
    for value in values:
        if value:
            _registry.add(value)


def redact(text: str) -> str:
    for literal in _registry.snapshot():
        if literal in text:
            text = text.replace(literal, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
