"""boto3 clients and tables, built on first use from one session per container.

Nothing is built at import time, so tests can start moto first and the local stack can point every
client at the AWS emulator through AWS_ENDPOINT_URL. A boto3 session is not thread-safe to build clients
from concurrently and costs a credential resolution each, so the container has one, and each client or
table is built from it once. The types come from types-boto3 stubs, imported for the type checker only:
the Lambda runtime does not carry them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config

from seller_insights.containers import per_container

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_dynamodb.service_resource import DynamoDBServiceResource, Table
    from types_boto3_events.client import EventBridgeClient
    from types_boto3_kms.client import KMSClient
    from types_boto3_s3.client import S3Client
    from types_boto3_secretsmanager.client import SecretsManagerClient
    from types_boto3_sqs.client import SQSClient

# Standard retry mode: backoff with jitter on throttling and transient errors, bounded attempts.
_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)
_BUILD = threading.Lock()  # clients are built from the one session by one thread at a time


@per_container
def session() -> boto3.session.Session:
    return boto3.session.Session()


@overload
def client(service: Literal["dynamodb"]) -> DynamoDBClient: ...
@overload
def client(service: Literal["events"]) -> EventBridgeClient: ...
@overload
def client(service: Literal["kms"]) -> KMSClient: ...
@overload
def client(service: Literal["s3"]) -> S3Client: ...
@overload
def client(service: Literal["secretsmanager"]) -> SecretsManagerClient: ...
@overload
def client(service: Literal["sqs"]) -> SQSClient: ...
def client(service: str) -> Any:
    return _client(service)


@per_container
def _client(service: Any) -> Any:
    with _BUILD:
        return session().client(service, config=_CONFIG)


@per_container
def _dynamodb() -> DynamoDBServiceResource:
    with _BUILD:
        return session().resource("dynamodb", config=_CONFIG)


@per_container
def table(name: str) -> Table:
    resource = _dynamodb()
    with _BUILD:  # a resource, like the session, is not safe to build from on several threads at once
        return resource.Table(name)
