"""`ops redrive`'s receive/send/delete path against moto in-process (moto has no StartMessageMoveTask): the
source found from the redrive policy, every message moved exactly once, and on failures none lost or
duplicated; the notifications DLQ refused while it holds a new client secret."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops import queues
from ops.api import OpsError
from ops.fleet import Fleet, Resource


@pytest.fixture
def fleet():
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        resources = []
        for source in ("report_jobs", "notifications"):
            dlq_url = sqs.create_queue(QueueName=f"{source}_dlq")["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            source_url = sqs.create_queue(QueueName=source, Attributes={"RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
            resources += [Resource(f"{source}Dlq", "AWS::SQS::Queue", dlq_url, f"{source}_dlq"),
                          Resource(source, "AWS::SQS::Queue", source_url, source)]
        events = sqs.create_queue(QueueName="token_events_dlq")["QueueUrl"]
        resources.append(Resource("Events", "AWS::SQS::Queue", events, "token_events_dlq"))
        # As the local stack's fleet: no StartMessageMoveTask there (nor in moto), the batch path runs.
        yield Fleet("SellerInsights-test", "us-east-1", boto3.session.Session(region_name="us-east-1"), resources,
                    local_api="http://127.0.0.1:9")


def fill(fleet: Fleet, purpose: str, bodies: list[str]) -> None:
    for body in bodies:
        fleet.client("sqs").send_message(QueueUrl=fleet.queue_url(purpose), MessageBody=body)


def drained(fleet: Fleet, purpose: str) -> list[str]:
    sqs, url, bodies = fleet.client("sqs"), fleet.queue_url(purpose), []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(bodies)


def redrive(fleet: Fleet, queue: str, *extra: str) -> tuple[int, dict[str, Any]]:
    args = argparse.Namespace(queue=queue, count=None, yes=True)
    if "--count" in extra:
        args.count = int(extra[extra.index("--count") + 1])
    out = io.StringIO()
    code = queues.run(fleet, args, out, io.StringIO())
    return code, json.loads(out.getvalue())


def test_the_source_comes_from_the_redrive_policy_either_way(fleet: Fleet) -> None:
    for name in ("report_jobs_dlq", "report_jobs"):
        route = queues.find_route(fleet, name)
        assert (route.dlq, route.source) == ("report_jobs_dlq", "report_jobs")
    with pytest.raises(OpsError, match="nothing to redrive it to"):
        queues.find_route(fleet, "token_events_dlq")
    with pytest.raises(OpsError, match="no queue 'nope'"):
        queues.find_route(fleet, "nope")


def test_every_message_moves_once_and_count_limits(fleet: Fleet) -> None:
    bodies = [json.dumps({"jobs": [{"job_id": f"{n:032x}"}]}) for n in range(23)]
    fill(fleet, "report_jobs_dlq", bodies)

    code, summary = redrive(fleet, "report_jobs_dlq", "--count", "12")
    assert code == 0 and summary["moved"] == 12 and summary["path"] == "receive-send-delete"
    code, summary = redrive(fleet, "report_jobs")  # the rest, named by the source queue
    assert code == 0 and summary["moved"] == 11

    assert drained(fleet, "report_jobs") == sorted(bodies)
    assert drained(fleet, "report_jobs_dlq") == []


class RefusingSends:
    """SQS refusing some entries of a send (throttling, a too-large message...)."""

    def __init__(self, sqs: Any, refuse: set[str]) -> None:
        self._sqs = sqs
        self._refuse = refuse

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [e for e in Entries if e["MessageBody"] not in self._refuse]
        answer = self._sqs.send_message_batch(QueueUrl=QueueUrl, Entries=kept) if kept else {}
        return {"Successful": answer.get("Successful", []),
                "Failed": [{"Id": e["Id"], "Code": "Throttled", "SenderFault": False}
                           for e in Entries if e["MessageBody"] in self._refuse]}


class FailingDeletes:
    def __init__(self, sqs: Any, failures: int) -> None:
        self._sqs = sqs
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def delete_message_batch(self, **request: Any) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            return {"Successful": [], "Failed": [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False}
                                                 for e in request["Entries"]]}
        return dict(self._sqs.delete_message_batch(**request))


def test_a_refused_send_leaves_the_message_in_the_dlq_at_once(fleet: Fleet) -> None:
    bodies = [f"message {n}" for n in range(5)]
    fill(fleet, "report_jobs_dlq", bodies)
    route = queues.find_route(fleet, "report_jobs_dlq")

    result = queues.BatchMover(RefusingSends(fleet.client("sqs"), {"message 3"}), route).move(5)

    assert result == {"moved": 4, "not_sent": 1, "not_deleted": 0, "refused": 0}
    assert drained(fleet, "report_jobs") == sorted(set(bodies) - {"message 3"})
    # Visible again at once (its visibility reset to 0), not after the two-minute timeout: never lost.
    assert drained(fleet, "report_jobs_dlq") == ["message 3"]


def test_deletions_are_retried_so_nothing_is_duplicated(fleet: Fleet) -> None:
    bodies = [f"message {n}" for n in range(3)]
    fill(fleet, "report_jobs_dlq", bodies)
    route = queues.find_route(fleet, "report_jobs_dlq")
    sqs = FailingDeletes(fleet.client("sqs"), failures=2)

    result = queues.BatchMover(sqs, route).move(3)

    assert result == {"moved": 3, "not_sent": 0, "not_deleted": 0, "refused": 0}
    assert drained(fleet, "report_jobs") == bodies
    assert drained(fleet, "report_jobs_dlq") == []


def test_the_notifications_dlq_is_refused_while_it_holds_a_new_secret(fleet: Fleet) -> None:
    notice = json.dumps({"notificationType": "APPLICATION_OAUTH_CLIENT_NEW_SECRET",
                         "payload": {"applicationOAuthClientNewSecret": {"newClientSecret": "x" * 10}}})
    fill(fleet, "notifications_dlq", [notice])

    with pytest.raises(OpsError, match="ops recover-secret") as refused:
        redrive(fleet, "notifications_dlq")

    assert refused.value.exit_code == 4
    assert drained(fleet, "notifications") == []
    assert drained(fleet, "notifications_dlq") == [notice]  # left where recover-secret finds it
