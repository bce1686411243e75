"""The operators' commands: a seller's data-subject requests, and the fleet.

Seller requests (the signed /admin API):

    python -m ops show SELLER_ID            what is stored (connections with their coverage per report type
                                            and marketplace, report counts, contact)
    python -m ops export SELLER_ID [--out FILE] [--request ID] [--wait MINUTES] [--drain]
                                            request the portability ZIP (built by the export worker),
                                            wait for it with a progress bar, download it, verify every sha256
    python -m ops delete SELLER_ID          deletion request (purge after PURGE_AFTER_DAYS)
    python -m ops undelete SELLER_ID        roll a pending deletion request back
    python -m ops remove-tokens SELLER_ID   delete the seller's tokens, keep the connection
    python -m ops correct SELLER_ID [--email X] [--name Y]

The API comes from `--api` or SELLER_INSIGHTS_API; credentials from botocore's default chain (env,
profile, SSO); every request is SigV4-signed for `execute-api` in `--region` (AWS_REGION, else
us-east-1). Results are printed as JSON on stdout, progress on stderr. Exit codes: 0 done, 1 failure,
2 no credentials or usage, 3 credentials refused, 4 request refused, 5 export failed verification,
6 the export failed or is still running when `--wait` ends (run again with `--request ID` to go on waiting).
The export's presigned URL is a bearer link to the seller's data: it is never printed, only downloaded.
`--drain` is for the local stack only: there no event source runs the export worker, so the command asks
the stack to drain its queues (`POST {api}/_local/drain`, docs/local-stack.md) before each status check.

Fleet commands act with the operator's credentials on the stack's resources (ops/fleet.py: the deployed
stack of `--stage`/`--stack`, or the local stack with `--local URL`): `status`, `redrive QUEUE`,
`seller-key SELLER_ID`, `backfill SELLER_ID --type T --since DATE`, `recover-secret`, `incident ...`,
`rollback`, `destroy-check`; `python -m ops COMMAND --help` says more, docs/runbook.md says when.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from ops.api import AdminApi, OpsError, load_credentials
from ops.fleet import LOCAL_ENV, Fleet

SELLER_ID = re.compile(r"[A-Z0-9]{8,20}")
CHUNK = 256 * 1024
POLL_SECONDS = 2.0
WAIT_MINUTES = 30
DRAIN_TIMEOUT = 120.0


# Modules of fleet commands (ops/fleet.py): each has `register(commands)`, which adds its subcommands with
# `add_fleet_options` and `set_defaults(fleet_command=run)`, where run(fleet, args, stdout, stderr) -> exit code.
FLEET_MODULES: tuple[str, ...] = (
    "ops.status",  # status
    "ops.queues",  # redrive
    "ops.sellers",  # seller-key, backfill
    "ops.secrets",  # recover-secret
    "ops.incident",  # incident contain|restore|revoke-all|affected
    "ops.rollback",  # rollback (make rollback)
    "ops.destroy_guard",  # destroy-check (make destroy)
)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    if getattr(args, "fleet_command", None) is not None:
        return _run_fleet(args, out, err)
    try:
        api_url = args.api or os.environ.get("SELLER_INSIGHTS_API")
        if not api_url:
            raise OpsError("no API URL: pass --api https://... or set SELLER_INSIGHTS_API", exit_code=2)
        if urlsplit(api_url).scheme not in ("http", "https") or not urlsplit(api_url).hostname:
            raise OpsError("--api must be an http(s) URL such as https://abc123.execute-api.us-east-1.amazonaws.com",
                           exit_code=2)
        if not SELLER_ID.fullmatch(args.seller_id):
            raise OpsError("SELLER_ID must be 8 to 20 upper-case letters and digits (the selling partner id)",
                           exit_code=2)
        region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        api = AdminApi(api_url, region, load_credentials(args.profile))
        result = _COMMANDS[args.command](api, args, err)
    except OpsError as exc:
        print(f"error: {exc.message}", file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
    print(json.dumps(result, indent=2, sort_keys=True), file=out)
    return 0


def _run_fleet(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        fleet = Fleet.from_args(local=args.local, stage=args.stage, stack=args.stack, region=args.region,
                                profile=args.profile)
        return int(args.fleet_command(fleet, args, out, err))
    except OpsError as exc:
        print(f"error: {exc.message}", file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130


def add_fleet_options(parser: argparse.ArgumentParser) -> None:
    """Where a fleet command acts: the deployed stack of --stage (or --stack), or the local stack."""
    parser.add_argument("--stage", default="dev", help="the stage whose stack to act on (default: dev)")
    parser.add_argument("--stack", help="the CloudFormation stack name (default: SellerInsights-STAGE)")
    parser.add_argument("--local", metavar="URL",
                        help=f"the local stack's API URL instead of AWS (default: ${LOCAL_ENV})")
    parser.add_argument("--region", help="the stack's AWS region (default: $AWS_REGION or us-east-1)")
    parser.add_argument("--profile", help="an AWS profile (default: botocore's chain)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops",
                                     description="Seller Insights operations: data-subject requests and the fleet.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {"show": "show what is stored about a seller (access request)",
             "export": "build, download and verify the seller's portability export",
             "delete": "request the deletion of everything about a seller",
             "undelete": "roll back a pending deletion request (before its purge date)",
             "remove-tokens": "delete the seller's tokens now; the connection stays",
             "correct": "correct the seller's contact e-mail and/or name"}
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("seller_id", metavar="SELLER_ID", help="the Amazon selling partner id")
        sub.add_argument("--api", help="the API's base URL (default: $SELLER_INSIGHTS_API)")
        sub.add_argument("--region", help="the API's AWS region for signing (default: $AWS_REGION or us-east-1)")
        sub.add_argument("--profile", help="an AWS profile (default: botocore's chain)")
        if name == "export":
            sub.add_argument("--out", help="where to save the ZIP (default: ./SELLER_ID-export.zip)")
            sub.add_argument("--request", metavar="ID", help="wait for this export request instead of starting one")
            sub.add_argument("--wait", type=int, default=WAIT_MINUTES, metavar="MINUTES",
                             help=f"how long to wait for the worker (default: {WAIT_MINUTES})")
            sub.add_argument("--drain", action="store_true",
                             help="local stack only: drain its queues (POST /_local/drain) while waiting")
        if name == "correct":
            sub.add_argument("--email", help="the new contact e-mail")
            sub.add_argument("--name", help="the new contact name")
    for module in FLEET_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def _path(seller_id: str, suffix: str = "") -> str:
    return f"/admin/sellers/{seller_id}{suffix}"


def _show(api: AdminApi, args: argparse.Namespace, err: TextIO) -> dict[str, Any]:
    return api.call("GET", _path(args.seller_id))


def _delete(api: AdminApi, args: argparse.Namespace, err: TextIO) -> dict[str, Any]:
    return api.call("POST", _path(args.seller_id, "/deletion"))


def _undelete(api: AdminApi, args: argparse.Namespace, err: TextIO) -> dict[str, Any]:
    return api.call("DELETE", _path(args.seller_id, "/deletion"))


def _remove_tokens(api: AdminApi, args: argparse.Namespace, err: TextIO) -> dict[str, Any]:
    return api.call("POST", _path(args.seller_id, "/tokens/removal"))


def _correct(api: AdminApi, args: argparse.Namespace, err: TextIO) -> dict[str, Any]:
    body = {name: value for name, value in (("contact_email", args.email), ("contact_name", args.name))
            if value is not None}
    if not body:
        raise OpsError("nothing to correct: pass --email and/or --name", exit_code=2)
    return api.call("PATCH", _path(args.seller_id), body)


def _export(api: AdminApi, args: argparse.Namespace, err: TextIO) -> dict[str, Any]:
    out = Path(args.out or f"{args.seller_id}-export.zip")
    if args.request:
        request_id = str(args.request)
    else:
        started = api.call("POST", _path(args.seller_id, "/export"))
        request_id = str(started.get("request_id", ""))
        print(f"export requested: {request_id} ({started.get('objects_total', 0)} reports, "
              f"{_mib(int(started.get('bytes_total', 0)))} MiB)", file=err)
    if not re.fullmatch(r"[A-Za-z0-9=_-]{1,64}", request_id):
        raise OpsError("the export request id is missing or malformed", exit_code=2 if args.request else 1)
    answer = wait_for_export(api, _path(args.seller_id, f"/export/{request_id}"), ExportProgress(err),
                             deadline=time.monotonic() + 60 * args.wait, drain=args.drain)
    url = str(answer.pop("url", ""))
    if not url:
        raise OpsError("the API answered DONE without a download URL")
    size = download(url, out, ProgressBar(err, "downloading"))
    files = verify(out)
    return {"request_id": request_id, "file": str(out), "bytes": size, "files": files, "verified": True}


def wait_for_export(api: AdminApi, status_path: str, progress: ExportProgress, *, deadline: float,
                    drain: bool) -> dict[str, Any]:
    """Poll the status route until the export is DONE (its answer, with the URL) or FAILED (OpsError)."""
    while True:
        if drain:
            api.post_unsigned("/_local/drain", {"max_seconds": 30}, timeout=DRAIN_TIMEOUT)
        answer = api.call("GET", status_path)
        status = str(answer.get("status"))
        progress.update(answer)
        if status == "DONE":
            return answer
        if status in ("FAILED", "EXPIRED"):
            reason = answer.get("reason", "expired" if status == "EXPIRED" else "unknown")
            raise OpsError(f"the export {status.lower()} ({reason}): request it again; the worker's log says more",
                           exit_code=6)
        if time.monotonic() >= deadline:
            raise OpsError(f"the export is still {status} after --wait; run again with --request "
                           f"{answer.get('request_id')} to go on waiting", exit_code=6)
        time.sleep(POLL_SECONDS)


def _mib(value: int) -> str:
    return f"{value / (1024 * 1024):.1f}"


_COMMANDS: dict[str, Callable[[AdminApi, argparse.Namespace, TextIO], dict[str, Any]]] = {
    "show": _show, "export": _export, "delete": _delete, "undelete": _undelete,
    "remove-tokens": _remove_tokens, "correct": _correct,
}


# --- progress ----------------------------------------------------------------------------------------


class ExportProgress:
    """`export RUNNING [#####.........]  33%  3,300/10,000 reports  1.1/3.2 GiB read` on stderr."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last = ""

    def update(self, answer: dict[str, Any]) -> None:
        status = str(answer.get("status"))
        done, total = int(answer.get("objects_done", 0)), int(answer.get("objects_total", 0))
        read, size = int(answer.get("bytes_done", 0)), int(answer.get("bytes_total", 0))
        share = 1.0 if status == "DONE" else (read / size if size else done / total if total else 0.0)
        filled = int(self.WIDTH * min(share, 1.0))
        line = (f"\rexport {status:<7} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {int(100 * share):3d}% "
                f"{done:,}/{total:,} reports {_gib(read)}/{_gib(size)} GiB read")
        if line != self._last:
            self._stream.write(line + ("\n" if status in ("DONE", "FAILED", "EXPIRED") else ""))
            self._stream.flush()
            self._last = line


def _gib(value: int) -> str:
    return f"{value / (1 << 30):.2f}"


class ProgressBar:
    """`downloading [#######.......]  45%  1.2/2.7 MiB` on stderr."""

    WIDTH = 30

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream, self._label = stream, label
        self._last = -1.0

    def update(self, done: int, total: int | None, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        mib = done / (1024 * 1024)
        if total:
            filled = int(self.WIDTH * done / total)
            line = (f"\r{self._label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * done // total:3d}% "
                    f"{mib:.1f}/{total / (1024 * 1024):.1f} MiB")
        else:
            line = f"\r{self._label} {mib:.1f} MiB"
        self._stream.write(line + ("\n" if final else ""))
        self._stream.flush()


def download(url: str, out: Path, progress: ProgressBar) -> int:
    """Stream the presigned URL to `out` (via a temporary file); the URL never appears in a message."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise OpsError("the download URL is not http(s)")
    partial = out.with_name(out.name + ".part")
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as sink:  # noqa: S310
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := response.read(CHUNK):
                sink.write(chunk)
                done += len(chunk)
                progress.update(done, total)
            progress.update(done, total or done, final=True)
        partial.replace(out)
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise OpsError(f"the download failed with HTTP {exc.code} (the link is valid for 15 minutes: run "
                       "the export again)") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise OpsError(f"the download failed: {type(exc).__name__}; run the export again") from None
    return done


def verify(path: Path) -> int:
    """Check every file of the manifest (sha256 and size); returns the number of files checked."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            names = set(archive.namelist()) - {"manifest.json"}
            listed = {entry["path"] for entry in manifest["files"]}
            if names != listed:
                raise OpsError(f"{path}: the manifest does not list exactly the archive's files", exit_code=5)
            for entry in manifest["files"]:
                digest, size = hashlib.sha256(), 0
                with archive.open(entry["path"]) as member:
                    while chunk := member.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                if digest.hexdigest() != entry["sha256"] or size != int(entry["bytes"]):
                    raise OpsError(f"{path}: {entry['path']} does not match its sha256 in the manifest",
                                   exit_code=5)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise OpsError(f"{path} is not a valid export ({type(exc).__name__}); run the export again",
                       exit_code=5) from None
    return len(listed)
