"""The local IAM guard against moto in-process: handlers' roles from the synthesized template, bound to
this test's resources through the functions' environment (tests/support/iam.py).

Calls outside `acting_as` are the test's own and are not evaluated.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local.iam import Authorizer, UnmappedOperation
from local.iam.guard import SWITCH, enabled, install
from seller_insights.errors import KeyUnavailable
from seller_insights.vault import Purpose, SecretContext, Vault
from tests.support.iam import acting_as, function_id, policies_for_environment, template
from tests.support.resources import Resources, create_resources

ACCOUNT = "123456789012"
BUCKET = "iam-guard-data"
SELLER = "A1IAMGUARDSELLER"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resources]:
    """The contract's tables, key and secret; a versioned bucket; every function's variables."""
    with mock_aws():
        resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                               "application_id": "c"})
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for name, value in {"CONNECTIONS_TABLE": resources.tables["connections"],
                            "AUDIT_TABLE": resources.tables["audit"],
                            "OAUTH_STATE_TABLE": resources.tables["oauth_state"],
                            "IDEMPOTENCY_TABLE": resources.tables["idempotency"],
                            "TOKEN_KEY_ID": resources.key_arn, "LWA_CLIENT_SECRET_ID": resources.secret_arn,
                            "DATA_BUCKET": BUCKET}.items():
            monkeypatch.setenv(name, value)
        yield resources


def role_session(role_logical_id_prefix: str, session: str) -> str:
    (role,) = [lid for lid, r in template()["Resources"].items()
               if r["Type"] == "AWS::IAM::Role" and lid.startswith(role_logical_id_prefix)]
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/si-local-{role}/{session}"


def error(exc: ClientError) -> tuple[str, int, str]:
    return (exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"],
            exc.response["Error"]["Message"])


# --- KMS: the token purposes ----------------------------------------------------------------------


def test_the_report_fetcher_cannot_open_a_refresh_token(env: Resources) -> None:
    vault = Vault(boto3.client("kms"), env.key_arn)
    refresh = SecretContext(Purpose.REFRESH_TOKEN, SELLER, "NA")
    with acting_as("oauth_callback"):  # the consent function seals refresh tokens
        sealed = vault.seal("refresh-token-value", refresh)
    with acting_as("report_fetcher"), pytest.raises(KeyUnavailable, match="AccessDeniedException"):
        vault.open(sealed, refresh)
    with acting_as("report_fetcher"), pytest.raises(ClientError) as denied:
        boto3.client("kms").decrypt(CiphertextBlob=sealed.encrypted_key, KeyId=env.key_arn,
                                    EncryptionContext=refresh.as_kms_context())
    # No identity policy allows it, and the token key's own policy denies the purpose to every other role.
    assert error(denied.value) == (
        "AccessDeniedException", 400,
        f"User: {role_session('ReportsReportFetcherRole', 'report_fetcher')} is not authorized to perform: "
        f"kms:Decrypt on resource: {env.key_arn} with an explicit deny in a resource-based policy")
    # Its own purpose works, and the refresher may open the refresh token.
    access = SecretContext(Purpose.ACCESS_TOKEN, SELLER, "NA")
    with acting_as("report_fetcher"):
        assert vault.open(vault.seal("access-token-value", access), access) == "access-token-value"
    with acting_as("token_refresher"):
        assert vault.open(sealed, refresh) == "refresh-token-value"


def test_an_account_administrator_cannot_open_a_refresh_token(env: Resources) -> None:
    """AdministratorAccess in IAM is not enough: the token key's policy denies purpose=refresh_token to
    every principal but the consent and token roles (infra DataStores.restrict_refresh_tokens_to)."""
    from local.iam import Authorizer
    from local.iam.evaluator import Principal, compile_statement
    from local.iam.guard import acting

    vault = Vault(boto3.client("kms"), env.key_arn)
    refresh = SecretContext(Purpose.REFRESH_TOKEN, SELLER, "NA")
    with acting_as("oauth_callback"):
        sealed = vault.seal("refresh-token-value", refresh)
    administrator = Principal.role_session(ACCOUNT, "Administrator", "alice")
    everything = compile_statement({"Effect": "Allow", "Action": "*", "Resource": "*"}, "AdministratorAccess",
                                   resource_policy=False)
    authorizer = Authorizer(policies_for_environment(function_id("token_refresher")))
    with acting(administrator, (everything,), authorizer), pytest.raises(ClientError) as denied:
        boto3.client("kms").decrypt(CiphertextBlob=sealed.encrypted_key, KeyId=env.key_arn,
                                    EncryptionContext=refresh.as_kms_context())
    assert error(denied.value)[0] == "AccessDeniedException"
    assert "explicit deny in a resource-based policy" in error(denied.value)[2]
    # The same administrator may use the key for everything else (e.g. another purpose).
    access = SecretContext(Purpose.ACCESS_TOKEN, SELLER, "NA")
    with acting(administrator, (everything,), authorizer):
        assert vault.open(vault.seal("access-token-value", access), access) == "access-token-value"


# --- DynamoDB -------------------------------------------------------------------------------------


def test_a_function_calling_a_table_it_has_no_grant_on_is_denied(env: Resources) -> None:
    db = boto3.client("dynamodb")
    key = {"pk": {"S": f"SELLER#{SELLER}"}, "sk": {"S": "CONN#NA"}}
    with acting_as("retention_sweeper"):
        assert "Item" not in db.get_item(TableName=env.tables["connections"], Key=key)
        with pytest.raises(ClientError) as denied:
            db.get_item(TableName=env.tables["oauth_state"], Key={"state_hash": {"S": "x"}})
    table_arn = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{env.tables['oauth_state']}"
    assert error(denied.value) == (
        "AccessDeniedException", 400,
        f"User: {role_session('RetentionRetentionSweeperRole', 'retention_sweeper')} is not authorized to "
        f"perform: dynamodb:GetItem on resource: {table_arn} because no identity-based policy allows the "
        "dynamodb:GetItem action")
    # A Scan is granted to no duty; a Query only on the indexes each duty owns.
    with acting_as("retention_sweeper"), pytest.raises(ClientError, match="dynamodb:Scan"):
        db.scan(TableName=env.tables["connections"])
    # (The sweeper's fleet census reads by_refresh_due, by_verification_due and by_plan_due, never this one.)
    query = {"KeyConditionExpression": "reauth_shard = :s", "ExpressionAttributeValues": {":s": {"S": "0"}}}
    with acting_as("retention_sweeper"), pytest.raises(ClientError, match="index/by_reauthorization_due"):
        db.query(TableName=env.tables["connections"], IndexName="by_reauthorization_due", **query)
    with acting_as("token_refresher"):
        db.query(TableName=env.tables["connections"], IndexName="by_reauthorization_due", **query)


def test_nothing_is_evaluated_outside_a_function(env: Resources) -> None:
    boto3.client("dynamodb").scan(TableName=env.tables["oauth_state"])


def test_an_operation_without_a_mapping_fails_loudly(env: Resources) -> None:
    with acting_as("retention_sweeper"), pytest.raises(UnmappedOperation, match=r"dynamodb\.ListTables"):
        boto3.client("dynamodb").list_tables()


# --- S3: prefixes, multi-object deletes, keys through S3 ------------------------------------------


def test_the_sweeper_lists_and_deletes_only_its_two_prefixes(env: Resources) -> None:
    s3 = boto3.client("s3")
    for key in ("sellers/A1/NA/r.tsv", "exports/k1/x.zip", "other/keep.txt"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    with acting_as("retention_sweeper"):
        for prefix in ("sellers/A1/", "exports/k1/"):
            assert len(s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)["Versions"]) == 1
        for prefix in ({"Prefix": "other/"}, {}):
            with pytest.raises(ClientError) as denied:
                s3.list_object_versions(Bucket=BUCKET, **prefix)
            code, status, message = error(denied.value)
            assert (code, status) == ("AccessDenied", 403)
            assert message.endswith(f"s3:ListBucketVersions on resource: arn:aws:s3:::{BUCKET} because no "
                                    "identity-based policy allows the s3:ListBucketVersions action")
        with pytest.raises(ClientError, match="s3:GetObject"):
            s3.get_object(Bucket=BUCKET, Key="sellers/A1/NA/r.tsv")
        answer = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [
            {"Key": "sellers/A1/NA/r.tsv"}, {"Key": "exports/k1/x.zip"}, {"Key": "other/keep.txt"}]})
    # S3 authorizes a multi-object delete key by key: the denied one comes back in Errors, the rest go.
    assert sorted(d["Key"] for d in answer["Deleted"]) == ["exports/k1/x.zip", "sellers/A1/NA/r.tsv"]
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("other/keep.txt", "AccessDenied")]
    assert s3.get_object(Bucket=BUCKET, Key="other/keep.txt")["Body"].read() == b"x"


def test_a_bucket_encrypted_with_another_key_denies_the_fetchers_upload(env: Resources) -> None:
    s3 = boto3.client("s3")
    kms = boto3.client("kms")

    def encrypt_with(key_arn: str) -> None:
        s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}}]})

    encrypt_with(env.key_arn)
    with acting_as("report_fetcher"):
        s3.put_object(Bucket=BUCKET, Key="sellers/A1/NA/reports/a.tsv", Body=b"x")
    other = kms.create_key(Description="not the token key")["KeyMetadata"]["Arn"]
    encrypt_with(other)
    with acting_as("report_fetcher"), pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=BUCKET, Key="sellers/A1/NA/reports/b.tsv", Body=b"x")
    code, status, message = error(denied.value)
    assert (code, status) == ("AccessDenied", 403)
    assert f"kms:GenerateDataKey on resource: {other}" in message


def test_only_the_token_refresher_keeps_report_destinations(env: Resources) -> None:
    """The fetcher reads the destination ids the refresher caches and may drop one Amazon refuses; it can
    neither write one nor read the LWA client secret (no grantless token of any scope)."""
    from seller_insights.marketplaces import Region
    from seller_insights.report_destinations import DestinationCache

    table = boto3.resource("dynamodb").Table(env.tables["idempotency"])
    queue_arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:report-notifications"
    cache = DestinationCache(table, queue_arn)
    with acting_as("token_refresher"):
        boto3.client("secretsmanager").get_secret_value(SecretId=env.secret_arn)
        cache.store(Region.EU, "destination-eu")
    with acting_as("report_fetcher"), pytest.raises(ClientError) as denied:
        boto3.client("secretsmanager").get_secret_value(SecretId=env.secret_arn)
    assert error(denied.value)[:2] == ("AccessDeniedException", 400)
    assert "secretsmanager:GetSecretValue" in error(denied.value)[2]
    with acting_as("report_fetcher"), pytest.raises(ClientError) as denied:
        cache.store(Region.FE, "destination-fe")
    assert error(denied.value)[0] == "AccessDeniedException"
    assert "dynamodb:PutItem" in error(denied.value)[2]
    with acting_as("report_fetcher"):
        assert cache.get(Region.EU) == "destination-eu"
        assert cache.forget(Region.EU, "destination-eu")
        assert cache.get(Region.EU) is None


def test_the_token_refresher_puts_notices_only_and_sends_to_its_work_queue_only(
        env: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-authorization digest goes under notices/ (PutObject only: no read back, nothing of a
    seller's); the refresh finder sends to token_refresh, and to no other queue."""
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    work = sqs.create_queue(QueueName="iam-guard-token-refresh")["QueueUrl"]
    jobs = sqs.create_queue(QueueName="iam-guard-report-jobs")["QueueUrl"]
    monkeypatch.setenv("REFRESH_WORK_QUEUE_URL", work)
    monkeypatch.setenv("REPORT_JOBS_QUEUE_URL", jobs)
    with acting_as("token_refresher"):
        s3.put_object(Bucket=BUCKET, Key="notices/reauthorization/2026-11-29.jsonl", Body=b"{}")
        sqs.send_message(QueueUrl=work, MessageBody='{"token_refresh": []}')
    for denied_call in (lambda: s3.get_object(Bucket=BUCKET, Key="notices/reauthorization/2026-11-29.jsonl"),
                        lambda: s3.put_object(Bucket=BUCKET, Key="sellers/A1/NA/reports/a.tsv", Body=b"x"),
                        lambda: sqs.send_message(QueueUrl=jobs, MessageBody="{}")):
        with acting_as("token_refresher"), pytest.raises(ClientError) as denied:
            denied_call()
        assert error(denied.value)[0] in ("AccessDenied", "AccessDeniedException", "AccessDenied.Sqs"), error(
            denied.value)


def test_the_data_buckets_tls_only_policy_denies_a_request_without_tls(env: Resources) -> None:
    """Locally every request counts as HTTPS (the product's clients use it in AWS); the template's bucket
    policy is still evaluated, and without TLS its explicit deny wins over the fetcher's grant."""
    s3 = boto3.client("s3")
    fetcher = function_id("report_fetcher")
    plain = Authorizer(policies_for_environment(fetcher), secure_transport=False)
    with plain.acting_as_function(fetcher, "report_fetcher"), pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=BUCKET, Key="sellers/A1/NA/reports/a.tsv", Body=b"x")
    code, status, message = error(denied.value)
    assert (code, status) == ("AccessDenied", 403)
    assert message.endswith("with an explicit deny in a resource-based policy")
    with acting_as("report_fetcher"):
        s3.put_object(Bucket=BUCKET, Key="sellers/A1/NA/reports/a.tsv", Body=b"x")


# --- threads --------------------------------------------------------------------------------------


def test_a_thread_started_in_a_copy_of_the_context_acts_as_the_same_role(env: Resources) -> None:
    outcome: dict[str, Any] = {}

    def list_other() -> None:
        try:
            boto3.client("s3").list_object_versions(Bucket=BUCKET, Prefix="other/")
        except ClientError as exc:
            outcome["code"] = exc.response["Error"]["Code"]

    with acting_as("retention_sweeper"):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(list_other,))
        thread.start()
        thread.join()
    assert outcome == {"code": "AccessDenied"}


def test_the_report_part_uploader_thread_acts_as_the_caller(env: Resources) -> None:
    from seller_insights.errors import StorageFailed
    from seller_insights.multipart_writer import PartUploader

    s3 = boto3.client("s3")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="exports/k1/x.zip")["UploadId"]
    with acting_as("report_fetcher"):  # it may write sellers/, never exports/
        uploader = PartUploader(s3, BUCKET, "exports/k1/x.zip", upload)
        uploader.submit(1, b"x" * 16)
        with pytest.raises(StorageFailed):
            uploader.close()


# --- the switch -----------------------------------------------------------------------------------


def test_the_switch_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert enabled()
    monkeypatch.setenv(SWITCH, "off")
    assert not enabled()
    assert install() is False
