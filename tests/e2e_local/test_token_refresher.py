"""The token lifecycle through `python -m local serve` (docs/internal-contracts.md, "Token lifecycle"):
the scheduled refresh (finder, token_refresh queue, renewals) and revocation, the re-authorization digest,
the LWA client secret rotation.

Driven over HTTP only (our API, the Amazon emulator's control calls); boto3 against the printed AWS
endpoint only to verify what is stored. These tests move the virtual clock by months and rotate the
application's client secret, so they run against a serve process of their own, not the session one.
Secret values (tokens, client secrets) are compared, never shown: no assertion puts one in its message.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import timedelta
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary

from tests.support.e2e import (
    advance,
    authorize_from_appstore,
    connect,
    drain,
    fire,
    new_seller,
    post,
    refresh_tokens,
    stats,
    stored,
    virtual_now,
    when,
)
from tests.support.local_stack import every_item, stack_of_its_own, stack_table

pytestmark = pytest.mark.slow
PURPOSE_TAG = "seller-insights:purpose"
PLAINTEXT_MARKERS = ("Atzr|", "Atza|")


# A stack of this module's own: it moves the clock.
info = stack_of_its_own("token-lifecycle")


def holds_plaintext(value: Any) -> bool:
    if isinstance(value, dict):
        return any(holds_plaintext(v) for v in value.values())
    if isinstance(value, list | set | tuple):
        return any(holds_plaintext(v) for v in value)
    if isinstance(value, str):
        return any(marker in value for marker in PLAINTEXT_MARKERS)
    if isinstance(value, Binary | bytes | bytearray):
        raw = bytes(value.value if isinstance(value, Binary) else value)
        return any(marker.encode() in raw for marker in PLAINTEXT_MARKERS)
    return False


def lwa_client_secret(info: dict[str, Any]) -> dict[str, Any]:
    client = boto3.client("secretsmanager", endpoint_url=info["aws"], region_name=info["region"])
    found = [
        entry["ARN"]
        for entry in client.list_secrets()["SecretList"]
        if {"Key": PURPOSE_TAG, "Value": "lwa_client"} in entry.get("Tags", [])
    ]
    assert len(found) == 1, f"expected one secret tagged {PURPOSE_TAG}=lwa_client, found {len(found)}"
    value: dict[str, Any] = json.loads(client.get_secret_value(SecretId=found[0])["SecretString"])
    return value


# --- the tests ----------------------------------------------------------------------------------


def test_connections_due_for_reauthorization_are_announced_in_one_digest(info: dict[str, Any]) -> None:
    seller = new_seller()
    connect(info, seller)
    events = boto3.client("events", endpoint_url=info["aws"], region_name=info["region"])
    sqs = boto3.client("sqs", endpoint_url=info["aws"], region_name=info["region"])
    # A listener of our own on the product's events (the deployed rule targets the operators' topic).
    queue_url = sqs.create_queue(QueueName=f"e2e-reauthorization-{secrets.token_hex(4)}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"e2e-reauthorization-{secrets.token_hex(4)}"
    events.put_rule(
        Name=rule,
        EventPattern=json.dumps({"source": ["seller-insights.tokens"], "detail-type": ["ReauthorizationDigest"]}),
    )
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])

    not_yet = fire(info, "check-reauthorization")
    advance(info, 340 * 86_400)
    result = fire(info, "check-reauthorization")

    assert not_yet["due"] == 0
    assert result["due"] >= 1 and result["published"] == 1, result
    announced: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not announced:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        announced += [json.loads(m["Body"]) for m in messages.get("Messages", [])]
    assert len(announced) == 1, f"expected one ReauthorizationDigest event, got {len(announced)}"
    event = announced[0]
    assert event["source"] == "seller-insights.tokens" and event["detail-type"] == "ReauthorizationDigest"
    detail = event["detail"]
    assert detail["due"] == result["due"] and detail["key"] == result["key"]
    assert detail["key"].startswith("notices/reauthorization/") and detail["by_region"].get("NA", 0) >= 1
    # The list: one JSON line per connection, in the data bucket under its key (encrypted with the bucket's key).
    s3 = boto3.client("s3", endpoint_url=info["aws"], region_name=info["region"])
    body = s3.get_object(Bucket=detail["bucket"], Key=detail["key"])["Body"].read().decode()
    mine = [line for line in map(json.loads, body.splitlines()) if line["seller_id"] == seller]
    assert len(mine) == 1, "the seller is not in the digest's list"
    assert mine[0]["region"] == "NA" and mine[0]["days_left"] in (24, 25)
    item = stored(info, seller, "CONN#NA")
    assert item is not None and mine[0]["reauthorization_due_at"] == item["reauthorization_due_at"]


def test_a_revoked_authorization_is_detected_cleaned_up_and_can_be_granted_again(info: dict[str, Any]) -> None:
    seller = new_seller()
    connect(info, seller)

    # Due at once after consent: the finder sends it, its renewal fetches the first access token into the
    # shared cache.
    first = refresh_tokens(info)
    assert first["found"] >= 1 and first["lwa_refreshes"] >= 1 and first["failed"] == 0, first
    token = stored(info, seller, "TOKEN#NA")
    assert token is not None and isinstance(token.get("token"), dict) and token["token"], "no cached access token"
    assert not holds_plaintext(token), "the cached access token is stored in plaintext"
    assert int(token["token_expires_at"]) > virtual_now(info).timestamp()

    # The seller removes the app in Seller Central; an hour later the token is due again.
    assert post(f"{info['amazon']}/_emulator/revoke", {"selling_partner_id": seller, "region": "NA"}) == {}
    advance(info, 3600)
    second = refresh_tokens(info)
    now = virtual_now(info)

    assert second["found"] >= 1 and second["failed"] == 0, second
    connection = stored(info, seller, "CONN#NA")
    assert connection is not None
    assert connection["status"] == "REVOKED", connection["status"]
    # purge_after_days: 30 days less 2 of point-in-time recovery and 1 for the daily sweep
    assert abs((when(connection["purge_after"]) - (now + timedelta(days=27))).total_seconds()) < 120
    assert abs((when(connection["revoked_at"]) - now).total_seconds()) < 120
    for gone in ("refresh_token", "refresh_shard", "refresh_due_at", "reauth_shard"):
        assert gone not in connection, f"{gone} left on a REVOKED connection"
    assert stored(info, seller, "TOKEN#NA") is None, "the cached access token survived the revocation"
    for purpose in ("connections", "oauth_state", "idempotency"):
        leaking = [item["pk"] for item in every_item(stack_table(info, purpose).scan) if holds_plaintext(item)]
        assert not leaking, f"plaintext LWA tokens in the {purpose} table ({len(leaking)} items)"
    assert stats(info)["lwa_errors"].get("invalid_grant", 0) >= 1

    # The finder does not come back to a revoked connection.
    errors = stats(info)["lwa_errors"].get("invalid_grant", 0)
    refresh_tokens(info)
    assert stats(info)["lwa_errors"].get("invalid_grant", 0) == errors

    # The seller authorizes again from the Appstore: ACTIVE, purge date gone, refreshed by the next sweep.
    authorize_from_appstore(info, seller, "NA")
    again = stored(info, seller, "CONN#NA")
    assert again is not None and again["status"] == "ACTIVE"
    assert "purge_after" not in again and "revoked_at" not in again
    assert "refresh_token" in again and "refresh_shard" in again and not holds_plaintext(again)
    third = refresh_tokens(info)
    assert third["lwa_refreshes"] >= 1 and third["failed"] == 0, third
    assert stored(info, seller, "TOKEN#NA") is not None


def test_secret_expiry_notices_rotate_the_client_secret_at_most_once_a_minute(info: dict[str, Any]) -> None:
    seller = new_seller()
    connect(info, seller, "DE")
    assert refresh_tokens(info)["failed"] == 0
    before = lwa_client_secret(info)
    rotations_before = stats(info)["spapi"].get("rotateApplicationClientSecret", 0)

    assert post(f"{info['amazon']}/_emulator/notifications/secret-expiry", {"days_left": 5}) == {}
    # The expiry notice makes the refresher rotate; Amazon then sends NEW_SECRET to the same queue.
    delivered = 0
    for _ in range(3):
        drained = drain(info)
        delivered += drained["delivered"].get("notifications", 0)
        assert drained["failed"].get("notifications", 0) == 0, drained
        if delivered >= 2:
            break
    after = lwa_client_secret(info)

    assert delivered == 2
    rotated = after["client_secret"] != before["client_secret"]
    kept = after.get("previous_client_secret") == before["client_secret"]
    assert rotated, "the client secret was not replaced"
    assert kept, "the previous client secret was not kept for the overlap"
    assert (after["client_id"], after["application_id"]) == (before["client_id"], before["application_id"])
    # Amazon keeps the old secret for 7 days, but never past its own expiry (5 days, per the notice).
    overlap = when(after["previous_client_secret_expires_at"]) - virtual_now(info)
    assert timedelta(days=4, hours=23) < overlap <= timedelta(days=5), overlap
    amazon = stats(info)
    assert amazon["spapi"]["rotateApplicationClientSecret"] == rotations_before + 1
    assert amazon["notifications"]["APPLICATION_OAUTH_CLIENT_NEW_SECRET"] == 1

    # A second expiry notice within the minute: rotateApplicationClientSecret allows one call a minute,
    # so the refresher defers it (the message goes back to the queue) and rotates nothing.
    assert post(f"{info['amazon']}/_emulator/notifications/secret-expiry", {"days_left": 5}) == {}
    deferred = drain(info, 5)
    assert deferred["failed"] == {"notifications": 1} and deferred["left"]["notifications"] == 1, deferred
    assert stats(info)["spapi"]["rotateApplicationClientSecret"] == rotations_before + 1
    unchanged = lwa_client_secret(info)["client_secret"] == after["client_secret"]
    assert unchanged, "the deferred notice replaced the client secret"
    assert stats(info)["throttled"] == 0, "the refresher called the rotation within Amazon's minute"

    # Once the queue's visibility timeout has passed the notice comes back; the minute is over and the
    # (new) secret expires in 5 days per that notice, so the refresher rotates again.
    sqs = boto3.client("sqs", endpoint_url=info["aws"], region_name=info["region"])
    visibility = int(
        sqs.get_queue_attributes(
            QueueUrl=info["resources"]["queues"]["notifications"], AttributeNames=["VisibilityTimeout"]
        )["Attributes"]["VisibilityTimeout"]
    )
    advance(info, visibility + 1)
    retried = drain(info)
    assert retried["failed"].get("notifications", 0) == 0 and retried["delivered"]["notifications"] == 2, retried
    final = lwa_client_secret(info)
    assert stats(info)["spapi"]["rotateApplicationClientSecret"] == rotations_before + 2
    second_rotation = final["client_secret"] not in (after["client_secret"], before["client_secret"])
    chained = final["previous_client_secret"] == after["client_secret"]
    assert second_rotation and chained, "the retried notice did not rotate from the first new secret"

    # Refreshes go on with the newest secret.
    token_before = stored(info, seller, "TOKEN#EU")
    advance(info, 3600)
    refreshed = refresh_tokens(info)
    assert refreshed["lwa_refreshes"] >= 1 and refreshed["failed"] == 0, refreshed
    assert "invalid_client" not in stats(info)["lwa_errors"]
    token_after = stored(info, seller, "TOKEN#EU")
    assert token_before is not None and token_after is not None
    assert token_after["token_expires_at"] > token_before["token_expires_at"]
