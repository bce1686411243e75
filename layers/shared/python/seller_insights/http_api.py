"""The HTTP API resolver both API functions use: Powertools' `APIGatewayHttpResolver` with these changes.

- Request state per thread. Powertools keeps the current event on its `BaseRouter` class, shared by every
  resolver in the process, and the routing context on the instance. Lambda runs one request per container,
  but the local stack runs the consent and admin functions side by side in one process, and tests run
  several requests of one function on threads standing for containers: each thread sees its own event.
- A trailing slash is ignored (`/connect/` is `/connect`), as the handlers always did.
- Powertools' routing logs (DEBUG lines with the path and its parameters, a seller id) are held at WARNING
  with the other noisy libraries (seller_insights.observability.pin_noisy_loggers).
- Fields API Gateway always sends (`rawPath`, `rawQueryString`, `requestContext.stage` and `.http.method`,
  `headers`) get API Gateway's values when an event lacks them, so a hand-built event routes instead of
  raising before any exception handler or middleware could answer it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

_TRAILING_SLASHES = re.compile(r"/+$")
_Handler = TypeVar("_Handler", bound=Callable[..., Any])
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def resolver_rule(path: str) -> str:
    """An API Gateway route path (`/admin/sellers/{seller_id}`) in the resolver's syntax (`<seller_id>`)."""
    return _PATH_PARAMETER.sub(r"<\1>", path)


def with_gateway_defaults(event: dict[str, Any]) -> dict[str, Any]:
    """The event with what API Gateway (payload 2.0) always sends filled in where missing; present values stay."""
    context = dict(event.get("requestContext") or {})
    http = dict(context.get("http") or {})
    path = str(event.get("rawPath") or http.get("path") or "/")
    http.setdefault("method", "GET")
    http.setdefault("path", path)
    context.update(http=http, stage=context.get("stage") or "$default")
    return {**event, "rawPath": path, "rawQueryString": event.get("rawQueryString") or "",
            "headers": event.get("headers") or {}, "requestContext": context}


class HttpApi(APIGatewayHttpResolver):
    """`APIGatewayHttpResolver` with per-thread request state, trailing slashes ignored and gateway defaults."""

    def __init__(self, *, serializer: Callable[[dict[str, Any]], str] | None = None) -> None:
        self._request_state = threading.local()
        # debug=False whatever POWERTOOLS_DEV says: debug mode prints every event (codes, state, cookies) and
        # answers unhandled errors with their traceback.
        super().__init__(serializer=serializer, strip_prefixes=[_TRAILING_SLASHES], debug=False)

    # Powertools assigns both in resolve(); these properties keep them per thread.
    @property  # type: ignore[override]
    def current_event(self) -> APIGatewayProxyEventV2:
        event: APIGatewayProxyEventV2 = self._request_state.event
        return event

    @current_event.setter
    def current_event(self, value: APIGatewayProxyEventV2) -> None:
        self._request_state.event = value

    @property
    def context(self) -> dict[str, Any]:
        if not hasattr(self._request_state, "context"):
            self._request_state.context = {}
        context: dict[str, Any] = self._request_state.context
        return context

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._request_state.context = value

    # Powertools leaves these three untyped; the same calls, typed for strict mypy.
    def exception_handler(self, exc_class: type[Exception] | list[type[Exception]]) -> Callable[[_Handler], _Handler]:
        register: Callable[[_Handler], _Handler] = super().exception_handler(exc_class)
        return register

    def not_found(self, func: _Handler) -> _Handler:  # type: ignore[override]
        handler: _Handler = super().not_found(func)
        return handler

    def append_context(self, **additional_context: Any) -> None:
        self.context.update(additional_context)

    def _to_proxy_event(self, event: dict[str, Any]) -> BaseProxyEvent:
        proxy_event = APIGatewayProxyEventV2(with_gateway_defaults(event), self._json_body_deserializer)
        self.current_event = proxy_event
        return proxy_event
