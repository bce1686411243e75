"""Operators: the one identity made for people who run the product (`python -m ops`).

``OpsSupportRole``: a principal of this account may assume it along one of two paths, and every statement
of its policy is usable only by a session that came along one of them:

- **IAM MFA** (always): an IAM user or role session of this account that signed in with MFA. The trust
  statement and each permission statement require ``aws:MultiFactorAuthPresent`` = true.
- **IAM Identity Center** (stage key ``ops_identity_center_permission_set``): Identity Center sessions
  never carry ``aws:MultiFactorAuthPresent``, so they could never pass the first path. Instead the trust
  admits only the roles Identity Center makes for that one permission set
  (``aws:PrincipalArn`` = ``arn:aws:iam::ACCOUNT:role/aws-reserved/sso.amazonaws.com/[REGION/]
  AWSReservedSSO_{name}_{16 characters}``; only Identity Center can create roles under ``aws-reserved``),
  with a session name ``identity-center-*`` (``sts:RoleSessionName``), and each permission statement has
  a twin (``{sid}ViaIdentityCenter``) for sessions of that name (``aws:userid`` = ``ROLEID:identity-center-*``).
  The MFA guarantee comes from Identity Center: "Prompt users for MFA: Every time they sign in" (README,
  "Operators signing in through IAM Identity Center").

Each duty that operators may act on grants what its ops commands need through ``allow`` (statements with
these conditions and a reason for cdk-nag where a wildcard is unavoidable); nothing else is granted, so the
role's policy is the list of what ``ops`` can do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import StageConfig
from infra.nag import acknowledge

MFA_PRESENT = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
OPS_SESSION = Duration.hours(1)
# Sessions of the role assumed through the Identity Center path are named this way (their aws:userid is
# "ROLEID:identity-center-..."), e.g. role_session_name = identity-center-alice in the operator's profile.
IDENTITY_CENTER_SESSION_PREFIX = "identity-center-"
# Identity Center names a permission set's role AWSReservedSSO_{name}_{16 characters}; matching exactly 16
# keeps "Ops" from also matching the role of a permission set named "Ops_Admin".
ROLE_SUFFIX = "?" * 16


def identity_center_role_patterns(permission_set: str) -> list[str]:
    """The permission set's roles in this account: without a Region segment when Identity Center lives in
    us-east-1, with one otherwise."""
    base = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-reserved/sso.amazonaws.com/"
    role = f"AWSReservedSSO_{permission_set}_{ROLE_SUFFIX}"
    return [base + role, f"{base}*/{role}"]


def identity_center_session() -> dict[str, dict[str, str]]:
    return {"StringLike": {"aws:userid": f"*:{IDENTITY_CENTER_SESSION_PREFIX}*"}}


class Operators(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.permission_set = config.ops_identity_center_permission_set
        self.role = iam.Role(
            self,
            "OpsSupportRole",
            description="Seller Insights operators: the ops commands (MFA required)",
            assumed_by=iam.AccountRootPrincipal().with_conditions(MFA_PRESENT),
            max_session_duration=OPS_SESSION,
        )
        if self.permission_set is not None:
            assert self.role.assume_role_policy is not None  # set from assumed_by
            self.role.assume_role_policy.add_statements(iam.PolicyStatement(
                sid="IdentityCenterPermissionSet",
                actions=["sts:AssumeRole"],
                principals=[iam.AccountRootPrincipal()],
                conditions={
                    "ArnLike": {"aws:PrincipalArn": identity_center_role_patterns(self.permission_set)},
                    "StringLike": {"sts:RoleSessionName": f"{IDENTITY_CENTER_SESSION_PREFIX}*"},
                },
            ))

    def allow(self, sid: str, actions: Sequence[str], resources: Sequence[str], *,
              wildcards: Sequence[tuple[str, str]] = (),
              conditions: Mapping[str, Mapping[str, Any]] | None = None) -> iam.PolicyStatement:
        """One statement of the role's policy, usable only with MFA (and its Identity Center twin when the
        stage names a permission set). `conditions`: more conditions both must meet (e.g. kms:ViaService).
        `wildcards`: (cdk-nag IAM5 finding suffix, reason) for each resource or action pattern cdk-nag reports."""
        statement = iam.PolicyStatement(sid=sid, actions=list(actions), resources=list(resources),
                                        conditions=_merged(MFA_PRESENT, conditions))
        self.role.add_to_policy(statement)
        if self.permission_set is not None:
            self.role.add_to_policy(iam.PolicyStatement(
                sid=f"{sid}ViaIdentityCenter", actions=list(actions), resources=list(resources),
                conditions=_merged(identity_center_session(), conditions)))
        for finding, reason in wildcards:
            acknowledge(self.role, f"AwsSolutions-IAM5[{finding}]", reason)
        return statement


def _merged(*blocks: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for block in blocks:
        for operator, pairs in (block or {}).items():
            target = merged.setdefault(operator, {})
            overlap = set(target) & set(pairs)
            assert not overlap, f"condition keys given twice under {operator}: {sorted(overlap)}"
            target.update(pairs)
    return merged
