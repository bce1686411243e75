"""The local IAM evaluator and request mapper (local/iam): AWS's decision logic on small policies.

Every operator, deny precedence, wildcards, KMS delegation through the account root, another account's
principal, the missing-key rule of negated operators, and the loud failures (an unknown operator, an
unmapped operation, a condition key the guard never sets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from local.iam.evaluator import (
    Condition,
    Outcome,
    PolicyError,
    Principal,
    Statement,
    compile_conditions,
    compile_statement,
    evaluate,
)
from local.iam.requests import IamRequest, UnmappedOperation, iam_requests

ACCOUNT = "123456789012"
AMAZON = "437568002678"
ROLE = Principal.role_session(ACCOUNT, "si-local-SweeperRole", "retention_sweeper")
OTHER_ROLE = Principal.role_session(ACCOUNT, "si-local-FetcherRole", "report_fetcher")
AMAZON_ROOT = Principal.account_root(AMAZON)
BUCKET = "arn:aws:s3:::data"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1111"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:notifications"


def identity(*raw: dict[str, Any]) -> list[Statement]:
    return [compile_statement(r, "identity", resource_policy=False) for r in raw]


def resource(*raw: dict[str, Any]) -> list[Statement]:
    return [compile_statement(r, "resource", resource_policy=True) for r in raw]


def allow(action: Any, res: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": res, **extra}


def deny(action: Any, res: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": res, **extra}


def decide(action: str, res: str, ident: Sequence[Statement] | None = (), policy: Sequence[Statement] | None = None,
           principal: Principal = ROLE, **context: str | tuple[str, ...]) -> Outcome:
    ctx = {k.lower(): (v if isinstance(v, tuple) else (v,)) for k, v in context.items()}
    return evaluate(principal, action, res, ctx, identity=ident, resource_policy=policy, resource_account=ACCOUNT,
                    key_policy=action.startswith("kms:")).outcome


def holds(operator: str, policy_value: Any, context: dict[str, tuple[str, ...]]) -> bool:
    (condition,) = compile_conditions({operator: {"k": policy_value}}, "test")
    return condition.holds(context)


# --- the decision ---------------------------------------------------------------------------------


def test_identity_allow_allows_and_nothing_denies() -> None:
    ident = identity(allow("s3:GetObject", f"{BUCKET}/sellers/*"))
    assert decide("s3:GetObject", f"{BUCKET}/sellers/A1/x.tsv", ident) is Outcome.ALLOWED
    assert decide("s3:GetObject", f"{BUCKET}/exports/k/x.zip", ident) is Outcome.NO_IDENTITY_ALLOW
    assert decide("s3:PutObject", f"{BUCKET}/sellers/A1/x.tsv", ident) is Outcome.NO_IDENTITY_ALLOW


def test_explicit_deny_wins_over_every_allow() -> None:
    ident = identity(allow("s3:*", "*"), deny("s3:DeleteObject", f"{BUCKET}/sellers/*"))
    assert decide("s3:DeleteObject", f"{BUCKET}/sellers/A1/x", ident) is Outcome.IDENTITY_DENY
    policy = resource(allow("s3:*", "*", Principal="*"),
                      deny("s3:*", [BUCKET, f"{BUCKET}/*"], Principal={"AWS": "*"},
                           Condition={"Bool": {"aws:SecureTransport": "false"}}))
    assert decide("s3:GetObject", f"{BUCKET}/a", ident, policy, **{"aws:SecureTransport": "false"}) \
        is Outcome.RESOURCE_DENY


def test_a_tls_only_bucket_policy_denies_plain_http_and_allows_https() -> None:
    ident = identity(allow("s3:GetObject", f"{BUCKET}/*"))
    policy = resource(deny("s3:*", [BUCKET, f"{BUCKET}/*"], Principal={"AWS": "*"},
                           Condition={"Bool": {"aws:SecureTransport": "false"}}))
    assert decide("s3:GetObject", f"{BUCKET}/a", ident, policy, **{"aws:SecureTransport": "false"}) \
        is Outcome.RESOURCE_DENY
    assert decide("s3:GetObject", f"{BUCKET}/a", ident, policy, **{"aws:SecureTransport": "true"}) \
        is Outcome.ALLOWED


def test_same_account_resource_policy_naming_the_role_allows_alone() -> None:
    policy = resource(allow("sqs:SendMessage", QUEUE, Principal={"AWS": ROLE.principal_arn}))
    assert decide("sqs:SendMessage", QUEUE, (), policy) is Outcome.ALLOWED
    assert decide("sqs:SendMessage", QUEUE, (), policy, principal=OTHER_ROLE) is Outcome.NO_IDENTITY_ALLOW


def test_a_resource_policy_naming_the_account_root_delegates_to_iam() -> None:
    policy = resource(allow("sqs:SendMessage", QUEUE, Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"}))
    assert decide("sqs:SendMessage", QUEUE, (), policy) is Outcome.NO_IDENTITY_ALLOW
    assert decide("sqs:SendMessage", QUEUE, identity(allow("sqs:SendMessage", QUEUE)), policy) is Outcome.ALLOWED


def test_kms_needs_the_key_policy_root_delegation_plus_identity() -> None:
    ident = identity(allow("kms:Decrypt", KEY))
    root = resource(allow("kms:*", "*", Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"}))
    assert decide("kms:Decrypt", KEY, ident, root) is Outcome.ALLOWED
    assert decide("kms:Decrypt", KEY, (), root) is Outcome.NO_IDENTITY_ALLOW
    # No key policy statement for the account or the role: identity alone is not enough for KMS.
    other = resource(allow("kms:*", "*", Principal={"AWS": "arn:aws:iam::999999999999:root"}))
    assert decide("kms:Decrypt", KEY, ident, other) is Outcome.NO_RESOURCE_ALLOW
    assert decide("kms:Decrypt", KEY, ident, None) is Outcome.NO_RESOURCE_ALLOW


def test_kms_key_policy_naming_the_role_is_enough_without_identity() -> None:
    direct = resource(allow("kms:Decrypt", "*", Principal={"AWS": [ROLE.principal_arn]},
                            Condition={"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}))
    assert decide("kms:Decrypt", KEY, (), direct, **{"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}) \
        is Outcome.ALLOWED
    assert decide("kms:Decrypt", KEY, (), direct, **{"kms:ViaService": "s3.us-east-1.amazonaws.com"}) \
        is Outcome.NO_RESOURCE_ALLOW


def test_another_accounts_principal_needs_the_resource_policy() -> None:
    policy = resource(allow(["sqs:SendMessage", "sqs:GetQueueAttributes"], QUEUE,
                            Principal={"AWS": f"arn:aws:iam::{AMAZON}:root"}))
    assert decide("sqs:SendMessage", QUEUE, None, policy, principal=AMAZON_ROOT) is Outcome.ALLOWED
    assert decide("sqs:ReceiveMessage", QUEUE, None, policy, principal=AMAZON_ROOT) is Outcome.NO_RESOURCE_ALLOW
    assert decide("sqs:SendMessage", QUEUE, None, None, principal=AMAZON_ROOT) is Outcome.NO_RESOURCE_ALLOW
    # An identity policy of our account never lets a stranger in.
    assert decide("sqs:SendMessage", QUEUE, identity(allow("sqs:*", "*")), None, principal=AMAZON_ROOT) \
        is Outcome.NO_RESOURCE_ALLOW


def test_service_principals_are_never_our_callers() -> None:
    policy = resource(allow("sqs:SendMessage", QUEUE, Principal={"Service": "events.amazonaws.com"}))
    assert decide("sqs:SendMessage", QUEUE, (), policy) is Outcome.NO_IDENTITY_ALLOW


def test_not_principal_not_action_and_not_resource() -> None:
    policy = resource(deny("sqs:*", QUEUE, NotPrincipal={"AWS": ROLE.principal_arn}))
    ident = identity(allow("sqs:*", "*"))
    assert decide("sqs:SendMessage", QUEUE, ident, policy) is Outcome.ALLOWED
    assert decide("sqs:SendMessage", QUEUE, ident, policy, principal=OTHER_ROLE) is Outcome.RESOURCE_DENY
    ident = identity({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"})
    assert decide("s3:GetObject", f"{BUCKET}/a", ident) is Outcome.ALLOWED
    assert decide("s3:DeleteObject", f"{BUCKET}/a", ident) is Outcome.NO_IDENTITY_ALLOW
    ident = identity({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{BUCKET}/private/*"})
    assert decide("s3:GetObject", f"{BUCKET}/public/a", ident) is Outcome.ALLOWED
    assert decide("s3:GetObject", f"{BUCKET}/private/a", ident) is Outcome.NO_IDENTITY_ALLOW


def test_wildcards_actions_ignore_case_resources_do_not() -> None:
    ident = identity(allow("DynamoDB:get*", "arn:aws:dynamodb:*:*:table/conn?"))
    assert decide("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/conn1") is Outcome.NO_IDENTITY_ALLOW
    assert decide("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/conn1", ident) is Outcome.ALLOWED
    assert decide("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/conn12", ident) is Outcome.NO_IDENTITY_ALLOW
    assert decide("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/CONN1", ident) is Outcome.NO_IDENTITY_ALLOW


def test_the_denial_message_is_awss() -> None:
    decision = evaluate(ROLE, "s3:ListBucketVersions", BUCKET, {}, identity=(), resource_policy=None,
                        resource_account=ACCOUNT)
    assert decision.message() == (
        f"User: {ROLE.arn} is not authorized to perform: s3:ListBucketVersions on resource: {BUCKET} because no "
        "identity-based policy allows the s3:ListBucketVersions action"
    )
    ident = identity(deny("s3:*", "*"))
    denied = evaluate(ROLE, "s3:GetObject", BUCKET, {}, identity=ident, resource_policy=None, resource_account=ACCOUNT)
    assert denied.message().endswith("with an explicit deny in an identity-based policy")
    assert ROLE.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/si-local-SweeperRole/retention_sweeper"


# --- condition operators --------------------------------------------------------------------------


@pytest.mark.parametrize(("operator", "policy", "value", "expected"), [
    ("StringEquals", "a", "a", True), ("StringEquals", "a", "A", False),
    ("StringNotEquals", "a", "b", True), ("StringNotEquals", "a", "a", False),
    ("StringEqualsIgnoreCase", "a", "A", True), ("StringNotEqualsIgnoreCase", "a", "A", False),
    ("StringLike", "sellers/*", "sellers/A1/", True), ("StringLike", "sellers/*", "exports/k/", False),
    ("StringLike", "a?c", "abc", True), ("StringNotLike", "sellers/*", "exports/", True),
    ("NumericEquals", "2", "2.0", True), ("NumericNotEquals", "2", "3", True),
    ("NumericLessThan", 1.2, "1.0", True), ("NumericLessThan", 1.2, "1.3", False),
    ("NumericLessThanEquals", "5", "5", True), ("NumericGreaterThan", "5", "6", True),
    ("NumericGreaterThanEquals", "5", "4", False), ("NumericLessThan", "1", "x", False),
    ("Bool", "true", "true", True), ("Bool", True, "true", True), ("Bool", "false", "true", False),
    ("ArnLike", "arn:aws:logs:us-east-1:1:log-group:*", "arn:aws:logs:us-east-1:1:log-group:/a/b", True),
    ("ArnLike", "arn:aws:logs:*:1:*", "arn:aws:sqs:us-east-1:1:q", False),
    ("ArnEquals", "arn:aws:events:us-east-1:1:rule/a", "arn:aws:events:us-east-1:1:rule/a", True),
    ("ArnNotEquals", "arn:aws:events:us-east-1:1:rule/a", "arn:aws:events:us-east-1:1:rule/b", True),
    ("ArnNotLike", "arn:aws:events:*:*:rule/*", "arn:aws:events:us-east-1:1:rule/b", False),
    ("ArnLike", "not-an-arn", "arn:aws:events:us-east-1:1:rule/b", False),
])
def test_operator(operator: str, policy: Any, value: str, expected: bool) -> None:
    assert holds(operator, policy, {"k": (value,)}) is expected


def test_several_policy_values_are_or_for_positive_and_nor_for_negated_operators() -> None:
    assert holds("StringLike", ["sellers/*", "exports/*"], {"k": ("exports/k/",)})
    assert not holds("StringNotLike", ["sellers/*", "exports/*"], {"k": ("exports/k/",)})
    assert holds("StringNotLike", ["sellers/*", "exports/*"], {"k": ("other/",)})


@pytest.mark.parametrize(("operator", "expected"), [
    ("StringEquals", False), ("StringLike", False), ("NumericLessThan", False), ("Bool", False),
    ("ArnLike", False), ("ArnEquals", False),
    # negated operators hold when the key is missing
    ("StringNotEquals", True), ("StringNotLike", True), ("ArnNotLike", True), ("ArnNotEquals", True),
    ("NumericNotEquals", True), ("StringNotEqualsIgnoreCase", True),
    ("StringEqualsIfExists", True), ("StringNotLikeIfExists", True), ("BoolIfExists", True),
    ("ForAnyValue:StringEquals", False), ("ForAllValues:StringEquals", True),
])
def test_a_missing_key(operator: str, expected: bool) -> None:
    assert holds(operator, "x", {}) is expected


def test_if_exists_still_tests_a_present_key() -> None:
    assert not holds("StringEqualsIfExists", "a", {"k": ("b",)})
    assert holds("StringEqualsIfExists", "a", {"k": ("a",)})


def test_null() -> None:
    assert holds("Null", "true", {})
    assert not holds("Null", "true", {"k": ("v",)})
    assert holds("Null", "false", {"k": ("v",)})
    assert not holds("Null", "false", {})


def test_set_operators() -> None:
    many = {"k": ("a", "b")}
    assert holds("ForAnyValue:StringEquals", ["b", "z"], many)
    assert not holds("ForAnyValue:StringEquals", ["z"], many)
    assert holds("ForAllValues:StringEquals", ["a", "b", "c"], many)
    assert not holds("ForAllValues:StringEquals", ["a"], many)
    assert holds("ForAllValues:StringLike", ["*"], many)


def test_a_condition_block_is_and_of_operators_and_keys() -> None:
    (statement,) = identity(allow("kms:Decrypt", KEY, Condition={
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com", "kms:CallerAccount": ACCOUNT},
        "Bool": {"aws:SecureTransport": "true"},
    }))
    full = {"kms:viaservice": ("s3.us-east-1.amazonaws.com",), "kms:calleraccount": (ACCOUNT,),
            "aws:securetransport": ("true",)}
    assert statement.applies("kms:Decrypt", KEY, full)
    for missing in full:
        assert not statement.applies("kms:Decrypt", KEY, {k: v for k, v in full.items() if k != missing})


def test_condition_keys_are_case_insensitive() -> None:
    (condition,) = compile_conditions({"StringEquals": {"KMS:EncryptionContext:purpose": "x"}}, "t")
    assert condition == Condition("StringEquals", "kms:encryptioncontext:purpose", ("x",))


# --- loud failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("operator", ["DateLessThan", "IpAddress", "BinaryEquals", "Maybe:StringEquals",
                                      "StringEquals2", "NullIfExists"])
def test_an_unknown_operator_raises(operator: str) -> None:
    with pytest.raises(PolicyError, match="condition"):
        compile_conditions({operator: {"k": "v"}}, "test")


def test_unsupported_grammar_raises() -> None:
    with pytest.raises(PolicyError, match="policy variables"):
        compile_conditions({"StringEquals": {"k": "${aws:username}"}}, "t")
    with pytest.raises(PolicyError, match="principal type"):
        resource(allow("s3:*", "*", Principal={"Federated": "cognito-identity.amazonaws.com"}))
    with pytest.raises(PolicyError, match="Principal"):
        identity(allow("s3:*", "*", Principal="*"))
    with pytest.raises(PolicyError, match="Action"):
        identity({"Effect": "Allow", "Resource": "*"})
    with pytest.raises(PolicyError, match="unknown statement keys"):
        identity(allow("s3:*", "*", Conditions={}))


# --- the request mapper ---------------------------------------------------------------------------


class FakeLookups:
    region = "us-east-1"

    def __init__(self, keys: dict[str, str] | None = None) -> None:
        self.keys = keys or {}

    def encryption_key(self, service: str, resource: str) -> str | None:
        return self.keys.get(resource)

    def secret_arn(self, secret_id: str) -> str:
        if secret_id.startswith("arn:"):
            return secret_id
        return f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{secret_id}-abc"

    def key_arn(self, key_id: str) -> str:
        return key_id if key_id.startswith("arn:") else f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key_id}"


TABLE = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/conn"


def mapped(service: str, operation: str, params: dict[str, Any],
           lookups: FakeLookups | None = None) -> list[IamRequest]:
    return iam_requests(service, operation, params, lookups or FakeLookups())


def test_list_object_versions_carries_the_prefix() -> None:
    (request,) = mapped("s3", "ListObjectVersions", {"Bucket": "data", "Prefix": "exports/k/"})
    assert (request.action, request.resource, request.context) == (
        "s3:ListBucketVersions", BUCKET, {"s3:prefix": ("exports/k/",)})
    (bare,) = mapped("s3", "ListObjectVersions", {"Bucket": "data"})
    assert "s3:prefix" not in bare.context
    (uploads,) = mapped("s3", "ListMultipartUploads", {"Bucket": "data", "Prefix": "sellers/A1/"})
    assert (uploads.action, uploads.context) == ("s3:ListBucketMultipartUploads", {})


def test_versioned_deletes_and_delete_objects_per_key() -> None:
    (one,) = mapped("s3", "DeleteObject", {"Bucket": "data", "Key": "sellers/a", "VersionId": "v1"})
    assert one.action == "s3:DeleteObjectVersion"
    many = mapped("s3", "DeleteObjects", {"Bucket": "data", "Delete": {"Objects": [
        {"Key": "sellers/a", "VersionId": "v1"}, {"Key": "exports/b"}]}})
    assert [(r.action, r.resource, r.item) for r in many] == [
        ("s3:DeleteObjectVersion", f"{BUCKET}/sellers/a", 0), ("s3:DeleteObject", f"{BUCKET}/exports/b", 1)]


def test_sse_kms_bucket_calls_kms_on_the_callers_behalf() -> None:
    lookups = FakeLookups({BUCKET: KEY})
    put = mapped("s3", "PutObject", {"Bucket": "data", "Key": "sellers/a"}, lookups)
    assert [r.action for r in put] == ["s3:PutObject", "kms:GenerateDataKey"]
    assert put[1].context["kms:viaservice"] == ("s3.us-east-1.amazonaws.com",) and put[1].via == "s3"
    assert [r.action for r in mapped("s3", "CreateMultipartUpload", {"Bucket": "data", "Key": "k"}, lookups)] == [
        "s3:PutObject", "kms:GenerateDataKey", "kms:Decrypt"]
    assert [r.action for r in mapped("s3", "GetObject", {"Bucket": "data", "Key": "k"}, lookups)] == [
        "s3:GetObject", "kms:Decrypt"]
    assert [r.action for r in mapped("s3", "HeadObject", {"Bucket": "data", "Key": "k"}, lookups)] == ["s3:GetObject"]
    assert [r.action for r in mapped("s3", "PutObject", {"Bucket": "data", "Key": "k"})] == ["s3:PutObject"]


def test_dynamodb_indexes_batches_and_transactions() -> None:
    (query,) = mapped("dynamodb", "Query", {"TableName": "conn", "IndexName": "by_purge_due"})
    assert query.resource == f"{TABLE}/index/by_purge_due"
    transact = mapped("dynamodb", "TransactWriteItems", {"TransactItems": [
        {"Update": {"TableName": "conn"}}, {"Delete": {"TableName": "conn"}},
        {"ConditionCheck": {"TableName": "audit"}}, {"Put": {"TableName": "audit"}}]})
    assert [(r.action, r.resource.rsplit("/", 1)[-1]) for r in transact] == [
        ("dynamodb:UpdateItem", "conn"), ("dynamodb:DeleteItem", "conn"), ("dynamodb:ConditionCheckItem", "audit"),
        ("dynamodb:PutItem", "audit")]
    batch = mapped("dynamodb", "BatchWriteItem", {"RequestItems": {"conn": [], "audit": []}},
                   FakeLookups({TABLE: KEY}))
    assert [r.action for r in batch] == ["dynamodb:BatchWriteItem", "kms:Decrypt", "dynamodb:BatchWriteItem"]
    assert batch[1].context["kms:viaservice"] == ("dynamodb.us-east-1.amazonaws.com",)


def test_kms_encryption_context_and_queues() -> None:
    (generate,) = mapped("kms", "GenerateDataKey", {"KeyId": KEY, "EncryptionContext": {"purpose": "refresh_token"}})
    assert generate.context["kms:encryptioncontext:purpose"] == ("refresh_token",)
    url = f"http://127.0.0.1:5000/{ACCOUNT}/notifications"
    send = mapped("sqs", "SendMessage", {"QueueUrl": url}, FakeLookups({QUEUE: KEY}))
    assert [(r.action, r.resource) for r in send] == [("sqs:SendMessage", QUEUE), ("kms:GenerateDataKey", KEY),
                                                       ("kms:Decrypt", KEY)]
    (receive, decrypt) = mapped("sqs", "ReceiveMessage", {"QueueUrl": url}, FakeLookups({QUEUE: KEY}))
    assert (receive.action, decrypt.action) == ("sqs:ReceiveMessage", "kms:Decrypt")


def test_secrets_and_events() -> None:
    get, decrypt = mapped("secretsmanager", "GetSecretValue", {"SecretId": "lwa"},
                          FakeLookups({f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:lwa-abc": KEY}))
    assert (get.action, decrypt.action, decrypt.via) == ("secretsmanager:GetSecretValue", "kms:Decrypt",
                                                         "secretsmanager")
    (put,) = mapped("events", "PutEvents", {"Entries": [{"Source": "seller-insights.tokens", "DetailType": "X"}]})
    assert put.resource == f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default"
    assert put.context["events:source"] == ("seller-insights.tokens",)


def test_an_unmapped_operation_raises_and_names_the_file() -> None:
    with pytest.raises(UnmappedOperation, match=r"dynamodb\.DeleteTable.*local/iam/requests.py"):
        mapped("dynamodb", "DeleteTable", {"TableName": "conn"})
    with pytest.raises(UnmappedOperation, match=r"lambda\.Invoke"):
        mapped("lambda", "Invoke", {})


# --- the template's policies and the request context ---------------------------------------------


def small_template(**extra: Any) -> dict[str, Any]:
    """A role, its function and policy, a bucket with a policy naming principals by ARN, a key."""
    bucket_arn = {"Fn::GetAtt": ["Data", "Arn"]}
    return {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
        "Other": {"Type": "AWS::IAM::Role", "Properties": {}},
        "Fn": {"Type": "AWS::Lambda::Function",
               "Properties": {"Handler": "duty.handler.lambda_handler", "Role": {"Fn::GetAtt": ["Role", "Arn"]}}},
        "Policy": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Role"}], "PolicyDocument": {
            "Statement": [allow("s3:GetObject", {"Fn::Join": ["", [bucket_arn, "/*"]]}),
                          allow("kms:Decrypt", {"Fn::GetAtt": ["Key", "Arn"]},
                                Condition={"StringEquals": {"kms:CallerAccount": {"Ref": "AWS::AccountId"}}}),
                          allow("logs:PutLogEvents", {"Fn::GetAtt": ["Logs", "Arn"]})]}}},
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {}},
        "Data": {"Type": "AWS::S3::Bucket", "Properties": {}},
        "DataPolicy": {"Type": "AWS::S3::BucketPolicy", "Properties": {"Bucket": {"Ref": "Data"}, "PolicyDocument": {
            "Statement": [deny("s3:*", {"Fn::Join": ["", [bucket_arn, "/*"]]}, Principal={"AWS": "*"},
                               Condition={"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["Role", "Arn"]}}}),
                          deny("s3:*", {"Fn::Join": ["", [bucket_arn, "/*"]]}, Principal="*",
                               Condition={"NumericLessThan": {"s3:TlsVersion": 1.2}})]}}},
        "Key": {"Type": "AWS::KMS::Key", "Properties": {}},
        **extra,
    }}


def bound(template: dict[str, Any]) -> Any:
    from local.template import Resolver

    resolver = Resolver(template)
    resolver.record("Data", "data", BUCKET)
    resolver.record("Key", "1111", KEY)
    return resolver


def test_policies_of_a_template_and_the_context_keys_the_guard_sets() -> None:
    from local.iam.guard import Acting, Authorizer
    from local.iam.policies import policy_set

    template = small_template()
    policies = policy_set(template, bound(template))
    assert policies.function_roles == {"Fn": "Role"}
    assert policies.principal("Fn", "duty").arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/si-local-Role/duty"
    # The log group is not created: its statement stays, resolved to a placeholder that matches nothing.
    assert any(s.resources == ("unbound:Logs.Arn",) for s in policies.identity_of("Fn"))
    authorizer = Authorizer(policies)
    who = Acting(policies.principal("Fn", "duty"), policies.identity_of("Fn"), authorizer)
    # aws:PrincipalArn is the role's ARN; s3:TlsVersion 1.3 over (stood-in) HTTPS; kms:CallerAccount set.
    assert authorizer.decide(who, IamRequest("s3:GetObject", f"{BUCKET}/a")).allowed
    assert authorizer.decide(who, IamRequest("kms:Decrypt", KEY)).allowed  # the default key policy
    other = Acting(Principal.role_session(ACCOUNT, "si-local-Other", "x"), identity(allow("s3:*", "*")),
                   authorizer)
    assert authorizer.decide(other, IamRequest("s3:GetObject", f"{BUCKET}/a")).outcome is Outcome.RESOURCE_DENY
    plain = Authorizer(policies, secure_transport=False)
    without_tls = Acting(who.principal, who.identity, plain)
    assert plain.decide(without_tls, IamRequest("s3:GetObject", f"{BUCKET}/a")).allowed  # no TlsVersion: no match


def test_what_the_guard_cannot_evaluate_stops_the_policy_load() -> None:
    from local.iam.policies import policy_set
    from local.template import TemplateError

    managed = small_template()
    managed["Resources"]["Role"]["Properties"]["ManagedPolicyArns"] = [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]
    with pytest.raises(PolicyError, match="managed policy"):
        policy_set(managed, bound(managed))
    roleless = small_template()
    del roleless["Resources"]["Fn"]["Properties"]["Role"]
    with pytest.raises(PolicyError, match="needs a Role"):
        policy_set(roleless, bound(roleless))
    unknown_key = small_template(Extra={"Type": "AWS::IAM::Policy", "Properties": {
        "Roles": [{"Ref": "Role"}],
        "PolicyDocument": {"Statement": [allow("s3:*", "*", Condition={"StringEquals": {"aws:SourceVpce": "v"}})]}}})
    with pytest.raises(PolicyError, match="aws:sourcevpce"):
        policy_set(unknown_key, bound(unknown_key))
    sub = small_template(Extra={"Type": "AWS::IAM::Policy", "Properties": {
        "Roles": [{"Ref": "Role"}],
        "PolicyDocument": {"Statement": [allow("s3:*", {"Fn::Sub": "arn:aws:s3:::${Data}"})]}}})
    with pytest.raises(TemplateError, match="Fn::Sub"):
        policy_set(sub, bound(sub))


def test_dynamodb_reads_carry_select_and_the_projected_attributes() -> None:
    from local.iam.requests import _read_context

    assert _read_context({"TableName": "t", "ProjectionExpression": "sk, #s, coverage.x",
                          "ExpressionAttributeNames": {"#s": "status"}}) == {
        "dynamodb:select": ("SPECIFIC_ATTRIBUTES",), "dynamodb:attributes": ("sk", "status", "coverage")}
    batch = _read_context({"Keys": [{"pk": "a", "sk": "b"}], "ProjectionExpression": "#s",
                           "ExpressionAttributeNames": {"#s": "status"}})
    assert batch["dynamodb:attributes"] == ("pk", "sk", "status")
    assert _read_context({"TableName": "t"}) == {"dynamodb:select": ("ALL_ATTRIBUTES",)}
    assert _read_context({"TableName": "t", "Select": "COUNT"}) == {"dynamodb:select": ("COUNT",)}
