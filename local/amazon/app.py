"""The WSGI application: routes `/_hosts/{host}{path}` to the service of that Amazon host, and
`/_emulator/...` to the control API.

A service is a werkzeug `Map` whose rule endpoints are the handler functions, plus the format its
errors take (an HTML page on Seller Central, LWA's or SP-API's JSON elsewhere). Adding an Amazon API
means one more `HostRoute` and, for its control calls, more control rules.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from . import (
    consent,
    control,
    datakiosk,
    downloads,
    fees,
    lifecycle,
    lwa,
    notifications_api,
    participations_control,
    reports,
    reports_control,
    spapi,
)
from .marketplaces import LWA_HOST, SPAPI_HOSTS, central_host
from .state import EmulatorState
from .web import Call, EmulatorRequest, HttpError, html_error, json_error, json_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

HOSTS_PREFIX = "/_hosts/"
# Pre-signed report document URLs (they stand for Amazon's S3 or CloudFront document hosts).
DOCUMENTS_PREFIX = "/_documents/"


def _json_error(error: HttpError) -> Response:
    return json_error(error.status, error.code, error.message)


def _html_error(error: HttpError) -> Response:
    return html_error(error.status, error.message)


def _lwa_error(error: HttpError) -> Response:
    # Routing errors on api.amazon.com (wrong path or method) in LWA's body shape.
    return json_response({"error_description": error.message, "error": "invalid_request"}, error.status)


@dataclass(frozen=True)
class Service:
    name: str
    url_map: Map
    render_error: Callable[[HttpError], Response]


@dataclass(frozen=True)
class HostRoute:
    matches: Callable[[str], bool]
    service: Service


def service(name: str, rules: Iterable[Rule], render_error: Callable[[HttpError], Response]) -> Service:
    # A Rule binds to the one Map it is added to: copy, so several emulators can share rule lists.
    return Service(name, Map([rule.empty() for rule in rules], strict_slashes=False), render_error)


def default_host_routes() -> list[HostRoute]:
    return [
        HostRoute(
            lambda host: central_host(host) is not None,
            service("central", consent.RULES, _html_error),
        ),
        HostRoute(lambda host: host.lower() == LWA_HOST, service("lwa", lwa.RULES, _lwa_error)),
        HostRoute(
            lambda host: host.lower() in SPAPI_HOSTS,
            service("spapi", [*spapi.RULES, *reports.RULES, *datakiosk.RULES, *notifications_api.RULES, *fees.RULES],
                    spapi.render_error),
        ),
    ]


class EmulatorWsgi:
    def __init__(
        self,
        state: EmulatorState,
        host_routes: Sequence[HostRoute] | None = None,
        control_rules: Iterable[Rule] | None = None,
    ) -> None:
        self.state = state
        self.host_routes = list(default_host_routes() if host_routes is None else host_routes)
        self.control = service(
            "control",
            [*control.RULES, *lifecycle.RULES, *reports_control.RULES, *participations_control.RULES,
             *datakiosk.CONTROL_RULES]
            if control_rules is None
            else control_rules,
            _json_error,
        )
        self.documents = service("documents", downloads.RULES, downloads.render_error)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = EmulatorRequest(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: EmulatorRequest) -> Response:
        # Method and path only: query strings and bodies carry codes, states and tokens.
        logger.debug("%s %s", request.method, request.path)
        base_url = request.host_url.rstrip("/")
        path = request.path
        if path.startswith(HOSTS_PREFIX):
            host, _, rest = path.removeprefix(HOSTS_PREFIX).partition("/")
            for route in self.host_routes:
                if route.matches(host):
                    return self._run(
                        route.service,
                        "/" + rest,
                        Call(request, self.state, base_url, host.lower()),
                    )
            return json_error(404, "unknown_host", f"the emulator does not serve the host {host!r}")
        if path.startswith(DOCUMENTS_PREFIX):
            return self._run(self.documents, path, Call(request, self.state, base_url))
        if path.startswith("/_emulator/"):
            return self._run(self.control, path, Call(request, self.state, base_url))
        return json_error(404, "not_found", "use /_hosts/{amazon host}/..., /_documents/... or /_emulator/...")

    def _run(self, svc: Service, path: str, call: Call) -> Response:
        try:
            endpoint, args = svc.url_map.bind("emulator").match(path, method=call.request.method)
            response: Response = endpoint(call, **args)
            return response
        except HttpError as exc:
            return svc.render_error(exc)
        except MethodNotAllowed as exc:
            response = svc.render_error(HttpError(405, "method_not_allowed", "method not allowed on this path"))
            response.headers["Allow"] = ", ".join(exc.valid_methods or ())
            return response
        except HTTPException as exc:  # routing (404) and oversized bodies (413)
            return svc.render_error(HttpError(exc.code or 500, "http_error", exc.description or exc.name))
        except Exception as exc:  # the server must answer, whatever a handler does
            # The frames only: an exception's message could hold a token or a code.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            logger.error("%s handler failed with %s\n%s", svc.name, type(exc).__name__, frames)
            return svc.render_error(HttpError(500, "internal_error", "the emulator failed; see its log"))
