"""The LWA client secret in tests: the template with the token refresher's PutSecretValue grant cut (so storing
a new secret fails for real, denied by the local IAM guard as AWS would deny it), and reading the secret."""

from __future__ import annotations

import copy
import json
from typing import Any

from local.template import Template, referenced_id, resources

REFRESHER = "token_refresher.handler.lambda_handler"
PUT_SECRET_VALUE = "secretsmanager:PutSecretValue"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def refresher_statements(template: Template) -> list[dict[str, Any]]:
    """The statements of the token refresher role's policies (the same objects: edits change `template`)."""
    (function,) = [f for _, f in resources(template, "AWS::Lambda::Function")
                   if f["Properties"]["Handler"] == REFRESHER]
    role = referenced_id(function["Properties"]["Role"])
    return [statement for _, policy in resources(template, "AWS::IAM::Policy")
            if role in (referenced_id(r) for r in policy["Properties"]["Roles"])
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]]


def without_the_refreshers_secret_store(template: Template) -> Template:
    """A copy of `template` whose token refresher may read the LWA client secret but not store a new one."""
    cut = copy.deepcopy(template)
    removed = 0
    for statement in refresher_statements(cut):
        actions = _as_list(statement["Action"])
        if PUT_SECRET_VALUE in actions:
            # Left without an action, the statement grants nothing that matters here: name one it already had.
            kept = [a for a in actions if a != PUT_SECRET_VALUE] or ["secretsmanager:DescribeSecret"]
            statement["Action"] = kept
            removed += 1
    assert removed == 1, "the token refresher's PutSecretValue grant is not where this helper expects it"
    return cut


def secret_value(client: Any, secret_id: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    return value


def version_count(client: Any, secret_id: str) -> int:
    return len(client.list_secret_version_ids(SecretId=secret_id)["Versions"])
