"""Seller/Vendor Central: the consent page and the end of the Log-in URI hop (Amazon's "Authorizing Selling Partner API
applications" guide).

Validation follows Amazon: a bad request gets an error page on Amazon's side (400), never a
redirect to a URI that might not belong to the app. Only a valid request reaches the app's
redirect URI, with `state`, `selling_partner_id` and `spapi_oauth_code` (or the cancel error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from werkzeug.datastructures import MultiDict
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .marketplaces import REGION_NAMES, CentralHost, Region, central_host
from .registration import EmulatorApp
from .state import AmazonStateError, EmulatorState
from .web import Call, HttpError, add_query, html_page, redirect, single

CONSENT_PATH = "/apps/authorize/consent"
CONFIRM_PATH = "/apps/authorize/confirm/"

SELLING_PARTNER_ID = re.compile(r"[A-Z0-9]{10,20}")

CANCEL_DESCRIPTION = "The user denied the request"


def example_seller_id(region: Region) -> str:
    """The deterministic id the consent form offers, one per region (A1EXAMPLESELLERN/E/F)."""
    return f"A1EXAMPLESELLER{region.value[0]}"


def check_seller_id(value: object) -> str:
    if not isinstance(value, str) or not SELLING_PARTNER_ID.fullmatch(value):
        raise HttpError(
            400,
            "invalid_selling_partner_id",
            "selling_partner_id must be 10 to 20 uppercase letters or digits",
        )
    return value


def _invalid(message: str) -> HttpError:
    return HttpError(400, "invalid_authorization_request", message)


@dataclass(frozen=True)
class ConsentRequest:
    """A consent (or confirm-hop) request that passed validation."""

    central: CentralHost
    app: EmulatorApp
    state: str | None
    redirect_uri: str


def _check_version(app: EmulatorApp, version: str | None) -> None:
    if version is not None and version != "beta":
        raise _invalid("unsupported version: only version=beta is recognised")
    if app.draft and version is None:
        raise _invalid("this app is in draft; add version=beta")
    if not app.draft and version == "beta":
        raise _invalid("version=beta is only for draft apps; this app is published")


def _redirect_uri(app: EmulatorApp, given: str | None) -> str:
    if not app.redirect_uris:
        raise _invalid("the app has no OAuth redirect URI registered")
    if given is None:
        return app.redirect_uris[0]  # Amazon uses the first registered one
    if given not in app.redirect_uris:  # exact string match, no normalisation
        raise _invalid("redirect_uri is not one of the OAuth redirect URIs registered for this app")
    return given


def _central(host: str) -> CentralHost:
    central = central_host(host)
    if central is None:
        raise HttpError(404, "unknown_host", "not a Seller Central or Vendor Central host")
    return central


def parse_consent(app: EmulatorApp, host: str, args: MultiDict[str, str]) -> ConsentRequest:
    """Validate the query of a consent URI as Amazon does; raises HttpError with the reason."""
    central = _central(host)
    application_id = single(args, "application_id")
    if not application_id:
        raise _invalid("application_id is required")
    if application_id != app.application_id:
        raise _invalid("unknown application_id: no application is registered under this id")
    _check_version(app, single(args, "version"))
    redirect_uri = _redirect_uri(app, single(args, "redirect_uri"))
    return ConsentRequest(central, app, single(args, "state"), redirect_uri)


def decide(
    state: EmulatorState,
    request: ConsentRequest,
    selling_partner_id: str,
    confirm: bool,
) -> str:
    """Where the browser goes after the seller confirms or cancels."""
    if not confirm:
        params = [("error", "access_denied"), ("error_description", CANCEL_DESCRIPTION)]
        if request.state is not None:
            params.append(("state", request.state))
        return add_query(request.redirect_uri, params)
    code = state.issue_code(
        check_seller_id(selling_partner_id),
        request.central.region,
        request.redirect_uri,
    )
    return _authorized(request, selling_partner_id, code)


def _authorized(request: ConsentRequest, selling_partner_id: str, code: str) -> str:
    params = [] if request.state is None else [("state", request.state)]
    params += [("selling_partner_id", selling_partner_id), ("spapi_oauth_code", code)]
    return add_query(request.redirect_uri, params)


def consent_target(url: str) -> tuple[str, MultiDict[str, str]]:
    """Host and query of a consent URL, given as Amazon's URL or as the emulator's /_hosts/ form."""
    parts = urlsplit(url)
    path = parts.path
    if parts.scheme == "https" and central_host(parts.hostname or ""):
        host = parts.hostname or ""
    elif parts.scheme in ("http", "https") and path.startswith("/_hosts/"):
        host, _, rest = path.removeprefix("/_hosts/").partition("/")
        path = "/" + rest
    else:
        raise _invalid(
            "consent_url must be https://{Seller or Vendor Central host}/apps/authorize/consent?... "
            "or its emulator form {emulator}/_hosts/{host}/apps/authorize/consent?..."
        )
    if central_host(host) is None:
        raise _invalid("consent_url's host is not a Seller Central or Vendor Central host")
    if path != CONSENT_PATH:
        raise _invalid(f"consent_url must point at {CONSENT_PATH}")
    return host.lower(), MultiDict(parse_qsl(parts.query, keep_blank_values=True))


# -- HTML handlers -----------------------------------------------------------------------------


def _form(
    call: Call,
    request: ConsentRequest,
    selling_partner_id: str,
    error: str | None,
    status: int,
) -> Response:
    query = call.request.query_string.decode("latin-1")
    action = f"/_hosts/{call.host}{CONSENT_PATH}" + (f"?{query}" if query else "")
    region = request.central.region
    return html_page(
        "consent.html",
        status=status,
        app_name=request.app.name,
        application_id=request.app.application_id,
        draft=request.app.draft,
        host=request.central.host,
        kind=request.central.kind,
        region=region.value,
        region_name=REGION_NAMES[region],
        redirect_uri=request.redirect_uri,
        selling_partner_id=selling_partner_id,
        action=action,
        error=error,
    )


def consent_page(call: Call) -> Response:
    request = parse_consent(call.state.app, call.host, call.request.args)
    return _form(call, request, example_seller_id(request.central.region), None, 200)


def consent_submit(call: Call) -> Response:
    request = parse_consent(call.state.app, call.host, call.request.args)
    action = call.request.form.get("action")
    if action == "cancel":
        return redirect(decide(call.state, request, "", confirm=False))
    if action != "confirm":
        raise HttpError(400, "invalid_request", "choose Confirm or Cancel")
    seller = call.request.form.get("selling_partner_id", "").strip()
    if not SELLING_PARTNER_ID.fullmatch(seller):
        message = "selling_partner_id must be 10 to 20 uppercase letters or digits"
        return _form(call, request, seller, message, 400)
    return redirect(decide(call.state, request, seller, confirm=True))


def confirm_hop(call: Call, application_id: str) -> Response:
    """`amazon_callback_uri`: the app sends the browser back here at the end of the Log-in URI hop."""
    central = _central(call.host)
    app = call.state.app
    if central.kind != "seller":
        raise _invalid("the Appstore authorization flow is for sellers only")
    if application_id != app.application_id:
        raise _invalid("unknown application_id: no application is registered under this id")
    args = call.request.args
    _check_version(app, single(args, "version"))
    redirect_uri = _redirect_uri(app, single(args, "redirect_uri"))
    amazon_state = single(args, "amazon_state")
    if not amazon_state:
        raise _invalid("amazon_state is required")
    request = ConsentRequest(central, app, single(args, "state"), redirect_uri)
    try:
        pending = call.state.consume_amazon_state(amazon_state, app.application_id, central.region)
    except AmazonStateError as exc:
        raise _invalid(str(exc)) from None
    code = call.state.issue_code(pending.selling_partner_id, pending.region, redirect_uri)
    return redirect(_authorized(request, pending.selling_partner_id, code))


RULES = [
    Rule(CONSENT_PATH, endpoint=consent_page, methods=["GET"]),
    Rule(CONSENT_PATH, endpoint=consent_submit, methods=["POST"]),
    Rule(CONFIRM_PATH + "<application_id>", endpoint=confirm_hop, methods=["GET"]),
]
