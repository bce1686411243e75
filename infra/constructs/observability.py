"""Observability: the alarm topic and the alarms every duty gets.

The topic has a key of its own: CloudWatch publishes alarms as a service, and no service principal
may hold a grant on the token key (which seals refresh tokens).

Every alarm is made here (`_alarm`): it is named `{stack name}-{construct id}`, notifies the topic when it
fires AND when it recovers (OK), and its description ends with its section of docs/runbook.md (the construct
id, or the family pattern such as `*OldestMessageAge`; tests/infra/test_runbook.py keeps the two in step).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import messaging, purpose_of, tag_purpose
from infra.constructs.service_function import METRICS_NAMESPACE, ServiceFunction

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
RUNBOOK = "docs/runbook.md"
# A heartbeat alarms when this many of its schedule's periods pass without a finished run.
HEARTBEAT_PERIODS = 2
HEARTBEAT_MIN_PERIOD = Duration.minutes(5)
# "Sustained": a count in every one of this many 5-minute periods (TokenRefreshFailed, the fetcher's errors).
SUSTAINED_PERIODS = 3


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
        self._age_alarms: dict[str, cloudwatch.Alarm] = {}

    def watch_function(self, service: ServiceFunction) -> cloudwatch.Alarm:
        """Alarm as soon as the function reports an error (a failed invocation) in a period."""
        return self._alarm(
            f"{service.node.id}Errors",
            service.function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            f"{service.duty}: function errors",
            runbook="*Errors",
        )

    def watch_errors_sustained(self, service: ServiceFunction) -> cloudwatch.Alarm:
        """Errors in each of SUSTAINED_PERIODS 5-minute periods: not a blip, the function keeps failing."""
        return self._alarm(
            f"{service.node.id}ErrorsSustained",
            service.function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            f"{service.duty}: function errors in each of {SUSTAINED_PERIODS} consecutive 5-minute periods",
            evaluation_periods=SUSTAINED_PERIODS,
        )

    def watch_http_api(self, name: str, api: apigwv2.HttpApi) -> cloudwatch.Alarm:
        return self._alarm(
            f"{name}ServerErrors",
            api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            f"{name}: HTTP 5xx responses",
        )

    def watch_dead_letter_queue(self, construct_id: str, queue: sqs.IQueue, description: str) -> cloudwatch.Alarm:
        """Alarm as soon as a dead-letter queue holds a message: something was given up on. Runbook: the
        `*FailedEventsDepth` family (EventBridge's undelivered events) or `*DlqDepth` (consumers' dead letters)."""
        return self._alarm(
            construct_id,
            queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM),
            description,
            runbook="*FailedEventsDepth" if construct_id.endswith("FailedEventsDepth") else "*DlqDepth",
        )

    def watch_heartbeat(self, service: ServiceFunction, sweep: str, rate: Duration) -> cloudwatch.Alarm:
        """Silence is the alarm: no `SweepCompleted` of the schedule `sweep` (emitted by `service` at the end of
        each finder run that finished) in HEARTBEAT_PERIODS of its periods. Missing data is breaching: a
        schedule that stopped, a function that cannot start, or runs that all fail emit nothing at all."""
        heartbeat = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name="SweepCompleted",
            dimensions_map={"service": service.duty, "sweep": sweep},
            statistic=cloudwatch.Stats.SUM,
            period=heartbeat_period(rate),
        )
        every = "minute" if rate.to_seconds() == 60 else _hours(int(rate.to_seconds()))
        return self._alarm(
            f"{_camel(sweep)}Heartbeat",
            heartbeat,
            f"{service.duty}: no finished {sweep} run in {HEARTBEAT_PERIODS} periods of "
            f"{_hours(int(heartbeat_period(rate).to_seconds()))} (it runs every {every}): the schedule stopped, or "
            "its runs fail or time out",
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=HEARTBEAT_PERIODS,
            missing=cloudwatch.TreatMissingData.BREACHING,
            runbook="*Heartbeat",
        )

    def watch_every_function(self) -> list[cloudwatch.Alarm]:
        """A Throttles alarm on every function of the stack, whoever added it: a throttled invocation is
        work refused (reserved concurrency reached), retried by its source or lost for a synchronous caller."""
        return [
            self._alarm(
                f"{service.node.id}FunctionThrottles",
                service.function.metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                f"{service.duty}: invocations throttled (its reserved concurrency was reached)",
                runbook="*FunctionThrottles",
            )
            for service in every_function(self)
        ]

    def watch_every_table(self) -> list[cloudwatch.Alarm]:
        """Read and write throttle events of every DynamoDB table of the stack and of each of its global
        secondary indexes (CloudWatch reports those per index), one alarm each: on-demand tables throttle
        only on a hot partition or the table's (or account's) throughput ceiling."""
        alarms = []
        for table in every_table(self):
            name = table.node.id
            alarms.append(self._alarm(
                f"{name}TableThrottles",
                _throttle_events(table, None),
                f"DynamoDB {purpose_of(table) or name}: read or write requests throttled",
                runbook="*TableThrottles",
            ))
            for index in table_indexes(table):
                alarms.append(self._alarm(
                    f"{name}{_camel(index)}IndexThrottles",
                    _throttle_events(table, index),
                    f"DynamoDB {purpose_of(table) or name}, index {index}: reads or writes throttled (a "
                    "throttled index write also throttles the table's writes)",
                    runbook="*IndexThrottles",
                ))
        return alarms

    def queue_age_alarm(self, queue: sqs.Queue) -> cloudwatch.Alarm:
        """The queue's ApproximateAgeOfOldestMessage alarm, made now if it is not yet (watch_every_queue then
        leaves it be): for alarms that combine it, such as `pipeline_down`."""
        existing = self._age_alarms.get(queue.node.addr)
        if existing is not None:
            return existing
        purpose = purpose_of(queue) or "unnamed"
        threshold = self._age_threshold(queue, purpose)
        name = "".join(queue.node.path.split("/")[1:])
        alarm = self._alarm(
            f"{name}OldestMessageAge",
            queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM),
            f"{purpose}: its oldest message is older than {_hours(threshold)} (a consumer stuck or too slow, "
            "or dead letters nobody looked at); messages past the queue's retention are lost",
            threshold,
            runbook="*OldestMessageAge",
        )
        self._age_alarms[queue.node.addr] = alarm
        return alarm

    def watch_every_queue(self) -> list[cloudwatch.Alarm]:
        """An ApproximateAgeOfOldestMessage alarm on every SQS queue of the stack, whoever added it (call it
        once the stack is composed). Thresholds: QUEUE_AGE_ALARMS by purpose, else WORK_QUEUE_AGE_ALARM; a
        dead-letter queue's is DLQ_AGE_FRACTION of its retention."""
        return [self.queue_age_alarm(queue) for queue in every_queue(self)]

    def pipeline_down(self, alarms: list[cloudwatch.IAlarm], description: str) -> cloudwatch.CompositeAlarm:
        """One page that says "the pipeline is down" when any of `alarms` is in ALARM (each still notifies on
        its own; this one says which failure matters most)."""
        construct_id = "PipelineDown"
        composite = cloudwatch.CompositeAlarm(
            self,
            construct_id,
            composite_alarm_name=self._name(construct_id),
            alarm_description=self._described(description, construct_id),
            alarm_rule=cloudwatch.AlarmRule.any_of(*alarms),
        )
        composite.add_alarm_action(self._action)
        composite.add_ok_action(self._action)
        return composite

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
                     threshold: float = 0, evaluation_periods: int = 1, runbook: str | None = None) -> cloudwatch.Alarm:
        """Alarm on any value above `threshold` (zero: any occurrence) of an application metric (EMF,
        namespace SellerInsights), in each of `evaluation_periods` consecutive periods. `runbook`: the section
        of docs/runbook.md when it is a family's (default: the construct id)."""
        return self._alarm(construct_id, metric, description, threshold, evaluation_periods=evaluation_periods,
                           runbook=runbook)

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, description: str,
               threshold: float = 0, *, evaluation_periods: int = 1,
               comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
               missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
               runbook: str | None = None) -> cloudwatch.Alarm:
        # Alarms here mean "any occurrence" (counts and depths above zero) unless a threshold is given.
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=self._name(construct_id),
            alarm_description=self._described(description, runbook or construct_id),
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=evaluation_periods,
            comparison_operator=comparison,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        return alarm

    def _name(self, construct_id: str) -> str:
        return f"{Stack.of(self).stack_name}-{construct_id}"

    @staticmethod
    def _described(description: str, runbook_section: str) -> str:
        return f"{description.rstrip('.')}. Runbook: {RUNBOOK}, section `{runbook_section}`."


def heartbeat_period(rate: Duration) -> Duration:
    """The schedule's rate, but at least HEARTBEAT_MIN_PERIOD: EMF counts reach CloudWatch through the logs,
    a minute or so late, and a 1-minute period whose data is late would count as missing (breaching)."""
    return rate if rate.to_seconds() >= HEARTBEAT_MIN_PERIOD.to_seconds() else HEARTBEAT_MIN_PERIOD


def every_function(scope: Construct) -> list[ServiceFunction]:
    """Every function of the stack (each is a ServiceFunction), in construction order."""
    return [c for c in Stack.of(scope).node.find_all() if isinstance(c, ServiceFunction)]


def every_queue(scope: Construct) -> list[sqs.Queue]:
    return [c for c in Stack.of(scope).node.find_all() if isinstance(c, sqs.Queue)]


def every_table(scope: Construct) -> list[dynamodb.Table]:
    return [c for c in Stack.of(scope).node.find_all() if isinstance(c, dynamodb.Table)]


def table_indexes(table: dynamodb.Table) -> list[str]:
    """The names of the table's global secondary indexes, as synthesized (the L2 keeps them private)."""
    indexes = Stack.of(table).resolve(table.node.default_child.global_secondary_indexes)  # type: ignore[union-attr]
    return [index["indexName"] for index in indexes or []]


def _throttle_events(table: dynamodb.Table, index: str | None) -> cloudwatch.MathExpression:
    """Read plus write throttle events of the table (or of one of its indexes), 0 where none was reported
    (DynamoDB publishes them only when something was throttled)."""
    dimensions = {"TableName": table.table_name}
    if index is not None:
        dimensions["GlobalSecondaryIndexName"] = index
    events = {
        key: cloudwatch.Metric(namespace="AWS/DynamoDB", metric_name=name, dimensions_map=dimensions,
                               statistic=cloudwatch.Stats.SUM, period=PERIOD)
        for key, name in (("reads", "ReadThrottleEvents"), ("writes", "WriteThrottleEvents"))
    }
    return cloudwatch.MathExpression(expression="FILL(reads, 0) + FILL(writes, 0)", using_metrics=events,
                                     label="throttle events", period=PERIOD)


def _camel(name: str) -> str:
    """refresh-tokens, by_refresh_due -> RefreshTokens, ByRefreshDue."""
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


def _hours(seconds: int) -> str:
    return f"{seconds // 3600} hours" if seconds >= 7200 else f"{seconds // 60} minutes"
