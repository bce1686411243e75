"""Consent verification: Amazon names the seller of each waiting consent, then it is promoted or destroyed
(seller_insights.candidates, seller_insights.identity).

The `verify-consents` schedule is a finder (VerificationFinder): it pages the sparse index (no Scan, shards
in rotating order, bounded) and sends `{"consent_verification": [{seller_id, region, candidate_id}]}` work
items to the token_refresh queue; the same function consumes them (VerificationWork).

Per work item: read the candidate again (gone or not due any more: skipped, so an item sent twice costs a
read), take a token from the app-wide LWA bucket (empty: the item and the rest of the batch stay due for the
next finder run), take it for one attempt (a lease, so two runs never work on
one), open its refresh token, ask LWA for an access token, ask Amazon whose it is, then:
- the seller it names is the seller the consent named: the candidate becomes the connection's token in one
  transaction (a first connection, a renewal, or the return of a revoked one); a seller that asked for
  deletion meanwhile keeps its pending deletion and the candidate goes;
- another seller: the candidate is destroyed, the existing connection untouched; an audit record and the
  alarmed metric ConsentIdentityMismatch;
- no answer (LWA or SP-API throttled, down, refusing): tried again later with a growing delay, until the
  candidate's deadline; past it the candidate is destroyed (ConsentVerificationExpired, alarmed);
- LWA says invalid_grant: the seller removed the app again; the candidate is destroyed.
Nothing is cached: the access token used here lives in memory for this check only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from seller_insights import clock
from seller_insights.candidates import Candidate, CandidateRepository, PromotionOutcome
from seller_insights.data_rights import AuditLog, AuditOutcome, AuditType, default_marketplace_ids
from seller_insights.errors import (
    IdentityNotProven,
    LwaInvalidClient,
    LwaInvalidGrant,
    LwaRejected,
    LwaUnavailable,
    VaultError,
)
from seller_insights.fanout import WorkQueue, rotating_shards
from seller_insights.identity import SellerIdentity, probe_marketplace
from seller_insights.lwa import LwaClient
from seller_insights.observability import get_logger, get_metrics
from seller_insights.pseudonyms import seller_key
from seller_insights.quotas import QuotaBuckets, Rate
from seller_insights.redaction import register_secret
from seller_insights.vault import Purpose, SecretContext, Vault
from token_refresher.marketplaces import ConsentMarketplaces
from token_refresher.models import FindReport
from token_refresher.service import LwaPace

# A run that dies mid-attempt leaves the candidate due again after this (longer than the function's timeout).
LEASE_SECONDS = 300
FIRST_RETRY_SECONDS = 60
MAX_RETRY_SECONDS = 900
# The verify-consents schedule's rate (infra/constructs/token_refresher.py SCHEDULES; a test keeps them equal).
VERIFY_INTERVAL_SECONDS = 60
# Work items of the token_refresh queue: {"consent_verification": [{"seller_id", "region", "candidate_id"}]}.
CONSENT_VERIFICATION_KIND = "consent_verification"
_PROMOTED = (PromotionOutcome.CONNECTED, PromotionOutcome.RENEWED, PromotionOutcome.REACTIVATED)


def count(name: str, value: float = 1) -> None:
    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


@dataclass
class VerificationReport:
    """One token_refresh batch's consent verifications."""

    verified: int = 0  # promoted: connected, renewed or reactivated
    mismatched: int = 0  # Amazon named another seller: destroyed
    expired: int = 0  # no answer before the deadline: destroyed
    revoked: int = 0  # LWA refused the candidate's token: destroyed
    deletion_pending: int = 0  # the seller asked for deletion meanwhile: destroyed
    deferred: int = 0  # no answer this time: tried again later
    skipped: int = 0  # gone, not due any more, or another run has it
    stopped: str | None = None  # why the batch ended early ("invalid_client", "lwa_rate", "time")
    left: int = 0  # items left due by the stop: the next finder run sends them again

    def as_dict(self) -> dict[str, object]:
        return dict(vars(self))


def verification_limit(rate: Rate) -> int:
    """Candidates one verify-consents run sends at most: the LWA bucket's rate over the schedule's interval
    plus its burst (each verification is one refresh_token grant)."""
    return int(rate.per_second * VERIFY_INTERVAL_SECONDS) + rate.burst


class VerificationFinder:
    """The verify-consents schedule: due candidates (index pages only) to the token_refresh queue."""

    def __init__(self, candidates: CandidateRepository, queue: WorkQueue, *, limit: int) -> None:
        self._candidates = candidates
        self._queue = queue
        self._limit = limit

    def run(self) -> FindReport:
        now = clock.epoch_seconds()
        due = list(self._candidates.due(now, shards=rotating_shards(now, VERIFY_INTERVAL_SECONDS), limit=self._limit))
        messages = self._queue.send({"seller_id": seller, "region": region, "candidate_id": candidate_id}
                                    for seller, region, candidate_id in due)
        return FindReport(found=len(due), messages=messages, limit=self._limit)


class ConsentVerification:
    def __init__(self, *, candidates: CandidateRepository, vault: Vault, lwa: LwaClient, identity: SellerIdentity,
                 audit: AuditLog, marketplaces: ConsentMarketplaces | None = None) -> None:
        """`marketplaces`: None keeps the marketplace the consent came from (no participations asked)."""
        self._candidates = candidates
        self._vault = vault
        self._lwa = lwa
        self._identity = identity
        self._audit = audit
        self._marketplaces = marketplaces

    def candidate(self, seller: str, region: str, candidate_id: str) -> Candidate | None:
        return self._candidates.get(seller, region, candidate_id)

    def verify(self, candidate: Candidate, report: VerificationReport) -> None:
        """One attempt (LwaInvalidClient propagates: nothing is decided then)."""
        now = clock.epoch_seconds()
        if now >= candidate.verify_by:
            if self._candidates.destroy(candidate):
                self._finish(candidate, AuditOutcome.EXPIRED, "ConsentVerificationExpired")
                report.expired += 1
            return
        taken = self._candidates.take(candidate, now=now, lease_seconds=LEASE_SECONDS)
        if taken is None:
            report.skipped += 1
            return
        context = SecretContext(Purpose.REFRESH_TOKEN, taken.seller_id, taken.region)
        try:
            refresh_token = self._vault.open(taken.sealed, context)
            register_secret(refresh_token)
            grant = self._lwa.refresh(refresh_token)
            register_secret(grant.access_token, grant.refresh_token)
            confirmed = self._identity.seller_of(grant.access_token, taken.region,
                                                 probe_marketplace(taken.marketplace, taken.region))
        except LwaInvalidGrant:
            if self._candidates.destroy(taken):
                self._finish(taken, AuditOutcome.REVOKED, "ConsentVerificationRevoked")
                report.revoked += 1
            return
        except (IdentityNotProven, LwaUnavailable, LwaRejected, VaultError) as exc:
            reason = exc.reason if isinstance(exc, IdentityNotProven) else type(exc).__name__
            self._defer(taken, reason)
            report.deferred += 1
            return
        if confirmed != taken.seller_id:
            if self._candidates.destroy(taken):
                self._finish(taken, AuditOutcome.IDENTITY_MISMATCH, "ConsentIdentityMismatch",
                             other_seller_key=seller_key(confirmed))
                get_logger().warning("a consent named another seller than Amazon does; it was destroyed",
                                     extra={"seller_key": seller_key(taken.seller_id), "region": taken.region})
                report.mismatched += 1
            return
        sealed = taken.sealed
        if grant.refresh_token and grant.refresh_token != refresh_token:  # LWA handed out a new one
            sealed = self._vault.seal(grant.refresh_token, context)
        # Amazon's participations (None: it did not say; the connected marketplace until the daily check).
        participating = (self._marketplaces.ask(grant.access_token, taken.seller_id, taken.region)
                         if self._marketplaces is not None else None)
        outcome = self._candidates.promote(taken, sealed, now=clock.now(), marketplace_ids=(
            default_marketplace_ids({"marketplace": taken.marketplace, "region": taken.region})
            if participating is None else participating))
        if participating is not None and self._marketplaces is not None and outcome in _PROMOTED:
            # A plan kept from before (a renewal) takes them too.
            self._marketplaces.record(taken.seller_id, taken.region, participating)
        self._promoted(taken, outcome, report)

    def _promoted(self, candidate: Candidate, outcome: PromotionOutcome, report: VerificationReport) -> None:
        if outcome is PromotionOutcome.CONFLICT:  # the connection changed under us: look again soon
            self._defer(candidate, "conflict", delay=1)
            report.deferred += 1
        elif outcome is PromotionOutcome.GONE:
            report.skipped += 1
        elif outcome is PromotionOutcome.DELETION_PENDING:
            self._finish(candidate, AuditOutcome.DELETION_PENDING, "ConsentDuringDeletion")
            report.deletion_pending += 1
        else:
            self._finish(candidate, AuditOutcome.DONE, "ConsentVerified", detail={outcome.value: 1})
            get_logger().info("consent confirmed by Amazon", extra={
                "seller_key": seller_key(candidate.seller_id), "region": candidate.region, "outcome": outcome.value,
                "waited_seconds": clock.epoch_seconds() - candidate.created_at})
            report.verified += 1

    def _defer(self, candidate: Candidate, reason: str, delay: int | None = None) -> None:
        if delay is None:
            delay = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, candidate.attempts - 1))
        due_at = min(clock.epoch_seconds() + delay, candidate.verify_by)
        self._candidates.defer(candidate, due_at=due_at, outcome=reason)
        count("ConsentVerificationDeferred")
        get_logger().warning("Amazon did not confirm a consent's seller yet; trying again later",
                             extra={"reason": reason, "region": candidate.region, "attempts": candidate.attempts})

    def _finish(self, candidate: Candidate, outcome: AuditOutcome, metric: str, *,
                other_seller_key: str | None = None, detail: dict[str, int] | None = None) -> None:
        count(metric)
        self._audit.record_request(
            request_id=f"consent-{candidate.candidate_id}", request_type=AuditType.CONSENT_VERIFICATION,
            seller_key=seller_key(candidate.seller_id),
            received_at=datetime.fromtimestamp(candidate.created_at, tz=UTC), completed_at=clock.now(),
            outcome=outcome, detail={"attempts": candidate.attempts, **(detail or {})},
            other_seller_key=other_seller_key)


class VerificationWork:
    """One invocation's consent_verification work items (its report counts that batch only)."""

    def __init__(self, verification: ConsentVerification, buckets: QuotaBuckets, lwa_rate: Rate,
                 remaining_millis: Callable[[], int], refresh_blocked: Callable[[], bool] | None = None) -> None:
        """`refresh_blocked`: the incident switch (seller_insights.app_gate); while it says so, no candidate's
        refresh token is opened and the batch stops (the candidates stay due)."""
        self._verification = verification
        self._refresh_blocked = refresh_blocked
        self._pace = LwaPace(buckets, lwa_rate, remaining_millis)
        self.report = VerificationReport()

    def check(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            if self.report.stopped is not None:
                self.report.left += 1
                continue
            self._check(str(item["seller_id"]), str(item["region"]), str(item["candidate_id"]))

    def _check(self, seller: str, region: str, candidate_id: str) -> None:
        candidate = self._verification.candidate(seller, region, candidate_id)
        if candidate is None or candidate.verify_due_at > clock.epoch_seconds():
            self.report.skipped += 1  # gone, or another run took it since it was found
            return
        if self._refresh_blocked is not None and self._refresh_blocked():
            self._stop("refresh_blocked")
            return
        refusal = self._pace.refusal()
        if refusal is not None:
            self._stop(refusal)
            return
        try:
            self._verification.verify(candidate, self.report)
        except LwaInvalidClient:
            # Our credentials, not the seller's: nothing is decided, the candidates wait for the next run.
            count("LwaInvalidClient")
            get_logger().error("LWA rejected our client credentials; consents cannot be confirmed")
            self._stop("invalid_client")

    def _stop(self, reason: str) -> None:
        self.report.stopped = reason
        self.report.left += 1
