"""Login with Amazon token endpoint client.

- Explicit connect/read timeouts, and a total deadline so a caller inside an API request stays well
  under API Gateway's 29 seconds.
- LWA error codes become typed errors (errors.py). Only server_error, temporarily_unavailable, other
  5xx and network timeouts are retried, with exponential backoff and full jitter.
- Nothing read or sent is logged; exceptions carry the LWA error code and HTTP status only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from seller_insights import clock
from seller_insights.credentials import CredentialsSource
from seller_insights.errors import (
    LwaError,
    LwaInvalidClient,
    LwaInvalidGrant,
    LwaRejected,
    LwaUnavailable,
)
from seller_insights.observability import get_logger
from seller_insights.redaction import register_secret

RETRYABLE_CODES = {"server_error", "temporarily_unavailable"}
# Amazon's auth helpers map an unusable body by HTTP status (as Amazon's own SDKs do).
_STATUS_CODES = {400: "invalid_request", 401: "unauthorized_client", 403: "access_denied",
                 500: "server_error", 503: "temporarily_unavailable"}


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int
    refresh_token: str | None = None
    scope: str | None = None

    def __repr__(self) -> str:
        return f"TokenGrant(expires_in={self.expires_in}, scope={self.scope!r})"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 2.0
    connect_timeout: float = 3.05
    read_timeout: float = 8.0
    deadline: float = 15.0  # total seconds for all attempts and waits


class LwaClient:
    def __init__(
        self,
        token_url: str,
        credentials: CredentialsSource,
        *,
        policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._token_url = token_url
        self._credentials = credentials
        self._policy = policy or RetryPolicy()
        self._session = session or requests.Session()
        self._sleep = sleep
        self._monotonic = monotonic
        self._jitter = jitter

    def exchange_code(self, code: str, redirect_uri: str) -> TokenGrant:
        grant = self._request({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})
        if not grant.refresh_token:
            raise LwaRejected("missing_refresh_token")
        return grant

    def refresh(self, refresh_token: str) -> TokenGrant:
        return self._request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def client_credentials(self, scope: str) -> TokenGrant:
        return self._request({"grant_type": "client_credentials", "scope": scope})

    def _request(self, fields: dict[str, str]) -> TokenGrant:
        """Ask with the current secret; on invalid_client, with a re-read secret (it may have just
        rotated), then with the previous secret while its 7-day overlap lasts."""
        creds = self._credentials()
        tried = {creds.client_secret}
        try:
            return self._with_retries({**fields, "client_id": creds.client_id, "client_secret": creds.client_secret})
        except LwaInvalidClient:
            fresh = self._credentials(force_fetch=True)
            for secret in (fresh.client_secret, fresh.previous_secret_valid_at(clock.now())):
                if secret and secret not in tried:
                    tried.add(secret)
                    try:
                        return self._with_retries({**fields, "client_id": fresh.client_id, "client_secret": secret})
                    except LwaInvalidClient:
                        continue
            raise

    def _with_retries(self, body: dict[str, str]) -> TokenGrant:
        started = self._monotonic()
        attempt = 0
        while True:
            attempt += 1
            remaining = self._policy.deadline - (self._monotonic() - started)
            try:
                return self._attempt(body, read_timeout=max(0.5, min(self._policy.read_timeout, remaining)))
            except LwaError as exc:
                if not _retryable(exc) or attempt >= self._policy.max_attempts:
                    raise
                delay = min(self._policy.max_delay, self._policy.base_delay * 2 ** (attempt - 1)) * self._jitter()
                remaining = self._policy.deadline - (self._monotonic() - started)
                if remaining - delay < 1.0:  # no room left for a meaningful attempt
                    raise
                get_logger().warning("LWA token request failed; retrying",
                                     extra={"lwa_error": exc.code, "attempt": attempt})
                self._sleep(delay)

    def _attempt(self, body: dict[str, str], read_timeout: float) -> TokenGrant:
        try:
            response = self._session.post(
                self._token_url,
                data=body,
                headers={"Accept": "application/json"},
                timeout=(self._policy.connect_timeout, read_timeout),
            )
        except requests.Timeout:
            raise LwaUnavailable("timeout") from None
        except requests.ConnectionError:
            raise LwaUnavailable("connection_error") from None
        payload = _json(response)
        if response.status_code == 200 and isinstance(payload.get("access_token"), str):
            expires_in = payload.get("expires_in", 3600)
            if not isinstance(expires_in, int) or expires_in <= 0:
                raise LwaRejected("invalid_response", response.status_code)
            grant = TokenGrant(
                access_token=payload["access_token"],
                expires_in=expires_in,
                refresh_token=payload.get("refresh_token"),
                scope=payload.get("scope"),
            )
            register_secret(grant.access_token, grant.refresh_token)
            return grant
        raise _error(response.status_code, payload)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error(status: int, payload: dict[str, Any]) -> LwaError:
    code = payload.get("error")
    if not isinstance(code, str) or not code:
        code = _STATUS_CODES.get(status, "server_error" if status >= 500 else "other")
    if code == "invalid_grant":
        return LwaInvalidGrant(code, status)
    if code == "invalid_client":
        return LwaInvalidClient(code, status)
    if code in RETRYABLE_CODES or status >= 500:
        return LwaUnavailable(code, status)
    return LwaRejected(code, status)


def _retryable(exc: LwaError) -> bool:
    return isinstance(exc, LwaUnavailable)
