"""The daily check of a connection's marketplaces (seller_insights.participations), before it is planned.

A due plan whose `participations_checked_at` is missing or a day old asks getMarketplaceParticipations
again, with the seller's cached access token (CachedTokensOnly, like every fetcher call) and within the
seller's bucket of the operation, and stores the answer on the plan (PlanRepository.record_participations).
A marketplace the seller left is then no longer planned; its stored reports stay until the seller's
deletion (nothing here deletes). One that joined is planned from this run on.

A check never fails the plan: Amazon not answering is counted (`ParticipationsFailed`, alarmed) and the
plan keeps its marketplaces; no fresh token yet or an empty bucket defers it without counting. Either way
the plan stays unchecked, so the connection's next plan (at most its shortest cadence later) asks again.
"""

from __future__ import annotations

from dataclasses import fields

from aws_lambda_powertools.metrics import MetricUnit

from seller_insights import clock
from seller_insights.errors import ParticipationsDeferred, TokenUnavailable
from seller_insights.observability import get_logger, get_metrics
from seller_insights.participations import CHECK_INTERVAL_SECONDS, ParticipationsReader
from seller_insights.pseudonyms import seller_key
from seller_insights.report_jobs import Plan, PlanRepository
from seller_insights.spapi import SpApiClient

FAILED_METRIC = "ParticipationsFailed"
CHANGED_METRIC = "ParticipationsChanged"
# Checks per plan run (one report_plans message, at most 10 connections, since planning fans out), each one
# SP-API call of up to the client's timeouts: the connections are checked a day after their last check, so
# they come due together (after a deployment, all at once); past this many, the rest are checked at their
# next plan, and a slow Amazon cannot hold the plan run up for long.
MAX_CHECKS_PER_RUN = 100


class ParticipationsRefresh:
    def __init__(self, *, sellers_api: SpApiClient, plans: PlanRepository, reader: ParticipationsReader,
                 max_checks: int = MAX_CHECKS_PER_RUN) -> None:
        """One per plan run. `sellers_api` sends the seller's cached access token."""
        self._sellers_api = sellers_api
        self._plans = plans
        self._reader = reader
        self._checks_left = max_checks

    def refresh(self, plan: Plan) -> None:
        """Check `plan`'s marketplaces if they are a day old; `plan` then holds what is stored. Never raises."""
        checked_at = plan.participations_checked_at
        now = clock.epoch_seconds()
        if checked_at is not None and now - checked_at < CHECK_INTERVAL_SECONDS:
            return
        log = {"seller_key": seller_key(plan.seller), "region": plan.region}
        if self._checks_left <= 0:
            get_logger().info("marketplace participations check deferred to the connection's next plan",
                              extra={**log, "reason": "run_budget"})
            return
        self._checks_left -= 1
        try:
            marketplace_ids = self._reader.read(self._sellers_api, plan.seller, plan.region)
            stored = self._plans.record_participations(plan.seller, plan.region, marketplace_ids, now)
        except (ParticipationsDeferred, TokenUnavailable) as exc:
            get_logger().info("marketplace participations check deferred to the connection's next plan",
                              extra={**log, "reason": type(exc).__name__})
            return
        except Exception as exc:
            get_metrics().add_metric(name=FAILED_METRIC, unit=MetricUnit.Count, value=1)
            get_logger().warning("marketplace participations check failed; tried again at the connection's next plan",
                                 extra={**log, "reason": getattr(exc, "reason", type(exc).__name__)})
            return
        if stored is None:  # the plan went away meanwhile (deletion requested, purged): nothing to plan
            return
        left = sorted(set(plan.marketplace_ids) - set(stored.marketplace_ids))
        joined = sorted(set(stored.marketplace_ids) - set(plan.marketplace_ids))
        if left or joined:
            get_metrics().add_metric(name=CHANGED_METRIC, unit=MetricUnit.Count, value=1)
            get_logger().info("a connection's marketplaces changed", extra={**log, "left": left, "joined": joined})
        # Every field as stored now (the version another writer checks included), for the plan to go on with.
        for name in (f.name for f in fields(stored)):
            setattr(plan, name, getattr(stored, name))
