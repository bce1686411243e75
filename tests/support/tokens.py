"""Product objects wired to the test environment (moto in-process, the Amazon emulator)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import boto3
import requests

from seller_insights.credentials import SecretsManagerCredentials
from seller_insights.lwa import LwaClient, RetryPolicy
from seller_insights.repositories import ConnectionsRepository, access_token_key, connection_key
from seller_insights.tokens import AccessTokenCache, AccessTokenProvider, TokenPolicy
from seller_insights.vault import Purpose, SecretContext, Vault
from tests.support.resources import Resources


def table(resources: Resources, purpose: str = "connections") -> Any:
    """The moto table that plays `purpose` (docs/internal-contracts.md)."""
    return boto3.resource("dynamodb").Table(resources.tables[purpose])


def open_refresh_token(resources: Resources, seller: str, region: str = "NA") -> str:
    """The refresh token a connection holds, opened as the token refresher would."""
    sealed = ConnectionsRepository(table(resources)).sealed_refresh_token(seller, region)
    assert sealed is not None, f"no refresh token stored for {seller} in {region}"
    return Vault(boto3.client("kms"), resources.key_arn).open(sealed, SecretContext(Purpose.REFRESH_TOKEN, seller,
                                                                                   region))


def yield_cpu(_seconds: float) -> None:
    """Polling without waiting on the wall clock: give the other threads the CPU."""
    os.sched_yield()


def provider(resources: Resources, emulator_url: str, *, purge_after_days: int = 30,
             sleep: Callable[[float], None] = yield_cpu,
             refresh_blocked: Callable[[], bool] | None = None) -> AccessTokenProvider:
    """A fresh provider, as a new Lambda container would build it (empty memory cache)."""
    connections = table(resources)
    lwa = LwaClient(f"{emulator_url}/_hosts/api.amazon.com/auth/o2/token",
                    SecretsManagerCredentials(resources.secret_arn),
                    policy=RetryPolicy(read_timeout=2.0, deadline=5.0), sleep=lambda _: None)
    return AccessTokenProvider(connections=ConnectionsRepository(connections), cache=AccessTokenCache(connections),
                               vault=Vault(boto3.client("kms"), resources.key_arn), lwa=lwa,
                               purge_after_days=purge_after_days, policy=TokenPolicy(), sleep=sleep,
                               refresh_blocked=refresh_blocked)


def lwa_stats(emulator_url: str) -> dict[str, int]:
    answer: dict[str, int] = requests.get(f"{emulator_url}/_emulator/stats", timeout=5).json()["lwa"]
    return answer


def connection_item(resources: Resources, seller: str, region: str) -> dict[str, object] | None:
    item: dict[str, object] | None = table(resources).get_item(Key=connection_key(seller, region)).get("Item")
    return item


def token_item(resources: Resources, seller: str, region: str) -> dict[str, object] | None:
    item: dict[str, object] | None = table(resources).get_item(Key=access_token_key(seller, region)).get("Item")
    return item
