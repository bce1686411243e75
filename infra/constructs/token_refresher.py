"""TokenRefresher: the token_refresher function and everything that drives it or listens to it.

Triggers (docs/internal-contracts.md, "Token lifecycle"): three schedules with constant inputs, the
token_refresh work queue (the refresh-tokens finder sends due connections to it, the function renews
them in parallel, at most ``refresh_concurrency`` batches at once), and the notifications queue Amazon's
Selling Partner notifications account sends LWA client-secret events to (the new secret itself arrives in
such a message). Output: one ``ReauthorizationDigest`` event a day on the default bus, routed to the
operator-notices topic, with the list of sellers due under ``notices/`` of the data bucket.

Three keys of its own, so that neither Amazon nor EventBridge ever gets a say over the token key:
``notifications_key`` (the notifications queue and its DLQ, and the report pipeline's
report_notifications queues; Amazon's account may use it only through SQS), ``events_key`` (what
EventBridge delivers into: the operator-notices topic and the failed-events queues of both duties) and
``work_key`` (the token_refresh queue and its DLQ: only this function sends and receives there).
Queue, schedule and consumer shapes come from ``infra.constructs.messaging``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import logical_ref, messaging, tag_purpose
from infra.constructs.data_stores import (
    NOTICES_PREFIX,
    REAUTHORIZATION_DUE_INDEX,
    REFRESH_DUE_INDEX,
    VERIFICATION_DUE_INDEX,
    DataStores,
)
from infra.constructs.messaging import TARGET_RETRY_ATTEMPTS
from infra.constructs.service_function import METRICS_NAMESPACE, ServiceFunction
from infra.nag import acknowledge

if TYPE_CHECKING:
    from infra.constructs.operators import Operators

DUTY = "token_refresher"
EVENT_SOURCE = "seller-insights.tokens"
# One event a day: the counts of connections due for re-authorization and the key of the list.
REAUTHORIZATION_DIGEST = "ReauthorizationDigest"
DEFAULT_EVENT_BUS = "default"
INVALID_CLIENT_METRIC = "LwaInvalidClient"
IDENTITY_MISMATCH_METRIC = "ConsentIdentityMismatch"
VERIFICATION_EXPIRED_METRIC = "ConsentVerificationExpired"
# A region's REPORT_PROCESSING_FINISHED destination could not be found or created (the refresh went on).
DESTINATION_FAILED_METRIC = "ReportDestinationFailed"

# A token_refresh batch (at most REFRESH_BATCH_SIZE messages of 10 connections, about 0.3 s a refresh)
# ends well inside this; the work queue's visibility follows (x6), and so does the notifications queue's.
SWEEP_TIMEOUT_SECONDS = 120
# Messages per token_refresh batch: 5 messages x 10 connections (fanout.WorkQueue packs ten a message).
REFRESH_BATCH_SIZE = 5
NOTIFICATIONS_BATCH_SIZE = 10
# Bounded: rotation calls are rate-limited by Amazon (one per minute).
NOTIFICATIONS_MAX_CONCURRENCY = 2
# A new client secret travels in a notification: it should not linger in the queue. Shorter than
# messaging.WORK_QUEUE_RETENTION on purpose; nothing waits in this queue (consumed at once, no delays), and
# its oldest-message-age alarm (Observability) fires within the hour, days before 4 days pass.
NOTIFICATIONS_RETENTION = Duration.days(4)
# SQS's maximum (messaging.WORK_QUEUE_RETENTION once it lands): an item not renewed stays due anyway.
TOKEN_REFRESH_RETENTION = Duration.days(14)

# name (tag seller-insights:schedule, and the constant {"task": name}), rate, and how long a missed
# run stays worth delivering (a later run does the same work).
SCHEDULES = (
    ("refresh-tokens", Duration.minutes(5), Duration.minutes(5)),
    # Consents wait for Amazon to confirm their seller: looked at every minute (an empty index page per
    # shard when none waits).
    ("verify-consents", Duration.minutes(1), Duration.minutes(1)),
    ("check-reauthorization", Duration.days(1), Duration.hours(1)),
)


class TokenRefresher(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, stores: DataStores) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        stack = Stack.of(self)

        self.events_key = self._key("EventsKey", "EventBridge deliveries (operator notices, failed events)")
        tag_purpose(self.events_key, "events_key")
        # EventBridge needs the key to put undeliverable events into the failed-events queue; its
        # requests carry the rule's account (the topic is published to through a role instead).
        self.events_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        # One dead-letter queue for everything given up on: schedule and notice deliveries that
        # EventBridge could not make, and asynchronous invocations that failed every retry.
        self.failed_events = messaging.dead_letter_queue(self, "FailedEvents", key=self.events_key)
        tag_purpose(self.failed_events, "token_events_dlq")

        self.handler = ServiceFunction(
            self,
            "TokenRefresher",
            duty=DUTY,
            config=config,
            timeout=Duration.seconds(SWEEP_TIMEOUT_SECONDS),
            description="Token lifecycle: access-token refresh, re-authorization notices, LWA client-secret rotation",
            environment={
                "CONNECTIONS_TABLE": stores.connections.table_name,
                "IDEMPOTENCY_TABLE": stores.idempotency.table_name,
                "AUDIT_TABLE": stores.audit.table_name,
                "TOKEN_KEY_ID": stores.key.key_arn,
                "LWA_CLIENT_SECRET_ID": stores.lwa_client_secret.secret_arn,
                "PURGE_AFTER_DAYS": str(config.purge_after_days),
                "REAUTH_NOTICE_DAYS": str(config.reauth_notice_days),
                "ROTATE_WHEN_DAYS_LEFT": str(config.rotate_when_days_left),
                "EVENT_BUS_NAME": DEFAULT_EVENT_BUS,
                "DATA_BUCKET": stores.data_bucket.bucket_name,
                "LWA_REFRESH_RATE": str(config.lwa_refresh_rate),
                "LWA_REFRESH_BURST": str(config.lwa_refresh_burst),
            },
            dead_letter_queue=self.failed_events,
        )
        self._grant_stores(stores)
        events.EventBus.from_event_bus_name(self, "DefaultBus", DEFAULT_EVENT_BUS).grant_put_events_to(self.handler)

        self._notifications()
        self._token_refresh(config)
        self._schedules()
        self._operator_notices()

        self.invalid_client_metric = self._metric(INVALID_CLIENT_METRIC)
        self.verification_expired_metric = self._metric(VERIFICATION_EXPIRED_METRIC)
        self.destination_failed_metric = self._metric(DESTINATION_FAILED_METRIC)
        # One connection's refresh failed for a reason of ours (vault, KMS, DynamoDB, a refused grant); it stays
        # due and the next run (5 minutes later) tries it again.
        self.refresh_failed_metric = self._metric("TokenRefreshFailed")

    def identity_mismatch_metric(self, consent_duty: str) -> cloudwatch.IMetric:
        """ConsentIdentityMismatch from the verifier and from the consent callback (a pending deletion's
        check), as one sum."""
        return cloudwatch.MathExpression(
            expression="FILL(verifier, 0) + FILL(callback, 0)",
            using_metrics={"verifier": self._metric(IDENTITY_MISMATCH_METRIC),
                           "callback": self._metric(IDENTITY_MISMATCH_METRIC, duty=consent_duty)},
            label=IDENTITY_MISMATCH_METRIC,
            period=Duration.minutes(5),
        )

    def allow_operators(self, operators: Operators, stores: DataStores) -> None:
        """`ops recover-secret`: read and delete the notifications DLQ's messages (the key only through SQS),
        read the LWA client secret and store a new version of it (the key only through Secrets Manager)."""
        region = Stack.of(self).region
        operators.allow("RecoverSecretFromTheNotificationsDlq",
                        ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"],
                        [self.notifications_dlq.queue_arn])
        operators.allow("RecoverSecretNotificationsKeyViaSqs", ["kms:Decrypt"], [self.notifications_key.key_arn],
                        conditions={"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}})
        operators.allow("RecoverSecretStoreTheClientSecret",
                        ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
                        [stores.lwa_client_secret.secret_arn])
        operators.allow("RecoverSecretSecretKeyViaSecretsManager", ["kms:Decrypt", "kms:GenerateDataKey"],
                        [stores.key.key_arn],
                        conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}})

    def keep_report_destinations(self, queue_arn: str) -> None:
        """The refresh sweep keeps a REPORT_PROCESSING_FINISHED destination for this queue (the report
        pipeline's report_notifications) in each region with a connection due for refresh: destinations are
        created grantless, with the LWA client secret only this duty and the consent callback hold. Their
        ids go to the idempotency table, which the function already reads and writes."""
        self.handler.add_environment("REPORT_NOTIFICATIONS_QUEUE_ARN", queue_arn)

    # ------------------------------------------------------------------ pieces

    def _grant_stores(self, stores: DataStores) -> None:
        fn = self.handler
        stores.grant_tables_read_write(fn, stores.connections, stores.idempotency)
        stores.grant_connection_index_query(fn, REFRESH_DUE_INDEX, REAUTHORIZATION_DUE_INDEX, VERIFICATION_DUE_INDEX)
        # What became of each consent (confirmed, mismatched, expired) is recorded; write-only.
        stores.grant_table_actions(fn, stores.audit, "dynamodb:PutItem")
        stores.grant_refresh_token_crypto(fn)
        stores.grant_seller_keys(fn)
        stores.grant_access_token_crypto(fn)
        stores.grant_lwa_client_read(fn)
        stores.grant_lwa_client_store(fn)
        # The daily re-authorization digest, under notices/ only (the bucket's key through S3).
        stores.grant_notices_write(fn)
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::<{logical_ref(stores.data_bucket.node.default_child)}.Arn>/{NOTICES_PREFIX}*]",
            f"The daily re-authorization digest goes to {NOTICES_PREFIX}reauthorization/{{date}}.jsonl, a key with "
            f"the day in it; the grant is PutObject only, under the {NOTICES_PREFIX} prefix of the data bucket.",
        )

    def _notifications(self) -> None:
        """The queue Amazon sends application notifications to, consumed by the function."""
        self.notifications_key = self._key("NotificationsKey", "SP-API application notifications (SQS)")
        tag_purpose(self.notifications_key, "notifications_key")
        # A sender to a KMS-encrypted queue needs the key; Amazon's account gets it only through SQS.
        messaging.allow_amazon_via_sqs(self.notifications_key)

        self.notifications_dlq = messaging.dead_letter_queue(self, "NotificationsDlq", key=self.notifications_key)
        tag_purpose(self.notifications_dlq, "notifications_dlq")
        self.notifications = messaging.consumed_queue(
            self,
            "Notifications",
            consumer=self.handler,
            key=self.notifications_key,
            retention=NOTIFICATIONS_RETENTION,
            dead_letters=self.notifications_dlq,
        )
        tag_purpose(self.notifications, "notifications")
        messaging.admit_amazon_notifications(self.notifications)
        messaging.consume(
            self,
            "NotificationsSource",
            consumer=self.handler,
            queue=self.notifications,
            batch_size=NOTIFICATIONS_BATCH_SIZE,
            max_concurrency=NOTIFICATIONS_MAX_CONCURRENCY,
            dead_letter_purpose="notifications_dlq",
        )

    def _token_refresh(self, config: StageConfig) -> None:
        """The work queue between the refresh-tokens finder and the renewals: the function sends to it and
        consumes it, at most ``refresh_concurrency`` batches at once (the app-wide LWA bucket, not this
        concurrency, bounds the rate at LWA)."""
        self.work_key = self._key("WorkKey", "token_refresh work queue (SQS)")
        tag_purpose(self.work_key, "token_work_key")
        self.token_refresh_dlq = messaging.dead_letter_queue(self, "TokenRefreshDlq", key=self.work_key)
        tag_purpose(self.token_refresh_dlq, "token_refresh_dlq")
        self.token_refresh = messaging.consumed_queue(
            self,
            "TokenRefresh",
            consumer=self.handler,
            key=self.work_key,
            retention=TOKEN_REFRESH_RETENTION,
            dead_letters=self.token_refresh_dlq,
        )
        tag_purpose(self.token_refresh, "token_refresh")
        self.handler.add_environment("REFRESH_WORK_QUEUE_URL", self.token_refresh.queue_url)
        # The finder sends (grant_send_messages would add the key's Encrypt/ReEncrypt* without kms:ViaService);
        # Decrypt comes with consume().
        self.token_refresh.grant(self.handler, "sqs:SendMessage")
        messaging.grant_queue_key_via_sqs(self.handler, self.work_key, "kms:GenerateDataKey")
        messaging.consume(
            self,
            "TokenRefreshSource",
            consumer=self.handler,
            queue=self.token_refresh,
            batch_size=REFRESH_BATCH_SIZE,
            max_concurrency=config.refresh_concurrency,
            dead_letter_purpose="token_refresh_dlq",
        )

    @property
    def dead_letter_queues(self) -> dict[str, tuple[sqs.IQueue, str]]:
        """Alarm name → (queue, description), for Observability.watch_dead_letter_queue."""
        return {
            "NotificationsDlqDepth": (self.notifications_dlq, f"{DUTY}: notifications it gave up on"),
            "FailedEventsDepth": (
                self.failed_events,
                f"{DUTY}: schedule runs or operator notices that were not delivered, or failed invocations",
            ),
            "TokenRefreshDlqDepth": (
                self.token_refresh_dlq,
                f"{DUTY}: token_refresh messages whose work items could not be read (the connections stay "
                "due and are found again; look for a finder that sends another shape)",
            ),
        }

    def _schedules(self) -> None:
        for name, rate, max_event_age in SCHEDULES:
            messaging.scheduled_task(
                self,
                name=name,
                rate=rate,
                max_event_age=max_event_age,
                consumer=self.handler,
                dead_letters=self.failed_events,
            )

    def _operator_notices(self) -> None:
        """The daily ReauthorizationDigest event to a topic operators subscribe e-mail or chat to."""
        self.operator_notices = sns.Topic(
            self,
            "OperatorNotices",
            display_name="Seller Insights operator notices",
            master_key=self.events_key,
            enforce_ssl=True,
        )
        tag_purpose(self.operator_notices, "operator_notices")
        rule = events.Rule(
            self,
            "ReauthorizationDigestRule",
            description="The daily digest of sellers whose authorization must be renewed soon, to the operator notices",
            event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=[REAUTHORIZATION_DIGEST]),
        )
        rule.add_target(
            targets.SnsTopic(
                self.operator_notices,
                # Publish through a role of this rule rather than a key-policy grant to all of EventBridge.
                authorize_using_role=True,
                dead_letter_queue=self.failed_events,
                retry_attempts=TARGET_RETRY_ATTEMPTS,
                max_event_age=Duration.hours(24),
            )
        )
        acknowledge(
            rule.node.find_child("EventsRole"),
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "Topic.grantPublish to this rule's role for the KMS-encrypted topic: GenerateDataKey* stands for "
            "GenerateDataKey and GenerateDataKeyWithoutPlaintext on the events key only, which protects no token.",
        )

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _metric(name: str, duty: str = DUTY) -> cloudwatch.Metric:
        """A count a function emits (EMF), summed over the refresh schedule's period."""
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"service": duty},
            statistic=cloudwatch.Stats.SUM,
            period=Duration.minutes(5),
        )

    def _key(self, construct_id: str, use: str) -> kms.Key:
        return messaging.customer_key(self, construct_id, config=self._config, use=use)
