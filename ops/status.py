"""`ops status`: the fleet at a glance.

    python -m ops status [--json] [--tokens-removed] [--stage S | --stack NAME | --local URL]

Connections by status and region, the worst report lag per type, consents awaiting verification,
pending deletions and purges due this week (seller_insights.fleet_census, the hourly `fleet-census` gauges'
own code, run here with the operator's credentials), the depth of every queue (dead-letter queues first),
and the LWA client secret's age and rotation state. A table on stdout (rich), or `--json` for scripts.

The secret's state comes from Secrets Manager's metadata only (DescribeSecret, ListSecretVersionIds: when
each version was stored and which is current or previous): the command never reads the secret's value.
The token refresher stores a new secret as a new version when Amazon's APPLICATION_OAUTH_CLIENT_NEW_SECRET
arrives; the old one stays valid 7 days (OVERLAP_DAYS), so a previous version younger than that means an
overlap is running. A message in `notifications_dlq` may be a new secret that was never stored: the state
then says so and points at `ops recover-secret`.

TOKENS_REMOVED connections are in no index: `--tokens-removed` counts them with a parallel Scan of the
connections table (it reads the whole table; the hourly census never does).
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from ops.api import OpsError
from ops.fleet import Fleet

OVERLAP_DAYS = 7  # Amazon keeps the old client secret valid this long after a rotation
SCAN_SEGMENTS = 8
DEPTH_ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed")


def register(commands: Any) -> None:
    from ops.cli import add_fleet_options  # noqa: PLC0415 (ops.cli imports this module)

    text = "the fleet at a glance: connections, report lag, pending work, queue depths, the LWA secret"
    parser = commands.add_parser("status", help=text, description=text)
    add_fleet_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    parser.add_argument("--tokens-removed", action="store_true",
                        help="also count TOKENS_REMOVED connections (a parallel Scan of the whole table)")
    parser.set_defaults(fleet_command=run)


def run(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    status = gather(fleet, tokens_removed=args.tokens_removed)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True), file=stdout)
    else:
        render(status, stdout)
    return 0


# --- gathering -----------------------------------------------------------------------------------------


def gather(fleet: Fleet, *, tokens_removed: bool = False) -> dict[str, Any]:
    """Everything `ops status` shows, as plain JSON values."""
    from seller_insights.fleet_census import FleetCensus  # noqa: PLC0415 (the shared layer: ops/__init__.py)

    now = fleet_now(fleet)
    try:
        census = FleetCensus(fleet.documents(), fleet.table("connections"),
                             scan_segments=SCAN_SEGMENTS if tokens_removed else 0).count(int(now.timestamp()))
    except ClientError as exc:
        raise _refused("count the connections table", exc) from None
    except BotoCoreError as exc:
        raise OpsError(f"could not reach DynamoDB: {type(exc).__name__}") from None
    queues = queue_depths(fleet)
    secret = lwa_secret_state(fleet, now, notifications_dlq=queues.get("notifications_dlq", {}).get("messages", 0))
    return {"stack": fleet.stack_name, "region": fleet.region, "now": _iso(now), **census.as_dict(),
            "queues": queues, "lwa_client_secret": secret}


def fleet_now(fleet: Fleet) -> datetime:
    """The stack's time: the local stack has a clock of its own (GET /_local/clock); AWS has the real one."""
    if fleet.local_api is None:
        return datetime.now(UTC)
    try:
        with urllib.request.urlopen(fleet.local_api + "/_local/clock", timeout=30) as answer:  # noqa: S310
            value = str(json.loads(answer.read())["now"])
    except (OSError, ValueError, KeyError) as exc:
        raise OpsError(f"the local stack's clock did not answer ({type(exc).__name__}): is it still running?",
                       exit_code=2) from None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def queue_depths(fleet: Fleet) -> dict[str, dict[str, Any]]:
    """Every queue of the stack by purpose: visible, in flight and delayed messages; dead-letter or work."""
    sqs = fleet.client("sqs")
    depths = {}
    for purpose, url in sorted(fleet.queues().items()):
        try:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(DEPTH_ATTRIBUTES))["Attributes"]
        except ClientError as exc:
            raise _refused(f"read the depth of the {purpose} queue", exc) from None
        depths[purpose] = {"dead_letter": purpose.endswith("_dlq"),
                           "messages": int(attributes.get("ApproximateNumberOfMessages", 0)),
                           "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                           "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0))}
    return depths


def lwa_secret_state(fleet: Fleet, now: datetime, *, notifications_dlq: int) -> dict[str, Any]:
    """Age and rotation state of the LWA client secret, from its versions' metadata (never its value)."""
    client = fleet.client("secretsmanager")
    arn = fleet.secret_arn("lwa_client")
    try:
        described = client.describe_secret(SecretId=arn)
        versions = client.list_secret_version_ids(SecretId=arn).get("Versions", [])
    except ClientError as exc:
        raise _refused("describe the LWA client secret", exc) from None
    current = next((v for v in versions if "AWSCURRENT" in v.get("VersionStages", [])), None)
    previous = next((v for v in versions if "AWSPREVIOUS" in v.get("VersionStages", [])), None)
    stored_at = current.get("CreatedDate") if current else described.get("LastChangedDate")
    state: dict[str, Any] = {
        "name": described.get("Name"),
        "stored_at": _iso(stored_at) if stored_at else None,
        "age_days": round(max(0.0, (now - stored_at).total_seconds()) / 86400, 1) if stored_at else None,
        "previous_stored_at": _iso(previous["CreatedDate"]) if previous and previous.get("CreatedDate") else None,
        "versions": len(versions),
    }
    if notifications_dlq:
        state["rotation"] = (f"{notifications_dlq} message(s) in notifications_dlq: a new client secret may not be "
                             "stored; run ops recover-secret")
    elif previous is not None and stored_at and (now - stored_at).days < OVERLAP_DAYS:
        state["rotation"] = ("overlap: the previous secret stays valid until about "
                             + _iso(stored_at + timedelta(days=OVERLAP_DAYS)))
    else:
        state["rotation"] = "current"
    return state


def _refused(what: str, exc: ClientError) -> OpsError:
    code = exc.response.get("Error", {}).get("Code", "")
    return OpsError(f"AWS refused to {what} ({code}): assume the OpsSupportRole with MFA (its policy allows "
                    "ops status) and check --stage/--region", exit_code=3)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- rendering -----------------------------------------------------------------------------------------


def render(status: dict[str, Any], stream: TextIO) -> None:
    """The status as rich tables on `stream` (colours only on a terminal)."""
    from rich.console import Console  # noqa: PLC0415 (only the table needs it)
    from rich.table import Table  # noqa: PLC0415

    console = Console(file=stream, width=110, highlight=False)
    console.print(f"[bold]{status['stack']}[/bold] in {status['region']} at {status['now']}")

    regions = sorted({"NA", "EU", "FE", *(region for by_region in status["connections"].values()
                                          for region in by_region)})
    console.print("\n[bold]Connections by status and region[/bold]")
    connections = Table()
    connections.add_column("status")
    for region in regions:
        connections.add_column(region, justify="right")
    connections.add_column("total", justify="right")
    for name, by_region in status["connections"].items():
        connections.add_row(name, *(str(by_region.get(region, 0)) for region in regions),
                            str(sum(by_region.values())))
    if not status["tokens_removed_counted"]:
        connections.caption = "TOKENS_REMOVED not counted (--tokens-removed: a Scan of the whole table)"
        connections.caption_justify = "left"
    console.print(connections)

    console.print("\n[bold]Waiting[/bold]")
    pending = Table()
    pending.add_column("what")
    pending.add_column("count", justify="right")
    pending.add_row("consents awaiting verification", str(status["pending_candidates"]))
    pending.add_row("connections with a deletion pending", str(status["deletions_pending"]))
    pending.add_row("purges due this week", str(status["purges_due_this_week"]))
    console.print(pending)

    console.print("\n[bold]Report lag[/bold] (the worst cursor, in periods of the type's cadence; alarmed above 2)")
    lag = Table()
    lag.add_column("report type")
    lag.add_column("periods behind", justify="right")
    for report_type, periods in status["report_lag_periods"].items():
        lag.add_row(report_type, f"[red]{periods:g}[/red]" if periods > 2 else f"{periods:g}")
    if not status["report_lag_periods"]:
        lag.add_row("(no report planned yet)", "-")
    console.print(lag)

    console.print("\n[bold]Queues[/bold] (dead-letter queues first)")
    queues = Table()
    for column in ("queue", "messages", "in flight", "delayed"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    ordered = sorted(status["queues"].items(), key=lambda entry: (not entry[1]["dead_letter"], entry[0]))
    for purpose, depth in ordered:
        messages = str(depth["messages"])
        if depth["dead_letter"] and depth["messages"]:
            messages = f"[red]{messages}[/red]"
        queues.add_row(purpose, messages, str(depth["in_flight"]), str(depth["delayed"]))
    console.print(queues)

    secret = status["lwa_client_secret"]
    console.print("\n[bold]LWA client secret[/bold] (its metadata; never its value)")
    table = Table()
    table.add_column("stored")
    table.add_column("age (days)", justify="right")
    table.add_column("previous stored")
    table.add_column("rotation")
    table.add_row(str(secret["stored_at"]), str(secret["age_days"]), str(secret["previous_stored_at"] or "-"),
                  str(secret["rotation"]))
    console.print(table)
