"""Streams a report document from its presigned URL into S3 as UTF-8, in bounded memory.

One pass, every stage incremental, whatever the document's size:

    GET (stream=True; the raw bytes, never decoded by requests or urllib3)
    -> gunzip if the body starts with the gzip magic 1f 8b (members may be concatenated)
    -> decode: the charset of the response's Content-Type, else the marketplace's fallback
    -> TSV with `keep_columns`: only the allowlisted columns, in header order
    -> UTF-8 -> sha256 -> S3 multipart upload (parts of `part_size`, the last one smaller)

Decisions (see docs/internal-contracts.md, "Report pipeline"):

- Compression is sniffed from the body's first two bytes. Neither `compressionAlgorithm` (the label
  passed in) nor `Content-Encoding` is trusted: Amazon serves gzip bodies labelled `identity`, and
  GZIP labels on plain bodies have been seen. A mismatch with the label is logged, nothing more.
- Charset tokens: `Cp1252`/`windows-1252` -> cp1252; `ISO-8859-1`/`latin1`/`US-ASCII` -> cp1252 too,
  because Amazon's "ISO-8859-1" documents carry cp1252 bytes in practice (the euro sign is 0x80) and
  cp1252 is the superset that matters; `Windows-31J`/`Shift_JIS`/`SJIS`/`MS932` -> cp932; `utf8` ->
  utf-8. Any other token Python knows is used as is; an unknown one falls back to `fallback_charset`.
- Undecodable bytes never stop a document: each is replaced by U+FFFD and counted (`undecodable`).
  The five bytes cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) count as undecodable.
- A leading byte-order mark is dropped; the stored object never starts with one. A UTF-8 BOM at the
  start of the body means UTF-8, whatever the header says. JSON and XML without a charset in the
  header are read as UTF-8 (their own defaults), not with the marketplace fallback.
- Without `keep_columns` (JSON, XML, or TSV kept whole) the text is transcoded verbatim, line endings
  included. With `keep_columns` every line is rewritten: LF line endings, the kept fields joined by
  tabs, missing trailing fields of a short row as empty fields. When every header column is kept the
  rows are not split at all, only CRLF becomes LF.
- Always a multipart upload, also for a document smaller than one part (one part, possibly empty):
  one code path, one abort path, and every object gets a SHA-256 part checksum (`ChecksumAlgorithm`).
- Every part but the last is exactly `part_size` bytes. Parts are uploaded by one background thread
  while the next part is produced; at most one part waits for it. Peak memory: about 3 parts plus a
  few 1 MiB working buffers, flat in the document's size.
- Any failure after the multipart upload was created aborts it (after the uploader stopped) and raises
  a typed error: `DocumentDownloadFailed`, `DocumentCorrupt` or `StorageFailed`. Errors and logs never
  carry the URL (registered as a secret first) nor any content of the document.
"""

from __future__ import annotations

import codecs
import hashlib
import queue
import re
import threading
import zlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

import requests
import urllib3

from seller_insights.errors import DocumentCorrupt, DocumentDownloadFailed, StorageFailed
from seller_insights.observability import get_logger
from seller_insights.redaction import register_secret

MiB = 1024 * 1024
PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
READ_CHUNK = 1 * MiB  # compressed bytes per read from the socket
INFLATE_CHUNK = 1 * MiB  # at most this much decompressed output per zlib call
PREFETCH_CHUNKS = 4  # decompressed chunks that may wait between the download thread and the decoder
MAX_LINE = 8 * MiB  # a TSV line longer than this is not a report row
GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS

DocumentFormat = Literal["tsv", "json", "xml"]
_CONTENT_TYPES: dict[str, str] = {
    "tsv": "text/tab-separated-values; charset=utf-8",
    "json": "application/json; charset=utf-8",
    "xml": "application/xml; charset=utf-8",
}

_CHARSET_ALIASES: dict[str, str] = {
    **dict.fromkeys(("cp1252", "windows-1252", "x-cp1252", "cp-1252", "windows1252"), "cp1252"),
    # Amazon's ISO-8859-1 documents hold cp1252 bytes (0x80 is the euro sign): read them as cp1252.
    **dict.fromkeys(("iso-8859-1", "iso8859-1", "iso_8859-1", "iso8859_1", "latin1", "latin-1", "l1",
                     "us-ascii", "ascii"), "cp1252"),
    **dict.fromkeys(("windows-31j", "ms932", "cp932", "shift_jis", "shift-jis", "sjis", "x-sjis",
                     "ms_kanji", "csshiftjis", "csWindows31J".lower()), "cp932"),
    **dict.fromkeys(("utf8", "utf-8", "utf_8"), "utf-8"),
}


@dataclass(frozen=True)
class DocumentTimeouts:
    connect: float = 3.05
    read: float = 30.0  # between two bytes, not for the whole document


@dataclass(frozen=True)
class StoredDocument:
    bytes_in: int  # bytes received (compressed when the body was gzip)
    bytes_out: int  # UTF-8 bytes stored
    rows: int  # TSV: lines after the header row; JSON and XML: 0
    sha256: str  # hex digest of the stored UTF-8 bytes
    source_charset: str  # Python codec name the document was decoded with
    undecodable: int  # bytes that did not decode and became U+FFFD
    dropped_columns: tuple[str, ...]  # TSV header columns not on the allowlist, in header order
    parts: int  # multipart upload parts


# --- charset ---------------------------------------------------------------------------------------


def normalize_charset(token: str) -> str | None:
    """Python codec name for a charset token, Amazon's spellings included; None if unknown."""
    name = token.strip().strip("\"'").lower()
    if name in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[name]
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):  # base64, rot13...: not a charset
        return None
    return _CHARSET_ALIASES.get(info.name, info.name)


def resolve_charset(content_type: str | None, fallback: str) -> str:
    """The charset of a Content-Type header value if it names one we know, else the fallback."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            resolved = normalize_charset(value)
            if resolved:
                return resolved
    resolved = normalize_charset(fallback)
    if resolved is None:
        raise ValueError("unknown fallback charset")
    return resolved


# --- undecodable bytes: counted per stream, replaced by U+FFFD --------------------------------------

COUNTING_ERRORS = "seller_insights.count_and_replace"


class _Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


_undecodable: ContextVar[_Counter | None] = ContextVar("seller_insights_undecodable", default=None)


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    counter = _undecodable.get()  # the stream decoding in this thread (or task) right now
    if counter is not None:
        counter.value += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error(COUNTING_ERRORS, _count_and_replace)


# --- stages ----------------------------------------------------------------------------------------


class _Gunzip:
    """Incremental gunzip of one or more concatenated gzip members, with bounded output per call."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(wbits=_GZIP_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        inflater = self._inflater
        while True:
            if inflater.eof:
                if not data:
                    return
                inflater = self._inflater = zlib.decompressobj(wbits=_GZIP_WBITS)  # next member
            try:
                out = inflater.decompress(data, INFLATE_CHUNK)
            except zlib.error:
                raise DocumentCorrupt("invalid gzip stream") from None
            if out:
                yield out
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            if not data and len(out) < INFLATE_CHUNK:
                return

    def finish(self) -> None:
        if not self._inflater.eof:
            raise DocumentCorrupt("truncated gzip stream")


class _Decoder:
    """Incremental decoder that counts undecodable bytes and drops a leading byte-order mark.

    A UTF-8 byte-order mark at the start of the body wins over the declared charset: "\xef\xbb\xbf"
    is no plausible start of a cp1252 or cp932 report, and UTF-8 is what such a body is.
    """

    def __init__(self, charset: str) -> None:
        self.charset = charset
        self._decode: Callable[[bytes, bool], str] | None = None
        self._head = b""

    def feed(self, data: bytes, final: bool = False) -> str:
        if self._decode is None:
            self._head += data
            if len(self._head) < len(codecs.BOM_UTF8) and not final:
                return ""
            data, self._head = self._head, b""
            if data.startswith(codecs.BOM_UTF8):
                self.charset = "utf-8"
                data = data[len(codecs.BOM_UTF8):]
            self._decode = codecs.getincrementaldecoder(self.charset)(errors=COUNTING_ERRORS).decode
            text = self._decode(data, final)
            return text[1:] if text.startswith("\ufeff") else text  # a BOM in the declared charset
        return self._decode(data, final)


class _LineCounter:
    """Counts lines of text passed through verbatim (the first one is the header)."""

    def __init__(self) -> None:
        self.newlines = 0
        self._open_line = False

    def feed(self, text: str) -> str:
        if text:
            self.newlines += text.count("\n")
            self._open_line = text[-1] != "\n"
        return text

    @property
    def rows(self) -> int:
        return max(self.newlines + (1 if self._open_line else 0) - 1, 0)


class _TsvFilter:
    """Keeps the allowlisted columns of a TSV in header order; LF line endings on output."""

    def __init__(self, keep: tuple[str, ...]) -> None:
        self._keep = frozenset(name.strip() for name in keep)
        self._carry = ""
        self._pending_cr = False
        self._header_seen = False
        self._indexes: tuple[int, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        self._template = ""
        self._passthrough = False
        self._open_line = False
        self._row: Callable[[str], str] = str
        self.rows = 0
        self.dropped: tuple[str, ...] = ()

    def feed(self, text: str) -> str:
        if not text:
            return ""
        if self._header_seen and self._passthrough:
            return self._normalize(text)
        buffer = self._carry + text
        cut = buffer.rfind("\n")
        if cut < 0:
            self._carry = buffer
            if len(buffer) > MAX_LINE:
                raise DocumentCorrupt("a line longer than 8 MiB")
            return ""
        self._carry = buffer[cut + 1:]
        start = 0
        out: list[str] = []
        if not self._header_seen:
            start = buffer.index("\n") + 1
            out.append(self._header(buffer[:start - 1].removesuffix("\r")) + "\n")
            if self._passthrough:
                out.append(self._normalize(buffer[start:]))
                self._carry = ""
                return "".join(out)
        if start <= cut:
            out.append(self._rows(buffer[start:cut]) + "\n")
        return "".join(out)

    def finish(self) -> str:
        if self._passthrough:
            self._pending_cr = False  # a lone CR at the very end goes, as after any last line
            self.rows += 1 if self._open_line else 0
            return ""
        last, self._carry = self._carry.removesuffix("\r"), ""
        if not self._header_seen:
            return self._header(last) if last else ""
        return self._rows(last) if last else ""

    def _header(self, line: str) -> str:
        self._header_seen = True
        columns = line.split("\t")
        self._indexes = tuple(i for i, name in enumerate(columns) if name.strip() in self._keep)
        self.dropped = tuple(name for name in columns if name.strip() not in self._keep)
        self._passthrough = not self.dropped
        if self._indexes and not self._passthrough:
            self._pattern, self._template = _row_pattern(len(columns), self._indexes)
        if len(self._indexes) == 1:
            only = self._indexes[0]
            self._row = lambda row: row.split("\t")[only]
        elif self._indexes:
            pick = itemgetter(*self._indexes)
            self._row = lambda row: "\t".join(pick(row.split("\t")))
        else:
            self._row = lambda row: ""
        return "\t".join(columns[i] for i in self._indexes)

    def _rows(self, body: str) -> str:
        """Filter complete rows (separated by LF or CRLF, without the last line's newline)."""
        if self._pattern is not None:
            # One regular-expression pass over the whole batch, in C: it matches a line only when the
            # line has exactly the header's field count, so the batch is done when every line matched.
            out, matched = self._pattern.subn(self._template, body)
            if matched == body.count("\n") + 1:
                self.rows += matched
                return out
        lines = body.removesuffix("\r").replace("\r\n", "\n").split("\n")
        self.rows += len(lines)
        try:
            return "\n".join(map(self._row, lines))
        except IndexError:  # a short (or blank) row in this batch: the careful way
            return "\n".join(map(self._short_row, lines))

    def _short_row(self, line: str) -> str:
        if not line:
            return ""
        fields = line.split("\t")
        return "\t".join(fields[i] if i < len(fields) else "" for i in self._indexes)

    def _normalize(self, text: str) -> str:
        """CRLF -> LF across chunk boundaries; counts rows."""
        if self._pending_cr:
            text = "\r" + text
        self._pending_cr = text.endswith("\r")
        if self._pending_cr:
            text = text[:-1]
        text = text.replace("\r\n", "\n")
        if text:
            self.rows += text.count("\n")
            self._open_line = text[-1] != "\n"
        return text


def _row_pattern(width: int, kept: tuple[int, ...]) -> tuple[re.Pattern[str], str]:
    """A pattern matching one line of exactly `width` fields (and its CR), capturing each run of kept
    adjacent columns, and the template that joins the runs with tabs."""
    field = "[^\t\r\n]*"
    wanted = set(kept)
    pieces: list[str] = []
    start = 0
    while start < width:
        end = start
        while end < width and (end in wanted) == (start in wanted):
            end += 1
        run = "\t".join([field] * (end - start))
        pieces.append(f"({run})" if start in wanted else run)
        start = end
    groups = sum(1 for piece in pieces if piece.startswith("("))
    template = "\t".join(f"\\g<{n}>" for n in range(1, groups + 1))
    return re.compile("^" + "\t".join(pieces) + "\r?$", re.MULTILINE), template


class _PartUploader:
    """Uploads parts on one background thread; at most one part waits while another is uploading."""

    def __init__(self, s3: Any, bucket: str, key: str, upload_id: str) -> None:
        self._s3, self._bucket, self._key, self._upload_id = s3, bucket, key, upload_id
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=1)
        self._parts: list[dict[str, Any]] = []
        self._error: BaseException | None = None
        # Hashed here, in part order, off the decoding thread's critical path.
        self.sha256 = hashlib.sha256()
        self._thread = threading.Thread(target=self._run, name="report-part-uploader", daemon=True)
        self._thread.start()

    def submit(self, number: int, body: bytes) -> None:
        self._raise_if_failed()
        self._queue.put((number, body))

    def close(self) -> list[dict[str, Any]]:
        self.stop()
        self._raise_if_failed()
        return sorted(self._parts, key=lambda part: int(part["PartNumber"]))

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise _storage_error("UploadPart", self._error) from None

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so that submit() never blocks for ever
            number, body = item
            self.sha256.update(body)
            try:
                answer = self._s3.upload_part(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number,
                    Body=body, ChecksumAlgorithm="SHA256",
                )
            except BaseException as exc:
                self._error = exc
                continue
            part = {"PartNumber": number, "ETag": answer["ETag"]}
            if answer.get("ChecksumSHA256"):
                part["ChecksumSHA256"] = answer["ChecksumSHA256"]
            self._parts.append(part)


class _MultipartWriter:
    def __init__(self, s3: Any, bucket: str, key: str, part_size: int, content_type: str) -> None:
        self._s3, self._bucket, self._key, self._part_size = s3, bucket, key, part_size
        try:
            created = s3.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type, ChecksumAlgorithm="SHA256",
            )
        except Exception as exc:
            raise _storage_error("CreateMultipartUpload", exc) from None
        self._upload_id: str = created["UploadId"]
        self._uploader = _PartUploader(s3, bucket, key, self._upload_id)
        self._buffer = bytearray()
        self.parts = 0
        self.bytes_out = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.bytes_out += len(data)
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            self._send_part()

    def complete(self) -> str:
        if self._buffer or self.parts == 0:
            self._send_part()
        parts = self._uploader.close()
        try:
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": parts},
            )
        except Exception as exc:
            raise _storage_error("CompleteMultipartUpload", exc) from None
        return self._uploader.sha256.hexdigest()

    def abort(self) -> None:
        self._uploader.stop()
        try:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        except Exception as exc:
            get_logger().warning("could not abort a multipart upload; the bucket lifecycle rule will",
                                 extra={"error": type(exc).__name__, "code": _s3_code(exc)})

    def _send_part(self) -> None:
        self.parts += 1
        with memoryview(self._buffer) as view:  # one copy, not a bytearray slice and then bytes
            body = bytes(view[:self._part_size])
        del self._buffer[:self._part_size]
        self._uploader.submit(self.parts, body)


# The public name for other duties (the data-request export streams its ZIP through it): `write(bytes)`
# buffers into parts of `part_size` uploaded in the background, `complete()` returns the sha256 of every
# byte written, `abort()` after any failure. Errors are `StorageFailed`.
MultipartWriter = _MultipartWriter


# --- the pipeline ----------------------------------------------------------------------------------


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
) -> StoredDocument:
    """Download the document at `url` and store it as UTF-8 at s3://bucket/key (see the module doc).

    `keep_columns` is the TSV column allowlist (None keeps the document whole; JSON and XML are never
    filtered). `fallback_charset` is the marketplace's charset when the response names none (cp1252
    for Europe and the Americas, cp932 for Japan).
    """
    register_secret(url)  # a presigned URL: never in a log line
    if document_format not in _CONTENT_TYPES:
        raise ValueError("document_format must be tsv, json or xml")
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
            charset = resolve_charset(response.headers.get("Content-Type"),
                                      fallback if document_format == "tsv" else "utf-8")
            writer = _MultipartWriter(s3_client, bucket, key, part_size, _CONTENT_TYPES[document_format])
            try:
                stored = _pump(response, writer, charset=charset, compression_label=compression_label,
                               keep_columns=keep_columns, document_format=document_format)
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
        "source_charset": stored.source_charset, "undecodable": stored.undecodable,
        "dropped_columns": list(stored.dropped_columns), "parts": stored.parts,
    })
    return stored


def _pump(response: requests.Response, writer: _MultipartWriter, *, charset: str, compression_label: str | None,
          keep_columns: tuple[str, ...] | None, document_format: DocumentFormat) -> StoredDocument:
    counter = _Counter()
    token = _undecodable.set(counter)
    try:
        received = _Received(response)
        body = received.chunks()
        head = b""
        for chunk in body:  # enough bytes to sniff the gzip magic
            head += chunk
            if len(head) >= len(GZIP_MAGIC):
                break
        gzipped = head.startswith(GZIP_MAGIC)
        if gzipped != ((compression_label or "").strip().upper() == "GZIP"):
            get_logger().info("document compression differs from its label; going by the bytes",
                              extra={"label": compression_label, "gzip": gzipped})
        decoder = _Decoder(charset)
        tsv_filter = _TsvFilter(keep_columns) if keep_columns is not None else None
        lines = _LineCounter()
        shape: Callable[[str], str] = tsv_filter.feed if tsv_filter is not None else lines.feed

        def emit(data: bytes) -> None:
            text = shape(decoder.feed(data))
            if text:
                writer.write(text.encode("utf-8"))

        gunzip = _Gunzip() if gzipped else None
        for plain in _prefetched(_plain_chunks(_chain(head, body), gunzip)):
            emit(plain)
        tail = shape(decoder.feed(b"", final=True))
        if tsv_filter is not None:
            tail += tsv_filter.finish()
        writer.write(tail.encode("utf-8"))
        digest = writer.complete()
    finally:
        _undecodable.reset(token)
    rows = (tsv_filter.rows if tsv_filter is not None else lines.rows) if document_format == "tsv" else 0
    return StoredDocument(
        bytes_in=received.bytes_in, bytes_out=writer.bytes_out, rows=rows, sha256=digest,
        source_charset=decoder.charset, undecodable=counter.value,
        dropped_columns=tsv_filter.dropped if tsv_filter is not None else (), parts=writer.parts,
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


def _plain_chunks(chunks: Iterator[bytes], gunzip: _Gunzip | None) -> Iterator[bytes]:
    for chunk in chunks:
        if gunzip is None:
            yield chunk
        else:
            yield from gunzip.feed(chunk)
    if gunzip is not None:
        gunzip.finish()


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

    thread = threading.Thread(target=produce, name="report-download", daemon=True)
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


def _s3_code(exc: BaseException) -> str | None:
    answer = getattr(exc, "response", None)
    if isinstance(answer, dict):
        code = answer.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _storage_error(operation: str, exc: BaseException) -> StorageFailed:
    return StorageFailed(operation, _s3_code(exc) or type(exc).__name__)
