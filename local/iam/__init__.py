"""AWS permissions enforced locally: the synthesized template's IAM, key, bucket, queue and topic
policies evaluated on every botocore call a function makes (docs/local-stack.md, "Permissions").

- `policies`: the template's statements, bound to the resources that run;
- `evaluator`: AWS's decision logic and the condition operators;
- `requests`: botocore operation -> the IAM requests AWS authorizes (and KMS on the caller's behalf);
- `guard`: the botocore patch, the acting principal, the AccessDenied errors.
"""

from local.iam.evaluator import Decision, PolicyError, Principal
from local.iam.guard import AMAZON_NOTIFICATIONS_ACCOUNT, SWITCH, Authorizer, acting, current, enabled, install
from local.iam.policies import PolicySet, bind_environment, policy_set
from local.iam.requests import UnmappedOperation

__all__ = [
    "AMAZON_NOTIFICATIONS_ACCOUNT",
    "SWITCH",
    "Authorizer",
    "Decision",
    "PolicyError",
    "PolicySet",
    "Principal",
    "UnmappedOperation",
    "acting",
    "bind_environment",
    "current",
    "enabled",
    "install",
    "policy_set",
]
