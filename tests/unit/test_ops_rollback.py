"""`ops rollback` against moto in-process: Lambda versions and aliases, and the stack's last deployment time."""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops.api import OpsError
from ops.fleet import Fleet, Resource
from ops.rollback import plan, run

REGION = "eu-west-1"
STACK = "SellerInsights-test"


def _code(body: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", body)
    return buffer.getvalue()


class Deployed:
    """Functions with published versions and a `live` alias, as CloudFormation leaves them."""

    def __init__(self) -> None:
        self.lam = boto3.client("lambda", region_name=REGION)
        self.role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    def create(self, name: str) -> None:
        self.lam.create_function(FunctionName=name, Runtime="python3.13", Role=self.role, Handler="handler.run",
                                 Code={"ZipFile": _code("v1")})
        version = self.lam.publish_version(FunctionName=name)["Version"]
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)

    def deploy(self, name: str, body: str) -> str:
        self.lam.update_function_code(FunctionName=name, ZipFile=_code(body))
        version = str(self.lam.publish_version(FunctionName=name)["Version"])
        self.lam.update_alias(FunctionName=name, Name="live", FunctionVersion=version)
        return version

    def live(self, name: str) -> str:
        return str(self.lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"])


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield Deployed()


def _fleet(*functions: str) -> Fleet:
    resources = [Resource(f"{name.title()}Function", "AWS::Lambda::Function", name) for name in functions]
    return Fleet(STACK, REGION, boto3.session.Session(region_name=REGION), resources)


def _stack_deployed_now() -> None:
    """The stack's last deployment starts now: versions published from here on are that deployment's."""
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=STACK, TemplateBody=json.dumps({"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}}}))


def _args(**given: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"function": None, "version": None, "dry_run": False, "json": True, **given})


def _run(fleet: Fleet, **given: Any) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(fleet, _args(**given), out, err)
    return code, json.loads(out.getvalue()), err.getvalue()


def test_rollback_moves_what_the_last_deployment_changed_back_one_version(deployed: Deployed) -> None:
    for name in ("si-report-fetcher", "si-token-refresher", "si-oauth-callback"):
        deployed.create(name)
    deployed.deploy("si-token-refresher", "v2")  # an earlier deployment: not the one rolled back
    _stack_deployed_now()
    assert deployed.deploy("si-report-fetcher", "v2") == "2"
    assert deployed.deploy("si-report-fetcher", "v3") == "3"  # published twice since: back to before both

    code, plan_, text = _run(_fleet("si-report-fetcher", "si-token-refresher", "si-oauth-callback"), dry_run=True)
    assert code == 0 and plan_["dry_run"] is True and plan_["moved"] == 1
    steps = {step["function"]: step for step in plan_["functions"]}
    assert steps["si-report-fetcher"] == {"function": "si-report-fetcher", "live": "3", "target": "1",
                                          "reason": "its version before the last deployment"}
    assert steps["si-token-refresher"]["target"] is None  # changed by an earlier deployment only
    assert steps["si-oauth-callback"]["target"] is None
    assert "would move 1 of 3" in text
    assert deployed.live("si-report-fetcher") == "3"  # a dry run changes nothing

    code, done, text = _run(_fleet("si-report-fetcher", "si-token-refresher", "si-oauth-callback"))
    assert code == 0 and done["moved"] == 1
    assert [deployed.live(n) for n in ("si-report-fetcher", "si-token-refresher", "si-oauth-callback")] == [
        "1", "2", "1"]
    assert "si-report-fetcher: 3 -> 1 (its version before the last deployment)" in text
    # Once rolled back, the live version is older than the deployment: a second run moves nothing.
    assert _run(_fleet("si-report-fetcher", "si-token-refresher", "si-oauth-callback"))[1]["moved"] == 0


def test_one_function_goes_to_the_version_asked_for(deployed: Deployed) -> None:
    deployed.create("SellerInsights-test-ReportsReportFetcherFunction96E4")
    deployed.create("SellerInsights-test-RetentionRetentionSweeperFunction6699")
    name = "SellerInsights-test-ReportsReportFetcherFunction96E4"
    deployed.deploy(name, "v2")
    deployed.deploy(name, "v3")
    _stack_deployed_now()
    fleet = _fleet(name, "SellerInsights-test-RetentionRetentionSweeperFunction6699")
    code, done, _ = _run(fleet, function="report_fetcher", version="1")
    assert code == 0 and done["functions"] == [{"function": name, "live": "3", "target": "1", "reason": "as asked"}]
    assert deployed.live(name) == "1"
    assert deployed.live("SellerInsights-test-RetentionRetentionSweeperFunction6699") == "1"
    with pytest.raises(OpsError, match="has no version 7") as missing:
        _run(fleet, function="report_fetcher", version="7")
    assert missing.value.exit_code == 2


def test_a_version_needs_a_function_and_a_function_must_be_one_of_the_stack(deployed: Deployed) -> None:
    deployed.create("si-report-fetcher")
    _stack_deployed_now()
    with pytest.raises(OpsError, match="--version names one function's version: give --function") as usage:
        _run(_fleet("si-report-fetcher"), version="1")
    assert usage.value.exit_code == 2
    with pytest.raises(OpsError, match="--function token_refresher matches 0 of the stack's 1 functions"):
        _run(_fleet("si-report-fetcher"), function="token_refresher")


def test_a_function_without_an_earlier_version_stays(deployed: Deployed) -> None:
    _stack_deployed_now()
    deployed.create("si-new-function")  # created by the last deployment: nothing to go back to
    step = plan(deployed.lam, "si-new-function",
                boto3.client("cloudformation", region_name=REGION).describe_stacks()["Stacks"][0]["CreationTime"])
    assert (step.target, step.reason) == (None, "no version from before the last deployment")


def test_the_local_stack_has_no_versions_to_roll_back(deployed: Deployed) -> None:
    fleet = _fleet("si-report-fetcher")
    fleet.local_api = "http://127.0.0.1:9"
    with pytest.raises(OpsError, match="rollback acts on a deployed stack") as error:
        _run(fleet)
    assert error.value.exit_code == 2
