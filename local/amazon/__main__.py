"""`python -m local.amazon`: run the Amazon emulator on its own until interrupted.

Prints one JSON line on stdout when ready (base URL, application id, client id); logs go to
stderr. The client secret is never printed: pass your own with --client-secret, or have the
credentials written to a file (mode 0600) with --credentials-out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from types import FrameType

from .emulator import AmazonEmulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local.amazon", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--application-id")
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="repeat for several, first is default",
    )
    parser.add_argument("--login-uri")
    parser.add_argument(
        "--published",
        action="store_true",
        help="a published app (default: draft, needs beta)",
    )
    parser.add_argument(
        "--credentials-out",
        help="write the LWA credentials JSON to this file (mode 0600)",
    )
    parser.add_argument("--notification-queue-url", help="the SQS queue for application notifications")
    parser.add_argument("--report-notification-queue-url", help="the SQS queue for REPORT_PROCESSING_FINISHED")
    parser.add_argument("--sqs-endpoint", help="where to send them (default: boto3's endpoint for SQS)")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    # botocore logs request bodies at DEBUG, and a NEW_SECRET notification carries a client secret.
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).getEffectiveLevel()))
    emulator = AmazonEmulator(
        args.application_id,
        args.client_id,
        args.client_secret,
        redirect_uris=args.redirect_uri,
        login_uri=args.login_uri,
        draft=not args.published,
        host=args.host,
        port=args.port,
        notification_queue_url=args.notification_queue_url,
        sqs_endpoint=args.sqs_endpoint,
        report_notification_queue_url=args.report_notification_queue_url,
    )
    if args.credentials_out:
        fd = os.open(args.credentials_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(emulator.credentials(), out)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    with emulator:
        ready = {
            "amazon": emulator.base_url,
            "application_id": emulator.application_id,
            "client_id": emulator.client_id,
        }
        print(json.dumps(ready), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
