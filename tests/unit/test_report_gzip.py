"""report_gzip: gunzip as the bytes arrive, and the caps on what a document may decompress to (no HTTP)."""

from __future__ import annotations

import gzip
import os

import pytest

from seller_insights.errors import DocumentCorrupt
from seller_insights.report_gzip import RATIO_CHECK_FROM, DocumentLimits, Gunzip, capped, plain_chunks


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_concatenated_members_in_small_reads() -> None:
    body = gzip.compress(b"first member\n") + gzip.compress(b"second member\n")
    gunzip = Gunzip()
    assert b"".join(plain_chunks(pieces(body, 3), gunzip)) == b"first member\nsecond member\n"
    assert gunzip.consumed == len(body)


def test_a_truncated_stream_is_corrupt_at_the_end() -> None:
    body = gzip.compress(b"x" * 1000)
    with pytest.raises(DocumentCorrupt, match="truncated"):
        list(plain_chunks([body[:-4]], Gunzip()))


def test_the_size_cap_stops_before_the_chunk_that_passes_it() -> None:
    limits = DocumentLimits(max_decompressed_bytes=10)
    out: list[bytes] = []
    with pytest.raises(DocumentCorrupt, match="decompressed size above the cap of 10 bytes"):
        out.extend(capped(iter([b"12345", b"67890", b"1"]), None, limits))
    assert out == [b"12345", b"67890"]


def test_the_ratio_cap_applies_only_from_ratio_check_from() -> None:
    bomb = gzip.compress(b"\0" * (2 * RATIO_CHECK_FROM), 9)  # about 1000:1
    with pytest.raises(DocumentCorrupt, match="compression ratio above the cap of 100:1"):
        gunzip = Gunzip()
        list(capped(plain_chunks([bomb], gunzip), gunzip, DocumentLimits()))
    small = gzip.compress(b"\0" * (RATIO_CHECK_FROM - 1), 9)
    gunzip = Gunzip()
    assert sum(map(len, capped(plain_chunks([small], gunzip), gunzip, DocumentLimits()))) == RATIO_CHECK_FROM - 1
    noise = os.urandom(RATIO_CHECK_FROM)  # 1:1 passes whatever the size
    gunzip = Gunzip()
    assert b"".join(capped(plain_chunks([gzip.compress(noise, 1)], gunzip), gunzip, DocumentLimits())) == noise


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DocumentLimits(max_ratio=0)
