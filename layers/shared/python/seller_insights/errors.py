"""Typed errors. Callers branch on the type, never on message text.

Every error the product raises on purpose derives from `SellerInsightsError`. `response_status` is the
HTTP status our API answers when the error ends a request (None: the error never reaches a client as
such). It is not `http_status`, which some errors carry as the status an outside service answered.

Messages never carry secrets: no tokens, codes, state values, client secrets or URLs with queries.
"""

from __future__ import annotations

from typing import ClassVar


class SellerInsightsError(Exception):
    """Base of every error the product raises on purpose."""

    response_status: ClassVar[int | None] = None


class ConfigurationError(SellerInsightsError):
    """The function's environment or a stored setting is missing or wrong; an operator must act."""


# --- Login with Amazon ---------------------------------------------------------------------------


class LwaError(SellerInsightsError):
    """The LWA token endpoint refused or failed. `code` is LWA's `error` value (or ours)."""

    def __init__(self, code: str, http_status: int | None = None) -> None:
        self.code = code
        self.http_status = http_status
        super().__init__(f"LWA token request failed: {code} (HTTP {http_status})")


class LwaInvalidGrant(LwaError):
    """The code or refresh token is expired, used, revoked or unknown. Never retried."""


class LwaInvalidClient(LwaError):
    """Our client id or secret is wrong or expired. Not the seller's fault; an operator must act."""


class LwaRejected(LwaError):
    """Any other refusal (invalid_request, unauthorized_client, invalid_scope, access_denied...)."""


class LwaUnavailable(LwaError):
    """server_error, temporarily_unavailable, 5xx, timeouts: still failing after bounded retries."""


# --- Access tokens ---------------------------------------------------------------------------------


class ConnectionNotActive(SellerInsightsError):
    """The connection is missing or not ACTIVE (revoked, tokens removed, deletion requested)."""


class AuthorizationRevoked(SellerInsightsError):
    """LWA said invalid_grant for the refresh token: the connection is now REVOKED."""


class TokenUnavailable(SellerInsightsError):
    """Another caller held the refresh lease longer than we could wait; try again later."""


class RefreshBlocked(TokenUnavailable):
    """An incident containment blocks every use of refresh tokens (seller_insights.app_gate): nothing was
    opened or changed; the connection stays due and is renewed once the block is lifted."""


class SpApiFailure(SellerInsightsError):
    """An SP-API call did not succeed: the family of SpApiError (an error status) and SpApiUnreachable
    (no answer). `operation` names the API operation; `rate_limit` is Amazon's x-amzn-RateLimit-Limit
    (requests per second for this operation, None when the answer had none)."""

    def __init__(self, message: str, *, operation: str | None = None, rate_limit: float | None = None) -> None:
        self.operation = operation
        self.rate_limit = rate_limit
        super().__init__(message)


class SpApiError(SpApiFailure):
    """SP-API answered with an error status. Carries the status and Amazon's error code only."""

    def __init__(self, status: int, code: str | None, *, operation: str | None = None,
                 rate_limit: float | None = None) -> None:
        self.status = status
        self.code = code
        called = f"{operation} answered" if operation else "SP-API answered"
        super().__init__(f"{called} {status} ({code or 'no error code'})", operation=operation,
                         rate_limit=rate_limit)


class SpApiUnreachable(SpApiFailure):
    """No answer from SP-API: `reason` is "timeout" or "connection". Nothing is known to have happened."""

    def __init__(self, reason: str, *, operation: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"{operation or 'SP-API'} unreachable ({reason})", operation=operation)


class SubscriptionFailed(SpApiError):
    """A Notifications API call (destinations, subscriptions) answered a status the report pipeline
    cannot go on with."""


class RotationFailed(SpApiError):
    """rotateApplicationClientSecret answered something else than 204 or 429."""


class IdentityNotProven(SellerInsightsError):
    """Amazon did not name the seller of an authorization this time (`reason`: throttled,
    amazon_unavailable, timeout, connection, refused, rejected, no_seller_id). Nothing is assumed."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        self.reason = reason
        self.retryable = retryable
        super().__init__(f"Amazon did not confirm the seller of this authorization ({reason})")


# --- Vault ---------------------------------------------------------------------------------------


class VaultError(SellerInsightsError):
    """Encryption or decryption could not be done. The vault never falls back to plaintext."""


class SealedDataInvalid(VaultError):
    """A ciphertext does not open under this context: tampered, swapped between sellers, or corrupt."""


class KeyUnavailable(VaultError):
    """KMS refused (access denied, key disabled or pending deletion) or stayed unreachable."""


# --- Consent -------------------------------------------------------------------------------------


class ConsentError(SellerInsightsError):
    """A consent request that cannot go on. Each subclass maps to one page in the consent function."""


class BadRequest(ConsentError):
    """Malformed input: repeated, missing, oversized or ill-shaped parameters."""

    response_status = 400


class UnknownMarketplace(ConsentError):
    response_status = 400

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__("unknown marketplace code")


class UntrustedCallbackUri(ConsentError):
    """amazon_callback_uri is not https on an allowlisted Seller/Vendor Central host."""

    response_status = 400


class StateNotFound(ConsentError):
    """Never issued, already used, or already removed: the link cannot be used again."""

    response_status = 400


class StateExpired(ConsentError):
    """Issued more than the state lifetime ago."""

    response_status = 400


class BrowserMismatch(ConsentError):
    """The state belongs to another browser (missing or different binding cookie)."""

    response_status = 400


class SellerMismatch(ConsentError):
    """The callback names a different seller than the one Amazon named at the Log-in URI."""

    response_status = 400


class DeletionPending(ConsentError):
    """The seller asked for the deletion of its data: a consent stores nothing until that is done.
    Raised only once Amazon confirmed the seller, so the date is shown to that seller alone."""

    response_status = 409

    def __init__(self, purge_after: str) -> None:
        self.purge_after = purge_after
        super().__init__("a deletion request is pending for this seller")


class IdentityMismatch(ConsentError):
    """Amazon says the authorization belongs to another seller than the one the callback names."""

    response_status = 400


class IdentityUnconfirmed(ConsentError):
    """Amazon could not be asked who the authorization belongs to right now (see IdentityNotProven)."""

    response_status = 503


class AuthorizationCancelled(ConsentError):
    """Amazon returned error=... (the seller cancelled or Amazon refused)."""

    response_status = 400


class AlreadyConnected(ConsentError):
    """The same authorization code came back a second time after it was used successfully."""


class ConnectionInProgress(ConsentError):
    """The same authorization code is being exchanged by another request of this browser right now."""

    response_status = 409


# --- Report documents (report_stream) ------------------------------------------------------------


class ReportDocumentError(SellerInsightsError):
    """A report document could not be stored. Any multipart upload was aborted first."""


class DocumentDownloadFailed(ReportDocumentError):
    """The document URL answered an error status (403: expired or bad URL) or the connection failed.

    `reason` is "http" (see `http_status`), "connection" or "timeout". Fetch a fresh URL and retry.
    """

    def __init__(self, reason: str, http_status: int | None = None) -> None:
        self.reason = reason
        self.http_status = http_status
        super().__init__(f"report document download failed: {reason} (HTTP {http_status})")

    @property
    def url_expired(self) -> bool:
        return self.http_status == 403


class DocumentCorrupt(ReportDocumentError):
    """The body is not what it claims: a truncated or invalid gzip stream, or an absurdly long line."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"report document is corrupt: {reason}")


class StorageFailed(ReportDocumentError):
    """S3 refused or failed (`operation`, S3's error `code`); nothing partial is left behind."""

    def __init__(self, operation: str, code: str | None) -> None:
        self.operation = operation
        self.code = code
        super().__init__(f"S3 {operation} failed ({code or 'no error code'})")


# --- Data rights (deletion, rollback, token removal) ---------------------------------------------


class PendingDeletion(SellerInsightsError):
    """Base of the reasons a rollback of a deletion request cannot happen."""

    response_status = 409


class NoDeletionPending(PendingDeletion):
    """No connection of the seller is DELETION_REQUESTED."""


class PurgeDatePassed(PendingDeletion):
    """The purge date of a connection has passed: the sweep may already be deleting."""

    def __init__(self, purge_after: str) -> None:
        super().__init__(purge_after)
        self.purge_after = purge_after


class SellerGone(SellerInsightsError):
    """The seller has no connection any more (purged, or never confirmed): nothing of it may be written."""


class ConcurrentChange(SellerInsightsError):
    """The seller's connections changed while we worked on them (another request); retry."""

    response_status = 409


# --- Retention sweep -----------------------------------------------------------------------------


class PurgeIncomplete(SellerInsightsError):
    """Something could not be deleted (yet); the next sweep resumes. Messages hold counts and codes only."""


class PurgeOutOfTime(PurgeIncomplete):
    """The invocation runs short: what was deleted is recorded; the purge resumes when its message comes back."""


class ConnectionChanged(SellerInsightsError):
    """The connection left its purge state while the sweep worked on it (re-authorized, rolled back)."""


# --- Report pipeline -----------------------------------------------------------------------------


class PlanningFailed(SellerInsightsError):
    """SQS refused job messages of the plan; the cursors did not move, so the next run sends them again."""


class UnreadableWork(SellerInsightsError, ValueError):
    """A work queue's message that is not a list of work items of a kind its consumer knows."""


class FanOutFailed(SellerInsightsError):
    """SQS refused some work messages after every attempt; the items stay due and the next run sends them."""


# --- Application notifications (token refresher) -------------------------------------------------


class MalformedNotification(SellerInsightsError):
    """A message on the notifications queue that is not one of Amazon's application notifications."""


class RetryLater(SellerInsightsError):
    """Not now (rate limit, another worker on it): the message goes back to the queue."""


# --- Domain events -------------------------------------------------------------------------------


class EventPublishFailed(SellerInsightsError):
    """EventBridge refused some entries; the caller retries the whole step."""


# --- DynamoDB writes (seller_insights.dynamo) -------------------------------------------------------

# The cancellation code of a transaction action whose condition failed.
CONDITION_FAILED_REASON = "ConditionalCheckFailed"


class ExportSuperseded(SellerInsightsError):
    """A newer attempt holds the export request (or it ended): this attempt stops and aborts its upload."""


class ExportTooLarge(SellerInsightsError):
    """The export worker's invocation ran out of time before the archive was complete."""


class ConditionFailed(SellerInsightsError):
    """A conditional write did not apply: the item is not in the state the write expected."""


class TransactionCancelled(ConditionFailed):
    """A transaction did not apply because a condition of one of its actions failed.

    `reasons` holds one cancellation code per action, in order (None where that action was fine);
    only codes, never the items DynamoDB may quote."""

    def __init__(self, reasons: tuple[str | None, ...]) -> None:
        self.reasons = reasons
        super().__init__("a condition of the transaction failed")

    def failed(self, action: int) -> bool:
        """Whether the condition of the `action`-th action (from 0) is one that failed."""
        return action < len(self.reasons) and self.reasons[action] == CONDITION_FAILED_REASON


class UnprocessedRequests(SellerInsightsError):
    """DynamoDB still left part of a batch unprocessed after the bounded retries; a later run resumes."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        super().__init__(f"DynamoDB left requests unprocessed after {attempts} attempts")


# --- admin data requests (functions/data_requests) -------------------------------------------------


class RequestError(SellerInsightsError):
    """An admin data request we answer with `response_status` and `{"message": ...}`; the message says what
    to do next. `audit_outcome` is the AuditOutcome value (seller_insights.data_rights) its audit record says."""

    response_status: ClassVar[int] = 400
    audit_outcome: ClassVar[str] = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(RequestError):
    response_status = 400


class UnknownSeller(RequestError):
    response_status = 404
    audit_outcome = "unknown_seller"


class NotFound(RequestError):
    response_status = 404


class MethodNotAllowed(RequestError):
    response_status = 405

    def __init__(self, message: str, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(RequestError):
    response_status = 409


class NoIamIdentity(RequestError):
    """The event carries no IAM caller: the route is not behind IAM authorization as it must be."""

    response_status = 403
    audit_outcome = "forbidden"


class AuditNotRecorded(SellerInsightsError):
    """The audit table refused the request's record: no answer goes out without its record."""

    response_status: ClassVar[int] = 503


# --- marketplace participations (seller_insights.participations) ---------------------------------


class ParticipationsUnknown(SellerInsightsError):
    """Amazon did not say (throttled, 5xx, refused, unreachable, or an answer without a payload list).
    `reason` is one word for logs and metrics; nothing of the answer is kept."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"marketplace participations unknown ({reason})")


class ParticipationsDeferred(SellerInsightsError):
    """The seller's getMarketplaceParticipations bucket is empty: not asked, `wait_seconds` until a token."""

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        super().__init__(f"marketplace participations deferred {wait_seconds:.0f} s by the quota")
