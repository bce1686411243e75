"""The shared access-token cache: encrypted, shared between containers, one refresh per lifetime."""

from __future__ import annotations

import threading

import boto3
import pytest
from botocore.exceptions import ClientError

from seller_insights.errors import KeyUnavailable
from seller_insights.repositories import ConnectionsRepository
from seller_insights.tokens import CachedTokensOnly
from seller_insights.vault import Purpose, Sealed, SecretContext, Vault
from tests.support.api import ConsentClient
from tests.support.flows import connect_and_confirm
from tests.support.tokens import connection_item, lwa_stats, provider, table, token_item

SELLER = "A1TOKENSELLER01"


@pytest.fixture
def connected(token_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    return token_env


@pytest.fixture
def refresh_calls(connected, emulator):
    """LWA refresh calls since the connection was made (confirming the consent took one)."""
    baseline = lwa_stats(emulator.base_url)["refresh_token"]
    return lambda: lwa_stats(emulator.base_url)["refresh_token"] - baseline


def test_first_call_refreshes_and_stores_ciphertext_with_ttl(connected, emulator, product_clock, log_guard,
                                                             refresh_calls):
    token = provider(connected, emulator.base_url).get(SELLER, "NA")
    log_guard.watch(token.value)
    assert token.value.startswith("Atza|")
    assert refresh_calls() == 1
    item = token_item(connected, SELLER, "NA")
    assert item is not None and "Atza|" not in repr(item)
    assert item["token_expires_at"] == item["expires_at"] == product_clock.now().timestamp() + 3600
    assert "lease_owner" not in item
    opened = Vault(boto3.client("kms"), connected.key_arn).open(
        Sealed.from_item(item["token"]), SecretContext(Purpose.ACCESS_TOKEN, SELLER, "NA"))
    assert opened == token.value
    # The next refresh is scheduled five minutes before expiry.
    assert connection_item(connected, SELLER, "NA")["refresh_due_at"] == token.expires_at - 300


def test_another_container_reads_the_shared_token(connected, emulator, refresh_calls):
    first = provider(connected, emulator.base_url).get(SELLER, "NA")
    second = provider(connected, emulator.base_url).get(SELLER, "NA")
    assert first == second
    assert refresh_calls() == 1


def test_a_token_near_expiry_is_refreshed(connected, emulator, product_clock, refresh_calls):
    containers = provider(connected, emulator.base_url)
    first = containers.get(SELLER, "NA")
    product_clock.advance(3600 - 100)  # inside the 120-second margin
    second = containers.get(SELLER, "NA")
    assert second != first
    assert refresh_calls() == 2


def test_many_containers_at_once_make_one_refresh(connected, emulator, refresh_calls):
    barrier = threading.Barrier(16)
    tokens, errors = [], []

    def work() -> None:
        container = provider(connected, emulator.base_url)
        barrier.wait()
        try:
            tokens.append(container.get(SELLER, "NA"))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(tokens)) == 1
    assert refresh_calls() == 1


def test_no_connection_means_no_lwa_call(token_env, emulator):
    from seller_insights.errors import ConnectionNotActive

    with pytest.raises(ConnectionNotActive):
        provider(token_env, emulator.base_url).get("ANOTHERSELLER1", "NA")
    assert lwa_stats(emulator.base_url)["refresh_token"] == 0
    assert token_item(token_env, "ANOTHERSELLER1", "NA") is None


def test_kms_denial_fails_closed(connected, emulator, monkeypatch):
    container = provider(connected, emulator.base_url)
    kms = container._vault._kms

    def denied(*_args, **_kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "Decrypt")

    monkeypatch.setattr(kms, "decrypt", denied)
    with pytest.raises(KeyUnavailable):
        container.get(SELLER, "NA")
    item = token_item(connected, SELLER, "NA")
    assert item is None or ("token" not in item and "lease_owner" not in item)  # lease released, nothing stored
    assert connection_item(connected, SELLER, "NA")["status"] == "ACTIVE"


def test_a_suspect_token_stays_in_use_until_the_refresher_renews_it_early(connected, emulator, refresh_calls):
    """Issue 10, section 6: a token SP-API refused is marked suspect, never evicted; the refresher's next run
    renews it although it is far from expiry, and the renewal has a new generation."""
    refresher = provider(connected, emulator.base_url)
    token = refresher.get(SELLER, "NA")
    fetcher = CachedTokensOnly(provider(connected, emulator.base_url), ConnectionsRepository(table(connected)))
    assert refresher.refresh(SELLER, "NA") is None  # fresh and not suspect: nothing to renew
    refused = fetcher.generation(SELLER, "NA")

    fetcher.invalidate(SELLER, "NA", token)  # what the SP-API client does on a 403
    assert fetcher.request_renewal(SELLER, "NA") == refused
    assert fetcher.get(SELLER, "NA") == token  # still handed out: other jobs keep working
    assert connection_item(connected, SELLER, "NA")["refresh_due_at"] <= token.expires_at - 3000

    renewed = refresher.refresh(SELLER, "NA")
    assert renewed is not None and renewed != token and refresh_calls() == 2
    assert fetcher.generation(SELLER, "NA") not in (None, refused)
    assert fetcher.get(SELLER, "NA") == renewed  # the container's copy followed the renewal
    assert "suspect_since" not in token_item(connected, SELLER, "NA")
    assert refresher.refresh(SELLER, "NA") is None  # no second early renewal
    # A late request about the old generation marks nothing.
    refresher._cache.mark_suspect(SELLER, "NA", refused, 0)
    assert "suspect_since" not in token_item(connected, SELLER, "NA")
