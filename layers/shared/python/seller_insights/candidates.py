"""Consent candidates: new authorizations held apart until Amazon confirms whose they are.

A consent callback names its seller in `selling_partner_id`, a query value the browser can edit. So a
consent writes nothing of a connection: it seals the new refresh token (encryption context `{purpose:
refresh_token, seller: <the named seller>, region}`, the one a connection uses) into a candidate item in a
partition of its own, `pk=CANDIDATE#{seller}`, `sk={region}#{candidate_id}`. Nothing is stored under
`SELLER#{seller}` until Amazon confirmed the seller (seller_insights.identity); then `promote` makes the
candidate the connection's token in one transaction: a first connection (ACTIVE, with its planning
cursor), a renewal of an ACTIVE one (the yearly re-authorization), or the return of a REVOKED or
TOKENS_REMOVED one. A connection whose seller asked for deletion is never touched: the candidate goes.

Candidates that wait carry `verify_shard`/`verify_due_at`, the sparse KEYS_ONLY index
`by_verification_due`, which the token refresher's `verify-consents` schedule reads (no Scan). Each has a
deadline (`verify_by`); one that Amazon has not confirmed by then is destroyed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from seller_insights import dynamo
from seller_insights.dynamo import applied, condition_checked, conditional
from seller_insights.errors import TransactionCancelled
from seller_insights.fanout import due_items
from seller_insights.report_jobs import plan_key
from seller_insights.repositories import (
    SHARDS,
    ConnectionsRepository,
    ConnectionStatus,
    connection_key,
    iso,
    shard,
)
from seller_insights.vault import Sealed

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table

VERIFICATION_DUE_INDEX = "by_verification_due"
CANDIDATE_PREFIX = "CANDIDATE#"
REAUTHORIZATION_PERIOD = timedelta(days=365)
# The TTL backstop outlives the deadline: the verifier itself destroys expired candidates.
TTL_MARGIN_SECONDS = 24 * 3600


def candidate_partition(seller_id: str) -> str:
    return f"{CANDIDATE_PREFIX}{seller_id}"


def candidate_key(seller_id: str, region: str, candidate_id: str) -> dict[str, str]:
    return {"pk": candidate_partition(seller_id), "sk": f"{region}#{candidate_id}"}


def new_candidate_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Candidate:
    seller_id: str  # the seller the consent named; not yet confirmed
    region: str
    candidate_id: str
    sealed: Sealed
    created_at: int  # epoch seconds: when the seller consented
    verify_by: int  # epoch seconds: destroyed if not confirmed by then
    flow: str  # "website" or "login"
    marketplace: str | None
    verify_due_at: int = 0
    attempts: int = 0
    last_outcome: str | None = None

    @property
    def key(self) -> dict[str, str]:
        return candidate_key(self.seller_id, self.region, self.candidate_id)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            **self.key, "seller_id": self.seller_id, "region": self.region, "candidate_id": self.candidate_id,
            "refresh_token": self.sealed.to_item(), "created_at": self.created_at, "verify_by": self.verify_by,
            "flow": self.flow, "attempts": self.attempts,
            "verify_shard": shard(self.seller_id, self.region), "verify_due_at": self.verify_due_at,
            "expires_at": self.verify_by + TTL_MARGIN_SECONDS,
        }
        if self.marketplace:
            item["marketplace"] = self.marketplace
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Candidate:
        return cls(
            seller_id=item["seller_id"], region=item["region"], candidate_id=item["candidate_id"],
            sealed=Sealed.from_item(item["refresh_token"]), created_at=int(item["created_at"]),
            verify_by=int(item["verify_by"]), flow=item["flow"], marketplace=item.get("marketplace"),
            verify_due_at=int(item.get("verify_due_at", 0)), attempts=int(item.get("attempts", 0)),
            last_outcome=item.get("last_outcome"),
        )

    def public(self, now: int) -> dict[str, Any]:
        """What an operator may see of a candidate: never the sealed token."""
        return {"region": self.region, "created_at": _iso_epoch(self.created_at), "age_seconds": now - self.created_at,
                "verify_by": _iso_epoch(self.verify_by), "attempts": self.attempts,
                "last_outcome": self.last_outcome}


class PromotionOutcome(StrEnum):
    CONNECTED = "connected"  # a first connection in this region
    RENEWED = "renewed"  # an ACTIVE connection took the new token (yearly re-authorization)
    REACTIVATED = "reactivated"  # a REVOKED or TOKENS_REMOVED connection is ACTIVE again
    DELETION_PENDING = "deletion_pending"  # the seller asked for deletion meanwhile: candidate destroyed
    GONE = "gone"  # another run promoted or destroyed this candidate first
    CONFLICT = "conflict"  # the connection changed while we read it: try again


class CandidateRepository:
    def __init__(self, table: Table, connections: ConnectionsRepository | None = None) -> None:
        self._table = table
        self._client = table.meta.client
        # Candidates live in the connections table.
        self._connections = connections or ConnectionsRepository(table)

    # --- the consent side ------------------------------------------------------------------------

    def create(self, candidate: Candidate) -> None:
        """Store a new candidate; ConditionFailed if its (random) id is taken."""
        with condition_checked():
            self._table.put_item(Item=candidate.to_item(), ConditionExpression=Attr("pk").not_exists())

    # --- reads -----------------------------------------------------------------------------------

    def get(self, seller_id: str, region: str, candidate_id: str) -> Candidate | None:
        item = self._table.get_item(Key=candidate_key(seller_id, region, candidate_id), ConsistentRead=True).get("Item")
        return Candidate.from_item(item) if item else None

    def for_seller(self, seller_id: str) -> list[Candidate]:
        return [Candidate.from_item(item) for item in dynamo.query(
            self._table, KeyConditionExpression=Key("pk").eq(candidate_partition(seller_id)), ConsistentRead=True)]

    def due(self, now: int, *, shards: list[str] | None = None, limit: int | None = None,
            ) -> Iterator[tuple[str, str, str]]:
        """(seller, region, candidate id) of candidates due for a verification attempt, shard after shard in
        the order given (default 0..7), at most `limit`; index pages only, no Scan."""
        order = shards if shards is not None else [str(number) for number in range(SHARDS)]
        for item in due_items(self._table, index=VERIFICATION_DUE_INDEX, shard_attribute="verify_shard",
                              due_attribute="verify_due_at", until=now, shards=order, limit=limit):
            region, _, candidate_id = item["sk"].partition("#")
            yield item["pk"].removeprefix(CANDIDATE_PREFIX), region, candidate_id

    # --- the verifier side -----------------------------------------------------------------------

    def take(self, candidate: Candidate, *, now: int, lease_seconds: int) -> Candidate | None:
        """Claim one verification attempt: the candidate is not due again until the lease ends (a run that
        dies mid-way is retried then). None if another run took it first or it is gone."""
        answer = conditional(lambda: self._table.update_item(
            Key=candidate.key,
            UpdateExpression="SET verify_due_at = :lease ADD attempts :one",
            ConditionExpression=Attr("verify_due_at").eq(candidate.verify_due_at),
            ExpressionAttributeValues={":lease": now + lease_seconds, ":one": 1},
            ReturnValues="ALL_NEW",
        ))
        return None if answer is None else Candidate.from_item(answer["Attributes"])

    def defer(self, candidate: Candidate, *, due_at: int, outcome: str) -> None:
        """Try again at `due_at` (still ours: our lease is what the item holds)."""
        applied(lambda: self._table.update_item(
            Key=candidate.key,
            UpdateExpression="SET verify_due_at = :due, last_outcome = :outcome",
            ConditionExpression=Attr("verify_due_at").eq(candidate.verify_due_at),
            ExpressionAttributeValues={":due": due_at, ":outcome": outcome},
        ))

    def destroy(self, candidate: Candidate) -> bool:
        """Delete the candidate and its sealed token; False if it was already gone."""
        return applied(lambda: self._table.delete_item(Key=candidate.key, ConditionExpression=Attr("pk").exists()))

    def promote(self, candidate: Candidate, sealed: Sealed, *, now: datetime,
                marketplace_ids: list[str]) -> PromotionOutcome:
        """Make a confirmed candidate the connection's refresh token, atomically (see the module doc)."""
        connections = self._connections.states(candidate.seller_id)
        # A deletion request covers every region of the seller, a region without a connection too.
        if any(c["status"] == ConnectionStatus.DELETION_REQUESTED.value for c in connections.values()):
            self.destroy(candidate)
            return PromotionOutcome.DELETION_PENDING
        current = connections.get(candidate.region)
        status = current["status"] if current else None
        consented_at = datetime.fromtimestamp(candidate.created_at, tz=UTC)
        values: dict[str, Any] = {
            ":seller": candidate.seller_id, ":region": candidate.region, ":active": ConnectionStatus.ACTIVE.value,
            ":token": sealed.to_item(), ":consented": iso(consented_at),
            ":due": iso(consented_at + REAUTHORIZATION_PERIOD), ":now": iso(now), ":flow": candidate.flow,
            ":marketplace": candidate.marketplace, ":shard": shard(candidate.seller_id, candidate.region),
            ":due_now": int(now.timestamp()),
        }
        if current is None:
            condition = "attribute_not_exists(pk)"
        else:
            condition = "#status = :seen_status AND updated_at = :seen_updated"
            values.update({":seen_status": status, ":seen_updated": current["updated_at"]})
        update = {
            "TableName": self._table.name,
            "Key": connection_key(candidate.seller_id, candidate.region),
            "UpdateExpression": (
                "SET seller_id = :seller, #region = :region, #status = :active, refresh_token = :token, "
                "consented_at = :consented, reauthorization_due_at = :due, updated_at = :now, verified_at = :now, "
                "consent_flow = :flow, created_at = if_not_exists(created_at, :now), "
                "marketplace = if_not_exists(marketplace, :marketplace), "
                # Due for an access token now; in both sparse indexes while ACTIVE.
                "refresh_shard = :shard, refresh_due_at = :due_now, reauth_shard = :shard "
                "REMOVE purge_after, purge_shard, revoked_at"
            ),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#region": "region", "#status": "status"},
            "ExpressionAttributeValues": values,
        }
        actions: list[dict[str, Any]] = [
            {"Update": update},
            {"Delete": {"TableName": self._table.name, "Key": candidate.key,
                        "ConditionExpression": "attribute_exists(pk)"}},
            self._ensure_plan(candidate, marketplace_ids, int(now.timestamp())),
        ]
        # A deletion requested for another region while we worked cancels the promotion.
        actions += [{"ConditionCheck": {
            "TableName": self._table.name, "Key": connection_key(candidate.seller_id, region),
            "ConditionExpression": "#status <> :deletion", "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":deletion": ConnectionStatus.DELETION_REQUESTED.value},
        }} for region in connections if region != candidate.region]
        try:
            dynamo.transact(self._client, actions)
        except TransactionCancelled as cancelled:
            # The second action deletes the candidate: its condition failing means the candidate is gone.
            return PromotionOutcome.GONE if cancelled.failed(1) else PromotionOutcome.CONFLICT
        if status is None:
            return PromotionOutcome.CONNECTED
        return PromotionOutcome.RENEWED if status == ConnectionStatus.ACTIVE.value else PromotionOutcome.REACTIVATED

    def _ensure_plan(self, candidate: Candidate, marketplace_ids: list[str], now: int) -> dict[str, Any]:
        """The planning cursor, created due now if missing and left as it is otherwise (an ACTIVE
        connection's cursor keeps its schedule): every attribute is set only if absent."""
        return {"Update": {
            "TableName": self._table.name,
            "Key": plan_key(candidate.seller_id, candidate.region),
            "UpdateExpression": (
                "SET seller_id = if_not_exists(seller_id, :seller), #region = if_not_exists(#region, :region), "
                "plan_shard = if_not_exists(plan_shard, :shard), next_plan_at = if_not_exists(next_plan_at, :now), "
                "due = if_not_exists(due, :nothing), marketplace_ids = if_not_exists(marketplace_ids, :mids)"
            ),
            "ExpressionAttributeNames": {"#region": "region"},
            "ExpressionAttributeValues": {
                ":seller": candidate.seller_id, ":region": candidate.region,
                ":shard": shard(candidate.seller_id, candidate.region), ":now": now, ":nothing": {},
                ":mids": marketplace_ids,
            },
        }}


def _iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, tz=UTC))
