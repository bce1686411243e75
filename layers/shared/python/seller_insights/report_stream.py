"""Streams a report document from its presigned URL into S3 as UTF-8, in bounded memory.

One pass, every stage incremental, whatever the document's size:

    GET (stream=True; the raw bytes, never decoded by requests or urllib3)
    -> gunzip if the body starts with the gzip magic 1f 8b (members may be concatenated)
    -> caps: decompressed bytes, and the compression ratio once enough output exists
    -> decode: the charset of the response's Content-Type if Amazon sends it, else the marketplace's
    -> NUL characters removed (counted)
    -> TSV with `keep_columns`: only the allowlisted columns, in header order, only well-formed rows
    -> UTF-8 -> sha256 -> S3 multipart upload (parts of `part_size`, the last one smaller)

Decisions (see docs/internal-contracts.md, "Report pipeline", and docs/architecture.md):

- Compression is sniffed from the body's first two bytes. Neither `compressionAlgorithm` (the label
  passed in) nor `Content-Encoding` is trusted: Amazon serves gzip bodies labelled `identity`, and
  GZIP labels on plain bodies have been seen. A mismatch with the label is logged, nothing more.
- Decompression is capped (`DocumentLimits`): more than `max_decompressed_bytes`, or (once
  `RATIO_CHECK_FROM` bytes came out, so that a small document of repeated bytes never trips it) more
  than `max_ratio` decompressed bytes per compressed byte consumed, is `DocumentCorrupt` naming the
  cap. Measured ratios of realistic documents stay under 17:1 (bench/README.md); gzip can reach 1032:1.
- Charsets: only what Amazon sends is honoured: UTF-8, windows-1252 (`Cp1252`), ISO-8859-1 and
  Shift_JIS / Windows-31J (`cp932`), under the labels of `_CHARSETS`. ISO-8859-1 (and US-ASCII, which
  the WHATWG Encoding Standard also maps to windows-1252) is read as cp1252, because Amazon's
  "ISO-8859-1" documents carry cp1252 bytes in practice (the euro sign is 0x80); Shift_JIS as cp932, its
  superset. Any other label (`utf-7`, `utf-16`, `unicode_escape`, `rot13`, unknown tokens...) is not
  used: the marketplace's fallback is, and `charset_rejected` says so. No label at all is normal.
- Undecodable bytes never stop a document: each is replaced by U+FFFD and counted (`undecodable`).
  The five bytes cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) count as undecodable.
- NUL characters are removed from every format and counted (`nul_bytes`): no report field holds
  one, and C-string readers downstream would cut a field at it.
- A leading byte-order mark is dropped; the stored object never starts with one. A UTF-8 BOM at the
  start of the body means UTF-8, whatever the header says. JSON and XML without a charset in the
  header are read as UTF-8 (their own defaults), not with the marketplace fallback.
- TSV with `keep_columns`: the first line must be a header: it names at least one allowlisted column,
  and none twice (`_TsvFilter._header`); otherwise `DocumentCorrupt` (a data row, a blank line, or a
  header in a language the allowlist does not speak). Rows are mapped to columns by position, so a row
  whose field count differs from the header's (a tab or line break typed into a product name or a
  return comment) is dropped and counted (`malformed_rows`), never padded nor cut; blank lines are
  skipped and counted apart (`blank_lines`). Output: LF line endings, the kept fields joined by tabs.
  When every column is kept the rows are checked all the same, so the stored TSV can be read by
  position. Header cells that are not kept are reported by name (`dropped_columns`) only when they
  look like a column name (`COLUMN_NAME`); the others only as a count (`dropped_unnamed`).
- Without `keep_columns` (JSON, XML, or TSV kept whole) the text is transcoded verbatim, line endings
  included.
- Always a multipart upload, also for a document smaller than one part (one part, possibly empty):
  one code path, one abort path, and every object gets a SHA-256 part checksum (`ChecksumAlgorithm`).
- Every part but the last is exactly `part_size` bytes. Parts are uploaded by one background thread
  while the next part is produced; at most one part waits for it. Peak memory: about 3 parts plus a
  few 1 MiB working buffers, flat in the document's size.
- Both background threads (the part uploader and the download prefetcher) run in a copy of the
  starting thread's `contextvars` context, so context variables the caller set (e.g. which function
  is calling AWS) hold in them too.
- Any failure after the multipart upload was created aborts it (after the uploader stopped) and raises
  a typed error: `DocumentDownloadFailed`, `DocumentCorrupt` or `StorageFailed`. Errors and logs never
  carry the URL (registered as a secret first) nor any content of the document: no row, no line
  number, no header cell that is not shaped like a column name, no charset label.
"""

from __future__ import annotations

import codecs
import contextvars
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

# Decompression caps (bench/README.md, "compression_ratios", has the measurements behind them).
# 4 GiB: four times the largest document benchmarked, and what the fetcher processes in well under its
# 300 s timeout at the slowest end-to-end throughput measured (about 42 MiB/s: ~98 s).
DEFAULT_MAX_DECOMPRESSED_BYTES = 4096 * MiB
# 100:1: six times the highest ratio measured on realistic documents (16.2:1, gzip level 9), below a
# header plus one row repeated (257:1) and far below gzip's maximum (about 1032:1).
DEFAULT_MAX_RATIO = 100
# The ratio is judged only once this much came out: a small document of repeated bytes compresses at
# up to 1000:1 and is harmless; a bomb is stopped after at most this much output.
RATIO_CHECK_FROM = 8 * MiB
# gzip's deflate cannot exceed about 1032:1: a ratio cap above it never applies.
GZIP_MAX_RATIO = 1032

# What a column name looks like: only such header cells are ever logged or stored by name.
COLUMN_NAME = re.compile(r"[a-z0-9-]{1,64}")

DocumentFormat = Literal["tsv", "json", "xml"]
_CONTENT_TYPES: dict[str, str] = {
    "tsv": "text/tab-separated-values; charset=utf-8",
    "json": "application/json; charset=utf-8",
    "xml": "application/xml; charset=utf-8",
}

# The charsets Amazon sends (spapi-protocol.md §6.2), under the labels its Java servers, IANA and the
# WHATWG Encoding Standard give them, lower-cased, to the Python codec that reads them. Nothing else is
# honoured: `utf-7`, `utf-16`, `unicode_escape`, `rot13` and friends are codecs Python knows, not
# charsets Amazon sends, and some of them turn bytes into characters the bytes do not spell.
_CHARSETS: dict[str, str] = {
    **dict.fromkeys(("utf-8", "utf8", "utf_8", "csutf8", "unicode-1-1-utf-8", "unicode11utf8",
                     "unicode20utf8", "x-unicode20utf8"), "utf-8"),
    **dict.fromkeys(("windows-1252", "cp1252", "x-cp1252", "cp-1252", "windows1252", "cswindows1252"), "cp1252"),
    # ISO-8859-1 and its aliases (US-ASCII among them, as in the WHATWG table) read as windows-1252:
    # Amazon's "ISO-8859-1" documents hold cp1252 bytes (0x80 is the euro sign).
    **dict.fromkeys(("iso-8859-1", "iso8859-1", "iso_8859-1", "iso8859_1", "iso_8859_1", "iso88591", "8859_1",
                     "iso_8859-1:1987", "iso-ir-100", "latin1", "latin-1", "l1", "ibm819", "ibm-819", "cp819",
                     "csisolatin1", "us-ascii", "ascii", "ansi_x3.4-1968", "csascii"), "cp1252"),
    # Shift_JIS and Windows-31J read as cp932, the superset (NEC and IBM extensions) Japan's files use.
    **dict.fromkeys(("shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "ms-kanji", "mskanji", "csshiftjis",
                     "windows-31j", "cswindows31j", "ms932", "cp932", "windows-932"), "cp932"),
}


@dataclass(frozen=True)
class DocumentTimeouts:
    connect: float = 3.05
    read: float = 30.0  # between two bytes, not for the whole document


@dataclass(frozen=True)
class DocumentLimits:
    """Caps on what a document may decompress to; above one it is `DocumentCorrupt`."""

    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    max_ratio: int = DEFAULT_MAX_RATIO  # decompressed bytes per compressed byte, from RATIO_CHECK_FROM on

    def __post_init__(self) -> None:
        if self.max_decompressed_bytes < 1 or self.max_ratio < 1:
            raise ValueError("document limits must be positive")


@dataclass(frozen=True)
class StoredDocument:
    bytes_in: int  # bytes received (compressed when the body was gzip)
    bytes_out: int  # UTF-8 bytes stored
    rows: int  # TSV: data rows stored; JSON and XML: 0
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


# --- charset ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Charset:
    codec: str  # the Python codec the document is read with
    rejected: bool  # the response named a charset outside the allowlist; `codec` is the fallback


def normalize_charset(token: str) -> str | None:
    """The Python codec for one of Amazon's charset labels (any spelling of `_CHARSETS`); None otherwise."""
    return _CHARSETS.get(token.strip().strip("\"'").strip().lower())


def choose_charset(content_type: str | None, fallback: str) -> Charset:
    """The charset a Content-Type header value names, if Amazon sends that charset; else the fallback
    (`rejected` when a charset was named but not honoured). The fallback must itself be one of them."""
    fallback_codec = normalize_charset(fallback)
    if fallback_codec is None:
        raise ValueError("the fallback charset is not one Amazon sends")
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            codec = normalize_charset(value)
            return Charset(codec, False) if codec else Charset(fallback_codec, True)
    return Charset(fallback_codec, False)


def resolve_charset(content_type: str | None, fallback: str) -> str:
    """The codec `choose_charset` picks."""
    return choose_charset(content_type, fallback).codec


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
    """Incremental gunzip of one or more concatenated gzip members, with bounded output per call.
    `consumed` counts the compressed bytes zlib has taken so far (for the ratio cap)."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(wbits=_GZIP_WBITS)
        self.consumed = 0

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
            rest = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            self.consumed += len(data) - len(rest)
            data = rest
            if out:
                yield out
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
    """Keeps the allowlisted columns of a TSV in header order, and only rows of the header's width.

    A row is mapped to columns by position, so a row with more or fewer fields than the header (a tab
    or a line break typed into a product name or a buyer's return comment) would move data between
    columns: such rows are dropped and counted (`malformed`), never padded nor cut. A line break is
    LF, CRLF or a lone CR (what universal-newline readers split on), so no CR is ever stored and every
    reader sees the stored rows alike. Blank lines carry no field and are skipped (`blank`). Output
    lines end in LF.
    """

    def __init__(self, keep: tuple[str, ...]) -> None:
        self._keep = frozenset(name.strip() for name in keep)
        self._carry = ""
        self._header_seen = False
        self._width = 0
        self._pattern: re.Pattern[str] | None = None  # None: every column is kept
        self._template = ""
        self._pick: Callable[[list[str]], str] = "\t".join
        self.rows = 0
        self.malformed = 0
        self.blank = 0
        self.dropped: tuple[str, ...] = ()
        self.dropped_unnamed = 0

    def feed(self, text: str) -> str:
        if not text:
            return ""
        buffer = self._carry + text
        cut = buffer.rfind("\n")
        if cut < 0:
            self._carry = buffer
            if len(buffer) > MAX_LINE:
                raise DocumentCorrupt("a line longer than 8 MiB")
            return ""
        self._carry = buffer[cut + 1:]
        return self._lines(buffer[:cut + 1])

    def finish(self) -> str:
        last, self._carry = self._carry, ""
        # The last line had no line break: it gets none (cosmetic; every row before it ends in LF).
        return self._lines(last + "\n").removesuffix("\n") if last else ""

    def _lines(self, text: str) -> str:
        """Complete lines, each ending in a line break, the last one in LF; output likewise."""
        if self._header_seen:
            return self._rows(text)
        end = _LINE_BREAK.search(text)
        assert end is not None  # text ends in LF
        return self._header(text[:end.start()]) + "\n" + self._rows(text[end.end():])

    def _header(self, line: str) -> str:
        """Is the first line a header? It must name at least one kept column (a data row does not, nor
        a blank line, nor a header in a language the allowlist does not speak: storing rows of no
        column would look like success), and name no kept column twice (which position would it be?)."""
        self._header_seen = True
        cells = line.split("\t")
        names = [cell.strip() for cell in cells]
        kept = tuple(i for i, name in enumerate(names) if name in self._keep)
        if not kept:
            raise DocumentCorrupt("the first line is not a header: it names none of the kept columns")
        if len({names[i] for i in kept}) < len(kept):
            raise DocumentCorrupt("the header names a kept column twice")
        wanted = set(kept)
        dropped = [name for i, name in enumerate(names) if i not in wanted]
        self.dropped = tuple(name for name in dropped if COLUMN_NAME.fullmatch(name))
        self.dropped_unnamed = len(dropped) - len(self.dropped)
        self._width = len(cells)
        if len(kept) < len(cells):
            self._pattern, self._template = _row_pattern(len(cells), kept)
            if len(kept) == 1:
                only = kept[0]
                self._pick = lambda fields: fields[only]
            else:
                pick = itemgetter(*kept)
                self._pick = lambda fields: "\t".join(pick(fields))
        return "\t".join(names[i] for i in kept)  # the allowlist's own spelling

    def _rows(self, text: str) -> str:
        """Rows of complete lines (each ending in a line break, the last one in LF), each followed by
        LF. The fast paths take batches in which every line is well-formed; the rest goes the careful way."""
        if not text:
            return ""
        if self._pattern is not None:
            # One regular-expression pass over the whole batch, in C: it matches a line only when the
            # line has exactly the header's field count (and no CR but its CRLF's), so the batch is done
            # when every line matched. The LFs stay where they are.
            out, matched = self._pattern.subn(self._template, text)
            if matched == text.count("\n"):
                self.rows += matched
                return out
        else:
            # Every column kept: nothing to rewrite but line endings; each line's tabs are still counted.
            plain = text.replace("\r\n", "\n")
            lines = plain.split("\n")
            lines.pop()  # after the last LF
            tabs = self._width - 1
            if "\r" not in plain and all(line.count("\t") == tabs for line in lines) and (tabs or "" not in lines):
                self.rows += len(lines)
                return plain
        return self._checked_rows(text)

    def _checked_rows(self, text: str) -> str:
        """The careful way, line by line: blank lines skipped, lines of another width dropped."""
        out: list[str] = []
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        lines.pop()  # after the last LF
        for line in lines:
            if not line:
                self.blank += 1
                continue
            fields = line.split("\t")
            if len(fields) != self._width:
                self.malformed += 1  # counted only: neither its content nor its line number goes anywhere
                continue
            out.append(line if self._pattern is None else self._pick(fields))
        self.rows += len(out)
        return "\n".join(out) + "\n" if out else ""


_LINE_BREAK = re.compile("\r\n|\r|\n")


def _row_pattern(width: int, kept: tuple[int, ...]) -> tuple[re.Pattern[str], str]:
    """A pattern matching one line of exactly `width` (>= 2) fields (and its CR), capturing each run of
    kept adjacent columns, and the template that joins the runs with tabs."""
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
        self._thread = _thread_in_this_context(self._run, "report-part-uploader")
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
            charset = choose_charset(response.headers.get("Content-Type"),
                                     fallback if document_format == "tsv" else "utf-8")
            writer = _MultipartWriter(s3_client, bucket, key, part_size, _CONTENT_TYPES[document_format])
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


def _pump(response: requests.Response, writer: _MultipartWriter, *, charset: Charset,
          compression_label: str | None, keep_columns: tuple[str, ...] | None, document_format: DocumentFormat,
          limits: DocumentLimits) -> StoredDocument:
    counter = _Counter()
    token = _undecodable.set(counter)
    nul_bytes = 0
    try:
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
        decoder = _Decoder(charset.codec)
        tsv_filter = _TsvFilter(keep_columns) if keep_columns is not None else None
        lines = _LineCounter()
        shape: Callable[[str], str] = tsv_filter.feed if tsv_filter is not None else lines.feed

        def text_of(data: bytes, final: bool = False) -> str:
            nonlocal nul_bytes
            text = decoder.feed(data, final)
            if "\x00" in text:
                nul_bytes += text.count("\x00")
                text = text.replace("\x00", "")
            return shape(text)

        gunzip = _Gunzip() if gzipped else None
        for plain in _prefetched(_capped(_plain_chunks(_chain(head, body), gunzip), gunzip, limits)):
            text = text_of(plain)
            if text:
                writer.write(text.encode("utf-8"))
        tail = text_of(b"", final=True)
        if tsv_filter is not None:
            tail += tsv_filter.finish()
        writer.write(tail.encode("utf-8"))
        digest = writer.complete()
    finally:
        _undecodable.reset(token)
    tsv = document_format == "tsv"
    rows = (tsv_filter.rows if tsv_filter is not None else lines.rows) if tsv else 0
    return StoredDocument(
        bytes_in=received.bytes_in, bytes_out=writer.bytes_out, rows=rows, sha256=digest,
        source_charset=decoder.charset, undecodable=counter.value,
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


def _capped(plain: Iterator[bytes], gunzip: _Gunzip | None, limits: DocumentLimits) -> Iterator[bytes]:
    """The decompressed chunks, until a cap is passed: then `DocumentCorrupt`, naming the cap only.
    Checked before a chunk goes on, so nothing beyond a cap is ever decoded or stored."""
    produced = 0
    for chunk in plain:
        produced += len(chunk)
        if produced > limits.max_decompressed_bytes:
            raise DocumentCorrupt(f"decompressed size above the cap of {_size(limits.max_decompressed_bytes)}")
        if gunzip is not None and produced >= RATIO_CHECK_FROM and produced > limits.max_ratio * gunzip.consumed:
            raise DocumentCorrupt(f"compression ratio above the cap of {limits.max_ratio}:1")
        yield chunk


def _size(count: int) -> str:
    return f"{count // MiB} MiB" if count % MiB == 0 else f"{count} bytes"


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

    thread = _thread_in_this_context(produce, "report-download")
    thread.start()
    try:
        while (item := handoff.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def _thread_in_this_context(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread that runs `target` in a copy of the calling thread's context: context variables
    the caller set (the identity a local IAM guard checks, say) hold in the thread's AWS calls too.
    A copy, not the context itself: one context cannot be entered by two threads at once."""
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(target,), name=name, daemon=True)


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
