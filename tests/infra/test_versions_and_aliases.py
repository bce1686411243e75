"""Function versions and the `live` alias: every trigger invokes the alias, so a rollback moves one pointer."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest

from infra.app import load_cdk_context
from infra.config import StageConfig
from infra.constructs.service_function import ServiceFunction
from local.gateway import routes_from
from local.scheduler import schedules
from local.template import invoked_function, referenced_id
from tests.infra.conftest import resources

pytestmark = pytest.mark.slow


def _aliases(raw: dict[str, Any]) -> dict[str, str]:
    """Alias logical id -> the function logical id it belongs to."""
    return {alias_id: str(referenced_id(alias["Properties"]["FunctionName"]))
            for alias_id, alias in resources(raw, "AWS::Lambda::Alias").items()}


def _named(value: Any) -> set[str]:
    """Every logical id a property value refers to, however CDK wrapped it (Ref, GetAtt, Join of a Split)."""
    if isinstance(value, dict):
        ref = referenced_id(value)
        found = {ref} if ref is not None else set()
        for item in value.values():
            found |= _named(item)
        return found
    if isinstance(value, list):
        return set().union(*(_named(item) for item in value)) if value else set()
    return set()


def test_every_function_has_one_live_alias_on_a_version_of_its_own(raw: dict[str, Any]) -> None:
    functions = set(resources(raw, "AWS::Lambda::Function"))
    versions = resources(raw, "AWS::Lambda::Version")
    aliases = resources(raw, "AWS::Lambda::Alias")
    assert sorted(_aliases(raw).values()) == sorted(functions)
    for alias in aliases.values():
        p = alias["Properties"]
        assert p["Name"] == "live"
        version_id, attribute = p["FunctionVersion"]["Fn::GetAtt"]
        assert attribute == "Version"
        assert referenced_id(versions[version_id]["Properties"]["FunctionName"]) == referenced_id(p["FunctionName"])
    # Old versions stay after a deployment, so there is something to roll back to.
    assert {version["DeletionPolicy"] for version in versions.values()} == {"Retain"}


def test_every_trigger_invokes_an_alias_never_the_bare_function(raw: dict[str, Any]) -> None:
    aliases = _aliases(raw)
    functions = set(resources(raw, "AWS::Lambda::Function"))
    triggers: dict[str, Any] = {}
    for mapping_id, mapping in resources(raw, "AWS::Lambda::EventSourceMapping").items():
        triggers[mapping_id] = mapping["Properties"]["FunctionName"]
    for permission_id, permission in resources(raw, "AWS::Lambda::Permission").items():
        triggers[permission_id] = permission["Properties"]["FunctionName"]
    for integration_id, integration in resources(raw, "AWS::ApiGatewayV2::Integration").items():
        triggers[integration_id] = integration["Properties"]["IntegrationUri"]
    for rule_id, rule in resources(raw, "AWS::Events::Rule").items():
        for n, target in enumerate(rule["Properties"].get("Targets", [])):
            if _named(target["Arn"]) & (functions | set(aliases)):
                triggers[f"{rule_id} target {n}"] = target["Arn"]
    for trigger_id, value in triggers.items():
        named = _named(value)
        assert named & set(aliases), f"{trigger_id} invokes no alias: {value}"
        assert not named & functions, f"{trigger_id} names the bare function: {value}"
    kinds = {kind: sum(1 for trigger_id in triggers if kind in trigger_id.lower()) for kind in ("source", "target")}
    # 7 SQS event sources and 6 schedules exist today; the assertion keeps the loop honest.
    assert kinds["source"] >= 7 and kinds["target"] >= 6, kinds


def test_the_local_stack_runs_the_function_behind_each_alias(raw: dict[str, Any]) -> None:
    """local/ reads the same template: each event source, schedule and route resolves to its function."""
    functions = set(resources(raw, "AWS::Lambda::Function"))
    aliases = _aliases(raw)
    for mapping_id, mapping in resources(raw, "AWS::Lambda::EventSourceMapping").items():
        alias_id = (_named(mapping["Properties"]["FunctionName"]) & set(aliases)).pop()
        assert invoked_function(raw, mapping["Properties"]["FunctionName"]) == aliases[alias_id], mapping_id
    function_schedules = [s for s in schedules(raw).values() if any(t.logical_id in functions for t in s.targets)]
    assert len(function_schedules) >= 6
    assert all(t.logical_id in functions for s in function_schedules for t in s.targets)
    routes = routes_from(raw)
    assert routes and {route.function_id for route in routes} <= functions
    assert len({route.function_id for route in routes}) == 2  # consent and data requests


def test_a_setting_added_after_the_function_still_publishes_a_new_version() -> None:
    """Settings such as queue URLs are added once the queue exists (add_environment); the version must
    follow them, or the alias would keep invoking the old configuration."""
    config = StageConfig.from_context("dev", load_cdk_context()["stages"])

    def version_ids(late: str | None) -> list[str]:
        app = cdk.App()
        stack = cdk.Stack(app, "Versions")
        function = ServiceFunction(stack, "Fn", duty="data_exports", config=config, description="versions")
        if late is not None:
            function.add_environment("LATE_SETTING", late)
        template = app.synth().get_stack_by_name("Versions").template
        return [key for key, value in template["Resources"].items() if value["Type"] == "AWS::Lambda::Version"]

    (none,), (one,), (two,), (again,) = version_ids(None), version_ids("1"), version_ids("2"), version_ids("2")
    assert len({none, one, two}) == 3
    assert again == two  # the same configuration is the same version: no new version without a change
