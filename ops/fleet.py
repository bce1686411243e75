"""The fleet commands' view of one deployed stack (or the local stack): its resources and AWS clients.

Fleet commands (`ops status`, `ops redrive`, `ops incident ...`) act with the operator's own credentials
(botocore's chain: a profile that assumes the OpsSupportRole with MFA, SSO, or the environment) directly on
the stack's resources; what they may do is the OpsSupportRole's policy (infra/constructs/operators.py).

The inventory is the same in both places: every resource of the stack's template with its logical id,
type, physical id (what `Ref` gives: a table name, a queue URL, a key id, a rule name...), ARN where
known, and its `seller-insights:purpose` tag.
- Deployed: CloudFormation's GetTemplate (the purpose tags) and ListStackResources (the physical ids) of
  `SellerInsights-{stage}` (or `--stack`).
- Local: `GET {api}/_local/stack` on the local stack (docs/local-stack.md), which also names the AWS
  emulator's endpoint and the credentials to use there.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ops.api import NoCredentials, OpsError

PURPOSE_TAG = "seller-insights:purpose"
LOCAL_ENV = "SELLER_INSIGHTS_LOCAL"
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60)


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    physical_id: str
    purpose: str | None = None
    arn: str | None = None


@dataclass
class Fleet:
    """One stack's resources and a boto3 session to act on them."""

    stack_name: str
    region: str
    session: boto3.session.Session
    resources: list[Resource]
    endpoint_url: str | None = None  # the AWS emulator, locally
    local_api: str | None = None  # the local stack's API, locally
    _clients: dict[str, Any] = field(default_factory=dict)

    # --- finding resources ------------------------------------------------------------------------

    def by_purpose(self, purpose: str) -> Resource:
        found = [r for r in self.resources if r.purpose == purpose]
        if len(found) != 1:
            raise OpsError(f"the stack {self.stack_name} has {len(found)} resources with purpose {purpose!r}; "
                           "is it deployed from this version of the code?")
        return found[0]

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.type == resource_type]

    def table(self, purpose: str) -> str:
        return self.by_purpose(purpose).physical_id

    def bucket(self, purpose: str) -> str:
        return self.by_purpose(purpose).physical_id

    def queue_url(self, purpose: str) -> str:
        return self.by_purpose(purpose).physical_id

    def queues(self) -> dict[str, str]:
        """Every queue of the stack: purpose (or logical id) -> URL."""
        return {r.purpose or r.logical_id: r.physical_id for r in self.of_type("AWS::SQS::Queue")}

    def key_id(self, purpose: str) -> str:
        return self.by_purpose(purpose).physical_id

    def secret_arn(self, purpose: str) -> str:
        return self.by_purpose(purpose).physical_id

    # --- clients ----------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(  # type: ignore[call-overload]
                service, region_name=self.region, endpoint_url=self.endpoint_url, config=CLIENT_CONFIG)
        return self._clients[service]

    def documents(self) -> Any:
        """A DynamoDB client that takes and gives plain Python values (a resource's meta.client), as the
        shared layer's repositories expect."""
        if "dynamodb-documents" not in self._clients:
            resource = self.session.resource("dynamodb", region_name=self.region, endpoint_url=self.endpoint_url,
                                             config=CLIENT_CONFIG)
            self._clients["dynamodb-documents"] = resource.meta.client
        return self._clients["dynamodb-documents"]

    # --- where from -------------------------------------------------------------------------------

    @classmethod
    def deployed(cls, stack_name: str, *, region: str, profile: str | None = None) -> Fleet:
        try:
            session = boto3.session.Session(profile_name=profile, region_name=region)
            if session.get_credentials() is None:
                raise NoCredentials("not in the environment, the shared config/credentials files, SSO or an "
                                    "instance role")
            cloudformation = session.client("cloudformation", config=CLIENT_CONFIG)
            template = cloudformation.get_template(StackName=stack_name, TemplateStage="Processed")["TemplateBody"]
            physical: dict[str, tuple[str, str]] = {}
            for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
                for summary in page["StackResourceSummaries"]:
                    if summary.get("PhysicalResourceId"):
                        physical[summary["LogicalResourceId"]] = (summary["ResourceType"],
                                                                  summary["PhysicalResourceId"])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise OpsError(f"CloudFormation refused to describe the stack {stack_name} in {region} ({code}): check "
                           "--stage/--stack, --region and that your credentials may read it", exit_code=3) from None
        except BotoCoreError as exc:
            raise OpsError(f"could not reach CloudFormation in {region}: {type(exc).__name__}") from None
        body = template if isinstance(template, Mapping) else json.loads(template)
        return cls(stack_name, region, session, inventory(body, physical))

    @classmethod
    def local(cls, api_url: str) -> Fleet:
        if urlsplit(api_url).scheme not in ("http", "https"):
            raise OpsError("--local must be the local stack's API URL (http://127.0.0.1:PORT)", exit_code=2)
        try:
            with urllib.request.urlopen(api_url.rstrip("/") + "/_local/stack", timeout=30) as answer:  # noqa: S310
                info = json.loads(answer.read())
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise OpsError(f"no local stack answers at {api_url}: {getattr(exc, 'reason', exc)} (start it with "
                           "make dev)", exit_code=2) from None
        admin = info["admin"]
        session = boto3.session.Session(aws_access_key_id=admin["access_key_id"],
                                        aws_secret_access_key=admin["secret_access_key"],
                                        region_name=info["region"])
        resources = [Resource(**entry) for entry in info["inventory"]]
        return cls(info["stack"], info["region"], session, resources, endpoint_url=info["aws"],
                   local_api=api_url.rstrip("/"))

    @classmethod
    def from_args(cls, *, local: str | None, stage: str, stack: str | None, region: str | None,
                  profile: str | None) -> Fleet:
        """`--local URL` (or $SELLER_INSIGHTS_LOCAL): the local stack; else the deployed stack."""
        local = local or os.environ.get(LOCAL_ENV)
        if local:
            return cls.local(local)
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls.deployed(stack or f"SellerInsights-{stage}", region=region, profile=profile)


def inventory(template: Mapping[str, Any], physical: Mapping[str, tuple[str, str]],
              arns: Mapping[str, str] | None = None) -> list[Resource]:
    """The template's resources that exist (`physical`: logical id -> (type, physical id)), with purposes."""
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        if logical_id not in physical:
            continue
        resource_type, physical_id = physical[logical_id]
        found.append(Resource(logical_id, resource_type, physical_id, purpose_tag(resource),
                              (arns or {}).get(logical_id)))
    return found


def purpose_tag(resource: Mapping[str, Any]) -> str | None:
    tags: Iterable[Any] | Mapping[str, Any] = (resource.get("Properties") or {}).get("Tags") or []
    if isinstance(tags, Mapping):
        value = tags.get(PURPOSE_TAG)
        return value if isinstance(value, str) else None
    for entry in tags:
        if isinstance(entry, Mapping) and entry.get("Key") == PURPOSE_TAG and isinstance(entry.get("Value"), str):
            return str(entry["Value"])
    return None
