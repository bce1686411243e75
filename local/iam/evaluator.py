"""IAM policy evaluation with AWS's logic, for the statements of the synthesized template.

Deliberately small: exactly the policy grammar and condition operators the product's template can
use. Anything else (an unknown operator, a policy variable, a principal type we cannot judge) raises
`PolicyError` when the policy is compiled, so nothing unknown is ever silently allowed or ignored.

The decision (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
restricted to what the product has: no SCPs, no permission boundaries, no session policies):

1. an applicable Deny in any identity or resource policy denies (explicit deny);
2. KMS: the key policy must allow, either naming the principal (enough on its own) or the principal's
   account root, which delegates to IAM: then an identity policy must allow too;
3. same account, other services: an identity policy allowing, or a resource policy naming the
   principal, allows (a resource policy naming only the account root delegates to IAM);
4. another account's principal (Amazon's notifications account): the resource policy must allow that
   principal or its account, and its own account's identity policies (which we do not have) are
   taken to allow;
5. otherwise denied (implicit deny).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any


class PolicyError(RuntimeError):
    """A policy uses grammar the local evaluator does not know: extend local/iam/evaluator.py."""


# --- values and wildcards -----------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _body(pattern: str) -> str:
    return "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)


@lru_cache(maxsize=4096)
def wildcard(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """`*` any run of characters, `?` one character, everything else literal; the whole string."""
    return re.compile(f"^{_body(pattern)}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def any_of(patterns: Iterable[str], ignore_case: bool = False) -> re.Pattern[str]:
    """One expression matching what any of the wildcard patterns matches (one scan instead of many)."""
    alternatives = "|".join(f"(?:{_body(p)})" for p in patterns)
    return re.compile(f"^(?:{alternatives})$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def matches(pattern: str, value: str, ignore_case: bool = False) -> bool:
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == value.lower() if ignore_case else pattern == value
    return wildcard(pattern, ignore_case).match(value) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike: the six colon-separated parts of an ARN, each matched with wildcards."""
    wanted = pattern.split(":", 5)
    actual = value.split(":", 5)
    if len(wanted) != 6 or len(actual) != 6:
        return False
    return all(matches(p, a) for p, a in zip(wanted, actual, strict=True))


# --- conditions ---------------------------------------------------------------------------------


def _string_equals(policy: str, value: str) -> bool:
    return policy == value


def _string_equals_ignore_case(policy: str, value: str) -> bool:
    return policy.lower() == value.lower()


def _string_like(policy: str, value: str) -> bool:
    return matches(policy, value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _numeric(compare: Any) -> Any:
    def check(policy: str, value: str) -> bool:
        wanted, actual = _number(policy), _number(value)
        return wanted is not None and actual is not None and bool(compare(actual, wanted))

    return check


def _bool(policy: str, value: str) -> bool:
    return policy.lower() == value.lower()


# name -> (test of one policy value against one request value, negated)
_OPERATORS: dict[str, tuple[Any, bool]] = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_string_equals_ignore_case, False),
    "StringNotEqualsIgnoreCase": (_string_equals_ignore_case, True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "NumericEquals": (_numeric(lambda a, w: a == w), False),
    "NumericNotEquals": (_numeric(lambda a, w: a == w), True),
    "NumericLessThan": (_numeric(lambda a, w: a < w), False),
    "NumericLessThanEquals": (_numeric(lambda a, w: a <= w), False),
    "NumericGreaterThan": (_numeric(lambda a, w: a > w), False),
    "NumericGreaterThanEquals": (_numeric(lambda a, w: a >= w), False),
    "Bool": (_bool, False),
    # AWS documents ArnEquals and ArnLike as the same test (per ARN part, wildcards allowed).
    "ArnEquals": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True),
    "ArnLike": (_arn_like, False),
    "ArnNotLike": (_arn_like, True),
}
OPERATORS = frozenset(_OPERATORS) | {"Null"}

Context = Mapping[str, Sequence[str]]  # lower-case condition key -> its values (one for single-valued keys)


@dataclass(frozen=True)
class Condition:
    operator: str  # as written, e.g. "ForAnyValue:StringLikeIfExists"
    key: str  # lower case
    values: tuple[str, ...]

    def holds(self, context: Context) -> bool:
        qualifier, base, if_exists = _parse_operator(self.operator)
        present = context.get(self.key)
        if base == "Null":
            # Null: "true" = the key must be absent, "false" = present.
            wanted_absent = self.values[0].lower() == "true"
            return (not present) == wanted_absent
        test, negated = _OPERATORS[base]
        if not present:
            if qualifier == "ForAllValues":
                return True  # vacuously: every one of no values matches
            if qualifier == "ForAnyValue":
                return False
            # AWS: a missing key fails a condition, except with ...IfExists and the negated operators
            # (StringNotEquals, StringNotLike, ArnNotLike, ...), which then hold.
            return if_exists or negated

        def one(value: str) -> bool:
            hit = any(test(policy, value) for policy in self.values)
            return not hit if negated else hit

        if qualifier == "ForAllValues":
            return all(one(value) for value in present)
        return any(one(value) for value in present)


def _parse_operator(operator: str) -> tuple[str | None, str, bool]:
    qualifier: str | None = None
    base = operator
    if ":" in base:
        qualifier, base = base.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise PolicyError(f"unknown condition set operator {qualifier!r} in {operator!r}")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    if base not in OPERATORS or (if_exists and base == "Null"):
        raise PolicyError(
            f"unknown condition operator {operator!r}: the local IAM evaluator knows "
            f"{', '.join(sorted(OPERATORS))} (with IfExists, ForAnyValue:, ForAllValues:); "
            "extend local/iam/evaluator.py"
        )
    return qualifier, base, if_exists


def compile_conditions(block: Any, where: str) -> tuple[Condition, ...]:
    if block is None:
        return ()
    if not isinstance(block, Mapping):
        raise PolicyError(f"{where}: Condition must be an object")
    out = []
    for operator, keys in block.items():
        _parse_operator(str(operator))
        if not isinstance(keys, Mapping):
            raise PolicyError(f"{where}: Condition {operator} must map keys to values")
        for key, values in keys.items():
            texts = tuple(_condition_text(v, where) for v in as_list(values))
            out.append(Condition(str(operator), str(key).lower(), texts))
    return tuple(out)


def _condition_text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        if "${" in value:
            raise PolicyError(f"{where}: policy variables ({value!r}) are not supported locally")
        return value
    raise PolicyError(f"{where}: a condition value must be a string, number or boolean, got {value!r}")


# --- principals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who makes a request: a role session of this account, or another account's principal."""

    arn: str  # the caller's ARN as AWS reports it (an assumed-role session, or an account root)
    principal_arn: str  # aws:PrincipalArn: the role's ARN, or the root ARN
    account: str

    @property
    def root(self) -> str:
        return f"arn:aws:iam::{self.account}:root"

    @classmethod
    def role_session(cls, account: str, role_name: str, session: str) -> Principal:
        return cls(
            arn=f"arn:aws:sts::{account}:assumed-role/{role_name}/{session}",
            principal_arn=f"arn:aws:iam::{account}:role/{role_name}",
            account=account,
        )

    @classmethod
    def account_root(cls, account: str) -> Principal:
        root = f"arn:aws:iam::{account}:root"
        return cls(arn=root, principal_arn=root, account=account)


class Match(enum.Enum):
    NONE = 0
    ACCOUNT = 1  # the statement names the principal's account (root): delegates to IAM
    DIRECT = 2  # the statement names the principal itself (or everyone)


@dataclass(frozen=True)
class Principals:
    """A statement's Principal (or NotPrincipal) block, as AWS ARNs / account ids, services, '*'."""

    everyone: bool = False
    aws: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    def match(self, principal: Principal) -> Match:
        if self.everyone:
            return Match.DIRECT
        best = Match.NONE
        for named in self.aws:
            if named == "*" or named in (principal.principal_arn, principal.arn):
                return Match.DIRECT
            if named in (principal.root, principal.account):
                best = Match.ACCOUNT
        # A service principal (events.amazonaws.com, ...) is never one of our callers.
        return best


def compile_principals(block: Any, where: str) -> Principals:
    if block == "*":
        return Principals(everyone=True)
    if not isinstance(block, Mapping):
        raise PolicyError(f"{where}: Principal must be '*' or an object")
    aws: list[str] = []
    services: list[str] = []
    for kind, values in block.items():
        texts = [str(v) for v in as_list(values)]
        if kind == "AWS":
            aws += texts
        elif kind == "Service":
            services += texts
        else:
            raise PolicyError(f"{where}: principal type {kind!r} cannot be evaluated locally (AWS and Service only)")
    if "*" in aws and len(aws) == 1 and not services:
        return Principals(everyone=True)
    return Principals(aws=tuple(aws), services=tuple(services))


# --- statements ---------------------------------------------------------------------------------


class Effect(enum.Enum):
    ALLOW = "Allow"
    DENY = "Deny"


@dataclass(frozen=True)
class Statement:
    effect: Effect
    origin: str  # the policy it comes from, for messages and tests
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    principals: Principals | None = None  # resource policies only
    not_principals: Principals | None = None
    conditions: tuple[Condition, ...] = ()
    sid: str | None = None

    # Compiled once per statement (cached_property writes the instance dict, which a frozen dataclass allows).
    @cached_property
    def _actions(self) -> re.Pattern[str] | None:
        return any_of(self.actions, ignore_case=True) if self.actions else None

    @cached_property
    def _not_actions(self) -> re.Pattern[str] | None:
        return any_of(self.not_actions, ignore_case=True) if self.not_actions else None

    @cached_property
    def _resources(self) -> re.Pattern[str] | None:
        return any_of(self.resources) if self.resources else None

    @cached_property
    def _not_resources(self) -> re.Pattern[str] | None:
        return any_of(self.not_resources) if self.not_resources else None

    def applies(self, action: str, resource: str, context: Context) -> bool:
        """Actions match case-insensitively, resources case-sensitively, `*` and `?` as wildcards."""
        if self._actions is not None and not self._actions.match(action):
            return False
        if self._not_actions is not None and self._not_actions.match(action):
            return False
        if self._resources is not None and not self._resources.match(resource):
            return False
        if self._not_resources is not None and self._not_resources.match(resource):
            return False
        return all(condition.holds(context) for condition in self.conditions)

    def principal_match(self, principal: Principal) -> Match:
        if self.principals is not None:
            return self.principals.match(principal)
        if self.not_principals is not None:
            return Match.NONE if self.not_principals.match(principal) is not Match.NONE else Match.DIRECT
        return Match.NONE


_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "NotPrincipal",
                   "Condition"}


def compile_statement(raw: Mapping[str, Any], origin: str, *, resource_policy: bool,
                      default_resource: str | None = None) -> Statement:
    """One statement whose intrinsic functions are already resolved to strings."""
    where = f"{origin} statement {raw.get('Sid') or ''}".rstrip()
    unknown = set(raw) - _STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown statement keys {sorted(unknown)}")
    try:
        effect = Effect(raw["Effect"])
    except (KeyError, ValueError):
        raise PolicyError(f"{where}: Effect must be Allow or Deny") from None
    actions = tuple(str(a) for a in as_list(raw.get("Action", [])))
    not_actions = tuple(str(a) for a in as_list(raw.get("NotAction", [])))
    if bool(actions) == bool(not_actions):
        raise PolicyError(f"{where}: exactly one of Action and NotAction")
    resources = tuple(str(r) for r in as_list(raw.get("Resource", [])))
    not_resources = tuple(str(r) for r in as_list(raw.get("NotResource", [])))
    if not resources and not not_resources:
        if default_resource is None:
            raise PolicyError(f"{where}: a statement needs Resource or NotResource")
        resources = (default_resource,)
    principals = not_principals = None
    if resource_policy:
        if ("Principal" in raw) == ("NotPrincipal" in raw):
            raise PolicyError(f"{where}: a resource policy statement needs exactly one of Principal and NotPrincipal")
        if "Principal" in raw:
            principals = compile_principals(raw["Principal"], where)
        else:
            not_principals = compile_principals(raw["NotPrincipal"], where)
    elif "Principal" in raw or "NotPrincipal" in raw:
        raise PolicyError(f"{where}: an identity policy statement cannot name a Principal")
    return Statement(
        effect=effect,
        origin=origin,
        actions=actions,
        not_actions=not_actions,
        resources=resources,
        not_resources=not_resources,
        principals=principals,
        not_principals=not_principals,
        conditions=compile_conditions(raw.get("Condition"), where),
        sid=str(raw["Sid"]) if raw.get("Sid") is not None else None,
    )


def condition_keys(statements: Iterable[Statement]) -> set[str]:
    return {condition.key for statement in statements for condition in statement.conditions}


# --- the decision -------------------------------------------------------------------------------


class Outcome(enum.Enum):
    ALLOWED = "allowed"
    IDENTITY_DENY = "with an explicit deny in an identity-based policy"
    RESOURCE_DENY = "with an explicit deny in a resource-based policy"
    NO_IDENTITY_ALLOW = "because no identity-based policy allows the {action} action"
    NO_RESOURCE_ALLOW = "because no resource-based policy allows the {action} action"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    action: str
    resource: str
    principal: Principal
    statements: tuple[Statement, ...] = field(default=())  # the deciding ones

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED

    def message(self) -> str:
        """AWS's wording of an access denial."""
        reason = self.outcome.value.format(action=self.action)
        return (f"User: {self.principal.arn} is not authorized to perform: {self.action} on resource: "
                f"{self.resource} {reason}")


def evaluate(
    principal: Principal,
    action: str,
    resource: str,
    context: Context,
    *,
    identity: Sequence[Statement] | None,
    resource_policy: Sequence[Statement] | None,
    resource_account: str,
    key_policy: bool = False,
) -> Decision:
    """`identity` None: a principal of another account whose identity policies we do not hold (they
    are taken to allow). `resource_policy` None: the resource has none."""

    def decided(outcome: Outcome, *statements: Statement) -> Decision:
        return Decision(outcome, action, resource, principal, tuple(statements))

    identity_hits = [s for s in identity or () if s.applies(action, resource, context)]
    resource_hits = [
        (s, match) for s in resource_policy or ()
        if (match := s.principal_match(principal)) is not Match.NONE and s.applies(action, resource, context)
    ]
    for statement in identity_hits:
        if statement.effect is Effect.DENY:
            return decided(Outcome.IDENTITY_DENY, statement)
    for statement, _ in resource_hits:
        if statement.effect is Effect.DENY:
            return decided(Outcome.RESOURCE_DENY, statement)

    identity_allows = [s for s in identity_hits if s.effect is Effect.ALLOW]
    direct = [s for s, match in resource_hits if s.effect is Effect.ALLOW and match is Match.DIRECT]
    delegated = [s for s, match in resource_hits if s.effect is Effect.ALLOW and match is Match.ACCOUNT]
    foreign = principal.account != resource_account

    if key_policy:
        if direct:
            return decided(Outcome.ALLOWED, direct[0])
        if not delegated:
            return decided(Outcome.NO_RESOURCE_ALLOW)
        if identity is None:  # another account: its own IAM is not ours to judge
            return decided(Outcome.ALLOWED, delegated[0])
        if identity_allows:
            return decided(Outcome.ALLOWED, delegated[0], identity_allows[0])
        return decided(Outcome.NO_IDENTITY_ALLOW)

    if foreign:
        if not (direct or delegated):
            return decided(Outcome.NO_RESOURCE_ALLOW)
        if identity is None or identity_allows:
            return decided(Outcome.ALLOWED, *(direct or delegated)[:1])
        return decided(Outcome.NO_IDENTITY_ALLOW)

    if direct:
        return decided(Outcome.ALLOWED, direct[0])
    if identity_allows:
        return decided(Outcome.ALLOWED, identity_allows[0])
    return decided(Outcome.NO_IDENTITY_ALLOW)
