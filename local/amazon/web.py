"""Small HTTP helpers shared by the host handlers and the control API."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jinja2
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from .state import EmulatorState

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("local.amazon", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

# Pages that carry OAuth parameters must not leak them through Referer, caches or frames.
_PAGE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


class EmulatorRequest(Request):
    max_content_length = 1024 * 1024
    max_form_memory_size = 1024 * 1024


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it."""

    request: Request
    state: EmulatorState
    # How the client reached the emulator, e.g. http://127.0.0.1:8123 (no trailing slash).
    base_url: str
    # The Amazon host addressed through /_hosts/{host}; "" on the control API.
    host: str = ""


class HttpError(Exception):
    """An error the handler wants answered in its service's own error format."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        mimetype="application/json",
        headers=dict(headers or {}),
    )


def json_error(status: int, code: str, message: str) -> Response:
    return json_response({"error": code, "message": message}, status)


def html_page(template: str, status: int = 200, **context: Any) -> Response:
    body = _templates.get_template(template).render(**context)
    return Response(body, status=status, mimetype="text/html", headers=_PAGE_HEADERS)


def html_error(status: int, message: str, title: str = "Authorization error") -> Response:
    return html_page("error.html", status=status, title=title, message=message)


def redirect(location: str) -> Response:
    return Response("", status=302, headers={"Location": location, **_PAGE_HEADERS})


def add_query(url: str, params: list[tuple[str, str]]) -> str:
    """Append parameters to a URL that may already have a query string."""
    if not params:
        return url
    joiner = "&" if "?" in url else "?"
    return url + joiner + urlencode(params)


def single(args: MultiDict[str, str], name: str) -> str | None:
    """A query or form parameter that may appear at most once (RFC 6749 §3.1, §3.2)."""
    values = args.getlist(name)
    if len(values) > 1:
        raise HttpError(400, "invalid_request", f"parameter {name} is given more than once")
    return values[0] if values else None


# -- JSON bodies of the control API ---------------------------------------------------------


def json_object(request: Request) -> dict[str, Any]:
    data = request.get_data(cache=True)
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except ValueError:
        raise HttpError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "the body must be a JSON object")
    return body


def required_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise HttpError(400, "invalid_request", f"{key} is required and must be a non-empty string")
    return value


def optional_number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HttpError(400, "invalid_request", f"{key} must be a number")
    return float(value)
