"""A connection's marketplaces from getMarketplaceParticipations (seller_insights.participations and
report_fetcher.participations) without HTTP or AWS: what an answer decides, which failures are Amazon's
and which are the quota's, and when the daily check asks at all. Amazon's answers follow sellers.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from report_fetcher.participations import ParticipationsRefresh
from seller_insights.clock import FixedClock
from seller_insights.errors import SpApiError, SpApiUnreachable, TokenUnavailable
from seller_insights.observability import get_metrics
from seller_insights.participations import (
    CHECK_INTERVAL_SECONDS,
    ParticipationsDeferred,
    ParticipationsReader,
    ParticipationsUnknown,
    participating_marketplaces,
)
from seller_insights.report_jobs import Plan

UK, DE, FR, IT, ES = "A1F83G8C2ARO7P", "A1PA6795UKMFR9", "A13V1IB3VIYZZH", "APJ6JRA9NG5V4", "A1RKKUPIHCS9HS"
US, JP = "ATVPDKIKX0DER", "A1VC38T7YXB528"
SELLER = "A1UNITSELLER01"


def entry(marketplace_id: str, participating: Any = True, suspended: bool = False) -> dict[str, Any]:
    return {"marketplace": {"id": marketplace_id, "name": "n", "countryCode": "DE", "defaultCurrencyCode": "EUR",
                            "defaultLanguageCode": "de_DE", "domainName": "www.amazon.de"},
            "storeName": "s", "participation": {"isParticipating": participating, "hasSuspendedListings": suspended}}


def test_only_participating_marketplaces_of_the_region_count_in_table_order() -> None:
    answer = {"payload": [entry(ES), entry(FR, participating=False), entry(IT, suspended=True),
                          entry(UK, participating=False, suspended=True), entry(US), entry(JP),
                          entry("A2ZV50J4W1RKNI"),  # Non-Amazon: a marketplace id our table does not know
                          entry(DE), entry(DE, participating="true")]}

    assert participating_marketplaces(answer, "EU") == [DE, IT, ES]
    assert participating_marketplaces(answer, "NA") == [US]
    assert participating_marketplaces({"payload": []}, "EU") == []


@pytest.mark.parametrize("answer", [{}, {"payload": None}, {"payload": {"marketplace": {}}}, {"errors": []}])
def test_an_answer_without_a_payload_list_is_no_answer(answer: dict[str, Any]) -> None:
    with pytest.raises(ParticipationsUnknown) as raised:
        participating_marketplaces(answer, "EU")
    assert raised.value.reason == "malformed"


def test_entries_that_are_not_objects_are_skipped() -> None:
    answer = {"payload": ["DE", None, {"marketplace": DE}, {"marketplace": {"id": DE}}, entry(FR)]}
    assert participating_marketplaces(answer, "EU") == [FR]


@dataclass
class Buckets:
    wait: float = 0.0
    taken: list[tuple[str, str, str]] = field(default_factory=list)

    def take_operation(self, seller: str, region: str, operation: str) -> float:
        self.taken.append((seller, region, operation))
        return self.wait


@dataclass
class Sellers:
    answer: dict[str, Any] | Exception = field(default_factory=lambda: {"payload": [entry(DE), entry(FR)]})
    calls: int = 0

    def get_marketplace_participations(self, seller: str, region: str) -> dict[str, Any]:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_reader_takes_the_sellers_bucket_before_asking() -> None:
    buckets, sellers = Buckets(), Sellers()
    assert ParticipationsReader(buckets).read(sellers, SELLER, "EU") == [DE, FR]  # type: ignore[arg-type]
    assert buckets.taken == [(SELLER, "EU", "getMarketplaceParticipations")]
    assert sellers.calls == 1


def test_an_empty_bucket_defers_without_asking() -> None:
    sellers = Sellers()
    with pytest.raises(ParticipationsDeferred) as raised:
        ParticipationsReader(Buckets(wait=62.5)).read(sellers, SELLER, "EU")  # type: ignore[arg-type]
    assert (raised.value.wait_seconds, sellers.calls) == (62.5, 0)


@pytest.mark.parametrize(("failure", "reason"), [
    (SpApiError(429, "QuotaExceeded"), "throttled"), (SpApiError(500, "InternalFailure"), "amazon_unavailable"),
    (SpApiError(503, "ServiceUnavailable"), "amazon_unavailable"), (SpApiError(403, "Unauthorized"), "refused"),
    (SpApiError(400, "InvalidInput"), "rejected"), (SpApiUnreachable("timeout"), "timeout"),
    (SpApiUnreachable("connection"), "connection"),
])
def test_amazon_not_saying_is_one_reason(failure: Exception, reason: str) -> None:
    with pytest.raises(ParticipationsUnknown) as raised:
        ParticipationsReader(Buckets()).read(Sellers(failure), SELLER, "EU")  # type: ignore[arg-type]
    assert raised.value.reason == reason


@dataclass
class Plans:
    recorded: list[tuple[str, str, list[str], int]] = field(default_factory=list)
    gone: bool = False
    failure: Exception | None = None

    def record_participations(self, seller: str, region: str, marketplace_ids: list[str],
                              checked_at: int) -> Plan | None:
        self.recorded.append((seller, region, marketplace_ids, checked_at))
        if self.failure is not None:
            raise self.failure
        if self.gone:
            return None
        return Plan(seller, region, 1, {"X": 5}, None, marketplace_ids, participations_checked_at=checked_at)


def flushed(capfd: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """What was printed, the metrics counted so far (EMF, as a handler's end prints them) included."""
    get_metrics().flush_metrics()
    out, err = capfd.readouterr()
    return out, err


def plan(checked_at: int | None) -> Plan:
    return Plan(SELLER, "EU", 1, {"X": 5}, None, [DE, UK], participations_checked_at=checked_at)


def refresh(sellers: Sellers, plans: Plans, target: Plan, buckets: Buckets | None = None) -> None:
    ParticipationsRefresh(sellers_api=sellers, plans=plans,  # type: ignore[arg-type]
                          reader=ParticipationsReader(buckets or Buckets())).refresh(target)  # type: ignore[arg-type]


def test_a_plan_checked_less_than_a_day_ago_is_not_asked_again(fixed_clock: FixedClock) -> None:
    now = int(fixed_clock.now().timestamp())
    sellers, plans, fresh = Sellers(), Plans(), plan(now - CHECK_INTERVAL_SECONDS + 1)
    refresh(sellers, plans, fresh)
    assert (sellers.calls, plans.recorded, fresh.marketplace_ids) == (0, [], [DE, UK])


@pytest.mark.parametrize("checked_at", [None, 0])
def test_an_unchecked_or_day_old_plan_takes_amazons_answer(fixed_clock: FixedClock, checked_at: int | None,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    now = int(fixed_clock.now().timestamp())
    old = plan(checked_at if checked_at is None else now - CHECK_INTERVAL_SECONDS)
    plans = Plans()
    refresh(Sellers(), plans, old)
    assert plans.recorded == [(SELLER, "EU", [DE, FR], now)]
    assert (old.marketplace_ids, old.participations_checked_at) == ([DE, FR], now)


@pytest.mark.parametrize("failure", [SpApiError(503, "ServiceUnavailable"), SpApiUnreachable("timeout"),
                                     RuntimeError("the table is away")])
def test_a_failed_check_leaves_the_plan_as_it_was(fixed_clock: FixedClock, failure: Exception,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    flushed(capfd)
    unchecked = plan(None)
    storing_fails = isinstance(failure, RuntimeError)  # Amazon answered; the plan's UpdateItem did not
    plans = Plans(failure=failure if storing_fails else None)
    refresh(Sellers({"payload": []} if storing_fails else failure), plans, unchecked)
    assert (unchecked.marketplace_ids, unchecked.participations_checked_at) == ([DE, UK], None)
    out, err = flushed(capfd)
    assert '"ParticipationsFailed":[1.0]' in out and "check failed" in err


@pytest.mark.parametrize("deferral", ["quota", "token"])
def test_no_token_or_quota_yet_defers_without_a_failure(fixed_clock: FixedClock, deferral: str,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    flushed(capfd)
    unchecked = plan(None)
    sellers = Sellers(TokenUnavailable("no fresh access token yet")) if deferral == "token" else Sellers()
    refresh(sellers, Plans(), unchecked, Buckets(wait=30.0 if deferral == "quota" else 0.0))
    assert unchecked.marketplace_ids == [DE, UK]
    out, err = flushed(capfd)
    assert "ParticipationsFailed" not in out and "deferred" in err


def test_a_plan_gone_meanwhile_stays_as_read(fixed_clock: FixedClock) -> None:
    unchecked = plan(None)
    refresh(Sellers(), Plans(gone=True), unchecked)
    assert (unchecked.marketplace_ids, unchecked.participations_checked_at) == ([DE, UK], None)


def test_the_plan_item_keeps_when_it_was_checked() -> None:
    item = plan(1_796_000_000).to_item()
    assert item["participations_checked_at"] == 1_796_000_000
    assert Plan.from_item(item).participations_checked_at == 1_796_000_000
    assert "participations_checked_at" not in plan(None).to_item()
    assert Plan.from_item(plan(None).to_item()).participations_checked_at is None


def test_a_run_checks_at_most_its_budget_and_leaves_the_rest_for_their_next_plan(fixed_clock: FixedClock) -> None:
    sellers, plans = Sellers(), Plans()
    checking = ParticipationsRefresh(sellers_api=sellers, plans=plans,  # type: ignore[arg-type]
                                     reader=ParticipationsReader(Buckets()), max_checks=2)  # type: ignore[arg-type]
    unchecked = [plan(None) for _ in range(3)]
    for each in unchecked:
        checking.refresh(each)
    assert sellers.calls == 2
    assert [p.participations_checked_at is not None for p in unchecked] == [True, True, False]
