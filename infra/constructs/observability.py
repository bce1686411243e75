"""Observability: the alarm topic and the alarms every duty gets.

The topic has a key of its own: CloudWatch publishes alarms as a service, and no service principal
may hold a grant on the token key (which seals refresh tokens).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import messaging, purpose_of, tag_purpose
from infra.constructs.service_function import ServiceFunction

PERIOD = Duration.minutes(5)
CLOUDWATCH = iam.ServicePrincipal("cloudwatch.amazonaws.com")
# The age of a queue's oldest message that means trouble (ApproximateAgeOfOldestMessage, watch_every_queue).
# Work queues: a message is delayed at most 15 minutes (longer waits are parked in the job table) and
# consumed within minutes, so an hour means a consumer that is stuck, failing or too slow for the backlog,
# long before the queue's retention (14 days; 4 for the token lifecycle's notifications) could drop it.
WORK_QUEUE_AGE_ALARM = Duration.hours(1)
# Per purpose, where a queue's normal life differs from the default (none yet).
QUEUE_AGE_ALARMS: dict[str, Duration] = {}
# Dead-letter queues (purpose ending in _dlq, as every duty tags them): their depth alarms
# at once; the age alarm says a message has waited half the DLQ's retention for an operator and is a week
# from being lost.
DLQ_AGE_FRACTION = 0.5


class Observability(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        account = Stack.of(self).account
        key = messaging.customer_key(self, "AlarmsKey", config=config, use="the alarm topic (SNS)")
        tag_purpose(key, "alarms_key")
        self.key = key
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="Seller Insights alarms",
            master_key=key,
            enforce_ssl=True,
        )
        tag_purpose(self.topic, "alarms")
        same_account = {"StringEquals": {"aws:SourceAccount": account}}
        # CloudWatch publishes alarm notifications as a service: it needs the topic and the key.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[CLOUDWATCH],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=same_account,
            )
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[CLOUDWATCH],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy "*" means this key
                conditions=same_account,
            )
        )
        self._action = cw_actions.SnsAction(self.topic)

    def watch_function(self, service: ServiceFunction) -> cloudwatch.Alarm:
        """Alarm as soon as the function reports an error (a failed invocation) in a period."""
        return self._alarm(
            f"{service.node.id}Errors",
            service.function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            f"{service.duty}: function errors",
        )

    def watch_http_api(self, name: str, api: apigwv2.HttpApi) -> cloudwatch.Alarm:
        return self._alarm(
            f"{name}ServerErrors",
            api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            f"{name}: HTTP 5xx responses",
        )

    def watch_dead_letter_queue(self, construct_id: str, queue: sqs.IQueue, description: str) -> cloudwatch.Alarm:
        """Alarm as soon as a dead-letter queue holds a message: something was given up on."""
        return self._alarm(
            construct_id,
            queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM),
            description,
        )

    def watch_every_queue(self) -> list[cloudwatch.Alarm]:
        """An ApproximateAgeOfOldestMessage alarm on every SQS queue of the stack, whoever added it (call it
        once the stack is composed). Thresholds: QUEUE_AGE_ALARMS by purpose, else WORK_QUEUE_AGE_ALARM; a
        dead-letter queue's is DLQ_AGE_FRACTION of its retention."""
        stack = Stack.of(self)
        alarms = []
        for queue in stack.node.find_all():
            if not isinstance(queue, sqs.Queue):
                continue
            purpose = purpose_of(queue) or "unnamed"
            threshold = self._age_threshold(queue, purpose)
            name = "".join(queue.node.path.split("/")[1:])
            alarms.append(self._alarm(
                f"{name}OldestMessageAge",
                queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM),
                f"{purpose}: its oldest message is older than {_hours(threshold)} (a consumer stuck or too slow, "
                "or dead letters nobody looked at); messages past the queue's retention are lost",
                threshold,
            ))
        return alarms

    @staticmethod
    def _age_threshold(queue: sqs.Queue, purpose: str) -> int:
        """Seconds."""
        retention = queue.node.default_child.message_retention_period  # type: ignore[union-attr]
        retention_seconds = int(retention) if retention is not None else 4 * 24 * 3600  # SQS's default
        if purpose.endswith("_dlq"):
            return int(retention_seconds * DLQ_AGE_FRACTION)
        alarm = QUEUE_AGE_ALARMS.get(purpose, WORK_QUEUE_AGE_ALARM).to_seconds()
        return int(min(alarm, retention_seconds * DLQ_AGE_FRACTION))

    def watch_metric(self, construct_id: str, metric: cloudwatch.IMetric, description: str, *,
                     threshold: float = 0) -> cloudwatch.Alarm:
        """Alarm on any value above `threshold` (zero: any occurrence) of an application metric (EMF,
        namespace SellerInsights)."""
        return self._alarm(construct_id, metric, description, threshold)

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, description: str,
               threshold: float = 0) -> cloudwatch.Alarm:
        # Alarms here mean "any occurrence" (counts and depths above zero) unless a threshold is given.
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        return alarm


def _hours(seconds: int) -> str:
    return f"{seconds // 3600} hours" if seconds >= 7200 else f"{seconds // 60} minutes"
