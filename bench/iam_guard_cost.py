"""What the local IAM guard costs per AWS call (docs/local-stack.md, "Permissions").

Method: moto in-process (`mock_aws`), the synthesized template (build/local cache), resources like the
product's (a table and a bucket encrypted with the token key, a queue), the report fetcher's and the
retention sweeper's roles bound to them through their environment variables (local.iam.bind_environment).
For each call kind, N calls unguarded (no principal) and N acting as the function, interleaved in
rounds (alternating which runs first); the cost is the difference of the medians per call, which
moto's own variance can hide. `evaluation` is the guard's own time per
call as it counts it (mapping + policy evaluation, after the first call's encryption look-up).

    .venv/bin/python -m bench.iam_guard_cost [--calls 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "iam_guard_cost.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    sys.path.insert(0, str(ROOT))

    import boto3
    from moto import mock_aws

    from local.iam import Authorizer, bind_environment, install, policy_set
    from local.template import load_template

    install()
    template = load_template(ROOT)
    results: dict[str, Any] = {}
    with mock_aws():
        kms, db, s3, sqs = boto3.client("kms"), boto3.client("dynamodb"), boto3.client("s3"), boto3.client("sqs")
        key = kms.create_key()["KeyMetadata"]["Arn"]
        db.create_table(TableName="connections", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}],
                        SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key})
        s3.create_bucket(Bucket="data")
        s3.put_bucket_encryption(Bucket="data", ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
        s3.put_object(Bucket="data", Key="sellers/A1/NA/r.tsv", Body=b"x")
        # Unencrypted: the jobs queue's own key is not named in the fetcher's environment, so it is not bound.
        queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        target = {"queue": queue}  # emptied (deleted and created again) before each run, see below
        os.environ.update(CONNECTIONS_TABLE="connections", DATA_BUCKET="data", TOKEN_KEY_ID=key,
                          REPORT_JOBS_QUEUE_URL=queue)
        calls: dict[str, tuple[str, Callable[[], Any]]] = {
            "dynamodb.GetItem (table with the token key: + kms:Decrypt via DynamoDB)": (
                "report_fetcher",
                lambda: db.get_item(TableName="connections", Key={"pk": {"S": "SELLER#A1"}, "sk": {"S": "CONN#NA"}})),
            "s3.ListObjectVersions (s3:prefix condition)": (
                "retention_sweeper", lambda: s3.list_object_versions(Bucket="data", Prefix="sellers/A1/")),
            "s3.GetObject (SSE-KMS: + kms:Decrypt via S3)": (
                "report_fetcher", lambda: _read(s3, "data", "sellers/A1/NA/r.tsv")),
            "kms.GenerateDataKey (encryption context condition)": (
                "report_fetcher", lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={
                    "purpose": "access_token", "seller": "A1", "region": "NA"})),
            "sqs.SendMessage": (
                "report_fetcher", lambda: sqs.send_message(QueueUrl=target["queue"], MessageBody="{}")),
        }
        for name, (duty, call) in calls.items():
            function = next(lid for lid, r in template["Resources"].items()
                            if r["Properties"].get("Handler") == f"{duty}.handler.lambda_handler")
            authorizer = Authorizer(policy_set(template, bind_environment(template, function, os.environ)))
            with authorizer.acting_as_function(function, duty):
                call()  # the first call looks the encryption up
            checked_before, seconds_before = authorizer.checked, authorizer.seconds
            plain: list[float] = []
            guarded: list[float] = []
            for round_number in range(args.rounds):
                # Alternate which goes first, and send to an empty queue each run: moto's SendMessage slows
                # down as the queue grows, which would bias whichever ran second.
                for acting in (False, True) if round_number % 2 == 0 else (True, False):
                    sqs.delete_queue(QueueUrl=target["queue"])  # the same name: the one the fetcher may use
                    target["queue"] = sqs.create_queue(QueueName="jobs")["QueueUrl"]
                    if acting:
                        with authorizer.acting_as_function(function, duty):
                            guarded.append(_per_call(call, args.calls))
                    else:
                        plain.append(_per_call(call, args.calls))
            evaluation = (authorizer.seconds - seconds_before) / (authorizer.checked - checked_before)
            results[name] = {
                "unguarded_us": round(statistics.median(plain) * 1e6, 1),
                "guarded_us": round(statistics.median(guarded) * 1e6, 1),
                "cost_us": round((statistics.median(guarded) - statistics.median(plain)) * 1e6, 1),
                "evaluation_us": round(evaluation * 1e6, 1),
            }
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": f".venv/bin/python -m bench.iam_guard_cost --calls {args.calls} --rounds {args.rounds}",
        "per_call": results,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def _read(s3: Any, bucket: str, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _per_call(call: Callable[[], Any], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count


if __name__ == "__main__":
    raise SystemExit(main())
