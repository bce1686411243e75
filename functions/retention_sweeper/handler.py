"""Lambda entry of the retention sweep: the daily `sweep-retention` schedule."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from retention_sweeper.service import RetentionSweep
from retention_sweeper.settings import RetentionSweeperSettings
from seller_insights import aws
from seller_insights.containers import per_container
from seller_insights.observability import get_logger, get_metrics, get_tracer
from seller_insights.redaction import invocation_scope
from seller_insights.retention import PurgeIndex, PurgeStates, Receipts, S3Purge, TableItems

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


@per_container
def settings() -> RetentionSweeperSettings:
    return RetentionSweeperSettings.from_env()


@per_container
def sweep() -> RetentionSweep:
    config = settings()
    # The resource's client serialises plain Python values; one client serves both tables.
    db = aws.table(config.connections_table).meta.client
    return RetentionSweep(
        index=PurgeIndex(db, config.connections_table),
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
        return sweep().run(context.get_remaining_time_in_millis).as_dict()
    raise ValueError("unknown event: expected the sweep-retention task")
