"""The operator's data-request commands.

    python -m ops show SELLER_ID            what is stored (connections with their coverage per report type
                                            and marketplace, report counts, contact)
    python -m ops export SELLER_ID [--out FILE]
                                            build the portability ZIP, download it, verify every sha256
    python -m ops delete SELLER_ID          deletion request (purge after PURGE_AFTER_DAYS)
    python -m ops undelete SELLER_ID        roll a pending deletion request back
    python -m ops remove-tokens SELLER_ID   delete the seller's tokens, keep the connection
    python -m ops correct SELLER_ID [--email X] [--name Y]

The API comes from `--api` or SELLER_INSIGHTS_API; credentials from botocore's default chain (env,
profile, SSO); every request is SigV4-signed for `execute-api` in `--region` (AWS_REGION, else
us-east-1). Results are printed as JSON on stdout, progress on stderr. Exit codes: 0 done, 1 failure,
2 no credentials or usage, 3 credentials refused, 4 request refused, 5 export failed verification.
The export's presigned URL is never printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from ops.api import AdminApi, OpsError, load_credentials

SELLER_ID = re.compile(r"[A-Z0-9]{8,20}")
CHUNK = 256 * 1024
EXPORT_TIMEOUT = 120.0


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops", description="Seller Insights data-subject requests.")
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
        if name == "correct":
            sub.add_argument("--email", help="the new contact e-mail")
            sub.add_argument("--name", help="the new contact name")
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
    with Spinner(err, "building the export"):
        answer = api.call("POST", _path(args.seller_id, "/export"), timeout=EXPORT_TIMEOUT)
    url = str(answer.pop("url", ""))
    if not url:
        raise OpsError("the API answered without a download URL")
    size = download(url, out, ProgressBar(err, "downloading"))
    files = verify(out)
    return {"request_id": answer.get("request_id"), "file": str(out), "bytes": size, "files": files,
            "verified": True}


_COMMANDS: dict[str, Callable[[AdminApi, argparse.Namespace, TextIO], dict[str, Any]]] = {
    "show": _show, "export": _export, "delete": _delete, "undelete": _undelete,
    "remove-tokens": _remove_tokens, "correct": _correct,
}


# --- progress ----------------------------------------------------------------------------------------


class Spinner:
    """`building the export | 3s` on stderr until the block ends (a thread redraws it)."""

    FRAMES = "|/-\\"

    def __init__(self, stream: TextIO, label: str, interval: float = 0.2) -> None:
        self._stream, self._label, self._interval = stream, label, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def __enter__(self) -> Spinner:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        elapsed = time.monotonic() - self._started
        self._stream.write(f"\r{self._label}: {'done' if exc[0] is None else 'failed'} after {elapsed:.0f}s\n")
        self._stream.flush()

    def _run(self) -> None:
        frame = 0
        while not self._stop.wait(self._interval if frame else 0):
            elapsed = time.monotonic() - self._started
            self._stream.write(f"\r{self._label} {self.FRAMES[frame % 4]} {elapsed:.0f}s")
            self._stream.flush()
            frame += 1


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
