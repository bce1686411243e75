"""`ops redrive QUEUE`: move dead-lettered messages back to the queue they came from.

    python -m ops redrive report_jobs_dlq [--count N] [--yes] [--stage S | --local URL]

QUEUE is a dead-letter queue's purpose (`report_jobs_dlq`) or its source queue's (`report_jobs`); the
source is the queue whose redrive policy names the DLQ. The command says how many messages it will move
and asks before it does (`--yes`: no question). It prints a JSON summary on stdout, progress on stderr.

Two ways, chosen per run:
- SQS StartMessageMoveTask (AWS, every message of the DLQ, no `--count`): SQS moves them itself.
- Receive, send, delete, ten at a time (`--count N`, the local stack and moto, which do not implement
  StartMessageMoveTask, and the notifications DLQ): each batch is sent to the source first and deleted from
  the DLQ only once sent, so a failure never loses a message: what was not sent is made visible again
  in the DLQ at once; a message sent whose deletion still fails after retries is reported (it is then in
  both queues once; every consumer re-reads its item and skips what is done, so a copy costs a read).

The notifications DLQ may hold APPLICATION_OAUTH_CLIENT_NEW_SECRET notifications, the only copy of a new
LWA client secret: redriving it is refused when it does (messages are read, never printed) and
`ops recover-secret` stores the secret from there. Queues without a source (the failed-events queues of
schedules and asynchronous invocations) are refused: fire the schedule again instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from botocore.exceptions import ClientError

from ops.api import OpsError
from ops.fleet import Fleet

BATCH = 10
VISIBILITY_SECONDS = 120  # a received batch is sent and deleted well within this
DELETE_ATTEMPTS = 3
NOTIFICATIONS_DLQ = "notifications_dlq"
NEW_SECRET_TYPE = "APPLICATION_OAUTH_CLIENT_NEW_SECRET"  # noqa: S105 - a notification type name
UNSUPPORTED = {"UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", "InvalidAction"}


def register(commands: Any) -> None:
    from ops.cli import add_fleet_options  # noqa: PLC0415 (ops.cli imports this module)

    text = "move a dead-letter queue's messages back to their source queue"
    parser = commands.add_parser("redrive", help=text, description=text)
    parser.add_argument("queue", metavar="QUEUE", help="a DLQ purpose (report_jobs_dlq) or its source queue's")
    parser.add_argument("--count", type=int, help="move at most this many (default: all)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_fleet_options(parser)
    parser.set_defaults(fleet_command=run)


@dataclass(frozen=True)
class Route:
    dlq: str  # purposes
    source: str
    dlq_url: str
    source_url: str
    dlq_arn: str
    source_arn: str


def run(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    if args.count is not None and args.count < 1:
        raise OpsError("--count must be at least 1", exit_code=2)
    route = find_route(fleet, args.queue)
    waiting = int(_attributes(fleet, route.dlq_url, "ApproximateNumberOfMessages")["ApproximateNumberOfMessages"])
    count = waiting if args.count is None else min(args.count, waiting)
    if count == 0:
        print(json.dumps({"queue": route.dlq, "to": route.source, "moved": 0}), file=stdout)
        print(f"{route.dlq} is empty", file=stderr)
        return 0
    print(f"{count} of {waiting} message(s) in {route.dlq} will move to {route.source}", file=stderr)
    if not args.yes and not confirm(stderr):
        print("nothing moved", file=stderr)
        return 1
    whole = args.count is None or args.count >= waiting
    if whole and route.dlq != NOTIFICATIONS_DLQ and fleet.local_api is None:
        try:
            handle = fleet.client("sqs").start_message_move_task(SourceArn=route.dlq_arn,
                                                                 DestinationArn=route.source_arn)["TaskHandle"]
            print(json.dumps({"queue": route.dlq, "to": route.source, "moving": count,
                              "path": "StartMessageMoveTask", "task_handle": handle}), file=stdout)
            print("SQS moves them now; `ops status` shows the depths", file=stderr)
            return 0
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") not in UNSUPPORTED:
                raise _refused(f"start moving {route.dlq}", exc) from None
    mover = BatchMover(fleet.client("sqs"), route, refuse_new_secrets=route.dlq == NOTIFICATIONS_DLQ)
    result = mover.move(count)
    print(json.dumps({"queue": route.dlq, "to": route.source, "path": "receive-send-delete", **result}), file=stdout)
    print(f"moved {result['moved']} message(s)", file=stderr)
    if result["refused"]:
        raise OpsError(f"{route.dlq} holds a new LWA client secret notification: it was left there; store the "
                       "secret with `ops recover-secret` (redriving it is refused)", exit_code=4)
    return 0 if not result["not_deleted"] else 1


def confirm(stderr: TextIO) -> bool:
    if not sys.stdin.isatty():
        raise OpsError("no terminal to confirm on: pass --yes", exit_code=2)
    print("move them? [y/N] ", end="", file=stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def find_route(fleet: Fleet, purpose: str) -> Route:
    """The DLQ and its source queue (the queue whose redrive policy names the DLQ)."""
    queues = fleet.queues()
    if purpose not in queues:
        raise OpsError(f"no queue {purpose!r}; the stack's queues: {', '.join(sorted(queues))}", exit_code=2)
    arns = {name: _attributes(fleet, url, "QueueArn")["QueueArn"] for name, url in queues.items()}
    dead_letter_of: dict[str, str] = {}
    for name, url in queues.items():
        policy = _attributes(fleet, url, "RedrivePolicy").get("RedrivePolicy")
        if policy:
            target = json.loads(policy)["deadLetterTargetArn"]
            dead_letter_of[name] = next(q for q, arn in arns.items() if arn == target)
    if purpose in dead_letter_of:
        source, dlq = purpose, dead_letter_of[purpose]
    else:
        sources = [name for name, target in dead_letter_of.items() if target == purpose]
        if not sources:
            raise OpsError(f"{purpose} is no queue's dead-letter queue (it catches failed schedule events or "
                           "asynchronous invocations): there is nothing to redrive it to; fire the schedule "
                           "again or look at its messages", exit_code=2)
        (source,), dlq = sources, purpose
    return Route(dlq, source, queues[dlq], queues[source], arns[dlq], arns[source])


class BatchMover:
    """Receive a batch from the DLQ, send it to the source, delete what was sent; repeat up to `count`."""

    def __init__(self, sqs: Any, route: Route, *, refuse_new_secrets: bool = False) -> None:
        self._sqs = sqs
        self._route = route
        self._refuse_new_secrets = refuse_new_secrets

    def move(self, count: int) -> dict[str, int]:
        moved = not_sent = not_deleted = 0
        refused = False
        while moved + not_deleted < count:
            messages = self._sqs.receive_message(
                QueueUrl=self._route.dlq_url, MaxNumberOfMessages=min(BATCH, count - moved - not_deleted),
                VisibilityTimeout=VISIBILITY_SECONDS, MessageAttributeNames=["All"]).get("Messages", [])
            if not messages:
                break
            if self._refuse_new_secrets and any(_carries_new_secret(m["Body"]) for m in messages):
                self._release(messages)
                refused = True
                break
            sent, failed = self._send(messages)
            self._release(failed)
            not_sent += len(failed)
            gone = self._delete(sent)
            moved += gone
            not_deleted += len(sent) - gone
            if failed:
                break  # SQS refused some: stop rather than loop over the same messages
        return {"moved": moved, "not_sent": not_sent, "not_deleted": not_deleted, "refused": int(refused)}

    def _send(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        entries = []
        for index, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        try:
            answer = self._sqs.send_message_batch(QueueUrl=self._route.source_url, Entries=entries)
        except ClientError:
            return [], messages
        failed_ids = {failure["Id"] for failure in answer.get("Failed") or []}
        return ([m for i, m in enumerate(messages) if str(i) not in failed_ids],
                [m for i, m in enumerate(messages) if str(i) in failed_ids])

    def _delete(self, messages: list[dict[str, Any]]) -> int:
        pending = {str(i): m["ReceiptHandle"] for i, m in enumerate(messages)}
        for _ in range(DELETE_ATTEMPTS):
            if not pending:
                break
            try:
                answer = self._sqs.delete_message_batch(
                    QueueUrl=self._route.dlq_url,
                    Entries=[{"Id": key, "ReceiptHandle": handle} for key, handle in pending.items()])
            except ClientError:
                continue
            pending = {f["Id"]: pending[f["Id"]] for f in answer.get("Failed") or []}
        return len(messages) - len(pending)

    def _release(self, messages: list[dict[str, Any]]) -> None:
        """Visible again in the DLQ at once (not after the visibility timeout)."""
        if messages:
            self._sqs.change_message_visibility_batch(
                QueueUrl=self._route.dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                         for i, m in enumerate(messages)])


def _carries_new_secret(body: str) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("notificationType") == NEW_SECRET_TYPE


def _attributes(fleet: Fleet, url: str, name: str) -> dict[str, str]:
    try:
        attributes: dict[str, str] = fleet.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=[name]).get("Attributes", {})
    except ClientError as exc:
        raise _refused(f"read the queue {url.rsplit('/', 1)[-1]}", exc) from None
    return attributes


def _refused(what: str, exc: ClientError) -> OpsError:
    code = exc.response.get("Error", {}).get("Code", "")
    return OpsError(f"SQS refused to {what} ({code}): assume the OpsSupportRole with MFA", exit_code=3)
