"""The Amazon emulator's pieces without a server: host table, client secrets, faults, state, clock."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from local.amazon import AmazonEmulator, ClientSecret, EmulatorApp, LwaClient, Region, generators
from local.amazon.clock import VirtualClock
from local.amazon.consent import decide, example_seller_id, parse_consent
from local.amazon.faults import FaultBook, FaultError
from local.amazon.marketplaces import CENTRAL_HOSTS, MAIN_SELLER_CENTRAL, MARKETPLACES, central_host
from local.amazon.notifications import (
    NotificationError,
    Notifier,
    envelope,
    new_secret_payload,
    secret_expiry_payload,
)
from local.amazon.state import EmulatorState, GrantError
from local.amazon.web import HttpError

CALLBACK = "https://app.example.test/callback"


def _state() -> EmulatorState:
    return EmulatorState(EmulatorApp.create(redirect_uris=[CALLBACK]))


def test_main_seller_central_of_each_region_is_a_seller_host_of_that_region() -> None:
    for region, host in MAIN_SELLER_CENTRAL.items():
        central = central_host(host)
        assert central is not None
        assert (central.region, central.kind) == (region, "seller")


def test_host_lookup_is_case_insensitive_and_exact() -> None:
    assert central_host("SellerCentral.Amazon.CO.JP") is CENTRAL_HOSTS["sellercentral.amazon.co.jp"]
    assert central_host("sellercentral.amazon.com.evil.example") is None


def test_every_marketplace_country_has_a_seller_central_in_its_region() -> None:
    assert len(MARKETPLACES) == 23
    for country, marketplace in MARKETPLACES.items():
        hosts = [h for h in CENTRAL_HOSTS.values() if h.kind == "seller" and country in h.countries]
        assert hosts, country
        assert all(h.region == marketplace.region for h in hosts), country


def test_example_seller_ids_are_well_formed() -> None:
    assert [example_seller_id(r) for r in Region] == ["A1EXAMPLESELLERN", "A1EXAMPLESELLERE", "A1EXAMPLESELLERF"]


def test_generated_credentials_have_amazons_shapes() -> None:
    app = EmulatorApp.create()
    assert app.application_id.startswith("amzn1.sp.solution.")
    assert app.client.client_id.startswith("amzn1.application-oa2-client.")
    assert len(app.client.client_id.rsplit(".", 1)[1]) == 32
    assert app.client.current_secret.startswith("amzn1.oa2-cs.v1.")
    assert len(app.client.current_secret.rsplit(".", 1)[1]) == 64
    assert EmulatorApp.create().client.current_secret != app.client.current_secret
    assert app.client.current_secret not in repr(app)


def test_previous_secret_is_valid_until_it_expires() -> None:
    clock = VirtualClock()
    now = clock.now()
    client = LwaClient("cid", (ClientSecret("new"), ClientSecret("old", expires_at=now + timedelta(days=7))))

    assert client.authenticates("cid", "new", now)
    assert client.authenticates("cid", "old", now)
    assert not client.authenticates("cid", "old", now + timedelta(days=7))
    assert not client.authenticates("other", "new", now)
    assert not client.authenticates("cid", "", now)


def test_faults_are_taken_in_order_and_validated() -> None:
    book = FaultBook()
    book.arm("lwa_token", 500, 1)
    book.arm("lwa_token", "timeout", 2, 0.5)

    assert book.pending() == {"lwa_token": 3}
    taken = [book.take("lwa_token") for _ in range(4)]
    assert [(f.kind, f.hold_seconds) if f else None for f in taken] == [
        (500, 0.0),
        ("timeout", 0.5),
        ("timeout", 0.5),
        None,
    ]
    for bad in (("nope", 500, 1), ("lwa_token", True, 1), ("lwa_token", 500, 1.5), ("lwa_token", 503, -1)):
        with pytest.raises(FaultError):
            book.arm(*bad)
    with pytest.raises(FaultError):
        book.arm("lwa_token", "timeout", 1, math.nan)


def test_clock_only_moves_forward() -> None:
    clock = VirtualClock()
    before = clock.now()
    assert clock.advance(60) - before >= timedelta(seconds=60)
    for bad in (-1, math.inf, math.nan):
        with pytest.raises(ValueError, match="forward"):
            clock.advance(bad)


def test_code_expires_exactly_at_five_minutes() -> None:
    state = _state()
    code = state.issue_code("A1EXAMPLESELLERN", Region.NA, CALLBACK)
    client_id = state.app.client.client_id

    state.clock.advance(300)
    with pytest.raises(GrantError):
        state.redeem_code(code, client_id, CALLBACK)


def test_a_code_presented_with_the_wrong_redirect_uri_is_used_up() -> None:
    state = _state()
    code = state.issue_code("A1EXAMPLESELLERN", Region.NA, CALLBACK)
    client_id = state.app.client.client_id

    with pytest.raises(GrantError) as first:
        state.redeem_code(code, client_id, CALLBACK + "/")
    assert first.value.parameter == "redirect_uri"
    with pytest.raises(GrantError) as second:
        state.redeem_code(code, client_id, CALLBACK)
    assert second.value.parameter == "code"


def test_refresh_token_is_bound_to_its_client_and_remembers_the_seller() -> None:
    state = _state()
    client_id = state.app.client.client_id
    grant = state.redeem_code(state.issue_code("A7SELLERJP01", Region.FE, CALLBACK), client_id, CALLBACK)

    with pytest.raises(GrantError):
        state.refresh(grant.refresh_token, "another-client")
    refreshed = state.refresh(grant.refresh_token, client_id)
    access = state.access_token(refreshed.access_token)
    assert access is not None and access.authorization is not None
    assert (access.authorization.selling_partner_id, access.authorization.region) == ("A7SELLERJP01", Region.FE)


def test_reset_forgets_tokens_but_keeps_the_app() -> None:
    state = _state()
    app = state.app
    client_id = app.client.client_id
    grant = state.redeem_code(state.issue_code("A1EXAMPLESELLERN", Region.NA, CALLBACK), client_id, CALLBACK)

    state.reset()

    assert state.app is app
    assert state.access_token(grant.access_token) is None
    with pytest.raises(GrantError):
        state.refresh(grant.refresh_token, client_id)


def test_repeated_consent_parameters_are_rejected() -> None:
    state = _state()
    args = MultiDict(
        [("application_id", state.app.application_id), ("version", "beta"), ("state", "a"), ("state", "b")]
    )

    with pytest.raises(HttpError, match="more than once"):
        parse_consent(state.app, "sellercentral.amazon.com", args)


# Lone surrogates cannot travel in a URL (nor come out of a decoded one), so they are left out.
@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=200))
def test_any_state_comes_back_exactly(value: str) -> None:
    state = _state()
    args = MultiDict([("application_id", state.app.application_id), ("version", "beta"), ("state", value)])
    request = parse_consent(state.app, "sellercentral.amazon.com", args)

    for confirm in (True, False):
        location = decide(state, request, "A1EXAMPLESELLERN", confirm=confirm)
        assert location.startswith(CALLBACK + "?")
        assert parse_qs(urlsplit(location).query, keep_blank_values=True)["state"] == [value]


def test_several_emulators_live_in_one_process() -> None:
    first, second = AmazonEmulator(), AmazonEmulator()

    assert first.wsgi_app.control.url_map is not second.wsgi_app.control.url_map
    assert first.application_id != second.application_id


# -- token lifecycle: rotation, expiry, revocation, the yearly lapse ---------------------------------


def test_rotation_makes_the_new_secret_current_and_gives_the_old_one_a_week() -> None:
    now = VirtualClock().now()
    client = LwaClient("cid", (ClientSecret("first"),))

    once = client.rotated("second", now)
    twice = once.rotated("third", now + timedelta(days=1))

    assert once.current_secret == "second"
    assert once.current_expires_at == now + timedelta(days=180)
    assert once.secrets[1] == ClientSecret("first", now + timedelta(days=7))
    assert twice.current_secret == "third"
    # "first" keeps its earlier expiry; "second" gets a week from the second rotation.
    assert [s.expires_at for s in twice.secrets[1:]] == [now + timedelta(days=8), now + timedelta(days=7)]


def test_expired_secrets_are_dropped_at_the_next_rotation() -> None:
    now = VirtualClock().now()
    client = LwaClient("cid", (ClientSecret("a"),)).rotated("b", now).rotated("c", now + timedelta(days=8))

    assert [s.value for s in client.secrets] == ["c", "b"]


def test_current_expiry_and_fresh() -> None:
    now = VirtualClock().now()
    client = LwaClient("cid", (ClientSecret("a"),)).rotated("b", now).with_current_expiry(now + timedelta(days=2))

    assert client.authenticates("cid", "b", now + timedelta(days=1))
    assert not client.authenticates("cid", "b", now + timedelta(days=2))
    assert client.fresh().secrets == (ClientSecret("b"),)


def test_reset_keeps_the_current_secret_without_expiry() -> None:
    state = _state()
    state.rotate_client_secret()
    state.expire_current_secret(state.now())
    current = state.app.client.current_secret

    state.reset()

    assert state.app.client.secrets == (ClientSecret(current),)
    assert state.take_rotation_slot()


def test_undo_rotation_restores_the_previous_client() -> None:
    state = _state()
    before = state.app.client

    state.undo_rotation(state.rotate_client_secret())

    assert state.app.client == before


def test_rotation_slot_is_one_call_a_minute() -> None:
    state = _state()

    assert state.take_rotation_slot()
    state.clock.advance(59.9)
    assert not state.take_rotation_slot()
    state.clock.advance(0.1)
    assert state.take_rotation_slot()
    assert state.stats()["throttled"] == 1


def test_revoke_hits_only_that_seller_and_region() -> None:
    state = _state()
    client_id = state.app.client.client_id
    na = state.redeem_code(state.issue_code("A1EXAMPLESELLERN", Region.NA, CALLBACK), client_id, CALLBACK)
    eu = state.redeem_code(state.issue_code("A1EXAMPLESELLERN", Region.EU, CALLBACK), client_id, CALLBACK)
    pending = state.issue_code("A1EXAMPLESELLERN", Region.NA, CALLBACK)

    assert state.revoke("A1EXAMPLESELLERN", Region.NA) == 1

    assert state.access_token(na.access_token) is None
    with pytest.raises(GrantError):
        state.refresh(na.refresh_token, client_id)
    with pytest.raises(GrantError):
        state.redeem_code(pending, client_id, CALLBACK)
    assert state.access_token(eu.access_token) is not None
    state.refresh(eu.refresh_token, client_id)


def test_consent_lapses_after_365_days_counted_from_consent() -> None:
    state = _state()
    client_id = state.app.client.client_id
    code = state.issue_code("A1EXAMPLESELLERN", Region.NA, CALLBACK)
    state.clock.advance(240)  # the code is redeemed 4 minutes after consent
    grant = state.redeem_code(code, client_id, CALLBACK)

    state.clock.advance(timedelta(days=365).total_seconds() - 241)
    state.refresh(grant.refresh_token, client_id)
    state.clock.advance(2)
    with pytest.raises(GrantError) as lapsed:
        state.refresh(grant.refresh_token, client_id)
    assert lapsed.value.parameter == "refresh_token"


def test_notification_payloads_have_amazons_shape() -> None:
    now = datetime(2024, 1, 10, 20, 8, 39, 529000, tzinfo=UTC)
    secret = "amzn1.oa2-cs.v1." + "0" * 64

    note = envelope(
        "APPLICATION_OAUTH_CLIENT_NEW_SECRET",
        new_secret_payload("cid", secret, now + timedelta(days=180), now + timedelta(days=7)),
        now=now,
        application_id="amzn1.sp.solution.x",
        subscription_id="sub",
    )

    metadata = note.pop("notificationMetadata")
    assert note == {
        "notificationVersion": "1.0",
        "notificationType": "APPLICATION_OAUTH_CLIENT_NEW_SECRET",
        "payloadVersion": "2023-11-30",
        "eventTime": "2024-01-10T20:08:39.529Z",
        "payload": {
            "applicationOAuthClientNewSecret": {
                "clientId": "cid",
                "newClientSecret": secret,
                "newClientSecretExpiryTime": "2024-07-08T20:08:39.529Z",
                "oldClientSecretExpiryTime": "2024-01-17T20:08:39.529Z",
            }
        },
    }
    assert metadata["publishTime"] == "2024-01-10T20:08:39.529Z"
    assert (metadata["applicationId"], metadata["subscriptionId"]) == ("amzn1.sp.solution.x", "sub")
    assert secret_expiry_payload("cid", now) == {
        "applicationOAuthClientSecretExpiry": {
            "clientId": "cid",
            "clientSecretExpiryTime": "2024-01-10T20:08:39.529Z",
            "clientSecretExpiryReason": "PERIODIC_ROTATION",
        }
    }


def test_notifier_registration() -> None:
    notifier = Notifier()
    assert not notifier.enrolled
    with pytest.raises(NotificationError):
        notifier.send({"notificationType": "X"})

    notifier.configure(queue_url="http://127.0.0.1:1/123456789012/q", sqs_endpoint="http://127.0.0.1:1")
    assert notifier.enrolled
    assert notifier.subscription_id("A") == notifier.subscription_id("A") != notifier.subscription_id("B")
    notifier.configure(sqs_endpoint="")
    assert notifier.queue_url == "http://127.0.0.1:1/123456789012/q"
    notifier.configure(queue_url="")
    assert not notifier.enrolled


def test_notifier_reports_an_unreachable_endpoint_without_the_body() -> None:
    notifier = Notifier("http://127.0.0.1:1/123456789012/q", "http://127.0.0.1:1")
    secret = "amzn1.oa2-cs.v1." + "1" * 64
    note = envelope("APPLICATION_OAUTH_CLIENT_NEW_SECRET", {"newClientSecret": secret}, now=VirtualClock().now(),
                    application_id="a", subscription_id="s")

    with pytest.raises(NotificationError) as failed:
        notifier.send(note)

    assert secret not in str(failed.value)


# -- late data (issue 10, section 9): the orders timeline behind GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL


def _orders_rows(seller: str, start: datetime, end: datetime, as_of: datetime) -> dict[str, tuple[str, str]]:
    """order id -> (last-updated-date, order-status) of the report Amazon would make at `as_of`."""
    text = generators.orders_by_update(seller, ["ATVPDKIKX0DER"], start=start, end=end, as_of=as_of).body
    lines = text.decode("cp1252").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    return {r["amazon-order-id"]: (r["last-updated-date"], r["order-status"]) for r in rows}


def test_an_update_that_arrives_late_shows_in_the_next_windows_report() -> None:
    seller, hour = "A1LATEDATA0001", timedelta(hours=1)
    base = datetime(2026, 11, 2, tzinfo=UTC)
    for n in range(48):  # the first hourly window with an update that arrived after the window's report
        end = base + n * hour
        late = [u for u in generators.order_updates(seller, "ATVPDKIKX0DER", end - 2 * hour, end)
                if u.visible_at > end]
        if late:
            break
    update = late[0]
    stamp = update.at.isoformat().replace("+00:00", "Z")

    now = _orders_rows(seller, end - 2 * hour, end, as_of=end)
    next_window = _orders_rows(seller, end - hour, end + hour, as_of=end + hour)  # with the 1-hour lookback

    assert now.get(update.order_id) != (stamp, update.status)
    assert next_window[update.order_id][0] >= stamp and update.at >= end - hour


def test_an_order_updated_after_its_window_appears_in_a_later_windows_report() -> None:
    seller, hour = "A1LATEDATA0002", timedelta(hours=1)
    start = datetime(2026, 11, 2, 8, tzinfo=UTC)
    first = _orders_rows(seller, start, start + 2 * hour, as_of=start + 3 * hour)
    later = {}
    for n in range(2, 34):  # the next day and a half, hour by hour
        later.update(_orders_rows(seller, start + n * hour, start + (n + 1) * hour, as_of=start + (n + 2) * hour))

    bought = {order for order, (_, status) in first.items() if status == "Pending"}
    assert bought
    assert all(later[order][1] == "Shipped" for order in bought)  # each shipped 1 to 30 hours later
    assert all(later[order][0] > first[order][0] for order in bought)
    # The same window asked twice gives the same rows: a restatement replaces, never contradicts.
    assert first == _orders_rows(seller, start, start + 2 * hour, as_of=start + 3 * hour)
