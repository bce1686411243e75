"""The control API, `/_emulator/...` (docs/local-stack.md): JSON in, JSON out.

What a person would do in Seller Central (confirm a consent, click Authorize in the Appstore) and
what a test needs (clock, faults, stats, reset). Revocation and notifications are in
`lifecycle.py`; later issues add reports as more rules in their own modules.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .clock import iso
from .consent import (
    CONFIRM_PATH,
    check_seller_id,
    consent_target,
    decide,
    parse_consent,
)
from .faults import FaultError
from .marketplaces import MAIN_SELLER_CENTRAL, Region
from .web import (
    Call,
    HttpError,
    add_query,
    json_object,
    json_response,
    optional_number,
    required_str,
)


def region_field(body: dict[str, Any]) -> Region:
    value = body.get("region")
    if not isinstance(value, str) or value not in Region.__members__:
        raise HttpError(400, "invalid_request", "region must be one of NA, EU, FE")
    return Region[value]


def consent(call: Call) -> Response:
    """The seller answers on the page a consent URL opens, without a browser."""
    body = json_object(call.request)
    host, args = consent_target(required_str(body, "consent_url"))
    request = parse_consent(call.state.app, host, args)
    decision = body.get("decision", "confirm")
    if decision not in ("confirm", "cancel"):
        raise HttpError(400, "invalid_request", "decision must be confirm or cancel")
    seller = check_seller_id(body.get("selling_partner_id")) if decision == "confirm" else ""
    return json_response({"redirect": decide(call.state, request, seller, confirm=decision == "confirm")})


def appstore(call: Call) -> Response:
    """The seller clicks Authorize in the Appstore: Amazon sends the browser to our Log-in URI."""
    body = json_object(call.request)
    seller = check_seller_id(body.get("selling_partner_id"))
    region = region_field(body)
    app = call.state.app
    if not app.login_uri:
        raise HttpError(
            400,
            "no_login_uri",
            "the app has no Log-in URI registered (configure login_uri)",
        )
    callback = f"{call.base_url}/_hosts/{MAIN_SELLER_CENTRAL[region]}{CONFIRM_PATH}{app.application_id}"
    params = [
        ("amazon_callback_uri", callback),
        ("amazon_state", call.state.issue_amazon_state(seller, region)),
        ("selling_partner_id", seller),
    ]
    if app.draft:
        params.append(("version", "beta"))
    return json_response({"login_url": add_query(app.login_uri, params)})


def stats(call: Call) -> Response:
    return json_response(call.state.stats())


def faults(call: Call) -> Response:
    if call.request.method == "GET":
        return json_response({"pending": call.state.faults.pending()})
    body = json_object(call.request)
    try:
        call.state.faults.arm(
            required_str(body, "operation"),
            body.get("status"),
            body.get("count", 1),
            body.get("hold_seconds"),
        )
    except FaultError as exc:
        raise HttpError(400, "invalid_fault", str(exc)) from None
    return json_response({})


def roles(call: Call) -> Response:
    """Withhold a role from the application (no selling_partner_id) or one seller, or give it back."""
    if call.request.method == "POST":
        body = json_object(call.request)
        role = required_str(body, "role")
        seller = check_seller_id(body["selling_partner_id"]) if body.get("selling_partner_id") else None
        withheld = body.get("withheld", True)
        if not isinstance(withheld, bool):
            raise HttpError(400, "invalid_request", "withheld must be true or false")
        try:
            (call.state.roles.withhold if withheld else call.state.roles.restore)(role, seller)
        except ValueError as exc:
            raise HttpError(400, "invalid_request", str(exc)) from None
    return json_response({"withheld": call.state.roles.listed()})


def requests_received(call: Call) -> Response:
    """Every accepted createReport / createQuery, oldest first; `?operation=` and `?selling_partner_id=` filter."""
    args = call.request.args
    entries = call.state.request_log.entries(operation=args.get("operation") or None,
                                             seller=args.get("selling_partner_id") or None)
    return json_response({"requests": [entry.as_dict() for entry in entries]})


def clock(call: Call) -> Response:
    if call.request.method == "POST":
        seconds = optional_number(json_object(call.request), "advance_seconds")
        if seconds is None:
            raise HttpError(400, "invalid_request", "advance_seconds is required")
        try:
            call.state.advance_clock(seconds)
        except ValueError as exc:
            raise HttpError(400, "invalid_request", str(exc)) from None
    return json_response({"now": iso(call.state.now())})


def sellers(call: Call) -> Response:
    if call.request.method == "POST":
        body = json_object(call.request)
        seller = call.state.register_seller(check_seller_id(body.get("selling_partner_id")), region_field(body))
        return json_response(
            {
                "selling_partner_id": seller.selling_partner_id,
                "region": seller.region.value,
            }
        )
    listed = [{"selling_partner_id": s.selling_partner_id, "region": s.region.value} for s in call.state.sellers()]
    return json_response({"sellers": listed})


def app_info(call: Call) -> Response:
    """The registered application, without its client secret."""
    app = call.state.app
    expires_at = app.client.current_expires_at
    return json_response(
        {
            "application_id": app.application_id,
            "client_id": app.client.client_id,
            "name": app.name,
            "draft": app.draft,
            "redirect_uris": list(app.redirect_uris),
            "login_uri": app.login_uri,
            "client_secret_expires_at": iso(expires_at) if expires_at else None,
            "notification_queue_url": call.state.notifier.queue_url,
        }
    )


def reset(call: Call) -> Response:
    call.state.reset()
    return json_response({})


RULES = [
    Rule("/_emulator/consent", endpoint=consent, methods=["POST"]),
    Rule("/_emulator/appstore", endpoint=appstore, methods=["POST"]),
    Rule("/_emulator/stats", endpoint=stats, methods=["GET"]),
    Rule("/_emulator/faults", endpoint=faults, methods=["GET", "POST"]),
    Rule("/_emulator/roles", endpoint=roles, methods=["GET", "POST"]),
    Rule("/_emulator/requests", endpoint=requests_received, methods=["GET"]),
    Rule("/_emulator/clock", endpoint=clock, methods=["GET", "POST"]),
    Rule("/_emulator/sellers", endpoint=sellers, methods=["GET", "POST"]),
    Rule("/_emulator/app", endpoint=app_info, methods=["GET"]),
    Rule("/_emulator/reset", endpoint=reset, methods=["POST"]),
]
