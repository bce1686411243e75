"""What the token refresher receives and reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seller_insights import fanout
from seller_insights.lwa_secret import NEW_SECRET_TYPE, SECRET_EXPIRY_TYPE, Notification

# Amazon's application notifications live in the shared layer (ops recover-secret reads them too).
__all__ = ["NEW_SECRET_TYPE", "SECRET_EXPIRY_TYPE", "DigestReport", "FindReport", "Notification", "RefreshReport"]


@dataclass(frozen=True)
class FindReport(fanout.FindReport):
    """One run of a token finder (refresh-tokens, verify-consents): what it found due and sent to the
    token_refresh queue, and the run's limit (the LWA bucket's capacity over the schedule's interval)."""

    limit: int = 0


@dataclass
class RefreshReport:
    """One token_refresh batch: what became of its work items."""

    refreshed: int = 0
    revoked: int = 0
    skipped: int = 0  # not active any more, or another caller holds the refresh lease
    not_due: int = 0  # renewed since it was found (idempotent: a read, no LWA call)
    failed: int = 0  # stays due: the next finder run sends it again
    deferred: int = 0  # the app-wide LWA bucket said wait, or the invocation ran short of time: stays due
    stopped: str | None = None  # why the batch ended early ("invalid_client", "lwa_rate", "time")

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class DigestReport:
    """The daily re-authorization digest: how many connections are due, and whether it was announced."""

    due: int = 0
    published: int = 0
    key: str | None = None  # the digest object in the data bucket (none when nothing is due)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))
