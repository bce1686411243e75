"""Faults during the consent exchange, each with its "nothing lost" oracle:
no half-stored connection, no token in logs, the seller can start again."""

from __future__ import annotations

import json

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from seller_insights.credentials import SecretsManagerCredentials
from seller_insights.lwa import LwaClient, RetryPolicy
from tests.support.api import ConsentClient
from tests.support.flows import callback_query, confirm_consents, emulator_consent

SELLER = "A1B2C3D4E5F6G7"


@pytest.fixture
def naps(consent_env, emulator):
    """Swap in an LWA client with short timeouts and a recorded (not slept) backoff."""
    from oauth_callback import handler

    recorded: list[float] = []
    service = handler.service()
    service._lwa = LwaClient(f"{emulator.base_url}/_hosts/api.amazon.com/auth/o2/token",
                             SecretsManagerCredentials(consent_env.secret_arn),
                             policy=RetryPolicy(max_attempts=3, read_timeout=0.3, deadline=10.0),
                             sleep=recorded.append, jitter=lambda: 1.0)
    return recorded


def fault(emulator, status, count, **extra):
    requests.post(f"{emulator.base_url}/_emulator/faults",
                  json={"operation": "lwa_token", "status": status, "count": count, **extra},
                  timeout=5).raise_for_status()


def token_calls(emulator):
    return requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()["lwa"].get("authorization_code", 0)


def stored(resources):
    """Every item of the connections table: the connection, its planning cursor, any token."""
    return boto3.resource("dynamodb").Table(resources.tables["connections"]).scan()["Items"]


def callback(emulator):
    client = ConsentClient()
    start = client.get("/connect")
    return client, f"/callback?{callback_query(emulator_consent(emulator.base_url, start.location, SELLER))}"


@pytest.mark.parametrize("status", [500, 503])
def test_transient_lwa_errors_are_retried_then_succeed(consent_env, emulator, naps, status):
    fault(emulator, status, 2)
    client, path = callback(emulator)
    assert client.get(path).status == 303
    assert token_calls(emulator) == 3
    assert naps == [0.25, 0.5]  # exponential backoff (jitter pinned to 1 in this test)
    assert [(item["pk"], item["region"]) for item in stored(consent_env)] == [(f"CANDIDATE#{SELLER}", "NA")]
    assert confirm_consents()["verified"] == 1
    # The connection, its planning cursor, the seller's getMarketplaceParticipations quota bucket, and the
    # app-wide LWA bucket the verification took its refresh from.
    assert sorted((item["pk"].split("#")[0], item["sk"]) for item in stored(consent_env)) == [
        ("QUOTA", "BUCKET"), ("QUOTA", "BUCKET"), ("SELLER", "CONN#NA"), ("SELLER", "PLAN#NA")]
    assert any(item["pk"] == "QUOTA#app#lwa_refresh" for item in stored(consent_env))


@pytest.mark.parametrize("status", [500, 503, "timeout"])
def test_lwa_outage_gives_502_with_retry_and_stores_nothing(consent_env, emulator, naps, status):
    fault(emulator, status, 5, **({"hold_seconds": 1.0} if status == "timeout" else {}))
    client, path = callback(emulator)
    r = client.get(path)
    assert r.status == 502
    assert 'href="connect"' in r.body
    assert len(naps) == 2  # three attempts in all, bounded
    assert stored(consent_env) == []


def test_invalid_client_is_not_retried_and_stores_nothing(consent_env, emulator, naps):
    secrets = boto3.client("secretsmanager")
    client, path = callback(emulator)
    secrets.put_secret_value(SecretId=consent_env.secret_arn, SecretString=json.dumps({
        "client_id": emulator.client_id, "client_secret": "amzn1.oa2-cs.v1." + "0" * 64,
        "application_id": emulator.application_id}))
    from aws_lambda_powertools.utilities.parameters.base import clear_caches
    clear_caches()
    r = client.get(path)
    assert r.status == 502 and "credentials" in r.body
    assert naps == []
    assert stored(consent_env) == []


def test_kms_denial_fails_closed(consent_env, emulator, monkeypatch):
    from oauth_callback import handler

    vault = handler.service()._vault

    def denied(*_args, **_kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "GenerateDataKey")

    # Only this patch is undone below: the function's environment (consent_env) stays, as in Lambda.
    with monkeypatch.context() as patched:
        patched.setattr(vault._kms, "generate_data_key", denied)
        client, path = callback(emulator)
        r = client.get(path)
    assert r.status == 503
    assert stored(consent_env) == []
    # The seller can start again once KMS is back.
    client2, path2 = callback(emulator)
    assert client2.get(path2).status == 303


def test_missing_lwa_secret_fails_closed(consent_env, emulator):
    boto3.client("secretsmanager").delete_secret(SecretId=consent_env.secret_arn, ForceDeleteWithoutRecovery=True)
    r = ConsentClient().get("/connect")
    assert r.status == 503
    assert "Location" not in r.headers
