"""SigV4-signed calls to the admin API (service `execute-api`), with botocore's default credentials."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError
from botocore.session import Session

SERVICE = "execute-api"
TIMEOUT = 60.0  # API Gateway answers within 30 s; a little more for the network


class OpsError(Exception):
    """A failure the command reports as a message and an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class NoCredentials(OpsError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            f"no AWS credentials found: {detail}. Set AWS_PROFILE (or run `aws sso login`), or export "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).", exit_code=2)


class Refused(OpsError):
    def __init__(self) -> None:
        super().__init__(
            "the API refused these credentials: the ops role requires MFA (aws sts get-session-token "
            "--serial-number arn:aws:iam::ACCOUNT:mfa/YOU --token-code 123456, then export the temporary "
            "credentials it prints and run the command again)", exit_code=3)


def load_credentials(profile: str | None = None) -> ReadOnlyCredentials:
    try:
        credentials = Session(profile=profile).get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except BotoCoreError as exc:
        raise NoCredentials(type(exc).__name__) from None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise NoCredentials("not in the environment, the shared config/credentials files, SSO or an "
                            "instance role")
    return frozen


@dataclass(frozen=True)
class AdminApi:
    base_url: str
    region: str
    credentials: ReadOnlyCredentials

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
             timeout: float = TIMEOUT) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        url = self.base_url.rstrip("/") + path
        if urlsplit(url).scheme not in ("http", "https"):
            raise OpsError("the API URL must be http(s)", exit_code=2)
        request = AWSRequest(method=method, url=url, data=data,
                             headers={"Content-Type": "application/json", "Accept": "application/json"})
        SigV4Auth(self.credentials, SERVICE, self.region).add_auth(request)
        prepared = request.prepare()
        outgoing = urllib.request.Request(url, data=data or None, method=method,  # noqa: S310 - checked http(s)
                                          headers=dict(prepared.headers))
        try:
            with urllib.request.urlopen(outgoing, timeout=timeout) as response:  # noqa: S310 - http(s) only
                return _json(response.read())
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            if exc.code == 403:
                raise Refused() from None
            message = _json(payload).get("message") or exc.reason
            if exc.code == 401:
                raise OpsError(f"the API asked for a signature (HTTP 401): {message}", exit_code=3) from None
            raise OpsError(f"HTTP {exc.code}: {message}", exit_code=1 if exc.code >= 500 else 4) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OpsError(f"could not reach the API at {self.base_url}: {reason}") from None


    def post_unsigned(self, path: str, body: dict[str, Any], *, timeout: float = TIMEOUT) -> dict[str, Any]:
        """An unsigned JSON POST to the same base URL: the local stack's control endpoints (`/_local/...`)."""
        url = self.base_url.rstrip("/") + path
        if urlsplit(url).scheme not in ("http", "https"):
            raise OpsError("the API URL must be http(s)", exit_code=2)
        outgoing = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",  # noqa: S310
                                          headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(outgoing, timeout=timeout) as response:  # noqa: S310 - http(s) only
                return _json(response.read())
        except urllib.error.HTTPError as exc:
            raise OpsError(f"{path} answered HTTP {exc.code}: --drain works against the local stack only",
                           exit_code=2) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise OpsError(f"could not reach {self.base_url}{path}: {getattr(exc, 'reason', exc)}") from None


def _json(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
