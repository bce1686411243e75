"""A 403 that is not about the token (issue 10, section 6): a role the application or the seller lacks.

Amazon answers a missing role exactly as a bad token: 403 `Unauthorized`, "Access to requested resource is
denied.". The fetcher used to take every such 403 for a bad token: it evicted the shared token and re-queued the
job, which then asked for a refresh, got the same 403 and looped every minute without end. Now a job gets one
retry with the token refresher's next token, then ends FAILED `permission_denied`; the plan records the type and
planning leaves it alone for a day. moto in-process, the emulator over HTTP, the token refresher's sweep played
by `refresher_sweep` between polls of the job queue."""

from __future__ import annotations

import boto3
import pytest

from seller_insights import clock
from seller_insights.clock import FixedClock
from seller_insights.containers import forget_all
from seller_insights.report_catalog import LISTINGS, ORDERS
from seller_insights.vault import Purpose, SecretContext, Vault
from tests.support.api import ConsentClient
from tests.support.fetcher import advance, control, deliver, items, refresher_sweep, stats
from tests.support.flows import connect_and_confirm
from tests.support.sweeps import plan_reports
from tests.support.tokens import lwa_stats, provider

SELLER = "A1PERMISSIONS01"
ORDERS_ROLE = "Inventory and Order Tracking"
DAY = 86400


@pytest.fixture
def fetcher_env(token_env, emulator, monkeypatch):
    clock.set_clock(FixedClock(emulator.now()))
    boto3.client("s3").create_bucket(Bucket="data")
    queue = boto3.client("sqs").create_queue(QueueName="report-jobs")["QueueUrl"]
    # One job per type: no history, and a seller of one marketplace (coverage and participations have their
    # own tests).
    for key, value in {"DATA_BUCKET": "data", "REPORT_JOBS_QUEUE_URL": queue,
                       "DEFAULT_REPORT_TYPES": f"{ORDERS},{LISTINGS}", "REPORT_BACKFILL_DAYS": f"{ORDERS}=0"}.items():
        monkeypatch.setenv(key, value)
    forget_all()
    control(emulator, "participations", {"selling_partner_id": SELLER, "region": "NA",
                                         "marketplaces": [{"country": "US"}]})
    assert connect_and_confirm(ConsentClient(), emulator.base_url, SELLER, "US").status == 303
    provider(token_env, emulator.base_url).get(SELLER, "NA")  # the token refresher keeps one warm
    yield queue
    forget_all()


def token_item():
    table = boto3.resource("dynamodb").Table("test-connections")
    return table.get_item(Key={"pk": f"SELLER#{SELLER}", "sk": "TOKEN#NA"}).get("Item") or {}


def run(queue, emulator, token_env, rounds=10, step=120):
    """Polls of the job queue with the token refresher's sweep after each; the shared token is never evicted."""
    for _ in range(rounds):
        while deliver(queue):
            pass
        assert "token" in token_item(), "the shared access token was evicted"
        refresher_sweep(token_env, emulator, SELLER)
        advance(emulator, step)


def jobs_by_type():
    return {job["report_type"]: job for job in items(SELLER, "JOB#")}


def test_a_withheld_role_fails_its_type_once_and_retries_it_a_day_later(fetcher_env, emulator, token_env):
    control(emulator, "roles", {"role": ORDERS_ROLE, "selling_partner_id": SELLER})
    refreshes = lwa_stats(emulator.base_url)["refresh_token"]

    plan_reports()
    run(fetcher_env, emulator, token_env)

    jobs = jobs_by_type()
    assert (jobs[ORDERS]["status"], jobs[ORDERS]["error"]) == ("FAILED", "permission_denied")
    assert jobs[LISTINGS]["status"] == "DONE"  # the seller's other types keep working
    assert lwa_stats(emulator.base_url)["refresh_token"] - refreshes <= 1  # one fresh token for the job, at most
    # Orders was refused twice (its first call, then its one retry: the in-flight check's getReports already
    # names the type), listings was requested once.
    assert sum(stats(emulator)["spapi_denied"].values()) == 2
    assert stats(emulator)["spapi"]["createReport"] == 1
    (plan,) = items(SELLER, "PLAN#")
    failed_at = int(plan["denied"][ORDERS]) - DAY
    assert 0 <= clock.epoch_seconds() - failed_at <= 10 * 120

    # Planning leaves the type alone for a day, however often it runs.
    for _ in range(3):
        advance(emulator, 4 * 3600)
        assert plan_reports()["jobs"] == 0 or ORDERS not in {
            job["report_type"] for job in jobs_by_type().values() if job["status"] == "NEW"}
        run(fetcher_env, emulator, token_env, rounds=1)
    assert sum(stats(emulator)["spapi_denied"].values()) == 2

    # A day after the refusal the type is tried again; with the role back it is stored and the mark cleared.
    control(emulator, "roles", {"role": ORDERS_ROLE, "selling_partner_id": SELLER, "withheld": False})
    advance(emulator, failed_at + DAY - clock.epoch_seconds() + 3600)
    refresher_sweep(token_env, emulator, SELLER)  # the day's scheduled renewals
    plan_reports()
    run(fetcher_env, emulator, token_env)
    done = [job for job in items(SELLER, "JOB#") if job["report_type"] == ORDERS and job["status"] == "DONE"]
    # The refused window again (a new pull, "r1") and the day since; the cursor has nothing failed left.
    assert sorted(str(job.get("pull")) for job in done) == ["None", "r1"]
    (plan,) = items(SELLER, "PLAN#")
    assert ORDERS not in plan.get("denied", {})


def test_a_refused_token_is_renewed_once_and_the_jobs_go_on(fetcher_env, emulator, token_env):
    """A 403 that was about the token after all (here a token Amazon does not know): each job retries once with
    the refresher's next token, and succeeds."""
    table = boto3.resource("dynamodb").Table("test-connections")
    vault = Vault(boto3.client("kms"), token_env.key_arn)
    expires_at = clock.epoch_seconds() + 3000
    sealed = vault.seal("Atza|IwEBIA-not-a-token-amazon-knows",
                        SecretContext(Purpose.ACCESS_TOKEN, SELLER, "NA"))
    table.update_item(Key={"pk": f"SELLER#{SELLER}", "sk": "TOKEN#NA"},
                      UpdateExpression="SET #t = :t, token_expires_at = :e",
                      ExpressionAttributeNames={"#t": "token"},
                      ExpressionAttributeValues={":t": sealed.to_item(), ":e": expires_at})
    forget_all()  # a new container: nothing in memory
    refreshes = lwa_stats(emulator.base_url)["refresh_token"]

    plan_reports()
    run(fetcher_env, emulator, token_env)

    assert {t: j["status"] for t, j in jobs_by_type().items()} == {ORDERS: "DONE", LISTINGS: "DONE"}
    assert lwa_stats(emulator.base_url)["refresh_token"] - refreshes == 1  # one renewal served both jobs
    assert int(token_item()["token_expires_at"]) != expires_at
    (plan,) = items(SELLER, "PLAN#")
    assert plan.get("denied", {}) == {}
