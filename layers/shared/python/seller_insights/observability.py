"""Logger, tracer and metrics for every function, with redaction on every record.

- Powertools Logger (JSON), whose formatter scrubs the finished line with `redaction.redact`.
- A `RedactingFilter` on every other handler of the root logger (local stack, tests).
- botocore, boto3, urllib3, requests, s3transfer and Powertools' HTTP resolver stay at WARNING or above
  whatever LOG_LEVEL says: at DEBUG they print request bodies and headers (boto3#2292), or paths.
- In Lambda a process runs one function, named by POWERTOOLS_SERVICE_NAME. The local stack runs every
  function in one process: it wraps each invocation in `logging_as(service)`, and the records logged
  within carry that function's service instead of the process's.
- The Tracer patches only the libraries the function calls out with (botocore, requests), and when
  tracing is off (tests, the local stack) it never loads the X-Ray SDK (see `get_tracer`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from seller_insights.redaction import redact

# Powertools' HTTP resolver logs each route match at DEBUG, with the path and its parameters (a seller id).
NOISY_LOGGERS = ("botocore", "boto3", "urllib3", "requests", "s3transfer", "aws_lambda_powertools.event_handler")
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
    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "seller_insights")
    # Tracing is off outside Lambda and under POWERTOOLS_TRACE_DISABLED (Powertools' own rule). Powertools
    # would still import the X-Ray SDK and build its recorder, which outside Lambda creates two botocore
    # X-Ray clients for centralized sampling (~130 ms, bench/README.md): a recorder that records nothing
    # is not needed, so a disabled Tracer gets a provider that does nothing.
    if Tracer._is_tracer_disabled():
        return Tracer(service=service, disabled=True, provider=_NoTracing())
    return Tracer(service=service, patch_modules=traced_libraries())


def traced_libraries() -> tuple[str, ...]:
    """What the X-Ray SDK patches: botocore always, requests if the function has imported it by now.

    Powertools' default, `patch_all`, also imports and patches sqlite3 (and any other supported library
    it finds) for nothing. Handlers make their Tracer after their imports; patching imports the library,
    so patching requests in a function that never calls out with it (the retention sweeper) would add
    ~25 ms CPU to its cold import (bench.cold_import) for nothing. Never empty: Powertools reads an empty
    list as "patch all".
    """
    return ("botocore", *(("requests",) if "requests" in sys.modules else ()))


@cache
def get_metrics() -> Metrics:
    return Metrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE),
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "seller_insights"),
    )


def put_metric_per_type(name: str, report_type: str, value: float) -> None:
    """One metric with its own `report_type` dimension (besides `service`), outside the function's shared EMF
    blob, whose dimensions every metric of the invocation shares."""
    metrics = get_metrics()
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=metrics.namespace,
                       default_dimensions={"service": str(metrics.service)}) as metric:
        metric.add_dimension(name="report_type", value=report_type)


# The heartbeat of a schedule (docs/runbook.md, `*Heartbeat`): every finder run that finished emits it once.
SWEEP_COMPLETED = "SweepCompleted"


def sweep_completed(sweep: str) -> None:
    """One `SweepCompleted` (dimensions `service` and `sweep` = the schedule's name) for a finder run that
    finished: the stack alarms when a schedule's periods pass without one (a schedule stopped, or its runs
    fail). Like `put_metric_per_type`, outside the function's shared EMF blob: its own dimensions."""
    metrics = get_metrics()
    with single_metric(name=SWEEP_COMPLETED, unit=MetricUnit.Count, value=1, namespace=metrics.namespace,
                       default_dimensions={"service": str(metrics.service)}) as metric:
        metric.add_dimension(name="sweep", value=sweep)


class _NoSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class _NoTracing(BaseProvider):
    """The provider of a disabled Tracer: its decorators run the function and record nothing."""

    @contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _NoSegment()

    @asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield _NoSegment()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at emit time (test capture, the local stack's redirection)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)
