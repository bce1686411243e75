"""Incident response in the template: the secret-pattern metric filter on every log group and its alarm, the
saved Logs Insights query, and the ops role's grants for `ops incident` (named resources only)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from infra.constructs.incident_response import (
    LEAK_FILTER_PATTERN,
    LEAK_METRIC,
    LEAK_QUERY_REGEX,
    LEAK_SHAPES,
)
from seller_insights.redaction import redact
from tests.infra.conftest import by_purpose, resources
from tests.support.log_guard import DETECTORS

MFA = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}

# Lines a leak would write (made-up values with the real shapes), each caught by the test suite's log guard.
LEAKS = {
    "refresh token": '{"level":"INFO","message":"renewed with Atzr|IwEBIAbcdefGHIJKLmnopqrstuvWXYZ0123456789-_"}',
    "access token": "sending x-amz-access-token Atza|IQEBLjAsAhRabcdefghijklmnopqrstuvwxyz0123456789",
    "client secret": '{"message":"stored amzn1.oa2-cs.v1.3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c"}',
    "authorization code": "GET /callback?state=Zx81kLmNoPqRsTuV&selling_partner_id=A1B2C3&spapi_oauth_code=ANdKzzXYwv",
    "code in a URL": "redirect to https://seller-insights.example.com/callback?code=ANdKzzXYwvQ1&state=x",
    "presigned URL": ("fetching https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                      "ASIAEXAMPLE%2F20261201&X-Amz-Signature=9f3ab0c1d2e3f4a5b6c7d8e9f0a1b2c3"),
}
CLEAN = (
    '{"level":"INFO","message":"token refresh deferred","reason":"RefreshBlocked"}',
    '{"level":"INFO","message":"consent started","flow":"website","status_code":302}',
    "GET /connect?marketplace=US -> 302",
)


def _as_python(pattern: str) -> re.Pattern[str]:
    """CloudWatch's filter-pattern regex (between the % signs) as Python reads it (the same subset)."""
    assert pattern.startswith("%") and pattern.endswith("%") and pattern.count("%") == 2
    return re.compile(pattern[1:-1])


def test_the_filter_pattern_stays_in_cloudwatch_s_regex_dialect() -> None:
    body = LEAK_FILTER_PATTERN[1:-1]
    # Letters, digits, the supported symbols and operators; no groups, no quotes, no & or %.
    assert re.fullmatch(r"[A-Za-z0-9:_#=@/;,\-\^$?\[\]{}|\\*+.]+", body), body
    assert len(LEAK_FILTER_PATTERN) <= 1024


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_every_leak_is_matched_and_its_redacted_line_is_not(name: str) -> None:
    line = LEAKS[name]
    assert any(detector.search(line) for detector in DETECTORS.values()), "not a leak by the log guard's rules"
    scrubbed = redact(line)
    assert scrubbed != line
    for regex in (_as_python(LEAK_FILTER_PATTERN), re.compile(LEAK_QUERY_REGEX.replace(r"\/", "/"))):
        assert regex.search(line), (name, regex.pattern[:40])
        assert not regex.search(scrubbed), (name, scrubbed)


def test_ordinary_lines_do_not_match() -> None:
    for line in CLEAN:
        assert not _as_python(LEAK_FILTER_PATTERN).search(line), line
        assert not re.search(LEAK_QUERY_REGEX.replace(r"\/", "/"), line), line


def test_the_query_finds_what_the_metric_filter_cannot() -> None:
    query = re.compile(LEAK_QUERY_REGEX.replace(r"\/", "/"))
    json_code = '{"message":"exchange failed","code": "ANdKzzXYwvQ1"}'
    encoded = "GET /x?refresh_token=Atzr%7CIwEBIAbcdefGHIJKLmnopqrstuvWXYZ0123"
    for line in (json_code, encoded):
        assert not _as_python(LEAK_FILTER_PATTERN).search(line), line
        assert query.search(line), line
        assert not query.search(redact(line)), line
    # JSON inside a JSON string (escaped quotes): redaction scrubs it, and the query would find it otherwise.
    nested = r'{"message":"exchange failed","detail":"{\"code\": \"ANdKzzXYwvQ1\"}"}'
    assert query.search(nested)
    assert not query.search(redact(nested))


def test_every_log_group_has_the_secret_pattern_filter(raw: dict[str, Any]) -> None:
    groups = resources(raw, "AWS::Logs::LogGroup")
    filters = [f["Properties"] for f in resources(raw, "AWS::Logs::MetricFilter").values()
               if f["Properties"]["FilterPattern"] == LEAK_FILTER_PATTERN]
    assert sorted(f["LogGroupName"]["Ref"] for f in filters) == sorted(groups)
    assert len(groups) >= 7  # six functions and the API's access logs
    for metric_filter in filters:
        (transformation,) = metric_filter["MetricTransformations"]
        assert transformation == {"MetricNamespace": "SellerInsights", "MetricName": LEAK_METRIC,
                                  "MetricValue": "1"}
    assert len(LEAK_SHAPES) == LEAK_FILTER_PATTERN.count("|") - LEAK_FILTER_PATTERN.count(r"\|") + 1


def test_any_secret_in_a_log_alarms(raw: dict[str, Any]) -> None:
    topic_id, _ = by_purpose(raw, "alarms")
    (alarm,) = [a["Properties"] for a in resources(raw, "AWS::CloudWatch::Alarm").values()
                if a["Properties"].get("MetricName") == LEAK_METRIC]
    assert (alarm["Namespace"], alarm["Statistic"], alarm["Period"]) == ("SellerInsights", "Sum", 300)
    assert "Dimensions" not in alarm
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["EvaluationPeriods"]) == (
        "GreaterThanThreshold", 0, 1)
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    assert "docs/incident-response.md" in alarm["AlarmDescription"]


def test_the_saved_query_covers_every_log_group_and_shows_no_message(raw: dict[str, Any]) -> None:
    (query,) = [q["Properties"] for q in resources(raw, "AWS::Logs::QueryDefinition").values()
                if q["Properties"]["Name"].endswith("/incident/secret-patterns-in-logs")]
    assert sorted(g["Ref"] for g in query["LogGroupNames"]) == sorted(resources(raw, "AWS::Logs::LogGroup"))
    text = query["QueryString"]
    assert text.startswith("fields @timestamp, @log, @logStream\n")
    assert f"filter @message like /{LEAK_QUERY_REGEX}/" in text
    assert "display" not in text and "fields @message" not in text


def _ops_statements(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    role_id = raw["Outputs"]["OpsSupportRoleArn"]["Value"]["Fn::GetAtt"][0]
    # CDK moves what does not fit the inline policy's size limit into customer-managed "overflow" policies.
    policies = [*resources(raw, "AWS::IAM::Policy").values(), *resources(raw, "AWS::IAM::ManagedPolicy").values()]
    return {s["Sid"]: s for policy in policies
            if {"Ref": role_id} in policy["Properties"].get("Roles", [])
            for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid", "").startswith("Incident")}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_ops_incident_grants_name_their_resources(raw: dict[str, Any]) -> None:
    statements = _ops_statements(raw)
    connections, _ = by_purpose(raw, "connections")
    audit, _ = by_purpose(raw, "audit")
    key, _ = by_purpose(raw, "token_key")
    refresher, _ = by_purpose(raw, "token_refresher")
    assert raw["Resources"][refresher]["Type"] == "AWS::Lambda::Function"
    expected = {
        "IncidentSwitchAndTokenCache": [{"Fn::GetAtt": [connections, "Arn"]}],
        "IncidentAuditRecords": [{"Fn::GetAtt": [audit, "Arn"]}],
        "IncidentTablesKeyViaDynamoDB": [{"Fn::GetAtt": [key, "Arn"]}],
        "IncidentSecretRotation": [{"Fn::GetAtt": [refresher, "Arn"]}],
    }
    for sid, resource in expected.items():
        assert _as_list(statements[sid]["Resource"]) == resource, sid
    rules = resources(raw, "AWS::Events::Rule")
    schedules = {rule_id for rule_id, rule in rules.items() if "ScheduleExpression" in rule["Properties"]}
    assert len(schedules) >= 6
    assert {r["Fn::GetAtt"][0] for r in _as_list(statements["IncidentSchedules"]["Resource"])} == schedules
    assert {r["Fn::GetAtt"][0] for r in _as_list(statements["IncidentFindSchedules"]["Resource"])} == set(rules)
    for statement in statements.values():
        assert statement["Effect"] == "Allow"
        assert statement["Condition"]["Bool"] == MFA["Bool"]
    # The key only through DynamoDB: what the Scan returns sealed stays sealed.
    via = statements["IncidentTablesKeyViaDynamoDB"]["Condition"]["StringEquals"]["kms:ViaService"]
    assert via == {"Fn::Join": ["", ["dynamodb.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
