"""The OpsSupportRole's two ways in (infra/constructs/operators.py), evaluated for real by the local IAM
evaluator (local/iam/evaluator.py) on the synthesized template: IAM principals with MFA, and the roles of the
stage's IAM Identity Center permission set with a session named identity-center-*. Every statement of the
role's policy is usable along either path and along no other.

A role's trust policy is evaluated like a KMS key policy (`key_policy=True`): it must allow, and when it names
the account root, the caller's own identity policy must allow sts:AssumeRole too."""

from __future__ import annotations

from typing import Any

import pytest

from infra import app as infra_app
from local.iam.evaluator import Principal, Statement, compile_statement, evaluate
from tests.infra.conftest import by_purpose, synthesize

pytestmark = pytest.mark.slow

ACCOUNT = "123456789012"
PERMISSION_SET = "SellerInsightsOps"
SSO_ROLE = f"AWSReservedSSO_{PERMISSION_SET}_0123456789abcdef"
SSO_ARNS = {  # Identity Center in us-east-1 puts no Region in the path; elsewhere it does
    "us-east-1": f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/{SSO_ROLE}",
    "eu-west-1": f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/eu-west-1/{SSO_ROLE}",
}
ROLE_ID = "AROAOPSSUPPORTROLE0001"


@pytest.fixture(scope="module")
def sso_raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The dev stage's template with ops_identity_center_permission_set = SellerInsightsOps."""
    context = infra_app.load_cdk_context()
    context["stages"]["dev"]["ops_identity_center_permission_set"] = PERMISSION_SET
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(infra_app, "load_cdk_context", lambda: context)
        built = infra_app.build_app("dev", outdir=str(tmp_path_factory.mktemp("cdk-sso")))
        return synthesize(built, "dev")


def resolved(value: Any) -> Any:
    """The template's intrinsics as strings of account 123456789012 in us-east-1."""
    if isinstance(value, list):
        return [resolved(v) for v in value]
    if isinstance(value, dict):
        if "Ref" in value:
            return {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": "us-east-1",
                    "AWS::URLSuffix": "amazonaws.com"}.get(value["Ref"], f"ref-{value['Ref']}")
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return f"arn:aws:local:us-east-1:{ACCOUNT}:{logical_id}/{attribute}"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(resolved(p) for p in parts)
        return {k: resolved(v) for k, v in value.items()}
    return value


def ops_role(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    role_id = raw["Outputs"]["OpsSupportRoleArn"]["Value"]["Fn::GetAtt"][0]
    return role_id, raw["Resources"][role_id]


def trust(raw: dict[str, Any]) -> list[Statement]:
    _, role = ops_role(raw)
    return [compile_statement(resolved(s), "trust", resource_policy=True, default_resource="ops-role")
            for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]]


def permissions(raw: dict[str, Any]) -> list[dict[str, Any]]:
    role_id, _ = ops_role(raw)
    # CDK moves what does not fit the inline policy's size limit into customer-managed "overflow" policies.
    return [resolved(s) for policy in raw["Resources"].values()
            if policy["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
            and {"Ref": role_id} in policy["Properties"].get("Roles", [])
            for s in policy["Properties"]["PolicyDocument"]["Statement"]]


CALLER_MAY_ASSUME = [compile_statement({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}, "caller",
                                       resource_policy=False)]


def may_assume(raw: dict[str, Any], principal_arn: str, session: str, mfa: str | None) -> bool:
    caller = Principal(arn=principal_arn, principal_arn=principal_arn, account=ACCOUNT)
    context = {"aws:principalarn": [principal_arn], "aws:principalaccount": [ACCOUNT],
               "sts:rolesessionname": [session]}
    if mfa is not None:
        context["aws:multifactorauthpresent"] = [mfa]
    decision = evaluate(caller, "sts:AssumeRole", "ops-role", context, identity=CALLER_MAY_ASSUME,
                        resource_policy=trust(raw), resource_account=ACCOUNT, key_policy=True)
    return decision.allowed


def grants(raw: dict[str, Any]) -> list[tuple[str, str, dict[str, list[str]]]]:
    """(action, resource, the statement's other conditions as request context) for every grant of the role."""
    found = []
    for statement in permissions(raw):
        extra = {key.lower(): [value] for key, value in statement.get("Condition", {}).get("StringEquals", {}).items()}
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        found += [(action, resource, extra) for action in actions for resource in targets]
    return found


def session_may(raw: dict[str, Any], session: str, mfa: str | None) -> list[bool]:
    """For each grant of the role: whether an ops role session named `session` may use it."""
    identity = [compile_statement(s, "ops", resource_policy=False) for s in permissions(raw)]
    principal = Principal.role_session(ACCOUNT, "OpsSupportRole", session)
    answers = []
    for action, resource, extra in grants(raw):
        context = {"aws:principalarn": [principal.principal_arn], "aws:userid": [f"{ROLE_ID}:{session}"], **extra}
        if mfa is not None:
            context["aws:multifactorauthpresent"] = [mfa]
        answers.append(evaluate(principal, action, resource, context, identity=identity, resource_policy=None,
                                resource_account=ACCOUNT).allowed)
    return answers


# --- the trust ----------------------------------------------------------------------------------------


def test_without_a_permission_set_only_mfa_opens_the_role(raw: dict[str, Any]) -> None:
    user = f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert may_assume(raw, user, "alice", "true")
    assert not may_assume(raw, user, "alice", "false") and not may_assume(raw, user, "alice", None)
    for sso in SSO_ARNS.values():
        assert not may_assume(raw, sso, "identity-center-alice", None)


def test_iam_principals_still_need_mfa(sso_raw: dict[str, Any]) -> None:
    user = f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert may_assume(sso_raw, user, "alice", "true")
    assert not may_assume(sso_raw, user, "alice", "false")
    assert not may_assume(sso_raw, user, "identity-center-alice", None)  # the session name alone opens nothing


@pytest.mark.parametrize("region", sorted(SSO_ARNS))
def test_the_permission_sets_role_may_assume_with_an_identity_center_session_name(
        sso_raw: dict[str, Any], region: str) -> None:
    assert may_assume(sso_raw, SSO_ARNS[region], "identity-center-alice", None)
    assert not may_assume(sso_raw, SSO_ARNS[region], "alice", None)  # the session must be named as such


@pytest.mark.parametrize("other", [
    f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_{PERMISSION_SET}_Admin_0123456789abcdef",
    f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_AdministratorAccess_0123456789abcdef",
    f"arn:aws:iam::{ACCOUNT}:role/{SSO_ROLE}",  # a look-alike outside aws-reserved (anyone could create it)
    f"arn:aws:iam::210987654321:role/aws-reserved/sso.amazonaws.com/{SSO_ROLE}",  # another account
], ids=["longer-permission-set-name", "another-permission-set", "not-aws-reserved", "another-account"])
def test_no_other_role_may_assume_without_mfa(sso_raw: dict[str, Any], other: str) -> None:
    assert not may_assume(sso_raw, other, "identity-center-alice", None)


# --- the permissions ----------------------------------------------------------------------------------


def test_every_grant_is_usable_along_either_path_and_no_other(sso_raw: dict[str, Any]) -> None:
    assert grants(sso_raw)
    assert all(session_may(sso_raw, "alice", "true"))  # assumed with MFA
    assert all(session_may(sso_raw, "identity-center-alice", "false"))  # through the permission set
    assert all(session_may(sso_raw, "identity-center-alice", None))
    assert not any(session_may(sso_raw, "alice", "false"))
    assert not any(session_may(sso_raw, "alice", None))


def test_each_statement_has_one_identity_center_twin(sso_raw: dict[str, Any], raw: dict[str, Any]) -> None:
    plain = {s["Sid"]: s for s in permissions(raw)}
    with_sso = {s["Sid"]: s for s in permissions(sso_raw)}
    assert set(with_sso) == set(plain) | {f"{sid}ViaIdentityCenter" for sid in plain}
    for sid, statement in plain.items():
        twin = with_sso[f"{sid}ViaIdentityCenter"]
        assert (twin["Action"], twin["Resource"]) == (statement["Action"], statement["Resource"])
        assert twin["Condition"].pop("StringLike") == {"aws:userid": "*:identity-center-*"}
        statement_conditions = dict(statement["Condition"])
        assert statement_conditions.pop("Bool") == {"aws:MultiFactorAuthPresent": "true"}
        assert twin["Condition"] == statement_conditions


def test_the_key_is_in_every_stage_and_null_by_default() -> None:
    stages = infra_app.load_cdk_context()["stages"]
    assert {name: stage.get("ops_identity_center_permission_set", "missing") for name, stage in stages.items()} == \
        dict.fromkeys(stages, None)
    assert "//ops_identity_center_permission_set" in infra_app.load_cdk_context()


def test_the_template_without_the_key_is_what_it_was(raw: dict[str, Any]) -> None:
    statements = permissions(raw)
    assert not [s for s in statements if s["Sid"].endswith("ViaIdentityCenter")]
    _, role = ops_role(raw)
    assert len(role["Properties"]["AssumeRolePolicyDocument"]["Statement"]) == 1


# --- what ops recover-secret does, against the role and the keys' own policies -------------------------


def key_policy(raw: dict[str, Any], key_id: str) -> list[Statement]:
    return [compile_statement(resolved(s), f"{key_id} policy", resource_policy=True, default_resource="*")
            for s in raw["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]]


def recover_secret_requests(raw: dict[str, Any]) -> list[tuple[str, str, dict[str, list[str]], str | None]]:
    """(action, resource, request context, the KMS key whose policy decides too) of every AWS call of
    `ops recover-secret` (ops/secrets.py), the KMS calls SQS and Secrets Manager make on its behalf included."""
    dlq = resolved({"Fn::GetAtt": [by_purpose(raw, "notifications_dlq")[0], "Arn"]})
    secret = resolved({"Ref": by_purpose(raw, "lwa_client")[0]})
    queue_key, secret_key = by_purpose(raw, "notifications_key")[0], by_purpose(raw, "token_key")[0]
    via_sqs = {"kms:viaservice": ["sqs.us-east-1.amazonaws.com"], "kms:calleraccount": [ACCOUNT]}
    via_secrets = {"kms:viaservice": ["secretsmanager.us-east-1.amazonaws.com"], "kms:calleraccount": [ACCOUNT],
                   "kms:encryptioncontext:secretarn": [secret]}
    return [
        ("sqs:ReceiveMessage", dlq, {}, None),
        ("kms:Decrypt", resolved({"Fn::GetAtt": [queue_key, "Arn"]}), via_sqs, queue_key),
        ("sqs:ChangeMessageVisibility", dlq, {}, None),
        ("sqs:DeleteMessage", dlq, {}, None),
        ("secretsmanager:GetSecretValue", secret, {}, None),
        ("kms:Decrypt", resolved({"Fn::GetAtt": [secret_key, "Arn"]}), via_secrets, secret_key),
        ("secretsmanager:PutSecretValue", secret, {}, None),
        ("kms:GenerateDataKey", resolved({"Fn::GetAtt": [secret_key, "Arn"]}), via_secrets, secret_key),
    ]


def recover_secret_allowed(raw: dict[str, Any], session: str, mfa: str | None) -> list[bool]:
    identity = [compile_statement(s, "ops", resource_policy=False) for s in permissions(raw)]
    principal = Principal.role_session(ACCOUNT, "OpsSupportRole", session)
    answers = []
    for action, resource, extra, key_id in recover_secret_requests(raw):
        context = {"aws:principalarn": [principal.principal_arn], "aws:principalaccount": [ACCOUNT],
                   "aws:userid": [f"{ROLE_ID}:{session}"], **extra}
        if mfa is not None:
            context["aws:multifactorauthpresent"] = [mfa]
        decision = evaluate(principal, action, resource, context, identity=identity,
                            resource_policy=key_policy(raw, key_id) if key_id else None,
                            resource_account=ACCOUNT, key_policy=key_id is not None)
        answers.append(decision.allowed)
    return answers


def test_recover_secret_may_do_what_it_does_along_either_path(sso_raw: dict[str, Any]) -> None:
    assert all(recover_secret_allowed(sso_raw, "alice", "true"))
    assert all(recover_secret_allowed(sso_raw, "identity-center-alice", None))
    assert not any(recover_secret_allowed(sso_raw, "alice", "false"))


def test_recover_secret_may_do_what_it_does_with_mfa(raw: dict[str, Any]) -> None:
    assert all(recover_secret_allowed(raw, "alice", "true"))
    assert not any(recover_secret_allowed(raw, "identity-center-alice", None))
