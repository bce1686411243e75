"""cdk-nag v3 gate: rule packs registered as CDK validation plugins at App scope.

cdk-nag 3 is not an Aspect. Each pack implements ``IPolicyValidationPlugin``; CDK runs it after
synthesis and fails the synth (an exception in-process, a non-zero exit under the CLI) when a pack
reports an unacknowledged finding. Findings are acknowledged with CDK's own
``Validations.of(construct).acknowledge(...)``, which cdk-nag looks up on the resource and its
ancestors. Rules that report several findings per resource (IAM5) need one acknowledgement per
finding id, e.g. ``AwsSolutions-IAM5[Resource::*]``.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct

MIN_REASON_LENGTH = 20


def add_nag_checks(app: cdk.App) -> None:
    """Run the AwsSolutions and Serverless packs over every stack of ``app``."""
    cdk.Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True),
        ServerlessChecks(app, verbose=True),
    )


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one nag finding on ``construct`` (and its children) with a written reason.

    Refuses an empty or throw-away reason: an acknowledgement is a reviewed decision and must say
    why the rule does not apply here.
    """
    if not rule_id.strip():
        raise ValueError("acknowledge() needs a rule id such as 'AwsSolutions-IAM5[Resource::*]'")
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(
            f"acknowledge({rule_id!r}) needs a reason of at least {MIN_REASON_LENGTH} characters "
            f"explaining why the rule does not apply, got {reason!r}"
        )
    cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason.strip()))
