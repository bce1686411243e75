"""Control calls for the token lifecycle: a seller removes the app, Amazon warns of secret expiry.

`POST /_emulator/revoke {"selling_partner_id", "region"}` and `POST /_emulator/notifications/
secret-expiry {"days_left": n}` (docs/local-stack.md). Both answer `{}`.
"""

from __future__ import annotations

import math
from datetime import timedelta

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .consent import check_seller_id
from .control import region_field
from .notifications import SECRET_EXPIRY, NotificationError, envelope, secret_expiry_payload
from .web import Call, HttpError, json_object, json_response


def revoke(call: Call) -> Response:
    """The seller removes the app in Seller Central: refresh gives invalid_grant, access tokens 403."""
    body = json_object(call.request)
    call.state.revoke(check_seller_id(body.get("selling_partner_id")), region_field(body))
    return json_response({})


def _days_left(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise HttpError(400, "invalid_request", "days_left is required and must be a number >= 0")
    return float(value)


def secret_expiry(call: Call) -> Response:
    """Amazon warns that the client secret expires in `days_left` days; from then on it really does."""
    days = _days_left(json_object(call.request).get("days_left"))
    state = call.state
    notifier = state.notifier
    if not notifier.enrolled:
        raise HttpError(
            400,
            "no_notification_queue",
            "no notification queue is registered (configure notification_queue_url)",
        )
    now = state.now()
    expires_at = now + timedelta(days=days)
    app = state.app
    notification = envelope(
        SECRET_EXPIRY,
        secret_expiry_payload(app.client.client_id, expires_at),
        now=now,
        application_id=app.application_id,
        subscription_id=notifier.subscription_id(SECRET_EXPIRY),
    )
    try:
        notifier.send(notification)
    except NotificationError as exc:
        raise HttpError(502, "notification_failed", str(exc)) from None
    state.count_notification(SECRET_EXPIRY)
    state.expire_current_secret(expires_at)
    return json_response({})


RULES = [
    Rule("/_emulator/revoke", endpoint=revoke, methods=["POST"]),
    Rule("/_emulator/notifications/secret-expiry", endpoint=secret_expiry, methods=["POST"]),
]
