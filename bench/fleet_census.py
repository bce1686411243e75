"""What one fleet census run costs (seller_insights.fleet_census, the hourly `fleet-census` schedule and
`ops status`): DynamoDB calls, bytes DynamoDB answered, an estimate of the read capacity, wall time and
Python's peak allocations, for N connections (moto in-process).

    .venv/bin/python -m bench.fleet_census [--sizes 1000,10000] [--reports-per-connection 20] [--output PATH]
        [--no-scan] [--no-tracemalloc]

Each size: N ACTIVE connections (NA, EU, FE in turn), each with its PLAN# item holding the cursors of five
report types (two per-marketplace ones for two marketplaces), a TOKEN# item and `--reports-per-connection`
REPORT# rows (what makes most of a real table and what the census must never read); 1% of the connections
REVOKED and 1% DELETION_REQUESTED (in the purge index), 0.5% with a consent waiting for verification.

Read capacity: DynamoDB charges a Query by the size of the items it reads, rounded up to 4 KB per page,
0.5 read unit per 4 KB for eventually consistent reads; a KEYS_ONLY index item is about 100 bytes. The
estimate is the bytes of the answers (moto's JSON, a little larger than DynamoDB's item sizes) / 4096 x 0.5,
plus 0.5 per BatchGetItem item (a CONN item is under 4 KB). The `--tokens-removed` Scan is measured too:
it reads the whole table, report rows included (the items' size / 4096 x 0.5). Seconds are moto's
(slower under tracemalloc, which also counts moto's own allocations in the same process): the calls and
bytes are the figures that carry over to DynamoDB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from bench import measured_on

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "fleet_census.json"
NOW = 1_796_000_000
MARKETPLACES = {"NA": ["ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"], "EU": ["A1PA6795UKMFR9", "A1F83G8C2ARO7P"],
                "FE": ["A1VC38T7YXB528", "A39IBJ37TRP1C6"]}
TYPES = ("GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL", "GET_MERCHANT_LISTINGS_ALL_DATA",
         "GET_FBA_FULFILLMENT_CUSTOMER_RETURNS_DATA", "GET_SALES_AND_TRAFFIC_REPORT",
         "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2")


def _setup_paths() -> None:
    for path in (REPO / "functions", REPO / "layers" / "shared" / "python", REPO):
        sys.path.insert(0, str(path))
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      POWERTOOLS_SERVICE_NAME="bench")
    os.environ.pop("AWS_ENDPOINT_URL", None)


def seed(table: Any, size: int, reports: int) -> int:
    """Writes the fleet; answers the table's size in bytes (the items' JSON, close to DynamoDB's item sizes)."""
    from seller_insights.coverage import new_cursor
    from seller_insights.report_catalog import CATALOG
    from seller_insights.report_jobs import Plan
    from seller_insights.repositories import connection_key, shard

    regions = list(MARKETPLACES)
    written = 0

    class Sized:
        def __init__(self, writer: Any) -> None:
            self._writer = writer

        def put_item(self, Item: dict[str, Any]) -> None:
            nonlocal written
            written += len(json.dumps(Item, default=str))
            self._writer.put_item(Item=Item)

    with table.batch_writer() as batch:
        writer = Sized(batch)
        for n in range(size):
            seller, region = f"A{n:013d}", regions[n % 3]
            status = "REVOKED" if n % 100 == 1 else "DELETION_REQUESTED" if n % 100 == 2 else "ACTIVE"
            item: dict[str, Any] = {**connection_key(seller, region), "status": status, "seller_id": seller,
                                    "region": region, "refresh_token": {"blob": "x" * 600}}
            if status == "ACTIVE":
                item |= {"refresh_shard": shard(seller, region), "refresh_due_at": NOW + 600}
                coverage = {}
                for name in TYPES:
                    spec = CATALOG[name]
                    scopes = MARKETPLACES[region] if spec.per_marketplace else [None]
                    for scope in scopes:
                        cursor = new_cursor(spec, scope, NOW - 86400 * 30, 30)
                        coverage[cursor.key] = cursor
                writer.put_item(Item=Plan(seller, region, NOW + 900, {}, None, MARKETPLACES[region],
                                          coverage=coverage).to_item())
                writer.put_item(Item={"pk": f"SELLER#{seller}", "sk": f"TOKEN#{region}", "token": {"blob": "y" * 400}})
            else:
                item |= {"purge_after": "2026-12-01T00:00:00Z", "purge_shard": shard(seller, region)}
            writer.put_item(Item=item)
            if n % 200 == 3:
                writer.put_item(Item={"pk": f"CANDIDATE#{seller}", "sk": f"{region}#{n:032x}",
                                      "verify_shard": shard(seller, region), "verify_due_at": NOW})
            for r in range(reports):
                writer.put_item(Item={"pk": f"SELLER#{seller}", "sk": f"REPORT#{region}#{TYPES[0]}#{r}",
                                      "s3_key": "sellers/" + "k" * 32 + f"/{r}", "bytes": 1000, "rows": 10,
                                      "sha256": "0" * 64, "stored_at": "2026-11-01T00:00:00Z"})

    return written


def measure(table: Any, *, scan_segments: int = 0, table_bytes: int = 0, trace: bool = True) -> dict[str, Any]:
    from seller_insights.fleet_census import FleetCensus

    client = table.meta.client
    answered: Counter[str] = Counter()
    batch_items = Counter[str]()

    def after(http_response: Any, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        answered[model.name] += len(http_response.content or b"")
        if model.name == "BatchGetItem":
            batch_items["items"] += sum(len(items) for items in parsed.get("Responses", {}).values())

    client.meta.events.register("after-call.dynamodb", after)
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    census = FleetCensus(client, table.name, scan_segments=scan_segments).count(NOW)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    client.meta.events.unregister("after-call.dynamodb", after)
    query_bytes = answered["Query"]
    read_units = query_bytes / 4096 * 0.5 + batch_items["items"] * 0.5
    if scan_segments:  # a Scan is charged for everything it reads, whatever the filter keeps
        read_units += table_bytes / 4096 * 0.5
    return {"connections_total": census.as_dict()["connections_total"], "calls": census.calls,
            "answer_bytes": dict(answered), "estimated_read_units": round(read_units, 1),
            "seconds": round(seconds, 2), "tracemalloc": trace,
            "peak_python_mib": round(peak / 2**20, 2) if trace else None}


def run(sizes: list[int], reports: int, *, scan: bool = True, trace: bool = True) -> dict[str, Any]:
    from tests.support.resources import create_resources

    results: dict[str, Any] = {}
    for size in sizes:
        with mock_aws():
            resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                                   "application_id": "c"})
            table = boto3.resource("dynamodb").Table(resources.tables["connections"])
            size_bytes = seed(table, size, reports)
            results[str(size)] = {"table_bytes": size_bytes, "census": measure(table, trace=trace)}
            if scan:
                results[str(size)]["with_tokens_removed_scan"] = measure(table, scan_segments=8, table_bytes=size_bytes,
                                                                         trace=trace)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--reports-per-connection", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-scan", action="store_true", help="skip the --tokens-removed Scan")
    parser.add_argument("--no-tracemalloc", action="store_true", help="faster; no peak allocations")
    args = parser.parse_args()
    _setup_paths()
    results = {**measured_on(), "reports_per_connection": args.reports_per_connection,
               "sizes": run([int(s) for s in args.sizes.split(",")], args.reports_per_connection,
                            scan=not args.no_scan, trace=not args.no_tracemalloc)}
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
