"""Retention decisions without AWS: the receipt's dates, which of a seller's items a purge takes, which
work items it skips, and the bounded retries of what S3 and DynamoDB refuse (seller_insights.retention,
retention_sweeper.service). S3 and DynamoDB clients are in-memory stand-ins that answer what the test
scripts; the sweep's decisions run over in-memory stand-ins of its adapters (PurgeStates,
TableItems); sleeping is injected and recorded, never done."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from retention_sweeper.service import COUNTERS, RetentionSweep, SweepReport, _Due, _of_region, _only_connection
from seller_insights.clock import FixedClock
from seller_insights.errors import TransactionCancelled
from seller_insights.retention import (
    ATTEMPTS,
    AUDIT_RETENTION_MONTHS,
    DELETE_OBJECTS_MAX,
    MAX_DELAY,
    PurgeClaim,
    PurgeIncomplete,
    S3Purge,
    TableItems,
    add_months,
    expiry_epoch,
    quota_keys,
    receipt_id,
)

# --- dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "months", "expected"), [
    (datetime(2026, 1, 31, 9, 30, tzinfo=UTC), 1, datetime(2026, 2, 28, 9, 30, tzinfo=UTC)),
    (datetime(2028, 1, 31, tzinfo=UTC), 1, datetime(2028, 2, 29, tzinfo=UTC)),  # leap year
    (datetime(2026, 11, 29, tzinfo=UTC), 2, datetime(2027, 1, 29, tzinfo=UTC)),  # across the year
    (datetime(2026, 12, 31, tzinfo=UTC), 12, datetime(2027, 12, 31, tzinfo=UTC)),
    (datetime(2026, 3, 31, tzinfo=UTC), 25, datetime(2028, 4, 30, tzinfo=UTC)),
])
def test_months_are_added_to_the_same_day_or_the_months_last(start: datetime, months: int,
                                                             expected: datetime) -> None:
    assert add_months(start, months) == expected


def test_receipts_are_kept_at_least_two_years() -> None:
    verified = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert AUDIT_RETENTION_MONTHS >= 24
    assert expiry_epoch(verified) == int(datetime(2028, 12, 29, 12, tzinfo=UTC).timestamp())


def test_one_receipt_per_purge_of_a_region() -> None:
    first = receipt_id("key1", "NA", "2026-12-01T00:00:00Z")
    assert first == receipt_id("key1", "NA", "2026-12-01T00:00:00Z")
    others = {receipt_id("key1", "EU", "2026-12-01T00:00:00Z"), receipt_id("key1", "NA", "2027-01-01T00:00:00Z"),
              receipt_id("key2", "NA", "2026-12-01T00:00:00Z")}
    assert len(others | {first}) == 4


def test_the_quota_buckets_of_a_region_are_the_sellers_own() -> None:
    keys = quota_keys("A1SELLER01", "EU")
    assert keys and all(k["pk"].startswith("QUOTA#A1SELLER01#EU#") and k["sk"] == "BUCKET" for k in keys)


# --- what a purge takes ---------------------------------------------------------------------------


def item(sk: str, region: str | None = None) -> dict[str, Any]:
    found = {"pk": "SELLER#A1SELLER01", "sk": sk}
    if region:
        found["region"] = region
    return found


@pytest.mark.parametrize(("entry", "taken"), [
    (item("TOKEN#NA"), True),
    (item("PLAN#NA"), True),
    (item("REPORT#NA#GET_MERCHANT_LISTINGS_ALL_DATA#x"), True),
    (item("JOB#abc", "NA"), True),
    (item("REPORTID#r1", "NA"), True),
    (item("TOKEN#EU"), False),
    (item("REPORT#EU#GET_MERCHANT_LISTINGS_ALL_DATA#x"), False),
    (item("JOB#abc", "EU"), False),
    (item("JOB#abc"), False),  # a job of no known region is never taken by a region's purge
    (item("PROFILE"), False),  # the seller's, not the region's
    (item("REPORT#NAX#T#x"), False),
    # Item kinds the purge does not name: its region attribute, else its sort key, says whose they are.
    (item("COVER#NA#ATVPDKIKX0DER#GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE"), True),
    (item("COVER#EU#A1PA6795UKMFR9#GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE"), False),
    (item("QUERY#q1", "NA"), True),
    (item("QUERY#q1", "EU"), False),
    (item("BACKFILL#NA"), True),
])
def test_a_regions_purge_takes_its_own_items_only(entry: dict[str, Any], taken: bool) -> None:
    assert _of_region(entry, "NA") is taken


def test_the_last_connection_is_the_one_with_no_other_conn_item() -> None:
    own = "CONN#NA"
    assert _only_connection([item("CONN#NA"), item("PROFILE"), item("TOKEN#EU")], own)
    assert not _only_connection([item("CONN#NA"), item("CONN#EU")], own)
    assert _only_connection([], own)


# --- the sweep over its adapters ----------------------------------------------------------------------


class Untouched:
    """An adapter the decision under test must never reach (S3 and the receipts, here)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the sweep reached an adapter it should not: {name}")


@dataclass
class Connections:
    """PurgeStates in memory, as far as a claim reaches it: connection items by (pk, sk); `start` applies
    only under its DynamoDB condition, and every write is recorded as (operation, arguments)."""

    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    reads: int = 0
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def read(self, key: dict[str, str]) -> dict[str, Any] | None:
        self.reads += 1
        found = self.items.get((key["pk"], key["sk"]))
        return dict(found) if found is not None else None

    def start(self, key: dict[str, str], *, status: str, purge_after: str, started_at: str,
              counters: tuple[str, ...]) -> bool:
        self.writes.append(("start", {"key": key, "status": status, "purge_after": purge_after,
                                      "started_at": started_at, "counters": counters}))
        found = self.items.get((key["pk"], key["sk"]))
        if found is None or found.get("status") != status or found.get("purge_after") != purge_after:
            return False
        found.update({"purge_run": purge_after, "purge_started_at": started_at},
                     **{f"purged_{name}": 0 for name in counters})
        return True


def connections(connection: dict[str, Any] | None) -> Connections:
    """PurgeStates holding A1SELLER01's CONN#NA item (none when `connection` is None)."""
    if connection is None:
        return Connections()
    return Connections({("SELLER#A1SELLER01", "CONN#NA"): dict(connection)})


class Partitions:
    """TableItems in memory, as far as choosing what to delete reaches it: the items by partition."""

    def __init__(self, partitions: dict[str, list[dict[str, Any]]]) -> None:
        self.partitions = partitions

    def partition(self, pk: str) -> Iterator[dict[str, Any]]:
        return iter([dict(entry) for entry in self.partitions.get(pk, [])])


def sweep_over(*, states: Any = None, items: Any = None) -> RetentionSweep:
    """The sweep with these adapters; whichever is not given must not be reached."""
    return RetentionSweep(states=states or Untouched(), items=items or Untouched(), objects=Untouched(),
                          receipts=Untouched())


# --- one work item ---------------------------------------------------------------------------------------


def test_an_item_no_longer_due_is_skipped_after_one_read(fixed_clock: FixedClock) -> None:
    # Found by the finder, then re-authorized (or already purged) before its message was consumed: gone here.
    states = Connections()
    sweep = sweep_over(states=states)
    report = SweepReport()

    for _ in range(2):  # found by two finder runs: each message costs one read, nothing more
        sweep.purge_item({"seller_id": "A1SELLER01", "region": "NA"}, lambda: 900_000, report)

    assert (report.due, report.skipped, report.purged, report.failed, report.stopped) == (2, 2, 0, 0, None)
    assert states.reads == 2


# --- bounded retries --------------------------------------------------------------------------------


@dataclass
class Bucket:
    """list_object_versions / delete_objects over a set of (key, version); `refuse` maps a key to the number
    of DeleteObjects calls that report it in Errors; `immortal` keys are confirmed deleted but stay."""

    versions: set[tuple[str, str]] = field(default_factory=set)
    refuse: dict[str, int] = field(default_factory=dict)
    immortal: set[str] = field(default_factory=set)
    deletes: list[int] = field(default_factory=list)

    def list_object_versions(self, Bucket: str, Prefix: str, MaxKeys: int) -> dict[str, Any]:
        listed = sorted(v for v in self.versions if v[0].startswith(Prefix))[:MaxKeys]
        return {"Versions": [{"Key": k, "VersionId": v} for k, v in listed]}

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        assert Delete["Quiet"] is True and len(Delete["Objects"]) <= DELETE_OBJECTS_MAX
        self.deletes.append(len(Delete["Objects"]))
        errors = []
        for entry in Delete["Objects"]:
            key, version = entry["Key"], entry["VersionId"]
            if self.refuse.get(key, 0) > 0:
                self.refuse[key] -= 1
                errors.append({"Key": key, "VersionId": version, "Code": "SlowDown"})
            elif key not in self.immortal:
                self.versions.discard((key, version))
        return {"Errors": errors} if errors else {}


def objects(count: int, prefix: str = "sellers/k1/NA/") -> set[tuple[str, str]]:
    return {(f"{prefix}r{n:05d}.tsv", "v1") for n in range(count)}


def test_versions_go_one_listing_page_at_a_time_until_a_fresh_listing_is_empty() -> None:
    bucket = Bucket(versions=objects(2_500) | objects(3, "sellers/k2/NA/"))

    counts = S3Purge(bucket, "data", sleep=lambda _: None).delete_versions("sellers/k1/")

    assert counts.versions == 2_500 and counts.delete_markers == 0
    assert bucket.deletes == [1_000, 1_000, 500]
    assert bucket.versions == objects(3, "sellers/k2/NA/")


def test_only_the_refused_keys_are_sent_again_with_growing_pauses() -> None:
    bucket = Bucket(versions=objects(4), refuse={"sellers/k1/NA/r00001.tsv": 3})
    pauses: list[float] = []

    S3Purge(bucket, "data", sleep=pauses.append).delete_versions("sellers/k1/")

    assert bucket.deletes == [4, 1, 1, 1]
    assert pauses == sorted(pauses) and len(pauses) == 3 and max(pauses) <= MAX_DELAY
    assert bucket.versions == set()


def test_keys_refused_on_every_attempt_leave_the_purge_incomplete_without_naming_them() -> None:
    bucket = Bucket(versions=objects(2), refuse={"sellers/k1/NA/r00000.tsv": 100})
    pauses: list[float] = []

    with pytest.raises(PurgeIncomplete) as refused:
        S3Purge(bucket, "data", sleep=pauses.append).delete_versions("sellers/k1/")

    assert len(pauses) == ATTEMPTS - 1
    assert str(refused.value) == "1 object versions could not be deleted (SlowDown)"


def test_versions_that_survive_a_confirmed_deletion_stop_the_purge() -> None:
    bucket = Bucket(versions=objects(3), immortal={"sellers/k1/NA/r00002.tsv"})

    with pytest.raises(PurgeIncomplete, match="1 object versions survived deletion"):
        S3Purge(bucket, "data", sleep=lambda _: None).delete_versions("sellers/k1/")

    assert bucket.deletes == [3]  # no second DeleteObjects of what S3 already confirmed


CLAIM = PurgeClaim({"pk": "SELLER#A1SELLER01", "sk": "CONN#NA"}, "REVOKED", "2026-11-01T00:00:00Z")


def cancelled(reasons: list[str]) -> ClientError:
    return ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                        "CancellationReasons": [{"Code": reason} for reason in reasons]}, "TransactWriteItems")


@dataclass
class Table:
    """transact_write_items that cancels the first `conflicts` transactions (another write touched one of
    their items), or every one whose claim `broken` says no longer holds; records each transaction."""

    conflicts: int = 0
    broken: bool = False
    transactions: list[list[dict[str, Any]]] = field(default_factory=list)

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.transactions.append(TransactItems)
        if self.broken:
            raise cancelled(["ConditionalCheckFailed"] + ["None"] * (len(TransactItems) - 1))
        if self.conflicts:
            self.conflicts -= 1
            raise cancelled(["None", "TransactionConflict"] + ["None"] * (len(TransactItems) - 2))
        return {}


def keys(count: int) -> list[dict[str, str]]:
    return [{"pk": "SELLER#A1SELLER01", "sk": f"JOB#{n}"} for n in range(count)]


def test_items_are_deleted_99_at_a_time_each_under_the_claims_check() -> None:
    table, pauses = Table(), []

    assert TableItems(table, "connections", sleep=pauses.append).delete(keys(250), CLAIM) == 250

    assert [len(actions) for actions in table.transactions] == [100, 100, 53]
    for actions in table.transactions:
        check = actions[0]["ConditionCheck"]
        assert check["Key"] == CLAIM.key and check["ConditionExpression"] == PurgeClaim.CONDITION
        assert check["ExpressionAttributeValues"] == {":claimed_status": "REVOKED",
                                                      ":claimed_purge": "2026-11-01T00:00:00Z"}
        assert all("Delete" in action and "ConditionExpression" not in action["Delete"] for action in actions[1:])
    assert pauses == []


def test_transactions_cancelled_by_a_conflict_are_sent_again_with_growing_pauses() -> None:
    table, pauses = Table(conflicts=2), []

    assert TableItems(table, "connections", sleep=pauses.append).delete(keys(3), CLAIM) == 3

    assert len(table.transactions) == 3 and pauses == [0.05, 0.1]


def test_transactions_cancelled_every_time_leave_the_purge_incomplete() -> None:
    table, pauses = Table(conflicts=100), []

    with pytest.raises(PurgeIncomplete, match=f"cancelled {ATTEMPTS} times \\(TransactionConflict\\)"):
        TableItems(table, "connections", sleep=pauses.append).delete(keys(3), CLAIM)

    assert len(table.transactions) == ATTEMPTS and len(pauses) == ATTEMPTS - 1


def test_a_broken_claim_stops_the_deletions_at_once() -> None:
    table, pauses = Table(broken=True), []

    with pytest.raises(TransactionCancelled):
        TableItems(table, "connections", sleep=pauses.append).delete(keys(200), CLAIM)

    assert len(table.transactions) == 1 and pauses == []  # never retried, no later transaction sent


@pytest.mark.parametrize(("item", "holds"), [
    ({"status": "REVOKED", "purge_after": "2026-11-01T00:00:00Z", "purge_run": "2026-11-01T00:00:00Z"}, True),
    ({"status": "ACTIVE", "purge_run": "2026-11-01T00:00:00Z"}, False),  # re-authorized
    ({"status": "REVOKED", "purge_after": "2026-12-01T00:00:00Z", "purge_run": "2026-11-01T00:00:00Z"}, False),
    ({"status": "REVOKED", "purge_after": "2026-11-01T00:00:00Z"}, False),  # not claimed
    (None, False),
])
def test_a_claim_holds_while_the_connection_is_as_the_purge_found_it(item: dict[str, Any] | None,
                                                                    holds: bool) -> None:
    assert CLAIM.holds(item) is holds


# --- what a purge claims and deletes ------------------------------------------------------------------


SELLER_ITEMS = [item("CONN#NA"), item("TOKEN#NA"), item("PLAN#NA"), item("JOB#j1", "NA"), item("PROFILE"),
                item("CONN#EU"), item("TOKEN#EU"), item("JOB#j2", "EU")]
CANDIDATES = [{"pk": "CANDIDATE#A1SELLER01", "sk": "CONSENT#c1"}]


def due(region: str = "NA", status: str = "REVOKED") -> _Due:
    return _Due("A1SELLER01", region, status, "2026-11-01T00:00:00Z", "2026-11-29T12:00:00Z",
                dict.fromkeys(COUNTERS, 0))


def sks(keys: list[dict[str, str]]) -> set[str]:
    return {key["sk"] for key in keys}


def test_a_region_with_another_connection_left_takes_only_its_own_items() -> None:
    sweep = sweep_over(items=Partitions({"SELLER#A1SELLER01": SELLER_ITEMS, "CANDIDATE#A1SELLER01": CANDIDATES}))

    assert sks(sweep._doomed(due("NA"))) == {"TOKEN#NA", "PLAN#NA", "JOB#j1"}
    assert sweep._prefixes(due("NA")) == [f"sellers/{due().seller_key}/NA/"]


def test_the_last_connection_takes_everything_of_the_seller_but_its_own_conn_item() -> None:
    remaining = [entry for entry in SELLER_ITEMS if not entry["sk"].endswith("EU") and entry["sk"] != "JOB#j2"]
    sweep = sweep_over(items=Partitions({"SELLER#A1SELLER01": remaining, "CANDIDATE#A1SELLER01": CANDIDATES}))

    # A deletion request takes the consents still waiting for Amazon too; a revoked seller's waiting
    # consent is its re-authorization, left to the verifier.
    assert sks(sweep._doomed(due("NA", "DELETION_REQUESTED"))) == {"TOKEN#NA", "PLAN#NA", "JOB#j1", "PROFILE",
                                                                   "CONSENT#c1"}
    assert sks(sweep._doomed(due("NA"))) == {"TOKEN#NA", "PLAN#NA", "JOB#j1", "PROFILE"}
    key = due().seller_key
    assert sweep._prefixes(due("NA")) == [f"sellers/{key}/", f"exports/{key}/"]


@pytest.mark.parametrize("connection", [
    None,
    {"status": "ACTIVE", "purge_after": "2026-11-01T00:00:00Z"},  # re-authorized
    {"status": "REVOKED"},  # no purge date
    {"status": "DELETION_REQUESTED", "purge_after": "2026-11-29T12:00:01Z"},  # a second early
])
def test_a_connection_that_is_not_due_is_not_claimed(fixed_clock: FixedClock,
                                                     connection: dict[str, Any] | None) -> None:
    states = connections(connection)

    assert sweep_over(states=states)._claim("A1SELLER01", "NA") is None
    assert states.writes == []


def test_a_due_connection_is_claimed_with_counters_from_zero(fixed_clock: FixedClock) -> None:
    states = connections({"status": "DELETION_REQUESTED", "purge_after": "2026-11-29T12:00:00Z"})

    claimed = sweep_over(states=states)._claim("A1SELLER01", "NA")

    assert claimed is not None and claimed.status == "DELETION_REQUESTED"
    assert set(claimed.counted.values()) == {0}
    ((operation, start),) = states.writes
    assert operation == "start" and start["purge_after"] == "2026-11-29T12:00:00Z"
    assert start["counters"] == COUNTERS  # every counter of the purge starts at zero on the connection item


def test_a_resumed_purge_keeps_what_the_crashed_run_counted(fixed_clock: FixedClock) -> None:
    states = connections({"status": "REVOKED", "purge_after": "2026-11-01T00:00:00Z",
                          "purge_run": "2026-11-01T00:00:00Z", "purge_started_at": "2026-11-28T00:00:00Z",
                          "purged_s3_versions": 40, "purged_table_items": 7})

    claimed = sweep_over(states=states)._claim("A1SELLER01", "NA")

    assert claimed is not None and claimed.started_at == "2026-11-28T00:00:00Z"
    counted = claimed.counted
    assert (counted["s3_versions"], counted["table_items"], counted["quota_items"]) == (40, 7, 0)
    assert states.writes == []
