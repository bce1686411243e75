"""The local API gateway: the template's HTTP API routes as API Gateway HTTP API payload 2.0 events
for the real handlers, the stage's per-route throttles, IAM (SigV4) authorization for `/admin/...`, and
the `/_local/...` control endpoints that exist only here.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import boto3
import requests
from werkzeug.datastructures import Headers
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from local import sigv4
from local.aws import API_ID
from local.functions import FunctionRuntime
from local.poller import QueuePoller
from local.scheduler import Schedule
from local.template import ACCOUNT_ID, REGION, Template, dependencies, invoked_function, props, resources

log = logging.getLogger("local.gateway")

_TEXT_TYPES = re.compile(r"^(text/.*|application/(.+\+)?(json|xml)|application/javascript)(;.*)?$", re.IGNORECASE)


class VirtualClock(Protocol):
    def now(self) -> datetime: ...
    def advance(self, seconds: float) -> datetime: ...


@dataclass(frozen=True)
class AdminCredentials:
    access_key_id: str
    secret_access_key: str

    @classmethod
    def generate(cls) -> AdminCredentials:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        key = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
        return cls(key, secrets.token_urlsafe(30)[:40])


# --- routes -------------------------------------------------------------------------------------

# API Gateway's account-level throttle per Region (infra/config.py bounds route limits by the same figures,
# without the CDK import this module avoids): what a route gets when neither its own settings nor
# the stage's defaults say otherwise.
ACCOUNT_RATE_LIMIT = 10_000.0
ACCOUNT_BURST_LIMIT = 5_000
# The role operators assume for the /admin routes (infra/constructs/data_requests.py), and the session
# the local admin credentials stand for.
OPS_ROLE_NAME = "OpsSupportRole"
LOCAL_ADMIN_SESSION = "local-admin"


@dataclass(frozen=True)
class Throttle:
    """A route's token bucket: ``rate`` tokens a second, at most ``burst`` held."""

    rate: float
    burst: int


@dataclass(frozen=True)
class Route:
    key: str  # "ANY /connect", "GET /admin/sellers/{id}", "$default"
    function_id: str
    authorization: str = "NONE"
    throttle: Throttle | None = None  # None: not throttled (a route built by hand, not from a template)

    @property
    def iam(self) -> bool:
        """IAM-authorized in the template, or under /admin/ (which must never be open, whatever it says)."""
        return self.authorization == "AWS_IAM" or self.segments[:1] == ["admin"]

    @property
    def method(self) -> str:
        return self.key.split(" ", 1)[0] if self.key != "$default" else "ANY"

    @property
    def segments(self) -> list[str]:
        return [s for s in self.key.split(" ", 1)[1].split("/") if s] if self.key != "$default" else []

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        params: dict[str, str] = {}
        pattern = self.segments
        for i, part in enumerate(pattern):
            if part.startswith("{") and part.endswith("+}"):
                if i >= len(segments):
                    return None
                params[part[1:-2]] = "/".join(segments[i:])
                return params
            if i >= len(segments):
                return None
            if part.startswith("{") and part.endswith("}"):
                params[part[1:-1]] = segments[i]
            elif part != segments[i]:
                return None
        return params if len(pattern) == len(segments) else None

    def specificity(self) -> tuple[int, int, int]:
        """API Gateway prefers literal segments, then non-greedy routes, then a method over ANY."""
        static = sum(1 for s in self.segments if not s.startswith("{"))
        greedy = any(s.endswith("+}") for s in self.segments)
        return (static, 0 if greedy else 1, 0 if self.method == "ANY" else 1)


def routes_from(template: Template) -> list[Route]:
    stages = _default_stages(template)
    integrations = {}
    for logical_id, resource in resources(template, "AWS::ApiGatewayV2::Integration"):
        function_id = invoked_function(template, props(resource).get("IntegrationUri"))
        if function_id is not None:
            integrations[logical_id] = function_id
    found = []
    for logical_id, resource in resources(template, "AWS::ApiGatewayV2::Route"):
        p = props(resource)
        integration = dependencies(p.get("Target")) & integrations.keys()
        if len(integration) != 1:
            log.warning("%s (%s) has no Lambda integration; not served locally", logical_id, p.get("RouteKey"))
            continue
        settings = next((stages[api] for api in dependencies(p.get("ApiId")) if api in stages), None)
        throttle = _throttle(p["RouteKey"], *settings) if settings else None
        found.append(
            Route(p["RouteKey"], integrations[integration.pop()], p.get("AuthorizationType", "NONE"), throttle)
        )
    return found


def _default_stages(template: Template) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """API logical id -> (RouteSettings, DefaultRouteSettings) of its `$default` stage, the one served here."""
    stages = {}
    for _, resource in resources(template, "AWS::ApiGatewayV2::Stage"):
        p = props(resource)
        if p.get("StageName") != "$default":
            continue
        for api in dependencies(p.get("ApiId")):
            stages[api] = (p.get("RouteSettings") or {}, p.get("DefaultRouteSettings") or {})
    return stages


def _throttle(route_key: str, route_settings: dict[str, Any], default: dict[str, Any]) -> Throttle:
    """As API Gateway does: the route's own settings, else the stage's defaults, else the account's."""
    own = route_settings.get(route_key) or {}
    rate = own.get("ThrottlingRateLimit", default.get("ThrottlingRateLimit", ACCOUNT_RATE_LIMIT))
    burst = own.get("ThrottlingBurstLimit", default.get("ThrottlingBurstLimit", ACCOUNT_BURST_LIMIT))
    return Throttle(float(rate), int(burst))


class TokenBucket:
    """API Gateway's throttle for one route key: starts full, refills ``rate`` tokens a second up to
    ``burst``; each request takes one token or is refused. Safe across the server's threads."""

    def __init__(self, throttle: Throttle, monotonic: Callable[[], float]) -> None:
        self._rate = throttle.rate
        self._burst = throttle.burst
        self._monotonic = monotonic
        self._tokens = float(throttle.burst)
        self._at = monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._monotonic()
            self._tokens = min(float(self._burst), self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


# --- events and responses -----------------------------------------------------------------------


def build_event(
    request: Request, route: Route, path_params: dict[str, str], now: datetime, request_id: str
) -> dict[str, Any]:
    """An API Gateway HTTP API payload 2.0 event, as AWS builds it."""
    raw_path, _, raw_query = _raw_target(request).partition("?")
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        lname = name.lower()
        # The dev server has already comma-joined repeated headers, as API Gateway does.
        headers[lname] = f"{headers[lname]},{value}" if lname in headers else value
    cookie_header = headers.pop("cookie", "")
    cookies = [c.strip() for c in cookie_header.split(";") if c.strip()]
    source_ip = request.remote_addr or "127.0.0.1"
    headers.setdefault("x-forwarded-for", source_ip)
    headers.setdefault("x-forwarded-proto", request.scheme)
    headers.setdefault("x-forwarded-port", str(request.environ.get("SERVER_PORT", "")))
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now.timestamp()):08x}-{secrets.token_hex(12)}")
    query: dict[str, str] = {}
    for pair in raw_query.split("&") if raw_query else []:
        key, _, value = pair.partition("=")
        key, value = unquote(key.replace("+", " ")), unquote(value.replace("+", " "))
        query[key] = f"{query[key]},{value}" if key in query else value
    domain = request.host
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = path_params
    body = request.get_data()
    if body:
        if _TEXT_TYPES.match(headers.get("content-type", "")):
            event["body"] = body.decode("utf-8", errors="replace")
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def _raw_target(request: Request) -> str:
    """The request target exactly as the client sent it (path and query, not re-encoded)."""
    raw = request.environ.get("RAW_URI") or request.full_path
    raw = raw.encode("latin-1").decode("utf-8", errors="replace")  # undo the WSGI encoding dance
    if raw.startswith(("http://", "https://")):
        parts = urlsplit(raw)
        raw = parts.path + (f"?{parts.query}" if parts.query else "")
    return str(raw)


class _Raw(Response):
    default_mimetype = None  # no Content-Type unless the handler set one, as in API Gateway


def to_response(result: Any) -> Response:
    """The payload 2.0 response mapping: a structured response, or anything else as 200 JSON."""
    if not (isinstance(result, dict) and "statusCode" in result):
        text = result if isinstance(result, str) else json.dumps(result)
        return _Raw(text, status=200, headers={"content-type": "application/json"})
    headers = Headers()
    for name, value in (result.get("headers") or {}).items():
        headers.add(name, str(value))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            headers.add(name, str(value))
    for cookie in result.get("cookies") or []:
        headers.add("Set-Cookie", cookie)
    raw_body = str(result.get("body") or "")
    body = base64.b64decode(raw_body) if result.get("isBase64Encoded") else raw_body.encode()
    return _Raw(body, status=int(result["statusCode"]), headers=headers)


def _json(status: int, payload: Any) -> Response:
    return _Raw(json.dumps(payload, default=str), status=status, headers={"content-type": "application/json"})


# --- the gateway --------------------------------------------------------------------------------


class Gateway:
    def __init__(
        self,
        *,
        routes: list[Route],
        runtime: FunctionRuntime,
        schedules: dict[str, Schedule],
        poller: QueuePoller,
        clock: VirtualClock,
        admin: AdminCredentials,
        amazon_url: str,
        queue_urls: dict[str, str],
        rule_names: dict[str, str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``monotonic``: the throttles' clock. They run on real time, as API Gateway's do, never on the
        product's virtual clock (moving that clock must not refill anyone's bucket)."""
        self.routes = sorted(routes, key=lambda r: r.specificity(), reverse=True)
        self._buckets = {r.key: TokenBucket(r.throttle, monotonic) for r in routes if r.throttle is not None}
        self.runtime = runtime
        self.schedules = schedules
        self.poller = poller
        self.clock = clock
        self.admin = admin
        self._amazon_url = amazon_url
        self._queue_urls = queue_urls  # logical id -> url, for schedules that target a queue
        self._rule_names = rule_names or {}  # logical id -> the schedule's EventBridge rule in moto
        self._clock_lock = threading.Lock()
        # What `GET /_local/stack` answers (set by LocalStack once everything runs): its JSON line plus
        # the inventory the ops fleet commands work from (ops/fleet.py).
        self.describe: Callable[[], dict[str, Any]] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            if request.path == "/_local" or request.path.startswith("/_local/"):
                response = self._control(request)
            else:
                response = self._product(request)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = _json(500, {"message": "Internal Server Error"})
        return response(environ, start_response)

    # product routes

    def _product(self, request: Request) -> Response:
        request_id = base64.b64encode(secrets.token_bytes(10)).decode()
        segments = [unquote(s) for s in _raw_target(request).partition("?")[0].split("/") if s]
        route, params = self._match(request.method, segments)
        if route is None:
            return _json(404, {"message": "Not Found"})
        bucket = self._buckets.get(route.key)
        if bucket is not None and not bucket.take():
            log.info("%s %s -> 429 (route %s throttled)", request.method, request.path, route.key)
            response = _json(429, {"message": "Too Many Requests"})
            response.headers["apigw-requestid"] = request_id
            return response
        if route.iam:
            outcome = self._verify_sigv4(request)
            if outcome.verdict is sigv4.Verdict.MISSING:
                return _json(401, {"message": "Unauthorized"})
            if outcome.verdict is not sigv4.Verdict.OK:
                log.info("rejected a signed request to %s: %s", route.key, outcome.reason)
                return _json(403, {"message": "Forbidden"})
        event = build_event(request, route, params, self.clock.now(), request_id)
        if route.iam:
            event["requestContext"]["authorizer"] = {"iam": self._iam_identity()}
        started = time.monotonic()
        try:
            result = self.runtime.invoke(route.function_id, event)
            response = to_response(result)
        except Exception:
            # The traceback, never the event: tokens and codes travel in it.
            log.exception("%s raised on %s", route.function_id, route.key)
            response = _json(500, {"message": "Internal Server Error"})
        response.headers["apigw-requestid"] = request_id
        elapsed = (time.monotonic() - started) * 1000
        log.info("%s %s -> %d (%.0f ms)", request.method, request.path, response.status_code, elapsed)
        return response

    def _match(self, method: str, segments: list[str]) -> tuple[Route | None, dict[str, str]]:
        default = None
        for route in self.routes:
            if route.key == "$default":
                default = route
                continue
            params = route.match(method, segments)
            if params is not None:
                return route, params
        return default, {}

    def _verify_sigv4(self, request: Request) -> sigv4.Outcome:
        return sigv4.verify(
            method=request.method,
            url=f"{request.scheme}://{request.host}{_raw_target(request)}",
            headers=dict(request.headers.items()),
            body=request.get_data(),
            access_key=self.admin.access_key_id,
            secret_key=self.admin.secret_access_key,
            region=REGION,
            service="execute-api",
            now=self.clock.now(),
            wall_clock=datetime.now(UTC),
        )

    def _iam_identity(self) -> dict[str, Any]:
        """What API Gateway's IAM authorization reports for an operator's session of the ops role."""
        role_session = f"AROALOCALOPSSUPPORT:{LOCAL_ADMIN_SESSION}"  # role id : session name, as STS has it
        return {
            "accessKey": self.admin.access_key_id,
            "accountId": ACCOUNT_ID,
            "callerId": role_session,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{OPS_ROLE_NAME}/{LOCAL_ADMIN_SESSION}",
            "userId": role_session,
        }

    # local control

    def _control(self, request: Request) -> Response:
        path, method = request.path.rstrip("/"), request.method
        if path == "/_local/clock" and method == "GET":
            return _json(200, {"now": _iso(self.clock.now())})
        if path == "/_local/clock" and method == "POST":
            return self._advance_clock(request)
        if path == "/_local/fire" and method == "GET":
            return _json(200, {"schedules": sorted(self.schedules)})
        if path.startswith("/_local/fire/") and method == "POST":
            return self._fire(path.removeprefix("/_local/fire/"))
        if path == "/_local/drain" and method == "POST":
            return self._drain(request)
        if path == "/_local/stack" and method == "GET" and self.describe is not None:
            return _json(200, self.describe())
        if path.startswith("/_local/invoke/") and method == "POST":
            return self._invoke(path.removeprefix("/_local/invoke/"), request)
        if path in ("/_local/clock", "/_local/fire", "/_local/drain", "/_local/stack") or \
                path.startswith(("/_local/fire/", "/_local/invoke/")):
            return _json(405, {"message": "Method Not Allowed"})
        return _json(404, {"message": "Not Found"})

    def _advance_clock(self, request: Request) -> Response:
        seconds = _number(request, "advance_seconds")
        if seconds is None or seconds < 0:
            return _json(400, {"message": "advance_seconds must be a number >= 0"})
        with self._clock_lock:
            # The Amazon emulator first: if it refuses, neither clock has moved.
            answer = requests.post(f"{self._amazon_url}/_emulator/clock", json={"advance_seconds": seconds}, timeout=10)
            if answer.status_code != 200:
                return _json(502, {"message": f"the Amazon emulator refused to move its clock ({answer.status_code})"})
            now = self.clock.advance(seconds)
        log.info("virtual clock advanced by %ss to %s", seconds, _iso(now))
        return _json(200, {"now": _iso(now)})

    def _fire(self, name: str) -> Response:
        schedule = self.schedules.get(name)
        if schedule is None:
            return _json(404, {"message": f"no schedule named {name!r}", "schedules": sorted(self.schedules)})
        rule = self._rule_names.get(schedule.logical_id)
        if rule is not None and boto3.client("events").describe_rule(Name=rule)["State"] != "ENABLED":
            # EventBridge does not invoke the targets of a disabled rule (ops incident contain disables them).
            log.info("schedule %s not fired: its rule is disabled", name)
            return _json(409, {"message": f"the schedule {name!r} is disabled (its EventBridge rule {rule} is "
                                          "DISABLED, e.g. by `ops incident contain`): EventBridge would not "
                                          "invoke it; `ops incident restore` enables it again",
                               "rule": rule, "state": "DISABLED"})
        results = []
        for target in schedule.targets:
            scheduled = schedule.event(self.clock.now(), target)
            if target.logical_id in self._queue_urls:
                queue_url = self._queue_urls[target.logical_id]
                sent = boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(scheduled))
                results.append({"MessageId": sent["MessageId"]})
                continue
            try:
                results.append(self.runtime.invoke(target.logical_id, scheduled))
            except Exception as exc:
                log.exception("schedule %s: %s raised", name, target.logical_id)
                return _json(500, {"message": "Internal Server Error", "error": type(exc).__name__})
        log.info("fired schedule %s", name)
        return _json(200, results[0] if len(results) == 1 else results)

    def _invoke(self, logical_id: str, request: Request) -> Response:
        """Lambda's synchronous Invoke of one function with the JSON body as its event (what an operator's
        `lambda:InvokeFunction` does when deployed, e.g. `ops incident revoke-all`)."""
        if logical_id not in self.runtime.specs:
            return _json(404, {"message": f"no function {logical_id!r}", "functions": sorted(self.runtime.specs)})
        try:
            event = json.loads(request.get_data() or b"{}")
        except ValueError:
            return _json(400, {"message": "the body must be the JSON event"})
        try:
            result = self.runtime.invoke(logical_id, event)
        except Exception as exc:
            log.exception("invoke %s raised", logical_id)
            # What Lambda answers for a function error: the error type, never the event.
            return _json(200, {"FunctionError": "Unhandled", "errorType": type(exc).__name__})
        log.info("invoked %s", logical_id)
        return _json(200, result)

    def _drain(self, request: Request) -> Response:
        seconds = _number(request, "max_seconds", default=30)
        if seconds is None or seconds <= 0:
            return _json(400, {"message": "max_seconds must be a number > 0"})
        queues = _queues(request)
        known = {mapping.queue for mapping in self.poller.mappings}
        if queues is not None and (not queues or not queues <= known):
            return _json(400, {"message": f"queues must list mapped queues: {', '.join(sorted(known))}"})
        return _json(200, self.poller.drain(seconds, queues).as_json())


def _queues(request: Request) -> set[str] | None:
    """The optional `queues` of a drain (purposes of mapped queues): only those are played. An empty set
    when the field is not a list of names (refused by the caller)."""
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError:
        return set()
    value = body.get("queues") if isinstance(body, dict) else None
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        return set()
    return set(value)


def _number(request: Request, field: str, default: float | None = None) -> float | None:
    """A finite number from the JSON body, the default when the body or field is absent, else None."""
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _QuietHandler(WSGIRequestHandler):
    """The gateway logs its own line per request; the dev server's access log would be a second. Its other
    lines (a malformed request line, a TLS error) go out without the client's address: a seller's IP
    address is personal data, and no log of ours keeps it."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(type, logging.INFO)
        logging.getLogger("werkzeug").log(level, message, *args)


class GatewayServer:
    """A threaded werkzeug server bound at construction, so its URL is known before it serves."""

    def __init__(self, host: str, port: int) -> None:
        self._server: BaseWSGIServer = make_server(
            host, port, _NotReady(), threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def serve(self, app: Gateway) -> None:
        self._server.app = app
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


class _NotReady:
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return _json(503, {"message": "Service Unavailable"})(environ, start_response)
