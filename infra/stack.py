"""SellerInsightsStack: composition only; the constructs hold the decisions."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import report_fetcher, retention_sweeper, token_refresher
from infra.constructs.dashboard import OperationsDashboard, SavedQueries
from infra.constructs.data_exports import DataExports
from infra.constructs.data_requests import DataRequests
from infra.constructs.data_stores import DataStores
from infra.constructs.fleet_operations import allow_fleet_commands
from infra.constructs.incident_response import IncidentResponse
from infra.constructs.oauth_callback import OAuthCallback
from infra.constructs.observability import SUSTAINED_PERIODS, Observability
from infra.constructs.operators import Operators
from infra.constructs.report_fetcher import LAG_ALARM_PERIODS, ReportFetcher
from infra.constructs.retention_sweeper import RetentionSweeper
from infra.constructs.token_refresher import TokenRefresher


class SellerInsightsStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"Seller Insights backend ({config.name})",
        )
        self.config = config
        stores = DataStores(self, "Vault", config=config)
        consent = OAuthCallback(self, "Consent", config=config, stores=stores)
        observability = Observability(self, "Observability", config=config)
        observability.watch_function(consent.handler)
        observability.watch_http_api("ConsentApi", consent.api)
        tokens = TokenRefresher(self, "Tokens", config=config, stores=stores)
        # Refresh tokens open for these two duties only, whatever any other identity's policy says.
        stores.restrict_refresh_tokens_to(consent.handler.role, tokens.handler.role)
        observability.watch_function(tokens.handler)
        for alarm_id, (queue, description) in tokens.dead_letter_queues.items():
            observability.watch_dead_letter_queue(alarm_id, queue, description)
        observability.watch_metric(
            "LwaInvalidClient",
            tokens.invalid_client_metric,
            "token_refresher: LWA rejected the client secret (invalid_client); rotate or restore it",
        )
        observability.watch_metric(
            "ConsentIdentityMismatch",
            tokens.identity_mismatch_metric(consent.handler.duty),
            "A consent named another seller than Amazon says the authorization belongs to (a forged "
            "selling_partner_id): nothing was stored; see the audit table's consent records",
        )
        observability.watch_metric(
            "ConsentVerificationExpired",
            tokens.verification_expired_metric,
            "token_refresher: Amazon did not confirm a consent's seller before its deadline; the consent was "
            "destroyed and the seller must connect again (check the app's roles and LWA/SP-API health)",
        )
        reports = ReportFetcher(
            self,
            "Reports",
            config=config,
            stores=stores,
            events_key=tokens.events_key,
            notifications_key=tokens.notifications_key,
        )
        tokens.keep_report_destinations(reports.notifications.queue_arn)
        observability.watch_function(reports.handler)
        for alarm_id, (queue, description) in reports.dead_letter_queues.items():
            observability.watch_dead_letter_queue(alarm_id, queue, description)
        observability.watch_metric(
            "ReportFailed",
            reports.report_failed_metric,
            "report_fetcher: a report was FATAL on every attempt, or its document could not be stored",
        )
        observability.watch_metric(
            "ReportSubscriptionFailed",
            reports.subscription_failed_metric,
            "report_fetcher: a seller could not be subscribed to REPORT_PROCESSING_FINISHED in its region "
            "(reports then wait for polling); see the function's log for the operation and HTTP status",
        )
        for report_type, lag in reports.lag_metrics.items():
            observability.watch_metric(
                f"ReportLagPeriods{report_type}",
                lag,
                f"report_fetcher: {report_type} is more than {LAG_ALARM_PERIODS} periods of its cadence behind "
                "for a connection (its coverage cursor does not move: an outage, FAILED windows, or a backlog "
                "beyond the quotas); GET /admin/sellers/{id} shows each connection's covered range",
                threshold=LAG_ALARM_PERIODS,
                runbook="ReportLagPeriods*",
            )
        observability.watch_metric(
            "ParticipationsFailed",
            reports.participations_failed_metric,
            "report_fetcher: the daily getMarketplaceParticipations check of a connection failed (its plan went "
            "on with the marketplaces it had, and the check is tried again at its next plan); see the "
            "function's log for the reason",
        )
        observability.watch_metric(
            "DataKioskRoleMissing",
            reports.data_kiosk_role_missing_metric,
            "report_fetcher: Data Kiosk refused createQuery with 403: the application or a seller lacks the "
            "Brand Analytics role that Sales and Traffic needs; the job ended FAILED, see the function's log "
            "for the region (grant the role, or set sales_and_traffic_source to REPORTS)",
        )
        observability.watch_metric(
            "ReportDestinationFailed",
            tokens.destination_failed_metric,
            "token_refresher: the report_notifications queue's REPORT_PROCESSING_FINISHED destination could "
            "not be found or created in a region (its sellers' reports wait for polling); see the function's "
            "log for the region, operation and HTTP status",
        )
        observability.watch_metric(
            "ReportPermissionDenied",
            reports.permission_denied_metric,
            "report_fetcher: Amazon refused a report type for a role the application or the seller lacks "
            "(403 Unauthorized after a retry with a renewed token); the type is retried daily. The metric's "
            "report_type dimension and GET /admin/sellers/{id} (permission_denied) say which",
        )
        observability.watch_metric(
            "UnexpectedColumnsDropped",
            reports.unexpected_columns_dropped_metric,
            "report_fetcher: a report arrived with columns the catalog neither keeps nor knows (dropped "
            "before storage); check whether Amazon added a column, possibly with buyer data",
        )
        retention = RetentionSweeper(self, "Retention", config=config, stores=stores, events_key=tokens.events_key)
        observability.watch_function(retention.handler)
        observability.watch_metric(
            "PurgeFailed",
            retention.purge_failed_metric,
            "retention_sweeper: a seller's purge failed and waits for the next daily run; the deletion "
            "promise is at stake if it keeps failing",
        )
        for alarm_id, (queue, description) in retention.dead_letter_queues.items():
            observability.watch_dead_letter_queue(alarm_id, queue, description)
        exports = DataExports(self, "DataExports", config=config, stores=stores)
        observability.watch_function(exports.handler)
        for alarm_id, (queue, description) in exports.dead_letter_queues.items():
            observability.watch_dead_letter_queue(alarm_id, queue, description)
        data_requests = DataRequests(self, "DataRequests", config=config, stores=stores, api=consent.api,
                                     exports=exports)
        observability.watch_function(data_requests.handler)
        operators = Operators(self, "Operators", config=config)
        data_requests.allow_operators(operators)
        tokens.allow_operators(operators, stores)  # ops recover-secret
        allow_fleet_commands(operators, self, stores)  # ops status and ops redrive

        self._watch_silence(observability, tokens, reports, retention)
        # After the duties: these walk every function, table and queue of the stack.
        observability.watch_every_function()
        observability.watch_every_table()
        SavedQueries(self, "SavedQueries", refresher=tokens.handler)
        OperationsDashboard(self, "Dashboard", reports=reports, consent_api=consent.api)
        self._detect_incidents(observability, operators, stores, tokens)
        # Last, once every duty has added its queues: the age of the oldest message, on every queue.
        observability.watch_every_queue()

        # Names and ARNs only: secret values never leave Secrets Manager.
        outputs = {
            "ApiUrl": consent.url,
            "RedirectUri": consent.redirect_uri,
            # Register this with Amazon as the app's Log-in URI (with RedirectUri as its OAuth redirect URI).
            "LoginUri": consent.login_uri,
            "ConnectionsTableName": stores.connections.table_name,
            "OAuthStateTableName": stores.oauth_state.table_name,
            "IdempotencyTableName": stores.idempotency.table_name,
            "AuditTableName": stores.audit.table_name,
            "DataBucketName": stores.data_bucket.bucket_name,
            "LwaClientSecretArn": stores.lwa_client_secret.secret_arn,
            "AlarmTopicArn": observability.topic.topic_arn,
            "NotificationsQueueUrl": tokens.notifications.queue_url,
            "NotificationsQueueArn": tokens.notifications.queue_arn,
            "OperatorNoticesTopicArn": tokens.operator_notices.topic_arn,
            "ReportJobsQueueUrl": reports.jobs.queue_url,
            "ReportNotificationsQueueUrl": reports.notifications.queue_url,
            # What createDestination needs to send REPORT_PROCESSING_FINISHED here.
            "ReportNotificationsQueueArn": reports.notifications.queue_arn,
            # The role operators assume (with MFA) to call the /admin data-request routes.
            "OpsSupportRoleArn": operators.role.role_arn,
        }
        if consent.domain is not None:
            # Where the domain's DNS must point (the stack writes the alias record itself when given the zone).
            outputs["DomainTarget"] = consent.domain.target
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)

    @staticmethod
    def _watch_silence(observability: Observability, tokens: TokenRefresher, reports: ReportFetcher,
                       retention: RetentionSweeper) -> None:
        # Silence: each schedule's finder run that finished beats (SweepCompleted); two periods without one alarm.
        heartbeats = {name: observability.watch_heartbeat(tokens.handler, name, rate)
                      for name, rate, _ in token_refresher.SCHEDULES}
        heartbeats |= {name: observability.watch_heartbeat(reports.handler, name, rate)
                       for name, rate in report_fetcher.SCHEDULES}
        for sweep, rate, _ in (retention_sweeper.SCHEDULE, retention_sweeper.CENSUS_SCHEDULE):
            heartbeats[sweep] = observability.watch_heartbeat(retention.handler, sweep, rate)
        observability.watch_metric(
            "TokenRefreshFailed",
            tokens.refresh_failed_metric,
            "token_refresher: access-token refreshes failed for a reason of ours (vault or KMS refusal, a DynamoDB "
            "error, LWA refusing the grant request) in each of 3 consecutive 5-minute runs; a failed connection "
            "stays due and is retried every run, so one transient failure never pages, one that persists does",
            evaluation_periods=SUSTAINED_PERIODS,
        )
        observability.pipeline_down(
            [heartbeats["refresh-tokens"], heartbeats["plan-reports"], observability.queue_age_alarm(reports.jobs),
             observability.watch_errors_sustained(reports.handler)],
            "The report pipeline is down: access tokens are not being refreshed, or reports are not being "
            "planned, or report jobs wait more than an hour, or the report fetcher keeps failing",
        )

    def _detect_incidents(self, observability: Observability, operators: Operators, stores: DataStores,
                          tokens: TokenRefresher) -> None:
        # Once every log group exists: the secret-pattern scan, its alarm, and what `ops incident` needs.
        incident = IncidentResponse(self, "IncidentResponse", stores=stores, token_refresher=tokens.handler)
        incident.allow_operators(operators)
        observability.watch_metric(
            "SecretInLogs",
            incident.secret_pattern_metric,
            "A log event with the shape of a token, client secret, OAuth code or presigned-URL signature was "
            "written (redaction missed it): a security incident, see docs/incident-response.md",
        )
