"""The data-subject requests: access, export, deletion (and its rollback), token removal, correction.

Each method takes a validated seller id and returns the JSON answer, or raises a `RequestError`
whose message tells the operator what to do next. Nothing here logs a seller id, an e-mail, a token
or a presigned URL; the handler writes the audit record of every request.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from data_requests.export import ExportBuilder
from data_requests.settings import DataRequestsSettings
from seller_insights import clock
from seller_insights.data_rights import DataRightsRepository, SellerSnapshot
from seller_insights.errors import (
    BadInput,
    ConcurrentChange,
    Conflict,
    NoDeletionPending,
    PurgeDatePassed,
    SellerGone,
    UnknownSeller,
)
from seller_insights.object_keys import export_key
from seller_insights.pseudonyms import seller_key
from seller_insights.redaction import register_secret

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

PRESIGNED_URL_SECONDS = 900
CONTACT_FIELDS = ("contact_email", "contact_name")
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


def plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints (or floats), recursively, for JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return value


class DataRequestsService:
    def __init__(self, settings: DataRequestsSettings, *, repository: DataRightsRepository, s3: S3Client,
                 exports: ExportBuilder | None = None) -> None:
        self._settings = settings
        self._repository = repository
        self._s3 = s3
        self._exports = exports or ExportBuilder(s3, settings.data_bucket)

    def _known(self, seller_id: str) -> SellerSnapshot:
        snapshot = self._repository.snapshot(seller_id)
        if not snapshot.exists:
            raise UnknownSeller(UNKNOWN_SELLER)
        return snapshot

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
            "profile": _profile(snapshot.profile),
        }
        return Answer(body, {"connections": len(connections),
                             "reports": sum(c["reports"] for c in storage.values())})

    # --- export ----------------------------------------------------------------------------------

    def export(self, seller_id: str, request_id: str) -> Answer:
        snapshot = self._known(seller_id)
        key = export_key(seller_id, request_id)
        connections = [plain({"seller_id": seller_id, **c}) for c in snapshot.public_connections(clock.epoch_seconds())]
        profile = _profile(snapshot.profile)
        result = self._exports.build(key=key, seller_id=seller_id, generated_at=clock.now(),
                                     connections=connections, profile=profile,
                                     reports=(plain(r) for r in self._repository.reports(seller_id)))
        url = str(self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._settings.data_bucket, "Key": key,
                    "ResponseContentDisposition": f'attachment; filename="{request_id}.zip"'},
            ExpiresIn=PRESIGNED_URL_SECONDS,
        ))
        register_secret(url)  # before anything could print it
        return Answer({"request_id": request_id, "expires_in": PRESIGNED_URL_SECONDS, "url": url,
                       "files": result.files, "bytes": result.bytes},
                      {"files": result.files, "bytes": result.bytes, "reports": result.reports,
                       "reports_missing": result.missing_reports})

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


def _profile(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    profile = {name: item[name] for name in (*CONTACT_FIELDS, "updated_at") if name in item}
    return plain(profile) if any(name in profile for name in CONTACT_FIELDS) else None
