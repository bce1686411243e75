"""Who a consent belongs to: Amazon says, not the callback's query (issue "Trust", section 1 and 2).

A seller can edit `selling_partner_id` in Amazon's redirect. These tests play that attack and its
relatives through the real handlers (the consent callback and the token refresher's `verify-consents`),
moto and the Amazon emulator, whose Product Fees API names the seller of each access token.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
import requests

from seller_insights import clock
from seller_insights.candidates import CandidateRepository
from seller_insights.data_rights import DataRightsRepository
from seller_insights.pseudonyms import seller_key
from seller_insights.vault import Purpose, SecretContext, Vault
from tests.support.api import ConsentClient
from tests.support.flows import (
    appstore_login_query,
    callback_query,
    confirm_consents,
    connect,
    connect_and_confirm,
    emulator_consent,
)
from tests.support.iam import acting_as
from tests.support.tokens import open_refresh_token, table

VICTIM = "A1VICTIMSELLER01"
ATTACKER = "A2ATTACKERSELL02"


def partition(resources: Any, pk: str) -> list[dict[str, Any]]:
    return table(resources).query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": pk})["Items"]


def conn(resources: Any, seller: str = VICTIM, region: str = "NA") -> dict[str, Any]:
    return table(resources).get_item(Key={"pk": f"SELLER#{seller}", "sk": f"CONN#{region}"})["Item"]


def audit_records(resources: Any) -> list[dict[str, Any]]:
    return table(resources, "audit").scan()["Items"]


def forged_callback(client: ConsentClient, emulator: Any, *, signed_in_as: str, claims: str,
                    marketplace: str = "US") -> Any:
    """The attacker consents with its own account, then edits the seller id in Amazon's redirect."""
    start = client.get(f"/connect?marketplace={marketplace}")
    redirect = emulator_consent(emulator.base_url, start.location, signed_in_as)
    return client.get("/callback?" + callback_query(redirect).replace(signed_in_as, claims))


def fault(emulator: Any, status: int | str, count: int) -> None:
    requests.post(f"{emulator.base_url}/_emulator/faults",
                  json={"operation": "getMyFeesEstimateForASIN", "status": status, "count": count},
                  timeout=5).raise_for_status()


def revoke(emulator: Any, seller: str, region: str = "NA") -> None:
    requests.post(f"{emulator.base_url}/_emulator/revoke", json={"selling_partner_id": seller, "region": region},
                  timeout=5).raise_for_status()


def request_deletion(resources: Any, seller: str = VICTIM) -> str:
    outcome = DataRightsRepository(table(resources)).request_deletion(seller, clock.now(), 27)
    assert outcome.purge_after is not None
    return outcome.purge_after


# --- the attack: a forged selling_partner_id ---------------------------------------------------------


def test_a_forged_seller_id_takes_over_nothing(consent_env, emulator, log_guard, capfd):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, VICTIM).status == 303
    victim_before = conn(consent_env)
    victim_token = open_refresh_token(consent_env, VICTIM)
    log_guard.watch(victim_token)

    attacker = ConsentClient()
    done = forged_callback(attacker, emulator, signed_in_as=ATTACKER, claims=VICTIM)
    assert done.status == 303 and done.location == "done?outcome=pending&region=NA"
    assert "confirming with Amazon" in attacker.get(done.location).body
    # The consent alone touched nothing of the victim's connection.
    assert conn(consent_env) == victim_before

    report = confirm_consents()
    assert report["mismatched"] == 1 and report["verified"] == 0
    assert conn(consent_env) == victim_before
    assert open_refresh_token(consent_env, VICTIM) == victim_token
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []  # the attacker's token is destroyed
    assert partition(consent_env, f"SELLER#{ATTACKER}") == []
    assert '"ConsentIdentityMismatch":[1.0]' in capfd.readouterr().out  # the alarm's metric

    (record,) = [r for r in audit_records(consent_env) if r["outcome"] == "identity_mismatch"]
    assert record["type"] == "consent_verification"
    assert record["seller_key"] == seller_key(VICTIM) and record["other_seller_key"] == seller_key(ATTACKER)
    assert VICTIM not in repr(record) and ATTACKER not in repr(record)

    # The attacker removes the app: nothing happens to the victim.
    revoke(emulator, ATTACKER)
    from tests.support.tokens import provider

    assert provider(consent_env, emulator.base_url).get(VICTIM, "NA").value.startswith("Atza|")
    assert conn(consent_env)["status"] == "ACTIVE"


def test_a_first_time_seller_is_stored_nowhere_until_amazon_confirms_it(consent_env, emulator):
    done = forged_callback(ConsentClient(), emulator, signed_in_as=ATTACKER, claims=VICTIM)
    assert done.status == 303
    assert partition(consent_env, f"SELLER#{VICTIM}") == []
    (candidate,) = partition(consent_env, f"CANDIDATE#{VICTIM}")
    assert candidate["verify_due_at"] <= clock.epoch_seconds()
    assert "Atzr|" not in repr(candidate)
    snapshot = DataRightsRepository(table(consent_env)).snapshot(VICTIM)
    (shown,) = snapshot.public_connections(clock.epoch_seconds() + 90)
    assert shown["status"] == "PENDING_VERIFICATION"
    assert shown["pending_candidates"][0]["age_seconds"] == 90
    assert "refresh_token" not in shown["pending_candidates"][0] and "sealed" not in repr(shown)

    assert confirm_consents()["mismatched"] == 1
    assert partition(consent_env, f"SELLER#{VICTIM}") == []
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []
    assert not DataRightsRepository(table(consent_env)).snapshot(VICTIM).exists


def test_the_real_seller_is_confirmed_and_connected(consent_env, emulator):
    done = connect(ConsentClient(), emulator.base_url, VICTIM, "DE")
    assert done.status == 303
    report = confirm_consents()
    assert report["verified"] == 1 and report["due"] == 1
    item = conn(consent_env, VICTIM, "EU")
    assert item["status"] == "ACTIVE" and item["marketplace"] == "DE" and item["verified_at"]
    assert sorted(i["sk"] for i in partition(consent_env, f"SELLER#{VICTIM}")) == ["CONN#EU", "PLAN#EU"]
    (record,) = audit_records(consent_env)
    assert (record["type"], record["outcome"], record["detail"]) == (
        "consent_verification", "done", {"attempts": 1, "connected": 1})
    stats = requests.get(f"{emulator.base_url}/_emulator/stats", timeout=5).json()
    assert stats["spapi"]["getMyFeesEstimateForASIN"] == 1


def test_a_forged_consent_and_the_real_one_side_by_side(consent_env, emulator):
    """Both wait as candidates of the same seller; Amazon sorts them out: one connects, one goes."""
    forged_callback(ConsentClient(), emulator, signed_in_as=ATTACKER, claims=VICTIM)
    connect(ConsentClient(), emulator.base_url, VICTIM)
    assert len(partition(consent_env, f"CANDIDATE#{VICTIM}")) == 2
    report = confirm_consents()
    assert (report["verified"], report["mismatched"]) == (1, 1)
    assert conn(consent_env)["status"] == "ACTIVE"
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []


# --- re-authorization and re-consent take the same path -------------------------------------------------


def test_appstore_reauthorization_of_a_revoked_connection_waits_for_amazon(consent_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, VICTIM).status == 303
    table(consent_env).update_item(
        Key={"pk": f"SELLER#{VICTIM}", "sk": "CONN#NA"},
        UpdateExpression="SET #s = :revoked, purge_after = :purge, purge_shard = :shard REMOVE refresh_token",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":revoked": "REVOKED", ":purge": "2026-12-26T12:00:00Z", ":shard": "1"})
    client = ConsentClient()
    hop = client.get(f"/login?{appstore_login_query(emulator.base_url, VICTIM, 'NA')}")
    amazon = requests.get(hop.location, allow_redirects=False, timeout=5).headers["Location"]
    assert client.get(f"/callback?{callback_query(amazon)}").status == 303
    assert conn(consent_env)["status"] == "REVOKED"  # a consent alone reactivates nothing
    report = confirm_consents()
    assert report["verified"] == 1
    item = conn(consent_env)
    assert item["status"] == "ACTIVE" and "purge_after" not in item and "refresh_token" in item
    outcomes = sorted(key for r in audit_records(consent_env) if r["outcome"] == "done" for key in r["detail"])
    assert outcomes == ["attempts", "attempts", "connected", "reactivated"]


# --- a consent never cancels a deletion request -------------------------------------------------------


def test_a_consent_during_a_pending_deletion_stores_nothing_and_names_the_date(consent_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, VICTIM).status == 303
    purge = request_deletion(consent_env)
    before = partition(consent_env, f"SELLER#{VICTIM}")
    page = connect(ConsentClient(), emulator.base_url, VICTIM)
    assert page.status == 409
    assert "Your data is being deleted" in page.body and purge[:10] in page.body
    assert "support" in page.body and "connect again after that date" in page.body
    assert partition(consent_env, f"SELLER#{VICTIM}") == before
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []
    (record,) = [r for r in audit_records(consent_env) if r["type"] == "consent"]
    assert record["outcome"] == "deletion_pending" and record["seller_key"] == seller_key(VICTIM)


def test_a_forged_consent_during_a_deletion_learns_nothing(consent_env, emulator, capfd):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, VICTIM).status == 303
    purge = request_deletion(consent_env)
    before = partition(consent_env, f"SELLER#{VICTIM}")
    page = forged_callback(ConsentClient(), emulator, signed_in_as=ATTACKER, claims=VICTIM)
    assert page.status == 400 and "belongs to another account" in page.body
    assert purge[:10] not in page.body and "deleted" not in page.body
    assert partition(consent_env, f"SELLER#{VICTIM}") == before
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []
    assert '"ConsentIdentityMismatch":[1.0]' in capfd.readouterr().out
    (record,) = [r for r in audit_records(consent_env) if r["type"] == "consent"]
    assert record["outcome"] == "identity_mismatch" and record["other_seller_key"] == seller_key(ATTACKER)


def test_when_amazon_cannot_confirm_during_a_deletion_nothing_is_stored_or_shown(consent_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, VICTIM).status == 303
    purge = request_deletion(consent_env)
    fault(emulator, 503, 1)
    page = connect(ConsentClient(), emulator.base_url, VICTIM)
    assert page.status == 503 and "could not confirm" in page.body and purge[:10] not in page.body
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []
    assert conn(consent_env)["status"] == "DELETION_REQUESTED"


def test_a_deletion_requested_while_a_consent_waits_wins(consent_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, VICTIM).status == 303
    assert connect(ConsentClient(), emulator.base_url, VICTIM).status == 303  # waits for Amazon
    purge = request_deletion(consent_env)
    # The deletion request destroyed the waiting consent with the rest.
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []
    assert confirm_consents()["due"] == 0
    assert conn(consent_env)["status"] == "DELETION_REQUESTED" and conn(consent_env)["purge_after"] == purge


def amazon_confirms_during_the_destruction(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """The race: Amazon's confirmation is promoted just before a data request comes to destroy the waiting
    consent (after the request read the seller and wrote its transaction)."""
    reports: list[dict[str, object]] = []
    destroy = CandidateRepository.destroy

    def confirmed_first(self: CandidateRepository, candidate: Any) -> bool:
        if not reports:
            reports.append(confirm_consents())
        return destroy(self, candidate)

    monkeypatch.setattr(CandidateRepository, "destroy", confirmed_first)
    return reports


def test_a_consent_confirmed_while_a_deletion_runs_is_deleted_too(consent_env, emulator, monkeypatch):
    assert connect(ConsentClient(), emulator.base_url, VICTIM).status == 303  # waits; no connection yet
    reports = amazon_confirms_during_the_destruction(monkeypatch)
    with acting_as("data_requests"):  # the re-run needs no grant beyond the data-request role's
        outcome = DataRightsRepository(table(consent_env)).request_deletion(VICTIM, clock.now(), 27)
    assert reports[0]["verified"] == 1  # the consent became a connection the request had not seen
    assert outcome.connections == 1 and outcome.new and outcome.purge_after is not None
    connection = conn(consent_env)
    assert connection["status"] == "DELETION_REQUESTED" and connection["purge_after"] == outcome.purge_after
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []


def test_a_consent_confirmed_while_tokens_are_removed_keeps_no_token(consent_env, emulator, monkeypatch):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, VICTIM, "US").status == 303
    assert connect(ConsentClient(), emulator.base_url, VICTIM, "DE").status == 303  # EU waits
    reports = amazon_confirms_during_the_destruction(monkeypatch)
    with acting_as("data_requests"):
        connections, _ = DataRightsRepository(table(consent_env)).remove_tokens(VICTIM, clock.now())
    assert reports[0]["verified"] == 1
    assert connections == 2
    for region in ("NA", "EU"):
        item = conn(consent_env, region=region)
        assert item["status"] == "TOKENS_REMOVED" and "refresh_token" not in item
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []


def test_a_deletion_in_another_region_stops_the_promotion(consent_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, VICTIM, "DE").status == 303
    assert connect(ConsentClient(), emulator.base_url, VICTIM, "US").status == 303
    # The deletion lands on the EU connection between the consent and Amazon's answer.
    table(consent_env).update_item(Key={"pk": f"SELLER#{VICTIM}", "sk": "CONN#EU"},
                                   UpdateExpression="SET #s = :d", ExpressionAttributeNames={"#s": "status"},
                                   ExpressionAttributeValues={":d": "DELETION_REQUESTED"})
    report = confirm_consents()
    assert report["deletion_pending"] == 1 and report["verified"] == 0
    assert table(consent_env).get_item(Key={"pk": f"SELLER#{VICTIM}", "sk": "CONN#NA"}).get("Item") is None
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == []


# --- when Amazon does not answer -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503, 403])
def test_no_answer_is_retried_later_then_confirmed(consent_env, emulator, product_clock, status):
    connect(ConsentClient(), emulator.base_url, VICTIM)
    fault(emulator, status, 1)
    report = confirm_consents()
    assert report["deferred"] == 1 and report["verified"] == 0
    (candidate,) = partition(consent_env, f"CANDIDATE#{VICTIM}")
    assert candidate["attempts"] == 1 and candidate["verify_due_at"] == clock.epoch_seconds() + 60
    assert candidate["last_outcome"] in ("throttled", "amazon_unavailable", "refused")
    assert confirm_consents()["due"] == 0  # not before its time
    product_clock.advance(60)
    assert confirm_consents()["verified"] == 1
    assert conn(consent_env)["status"] == "ACTIVE"


def test_an_unconfirmed_consent_expires_and_is_destroyed(consent_env, emulator, product_clock, capfd):
    connect(ConsentClient(), emulator.base_url, VICTIM)
    fault(emulator, 403, 100)  # an application without any of the operation's roles
    waited = 0
    while partition(consent_env, f"CANDIDATE#{VICTIM}"):
        confirm_consents()
        product_clock.advance(900)
        waited += 900
        assert waited <= 7 * 3600, "the candidate outlived its deadline"
    assert waited >= 6 * 3600 - 900  # CONSENT_VERIFICATION_SECONDS in these tests: 6 hours (the default)
    assert partition(consent_env, f"SELLER#{VICTIM}") == []
    assert '"ConsentVerificationExpired":[1.0]' in capfd.readouterr().out
    (record,) = audit_records(consent_env)
    assert record["outcome"] == "expired"


def test_a_seller_who_removed_the_app_before_confirmation_is_not_connected(consent_env, emulator):
    connect(ConsentClient(), emulator.base_url, VICTIM)
    revoke(emulator, VICTIM)
    report = confirm_consents()
    assert report["revoked"] == 1
    assert partition(consent_env, f"CANDIDATE#{VICTIM}") == partition(consent_env, f"SELLER#{VICTIM}") == []
    (record,) = audit_records(consent_env)
    assert record["outcome"] == "revoked"


def test_two_runs_never_work_on_one_consent(consent_env, emulator):
    connect(ConsentClient(), emulator.base_url, VICTIM)
    candidates = CandidateRepository(table(consent_env))
    (seller, region, candidate_id), = candidates.due(clock.epoch_seconds())
    first = candidates.get(seller, region, candidate_id)
    assert first is not None
    assert candidates.take(first, now=clock.epoch_seconds(), lease_seconds=300) is not None
    assert candidates.take(first, now=clock.epoch_seconds(), lease_seconds=300) is None  # the twin run
    assert confirm_consents()["due"] == 0  # leased: not due again until the lease ends


def test_the_candidate_token_opens_only_for_the_seller_it_names(consent_env, emulator, log_guard):
    connect(ConsentClient(), emulator.base_url, VICTIM)
    (item,) = partition(consent_env, f"CANDIDATE#{VICTIM}")
    candidate = CandidateRepository(table(consent_env)).get(VICTIM, "NA", item["candidate_id"])
    assert candidate is not None
    vault = Vault(boto3.client("kms"), consent_env.key_arn)
    token = vault.open(candidate.sealed, SecretContext(Purpose.REFRESH_TOKEN, VICTIM, "NA"))
    log_guard.watch(token)
    from seller_insights.errors import SealedDataInvalid

    with pytest.raises(SealedDataInvalid):
        vault.open(candidate.sealed, SecretContext(Purpose.REFRESH_TOKEN, ATTACKER, "NA"))
    assert candidate.verify_by - candidate.created_at == timedelta(hours=6).total_seconds()
