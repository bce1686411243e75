"""The operator's view (issue 12, sections 1 and 2): the dashboard's sections and metrics, the saved Logs Insights
queries, heartbeat alarms that treat silence as breaching, OK actions and explicit names on every alarm,
Lambda and DynamoDB throttle alarms, TokenRefreshFailed only when sustained, and the composite PipelineDown."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.app import stack_id
from infra.constructs import report_fetcher, retention_sweeper, token_refresher
from infra.constructs.dashboard import CONNECTION_STATUSES, CONSENT_FAILURES
from tests.infra.conftest import by_purpose, resources

pytestmark = pytest.mark.slow

FUNCTION = "AWS::Lambda::Function"
ALARM = "AWS::CloudWatch::Alarm"
# Every schedule of the stack: (consumer duty, schedule name, its rate in seconds).
SCHEDULES = [("token_refresher", name, int(rate.to_seconds())) for name, rate, _ in token_refresher.SCHEDULES]
SCHEDULES += [("report_fetcher", name, int(rate.to_seconds())) for name, rate in report_fetcher.SCHEDULES]
SCHEDULES += [("retention_sweeper", retention_sweeper.SCHEDULE[0], int(retention_sweeper.SCHEDULE[1].to_seconds()))]


def _placeholder(part: Any) -> str:
    """A token of the body as a JSON-safe stand-in that names what it refers to."""
    if isinstance(part, str):
        return part
    if "Ref" in part:
        return f"<Ref:{part['Ref']}>"
    if "Fn::GetAtt" in part:
        return f"<GetAtt:{'.'.join(part['Fn::GetAtt'])}>"
    return "<token>"


@pytest.fixture(scope="module")
def body(raw: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = resources(raw, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == f"{stack_id(_stage(raw))}-operations"
    separator, parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"]
    text = separator.join(_placeholder(part) for part in parts)
    parsed: dict[str, Any] = json.loads(text)  # valid JSON once the references are resolved
    return parsed


def _stage(raw: dict[str, Any]) -> str:
    return "prod" if "prod" in raw["Description"] else "dev"


def _graphs(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["properties"]["title"]: w["properties"] for w in body["widgets"] if w["type"] == "metric"}


def _names(graph: dict[str, Any]) -> list[str]:
    """The metric names of a graph: plain metrics (a name after the namespace), and names searched for."""
    names = []
    for metric in graph["metrics"]:
        expression = metric[-1].get("expression") if isinstance(metric[-1], dict) else None
        if expression:
            names += re.findall(r'MetricName="(\w+)"', expression)
        else:
            names.append(metric[1])  # [namespace, name, dimension, value, ..., options]
    return names


def test_every_section_has_a_header_saying_what_is_expected(body: dict[str, Any]) -> None:
    headers = [w["properties"]["markdown"] for w in body["widgets"] if w["type"] == "text"]
    titles = [h.splitlines()[0] for h in headers]
    assert titles == ["# Seller Insights operations", "## Consent funnel", "## Connections and tokens", "## Reports",
                      "## Quota waits and throttled calls: expected 0", "## Deletions", "## Dead letters: expected 0",
                      "## Functions", "## API (consent pages and /admin)"]
    for header in headers[1:]:
        assert "xpected" in header, header
    assert all(w["width"] == 24 for w in body["widgets"] if w["type"] == "text")


def test_the_dashboard_graphs_the_products_counts(body: dict[str, Any]) -> None:
    graphs = _graphs(body)
    assert _names(graphs["Consents started and completed"]) == ["ConsentStarted", "ConsentCompleted"]
    assert _names(graphs["Consent failures by reason"]) == list(CONSENT_FAILURES)
    assert _names(graphs["Connections by status (fleet census)"]) == ["FleetConnections"] * len(CONNECTION_STATUSES)
    assert [m[-1]["label"] for m in graphs["Connections by status (fleet census)"]["metrics"]] == list(
        CONNECTION_STATUSES)
    assert _names(graphs["Token refreshes"]) == ["AccessTokenRefreshed", "TokenRefreshesSent", "TokenRefreshFailed"]
    assert _names(graphs["Revocations"]) == ["ConnectionsRevoked"]
    outcomes = _names(graphs["Report jobs by outcome"])
    assert {"ReportsStored", "ReportsFatal", "ReportFailed", "ReportJobsExpired"} <= set(outcomes)
    lag = graphs["Worst lag per report type (periods)"]
    assert {m[1] for m in lag["metrics"]} == {"ReportLagPeriods"}
    assert all(m[-1]["stat"] == "Maximum" for m in lag["metrics"])
    assert lag["annotations"]["horizontal"][0]["value"] == report_fetcher.LAG_ALARM_PERIODS
    assert _names(graphs["Schedule heartbeats (SweepCompleted per run)"]) == ["SweepCompleted"]
    assert _names(graphs["Throttled calls and quota waits"]) == ["ReportsThrottled", "LwaRefreshRateLimited"]
    assert _names(graphs["Deletions pending and due this week (fleet census)"]) == [
        "FleetDeletionsPending", "FleetPurgesDueThisWeek"]
    assert _names(graphs["Sellers purged"]) == ["SellersPurged", "PurgeFailed"]
    assert _names(graphs["4xx and 5xx"]) == ["4xx", "5xx"]
    assert _names(graphs["Latency p95 (ms)"]) == ["Latency"]


def test_connection_statuses_and_consent_failures_are_the_codes_lists() -> None:
    from oauth_callback.handler import FAILURE_METRICS, UNEXPECTED_FAILURE_METRIC
    from seller_insights.repositories import ConnectionStatus

    assert set(CONSENT_FAILURES) == {*FAILURE_METRICS.values(), UNEXPECTED_FAILURE_METRIC}
    assert len(CONSENT_FAILURES) == len(set(CONSENT_FAILURES))
    assert set(CONNECTION_STATUSES) == {status.value for status in ConnectionStatus}


def test_every_dead_letter_queue_and_every_function_is_graphed(raw: dict[str, Any], body: dict[str, Any]) -> None:
    graphs = _graphs(body)
    dead_letter_ids = {
        key for key, queue in resources(raw, "AWS::SQS::Queue").items()
        if any(t["Key"] == "seller-insights:purpose" and t["Value"].endswith("_dlq")
               for t in queue["Properties"]["Tags"])
    }
    depths = graphs["Dead-letter queue depths"]["metrics"]
    assert {m[1] for m in depths} == {"ApproximateNumberOfMessagesVisible"}
    assert {m[3].removeprefix("<GetAtt:").removesuffix(".QueueName>") for m in depths} == dead_letter_ids
    functions = set(resources(raw, FUNCTION))
    for title, metric, stat in (("Errors", "Errors", "Sum"), ("Throttles", "Throttles", "Sum"),
                                ("Duration p95 (ms)", "Duration", "p95")):
        graph = graphs[title]["metrics"]
        assert {m[1] for m in graph} == {metric}, title
        assert {m[-1]["stat"] for m in graph} == {stat}, title
        assert {m[3].removeprefix("<Ref:").removesuffix(">") for m in graph} == functions, title


def test_saved_queries_cover_every_function_and_find_a_seller_by_opaque_key(raw: dict[str, Any]) -> None:
    folder = stack_id(_stage(raw))
    # The incident scan's query lives in its own folder (tests/infra/test_incident_response.py).
    queries = {q["Properties"]["Name"]: q["Properties"]
               for q in resources(raw, "AWS::Logs::QueryDefinition").values()
               if not q["Properties"]["Name"].startswith(f"{folder}/incident/")}
    assert set(queries) == {f"{folder}/{name}" for name in ("seller-story", "failures-by-reason",
                                                            "token-refresh-failures", "throttles", "one-invocation")}
    log_groups = {
        fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for fn in resources(raw, FUNCTION).values()
    }
    for name, query in queries.items():
        groups = {group["Ref"] for group in query["LogGroupNames"]}
        if name.endswith("token-refresh-failures"):
            (refresher,) = [fn for fn in resources(raw, FUNCTION).values()
                            if fn["Properties"]["Handler"].startswith("token_refresher.")]
            assert groups == {refresher["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]}
        else:
            assert groups == log_groups, name
    story = queries[f"{folder}/seller-story"]["QueryString"]
    assert '| filter seller_key = "SELLER_KEY"' in story
    assert "seller_id" not in story  # logs carry the opaque key only
    assert "| sort @timestamp asc" in story
    failures = queries[f"{folder}/failures-by-reason"]["QueryString"]
    assert 'level in ["WARNING", "ERROR", "CRITICAL"]' in failures
    assert "stats count(*) as failures" in failures and "by service, level, message, why" in failures


def _alarms(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [a["Properties"] for a in resources(raw, ALARM).values()]


def test_a_heartbeat_per_schedule_alarms_on_two_silent_periods(raw: dict[str, Any]) -> None:
    beats = {a["Dimensions"][1]["Value"]: a for a in _alarms(raw) if a.get("MetricName") == "SweepCompleted"}
    # These schedules at least (another part's schedule, such as fleet-census, brings its own heartbeat).
    assert {sweep for _, sweep, _ in SCHEDULES} <= set(beats)
    for duty, sweep, period in SCHEDULES:
        alarm = beats[sweep]
        assert alarm["Dimensions"] == [{"Name": "service", "Value": duty}, {"Name": "sweep", "Value": sweep}]
        # Its schedule's period, at least 5 minutes (EMF arrives through the logs, late for a 1-minute period).
        assert alarm["Period"] == max(period, 300), sweep
    for sweep, alarm in beats.items():
        assert alarm["Namespace"] == "SellerInsights"
        assert alarm["Statistic"] == "Sum", sweep
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1), sweep
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (2, 2), sweep
        assert alarm["TreatMissingData"] == "breaching", sweep
        assert alarm["Period"] * alarm["EvaluationPeriods"] <= 7 * 86400  # CloudWatch's longest evaluation range


def test_every_alarm_is_named_and_notifies_when_it_fires_and_when_it_recovers(raw: dict[str, Any]) -> None:
    topic_id, _ = by_purpose(raw, "alarms")
    alarms = [a["Properties"] for t in (ALARM, "AWS::CloudWatch::CompositeAlarm") for a in resources(raw, t).values()]
    assert len(alarms) > 50
    prefix = f"{stack_id(_stage(raw))}-"
    names = [a.get("AlarmName") for a in alarms]
    assert all(isinstance(n, str) and n.startswith(prefix) for n in names)
    assert len(set(names)) == len(names)
    for alarm in alarms:
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], alarm["AlarmDescription"]
        assert alarm["OKActions"] == [{"Ref": topic_id}], alarm["AlarmDescription"]


def test_throttles_alarm_on_every_function_table_and_index(raw: dict[str, Any]) -> None:
    alarms = _alarms(raw)
    throttled = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms
                 if a.get("MetricName") == "Throttles" and a["Namespace"] == "AWS/Lambda"}
    assert throttled == set(resources(raw, FUNCTION))
    expected = set()
    for table_id, table in resources(raw, "AWS::DynamoDB::Table").items():
        expected.add((table_id, None))
        expected |= {(table_id, index["IndexName"]) for index in table["Properties"].get("GlobalSecondaryIndexes", [])}
    watched = set()
    for alarm in alarms:
        if "Metrics" not in alarm or "FILL(reads, 0)" not in json.dumps(alarm["Metrics"]):
            continue
        stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
        assert {s["Metric"]["MetricName"] for s in stats.values()} == {"ReadThrottleEvents", "WriteThrottleEvents"}
        dimensions = {d["Name"]: d["Value"] for d in stats["reads"]["Metric"]["Dimensions"]}
        watched.add((dimensions["TableName"]["Ref"], dimensions.get("GlobalSecondaryIndexName")))
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert watched == expected
    assert any(index for _, index in expected)  # the connections table's indexes are among them


def test_token_refresh_failures_page_only_when_they_persist_over_three_runs(raw: dict[str, Any]) -> None:
    (alarm,) = [a for a in _alarms(raw) if a.get("MetricName") == "TokenRefreshFailed"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "token_refresher"}]
    assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Sum", 300, 0)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    assert alarm["TreatMissingData"] == "notBreaching"


def test_pipeline_down_is_any_of_refresh_and_plan_silence_job_backlog_or_sustained_fetcher_errors(
        raw: dict[str, Any]) -> None:
    (composite,) = [c["Properties"] for c in resources(raw, "AWS::CloudWatch::CompositeAlarm").values()]
    assert composite["AlarmName"] == f"{stack_id(_stage(raw))}-PipelineDown"
    separator, parts = composite["AlarmRule"]["Fn::Join"]
    rule = separator.join(_placeholder(p) for p in parts)
    children = re.findall(r'ALARM\("<GetAtt:(\w+)\.Arn>"\)', rule)
    assert rule == "(" + " OR ".join(f'ALARM("<GetAtt:{c}.Arn>")' for c in children) + ")"
    by_id = {key: a["Properties"] for key, a in resources(raw, ALARM).items()}
    picked = [by_id[c] for c in children]
    assert [a.get("MetricName") for a in picked] == ["SweepCompleted", "SweepCompleted",
                                                    "ApproximateAgeOfOldestMessage", "Errors"]
    assert [a["Dimensions"][1]["Value"] for a in picked[:2]] == ["refresh-tokens", "plan-reports"]
    jobs_id, _ = by_purpose(raw, "report_jobs")
    assert picked[2]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [jobs_id, "QueueName"]}}]
    (fetcher,) = [key for key, fn in resources(raw, FUNCTION).items()
                  if fn["Properties"]["Handler"].startswith("report_fetcher.")]
    assert picked[3]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": fetcher}}]
    assert (picked[3]["EvaluationPeriods"], picked[3]["DatapointsToAlarm"]) == (3, 3)


def test_cfn_lint_accepts_the_dashboard_alarms_and_queries(raw: dict[str, Any], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from cfnlint.api import ManualArgs, lint

    monkeypatch.chdir(tmp_path)  # not the repository's .cfnlintrc, which names cdk.out's templates to lint

    ours = {key for key, r in raw["Resources"].items()
            if r["Type"] in ("AWS::CloudWatch::Dashboard", ALARM, "AWS::CloudWatch::CompositeAlarm",
                             "AWS::Logs::QueryDefinition")}
    findings = lint(json.dumps(raw), config=ManualArgs(regions=["us-east-1"], ignore_checks=["W3005"]))
    about_ours = [str(f) for f in findings if len(f.path) > 1 and f.path[1] in ours]
    assert about_ours == []
