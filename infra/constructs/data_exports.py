"""DataExports: the export worker (functions/data_exports) and its ``data_exports`` queue.

``POST /admin/sellers/{id}/export`` (DataRequests) records the request and sends one message here; the
worker builds the seller's ZIP by streaming every stored report into a multipart upload under
``exports/{seller_key}/{request_id}.zip``, records progress on the request item, and marks it DONE (or
FAILED). Its own function, not the API's: the API function must answer within the HTTP API's 30 s, the
worker needs up to Lambda's 15 minutes, and a function has one timeout.

Memory is bounded by the streaming (a few 8 MiB parts in flight): bench/README.md ("export_size") measured
a peak RSS growth of 82 MiB for 10,000 reports and 3 GiB. The memory setting buys CPU instead: deflate is
CPU-bound, and at 1,769 MB Lambda gives a function one full vCPU. Batch size 1: each export has a whole
invocation. Concurrency 2 (the least an SQS event source allows): exports are operator requests, rare,
and two at a time keep their S3, KMS and DynamoDB load small next to the report pipeline's.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import logical_ref, messaging, tag_purpose
from infra.constructs.data_stores import EXPORTS_PREFIX, SELLERS_PREFIX, DataStores
from infra.constructs.service_function import ServiceFunction
from infra.nag import acknowledge

DUTY = "data_exports"
WORKER_TIMEOUT = Duration.minutes(15)  # Lambda's maximum: the worker stops a minute before it
WORKER_MEMORY_MB = 1769  # one full vCPU for deflate; the build itself needs ~140 MiB (bench/export_size)
# Work queue retention: SQS's maximum, as every work queue (issue 11, messaging.WORK_QUEUE_RETENTION).
QUEUE_RETENTION = Duration.days(14)
BATCH_SIZE = 1
MAX_CONCURRENCY = 2
AUDIT_ACTIONS = ("dynamodb:UpdateItem",)  # completes the export request's audit record


class DataExports(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, stores: DataStores) -> None:
        super().__init__(scope, construct_id)
        self.handler = ServiceFunction(
            self,
            "ExportWorker",
            duty=DUTY,
            config=config,
            description="Portability exports: streams a seller's ZIP into S3 (data_exports queue)",
            memory_mb=WORKER_MEMORY_MB,
            timeout=WORKER_TIMEOUT,
            environment={
                "CONNECTIONS_TABLE": stores.connections.table_name,
                "AUDIT_TABLE": stores.audit.table_name,
                "DATA_BUCKET": stores.data_bucket.bucket_name,
            },
        )
        self.handler.acknowledge_synchronous_only("its SQS event source (failed messages go to the queue's DLQ)")
        self.key = messaging.customer_key(self, "QueueKey", config=config, use="portability export requests (SQS)")
        tag_purpose(self.key, "data_exports_key")
        self.dlq = messaging.dead_letter_queue(self, "ExportsDlq", key=self.key)
        tag_purpose(self.dlq, "data_exports_dlq")
        self.queue = messaging.consumed_queue(
            self, "Exports", consumer=self.handler, key=self.key, retention=QUEUE_RETENTION, dead_letters=self.dlq
        )
        tag_purpose(self.queue, "data_exports")
        messaging.consume(
            self,
            "ExportsSource",
            consumer=self.handler,
            queue=self.queue,
            batch_size=BATCH_SIZE,
            max_concurrency=MAX_CONCURRENCY,
            dead_letter_purpose="data_exports_dlq",
        )
        self._grant(stores)

    @property
    def dead_letter_queues(self) -> dict[str, tuple[sqs.IQueue, str]]:
        """Alarm name → (queue, description), for Observability.watch_dead_letter_queue."""
        return {
            "DataExportsDlqDepth": (
                self.dlq,
                f"{DUTY}: an export request failed {messaging.MAX_RECEIVE_COUNT} times (marked FAILED); see the "
                "function's log, then ask the operator to request the export again",
            ),
        }

    def grant_send(self, producer: ServiceFunction) -> None:
        """``producer`` may queue export requests (SendMessage; the queue's key only through SQS)."""
        self.queue.grant(producer, "sqs:SendMessage")  # SendMessageBatch is authorized as SendMessage
        messaging.grant_queue_key_via_sqs(producer, self.key, "kms:GenerateDataKey", "kms:Decrypt")
        producer.add_environment("EXPORT_QUEUE_URL", self.queue.queue_url)

    def _grant(self, stores: DataStores) -> None:
        fn = self.handler
        # The seller's partition: its items by key and Query (reports, connections, the request item).
        stores.grant_tables_read_write(fn, stores.connections)
        stores.grant_table_actions(fn, stores.audit, *AUDIT_ACTIONS)
        stores.grant_seller_objects_read(fn)
        stores.grant_exports_read_write(fn)
        stores.grant_seller_keys(fn)
        bucket = logical_ref(stores.data_bucket.node.default_child)
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{SELLERS_PREFIX}*]",
            f"An export reads the stored report objects of one seller under {SELLERS_PREFIX}{{seller}}/..., keys "
            "unknown at deploy time; GetObject only, on the sellers/ prefix.",
        )
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{EXPORTS_PREFIX}*]",
            f"Export archives are streamed to {EXPORTS_PREFIX}{{seller_key}}/{{request_id}}.zip (ids made per "
            "request); put, multipart (and abort of a dead attempt's upload) and get on the exports/ prefix only, "
            "which the bucket's lifecycle expires after 7 days.",
        )
