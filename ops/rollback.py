"""`ops rollback`: point each function's `live` alias back to the version it had before the last deployment.

Every trigger invokes a function's `live` alias (infra/constructs/service_function.py), and each deployment
that changed a function published a new version and moved the alias to it; the replaced versions are kept.
A rollback moves aliases only, in seconds, without CloudFormation:

- which functions: those whose live version was published by the stack's last deployment (at or after the
  stack's LastUpdatedTime); a function the deployment did not change keeps its version, so a rollback never
  goes back further than one deployment. `--function DUTY` limits it to one function.
- to what: the function's newest version published before that deployment (the one live before it), or
  `--version N` (with `--function`).
- `--dry-run` says what it would do and changes nothing.

The aliases now differ from the template: the next `make deploy` moves them to the template's versions
again. Roll forward by fixing the code and deploying; to stay rolled back, redeploy the previous commit.

    python -m ops rollback --stage dev [--function report_fetcher [--version 12]] [--dry-run] [--json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TextIO

from botocore.exceptions import ClientError

from ops.api import OpsError
from ops.fleet import Fleet

LIVE_ALIAS = "live"  # infra/constructs/service_function.py LIVE_ALIAS
FUNCTION_TYPE = "AWS::Lambda::Function"


@dataclass(frozen=True)
class Step:
    """One function's rollback: from the live version to another, or why not."""

    function: str
    live: str
    target: str | None
    reason: str

    @property
    def moves(self) -> bool:
        return self.target is not None


def register(commands: Any) -> None:
    from ops.cli import add_fleet_options  # noqa: PLC0415 - ops.cli imports this module

    text = "point each function's live alias back to its version before the last deployment"
    parser = commands.add_parser("rollback", help=text, description=text)
    add_fleet_options(parser)
    parser.add_argument("--function", metavar="DUTY",
                        help="only this function (its duty, e.g. report_fetcher, or its name)")
    parser.add_argument("--version", metavar="N", help="the version to go to (needs --function)")
    parser.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    parser.add_argument("--json", action="store_true", help="the plan as JSON on stdout")
    parser.set_defaults(fleet_command=run)


def run(fleet: Fleet, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    if fleet.local_api is not None:
        raise OpsError("the local stack runs each function's code as it is (no versions): rollback acts on a "
                       "deployed stack (--stage)", exit_code=2)
    if args.version is not None and args.function is None:
        raise OpsError("--version names one function's version: give --function DUTY too", exit_code=2)
    functions = select(fleet, args.function)
    since = last_deployment(fleet)
    lam = fleet.client("lambda")
    steps = [plan(lam, name, since, args.version if args.function else None) for name in functions]
    if not args.dry_run:
        for step in steps:
            if step.target is not None:
                lam.update_alias(FunctionName=step.function, Name=LIVE_ALIAS, FunctionVersion=step.target)
    _report(steps, dry_run=args.dry_run, as_json=args.json, stdout=stdout, stderr=stderr)
    return 0


def select(fleet: Fleet, wanted: str | None) -> list[str]:
    """The stack's function names, or the one that `wanted` (a duty such as report_fetcher, or a name) means."""
    names = sorted(resource.physical_id for resource in fleet.of_type(FUNCTION_TYPE))
    if wanted is None:
        return names
    key = wanted.replace("_", "").lower()
    matches = [name for name in names if key in name.replace("_", "").replace("-", "").lower()]
    if len(matches) != 1:
        raise OpsError(f"--function {wanted} matches {len(matches)} of the stack's {len(names)} functions: give a "
                       "duty (oauth_callback, token_refresher, report_fetcher, retention_sweeper, data_requests, "
                       "data_exports) or a function name", exit_code=2)
    return matches


def last_deployment(fleet: Fleet) -> datetime:
    """When the stack's last deployment started: versions published since then are that deployment's."""
    try:
        (stack,) = fleet.client("cloudformation").describe_stacks(StackName=fleet.stack_name)["Stacks"]
    except ClientError as exc:
        raise OpsError(f"cannot describe the stack {fleet.stack_name}: {exc.response.get('Error', {}).get('Code')}",
                       exit_code=3) from None
    started: datetime = stack.get("LastUpdatedTime") or stack["CreationTime"]
    return started


def plan(lam: Any, function: str, since: datetime, version: str | None = None) -> Step:
    """Where `function`'s live alias should go: `version`, else, if the live version was published at or after
    `since`, its newest version published before `since`."""
    live = str(lam.get_alias(FunctionName=function, Name=LIVE_ALIAS)["FunctionVersion"])
    published = _versions(lam, function)
    if version is not None:
        if version not in published:
            raise OpsError(f"{function} has no version {version} (it has {', '.join(sorted(published, key=int))})",
                           exit_code=2)
        if version == live:
            return Step(function, live, None, f"already on version {version}")
        return Step(function, live, version, "as asked")
    if live == "$LATEST" or live not in published:
        return Step(function, live, None, "the alias is not on a published version; give --version")
    if published[live] < since:
        return Step(function, live, None, "not changed by the last deployment")
    before = [number for number, when in published.items() if when < since and int(number) < int(live)]
    if not before:
        return Step(function, live, None, "no version from before the last deployment")
    return Step(function, live, max(before, key=int), "its version before the last deployment")


def _versions(lam: Any, function: str) -> dict[str, datetime]:
    """Published version -> when it was published ($LATEST left out)."""
    found: dict[str, datetime] = {}
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=function):
        for version in page["Versions"]:
            if version["Version"] != "$LATEST":
                found[str(version["Version"])] = _timestamp(version["LastModified"])
    return found


def _timestamp(value: str) -> datetime:
    # Lambda writes "2026-12-01T19:24:21.284+0000" (moto adds nanoseconds and a Z).
    text = value.replace("Z", "+0000")
    head, _, zone = text.rpartition("+")
    if "." in head:
        seconds, fraction = head.split(".", 1)
        head = f"{seconds}.{fraction[:6]}"
    return datetime.strptime(f"{head}+{zone}", "%Y-%m-%dT%H:%M:%S.%f%z" if "." in head else "%Y-%m-%dT%H:%M:%S%z")


def _report(steps: list[Step], *, dry_run: bool, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
    moved = sum(1 for step in steps if step.moves)
    verb = "would move" if dry_run else "moved"
    if as_json:
        stdout.write(json.dumps({"dry_run": dry_run, "moved": moved,
                                 "functions": [asdict(step) for step in steps]}, indent=1) + "\n")
    for step in steps:
        change = f"{step.live} -> {step.target}" if step.target else f"stays on {step.live}"
        stderr.write(f"{step.function}: {change} ({step.reason})\n")
    stderr.write(f"{verb} {moved} of {len(steps)} live aliases"
                 + ("" if dry_run else "; the next deployment moves them to the template's versions again") + "\n")
