"""Logger, tracer and metrics for every function, with redaction on every record.

- Powertools Logger (JSON), whose formatter scrubs the finished line with `redaction.redact`.
- A `RedactingFilter` on every other handler of the root logger (local stack, tests).
- botocore, boto3, urllib3, requests and s3transfer stay at WARNING or above whatever LOG_LEVEL says:
  at DEBUG they print request bodies and headers (boto3#2292).
- In Lambda a process runs one function, named by POWERTOOLS_SERVICE_NAME. The local stack runs every
  function in one process: it wraps each invocation in `logging_as(service)`, and the records logged
  within carry that function's service instead of the process's.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from seller_insights.redaction import redact

NOISY_LOGGERS = ("botocore", "boto3", "urllib3", "requests", "s3transfer")
METRICS_NAMESPACE = "SellerInsights"


# The service of the function being invoked, where one process runs several (local/functions.py).
_invoked_service: ContextVar[str | None] = ContextVar("invoked_service", default=None)


@contextmanager
def logging_as(service: str) -> Iterator[None]:
    """Records logged in this context (this thread, this task) carry `service`."""
    token = _invoked_service.set(service)
    try:
        yield
    finally:
        _invoked_service.reset(token)


class RedactingFormatter(LambdaPowertoolsFormatter):
    def format(self, record: logging.LogRecord) -> str:
        service = _invoked_service.get()
        if service is not None:
            record.service = service  # a record attribute outranks the Logger's own service key
        return redact(super().format(record))


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so that any handler prints it redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage()).replace("\r", "\\r").replace("\n", "\\n")
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def pin_noisy_loggers() -> None:
    for name in NOISY_LOGGERS:
        noisy = logging.getLogger(name)
        if noisy.getEffectiveLevel() < logging.WARNING or noisy.level < logging.WARNING:
            noisy.setLevel(logging.WARNING)


def install_root_redaction() -> None:
    """Attach the filter to every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


@cache
def get_logger() -> Logger:
    pin_noisy_loggers()
    install_root_redaction()
    logger = Logger(
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "seller_insights"),
        logger_formatter=RedactingFormatter(),
        # stderr: in Lambda both streams reach CloudWatch; locally stdout is kept for the JSON line.
        logger_handler=_CurrentStderrHandler(),
    )
    return logger


@cache
def get_tracer() -> Tracer:
    return Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "seller_insights"))


@cache
def get_metrics() -> Metrics:
    return Metrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE),
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "seller_insights"),
    )


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at emit time (test capture, the local stack's redirection)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)
