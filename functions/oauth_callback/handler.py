"""Lambda entry for the consent routes (routes.py) on Powertools' HTTP API resolver.

The middleware `strict_request` checks the query string and cookies of every request, matched or not, before
any route runs; each error type has its own exception handler and page. The outer middleware `count_failures`
counts every failure once, under a metric name chosen in `FAILURE_METRICS`. Page texts are fixed; nothing
from the request is logged or shown.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from oauth_callback import pages, routes
from oauth_callback.models import ConsentRequest
from oauth_callback.pages import Link
from oauth_callback.service import BINDING_COOKIE, ConsentService, Redirect
from oauth_callback.settings import ConsentSettings
from seller_insights import aws
from seller_insights.app_gate import RETRY_AFTER_SECONDS, AppGate
from seller_insights.candidates import CandidateRepository
from seller_insights.containers import per_container
from seller_insights.credentials import SecretsManagerCredentials
from seller_insights.data_rights import AuditLog
from seller_insights.endpoints import amazon_url
from seller_insights.errors import (
    AlreadyConnected,
    AuthorizationCancelled,
    BadRequest,
    BrowserMismatch,
    ConfigurationError,
    ConnectionInProgress,
    ConsentError,
    DeletionPending,
    IdentityMismatch,
    IdentityNotProven,
    IdentityUnconfirmed,
    KeyUnavailable,
    LwaError,
    LwaInvalidClient,
    LwaInvalidGrant,
    LwaRejected,
    LwaUnavailable,
    SealedDataInvalid,
    SellerMismatch,
    StateExpired,
    StateNotFound,
    UnknownMarketplace,
    UntrustedCallbackUri,
    VaultError,
)
from seller_insights.http_api import HttpApi
from seller_insights.identity import SellerIdentity
from seller_insights.lwa import LwaClient, RetryPolicy
from seller_insights.marketplaces import LWA_TOKEN_URL, MARKETPLACES, Region, marketplace_codes
from seller_insights.observability import get_logger, get_metrics, get_tracer
from seller_insights.pseudonyms import seller_key
from seller_insights.redaction import invocation_scope
from seller_insights.repositories import ConnectionsRepository, OAuthStateRepository, OneTimeClaims
from seller_insights.vault import Vault

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()

# The code exchange runs inside an API request: worst case (3 attempts, backoff) stays near 11 s, plus
# at most 4.5 s for Amazon to name the seller when a deletion is pending (seller_insights.identity), inside
# the function's timeout (below API Gateway's 30 seconds).
CALLBACK_LWA_POLICY = RetryPolicy(max_attempts=3, connect_timeout=2.0, read_timeout=4.0, deadline=9.0)

REGION_NAMES = {Region.NA.value: "North America", Region.EU.value: "Europe", Region.FE.value: "Far East"}


@per_container
def settings() -> ConsentSettings:
    return ConsentSettings.from_env()


@per_container
def service() -> ConsentService:
    config = settings()
    credentials = SecretsManagerCredentials(config.lwa_client_secret_id)
    return ConsentService(
        config,
        states=OAuthStateRepository(aws.table(config.oauth_state_table)),
        connections=ConnectionsRepository(aws.table(config.connections_table)),
        candidates=CandidateRepository(aws.table(config.connections_table)),
        claims=OneTimeClaims(aws.table(config.idempotency_table)),
        vault=Vault(aws.client("kms"), config.token_key_id),
        lwa=LwaClient(amazon_url(LWA_TOKEN_URL, config.amazon_endpoint_override), credentials,
                      policy=CALLBACK_LWA_POLICY),
        identity=SellerIdentity(endpoint_override=config.amazon_endpoint_override),
        audit=AuditLog(aws.table(config.audit_table)),
        credentials=credentials,
    )


@per_container
def app_gate() -> AppGate:
    """The incident switch (ops incident contain): while consent is closed, the consent routes answer the
    maintenance page."""
    return AppGate(aws.table(settings().connections_table))


app = HttpApi()

# The metric each failure is counted under: chosen names, stable for alarms and dashboards. A failure of a
# type not listed here (nor a subclass of one) counts as UNEXPECTED_FAILURE_METRIC.
FAILURE_METRICS: dict[type[Exception], str] = {
    UnknownMarketplace: "ConsentFailedUnknownMarketplace",
    AuthorizationCancelled: "ConsentFailedAuthorizationCancelled",
    AlreadyConnected: "ConsentFailedAlreadyConnected",
    DeletionPending: "ConsentFailedDeletionPending",
    IdentityMismatch: "ConsentFailedIdentityMismatch",
    IdentityUnconfirmed: "ConsentFailedIdentityUnconfirmed",
    ConnectionInProgress: "ConsentFailedConnectionInProgress",
    StateExpired: "ConsentFailedStateExpired",
    StateNotFound: "ConsentFailedStateNotFound",
    BrowserMismatch: "ConsentFailedBrowserMismatch",
    SellerMismatch: "ConsentFailedSellerMismatch",
    UntrustedCallbackUri: "ConsentFailedUntrustedCallbackUri",
    BadRequest: "ConsentFailedBadRequest",
    ConsentError: "ConsentFailedConsentError",
    IdentityNotProven: "ConsentFailedIdentityNotProven",
    LwaInvalidGrant: "ConsentFailedLwaInvalidGrant",
    LwaUnavailable: "ConsentFailedLwaUnavailable",
    LwaInvalidClient: "ConsentFailedLwaInvalidClient",
    LwaRejected: "ConsentFailedLwaRejected",
    LwaError: "ConsentFailedLwaError",
    ConfigurationError: "ConsentFailedConfigurationError",
    SealedDataInvalid: "ConsentFailedSealedDataInvalid",
    KeyUnavailable: "ConsentFailedKeyUnavailable",
    VaultError: "ConsentFailedVaultError",
    ClientError: "ConsentFailedClientError",
    BotoCoreError: "ConsentFailedBotoCoreError",
}
UNEXPECTED_FAILURE_METRIC = "ConsentFailedUnexpected"


@invocation_scope
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """The routing alone, without the Lambda decorators (tests whose threads stand for containers)."""
    return app.resolve(event, None)  # type: ignore[arg-type]  # no route reads the Lambda context


# --- middleware ---------------------------------------------------------------------------------------


def count_failures(resolver: HttpApi, next_middleware: NextMiddleware) -> Response[Any]:
    """Every failure, raised by a route or a later middleware, is counted once under its metric name here,
    before its exception handler builds the page."""
    try:
        return next_middleware(resolver)
    except Exception as exc:
        _count(failure_metric(exc))
        raise


def strict_request(resolver: HttpApi, next_middleware: NextMiddleware) -> Response[Any]:
    """Every request, routed or not: a repeated, oversized or excess query parameter is refused
    (BadRequest) before anything else; a cookie sent twice counts as absent."""
    resolver.append_context(consent_request=ConsentRequest.from_event(resolver.current_event))
    return next_middleware(resolver)


# The routes that start or complete a consent: closed by an incident containment (docs/incident-response.md).
GATED_PATHS = frozenset({routes.CONNECT, routes.LOGIN, routes.CALLBACK})


def consent_gate(resolver: HttpApi, next_middleware: NextMiddleware) -> Response[Any]:
    """While an incident containment closes consent, /connect, /login and /callback answer the maintenance page
    and do nothing else: no state is issued, no code is exchanged."""
    if resolver.context.get("_path") in GATED_PATHS and app_gate().consent_closed():
        _count("ConsentClosedForMaintenance")
        return maintenance_page()
    return next_middleware(resolver)


app.use([count_failures, strict_request, consent_gate])


def maintenance_page() -> Response[str]:
    response = pages.page(503, "Connecting is paused",
                          "Seller Insights is under maintenance, so new connections are paused for now. "
                          "Nothing was sent to us and nothing about your account changed.",
                          "Please try again later.")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _request() -> ConsentRequest:
    request: ConsentRequest = app.context["consent_request"]
    return request


# --- routes -------------------------------------------------------------------------------------------


@app.get(routes.CONNECT)
def connect() -> Response[str]:
    request = _request()
    redirect = service().start_website_flow(request.query, request.cookies.get(BINDING_COOKIE))
    _count("ConsentStarted")
    logger.info("consent started", extra={"flow": "website"})
    return _redirect_with_binding(redirect)


@app.get(routes.LOGIN)
def login() -> Response[str]:
    request = _request()
    redirect = service().start_login_flow(request.query, request.cookies.get(BINDING_COOKIE))
    _count("ConsentStarted")
    logger.info("consent started", extra={"flow": "login"})
    return _redirect_with_binding(redirect)


@app.get(routes.CALLBACK)
def callback() -> Response[str]:
    request = _request()
    completion = service().complete(request.query, request.cookies.get(BINDING_COOKIE), request.request_id)
    _count("ConsentCompleted")
    logger.info("consent taken; waiting for Amazon to confirm the seller",
                extra={"seller_key": seller_key(completion.seller_id), "region": completion.region})
    # A clean URL: nothing of the code or state survives in history or a Referer.
    return pages.redirect(f"done?outcome=pending&region={completion.region}", status=303)


@app.get(routes.DONE)
def done() -> Response[str]:
    query = _request().query
    outcome = query.get("outcome")
    if outcome == "pending":
        region = REGION_NAMES.get(query.get("region", ""), "your region")
        return pages.page(200, "Connected, confirming with Amazon",
                          "Your Amazon authorization has arrived. We are confirming with Amazon that it belongs to "
                          "your seller account; this usually takes a few minutes.",
                          f"Once it is confirmed, Seller Insights starts reading your reports for {region}. "
                          "You can close this page. To connect another region, start again.",
                          action=Link("connect", "Connect another region"))
    if outcome == "already_connected":
        return pages.page(200, "Already connected",
                          "This authorization was already completed. Nothing else is needed.")
    return _not_found_page()


@app.not_found
def no_such_route(_: NotFoundError) -> Response[str]:
    """A consent path with another method than GET is 405 (API Gateway sends every method); else 404."""
    if app.context.get("_path") in routes.PATHS:
        response = pages.page(405, "Method not allowed", "This address only answers GET requests.")
        response.headers["Allow"] = routes.METHOD
        return response
    return _not_found_page()


def _not_found_page() -> Response[str]:
    return pages.page(404, "Page not found", "There is nothing at this address.", action=pages.start_again())


def _redirect_with_binding(redirect: Redirect) -> Response[str]:
    cookie = Cookie(name=BINDING_COOKIE, value=redirect.binding, path="/", max_age=settings().state_ttl_seconds,
                    secure=True, http_only=True, same_site=SameSite.LAX_MODE)
    return pages.redirect(redirect.location, status=302, cookies=[cookie])


# --- one exception handler per error type (counted by count_failures); each page's text is fixed -------


@app.exception_handler(UnknownMarketplace)
def unknown_marketplace(exc: UnknownMarketplace) -> Response[str]:
    choices = [Link(f"connect?marketplace={code}", f"{code} · {MARKETPLACES[code].country}")
               for code in marketplace_codes()]
    return pages.page(400, "Unknown marketplace",
                      "Choose the marketplace where you sell; we send you to its Seller Central.", choices=choices)


@app.exception_handler(AuthorizationCancelled)
def authorization_cancelled(exc: AuthorizationCancelled) -> Response[str]:
    return pages.page(400, "Authorization was cancelled",
                      "You did not authorize Seller Insights on Amazon, so nothing was connected.",
                      "If that was a mistake, start again.", action=pages.start_again())


@app.exception_handler(AlreadyConnected)
def already_connected(exc: AlreadyConnected) -> Response[str]:
    return pages.redirect("done?outcome=already_connected", status=303)


@app.exception_handler(DeletionPending)
def deletion_pending(exc: DeletionPending) -> Response[str]:
    # The date comes from our table and is shown only after Amazon confirmed the seller.
    date = exc.purge_after[:10]
    return pages.page(409, "Your data is being deleted",
                      f"You asked us to delete your Seller Insights data. It will be deleted for good on "
                      f"{date}, so nothing of this authorization was stored.",
                      "To keep your data, ask Seller Insights support to cancel the deletion before that "
                      "date. Or connect again after that date to start afresh.")


@app.exception_handler(IdentityMismatch)
def identity_mismatch(exc: IdentityMismatch) -> Response[str]:
    return pages.page(400, "This authorization belongs to another account",
                      "Amazon says this authorization belongs to a different seller account than the one "
                      "named in the link Amazon sent you back with. Nothing was stored.",
                      "Sign in to Seller Central with the account you want to connect and start again.",
                      action=pages.start_again())


@app.exception_handler(IdentityUnconfirmed)
def identity_unconfirmed(exc: IdentityUnconfirmed) -> Response[str]:
    return pages.page(503, "We could not confirm your account",
                      "Amazon did not confirm which seller account this authorization belongs to just now. "
                      "Nothing was stored. Please try again in a few minutes.",
                      action=Link("connect", "Try again"))


@app.exception_handler(ConnectionInProgress)
def connection_in_progress(exc: ConnectionInProgress) -> Response[str]:
    return pages.page(409, "Still connecting",
                      "This authorization is being completed in another tab or request. "
                      "Wait a moment, then open Seller Insights again.")


@app.exception_handler(StateExpired)
def state_expired(exc: StateExpired) -> Response[str]:
    return pages.page(400, "This link has expired",
                      "The authorization took longer than 10 minutes. Start again to get a fresh link.",
                      action=pages.start_again())


@app.exception_handler(StateNotFound)
def state_not_found(exc: StateNotFound) -> Response[str]:
    return pages.page(400, "This link cannot be used",
                      "It was already used, has expired, or was not issued by us. Start again.",
                      action=pages.start_again())


@app.exception_handler(BrowserMismatch)
def browser_mismatch(exc: BrowserMismatch) -> Response[str]:
    return pages.page(400, "Start again in this browser",
                      "The authorization was started in another browser or the session cookie is "
                      "missing. Start again here, in one browser, with cookies enabled.", action=pages.start_again())


@app.exception_handler(SellerMismatch)
def seller_mismatch(exc: SellerMismatch) -> Response[str]:
    return pages.page(400, "A different seller account answered",
                      "Amazon returned another seller account than the one that started the "
                      "authorization. Sign in to Seller Central with the right account and start again.",
                      action=pages.start_again())


@app.exception_handler(UntrustedCallbackUri)
def untrusted_callback_uri(exc: UntrustedCallbackUri) -> Response[str]:
    return pages.page(400, "Untrusted return address",
                      "This sign-in link does not come from Seller Central or Vendor Central. "
                      "Open Seller Insights from the Selling Partner Appstore and try again.")


@app.exception_handler(BadRequest)
def bad_request(exc: BadRequest) -> Response[str]:
    return pages.page(400, "This request is incomplete",
                      "Some information from Amazon is missing or malformed. Start again.", action=pages.start_again())


@app.exception_handler(LwaInvalidGrant)
def lwa_invalid_grant(exc: LwaInvalidGrant) -> Response[str]:
    return pages.page(400, "The authorization expired",
                      "Amazon's authorization code is valid for only 5 minutes and works once. "
                      "Start again to authorize Seller Insights.", action=pages.start_again())


@app.exception_handler(LwaUnavailable)
def lwa_unavailable(exc: LwaUnavailable) -> Response[str]:
    logger.warning("LWA unavailable during the code exchange", extra={"lwa_error": exc.code})
    return pages.page(502, "Amazon did not answer",
                      "Amazon's sign-in service did not answer in time. Nothing was stored. "
                      "Please try again in a minute.", action=Link("connect", "Try again"))


@app.exception_handler(LwaError)
def lwa_refused(exc: LwaError) -> Response[str]:
    logger.error("LWA refused the code exchange", extra={"lwa_error": exc.code})
    return pages.page(502, "We could not finish connecting",
                      "Amazon refused our application's credentials. Nothing was stored. Our team "
                      "has been alerted; please try again later.", action=Link("connect", "Try again"))


@app.exception_handler([ConfigurationError, VaultError, ClientError, BotoCoreError])
def dependency_unavailable(exc: Exception) -> Response[str]:
    logger.exception("consent could not complete")
    return pages.page(503, "Temporarily unavailable",
                      "We could not complete this step. Nothing was stored. Please try again shortly.",
                      action=Link("connect", "Try again"))


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response[str]:
    logger.exception("unexpected consent failure")
    return pages.page(500, "Something went wrong", "Nothing was stored. Please start again.",
                      action=pages.start_again())


def failure_metric(exc: Exception) -> str:
    """The chosen metric name of the nearest listed type of `exc`."""
    return next((FAILURE_METRICS[cls] for cls in type(exc).__mro__ if cls in FAILURE_METRICS),
                UNEXPECTED_FAILURE_METRIC)


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
