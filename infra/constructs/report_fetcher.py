"""ReportFetcher: the report_fetcher function, its schedule and its two queues.

Triggers (docs/internal-contracts.md, "Report pipeline"): the ``plan-reports`` and ``wake-jobs`` schedules
with a constant input; ``plan-reports`` only finds due plans and sends them to the ``report_plans`` queue
(the planner: ten connections a message, ``plan_concurrency`` batches at once); the ``report_jobs`` queue the
planner fills, the fetcher re-queues waiting jobs to (at most MAX_SELF_HOPS times in a row, see RecursiveLoop
below) and ``wake-jobs`` sends parked jobs back to; the ``report_notifications`` queue Amazon's Selling Partner
notifications account sends REPORT_PROCESSING_FINISHED to. Output: report documents under
``sellers/`` of the data bucket and their metadata in the connections table.

Keys: ``report_notifications`` (and its DLQ) share the notifications key of the token lifecycle,
the one key Amazon's account may use (through SQS only); ``report_jobs`` gets a key of its own that
no one outside this account and the fetcher's role (through SQS) ever uses, and ``report_plans`` (and
its DLQ) shares it: the same role sends and consumes both, so a second key would separate nothing. The fetcher holds the
token key only for ``purpose=access_token``: it reads the shared access-token cache and can neither
decrypt nor refresh refresh tokens.

REPORT_PROCESSING_FINISHED subscriptions are the pipeline's own (report_fetcher.subscriptions): the
plan subscribes each connection once with its cached access token, to its region's destination for
``report_notifications``. Destinations need a grantless token, so the token refresher creates them and
caches their ids in the idempotency table; the fetcher gets and (when Amazon refuses one) deletes those
items, nothing else there, and never reads the LWA client secret.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import logical_ref, messaging, tag_purpose
from infra.constructs.data_stores import PLAN_DUE_INDEX, SELLERS_PREFIX, WAKE_DUE_INDEX, DataStores
from infra.constructs.service_function import METRICS_NAMESPACE, ServiceFunction
from infra.nag import acknowledge

DUTY = "report_fetcher"
# Streams report documents (up to hundreds of MB) from Amazon into S3; queue visibility follows (x6).
FETCH_TIMEOUT_SECONDS = 300
FETCH_MEMORY_MB = 1024
PLAN_SCHEDULE = ("plan-reports", Duration.minutes(15))
# Parked report jobs that are due go back on report_jobs (report_fetcher.wakes): a parked job waits at most
# this much longer than it asked to.
WAKE_SCHEDULE = ("wake-jobs", Duration.minutes(5))
SCHEDULES = (PLAN_SCHEDULE, WAKE_SCHEDULE)
JOBS_BATCH_SIZE = 10
# report_jobs' concurrency is the stage's report_jobs_concurrency (cdk.json; sizing in docs/architecture.md);
# SP-API quotas stay per seller and per application through the quota buckets, whatever the concurrency.
# report_plans: ten messages of ten connections a batch, ~0.1-0.5 s a connection, well inside the timeout.
PLANS_BATCH_SIZE = 10
NOTIFICATIONS_BATCH_SIZE = 10
NOTIFICATIONS_MAX_CONCURRENCY = 2
# The function sends to report_jobs, the queue that invokes it: waiting jobs go back with DelaySeconds. That is
# a recursive loop by design, so it is declared: ALLOW, with our own bound per job instead of Lambda's count
# (which stops a chain after about 16 hops): a job message makes at most MAX_SELF_HOPS (10,
# report_fetcher.service) consecutive self-hops, then the job is parked in the job table, as is any wait longer
# than SQS's 15 minutes, and the wake-jobs schedule (not the queue) sends it back with its count at 0.
# Lambda's own count cannot be the bound: it follows invocations, and a batch of 10 messages from different
# jobs is one invocation, so a fresh job would inherit another job's count and be stopped early.
RECURSIVE_LOOP = lambda_.RecursiveLoop.ALLOW
METRIC_PERIOD = Duration.hours(1)
REPORT_FAILED_METRIC = "ReportFailed"
UNEXPECTED_COLUMNS_DROPPED_METRIC = "UnexpectedColumnsDropped"
# A connection could not be subscribed to REPORT_PROCESSING_FINISHED (the plan went on); alarmed at once.
SUBSCRIPTION_FAILED_METRIC = "ReportSubscriptionFailed"
SUBSCRIPTION_METRIC_PERIOD = Duration.minutes(5)
# The daily check of a connection's marketplaces (getMarketplaceParticipations) failed; the plan went on
# with the marketplaces it had. Alarmed at once, like the subscriptions.
PARTICIPATIONS_FAILED_METRIC = "ParticipationsFailed"
# Data Kiosk refused createQuery with a 403: the application or a seller lacks the Brand Analytics role that
# Sales and Traffic needs (the job ended FAILED; the type is not pulled for that seller); alarmed at once.
DATA_KIOSK_ROLE_MISSING_METRIC = "DataKioskRoleMissing"
# Amazon refused a report type for a role the application or the seller lacks (403 permission_denied): the
# type is retried daily; alarmed at once (the service-only series; a copy per report_type tells which).
PERMISSION_DENIED_METRIC = "ReportPermissionDenied"
# The planner's worst lag per report type, in periods of the type's cadence beyond the one just due
# (report_fetcher.planner); alarmed when a type falls more than LAG_ALARM_PERIODS behind.
LAG_METRIC = "ReportLagPeriods"
LAG_ALARM_PERIODS = 2


class ReportFetcher(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        stores: DataStores,
        events_key: kms.IKey,
        notifications_key: kms.IKey,
    ) -> None:
        """``events_key``: what EventBridge may deliver into (the failed-events queue of this duty);
        ``notifications_key``: the key Amazon's notifications account may use through SQS."""
        super().__init__(scope, construct_id)

        # Schedule runs EventBridge could not deliver, and asynchronous invocations that failed every
        # retry, of this duty only (the token lifecycle keeps its own).
        self.failed_events = messaging.dead_letter_queue(self, "FailedEvents", key=events_key)
        tag_purpose(self.failed_events, "report_events_dlq")

        self.handler = ServiceFunction(
            self,
            "ReportFetcher",
            duty=DUTY,
            config=config,
            description="Report pipeline: plans report jobs, requests, polls and stores SP-API reports",
            memory_mb=FETCH_MEMORY_MB,
            timeout=Duration.seconds(FETCH_TIMEOUT_SECONDS),
            dead_letter_queue=self.failed_events,
            recursive_loop=RECURSIVE_LOOP,
        )
        fn = self.handler

        self.jobs_key = messaging.customer_key(self, "JobsKey", config=config, use="report job messages (SQS)")
        tag_purpose(self.jobs_key, "report_jobs_key")
        self.jobs_dlq = messaging.dead_letter_queue(self, "JobsDlq", key=self.jobs_key)
        tag_purpose(self.jobs_dlq, "report_jobs_dlq")
        self.jobs = messaging.consumed_queue(
            self, "Jobs", consumer=fn, key=self.jobs_key, retention=messaging.WORK_QUEUE_RETENTION,
            dead_letters=self.jobs_dlq
        )
        tag_purpose(self.jobs, "report_jobs")

        self.plans_dlq = messaging.dead_letter_queue(self, "PlansDlq", key=self.jobs_key)
        tag_purpose(self.plans_dlq, "report_plans_dlq")
        self.plans = messaging.consumed_queue(
            self, "Plans", consumer=fn, key=self.jobs_key, retention=messaging.WORK_QUEUE_RETENTION,
            dead_letters=self.plans_dlq
        )
        tag_purpose(self.plans, "report_plans")

        self.notifications_dlq = messaging.dead_letter_queue(self, "NotificationsDlq", key=notifications_key)
        tag_purpose(self.notifications_dlq, "report_notifications_dlq")
        self.notifications = messaging.consumed_queue(
            self,
            "Notifications",
            consumer=fn,
            key=notifications_key,
            retention=messaging.WORK_QUEUE_RETENTION,
            dead_letters=self.notifications_dlq,
        )
        tag_purpose(self.notifications, "report_notifications")
        messaging.admit_amazon_notifications(self.notifications)

        # The jobs queue's visibility follows the function's timeout, so its URL joins the environment last.
        for name, value in {
            "CONNECTIONS_TABLE": stores.connections.table_name,
            "TOKEN_KEY_ID": stores.key.key_arn,
            "DATA_BUCKET": stores.data_bucket.bucket_name,
            "REPORT_JOBS_QUEUE_URL": self.jobs.queue_url,
            "REPORT_PLANS_QUEUE_URL": self.plans.queue_url,
            "PLAN_FIND_LIMIT": str(config.plan_find_limit),
            "DEFAULT_REPORT_TYPES": ",".join(config.default_report_types),
            "PURGE_AFTER_DAYS": str(config.purge_after_days),
            "REPORT_MAX_DECOMPRESSED_MIB": str(config.report_max_decompressed_mib),
            "REPORT_MAX_COMPRESSION_RATIO": str(config.report_max_compression_ratio),
            "SALES_AND_TRAFFIC_SOURCE": config.sales_and_traffic_source,
            "SALES_AND_TRAFFIC_GRANULARITY": config.sales_and_traffic_granularity,
            "PLAN_MAX_JOBS_PER_CONNECTION": str(config.plan_max_jobs_per_connection),
            "REPORT_BACKFILL_DAYS": config.backfill_days_setting,
            "REPORT_NOTIFICATIONS_QUEUE_ARN": self.notifications.queue_arn,
            "IDEMPOTENCY_TABLE": stores.idempotency.table_name,
        }.items():
            fn.add_environment(name, value)

        self._grant(stores)
        messaging.consume(
            self,
            "JobsSource",
            consumer=fn,
            queue=self.jobs,
            batch_size=JOBS_BATCH_SIZE,
            max_concurrency=config.report_jobs_concurrency,
            dead_letter_purpose="report_jobs_dlq",
        )
        messaging.consume(
            self,
            "PlansSource",
            consumer=fn,
            queue=self.plans,
            batch_size=PLANS_BATCH_SIZE,
            max_concurrency=config.plan_concurrency,
            dead_letter_purpose="report_plans_dlq",
        )
        messaging.consume(
            self,
            "NotificationsSource",
            consumer=fn,
            queue=self.notifications,
            batch_size=NOTIFICATIONS_BATCH_SIZE,
            max_concurrency=NOTIFICATIONS_MAX_CONCURRENCY,
            dead_letter_purpose="report_notifications_dlq",
        )
        for name, rate in SCHEDULES:
            messaging.scheduled_task(
                self, name=name, rate=rate, max_event_age=rate, consumer=fn, dead_letters=self.failed_events
            )

        self.report_failed_metric = self._metric(REPORT_FAILED_METRIC)
        self.unexpected_columns_dropped_metric = self._metric(UNEXPECTED_COLUMNS_DROPPED_METRIC)
        self.permission_denied_metric = self._metric(PERMISSION_DENIED_METRIC, SUBSCRIPTION_METRIC_PERIOD)
        self.subscription_failed_metric = self._metric(SUBSCRIPTION_FAILED_METRIC, SUBSCRIPTION_METRIC_PERIOD)
        self.participations_failed_metric = self._metric(PARTICIPATIONS_FAILED_METRIC, SUBSCRIPTION_METRIC_PERIOD)
        self.data_kiosk_role_missing_metric = self._metric(DATA_KIOSK_ROLE_MISSING_METRIC, SUBSCRIPTION_METRIC_PERIOD)
        # One per report type a connection pulls by default (the dimension the planner emits).
        self.lag_metrics = {
            report_type: cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=LAG_METRIC,
                                           dimensions_map={"service": DUTY, "report_type": report_type},
                                           statistic=cloudwatch.Stats.MAXIMUM, period=METRIC_PERIOD)
            for report_type in config.default_report_types
        }

    def _grant(self, stores: DataStores) -> None:
        fn = self.handler
        stores.grant_tables_read_write(fn, stores.connections)
        stores.grant_connection_index_query(fn, PLAN_DUE_INDEX, WAKE_DUE_INDEX)
        # The shared access-token cache only: no refresh tokens.
        stores.grant_access_token_crypto(fn)
        # The destination ids the token refresher caches: read, and dropped when Amazon refuses one.
        stores.grant_table_actions(fn, stores.idempotency, "dynamodb:GetItem", "dynamodb:DeleteItem")
        stores.grant_seller_keys(fn)
        stores.grant_seller_objects_read_write(fn)
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::<{logical_ref(stores.data_bucket.node.default_child)}.Arn>/{SELLERS_PREFIX}*]",
            f"Report documents are written to and read from keys that carry seller, region, type and window "
            f"({SELLERS_PREFIX}{{seller}}/{{region}}/reports/...), unknown at deploy time; the grant is limited "
            "to the sellers/ prefix of the data bucket and to put, get and multipart-upload actions.",
        )
        # Waiting jobs go back to report_jobs alone, with a delay; the plan-reports finder sends due plans to
        # report_plans (SendMessageBatch is authorized as SendMessage). Sending needs the key via SQS.
        self.jobs.grant(fn, "sqs:SendMessage")
        self.plans.grant(fn, "sqs:SendMessage")
        messaging.grant_queue_key_via_sqs(fn, self.jobs_key, "kms:GenerateDataKey", "kms:Decrypt")

    def _metric(self, name: str, period: Duration = METRIC_PERIOD) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"service": DUTY},
            statistic=cloudwatch.Stats.SUM,
            period=period,
        )

    @property
    def dead_letter_queues(self) -> dict[str, tuple[sqs.IQueue, str]]:
        """Alarm name → (queue, description), for Observability.watch_dead_letter_queue."""
        return {
            "ReportJobsDlqDepth": (
                self.jobs_dlq,
                f"{DUTY}: report jobs given up on after {messaging.MAX_RECEIVE_COUNT} receives",
            ),
            "ReportPlansDlqDepth": (
                self.plans_dlq,
                f"{DUTY}: report_plans messages (due connections) given up on after {messaging.MAX_RECEIVE_COUNT} "
                "receives; their plans stay due and the next plan-reports run sends them again",
            ),
            "ReportNotificationsDlqDepth": (
                self.notifications_dlq,
                f"{DUTY}: REPORT_PROCESSING_FINISHED notifications it gave up on",
            ),
            "ReportFailedEventsDepth": (
                self.failed_events,
                f"{DUTY}: plan-reports or wake-jobs runs that were not delivered, or failed invocations",
            ),
        }
