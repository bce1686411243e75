"""The stateful resources of docs/internal-contracts.md, created in moto for in-process tests.

tests/infra checks that these definitions match the synthesized template, so they cannot drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def _index(name: str, partition: str, sort: str, projection: str = "KEYS_ONLY",
           included: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ProjectionType": projection}
    if included:
        spec["NonKeyAttributes"] = included
    return {
        "IndexName": name,
        "KeySchema": [{"AttributeName": partition, "KeyType": "HASH"}, {"AttributeName": sort, "KeyType": "RANGE"}],
        "Projection": spec,
    }


TABLES: dict[str, dict[str, Any]] = {
    "connections": {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "S"},
                                 {"AttributeName": "refresh_shard", "AttributeType": "S"},
                                 {"AttributeName": "refresh_due_at", "AttributeType": "N"},
                                 {"AttributeName": "reauth_shard", "AttributeType": "S"},
                                 {"AttributeName": "reauthorization_due_at", "AttributeType": "S"},
                                 {"AttributeName": "plan_shard", "AttributeType": "S"},
                                 {"AttributeName": "next_plan_at", "AttributeType": "N"},
                                 {"AttributeName": "purge_shard", "AttributeType": "S"},
                                 {"AttributeName": "purge_after", "AttributeType": "S"},
                                 {"AttributeName": "verify_shard", "AttributeType": "S"},
                                 {"AttributeName": "verify_due_at", "AttributeType": "N"},
                                 {"AttributeName": "wake_shard", "AttributeType": "S"},
                                 {"AttributeName": "wake_at", "AttributeType": "N"}],
        # Sparse indexes of the token lifecycle, the report planner, the retention sweep, consent verification
        # and parked report jobs (docs/internal-contracts.md).
        "GlobalSecondaryIndexes": [
            _index("by_refresh_due", "refresh_shard", "refresh_due_at"),
            _index("by_reauthorization_due", "reauth_shard", "reauthorization_due_at"),
            _index("by_plan_due", "plan_shard", "next_plan_at", projection="ALL"),
            _index("by_purge_due", "purge_shard", "purge_after"),
            _index("by_verification_due", "verify_shard", "verify_due_at"),
            _index("by_wake_due", "wake_shard", "wake_at", projection="INCLUDE", included=["version"]),
        ],
        "ttl": "expires_at",
    },
    "oauth_state": {
        "KeySchema": [{"AttributeName": "state_hash", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "state_hash", "AttributeType": "S"}],
        "ttl": "expires_at",
    },
    "idempotency": {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "ttl": "expiration",
    },
    # Data-request records and deletion receipts (docs/internal-contracts.md, "The audit table").
    "audit": {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "ttl": "expires_at",
    },
}


@dataclass(frozen=True)
class Resources:
    tables: dict[str, str]
    key_arn: str
    secret_arn: str


def create_resources(session: Any, lwa_client: dict[str, str], prefix: str = "test") -> Resources:
    dynamodb = session.client("dynamodb")
    kms = session.client("kms")
    key_arn = kms.create_key(Description="token key")["KeyMetadata"]["Arn"]
    tables = {}
    for purpose, spec in TABLES.items():
        name = f"{prefix}-{purpose}"
        indexes = {"GlobalSecondaryIndexes": spec["GlobalSecondaryIndexes"]} if "GlobalSecondaryIndexes" in spec else {}
        dynamodb.create_table(
            TableName=name,
            KeySchema=spec["KeySchema"],
            AttributeDefinitions=spec["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
            **indexes,
        )
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec["ttl"]}
        )
        tables[purpose] = name
    secret_arn = session.client("secretsmanager").create_secret(
        Name=f"{prefix}-lwa-client", SecretString=json.dumps(lwa_client)
    )["ARN"]
    return Resources(tables=tables, key_arn=key_arn, secret_arn=secret_arn)
