"""Log groups of the stack: the stage's retention and one customer key for all of them."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from infra.config import StageConfig


class LogsKey(Construct):
    """A customer key only CloudWatch Logs of this account may use, created once per stack.

    Separate from the token key so that log delivery never gets a say over refresh tokens.
    """

    _ID = "LogsKey"

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            description="Seller Insights: CloudWatch Logs encryption",
            enable_key_rotation=True,
            removal_policy=config.removal_policy,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:DescribeKey",
                ],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )

    @classmethod
    def of(cls, scope: IConstruct, config: StageConfig) -> kms.Key:
        stack = Stack.of(scope)
        existing = stack.node.try_find_child(cls._ID)
        holder = existing if isinstance(existing, LogsKey) else cls(stack, cls._ID, config=config)
        return holder.key


def stage_log_group(scope: Construct, construct_id: str, config: StageConfig) -> logs.LogGroup:
    """A log group kept ``config.log_retention_days`` and encrypted with the stack's logs key."""
    return logs.LogGroup(
        scope,
        construct_id,
        retention=config.log_retention,
        removal_policy=config.removal_policy,
        encryption_key=LogsKey.of(scope, config),
    )
