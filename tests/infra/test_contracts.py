"""The template and the code agree: every function's environment satisfies its settings model, and
the tables the tests create in moto have the template's keys (docs/internal-contracts.md)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections import defaultdict
from typing import Any

from infra.app import function_environments
from seller_insights.settings import BaseSettings
from tests.infra.conftest import by_purpose
from tests.support.resources import TABLES

# What CloudFormation would put in place of each intrinsic: shaped like the real values.
FAKE_ATTRIBUTES = {
    "Arn": "arn:aws:service:us-east-1:123456789012:resource/{0}",
    "ApiEndpoint": "https://{0}.execute-api.us-east-1.amazonaws.com",
}


def resolve(value: Any) -> str:
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"ref-{value['Ref']}"
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        return FAKE_ATTRIBUTES[attribute].format(logical_id.lower())
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(resolve(part) for part in parts)
    raise AssertionError(f"unexpected intrinsic in a function environment: {value}")


def settings_class(handler: str) -> type[BaseSettings]:
    duty = handler.split(".", 1)[0]
    try:
        module = importlib.import_module(f"{duty}.settings")
    except ModuleNotFoundError as missing:
        # Fail loudly: a template function without its settings model is a broken contract.
        raise AssertionError(
            f"the template has a function {handler!r}, but functions/{duty}/settings.py "
            f"(module {duty}.settings) cannot be imported: {missing}"
        ) from missing
    classes = [obj for obj in vars(module).values()
               if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj is not BaseSettings]
    assert len(classes) == 1, f"{duty}.settings must define exactly one settings model"
    return classes[0]


def test_every_function_environment_satisfies_its_settings(raw: dict[str, Any]) -> None:
    environments = function_environments(raw)
    assert environments, "the template has no functions"
    for handler, variables in environments.items():
        environment = {name: resolve(value) for name, value in variables.items()}
        settings = settings_class(handler).from_env(environment)
        assert settings.stage == environment["STAGE"]
        assert settings.amazon_endpoint_override is None
        declared = {f.metadata.get("env") or f.name.upper() for f in dataclasses.fields(settings)}
        unused = set(environment) - declared - {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
                                                "LOG_LEVEL"}
        assert not unused, f"{handler} receives variables its settings never read: {sorted(unused)}"


def test_a_variable_two_functions_read_is_declared_once_in_a_mixin(raw: dict[str, Any]) -> None:
    declared_by: defaultdict[str, list[str]] = defaultdict(list)
    for handler in function_environments(raw):
        settings = settings_class(handler)
        for name in inspect.get_annotations(settings):
            declared_by[name].append(settings.__name__)
    shared = {name: classes for name, classes in declared_by.items() if len(classes) > 1}
    assert not shared, f"declare these once in a mixin of seller_insights.settings: {shared}"
    # The mixins are what the functions share: each is composed by two functions or more.
    composed = [base.__name__ for handler in function_environments(raw) for base in settings_class(handler).__mro__]
    assert {"ConnectionsTable", "AuditTable", "DataBucket", "TokenKey", "PurgeSchedule"} <= {
        name for name in composed if composed.count(name) > 1}


def test_test_tables_match_the_template(raw: dict[str, Any]) -> None:
    for purpose, spec in TABLES.items():
        _, table = by_purpose(raw, purpose)
        properties = table["Properties"]
        assert properties["KeySchema"] == spec["KeySchema"]
        assert sorted(properties["AttributeDefinitions"], key=str) == sorted(spec["AttributeDefinitions"], key=str)
        assert properties["TimeToLiveSpecification"] == {"AttributeName": spec["ttl"], "Enabled": True}
        template_indexes = sorted(properties.get("GlobalSecondaryIndexes", []), key=lambda index: index["IndexName"])
        test_indexes = sorted(spec.get("GlobalSecondaryIndexes", []), key=lambda index: index["IndexName"])
        assert template_indexes == test_indexes, purpose


def test_callback_exchange_fits_inside_the_function_timeout(raw: dict[str, Any]) -> None:
    from oauth_callback.handler import CALLBACK_LWA_POLICY

    timeouts = [f["Properties"]["Timeout"] for f in raw["Resources"].values()
                if f["Type"] == "AWS::Lambda::Function"
                and f["Properties"].get("Handler") == "oauth_callback.handler.lambda_handler"]
    assert len(timeouts) == 1
    # The retry loop stops when less than a second is left; one more connect may overrun the
    # deadline. Two seconds stay for Secrets Manager, KMS and DynamoDB.
    worst = CALLBACK_LWA_POLICY.deadline + CALLBACK_LWA_POLICY.connect_timeout + 2
    assert worst <= timeouts[0] < 29
