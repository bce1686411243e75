"""`POST /_emulator/reports/documents` (docs/local-stack.md): how the next report of a type for a
seller ends, and with which document.

Body: `selling_partner_id`, `report_type`, `marketplace_ids`, `outcome` (DONE, CANCELLED or FATAL;
default DONE), and optionally the document: `content_base64` (its plain bytes) and `content_type`,
or `generate_bytes` (a generated flat file of about that many bytes, streamed); `gzip` (compress
before serving; default: as Amazon does for the type) and `label_gzip` (whether getReportDocument
says `compressionAlgorithm: GZIP`; default: as served), so a mislabelled document can be made.
A settlement type is never requested: its seed is a finished report at once, found by getReports.
Answer: `{"queued": n}`, the seeds now waiting for that seller and type.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from . import generators
from .consent import check_seller_id
from .marketplaces import MARKETPLACES_BY_ID, Region
from .reportstore import Seed, Status
from .web import Call, HttpError, json_object, json_response, required_str

MAX_GENERATED_BYTES = 64 * 1024**3


def _bad(message: str) -> HttpError:
    return HttpError(400, "invalid_request", message)


def _optional_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"{key} must be true or false")
    return value


def _marketplaces(body: dict[str, Any]) -> tuple[tuple[str, ...], Region | None]:
    value = body.get("marketplace_ids", [])
    if not isinstance(value, list) or not all(isinstance(m, str) and m in MARKETPLACES_BY_ID for m in value):
        raise _bad("marketplace_ids must be a list of known marketplace ids")
    regions = {MARKETPLACES_BY_ID[m].region for m in value}
    if len(regions) > 1:
        raise _bad("marketplace_ids must all be of one region")
    return tuple(value), next(iter(regions), None)


def _seed(body: dict[str, Any], report_type: str, marketplace_ids: tuple[str, ...]) -> Seed:
    outcome = body.get("outcome", "DONE")
    if outcome not in ("DONE", "CANCELLED", "FATAL"):
        raise _bad("outcome must be DONE, CANCELLED or FATAL")
    content: bytes | None = None
    if body.get("content_base64") is not None:
        try:
            content = base64.b64decode(str(body["content_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise _bad("content_base64 is not valid base64") from None
    content_type = body.get("content_type")
    if content_type is not None and (not isinstance(content_type, str) or not content_type):
        raise _bad("content_type must be a non-empty string")
    size = body.get("generate_bytes")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_GENERATED_BYTES:
            raise _bad(f"generate_bytes must be an integer from 1 to {MAX_GENERATED_BYTES}")
        if content is not None:
            raise _bad("give content_base64 or generate_bytes, not both")
        if report_type not in generators.HEADERS:
            raise _bad("generate_bytes only applies to flat file (TSV) report types")
    if outcome == "CANCELLED" and (content is not None or size is not None):
        raise _bad("a CANCELLED report has no document")
    return Seed(
        Status(outcome), marketplace_ids, content, content_type,
        _optional_bool(body, "gzip"), _optional_bool(body, "label_gzip"), size,
    )


def seed_document(call: Call) -> Response:
    body = json_object(call.request)
    seller = check_seller_id(body.get("selling_partner_id"))
    report_type = required_str(body, "report_type")
    if report_type not in generators.KNOWN_TYPES:
        known = ", ".join(sorted(generators.KNOWN_TYPES))
        raise _bad(f"report_type {report_type!r} is not known to the emulator; known: {known}")
    marketplace_ids, region = _marketplaces(body)
    seed = _seed(body, report_type, marketplace_ids)
    if report_type in generators.SETTLEMENT_TYPES and region is None:
        raise _bad("a settlement report needs marketplace_ids (of the seller's region)")
    return json_response({"queued": call.state.reports.seed(seller, report_type, seed, region)})


def timings(call: Call) -> Response:
    """`POST {"mode": "realistic", "seed": 7}`: report processing times drawn per report (minutes to hours) from
    a seeded generator; `{"mode": "fast"}`: back to 30 s queued, done at 90 s (the default). GET: the mode."""
    if call.request.method == "POST":
        body = json_object(call.request)
        seed = body.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise _bad("seed must be an integer")
        try:
            call.state.reports.use_timings(str(body.get("mode", "")), seed)
        except ValueError as exc:
            raise _bad(str(exc)) from None
    return json_response(call.state.reports.timings())


RULES = [
    Rule("/_emulator/reports/documents", endpoint=seed_document, methods=["POST"]),
    Rule("/_emulator/reports/timings", endpoint=timings, methods=["GET", "POST"]),
]
