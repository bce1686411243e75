"""report_charset: which charset a document is read with, and its incremental decoding (no HTTP)."""

from __future__ import annotations

import pytest

from seller_insights.report_charset import Decoder, choose_charset, counting_undecodable, resolve_charset


def test_charset_tokens() -> None:
    assert resolve_charset("text/plain; charset=Cp1252", "cp932") == "cp1252"
    assert resolve_charset('text/plain; charset="windows-1252"', "cp932") == "cp1252"
    assert resolve_charset("text/plain; charset=ISO-8859-1", "cp932") == "cp1252"
    assert resolve_charset("text/plain; charset=Windows-31J", "cp1252") == "cp932"
    assert resolve_charset("text/plain; charset=shift_jis", "cp1252") == "cp932"
    assert resolve_charset("text/plain; charset=utf8", "cp1252") == "utf-8"
    assert resolve_charset("application/json; charset=UTF-8", "cp1252") == "utf-8"
    assert resolve_charset("text/plain; charset=no-such-charset", "cp932") == "cp932"
    assert resolve_charset("text/plain; charset=base64", "cp1252") == "cp1252"
    assert resolve_charset(None, "Windows-31J") == "cp932"
    with pytest.raises(ValueError, match="fallback"):
        resolve_charset(None, "klingon")


@pytest.mark.parametrize(("label", "codec"), [
    ("UTF-8", "utf-8"), ("utf8", "utf-8"), ('"utf-8"', "utf-8"),
    ("Cp1252", "cp1252"), ("windows-1252", "cp1252"), ("x-cp1252", "cp1252"),
    ("ISO-8859-1", "cp1252"), ("iso8859_1", "cp1252"), ("ISO_8859-1:1987", "cp1252"), ("latin1", "cp1252"),
    ("Shift_JIS", "cp932"), ("SJIS", "cp932"), ("Windows-31J", "cp932"), ("MS932", "cp932"), ("cp932", "cp932"),
    ("csWindows31J", "cp932"), ("x-sjis", "cp932"),
])
def test_amazons_charsets_and_their_aliases_are_honoured(label: str, codec: str) -> None:
    chosen = choose_charset(f"text/plain; charset={label}", "cp1252" if codec != "cp1252" else "cp932")
    assert (chosen.codec, chosen.rejected) == (codec, False)


def test_a_bom_split_across_chunks_is_dropped_and_means_utf8() -> None:
    decoder = Decoder("cp1252")
    text = "".join(decoder.feed(bytes([byte])) for byte in "\ufeffGröße €".encode()) + decoder.feed(b"", True)
    assert (text, decoder.charset) == ("Größe €", "utf-8")


def test_undecodable_bytes_are_counted_only_inside_the_block() -> None:
    with counting_undecodable() as counted:
        decoder = Decoder("cp1252")
        assert decoder.feed(b"A\x81B\x8d", True) == "A\ufffdB\ufffd"
    assert Decoder("utf-8").feed(b"\xff\xfe", True) == "\ufffd\ufffd"  # outside any block: not counted
    assert counted.value == 2
