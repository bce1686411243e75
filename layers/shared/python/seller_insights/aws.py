"""boto3 clients and resources, built on first use and cached per process.

Nothing is built at import time, so tests can start moto first and the local stack can point every
client at the AWS emulator through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode: backoff with jitter on throttling and transient errors, bounded attempts.
_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)


@cache
def table(name: str) -> Any:
    return boto3.session.Session().resource("dynamodb", config=_CONFIG).Table(name)


def reset() -> None:
    """Forget cached clients (tests that restart the AWS emulator)."""
    client.cache_clear()
    table.cache_clear()
