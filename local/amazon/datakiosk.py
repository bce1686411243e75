"""Data Kiosk API v2023-11-15 on the SP-API hosts (model: models/dataKiosk_2023-11-15.json), and its
control calls.

createQuery, getQueries, getQuery, cancelQuery and getDocument for a seller's access token of the host's
region. Order of checks: count, authorize, (createQuery) the Brand Analytics role (403 `Unauthorized`
when the application or the seller lacks it, `/_emulator/roles`), an armed fault, the (seller,
operation) bucket at the model's rate (429 `QuotaExceeded`), validation (400 `InvalidInput`). Queries
live in `querystore.py`, their GraphQL in `kioskquery.py`; documents are served like report documents
(pre-signed, 5 minutes). Every accepted createQuery is recorded in the request log.

Control: `POST /_emulator/queries/outcomes` `{"selling_partner_id", "outcome": DONE|CANCELLED|FATAL|NO_DATA,
"processing_seconds"?}` queues how the seller's next query ends; `POST /_emulator/queries/timing`
`{"seed"?, "min_seconds"?, "max_seconds"?}` reseeds or narrows the times later queries take from their
creation to their end (queue and processing). `processing_seconds` of an outcome is that time too.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from . import kioskquery, roles
from .buckets import Rate
from .clock import iso
from .consent import check_seller_id
from .querystore import OUTCOMES, Query, QuerySeed, QueryStatus
from .reports import fault_error
from .spapi import QUOTA_EXCEEDED, SpapiError, authorize_seller, response
from .web import Call, HttpError, json_object, json_response

CREATE, LIST, GET, CANCEL, DOCUMENT = "createQuery", "getQueries", "getQuery", "cancelQuery", "getDocument"
OPERATIONS = (CREATE, LIST, GET, CANCEL, DOCUMENT)
# The model's usage plans (per selling partner and application).
RATES: dict[str, Rate] = {
    CREATE: Rate(0.0167, 15),
    LIST: Rate(0.0222, 10),
    GET: Rate(2.0, 15),
    CANCEL: Rate(0.0222, 10),
    DOCUMENT: Rate(0.0167, 15),
}
BASE = "/dataKiosk/2023-11-15"
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
ROLE_MISSING = ("The application or the selling partner does not have the Brand Analytics role that the "
                "Sales and Traffic dataset requires.")


def _headers(operation: str) -> dict[str, str]:
    return {"x-amzn-RateLimit-Limit": RATES[operation].header}


def _invalid(message: str, operation: str) -> SpapiError:
    return SpapiError(400, "InvalidInput", message, None, _headers(operation))


def _ok(body: Mapping[str, Any] | None, status: int, operation: str) -> Response:
    return response(body, status, _headers(operation))


def _begin(call: Call, operation: str) -> tuple[str, Any]:
    state = call.state
    state.count_spapi_call(operation)
    authorization = authorize_seller(call, operation)
    seller = authorization.selling_partner_id
    if operation == CREATE and state.roles.withheld(seller, roles.BRAND_ANALYTICS):
        state.count_spapi_denied(operation)
        raise SpapiError(403, "Unauthorized", "Access to requested resource is denied.", ROLE_MISSING,
                         {"x-amzn-ErrorType": "AccessDeniedException"})
    fault = state.faults.take(operation)
    if fault is not None:
        raise fault_error(call, operation, fault)
    if not state.buckets.take((seller, operation), RATES[operation], state.now()):
        state.count_throttled(operation)
        raise SpapiError(429, "QuotaExceeded", QUOTA_EXCEEDED, "", _headers(operation))
    return seller, authorization.region


def query_json(query: Query) -> dict[str, Any]:
    body: dict[str, Any] = {"queryId": query.query_id, "query": query.query, "createdTime": iso(query.created),
                            "processingStatus": query.status.value}
    if query.processing_start is not None:
        body["processingStartTime"] = iso(query.processing_start)
    if query.processing_end is not None:
        body["processingEndTime"] = iso(query.processing_end)
    if query.data_document_id:
        body["dataDocumentId"] = query.data_document_id
    if query.error_document_id:
        body["errorDocumentId"] = query.error_document_id
    return body


def create_query(call: Call) -> Response:
    seller, region = _begin(call, CREATE)
    try:
        body = json.loads(call.request.get_data() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
        raise _invalid("Invalid request body: a CreateQuerySpecification with a `query` string is required.", CREATE)
    if "paginationToken" in body:
        # The emulator's documents are never paginated, so no token it could honour exists.
        raise _invalid("Invalid paginationToken.", CREATE)
    now = call.state.now()
    try:
        parsed = kioskquery.parse_query(body["query"], region, now)
    except kioskquery.QueryRefused as exc:
        raise _invalid(str(exc), CREATE) from None
    query = call.state.queries.create(seller, region, body["query"], parsed)
    call.state.request_log.record(operation=CREATE, seller=seller, region=region.value, kind=parsed.name,
                                  marketplace_ids=list(parsed.marketplace_ids), start=parsed.start.isoformat(),
                                  end=parsed.end.isoformat(), at=now)
    return _ok({"queryId": query.query_id}, 202, CREATE)


class _Pages:
    """getQueries pagination tokens: opaque, per seller, remembering the filters and the offset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, dict[str, Any], int]] = {}

    def save(self, seller: str, filters: dict[str, Any], offset: int) -> str:
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = (seller, filters, offset)
        return token

    def load(self, seller: str, token: str) -> tuple[dict[str, Any], int] | None:
        with self._lock:
            found = self._tokens.get(token)
        return None if found is None or found[0] != seller else (found[1], found[2])


_PAGES = _Pages()


def _moment(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid(f"Invalid {name}: it must be an ISO 8601 date-time.", LIST) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def get_queries(call: Call) -> Response:
    seller, region = _begin(call, LIST)
    args = call.request.args
    try:
        page_size = int(args.get("pageSize", DEFAULT_PAGE_SIZE))
    except ValueError:
        raise _invalid("pageSize must be an integer from 1 to 100.", LIST) from None
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise _invalid("pageSize must be an integer from 1 to 100.", LIST)
    token = args.get("paginationToken")
    if token:
        loaded = _PAGES.load(seller, token)
        if loaded is None:
            raise _invalid("Invalid paginationToken.", LIST)
        filters, offset = loaded
    else:
        statuses = [s.strip() for v in args.getlist("processingStatuses") for s in v.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in QueryStatus.__members__]
        if unknown:
            raise _invalid(f"Invalid processingStatuses: {', '.join(unknown)}.", LIST)
        now = call.state.now()
        since = _moment(args["createdSince"], "createdSince") if "createdSince" in args else now - timedelta(days=90)
        until = _moment(args["createdUntil"], "createdUntil") if "createdUntil" in args else now
        if since > until:
            raise _invalid("createdSince must be before createdUntil.", LIST)
        filters, offset = {"statuses": statuses, "since": iso(since), "until": iso(until)}, 0
    since, until = _moment(filters["since"], "createdSince"), _moment(filters["until"], "createdUntil")
    matching = [q for q in call.state.queries.find(seller, region)
                if since <= q.created <= until and (not filters["statuses"] or q.status.value in filters["statuses"])]
    page = matching[offset:offset + page_size]
    body: dict[str, Any] = {"queries": [query_json(q) for q in page]}
    if offset + page_size < len(matching):
        body["pagination"] = {"nextToken": _PAGES.save(seller, filters, offset + page_size)}
    return _ok(body, 200, LIST)


def _not_found(operation: str, what: str) -> SpapiError:
    return SpapiError(404, "NotFound", f"{what} does not exist.", None, _headers(operation))


def get_query(call: Call, query_id: str) -> Response:
    seller, _ = _begin(call, GET)
    query = call.state.queries.get(seller, query_id)
    if query is None:
        raise _not_found(GET, f"The query {query_id}")
    return _ok(query_json(query), 200, GET)


def cancel_query(call: Call, query_id: str) -> Response:
    seller, _ = _begin(call, CANCEL)
    before = call.state.queries.cancel(seller, query_id)
    if before is None:
        raise _not_found(CANCEL, f"The query {query_id}")
    if before in (QueryStatus.DONE, QueryStatus.FATAL):
        raise _invalid(f"Query {query_id} cannot be cancelled: it is {before.value}.", CANCEL)
    return _ok(None, 204, CANCEL)


def get_document(call: Call, document_id: str) -> Response:
    seller, _ = _begin(call, DOCUMENT)
    document = call.state.queries.document(seller, document_id)
    if document is None:
        raise _not_found(DOCUMENT, f"The document {document_id}")
    url = call.state.documents.presign(call.base_url, document, call.state.now())
    return _ok({"documentId": document.document_id, "documentUrl": url}, 200, DOCUMENT)


# -- control ----------------------------------------------------------------------------------------


def _bad(message: str) -> HttpError:
    return HttpError(400, "invalid_request", message)


def _seconds(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 30 * 86400:
        raise _bad(f"{key} must be a number of seconds above 0 and at most 30 days")
    return float(value)


def seed_outcome(call: Call) -> Response:
    body = json_object(call.request)
    seller = check_seller_id(body.get("selling_partner_id"))
    outcome = body.get("outcome", "DONE")
    if outcome not in OUTCOMES:
        raise _bad(f"outcome must be one of {', '.join(OUTCOMES)}")
    seed = QuerySeed(outcome, _seconds(body, "processing_seconds"))
    return json_response({"queued": call.state.queries.seed(seller, seed)})


def set_timing(call: Call) -> Response:
    body = json_object(call.request)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("seed must be an integer")
    try:
        timing = call.state.queries.set_timing(seed=seed, min_seconds=_seconds(body, "min_seconds"),
                                               max_seconds=_seconds(body, "max_seconds"))
    except ValueError as exc:
        raise _bad(str(exc)) from None
    return json_response(timing)


RULES = [
    Rule(f"{BASE}/queries", endpoint=create_query, methods=["POST"]),
    Rule(f"{BASE}/queries", endpoint=get_queries, methods=["GET"]),
    Rule(f"{BASE}/queries/<query_id>", endpoint=get_query, methods=["GET"]),
    Rule(f"{BASE}/queries/<query_id>", endpoint=cancel_query, methods=["DELETE"]),
    Rule(f"{BASE}/documents/<path:document_id>", endpoint=get_document, methods=["GET"]),
]
CONTROL_RULES = [
    Rule("/_emulator/queries/outcomes", endpoint=seed_outcome, methods=["POST"]),
    Rule("/_emulator/queries/timing", endpoint=set_timing, methods=["POST"]),
]
