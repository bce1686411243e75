"""RetentionSweeper: the retention_sweeper function and its daily schedule.

Trigger (docs/internal-contracts.md, "Retention and data rights"): the ``sweep-retention`` schedule,
``rate(1 day)``, with the constant input ``{"task": "sweep-retention"}``. Per (seller, region) whose
``purge_after`` has passed (the ``by_purge_due`` index), it erases every version and delete marker
under ``sellers/{seller}/{region}/``, aborts the multipart uploads there, deletes the seller's items,
writes a deletion receipt to the audit table and deletes the connection item last.

Grants are erase-only: it can list versions and delete under ``sellers/`` and ``exports/`` (the
portability archives, erased with a seller's last connection) but read no object, it
works on the connections table by key and on the one index (no Scan), it only writes and reads
receipts in the audit table, and it holds no token purpose of the key: it decrypts nothing. The key
is usable only through DynamoDB, for the tables.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import logical_ref, messaging, tag_purpose
from infra.constructs.data_stores import EXPORTS_PREFIX, PURGE_DUE_INDEX, SELLERS_PREFIX, DataStores
from infra.constructs.service_function import ServiceFunction
from infra.nag import acknowledge

DUTY = "retention_sweeper"
# A sweep deletes page after page of versions and items; the longer it runs, the more it clears per
# run (it stops in time and the next run resumes).
SWEEP_TIMEOUT_SECONDS = 900
SWEEP_MEMORY_MB = 1024
# name, rate, and how long a missed run is still worth delivering: the deadline already allows one
# day of sweep lag (StageConfig.purge_after_days), so a late run is better than waiting a day.
SCHEDULE = ("sweep-retention", Duration.days(1), Duration.hours(12))
CONNECTION_ACTIONS = (
    "dynamodb:BatchGetItem",  # the seller's quota buckets, counted and checked by key
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:UpdateItem",
    # Deletions are TransactWriteItems of DeleteItem actions under a ConditionCheck of the connection
    # item, so a re-authorization racing the purge cancels them (IAM authorizes each action).
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
)
AUDIT_ACTIONS = ("dynamodb:PutItem", "dynamodb:GetItem")


class RetentionSweeper(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        stores: DataStores,
        events_key: kms.IKey,
    ) -> None:
        """``events_key``: the key EventBridge may deliver into (this duty's failed-events queue)."""
        super().__init__(scope, construct_id)

        # Sweep runs EventBridge could not deliver, and asynchronous invocations that failed every retry.
        self.failed_events = messaging.dead_letter_queue(self, "FailedEvents", key=events_key)
        tag_purpose(self.failed_events, "retention_events_dlq")

        self.handler = ServiceFunction(
            self,
            "RetentionSweeper",
            duty=DUTY,
            config=config,
            description="Retention: purges revoked and deletion-requested sellers, with deletion receipts",
            memory_mb=SWEEP_MEMORY_MB,
            timeout=Duration.seconds(SWEEP_TIMEOUT_SECONDS),
            environment={
                "CONNECTIONS_TABLE": stores.connections.table_name,
                "AUDIT_TABLE": stores.audit.table_name,
                "DATA_BUCKET": stores.data_bucket.bucket_name,
            },
            dead_letter_queue=self.failed_events,
        )
        self._grant(stores)
        # A failed purge is left for the next run (the invocation succeeds), so it is alarmed by metric.
        self.purge_failed_metric = cloudwatch.Metric(
            namespace="SellerInsights", metric_name="PurgeFailed", dimensions_map={"service": DUTY},
            statistic=cloudwatch.Stats.SUM, period=Duration.hours(1))

        name, rate, max_event_age = SCHEDULE
        messaging.scheduled_task(
            self,
            name=name,
            rate=rate,
            max_event_age=max_event_age,
            consumer=self.handler,
            dead_letters=self.failed_events,
        )

    def _grant(self, stores: DataStores) -> None:
        fn = self.handler
        stores.grant_table_actions(fn, stores.connections, *CONNECTION_ACTIONS)
        stores.grant_connection_index_query(fn, PURGE_DUE_INDEX)
        stores.grant_table_actions(fn, stores.audit, *AUDIT_ACTIONS)
        stores.grant_seller_objects_purge(fn)
        stores.grant_seller_keys(fn)
        data_bucket = logical_ref(stores.data_bucket.node.default_child)
        for prefix in (SELLERS_PREFIX, EXPORTS_PREFIX):
            acknowledge(
                fn.role,
                f"AwsSolutions-IAM5[Resource::<{data_bucket}.Arn>/{prefix}*]",
                f"The sweeper erases every version under {SELLERS_PREFIX}{{seller}}/ and {EXPORTS_PREFIX}"
                "{seller_key}/ of sellers whose purge date has passed, keys unknown at deploy time; the grant is "
                "limited to the two prefixes it owns and to DeleteObjectVersion, DeleteObject and "
                "AbortMultipartUpload (no read).",
            )

    @property
    def dead_letter_queues(self) -> dict[str, tuple[sqs.IQueue, str]]:
        """Alarm name → (queue, description), for Observability.watch_dead_letter_queue."""
        return {
            "RetentionFailedEventsDepth": (
                self.failed_events,
                f"{DUTY}: sweep-retention runs that were not delivered, or failed invocations "
                "(purges due may be late: the deletion promise is at stake)",
            ),
        }
