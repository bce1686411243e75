"""Export size: the export worker's peak memory and time for one seller with many, large stored reports.

Usage: python -m bench.export_size [--objects 10000] [--total 3G] [--random-share 0.5] [--no-tracemalloc]

Method. moto runs in server mode in this process (`ThreadedMotoServer`) with
`MOTO_S3_DEFAULT_KEY_BUFFER_SIZE` at 256 KiB, so objects larger than that live in temporary files rather
than in memory; it holds the seller: one ACTIVE connection, `--objects` stored reports (a `REPORT#` row
and an S3 object each, `--total` bytes in all, sizes spread +-50% around the mean), and the export
request as `POST .../export` leaves it (the `EXPORT#` item QUEUED, the audit record STARTED). A
`--random-share` of the objects are random bytes (incompressible: the worst case for deflate's time and
the ZIP's size); the rest are hex text (deflates to about 55%).

The worker runs in a fresh child interpreter that imports everything it needs, resets its peak RSS
(`/proc/self/clear_refs` 5), runs `ExportWorker.run` once (the real code: it reads every row and object
from the moto server and streams the ZIP into it by multipart upload), and reads `VmHWM` again:
`rss_growth_mib` is the growth of the worker process's peak RSS over the run, so neither moto's data (in
this process) nor the seeding is in it. `seconds` is the wall time of the run, `cpu_seconds` the child's
user + system time (on this 2-core machine moto's server competes with the worker for the CPU; in Lambda
S3 is elsewhere). A second child does the same under `tracemalloc`: `python_peak_mib` is the peak of
Python's own allocations during the run (zlib's and OpenSSL's buffers are not Python allocations; the
RSS figure has them). Finally this process downloads the ZIP to a temporary file and checks it:
every entry's CRC (`testzip`), the entry count and the manifest's counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import measured_on

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "export_size.json"
REGION = "us-east-1"
BUCKET = "bench-data"
CONNECTIONS, AUDIT = "bench-connections", "bench-audit"
SELLER = "A1EXPORTBENCH01"
REQUEST_ID = "bench-export-1"
SELLER_KEY = b"bench-export-size-seller-key-000000000000"  # a fixed key: parent and child name the seller alike
REPORT_TYPE = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL"
MOTO_KEY_BUFFER = 256 * 1024
GiB = 1 << 30
MiB = 1 << 20


def _setup_paths() -> None:
    for path in (REPO / "functions", REPO / "layers" / "shared" / "python", REPO):
        sys.path.insert(0, str(path))
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION,
                      POWERTOOLS_SERVICE_NAME="bench", POWERTOOLS_TRACE_DISABLED="true", LOG_LEVEL="WARNING")
    os.environ.pop("AWS_ENDPOINT_URL", None)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": MiB, "G": GiB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the seller, in the moto server -------------------------------------------------------------------------


def object_body(n: int, size: int, random_share: float) -> bytes:
    generator = random.Random(n)
    if generator.random() < random_share:
        return os.urandom(size)
    return os.urandom(size // 2 + 1).hex()[:size].encode()


def seed(endpoint: str, objects: int, total: int, random_share: float) -> dict[str, int]:
    import boto3

    from seller_insights.export_requests import ExportRequests
    from seller_insights.object_keys import seller_prefix
    from seller_insights.repositories import iso

    db = boto3.resource("dynamodb", endpoint_url=endpoint)
    db.create_table(TableName=CONNECTIONS, BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                          {"AttributeName": "sk", "AttributeType": "S"}])
    db.create_table(TableName=AUDIT, BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET)
    table = db.Table(CONNECTIONS)
    pk = f"SELLER#{SELLER}"
    now = datetime.now(UTC)
    table.put_item(Item={"pk": pk, "sk": "CONN#NA", "seller_id": SELLER, "region": "NA", "status": "ACTIVE",
                         "consented_at": iso(now), "created_at": iso(now), "updated_at": iso(now)})
    mean = total // objects
    sizes = [max(1, int(mean * (0.5 + random.Random(-n).random()))) for n in range(objects)]
    sizes[-1] += total - sum(sizes)  # exactly --total bytes
    prefix = f"{seller_prefix(SELLER, 'NA')}reports/{REPORT_TYPE}/"

    def put(n: int) -> tuple[int, int]:
        body = object_body(n, sizes[n], random_share)
        key = f"{prefix}{n:06d}.tsv"
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return n, len(body)

    with ThreadPoolExecutor(4) as pool:
        stored = dict(pool.map(put, range(objects)))
    with table.batch_writer() as batch:
        for n in range(objects):
            batch.put_item(Item={"pk": pk, "sk": f"REPORT#NA#{REPORT_TYPE}#{n:06d}", "region": "NA",
                                 "report_type": REPORT_TYPE, "report_id": str(n), "s3_key": f"{prefix}{n:06d}.tsv",
                                 "bytes": stored[n], "rows": 1, "stored_at": iso(now)})
    report_bytes = sum(stored.values())
    ExportRequests(table).create(SELLER, REQUEST_ID, now=now, objects=objects, report_bytes=report_bytes)
    db.Table(AUDIT).put_item(Item={"id": f"request#{REQUEST_ID}", "type": "export", "status": "STARTED",
                                   "received_at": iso(now)})
    return {"objects": objects, "report_bytes": report_bytes,
            "random_objects": sum(1 for n in range(objects) if random.Random(n).random() < random_share)}


# --- the worker, in a child interpreter -----------------------------------------------------------------------


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_main(config: dict[str, Any]) -> None:
    _setup_paths()
    import tracemalloc

    import boto3
    from data_exports.worker import ExportWorker

    from seller_insights import pseudonyms
    from seller_insights.data_rights import AuditLog, DataRightsRepository
    from seller_insights.export_requests import ExportRequests

    pseudonyms.use_key(SELLER_KEY)
    endpoint = config["endpoint"]
    db = boto3.resource("dynamodb", endpoint_url=endpoint)
    table = db.Table(CONNECTIONS)
    worker = ExportWorker(requests=ExportRequests(table), sellers=DataRightsRepository(table),
                          audit=AuditLog(db.Table(AUDIT)), s3=boto3.client("s3", endpoint_url=endpoint),
                          bucket=BUCKET)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before_kib = _peak_rss_kib()
    if config["tracemalloc"]:
        tracemalloc.start()
    cpu_before, started = os.times(), time.perf_counter()
    outcome = worker.run(SELLER, REQUEST_ID, receive_count=1, remaining_ms=lambda: 900_000)
    seconds = time.perf_counter() - started
    cpu_after = os.times()
    python_peak = tracemalloc.get_traced_memory()[1] if config["tracemalloc"] else None
    print(json.dumps({
        "outcome": outcome.status, "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system, 1),
        "rss_before_mib": round(before_kib / 1024, 1),
        "rss_growth_mib": round((_peak_rss_kib() - before_kib) / 1024, 1),
        "python_peak_mib": round(python_peak / MiB, 1) if python_peak is not None else None,
    }))


def run_worker(endpoint: str, *, traced: bool) -> dict[str, Any]:
    config = json.dumps({"endpoint": endpoint, "tracemalloc": traced})
    done = subprocess.run([sys.executable, "-m", "bench.export_size", "--child", config], cwd=REPO,  # noqa: S603
                          capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the worker child failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def reset_request(endpoint: str) -> None:
    """Back to QUEUED (attempt 0) and the audit record STARTED, for the second run."""
    import boto3

    from seller_insights.export_requests import export_request_key

    db = boto3.resource("dynamodb", endpoint_url=endpoint)
    db.Table(CONNECTIONS).update_item(Key=export_request_key(SELLER, REQUEST_ID),
                                      UpdateExpression="SET #s = :queued, attempt = :zero",
                                      ExpressionAttributeNames={"#s": "status"},
                                      ExpressionAttributeValues={":queued": "QUEUED", ":zero": 0})
    db.Table(AUDIT).update_item(Key={"id": f"request#{REQUEST_ID}"}, UpdateExpression="SET #s = :started",
                                ExpressionAttributeNames={"#s": "status"},
                                ExpressionAttributeValues={":started": "STARTED"})


def check_zip(endpoint: str, workdir: Path, objects: int) -> dict[str, Any]:
    import boto3

    from seller_insights.object_keys import export_key

    s3 = boto3.client("s3", endpoint_url=endpoint)
    path = workdir / "export.zip"
    s3.download_file(BUCKET, export_key(SELLER, REQUEST_ID), str(path))
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    return {"zip_bytes": path.stat().st_size, "entries": len(names), "every_crc_ok": bad is None,
            "manifest_reports": manifest["record_counts"]["reports"],
            "complete": bad is None and manifest["record_counts"]["reports"] == objects
            and len(names) == objects + 3}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export_size")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--total", type=parse_size, default=3 * GiB, help="bytes of reports in all (3G)")
    parser.add_argument("--random-share", type=float, default=0.5)
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the second, traced run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    _setup_paths()
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(MOTO_KEY_BUFFER)
    from moto.server import ThreadedMotoServer

    from seller_insights import pseudonyms

    pseudonyms.use_key(SELLER_KEY)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="export-size-", dir="/tmp"))
    started = time.perf_counter()
    try:
        seeded_at = time.perf_counter()
        seller = seed(endpoint, args.objects, args.total, args.random_share)
        seed_seconds = time.perf_counter() - seeded_at
        print(f"seeded {seller['objects']} objects, {seller['report_bytes'] / GiB:.2f} GiB in {seed_seconds:.0f}s",
              file=sys.stderr)
        worker = run_worker(endpoint, traced=False)
        print(f"worker: {worker}", file=sys.stderr)
        archive = check_zip(endpoint, workdir, args.objects)
        traced = None
        if not args.no_tracemalloc:
            reset_request(endpoint)
            traced = run_worker(endpoint, traced=True)
            print(f"worker under tracemalloc: {traced}", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        moto.stop()
    result = {
        "seller": seller,
        "worker": {**worker, "mib_per_s": round(seller["report_bytes"] / MiB / worker["seconds"], 1)},
        "worker_under_tracemalloc": traced,
        "archive": archive,
        "targets": {
            "rss_growth_under_256_mib": worker["rss_growth_mib"] < 256,
            "zip_complete_and_valid": archive["complete"],
            "within_15_minutes": worker["seconds"] < 14 * 60,
        },
        "seed_seconds": round(seed_seconds, 1),
        **measured_on(),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
