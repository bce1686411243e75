"""The data-subject requests: access, export, deletion (and its rollback), token removal, correction.

Each method takes a validated seller id and returns the JSON answer, or raises a `RequestError`
whose message tells the operator what to do next. Nothing here logs a seller id, an e-mail, a token
or a presigned URL; the handler writes the audit record of every request.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from data_requests.settings import DataRequestsSettings
from seller_insights import clock
from seller_insights.data_rights import CONTACT_FIELDS, DataRightsRepository, SellerSnapshot, public_profile
from seller_insights.dynamo import plain
from seller_insights.errors import (
    BadInput,
    ConcurrentChange,
    Conflict,
    NoDeletionPending,
    NotFound,
    PurgeDatePassed,
    SellerGone,
    UnknownSeller,
)
from seller_insights.export_requests import MESSAGE_KIND, ExportRequests, ExportStatus
from seller_insights.object_keys import export_key
from seller_insights.pseudonyms import seller_key
from seller_insights.redaction import register_secret
from seller_insights.report_catalog import CATALOG, ReportSpec, WindowKind
from seller_insights.report_jobs import PlanRepository

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client
    from types_boto3_sqs.client import SQSClient

PRESIGNED_URL_SECONDS = 900  # at most 15 minutes
BACKFILL_SAVE_ATTEMPTS = 3
# The bucket's lifecycle expires export ZIPs after 7 days (infra/constructs/data_stores.py).
EXPORT_LIFETIME = timedelta(days=7)
_EXPORT_REQUEST_ID = re.compile(r"[A-Za-z0-9=_-]{1,64}")
PROGRESS_FIELDS = ("objects_done", "objects_total", "bytes_done", "bytes_total", "zip_bytes")
MAX_EMAIL = 254
MAX_NAME = 200
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
UNKNOWN_SELLER = ("No seller with this id has connected Seller Insights (or its data was already purged). Check "
                  "the selling partner id; nothing was changed.")


@dataclass(frozen=True)
class Answer:
    body: dict[str, Any]
    detail: dict[str, int]  # counts for the audit record
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # False: the request's audit record stays STARTED; someone else completes it (the export worker).
    completes_audit: bool = True


class DataRequestsService:
    def __init__(self, settings: DataRequestsSettings, *, repository: DataRightsRepository, s3: S3Client,
                 exports: ExportRequests, sqs: SQSClient, plans: PlanRepository | None = None) -> None:
        """`plans`: the report plans (the backfill route; None: it is refused)."""
        self._plans = plans
        self._settings = settings
        self._repository = repository
        self._s3 = s3
        self._exports = exports
        self._sqs = sqs

    def _known(self, seller_id: str) -> SellerSnapshot:
        snapshot = self._repository.snapshot(seller_id)
        if not snapshot.exists:
            raise UnknownSeller(UNKNOWN_SELLER)
        return snapshot

    # --- operators' tools ---------------------------------------------------------------------------

    def seller_key(self, seller_id: str) -> Answer:
        """The opaque key the logs, object keys and audit records name the seller by. Any seller id has one
        (a purged seller's old log lines too), so an unknown seller is no error."""
        return Answer({"seller_key": seller_key(seller_id)}, {})

    def backfill(self, seller_id: str, body: dict[str, Any]) -> Answer:
        """Fetch a report type again from a date for each of the seller's connections: each cursor of the type
        is rewound (coverage.Cursor.rewind) and the plan made due, so the next plan-reports run plans it
        (at the planner's pace). Within the catalog's history of the type (its `backfill_days`)."""
        report_spec, since = backfill_request(body, clock.now())
        snapshot = self._known(seller_id)
        if self._plans is None:
            raise BadInput("This deployment cannot record backfills (no report plans).")
        label = f"b{clock.epoch_seconds()}"
        counts = {"connections": 0, "cursors": 0, "not_planned": 0}
        for connection in snapshot.connections:
            rewound = self._rewind(seller_id, str(connection["region"]), report_spec, since, label)
            if rewound is None:
                counts["not_planned"] += 1
            else:
                counts["connections"] += 1
                counts["cursors"] += rewound
        body_out: dict[str, Any] = {"report_type": report_spec.report_type, "since": since.strftime("%Y-%m-%d"),
                                    "pull": label, **counts}
        if not counts["cursors"]:
            body_out["note"] = ("No connection of this seller has planned this type yet: its first plan fetches "
                                "its history anyway; nothing was changed.")
        return Answer(body_out, counts)

    def _rewind(self, seller_id: str, region: str, report_spec: ReportSpec, since: datetime,
                label: str) -> int | None:
        """Cursors rewound on the connection's plan (None: no plan, the connection pulls nothing)."""
        assert self._plans is not None
        for _ in range(BACKFILL_SAVE_ATTEMPTS):
            plan = self._plans.get(seller_id, region)
            if plan is None:
                return None
            rewound = sum(cursor.rewind(report_spec, int(since.timestamp()), label)
                          for cursor in plan.coverage.values() if cursor.report_type == report_spec.report_type)
            if not rewound:
                return 0
            plan.next_plan_at = min(plan.next_plan_at, clock.epoch_seconds())
            if self._plans.save(plan):
                return rewound
        raise ConcurrentChange("The seller's report plan kept changing while the backfill was recorded: send the "
                               "request again.")

    # --- access ----------------------------------------------------------------------------------

    def access(self, seller_id: str) -> Answer:
        snapshot = self._known(seller_id)
        storage: dict[str, dict[str, int]] = defaultdict(lambda: {"reports": 0, "bytes": 0})
        for row in self._repository.items(seller_id, "REPORT#", projection="#region, #bytes",
                                          names={"#region": "region", "#bytes": "bytes"}):
            region = storage[str(row.get("region", "unknown"))]
            region["reports"] += 1
            region["bytes"] += int(row.get("bytes", 0))
        connections = [plain(c) for c in snapshot.public_connections(clock.epoch_seconds())]
        body: dict[str, Any] = {
            "seller_key": seller_key(seller_id),
            "connections": connections,
            "stored_reports": {region: dict(counts) for region, counts in sorted(storage.items())},
            "profile": public_profile(snapshot.profile),
        }
        return Answer(body, {"connections": len(connections),
                             "reports": sum(c["reports"] for c in storage.values())})

    # --- export ----------------------------------------------------------------------------------

    def export(self, seller_id: str, request_id: str) -> Answer:
        """Record the export request (QUEUED, with the reports it will hold as counted now) and queue it for
        the export worker (data_exports). 202 with the status route in `Location`; the request's audit
        record stays STARTED until the worker completes it."""
        self._known(seller_id)
        objects = report_bytes = 0
        for row in self._repository.items(seller_id, "REPORT#", projection="#bytes", names={"#bytes": "bytes"}):
            objects += 1
            report_bytes += int(row.get("bytes", 0))
        now = clock.now()
        self._exports.create(seller_id, request_id, now=now, objects=objects, report_bytes=report_bytes)
        try:
            # One request per message, in the work-item shape of seller_insights.fanout.
            self._sqs.send_message(QueueUrl=self._settings.export_queue_url, MessageBody=json.dumps(
                {MESSAGE_KIND: [{"seller_id": seller_id, "request_id": request_id}]}))
        except Exception:
            self._exports.failed(seller_id, request_id, reason="not_queued", now=clock.now())
            raise
        status_path = f"/admin/sellers/{seller_id}/export/{request_id}"
        return Answer({"request_id": request_id, "status": ExportStatus.QUEUED.value, "objects_total": objects,
                       "bytes_total": report_bytes, "status_path": status_path},
                      {"reports": objects, "bytes": report_bytes}, status=202, headers={"Location": status_path},
                      completes_audit=False)

    def export_status(self, seller_id: str, export_request_id: str) -> Answer:
        """Where an export request stands; when DONE (and not expired), a presigned GET of its ZIP."""
        if not _EXPORT_REQUEST_ID.fullmatch(export_request_id):
            raise BadInput("The export request id is the request_id the export answered (letters, digits, "
                           "'-', '_', '='; at most 64).")
        item = self._exports.get(seller_id, export_request_id)
        if item is None:
            raise NotFound("No export request with this id for this seller: request ids come from POST "
                           ".../export, and a request is forgotten 8 days after it was made.")
        item = plain(item)
        status = str(item["status"])
        body: dict[str, Any] = {"request_id": export_request_id, "status": status,
                                **{name: int(item.get(name, 0)) for name in PROGRESS_FIELDS}}
        for name in ("requested_at", "started_at", "completed_at", "reason", "files"):
            if name in item:
                body[name] = item[name]
        if status == ExportStatus.DONE.value:
            completed = datetime.fromisoformat(str(item["completed_at"]).replace("Z", "+00:00"))
            if clock.now() >= completed + EXPORT_LIFETIME:
                body["status"] = "EXPIRED"  # the lifecycle deleted (or is about to delete) the ZIP
            else:
                body.update(self._download(seller_id, export_request_id))
        return Answer(body, {"done": int(body["status"] == ExportStatus.DONE.value),
                             "objects_done": body["objects_done"]})

    def _download(self, seller_id: str, export_request_id: str) -> dict[str, Any]:
        url = str(self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._settings.data_bucket, "Key": export_key(seller_id, export_request_id),
                    "ResponseContentDisposition": f'attachment; filename="{export_request_id}.zip"'},
            ExpiresIn=PRESIGNED_URL_SECONDS,
        ))
        register_secret(url)  # before anything could print it
        return {"url": url, "expires_in": PRESIGNED_URL_SECONDS}

    # --- deletion --------------------------------------------------------------------------------

    def request_deletion(self, seller_id: str) -> Answer:
        self._known(seller_id)
        try:
            outcome = self._repository.request_deletion(seller_id, clock.now(), self._settings.purge_after_days)
        except ConcurrentChange:
            raise Conflict("The seller's connections changed while the request ran (a new consent or a "
                           "revocation). Send the deletion request again.") from None
        return Answer({"purge_after": outcome.purge_after, "connections": outcome.connections,
                       "pending_consents_destroyed": outcome.candidates},
                      {"connections": outcome.connections, "new": int(outcome.new), "candidates": outcome.candidates})

    def rollback_deletion(self, seller_id: str) -> Answer:
        self._known(seller_id)
        try:
            outcome = self._repository.rollback_deletion(seller_id, clock.now())
        except NoDeletionPending:
            raise Conflict("No deletion request is pending for this seller, so there is nothing to roll "
                           "back. GET the seller to see the connection states.") from None
        except PurgeDatePassed as exc:
            raise Conflict(f"The purge date ({exc.purge_after}) has passed: the seller's data is being or "
                           "has been deleted and cannot be restored. The seller must connect again.") from None
        except ConcurrentChange:
            raise Conflict("The seller's connections changed while the rollback ran. GET the seller, then "
                           "send the rollback again if a deletion is still pending.") from None
        return Answer({"connections": outcome.connections, "statuses": outcome.statuses},
                      {"connections": outcome.connections})

    # --- token removal ---------------------------------------------------------------------------

    def remove_tokens(self, seller_id: str) -> Answer:
        self._known(seller_id)
        try:
            count, candidates = self._repository.remove_tokens(seller_id, clock.now())
        except ConcurrentChange:
            raise Conflict("The seller's connections changed while the tokens were being removed. Send "
                           "the request again.") from None
        return Answer({"connections": count, "pending_consents_destroyed": candidates},
                      {"connections": count, "candidates": candidates})

    # --- correction ------------------------------------------------------------------------------

    def correct(self, seller_id: str, body: dict[str, Any]) -> Answer:
        changes = validate_correction(body)
        self._known(seller_id)
        try:
            item = self._repository.correct_profile(seller_id, changes, clock.now())
        except SellerGone:
            # Purged while the request ran, or only a consent Amazon has not confirmed yet: a profile
            # written now would belong to no connection.
            raise UnknownSeller(UNKNOWN_SELLER) from None
        except ConcurrentChange:
            raise Conflict("The seller's connections changed while the correction ran (a purge). Send the "
                           "correction again.") from None
        answer = {name: item.get(name) for name in CONTACT_FIELDS}
        answer["updated_at"] = item.get("updated_at")
        return Answer(answer, {"fields": len(changes)})


def validate_correction(body: dict[str, Any]) -> dict[str, str | None]:
    unknown = sorted(str(name) for name in body if name not in CONTACT_FIELDS)
    if unknown:
        named = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise BadInput(f"Unknown field(s) {named}: only contact_email and contact_name can be corrected.")
    if not body:
        raise BadInput("Nothing to correct: send contact_email and/or contact_name (null removes a field).")
    changes: dict[str, str | None] = {}
    for name, raw in body.items():
        if raw is None:
            changes[name] = None
            continue
        if not isinstance(raw, str):
            raise BadInput(f"{name} must be a string (or null to remove it).")
        value = raw.strip()
        if name == "contact_email":
            if len(value) > MAX_EMAIL or not _EMAIL.fullmatch(value):
                raise BadInput("contact_email is not an e-mail address (name@example.com, at most 254 "
                               "characters). Correct it and send the request again.")
        elif not value or len(value) > MAX_NAME or _CONTROL.search(value):
            raise BadInput(f"contact_name must be 1 to {MAX_NAME} characters without control characters.")
        changes[name] = value
    return changes


def backfill_request(body: dict[str, Any], now: datetime) -> tuple[ReportSpec, datetime]:
    """The report type and start day of a backfill request, checked against the catalog."""
    name = body.get("report_type")
    report_spec = CATALOG.get(str(name)) if isinstance(name, str) else None
    if report_spec is None:
        raise BadInput("report_type must be one of the catalog's types: " + ", ".join(sorted(CATALOG)) + ".")
    if report_spec.window not in (WindowKind.UPDATED, WindowKind.DAY):
        raise BadInput(f"{report_spec.report_type} has no history to fetch again (Amazon keeps only its current "
                       "state, or the planner discovers its reports by date already).")
    raw = body.get("since")
    try:
        since = datetime.strptime(str(raw), "%Y-%m-%d").replace(tzinfo=now.tzinfo)
    except ValueError:
        raise BadInput('since must be a date such as "2026-01-31" (UTC).') from None
    earliest = (now - timedelta(days=report_spec.backfill_days)).replace(hour=0, minute=0, second=0, microsecond=0)
    if since < earliest:
        raise BadInput(f"{report_spec.report_type} reaches back {report_spec.backfill_days} days at most: since "
                       f"must be {earliest.strftime('%Y-%m-%d')} or later.")
    if since >= now:
        raise BadInput("since must be in the past.")
    return report_spec, since
