"""The consent routes, declared once: the handler registers these paths and tests prove the HTTP API's route
keys (infra/constructs/oauth_callback.py) are the same. Pure data, no imports.

API Gateway sends every method of these paths (`ANY`); the function answers GET and refuses the rest with
405, so a wrong method gets the product's page and headers rather than API Gateway's bare 404.
"""

from __future__ import annotations

CONNECT = "/connect"  # website flow: start a consent for a marketplace
LOGIN = "/login"  # Appstore flow: Amazon's Log-in URI hop
CALLBACK = "/callback"  # the fixed redirect URI registered with Amazon
DONE = "/done"  # the clean outcome page the callback 303s to (no code or state in its URL)

PATHS: tuple[str, ...] = (CONNECT, LOGIN, CALLBACK, DONE)
METHOD = "GET"  # the one method the function answers
GATEWAY_METHOD = "ANY"  # what the HTTP API routes to the function


def route_keys() -> set[str]:
    """The HTTP API's route keys of these routes (`ANY /connect`, ...)."""
    return {f"{GATEWAY_METHOD} {path}" for path in PATHS}
