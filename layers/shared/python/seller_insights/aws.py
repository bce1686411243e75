"""boto3 clients and resources, built on first use and cached per process.

Nothing is built at import time, so tests can start moto first and the local stack can point every
client at the AWS emulator through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from seller_insights.containers import per_container

# Standard retry mode: backoff with jitter on throttling and transient errors, bounded attempts.
_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)


@per_container
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)


@per_container
def table(name: str) -> Any:
    return boto3.session.Session().resource("dynamodb", config=_CONFIG).Table(name)
