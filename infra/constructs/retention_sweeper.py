"""RetentionSweeper: the retention_sweeper function, its daily schedule and its work queue.

Triggers (docs/internal-contracts.md, "Retention and data rights"): the ``sweep-retention`` schedule,
``rate(1 day)``, with the constant input ``{"task": "sweep-retention"}``, which only finds the
(seller, region) whose ``purge_after`` has passed (the ``by_purge_due`` index) and sends them to the
``retention_purges`` queue, one a message; that queue, one message per invocation, ``purge_concurrency``
at once. Per connection it erases every version and delete marker
under ``sellers/{seller}/{region}/``, aborts the multipart uploads there, deletes the seller's items,
writes a deletion receipt to the audit table and deletes the connection item last. The hourly
``fleet-census`` schedule (``{"task": "fleet-census"}``) counts the fleet from the connections table's
sparse indexes and emits the Fleet* gauges (seller_insights.fleet_census).

Grants are erase-only: it can list versions and delete under ``sellers/`` and ``exports/`` (the
portability archives, erased with a seller's last connection) but read no object, it
works on the connections table by key and on the purge index (and, for the census, Query on three
more indexes; no Scan), it only writes and reads
receipts in the audit table, and it holds no token purpose of the key: it decrypts nothing. The key
is usable only through DynamoDB, for the tables. ``retention_purges`` (and its DLQ) has a customer key
of its own (the duty's other key is the events key EventBridge may use); the role may send to and
consume that one queue, and use its key only through SQS.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import logical_ref, messaging, tag_purpose
from infra.constructs.data_stores import (
    EXPORTS_PREFIX,
    PLAN_DUE_INDEX,
    PURGE_DUE_INDEX,
    REFRESH_DUE_INDEX,
    SELLERS_PREFIX,
    VERIFICATION_DUE_INDEX,
    DataStores,
)
from infra.constructs.service_function import ServiceFunction
from infra.nag import acknowledge

DUTY = "retention_sweeper"
# A sweep deletes page after page of versions and items; the longer it runs, the more it clears per
# run (it stops in time and the next run resumes).
SWEEP_TIMEOUT_SECONDS = 900
SWEEP_MEMORY_MB = 1024
# One purge per invocation: it has the whole timeout, stops SAFETY_MILLIS before it and fails its message,
# which comes back after the visibility timeout (6 x 900 s) and resumes.
PURGES_BATCH_SIZE = 1
# name, rate, and how long a missed run is still worth delivering: the deadline already allows one
# day of sweep lag (StageConfig.purge_after_days), so a late run is better than waiting a day.
SCHEDULE = ("sweep-retention", Duration.days(1), Duration.hours(12))
# The fleet census (seller_insights.fleet_census): hourly gauges of the whole fleet. It lives here because this
# duty already pages the purge index, runs rarely and briefly, and holds no token purpose and no secret but
# the seller keys': reading the other sparse indexes adds nothing it could misuse. A run older than the hour
# is not worth delivering: the next one counts afresh.
CENSUS_SCHEDULE = ("fleet-census", Duration.hours(1), Duration.hours(1))
# The census reads these indexes (keys only, or the plans' coverage), never the table by Scan.
CENSUS_INDEXES = (REFRESH_DUE_INDEX, VERIFICATION_DUE_INDEX, PLAN_DUE_INDEX)
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
                "PURGE_FIND_LIMIT": str(config.purge_find_limit),
            },
            dead_letter_queue=self.failed_events,
        )
        fn = self.handler

        self.purges_key = messaging.customer_key(self, "PurgesKey", config=config, use="retention purge messages (SQS)")
        tag_purpose(self.purges_key, "retention_purges_key")
        self.purges_dlq = messaging.dead_letter_queue(self, "PurgesDlq", key=self.purges_key)
        tag_purpose(self.purges_dlq, "retention_purges_dlq")
        self.purges = messaging.consumed_queue(
            self, "Purges", consumer=fn, key=self.purges_key, retention=messaging.WORK_QUEUE_RETENTION,
            dead_letters=self.purges_dlq,
        )
        tag_purpose(self.purges, "retention_purges")
        # The queue's visibility follows the function's timeout, so its URL joins the environment after.
        fn.add_environment("RETENTION_PURGES_QUEUE_URL", self.purges.queue_url)
        self._grant(stores)
        messaging.consume(
            self,
            "PurgesSource",
            consumer=fn,
            queue=self.purges,
            batch_size=PURGES_BATCH_SIZE,
            max_concurrency=config.purge_concurrency,
            dead_letter_purpose="retention_purges_dlq",
        )
        # A failed purge fails its message (it comes back, then reaches the DLQ); alarmed by metric at once.
        self.purge_failed_metric = cloudwatch.Metric(
            namespace="SellerInsights", metric_name="PurgeFailed", dimensions_map={"service": DUTY},
            statistic=cloudwatch.Stats.SUM, period=Duration.hours(1))

        for name, rate, max_event_age in (SCHEDULE, CENSUS_SCHEDULE):
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
        stores.grant_connection_index_query(fn, PURGE_DUE_INDEX, *CENSUS_INDEXES)
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
        # The sweep-retention finder sends due purges (SendMessageBatch is authorized as SendMessage).
        self.purges.grant(fn, "sqs:SendMessage")
        messaging.grant_queue_key_via_sqs(fn, self.purges_key, "kms:GenerateDataKey")

    @property
    def dead_letter_queues(self) -> dict[str, tuple[sqs.IQueue, str]]:
        """Alarm name → (queue, description), for Observability.watch_dead_letter_queue."""
        return {
            "RetentionPurgesDlqDepth": (
                self.purges_dlq,
                f"{DUTY}: purges that failed {messaging.MAX_RECEIVE_COUNT} tries (still due: the next "
                "sweep-retention run sends them again; the deletion promise is at stake)",
            ),
            "RetentionFailedEventsDepth": (
                self.failed_events,
                f"{DUTY}: sweep-retention runs that were not delivered, or failed invocations "
                "(purges due may be late: the deletion promise is at stake)",
            ),
        }
