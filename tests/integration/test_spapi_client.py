"""The one SP-API adapter (seller_insights.spapi) against the Amazon emulator over loopback: the rate limit
Amazon states on answers and on errors, the error family, and grantless tokens kept and replaced."""

from __future__ import annotations

import socket

import pytest

from seller_insights.credentials import SecretsManagerCredentials
from seller_insights.errors import SellerInsightsError, SpApiError, SpApiFailure, SpApiUnreachable
from seller_insights.lwa import LwaClient, RetryPolicy
from seller_insights.spapi import GrantlessTokens, SpApiClient
from seller_insights.tokens import AccessToken
from tests.support.api import ConsentClient
from tests.support.flows import connect_and_confirm
from tests.support.tokens import lwa_stats, provider

SELLER = "A1SPAPICLIENT001"
ASIN = "B00V5DG6IQ"
NOTIFICATIONS = "sellingpartnerapi::notifications"


@pytest.fixture
def connected(token_env, emulator):
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    return token_env


def grantless(resources, emulator) -> GrantlessTokens:
    lwa = LwaClient(f"{emulator.base_url}/_hosts/api.amazon.com/auth/o2/token",
                    SecretsManagerCredentials(resources.secret_arn), policy=RetryPolicy(read_timeout=2.0, deadline=5.0),
                    sleep=lambda _: None)
    return GrantlessTokens(lwa, NOTIFICATIONS)


class _Unused:
    """A token source for calls that never reach Amazon."""

    def get(self, seller: str, region: str) -> AccessToken:
        return AccessToken("not-a-token", 0)

    def invalidate(self, seller: str, region: str, token: AccessToken) -> None:
        """Nothing to forget."""


def test_an_answer_states_amazons_rate_limit(connected, emulator):
    client = SpApiClient(provider(connected, emulator.base_url), endpoint_override=emulator.base_url)

    answer = client.send(SELLER, "NA", "GET", "/sellers/v1/marketplaceParticipations",
                         operation="getMarketplaceParticipations")

    assert answer.status == 200 and answer.body["payload"]
    assert answer.rate_limit == 0.016  # the model's default usage plan, as the header says


def test_an_error_names_the_operation_status_code_and_rate_limit(connected, emulator):
    client = SpApiClient(provider(connected, emulator.base_url), endpoint_override=emulator.base_url)

    with pytest.raises(SpApiError) as raised:
        client.get_my_fees_estimate_for_asin(SELLER, "NA", ASIN, {"FeesEstimateRequest": None})

    error = raised.value
    assert (error.status, error.code, error.operation, error.rate_limit) == (
        400, "InvalidInput", "getMyFeesEstimateForASIN", 1.0)
    assert isinstance(error, SpApiFailure) and isinstance(error, SellerInsightsError)
    assert str(error) == "getMyFeesEstimateForASIN answered 400 (InvalidInput)"


def test_no_answer_is_unreachable_and_names_no_address():
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SpApiClient(_Unused(), endpoint_override=f"http://127.0.0.1:{port}")

    with pytest.raises(SpApiUnreachable) as raised:
        client.get_destinations("NA")

    assert (raised.value.reason, raised.value.operation, raised.value.rate_limit) == (
        "connection", "getDestinations", None)
    assert isinstance(raised.value, SpApiFailure) and not isinstance(raised.value, SpApiError)
    assert str(port) not in str(raised.value) and "127.0.0.1" not in str(raised.value)


def test_a_grantless_token_serves_every_region_until_amazon_refuses_it(token_env, emulator):
    client = SpApiClient(grantless(token_env, emulator), endpoint_override=emulator.base_url)

    assert client.get_destinations("NA") == [] and client.get_destinations("EU") == []
    assert lwa_stats(emulator.base_url)["client_credentials"] == 1  # one token for both hosts

    emulator.advance_clock(3600)  # Amazon considers the token expired; our clock does not
    with pytest.raises(SpApiError) as refused:
        client.get_destinations("FE")
    assert (refused.value.status, refused.value.code) == (403, "Unauthorized")

    assert client.get_destinations("FE") == []  # the refused token was forgotten: a new one
    assert lwa_stats(emulator.base_url)["client_credentials"] == 2
