"""The Notifications API v1 (model: models/notifications.json), as far as the
product needs it: createDestination and getDestinations (grantless, scope
`sellingpartnerapi::notifications`) and createSubscription for REPORT_PROCESSING_FINISHED and
DATA_KIOSK_QUERY_PROCESSING_FINISHED (a seller's access token).

Destinations are regional, as on Amazon: the host a call arrives on (`sellingpartnerapi-{na,eu,fe}`)
decides the region a destination is created in and which ones getDestinations lists, and
createSubscription refuses a destination id of another region with the 400 Amazon gives ("No
destination with id ..."; amzn/selling-partner-api-models#4286, amzn/selling-partner-api-docs#3355).
A subscribed seller's REPORT_PROCESSING_FINISHED go to the queue of the subscription's destination (the
registered report notification queue: every destination stands for it here); an unsubscribed seller's
are not sent.
"""

from __future__ import annotations

import json
import re
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .marketplaces import SPAPI_HOSTS
from .notifications import REPORT_FINISHED, REPORT_PAYLOAD_VERSION
from .querystore import QUERY_FINISHED, QUERY_PAYLOAD_VERSION
from .spapi import SpapiError, authorize, authorize_seller, response
from .state import Destination, SubscriptionExists, UnknownDestination
from .web import Call

CREATE_DESTINATION = "createDestination"
GET_DESTINATIONS = "getDestinations"
CREATE_SUBSCRIPTION = "createSubscription"
NOTIFICATIONS_SCOPE = "sellingpartnerapi::notifications"
# The models' default usage plans: rate 1, burst 5.
RATE = {"x-amzn-RateLimit-Limit": "1.0"}
SQS_ARN = re.compile(r"^arn:aws:sqs:\S+:\S+:\S+$")
SUPPORTED_TYPES = {REPORT_FINISHED: REPORT_PAYLOAD_VERSION, QUERY_FINISHED: QUERY_PAYLOAD_VERSION}
# Amazon's 400 for a request it cannot use; the reason goes in `details`.
CANNOT_BE_PARSED = "Request has missing or invalid parameters and cannot be parsed."


def _invalid(message: str, details: str | None = None) -> SpapiError:
    return SpapiError(400, "InvalidInput", message, details, headers=RATE)


def _grantless(call: Call, operation: str) -> None:
    call.state.count_spapi_call(operation)
    token = authorize(call, operation)
    if token.authorization is not None or NOTIFICATIONS_SCOPE not in token.scopes:
        call.state.count_spapi_denied(operation)
        raise SpapiError(403, "Unauthorized", "Access to requested resource is denied.",
                         "The access token you provided is revoked, malformed or invalid.",
                         {"x-amzn-ErrorType": "AccessDeniedException"})


def _body(call: Call) -> dict[str, Any]:
    try:
        body = json.loads(call.request.get_data(as_text=True) or "null")
    except ValueError:
        raise _invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    return body


def _destination(destination: Destination) -> dict[str, Any]:
    return {"destinationId": destination.destination_id, "name": destination.name,
            "resource": {"sqs": {"arn": destination.arn}}}


def create_destination(call: Call) -> Response:
    _grantless(call, CREATE_DESTINATION)
    body = _body(call)
    name = body.get("name")
    spec = body.get("resourceSpecification")
    sqs = spec.get("sqs") if isinstance(spec, dict) else None
    arn = sqs.get("arn") if isinstance(sqs, dict) else None
    if not isinstance(name, str) or not name or len(name) > 256:
        raise _invalid("name is required (1 to 256 characters).")
    if not isinstance(arn, str) or len(arn) > 1000 or not SQS_ARN.match(arn):
        raise _invalid("resourceSpecification.sqs.arn must be the ARN of an SQS queue.")
    destination = call.state.create_destination(SPAPI_HOSTS[call.host], name, arn)
    if destination is None:
        raise SpapiError(409, "Conflict", "A destination with this resource already exists.", headers=RATE)
    return response({"payload": _destination(destination)}, 200, RATE)


def get_destinations(call: Call) -> Response:
    _grantless(call, GET_DESTINATIONS)
    destinations = call.state.destinations(SPAPI_HOSTS[call.host])
    return response({"payload": [_destination(d) for d in destinations]}, 200, RATE)


def create_subscription(call: Call, notification_type: str) -> Response:
    call.state.count_spapi_call(CREATE_SUBSCRIPTION)
    authorization = authorize_seller(call, CREATE_SUBSCRIPTION)
    if notification_type not in SUPPORTED_TYPES:
        raise _invalid(f"The emulator does not support subscriptions to {notification_type}.")
    body = _body(call)
    payload_version = body.get("payloadVersion")
    destination_id = body.get("destinationId")
    if not isinstance(payload_version, str) or not isinstance(destination_id, str):
        raise _invalid("payloadVersion and destinationId are required.")
    if payload_version != SUPPORTED_TYPES[notification_type]:
        raise _invalid(f"Invalid payloadVersion {payload_version} for {notification_type}.")
    try:
        subscription = call.state.subscribe(authorization.selling_partner_id, authorization.region,
                                            notification_type, payload_version, destination_id)
    except UnknownDestination:
        # Also for a destination created on another region's host: Amazon keeps them per region.
        raise _invalid(CANNOT_BE_PARSED, f"No destination with id {destination_id} for applicationId "
                                         f"{call.state.app.application_id}") from None
    except SubscriptionExists:
        raise SpapiError(409, "Conflict", "Subscription already exists for this notification type.",
                         headers=RATE) from None
    payload = {"subscriptionId": subscription.subscription_id, "payloadVersion": subscription.payload_version,
               "destinationId": subscription.destination_id}
    return response({"payload": payload}, 200, RATE)


RULES = [
    Rule("/notifications/v1/destinations", endpoint=create_destination, methods=["POST"]),
    Rule("/notifications/v1/destinations", endpoint=get_destinations, methods=["GET"]),
    Rule("/notifications/v1/subscriptions/<notification_type>", endpoint=create_subscription, methods=["POST"]),
]
