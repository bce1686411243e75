"""Login with Amazon: `POST https://api.amazon.com/auth/o2/token` (Login with Amazon's token endpoint).

All three grants, LWA's error bodies and status codes, form or JSON bodies (the Java SDK v2 sends
JSON). Every call is counted by grant type before anything else happens, so faulted and failed
calls show in the stats too.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .faults import Fault
from .state import ACCESS_TOKEN_SECONDS, EmulatorState, GrantError
from .web import Call

logger = logging.getLogger(__name__)

OPERATION = "lwa_token"

SCOPES = frozenset(
    {
        "sellingpartnerapi::notifications",
        "sellingpartnerapi::client_credential:rotation",
        "sellingpartnerapi::migration",
    }
)

_GRANT_DESCRIPTIONS = {
    "code": "The request has an invalid grant parameter : code",
    "redirect_uri": "The request has an invalid grant parameter : redirect_uri",
    "refresh_token": (
        "The request has an invalid grant parameter : refresh_token. "
        "User may have revoked or didn't grant the permission."
    ),
}

_FAULTS = {
    500: (
        "server_error",
        "The authorization server encountered an unexpected condition",
    ),
    503: (
        "temporarily_unavailable",
        "The authorization server is temporarily unavailable",
    ),
}

_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class LwaError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description


def _lwa_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        content_type="application/json;charset=UTF-8",
        headers=_HEADERS,
    )


def _missing(name: str) -> LwaError:
    return LwaError(400, "invalid_request", f"The request is missing a required parameter : {name}")


def _params(request: Request) -> dict[str, str]:
    """The body's fields, from JSON or x-www-form-urlencoded; every value a string, none repeated."""
    if request.mimetype == "application/json":
        try:
            body = json.loads(request.get_data())
        except ValueError:
            raise LwaError(400, "invalid_request", "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise LwaError(400, "invalid_request", "The request body must be a JSON object")
        bad = sorted(k for k, v in body.items() if not isinstance(v, str))
        if bad:
            raise LwaError(
                400,
                "invalid_request",
                f"The request has an invalid parameter : {bad[0]}",
            )
        return body
    params: dict[str, str] = {}
    for name, values in request.form.lists():
        if len(values) > 1:  # RFC 6749 §3.2: parameters must not repeat
            raise LwaError(400, "invalid_request", f"The request has an invalid parameter : {name}")
        params[name] = values[0]
    return params


def _require(params: dict[str, str], *names: str) -> list[str]:
    for name in names:
        if not params.get(name):
            raise _missing(name)
    return [params[name] for name in names]


def _grant(state: EmulatorState, params: dict[str, str]) -> dict[str, Any]:
    grant_type = params.get("grant_type")
    if not grant_type:
        raise _missing("grant_type")
    handler = _GRANTS.get(grant_type)
    if handler is None:
        raise LwaError(
            400,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        )
    client_id, client_secret = _require(params, "client_id", "client_secret")
    if not state.app.client.authenticates(client_id, client_secret, state.now()):
        raise LwaError(401, "invalid_client", "Client authentication failed")
    try:
        return handler(state, client_id, params)
    except GrantError as exc:
        raise LwaError(400, "invalid_grant", _GRANT_DESCRIPTIONS[exc.parameter]) from None


def _authorization_code(state: EmulatorState, client_id: str, params: dict[str, str]) -> dict[str, Any]:
    code, redirect_uri = _require(params, "code", "redirect_uri")
    grant = state.redeem_code(code, client_id, redirect_uri)
    return {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "token_type": "bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
    }


def _refresh_token(state: EmulatorState, client_id: str, params: dict[str, str]) -> dict[str, Any]:
    (refresh_token,) = _require(params, "refresh_token")
    grant = state.refresh(refresh_token, client_id)
    return {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "token_type": "bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
    }


def _client_credentials(state: EmulatorState, client_id: str, params: dict[str, str]) -> dict[str, Any]:
    (scope,) = _require(params, "scope")
    scopes = tuple(scope.split())
    if not scopes or any(s not in SCOPES for s in scopes):
        raise LwaError(400, "invalid_scope", "The request has an invalid parameter : scope")
    return {
        "access_token": state.issue_grantless(client_id, scopes),
        "scope": " ".join(scopes),
        "token_type": "bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
    }


_GRANTS = {
    "authorization_code": _authorization_code,
    "refresh_token": _refresh_token,
    "client_credentials": _client_credentials,
}


def _fault_response(state: EmulatorState, fault: Fault) -> Response:
    status = 503 if fault.kind == "timeout" else int(fault.kind)
    if fault.kind == "timeout":
        # Hold the answer (real seconds, not the emulator clock) so a short client timeout fires.
        time.sleep(fault.hold_seconds)
    error, description = _FAULTS[status]
    state.count_lwa_error(error)
    return _lwa_response({"error_description": description, "error": error}, status)


def token(call: Call) -> Response:
    state = call.state
    parse_error: LwaError | None = None
    try:
        params = _params(call.request)
    except LwaError as exc:
        params, parse_error = {}, exc
    state.count_lwa_call(params.get("grant_type", ""))
    fault = state.faults.take(OPERATION)
    if fault is not None:
        return _fault_response(state, fault)
    try:
        if parse_error is not None:
            raise parse_error
        body = _grant(state, params)
    except LwaError as exc:
        state.count_lwa_error(exc.error)
        logger.debug("LWA token call failed: %s", exc.error)
        return _lwa_response({"error_description": exc.description, "error": exc.error}, exc.status)
    return _lwa_response(body)


RULES = [Rule("/auth/o2/token", endpoint=token, methods=["POST"])]
