"""The AWS emulator: moto in server mode on loopback, and the stateful resources of the template
created in it, so that local and deployed shapes come from the same source.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from local.moto_fixes import make_dynamodb_writes_atomic, make_sqs_follow_the_product_clock
from local.template import (
    ACCOUNT_ID,
    ALIAS_TYPE,
    PURPOSE_TAG,
    REGION,
    Resolver,
    Resource,
    Template,
    TemplateError,
    dependencies,
    props,
    record_roles,
    referenced_id,
    resources,
    tag,
)

log = logging.getLogger("local.aws")

# The credentials every process-local boto3 client uses against moto (moto accepts any).
MOTO_ACCESS_KEY = "local"
MOTO_SECRET_KEY = "local"  # noqa: S105 - moto accepts any credentials

TABLE_TYPES = ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable")
STATEFUL_TYPES = (
    "AWS::KMS::Key",
    "AWS::KMS::Alias",
    *TABLE_TYPES,
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::SecretsManager::Secret",
    "AWS::SNS::Topic",
)
# Resources that hold no state but whose Ref or Arn functions may receive.
_FUNCTION_TYPE = "AWS::Lambda::Function"
_RULE_TYPE = "AWS::Events::Rule"
_API_TYPE = "AWS::ApiGatewayV2::Api"
_LWA_CLIENT_PURPOSE = "lwa_client"
API_ID = "local"


class AwsEmulator:
    """moto's server in a thread of this process, with the environment pointing boto3 at it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.endpoint = ""

    def start(self) -> str:
        make_dynamodb_writes_atomic()
        make_sqs_follow_the_product_clock()
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # Every boto3 client of this process, the handlers' lazily built ones included, reads these.
        stale = [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]
        for name in [*stale, "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"]:
            os.environ.pop(name, None)
        os.environ.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID=MOTO_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=MOTO_SECRET_KEY,
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
        )
        log.info("AWS emulator (moto) on %s", self.endpoint)
        return self.endpoint

    def stop(self) -> None:
        if self.endpoint:
            self._server.stop()
            self.endpoint = ""


@dataclass
class CreatedResources:
    """What was created, by purpose (the `seller-insights:purpose` tag, else the logical id)."""

    resolver: Resolver
    tables: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)
    # logical id -> queue URL, for the poller and schedule targets
    queue_urls: dict[str, str] = field(default_factory=dict)
    # logical id -> EventBridge rule name, for the schedules (the gateway fires only an ENABLED rule)
    rule_names: dict[str, str] = field(default_factory=dict)

    def public(self) -> dict[str, dict[str, str]]:
        return {"tables": dict(self.tables), "buckets": dict(self.buckets), "queues": dict(self.queues)}


def create_resources(template: Template, lwa_client: dict[str, str], api_url: str) -> CreatedResources:
    """Creates every stateful resource of the template in moto, in dependency order.

    `lwa_client` seeds the `lwa_client` secret; `api_url` stands for the HTTP API's endpoint.
    """
    created = CreatedResources(resolver=Resolver(template))
    _Creator(template, created, lwa_client, api_url).run()
    return created


class _Creator:
    def __init__(self, template: Template, created: CreatedResources, lwa_client: dict[str, str], api_url: str) -> None:
        self.template = template
        self.api_url = api_url
        self.created = created
        self.resolver = created.resolver
        self.lwa_client = lwa_client
        self.suffix = secrets.token_hex(3)
        self.kms = boto3.client("kms")
        self.dynamodb = boto3.client("dynamodb")
        self.s3 = boto3.client("s3")
        self.sqs = boto3.client("sqs")
        self.secretsmanager = boto3.client("secretsmanager")
        self.sns = boto3.client("sns")
        self.events = boto3.client("events")

    def run(self) -> None:
        creators: dict[str, Callable[[str, Resource], None]] = {
            "AWS::KMS::Key": self.key,
            "AWS::KMS::Alias": self.alias,
            "AWS::DynamoDB::Table": self.table,
            "AWS::DynamoDB::GlobalTable": self.table,
            "AWS::S3::Bucket": self.bucket,
            "AWS::SQS::Queue": self.queue,
            "AWS::SecretsManager::Secret": self.secret,
            "AWS::SNS::Topic": self.topic,
        }
        pending = dict(resources(self.template, *STATEFUL_TYPES))
        # Roles are not created (moto does not evaluate them); their names let policies that name a role
        # resolve to the principal the local IAM guard acts as.
        record_roles(self.template, self.resolver)
        # Names for what functions may reference without it being stateful.
        for logical_id, _ in resources(self.template, _FUNCTION_TYPE):
            name = f"si-local-{logical_id}"[:64]
            self.resolver.record(logical_id, name, f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}")
        # An alias's Ref is its ARN (the function's, qualified); locally it runs the function itself.
        for logical_id, resource in resources(self.template, ALIAS_TYPE):
            function_arn = self.resolver.attrs.get((str(referenced_id(props(resource).get("FunctionName"))), "Arn"))
            if function_arn is not None:
                qualified = f"{function_arn}:{props(resource).get('Name')}"
                self.resolver.record(logical_id, qualified, qualified)
        for logical_id, _ in resources(self.template, _API_TYPE):
            self.resolver.record(logical_id, API_ID)
            self.resolver.attrs[(logical_id, "ApiEndpoint")] = self.api_url
            self.resolver.attrs[(logical_id, "ApiId")] = API_ID
        while pending:
            ready = [lid for lid, res in pending.items() if not (dependencies(props(res)) & pending.keys())]
            if not ready:
                raise TemplateError(f"circular references between {sorted(pending)}")
            for logical_id in ready:
                resource = pending.pop(logical_id)
                creators[resource["Type"]](logical_id, resource)
        for logical_id, resource in resources(self.template, _RULE_TYPE):
            self.schedule_rule(logical_id, resource)

    def purpose(self, logical_id: str, resource: Resource) -> str:
        return tag(resource, PURPOSE_TAG) or logical_id

    def name(self, logical_id: str, resource: Resource, *, bucket: bool = False) -> str:
        purpose = self.purpose(logical_id, resource)
        name = f"si-local-{purpose}-{self.suffix}"
        # S3 names: lowercase letters, digits, hyphens, at most 63.
        return name.lower().replace("_", "-")[:63] if bucket else name[:80]

    def resolve(self, value: Any, logical_id: str) -> str:
        return self.resolver.resolve(value, where=logical_id)

    # --- EventBridge ------------------------------------------------------------------------------

    def schedule_rule(self, logical_id: str, resource: Resource) -> None:
        """The template's schedule rules exist in moto (without targets: moto never fires them), so that
        DisableRule/EnableRule (ops incident contain/restore) have a rule to act on and the gateway's
        `POST /_local/fire/{name}` can refuse a DISABLED one as EventBridge would not invoke it."""
        p = props(resource)
        if not isinstance(p.get("ScheduleExpression"), str):
            return  # an event-pattern rule: the product publishes, nothing fires it locally
        name = f"si-local-{logical_id}-{self.suffix}"[:64]
        arn = self.events.put_rule(Name=name, ScheduleExpression=p["ScheduleExpression"],
                                   State=p.get("State", "ENABLED"))["RuleArn"]
        self.resolver.record(logical_id, name, arn)
        self.created.rule_names[logical_id] = name

    # --- KMS --------------------------------------------------------------------------------------

    def key(self, logical_id: str, resource: Resource) -> None:
        p = props(resource)
        # The key policy is not applied: moto does not evaluate key policies anyway.
        key = self.kms.create_key(
            Description=f"{p.get('Description') or self.purpose(logical_id, resource)} (local)",
            KeyUsage=p.get("KeyUsage", "ENCRYPT_DECRYPT"),
            KeySpec=p.get("KeySpec", "SYMMETRIC_DEFAULT"),
            Tags=[{"TagKey": PURPOSE_TAG, "TagValue": self.purpose(logical_id, resource)}],
        )["KeyMetadata"]
        if p.get("EnableKeyRotation"):
            self.kms.enable_key_rotation(KeyId=key["KeyId"])
        self.resolver.record(logical_id, key["KeyId"], key["Arn"])
        self.created.keys[self.purpose(logical_id, resource)] = key["KeyId"]

    def alias(self, logical_id: str, resource: Resource) -> None:
        p = props(resource)
        name = self.resolve(p["AliasName"], logical_id)
        self.kms.create_alias(AliasName=name, TargetKeyId=self.resolve(p["TargetKeyId"], logical_id))
        self.resolver.record(logical_id, name)

    # --- DynamoDB ---------------------------------------------------------------------------------

    def table(self, logical_id: str, resource: Resource) -> None:
        p = props(resource)
        purpose = self.purpose(logical_id, resource)
        name = self.name(logical_id, resource)
        # A GlobalTable (TableV2) keeps SSE key and PITR on its replica.
        replica = (p.get("Replicas") or [{}])[0]
        args: dict[str, Any] = {
            "TableName": name,
            "KeySchema": p["KeySchema"],
            "AttributeDefinitions": p["AttributeDefinitions"],
            "BillingMode": "PAY_PER_REQUEST",
            "Tags": [{"Key": PURPOSE_TAG, "Value": purpose}],
        }
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if p.get(key):
                args[key] = [
                    {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index} for index in p[key]
                ]
        sse = {**(p.get("SSESpecification") or {}), **(replica.get("SSESpecification") or {})}
        if sse.get("SSEEnabled") or sse.get("KMSMasterKeyId"):
            args["SSESpecification"] = {"Enabled": True, "SSEType": "KMS"}
            if sse.get("KMSMasterKeyId"):
                args["SSESpecification"]["KMSMasterKeyId"] = self.resolve(sse["KMSMasterKeyId"], logical_id)
        stream = p.get("StreamSpecification")
        if stream:
            args["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        table = self.dynamodb.create_table(**args)["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            self.dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        pitr = p.get("PointInTimeRecoverySpecification") or replica.get("PointInTimeRecoverySpecification")
        if pitr and pitr.get("PointInTimeRecoveryEnabled"):
            spec: Any = {"PointInTimeRecoveryEnabled": True}  # built from the template
            if pitr.get("RecoveryPeriodInDays"):
                spec["RecoveryPeriodInDays"] = int(pitr["RecoveryPeriodInDays"])
            self.dynamodb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=spec)
        self.resolver.record(logical_id, name, table["TableArn"])
        self.created.tables[purpose] = name

    # --- S3 ---------------------------------------------------------------------------------------

    def bucket(self, logical_id: str, resource: Resource) -> None:
        p = props(resource)
        purpose = self.purpose(logical_id, resource)
        name = self.name(logical_id, resource, bucket=True)
        self.s3.create_bucket(Bucket=name)
        self.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": PURPOSE_TAG, "Value": purpose}]})
        if (p.get("VersioningConfiguration") or {}).get("Status"):
            self.s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]}
            )
        rules = (p.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration") or []
        if rules:
            encryption: Any = {"Rules": [self._encryption_rule(r, logical_id) for r in rules]}
            self.s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=encryption)
        if p.get("PublicAccessBlockConfiguration"):
            self.s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"]
            )
        lifecycle = (p.get("LifecycleConfiguration") or {}).get("Rules") or []
        if lifecycle:
            try:
                configuration: Any = {"Rules": [_lifecycle_rule(i, r) for i, r in enumerate(lifecycle)]}
                self.s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=configuration)
            except ClientError as exc:  # moto stores lifecycle rules but never applies them
                log.warning("bucket %s: lifecycle not set in moto (%s)", purpose, exc.response["Error"]["Code"])
        # Not applied: the bucket policy (moto ignores its conditions, so a TLS-only deny would block
        # every request over http) and access logging (moto never writes log objects).
        self.resolver.record(logical_id, name, f"arn:aws:s3:::{name}")
        self.created.buckets[purpose] = name

    def _encryption_rule(self, rule: dict[str, Any], logical_id: str) -> dict[str, Any]:
        default = dict(rule.get("ServerSideEncryptionByDefault") or {})
        if "KMSMasterKeyID" in default:
            default["KMSMasterKeyID"] = self.resolve(default["KMSMasterKeyID"], logical_id)
        out: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default}
        if "BucketKeyEnabled" in rule:
            out["BucketKeyEnabled"] = bool(rule["BucketKeyEnabled"])
        return out

    # --- SQS, Secrets Manager, SNS ----------------------------------------------------------------

    def queue(self, logical_id: str, resource: Resource) -> None:
        p = props(resource)
        purpose = self.purpose(logical_id, resource)
        fifo = bool(p.get("FifoQueue"))
        name = self.name(logical_id, resource) + (".fifo" if fifo else "")
        attributes: dict[Any, str] = {}  # attribute names from the template
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
            "MaximumMessageSize",
            "ContentBasedDeduplication",
            "KmsDataKeyReusePeriodSeconds",
            "SqsManagedSseEnabled",
            "FifoQueue",
            "KmsMasterKeyId",
        ):
            if key in p:
                attributes[key] = self.resolve(p[key], logical_id)
        if "RedrivePolicy" in p:
            redrive = p["RedrivePolicy"]
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": self.resolve(redrive["deadLetterTargetArn"], logical_id),
                    "maxReceiveCount": int(redrive["maxReceiveCount"]),
                }
            )
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes, tags={PURPOSE_TAG: purpose})["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.resolver.record(logical_id, url, arn)
        self.created.queues[purpose] = url
        self.created.queue_urls[logical_id] = url

    def secret(self, logical_id: str, resource: Resource) -> None:
        p = props(resource)
        purpose = self.purpose(logical_id, resource)
        if purpose == _LWA_CLIENT_PURPOSE:
            value = json.dumps(self.lwa_client)  # the Amazon emulator's client
        elif isinstance(p.get("SecretString"), str):
            value = p["SecretString"]
        else:
            generate = p.get("GenerateSecretString") or {}
            value = secrets.token_urlsafe(24)
            if generate.get("SecretStringTemplate") and generate.get("GenerateStringKey"):
                template = json.loads(generate["SecretStringTemplate"])
                value = json.dumps({**template, generate["GenerateStringKey"]: value})
        args: dict[str, Any] = {
            "Name": self.name(logical_id, resource),
            "SecretString": value,
            "Tags": [{"Key": PURPOSE_TAG, "Value": purpose}],
        }
        if p.get("KmsKeyId"):
            args["KmsKeyId"] = self.resolve(p["KmsKeyId"], logical_id)
        arn = self.secretsmanager.create_secret(**args)["ARN"]
        self.resolver.record(logical_id, arn, arn)
        self.created.secrets[purpose] = arn

    def topic(self, logical_id: str, resource: Resource) -> None:
        p = props(resource)
        purpose = self.purpose(logical_id, resource)
        fifo = bool(p.get("FifoTopic"))
        attributes = {"FifoTopic": "true"} if fifo else {}
        if p.get("KmsMasterKeyId"):
            attributes["KmsMasterKeyId"] = self.resolve(p["KmsMasterKeyId"], logical_id)
        arn = self.sns.create_topic(
            Name=self.name(logical_id, resource) + (".fifo" if fifo else ""),
            Attributes=attributes,
            Tags=[{"Key": PURPOSE_TAG, "Value": purpose}],
        )["TopicArn"]
        self.resolver.record(logical_id, arn, arn)
        self.created.topics[purpose] = arn


def _lifecycle_rule(index: int, rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape of the S3 API."""
    out: dict[str, Any] = {"ID": rule.get("Id", f"rule-{index}"), "Status": rule.get("Status", "Enabled")}
    out["Filter"] = {"Prefix": rule.get("Prefix", "")}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    elif rule.get("ExpiredObjectDeleteMarker"):
        out["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    noncurrent = rule.get("NoncurrentVersionExpiration")
    if noncurrent:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(noncurrent["NoncurrentDays"])}
    elif "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(abort["DaysAfterInitiation"])}
    return out
