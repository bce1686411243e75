"""Lambda entry of the report pipeline: the plan schedule (the finder of due plans), the report_plans queue
it fills, the wake-jobs schedule (parked jobs back to the job queue), the job queue and Amazon's
REPORT_PROCESSING_FINISHED and DATA_KIOSK_QUERY_PROCESSING_FINISHED notifications. Messages are told apart by
their shape. Bodies of messages are never logged."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from report_fetcher.participations import ParticipationsRefresh
from report_fetcher.planner import PLANS_KIND, PlanFinder, Planner, PlanReport
from report_fetcher.service import JobRunner
from report_fetcher.settings import ReportFetcherSettings
from report_fetcher.subscriptions import ReportSubscriptions
from report_fetcher.wakes import JobWaker
from seller_insights import aws
from seller_insights.containers import per_container
from seller_insights.errors import ConfigurationError
from seller_insights.fanout import WorkQueue
from seller_insights.observability import get_logger, get_metrics, get_tracer, sweep_completed
from seller_insights.participations import ParticipationsReader
from seller_insights.quotas import QuotaBuckets
from seller_insights.redaction import invocation_scope
from seller_insights.report_destinations import DestinationCache
from seller_insights.report_jobs import Job, JobRepository, JobStatus, PlanRepository, ReportRepository
from seller_insights.repositories import ConnectionsRepository
from seller_insights.spapi import SpApiClient
from seller_insights.tokens import AccessTokenCache, AccessTokenProvider, CachedTokensOnly
from seller_insights.vault import Vault

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

MERCHANT_ACCOUNT_PREFIX = "amzn1.merchant.o."

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


class _NoLwa:
    """Tokens are never refreshed here (the fetcher may open neither refresh tokens nor the LWA client
    secret); CachedTokensOnly never asks."""

    def refresh(self, refresh_token: str) -> Any:
        raise AssertionError("the report fetcher must not refresh tokens")


@per_container
def settings() -> ReportFetcherSettings:
    return ReportFetcherSettings.from_env()


@per_container
def table() -> Any:
    return aws.table(settings().connections_table)


@per_container
def connections() -> ConnectionsRepository:
    return ConnectionsRepository(table())


@per_container
def cached_tokens() -> CachedTokensOnly:
    """The sellers' access tokens the token refresher keeps (never refreshed here; a renewal is only asked for)."""
    config = settings()
    provider = AccessTokenProvider(connections=connections(), cache=AccessTokenCache(table()),
                                   vault=Vault(aws.client("kms"), config.token_key_id), lwa=_NoLwa(),  # type: ignore[arg-type]
                                   purge_after_days=config.purge_after_days)
    return CachedTokensOnly(provider, connections())


@per_container
def sellers_api() -> SpApiClient:
    """SP-API with the seller's cached access token (refreshed by the token refresher, never here)."""
    return SpApiClient(cached_tokens(), endpoint_override=settings().amazon_endpoint_override)


@per_container
def runner() -> JobRunner:
    config = settings()
    return JobRunner(
        jobs=JobRepository(table()),
        reports=ReportRepository(table()),
        plans=PlanRepository(table()),
        connections=connections(),
        spapi=sellers_api(),
        quotas=QuotaBuckets(table()),
        s3=aws.client("s3"),
        bucket=config.data_bucket,
        tokens=cached_tokens(),
        limits=config.document_limits,
        sales_and_traffic_source=config.sales_and_traffic,
        sales_and_traffic_granularity=config.sales_and_traffic_granularity,
    )


@per_container
def subscriptions() -> ReportSubscriptions | None:
    """None without a report_notifications queue. The destinations' ids are the token refresher's (cached
    in the idempotency table); the fetcher only reads them, and drops one Amazon refuses."""
    config = settings()
    if not config.report_notifications_queue_arn:
        return None
    if not config.idempotency_table:
        raise ConfigurationError("REPORT_NOTIFICATIONS_QUEUE_ARN needs IDEMPOTENCY_TABLE")
    return ReportSubscriptions(
        sellers_api=sellers_api(),
        connections=connections(),
        destinations=DestinationCache(aws.table(config.idempotency_table), config.report_notifications_queue_arn),
    )


def participations() -> ParticipationsRefresh:
    """The daily check of each due connection's marketplaces, with the seller's cached token and quota; a
    new one per report_plans message (it counts the message's checks), on the container's clients."""
    return ParticipationsRefresh(sellers_api=sellers_api(), plans=PlanRepository(table()),
                                 reader=ParticipationsReader(QuotaBuckets(table())))


@invocation_scope
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("task") == "plan-reports":
        config = settings()
        work = WorkQueue(aws.client("sqs"), config.report_plans_queue_url, PLANS_KIND)
        found = PlanFinder(table(), work, config.plan_find_limit).run()
        logger.info("due plans sent to report_plans", extra=found.as_dict())
        sweep_completed("plan-reports")
        return found.as_dict()
    if event.get("task") == "wake-jobs":
        woken = JobWaker(table(), aws.client("sqs"), settings().report_jobs_queue_url).run()
        sweep_completed("wake-jobs")
        return woken.as_dict()
    if "Records" in event:
        # Imported on the first queue event: Powertools' batch utility loads every event data class (some
        # 30% of a bare `import boto3`), and the plan schedule never needs it.
        from seller_insights.sqs_batches import consume  # noqa: PLC0415

        return consume(event, _message, _log_failure, context)
    raise ValueError("unknown event: expected SQS records, or the plan-reports or wake-jobs task")


def _message(record: SQSRecord) -> None:
    """A message of due plans (report_plans), of jobs, or Amazon's word that a report or query finished,
    told apart by its shape. Its body is never logged."""
    body = json.loads(record.body)
    if PLANS_KIND in body:
        _plan(body[PLANS_KIND])
    elif "jobs" in body:
        _run_jobs(body["jobs"])
    elif body.get("notificationType") == "REPORT_PROCESSING_FINISHED":
        _resume(body)
    elif body.get("notificationType") == "DATA_KIOSK_QUERY_PROCESSING_FINISHED":
        _resume_query(body)
    else:
        raise ValueError("neither a report_plans or job message nor a REPORT_PROCESSING_FINISHED or "
                         "DATA_KIOSK_QUERY_PROCESSING_FINISHED notification")


def _plan(items: list[dict[str, Any]]) -> PlanReport:
    """The connections of one report_plans message, planned (each re-read; the no longer due skipped)."""
    config = settings()
    planner = Planner(PlanRepository(table()), aws.client("sqs"), config.report_jobs_queue_url,
                      config.enabled_by_default, subscriptions(), config.planning_limits,
                      participations=participations())
    report = planner.plan(items)
    logger.info("connections planned", extra=report.as_dict())
    return report


def _log_failure(record: SQSRecord, error: BaseException) -> None:
    logger.error("report message failed", exc_info=error, extra={"message_id": record.message_id})


def _run_jobs(messages: list[dict[str, Any]]) -> None:
    """Each job one step; a job that must wait goes back alone, delayed (its message's hops plus one), or is
    parked in the job table (nothing to send). Every job of the message is tried; if any failed, the
    message fails (the others are idempotent by job id)."""
    failed = 0
    for message in messages:
        try:
            job = Job.from_message(message)
            step = runner().run(job, message.get("version"))
            if step.again:
                _enqueue(job, step.delay or 0, step.version, step.hops)
        except Exception:
            logger.exception("report job step failed", extra={"report_type": message.get("report_type")})
            failed += 1
    if failed:
        raise RuntimeError(f"{failed} of {len(messages)} jobs failed; the message is retried")


def _resume(notification: dict[str, Any]) -> None:
    """Amazon says a report finished: look at its job now instead of at the next poll."""
    payload = notification["payload"]["reportProcessingFinishedNotification"]
    seller = payload.get("sellerId")
    if not seller:
        return  # vendor groups have no seller id; we connect sellers only
    report_id = str(payload["reportId"])
    _hurry(JobRepository(table()).find_by_report_id(str(seller), report_id), report_id)


def _resume_query(notification: dict[str, Any]) -> None:
    """Amazon says a Data Kiosk query finished: look at its job now (the QUERYID# pointer finds it)."""
    payload = notification["payload"]
    account = str(payload.get("accountId") or "")
    if not account.startswith(MERCHANT_ACCOUNT_PREFIX):
        return  # vendor groups (amzn1.vg.) are not sellers; we connect sellers only
    # The merchant account id ends with the seller's id (the notification carries no sellerId).
    seller = account.removeprefix(MERCHANT_ACCOUNT_PREFIX)
    query_id = str(payload["queryId"])
    _hurry(JobRepository(table()).find_by_query_id(seller, query_id), query_id)


def _hurry(job: Job | None, waited_on: str) -> None:
    # Only a job still waiting on this very report (or query) is hurried. A job cooling down after FATAL
    # (the notification of that FATAL arrives after the poll saw it) or already waiting on a newer one
    # keeps its schedule: resuming it would skip the cooldown and request again at once.
    if job is None or job.status is not JobStatus.WAITING or job.report_id != waited_on:
        return
    # A parked job is un-parked; the delayed poll message (if any) is now stale and will be dropped. The
    # message sent here is a self-hop like the re-queues (the function sends to its own trigger queue).
    step = runner().hurry(job)
    if step.again:
        _enqueue(job, 0, step.version, step.hops)


def _enqueue(job: Job, delay: int, version: int | None, hops: int = 0) -> None:
    """A self-hop: the job back on report_jobs alone, `hops` its consecutive self-hops (at most MAX_SELF_HOPS)."""
    body = {"jobs": [{**job.message(), "version": version, "hops": hops}]}
    aws.client("sqs").send_message(QueueUrl=settings().report_jobs_queue_url,
                                   MessageBody=json.dumps(body), DelaySeconds=delay)
