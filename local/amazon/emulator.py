"""`AmazonEmulator`: the registered app, the state and a threaded HTTP server on loopback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import EmulatorWsgi
from .clock import EmulatorClock
from .notifications import Notifier
from .registration import EmulatorApp
from .state import EmulatorState

logger = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """werkzeug logs every request line, query string included: codes and states would leak."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        # The arguments can quote the raw request line; keep only that an error happened.
        logger.debug("HTTP protocol error on the emulator socket")


class AmazonEmulator:
    """Seller Central consent, the Log-in URI hop, LWA and a few SP-API operations over real HTTP.

    Credentials not given are generated at random in Amazon's shapes. `redirect_uris`,
    `login_uri` and the notification queue can be set later with `configure()` (the API's port
    or the queue's URL is often known only then). Pass `clock` to share a clock object; otherwise
    the emulator has its own virtual clock.
    """

    def __init__(
        self,
        application_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        redirect_uris: Sequence[str] = (),
        login_uri: str | None = None,
        draft: bool = True,
        app_name: str = "Seller Insights",
        host: str = "127.0.0.1",
        port: int = 0,
        clock: EmulatorClock | None = None,
        notification_queue_url: str | None = None,
        sqs_endpoint: str | None = None,
        report_notification_queue_url: str | None = None,
    ) -> None:
        app = EmulatorApp.create(
            application_id,
            client_id,
            client_secret,
            redirect_uris=redirect_uris,
            login_uri=login_uri,
            draft=draft,
            name=app_name,
        )
        self.state = EmulatorState(
            app,
            clock,
            Notifier(notification_queue_url, sqs_endpoint),
            Notifier(report_notification_queue_url, sqs_endpoint, group_id="report-processing-finished"),
        )
        self.wsgi_app = EmulatorWsgi(self.state)
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> AmazonEmulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = make_server(
            self._host,
            self._port,
            self.wsgi_app,
            threaded=True,
            request_handler=_QuietHandler,
        )
        self._server = server
        # A short poll interval keeps stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="amazon-emulator", daemon=True
        )
        self._thread.start()
        logger.info("Amazon emulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._server.port}"

    # -- the registered app -----------------------------------------------------------------

    @property
    def app(self) -> EmulatorApp:
        return self.state.app

    @property
    def application_id(self) -> str:
        return self.app.application_id

    @property
    def client_id(self) -> str:
        return self.app.client.client_id

    @property
    def client_secret(self) -> str:
        return self.app.client.current_secret

    def credentials(self) -> dict[str, str]:
        """The LWA client secret's JSON shape (docs/internal-contracts.md), for seeding the secret."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "application_id": self.application_id,
        }

    def configure(
        self,
        *,
        redirect_uris: Sequence[str] | None = None,
        login_uri: str | None = None,
        draft: bool | None = None,
        app_name: str | None = None,
        notification_queue_url: str | None = None,
        sqs_endpoint: str | None = None,
        report_notification_queue_url: str | None = None,
    ) -> EmulatorApp:
        """Change the app's registration; arguments left as None keep their value.

        `notification_queue_url` is the SQS queue registered for the application notifications
        (`""` unregisters it); `report_notification_queue_url` the one REPORT_PROCESSING_FINISHED goes to
        (the same way); `sqs_endpoint` is where the emulator's SQS client sends, for both (e.g. moto's
        server; `""` is boto3's default).
        """
        self.state.notifier.configure(notification_queue_url, sqs_endpoint)
        self.state.reports.notifier.configure(report_notification_queue_url, sqs_endpoint)
        return self.state.configure(redirect_uris=redirect_uris, login_uri=login_uri, draft=draft, name=app_name)

    @property
    def notification_queue_url(self) -> str | None:
        return self.state.notifier.queue_url

    @property
    def report_notification_queue_url(self) -> str | None:
        return self.state.reports.notifier.queue_url

    # -- helpers for tests and the local stack ------------------------------------------------

    def host_url(self, host: str, path: str = "") -> str:
        """The emulator URL that stands for https://{host}{path}."""
        return f"{self.base_url}/_hosts/{host}{path}"

    def reset(self) -> None:
        """Forget codes, tokens, sellers, faults and counts (keeps the app and the clock)."""
        self.state.reset()

    def now(self) -> datetime:
        return self.state.now()

    def advance_clock(self, seconds: float) -> datetime:
        return self.state.advance_clock(seconds)
