"""The guard: every botocore call made while acting as a principal is authorized first.

`install()` wraps `botocore.client.BaseClient._make_api_call` once per process. The acting principal
lives in a `contextvars.ContextVar`, so it follows the code that set it (and threads started with a
copy of that context), never other threads. No principal: the call is not evaluated (the local
stack's own setup, the tests' assertions, the operator).

A denied call raises the `ClientError` the service returns for AccessDenied (code, HTTP status, AWS's
message); a multi-object delete loses only its denied keys, reported in `Errors` as S3 does. Denials
are logged at WARNING with principal, action and resource (S3 object keys cut to their first path
segment: they hold seller ids).

`SI_LOCAL_IAM=off` in the environment disables the guard, for debugging only.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import botocore.client
from botocore.exceptions import ClientError

from local.iam.evaluator import Decision, Principal, Statement, evaluate
from local.iam.policies import PolicySet
from local.iam.requests import Context, IamRequest, iam_requests
from local.template import ACCOUNT_ID, REGION

log = logging.getLogger("local.iam")

SWITCH = "SI_LOCAL_IAM"
# Amazon's account for SP-API notifications (infra/constructs/messaging.py names it in queue and key policies).
AMAZON_NOTIFICATIONS_ACCOUNT = "437568002678"

# What each service answers for an access denial: (error code, HTTP status).
DENIALS = {
    "s3": ("AccessDenied", 403),
    "sqs": ("AccessDenied", 403),
    "sns": ("AuthorizationError", 403),
    "dynamodb": ("AccessDeniedException", 400),
    "kms": ("AccessDeniedException", 400),
    "secretsmanager": ("AccessDeniedException", 400),
    "events": ("AccessDeniedException", 400),
    "sts": ("AccessDenied", 403),
}


def enabled() -> bool:
    return os.environ.get(SWITCH, "on").strip().lower() not in ("off", "0", "false", "no")


@dataclass(frozen=True)
class Acting:
    principal: Principal
    identity: tuple[Statement, ...] | None  # None: another account's principal (its IAM is not ours)
    authorizer: Authorizer


_acting: contextvars.ContextVar[Acting | None] = contextvars.ContextVar("si_local_iam_acting", default=None)
_original: Any = None
_install_lock = threading.Lock()
_stack_authorizer: Authorizer | None = None


def install() -> bool:
    """Wraps botocore's API call once per process; False when switched off."""
    global _original  # noqa: PLW0603 - one process-wide patch, like local/moto_fixes.py
    if not enabled():
        log.warning("the local IAM guard is OFF (%s=off): no call is checked against the template's policies",
                    SWITCH)
        return False
    with _install_lock:
        if _original is None:
            _original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined, unused-ignore]
            botocore.client.BaseClient._make_api_call = _guarded  # type: ignore[attr-defined, unused-ignore]
    return True


def installed() -> bool:
    return _original is not None


@contextlib.contextmanager
def acting(principal: Principal, identity: tuple[Statement, ...] | None, authorizer: Authorizer) -> Iterator[None]:
    """Every botocore call in this context is authorized as `principal`."""
    token = _acting.set(Acting(principal, identity, authorizer))
    try:
        yield
    finally:
        _acting.reset(token)


@contextlib.contextmanager
def unguarded() -> Iterator[None]:
    token = _acting.set(None)
    try:
        yield
    finally:
        _acting.reset(token)


def current() -> Acting | None:
    return _acting.get()


def set_stack_authorizer(authorizer: Authorizer | None) -> None:
    """The running local stack's authorizer, for principals outside any function (Amazon's account)."""
    global _stack_authorizer  # noqa: PLW0603 - one local stack per process
    _stack_authorizer = authorizer


def as_account(account: str) -> contextlib.AbstractContextManager[None]:
    """Acts as another account's principal against the running stack's policies; without a stack (the
    Amazon emulator on its own, its tests) nothing is evaluated."""
    authorizer = _stack_authorizer
    if authorizer is None or not installed():
        return contextlib.nullcontext()
    return authorizer.acting_as_account(account)


def _guarded(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
    who = _acting.get()
    if who is None:
        return _original(client, operation_name, api_params)
    return who.authorizer.call(client, operation_name, api_params, who)


# --- the authorizer -----------------------------------------------------------------------------


class _Lookups:
    """Resource facts from moto through the caller's own client, without the guard; cached."""

    def __init__(self, authorizer: Authorizer, client: Any) -> None:
        self._authorizer = authorizer
        self._client = client
        self.region: str = client.meta.region_name or REGION
        self._endpoint = str(client.meta.endpoint_url)

    def _cached(self, key: tuple[str, ...], find: Any) -> Any:
        cache = self._authorizer.cache
        full = (self._endpoint, *key)
        if full not in cache:
            with unguarded():
                cache[full] = find()
        return cache[full]

    def _call(self, operation: str, **params: Any) -> Any:
        return _original(self._client, operation, params)

    def key_arn(self, key_id: str) -> str:
        if key_id.startswith("arn:") and ":key/" in key_id:
            return key_id
        if not key_id.startswith(("alias/", "arn:")):
            return f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{key_id}"
        if self._client.meta.service_model.service_name != "kms":
            raise ValueError(f"the KMS key {key_id!r} is an alias: name keys by ARN or id")
        return str(self._cached(("key", key_id), lambda: self._call("DescribeKey", KeyId=key_id)["KeyMetadata"]["Arn"]))

    def secret_arn(self, secret_id: str) -> str:
        if secret_id.startswith("arn:"):
            return secret_id
        return str(self._cached(("secret", secret_id), lambda: self._call("DescribeSecret", SecretId=secret_id)["ARN"]))

    def encryption_key(self, service: str, resource: str) -> str | None:
        try:
            key: str | None = self._cached(("sse", service, resource), lambda: self._find_key(service, resource))
        except ClientError:
            # The resource does not exist (or cannot be described): the call itself then fails as AWS
            # would, with its own error; nothing is cached.
            return None
        if key is None or key.startswith("alias/aws/"):
            return None  # AWS owned or AWS managed: their key policies let the service use them for the account
        return self.key_arn(key)

    def _find_key(self, service: str, resource: str) -> str | None:
        if service == "dynamodb":
            sse = self._call("DescribeTable", TableName=resource.rsplit("/", 1)[-1])["Table"].get("SSEDescription")
            return str(sse["KMSMasterKeyArn"]) if sse and sse.get("KMSMasterKeyArn") else None
        if service == "s3":
            try:
                rules = self._call("GetBucketEncryption", Bucket=resource.split(":::", 1)[1])[
                    "ServerSideEncryptionConfiguration"]["Rules"]
            except ClientError:
                return None
            for rule in rules:
                default = rule.get("ApplyServerSideEncryptionByDefault") or {}
                if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
                    return str(default.get("KMSMasterKeyID") or "alias/aws/s3")
            return None
        if service == "sqs":
            name, account = resource.rsplit(":", 1)[-1], resource.split(":")[4]
            url = self._call("GetQueueUrl", QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            attributes = self._call("GetQueueAttributes", QueueUrl=url, AttributeNames=["KmsMasterKeyId"])
            value = attributes.get("Attributes", {}).get("KmsMasterKeyId")
            return str(value) if value else None
        if service == "secretsmanager":
            value = self._call("DescribeSecret", SecretId=resource).get("KmsKeyId")
            return str(value) if value else None
        if service == "sns":
            value = self._call("GetTopicAttributes", TopicArn=resource)["Attributes"].get("KmsMasterKeyId")
            return str(value) if value else None
        raise ValueError(f"no encryption lookup for {service}")


class Authorizer:
    """Authorizes calls against one `PolicySet` (one binding of the template to real resources)."""

    def __init__(self, policies: PolicySet, *, secure_transport: bool = True) -> None:
        self.policies = policies
        # The product's clients use HTTPS in AWS (botocore's default); locally moto's http endpoint
        # stands in for that, so requests carry aws:SecureTransport=true (and TLS 1.3 for S3).
        self.secure_transport = secure_transport
        self.cache: dict[tuple[str, ...], Any] = {}
        self.checked = 0
        self.seconds = 0.0

    def acting_as_function(self, function_id: str,
                           session: str | None = None) -> contextlib.AbstractContextManager[None]:
        principal = self.policies.principal(function_id, session or function_id)
        return acting(principal, self.policies.identity_of(function_id), self)

    def acting_as_account(self, account: str) -> contextlib.AbstractContextManager[None]:
        """Another account's principal (its root), e.g. Amazon's notifications account."""
        return acting(Principal.account_root(account), None, self)

    def call(self, client: Any, operation: str, params: dict[str, Any], who: Acting) -> Any:
        started = time.perf_counter()
        service = str(client.meta.service_model.service_name)
        requests = iam_requests(service, operation, params, _Lookups(self, client))
        denied_items: list[tuple[int, Decision]] = []
        for request in requests:
            decision = self.decide(who, request)
            if decision.allowed:
                continue
            _log_denial(decision, request)
            if request.item is None:
                self._account(started)
                raise _denial(client, service, operation, decision)
            denied_items.append((request.item, decision))
        self._account(started)
        if not denied_items:
            return _original(client, operation, params)
        return _delete_objects_in_part(client, operation, params, dict(denied_items))

    def _account(self, started: float) -> None:
        self.checked += 1
        self.seconds += time.perf_counter() - started

    def decide(self, who: Acting, request: IamRequest) -> Decision:
        return evaluate(
            who.principal,
            request.action,
            request.resource,
            self._context(who.principal, request),
            identity=who.identity,
            resource_policy=self.policies.resource_policy(request.resource),
            resource_account=_account_of(request.resource, who.principal),
            key_policy=request.action.lower().startswith("kms:"),
        )

    def _context(self, principal: Principal, request: IamRequest) -> Context:
        context: Context = {
            "aws:securetransport": ("true" if self.secure_transport else "false",),
            "aws:principalarn": (principal.principal_arn,),
            "aws:principalaccount": (principal.account,),
            "aws:requestedregion": (REGION,),
            **request.context,
        }
        if request.action.lower().startswith("s3:") and self.secure_transport:
            context["s3:tlsversion"] = ("1.3",)
        if request.action.lower().startswith("kms:"):
            context["kms:calleraccount"] = (principal.account,)
        return context


def _account_of(resource: str, principal: Principal) -> str:
    parts = resource.split(":")
    if len(parts) > 4 and parts[4].isdigit():
        return parts[4]
    return ACCOUNT_ID  # S3 ARNs name no account: the stack's buckets are the stack account's


def _shown(resource: str) -> str:
    """A resource for the log: S3 object keys cut after their first segment (they hold seller ids)."""
    if resource.startswith("arn:aws:s3:::") and "/" in resource:
        bucket_and_key = resource[len("arn:aws:s3:::"):]
        bucket, key = bucket_and_key.split("/", 1)
        return f"arn:aws:s3:::{bucket}/{key.split('/', 1)[0]}/…" if "/" in key else f"arn:aws:s3:::{bucket}/…"
    return resource


def _log_denial(decision: Decision, request: IamRequest) -> None:
    reason = decision.outcome.name.lower()
    via = f" (via {request.via})" if request.via else ""
    log.warning("IAM denied %s: %s on %s%s: %s", decision.principal.arn, decision.action,
                _shown(decision.resource), via, reason)


def _denial(client: Any, service: str, operation: str, decision: Decision) -> ClientError:
    code, status = DENIALS.get(service, ("AccessDenied", 403))
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": decision.message()},
        "ResponseMetadata": {"RequestId": str(uuid.uuid4()), "HTTPStatusCode": status, "HTTPHeaders": {},
                             "RetryAttempts": 0},
    }
    error_class = client.exceptions.from_code(code)
    error: ClientError = error_class(response, operation)
    return error


def _delete_objects_in_part(client: Any, operation: str, params: Mapping[str, Any],
                            denied: dict[int, Decision]) -> Any:
    """DeleteObjects with some keys denied: S3 deletes the others and lists the denied ones in Errors."""
    objects = list(params.get("Delete", {}).get("Objects", []))
    allowed = [entry for index, entry in enumerate(objects) if index not in denied]
    errors = []
    for index, decision in sorted(denied.items()):
        entry = objects[index]
        error = {"Key": entry["Key"], "Code": "AccessDenied", "Message": decision.message()}
        if entry.get("VersionId"):
            error["VersionId"] = entry["VersionId"]
        errors.append(error)
    if allowed:
        response = _original(client, operation, {**params, "Delete": {**params["Delete"], "Objects": allowed}})
    else:
        response = {"ResponseMetadata": {"RequestId": str(uuid.uuid4()), "HTTPStatusCode": 200, "HTTPHeaders": {},
                                         "RetryAttempts": 0}}
    response["Errors"] = [*response.get("Errors", []), *errors]
    return response
