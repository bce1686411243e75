"""Drive a seller through consent: our routes via the real handler, Amazon via the emulator."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import requests

from tests.support.api import ConsentClient, Response


def emulator_consent(emulator_url: str, consent_url: str, seller_id: str) -> str:
    """Press Confirm on the emulated consent page; return where Amazon sends the browser."""
    answer = requests.post(f"{emulator_url}/_emulator/consent",
                           json={"consent_url": consent_url, "selling_partner_id": seller_id}, timeout=5)
    answer.raise_for_status()
    return str(answer.json()["redirect"])


def callback_query(redirect: str) -> str:
    return urlsplit(redirect).query


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def connect(client: ConsentClient, emulator_url: str, seller_id: str, marketplace: str = "US") -> Response:
    """The whole website flow; returns our callback's response."""
    start = client.get(f"/connect?marketplace={marketplace}")
    assert start.status == 302, start.body
    redirect = emulator_consent(emulator_url, start.location, seller_id)
    return client.get(f"/callback?{callback_query(redirect)}")


def appstore_login_query(emulator_url: str, seller_id: str, region: str) -> str:
    """The seller clicks Authorize in the Appstore: the query Amazon sends to our Log-in URI."""
    answer = requests.post(f"{emulator_url}/_emulator/appstore",
                           json={"selling_partner_id": seller_id, "region": region}, timeout=5)
    answer.raise_for_status()
    return urlsplit(str(answer.json()["login_url"])).query


def confirm_consents() -> dict[str, object]:
    """The token refresher's `verify-consents` task: Amazon names the seller of each waiting consent."""
    from tests.support.api import FakeContext
    from tests.support.iam import acting_as
    from token_refresher.handler import lambda_handler

    # As the token refresher's role: its grants are checked against the template, as in AWS.
    with acting_as("token_refresher"):
        return dict(lambda_handler({"task": "verify-consents"}, FakeContext(function_name="token_refresher")))


def connect_and_confirm(client: ConsentClient, emulator_url: str, seller_id: str, marketplace: str = "US") -> Response:
    """The whole website flow, then Amazon's confirmation of the seller; returns our callback's response."""
    done = connect(client, emulator_url, seller_id, marketplace)
    assert done.status == 303, done.body
    report = confirm_consents()
    assert report["verified"] == 1, report
    return done


REFRESH_COUNTS = ("refreshed", "revoked", "skipped", "not_due", "failed", "deferred")


def refresh_tokens() -> dict[str, object]:
    """The token refresher's `refresh-tokens` schedule (the finder), then its token_refresh queue delivered
    until empty as the event source would (partial batch responses; the failed stay), each as the token
    refresher's role. The finder's report, with the counts of every batch's renewals summed and the
    reasons batches stopped early (`stopped`)."""
    import boto3

    from tests.support.api import FakeContext
    from tests.support.iam import acting_as
    from token_refresher import handler

    with acting_as("token_refresher"):
        found = dict(handler.lambda_handler({"task": "refresh-tokens"}, FakeContext(function_name="token_refresher")))
    made: list[object] = []
    original = handler.refresh_work

    def keep(context: object) -> object:
        work = original(context)  # type: ignore[arg-type]
        made.append(work)
        return work

    sqs = boto3.client("sqs")
    queue = os.environ["REFRESH_WORK_QUEUE_URL"]
    handler.refresh_work = keep  # type: ignore[assignment]
    try:
        while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
            with acting_as("token_refresher"):
                answer = handler.lambda_handler({"Records": records}, FakeContext(function_name="token_refresher"))
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            if failed:
                break  # they would come back after the visibility timeout; the caller looks at them
    finally:
        handler.refresh_work = original  # type: ignore[assignment]
    reports = [work.report.as_dict() for work in made]  # type: ignore[attr-defined]
    summed = {name: sum(int(report[name]) for report in reports) for name in REFRESH_COUNTS}
    return {**found, **summed, "stopped": [report["stopped"] for report in reports if report["stopped"]]}
