"""The local IAM guard can fail: `python -m local serve --template` with the synthesized template, once
as synthesized and once with one grant cut (the retention sweeper's `exports/` statement), through the
same scenario: a seller connects, is exported, asks for deletion, and the sweep runs 31 days later.

With the real template the seller's last connection is purged, `exports/{seller_key}/` included, and
the receipt is written; without the grant the sweep fails on ListBucketVersions of `exports/` as AWS
would (AccessDenied), answers failed=1 on every run and writes no receipt.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.admin import AdminClient, finished_export
from local.template import load_template, referenced_id, resources
from tests.support.e2e import MONTH_AND_A_DAY, advance, connect, new_seller, receipts, sweep_retention, versions_left
from tests.support.local_stack import REPO, Serve, serving

pytestmark = pytest.mark.slow
EXPORTS = "/exports/*"


def sweeper_policy(template: dict[str, Any]) -> dict[str, Any]:
    (function,) = [f for _, f in resources(template, "AWS::Lambda::Function")
                   if f["Properties"]["Handler"] == "retention_sweeper.handler.lambda_handler"]
    role = referenced_id(function["Properties"]["Role"])
    (policy,) = [p for _, p in resources(template, "AWS::IAM::Policy")
                 if role in (referenced_id(r) for r in p["Properties"]["Roles"])]
    return dict(policy["Properties"]["PolicyDocument"])


def without_the_sweepers_exports_grant(template: dict[str, Any]) -> dict[str, Any]:
    """The template as it was before the fix: ListBucketVersions and the deletes on `sellers/` only."""
    cut = copy.deepcopy(template)
    removed = 0
    for statement in sweeper_policy(cut)["Statement"]:
        prefixes = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if isinstance(prefixes, list) and "exports/*" in prefixes:
            statement["Condition"]["StringLike"]["s3:prefix"] = [p for p in prefixes if p != "exports/*"]
            removed += 1
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        kept = [r for r in targets if EXPORTS not in json.dumps(r)]
        if len(kept) != len(targets):
            statement["Resource"] = kept
            removed += 1
    assert removed == 2, "the sweeper's exports grant is not where this test expects it"
    return cut


@pytest.fixture(scope="module", params=["as synthesized", "without the exports grant"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, bool]]:
    """A serve process of its own (it moves the clock by a month); True when the grant is cut."""
    template = load_template(REPO)
    cut = request.param != "as synthesized"
    if cut:
        template = without_the_sweepers_exports_grant(template)
    root = tmp_path_factory.mktemp("iam-guard")
    path: Path = root / "template.json"
    path.write_text(json.dumps(template))
    with serving(root / "stderr.log", ("--template", str(path)), denials_expected=cut) as started:
        yield started, cut


def test_the_last_purge_needs_the_exports_grant(stack: tuple[Serve, bool]) -> None:
    serve, cut = stack
    info = serve.info
    assert info["iam"] == "enforced"
    admin = AdminClient.from_info(info)
    seller = new_seller()
    connect(info, seller, "US")
    key = admin.json("GET", f"/admin/sellers/{seller}")["seller_key"]
    assert finished_export(admin, seller)["status"] == "DONE"  # the worker ran as its role, on a drain
    assert versions_left(info, f"exports/{key}/") == (1, 0)
    admin.json("POST", f"/admin/sellers/{seller}/deletion")
    advance(info, MONTH_AND_A_DAY)

    swept = sweep_retention(info)  # the finder, then its retention_purges message
    denial = "s3:ListBucketVersions on arn:aws:s3:::"
    if cut:
        assert (swept["found"], swept["handled"], swept["failed"]) == (1, 0, 1), swept
        assert receipts(info, key) == []
        assert versions_left(info, f"exports/{key}/") == (1, 0)
        assert "IAM denied" in serve.stderr() and denial in serve.stderr()
        # It would retry every day and fail every day: nothing changes by running again.
        again = sweep_retention(info)
        assert (again["handled"], again["failed"]) == (0, 1), again
        assert receipts(info, key) == []
    else:
        assert (swept["found"], swept["handled"], swept["failed"]) == (1, 1, 0), swept
        assert len(receipts(info, key)) == 1
        assert versions_left(info, f"exports/{key}/") == (0, 0)
        assert versions_left(info, f"sellers/{seller}/") == (0, 0)
        assert "IAM denied" not in serve.stderr()
