"""Operators: the one identity made for people who run the product (`python -m ops`).

``OpsSupportRole``: any principal of this account may assume it, but only with MFA, and every statement
of its policy again requires MFA. Each duty that operators may act on grants what its ops commands need
through ``allow`` (a statement with the MFA condition and a reason for cdk-nag where a wildcard is
unavoidable); nothing else is granted, so the role's policy is the list of what ``ops`` can do.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import StageConfig
from infra.nag import acknowledge

MFA_PRESENT = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
OPS_SESSION = Duration.hours(1)


class Operators(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.role = iam.Role(
            self,
            "OpsSupportRole",
            description="Seller Insights operators: the ops commands (MFA required)",
            assumed_by=iam.AccountRootPrincipal().with_conditions(MFA_PRESENT),
            max_session_duration=OPS_SESSION,
        )

    def allow(self, sid: str, actions: Sequence[str], resources: Sequence[str], *,
              wildcards: Sequence[tuple[str, str]] = ()) -> iam.PolicyStatement:
        """One statement of the role's policy, usable only with MFA. `wildcards`: (cdk-nag IAM5 finding
        suffix, reason) for each resource or action pattern cdk-nag reports."""
        statement = iam.PolicyStatement(sid=sid, actions=list(actions), resources=list(resources),
                                        conditions=MFA_PRESENT)
        self.role.add_to_policy(statement)
        for finding, reason in wildcards:
            acknowledge(self.role, f"AwsSolutions-IAM5[{finding}]", reason)
        return statement
