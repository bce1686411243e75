"""Streams a report document from its presigned URL into S3 as UTF-8, in bounded memory.

One pass, every stage incremental, whatever the document's size:

    GET (stream=True; the raw bytes, never decoded by requests or urllib3)      report_stream
    -> gunzip if the body starts with the gzip magic 1f 8b (members may be concatenated)  report_gzip
    -> caps: decompressed bytes, and the compression ratio once enough output exists      report_gzip
    -> decode: the charset of the response's Content-Type if Amazon sends it, else the
       marketplace's; undecodable bytes counted and replaced                            report_charset
    -> NUL characters removed (counted), UTF-8                                           report_stream
    -> TSV with `keep_columns`: only the allowlisted columns, in header order, only
       well-formed rows (on the UTF-8 bytes)                                                 report_tsv
    -> sha256 -> S3 multipart upload (parts of `part_size`, the last one smaller)      multipart_writer

This module ties the stages together, downloads, and runs the download and gunzip on a thread of
their own (`report-download`) so that they overlap with decoding and filtering; the parts are hashed
and uploaded on two more (`report-part-uploader`, see multipart_writer). Each stage module documents its
own rules.

Decisions (see docs/internal-contracts.md, "Report pipeline", and docs/architecture.md):

- Neither `compressionAlgorithm` (the label passed in) nor `Content-Encoding` is trusted: the body's
  first two bytes decide. A mismatch with the label is logged, nothing more.
- JSON Lines (Data Kiosk documents) are kept whole like JSON; `rows` counts their lines (one object each).
- JSON and XML without a charset in the header are read as UTF-8 (their own defaults), not with the
  marketplace fallback.
- NUL characters are removed from every format and counted (`nul_bytes`): no report field holds
  one, and C-string readers downstream would cut a field at it.
- Without `keep_columns` (JSON, XML, or TSV kept whole) the text is transcoded verbatim, line endings
  included.
- Every background thread runs in a copy of the starting thread's `contextvars` context, so context
  variables the caller set (e.g. which function is calling AWS) hold in it too.
- Any failure after the multipart upload was created aborts it (after the uploader stopped) and raises
  a typed error: `DocumentDownloadFailed`, `DocumentCorrupt` or `StorageFailed`. Errors and logs never
  carry the URL (registered as a secret first) nor any content of the document: no row, no line
  number, no header cell that is not shaped like a column name, no charset label.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import requests
import urllib3

from seller_insights.context_threads import thread_in_this_context
from seller_insights.errors import DocumentDownloadFailed
from seller_insights.multipart_writer import MIN_PART_SIZE, PART_SIZE, MultipartWriter
from seller_insights.observability import get_logger
from seller_insights.redaction import register_secret
from seller_insights.report_charset import Charset, Decoder, choose_charset, counting_undecodable, resolve_charset
from seller_insights.report_gzip import (
    GZIP_MAGIC,
    DocumentLimits,
    Gunzip,
    capped,
    plain_chunks,
)
from seller_insights.report_tsv import LineCounter, TsvFilter

MiB = 1024 * 1024
READ_CHUNK = 1 * MiB  # compressed bytes per read from the socket
PREFETCH_CHUNKS = 4  # decompressed chunks that may wait between the download thread and the decoder

DocumentFormat = Literal["tsv", "json", "xml", "jsonl"]
_CONTENT_TYPES: dict[str, str] = {
    "tsv": "text/tab-separated-values; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",  # Data Kiosk documents: one JSON object per line
    "json": "application/json; charset=utf-8",
    "xml": "application/xml; charset=utf-8",
}


@dataclass(frozen=True)
class DocumentTimeouts:
    connect: float = 3.05
    read: float = 30.0  # between two bytes, not for the whole document


@dataclass(frozen=True)
class StoredDocument:
    bytes_in: int  # bytes received (compressed when the body was gzip)
    bytes_out: int  # UTF-8 bytes stored
    rows: int  # TSV: data rows stored; JSON Lines: lines (objects) stored; JSON and XML: 0
    sha256: str  # hex digest of the stored UTF-8 bytes
    source_charset: str  # Python codec name the document was decoded with
    undecodable: int  # bytes that did not decode and became U+FFFD
    dropped_columns: tuple[str, ...]  # dropped TSV header cells shaped like column names, in header order
    parts: int  # multipart upload parts
    dropped_unnamed: int = 0  # dropped TSV header cells NOT shaped like column names: counted, never named
    malformed_rows: int = 0  # TSV rows whose field count differed from the header's: dropped
    blank_lines: int = 0  # empty TSV lines after the header: skipped
    nul_bytes: int = 0  # NUL characters removed
    charset_rejected: bool = False  # Content-Type named a charset Amazon does not send: fallback used


def stream_document_to_s3(
    *,
    url: str,
    compression_label: str | None,
    s3_client: Any,
    bucket: str,
    key: str,
    fallback_charset: str,
    keep_columns: tuple[str, ...] | None,
    document_format: DocumentFormat = "tsv",
    session: requests.Session | None = None,
    part_size: int = PART_SIZE,
    timeouts: DocumentTimeouts | None = None,
    limits: DocumentLimits | None = None,
) -> StoredDocument:
    """Download the document at `url` and store it as UTF-8 at s3://bucket/key (see the module doc).

    `keep_columns` is the TSV column allowlist (None keeps the document whole; JSON and XML are never
    filtered). `fallback_charset` is the marketplace's charset when the response names none, or one
    Amazon does not send (cp1252 for Europe and the Americas, cp932 for Japan). `limits` caps the
    decompressed size and the compression ratio (default: `DocumentLimits()`).
    """
    register_secret(url)  # a presigned URL: never in a log line
    if document_format not in _CONTENT_TYPES:
        raise ValueError("document_format must be tsv, json, xml or jsonl")
    if keep_columns is not None and document_format != "tsv":
        raise ValueError("only TSV documents have columns to keep")
    if part_size < MIN_PART_SIZE:
        raise ValueError("part_size below S3's 5 MiB minimum")
    fallback = resolve_charset(None, fallback_charset)
    timeouts = timeouts or DocumentTimeouts()
    http = session or requests.Session()
    try:
        response = _open(http, url, timeouts)
        try:
            # JSON is UTF-8 by definition (RFC 8259) and Amazon's XML reports are UTF-8: the marketplace
            # fallback is for flat files only.
            charset = choose_charset(response.headers.get("Content-Type"),
                                     fallback if document_format == "tsv" else "utf-8")
            writer = MultipartWriter(s3_client, bucket, key, part_size, _CONTENT_TYPES[document_format])
            try:
                stored = _pump(response, writer, charset=charset, compression_label=compression_label,
                               keep_columns=keep_columns, document_format=document_format,
                               limits=limits or DocumentLimits())
            except BaseException:
                writer.abort()
                raise
        finally:
            response.close()
    finally:
        if session is None:
            http.close()
    get_logger().info("report document stored", extra={
        "bytes_in": stored.bytes_in, "bytes_out": stored.bytes_out, "rows": stored.rows,
        "source_charset": stored.source_charset, "charset_rejected": stored.charset_rejected,
        "undecodable": stored.undecodable, "nul_bytes": stored.nul_bytes, "malformed_rows": stored.malformed_rows,
        "blank_lines": stored.blank_lines, "dropped_columns": list(stored.dropped_columns),
        "dropped_unnamed": stored.dropped_unnamed, "parts": stored.parts,
    })
    return stored


def _pump(response: requests.Response, writer: MultipartWriter, *, charset: Charset,
          compression_label: str | None, keep_columns: tuple[str, ...] | None, document_format: DocumentFormat,
          limits: DocumentLimits) -> StoredDocument:
    nul_bytes = 0
    with counting_undecodable() as undecodable:
        received = _Received(response)
        body = received.chunks()
        head = b""
        for chunk in body:  # enough bytes to sniff the gzip magic
            head += chunk
            if len(head) >= len(GZIP_MAGIC):
                break
        gzipped = head.startswith(GZIP_MAGIC)
        labelled_gzip = (compression_label or "").strip().upper() == "GZIP"
        if gzipped != labelled_gzip:  # the label itself is Amazon's text: not logged
            get_logger().info("document compression differs from its label; going by the bytes",
                              extra={"labelled_gzip": labelled_gzip, "gzip": gzipped})
        decoder = Decoder(charset.codec)
        tsv_filter = TsvFilter(keep_columns) if keep_columns is not None else None
        lines = LineCounter(header=document_format != "jsonl")
        shape: Callable[[bytes], bytes] = tsv_filter.feed if tsv_filter is not None else lines.feed

        def utf8_of(data: bytes, final: bool = False) -> bytes:
            nonlocal nul_bytes
            text = decoder.feed(data, final)
            if "\x00" in text:
                nul_bytes += text.count("\x00")
                text = text.replace("\x00", "")
            return shape(text.encode("utf-8"))

        gunzip = Gunzip() if gzipped else None
        for plain in _prefetched(capped(plain_chunks(_chain(head, body), gunzip), gunzip, limits)):
            writer.write(utf8_of(plain))
        tail = utf8_of(b"", final=True)
        if tsv_filter is not None:
            tail += tsv_filter.finish()
        writer.write(tail)
        digest = writer.complete()
    counted = document_format in ("tsv", "jsonl")
    rows = (tsv_filter.rows if tsv_filter is not None else lines.rows) if counted else 0
    return StoredDocument(
        bytes_in=received.bytes_in, bytes_out=writer.bytes_out, rows=rows, sha256=digest,
        source_charset=decoder.charset, undecodable=undecodable.value,
        dropped_columns=tsv_filter.dropped if tsv_filter is not None else (), parts=writer.parts,
        dropped_unnamed=tsv_filter.dropped_unnamed if tsv_filter is not None else 0,
        malformed_rows=tsv_filter.malformed if tsv_filter is not None else 0,
        blank_lines=tsv_filter.blank if tsv_filter is not None else 0,
        nul_bytes=nul_bytes, charset_rejected=charset.rejected,
    )


class _Received:
    """The response body as it came over the wire: no Content-Encoding decoding, counted."""

    def __init__(self, response: requests.Response) -> None:
        self._raw = response.raw
        self.bytes_in = 0

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = self._raw.read(READ_CHUNK, decode_content=False)
            except (urllib3.exceptions.TimeoutError, TimeoutError):
                raise DocumentDownloadFailed("timeout") from None
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError):
                raise DocumentDownloadFailed("connection") from None
            if not chunk:
                return
            self.bytes_in += len(chunk)
            yield chunk


_DONE = object()


def _prefetched(source: Iterator[bytes], depth: int = PREFETCH_CHUNKS) -> Iterator[bytes]:
    """Runs `source` (socket reads and zlib, which both release the GIL) on a thread of its own, so
    it overlaps with decoding and filtering here. At most `depth` chunks wait: memory stays bounded.
    An error in `source` is raised here; stopping early here stops the thread."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                if not _offer(handoff, item, stop):
                    return
            _offer(handoff, _DONE, stop)
        except BaseException as exc:  # handed to the consumer, which raises it
            _offer(handoff, exc, stop)

    thread = thread_in_this_context(produce, "report-download")
    thread.start()
    try:
        while (item := handoff.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def _offer(handoff: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            handoff.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _open(http: requests.Session, url: str, timeouts: DocumentTimeouts) -> requests.Response:
    try:
        response = http.get(url, stream=True, timeout=(timeouts.connect, timeouts.read))
    except requests.Timeout:
        raise DocumentDownloadFailed("timeout") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        raise DocumentDownloadFailed("connection") from None
    if response.status_code >= 400:
        status = response.status_code
        response.close()
        raise DocumentDownloadFailed("http", status)
    return response
