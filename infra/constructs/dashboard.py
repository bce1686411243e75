"""What an operator looks at: one CloudWatch dashboard and the saved Logs Insights queries.

The dashboard reads top to bottom as the product works (consent, connections and tokens, reports, quotas,
data rights, dead letters, functions, API); each section starts with a text header that says what is
expected, so a glance tells normal from not. Metrics are the EMF counts of namespace SellerInsights
(dimension `service` = the duty) and the services' own; where the emitting duty may vary (a shared-layer
count, the fleet census' gauges), a SEARCH on the exact metric name graphs whatever emits it.

The saved queries live in the Logs Insights console under `{stack name}/...` (docs/runbook.md names them).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs import purpose_of
from infra.constructs.observability import every_function, every_queue
from infra.constructs.report_fetcher import LAG_ALARM_PERIODS, ReportFetcher
from infra.constructs.service_function import METRICS_NAMESPACE, ServiceFunction

PERIOD = Duration.minutes(5)
CENSUS_PERIOD = Duration.hours(1)  # the fleet census runs hourly (fleet-census)
FULL, HALF, THIRD = 24, 12, 8
HEIGHT = 6
# The oauth_callback's failure counts, one per reason (functions/oauth_callback/handler.py FAILURE_METRICS and
# UNEXPECTED_FAILURE_METRIC; tests/infra/test_observability.py keeps the two lists equal).
CONSENT_FAILURES = (
    "ConsentFailedUnknownMarketplace", "ConsentFailedAuthorizationCancelled", "ConsentFailedAlreadyConnected",
    "ConsentFailedDeletionPending", "ConsentFailedIdentityMismatch", "ConsentFailedIdentityUnconfirmed",
    "ConsentFailedConnectionInProgress", "ConsentFailedStateExpired", "ConsentFailedStateNotFound",
    "ConsentFailedBrowserMismatch", "ConsentFailedSellerMismatch", "ConsentFailedUntrustedCallbackUri",
    "ConsentFailedBadRequest", "ConsentFailedConsentError", "ConsentFailedIdentityNotProven",
    "ConsentFailedLwaInvalidGrant", "ConsentFailedLwaUnavailable", "ConsentFailedLwaInvalidClient",
    "ConsentFailedLwaRejected", "ConsentFailedLwaError", "ConsentFailedConfigurationError",
    "ConsentFailedSealedDataInvalid", "ConsentFailedKeyUnavailable", "ConsentFailedVaultError",
    "ConsentFailedClientError", "ConsentFailedBotoCoreError", "ConsentFailedUnexpected",
)
# A connection's statuses (seller_insights.repositories.ConnectionStatus), the census' `status` dimension.
CONNECTION_STATUSES = ("ACTIVE", "REVOKED", "TOKENS_REMOVED", "DELETION_REQUESTED")
# What the report fetcher counts per job outcome (functions/report_fetcher/service.py, data_kiosk.py).
REPORT_OUTCOMES = ("ReportsRequested", "QueriesRequested", "ReportsStored", "ReportsFatal", "ReportFailed",
                   "ReportJobsExpired", "ReportJobsParked", "ReportPermissionDenied")


class OperationsDashboard(Construct):
    """`{stack name}-operations`. Build it once the duties are composed: it walks every function and queue."""

    def __init__(self, scope: Construct, construct_id: str, *, reports: ReportFetcher,
                 consent_api: apigwv2.HttpApi) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{stack.stack_name}-operations",
            default_interval=Duration.days(1),
        )
        self.dashboard.add_widgets(_header(
            "# Seller Insights operations",
            "Alarms: `docs/runbook.md` (one section per alarm). Logs: the saved queries under "
            f"`{stack.stack_name}/` in Logs Insights. Fleet: `ops status`. One seller: `ops seller-key SELLER_ID`, "
            "then the saved query `seller-story`."))
        self._consent()
        self._connections()
        self._reports(reports)
        self._quotas()
        self._data_rights()
        self._dead_letters()
        self._functions()
        self._api(consent_api)

    def _section(self, title: str, expected: str, *rows: list[cloudwatch.IWidget]) -> None:
        self.dashboard.add_widgets(_header(f"## {title}", expected))
        for row in rows:
            self.dashboard.add_widgets(*row)

    def _consent(self) -> None:
        self._section(
            "Consent funnel",
            "Expected: completed close to started (a seller may leave half-way). Failures: most are the "
            "seller's (cancelled, state expired); `LwaInvalidClient`, `ConfigurationError`, `VaultError` and "
            "`Unexpected` are ours: expected 0.",
            [_graph("Consents started and completed", [_count(n, "oauth_callback") for n in
                                                      ("ConsentStarted", "ConsentCompleted")], HALF),
             _graph("Consent failures by reason", [_count(n, "oauth_callback", label=n.removeprefix("ConsentFailed"))
                                                   for n in CONSENT_FAILURES], HALF, stacked=True)],
        )

    def _connections(self) -> None:
        by_status = [
            cloudwatch.MathExpression(
                expression=f"SUM(SEARCH('{{{METRICS_NAMESPACE},region,service,status}} "
                           f"MetricName=\"FleetConnections\" status=\"{status}\"', 'Maximum', 3600))",
                using_metrics={}, label=status, period=CENSUS_PERIOD)
            for status in CONNECTION_STATUSES
        ]
        self._section(
            "Connections and tokens",
            "Connections by status from the hourly fleet census (all regions). Refreshes: a steady rate "
            "(every active connection about hourly); revocations: rare. `TokenRefreshFailed`: expected 0.",
            [_graph("Connections by status (fleet census)", by_status, THIRD),
             _graph("Token refreshes", [_search("AccessTokenRefreshed", "Sum"),
                                        _count("TokenRefreshesSent", "token_refresher"),
                                        _count("TokenRefreshFailed", "token_refresher")], THIRD),
             _graph("Revocations", [_search("ConnectionsRevoked", "Sum")], THIRD)],
        )

    def _reports(self, reports: ReportFetcher) -> None:
        lag = [metric.with_(label=report_type, statistic=cloudwatch.Stats.MAXIMUM)
               for report_type, metric in reports.lag_metrics.items()]
        self._section(
            "Reports",
            "Jobs by outcome: stored follows requested; `ReportsFatal` and `ReportFailed` rare. Worst lag per "
            f"report type, in periods of its cadence: expected 0-1, the alarm is above {LAG_ALARM_PERIODS}. "
            "Heartbeats: one `SweepCompleted` per schedule run.",
            [_graph("Report jobs by outcome", [_count(n, "report_fetcher") for n in REPORT_OUTCOMES], HALF),
             _graph("Worst lag per report type (periods)", lag, HALF,
                    annotation=(LAG_ALARM_PERIODS, "lag alarm"))],
            [_graph("Schedule heartbeats (SweepCompleted per run)",
                    [cloudwatch.SearchExpression(
                        expression=f"SEARCH('{{{METRICS_NAMESPACE},service,sweep}} MetricName=\"SweepCompleted\"', "
                                   "'Sum', 300)", label="", period=PERIOD)], FULL)],
        )

    def _quotas(self) -> None:
        self._section(
            "Quota waits and throttled calls: expected 0",
            "Amazon's 429s on report calls (`ReportsThrottled`) and our own LWA refresh bucket saying wait "
            "(`LwaRefreshRateLimited`): expected 0. A steady count means the quota buckets are set above "
            "Amazon's rates (cdk.json) or the fleet outgrew them.",
            [_graph("Throttled calls and quota waits", [_count("ReportsThrottled", "report_fetcher"),
                                                        _count("LwaRefreshRateLimited", "token_refresher")], FULL)],
        )

    def _data_rights(self) -> None:
        self._section(
            "Deletions",
            "Pending deletions (fleet census) go down as purges run daily; `PurgeFailed`: expected 0.",
            [_graph("Deletions pending and due this week (fleet census)",
                    [_search("FleetDeletionsPending", "Maximum", CENSUS_PERIOD),
                     _search("FleetPurgesDueThisWeek", "Maximum", CENSUS_PERIOD)], HALF),
             _graph("Sellers purged", [_count("SellersPurged", "retention_sweeper"),
                                       _count("PurgeFailed", "retention_sweeper")], HALF)],
        )

    def _dead_letters(self) -> None:
        depths = [queue.metric_approximate_number_of_messages_visible(
                      period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM, label=purpose_of(queue) or queue.node.path)
                  for queue in every_queue(self) if (purpose_of(queue) or "").endswith("_dlq")]
        self._section(
            "Dead letters: expected 0",
            "Messages given up on, per dead-letter queue. Look with the saved query `failures-by-reason`; "
            "send them back with `ops redrive QUEUE` (the notifications DLQ may carry a new client secret: "
            "`ops recover-secret`).",
            [_graph("Dead-letter queue depths", depths, FULL)],
        )

    def _functions(self) -> None:
        functions = every_function(self)

        def per_function(metric: str, statistic: str) -> list[cloudwatch.IMetric]:
            return [service.function.metric(metric, period=PERIOD, statistic=statistic, label=service.duty)
                    for service in functions]

        self._section(
            "Functions",
            "Errors and throttles per function: expected 0. Duration p95: well under each function's timeout.",
            [_graph("Errors", per_function("Errors", cloudwatch.Stats.SUM), THIRD),
             _graph("Throttles", per_function("Throttles", cloudwatch.Stats.SUM), THIRD),
             _graph("Duration p95 (ms)", per_function("Duration", cloudwatch.Stats.p(95)), THIRD)],
        )

    def _api(self, api: apigwv2.HttpApi) -> None:
        self._section(
            "API (consent pages and /admin)",
            "4xx: probes and sellers' stale links, some expected; 5xx: expected 0. Latency p95: well under a second.",
            [_graph("4xx and 5xx",
                    [api.metric_client_error(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="4xx"),
                     api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="5xx")], HALF),
             _graph("Latency p95 (ms)", [api.metric_latency(period=PERIOD, statistic=cloudwatch.Stats.p(95),
                                                            label="p95")], HALF)],
        )


class SavedQueries(Construct):
    """Logs Insights queries over every function's log group, saved as `{stack name}/{name}` (the functions
    log JSON: Powertools' `level`, `message`, `service`, `function_request_id`, plus the keys each adds, such
    as `seller_key`, `region`, `report_type`, `reason`, `error`)."""

    def __init__(self, scope: Construct, construct_id: str, *, refresher: ServiceFunction) -> None:
        super().__init__(scope, construct_id)
        every = [service.log_group for service in every_function(self)]
        self.queries: dict[str, logs.QueryDefinition] = {}
        # Why a line failed, whichever key says it (ours; Powertools' exception_name; Lambda's errorType).
        why = "coalesce(reason, error, exception_name, errorType, lwa_error, code, status)"
        self._save("seller-story", every, logs.QueryString(
            fields=["@timestamp", "service", "level", "message", "region", "report_type", "reason", "error"],
            # The opaque key only (`ops seller-key SELLER_ID` prints it): logs never carry a seller id.
            filter_statements=['seller_key = "SELLER_KEY"'],
            sort="@timestamp asc",
            limit=1000,
        ))
        self._save("failures-by-reason", every, logs.QueryString(
            fields=["service", "level", "message", f"{why} as why"],
            filter_statements=['level in ["WARNING", "ERROR", "CRITICAL"]'],
            stats_statements=["count(*) as failures, count_distinct(seller_key) as sellers by service, level, "
                              "message, why"],
            sort="failures desc",
            limit=100,
        ))
        self._save("token-refresh-failures", [refresher.log_group], logs.QueryString(
            fields=["@timestamp", "level", "message", "region", "seller_key", f"{why} as why"],
            filter_statements=['level in ["WARNING", "ERROR", "CRITICAL"]'],
            stats_statements=["count(*) as failures, count_distinct(seller_key) as sellers by bin(1h), message, why"],
            sort="failures desc",
            limit=200,
        ))
        self._save("throttles", every, logs.QueryString(
            fields=["@timestamp", "service", "message", "region", "report_type", f"{why} as why"],
            filter_statements=["message like /(?i)throttl|rate.?limit|quota|429/ or why like /(?i)throttl|429|rate/"],
            stats_statements=["count(*) as hits by bin(15m), service, message, why"],
            sort="hits desc",
            limit=200,
        ))
        self._save("one-invocation", every, logs.QueryString(
            fields=["@timestamp", "service", "level", "message", "seller_key", "region", "reason", "error"],
            # The request id of an invocation (Powertools' function_request_id; Lambda's own lines say requestId).
            filter_statements=['function_request_id = "REQUEST_ID" or requestId = "REQUEST_ID"'],
            sort="@timestamp asc",
            limit=1000,
        ))

    def _save(self, name: str, log_groups: list[logs.LogGroup], query: logs.QueryString) -> None:
        self.queries[name] = logs.QueryDefinition(
            self,
            "".join(part.capitalize() for part in name.split("-")),
            query_definition_name=f"{Stack.of(self).stack_name}/{name}",
            query_string=query,
            log_groups=list(log_groups),
        )


def _header(title: str, text: str) -> cloudwatch.TextWidget:
    return cloudwatch.TextWidget(markdown=f"{title}\n{text}", width=FULL, height=2)


def _graph(title: str, metrics: Sequence[cloudwatch.IMetric], width: int, *, stacked: bool = False,
           annotation: tuple[float, str] | None = None) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title,
        left=list(metrics),
        width=width,
        height=HEIGHT,
        stacked=stacked,
        left_annotations=[cloudwatch.HorizontalAnnotation(value=annotation[0], label=annotation[1])]
        if annotation else None,
    )


def _count(name: str, service: str, *, label: str | None = None) -> cloudwatch.Metric:
    return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name, dimensions_map={"service": service},
                             statistic=cloudwatch.Stats.SUM, period=PERIOD, label=label or name)


def _search(name: str, statistic: str, period: Duration = PERIOD) -> cloudwatch.SearchExpression:
    """Every series of the metric `name` whatever duty emits it (dimension `service` only)."""
    return cloudwatch.SearchExpression(
        expression=f"SEARCH('{{{METRICS_NAMESPACE},service}} MetricName=\"{name}\"', '{statistic}', "
                   f"{int(period.to_seconds())})",
        label=name, period=period)
