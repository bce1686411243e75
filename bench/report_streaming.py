"""Report streaming: peak memory and throughput of `stream_document_to_s3` against a peer and gzip -dc.

Usage: python -m bench.report_streaming [--sizes 64M,256M,1G] [--baseline DIR]

`--sizes`: a bare number is MiB (`64` = `64M`); K, M, G (with or without `iB`/`B`) as written; bytes
only with an explicit `B` (`4096B`); anything else is refused.

Method. For each size N this process writes an orders report (GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE
columns, cp1252, about one product name in five with umlauts or a euro sign; rows drawn from a pool of
4096 random rows, each with its own order id and dates) of at least N bytes uncompressed, gzipping it
ONCE, streamed, into a temporary file under /tmp (level 6, gzip's default). A small HTTP server in this
process serves that file from disk in 1 MiB reads, as Amazon does: `Content-Type: text/plain;
charset=Cp1252`, gzip bytes labelled identity. moto runs in server mode in this process too
(`ThreadedMotoServer`); it keeps every uploaded part in memory, so nothing is measured here. Each
contender runs in a fresh child interpreter that imports everything it needs, resets the peak RSS
(`/proc/self/clear_refs` 5, so that the imports' transient peak does not hide a smaller run), reads
its peak RSS (`VmHWM` of /proc/self/status: `ru_maxrss` would carry the parent's peak over the exec,
and this parent holds moto's data), runs once, and reads it again: `rss_growth_mib` is the growth of
the child's peak RSS, `seconds` the wall time of the run, `mib_per_s` the UNCOMPRESSED size over it,
`cpu_seconds` the child's user + system time over the run (all its threads; moto's work in the parent
is not in it) and `mib_per_cpu_s` the size over that: on a machine other work keeps busy, the CPU time
moves far less than the wall time.

Contenders:
- `ours`: `stream_document_to_s3` with the orders column allowlist (ship-city, ship-postal-code and url
  dropped, as the catalog does) into the moto server: download, gunzip, decode, filter, UTF-8, sha256,
  multipart upload.
- `ours_no_filter`: the same with `keep_columns=None` (JSON/XML path: transcode only).
- `ours_passthrough`: the same with every header column on the allowlist (the TSV "passthrough" path of
  reports whose columns are all kept, e.g. FBA inventory: no column to drop, rows still checked).
- `ours_null_sink`: `ours` with an S3 client that discards each part instead of sending it to moto. On
  this 2-core machine moto's server (in the parent) competes with the pipeline for the CPU; in Lambda the
  parts go over the network to S3. This isolates the product's own work (download, gunzip, decode,
  filter, UTF-8, sha256, part assembly).
- `ours_upload_fileobj_default`, `ours_upload_fileobj_2_threads`: `ours` with the multipart writer
  replaced by boto3's `upload_fileobj` (a non-seekable reader over the pipeline's output, hashed as it
  is read) and a `TransferConfig` of 8 MiB parts: boto3's defaults otherwise (10 threads, up to 10
  parts in memory), or 2 threads and 2 parts in memory (`UPLOAD_FILEOBJ`).
- `baseline`, `baseline_null_sink` (with `--baseline DIR` only): `ours` and `ours_null_sink` run with
  the shared layer of another checkout (e.g. the commit before a change), in the same run.
- `peer_download`: python-amazon-sp-api 2.1.35, `ReportsV2().get_report_document(id, download=True)`,
  the library's own code, with only the metadata call (`_request`) replaced by the answer Amazon would
  give (`{"url": <our local URL>, "compressionAlgorithm": "GZIP"}`), so no credentials are needed. Its
  download path is `httpx.get(url).content` -> `zlib.decompress` -> `bytes.decode`, all in memory. It
  does less work than ours: no filtering, no UTF-8 encoding, no hashing, no upload.
- `peer_stream_to_file`: the same library with `stream=True, file=<path in /tmp>` (its streaming
  option, 8 KiB reads, writes the text back in the source charset to a local file; no upload).
- `gzip_dc`: `gzip -dc file > /dev/null`, the speed limit: run before and after the contenders, the
  faster run counts (the stricter yardstick). `<contender>_vs_gzip_dc` is the ratio of MiB/s in this
  run, `<contender>_vs_gzip_dc_cpu` the ratio of MiB per CPU second.

Results go to bench/results/report_streaming.json and to stdout: one line per contender and size with
its ratio to gzip -dc, then the whole result as one JSON line; progress to stderr. Every temporary
file is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import os
import queue
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import measured_on

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "report_streaming.json"
MiB = 1024 * 1024
BUCKET = "bench-report-streaming"
REGION = "us-east-1"
CHARSET_HEADER = "text/plain; charset=Cp1252"
HEADER = (
    "amazon-order-id", "merchant-order-id", "purchase-date", "last-updated-date", "order-status",
    "fulfillment-channel", "sales-channel", "order-channel", "url", "ship-service-level", "product-name", "sku",
    "asin", "item-status", "quantity", "currency", "item-price", "item-tax", "shipping-price", "shipping-tax",
    "gift-wrap-price", "gift-wrap-tax", "item-promotion-discount", "ship-promotion-discount", "ship-city",
    "ship-state", "ship-postal-code", "ship-country", "promotion-ids", "is-business-order",
    "purchase-order-number", "price-designation",
)
# The orders allowlist of seller_insights.report_catalog at the time of writing (address parts dropped).
KEEP = tuple(name for name in HEADER if name not in {"url", "ship-city", "ship-postal-code"})
WORDS = ("Edelstahl", "Küchenwaage", "Größe", "Brotdose", "Öko", "Kaffeebecher", "Thermosflasche", "Schürze",
         "Set", "Premium", "für", "Kinder", "Damen", "Herren", "Garten", "Bürste", "Lampe", "LED", "Kabel",
         "USB-C", "2er-Pack", "Geschenk", "wasserdicht", "Rucksack", "Tasche", "Zubehör", "€-Gutschein")
CITIES = ("München", "Köln", "Düsseldorf", "Berlin", "Hamburg", "Nürnberg", "Frankfurt am Main", "Lübeck")


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([KMG])(?:I?B)?|(B))?", re.IGNORECASE)
_UNITS = {"K": 1024, "M": MiB, "G": 1024 * MiB}


def parse_size(text: str) -> int:
    """`64` and `64M` are 64 MiB (a bare number is MiB); `512K`, `1G`, `1GiB`, `1.5GB` as written;
    bytes only with an explicit `B` (`4096B`). Anything else is refused."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 64, 64M, 512K, 1G, 4096B)")
    number, unit, plain_bytes = match.groups()
    scale = 1 if plain_bytes else _UNITS[unit.upper()] if unit else MiB
    return int(float(number) * scale)


def parse_sizes(text: str) -> dict[str, int]:
    """`--sizes`: comma-separated sizes, each labelled as written (`64M,1G`)."""
    return {label.strip(): parse_size(label) for label in text.split(",")}


# --- the document ----------------------------------------------------------------------------------


def _pool(rng: random.Random) -> list[list[str]]:
    rows = []
    for _ in range(4096):
        words = rng.sample(WORDS[:-1], rng.randint(3, 9))
        if rng.random() < 0.2:
            words.append(rng.choice(("€", "Größe XL", "Schürze", "2 Stück à 5 €")))
        price = rng.randint(199, 19999)
        rows.append([
            "", "", "", "", rng.choice(("Shipped", "Pending", "Unshipped")), rng.choice(("Amazon", "Merchant")),
            "Amazon.de", "", f"https://www.amazon.de/dp/B0{rng.randrange(10**8):08d}",
            rng.choice(("Standard", "Expedited")), " ".join(words), f"SKU-{rng.randrange(10**6):06d}",
            f"B0{rng.randrange(10**8):08d}", "Shipped", str(rng.randint(1, 3)), "EUR", f"{price / 100:.2f}",
            f"{price * 19 / 10000:.2f}", "4.99", "0.95", "", "", "", "", rng.choice(CITIES), "",
            f"{rng.randrange(10**5):05d}", "DE", "", rng.choice(("true", "false")), "", "",
        ])
    return rows


def write_document(path: Path, size: int, seed: int = 7) -> tuple[int, int]:
    """Gzip (level 6, streamed) an orders TSV of at least `size` cp1252 bytes; (bytes, data rows)."""
    rng = random.Random(seed)
    pool = _pool(rng)
    written = rows = 0
    with gzip.open(path, "wb", compresslevel=6) as out:
        block = ["\t".join(HEADER) + "\r\n"]
        pending = len(block[0])
        while written + pending < size:
            row = pool[rng.randrange(len(pool))]
            day, second = 1 + rows % 28, rows % 86400
            stamp = f"2026-11-{day:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+00:00"
            row[0] = row[1] = f"302-{rows:07d}-{rng.randrange(10**7):07d}"
            row[2] = row[3] = stamp
            line = "\t".join(row) + "\r\n"
            block.append(line)
            pending += len(line)
            rows += 1
            if pending >= MiB:
                data = "".join(block).encode("cp1252")
                out.write(data)
                written += len(data)
                block, pending = [], 0
        data = "".join(block).encode("cp1252")
        out.write(data)
        written += len(data)
    return written, rows


# --- servers in this process -----------------------------------------------------------------------


class _FileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_GET(self) -> None:
        path: Path = self.server.document
        self.send_response(200)
        self.send_header("Content-Type", CHARSET_HEADER)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        with path.open("rb") as source, contextlib.suppress(ConnectionError):
            shutil.copyfileobj(source, self.wfile, MiB)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def document_server(path: Path) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    httpd.document = path  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/_documents/bench?X-Amz-Expires=300&X-Amz-Signature=00"
    finally:
        httpd.shutdown()
        httpd.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- children --------------------------------------------------------------------------------------


def child_env(layer: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                "POWERTOOLS_SERVICE_NAME": "bench", "LOG_LEVEL": "WARNING",
                "PYTHONPATH": os.pathsep.join([str(layer or REPO / "layers" / "shared" / "python"), str(REPO)])})
    return env


def run_child(spec: dict[str, Any], layer: Path | None = None) -> dict[str, Any]:
    out = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.report_streaming", "--child", json.dumps(spec)],
        capture_output=True, text=True, env=child_env(layer), cwd=REPO, timeout=3600, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{spec['kind']} failed: {out.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return answer


def _maxrss_kib() -> int:
    """Peak RSS of this process's memory (VmHWM), in KiB.

    Not `getrusage(RUSAGE_SELF).ru_maxrss`: on Linux that is at least the peak the process had before
    its exec(), i.e. the PARENT's RSS at fork time (this parent holds moto's uploads), so it stays flat.
    VmHWM is the peak of the current address space only; ru_maxrss is the fallback elsewhere.
    """
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _reset_peak_rss() -> None:
    """Linux: forget the peak so far (imports' transient peaks), so ru_maxrss restarts from the RSS now."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def child_main(spec: dict[str, Any]) -> None:
    kind = spec["kind"]
    if kind.startswith(("ours", "baseline")):
        # Imported here, not at the top: each child loads only its own contender.
        import boto3
        from botocore.config import Config

        from seller_insights import report_stream
        from seller_insights.report_stream import stream_document_to_s3
        if kind in UPLOAD_FILEOBJ:
            setattr(report_stream, "MultipartWriter", upload_fileobj_writer(**UPLOAD_FILEOBJ[kind]))  # noqa: B010
        s3: Any = boto3.client("s3", endpoint_url=spec["endpoint"], region_name=REGION,
                               config=Config(retries={"max_attempts": 4, "mode": "standard"}, read_timeout=120))
        s3.list_buckets()  # the client is fully built before the baseline
        if kind.endswith("null_sink"):
            s3 = NullSink()
        _reset_peak_rss()
        start_rss, started, cpu = _maxrss_kib(), time.perf_counter(), time.process_time()
        stored = stream_document_to_s3(
            url=spec["url"], compression_label=None, s3_client=s3, bucket=BUCKET, key=spec["key"],
            fallback_charset="cp1252", keep_columns=tuple(spec["keep"]) if spec["keep"] else None,
        )
        seconds, end_rss, cpu = time.perf_counter() - started, _maxrss_kib(), time.process_time() - cpu
        detail = {"bytes_out": stored.bytes_out, "rows": stored.rows, "parts": stored.parts,
                  "dropped_columns": list(stored.dropped_columns), "undecodable": stored.undecodable,
                  "sha256": stored.sha256}
    else:
        from sp_api.api import ReportsV2  # type: ignore[import-untyped]
        from sp_api.base import ApiResponse  # type: ignore[import-untyped]

        class LocalReports(ReportsV2):  # type: ignore[misc]
            def _request(self, path: str, **kwargs: Any) -> Any:  # getReportDocument's answer, no network
                return ApiResponse(payload={"reportDocumentId": "bench", "url": spec["url"],
                                            "compressionAlgorithm": "GZIP"})

        reports = LocalReports(credentials={"refresh_token": "Atzr|bench-not-a-token", "lwa_app_id": "bench",
                                            "lwa_client_secret": "bench"})
        _reset_peak_rss()
        start_rss, started, cpu = _maxrss_kib(), time.perf_counter(), time.process_time()
        if kind == "peer_download":
            res = reports.get_report_document("bench", download=True, timeout=600)
            document = res.payload["document"]
            detail = {"chars": len(document), "character_code": res.character_code}
            del document
        else:
            res = reports.get_report_document("bench", stream=True, file=spec["file"], timeout=600)
            detail = {"file_bytes": os.path.getsize(spec["file"]), "character_code": res.character_code}
        seconds, end_rss, cpu = time.perf_counter() - started, _maxrss_kib(), time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rss_start_kib": start_rss, "rss_end_kib": end_rss,
                      **detail}))


# --- boto3's upload_fileobj in place of our multipart writer ---------------------------------------

# The `upload_fileobj` contenders: TransferConfig values (8 MiB parts like ours). `max_concurrency` is
# boto3's upload threads; `max_in_memory_upload_chunks` (s3transfer's, default 10, not a TransferConfig
# argument) how many parts read from a non-seekable stream may wait in memory.
UPLOAD_FILEOBJ: dict[str, dict[str, int]] = {
    "ours_upload_fileobj_default": {"max_concurrency": 10, "max_in_memory_upload_chunks": 10},
    "ours_upload_fileobj_2_threads": {"max_concurrency": 2, "max_in_memory_upload_chunks": 2},
}


class _QueueReader:
    """A non-seekable file object over a queue of byte strings (None: the producer failed). `read(n)`
    blocks until n bytes or the end: s3transfer makes a part of whatever one read returns. The bytes
    are hashed here, on s3transfer's reading thread (as ours are on the uploader's)."""

    def __init__(self, handoff: queue.Queue[bytes | None]) -> None:
        import hashlib

        self._handoff, self._pending, self._eof = handoff, bytearray(), False
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._pending) < size):
            item = self._handoff.get()
            if item is None:
                raise RuntimeError("the producer failed")  # s3transfer aborts the multipart upload
            if not item:
                self._eof = True
            self._pending += item
        cut = len(self._pending) if size < 0 else size
        out = bytes(self._pending[:cut])
        del self._pending[:cut]
        self.sha256.update(out)
        return out


def upload_fileobj_writer(*, max_concurrency: int, max_in_memory_upload_chunks: int) -> Any:
    """A class with `multipart_writer.MultipartWriter`'s interface that stores through `upload_fileobj`."""
    from boto3.s3.transfer import TransferConfig

    class FileobjWriter:
        def __init__(self, s3: Any, bucket: str, key: str, part_size: int, content_type: str) -> None:
            config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size,
                                    max_concurrency=max_concurrency, use_threads=True,
                                    preferred_transfer_client="classic")
            config.max_in_memory_upload_chunks = max_in_memory_upload_chunks
            self._handoff: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
            self._reader = _QueueReader(self._handoff)
            self._part_size, self._error = part_size, None
            self.bytes_out = 0

            def upload() -> None:
                try:
                    s3.upload_fileobj(self._reader, bucket, key, Config=config,
                                      ExtraArgs={"ContentType": content_type, "ChecksumAlgorithm": "SHA256"})
                except BaseException as exc:
                    self._error = exc

            self._thread = threading.Thread(target=upload, daemon=True)
            self._thread.start()

        @property
        def parts(self) -> int:
            return max(1, -(-self.bytes_out // self._part_size))

        def write(self, data: bytes) -> None:
            if data:
                self.bytes_out += len(data)
                self._handoff.put(data)

        def complete(self) -> str:
            self._handoff.put(b"")
            self._thread.join()
            if self._error is not None:
                raise self._error
            return self._reader.sha256.hexdigest()

        def abort(self) -> None:
            self._handoff.put(None)
            self._thread.join()

    return FileobjWriter


# --- the run ---------------------------------------------------------------------------------------


def gzip_dc(path: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `gzip -dc path > /dev/null`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["gzip", "-dc", str(path)], stdout=sink, check=True)  # noqa: S603, S607
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def row(uncompressed: int, seconds: float, rss_growth_kib: int | None, cpu_seconds: float | None = None,
        **extra: Any) -> dict[str, Any]:
    """`cpu_seconds`: user + system time of every thread of the child (moto's work, in the parent, is not
    in it). On a loaded machine it moves much less than the wall time."""
    cpu = {} if cpu_seconds is None else {"cpu_seconds": round(cpu_seconds, 2),
                                          "mib_per_cpu_s": round(uncompressed / MiB / cpu_seconds, 1)}
    return {
        "rss_growth_mib": None if rss_growth_kib is None else round(rss_growth_kib / 1024, 1),
        "seconds": round(seconds, 2),
        "mib_per_s": round(uncompressed / MiB / seconds, 1),
        **cpu,
        **extra,
    }


def measured(uncompressed: int, out: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The row of a child's answer."""
    return row(uncompressed, out["seconds"], out["rss_end_kib"] - out["rss_start_kib"], out["cpu_seconds"], **extra)


class NullSink:
    """The S3 calls of a multipart upload, answered at once; the bytes are dropped."""

    def create_multipart_upload(self, **_: Any) -> dict[str, str]:
        return {"UploadId": "null"}

    def upload_part(self, *, PartNumber: int, **_: Any) -> dict[str, str]:
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, **_: Any) -> dict[str, str]:
        return {}

    def abort_multipart_upload(self, **_: Any) -> dict[str, str]:
        return {}


def measure_size(label: str, size: int, workdir: Path, endpoint: str, s3: Any, *,
                 baseline: Path | None = None) -> dict[str, Any]:
    gz = workdir / f"orders-{label}.tsv.gz"
    log(f"[{label}] writing and gzipping the document")
    uncompressed, rows = write_document(gz, size)
    result: dict[str, Any] = {"uncompressed_bytes": uncompressed, "gzip_bytes": gz.stat().st_size, "rows": rows}
    log(f"[{label}] gzip -dc")
    gzip_seconds = [gzip_dc(gz)]
    with document_server(gz) as url:
        for kind, keep in (("ours", KEEP), ("ours_no_filter", None), ("ours_passthrough", HEADER),
                           *((name, KEEP) for name in UPLOAD_FILEOBJ)):
            log(f"[{label}] {kind}")
            key = f"bench/{label}/{kind}.tsv"
            out = run_child({"kind": kind, "url": url, "endpoint": endpoint, "key": key, "keep": keep})
            head = s3.head_object(Bucket=BUCKET, Key=key)
            assert head["ContentLength"] == out["bytes_out"], "stored size differs"
            assert out["rows"] == rows, "row count differs"
            assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads"), "an upload was left open"
            s3.delete_object(Bucket=BUCKET, Key=key)
            if kind == "ours":
                filtered_sha256 = out["sha256"]
            elif kind in UPLOAD_FILEOBJ:
                assert out["sha256"] == filtered_sha256, "upload_fileobj stored different bytes"
            result[kind] = measured(uncompressed, out, bytes_out=out["bytes_out"], parts=out["parts"],
                                    dropped_columns=out["dropped_columns"], undecodable=out["undecodable"])
        log(f"[{label}] ours_null_sink")
        out = run_child({"kind": "ours_null_sink", "url": url, "endpoint": endpoint, "key": "null", "keep": KEEP})
        assert out["rows"] == rows, "row count differs"
        assert out["sha256"] == filtered_sha256, "the null sink stored different bytes"
        result["ours_null_sink"] = measured(uncompressed, out, bytes_out=out["bytes_out"], parts=out["parts"])
        if baseline is not None:  # the same two runs with another tree's shared layer (e.g. before a change)
            for kind, key in (("baseline", f"bench/{label}/baseline.tsv"), ("baseline_null_sink", "null")):
                log(f"[{label}] {kind}")
                out = run_child({"kind": kind, "url": url, "endpoint": endpoint, "key": key, "keep": KEEP},
                                baseline / "layers" / "shared" / "python")
                assert out["rows"] == rows and out["sha256"] == filtered_sha256, "the baseline stored other bytes"
                with contextlib.suppress(Exception):
                    s3.delete_object(Bucket=BUCKET, Key=key)
                result[kind] = measured(uncompressed, out, bytes_out=out["bytes_out"], parts=out["parts"])
        log(f"[{label}] peer_download")
        out = run_child({"kind": "peer_download", "url": url})
        result["peer_download"] = measured(uncompressed, out, chars=out["chars"], character_code=out["character_code"])
        log(f"[{label}] peer_stream_to_file")
        target = workdir / f"peer-{label}.tsv"
        out = run_child({"kind": "peer_stream_to_file", "url": url, "file": str(target)})
        target.unlink(missing_ok=True)
        result["peer_stream_to_file"] = measured(uncompressed, out, file_bytes=out["file_bytes"],
                                                 character_code=out["character_code"])
    log(f"[{label}] gzip -dc again")
    gzip_seconds.append(gzip_dc(gz))
    gz.unlink()
    compare(label, result, gzip_seconds, baseline=baseline is not None)
    return result


def compare(label: str, result: dict[str, Any], gzip_seconds: list[tuple[float, float]], *, baseline: bool) -> None:
    """gzip -dc's row, each contender's ratio to it (wall and CPU), and one line per contender on stdout."""
    # The faster of the two gzip -dc runs (before and after the contenders): the stricter yardstick.
    fastest = min(gzip_seconds)
    result["gzip_dc"] = row(result["uncompressed_bytes"], fastest[0], None, fastest[1],
                            runs_seconds=[round(wall, 2) for wall, _ in gzip_seconds])
    limit, limit_cpu = result["gzip_dc"]["mib_per_s"], result["gzip_dc"]["mib_per_cpu_s"]
    compared = ("ours", "ours_null_sink", *UPLOAD_FILEOBJ, *(("baseline", "baseline_null_sink") if baseline else ()))
    for kind in compared:
        result[f"{kind}_vs_gzip_dc"] = round(result[kind]["mib_per_s"] / limit, 2)
        result[f"{kind}_vs_gzip_dc_cpu"] = round(result[kind]["mib_per_cpu_s"] / limit_cpu, 2)
    log(f"[{label}] {json.dumps(result)}")
    for kind in (*compared, "ours_no_filter", "ours_passthrough"):
        out = result[kind]
        print(f"[{label}] {kind}: {out['mib_per_s']} MiB/s = {out['mib_per_s'] / limit:.2f} x gzip -dc "
              f"({limit} MiB/s, this run); per CPU second {out['mib_per_cpu_s'] / limit_cpu:.2f} x gzip -dc; "
              f"RSS growth {out['rss_growth_mib']} MiB", flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64M,256M,1G", type=parse_sizes,
                        help="comma-separated sizes; a bare number is MiB (64 = 64M), bytes need a B (4096B)")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout: its shared layer runs `ours` and `ours_null_sink` again as `baseline*`")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="report-streaming-", dir="/tmp"))
    started = time.perf_counter()
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        sizes = {label: measure_size(label, size, workdir, endpoint, s3, baseline=args.baseline)
                 for label, size in args.sizes.items()}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        moto.stop()
    growth = [s["ours"]["rss_growth_mib"] for s in sizes.values()]
    result = {
        "sizes": sizes,
        "targets": {
            "rss_growth_under_100_mib_at_1g": all(s["ours"]["rss_growth_mib"] < 100 for s in sizes.values()),
            "rss_flat_across_sizes_mib": [min(growth), max(growth)],
            "throughput_at_least_half_gzip_dc": all(s["ours_vs_gzip_dc"] >= 0.5 for s in sizes.values()),
        },
        **measured_on(),
        "total_seconds": round(time.perf_counter() - started, 1),
        "note": ("one run per contender and size; moto server and the document server share this process and "
                 "the machine's cores with the measured child; mib_per_s is uncompressed MiB per second"),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
