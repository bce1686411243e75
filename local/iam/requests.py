"""From a botocore call to the IAM requests AWS authorizes for it.

`iam_requests(service, operation, params, lookups)` answers the (action, resource ARN, condition keys)
AWS evaluates for one API call, including the KMS calls a service makes on the caller's behalf and
authorizes as the caller (customer-managed keys only; `kms:ViaService` and `kms:CallerAccount` set):

| service         | on the caller's behalf                                                          |
| --------------- | ------------------------------------------------------------------------------- |
| DynamoDB        | kms:Decrypt for every data-plane call on a table with a customer-managed key    |
|                 | (DynamoDB decrypts the table key with the caller's permission)                  |
| S3 (SSE-KMS)    | PutObject: kms:GenerateDataKey; GetObject: kms:Decrypt; CreateMultipartUpload:   |
|                 | kms:GenerateDataKey and kms:Decrypt; UploadPart, CompleteMultipartUpload:        |
|                 | kms:Decrypt (S3 reads the encrypted parts); HEAD, lists and deletes: none       |
| SQS (SSE-KMS)   | SendMessage(Batch): kms:GenerateDataKey and kms:Decrypt; ReceiveMessage:         |
|                 | kms:Decrypt                                                                      |
| Secrets Manager | GetSecretValue: kms:Decrypt; PutSecretValue: kms:GenerateDataKey                |
| SNS (SSE)       | Publish: kms:GenerateDataKey and kms:Decrypt                                     |

An operation not listed here raises `UnmappedOperation`: a new call can never slip through
unevaluated. Extend `_MAPPERS` (and CONTEXT_KEYS for a new condition key) in this file.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from local.template import ACCOUNT_ID

Context = dict[str, tuple[str, ...]]


class UnmappedOperation(RuntimeError):
    """A botocore operation the local IAM guard cannot translate into IAM requests."""


@dataclass(frozen=True)
class IamRequest:
    action: str
    resource: str
    context: Context = field(default_factory=dict)
    item: int | None = None  # DeleteObjects: the entry of Delete.Objects it authorizes
    via: str | None = None  # the service calling KMS on the caller's behalf


class Lookups(Protocol):
    """Facts about the real resources in moto, looked up without the guard (and cached)."""

    region: str

    def encryption_key(self, service: str, resource: str) -> str | None:
        """The ARN of the customer-managed KMS key that encrypts a table, bucket, queue, secret or topic."""

    def secret_arn(self, secret_id: str) -> str: ...

    def key_arn(self, key_id: str) -> str: ...


# Condition keys the guard sets (or, for the ones marked absent, knows AWS leaves out for a Lambda role
# session calling directly). A template condition on any other key fails the policy load.
GLOBAL_KEYS = {
    "aws:securetransport", "aws:principalarn", "aws:principalaccount", "aws:requestedregion",
    # absent for our callers: set when a service principal acts, or for MFA-authenticated humans
    "aws:sourcearn", "aws:sourceaccount", "aws:sourceowner", "aws:multifactorauthpresent",
}
CONTEXT_KEYS = {
    *GLOBAL_KEYS,
    "s3:prefix", "s3:delimiter", "s3:max-keys", "s3:tlsversion", "s3:versionid",
    "kms:viaservice", "kms:calleraccount", "kms:encryptioncontextkeys",
    "events:source", "events:detail-type",
    "dynamodb:attributes", "dynamodb:select",
}
CONTEXT_KEY_PREFIXES = ("kms:encryptioncontext:",)


def known_condition_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in CONTEXT_KEYS or lowered.startswith(CONTEXT_KEY_PREFIXES)


def iam_requests(service: str, operation: str, params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
    mapper = _MAPPERS.get(service, {}).get(operation)
    if mapper is None:
        raise UnmappedOperation(
            f"{service}.{operation} has no IAM mapping, so the local IAM guard cannot evaluate it; "
            "add it to local/iam/requests.py (_MAPPERS) with the actions AWS authorizes for it"
        )
    return mapper(params, lookups)


Mapper = Callable[[Mapping[str, Any], Lookups], list[IamRequest]]


# --- KMS on the caller's behalf -----------------------------------------------------------------


def _via(service: str, resource: str, actions: Sequence[str], lookups: Lookups,
         encryption_context: Mapping[str, str] | None = None) -> list[IamRequest]:
    key = lookups.encryption_key(service, resource)
    if key is None:
        return []
    context: Context = {"kms:viaservice": (f"{service}.{lookups.region}.amazonaws.com",),
                        **_encryption_context_keys(encryption_context or {})}
    return [IamRequest(f"kms:{action}", key, context, via=service) for action in actions]


def _encryption_context_keys(encryption_context: Mapping[str, Any]) -> Context:
    """kms:EncryptionContext:<name> per pair and kms:EncryptionContextKeys, as KMS sets them."""
    context: Context = {f"kms:encryptioncontext:{name}".lower(): (str(value),)
                        for name, value in encryption_context.items()}
    if encryption_context:
        context["kms:encryptioncontextkeys"] = tuple(encryption_context)
    return context


# --- DynamoDB -----------------------------------------------------------------------------------


def _table_arn(name: str, lookups: Lookups) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:dynamodb:{lookups.region}:{ACCOUNT_ID}:table/{name}"


def _table_key(table_arn: str, lookups: Lookups) -> list[IamRequest]:
    name = table_arn.rsplit("/", 1)[-1]
    return _via("dynamodb", table_arn, ["Decrypt"], lookups, {"aws:dynamodb:tableName": name})


_READS = {"GetItem", "Query", "Scan", "BatchGetItem"}


def _read_context(params: Mapping[str, Any]) -> Context:
    """dynamodb:Select and dynamodb:Attributes of a read: Select as asked (else SPECIFIC_ATTRIBUTES with a
    projection, ALL_ATTRIBUTES without, DynamoDB's defaults), and the top-level attribute names the
    projection (or AttributesToGet) and the keys name; no projection: no Attributes key."""
    names = params.get("ExpressionAttributeNames") or {}
    projected = [part.strip().split(".")[0].split("[")[0] for part in
                 str(params.get("ProjectionExpression") or "").split(",") if part.strip()]
    attributes = [names.get(name, name) for name in projected] + list(params.get("AttributesToGet") or [])
    context: Context = {"dynamodb:select": (str(params.get("Select") or (
        "SPECIFIC_ATTRIBUTES" if attributes else "ALL_ATTRIBUTES")),)}
    if attributes:
        keys = [*params.get("Key", {}), *(name for key in params.get("Keys", []) for name in key)]
        context["dynamodb:attributes"] = tuple(dict.fromkeys([*keys, *attributes]))
    return context


def _dynamodb_item(action: str) -> Mapper:
    def mapper(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
        table = _table_arn(params["TableName"], lookups)
        resource = f"{table}/index/{params['IndexName']}" if params.get("IndexName") else table
        context = _read_context(params) if action in _READS else {}
        return [IamRequest(f"dynamodb:{action}", resource, context), *_table_key(table, lookups)]

    return mapper


def _dynamodb_describe(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
    return [IamRequest("dynamodb:DescribeTable", _table_arn(params["TableName"], lookups))]


def _dynamodb_batch(action: str) -> Mapper:
    def mapper(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
        out: list[IamRequest] = []
        for name, request in params.get("RequestItems", {}).items():
            table = _table_arn(name, lookups)
            context = _read_context(request) if action in _READS else {}
            out += [IamRequest(f"dynamodb:{action}", table, context), *_table_key(table, lookups)]
        return out

    return mapper


_TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


def _dynamodb_transact(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
    """Each element of a transaction is authorized as its own action on its own table."""
    out: list[IamRequest] = []
    tables: list[str] = []
    for element in params.get("TransactItems", []):
        for kind, body in element.items():
            table = _table_arn(body["TableName"], lookups)
            out.append(IamRequest(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table))
            if table not in tables:
                tables.append(table)
    for table in tables:
        out += _table_key(table, lookups)
    return out


# --- S3 -----------------------------------------------------------------------------------------


def _object(params: Mapping[str, Any]) -> str:
    return f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"


def _bucket(params: Mapping[str, Any]) -> str:
    return f"arn:aws:s3:::{params['Bucket']}"


def _bucket_key(params: Mapping[str, Any], actions: Sequence[str], lookups: Lookups) -> list[IamRequest]:
    if params.get("ServerSideEncryption") == "aws:kms" and params.get("SSEKMSKeyId"):
        key = lookups.key_arn(str(params["SSEKMSKeyId"]))
        context: Context = {"kms:viaservice": (f"s3.{lookups.region}.amazonaws.com",)}
        return [IamRequest(f"kms:{action}", key, context, via="s3") for action in actions]
    return _via("s3", _bucket(params), actions, lookups, {"aws:s3:arn": _bucket(params)})


def _s3_object(action: str, versioned: str | None = None, key_actions: Sequence[str] = ()) -> Mapper:
    def mapper(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
        name = versioned if versioned and params.get("VersionId") else action
        context: Context = {"s3:versionid": (str(params["VersionId"]),)} if params.get("VersionId") else {}
        out = [IamRequest(f"s3:{name}", _object(params), context)]
        return out + (_bucket_key(params, key_actions, lookups) if key_actions else [])

    return mapper


def _s3_delete_objects(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
    """Multi-object delete: S3 authorizes every key on its own and reports the denied ones in Errors."""
    out = []
    for index, entry in enumerate(params.get("Delete", {}).get("Objects", [])):
        action = "s3:DeleteObjectVersion" if entry.get("VersionId") else "s3:DeleteObject"
        resource = f"arn:aws:s3:::{params['Bucket']}/{entry['Key']}"
        out.append(IamRequest(action, resource, item=index))
    return out


def _s3_list(action: str, prefixed: bool) -> Mapper:
    def mapper(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
        context: Context = {}
        if prefixed:
            for param, key in (("Prefix", "s3:prefix"), ("Delimiter", "s3:delimiter"), ("MaxKeys", "s3:max-keys")):
                if param in params:
                    context[key] = (str(params[param]),)
        return [IamRequest(f"s3:{action}", _bucket(params), context)]

    return mapper


# --- SQS, SNS, Secrets Manager, EventBridge, KMS ------------------------------------------------


def _queue_arn(params: Mapping[str, Any], lookups: Lookups) -> str:
    return queue_arn(str(params["QueueUrl"]), lookups.region)


def queue_arn(url: str, region: str) -> str:
    """arn:aws:sqs:{region}:{account}:{name} from a queue URL (any host: moto's, AWS's)."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if len(parts) < 2:
        raise UnmappedOperation(f"not a queue URL: {url!r}")
    return f"arn:aws:sqs:{region}:{parts[-2]}:{parts[-1]}"


def _sqs(action: str, key_actions: Sequence[str] = ()) -> Mapper:
    def mapper(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
        queue = _queue_arn(params, lookups)
        return [IamRequest(f"sqs:{action}", queue), *_via("sqs", queue, key_actions, lookups, {"aws:sqs:arn": queue})]

    return mapper


def _sqs_queue_url(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
    owner = params.get("QueueOwnerAWSAccountId") or ACCOUNT_ID
    return [IamRequest("sqs:GetQueueUrl", f"arn:aws:sqs:{lookups.region}:{owner}:{params['QueueName']}")]


def _sns_publish(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
    topic = str(params.get("TopicArn") or params.get("TargetArn"))
    return [IamRequest("sns:Publish", topic), *_via("sns", topic, ["GenerateDataKey", "Decrypt"], lookups)]


def _secret(action: str, key_actions: Sequence[str] = ()) -> Mapper:
    def mapper(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
        arn = lookups.secret_arn(str(params["SecretId"]))
        return [IamRequest(f"secretsmanager:{action}", arn),
                *_via("secretsmanager", arn, key_actions, lookups, {"SecretARN": arn})]

    return mapper


def _put_events(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
    buses: dict[str, list[Mapping[str, Any]]] = {}
    for entry in params.get("Entries", []):
        bus = str(entry.get("EventBusName") or "default")
        arn = bus if bus.startswith("arn:") else f"arn:aws:events:{lookups.region}:{ACCOUNT_ID}:event-bus/{bus}"
        buses.setdefault(arn, []).append(entry)
    return [
        IamRequest("events:PutEvents", arn, {
            "events:source": tuple(str(e.get("Source")) for e in entries),
            "events:detail-type": tuple(str(e.get("DetailType")) for e in entries),
        })
        for arn, entries in buses.items()
    ]


def _kms(action: str) -> Mapper:
    def mapper(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
        key_id = params.get("KeyId") or _ciphertext_key(params)
        context = _encryption_context_keys(params.get("EncryptionContext") or {})
        return [IamRequest(f"kms:{action}", lookups.key_arn(str(key_id)), context)]

    return mapper


def _ciphertext_key(params: Mapping[str, Any]) -> str:
    """Decrypt without KeyId: the key is inside the ciphertext. moto's blobs start with the key id."""
    blob = params.get("CiphertextBlob")
    if isinstance(blob, str):
        blob = base64.b64decode(blob)
    if isinstance(blob, bytes | bytearray) and len(blob) >= 36:
        return bytes(blob[:36]).decode("ascii", errors="replace")
    raise UnmappedOperation("kms.Decrypt without KeyId or a ciphertext naming its key")


def _free(params: Mapping[str, Any], lookups: Lookups) -> list[IamRequest]:
    """Calls that need no permission (sts:GetCallerIdentity)."""
    return []


_MAPPERS: dict[str, dict[str, Mapper]] = {
    "dynamodb": {
        "GetItem": _dynamodb_item("GetItem"),
        "PutItem": _dynamodb_item("PutItem"),
        "UpdateItem": _dynamodb_item("UpdateItem"),
        "DeleteItem": _dynamodb_item("DeleteItem"),
        "Query": _dynamodb_item("Query"),
        "Scan": _dynamodb_item("Scan"),
        "DescribeTable": _dynamodb_describe,
        "BatchGetItem": _dynamodb_batch("BatchGetItem"),
        "BatchWriteItem": _dynamodb_batch("BatchWriteItem"),
        "TransactWriteItems": _dynamodb_transact,
        "TransactGetItems": _dynamodb_transact,
    },
    "s3": {
        "PutObject": _s3_object("PutObject", key_actions=["GenerateDataKey"]),
        "GetObject": _s3_object("GetObject", "GetObjectVersion", key_actions=["Decrypt"]),
        "HeadObject": _s3_object("GetObject", "GetObjectVersion"),
        "DeleteObject": _s3_object("DeleteObject", "DeleteObjectVersion"),
        "DeleteObjects": _s3_delete_objects,
        "CreateMultipartUpload": _s3_object("PutObject", key_actions=["GenerateDataKey", "Decrypt"]),
        "UploadPart": _s3_object("PutObject", key_actions=["Decrypt"]),
        "CompleteMultipartUpload": _s3_object("PutObject", key_actions=["Decrypt"]),
        "AbortMultipartUpload": _s3_object("AbortMultipartUpload"),
        "ListParts": _s3_object("ListMultipartUploadParts"),
        "ListObjectVersions": _s3_list("ListBucketVersions", prefixed=True),
        "ListObjects": _s3_list("ListBucket", prefixed=True),
        "ListObjectsV2": _s3_list("ListBucket", prefixed=True),
        "ListMultipartUploads": _s3_list("ListBucketMultipartUploads", prefixed=False),
        "HeadBucket": _s3_list("ListBucket", prefixed=False),
    },
    "sqs": {
        "SendMessage": _sqs("SendMessage", ["GenerateDataKey", "Decrypt"]),
        "SendMessageBatch": _sqs("SendMessage", ["GenerateDataKey", "Decrypt"]),
        "ReceiveMessage": _sqs("ReceiveMessage", ["Decrypt"]),
        "DeleteMessage": _sqs("DeleteMessage"),
        "DeleteMessageBatch": _sqs("DeleteMessage"),
        "ChangeMessageVisibility": _sqs("ChangeMessageVisibility"),
        "ChangeMessageVisibilityBatch": _sqs("ChangeMessageVisibility"),
        "GetQueueAttributes": _sqs("GetQueueAttributes"),
        "GetQueueUrl": _sqs_queue_url,
    },
    "sns": {"Publish": _sns_publish},
    "secretsmanager": {
        "GetSecretValue": _secret("GetSecretValue", ["Decrypt"]),
        "PutSecretValue": _secret("PutSecretValue", ["GenerateDataKey"]),
        "DescribeSecret": _secret("DescribeSecret"),
    },
    "events": {"PutEvents": _put_events},
    "kms": {
        "GenerateDataKey": _kms("GenerateDataKey"),
        "GenerateDataKeyWithoutPlaintext": _kms("GenerateDataKeyWithoutPlaintext"),
        "Encrypt": _kms("Encrypt"),
        "Decrypt": _kms("Decrypt"),
        "DescribeKey": _kms("DescribeKey"),
    },
    "sts": {"GetCallerIdentity": _free},
}

