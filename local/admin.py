"""The operator's side of the local stack: `/admin/...` calls signed with the printed `admin`
credentials, and the portability export requested, built (`finished_export` drains the queues, which
runs the export worker), downloaded and checked.

The local gateway accepts a signature only within 5 minutes of the product's **virtual** clock (as API
Gateway does with real time), so after the clock has moved, `python -m ops` (which signs with the wall
clock) is refused. `AdminClient` asks `GET /_local/clock` and signs at that time. Nothing here prints
or puts into an exception message a presigned URL, a signature or a secret key.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "execute-api"
REGION = "us-east-1"
TIMEOUT = 60
PLAINTEXT_MARKERS = (b"Atzr|", b"Atza|")


class ExportInvalid(Exception):
    """The downloaded export does not match its manifest (the message names the file, never the URL)."""


class _SignedAt(SigV4Auth):  # type: ignore[misc, unused-ignore]  # Any without botocore-stubs
    """botocore's SigV4 signer at a given time instead of the wall clock."""

    def __init__(self, credentials: Credentials, service: str, region: str, at: datetime) -> None:
        super().__init__(credentials, service, region)
        self._at = at

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._at.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)  # type: ignore[attr-defined, unused-ignore]  # private
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)  # type: ignore[attr-defined, unused-ignore]


def signed_headers(method: str, url: str, body: bytes, *, access_key_id: str, secret_access_key: str,
                   at: datetime, region: str = REGION) -> dict[str, str]:
    """The headers of a SigV4-signed request (service `execute-api`) made at `at`."""
    request = AWSRequest(method=method, url=url, data=body,
                         headers={"Content-Type": "application/json", "Accept": "application/json"})
    _SignedAt(Credentials(access_key_id, secret_access_key), SERVICE, region, at).add_auth(request)
    return dict(request.prepare().headers)


def virtual_now(api: str) -> datetime:
    answer = requests.get(f"{api}/_local/clock", timeout=TIMEOUT)
    answer.raise_for_status()
    return datetime.fromisoformat(str(answer.json()["now"]).replace("Z", "+00:00"))


@dataclass(frozen=True)
class AdminClient:
    """`call("GET", "/admin/sellers/A1...")`, signed with the admin credentials at the virtual time."""

    api: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str = REGION

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> AdminClient:
        """From `serve`'s JSON line (or `LocalStack.info()`)."""
        admin = info["admin"]
        return cls(str(info["api"]), str(admin["access_key_id"]), str(admin["secret_access_key"]),
                   str(info.get("region") or REGION))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
             secret_access_key: str | None = None) -> requests.Response:
        """The raw answer; `secret_access_key` signs with another secret (to see a refusal)."""
        data = json.dumps(body).encode() if body is not None else b""
        url = self.api.rstrip("/") + path
        headers = signed_headers(method, url, data, access_key_id=self.access_key_id,
                                 secret_access_key=secret_access_key or self.secret_access_key,
                                 at=virtual_now(self.api), region=self.region)
        return requests.request(method, url, data=data or None, headers=headers, timeout=TIMEOUT)

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON answer of a call that must succeed; else an error with the status and message only."""
        answer = self.call(method, path, body)
        if not 200 <= answer.status_code < 300:  # 202: an export request accepted
            message = _message(answer)
            raise RuntimeError(f"{method} {_route(path)} answered {answer.status_code}: {message}")
        result: dict[str, Any] = answer.json()
        return result


def finished_export(admin: AdminClient, seller: str, *, rounds: int = 10) -> dict[str, Any]:
    """POST the seller's export, then drain the queues (the local stack runs the export worker only on
    `POST /_local/drain`, as no event source runs by itself) and read its status until it has ended: the
    status answer (DONE: with its presigned `url`, which the caller must not print)."""
    started = admin.json("POST", f"/admin/sellers/{seller}/export")
    for _ in range(rounds):
        drained = requests.post(f"{admin.api.rstrip('/')}/_local/drain", json={"max_seconds": 30},
                                timeout=TIMEOUT + 10)
        if drained.status_code != 200:
            raise RuntimeError(f"/_local/drain answered {drained.status_code}")
        answer = admin.json("GET", str(started["status_path"]))
        if answer["status"] in ("DONE", "FAILED"):
            return answer
    raise RuntimeError(f"the export is still {answer['status']} after {rounds} drains")


@dataclass(frozen=True)
class Export:
    archive: bytes
    manifest: dict[str, Any]
    names: list[str]

    @property
    def files(self) -> int:
        return len(self.names)

    @property
    def size(self) -> int:
        return len(self.archive)

    def member(self, name: str) -> bytes:
        with zipfile.ZipFile(io.BytesIO(self.archive)) as archive:
            return archive.read(name)


def download_export(url: str) -> bytes:
    """The ZIP behind the export's presigned URL (moto's endpoint locally). The URL is never shown."""
    try:
        answer = requests.get(url, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ExportInvalid(f"the export download failed: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise ExportInvalid(f"the export download answered HTTP {answer.status_code}")
    return answer.content


def verify_export(archive: bytes) -> Export:
    """Every file of the manifest is in the ZIP with its sha256 and size, and nothing else is; no
    plaintext LWA token anywhere in it."""
    if any(marker in archive for marker in PLAINTEXT_MARKERS):
        raise ExportInvalid("the export holds a plaintext LWA token")
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            names = opened.namelist()
            manifest: dict[str, Any] = json.loads(opened.read("manifest.json"))
            listed = {str(entry["path"]) for entry in manifest["files"]}
            if set(names) - {"manifest.json"} != listed or len(names) != len(listed) + 1:
                raise ExportInvalid("the manifest does not list exactly the archive's files")
            for entry in manifest["files"]:
                data = opened.read(entry["path"])
                if any(marker in data for marker in PLAINTEXT_MARKERS):
                    raise ExportInvalid(f"{entry['path']} holds a plaintext LWA token")
                if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != int(entry["bytes"]):
                    raise ExportInvalid(f"{entry['path']} does not match its sha256 or size in the manifest")
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise ExportInvalid(f"the export is not a valid archive ({type(exc).__name__})") from None
    return Export(archive, manifest, names)


def _route(path: str) -> str:
    """`/admin/sellers/{id}/deletion` for messages (the seller id is not a secret, but stays out of them)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1:3] == ["admin", "sellers"]:
        parts[3] = "{id}"
    return "/".join(parts)


def _message(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("message", ""))[:300]
    except ValueError:
        return ""
