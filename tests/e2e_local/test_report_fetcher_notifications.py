"""REPORT_PROCESSING_FINISHED from outside North America, through `python -m local serve`: the token
refresher's sweep creates the EU region's own destination (it alone holds the LWA client secret), the
report fetcher's plan subscribes the European seller with it (with the access token the refresher keeps
warm), and Amazon's notifications for its reports reach the report_notifications queue and the fetcher.

Driven over HTTP only (our control calls, the Amazon emulator's); boto3 against the printed AWS endpoint
only to read what is stored. The stack is this module's own, so every notification it counts belongs to
the one seller connected here. Nothing here prints a token or a document.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.e2e import advance, connect, drain, new_seller, plan_reports, refresh_tokens, stats
from tests.support.local_stack import seller_items, stack_of_its_own, stack_seller_key, stack_table

pytestmark = pytest.mark.slow
# Past the emulator's 90 s to finish a report.
REPORT_SECONDS = 120


# A stack of this module's own: it moves the clock, and its notifications are this module's.
info = stack_of_its_own("report-notifications")


def test_a_european_sellers_report_notifications_arrive(info: dict[str, Any]) -> None:
    seller = new_seller()
    connect(info, seller, "DE")
    # Sales and Traffic is a Data Kiosk query: made to finish within REPORT_SECONDS too (minutes to hours
    # by default).
    answer = requests.post(f"{info['amazon']}/_emulator/queries/timing", json={"min_seconds": 60, "max_seconds": 100},
                           timeout=10)
    assert answer.status_code == 200, answer.text

    refreshed = refresh_tokens(info)  # creates the EU destination, then the drain refreshes the token
    plan = plan_reports(info)  # the planner subscribes the connection, then sends its jobs

    assert (refreshed["lwa_refreshes"], refreshed["failed"]) == (1, 0), refreshed
    (connection,) = seller_items(info, seller, "CONN#")
    assert connection["sk"] == "CONN#EU"
    assert connection["rpf_subscription_id"] not in ("", "existing")
    cached = stack_table(info, "idempotency").get_item(Key={"id": "destination#report_notifications#EU"},
                                                 ConsistentRead=True).get("Item")
    assert cached is not None and cached["region"] == "EU"
    amazon = stats(info)
    assert amazon["destinations_by_region"] == {"NA": 0, "EU": 1, "FE": 0}
    # REPORT_PROCESSING_FINISHED and DATA_KIOSK_QUERY_PROCESSING_FINISHED, to the same destination.
    assert amazon["subscriptions_by_region"] == {"NA": 0, "EU": 2, "FE": 0}
    assert connection["dkq_subscription_id"] not in ("", "existing")

    assert plan["found"] == 1 and plan["planned"] == 1 and plan["job_messages"] >= 1, plan
    first = drain(info)  # each job requests its report, then waits on the queue with a delay
    requested = {str(job["sk"]) for job in seller_items(info, seller, "JOB#")
                 if job["status"] == "WAITING" and job.get("report_id")}
    assert requested, first
    assert stats(info)["notifications"] == {}

    advance(info, REPORT_SECONDS)  # Amazon finishes the reports and queries and notifies the subscribed seller
    amazon = stats(info)
    assert sum(amazon["notifications"].get(kind, 0) for kind in (
        "REPORT_PROCESSING_FINISHED", "DATA_KIOSK_QUERY_PROCESSING_FINISHED")) >= len(requested)
    delivered = drain(info)

    assert delivered["delivered"].get("report_notifications", 0) >= len(requested), delivered
    assert not any(delivered["failed"].values()), delivered["failed"]
    assert not any(n for queue, n in delivered["left"].items() if queue.endswith("_dlq")), delivered["left"]
    jobs = {str(job["sk"]): job["status"] for job in seller_items(info, seller, "JOB#")}
    assert {job: jobs[job] for job in requested} == dict.fromkeys(requested, "DONE")
    assert all(str(row["s3_key"]).startswith(f"sellers/{stack_seller_key(info, seller)}/EU/reports/")
               for row in seller_items(info, seller, "REPORT#EU#"))
