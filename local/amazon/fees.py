"""Product Fees API v0 `getMyFeesEstimateForASIN` on the SP-API hosts (model: productFeesV0.json of
amzn/selling-partner-api-models, read for this emulator; not copied here).

What the product relies on: the answer's `payload.FeesEstimateResult.FeesEstimateIdentifier.SellerId` is
the seller the access token acts for, whatever the estimate's own `Status` (a currency that does not fit
the marketplace gives `Status: ClientError` with an `Error`, and the identifier still names the seller).
Order of checks as the other operations here: counted, authorized (a seller's token of the host's region,
else 403), an armed fault (`/_emulator/faults`, operation `getMyFeesEstimateForASIN`: 403 stands for an
app without any of the operation's roles, 429, 500, 503, timeout), the (seller, operation) token bucket
(rate 1, burst 2; 429 `QuotaExceeded`), then validation (400 `InvalidInput`).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .buckets import Rate
from .clock import iso
from .marketplaces import MARKETPLACES_BY_ID, STOREFRONTS
from .reports import fault_error
from .spapi import QUOTA_EXCEEDED, SpapiError, authorize_seller, response, unauthorized
from .web import Call

OPERATION = "getMyFeesEstimateForASIN"
RATE = Rate(1.0, 2)
ASIN = re.compile(r"[A-Z0-9]{10}")
MAX_IDENTIFIER = 256
REFERRAL_RATE = Decimal("0.15")


def _invalid(message: str) -> SpapiError:
    return SpapiError(400, "InvalidInput", message, "", {"x-amzn-RateLimit-Limit": RATE.header})


def _request(call: Call) -> dict[str, Any]:
    try:
        body = json.loads(call.request.get_data(as_text=True) or "null")
    except ValueError:
        raise _invalid("The request body is not valid JSON.") from None
    request = body.get("FeesEstimateRequest") if isinstance(body, dict) else None
    if not isinstance(request, dict):
        raise _invalid("FeesEstimateRequest is required.")
    return request


def _money(value: object, name: str) -> tuple[str, Decimal]:
    if not isinstance(value, dict):
        raise _invalid(f"{name} is required.")
    currency, amount = value.get("CurrencyCode"), value.get("Amount")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise _invalid(f"{name}.CurrencyCode must be an ISO 4217 currency code.")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
        raise _invalid(f"{name}.Amount must be a number of at least 0.")
    return currency, Decimal(str(amount))


def get_my_fees_estimate_for_asin(call: Call, asin: str) -> Response:
    state = call.state
    state.count_spapi_call(OPERATION)
    authorization = authorize_seller(call, OPERATION)
    fault = state.faults.take(OPERATION)
    if fault is not None:
        if fault.kind == 403:  # the app holds none of the operation's roles
            state.count_spapi_denied(OPERATION)
            raise unauthorized()
        raise fault_error(call, OPERATION, fault)
    if not state.buckets.take((authorization.selling_partner_id, OPERATION), RATE, state.now()):
        state.count_throttled(OPERATION)
        raise SpapiError(429, "QuotaExceeded", QUOTA_EXCEEDED, "")
    if not ASIN.fullmatch(asin):
        raise _invalid("The ASIN is not valid.")
    request = _request(call)
    found = MARKETPLACES_BY_ID.get(str(request.get("MarketplaceId")))
    if found is None or found.region != authorization.region:
        raise _invalid("Incorrect Marketplace identifier.")
    identifier = request.get("Identifier")
    if not isinstance(identifier, str) or not identifier or len(identifier) > MAX_IDENTIFIER:
        raise _invalid("Identifier is required.")
    prices = request.get("PriceToEstimateFees")
    if not isinstance(prices, dict):
        raise _invalid("PriceToEstimateFees is required.")
    currency, price = _money(prices.get("ListingPrice"), "PriceToEstimateFees.ListingPrice")
    fulfilled = request.get("IsAmazonFulfilled") is True
    result: dict[str, Any] = {
        "FeesEstimateIdentifier": {
            "MarketplaceId": found.marketplace_id, "IdType": "ASIN", "SellerId": authorization.selling_partner_id,
            "SellerInputIdentifier": identifier, "IsAmazonFulfilled": fulfilled, "IdValue": asin,
            "PriceToEstimateFees": prices,
        },
    }
    expected = STOREFRONTS[found.country].currency
    if currency != expected:
        result.update(Status="ClientError", Error={
            "Type": "Sender", "Code": "InvalidParameterValue",
            "Message": f"The currency {currency} does not match the marketplace's currency {expected}.",
            "Detail": []})
    else:
        fee = {"CurrencyCode": currency, "Amount": float((price * REFERRAL_RATE).quantize(Decimal("0.01")))}
        result.update(Status="Success", FeesEstimate={
            "TimeOfFeesEstimation": iso(state.now()), "TotalFeesEstimate": fee,
            "FeeDetailList": [{"FeeType": "ReferralFee", "FeeAmount": fee, "FinalFee": fee}]})
    return response({"payload": {"FeesEstimateResult": result}}, 200, {"x-amzn-RateLimit-Limit": RATE.header})


RULES = [
    Rule("/products/fees/v0/items/<asin>/feesEstimate", endpoint=get_my_fees_estimate_for_asin, methods=["POST"]),
]
