"""Lambda entry of the export worker: messages of the `data_exports` queue (batch size 1), each one export
request (worker.py). Logs carry `seller_key` and counts, never the seller id or a URL."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from data_exports.settings import DataExportsSettings
from data_exports.worker import ExportWorker, message_items
from seller_insights import aws
from seller_insights.containers import per_container
from seller_insights.data_rights import AuditLog, DataRightsRepository
from seller_insights.export_requests import ExportRequests
from seller_insights.observability import get_logger, get_metrics, get_tracer
from seller_insights.pseudonyms import seller_key
from seller_insights.redaction import invocation_scope
from seller_insights.sqs_batches import consume

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


@per_container
def settings() -> DataExportsSettings:
    return DataExportsSettings.from_env()


@per_container
def worker() -> ExportWorker:
    config = settings()
    table = aws.table(config.connections_table)
    return ExportWorker(requests=ExportRequests(table), sellers=DataRightsRepository(table),
                        audit=AuditLog(aws.table(config.audit_table)), s3=aws.client("s3"), bucket=config.data_bucket)


@invocation_scope
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" not in event:
        raise ValueError("unknown event: expected SQS records of the data_exports queue")
    def export(record: Any) -> None:
        receives = int(record.attributes.approximate_receive_count or 1)
        for item in message_items(json.loads(record.body)):
            logger.append_keys(seller_key=seller_key(item["seller_id"]))
            worker().run(item["seller_id"], item["request_id"], receive_count=receives,
                         remaining_ms=context.get_remaining_time_in_millis)

    def log_failure(record: Any, error: BaseException) -> None:
        logger.error("export message failed", exc_info=error, extra={"message_id": record.message_id})

    return consume(event, export, log_failure, context)
