"""Queues, keys, schedules and queue consumers: the shapes every duty's messaging shares.

Architecture §4: every queue is KMS-encrypted with a customer key (never the token key), TLS-only and
dead-lettered; SQS event sources use partial batch responses, bounded batch size and concurrency,
and a visibility timeout at least six times the consumer's timeout; schedules have a target DLQ and
a retry policy. The helpers create their constructs under the ``scope`` they are given with the ids
they are given, so moving a duty onto them keeps its logical ids.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack, Tags
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from infra.config import StageConfig
from infra.constructs.service_function import ServiceFunction
from infra.nag import acknowledge

SCHEDULE_TAG = "seller-insights:schedule"
# The account Amazon sends Selling Partner notifications from (Notifications API guide); aws partition only.
AMAZON_NOTIFICATIONS_PRINCIPAL = "arn:aws:iam::437568002678:root"
AMAZON_NOTIFICATIONS_ACTIONS = ("sqs:SendMessage", "sqs:GetQueueAttributes")
# Architecture §4: visibility timeout at least six times the consumer's timeout.
VISIBILITY_TIMEOUT_FACTOR = 6
MAX_RECEIVE_COUNT = 5
DLQ_RETENTION = Duration.days(14)
# Every consumed (work) queue keeps messages SQS's longest: far beyond any planned wait (a message is delayed
# at most 15 minutes; longer waits are parked in the job table, not in a queue), so a backlog that builds up
# in an outage is worked off instead of vanishing; its age is alarmed long before (Observability).
# Exception, with its reason: the token lifecycle's notifications queue (a new client secret travels there).
WORK_QUEUE_RETENTION = Duration.days(14)
TARGET_RETRY_ATTEMPTS = 3
CONSUME_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes")


def customer_key(scope: Construct, construct_id: str, *, config: StageConfig, use: str) -> kms.Key:
    """A rotating customer key; its pending window and removal follow the stage."""
    return kms.Key(
        scope,
        construct_id,
        description=f"Seller Insights: {use}",
        enable_key_rotation=True,
        removal_policy=config.removal_policy,
        pending_window=Duration.days(30 if config.retain else 7),
    )


def allow_amazon_via_sqs(key: kms.Key) -> None:
    """Amazon's notifications account may use ``key`` to send to queues it encrypts, and only through SQS."""
    key.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ArnPrincipal(AMAZON_NOTIFICATIONS_PRINCIPAL)],
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=["*"],  # in a key policy "*" means this key
            conditions={"StringEquals": {"kms:ViaService": _sqs_service(key)}},
        )
    )


def encrypted_queue(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    retention: Duration,
    visibility_timeout: Duration | None = None,
    dead_letter_queue: sqs.DeadLetterQueue | None = None,
) -> sqs.Queue:
    """A queue encrypted with ``key`` that refuses requests without TLS."""
    return sqs.Queue(
        scope,
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


def dead_letter_queue(scope: Construct, construct_id: str, *, key: kms.IKey) -> sqs.Queue:
    """A 14-day dead-letter queue; alarm on its depth (Observability.watch_dead_letter_queue)."""
    queue = encrypted_queue(scope, construct_id, key=key, retention=DLQ_RETENTION)
    acknowledge(
        queue,
        "Serverless-SQSRedrivePolicy",
        "This queue is itself a dead-letter queue (alarmed when not empty); operators inspect and "
        "redrive its messages, a further DLQ behind it would only move the problem.",
    )
    return queue


def consumed_queue(
    scope: Construct,
    construct_id: str,
    *,
    consumer: ServiceFunction,
    key: kms.IKey,
    retention: Duration,
    dead_letters: sqs.IQueue,
) -> sqs.Queue:
    """A work queue whose visibility timeout is six times ``consumer``'s timeout, redriven after 5 receives."""
    timeout = consumer.function.timeout
    assert timeout is not None  # ServiceFunction always sets one
    return encrypted_queue(
        scope,
        construct_id,
        key=key,
        retention=retention,
        visibility_timeout=Duration.seconds(timeout.to_seconds() * VISIBILITY_TIMEOUT_FACTOR),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=MAX_RECEIVE_COUNT),
    )


def admit_amazon_notifications(queue: sqs.Queue) -> None:
    """Amazon's notifications account may send to ``queue`` (and read its attributes), nothing else."""
    queue.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AmazonSellingPartnerNotifications",
            principals=[iam.ArnPrincipal(AMAZON_NOTIFICATIONS_PRINCIPAL)],
            actions=list(AMAZON_NOTIFICATIONS_ACTIONS),
            resources=[queue.queue_arn],
        )
    )


def grant_queue_key_via_sqs(grantee: iam.IGrantable, key: kms.IKey, *actions: str) -> None:
    """``actions`` on ``key`` only through SQS: the role cannot decrypt anything with it directly."""
    iam.Grant.add_to_principal(
        grantee=grantee,
        actions=list(actions),
        resource_arns=[key.key_arn],
        conditions={"StringEquals": {"kms:ViaService": _sqs_service(key)}},
    )


def consume(
    scope: Construct,
    construct_id: str,
    *,
    consumer: ServiceFunction,
    queue: sqs.Queue,
    batch_size: int,
    max_concurrency: int,
    dead_letter_purpose: str,
) -> lambda_.EventSourceMapping:
    """An SQS event source with partial batch responses, and the consumer's grants to use it.

    A plain mapping instead of SqsEventSource, whose grant would allow kms:Decrypt on the queue's key
    without the kms:ViaService condition.
    """
    key = queue.encryption_master_key
    if key is None:
        raise ValueError(f"{queue.node.path}: consumed queues are KMS-encrypted with a customer key")
    mapping = lambda_.EventSourceMapping(
        scope,
        construct_id,
        target=consumer.live,
        event_source_arn=queue.queue_arn,
        batch_size=batch_size,
        max_concurrency=max_concurrency,
        report_batch_item_failures=True,
    )
    queue.grant(consumer, *CONSUME_ACTIONS)
    grant_queue_key_via_sqs(consumer, key, "kms:Decrypt")
    # Lambda checks the role's permissions when it creates the mapping.
    mapping.node.add_dependency(consumer.role)
    acknowledge(
        mapping,
        "Serverless-LambdaEventSourceMappingDestination",
        "SQS event sources take no on-failure destination: a message that keeps failing moves to "
        f"{dead_letter_purpose} through the queue's redrive policy (maxReceiveCount {MAX_RECEIVE_COUNT}), "
        "which is alarmed.",
    )
    return mapping


def scheduled_task(
    scope: Construct,
    *,
    name: str,
    rate: Duration,
    max_event_age: Duration,
    consumer: ServiceFunction,
    dead_letters: sqs.IQueue,
) -> events.Rule:
    """A rule that invokes ``consumer`` with the constant ``{"task": name}`` every ``rate``.

    ``max_event_age``: how long a missed run stays worth delivering (a later run does the same work).
    The rule is tagged ``seller-insights:schedule=name``; the local stack fires it by that name
    (``POST /_local/fire/{name}``).
    """
    rule = events.Rule(
        scope,
        "".join(part.title() for part in name.split("-")) + "Schedule",
        description=f"{consumer.duty} task {name}",
        schedule=events.Schedule.rate(rate),
    )
    rule.add_target(
        targets.LambdaFunction(
            consumer.live,
            event=events.RuleTargetInput.from_object({"task": name}),
            dead_letter_queue=dead_letters,
            retry_attempts=TARGET_RETRY_ATTEMPTS,
            max_event_age=max_event_age,
        )
    )
    Tags.of(rule).add(SCHEDULE_TAG, name)
    return rule


def _sqs_service(scope: IConstruct) -> str:
    return f"sqs.{Stack.of(scope).region}.amazonaws.com"
