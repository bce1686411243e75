"""AWS calls of the retention sweep, counted with botocore's event hooks.

Usage: python -m bench.retention_cost [--sizes 1000,10000] [--objects 10000]

Two measurements against moto in-process:

- Idle sweep: N connections that are REVOKED or DELETION_REQUESTED with a purge date still ahead (so
  they are in the sparse `by_purge_due` index, the worst case for a sweep that finds nothing due). The
  sweep's calls must not depend on N (one Query per shard, no Scan).
- One purge: a seller whose revoked region holds `--objects` S3 objects (one version each, plus a few
  delete markers and an incomplete multipart upload) and a handful of table items. DeleteObjects
  carries up to 1,000 keys, so at most ceil(objects / 1000) + 1 calls.

Since issue 11 the sweep is a finder (`PurgeFinder`: the index → `retention_purges`, one connection a
message) and a consumer (`RetentionSweep.purge_item`, one message per invocation). Only the product's
calls are counted: a `before-call` hook on the DynamoDB, S3 and SQS clients the finder and the consumer
use; the seeding and the event source mapping's polls go through other clients.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import measured_on

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "retention_cost.json"
BUCKET = "bench-data"
MARKERS = 10


def _setup_paths() -> None:
    for path in (REPO / "functions", REPO / "layers" / "shared" / "python", REPO):
        sys.path.insert(0, str(path))
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      POWERTOOLS_SERVICE_NAME="bench")
    os.environ.pop("AWS_ENDPOINT_URL", None)


class _Counted:
    """The sweep's own clients, with every API call counted."""

    def __init__(self) -> None:
        import boto3

        self.calls: Counter[str] = Counter()
        self.dynamodb = boto3.resource("dynamodb")
        self.db = self.dynamodb.meta.client
        self.s3 = boto3.client("s3")
        self.sqs = boto3.client("sqs")
        for client in (self.db, self.s3, self.sqs):
            client.meta.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def run(self, tables: dict[str, str]) -> tuple[dict[str, Any], dict[str, int], float]:
        """The finder, then the consumer on each message it sent: the purges' report summed, the calls of
        both, the seconds taken."""
        import boto3

        from retention_sweeper.service import PURGES_KIND, PurgeFinder, RetentionSweep, SweepReport
        from seller_insights.fanout import WorkQueue
        from seller_insights.retention import PurgeStates, Receipts, S3Purge, TableItems

        connections = tables["connections"]
        sweep = RetentionSweep(states=PurgeStates(self.db, connections), items=TableItems(self.db, connections),
                               objects=S3Purge(self.s3, BUCKET), receipts=Receipts(self.db, tables["audit"]))
        mapping = boto3.client("sqs")  # the event source mapping's polls: not the function's calls
        queue = mapping.create_queue(QueueName="retention-purges")["QueueUrl"]
        work = WorkQueue(self.sqs, queue, PURGES_KIND, per_message=1)
        self.calls.clear()
        started = time.perf_counter()
        found = PurgeFinder(self.dynamodb.Table(connections), work).run()
        report = SweepReport()
        while batch := mapping.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                for item in work.items_of(json.loads(message["Body"])):
                    sweep.purge_item(item, lambda: 900_000, report)
                mapping.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return {**report.as_dict(), "found": found.found}, dict(self.calls), round(time.perf_counter() - started, 3)


def _resources() -> dict[str, str]:
    import boto3

    from tests.support.resources import create_resources

    resources = create_resources(boto3.session.Session(), {"client_id": "a", "client_secret": "b" * 8,
                                                           "application_id": "c"})
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return resources.tables


def _connection(seller: str, region: str, status: str, purge_after: datetime) -> dict[str, Any]:
    from seller_insights.repositories import connection_key, iso, shard

    return {**connection_key(seller, region), "seller_id": seller, "region": region, "status": status,
            "consented_at": "2025-11-29T12:00:00Z", "reauthorization_due_at": "2026-11-29T12:00:00Z",
            "created_at": "2025-11-29T12:00:00Z", "updated_at": "2026-11-01T12:00:00Z",
            "purge_after": iso(purge_after), "purge_shard": shard(seller, region)}


def measure_idle(size: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from seller_insights import clock

    now = clock.now()
    with mock_aws():
        tables = _resources()
        with boto3.resource("dynamodb").Table(tables["connections"]).batch_writer() as writer:
            for n in range(size):
                status = "REVOKED" if n % 2 else "DELETION_REQUESTED"
                writer.put_item(Item=_connection(f"A{n:013d}", "NA", status, now + timedelta(days=1 + n % 20)))
        report, calls, seconds = _Counted().run(tables)
    assert report["due"] == 0, report
    return {"connections_not_due": size, "aws_calls": sum(calls.values()), "by_operation": calls,
            "seconds": seconds}


def measure_purge(objects: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from seller_insights import clock
    from seller_insights.object_keys import seller_prefix
    from seller_insights.quotas import OPERATION_RATES

    now = clock.now()
    seller, region = "A1BENCHSELLER", "EU"
    prefix = f"{seller_prefix(seller, region)}reports/GET_ORDERS/"
    with mock_aws():
        tables = _resources()
        s3 = boto3.client("s3")
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: s3.put_object(Bucket=BUCKET, Key=f"{prefix}{n:06d}.tsv", Body=b"x"),
                          range(objects)))
        for n in range(MARKERS):
            s3.delete_object(Bucket=BUCKET, Key=f"{prefix}{n:06d}.tsv")
        s3.create_multipart_upload(Bucket=BUCKET, Key=f"{prefix}big.tsv")
        table = boto3.resource("dynamodb").Table(tables["connections"])
        with table.batch_writer() as writer:
            writer.put_item(Item=_connection(seller, region, "REVOKED", now - timedelta(hours=1)))
            writer.put_item(Item=_connection(seller, "NA", "REVOKED", now + timedelta(days=3)))
            for n in range(40):
                writer.put_item(Item={"pk": f"SELLER#{seller}", "sk": f"REPORT#{region}#GET_ORDERS#{n}",
                                      "region": region})
                writer.put_item(Item={"pk": f"SELLER#{seller}", "sk": f"JOB#{n:032d}", "region": region})
            for operation in OPERATION_RATES:
                writer.put_item(Item={"pk": f"QUOTA#{seller}#{region}#{operation}", "sk": "BUCKET", "tokens": "1"})
        report, calls, seconds = _Counted().run(tables)
        left = s3.list_object_versions(Bucket=BUCKET, Prefix=seller_prefix(seller, region))
        assert not left.get("Versions") and not left.get("DeleteMarkers"), "objects left after the purge"
    assert report["purged"] == 1, report
    return {"objects": objects, "delete_markers": MARKERS, "deleted": report["deleted"],
            "aws_calls": sum(calls.values()), "by_operation": calls,
            "delete_objects_calls": calls.get("DeleteObjects", 0),
            "delete_objects_limit": math.ceil(objects / 1000) + 1, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--objects", type=int, default=10_000)
    args = parser.parse_args()
    _setup_paths()
    from seller_insights import clock
    from seller_insights.clock import FixedClock
    from seller_insights.pseudonyms import use_key

    clock.set_clock(FixedClock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC)))
    use_key(os.urandom(32))  # the seller-key key the sweep names prefixes and logs with (no secret to read)
    idle = [measure_idle(int(size)) for size in args.sizes.split(",")]
    purge = measure_purge(args.objects)
    constant = len({r["aws_calls"] for r in idle}) == 1
    summary = {
        "idle_sweeps": idle,
        "idle_calls_independent_of_size": constant,
        "purge": purge,
        **measured_on(),
        "command": f"python -m bench.retention_cost --sizes {args.sizes} --objects {args.objects}",
    }
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    if not constant:
        sys.exit("an idle sweep's AWS calls grow with the number of connections")
    if purge["delete_objects_calls"] > purge["delete_objects_limit"]:
        sys.exit(f"{purge['delete_objects_calls']} DeleteObjects calls, over {purge['delete_objects_limit']}")


if __name__ == "__main__":
    main()
