"""Planning cursors, job states, report-id lookups and stored-report rows (internal-contracts.md).

All of a seller's items share `pk=SELLER#{id}`, so the retention sweep finds everything with one
Query per seller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from seller_insights import clock, dynamo
from seller_insights.coverage import Cursor, epoch_of, key_of
from seller_insights.dynamo import applied, conditional
from seller_insights.observability import get_logger
from seller_insights.report_catalog import CATALOG
from seller_insights.repositories import SHARDS, iso, shard

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table

PLAN_DUE_INDEX = "by_plan_due"
# Jobs parked in the table until `wake_at` (waits longer than SQS's delay, or a job out of self-hops); the
# fetcher's wake-jobs schedule finds them (report_fetcher.wakes). Sparse: only parked jobs have the keys.
WAKE_DUE_INDEX = "by_wake_due"
PERMISSION_DENIED = "permission_denied"  # the error of a job Amazon refused for a role the seller or app lacks
DENIED_RETRY_SECONDS = 24 * 3600  # a type refused for a missing role is tried again daily, not every minute
JOB_TTL_SECONDS = 35 * 24 * 3600


def plan_key(seller: str, region: str) -> dict[str, str]:
    return {"pk": f"SELLER#{seller}", "sk": f"PLAN#{region}"}


def job_key(seller: str, job_id: str) -> dict[str, str]:
    return {"pk": f"SELLER#{seller}", "sk": f"JOB#{job_id}"}


def job_id(seller: str, region: str, report_type: str, window_start: str, window_end: str, *,
           scope: str | None = None, pull: str | None = None) -> str:
    """`scope`: the marketplace of a per-marketplace job; `pull`: a later pull of the same window (a retry
    after FAILED, "r1"...; a restatement, "s20261201"): a new job, whose object replaces the same key."""
    text = f"{seller}|{region}|{report_type}|{window_start}|{window_end}"
    text += "".join(f"|{name}={value}" for name, value in (("scope", scope), ("pull", pull)) if value)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Plan:
    seller: str
    region: str
    next_plan_at: int
    due: dict[str, int]
    enabled: list[str] | None
    marketplace_ids: list[str]
    # When getMarketplaceParticipations last decided marketplace_ids (epoch seconds; None: never).
    participations_checked_at: int | None = None
    # Every writer of the item bumps it (ADD version :one); the planner's and the fetcher's cursor writes
    # are conditional on the version they read. None: an item written before versions existed.
    version: int | None = 0
    coverage: dict[str, Cursor] = field(default_factory=dict)  # by Cursor.key
    # Report types Amazon refused for lack of a role (403 permission_denied): type -> epoch second from which
    # planning may try it again (PlanRepository.mark_denied / clear_denied). Always written, so that one
    # UpdateItem can set an entry.
    denied: dict[str, int] = field(default_factory=dict)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {**plan_key(self.seller, self.region), "seller_id": self.seller,
                                "region": self.region, "plan_shard": shard(self.seller, self.region),
                                "next_plan_at": self.next_plan_at, "due": self.due,
                                "marketplace_ids": self.marketplace_ids, "denied": self.denied,
                                "version": self.version or 0,
                                "coverage": {key: cursor.to_item() for key, cursor in self.coverage.items()}}
        if self.enabled is not None:
            item["enabled"] = self.enabled
        if self.participations_checked_at is not None:
            item["participations_checked_at"] = self.participations_checked_at
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Plan:
        return cls(seller=item["seller_id"], region=item["region"], next_plan_at=int(item["next_plan_at"]),
                   due={k: int(v) for k, v in item.get("due", {}).items()},
                   enabled=list(item["enabled"]) if "enabled" in item else None,
                   marketplace_ids=list(item.get("marketplace_ids", [])),
                   participations_checked_at=(int(item["participations_checked_at"])
                                              if "participations_checked_at" in item else None),
                   version=int(item["version"]) if "version" in item else None,
                   coverage={k: Cursor.from_item(v) for k, v in item.get("coverage", {}).items()},
                   denied={k: int(v) for k, v in item.get("denied", {}).items()})


def _read_version(version: int | None) -> Any:
    """The condition that the item is still the one read (and was not deleted meanwhile)."""
    if version is None:
        return Attr("pk").exists() & Attr("version").not_exists()
    return Attr("version").eq(version)


class PlanRepository:
    def __init__(self, table: Table) -> None:
        self._table = table

    def ensure(self, seller: str, region: str, marketplace_ids: list[str], now: int) -> None:
        """Create the cursor of a newly ACTIVE connection (due at once); keep an existing one."""
        applied(lambda: self._table.put_item(Item=Plan(seller, region, now, {}, None, marketplace_ids).to_item(),
                                             ConditionExpression=Attr("pk").not_exists()))

    def due(self, now: int) -> Iterator[Plan]:
        for number in range(SHARDS):
            condition = Key("plan_shard").eq(str(number)) & Key("next_plan_at").lte(now)
            for item in dynamo.query(self._table, IndexName=PLAN_DUE_INDEX, KeyConditionExpression=condition):
                yield Plan.from_item(item)

    def get(self, seller: str, region: str) -> Plan | None:
        item = self._table.get_item(Key=plan_key(seller, region), ConsistentRead=True).get("Item")
        return Plan.from_item(item) if item else None

    def save(self, plan: Plan) -> bool:
        """The planner's write: schedule and cursors, only if the item is still the version it read (never
        a deleted item brought back, never a concurrent change undone). False: re-read and plan again."""
        if not applied(lambda: self._table.update_item(
            Key=plan_key(plan.seller, plan.region),
            UpdateExpression="SET next_plan_at = :next, due = :due, coverage = :coverage ADD version :one",
            ConditionExpression=_read_version(plan.version),
            ExpressionAttributeValues={":next": plan.next_plan_at, ":due": plan.due, ":one": 1,
                                       ":coverage": {k: c.to_item() for k, c in plan.coverage.items()}},
        )):
            return False
        plan.version = (plan.version or 0) + 1
        return True

    def record_finished(self, job: Job, status: str, now: int, attempts: int = 5) -> bool:
        """A job ended DONE, NO_DATA or FAILED: its cursor learns it (see seller_insights.coverage). One
        conditional write on the version read; a concurrent writer makes it read again. A plan or cursor
        that is gone stays gone. True when the cursor changed."""
        report_spec = CATALOG.get(job.report_type)
        if report_spec is None:
            return False
        key = key_of(job.report_type, job.scope)
        for _ in range(attempts):
            plan = self.get(job.seller, job.region)
            cursor = plan.coverage.get(key) if plan else None
            if plan is None or cursor is None:
                return False
            if not cursor.finish(report_spec, epoch_of(job.window_end), job.pull, status, now):
                return False
            if self._write_cursor(job, key, cursor.to_item(), plan.version):
                return True
        get_logger().warning("coverage cursor not updated: the plan kept changing",
                             extra={"report_type": job.report_type})
        return False

    def _write_cursor(self, job: Job, key: str, cursor: dict[str, Any], version: int | None) -> bool:
        return applied(lambda: self._table.update_item(
            Key=plan_key(job.seller, job.region),
            UpdateExpression="SET coverage.#key = :cursor ADD version :one",
            ConditionExpression=_read_version(version),
            ExpressionAttributeNames={"#key": key},
            ExpressionAttributeValues={":cursor": cursor, ":one": 1},
        ))

    def delete(self, seller: str, region: str) -> None:
        self._table.delete_item(Key=plan_key(seller, region))

    def record_participations(self, seller: str, region: str, marketplace_ids: list[str],
                              checked_at: int) -> Plan | None:
        """The connection's marketplaces as getMarketplaceParticipations decided them (one UpdateItem that
        also bumps `version`, so a writer holding an older version re-reads). The plan as stored now, or
        None when the connection has no plan (paused or purged meanwhile: nothing is recreated)."""
        answer = conditional(lambda: self._table.update_item(
            Key=plan_key(seller, region),
            UpdateExpression="SET marketplace_ids = :mids, participations_checked_at = :at ADD version :one",
            ConditionExpression=Attr("pk").exists(),
            ExpressionAttributeValues={":mids": marketplace_ids, ":at": checked_at, ":one": 1},
            ReturnValues="ALL_NEW",
        ))
        return None if answer is None else Plan.from_item(answer["Attributes"])

    def mark_denied(self, seller: str, region: str, report_type: str, retry_at: int) -> None:
        """Record that Amazon refused `report_type` for lack of a role, to be tried again from `retry_at`.
        One UpdateItem (`SET denied.#type = :retry_at ADD version :one`), so a concurrent conditional plan
        write sees the version move and re-reads; a plan written before `denied` existed gets the map first.
        A deleted plan (connection gone) is left deleted."""
        names = {"#type": report_type}
        for _ in range(2):  # a concurrent writer may create the map between the two forms
            if applied(lambda: self._table.update_item(
                Key=plan_key(seller, region), UpdateExpression="SET denied.#type = :retry ADD version :one",
                ConditionExpression=Attr("denied").exists(), ExpressionAttributeNames=names,
                ExpressionAttributeValues={":retry": retry_at, ":one": 1},
            )):
                return
            if applied(lambda: self._table.update_item(
                Key=plan_key(seller, region), UpdateExpression="SET denied = :denied ADD version :one",
                ConditionExpression=Attr("pk").exists() & Attr("denied").not_exists(),
                ExpressionAttributeValues={":denied": {report_type: retry_at}, ":one": 1},
            )):
                return

    def clear_denied(self, seller: str, region: str, report_type: str) -> bool:
        """A report of the type was stored (or confirmed empty): it is permitted again. A read first (most
        types were never denied), then one UpdateItem `REMOVE denied.#type ADD version :one`."""
        names = {"#type": report_type}
        item: dict[str, Any] = self._table.get_item(Key=plan_key(seller, region), ProjectionExpression="denied.#type",
                                                    ExpressionAttributeNames=names).get("Item") or {}
        if report_type not in item.get("denied", {}):
            return False
        return applied(lambda: self._table.update_item(
            Key=plan_key(seller, region), UpdateExpression="REMOVE denied.#type ADD version :one",
            ConditionExpression="attribute_exists(denied.#type)", ExpressionAttributeNames=names,
            ExpressionAttributeValues={":one": 1},
        ))


class JobStatus(StrEnum):
    NEW = "NEW"
    WAITING = "WAITING"  # a report was requested (or reused); polling / waiting for the notification
    COOLDOWN = "COOLDOWN"  # FATAL: wait the type's cooldown, then request again
    DONE = "DONE"
    NO_DATA = "NO_DATA"  # CANCELLED by Amazon (no data), or DONE without a document
    FAILED = "FAILED"  # FATAL too often, a document that never arrived whole, or permission_denied
    ENDED = "ENDED"  # the connection is no longer ACTIVE: ended without calling Amazon
    EXPIRED = "EXPIRED"  # waited on quotas (or on Amazon) too long: its cursor did not move, planning re-plans it

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.NO_DATA, JobStatus.FAILED, JobStatus.ENDED, JobStatus.EXPIRED)


@dataclass
class Job:
    job_id: str
    seller: str
    region: str
    report_type: str
    window_start: str
    window_end: str
    marketplace_ids: list[str]
    status: JobStatus = JobStatus.NEW
    report_id: str | None = None  # the report id; for a Data Kiosk job, the query id
    attempts: int = 0
    polls: int = 0
    next_check_at: int = 0
    error: str | None = None
    version: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    document_attempts: int = 0  # downloads of the current document that failed (attempts counts FATAL reports)
    scope: str | None = None  # the marketplace of a per-marketplace job (its cursor, S3 key and REPORT# row)
    pull: str | None = None  # a later pull of the same window (retry "r{n}", restatement "s{yyyymmdd}")
    # Consecutive self-hops (re-queues by the fetcher onto its own queue) of the message that carries the job
    # now; it travels in the message ("hops") and is stored with the job (the notification path reads it).
    hops: int = 0
    # Parked: looked at again when the wake-jobs schedule finds it due (epoch seconds); no message carries it.
    wake_at: int | None = None

    @property
    def restartable(self) -> bool:
        """A terminal job that planning may start again under the same id (a re-planned window): one that
        EXPIRED, or one refused for permission whose retry time (next_check_at) has come."""
        if self.status is JobStatus.EXPIRED:
            return True
        return (self.status is JobStatus.FAILED and self.error == PERMISSION_DENIED
                and clock.epoch_seconds() >= self.next_check_at)

    def message(self) -> dict[str, Any]:
        body = {"job_id": self.job_id, "seller": self.seller, "region": self.region,
                "report_type": self.report_type, "window_start": self.window_start,
                "window_end": self.window_end, "marketplace_ids": self.marketplace_ids}
        for name in ("scope", "pull"):
            if getattr(self, name):
                body[name] = getattr(self, name)
        return body

    @classmethod
    def from_message(cls, body: dict[str, Any]) -> Job:
        job = cls(job_id=str(body["job_id"]), seller=str(body["seller"]), region=str(body["region"]),
                  report_type=str(body["report_type"]), window_start=str(body["window_start"]),
                  window_end=str(body["window_end"]), marketplace_ids=[str(m) for m in body["marketplace_ids"]],
                  scope=str(body["scope"]) if body.get("scope") else None,
                  pull=str(body["pull"]) if body.get("pull") else None, hops=int(body.get("hops") or 0))
        if job.job_id != job_id(job.seller, job.region, job.report_type, job.window_start, job.window_end,
                                scope=job.scope, pull=job.pull):
            raise ValueError("job id does not match the job")
        return job


class JobRepository:
    """Job states with optimistic versions: a duplicate delivery that lost the race stops cleanly."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def load_or_create(self, job: Job) -> Job:
        item = self._table.get_item(Key=job_key(job.seller, job.job_id), ConsistentRead=True).get("Item")
        if item is None:
            if applied(lambda: self._table.put_item(Item=self._item(job), ConditionExpression=Attr("pk").not_exists())):
                return job
            # Created meanwhile by another delivery of the same job: take its state.
            item = self._table.get_item(Key=job_key(job.seller, job.job_id), ConsistentRead=True)["Item"]
        return self._from_item(item)

    def save(self, job: Job) -> bool:
        """Write the job if nobody else changed it since we read it; False otherwise."""
        expected = job.version
        job.version += 1
        return applied(lambda: self._table.put_item(Item=self._item(job),
                                                    ConditionExpression=Attr("version").eq(expected)))

    def wake(self, seller: str, job_id: str, version: int) -> dict[str, Any] | None:
        """Un-park a parked job found due (`version` as the index showed it): REMOVE wake_at and wake_shard and
        bump the version, only if the job is still that version. The job's item as it is now, or None when
        it moved on meanwhile (a step, a notification or another wake-jobs run got there first)."""
        answer = conditional(lambda: self._table.update_item(
            Key=job_key(seller, job_id), UpdateExpression="REMOVE wake_at, wake_shard ADD version :one",
            ConditionExpression=Attr("version").eq(version) & Attr("wake_at").exists(),
            ExpressionAttributeValues={":one": 1}, ReturnValues="ALL_NEW"))
        return None if answer is None else dict(answer["Attributes"])

    def park_again(self, seller: str, job_id: str, version: int, wake_at: int) -> bool:
        """A woken job whose message SQS refused goes back to sleep (due at once), if nothing moved it since."""
        return applied(lambda: self._table.update_item(
            Key=job_key(seller, job_id), UpdateExpression="SET wake_at = :at, wake_shard = :shard ADD version :one",
            ConditionExpression=Attr("version").eq(version),
            ExpressionAttributeValues={":at": wake_at, ":shard": shard(seller, job_id), ":one": 1}))

    def remember_report_id(self, job: Job) -> None:
        self._remember(job, "REPORTID#")

    def remember_query_id(self, job: Job) -> None:
        """A Data Kiosk job: its query id is in `report_id`; the pointer is QUERYID# (query ids are not
        report ids, and both are unique only per seller)."""
        self._remember(job, "QUERYID#")

    def _remember(self, job: Job, prefix: str) -> None:
        assert job.report_id is not None
        self._table.put_item(Item={"pk": f"SELLER#{job.seller}", "sk": f"{prefix}{job.report_id}",
                                   "job_id": job.job_id, "region": job.region,
                                   "expires_at": clock.epoch_seconds() + JOB_TTL_SECONDS})

    def find_by_report_id(self, seller: str, report_id: str) -> Job | None:
        return self._find(seller, f"REPORTID#{report_id}")

    def find_by_query_id(self, seller: str, query_id: str) -> Job | None:
        return self._find(seller, f"QUERYID#{query_id}")

    def _find(self, seller: str, pointer_sk: str) -> Job | None:
        pointer: dict[str, Any] | None = self._table.get_item(
            Key={"pk": f"SELLER#{seller}", "sk": pointer_sk}, ConsistentRead=True).get("Item")
        if pointer is None:
            return None
        item = self._table.get_item(Key=job_key(seller, pointer["job_id"]), ConsistentRead=True).get("Item")
        return self._from_item(item) if item else None

    @staticmethod
    def _item(job: Job) -> dict[str, Any]:
        item: dict[str, Any] = {
            **job_key(job.seller, job.job_id), **job.message(), "status": job.status.value,
            "attempts": job.attempts, "polls": job.polls, "next_check_at": job.next_check_at,
            "document_attempts": job.document_attempts, "hops": job.hops,
            "version": job.version, "updated_at": iso(clock.now()),
            "expires_at": clock.epoch_seconds() + JOB_TTL_SECONDS,
        }
        for name in ("report_id", "error"):
            if getattr(job, name) is not None:
                item[name] = getattr(job, name)
        if job.extra:
            item["extra"] = job.extra
        if job.wake_at is not None:
            # Spread over the index's shards by job (one seller's many parked jobs do not share a partition).
            item.update(wake_at=job.wake_at, wake_shard=shard(job.seller, job.job_id))
        return item

    @staticmethod
    def _from_item(item: dict[str, Any]) -> Job:
        return Job(job_id=item["job_id"], seller=item["seller"], region=item["region"],
                   report_type=item["report_type"], window_start=item["window_start"],
                   window_end=item["window_end"], marketplace_ids=list(item["marketplace_ids"]),
                   status=JobStatus(item["status"]), report_id=item.get("report_id"),
                   attempts=int(item["attempts"]), polls=int(item["polls"]),
                   next_check_at=int(item["next_check_at"]), error=item.get("error"),
                   version=int(item["version"]), extra=dict(item.get("extra", {})),
                   document_attempts=int(item.get("document_attempts", 0)),
                   scope=item.get("scope"), pull=item.get("pull"), hops=int(item.get("hops", 0)),
                   wake_at=int(item["wake_at"]) if "wake_at" in item else None)

@dataclass(frozen=True)
class StoredReport:
    seller: str
    region: str
    report_type: str
    name: str  # "{window_start}#{window_end}" or the report id (settlement)
    report_id: str
    document_id: str
    s3_key: str
    bytes: int
    rows: int
    sha256: str
    source_charset: str
    undecodable: int
    dropped_columns: tuple[str, ...]  # only header cells shaped like column names
    dropped_unnamed: int = 0  # dropped header cells not shaped like column names (never stored)
    malformed_rows: int = 0  # rows of another field count than the header's: dropped
    blank_lines: int = 0
    nul_bytes: int = 0
    charset_rejected: bool = False  # Content-Type named a charset Amazon does not send
    window_start: str | None = None
    window_end: str | None = None


class ReportRepository:
    def __init__(self, table: Table) -> None:
        self._table = table

    def put(self, report: StoredReport, stored_at: datetime) -> None:
        item: dict[str, Any] = {
            "pk": f"SELLER#{report.seller}", "sk": f"REPORT#{report.region}#{report.report_type}#{report.name}",
            "region": report.region, "report_type": report.report_type, "report_id": report.report_id,
            "document_id": report.document_id, "s3_key": report.s3_key, "bytes": report.bytes,
            "rows": report.rows, "sha256": report.sha256, "source_charset": report.source_charset,
            "undecodable": report.undecodable, "dropped_columns": list(report.dropped_columns),
            "dropped_unnamed": report.dropped_unnamed, "malformed_rows": report.malformed_rows,
            "blank_lines": report.blank_lines, "nul_bytes": report.nul_bytes,
            "charset_rejected": report.charset_rejected, "stored_at": iso(stored_at),
        }
        if report.window_start:
            item.update(window_start=report.window_start, window_end=report.window_end)
        self._table.put_item(Item=item)

    def exists(self, seller: str, region: str, report_type: str, name: str) -> bool:
        key = {"pk": f"SELLER#{seller}", "sk": f"REPORT#{region}#{report_type}#{name}"}
        return "Item" in self._table.get_item(Key=key, ProjectionExpression="pk")
