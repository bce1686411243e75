"""Fixtures of the in-process tests: real handlers against moto (in-process) and the Amazon emulator over
HTTP on loopback. tests/integration and tests/local take them through their conftest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.base import clear_caches
from moto import mock_aws
from moto.server import ThreadedMotoServer

from local.amazon import AmazonEmulator
from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.containers import forget_all
from tests.support.resources import Resources, create_resources

REDIRECT_URI = "https://seller-insights.example.com/callback"
TOKEN_DATA_BUCKET = "test-data"


@pytest.fixture(scope="session")
def emulator() -> Iterator[AmazonEmulator]:
    with AmazonEmulator(redirect_uris=[REDIRECT_URI], login_uri="https://seller-insights.example.com/login",
                        draft=True) as emu:
        yield emu


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode, for the emulator's own SQS deliveries from its server thread."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def sqs(moto_endpoint: str) -> Any:
    return boto3.session.Session().client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)


@pytest.fixture
def product_clock() -> Iterator[FixedClock]:
    fixed = FixedClock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    clock.set_clock(fixed)
    yield fixed
    clock.set_clock(clock.SystemClock())


@pytest.fixture
def consent_env(monkeypatch: pytest.MonkeyPatch, emulator: AmazonEmulator,
                product_clock: FixedClock, log_guard: Any) -> Iterator[Resources]:
    """moto with the contract's resources, the consent function's environment, a fresh emulator."""
    emulator.reset()
    emulator.configure(draft=True, redirect_uris=[REDIRECT_URI])
    log_guard.watch(emulator.client_secret)
    with mock_aws():
        resources = create_resources(boto3.session.Session(), emulator.credentials())
        sqs_client = boto3.client("sqs")
        # The token refresher's work queue and the data bucket its digest goes to (verify-consents runs
        # in these tests too, and its settings name them).
        refresh_work = sqs_client.create_queue(QueueName="test-token-refresh")["QueueUrl"]
        boto3.client("s3").create_bucket(Bucket=TOKEN_DATA_BUCKET)
        env = {
            "STAGE": "local",
            "AMAZON_ENDPOINT_OVERRIDE": emulator.base_url,
            "CONNECTIONS_TABLE": resources.tables["connections"],
            "OAUTH_STATE_TABLE": resources.tables["oauth_state"],
            "IDEMPOTENCY_TABLE": resources.tables["idempotency"],
            "AUDIT_TABLE": resources.tables["audit"],
            "TOKEN_KEY_ID": resources.key_arn,
            "LWA_CLIENT_SECRET_ID": resources.secret_arn,
            "APP_DRAFT": "true",
            "REDIRECT_URI": REDIRECT_URI,
            "DEFAULT_MARKETPLACE": "US",
            "STATE_TTL_SECONDS": "600",
            # The stage value: the verify-consents task (token refresher) runs in these tests too.
            "PURGE_AFTER_DAYS": "27",
            # The sweeps' work queues (tests.support.sweeps drains them after firing their schedules).
            "REPORT_PLANS_QUEUE_URL": sqs_client.create_queue(QueueName="report-plans")["QueueUrl"],
            "RETENTION_PURGES_QUEUE_URL": sqs_client.create_queue(QueueName="retention-purges")["QueueUrl"],
            "REFRESH_WORK_QUEUE_URL": refresh_work,
            "DATA_BUCKET": TOKEN_DATA_BUCKET,
            # The local stage's app-wide LWA bucket (cdk.json): tests never wait on it unless they lower it.
            "LWA_REFRESH_RATE": "100",
            "LWA_REFRESH_BURST": "200",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        _reset_caches()
        yield resources
        _reset_caches()


@pytest.fixture
def token_env(consent_env: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    """consent_env plus the token refresher's environment (the same tables, key and secret)."""
    for key, value in {"PURGE_AFTER_DAYS": "30", "REAUTH_NOTICE_DAYS": "30", "ROTATE_WHEN_DAYS_LEFT": "7",
                       "EVENT_BUS_NAME": "default"}.items():
        monkeypatch.setenv(key, value)
    _reset_caches()
    return consent_env


def _reset_caches() -> None:
    forget_all()
    forget_all()
    clear_caches()
