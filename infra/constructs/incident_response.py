"""Incident response (docs/incident-response.md): the detection of secrets in logs, and what the ops role
needs for `ops incident contain|restore|revoke-all|affected`.

Detection: a metric filter on every log group of the stack (the functions' and the API's access logs)
counts each log event with the shape of a secret (LWA tokens and client secrets, OAuth codes and states in
a URL, presigned-URL signatures) into one metric, SecretPatternInLogs, which alarms on any count. The
redaction layer scrubs these before they are written (seller_insights.redaction), so any hit is a leak:
an incident. Metric filters see every event as it arrives (no scheduled scan to wait for, no Logs
Insights charge per GB scanned); their regex dialect is limited (no parentheses, no quotes, no `&` or
`%`, at most 2 regexes per filter and 5 per log group), so a saved Logs Insights query with the test
suite's full detectors (tests/support/log_guard.py) goes further on demand: JSON-quoted codes, URL-encoded
tokens. It shows where a hit is (time, log group, stream), never the line itself.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs import tag_purpose
from infra.constructs.data_stores import TABLE_KEY_ACTIONS, DataStores
from infra.constructs.operators import Operators
from infra.constructs.service_function import METRICS_NAMESPACE, ServiceFunction

LEAK_METRIC = "SecretPatternInLogs"
# CloudWatch Logs filter-pattern regex (one regex, alternatives separated by |; the dialect has no groups):
# a secret's shape followed by characters the redacted form ("[REDACTED]") never has.
LEAK_SHAPES = (
    r"Atz[ar]\|[A-Za-z0-9_=/+.-]{20}",  # LWA refresh (Atzr|) and access (Atza|) tokens
    r"Atc\|[A-Za-z0-9_=/+.-]{20}",  # LWA grantless tokens
    r"amzn1\.oa2-cs\.v1\.[0-9A-Za-z]{20}",  # LWA client secrets
    r"spapi_oauth_code=[A-Za-z0-9]",  # authorization codes in a callback URL
    r"\?code=[A-Za-z0-9]{4}",
    r"amazon_state=[A-Za-z0-9]",
    r"\?state=[A-Za-z0-9_-]{4}",
    r"X-Amz-Signature=[0-9a-f]",  # presigned URLs (ours and Amazon's report documents)
    r"X-Amz-Credential=[A-Z0-9]",
    r"X-Amz-Security-Token=[A-Za-z0-9/+]",
)
LEAK_FILTER_PATTERN = "%" + "|".join(LEAK_SHAPES) + "%"
# The saved query's regex (Logs Insights: full RE2): the log guard's detectors, URL-encoded forms and JSON too.
LEAK_QUERY_REGEX = (
    r"Atz[ar](\||%7C)[A-Za-z0-9\-_=+\/.%]{20,}|Atc(\||%7C)[A-Za-z0-9\-_=+\/.%]{20,}"
    r"|amzn1\.oa2-cs\.v1\.[0-9A-Za-z]{20,}"
    r"|(spapi_oauth_code|amazon_state|[?&]code|[?&]state)=[^\[&\s\"']{4,}"
    r"|\\?\"(code|state|client_secret|[a-z]+_token)\\?\":\s*\\?\"[^\[\\\"]{4,}"
    r"|X-Amz-(Signature|Credential|Security-Token)=[^\[&\s]"
)
PERIOD = Duration.minutes(5)


class IncidentResponse(Construct):
    """Create it once every duty exists (it watches the stack's log groups as they are then)."""

    def __init__(self, scope: Construct, construct_id: str, *, stores: DataStores,
                 token_refresher: ServiceFunction) -> None:
        super().__init__(scope, construct_id)
        self._stores = stores
        self._token_refresher = token_refresher
        # `ops incident revoke-all` finds the function it asks to rotate the client secret by this tag.
        tag_purpose(token_refresher.function, "token_refresher")
        stack = Stack.of(self)
        self.log_groups = [group for group in stack.node.find_all() if isinstance(group, logs.LogGroup)]
        for group in self.log_groups:
            logs.MetricFilter(
                group,
                "SecretPatternFilter",
                log_group=group,
                filter_pattern=logs.FilterPattern.literal(LEAK_FILTER_PATTERN),
                metric_namespace=METRICS_NAMESPACE,
                metric_name=LEAK_METRIC,
                metric_value="1",
            )
        self.secret_pattern_metric = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE, metric_name=LEAK_METRIC, period=PERIOD, statistic=cloudwatch.Stats.SUM)
        self.query = logs.QueryDefinition(
            self,
            "SecretPatternsQuery",
            query_definition_name=f"{stack.stack_name}/incident/secret-patterns-in-logs",
            query_string=logs.QueryString(
                fields=["@timestamp", "@log", "@logStream"],
                filter_statements=[f"@message like /{LEAK_QUERY_REGEX}/"],
                sort="@timestamp desc",
                limit=1000,
            ),
            log_groups=self.log_groups,
        )

    def schedule_rules(self) -> list[events.Rule]:
        stack = Stack.of(self)
        return [rule for rule in stack.node.find_all()
                if isinstance(rule, events.Rule)
                and isinstance(rule.node.default_child, events.CfnRule)
                and rule.node.default_child.schedule_expression is not None]

    def allow_operators(self, operators: Operators) -> None:
        """What `ops incident` needs, on named resources only."""
        stores = self._stores
        operators.allow(
            "IncidentSwitchAndTokenCache",
            # The switch item (Get/Put/Delete), the cached access tokens (Scan for TOKEN#, BatchWrite
            # deletes), connections marked for re-authorization (Update) and `affected` (Scan).
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem",
             "dynamodb:BatchWriteItem", "dynamodb:Scan"],
            [stores.connections.table_arn],
        )
        operators.allow("IncidentAuditRecords", ["dynamodb:PutItem"], [stores.audit.table_arn])
        # The tables' key, through DynamoDB only: a sealed token read by the Scan stays sealed.
        operators.allow("IncidentTablesKeyViaDynamoDB", list(TABLE_KEY_ACTIONS), [stores.key.key_arn],
                        conditions={"StringEquals": {
                            "kms:ViaService": f"dynamodb.{Stack.of(self).region}.amazonaws.com"}})
        operators.allow("IncidentFindSchedules", ["events:DescribeRule"],
                        [rule.rule_arn for rule in Stack.of(self).node.find_all() if isinstance(rule, events.Rule)])
        operators.allow("IncidentSchedules", ["events:DisableRule", "events:EnableRule"],
                        [rule.rule_arn for rule in self.schedule_rules()])
        operators.allow("IncidentSecretRotation", ["lambda:InvokeFunction"],
                        [self._token_refresher.function.function_arn])
