"""Reports API v2021-06-30 on the SP-API hosts (model: models/reports_2021-06-30.json).

createReport, getReports, getReport, cancelReport and getReportDocument for a seller's access token
of the host's region. Each call is counted, then authorized (403), then may hit an armed fault, then
takes a token from the (seller, operation) bucket at the model's rate (429 `QuotaExceeded`), then is
validated (400 `InvalidInput`). Reports live in `reportstore.py`, documents in `documents.py`.
createReport, and getReports (on a first page), answer 403 `Unauthorized` when a report type they name needs a
role withheld from the application or the seller (`/_emulator/roles`): the same answer as a bad token's.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from . import generators
from .buckets import Rate
from .clock import iso
from .faults import Fault
from .marketplaces import MARKETPLACES_BY_ID
from .reportstore import Report, Status
from .spapi import QUOTA_EXCEEDED, SpapiError, authorize_seller, response, role_denied
from .web import Call

CREATE, LIST, GET, CANCEL, DOCUMENT = "createReport", "getReports", "getReport", "cancelReport", "getReportDocument"
RATES: dict[str, Rate] = {
    LIST: Rate(0.0222, 10),
    CREATE: Rate(0.0167, 15),
    GET: Rate(2.0, 15),
    CANCEL: Rate(0.0222, 10),
    DOCUMENT: Rate(0.0167, 15),
}
MAX_CREATE_MARKETPLACES = 25
MAX_FILTER_ITEMS = 10
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
LOOKBACK = timedelta(days=90)
_LIST_PARAMS = ("reportTypes", "processingStatuses", "marketplaceIds", "pageSize", "createdSince", "createdUntil")


def _invalid(message: str, details: str = "", operation: str = "") -> SpapiError:
    headers = {"x-amzn-RateLimit-Limit": RATES[operation].header} if operation else None
    return SpapiError(400, "InvalidInput", message, details, headers)


def _begin(call: Call, operation: str) -> tuple[str, Any]:
    """Count, authorize, faults, throttle: the seller id and region of the caller."""
    state = call.state
    state.count_spapi_call(operation)
    authorization = authorize_seller(call, operation)
    fault = state.faults.take(operation)
    if fault is not None:
        raise fault_error(call, operation, fault)
    if not state.buckets.take((authorization.selling_partner_id, operation), RATES[operation], state.now()):
        state.count_throttled(operation)
        raise SpapiError(429, "QuotaExceeded", QUOTA_EXCEEDED, "")
    return authorization.selling_partner_id, authorization.region


def _check_role(call: Call, seller: str, report_types: list[str], operation: str) -> None:
    """403 when the application or the seller lacks the role of one of the report types (roles.py)."""
    if any(call.state.roles.report_type_withheld(seller, t) for t in report_types):
        call.state.count_spapi_denied(operation)
        raise role_denied()


def fault_error(call: Call, operation: str, fault: Fault) -> SpapiError:
    """The error an armed fault stands for (429, 500, 503, or 503 after holding the connection: timeout)."""
    if fault.kind == 429:
        call.state.count_throttled(operation)
        return SpapiError(429, "QuotaExceeded", QUOTA_EXCEEDED, "")
    if fault.kind == 500:
        return SpapiError(500, "InternalFailure", "We encountered an internal error. Please try again.", "")
    if fault.kind == "timeout":
        time.sleep(fault.hold_seconds)  # real seconds, so a client's read timeout fires
    return SpapiError(503, "ServiceUnavailable", "Service temporarily unavailable. Please try again later.", "")


def _ok(body: Mapping[str, Any] | None, status: int, operation: str) -> Response:
    return response(body, status, {"x-amzn-RateLimit-Limit": RATES[operation].header})


def report_json(report: Report) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reportId": report.report_id,
        "reportType": report.report_type,
        "marketplaceIds": list(report.marketplace_ids),
        "dataStartTime": iso(report.data_start),
        "dataEndTime": iso(report.data_end),
        "createdTime": iso(report.created),
        "processingStatus": report.status.value,
    }
    if report.processing_start is not None:
        body["processingStartTime"] = iso(report.processing_start)
    if report.processing_end is not None:
        body["processingEndTime"] = iso(report.processing_end)
    if report.document_id is not None:
        body["reportDocumentId"] = report.document_id
    return body


def _time(value: object, name: str, now: datetime, operation: str) -> datetime:
    if not isinstance(value, str):
        raise _invalid(f"Invalid {name}: it must be an ISO 8601 date-time string.", name, operation)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid(f"Invalid {name}: {value!r} is not an ISO 8601 date-time.", name, operation) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment > now + timedelta(seconds=1):
        raise _invalid(f"{name} cannot be in the future.", name, operation)
    return moment


# -- createReport ----------------------------------------------------------------------------------


def create_report(call: Call) -> Response:
    seller, region = _begin(call, CREATE)
    try:
        body = json.loads(call.request.get_data() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _invalid("Invalid request body: a CreateReportSpecification JSON object is required.", "", CREATE)
    missing = [name for name in ("marketplaceIds", "reportType") if name not in body]
    if missing:
        raise _invalid("One or more required parameters missing", "".join(f"{m};" for m in missing), CREATE)
    report_type = body["reportType"]
    if not isinstance(report_type, str) or report_type not in generators.KNOWN_TYPES:
        raise _invalid(f"Invalid Report Type {report_type}", "reportType", CREATE)
    if report_type in generators.SETTLEMENT_TYPES:
        raise _invalid(f"Request for report type {report_type} is not allowed at this time.", "", CREATE)
    _check_role(call, seller, [report_type], CREATE)
    marketplace_ids = body["marketplaceIds"]
    if (
        not isinstance(marketplace_ids, list)
        or not 1 <= len(marketplace_ids) <= MAX_CREATE_MARKETPLACES
        or not all(isinstance(m, str) for m in marketplace_ids)
    ):
        raise _invalid("marketplaceIds must be a list of 1 to 25 marketplace identifiers.", "marketplaceIds", CREATE)
    for marketplace_id in marketplace_ids:
        marketplace = MARKETPLACES_BY_ID.get(marketplace_id)
        if marketplace is None:
            raise _invalid(f"Invalid marketplaceId: {marketplace_id}", "marketplaceIds", CREATE)
        if marketplace.region != region:
            raise _invalid(
                "Report rejected for this client. your report could not be applied to any marketplaces",
                marketplace_id,
                CREATE,
            )
    now = call.state.now()
    start = _time(body["dataStartTime"], "dataStartTime", now, CREATE) if "dataStartTime" in body else now
    end = _time(body["dataEndTime"], "dataEndTime", now, CREATE) if "dataEndTime" in body else now
    if start > end:
        raise _invalid("dataStartTime must be before dataEndTime.", "dataStartTime", CREATE)
    options = body.get("reportOptions", {})
    if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
        raise _invalid("reportOptions must be a map of strings to strings.", "reportOptions", CREATE)
    options = _report_options(report_type, options)
    if report_type == generators.SALES_AND_TRAFFIC and not call.state.sales_and_traffic_quota.take(now):
        call.state.count_throttled(CREATE)
        raise SpapiError(429, "QuotaExceeded", QUOTA_EXCEEDED, "")
    marketplace_ids = list(dict.fromkeys(marketplace_ids))
    report = call.state.reports.create(seller, region, report_type, marketplace_ids, start=start, end=end,
                                       options=options)
    call.state.request_log.record(operation=CREATE, seller=seller, region=region.value, kind=report_type,
                                  marketplace_ids=marketplace_ids, start=body.get("dataStartTime"),
                                  end=body.get("dataEndTime"), at=now)
    return _ok({"reportId": report.report_id}, 202, CREATE)


def _report_options(report_type: str, options: dict[str, str]) -> dict[str, str]:
    """The options the report honours. Sales and Traffic's dateGranularity and asinGranularity must take one of
    their documented values (400 otherwise); a type that takes no options ignores them, as Amazon does."""
    if report_type != generators.SALES_AND_TRAFFIC:
        return {}
    kept = {}
    for name, allowed in generators.SALES_AND_TRAFFIC_OPTIONS.items():
        if name in options:
            if options[name] not in allowed:
                raise _invalid(f"Invalid reportOptions value for {name}: {options[name]!r}; allowed: "
                               f"{', '.join(allowed)}.", "reportOptions", CREATE)
            kept[name] = options[name]
    return kept


# -- getReports -------------------------------------------------------------------------------------


class _Pages:
    """getReports continuation tokens: opaque, per seller, each remembering its query and offset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, dict[str, Any], int]] = {}

    def save(self, seller: str, query: dict[str, Any], offset: int) -> str:
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = (seller, query, offset)
        return token

    def load(self, seller: str, token: str) -> tuple[dict[str, Any], int] | None:
        with self._lock:
            found = self._tokens.get(token)
        if found is None or found[0] != seller:
            return None
        return found[1], found[2]


_PAGES = _Pages()


def _csv(call: Call, name: str) -> list[str] | None:
    values = call.request.args.getlist(name)
    if not values:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _list_query(call: Call, now: datetime) -> dict[str, Any]:
    types = _csv(call, "reportTypes")
    if not types:
        raise _invalid("One or more required parameters missing", "reportTypes;", LIST)
    if len(types) > MAX_FILTER_ITEMS:
        raise _invalid("reportTypes may list at most 10 report types.", "reportTypes", LIST)
    statuses = _csv(call, "processingStatuses")
    if statuses is not None:
        bad = [s for s in statuses if s not in Status.__members__]
        if bad or not statuses:
            raise _invalid(f"Invalid processingStatuses: {','.join(bad)}", "processingStatuses", LIST)
    marketplaces = _csv(call, "marketplaceIds")
    if marketplaces is not None and not 1 <= len(marketplaces) <= MAX_FILTER_ITEMS:
        raise _invalid("marketplaceIds must list 1 to 10 marketplace identifiers.", "marketplaceIds", LIST)
    size_text = call.request.args.get("pageSize")
    page_size = DEFAULT_PAGE_SIZE
    if size_text is not None:
        if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
            raise _invalid("pageSize must be an integer from 1 to 100.", "pageSize", LIST)
        page_size = int(size_text)
    since_text = call.request.args.get("createdSince")
    until_text = call.request.args.get("createdUntil")
    since = _time(since_text, "createdSince", now, LIST) if since_text is not None else now - LOOKBACK
    until = _time(until_text, "createdUntil", now, LIST) if until_text is not None else now
    if since > until:
        raise _invalid("createdSince must be before createdUntil.", "createdSince", LIST)
    return {
        "types": types,
        "statuses": statuses,
        "marketplaces": marketplaces,
        "page_size": page_size,
        "since": since.isoformat(),
        "until": until.isoformat(),
    }


def _matches(report: Report, query: dict[str, Any]) -> bool:
    if report.report_type not in query["types"]:
        return False
    if query["statuses"] is not None and report.status.value not in query["statuses"]:
        return False
    # Amazon ignores the marketplace filter for settlement reports: a seller's settlements of every marketplace
    # are listed whatever marketplaceIds says.
    if (query["marketplaces"] is not None and report.report_type not in generators.SETTLEMENT_TYPES
            and not set(report.marketplace_ids) & set(query["marketplaces"])):
        return False
    return datetime.fromisoformat(query["since"]) <= report.created <= datetime.fromisoformat(query["until"])


def get_reports(call: Call) -> Response:
    seller, region = _begin(call, LIST)
    args = call.request.args
    token = args.get("nextToken")
    if token is not None:
        if any(name in args for name in _LIST_PARAMS):
            raise _invalid("nextToken must be the only parameter when it is given.", "nextToken", LIST)
        page = _PAGES.load(seller, token)
        if page is None:
            raise _invalid("Invalid nextToken.", "nextToken", LIST)
        query, offset = page
    else:
        query, offset = _list_query(call, call.state.now()), 0
        _check_role(call, seller, query["types"], LIST)
    found = [r for r in call.state.reports.find(seller, region) if _matches(r, query)]
    size = query["page_size"]
    body: dict[str, Any] = {"reports": [report_json(r) for r in found[offset : offset + size]]}
    if offset + size < len(found):
        body["nextToken"] = _PAGES.save(seller, query, offset + size)
    return _ok(body, 200, LIST)


# -- getReport, cancelReport ----------------------------------------------------------------------


def _not_found(operation: str, report_id: str) -> SpapiError:
    headers = {"x-amzn-RateLimit-Limit": RATES[operation].header}
    return SpapiError(404, "NotFound", f"The report with reportId {report_id} does not exist.", "", headers)


def get_report(call: Call, report_id: str) -> Response:
    seller, _ = _begin(call, GET)
    report = call.state.reports.get(seller, report_id)
    if report is None:
        raise _not_found(GET, report_id)
    return _ok(report_json(report), 200, GET)


def cancel_report(call: Call, report_id: str) -> Response:
    seller, _ = _begin(call, CANCEL)
    before = call.state.reports.cancel(seller, report_id)
    if before is None:
        raise _not_found(CANCEL, report_id)
    if before != Status.IN_QUEUE:
        raise _invalid(
            f"Report {report_id} cannot be cancelled: only reports with processingStatus IN_QUEUE can be, "
            f"this one is {before.value}.",
            "reportId",
            CANCEL,
        )
    return _ok(None, 200, CANCEL)


# -- getReportDocument ----------------------------------------------------------------------------


def get_report_document(call: Call, document_id: str) -> Response:
    seller, _ = _begin(call, DOCUMENT)
    flag = call.request.args.get("enableContentEncodingUrlHeader", "false").lower()
    if flag not in ("true", "false"):
        raise _invalid("enableContentEncodingUrlHeader must be true or false.", "enableContentEncodingUrlHeader",
                       DOCUMENT)
    document = call.state.reports.document(seller, document_id)
    if document is None:
        headers = {"x-amzn-RateLimit-Limit": RATES[DOCUMENT].header}
        raise SpapiError(404, "NotFound", f"The report document {document_id} does not exist.", "", headers)
    url = call.state.documents.presign(call.base_url, document, call.state.now(), content_encoding=flag == "true")
    body: dict[str, Any] = {"reportDocumentId": document.document_id, "url": url}
    if document.label_gzip:
        body["compressionAlgorithm"] = "GZIP"
    return _ok(body, 200, DOCUMENT)


RULES = [
    Rule("/reports/2021-06-30/reports", endpoint=create_report, methods=["POST"]),
    Rule("/reports/2021-06-30/reports", endpoint=get_reports, methods=["GET"]),
    Rule("/reports/2021-06-30/reports/<report_id>", endpoint=get_report, methods=["GET"]),
    Rule("/reports/2021-06-30/reports/<report_id>", endpoint=cancel_report, methods=["DELETE"]),
    Rule("/reports/2021-06-30/documents/<document_id>", endpoint=get_report_document, methods=["GET"]),
]
