"""Revocation, the 403 rule, LWA faults on refresh, the refresh fan-out (finder, token_refresh queue,
renewals) and the re-authorization digest, each with its "nothing lost" oracle."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
import requests
from aws_lambda_powertools.utilities.parameters.base import clear_caches

from seller_insights.containers import forget_all
from seller_insights.errors import AuthorizationRevoked, ConnectionNotActive, LwaUnavailable
from seller_insights.report_destinations import DestinationCache
from seller_insights.spapi import SpApiClient
from tests.support.api import ConsentClient, FakeContext
from tests.support.flows import (
    appstore_login_query,
    callback_query,
    confirm_consents,
    connect_and_confirm,
    refresh_tokens,
)
from tests.support.iam import acting_as
from tests.support.tokens import connection_item, lwa_stats, provider, token_item

SELLER = "A1LIFECYCLE0001"
OTHER = "A2LIFECYCLE0002"
EUROPEAN = "A3LIFECYCLE0003"


@pytest.fixture
def connected(token_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    return token_env


@pytest.fixture
def refresh_calls(connected, emulator):
    """LWA refresh calls since the connection was made (confirming the consent took one)."""
    baseline = lwa_stats(emulator.base_url)["refresh_token"]
    return lambda: lwa_stats(emulator.base_url)["refresh_token"] - baseline


def revoke(emulator, seller=SELLER, region="NA"):
    requests.post(f"{emulator.base_url}/_emulator/revoke",
                  json={"selling_partner_id": seller, "region": region}, timeout=5).raise_for_status()


def fault(emulator, status, count, **extra):
    requests.post(f"{emulator.base_url}/_emulator/faults",
                  json={"operation": "lwa_token", "status": status, "count": count, **extra},
                  timeout=5).raise_for_status()


def emulator_stats(emulator):
    return requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()


def every_item(resources):
    dynamodb = boto3.resource("dynamodb")
    return [item for name in resources.tables.values() for item in dynamodb.Table(name).scan()["Items"]]


def refresher(task):
    from token_refresher.handler import lambda_handler

    with acting_as("token_refresher"):
        return lambda_handler({"task": task}, FakeContext(function_name="token_refresher"))


# --- revocation -----------------------------------------------------------------------------------

def test_invalid_grant_revokes_once_and_deletes_every_token(connected, emulator, product_clock):
    tokens = provider(connected, emulator.base_url)
    tokens.get(SELLER, "NA")
    revoke(emulator)
    product_clock.advance(3600)
    before = lwa_stats(emulator.base_url)["refresh_token"]
    with pytest.raises(AuthorizationRevoked):
        provider(connected, emulator.base_url).get(SELLER, "NA")
    assert lwa_stats(emulator.base_url)["refresh_token"] == before + 1  # no retry storm
    item = connection_item(connected, SELLER, "NA")
    assert item["status"] == "REVOKED"
    assert item["purge_after"] == "2026-12-29T13:00:00Z"  # now + 30 days
    for gone in ("refresh_token", "refresh_shard", "refresh_due_at", "reauth_shard"):
        assert gone not in item
    assert token_item(connected, SELLER, "NA") is None
    assert not any(i["sk"] == "PLAN#NA" for i in every_item(connected) if "sk" in i)  # no more report planning
    assert not any("Atz" in repr(i) for i in every_item(connected))
    # Afterwards: no LWA call at all for this connection.
    with pytest.raises(ConnectionNotActive):
        provider(connected, emulator.base_url).get(SELLER, "NA")
    assert lwa_stats(emulator.base_url)["refresh_token"] == before + 1


def test_reauthorization_before_purge_makes_it_active_again(connected, emulator, product_clock):
    revoke(emulator)
    with pytest.raises(AuthorizationRevoked):
        provider(connected, emulator.base_url).get(SELLER, "NA")
    product_clock.advance(timedelta(days=3).total_seconds())
    client = ConsentClient()
    hop = client.get(f"/login?{appstore_login_query(emulator.base_url, SELLER, 'NA')}")
    amazon = requests.get(hop.location, allow_redirects=False, timeout=5).headers["Location"]
    assert client.get(f"/callback?{callback_query(amazon)}").status == 303
    # The consent alone changes nothing: the connection stays REVOKED until Amazon confirms the seller.
    assert connection_item(connected, SELLER, "NA")["status"] == "REVOKED"
    assert confirm_consents()["verified"] == 1
    item = connection_item(connected, SELLER, "NA")
    assert item["status"] == "ACTIVE" and "purge_after" not in item and "revoked_at" not in item
    assert provider(connected, emulator.base_url).get(SELLER, "NA").value.startswith("Atza|")


def test_authorization_lapses_after_365_days(connected, emulator, product_clock):
    product_clock.advance(timedelta(days=366).total_seconds())
    emulator.advance_clock(timedelta(days=366).total_seconds())
    with pytest.raises(AuthorizationRevoked):
        provider(connected, emulator.base_url).get(SELLER, "NA")
    assert connection_item(connected, SELLER, "NA")["status"] == "REVOKED"


# --- the 403 rule ---------------------------------------------------------------------------------

def participations_calls(emulator) -> int:
    return int(requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()["spapi"][
        "getMarketplaceParticipations"])


def test_a_403_for_an_expired_token_refreshes_once_and_retries_once(connected, emulator, refresh_calls):
    tokens = provider(connected, emulator.base_url)
    client = SpApiClient(tokens, endpoint_override=emulator.base_url)
    at_consent = participations_calls(emulator)  # the consent's own check of the seller's marketplaces
    assert client.get_marketplace_participations(SELLER, "NA")["payload"]
    emulator.advance_clock(3601)  # Amazon's clock says the cached token is dead; ours does not yet
    assert client.get_marketplace_participations(SELLER, "NA")["payload"]
    assert refresh_calls() == 2
    stats = requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()
    assert stats["spapi"]["getMarketplaceParticipations"] - at_consent == 3
    assert stats["spapi_denied"]["getMarketplaceParticipations"] == 1


def test_a_403_after_revocation_ends_in_the_revocation_path(connected, emulator, refresh_calls):
    client = SpApiClient(provider(connected, emulator.base_url), endpoint_override=emulator.base_url)
    at_consent = participations_calls(emulator)  # the consent's own check of the seller's marketplaces
    client.get_marketplace_participations(SELLER, "NA")
    revoke(emulator)
    with pytest.raises(AuthorizationRevoked):
        client.get_marketplace_participations(SELLER, "NA")
    assert connection_item(connected, SELLER, "NA")["status"] == "REVOKED"
    stats = requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()
    assert stats["spapi"]["getMarketplaceParticipations"] - at_consent == 2  # no retry once the refresh failed
    assert refresh_calls() == 2


# --- LWA faults on refresh ------------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 503, "timeout"])
def test_lwa_outage_on_refresh_keeps_everything(connected, emulator, status):
    fault(emulator, status, 10, **({"hold_seconds": 3.0} if status == "timeout" else {}))
    due_before = connection_item(connected, SELLER, "NA")["refresh_due_at"]
    with pytest.raises(LwaUnavailable):
        provider(connected, emulator.base_url).get(SELLER, "NA")
    item = connection_item(connected, SELLER, "NA")
    assert item["status"] == "ACTIVE" and "refresh_token" in item
    assert item["refresh_due_at"] == due_before  # still due: the next sweep tries again
    leftover = token_item(connected, SELLER, "NA")
    assert leftover is None or ("lease_owner" not in leftover and "token" not in leftover)


def test_transient_lwa_errors_are_retried_within_the_call(connected, emulator, refresh_calls):
    fault(emulator, 503, 2)
    assert provider(connected, emulator.base_url).get(SELLER, "NA").value.startswith("Atza|")
    assert refresh_calls() == 3


# --- the scheduled refresh: finder, token_refresh queue, renewals ----------------------------------

def test_refresh_fan_out_renews_due_connections_and_detects_revocations(connected, emulator, product_clock):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, OTHER, "DE").status == 303
    first = refresh_tokens()
    # One message of two work items; the limit is the local bucket's 100/s x 300 s + 200.
    assert (first["found"], first["messages"], first["limit"]) == (2, 1, 30_200)
    assert {k: first[k] for k in ("refreshed", "revoked", "skipped", "not_due", "failed", "deferred")} == {
        "refreshed": 2, "revoked": 0, "skipped": 0, "not_due": 0, "failed": 0, "deferred": 0}
    assert first["stopped"] == []
    assert refresh_tokens()["found"] == 0  # nothing due until five minutes before expiry
    revoke(emulator, OTHER, "EU")
    product_clock.advance(3600 - 300)
    second = refresh_tokens()
    assert (second["found"], second["refreshed"], second["revoked"]) == (2, 1, 1)
    assert connection_item(connected, OTHER, "EU")["status"] == "REVOKED"
    assert refresh_tokens()["found"] == 0  # a revoked connection leaves the index


def test_the_sweep_keeps_a_report_destination_in_each_region_with_a_due_connection(connected, emulator,
                                                                                  monkeypatch, product_clock, capfd):
    """The report_notifications queue's destination, created grantless (the client secret is this duty's),
    once per region with a connection due for refresh; none where no seller is; cached for the report fetcher."""
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:report-notifications"
    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", queue_arn)
    forget_all()
    for seller, marketplace in ((OTHER, "US"), (EUROPEAN, "DE")):
        assert connect_and_confirm(ConsentClient(), emulator.base_url, seller, marketplace).status == 303

    first = refresh_tokens()

    assert (first["refreshed"], first["failed"]) == (3, 0)
    amazon = emulator_stats(emulator)
    assert amazon["destinations_by_region"] == {"NA": 1, "EU": 1, "FE": 0}
    assert (amazon["spapi"]["getDestinations"], amazon["spapi"]["createDestination"]) == (2, 2)  # once a region
    assert amazon["lwa"]["client_credentials"] == 1  # one grantless token for both hosts
    idempotency = boto3.resource("dynamodb").Table(connected.tables["idempotency"])
    for region in ("NA", "EU"):
        item = idempotency.get_item(Key={"id": f"destination#report_notifications#{region}"})["Item"]
        assert (item["region"], item["queue_arn"]) == (region, queue_arn) and item["destination_id"]
    assert "Item" not in idempotency.get_item(Key={"id": "destination#report_notifications#FE"})
    out, err = capfd.readouterr()
    assert '"ReportDestinationCreated":[1.0,1.0]' in out and "ReportDestinationFailed" not in out
    assert "Atc|" not in out + err and "Atza|" not in out + err

    product_clock.advance(3600 - 300)  # every connection due again: the destinations come from the cache
    assert refresh_tokens()["refreshed"] == 3
    assert emulator_stats(emulator)["spapi"] == amazon["spapi"]


class _AnotherRunMeanwhile:
    """The refresher's grantless SP-API client, with another run creating the queue's destination right
    after this run's getDestinations found none (so this run's createDestination meets a 409)."""

    def __init__(self, api, queue_arn):
        self._api = api
        self._queue_arn = queue_arn
        self.created_elsewhere = None

    def get_destinations(self, region):
        seen = self._api.get_destinations(region)
        if self.created_elsewhere is None:
            body = {"name": "another-run", "resourceSpecification": {"sqs": {"arn": self._queue_arn}}}
            self.created_elsewhere = str(self._api.create_destination(region, body)["destinationId"])
        return seen

    def create_destination(self, region, body):
        return self._api.create_destination(region, body)


def test_a_destination_created_meanwhile_by_another_run_is_found_not_duplicated(connected, emulator, monkeypatch,
                                                                                capfd, log_guard):
    """createDestination answers 409 when another run created the queue's destination after this run
    looked: the keeper looks again and caches that one; Amazon holds one destination, the refresh stands."""
    from token_refresher import handler
    from token_refresher.destinations import NOTIFICATIONS_SCOPE, DestinationKeeper

    queue_arn = "arn:aws:sqs:us-east-1:123456789012:report-notifications"
    monkeypatch.setenv("REPORT_NOTIFICATIONS_QUEUE_ARN", queue_arn)
    forget_all()
    racing = _AnotherRunMeanwhile(handler.grantless_api(NOTIFICATIONS_SCOPE), queue_arn)
    cache = DestinationCache(boto3.resource("dynamodb").Table(connected.tables["idempotency"]), queue_arn)
    keeper = DestinationKeeper(queue_arn=queue_arn, application_api=racing, cache=cache)
    monkeypatch.setattr(handler, "destinations", lambda: keeper)

    swept = refresh_tokens()

    assert (swept["refreshed"], swept["failed"]) == (1, 0)
    amazon = emulator_stats(emulator)
    assert amazon["destinations_by_region"] == {"NA": 1, "EU": 0, "FE": 0}  # found again, not duplicated
    assert (amazon["spapi"]["getDestinations"], amazon["spapi"]["createDestination"]) == (2, 2)
    assert racing.created_elsewhere is not None
    item = boto3.resource("dynamodb").Table(connected.tables["idempotency"]).get_item(
        Key={"id": "destination#report_notifications#NA"})["Item"]
    assert item["destination_id"] == racing.created_elsewhere
    out, err = capfd.readouterr()
    assert '"ReportDestinationCreated":[1.0]' in out and "ReportDestinationFailed" not in out
    assert log_guard.findings(out + err) == []


def test_invalid_client_touches_no_connection(connected, emulator, capfd):
    boto3.client("secretsmanager").put_secret_value(SecretId=connected.secret_arn, SecretString=json.dumps({
        "client_id": emulator.client_id, "client_secret": "amzn1.oa2-cs.v1." + "0" * 64,
        "application_id": emulator.application_id}))
    clear_caches()  # as a container would after its 5-minute max age
    report = refresh_tokens()
    assert report["stopped"] == ["invalid_client"] and report["refreshed"] == 0
    item = connection_item(connected, SELLER, "NA")
    assert item["status"] == "ACTIVE" and "refresh_token" in item
    assert '"LwaInvalidClient":[1.0]' in capfd.readouterr().out  # the alarm's metric


def test_previous_secret_works_during_the_rotation_overlap(connected, emulator, product_clock):
    good = emulator.client_secret
    def secret(expires):
        return json.dumps({"client_id": emulator.client_id, "application_id": emulator.application_id,
                           "client_secret": "amzn1.oa2-cs.v1." + "1" * 64,
                           "previous_client_secret": good, "previous_client_secret_expires_at": expires})

    boto3.client("secretsmanager").put_secret_value(SecretId=connected.secret_arn,
                                                    SecretString=secret("2026-12-06T12:00:00Z"))
    clear_caches()
    assert provider(connected, emulator.base_url).get(SELLER, "NA").value.startswith("Atza|")
    boto3.client("secretsmanager").put_secret_value(SecretId=connected.secret_arn,
                                                    SecretString=secret("2026-11-29T11:00:00Z"))
    clear_caches()
    from seller_insights.errors import LwaInvalidClient

    product_clock.advance(3600)
    with pytest.raises(LwaInvalidClient):
        provider(connected, emulator.base_url).get(SELLER, "NA")


# --- re-authorization digest ----------------------------------------------------------------------

def test_reauthorization_due_within_30_days_is_one_digest(connected, emulator, product_clock):
    events = boto3.client("events")
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="notices")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="notices", EventPattern=json.dumps({"source": ["seller-insights.tokens"],
                                                               "detail-type": ["ReauthorizationDigest"]}))
    events.put_targets(Rule="notices", Targets=[{"Id": "q", "Arn": arn}])
    assert connect_and_confirm(ConsentClient(), emulator.base_url, OTHER, "DE").status == 303

    assert refresher("check-reauthorization") == {"due": 0, "published": 0, "key": None}
    product_clock.advance(timedelta(days=340).total_seconds())
    digest = refresher("check-reauthorization")

    assert digest == {"due": 2, "published": 1, "key": "notices/reauthorization/2027-11-04.jsonl"}
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert body["detail-type"] == "ReauthorizationDigest"
    assert body["detail"] == {"date": "2027-11-04", "notice_days": 30, "due": 2, "by_days_left": {"15-30": 2},
                              "by_region": {"EU": 1, "NA": 1}, "bucket": "test-data",
                              "key": "notices/reauthorization/2027-11-04.jsonl"}
    stored = boto3.client("s3").get_object(Bucket="test-data", Key=digest["key"])
    lines = [json.loads(line) for line in stored["Body"].read().decode().splitlines()]
    assert sorted(lines, key=lambda line: line["seller_id"]) == [
        {"seller_id": SELLER, "region": "NA", "reauthorization_due_at": "2027-11-29T12:00:00Z", "days_left": 25},
        {"seller_id": OTHER, "region": "EU", "reauthorization_due_at": "2027-11-29T12:00:00Z", "days_left": 25},
    ]


def test_unknown_events_are_refused(token_env):
    with pytest.raises(ValueError, match="unknown event"):
        refresher("something-else")
