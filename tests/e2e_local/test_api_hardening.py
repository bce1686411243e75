"""Per-route throttling and the admin audit trail through `python -m local serve`.

- A flood of `/connect` against a stack whose template gives `/connect` a tiny bucket (`serve
  --template`, the local stage's template with only that route's RouteSettings tightened): `/connect`
  answers 429 while `/callback`, `/done` and an `/admin` route still answer, as in API Gateway, where
  each route key has its own bucket.
- An admin call through the shared stack lands in the audit table with the caller's principal: the
  assumed-role session of the ops role that the local admin credentials stand for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.admin import AdminClient
from local.template import load_template
from tests.support.e2e import TIMEOUT, connect, new_seller
from tests.support.local_stack import REPO, Serve, every_item, serving, stack_seller_key, stack_table

pytestmark = pytest.mark.slow

LOCAL_ADMIN_ARN = "arn:aws:sts::123456789012:assumed-role/OpsSupportRole/local-admin"
# /connect's bucket in the flooded stack: 2 requests at once, then one every 5 seconds.
CONNECT_RATE, CONNECT_BURST = 0.2, 2
FLOOD = 20


def audit_records(info: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The request records of a seller key (a scan of a test stack's audit table; the product never scans)."""
    return every_item(stack_table(info, "audit").scan, FilterExpression="seller_key = :k AND begins_with(id, :p)",
                      ExpressionAttributeValues={":k": key, ":p": "request#"})


# --- the audit trail (shared stack) --------------------------------------------------------------------


def test_an_admin_call_is_audited_with_the_callers_principal(info: dict[str, Any]) -> None:
    seller = new_seller()
    connect(info, seller)
    admin = AdminClient.from_info(info)
    shown = admin.json("GET", f"/admin/sellers/{seller}")
    assert shown["seller_key"] == stack_seller_key(info, seller)
    [record] = [r for r in audit_records(info, stack_seller_key(info, seller)) if r["type"] == "access"]
    assert (record["type"], record["outcome"], record["principal_arn"]) == ("access", "done", LOCAL_ADMIN_ARN)
    assert seller not in json.dumps(record, default=str)


# --- a /connect flood (a stack of its own, /connect tightly throttled) ----------------------------------


@pytest.fixture(scope="module")
def flooded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("throttled")
    template = load_template(REPO)
    [stage] = [r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    settings = stage["Properties"]["RouteSettings"]
    # The local stage's own limits never throttle the tests; only /connect is tightened here.
    assert {"ANY /connect", "ANY /callback", "ANY /done", "GET /admin/sellers/{seller_id}"} <= set(settings)
    settings["ANY /connect"] = {"ThrottlingRateLimit": CONNECT_RATE, "ThrottlingBurstLimit": CONNECT_BURST}
    (root / "template.json").write_text(json.dumps(template))
    with serving(root / "stderr.log", ("--template", str(root / "template.json"))) as started:
        yield started


def test_a_connect_flood_gets_429_while_callback_done_and_admin_answer(flooded: Serve) -> None:
    api = flooded.info["api"]
    started = time.monotonic()
    answers = [requests.get(f"{api}/connect", params={"marketplace": "US"}, allow_redirects=False, timeout=TIMEOUT)
               for _ in range(FLOOD)]
    elapsed = time.monotonic() - started
    statuses = [answer.status_code for answer in answers]
    # The bucket starts full: the first requests go to Amazon's consent page, then it runs dry.
    assert statuses[:CONNECT_BURST] == [302] * CONNECT_BURST, statuses
    assert set(statuses) == {302, 429}, statuses
    assert statuses.count(302) <= CONNECT_BURST + int(CONNECT_RATE * elapsed) + 1, (statuses, elapsed)
    for answer in answers:
        if answer.status_code == 429:
            assert answer.json() == {"message": "Too Many Requests"}
            assert "set-cookie" not in answer.headers  # the function never ran: no state, no cookie

    # /connect is still dry, and every other route has its own tokens.
    assert requests.get(f"{api}/connect", timeout=TIMEOUT).status_code == 429
    callback = requests.get(f"{api}/callback", allow_redirects=False, timeout=TIMEOUT)
    assert callback.status_code not in (429, 500), callback.status_code  # the handler's own answer
    assert requests.get(f"{api}/done", params={"outcome": "pending"}, timeout=TIMEOUT).status_code == 200
    admin = AdminClient.from_info(flooded.info)
    unknown = new_seller()
    assert admin.call("GET", f"/admin/sellers/{unknown}").status_code == 404  # answered: no such seller
    [record] = audit_records(flooded.info, stack_seller_key(flooded.info, unknown))
    assert (record["outcome"], record["principal_arn"]) == ("unknown_seller", LOCAL_ADMIN_ARN)
    assert "429 (route ANY /connect throttled)" in flooded.stderr()
