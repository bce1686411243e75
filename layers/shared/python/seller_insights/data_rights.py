"""Data-subject rights on the connections table and the audit table (internal-contracts.md, issue 5).

The state changes a deletion request, its rollback and a token removal make, each as one DynamoDB
transaction over every region of the seller, so no reader ever sees half of one:

- deletion request: every connection -> DELETION_REQUESTED (`previous_status` kept), `purge_after`
  and `purge_shard` set, out of the refresh and re-authorization indexes, TOKEN# and PLAN# deleted.
  The sealed refresh token stays (a rollback resumes with it). A second request keeps the first date.
- rollback (before `purge_after`): back to `previous_status`; an ACTIVE connection gets its index
  attributes back (refresh due now) and its PLAN# item re-created from what the request kept.
- token removal: refresh token and cached access token deleted, TOKENS_REMOVED, out of the indexes,
  PLAN# deleted; the connection item stays.

Consents still waiting for Amazon to confirm their seller (seller_insights.candidates) hold a refresh
token too: a deletion request and a token removal destroy them, after the transaction (once the
connections are DELETION_REQUESTED, no candidate can be promoted any more). A consent Amazon confirms
in between becomes a connection the transaction did not see; its candidate is then gone when the
request comes to destroy it, and the request runs once more over the seller's connections.

Nothing here logs; audit records carry `seller_key` only, never the seller id, an e-mail or a token.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from seller_insights import dynamo
from seller_insights.candidates import Candidate, CandidateRepository
from seller_insights.coverage import view as coverage_view
from seller_insights.dynamo import condition_checked
from seller_insights.errors import (
    ConcurrentChange,
    NoDeletionPending,
    PurgeDatePassed,
    SellerGone,
    TransactionCancelled,
)
from seller_insights.marketplaces import MARKETPLACES, marketplace
from seller_insights.report_jobs import DENIED_RETRY_SECONDS, Plan, plan_key
from seller_insights.repositories import ConnectionStatus, access_token_key, connection_key, iso, shard

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table

PROFILE_SK = "PROFILE"
# What an operator sees for a region whose only record is a consent Amazon has not confirmed yet.
PENDING_VERIFICATION = "PENDING_VERIFICATION"
AUDIT_RETENTION_MONTHS = 25  # the CCPA asks for at least 24 months of request records
# Runs of a deletion request or token removal when consents keep being confirmed while it runs; after
# that the operator is asked to send the request again (ConcurrentChange).
DATA_REQUEST_PASSES = 3

# The only connection attributes an operator or the seller may see (an allowlist: a token, a sealed
# blob, a lease or an index attribute can never leak through a new field).
PUBLIC_CONNECTION_FIELDS = (
    "region", "status", "marketplace", "consented_at", "reauthorization_due_at", "consent_flow",
    "created_at", "updated_at", "revoked_at", "purge_after", "previous_status",
)


# The contact fields of the PROFILE item a seller (or an operator, by a correction) may set.
CONTACT_FIELDS = ("contact_email", "contact_name")


def public_profile(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """The PROFILE item as an operator or an export shows it (contact fields, `updated_at`), None without one."""
    if item is None:
        return None
    profile = {name: item[name] for name in (*CONTACT_FIELDS, "updated_at") if name in item}
    return dynamo.plain(profile) if any(name in profile for name in CONTACT_FIELDS) else None


def profile_key(seller_id: str) -> dict[str, str]:
    return {"pk": f"SELLER#{seller_id}", "sk": PROFILE_SK}


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def default_marketplace_ids(connection: dict[str, Any]) -> list[str]:
    """The marketplace the seller connected from, else the region's main one (as at consent)."""
    code = connection.get("marketplace")
    if code and code in MARKETPLACES:
        return [marketplace(code).marketplace_id]
    main = next(m for m in MARKETPLACES.values() if m.region.value == connection["region"])
    return [main.marketplace_id]


@dataclass(frozen=True)
class SellerSnapshot:
    """A seller's items as one consistent-enough read (CONN#, PLAN#, PROFILE)."""

    connections: list[dict[str, Any]]
    plans: dict[str, dict[str, Any]]  # region -> PLAN# item
    profile: dict[str, Any] | None
    candidates: list[Candidate] = field(default_factory=list)  # consents waiting for Amazon's confirmation

    @property
    def exists(self) -> bool:
        return bool(self.connections or self.candidates)

    def public_connections(self, now: int) -> list[dict[str, Any]]:
        """Each connection as an operator may see it, with the consents that wait for Amazon to confirm
        their seller; a region with only such consents shows as PENDING_VERIFICATION."""
        waiting: dict[str, list[dict[str, Any]]] = {}
        for candidate in sorted(self.candidates, key=lambda c: c.created_at):
            waiting.setdefault(candidate.region, []).append(candidate.public(now))
        public = [{**public_connection(c, self.plans.get(c["region"])),
                   "pending_candidates": waiting.pop(c["region"], [])} for c in self.connections]
        public += [{"region": region, "status": PENDING_VERIFICATION, "report_types": None,
                    "has_refresh_token": False, "pending_candidates": candidates}
                   for region, candidates in sorted(waiting.items())]
        return public


@dataclass(frozen=True)
class DeletionOutcome:
    purge_after: str | None  # the earliest purge date of the seller's connections (None: none to purge)
    connections: int
    new: bool  # False when every connection already had a pending deletion
    candidates: int = 0  # waiting consents destroyed


@dataclass(frozen=True)
class RollbackOutcome:
    connections: int
    statuses: dict[str, str] = field(default_factory=dict)  # region -> restored status


class DataRightsRepository:
    """The seller-level reads and the three transitions, on the connections table."""

    def __init__(self, table: Table, candidates: CandidateRepository | None = None) -> None:
        self._table = table
        self._client = table.meta.client
        self._candidates = candidates or CandidateRepository(table)  # consents live in the same table

    # --- reads ---------------------------------------------------------------------------------

    def items(self, seller_id: str, prefix: str, projection: str | None = None,
              names: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(f"SELLER#{seller_id}") & Key("sk").begins_with(prefix),
            "ConsistentRead": True,
        }
        if projection:
            request["ProjectionExpression"] = projection
        if names:
            request["ExpressionAttributeNames"] = names
        return dynamo.query(self._table, **request)

    def snapshot(self, seller_id: str) -> SellerSnapshot:
        connections = list(self.items(seller_id, "CONN#"))
        plans = {item["region"]: item for item in self.items(seller_id, "PLAN#")} if connections else {}
        return SellerSnapshot(connections=connections, plans=plans,
                              profile=self.profile(seller_id) if connections else None,
                              candidates=self._candidates.for_seller(seller_id))

    def profile(self, seller_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key=profile_key(seller_id), ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def reports(self, seller_id: str) -> Iterator[dict[str, Any]]:
        """The stored-report rows (`REPORT#{region}#...`), in key order."""
        return self.items(seller_id, "REPORT#")

    # --- correction ----------------------------------------------------------------------------

    def correct_profile(self, seller_id: str, changes: dict[str, str | None], now: datetime) -> dict[str, Any]:
        """SET the given contact fields (None removes one); returns the PROFILE item as it is now.

        PROFILE is written only while the seller has a connection: one transaction with a ConditionCheck
        that each CONN item read still exists. The retention sweep deletes PROFILE in the same transaction
        as the seller's last CONN item, so a correction racing that purge either commits first (and its
        PROFILE goes with the CONN item) or fails its check (SellerGone): never an orphan PROFILE. A
        connection purged meanwhile while others remain makes it read them again (ConcurrentChange after
        DATA_REQUEST_PASSES runs)."""
        sets, removes = ["updated_at = :now"], []
        values: dict[str, Any] = {":now": iso(now)}
        for number, (name, value) in enumerate(sorted(changes.items())):
            if value is None:
                removes.append(name)
            else:
                sets.append(f"{name} = :v{number}")
                values[f":v{number}"] = value
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        for _ in range(DATA_REQUEST_PASSES):
            connections = [item["sk"] for item in self.items(seller_id, "CONN#", projection="sk")]
            if not connections:
                raise SellerGone()
            actions: list[dict[str, Any]] = [{"ConditionCheck": {
                "TableName": self._table.name, "Key": {"pk": f"SELLER#{seller_id}", "sk": sk},
                "ConditionExpression": "attribute_exists(pk)"}} for sk in connections]
            actions.append({"Update": {"TableName": self._table.name, "Key": profile_key(seller_id),
                                       "UpdateExpression": expression, "ExpressionAttributeValues": values}})
            try:
                dynamo.transact(self._client, actions)
            except TransactionCancelled:
                continue
            profile = self.profile(seller_id)
            if profile is None:  # the last purge came right after the correction
                raise SellerGone()
            return profile
        raise ConcurrentChange()

    # --- deletion request ------------------------------------------------------------------------

    def request_deletion(self, seller_id: str, now: datetime, purge_after_days: int) -> DeletionOutcome:
        """Every connection DELETION_REQUESTED and every waiting consent destroyed (see the module doc)."""
        destroyed, new = 0, False
        for _ in range(DATA_REQUEST_PASSES):
            outcome, missed = self._request_deletion_pass(seller_id, now, purge_after_days)
            destroyed, new = destroyed + outcome.candidates, new or outcome.new
            if not missed or self._every_connection(seller_id, _deletion_requested):
                return replace(outcome, new=new, candidates=destroyed)
        raise ConcurrentChange()

    def _request_deletion_pass(self, seller_id: str, now: datetime,
                               purge_after_days: int) -> tuple[DeletionOutcome, int]:
        """One run; with the number of waiting consents that were gone when it came to destroy them."""
        snapshot = self.snapshot(seller_id)
        purge_default = iso(now + timedelta(days=purge_after_days))
        actions: list[dict[str, Any]] = []
        dates: list[str] = []
        new = False
        for connection in snapshot.connections:
            region = connection["region"]
            status = connection["status"]
            if status == ConnectionStatus.DELETION_REQUESTED.value:
                dates.append(connection["purge_after"])  # idempotent: the first date stands
                # Defensive: nothing may pull for this connection.
                actions += self._stop_pulls(seller_id, region)
                continue
            new = True
            # A REVOKED connection is already due for purge: the request never moves that date later.
            purge = min(connection.get("purge_after") or purge_default, purge_default)
            dates.append(purge)
            plan = snapshot.plans.get(region)
            sets = ("#status = :requested, previous_status = :previous, purge_after = :purge, "
                    "purge_shard = :shard, updated_at = :now, deletion_requested_at = :now, "
                    "plan_marketplace_ids = :mids")
            values: dict[str, Any] = {
                ":requested": ConnectionStatus.DELETION_REQUESTED.value, ":previous": status, ":purge": purge,
                ":shard": shard(seller_id, region), ":now": iso(now),
                ":mids": list(plan["marketplace_ids"]) if plan and plan.get("marketplace_ids")
                else default_marketplace_ids(connection),
                ":seen": connection["updated_at"],
            }
            if plan and "enabled" in plan:
                sets += ", plan_enabled = :enabled"
                values[":enabled"] = list(plan["enabled"])
            actions.append({"Update": {
                "TableName": self._table.name,
                "Key": connection_key(seller_id, region),
                "UpdateExpression": f"SET {sets} REMOVE refresh_shard, refresh_due_at, reauth_shard",
                # Unchanged since we read it: a concurrent consent or revocation makes us retry.
                "ConditionExpression": "updated_at = :seen",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }})
            actions += self._stop_pulls(seller_id, region)
        self._transact(actions)
        destroyed, missed = self._destroy_candidates(snapshot.candidates)
        return DeletionOutcome(purge_after=min(dates) if dates else None, connections=len(snapshot.connections),
                               new=new, candidates=destroyed), missed

    # --- rollback --------------------------------------------------------------------------------

    def rollback_deletion(self, seller_id: str, now: datetime) -> RollbackOutcome:
        connections = [c for c in self.items(seller_id, "CONN#")
                       if c["status"] == ConnectionStatus.DELETION_REQUESTED.value]
        if not connections:
            raise NoDeletionPending()
        passed = [c["purge_after"] for c in connections if c["purge_after"] <= iso(now)]
        if passed:
            raise PurgeDatePassed(min(passed))
        actions: list[dict[str, Any]] = []
        statuses: dict[str, str] = {}
        for connection in connections:
            region = connection["region"]
            previous = connection.get("previous_status", ConnectionStatus.ACTIVE.value)
            if previous == ConnectionStatus.ACTIVE.value and "refresh_token" not in connection:
                previous = ConnectionStatus.TOKENS_REMOVED.value
            statuses[region] = previous
            values: dict[str, Any] = {":status": previous, ":now": iso(now),
                                      ":requested": ConnectionStatus.DELETION_REQUESTED.value,
                                      ":purge": connection["purge_after"]}
            condition = "#status = :requested AND purge_after = :purge AND purge_after > :now"
            removes = ["previous_status", "deletion_requested_at", "plan_marketplace_ids", "plan_enabled"]
            sets = ["#status = :status", "updated_at = :now"]
            if previous == ConnectionStatus.REVOKED.value:
                pass  # a REVOKED connection keeps its own purge date and shard
            else:
                removes += ["purge_after", "purge_shard"]
            if previous == ConnectionStatus.ACTIVE.value:
                sets += ["refresh_shard = :shard", "refresh_due_at = :due", "reauth_shard = :shard"]
                values.update({":shard": shard(seller_id, region), ":due": int(now.timestamp())})
                marketplace_ids = list(connection.get("plan_marketplace_ids") or default_marketplace_ids(connection))
                enabled = list(connection["plan_enabled"]) if "plan_enabled" in connection else None
                plan = Plan(seller_id, region, int(now.timestamp()), {}, enabled, marketplace_ids)
                # The same item PlanRepository.ensure writes (due at once), inside the transaction: no
                # PLAN# exists while a deletion is pending, so the put cannot replace a live cursor.
                actions.append({"Put": {"TableName": self._table.name, "Item": plan.to_item()}})
            actions.append({"Update": {
                "TableName": self._table.name,
                "Key": connection_key(seller_id, region),
                "UpdateExpression": "SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }})
        self._transact(actions)
        return RollbackOutcome(connections=len(connections), statuses=statuses)

    # --- token removal ---------------------------------------------------------------------------

    def remove_tokens(self, seller_id: str, now: datetime) -> tuple[int, int]:
        """(connections whose tokens were removed, waiting consents destroyed); see the module doc."""
        destroyed = 0
        for _ in range(DATA_REQUEST_PASSES):
            connections, removed, missed = self._remove_tokens_pass(seller_id, now)
            destroyed += removed
            if not missed or self._every_connection(seller_id, _holds_no_token):
                return connections, destroyed
        raise ConcurrentChange()

    def _remove_tokens_pass(self, seller_id: str, now: datetime) -> tuple[int, int, int]:
        """One run: (connections, waiting consents destroyed, waiting consents already gone)."""
        connections = list(self.items(seller_id, "CONN#"))
        actions: list[dict[str, Any]] = []
        for connection in connections:
            region, status = connection["region"], connection["status"]
            values: dict[str, Any] = {":now": iso(now), ":seen": connection["updated_at"]}
            if status in (ConnectionStatus.ACTIVE.value, ConnectionStatus.TOKENS_REMOVED.value):
                sets = "#status = :removed, tokens_removed_at = :now, updated_at = :now"
                values[":removed"] = ConnectionStatus.TOKENS_REMOVED.value
            elif status == ConnectionStatus.DELETION_REQUESTED.value:
                # The deletion stays pending; a rollback now comes back without tokens.
                sets = "previous_status = :removed, tokens_removed_at = :now, updated_at = :now"
                values[":removed"] = (ConnectionStatus.REVOKED.value
                                      if connection.get("previous_status") == ConnectionStatus.REVOKED.value
                                      else ConnectionStatus.TOKENS_REMOVED.value)
            else:  # REVOKED: no token left, and its purge date must stay
                sets = "tokens_removed_at = :now, updated_at = :now"
            update: dict[str, Any] = {
                "TableName": self._table.name,
                "Key": connection_key(seller_id, region),
                "UpdateExpression": f"SET {sets} REMOVE refresh_token, refresh_shard, refresh_due_at, reauth_shard",
                "ConditionExpression": "updated_at = :seen",
                "ExpressionAttributeValues": values,
            }
            if "#status" in sets:
                update["ExpressionAttributeNames"] = {"#status": "status"}
            actions.append({"Update": update})
            actions += self._stop_pulls(seller_id, region)
        self._transact(actions)
        return len(connections), *self._destroy_candidates(self._candidates.for_seller(seller_id))

    # --- helpers ---------------------------------------------------------------------------------

    def _destroy_candidates(self, candidates: list[Candidate]) -> tuple[int, int]:
        """(destroyed, already gone: promoted, or destroyed by the verifier, meanwhile)."""
        destroyed = sum(1 for candidate in candidates if self._candidates.destroy(candidate))
        return destroyed, len(candidates) - destroyed

    def _every_connection(self, seller_id: str, test: Callable[[dict[str, Any]], bool]) -> bool:
        return all(test(connection) for connection in self.items(seller_id, "CONN#"))

    def _stop_pulls(self, seller_id: str, region: str) -> list[dict[str, Any]]:
        return [{"Delete": {"TableName": self._table.name, "Key": access_token_key(seller_id, region)}},
                {"Delete": {"TableName": self._table.name, "Key": plan_key(seller_id, region)}}]

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        """One transaction (a seller has at most 3 regions: at most 9 actions, under the limit of 100)."""
        if not actions:
            return
        try:
            dynamo.transact(self._client, actions)
        except TransactionCancelled:
            raise ConcurrentChange() from None


def _deletion_requested(connection: dict[str, Any]) -> bool:
    return bool(connection["status"] == ConnectionStatus.DELETION_REQUESTED.value)


def _holds_no_token(connection: dict[str, Any]) -> bool:
    return "refresh_token" not in connection


def public_connection(connection: dict[str, Any], plan: dict[str, Any] | None) -> dict[str, Any]:
    """What a seller or an operator may see of a connection: never a token, sealed blob or lease."""
    public = {name: connection[name] for name in PUBLIC_CONNECTION_FIELDS if name in connection}
    if plan is not None:
        public["report_types"] = list(plan["enabled"]) if "enabled" in plan else "default"
        public["marketplace_ids"] = list(plan.get("marketplace_ids", []))
        public["permission_denied"] = permission_denied(plan)
        public["coverage"] = coverage_view(plan.get("coverage", {}))  # per type and marketplace scope
    elif "plan_marketplace_ids" in connection:  # paused by a deletion request
        public["report_types"] = list(connection["plan_enabled"]) if "plan_enabled" in connection else "default"
        public["marketplace_ids"] = list(connection["plan_marketplace_ids"])
    else:
        public["report_types"] = None  # no pulls
    public["marketplaces"] = public_marketplaces(connection, plan)
    public["has_refresh_token"] = "refresh_token" in connection
    return public


def public_marketplaces(connection: dict[str, Any], plan: dict[str, Any] | None) -> dict[str, Any] | None:
    """The marketplaces a connection pulls (getMarketplaceParticipations decides them) and when Amazon was
    last asked (`checked_at` None: not since the connection started or was paused). None: no pulls."""
    if plan is not None:
        checked = plan.get("participations_checked_at")
        return {"participating": list(plan.get("marketplace_ids", [])),
                "checked_at": None if checked is None else iso(datetime.fromtimestamp(int(checked), tz=UTC))}
    if "plan_marketplace_ids" in connection:  # paused by a deletion request
        return {"participating": list(connection["plan_marketplace_ids"]), "checked_at": None}
    return None


def permission_denied(plan: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per report type Amazon refused for a missing role: since (the latest refusal) and retry_at (when planning
    tries it again). The plan keeps only retry_at; refusals are retried DENIED_RETRY_SECONDS apart."""
    denied = {str(t): int(at) for t, at in (plan.get("denied") or {}).items()}
    return {t: {"since": iso(datetime.fromtimestamp(at - DENIED_RETRY_SECONDS, tz=UTC)),
                "retry_at": iso(datetime.fromtimestamp(at, tz=UTC))} for t, at in sorted(denied.items())}


class AuditType(StrEnum):
    ACCESS = "access"
    EXPORT = "export"  # the record stays STARTED until the export worker completes it
    EXPORT_STATUS = "export_status"
    DELETION = "deletion"
    DELETION_ROLLBACK = "deletion_rollback"
    TOKEN_REMOVAL = "token_removal"  # noqa: S105 - a request type, not a secret
    CORRECTION = "correction"
    SELLER_KEY = "seller_key"  # an operator asked for the opaque key to search logs with
    BACKFILL = "backfill"  # an operator asked for a report type to be fetched again from a date
    CONSENT = "consent"  # a consent refused at the callback (the seller's deletion is pending)
    CONSENT_VERIFICATION = "consent_verification"  # what became of a consent Amazon was asked about


class AuditOutcome(StrEnum):
    DONE = "done"
    UNKNOWN_SELLER = "unknown_seller"
    BAD_REQUEST = "bad_request"
    FAILED = "failed"
    FORBIDDEN = "forbidden"  # no IAM identity in the request: refused, still recorded
    IDENTITY_MISMATCH = "identity_mismatch"  # Amazon named another seller: nothing stored
    DELETION_PENDING = "deletion_pending"  # the seller's deletion is pending: nothing stored
    UNCONFIRMED = "unconfirmed"  # Amazon could not be asked: nothing stored
    EXPIRED = "expired"  # Amazon did not confirm the seller in time: the consent was destroyed
    REVOKED = "revoked"  # the seller removed the app before its consent was confirmed


class AuditStatus(StrEnum):
    """Where a data request's record stands: written STARTED before the request does anything, then
    completed once (SUCCEEDED: outcome `done`; FAILED: refused or failed, the outcome says which). A
    record left STARTED is a request that never finished (the function timed out or was killed)."""

    STARTED = "STARTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


# The audit record's principal when the request carried no IAM identity (refused with 403).
UNKNOWN_PRINCIPAL = "unknown"


class AuditLog:
    """Request records in the audit table (purpose `audit`): no seller id, e-mail, token or content.

    Each admin request names who asked: `principal_arn`, the caller's IAM principal as API Gateway's IAM
    authorization identified it (an operator's `assumed-role/OpsSupportRole/{session}` ARN), or `unknown`.
    An admin request's record is written as it starts and completed as it ends (`AuditStatus`), so one
    that never ends still shows. Consent records (types `consent`, `consent_verification`) have no IAM
    caller and are written once, complete.
    """

    def __init__(self, table: Table) -> None:
        self._table = table

    def start_request(self, *, request_id: str, request_type: AuditType, seller_key: str | None,
                      received_at: datetime, principal_arn: str) -> None:
        """The record of an admin request as it starts (status STARTED); ConditionFailed if a record with
        this request id exists (API Gateway's request ids are unique: never overwrite one)."""
        item = self._item(request_id=request_id, request_type=request_type, seller_key=seller_key,
                          received_at=received_at, principal_arn=principal_arn)
        with condition_checked():
            self._table.put_item(Item={**item, "status": AuditStatus.STARTED.value},
                                 ConditionExpression=Attr("id").not_exists())

    def complete_request(self, *, request_id: str, completed_at: datetime, outcome: AuditOutcome,
                         detail: dict[str, int]) -> None:
        """Complete the STARTED record of this request: status, `completed_at`, `outcome`, `detail`, in
        one update of the same item; ConditionFailed if it is not STARTED (missing, or already completed)."""
        status = AuditStatus.SUCCEEDED if outcome is AuditOutcome.DONE else AuditStatus.FAILED
        with condition_checked():
            self._table.update_item(
                Key={"id": f"request#{request_id}"},
                UpdateExpression="SET #status = :status, completed_at = :completed, outcome = :outcome, "
                                 "detail = :detail",
                ConditionExpression="#status = :started",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": status.value, ":completed": iso(completed_at),
                                           ":outcome": outcome.value, ":started": AuditStatus.STARTED.value,
                                           ":detail": {name: int(value) for name, value in detail.items()}},
            )

    def record_request(self, *, request_id: str, request_type: AuditType, seller_key: str | None,
                       received_at: datetime, completed_at: datetime, outcome: AuditOutcome,
                       detail: dict[str, int], principal_arn: str | None = None,
                       other_seller_key: str | None = None) -> None:
        """`principal_arn`: the IAM caller of an admin request (consent records have none: a seller's
        browser or the product itself acted). `other_seller_key`: the seller Amazon named when a consent
        named another one (for abuse reports to Amazon)."""
        item = self._item(request_id=request_id, request_type=request_type, seller_key=seller_key,
                          received_at=received_at, principal_arn=principal_arn)
        item.update({"completed_at": iso(completed_at), "outcome": outcome.value,
                     "detail": {name: int(value) for name, value in detail.items()}})
        if other_seller_key:
            item["other_seller_key"] = other_seller_key
        self._table.put_item(Item=item)

    @staticmethod
    def _item(*, request_id: str, request_type: AuditType, seller_key: str | None, received_at: datetime,
              principal_arn: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": f"request#{request_id}", "type": request_type.value, "received_at": iso(received_at),
            "expires_at": int(add_months(received_at, AUDIT_RETENTION_MONTHS).timestamp()),
        }
        if seller_key:
            item["seller_key"] = seller_key
        if principal_arn:
            item["principal_arn"] = principal_arn
        return item
