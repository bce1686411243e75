"""The SQS event source mappings of the template, played on request (`POST /_local/drain`): batches
of up to BatchSize messages go to the function as an SQS event; with ReportBatchItemFailures only
the messages the function did not report are deleted, otherwise a raised error fails the batch.

Failed messages stay invisible for the queue's visibility timeout as in AWS. moto counts that
timeout in real time, so the poller also releases them once it has passed in virtual time, which
lets a test or the demo move the clock instead of waiting.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

from local.aws import CreatedResources
from local.functions import FunctionRuntime
from local.template import REGION, Template, TemplateError, invoked_function, props, referenced_id, resources

log = logging.getLogger("local.poller")

MAPPING_TYPE = "AWS::Lambda::EventSourceMapping"


@dataclass(frozen=True)
class SqsMapping:
    queue: str  # purpose of the queue, the name used in answers
    queue_url: str
    queue_arn: str
    function_id: str
    batch_size: int
    report_failures: bool
    visibility_timeout: int


@dataclass
class _Released:
    receipt_handle: str
    visible_at: datetime


@dataclass
class DrainResult:
    delivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, dict[str, int]]:
        return {"delivered": self.delivered, "failed": self.failed, "left": self.left}


def mappings(template: Template, created: CreatedResources) -> list[SqsMapping]:
    sqs = boto3.client("sqs")
    purpose_of = {url: purpose for purpose, url in created.queues.items()}
    found = []
    for logical_id, resource in resources(template, MAPPING_TYPE):
        p = props(resource)
        queue_id = referenced_id(p.get("EventSourceArn"))
        function_id = invoked_function(template, p.get("FunctionName"))
        if queue_id not in created.queue_urls:
            log.warning("%s: event source is not an SQS queue of the template; not polled locally", logical_id)
            continue
        if function_id is None:
            raise TemplateError(f"{logical_id}: FunctionName is not a function of the template")
        if p.get("Enabled") is False:
            continue
        url = created.queue_urls[queue_id]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "VisibilityTimeout"])
        found.append(
            SqsMapping(
                queue=purpose_of[url],
                queue_url=url,
                queue_arn=attributes["Attributes"]["QueueArn"],
                function_id=function_id,
                batch_size=int(p.get("BatchSize", 10)),
                report_failures="ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []),
                visibility_timeout=int(attributes["Attributes"]["VisibilityTimeout"]),
            )
        )
    return found


class QueuePoller:
    def __init__(
        self,
        mappings: list[SqsMapping],
        runtime: FunctionRuntime,
        all_queues: dict[str, str],
        now: Callable[[], datetime],
    ) -> None:
        self.mappings = mappings
        self._runtime = runtime
        self._all_queues = all_queues  # purpose -> url, for "left"
        self._now = now
        self._sqs = boto3.client("sqs")
        self._failed: dict[str, list[_Released]] = {}
        self._lock = threading.Lock()  # one drain at a time, like one poller per mapping

    def drain(self, max_seconds: float, queues: set[str] | None = None) -> DrainResult:
        """Plays the mappings (only those of the `queues` purposes, when given) until none has a visible
        message or time is up."""
        result = DrainResult()
        deadline = time.monotonic() + max_seconds
        played = [m for m in self.mappings if queues is None or m.queue in queues]
        with self._lock:
            while time.monotonic() < deadline:
                self._release_due()
                busy = False
                for mapping in played:
                    batch = self._receive(mapping)
                    if batch:
                        busy = True
                        ok, failed = self._deliver(mapping, batch)
                        result.delivered[mapping.queue] = result.delivered.get(mapping.queue, 0) + ok
                        result.failed[mapping.queue] = result.failed.get(mapping.queue, 0) + failed
                if not busy:
                    break
        result.left = {purpose: self._count(url) for purpose, url in self._all_queues.items()}
        return result

    def _receive(self, mapping: SqsMapping) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while len(batch) < mapping.batch_size:
            # Lambda's event source mapping polls and deletes with the function's execution role.
            with self._runtime.acting_as(mapping.function_id):
                messages = self._receive_once(mapping, batch)
            if not messages:
                break
            batch.extend(messages)
        return batch

    def _receive_once(self, mapping: SqsMapping, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        messages: list[Any] = list(
            self._sqs.receive_message(
                QueueUrl=mapping.queue_url,
                MaxNumberOfMessages=min(10, mapping.batch_size - len(batch)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
        )
        return messages

    def _deliver(self, mapping: SqsMapping, batch: list[dict[str, Any]]) -> tuple[int, int]:
        event = {"Records": [_record(message, mapping.queue_arn) for message in batch]}
        try:
            response = self._runtime.invoke(mapping.function_id, event)
        except Exception:
            log.exception("%s failed a batch of %d from %s", mapping.function_id, len(batch), mapping.queue)
            failed_ids = {m["MessageId"] for m in batch}
        else:
            failed_ids = _reported_failures(response, batch) if mapping.report_failures else set()
        done = [m for m in batch if m["MessageId"] not in failed_ids]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            entries: list[Any] = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            with self._runtime.acting_as(mapping.function_id):
                self._sqs.delete_message_batch(QueueUrl=mapping.queue_url, Entries=entries)
        visible_at = self._now() + timedelta(seconds=mapping.visibility_timeout)
        self._failed.setdefault(mapping.queue_url, []).extend(
            _Released(m["ReceiptHandle"], visible_at) for m in batch if m["MessageId"] in failed_ids
        )
        return len(done), len(batch) - len(done)

    def _release_due(self) -> None:
        now = self._now()
        for url, entries in self._failed.items():
            due = [e for e in entries if e.visible_at <= now]
            for entry in due:
                # ClientError: visible again in real time and received since; nothing to release.
                with contextlib.suppress(ClientError):
                    self._sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=entry.receipt_handle, VisibilityTimeout=0
                    )
            self._failed[url] = [e for e in entries if e.visible_at > now]

    def _count(self, url: str) -> int:
        names: list[Any] = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes: dict[Any, str] = dict(
            self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"])
        return sum(int(attributes.get(name, 0)) for name in names)


def _reported_failures(response: Any, batch: list[dict[str, Any]]) -> set[str]:
    """Lambda's reading of a partial batch response: anything malformed fails the whole batch."""
    ids = {m["MessageId"] for m in batch}
    if response is None:
        return set()
    if not isinstance(response, dict):
        return ids
    failures = response.get("batchItemFailures") or []
    if not isinstance(failures, list):
        return ids
    reported = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in ids:
            return ids
        reported.add(identifier)
    return reported


def _record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS message as the Lambda event source mapping hands it over."""
    attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(value["BinaryValue"]).decode() if "BinaryValue" in value else None,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": [base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])],
            "dataType": value["DataType"],
        }
        attributes[name] = {k: v for k, v in attributes[name].items() if v is not None}
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": message.get("Attributes", {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record
