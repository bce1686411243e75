"""The SP-API regional hosts `sellingpartnerapi-{na,eu,fe}.amazon.com` (Amazon's "Selling Partner API
endpoints").

Sellers API `getMarketplaceParticipations` (model: sellers.json) for a seller's access token, and
Application Management `rotateApplicationClientSecret` (application_2023-11-30.json) for a
grantless token. Errors take SP-API's shape, `{"errors": [{"code", "message"[, "details"]}]}`; an
authorization failure is a 403, never a 401. Every call is counted by operation, denied ones too.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .faults import Fault
from .marketplaces import MARKETPLACES, SPAPI_HOSTS, STOREFRONTS
from .notifications import NEW_SECRET, NotificationError, envelope, new_secret_payload
from .participations import Participation
from .state import AccessToken, Authorization
from .web import Call, HttpError

logger = logging.getLogger(__name__)

PARTICIPATIONS_OPERATION = "getMarketplaceParticipations"
ROTATION_OPERATION = "rotateApplicationClientSecret"
ROTATION_SCOPE = "sellingpartnerapi::client_credential:rotation"

# The default usage plans of the models, as x-amzn-RateLimit-Limit reports them.
PARTICIPATIONS_RATE = "0.016"
ROTATION_RATE = "0.0167"

DENIED = "Access to requested resource is denied."
INVALID_TOKEN = "The access token you provided is revoked, malformed or invalid."  # noqa: S105 - a message
NOT_ENROLLED = (
    "Application is not enrolled for rotation notification. "
    "Please update application notification preference in Developer console."
)
QUOTA_EXCEEDED = "You exceeded your quota for the requested resource."

# Other routing failures get a code of SP-API's vocabulary.
_ROUTING_CODES = {413: "RequestTooLarge", 500: "InternalFailure"}


class SpapiError(HttpError):
    """An SP-API error: its `errors[0]` and any extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, code, message)
        self.details = details
        self.headers = dict(headers or {})


def response(body: Mapping[str, Any] | None, status: int, headers: Mapping[str, str] | None = None) -> Response:
    all_headers = {"x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})}
    if body is None:
        return Response(status=status, headers=all_headers)
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=all_headers)


def render_error(error: HttpError) -> Response:
    """Every error on an SP-API host, the service's and routing's alike."""
    if isinstance(error, SpapiError):
        entry: dict[str, str] = {"code": error.code, "message": error.message}
        if error.details is not None:
            entry["details"] = error.details
        return response({"errors": [entry]}, error.status, error.headers)
    if error.status in (404, 405):
        # A path (or method) no operation has: Amazon's gateway answers like a refused call, 403 `Unauthorized`
        # "Access to requested resource is denied." (the Sellers model lists 403 for a resource not found;
        # selling-partner-api-models issue 131), never a 404 naming the route.
        return render_error(role_denied())
    code = _ROUTING_CODES.get(error.status, "InvalidInput")
    return response({"errors": [{"code": code, "message": error.message}]}, error.status)


def unauthorized() -> SpapiError:
    return SpapiError(403, "Unauthorized", DENIED, INVALID_TOKEN, {"x-amzn-ErrorType": "AccessDeniedException"})


def role_denied() -> SpapiError:
    """A live token whose application or seller lacks the role the call needs: Amazon's answer is the same 403
    `Unauthorized` "Access to requested resource is denied." as for a bad token, only without a word about the
    token (empty details)."""
    return SpapiError(403, "Unauthorized", DENIED, "", {"x-amzn-ErrorType": "AccessDeniedException"})


def authorize(call: Call, operation: str) -> AccessToken:
    """The live access token of the x-amz-access-token header; counts and raises a 403 otherwise."""
    value = call.request.headers.get("x-amz-access-token", "")
    token = call.state.access_token(value) if value else None
    if token is None or token.client_id != call.state.app.client.client_id:
        call.state.count_spapi_denied(operation)
        if not value:
            raise SpapiError(
                403,
                "MissingAuthenticationToken",
                DENIED,
                headers={"x-amzn-ErrorType": "MissingAuthenticationTokenException"},
            )
        raise unauthorized()
    return token


def authorize_seller(call: Call, operation: str) -> Authorization:
    """The seller (and region) of a seller's live access token for this host's region; else a 403.

    A grantless token has no seller; a seller's token works only on its own region's host.
    """
    token = authorize(call, operation)
    if token.authorization is None or token.authorization.region != SPAPI_HOSTS[call.host]:
        call.state.count_spapi_denied(operation)
        raise unauthorized()
    return token.authorization


def get_marketplace_participations(call: Call) -> Response:
    state = call.state
    state.count_spapi_call(PARTICIPATIONS_OPERATION)
    authorization = authorize_seller(call, PARTICIPATIONS_OPERATION)
    region = authorization.region
    seller = authorization.selling_partner_id
    fault = state.faults.take(PARTICIPATIONS_OPERATION)
    if fault is not None:
        raise participations_fault(call, fault)
    # No token bucket: bench/lwa_economy.py calls this operation hundreds of times at once as "any seller
    # call". Amazon's usage plan (0.016/s, burst 15) is the product's to keep (seller_insights.quotas); a
    # test makes Amazon throttle with an armed 429.
    payload = [_participation(entry, seller) for entry in state.participations.of(seller, region)]
    return response({"payload": payload}, 200, {"x-amzn-RateLimit-Limit": PARTICIPATIONS_RATE})


def participations_fault(call: Call, fault: Fault) -> SpapiError:
    """An armed fault of getMarketplaceParticipations, as the Reports API's faults answer."""
    from .reports import fault_error  # noqa: PLC0415 - reports imports this module

    return fault_error(call, PARTICIPATIONS_OPERATION, fault)


def _participation(entry: Participation, seller: str) -> dict[str, Any]:
    country = entry.country
    storefront = STOREFRONTS[country]
    return {
        "marketplace": {
            "id": MARKETPLACES[country].marketplace_id,
            "name": storefront.name,
            "countryCode": storefront.country_code,
            "defaultCurrencyCode": storefront.currency,
            "defaultLanguageCode": storefront.language,
            "domainName": storefront.domain,
        },
        "storeName": f"Store {seller}",
        "participation": {"isParticipating": entry.is_participating,
                          "hasSuspendedListings": entry.has_suspended_listings},
    }


def rotate_application_client_secret(call: Call) -> Response:
    """204, then the new secret travels only in the NEW_SECRET notification (never in the answer)."""
    state = call.state
    state.count_spapi_call(ROTATION_OPERATION)
    token = authorize(call, ROTATION_OPERATION)
    if token.authorization is not None or ROTATION_SCOPE not in token.scopes:
        state.count_spapi_denied(ROTATION_OPERATION)
        raise unauthorized()
    # The throttle comes before the operation, as on Amazon: a refused (400) call uses the slot too.
    if not state.take_rotation_slot():
        raise SpapiError(429, "QuotaExceeded", QUOTA_EXCEEDED)
    rate = {"x-amzn-RateLimit-Limit": ROTATION_RATE}
    notifier = state.notifier
    if not notifier.enrolled:
        raise SpapiError(400, "InvalidInput", NOT_ENROLLED, headers=rate)
    rotation = state.rotate_client_secret()
    app = state.app
    notification = envelope(
        NEW_SECRET,
        new_secret_payload(app.client.client_id, rotation.new_secret, rotation.new_expires_at, rotation.old_expires_at),
        now=rotation.rotated_at,
        application_id=app.application_id,
        subscription_id=notifier.subscription_id(NEW_SECRET),
    )
    try:
        notifier.send(notification)
    except NotificationError as exc:
        # Undelivered, the new secret would be lost: keep the old one as if nothing happened.
        state.undo_rotation(rotation)
        logger.warning("client secret rotation undone: %s", exc)
        raise SpapiError(500, "InternalFailure", "The notification with the new secret could not be sent.") from None
    state.count_notification(NEW_SECRET)
    return response(None, 204, rate)


RULES = [
    Rule("/sellers/v1/marketplaceParticipations", endpoint=get_marketplace_participations, methods=["GET"]),
    Rule("/applications/2023-11-30/clientSecret", endpoint=rotate_application_client_secret, methods=["POST"]),
]
