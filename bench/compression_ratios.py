"""Compression ratios of report documents: the evidence behind the report fetcher's decompression caps.

Usage: python -m bench.compression_ratios [--large 64M]

Method. Every document is gzipped in memory at levels 1, 6 (gzip's default) and 9 (Amazon's level is not
documented; 9 gives the highest ratio a real document can reach) and then decompressed the way
`seller_insights.report_stream` does it (64 KiB compressed reads, at most 1 MiB of output per zlib
call). `ratio` is uncompressed / compressed bytes of the whole document. `peak_ratio_after` is the
highest running ratio (decompressed so far / compressed consumed so far) seen once the output reached
1, 8 and 16 MiB: what a ratio cap that applies from that much output would compare against.

Documents:
- `emulator_small/*`: the Amazon emulator's own generated documents (`generate` in local/amazon/generators.py,
  5-20 rows) for every flat-file type in US (cp1252) and JP (cp932), and the Sales and Traffic JSON.
- `emulator_rows5000/*`: the same generators with 5,000 rows (the JSON: 5,000 ASINs).
- `emulator_stream/*`: `stream_tsv` (the emulator's source for big downloads: rows drawn from a pool
  of 257, renumbered), `--large` bytes for each flat-file type.
- `bench_orders`: the orders document of bench/report_streaming.py (4,096-row pool, unique order ids
  and timestamps), `--large` bytes.
- `sales_and_traffic_pretty`: the 5,000-ASIN Sales and Traffic JSON indented by 2 (pretty-printed JSON
  compresses better than compact JSON).
- `settlement_sparse`: a settlement report whose rows leave 16 of 23 columns empty (a real shape:
  fee and adjustment lines), 5,000 rows.
- hostile references: `zeros` (`--large` NUL bytes), `one_row_repeated` (a header and one orders row
  repeated to `--large`).

Results go to bench/results/compression_ratios.json and, as one JSON line, to stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import measured_on

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "compression_ratios.json"
MiB = 1024 * 1024
LEVELS = (1, 6, 9)
THRESHOLDS_MIB = (1, 8, 16)
READ = 64 * 1024
INFLATE = MiB


def gzip_bytes(data: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def running_peaks(compressed: bytes) -> dict[str, float | None]:
    """Highest decompressed/consumed ratio once the output reached each threshold (None: never reached)."""
    inflater = zlib.decompressobj(wbits=31)
    consumed = produced = 0
    peaks: dict[int, float | None] = dict.fromkeys(THRESHOLDS_MIB)
    for start in range(0, len(compressed), READ):
        data = compressed[start:start + READ]
        while data:
            out = inflater.decompress(data, INFLATE)
            rest = inflater.unconsumed_tail
            consumed += len(data) - len(rest)
            produced += len(out)
            data = rest
            for mib in THRESHOLDS_MIB:
                if produced >= mib * MiB:
                    ratio = produced / max(consumed, 1)
                    peaks[mib] = max(peaks[mib] or 0.0, ratio)
            if not out and not rest:
                break
    return {f"{mib}MiB": None if peak is None else round(peak, 1) for mib, peak in peaks.items()}


def measure(data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = {"bytes": len(data)}
    for level in LEVELS:
        compressed = gzip_bytes(data, level)
        entry: dict[str, Any] = {"gzip_bytes": len(compressed), "ratio": round(len(data) / len(compressed), 2)}
        if len(data) >= MiB:
            entry["peak_ratio_after"] = running_peaks(compressed)
        result[f"level{level}"] = entry
    return result


def documents(large: int) -> Iterator[tuple[str, bytes]]:
    from bench.report_streaming import write_document
    from local.amazon import generators
    from local.amazon.marketplaces import MARKETPLACES

    start, end = datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)
    flat = [t for t in generators.HEADERS if t not in (generators.ORDERS_BY_DATE, generators.SETTLEMENT_FLAT)]
    for country in ("US", "JP"):
        ids = [MARKETPLACES[country].marketplace_id]
        for report_type in [*flat, generators.SALES_AND_TRAFFIC]:
            yield (f"emulator_small/{country}/{report_type}",
                   generators.generate(report_type, ids, start=start, end=end, seed=11).body)
            yield (f"emulator_rows5000/{country}/{report_type}",
                   generators.generate(report_type, ids, start=start, end=end, seed=11, rows=5000).body)
    us = [MARKETPLACES["US"].marketplace_id]
    for report_type in flat:
        yield f"emulator_stream/US/{report_type}", b"".join(generators.stream_tsv(report_type, us, large, seed=3))
    with tempfile.TemporaryDirectory(prefix="compression-ratios-") as workdir:
        path = Path(workdir) / "orders.tsv.gz"
        write_document(path, large)
        yield "bench_orders", zlib.decompress(path.read_bytes(), wbits=31)
    compact = generators.generate(generators.SALES_AND_TRAFFIC, us, start=start, end=end, seed=11, rows=5000).body
    yield "sales_and_traffic_pretty", json.dumps(json.loads(compact), indent=2, ensure_ascii=False).encode()
    yield "settlement_sparse", _sparse_settlement(5000)
    yield "zeros", bytes(large)
    header, first = generators.generate(generators.ORDERS_BY_UPDATE, us, start=start, end=end, seed=11,
                                        rows=1).body.split(b"\n", 1)
    yield "one_row_repeated", header + b"\n" + first * (large // len(first) + 1)


def _sparse_settlement(rows: int) -> bytes:
    from local.amazon import generators

    rng = random.Random(5)
    header = "\t".join(generators.HEADERS[generators.SETTLEMENT_V2])
    lines = [header]
    for i in range(rows):
        lines.append("\t".join([
            "10000000007", "", "", "", "", "", rng.choice(("Order", "Refund", "ServiceFee")),
            f"302-{rng.randrange(10**7):07d}-{rng.randrange(10**7):07d}", "", "", "", "Amazon.de",
            rng.choice(("ItemFees", "ItemPrice")), rng.choice(("Commission", "FBAPerUnitFulfillmentFee")),
            f"-{rng.randint(1, 999) / 100:.2f}", "", "", "", "", "", "", f"SKU-{i % 300:05d}", "",
        ]))
    return ("\n".join(lines) + "\n").encode("cp1252")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", default="64M")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.report_streaming import parse_size

    started = time.perf_counter()
    measured = {name: measure(data) for name, data in documents(parse_size(args.large))}
    realistic = {name: m for name, m in measured.items() if name not in ("zeros", "one_row_repeated")}
    result = {
        "documents": measured,
        "highest_realistic_ratio": max(m[f"level{level}"]["ratio"] for m in realistic.values() for level in LEVELS),
        "highest_realistic_peak_after_8MiB": max(
            (m[f"level{level}"].get("peak_ratio_after", {}).get("8MiB") or 0)
            for m in realistic.values() for level in LEVELS),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        **measured_on(),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
