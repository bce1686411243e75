"""Drive a seller through consent: our routes via the real handler, Amazon via the emulator."""

from __future__ import annotations

import os
from typing import Any
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


VERIFICATION_COUNTS = ("verified", "mismatched", "expired", "revoked", "deletion_pending", "deferred", "skipped",
                       "left")


def confirm_consents() -> dict[str, object]:
    """The token refresher's `verify-consents` schedule (the finder: Amazon is to name the seller of each
    waiting consent), then the token_refresh queue delivered until empty, as the token refresher's role: the
    candidates found (`due`) and the counts of every batch's verifications summed, with the reasons
    batches stopped early (`stopped`)."""
    found, _, checks = _fire_and_deliver("verify-consents")
    summed = {name: sum(int(report[name]) for report in checks) for name in VERIFICATION_COUNTS}
    return {"due": found["found"], **found, **summed,
            "stopped": [report["stopped"] for report in checks if report["stopped"]]}


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
    found, renewals, _ = _fire_and_deliver("refresh-tokens")
    summed = {name: sum(int(report[name]) for report in renewals) for name in REFRESH_COUNTS}
    return {**found, **summed, "stopped": [report["stopped"] for report in renewals if report["stopped"]]}


def _fire_and_deliver(task: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The finder's report, and the reports of the renewals and of the verifications of each batch."""
    import boto3

    from tests.support.api import FakeContext
    from tests.support.iam import acting_as
    from token_refresher import handler

    with acting_as("token_refresher"):
        found = dict(handler.lambda_handler({"task": task}, FakeContext(function_name="token_refresher")))
    made: dict[str, list[Any]] = {"refresh_work": [], "verification_work": []}
    originals = {name: getattr(handler, name) for name in made}

    def keeping(name: str) -> Any:
        def make(context: Any) -> Any:
            work = originals[name](context)
            made[name].append(work)
            return work
        return make

    sqs = boto3.client("sqs")
    queue = os.environ["REFRESH_WORK_QUEUE_URL"]
    for name in made:
        setattr(handler, name, keeping(name))
    try:
        # The event source polls and deletes with the function's role (also inside a test's other role).
        with acting_as("token_refresher"):
            while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
                answer = handler.lambda_handler({"Records": records}, FakeContext(function_name="token_refresher"))
                failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
                for message in messages:
                    if message["MessageId"] not in failed:
                        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                if failed:
                    break  # they would come back after the visibility timeout; the caller looks at them
    finally:
        for name, original in originals.items():
            setattr(handler, name, original)
    return (found, [work.report.as_dict() for work in made["refresh_work"]],
            [work.report.as_dict() for work in made["verification_work"]])
