"""Lambda entry of the retention sweep: the daily `sweep-retention` schedule (the finder of due purges) and
the `retention_purges` queue it fills (one purge per message); and the hourly `fleet-census` schedule (the
fleet's gauges, seller_insights.fleet_census)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from retention_sweeper.service import PURGES_KIND, PurgeFinder, RetentionSweep, SweepReport
from retention_sweeper.settings import RetentionSweeperSettings
from seller_insights import aws, clock, fleet_census
from seller_insights.containers import per_container
from seller_insights.fanout import WorkQueue
from seller_insights.observability import get_logger, get_metrics, get_tracer, sweep_completed
from seller_insights.redaction import invocation_scope
from seller_insights.retention import PurgeStates, Receipts, S3Purge, TableItems

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


@per_container
def settings() -> RetentionSweeperSettings:
    return RetentionSweeperSettings.from_env()


@per_container
def work() -> WorkQueue:
    # One purge per message: a purge that fails or runs short comes back alone.
    return WorkQueue(aws.client("sqs"), settings().retention_purges_queue_url, PURGES_KIND, per_message=1)


@per_container
def sweep() -> RetentionSweep:
    config = settings()
    # The resource's client serialises plain Python values; one client serves both tables.
    db = aws.table(config.connections_table).meta.client
    return RetentionSweep(
        states=PurgeStates(db, config.connections_table),
        items=TableItems(db, config.connections_table),
        objects=S3Purge(aws.client("s3"), config.data_bucket),
        receipts=Receipts(db, config.audit_table),
    )


@invocation_scope
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("task") == "sweep-retention":
        config = settings()
        found = PurgeFinder(aws.table(config.connections_table), work(), config.purge_find_limit).run()
        logger.info("due purges sent to retention_purges", extra=found.as_dict())
        sweep_completed("sweep-retention")
        return found.as_dict()
    if event.get("task") == fleet_census.SCHEDULE:
        config = settings()
        census = fleet_census.FleetCensus(aws.table(config.connections_table).meta.client,
                                          config.connections_table).count(clock.epoch_seconds())
        fleet_census.emit(census)
        summary = census.as_dict()
        logger.info("fleet census", extra=summary)
        sweep_completed(fleet_census.SCHEDULE)
        return summary
    if "Records" in event:
        from seller_insights.sqs_batches import consume  # noqa: PLC0415 (only queue events need it)

        def purge(record: SQSRecord) -> None:
            report = SweepReport()
            try:
                for item in work().items_of(json.loads(record.body)):
                    sweep().purge_item(item, context.get_remaining_time_in_millis, report)
            finally:
                logger.info("retention purge message", extra=report.as_dict())

        return consume(event, purge, _log_failure, context)
    raise ValueError("unknown event: expected retention_purges records, the sweep-retention or the "
                     "fleet-census task")


def _log_failure(record: SQSRecord, error: BaseException) -> None:
    # purge_item logged why (type and code only); the message comes back and the purge resumes.
    logger.warning("retention purge message failed", extra={"message_id": record.message_id,
                                                            "error": type(error).__name__})
