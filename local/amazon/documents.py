"""Report documents and their pre-signed download URLs (Reports API getReportDocument).

`getReportDocument` answers with `GET {emulator}/_documents/{key}?X-Amz-...` URLs that look like S3
pre-signed ones: the signature is an HMAC of the key and every other query parameter under a secret
of the emulator's, and the URL stops working 300 s (emulator clock) after `X-Amz-Date`, with S3's
XML `AccessDenied` / `Request has expired`. The download itself is `downloads.py`. Nothing here logs a
key, a signature or a body.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from .clock import iso
from .marketplaces import Region

URL_LIFETIME_SECONDS = 300
CHUNK_BYTES = 64 * 1024
_AMZ_DATE = "%Y%m%dT%H%M%SZ"

# The served chunks of a document; True cuts the stream about half way (the "truncated" fault).
StreamFactory = Callable[[bool], Iterator[bytes]]


@dataclass(frozen=True)
class Document:
    document_id: str
    seller: str
    region: Region
    content_type: str
    gzip: bool  # the served bytes are gzip
    label_gzip: bool  # getReportDocument says compressionAlgorithm GZIP
    key: str = field(repr=False)
    body: bytes | None = field(default=None, repr=False)  # the served bytes, when held in memory
    stream: StreamFactory | None = field(default=None, repr=False)  # or produced on demand

    def chunks(self, truncated: bool = False) -> Iterator[bytes]:
        if self.stream is not None:
            yield from self.stream(truncated)
            return
        body = self.body or b""
        end = len(body) // 2 if truncated else len(body)
        for start in range(0, end, CHUNK_BYTES):
            yield body[start : min(end, start + CHUNK_BYTES)]


class DownloadError(Exception):
    """An S3-style error of the document host (`extra`: more elements of its XML body)."""

    def __init__(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})


def new_document_id(region: Region) -> str:
    tail = "".join(secrets.choice("0123456789") for _ in range(12))
    return f"amzn1.spdoc.1.4.{region.value.lower()}.{uuid.uuid4()}.T{tail}.{secrets.randbelow(9000) + 1000}"


class DocumentStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)
        self._access_key = "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        self._by_id: dict[str, Document] = {}
        self._by_key: dict[str, Document] = {}

    def add(
        self,
        seller: str,
        region: Region,
        content_type: str,
        *,
        gzip: bool,
        label_gzip: bool,
        body: bytes | None = None,
        stream: StreamFactory | None = None,
    ) -> Document:
        document = Document(
            new_document_id(region), seller, region, content_type, gzip, label_gzip,
            key=secrets.token_hex(20), body=body, stream=stream,
        )
        with self._lock:
            self._by_id[document.document_id] = document
            self._by_key[document.key] = document
        return document

    def get(self, document_id: str) -> Document | None:
        with self._lock:
            return self._by_id.get(document_id)

    def clear(self) -> None:
        with self._lock:
            self._by_id.clear()
            self._by_key.clear()

    def presign(self, base_url: str, document: Document, now: datetime, content_encoding: bool = False) -> str:
        params = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": now.astimezone(UTC).strftime(_AMZ_DATE),
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Expires": str(URL_LIFETIME_SECONDS),
            "X-Amz-Credential": f"{self._access_key}/{now.astimezone(UTC):%Y%m%d}/us-east-1/s3/aws4_request",
        }
        if content_encoding and document.gzip:
            params["response-content-encoding"] = "gzip"
        params["X-Amz-Signature"] = self._sign(document.key, params)
        return f"{base_url}/_documents/{document.key}?{urlencode(sorted(params.items()))}"

    def _sign(self, key: str, params: dict[str, str]) -> str:
        canonical = "\n".join([key, *(f"{k}={v}" for k, v in sorted(params.items()) if k != "X-Amz-Signature")])
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def open(self, key: str, args: dict[str, str], now: datetime) -> tuple[Document, bool]:
        """The document a URL stands for and whether to label it Content-Encoding gzip; or DownloadError."""
        signature = args.get("X-Amz-Signature", "")
        if not hmac.compare_digest(signature, self._sign(key, args)):
            raise DownloadError(403, "SignatureDoesNotMatch",
                                "The request signature we calculated does not match the signature you provided.")
        try:
            signed_at = datetime.strptime(args.get("X-Amz-Date", ""), _AMZ_DATE).replace(tzinfo=UTC)
            lifetime = int(args.get("X-Amz-Expires", ""))
        except ValueError:
            raise DownloadError(
                400, "AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is malformed."
            ) from None
        if now > signed_at + timedelta(seconds=lifetime):
            raise DownloadError(403, "AccessDenied", "Request has expired", {
                "X-Amz-Expires": str(lifetime), "Expires": iso(signed_at + timedelta(seconds=lifetime)),
                "ServerTime": iso(now),
            })
        with self._lock:
            document = self._by_key.get(key)
        if document is None:
            raise DownloadError(404, "NoSuchKey", "The specified key does not exist.")
        return document, args.get("response-content-encoding") == "gzip"
