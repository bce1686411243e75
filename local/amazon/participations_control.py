"""`/_emulator/participations`: set or list what getMarketplaceParticipations answers a seller
(participations.py says how)."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .consent import check_seller_id
from .control import region_field
from .marketplaces import MARKETPLACES, STOREFRONTS, Region
from .participations import Participation
from .web import Call, HttpError, json_object, json_response

# One entry per storefront the emulator knows; more would be a list Amazon never answers.
MAX_ENTRIES = len(STOREFRONTS)


def _flag(entry: dict[str, Any], name: str, default: bool) -> bool:
    value = entry.get(name, default)
    if not isinstance(value, bool):
        raise HttpError(400, "invalid_request", f"{name} must be true or false")
    return value


def parse_entries(value: object, region: Region) -> tuple[Participation, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ENTRIES:
        raise HttpError(400, "invalid_request", f"marketplaces must be a list of at most {MAX_ENTRIES} entries")
    entries: list[Participation] = []
    for entry in value:
        if not isinstance(entry, dict):
            raise HttpError(400, "invalid_request", "each marketplace must be an object with a country")
        country = entry.get("country")
        known = MARKETPLACES.get(country) if isinstance(country, str) else None
        if known is None or country not in STOREFRONTS or known.region != region:
            choices = ", ".join(c for c in STOREFRONTS if MARKETPLACES[c].region == region)
            raise HttpError(400, "invalid_request", f"country must be one of {region.value}'s: {choices}")
        if any(e.country == country for e in entries):
            raise HttpError(400, "invalid_request", f"country {country} is listed twice")
        entries.append(Participation(country, _flag(entry, "is_participating", True),
                                     _flag(entry, "has_suspended_listings", False)))
    return tuple(entries)


def participations(call: Call) -> Response:
    book = call.state.participations
    if call.request.method == "POST":
        body = json_object(call.request)
        seller = check_seller_id(body.get("selling_partner_id"))
        region = region_field(body)
        if "marketplaces" not in body:
            raise HttpError(400, "invalid_request", "marketplaces is required (a list, or null for the default)")
        book.set(seller, region, parse_entries(body["marketplaces"], region))
    return json_response({"participations": book.listed()})


RULES = [
    Rule("/_emulator/participations", endpoint=participations, methods=["GET", "POST"]),
]
