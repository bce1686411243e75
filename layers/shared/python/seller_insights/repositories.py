"""DynamoDB access for connections, OAuth state and one-time claims. Keys per internal-contracts.md.

Every write that must happen once is conditional; every "replace" is a single-item update, so a
reader sees the old token or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from seller_insights import dynamo
from seller_insights.dynamo import applied, condition_checked, conditional
from seller_insights.vault import Sealed

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table

# CONN attributes that keep a notification subscription id, per type.
SUBSCRIPTION_ATTRIBUTES = ("rpf_subscription_id", "dkq_subscription_id")


class ConnectionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"
    TOKENS_REMOVED = "TOKENS_REMOVED"
    DELETION_REQUESTED = "DELETION_REQUESTED"


SHARDS = 8
REFRESH_DUE_INDEX = "by_refresh_due"
REAUTHORIZATION_DUE_INDEX = "by_reauthorization_due"


def connection_key(seller_id: str, region: str) -> dict[str, str]:
    return {"pk": f"SELLER#{seller_id}", "sk": f"CONN#{region}"}


def access_token_key(seller_id: str, region: str) -> dict[str, str]:
    return {"pk": f"SELLER#{seller_id}", "sk": f"TOKEN#{region}"}


def shard(seller_id: str, region: str) -> str:
    """Spreads the sparse indexes over SHARDS partitions (docs/internal-contracts.md)."""
    return str(int(hashlib.sha256(f"{seller_id}#{region}".encode()).hexdigest()[:8], 16) % SHARDS)


def parse_key(item: dict[str, Any]) -> tuple[str, str]:
    """(seller, region) from an item's keys (the sparse indexes project keys only)."""
    return item["pk"].removeprefix("SELLER#"), item["sk"].split("#", 1)[1]


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Connection:
    seller_id: str
    region: str
    status: ConnectionStatus
    consented_at: str
    reauthorization_due_at: str
    marketplace: str | None
    created_at: str
    updated_at: str
    has_refresh_token: bool
    purge_after: str | None = None
    revoked_at: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Connection:
        return cls(
            seller_id=item["seller_id"],
            region=item["region"],
            status=ConnectionStatus(item["status"]),
            consented_at=item["consented_at"],
            reauthorization_due_at=item["reauthorization_due_at"],
            marketplace=item.get("marketplace"),
            created_at=item["created_at"],
            updated_at=item["updated_at"],
            has_refresh_token="refresh_token" in item,
            purge_after=item.get("purge_after"),
            revoked_at=item.get("revoked_at"),
        )


class ConnectionsRepository:
    def __init__(self, table: Table) -> None:
        self._table = table

    def states(self, seller_id: str) -> dict[str, dict[str, Any]]:
        """Region -> status, updated_at and purge_after of each connection of the seller (at most three,
        so one page), read consistently."""
        page = self._table.query(
            KeyConditionExpression=Key("pk").eq(f"SELLER#{seller_id}") & Key("sk").begins_with("CONN#"),
            ProjectionExpression="#region, #status, updated_at, purge_after",
            ExpressionAttributeNames={"#region": "region", "#status": "status"}, ConsistentRead=True)
        items: list[dict[str, Any]] = page.get("Items", [])
        return {item["region"]: item for item in items}

    def pending_deletion(self, seller_id: str) -> str | None:
        """The purge date of the seller's deletion request (the earliest of its connections), or None.

        A deletion request covers every region of the seller, so any region's connection counts."""
        dates = [str(state["purge_after"]) for state in self.states(seller_id).values()
                 if state.get("status") == ConnectionStatus.DELETION_REQUESTED.value and state.get("purge_after")]
        return min(dates) if dates else None

    def get(self, seller_id: str, region: str) -> Connection | None:
        item = self._table.get_item(Key=connection_key(seller_id, region), ConsistentRead=True).get("Item")
        return Connection.from_item(item) if item else None

    def mark_revoked(self, seller_id: str, region: str, *, now: datetime, purge_after: datetime) -> bool:
        """The authorization is gone: REVOKED, refresh and cached access token deleted, purge date set.

        One transaction, so no reader sees a REVOKED connection that still holds a token. False if the
        connection was not ACTIVE (already revoked, removed or never there): nothing changes then.
        """
        # The resource's client serialises plain Python values, like Table does.
        return applied(lambda: dynamo.transact(self._table.meta.client, [
                {"Update": {
                    "TableName": self._table.name,
                    "Key": connection_key(seller_id, region),
                    "UpdateExpression": (
                        "SET #status = :revoked, revoked_at = :now, purge_after = :purge, purge_shard = :shard, "
                        "updated_at = :now "
                        "REMOVE refresh_token, refresh_shard, refresh_due_at, reauth_shard"
                    ),
                    "ConditionExpression": "#status = :active",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":revoked": ConnectionStatus.REVOKED.value,
                        ":active": ConnectionStatus.ACTIVE.value,
                        ":now": iso(now),
                        ":purge": iso(purge_after),
                        ":shard": shard(seller_id, region),
                    },
                }},
                {"Delete": {"TableName": self._table.name, "Key": access_token_key(seller_id, region)}},
                # No more report planning: the planning cursor goes with the tokens.
                {"Delete": {"TableName": self._table.name,
                            "Key": {"pk": f"SELLER#{seller_id}", "sk": f"PLAN#{region}"}}},
        ]))

    def schedule_refresh(self, seller_id: str, region: str, due_epoch: int) -> None:
        """Move an ACTIVE connection's next refresh; a connection that left ACTIVE is left alone."""
        applied(lambda: self._table.update_item(
            Key=connection_key(seller_id, region),
            UpdateExpression="SET refresh_due_at = :due",
            ConditionExpression=Attr("refresh_shard").exists(),
            ExpressionAttributeValues={":due": due_epoch},
        ))

    def refresh_due(self, until_epoch: int, *, shards: list[str], limit: int) -> Iterator[tuple[str, str]]:
        """(seller, region) of ACTIVE connections whose refresh is due by `until_epoch`, shard after shard in
        the order given, at most `limit` (index pages only: keys, no item reads; no Scan)."""
        # Imported here: seller_insights.fanout takes SHARDS from this module.
        from seller_insights.fanout import due_items  # noqa: PLC0415

        for item in due_items(self._table, index=REFRESH_DUE_INDEX, shard_attribute="refresh_shard",
                              due_attribute="refresh_due_at", until=until_epoch, shards=shards, limit=limit):
            yield parse_key(item)

    def refresh_due_at(self, seller_id: str, region: str) -> int | None:
        """When the connection's next refresh is due (consistent read); None when it is not in the refresh
        index any more (revoked, removed, deleted)."""
        item: dict[str, Any] | None = self._table.get_item(
            Key=connection_key(seller_id, region), ProjectionExpression="refresh_due_at, refresh_shard",
            ConsistentRead=True).get("Item")
        if not item or "refresh_shard" not in item or "refresh_due_at" not in item:
            return None
        return int(item["refresh_due_at"])

    def reauthorization_due(self, until: datetime, *, page_size: int = 1000) -> Iterator[tuple[str, str, str]]:
        """(seller, region, reauthorization_due_at) of ACTIVE connections whose yearly re-authorization is due
        by `until`, page by page from the index (pages of at most `page_size`; its keys hold the date: no item
        reads), read only as far as the caller iterates."""
        for number in range(SHARDS):
            condition = Key("reauth_shard").eq(str(number)) & Key("reauthorization_due_at").lte(iso(until))
            for item in dynamo.query(self._table, IndexName=REAUTHORIZATION_DUE_INDEX,
                                     KeyConditionExpression=condition, PaginationConfig={"PageSize": page_size}):
                seller, region = parse_key(item)
                yield seller, region, str(item["reauthorization_due_at"])

    def replace_refresh_token(self, seller_id: str, region: str, sealed: Sealed) -> None:
        """LWA answered a refresh with a different refresh token: keep the new one (ACTIVE only)."""
        applied(lambda: self._table.update_item(
            Key=connection_key(seller_id, region),
            UpdateExpression="SET refresh_token = :token",
            ConditionExpression=Attr("status").eq(ConnectionStatus.ACTIVE.value),
            ExpressionAttributeValues={":token": sealed.to_item()},
        ))

    def report_subscription(self, seller_id: str, region: str, attribute: str = "rpf_subscription_id") -> str | None:
        """The seller's REPORT_PROCESSING_FINISHED subscription id ("existing" if only known to exist);
        `attribute="dkq_subscription_id"`: its DATA_KIOSK_QUERY_PROCESSING_FINISHED one."""
        item = self._table.get_item(
            Key=connection_key(seller_id, region),
            ProjectionExpression=attribute,
            ConsistentRead=True,
        ).get("Item")
        value = (item or {}).get(attribute)
        return str(value) if value else None

    def report_subscriptions(self, seller_id: str, region: str) -> dict[str, str]:
        """Every notification subscription id kept on the connection, by CONN attribute (one read)."""
        item = self._table.get_item(
            Key=connection_key(seller_id, region),
            ProjectionExpression=", ".join(SUBSCRIPTION_ATTRIBUTES),
            ConsistentRead=True,
        ).get("Item")
        return {name: str(value) for name, value in (item or {}).items() if name in SUBSCRIPTION_ATTRIBUTES and value}

    def record_report_subscription(self, seller_id: str, region: str, subscription_id: str,
                                   attribute: str = "rpf_subscription_id") -> bool:
        """Remember the REPORT_PROCESSING_FINISHED (or, by `attribute`, another notification type's)
        subscription (ACTIVE connections only). False if not ACTIVE."""
        if attribute not in SUBSCRIPTION_ATTRIBUTES:
            raise ValueError(f"unknown subscription attribute {attribute!r}")
        return applied(lambda: self._table.update_item(
            Key=connection_key(seller_id, region),
            UpdateExpression=f"SET {attribute} = :subscription",
            ConditionExpression=Attr("status").eq(ConnectionStatus.ACTIVE.value),
            ExpressionAttributeValues={":subscription": subscription_id},
        ))

    def sealed_refresh_token(self, seller_id: str, region: str) -> Sealed | None:
        item: dict[str, Any] | None = self._table.get_item(
            Key=connection_key(seller_id, region),
            ProjectionExpression="refresh_token",
            ConsistentRead=True,
        ).get("Item")
        if not item or "refresh_token" not in item:
            return None
        return Sealed.from_item(item["refresh_token"])


@dataclass(frozen=True)
class PendingState:
    """An issued OAuth state, as stored (the state itself is only kept as a hash)."""

    state_hash: str
    binding_hash: str
    flow: str  # "website" or "login"
    region: str
    marketplace: str | None
    created_at: int  # epoch seconds
    expires_at: int
    selling_partner_id: str | None = None  # named by Amazon at the Log-in URI

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "state_hash": self.state_hash,
            "binding_hash": self.binding_hash,
            "flow": self.flow,
            "region": self.region,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }
        if self.marketplace:
            item["marketplace"] = self.marketplace
        if self.selling_partner_id:
            item["selling_partner_id"] = self.selling_partner_id
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> PendingState:
        return cls(
            state_hash=item["state_hash"],
            binding_hash=item["binding_hash"],
            flow=item["flow"],
            region=item["region"],
            marketplace=item.get("marketplace"),
            created_at=int(item["created_at"]),
            expires_at=int(item["expires_at"]),
            selling_partner_id=item.get("selling_partner_id"),
        )


class OAuthStateRepository:
    def __init__(self, table: Table) -> None:
        self._table = table

    def create(self, state: PendingState) -> None:
        """Store a new state; ConditionFailed if its hash is taken (never, for 256 random bits)."""
        with condition_checked():
            self._table.put_item(Item=state.to_item(), ConditionExpression=Attr("state_hash").not_exists())

    def consume(self, state_hash: str) -> PendingState | None:
        """Delete the state if it exists and return it; None if it was never issued or is gone.

        The conditional delete makes consumption single-use even under concurrent callbacks.
        """
        response = conditional(lambda: self._table.delete_item(
            Key={"state_hash": state_hash},
            ConditionExpression=Attr("state_hash").exists(),
            ReturnValues="ALL_OLD",
        ))
        return None if response is None else PendingState.from_item(response["Attributes"])


class ClaimStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    owner: str


class OneTimeClaims:
    """Claims in the idempotency table (Powertools' schema: `id`, TTL `expiration`).

    Used so that one authorization code is exchanged at LWA at most once, whatever the callbacks do.
    The id is a hash of the secret; the secret itself is never stored.
    """

    def __init__(self, table: Table) -> None:
        self._table = table

    def claim(self, claim_id: str, owner: str, now: int, ttl_seconds: int, *, retry_failed: bool = False) -> bool:
        """Take the claim if nobody holds it (or it expired, or, with `retry_failed`, it failed)."""
        condition = Attr("id").not_exists() | Attr("expiration").lt(now)
        if retry_failed:
            condition = condition | Attr("status").eq(ClaimStatus.FAILED.value)
        return applied(lambda: self._table.put_item(
            Item={"id": claim_id, "status": ClaimStatus.IN_PROGRESS.value, "owner": owner,
                  "expiration": now + ttl_seconds},
            ConditionExpression=condition,
        ))

    def finish(self, claim_id: str, status: ClaimStatus, *, expires_at: int | None = None) -> None:
        """Record the outcome; `expires_at` keeps a finished claim longer than its work window."""
        values: dict[str, Any] = {":status": status.value}
        update = "SET #status = :status"
        if expires_at is not None:
            update += ", expiration = :expires"
            values[":expires"] = expires_at
        self._table.update_item(
            Key={"id": claim_id},
            UpdateExpression=update,
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values,
        )

    def get(self, claim_id: str, now: int) -> Claim | None:
        item: dict[str, Any] | None = self._table.get_item(Key={"id": claim_id}, ConsistentRead=True).get("Item")
        if not item or int(item.get("expiration", 0)) < now:
            return None
        return Claim(ClaimStatus(item["status"]), item["owner"])
