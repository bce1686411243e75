"""Lambda entry of the token lifecycle: scheduled tasks, the token_refresh work queue and the application
notifications queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from seller_insights import aws
from seller_insights.app_gate import AppGate
from seller_insights.candidates import CandidateRepository
from seller_insights.containers import per_container
from seller_insights.credentials import SecretsManagerCredentials
from seller_insights.data_rights import AuditLog
from seller_insights.endpoints import amazon_url
from seller_insights.events import EventPublisher
from seller_insights.fanout import WorkQueue
from seller_insights.identity import SellerIdentity
from seller_insights.lwa import LwaClient
from seller_insights.marketplaces import LWA_TOKEN_URL
from seller_insights.observability import get_logger, get_metrics, get_tracer, sweep_completed
from seller_insights.participations import ParticipationsReader
from seller_insights.quotas import QuotaBuckets
from seller_insights.redaction import invocation_scope
from seller_insights.report_destinations import DestinationCache
from seller_insights.report_jobs import PlanRepository
from seller_insights.repositories import ConnectionsRepository, OneTimeClaims
from seller_insights.spapi import GrantlessTokens, SpApiClient
from seller_insights.tokens import AccessTokenCache, AccessTokenProvider, TokenPolicy
from seller_insights.vault import Vault
from token_refresher.destinations import NOTIFICATIONS_SCOPE, DestinationKeeper
from token_refresher.marketplaces import ConsentMarketplaces
from token_refresher.service import (
    ROTATION_SCOPE,
    TOKEN_REFRESH_KIND,
    ReauthorizationDigest,
    RefreshFinder,
    RefreshWork,
    SecretRotation,
    SecretStore,
    refresh_limit,
)
from token_refresher.settings import TokenRefresherSettings
from token_refresher.verification import (
    CONSENT_VERIFICATION_KIND,
    ConsentVerification,
    VerificationFinder,
    VerificationWork,
    verification_limit,
)

if TYPE_CHECKING:
    from token_refresher.notifications import NotificationConsumer

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()

EVENT_SOURCE = "seller-insights.tokens"
# The task `ops incident revoke-all` invokes the function with (docs/incident-response.md).
ROTATE_CLIENT_SECRET_TASK = "rotate-client-secret"  # noqa: S105 - a task name
TOKEN_POLICY = TokenPolicy()


@per_container
def settings() -> TokenRefresherSettings:
    return TokenRefresherSettings.from_env()


@per_container
def credentials() -> SecretsManagerCredentials:
    return SecretsManagerCredentials(settings().lwa_client_secret_id)


@per_container
def lwa() -> LwaClient:
    return LwaClient(amazon_url(LWA_TOKEN_URL, settings().amazon_endpoint_override), credentials())


@per_container
def connections() -> ConnectionsRepository:
    return ConnectionsRepository(aws.table(settings().connections_table))


@per_container
def app_gate() -> AppGate:
    """The incident switch (ops incident contain): while it blocks refresh tokens, none is opened."""
    return AppGate(aws.table(settings().connections_table))


@per_container
def tokens() -> AccessTokenProvider:
    config = settings()
    return AccessTokenProvider(
        connections=connections(),
        cache=AccessTokenCache(aws.table(config.connections_table)),
        vault=Vault(aws.client("kms"), config.token_key_id),
        lwa=lwa(),
        purge_after_days=config.purge_after_days,
        policy=TOKEN_POLICY,
        refresh_blocked=app_gate().refresh_blocked,
    )


@per_container
def verification() -> ConsentVerification:
    config = settings()
    table = aws.table(config.connections_table)
    return ConsentVerification(
        candidates=CandidateRepository(table),
        vault=Vault(aws.client("kms"), config.token_key_id),
        lwa=lwa(),
        identity=SellerIdentity(endpoint_override=config.amazon_endpoint_override),
        audit=AuditLog(aws.table(config.audit_table)),
        marketplaces=ConsentMarketplaces(reader=ParticipationsReader(QuotaBuckets(table)),
                                         plans=PlanRepository(table),
                                         endpoint_override=config.amazon_endpoint_override),
    )


@per_container
def grantless_api(scope: str) -> SpApiClient:
    """Calls that act for the application, with a grantless token of `scope` kept for this container."""
    return SpApiClient(GrantlessTokens(lwa(), scope), endpoint_override=settings().amazon_endpoint_override)


@per_container
def rotation() -> SecretRotation:
    config = settings()
    return SecretRotation(
        store=SecretStore(aws.client("secretsmanager"), config.lwa_client_secret_id),
        claims=OneTimeClaims(aws.table(config.idempotency_table)),
        application_api=grantless_api(ROTATION_SCOPE),
        credentials=credentials(),
        rotate_when_days_left=config.rotate_when_days_left,
    )


@per_container
def notifications() -> NotificationConsumer:
    # Imported on the first queue event: Powertools' batch and idempotency utilities add some 40% of a bare
    # `import boto3` to the import, and the scheduled tasks (most invocations) never need them.
    from token_refresher.notifications import NotificationConsumer  # noqa: PLC0415

    return NotificationConsumer(rotation(), idempotency_table=settings().idempotency_table,
                                dynamodb=aws.client("dynamodb"))


@per_container
def token_work_queue(kind: str) -> WorkQueue:
    """The token_refresh queue, for work items of `kind` (refresh-tokens' and verify-consents')."""
    return WorkQueue(aws.client("sqs"), settings().refresh_work_queue_url, kind)


@per_container
def destinations() -> DestinationKeeper | None:
    """None without a report_notifications queue (the report pipeline then polls only)."""
    config = settings()
    if not config.report_notifications_queue_arn:
        return None
    return DestinationKeeper(
        queue_arn=config.report_notifications_queue_arn,
        application_api=grantless_api(NOTIFICATIONS_SCOPE),
        cache=DestinationCache(aws.table(config.idempotency_table), config.report_notifications_queue_arn),
    )


def refresh_work(context: LambdaContext) -> RefreshWork:
    """One invocation's renewals (its report counts that batch only)."""
    return RefreshWork(connections(), tokens(), QuotaBuckets(aws.table(settings().connections_table)),
                       settings().lwa_refresh, context.get_remaining_time_in_millis)


def verification_work(context: LambdaContext) -> VerificationWork:
    """One invocation's consent verifications (its report counts that batch only)."""
    return VerificationWork(verification(), QuotaBuckets(aws.table(settings().connections_table)),
                            settings().lwa_refresh, context.get_remaining_time_in_millis,
                            refresh_blocked=app_gate().refresh_blocked)


def _refresh_tokens() -> dict[str, Any]:
    finder = RefreshFinder(connections(), token_work_queue(TOKEN_REFRESH_KIND),
                           limit=refresh_limit(settings().lwa_refresh), destinations=destinations())
    return finder.run().as_dict()


def _verify_consents() -> dict[str, Any]:
    candidates = VerificationFinder(CandidateRepository(aws.table(settings().connections_table)),
                                    token_work_queue(CONSENT_VERIFICATION_KIND),
                                    limit=verification_limit(settings().lwa_refresh))
    return candidates.run().as_dict()


def _check_reauthorization() -> dict[str, Any]:
    config = settings()
    publisher = EventPublisher(aws.client("events"), config.event_bus_name, EVENT_SOURCE)
    digest = ReauthorizationDigest(connections(), aws.client("s3"), config.data_bucket, publisher,
                                   config.reauth_notice_days)
    return digest.run().as_dict()


# The schedules' tasks (infra/constructs/token_refresher.py SCHEDULES), each a finder run that ends in a heartbeat.
SCHEDULED_TASKS: dict[str, Callable[[], dict[str, Any]]] = {
    "refresh-tokens": _refresh_tokens,
    "verify-consents": _verify_consents,
    "check-reauthorization": _check_reauthorization,
}


@invocation_scope
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        # Imported on the first queue event (Powertools' batch utility; the schedules never need it).
        from token_refresher.work import consume_work, is_token_work  # noqa: PLC0415

        if is_token_work(event):
            renewals, checks = refresh_work(context), verification_work(context)
            return consume_work(event, context,
                                {TOKEN_REFRESH_KIND: renewals.renew, CONSENT_VERIFICATION_KIND: checks.check},
                                lambda: {"token_refresh": renewals.report.as_dict(),
                                         "consent_verification": checks.report.as_dict()})
        return notifications().consume(event, context)
    task = event.get("task")
    if task in SCHEDULED_TASKS:
        report = SCHEDULED_TASKS[task]()
        sweep_completed(task)  # only a run that finished: an exception above means no heartbeat
        return report
    if task == ROTATE_CLIENT_SECRET_TASK:
        # Invoked by an operator (ops incident revoke-all), never by a schedule.
        outcome = rotation().rotate_now()
        logger.warning("LWA client secret rotation requested by an operator", extra={"outcome": outcome})
        return {"rotation": outcome}
    raise ValueError("unknown event: expected SQS records or a task of refresh-tokens, verify-consents, "
                     f"check-reauthorization or {ROTATE_CLIENT_SECRET_TASK}")
