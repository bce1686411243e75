"""The document host: `GET {emulator}/_documents/{key}?X-Amz-...`, the pre-signed URLs of
getReportDocument (Reports API 2021-06-30).

Downloads are streamed (chunked, no Content-Length), with the document's `Content-Type` and
`Content-Encoding: identity` even for gzip bytes, unless the URL was asked for with
`enableContentEncodingUrlHeader=true` (then `gzip`). Errors are S3's XML. The "document" faults:
500, 503, "timeout" (held, then 503) and "truncated" (the stream ends half way).
"""

from __future__ import annotations

import secrets
import time
from xml.sax.saxutils import escape

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .documents import DownloadError
from .faults import Fault
from .web import Call, HttpError


def _xml_error(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Response:
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in (extra or {}).items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{fields}"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId><HostId>{secrets.token_urlsafe(48)}</HostId></Error>"
    )
    return Response(body, status=status, mimetype="application/xml")


def render_error(error: HttpError) -> Response:
    """Routing errors (wrong method) on the document host."""
    return _xml_error(error.status, "MethodNotAllowed" if error.status == 405 else "InvalidRequest", error.message)


def _fault_response(fault: Fault) -> Response | None:
    if fault.kind == "truncated":
        return None
    if fault.kind == "timeout":
        time.sleep(fault.hold_seconds)  # real seconds, so a client's read timeout fires
        return _xml_error(503, "SlowDown", "Please reduce your request rate.")
    if fault.kind == 503:
        return _xml_error(503, "SlowDown", "Please reduce your request rate.")
    return _xml_error(500, "InternalError", "We encountered an internal error. Please try again.")


def download(call: Call, key: str) -> Response:
    state = call.state
    args = dict(call.request.args.items())
    try:
        document, encoded = state.documents.open(key, args, state.now())
    except DownloadError as exc:
        return _xml_error(exc.status, exc.code, exc.message, exc.extra)
    fault = state.faults.take("document")
    if fault is not None:
        failed = _fault_response(fault)
        if failed is not None:
            return failed
    truncated = fault is not None and fault.kind == "truncated"
    state.count_document_served()
    headers = {
        "Content-Encoding": "gzip" if encoded else "identity",
        "x-amz-request-id": secrets.token_hex(8).upper(),
        "Cache-Control": "no-store",
    }
    # No Content-Length: the body is produced as it goes and sent chunked.
    return Response(document.chunks(truncated), status=200, content_type=document.content_type,
                    headers=headers, direct_passthrough=True)


RULES = [Rule("/_documents/<key>", endpoint=download, methods=["GET"])]
