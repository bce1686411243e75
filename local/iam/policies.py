"""The template's policies, resolved against the resources that actually run.

Identity policies per role (`AWS::IAM::Policy` / `AWS::IAM::ManagedPolicy` attached through `Roles`, and
a role's inline `Policies`) and resource policies per resource ARN (KMS `KeyPolicy`, bucket, queue and
topic policies, Secrets Manager resource policies). A reference to a resource that is not bound (a log
group, an event rule: nothing the local stack creates, or a resource an integration test did not name)
becomes a placeholder that matches no request; an intrinsic function the resolver does not know raises.

Two ways to bind logical ids to physical resources:
- the local stack's resolver, filled while it created every stateful resource (`policy_set`);
- an integration test's environment: each variable of the function whose template value is a Ref or
  Fn::GetAtt of a logical id names that resource (`bind_environment`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from local.iam.evaluator import PolicyError, Principal, Statement, compile_statement, condition_keys
from local.iam.requests import known_condition_key, queue_arn
from local.template import (
    ACCOUNT_ID,
    REGION,
    ROLE_TYPE,
    Resolver,
    Template,
    TemplateError,
    props,
    record_roles,
    referenced_id,
    resources,
)

FUNCTION_TYPE = "AWS::Lambda::Function"
UNBOUND = "unbound:"  # prefix of a reference to a resource nobody bound; matches no ARN

_INTRINSICS = ("Ref", "Fn::")


class _PolicyResolver(Resolver):
    """The base resolver, except that a reference to a template resource that is not bound becomes a
    placeholder instead of an error (its statements then simply match nothing)."""

    def __init__(self, base: Resolver, template: Template) -> None:
        super().__init__(template)
        self.refs = base.refs
        self.attrs = base.attrs
        self._resources = template["Resources"]

    def _ref(self, logical_id: str, where: str) -> str:
        if logical_id in self._resources and logical_id not in self.refs:
            return f"{UNBOUND}{logical_id}"
        return super()._ref(logical_id, where)

    def _get_att(self, logical_id: str, attr: str, where: str) -> str:
        if logical_id in self._resources and (logical_id, attr) not in self.attrs:
            return f"{UNBOUND}{logical_id}.{attr}"
        return super()._get_att(logical_id, attr, where)

    def deep(self, value: Any, where: str) -> Any:
        """A policy document with every intrinsic function resolved to a string."""
        if isinstance(value, Mapping):
            if len(value) == 1 and next(iter(value)).startswith(_INTRINSICS):
                return self.resolve(value, where)
            return {key: self.deep(item, where) for key, item in value.items()}
        if isinstance(value, list):
            return [self.deep(item, where) for item in value]
        return value


@dataclass(frozen=True)
class PolicySet:
    """Everything the evaluator needs about the template, for one binding of its resources."""

    identity: dict[str, tuple[Statement, ...]] = field(default_factory=dict)  # role logical id -> statements
    resource: dict[str, tuple[Statement, ...]] = field(default_factory=dict)  # resource ARN -> statements
    kinds: dict[str, str] = field(default_factory=dict)  # resource ARN -> CloudFormation type
    role_names: dict[str, str] = field(default_factory=dict)  # role logical id -> name
    function_roles: dict[str, str] = field(default_factory=dict)  # function logical id -> role logical id
    function_handlers: dict[str, str] = field(default_factory=dict)  # handler string -> function logical id

    def role_of(self, function_id: str) -> str:
        try:
            return self.function_roles[function_id]
        except KeyError:
            raise PolicyError(f"{function_id} is not a function of the template with a role") from None

    def principal(self, function_id: str, session: str) -> Principal:
        """The role session a function's code runs as (Lambda names the session after the function)."""
        return Principal.role_session(ACCOUNT_ID, self.role_names[self.role_of(function_id)], session)

    def identity_of(self, function_id: str) -> tuple[Statement, ...]:
        return self.identity.get(self.role_of(function_id), ())

    def resource_policy(self, arn: str) -> tuple[Statement, ...] | None:
        if arn.startswith("arn:aws:s3:::"):
            arn = "arn:aws:s3:::" + arn[len("arn:aws:s3:::"):].split("/", 1)[0]
        return self.resource.get(arn)


def policy_set(template: Template, resolver: Resolver) -> PolicySet:
    """Every identity and resource policy of the template, bound through `resolver`."""
    for logical_id, _ in resources(template, ROLE_TYPE):
        if logical_id not in resolver.refs:
            record_roles(template, resolver)
            break
    return _Extractor(template, _PolicyResolver(resolver, template)).run()


def bind_environment(template: Template, function_id: str, environ: Mapping[str, str]) -> Resolver:
    """A resolver for what an integration test runs: the resources named by the function's environment.

    Each variable whose template value is `{"Ref": X}` or `{"Fn::GetAtt": [X, "Arn"]}` binds X to the
    physical name or ARN the test put in that variable; roles get their deterministic names.
    """
    resolver = Resolver(template)
    record_roles(template, resolver)
    function = template["Resources"].get(function_id)
    if function is None or function.get("Type") != FUNCTION_TYPE:
        raise PolicyError(f"{function_id} is not a function of the template")
    variables = (props(function).get("Environment") or {}).get("Variables") or {}
    for name, value in variables.items():
        logical_id = referenced_id(value)
        physical = environ.get(name)
        if logical_id is None or not physical:
            continue
        kind = str(template["Resources"].get(logical_id, {}).get("Type"))
        is_arn = isinstance(value, Mapping) and "Fn::GetAtt" in value
        bound = _bind(kind, physical, is_arn)
        if bound is not None:
            resolver.record(logical_id, *bound)
    return resolver


def _bind(kind: str, physical: str, is_arn: bool) -> tuple[str, str | None] | None:
    """(Ref value, Arn) of a resource from the one value a test gave for it; None when the value names no
    such resource (a test's deliberately wrong value): nothing is bound, so nothing is granted on it."""
    if is_arn and not (physical.startswith("arn:") and len(physical.split(":")) >= 6):
        return None
    if kind in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
        name = physical.rsplit("/", 1)[-1] if is_arn else physical
        return name, physical if is_arn else f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
    if kind == "AWS::KMS::Key":
        key_id = physical.rsplit("/", 1)[-1]
        return key_id, physical if physical.startswith("arn:") else f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"
    if kind == "AWS::S3::Bucket":
        name = physical.removeprefix("arn:aws:s3:::")
        return name, f"arn:aws:s3:::{name}"
    if kind == "AWS::SQS::Queue":
        if is_arn:
            account, name = physical.split(":")[4], physical.rsplit(":", 1)[-1]
            return f"https://sqs.{REGION}.amazonaws.com/{account}/{name}", physical
        return physical, queue_arn(physical, REGION)
    if kind in ("AWS::SecretsManager::Secret", "AWS::SNS::Topic"):
        return physical, None  # their Ref is the ARN
    return None


class _Extractor:
    def __init__(self, template: Template, resolver: _PolicyResolver) -> None:
        self.template = template
        self.resolver = resolver
        self.identity: dict[str, list[Statement]] = {}
        self.resource: dict[str, list[Statement]] = {}
        self.kinds: dict[str, str] = {}

    def run(self) -> PolicySet:
        role_names: dict[str, str] = {}
        for logical_id, role in resources(self.template, ROLE_TYPE):
            role_names[logical_id] = self.resolver.refs[logical_id]
            p = props(role)
            if p.get("PermissionsBoundary"):
                raise PolicyError(f"{logical_id}: permission boundaries are not evaluated locally")
            for arn in p.get("ManagedPolicyArns") or []:
                managed = referenced_id(arn)
                if managed is None or self._type(managed) != "AWS::IAM::ManagedPolicy":
                    raise PolicyError(
                        f"{logical_id}: the managed policy {json.dumps(arn)} is not in the template, so the local "
                        "IAM guard cannot evaluate it; grant with statements of the template instead"
                    )
                self._identity([logical_id], props(self.template["Resources"][managed])["PolicyDocument"], managed)
            for inline in p.get("Policies") or []:
                self._identity([logical_id], inline["PolicyDocument"], f"{logical_id}/{inline.get('PolicyName')}")
        for logical_id, policy in resources(self.template, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            p = props(policy)
            roles = [r for r in (referenced_id(ref) for ref in p.get("Roles") or []) if r is not None]
            self._identity(roles, p["PolicyDocument"], logical_id)
        self._resources()
        functions = dict(resources(self.template, FUNCTION_TYPE))
        function_roles: dict[str, str] = {}
        handlers: dict[str, str] = {}
        for logical_id, function in functions.items():
            role_id = referenced_id(props(function).get("Role"))
            if role_id is None or role_id not in role_names:
                raise PolicyError(
                    f"{logical_id}: a Lambda function needs a Role of the template (Fn::GetAtt [Role, Arn]); the "
                    "local IAM guard runs its calls as that role"
                )
            function_roles[logical_id] = role_id
            if isinstance(props(function).get("Handler"), str):
                handlers[props(function)["Handler"]] = logical_id
        policies = PolicySet(
            identity={role: tuple(statements) for role, statements in self.identity.items()},
            resource={arn: tuple(statements) for arn, statements in self.resource.items()},
            kinds=self.kinds,
            role_names=role_names,
            function_roles=function_roles,
            function_handlers=handlers,
        )
        every = [s for group in (*policies.identity.values(), *policies.resource.values()) for s in group]
        unknown = sorted(key for key in condition_keys(every) if not known_condition_key(key))
        if unknown:
            raise PolicyError(
                f"the template's policies use condition keys the local IAM guard never sets: {', '.join(unknown)}; "
                "teach local/iam/requests.py (CONTEXT_KEYS) when and how AWS sets them"
            )
        return policies

    def _type(self, logical_id: str) -> str:
        return str(self.template["Resources"].get(logical_id, {}).get("Type"))

    def _statements(self, document: Any, origin: str, *, resource_policy: bool,
                    default_resource: str | None = None) -> list[Statement]:
        resolved = self.resolver.deep(document, origin)
        if not isinstance(resolved, Mapping):
            raise PolicyError(f"{origin}: a policy document must be an object")
        raw = resolved.get("Statement", [])
        return [
            compile_statement(item, origin, resource_policy=resource_policy, default_resource=default_resource)
            for item in (raw if isinstance(raw, list) else [raw])
        ]

    def _identity(self, roles: list[str], document: Any, origin: str) -> None:
        statements = self._statements(document, origin, resource_policy=False)
        for role in roles:
            self.identity.setdefault(role, []).extend(statements)

    def _attach(self, target: Any, document: Any, origin: str, arn_attr: bool) -> None:
        logical_id = referenced_id(target)
        if logical_id is None:
            raise PolicyError(f"{origin}: the policy's target must be a Ref or Fn::GetAtt of a template resource")
        arn = self.resolver.attrs.get((logical_id, "Arn")) if arn_attr else self.resolver.refs.get(logical_id)
        if arn is None:
            return  # not bound: nothing runs against it
        self.resource.setdefault(arn, []).extend(self._statements(document, origin, resource_policy=True))
        self.kinds[arn] = self._type(logical_id)

    def _resources(self) -> None:
        for logical_id, key in resources(self.template, "AWS::KMS::Key"):
            # Without KeyPolicy AWS gives a key its default policy: the account root, which delegates to IAM.
            policy = props(key).get("KeyPolicy") or {"Statement": [{
                "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "kms:*",
                "Resource": "*"}]}
            self._attach({"Ref": logical_id}, policy, logical_id, arn_attr=True)
        for logical_id, policy in resources(self.template, "AWS::S3::BucketPolicy"):
            self._attach(props(policy)["Bucket"], props(policy)["PolicyDocument"], logical_id, arn_attr=True)
        for logical_id, policy in resources(self.template, "AWS::SQS::QueuePolicy"):
            for queue in props(policy)["Queues"]:
                self._attach(queue, props(policy)["PolicyDocument"], logical_id, arn_attr=True)
        for logical_id, policy in resources(self.template, "AWS::SNS::TopicPolicy"):
            for topic in props(policy)["Topics"]:
                self._attach(topic, props(policy)["PolicyDocument"], logical_id, arn_attr=False)
        for logical_id, policy in resources(self.template, "AWS::SecretsManager::ResourcePolicy"):
            document = props(policy)["ResourcePolicy"]
            if isinstance(document, str):
                document = json.loads(document)
            self._attach(props(policy)["SecretId"], document, logical_id, arn_attr=False)


def function_for_handler(policies: PolicySet, handler: str) -> str:
    """The logical id of the template's function whose Handler is `handler` (e.g. a test's duty)."""
    try:
        return policies.function_handlers[handler]
    except KeyError:
        raise TemplateError(f"no function of the template has the handler {handler}") from None
