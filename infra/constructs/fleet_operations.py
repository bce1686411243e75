"""What the fleet commands `ops status` and `ops redrive` may do as the OpsSupportRole (with MFA, like every
statement of the role; ops/status.py, ops/queues.py). `ops seller-key` and `ops backfill` go through the
signed /admin routes (DataRequests.allow_operators), audited like every data request.

- The census (seller_insights.fleet_census): Query on four sparse indexes of the connections table, and
  BatchGetItem and Scan on the table restricted to the attributes `pk`, `sk` and `status`
  (`dynamodb:Attributes`, `dynamodb:Select` = SPECIFIC_ATTRIBUTES): a connection's status, never a token,
  contact or report row. The table's key only through DynamoDB (what reading a table under a customer key
  needs); it opens no sealed token (those are direct KMS calls with an encryption context).
- Every queue's depth and redrive policy (GetQueueAttributes). For each dead-letter queue with a source:
  receive, delete, release (ChangeMessageVisibility) and SQS's own message move tasks on the DLQ,
  SendMessage on its source, and the queues' keys through SQS only.
- The LWA client secret's metadata (DescribeSecret, ListSecretVersionIds): never GetSecretValue.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.data_stores import (
    PLAN_DUE_INDEX,
    PURGE_DUE_INDEX,
    REFRESH_DUE_INDEX,
    VERIFICATION_DUE_INDEX,
    DataStores,
)
from infra.constructs.operators import Operators

CENSUS_INDEXES = (REFRESH_DUE_INDEX, PURGE_DUE_INDEX, VERIFICATION_DUE_INDEX, PLAN_DUE_INDEX)
CENSUS_ATTRIBUTES = ("pk", "sk", "status")
DLQ_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
               "sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks")


def allow_fleet_commands(operators: Operators, scope: Construct, stores: DataStores) -> None:
    """Grant the role the fleet commands' calls on this stack's resources (call it once every queue exists)."""
    region = Stack.of(scope).region
    table = stores.connections
    operators.allow("FleetCensusIndexes", ["dynamodb:Query"],
                    [f"{table.table_arn}/index/{index}" for index in CENSUS_INDEXES])
    operators.allow("FleetCensusStatuses", ["dynamodb:BatchGetItem", "dynamodb:Scan"], [table.table_arn],
                    conditions={"ForAllValues:StringEquals": {"dynamodb:Attributes": list(CENSUS_ATTRIBUTES)},
                                "StringEqualsIfExists": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}})
    operators.allow("FleetCensusTableKey", ["kms:Decrypt", "kms:DescribeKey"], [stores.key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}})

    queues = [queue for queue in Stack.of(scope).node.find_all() if isinstance(queue, sqs.Queue)]
    operators.allow("FleetQueueDepths", ["sqs:GetQueueAttributes"], [queue.queue_arn for queue in queues])
    sources = [queue for queue in queues if queue.dead_letter_queue is not None]
    dead_letters = [queue.dead_letter_queue.queue for queue in sources if queue.dead_letter_queue is not None]
    operators.allow("FleetRedriveFromDeadLetters", list(DLQ_ACTIONS), [queue.queue_arn for queue in dead_letters])
    operators.allow("FleetRedriveToSources", ["sqs:SendMessage"], [queue.queue_arn for queue in sources])
    keys: dict[str, kms.IKey] = {}
    for queue in [*sources, *dead_letters]:
        if queue.encryption_master_key is not None:
            keys.setdefault(queue.encryption_master_key.node.addr, queue.encryption_master_key)
    if keys:
        operators.allow("FleetRedriveQueueKeys", ["kms:Decrypt", "kms:GenerateDataKey"],
                        [key.key_arn for key in keys.values()],
                        conditions={"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}})

    operators.allow("FleetLwaSecretMetadata", ["secretsmanager:DescribeSecret", "secretsmanager:ListSecretVersionIds"],
                    [stores.lwa_client_secret.secret_arn])
