"""Gunzip of a report document as it arrives, with caps on what it may decompress to.

- Compression is sniffed from the body's first two bytes (`GZIP_MAGIC`), never taken from a label:
  Amazon serves gzip bodies labelled `identity`, and GZIP labels on plain bodies have been seen.
- Members may be concatenated; each zlib call returns at most `INFLATE_CHUNK` bytes.
- Caps (`DocumentLimits`): more than `max_decompressed_bytes`, or (once `RATIO_CHECK_FROM` bytes came
  out, so that a small document of repeated bytes never trips it) more than `max_ratio` decompressed
  bytes per compressed byte consumed, is `DocumentCorrupt` naming the cap. Measured ratios of realistic
  documents stay under 17:1 (bench/README.md); gzip can reach 1032:1.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from seller_insights.errors import DocumentCorrupt

MiB = 1024 * 1024
INFLATE_CHUNK = 1 * MiB  # at most this much decompressed output per zlib call
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


@dataclass(frozen=True)
class DocumentLimits:
    """Caps on what a document may decompress to; above one it is `DocumentCorrupt`."""

    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    max_ratio: int = DEFAULT_MAX_RATIO  # decompressed bytes per compressed byte, from RATIO_CHECK_FROM on

    def __post_init__(self) -> None:
        if self.max_decompressed_bytes < 1 or self.max_ratio < 1:
            raise ValueError("document limits must be positive")


class Gunzip:
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


def plain_chunks(chunks: Iterable[bytes], gunzip: Gunzip | None) -> Iterator[bytes]:
    """The body's bytes, gunzipped when `gunzip` is given (then a truncated stream raises at the end)."""
    for chunk in chunks:
        if gunzip is None:
            yield chunk
        else:
            yield from gunzip.feed(chunk)
    if gunzip is not None:
        gunzip.finish()


def capped(plain: Iterable[bytes], gunzip: Gunzip | None, limits: DocumentLimits) -> Iterator[bytes]:
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
