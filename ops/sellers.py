"""Seller-level fleet commands, through the signed /admin API (audited like every data request):

    python -m ops seller-key SELLER_ID                         the opaque key to search logs with
    python -m ops backfill SELLER_ID --type T --since DATE     fetch report type T again from DATE (UTC)

`seller-key` asks `GET /admin/sellers/{id}/key`: the HMAC key of seller keys lives in a secret only the
functions read, and the data requests function computes the key already; an audited route answers the
key without giving the operator the secret (with it, every seller of every log could be named at once).
`backfill` asks `POST /admin/sellers/{id}/backfill`: the function rewinds the seller's coverage cursors
of the type (seller_insights.coverage, Cursor.rewind), within the type's history in the catalog, and the
next plan-reports run fetches the days again at the planner's pace.

The API is the stack's (its HTTP API in the inventory, or the local stack's URL with --local); the
requests are SigV4-signed with the operator's credentials (locally: the stack's admin credentials).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from ops.api import AdminApi, NoCredentials, OpsError
from ops.fleet import Fleet


def register(commands: Any) -> None:
    from ops.cli import SELLER_ID, add_fleet_options  # noqa: PLC0415 (ops.cli imports this module)

    def seller_id(value: str) -> str:
        if not SELLER_ID.fullmatch(value):
            raise argparse.ArgumentTypeError("SELLER_ID must be 8 to 20 upper-case letters and digits")
        return value

    text = "print the opaque seller key the logs and stored objects name the seller by"
    parser = commands.add_parser("seller-key", help=text, description=text)
    parser.add_argument("seller_id", metavar="SELLER_ID", type=seller_id, help="the Amazon selling partner id")
    add_fleet_options(parser)
    parser.set_defaults(fleet_command=run_seller_key)

    text = "fetch a report type again from a date for every connection of a seller"
    parser = commands.add_parser("backfill", help=text, description=text)
    parser.add_argument("seller_id", metavar="SELLER_ID", type=seller_id, help="the Amazon selling partner id")
    parser.add_argument("--type", required=True, dest="report_type", metavar="T",
                        help="the report type (e.g. GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL)")
    parser.add_argument("--since", required=True, metavar="DATE", help="the first day to fetch again, YYYY-MM-DD (UTC)")
    add_fleet_options(parser)
    parser.set_defaults(fleet_command=run_backfill)


def run_seller_key(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    answer = admin_api(fleet).call("GET", f"/admin/sellers/{args.seller_id}/key")
    print(json.dumps({"seller_key": answer.get("seller_key")}), file=stdout)
    return 0


def run_backfill(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    answer = admin_api(fleet).call("POST", f"/admin/sellers/{args.seller_id}/backfill",
                                   {"report_type": args.report_type, "since": args.since})
    print(json.dumps(answer, indent=2, sort_keys=True), file=stdout)
    if answer.get("cursors"):
        print(f"{answer['cursors']} cursor(s) rewound on {answer['connections']} connection(s): the next "
              "plan-reports run (every 15 minutes) fetches the days again", file=stderr)
    return 0


def admin_api(fleet: Fleet) -> AdminApi:
    """The stack's admin API, signed with the fleet session's credentials."""
    credentials = fleet.session.get_credentials()
    if credentials is None:
        raise NoCredentials("not in the environment, the shared config/credentials files, SSO or an instance role")
    if fleet.local_api is not None:
        base = fleet.local_api
    else:
        apis = fleet.of_type("AWS::ApiGatewayV2::Api")
        if len(apis) != 1:
            raise OpsError(f"the stack {fleet.stack_name} has {len(apis)} HTTP APIs; expected one")
        base = f"https://{apis[0].physical_id}.execute-api.{fleet.region}.amazonaws.com"
    return AdminApi(base, fleet.region, credentials.get_frozen_credentials())
