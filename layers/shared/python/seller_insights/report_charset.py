"""Which charset a report document is read with, and its incremental decoding.

- Only what Amazon sends is honoured: UTF-8, windows-1252 (`Cp1252`), ISO-8859-1 and Shift_JIS /
  Windows-31J (`cp932`), under the labels of `_CHARSETS`. ISO-8859-1 (and US-ASCII, which the WHATWG
  Encoding Standard also maps to windows-1252) is read as cp1252, because Amazon's "ISO-8859-1"
  documents carry cp1252 bytes in practice (the euro sign is 0x80); Shift_JIS as cp932, its superset.
  Any other label (`utf-7`, `utf-16`, `unicode_escape`, `rot13`, unknown tokens...) is not used: the
  marketplace's fallback is, and `Charset.rejected` says so. No label at all is normal.
- Undecodable bytes never stop a document: each is replaced by U+FFFD and counted per stream
  (`counting_undecodable`). The five bytes cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D)
  count as undecodable.
- A leading byte-order mark is dropped. A UTF-8 BOM at the start of the body means UTF-8, whatever
  the header says.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

# The charsets Amazon sends, under the labels its Java servers, IANA and the
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


class UndecodableCount:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


_undecodable: ContextVar[UndecodableCount | None] = ContextVar("seller_insights_undecodable", default=None)


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    counter = _undecodable.get()  # the stream decoding in this thread (or task) right now
    if counter is not None:
        counter.value += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error(COUNTING_ERRORS, _count_and_replace)


@contextmanager
def counting_undecodable() -> Iterator[UndecodableCount]:
    """Counts the bytes `Decoder`s replace in this thread (or task) until the block ends. A context
    variable, not a global: documents decoded at the same time in other threads count apart."""
    counter = UndecodableCount()
    token = _undecodable.set(counter)
    try:
        yield counter
    finally:
        _undecodable.reset(token)


class Decoder:
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
