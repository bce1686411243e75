"""`ops destroy-check`: `make destroy` asks this first; it refuses while the stack holds seller data.

The deletion promise (every trace of a seller gone within `retention_days`) must survive deleting a stack:
in a stage with `removal: retain` the connections table and the data bucket outlive the stack, and nothing
would ever purge them again. So the stack may go only once they hold no seller data:
- the connections table: no `SELLER#...` partition (connections, profiles, report state, quota buckets)
  and no `CANDIDATE#...` partition (consents waiting for Amazon's confirmation);
- the data bucket: no object version under `sellers/` (reports; a purge deletes every version).
What stays behind is not seller data and ends by itself: the audit table's PII-free receipts expire by
TTL, the bucket's lifecycle rules expire exports and notices.

`--purge-first` requests the deletion of every seller that has none pending yet (the signed /admin API,
as `ops delete` does; it also destroys the seller's waiting consents). There is no safe immediate path:
the purge date is the seller's window to roll a deletion back and keeps every restorable backup inside
the promise (cdk.json "//stages"), so the retention sweeper purges on its daily run once the date came.
Keep the stack running until then and run `make destroy` again.

Output is counts and dates, never a seller id. Exit codes: 0 no seller data (destroy may go on), 4 refused
(seller data held; with --purge-first, after requesting the purges), 1-3 as every ops command.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from botocore.exceptions import ClientError

from ops.api import AdminApi, OpsError, load_credentials
from ops.fleet import Fleet

SELLER_PREFIX = "SELLER#"
CANDIDATE_PREFIX = "CANDIDATE#"
CONNECTION_PREFIX = "CONN#"
OBJECTS_PREFIX = "sellers/"  # seller_insights.object_keys: sellers/{seller_key}/{region}/...
PURGE_PENDING = frozenset({"DELETION_REQUESTED", "REVOKED"})  # statuses the retention sweeper purges
SWEEP_LAG_DAYS = 1  # the sweep runs daily (infra/config.py SWEEP_LAG_DAYS)
REFUSED = 4

RequestDeletion = Callable[[str], dict[str, Any]]


@dataclass
class SellerData:
    """What the stack still holds, counted; the seller ids stay in memory for --purge-first only."""

    sellers: set[str] = field(default_factory=set)
    pending: dict[str, list[str]] = field(default_factory=dict)  # seller -> purge dates of its connections
    unscheduled: set[str] = field(default_factory=set)  # sellers with a connection no purge is due for
    candidates: int = 0  # CANDIDATE# partitions
    object_versions: int = 0

    @property
    def empty(self) -> bool:
        return not self.sellers and not self.candidates and not self.object_versions

    def counts(self) -> dict[str, int]:
        return {"sellers": len(self.sellers), "sellers_purge_pending": len(self.sellers - self.unscheduled),
                "sellers_without_deletion_request": len(self.unscheduled), "pending_consents": self.candidates,
                "report_object_versions": self.object_versions}

    @property
    def last_purge_date(self) -> str | None:
        dates = [date for seller in self.sellers - self.unscheduled for date in self.pending.get(seller, [])]
        return max(dates) if dates else None


def register(commands: Any) -> None:
    from ops.cli import add_fleet_options  # noqa: PLC0415 - ops.cli imports this module

    text = "refuse (exit 4) while the stack holds seller data; make destroy runs it first"
    parser = commands.add_parser("destroy-check", help=text, description=text)
    add_fleet_options(parser)
    parser.add_argument("--purge-first", action="store_true",
                        help="request the deletion of every seller without one pending (purged on their dates)")
    parser.add_argument("--api", help="the API's base URL for --purge-first (default: $SELLER_INSIGHTS_API, else "
                                      "the stack's ApiUrl output)")
    parser.set_defaults(fleet_command=run)


def run(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    requester = _admin_deletions(fleet, args) if args.purge_first else None
    return check(fleet, stdout, request_deletion=requester)


def check(fleet: Fleet, out: TextIO, *, request_deletion: RequestDeletion | None = None) -> int:
    """Count the seller data; refuse while there is any; with `request_deletion`, request what is missing."""
    held = census(fleet)
    if held.empty:
        out.write(f"{fleet.stack_name} holds no seller data: it may be destroyed.\n")
        return 0
    out.write(f"{fleet.stack_name} still holds seller data: {_said(held.counts())}.\n")
    if request_deletion is None:
        out.write("Refusing to destroy: the retained table and bucket would keep it past the deletion promise.\n"
                  "Run `make destroy STAGE=... PURGE_FIRST=1` to request every seller's deletion; the retention "
                  "sweeper purges each on its date, then `make destroy` goes on.\n")
        return REFUSED
    requested, failed, dates = 0, 0, []
    for seller in sorted(held.unscheduled):
        try:
            answer = request_deletion(seller)
        except OpsError:
            failed += 1  # the message could name the seller; the count says enough, a re-run retries
            continue
        requested += 1
        if isinstance(answer.get("purge_after"), str):
            dates.append(answer["purge_after"])
    last = max([*dates, *([held.last_purge_date] if held.last_purge_date else [])], default=None)
    out.write(f"Deletion requested for {requested} seller(s)" + (f", {failed} failed (run again)" if failed else "")
              + f"; {len(held.sellers - held.unscheduled)} already had a purge due.\n")
    if last is not None:
        out.write(f"The retention sweeper purges the last of them on its daily run after {last} (allow "
                  f"{SWEEP_LAG_DAYS} day). Keep the stack running until then, then run `make destroy` again.\n")
    if held.candidates:
        out.write("Pending consents end at their verification deadline (hours) or with their seller's deletion.\n")
    return REFUSED


def census(fleet: Fleet) -> SellerData:
    held = SellerData()
    dynamodb = fleet.client("dynamodb")
    table = fleet.table("connections")
    candidates: set[str] = set()
    scan: dict[str, Any] = {"TableName": table, "ProjectionExpression": "pk, sk, #status, purge_after",
                            "ExpressionAttributeNames": {"#status": "status"}}
    try:
        for page in dynamodb.get_paginator("scan").paginate(**scan):
            for item in page.get("Items", []):
                pk, sk = item["pk"]["S"], item["sk"]["S"]
                if pk.startswith(CANDIDATE_PREFIX):
                    candidates.add(pk)
                if not pk.startswith(SELLER_PREFIX):
                    continue
                seller = pk.removeprefix(SELLER_PREFIX)
                held.sellers.add(seller)
                if sk.startswith(CONNECTION_PREFIX):
                    status = item.get("status", {}).get("S")
                    if status in PURGE_PENDING and "purge_after" in item:
                        held.pending.setdefault(seller, []).append(item["purge_after"]["S"])
                    else:
                        held.unscheduled.add(seller)
        held.candidates = len(candidates)
        # A seller whose items have no connection left that a purge is due for (none at all is unusual).
        held.unscheduled |= held.sellers - held.pending.keys()
        s3 = fleet.client("s3")
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=fleet.bucket("data"),
                                                                     Prefix=OBJECTS_PREFIX):
            held.object_versions += len(page.get("Versions", []))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise OpsError(f"cannot count the stack's seller data ({code}): destroying needs read access to the "
                       "connections table and the data bucket", exit_code=3) from None
    return held


def _admin_deletions(fleet: Fleet, args: argparse.Namespace) -> RequestDeletion:
    api_url = args.api or os.environ.get("SELLER_INSIGHTS_API") or fleet.local_api or _api_output(fleet)
    api = AdminApi(api_url, fleet.region, load_credentials(args.profile))

    def request(seller: str) -> dict[str, Any]:
        return api.call("POST", f"/admin/sellers/{seller}/deletion")

    return request


def _api_output(fleet: Fleet) -> str:
    try:
        (stack,) = fleet.client("cloudformation").describe_stacks(StackName=fleet.stack_name)["Stacks"]
    except ClientError:
        stack = {}
    for output in stack.get("Outputs", []):
        if output.get("OutputKey") == "ApiUrl":
            return str(output["OutputValue"])
    raise OpsError("no API URL for the deletion requests: pass --api or set SELLER_INSIGHTS_API", exit_code=2)


def _said(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in counts.items() if value)
