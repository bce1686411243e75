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
from infra.constructs import messaging, tag_purpose
from infra.constructs.service_function import ServiceFunction

PERIOD = Duration.minutes(5)
CLOUDWATCH = iam.ServicePrincipal("cloudwatch.amazonaws.com")


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
