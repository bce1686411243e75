"""Incident response commands (docs/incident-response.md).

    python -m ops incident contain [--reason TEXT] [--settle SECONDS]
        close consent (maintenance page), block every use of refresh tokens, disable the schedules, empty
        the shared access-token cache; records what it changed in the switch item and the audit table
    python -m ops incident restore [--reason TEXT]
        undo exactly what contain changed (the rules it found ENABLED are enabled again, the switch removed)
    python -m ops incident revoke-all --yes [--reason TEXT]
        rotate the LWA client secret (the token refresher asks Amazon; the new secret arrives by notification
        and is stored like any rotation), then make every ACTIVE connection due for re-authorization now
    python -m ops incident affected --since T [--until T] [--detected-at T] [--draft FILE]
        CSV on stdout of the sellers whose data or tokens were reachable in the window, with their contact
        fields; a draft of the notification to Amazon (markdown) to --draft FILE, else stderr

Every command records one item in the audit table: who (STS GetCallerIdentity's ARN), when, what, counts
and the operator's reason; never a token, a secret or a seller's contact data. Contact data goes only to
where the operator asked (stdout, or the draft file) and never to a log.

`contain` and `restore` are idempotent: a second contain changes nothing it recorded already (rules it
disabled stay recorded as ENABLED before the incident); a restore without a containment does nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from ops.api import OpsError
from ops.fleet import Fleet

_LAYER = Path(__file__).resolve().parents[1] / "layers" / "shared" / "python"
if str(_LAYER) not in sys.path:
    sys.path.insert(0, str(_LAYER))

from seller_insights.app_gate import CACHE_SECONDS, CONSENT_CLOSED, GATE_KEY, REFRESH_BLOCKED  # noqa: E402
from seller_insights.data_rights import AUDIT_RETENTION_MONTHS, CONTACT_FIELDS, PROFILE_SK, add_months  # noqa: E402

AMAZON_SECURITY = "security@amazon.com"
NOTIFY_AMAZON_WITHIN_HOURS = 24
# How long contain waits after closing the switch before it empties the token cache: the switch is read at
# most every CACHE_SECONDS, and a refresh that read it open just before may still store a token.
SETTLE_SECONDS = CACHE_SECONDS + 10
REASON_LIMIT = 500
ROTATE_TASK = {"task": "rotate-client-secret"}
TOKEN_REFRESHER_PURPOSE = "token_refresher"  # noqa: S105 - a purpose tag
CSV_COLUMNS = ("seller_id", "region", "status", "marketplace", "connected_at", "tokens_held_in_window",
               "revoked_at", "purge_after", *CONTACT_FIELDS)
# Connection attributes `affected` reads (never a token, sealed or not).
_CONNECTION_PROJECTION = ("pk", "sk", "#status", "#region", "marketplace", "created_at", "consented_at",
                          "revoked_at", "updated_at", "purge_after", *CONTACT_FIELDS)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ops.cli import add_fleet_options  # noqa: PLC0415 - ops.cli imports this module

    text = "incident response: contain, restore, revoke-all, affected (docs/incident-response.md)"
    incident = commands.add_parser("incident", help=text, description=text)
    actions = incident.add_subparsers(dest="incident_command", required=True, metavar="ACTION")
    helps = {
        "contain": "close consent, block refresh tokens, stop the schedules, empty the access-token cache",
        "restore": "undo exactly what contain changed",
        "revoke-all": "rotate the LWA client secret and ask every connected seller to authorize again",
        "affected": "the sellers reachable in a window (CSV on stdout) and a draft notification to Amazon",
    }
    runs = {"contain": contain, "restore": restore, "revoke-all": revoke_all, "affected": affected}
    for name, help_text in helps.items():
        sub = actions.add_parser(name, help=help_text, description=help_text)
        add_fleet_options(sub)
        if name != "affected":
            sub.add_argument("--reason", default="",
                             help="why (kept in the audit record; no secrets, no personal data)")
        if name == "contain":
            sub.add_argument("--settle", type=float, default=SETTLE_SECONDS, metavar="SECONDS",
                             help=f"wait this long before emptying the token cache (default {SETTLE_SECONDS})")
        if name == "revoke-all":
            sub.add_argument("--yes", action="store_true", help="confirm: this rotates the client secret")
        if name == "affected":
            sub.add_argument("--since", required=True, help="start of the window (ISO 8601, UTC if no offset)")
            sub.add_argument("--until", help="end of the window (default: now)")
            sub.add_argument("--detected-at", help="when the incident was detected (default: now): the draft's "
                                                   "24-hour deadline counts from it")
            sub.add_argument("--draft", help="write the Amazon notification draft here (default: stderr)")
        sub.set_defaults(fleet_command=runs[name])


# --- the pieces ----------------------------------------------------------------------------------


@dataclass
class Incident:
    """The stack's incident state: its connections table (the switch lives there), audit table and rules."""

    fleet: Fleet
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def connections(self) -> str:
        return self.fleet.table("connections")

    def gate(self) -> dict[str, Any] | None:
        item = self._dynamodb_call("get_item", TableName=self.connections, Key=_typed(GATE_KEY), ConsistentRead=True)
        return _plain(item["Item"]) if "Item" in item else None

    def operator(self) -> str:
        try:
            return str(self.fleet.client("sts").get_caller_identity()["Arn"])
        except (ClientError, BotoCoreError) as exc:
            raise OpsError(f"STS could not name your identity ({type(exc).__name__}): check your credentials",
                           exit_code=3) from None

    def schedule_rules(self) -> dict[str, str]:
        """Every schedule rule of the stack: name -> state (ENABLED/DISABLED)."""
        events = self.fleet.client("events")
        found = {}
        for rule in self.fleet.of_type("AWS::Events::Rule"):
            try:
                described = events.describe_rule(Name=rule.physical_id)
            except ClientError as exc:
                raise OpsError(f"EventBridge refused DescribeRule on {rule.physical_id} "
                               f"({_code(exc)}): does your role allow it?", exit_code=3) from None
            if described.get("ScheduleExpression"):
                found[rule.physical_id] = str(described.get("State", "ENABLED"))
        return found

    def items(self, projection: tuple[str, ...], filter_expression: str,
              values: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The connections table's items that match, page by page (a Scan: operators only)."""
        names = {token: token[1:] for token in re.findall(r"#\w+", " ".join((*projection, filter_expression)))}
        request: dict[str, Any] = {
            "TableName": self.connections, "ProjectionExpression": ", ".join(projection),
            "FilterExpression": filter_expression, "ExpressionAttributeValues": _typed(values),
        }
        if names:
            request["ExpressionAttributeNames"] = names
        while True:
            page = self._dynamodb_call("scan", **request)
            for item in page.get("Items", []):
                yield _plain(item)
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def audit(self, action: str, *, operator: str, reason: str, detail: dict[str, int],
              changes: dict[str, Any] | None = None, outcome: str = "done") -> str:
        """One record in the audit table (the layout of seller_insights.data_rights.AuditLog, no seller key)."""
        record_id = f"incident#{self.now.strftime('%Y%m%dT%H%M%SZ')}#{action}#{secrets.token_hex(4)}"
        item: dict[str, Any] = {
            "id": record_id, "type": f"incident_{action.replace('-', '_')}",
            "received_at": _iso(self.now), "completed_at": _iso(datetime.now(UTC)), "outcome": outcome,
            "principal_arn": operator, "detail": {k: int(v) for k, v in detail.items()},
            "expires_at": int(add_months(self.now, AUDIT_RETENTION_MONTHS).timestamp()),
        }
        if reason:
            item["reason"] = reason[:REASON_LIMIT]
        if changes:
            item["changes"] = changes
        self._dynamodb_call("put_item", TableName=self.fleet.table("audit"), Item=_typed(item),
                            ConditionExpression="attribute_not_exists(id)")
        return record_id

    def _dynamodb_call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.fleet.client("dynamodb"), operation)(**kwargs)
        except ClientError as exc:
            raise OpsError(f"DynamoDB refused {operation} on {kwargs.get('TableName')} ({_code(exc)}): does your "
                           "role allow it (the OpsSupportRole, with MFA)?", exit_code=3) from None


# --- contain / restore ---------------------------------------------------------------------------


def contain(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    incident = Incident(fleet)
    operator = incident.operator()
    existing = incident.gate()
    recorded: dict[str, str] = dict((existing or {}).get("rules") or {})
    incident_id = str((existing or {}).get("incident_id") or f"incident-{incident.now.strftime('%Y%m%dT%H%M%SZ')}")
    rules = incident.schedule_rules()
    # Prior states: what a first contain found; a second keeps the first's record (it found them DISABLED).
    prior = {name: recorded.get(name, state) for name, state in rules.items()}
    gate = {**GATE_KEY, "consent": CONSENT_CLOSED, "refresh": REFRESH_BLOCKED, "incident_id": incident_id,
            "contained_at": str((existing or {}).get("contained_at") or _iso(incident.now)),
            "contained_by": str((existing or {}).get("contained_by") or operator), "rules": prior}
    # The switch first: consent closes and refresh tokens are blocked before anything else happens.
    incident._dynamodb_call("put_item", TableName=incident.connections, Item=_typed(gate))
    print(f"consent closed and refresh tokens blocked (within {CACHE_SECONDS} s in every container)", file=stderr)
    events = fleet.client("events")
    disabled: list[str] = []
    try:
        for name, state in sorted(rules.items()):
            if state != "DISABLED":
                _events_call(events, "disable_rule", name)
                disabled.append(name)
        print(f"schedules disabled: {len(disabled)} (of {len(rules)})", file=stderr)
        if args.settle > 0:
            print(f"waiting {args.settle:g} s for refreshes already under way to finish", file=stderr)
            time.sleep(args.settle)
        deleted = delete_access_tokens(incident)
    except OpsError:
        # A partial containment is audited too: what was done before the refusal (the switch holds the rules'
        # prior states, so restore undoes exactly this).
        _audit_failure(incident, "contain", operator=operator, reason=args.reason, stderr=stderr,
                       detail={"rules_disabled": len(disabled)},
                       changes={"incident_id": incident_id, "rules_disabled": disabled})
        raise
    print(f"access tokens deleted from the shared cache: {deleted}", file=stderr)
    record = incident.audit("contain", operator=operator, reason=args.reason,
                            detail={"rules_disabled": len(disabled), "access_tokens_deleted": deleted},
                            changes={"incident_id": incident_id, "rules_disabled": disabled})
    result = {"incident_id": incident_id, "consent": "closed", "refresh_tokens": "blocked",
              "schedules_disabled": disabled, "schedules_found": len(rules), "access_tokens_deleted": deleted,
              "already_contained": existing is not None, "audit_record": record}
    print(json.dumps(result, indent=2, sort_keys=True), file=stdout)
    return 0


def delete_access_tokens(incident: Incident) -> int:
    """Every TOKEN# item (the shared access-token cache, seller_insights.tokens): a deleted token is fetched
    again only by a refresh, which the switch blocks."""
    client = incident.fleet.client("dynamodb")
    keys = [{"pk": item["pk"], "sk": item["sk"]}
            for item in incident.items(("pk", "sk"), "begins_with(sk, :token)", {":token": "TOKEN#"})]
    for start in range(0, len(keys), 25):
        pending: dict[str, Any] = {incident.connections: [{"DeleteRequest": {"Key": _typed(key)}}
                                                         for key in keys[start:start + 25]]}
        for _ in range(8):
            try:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            except ClientError as exc:
                raise OpsError(f"DynamoDB refused to delete cached tokens ({_code(exc)}); run contain again",
                               exit_code=3) from None
            if not pending:
                break
        else:
            raise OpsError("DynamoDB kept some token deletions unprocessed; run contain again")
    return len(keys)


def restore(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    incident = Incident(fleet)
    operator = incident.operator()
    gate = incident.gate()
    if gate is None:
        print("nothing to restore: no containment is in place", file=stderr)
        print(json.dumps({"restored": False, "contained": False}, indent=2), file=stdout)
        return 0
    events = fleet.client("events")
    enabled: list[str] = []
    try:
        for name, state in sorted((gate.get("rules") or {}).items()):
            if state == "ENABLED":
                _events_call(events, "enable_rule", name)
                enabled.append(name)
        print(f"schedules enabled again: {len(enabled)}", file=stderr)
        # Last: consent opens and refresh tokens are usable again (within CACHE_SECONDS in every container).
        incident._dynamodb_call("delete_item", TableName=incident.connections, Key=_typed(GATE_KEY),
                                ConditionExpression="incident_id = :id",
                                ExpressionAttributeValues=_typed({":id": gate["incident_id"]}))
    except OpsError:
        _audit_failure(incident, "restore", operator=operator, reason=args.reason, stderr=stderr,
                       detail={"rules_enabled": len(enabled)},
                       changes={"incident_id": gate["incident_id"], "rules_enabled": enabled})
        raise
    print(f"consent open and refresh tokens usable again (within {CACHE_SECONDS} s)", file=stderr)
    record = incident.audit("restore", operator=operator, reason=args.reason, detail={"rules_enabled": len(enabled)},
                            changes={"incident_id": gate["incident_id"], "rules_enabled": enabled})
    print(json.dumps({"restored": True, "incident_id": gate["incident_id"], "schedules_enabled": enabled,
                      "audit_record": record}, indent=2, sort_keys=True), file=stdout)
    return 0


def _audit_failure(incident: Incident, action: str, *, operator: str, reason: str, stderr: TextIO,
                   detail: dict[str, int], changes: dict[str, Any]) -> None:
    """The audit record of a command that stopped part way (outcome `failed`); the command's own error follows."""
    try:
        incident.audit(action, operator=operator, reason=reason, detail=detail, changes=changes, outcome="failed")
    except OpsError as exc:
        print(f"the audit record of this failed {action} could not be written either: {exc.message}", file=stderr)


def _events_call(events: Any, operation: str, name: str) -> None:
    try:
        getattr(events, operation)(Name=name)
    except ClientError as exc:
        raise OpsError(f"EventBridge refused {operation} on {name} ({_code(exc)}); what was done so far is "
                       "recorded: run the command again", exit_code=3) from None


# --- revoke-all ----------------------------------------------------------------------------------


def revoke_all(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    if not args.yes:
        print("revoke-all rotates the LWA client secret (Amazon keeps the old one valid only until the expiry its "
              "notification names) and makes every ACTIVE connection due for re-authorization now, so the daily "
              "re-authorization digest lists them for notice. Run again with --yes.", file=stderr)
        return 2
    incident = Incident(fleet)
    operator = incident.operator()
    active = [(item["pk"], item["sk"]) for item in incident.items(
        ("pk", "sk"), "begins_with(sk, :conn) AND #status = :active", {":conn": "CONN#", ":active": "ACTIVE"})]
    rotation = invoke_rotation(fleet)
    print(f"client secret rotation: {rotation}", file=stderr)
    now = _iso(incident.now)
    marked = 0
    client = fleet.client("dynamodb")
    for pk, sk in active:
        try:
            client.update_item(TableName=incident.connections, Key=_typed({"pk": pk, "sk": sk}),
                               UpdateExpression="SET reauthorization_due_at = :now",
                               ConditionExpression="#status = :active",
                               ExpressionAttributeNames={"#status": "status"},
                               ExpressionAttributeValues=_typed({":now": now, ":active": "ACTIVE"}))
            marked += 1
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":  # no longer ACTIVE: nothing to ask
                raise OpsError(f"DynamoDB refused to mark a connection ({_code(exc)}); {marked} marked so far: "
                               "run revoke-all again", exit_code=3) from None
    print(f"connections due for re-authorization now: {marked}", file=stderr)
    record = incident.audit("revoke-all", operator=operator, reason=args.reason,
                            detail={"connections_marked": marked}, changes={"rotation": rotation})
    print(json.dumps({"rotation": rotation, "connections_marked": marked, "audit_record": record,
                      "next": "the new secret arrives by notification and is stored by the token refresher "
                              "(ops status shows its age); the re-authorization digest lists the sellers to "
                              "notify; each seller's new consent replaces its refresh token"},
                     indent=2, sort_keys=True), file=stdout)
    return 0


def invoke_rotation(fleet: Fleet) -> str:
    """The token refresher's `rotate-client-secret` task: the product's own rotation (the operator never
    sees the secret). Deployed: Lambda Invoke; locally: the local stack's `POST /_local/invoke/{function}`."""
    function = fleet.by_purpose(TOKEN_REFRESHER_PURPOSE)
    if fleet.local_api is not None:
        request = urllib.request.Request(f"{fleet.local_api}/_local/invoke/{function.logical_id}",  # noqa: S310
                                         data=json.dumps(ROTATE_TASK).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - the local stack's URL
                result = json.loads(answer.read())
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise OpsError(f"the local stack did not run the rotation: {getattr(exc, 'reason', exc)}") from None
    else:
        try:
            answer = fleet.client("lambda").invoke(FunctionName=function.physical_id, Payload=json.dumps(ROTATE_TASK))
        except ClientError as exc:
            raise OpsError(f"Lambda refused to invoke the token refresher ({_code(exc)})", exit_code=3) from None
        result = json.loads(answer["Payload"].read() or b"{}")
        if answer.get("FunctionError"):
            result = {"FunctionError": answer["FunctionError"], "errorType": result.get("errorType")}
    if not isinstance(result, dict) or "FunctionError" in result or "rotation" not in result:
        error = result.get("errorType") if isinstance(result, dict) else None
        hint = ("rotateApplicationClientSecret was called less than a minute ago: try again in a minute"
                if error == "RetryLater" else "see the token refresher's log")
        raise OpsError(f"the rotation failed ({error or 'no answer'}): {hint}; nothing else was changed")
    return str(result["rotation"])


# --- affected ------------------------------------------------------------------------------------


def affected(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    incident = Incident(fleet)
    since = _moment(args.since, "--since")
    until = _moment(args.until, "--until") if args.until else incident.now
    detected = _moment(args.detected_at, "--detected-at") if args.detected_at else incident.now
    if until < since:
        raise OpsError("--until is before --since", exit_code=2)
    operator = incident.operator()
    contacts: dict[str, dict[str, str]] = {}
    rows = []
    for item in incident.items(_CONNECTION_PROJECTION, "begins_with(sk, :conn) OR sk = :profile",
                               {":conn": "CONN#", ":profile": PROFILE_SK}):
        seller = str(item["pk"]).removeprefix("SELLER#")
        if item["sk"] == PROFILE_SK:
            contacts[seller] = {name: str(item[name]) for name in CONTACT_FIELDS if name in item}
            continue
        row = reachable(item, since, until)
        if row is not None:
            rows.append({"seller_id": seller, **row})
    rows.sort(key=lambda row: (row["seller_id"], row["region"]))
    writer = csv.DictWriter(stdout, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **{name: contacts.get(row["seller_id"], {}).get(name, "") for name in CONTACT_FIELDS}})
    draft = amazon_draft(rows, contacts, since=since, until=until, detected=detected, now=incident.now)
    if args.draft:
        Path(args.draft).write_text(draft)
        print(f"draft of the notification to Amazon written to {args.draft}", file=stderr)
    else:
        print(draft, file=stderr)
    sellers = {row["seller_id"] for row in rows}
    incident.audit("affected", operator=operator, reason="", detail={
        "sellers": len(sellers), "connections": len(rows),
        "with_tokens": sum(1 for row in rows if row["tokens_held_in_window"] == "yes")},
        changes={"since": _iso(since), "until": _iso(until)})
    return 0


def reachable(item: dict[str, Any], since: datetime, until: datetime) -> dict[str, str] | None:
    """A connection's CSV row if its data or tokens existed in the window, else None. Its report data stays
    stored until its purge (the item goes last), so every connection made before `until` counts; its tokens
    count while it was ACTIVE in the window (revoked or removed tokens: until `revoked_at`/`updated_at`)."""
    connected = _when(item.get("created_at") or item.get("consented_at"))
    if connected is None or connected > until:
        return None
    status = str(item.get("status", ""))
    if status == "ACTIVE":
        tokens = True
    else:
        ended = _when(item.get("revoked_at") or item.get("updated_at"))
        tokens = ended is None or ended >= since
    return {"region": str(item.get("region") or str(item["sk"]).removeprefix("CONN#")), "status": status,
            "marketplace": str(item.get("marketplace", "")), "connected_at": _iso(connected),
            "tokens_held_in_window": "yes" if tokens else "no", "revoked_at": str(item.get("revoked_at", "")),
            "purge_after": str(item.get("purge_after", ""))}


def amazon_draft(rows: list[dict[str, str]], contacts: dict[str, dict[str, str]], *, since: datetime,
                 until: datetime, detected: datetime, now: datetime) -> str:
    """The notification to Amazon's security team, in markdown: counts only, never a seller's id or contact."""
    sellers = {row["seller_id"] for row in rows}
    with_tokens = {row["seller_id"] for row in rows if row["tokens_held_in_window"] == "yes"}
    regions = Counter(row["region"] for row in rows)
    deadline = detected.timestamp() + NOTIFY_AMAZON_WITHIN_HOURS * 3600
    by_region = ", ".join(f"{region}: {count}" for region, count in sorted(regions.items())) or "none"
    return "\n".join([
        "# Security incident notification (DRAFT: review before sending)",
        "",
        f"To: {AMAZON_SECURITY}",
        "Subject: Seller Insights (SP-API application) security incident notification",
        "",
        f"- Detected: {_iso(detected)}; Amazon's Data Protection Policy asks for this notice within "
        f"{NOTIFY_AMAZON_WITHIN_HOURS} hours, by {_iso(datetime.fromtimestamp(deadline, UTC))}.",
        f"- Window of exposure examined: {_iso(since)} to {_iso(until)} (draft made {_iso(now)}).",
        f"- Selling partners whose data or tokens were reachable: {len(sellers)} "
        f"({len(rows)} regional connections; by region: {by_region}).",
        f"- Of these, with LWA refresh tokens held in the window: {len(with_tokens)} "
        "(stored envelope-encrypted under a KMS key only the consent and token roles may use).",
        f"- With contact data stored (e-mail/name): {sum(1 for s in sellers if contacts.get(s))}.",
        "",
        "## What was reachable",
        "- Refresh tokens (sealed, KMS) and cached access tokens of the connections above.",
        "- Report data stored for those selling partners (S3, SSE-KMS), and their contact fields.",
        "",
        "## What we did",
        "- Containment: consent closed, refresh tokens blocked, schedules stopped, access-token cache emptied "
        "(ops incident contain; see the audit records).",
        "- [If applicable] LWA client secret rotated (ops incident revoke-all); sellers asked to re-authorize.",
        "",
        "## Still to fill in",
        "- Nature of the incident, how it was detected, root cause as known now.",
        "- Point of contact (name, role, phone, e-mail) for Amazon's security team.",
        "- Next update time.",
        "",
    ])


# --- helpers -------------------------------------------------------------------------------------


def _moment(value: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise OpsError(f"{option} must be an ISO 8601 date or time, e.g. 2026-11-30 or 2026-11-30T08:00Z",
                       exit_code=2) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return _moment(str(value), "a stored date")
    except OpsError:
        return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "error"))


def _typed(value: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer  # noqa: PLC0415

    serializer = TypeSerializer()
    return {key: serializer.serialize(item) for key, item in value.items()}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415

    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}
