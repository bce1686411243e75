"""`ops recover-secret`: store the new LWA client secret that ended in the notifications dead-letter queue.

Amazon sends a rotated client secret once, in an APPLICATION_OAUTH_CLIENT_NEW_SECRET notification; the
token refresher stores it before acknowledging the message, so a message whose storing failed five times
rests in `notifications_dlq` (alarmed) while the old secret's last days run out. This command:

1. reads the DLQ (each message hidden from other readers while it runs, released again at the end unless
   deleted) and picks the newest client-secret notification of the stack's client id;
2. asks LWA for a client_credentials token (scope `sellingpartnerapi::notifications`, discarded at once)
   with that secret, as the product's grantless calls do: a secret LWA refuses is never stored;
3. stores it exactly as the token refresher does (`seller_insights.lwa_secret.ClientSecretStore.store_new`:
   a no-op when it is already stored or a later secret has been stored since);
4. deletes that message and the older client-secret notifications it supersedes from the DLQ; any other
   message (an expiry notice, an unreadable body) stays for `ops redrive`.

`--dry-run` reads and releases, and says what would be stored and deleted; it neither calls LWA nor writes.
The secret is never printed: the output names notifications by id and times only. JSON on stdout, progress
on stderr. Exit codes: 0 done (or nothing to recover), 1 LWA refused or could not verify the secret
(nothing stored, nothing deleted), 3 AWS refused a call (the OpsSupportRole's grant).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import ClientError

from ops.api import OpsError
from ops.fleet import Fleet

if TYPE_CHECKING:
    from seller_insights.credentials import LwaClientCredentials
    from seller_insights.lwa_secret import ClientSecretStore, NewClientSecret, Notification

DLQ_PURPOSE = "notifications_dlq"
SECRET_PURPOSE = "lwa_client"  # noqa: S105 - a purpose tag, not a password
# How long the DLQ's messages stay hidden from other readers while the command runs (released at the end).
READ_VISIBILITY_SECONDS = 300
MAX_MESSAGES = 1000  # a DLQ holding more is not a lost secret; `ops redrive` is the tool then
VERIFY_SCOPE = "sellingpartnerapi::notifications"
SHARED_LAYER = Path(__file__).resolve().parents[1] / "layers" / "shared" / "python"


def register(commands: Any) -> None:
    from ops.cli import add_fleet_options  # noqa: PLC0415 - ops.cli imports this module

    text = "store the new LWA client secret from the notifications dead-letter queue"
    parser = commands.add_parser("recover-secret", help=text, description=text)
    add_fleet_options(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="only say what would be stored and deleted (no LWA call, nothing written)")
    parser.set_defaults(fleet_command=run)


def shared_layer_on_path() -> None:
    """The product's own code (seller_insights) stores the secret, as the token refresher does."""
    if str(SHARED_LAYER) not in sys.path:
        sys.path.insert(0, str(SHARED_LAYER))


@dataclass
class DeadLetter:
    message_id: str
    receipt: str
    notification: Notification | None  # None: not a readable application notification
    new_secret: NewClientSecret | None = None  # for a NEW_SECRET notification


def run(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    shared_layer_on_path()
    from seller_insights.lwa_secret import ClientSecretStore  # noqa: PLC0415

    sqs = fleet.client("sqs")
    dlq = fleet.queue_url(DLQ_PURPOSE)
    store = ClientSecretStore(fleet.client("secretsmanager"), fleet.secret_arn(SECRET_PURPOSE))
    letters: list[DeadLetter] = []
    try:
        letters = read_dead_letters(sqs, dlq)
        print(f"read {len(letters)} message(s) from {DLQ_PURPOSE}", file=stderr)
        result = recover(fleet, store, sqs, dlq, letters, dry_run=args.dry_run, stderr=stderr)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        operation = getattr(exc, "operation_name", "?")
        raise OpsError(f"AWS refused {operation} ({code}): assume the OpsSupportRole (with MFA or through the "
                       "Identity Center permission set) for this stack", exit_code=3) from None
    finally:
        release(sqs, dlq, [letter for letter in letters if letter.receipt])
    print(json.dumps(result, indent=2, sort_keys=True), file=stdout)
    return 0


def recover(fleet: Fleet, store: ClientSecretStore, sqs: Any, dlq: str, letters: list[DeadLetter], *,
            dry_run: bool, stderr: TextIO) -> dict[str, Any]:
    current = store.read()
    ours = [letter for letter in letters
            if letter.new_secret is not None and letter.new_secret.client_id == current.get("client_id")]
    left = len(letters) - len(ours)
    if not ours:
        print("no client-secret notification of this stack's client id in the DLQ: nothing to recover", file=stderr)
        return {"found": 0, "outcome": "nothing to recover", "deleted": [], "left": left, "dry_run": dry_run}
    newest = max(ours, key=_recency)
    assert newest.new_secret is not None and newest.notification is not None
    standing = store.standing(newest.new_secret)
    result: dict[str, Any] = {
        "found": len(ours),
        "notification_id": newest.notification.notification_id,
        "event_time": newest.notification.event_time,
        "new_secret_expires_at": newest.new_secret.expires_at,
        "left": left,
        "dry_run": dry_run,
    }
    delete_ids = [letter.notification.notification_id for letter in ours if letter.notification is not None]
    if dry_run:
        would = {"store": "verify with LWA, then store", "duplicate": "nothing to store: already the current secret",
                 "superseded": "nothing to store: a later secret is stored"}[standing]
        return {**result, "would": would, "would_delete": delete_ids, "deleted": []}
    verified = False
    if standing in ("store", "duplicate"):
        verify(fleet, current, newest.new_secret)
        verified = True
        print("LWA accepted the new secret", file=stderr)
    outcome = store.store_new(newest.new_secret, now=_now(fleet)) if standing == "store" else standing
    print(f"outcome: {outcome}", file=stderr)
    for letter in ours:
        sqs.delete_message(QueueUrl=dlq, ReceiptHandle=letter.receipt)
        letter.receipt = ""  # deleted: nothing to release
    return {**result, "outcome": outcome, "verified": verified, "deleted": delete_ids}


def read_dead_letters(sqs: Any, dlq: str) -> list[DeadLetter]:
    """Every message of the DLQ (up to MAX_MESSAGES), each hidden until released or deleted."""
    shared_layer_on_path()
    from seller_insights.errors import MalformedNotification  # noqa: PLC0415
    from seller_insights.lwa_secret import NEW_SECRET_TYPE, NewClientSecret, Notification  # noqa: PLC0415

    letters: list[DeadLetter] = []
    while len(letters) < MAX_MESSAGES:
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10,
                                       VisibilityTimeout=READ_VISIBILITY_SECONDS).get("Messages", [])
        if not messages:
            return letters
        for message in messages:
            letter = DeadLetter(message["MessageId"], message["ReceiptHandle"], None)
            try:
                letter.notification = Notification.parse(message["Body"])
                if letter.notification.notification_type == NEW_SECRET_TYPE:
                    letter.new_secret = NewClientSecret.from_notification(letter.notification)
            except MalformedNotification:
                pass  # not ours to judge: it stays in the DLQ
            letters.append(letter)
    return letters


def release(sqs: Any, dlq: str, letters: list[DeadLetter]) -> None:
    """Make what was read and not deleted visible again at once."""
    for start in range(0, len(letters), 10):
        entries = [{"Id": str(n), "ReceiptHandle": letter.receipt, "VisibilityTimeout": 0}
                   for n, letter in enumerate(letters[start:start + 10])]
        sqs.change_message_visibility_batch(QueueUrl=dlq, Entries=entries)


def verify(fleet: Fleet, current: dict[str, Any], new: NewClientSecret) -> None:
    """A client_credentials grant with the new secret at the LWA endpoint (the emulator's, locally)."""
    shared_layer_on_path()
    from seller_insights.credentials import LwaClientCredentials  # noqa: PLC0415
    from seller_insights.endpoints import amazon_url  # noqa: PLC0415
    from seller_insights.errors import LwaError, LwaInvalidClient  # noqa: PLC0415
    from seller_insights.lwa import LwaClient  # noqa: PLC0415
    from seller_insights.marketplaces import LWA_TOKEN_URL  # noqa: PLC0415

    credentials = LwaClientCredentials(client_id=str(current["client_id"]), client_secret=new.value,
                                       application_id=str(current.get("application_id", "")))
    override = _local_info(fleet).get("amazon") if fleet.local_api else None
    client = LwaClient(amazon_url(LWA_TOKEN_URL, override), _Only(credentials))
    try:
        client.client_credentials(VERIFY_SCOPE)
    except LwaInvalidClient:
        raise OpsError(f"LWA refused the secret of notification {new.notification_id} (invalid_client): it "
                       "was not stored and the message stays in the DLQ. A later rotation (API or Developer "
                       "Console) may have replaced it: check the app's LWA credentials in Developer Central",
                       exit_code=1) from None
    except LwaError as exc:
        raise OpsError(f"LWA could not verify the new secret ({exc.code}): nothing was stored; run the "
                       "command again", exit_code=1) from None


class _Only:
    """A credentials source that always gives the one secret under test (no re-read, no previous secret)."""

    def __init__(self, credentials: LwaClientCredentials) -> None:
        self._credentials = credentials

    def __call__(self, force_fetch: bool = False) -> LwaClientCredentials:
        return self._credentials


def _recency(letter: DeadLetter) -> tuple[datetime, datetime]:
    from seller_insights.lwa_secret import parse_time  # noqa: PLC0415

    def moment(value: str | None) -> datetime:
        try:
            return parse_time(value) if value else datetime.min.replace(tzinfo=UTC)
        except ValueError:
            return datetime.min.replace(tzinfo=UTC)

    assert letter.new_secret is not None
    return moment(letter.new_secret.expires_at), moment(letter.new_secret.event_time)


def _local_info(fleet: Fleet) -> dict[str, Any]:
    with urllib.request.urlopen(f"{fleet.local_api}/_local/stack", timeout=30) as answer:  # noqa: S310
        info: dict[str, Any] = json.loads(answer.read())
    return info


def _now(fleet: Fleet) -> datetime:
    """The product's time: the local stack's virtual clock there, else the wall clock."""
    if not fleet.local_api:
        return datetime.now(UTC)
    with urllib.request.urlopen(f"{fleet.local_api}/_local/clock", timeout=30) as answer:  # noqa: S310
        return datetime.fromisoformat(str(json.loads(answer.read())["now"]).replace("Z", "+00:00"))
