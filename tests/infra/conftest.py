"""Synthesized templates of the dev and prod stages, built once per session like the CLI does."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.app import build_app, stack_id
from local.template import dependencies

STAGES = ("dev", "prod")


def synthesize(app: cdk.App, stage: str) -> dict[str, Any]:
    # app.synth() runs the validation plugins: a nag finding without acknowledgement raises here.
    assembly = app.synth()
    template: dict[str, Any] = assembly.get_stack_by_name(stack_id(stage)).template
    return template


@pytest.fixture(scope="session")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, cdk.App]:
    """The apps `cdk synth` builds, one per stage (tests/infra/test_nag.py looks at their gate)."""
    return {stage: build_app(stage, outdir=str(tmp_path_factory.mktemp(f"cdk-{stage}"))) for stage in STAGES}


@pytest.fixture(scope="session")
def templates(apps: dict[str, cdk.App]) -> dict[str, dict[str, Any]]:
    return {stage: synthesize(app, stage) for stage, app in apps.items()}


@pytest.fixture(scope="session", params=STAGES)
def stage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def raw(templates: dict[str, dict[str, Any]], stage: str) -> dict[str, Any]:
    return templates[stage]


@pytest.fixture(scope="session")
def template(raw: dict[str, Any]) -> Template:
    return Template.from_json(raw)


def resources(raw: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in raw["Resources"].items() if value["Type"] == resource_type}


def by_purpose(raw: dict[str, Any], purpose: str) -> tuple[str, dict[str, Any]]:
    """The one resource tagged seller-insights:purpose=<purpose>."""
    found = [
        (key, value)
        for key, value in raw["Resources"].items()
        if {"Key": "seller-insights:purpose", "Value": purpose} in _tags(value)
    ]
    assert len(found) == 1, f"expected one resource for purpose {purpose!r}, got {[k for k, _ in found]}"
    return found[0]


def _tags(resource: dict[str, Any]) -> list[Any]:
    tags = resource.get("Properties", {}).get("Tags", [])
    if isinstance(tags, dict):  # a few resource types take a key/value map instead of a list
        return [{"Key": k, "Value": v} for k, v in tags.items()]
    return list(tags)


def alarm_at_first_count(raw: dict[str, Any], metric: str, service: str) -> dict[str, Any]:
    """The alarm on `metric` of `service`, checked to fire on any count in 5 minutes, to the alarm topic."""
    topic_id, _ = by_purpose(raw, "alarms")
    (alarm,) = [a["Properties"] for a in resources(raw, "AWS::CloudWatch::Alarm").values()
                if a["Properties"].get("MetricName") == metric]
    assert alarm["Namespace"] == "SellerInsights"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]
    assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 300)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    return alarm


def invokes(raw: dict[str, Any], value: Any, function_id: str) -> bool:
    """Whether a trigger's value (a rule target's Arn, an event source's FunctionName, a permission's
    FunctionName) invokes `function_id` through its `live` alias, as every trigger must
    (infra/constructs/service_function.py); CDK writes an event source's as a Join of the alias's name."""
    (alias_id,) = [alias_id for alias_id, alias in resources(raw, "AWS::Lambda::Alias").items()
                   if alias["Properties"]["FunctionName"] == {"Ref": function_id}]
    return dependencies(value) == {alias_id}
