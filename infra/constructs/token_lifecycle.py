"""TokenLifecycle: the token_refresher function and everything that drives it or listens to it.

Triggers (docs/internal-contracts.md, "Token lifecycle"): two schedules with constant inputs, and the
notifications queue Amazon's Selling Partner notifications account sends LWA client-secret events
to (the new secret itself arrives in such a message). Output: ``ReauthorizationDue`` events on the
default bus, routed to the operator-notices topic.

Two keys of its own, so that neither Amazon nor EventBridge ever gets a say over the token key:
``notifications_key`` (the notifications queue and its DLQ; Amazon's account may use it only
through SQS) and ``events_key`` (what EventBridge delivers into: the operator-notices topic and the
failed-events queue).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import tag_purpose
from infra.constructs.service_function import METRICS_NAMESPACE, ServiceFunction
from infra.constructs.token_vault import TokenVault
from infra.nag import acknowledge

DUTY = "token_refresher"
SCHEDULE_TAG = "seller-insights:schedule"
# Amazon's Selling Partner notifications account (spapi-protocol §3.3); aws partition only.
AMAZON_NOTIFICATIONS_PRINCIPAL = "arn:aws:iam::437568002678:root"
AMAZON_NOTIFICATIONS_ACTIONS = ("sqs:SendMessage", "sqs:GetQueueAttributes")
EVENT_SOURCE = "seller-insights.tokens"
REAUTHORIZATION_DUE = "ReauthorizationDue"
DEFAULT_EVENT_BUS = "default"
INVALID_CLIENT_METRIC = "LwaInvalidClient"

SWEEP_TIMEOUT_SECONDS = 120
# Architecture §4: visibility timeout at least six times the consumer's timeout.
VISIBILITY_TIMEOUT_FACTOR = 6
NOTIFICATIONS_BATCH_SIZE = 10
# Bounded: rotation calls are rate-limited by Amazon (one per minute).
NOTIFICATIONS_MAX_CONCURRENCY = 2
MAX_RECEIVE_COUNT = 5
# A new client secret travels in a notification: it should not linger in the queue.
NOTIFICATIONS_RETENTION = Duration.days(4)
DLQ_RETENTION = Duration.days(14)
TARGET_RETRY_ATTEMPTS = 3

# name (tag seller-insights:schedule, and the constant {"task": name}), rate, and how long a missed
# run stays worth delivering (a later run does the same work).
SCHEDULES = (
    ("refresh-tokens", Duration.minutes(5), Duration.minutes(5)),
    ("check-reauthorization", Duration.days(1), Duration.hours(1)),
)


class TokenLifecycle(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, vault: TokenVault) -> None:
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
        self.failed_events = self._queue("FailedEvents", key=self.events_key, retention=DLQ_RETENTION)
        tag_purpose(self.failed_events, "token_events_dlq")
        self._acknowledge_dead_letter_queue(self.failed_events)

        self.handler = ServiceFunction(
            self,
            "TokenRefresher",
            duty=DUTY,
            config=config,
            # The refresh sweep works through due connections until 10 s are left, so a longer timeout
            # means more connections per run; the notifications queue's visibility follows (x6).
            timeout=Duration.seconds(SWEEP_TIMEOUT_SECONDS),
            description="Token lifecycle: access-token refresh, re-authorization notices, LWA client-secret rotation",
            environment={
                "CONNECTIONS_TABLE": vault.connections.table_name,
                "IDEMPOTENCY_TABLE": vault.idempotency.table_name,
                "TOKEN_KEY_ID": vault.key.key_arn,
                "LWA_CLIENT_SECRET_ID": vault.lwa_client_secret.secret_arn,
                "RETENTION_DAYS": str(config.retention_days),
                "REAUTH_NOTICE_DAYS": str(config.reauth_notice_days),
                "ROTATE_WHEN_DAYS_LEFT": str(config.rotate_when_days_left),
                "EVENT_BUS_NAME": DEFAULT_EVENT_BUS,
            },
            dead_letter_queue=self.failed_events,
        )
        self._grant_vault(vault)
        events.EventBus.from_event_bus_name(self, "DefaultBus", DEFAULT_EVENT_BUS).grant_put_events_to(self.handler)

        self._notifications()
        self._schedules()
        self._operator_notices()

        self.invalid_client_metric = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=INVALID_CLIENT_METRIC,
            dimensions_map={"service": DUTY},
            statistic=cloudwatch.Stats.SUM,
            period=Duration.minutes(5),
        )

    # ------------------------------------------------------------------ pieces

    def _grant_vault(self, vault: TokenVault) -> None:
        fn = self.handler
        vault.grant_tables_read_write(fn, vault.connections, vault.idempotency)
        vault.grant_connection_index_query(fn)
        vault.grant_refresh_token_crypto(fn)
        vault.grant_access_token_crypto(fn)
        vault.grant_lwa_client_read(fn)
        vault.grant_lwa_client_store(fn)

    def _notifications(self) -> None:
        """The queue Amazon sends application notifications to, consumed by the function."""
        region = Stack.of(self).region
        amazon = iam.ArnPrincipal(AMAZON_NOTIFICATIONS_PRINCIPAL)
        self.notifications_key = self._key("NotificationsKey", "SP-API application notifications (SQS)")
        tag_purpose(self.notifications_key, "notifications_key")
        # A sender to a KMS-encrypted queue needs the key; Amazon's account gets it only through SQS.
        self.notifications_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[amazon],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}},
            )
        )

        self.notifications_dlq = self._queue("NotificationsDlq", key=self.notifications_key, retention=DLQ_RETENTION)
        tag_purpose(self.notifications_dlq, "notifications_dlq")
        self._acknowledge_dead_letter_queue(self.notifications_dlq)

        timeout = self.handler.function.timeout
        assert timeout is not None  # ServiceFunction always sets one
        self.notifications = self._queue(
            "Notifications",
            key=self.notifications_key,
            retention=NOTIFICATIONS_RETENTION,
            visibility_timeout=Duration.seconds(timeout.to_seconds() * VISIBILITY_TIMEOUT_FACTOR),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.notifications_dlq, max_receive_count=MAX_RECEIVE_COUNT),
        )
        tag_purpose(self.notifications, "notifications")
        self.notifications.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AmazonSellingPartnerNotifications",
                principals=[amazon],
                actions=list(AMAZON_NOTIFICATIONS_ACTIONS),
                resources=[self.notifications.queue_arn],
            )
        )

        # A plain mapping instead of SqsEventSource, whose grant would allow kms:Decrypt on the
        # key without the kms:ViaService condition.
        mapping = lambda_.EventSourceMapping(
            self,
            "NotificationsSource",
            target=self.handler.function,
            event_source_arn=self.notifications.queue_arn,
            batch_size=NOTIFICATIONS_BATCH_SIZE,
            max_concurrency=NOTIFICATIONS_MAX_CONCURRENCY,
            report_batch_item_failures=True,
        )
        self.notifications.grant(
            self.handler,
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        )
        iam.Grant.add_to_principal(
            grantee=self.handler,
            actions=["kms:Decrypt"],
            resource_arns=[self.notifications_key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}},
        )
        # Lambda checks the role's permissions when it creates the mapping.
        mapping.node.add_dependency(self.handler.role)
        acknowledge(
            mapping,
            "Serverless-LambdaEventSourceMappingDestination",
            "SQS event sources take no on-failure destination: a message that keeps failing moves to "
            f"notifications_dlq through the queue's redrive policy (maxReceiveCount {MAX_RECEIVE_COUNT}), "
            "which is alarmed.",
        )

    def _schedules(self) -> None:
        for name, rate, max_event_age in SCHEDULES:
            rule = events.Rule(
                self,
                "".join(part.title() for part in name.split("-")) + "Schedule",
                description=f"token_refresher task {name}",
                schedule=events.Schedule.rate(rate),
            )
            rule.add_target(
                targets.LambdaFunction(
                    self.handler.function,
                    event=events.RuleTargetInput.from_object({"task": name}),
                    dead_letter_queue=self.failed_events,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    max_event_age=max_event_age,
                )
            )
            # The local stack fires schedules by this name (POST /_local/fire/{name}).
            Tags.of(rule).add(SCHEDULE_TAG, name)

    def _operator_notices(self) -> None:
        """ReauthorizationDue events to a topic operators subscribe e-mail or chat to."""
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
            "ReauthorizationDueRule",
            description="Sellers whose authorization must be renewed soon, to the operator notices",
            event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=[REAUTHORIZATION_DUE]),
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

    def _key(self, construct_id: str, use: str) -> kms.Key:
        config = self._config
        return kms.Key(
            self,
            construct_id,
            description=f"Seller Insights: {use}",
            enable_key_rotation=True,
            removal_policy=config.removal_policy,
            pending_window=Duration.days(30 if config.retain else 7),
        )

    def _queue(
        self,
        construct_id: str,
        *,
        key: kms.IKey,
        retention: Duration,
        visibility_timeout: Duration | None = None,
        dead_letter_queue: sqs.DeadLetterQueue | None = None,
    ) -> sqs.Queue:
        return sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            # Reuse data keys for 5 minutes (the default) to keep KMS calls down.
            data_key_reuse=Duration.minutes(5),
            enforce_ssl=True,
            retention_period=retention,
            visibility_timeout=visibility_timeout,
            dead_letter_queue=dead_letter_queue,
        )

    @staticmethod
    def _acknowledge_dead_letter_queue(queue: sqs.Queue) -> None:
        acknowledge(
            queue,
            "Serverless-SQSRedrivePolicy",
            "This queue is itself a dead-letter queue (alarmed when not empty); operators inspect and "
            "redrive its messages, a further DLQ behind it would only move the problem.",
        )
