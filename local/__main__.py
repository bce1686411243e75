"""`python -m local serve|demo`: see docs/local-stack.md."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

from local.demo import run_demo
from local.stack import LocalStack, StackOptions


def claim_stdout() -> TextIO:
    """Keep the real stdout for our one JSON line; everything else that writes to stdout (Powertools'
    logger and metrics, jsii's relay of Node output, stray prints) lands on stderr, even at fd level.
    """
    sys.stdout.flush()
    ours = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return ours


def configure_logging(level: int) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Request lines of moto and werkzeug, and botocore's chatter, would drown the story.
    for name in ("werkzeug", "botocore", "boto3", "urllib3", "moto", "jsii"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local", description="Run Seller Insights on this machine.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the local stack until SIGINT/SIGTERM")
    demo = commands.add_parser("demo", help="start a stack, play the scenario, print a JSON summary")
    for command in (serve, demo):
        command.add_argument("--host", default="127.0.0.1")
        command.add_argument("--api-port", type=int, default=0)
        command.add_argument("--amazon-port", type=int, default=0)
        command.add_argument("--aws-port", type=int, default=0)
        command.add_argument(
            "--template", type=Path, default=None, help="a synthesized template to use instead of synthesizing"
        )
    demo.add_argument("--verbose", action="store_true", help="also show the stack's and the functions' logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = claim_stdout()
    quiet = args.command == "demo" and not args.verbose
    configure_logging(logging.WARNING if quiet else logging.INFO)

    options = StackOptions(args.host, args.api_port, args.amazon_port, args.aws_port, args.template,
                           quiet_functions=quiet)
    if args.command == "demo":
        return run_demo(options, out)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack = LocalStack(options)
    try:
        stack.start()
    except Exception as exc:
        logging.getLogger("local").exception("the local stack did not start: %s", exc)
        stack.stop()
        return 1
    if stop.is_set():  # a signal arrived while starting
        stack.stop()
        return 0
    out.write(json.dumps(stack.info()) + "\n")
    out.flush()
    stop.wait()
    logging.getLogger("local").info("stopping")
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
