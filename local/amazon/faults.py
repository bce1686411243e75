"""Injected failures: "the next n calls of operation X fail like this".

Operations are named after what they stand for: `lwa_token` for the LWA token endpoint; SP-API
operations will use their model operationId (`createReport`, `getReport`, ...). Each operation
declares which failure kinds it supports, so adding one is a line in `SUPPORTED`.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

DEFAULT_HOLD_SECONDS = 2.0
MAX_HOLD_SECONDS = 120.0
MAX_COUNT = 10_000

_SPAPI_FAULTS: frozenset[int | str] = frozenset({429, 500, 503, "timeout"})

SUPPORTED: dict[str, frozenset[int | str]] = {
    "lwa_token": frozenset({500, 503, "timeout"}),
    **{
        op: _SPAPI_FAULTS
        for op in ("createReport", "getReports", "getReport", "cancelReport", "getReportDocument",
                   "createQuery", "getQueries", "getQuery", "cancelQuery", "getDocument")
    },
    "getMarketplaceParticipations": _SPAPI_FAULTS,
    # Product Fees: 403 stands for an application without any of the operation's roles.
    "getMyFeesEstimateForASIN": _SPAPI_FAULTS | {403},
    # the download of a report document: "truncated" cuts its stream half way
    "document": frozenset({500, 503, "timeout", "truncated"}),
}


class FaultError(ValueError):
    """A fault request the emulator cannot honour (the message says why)."""


@dataclass(frozen=True)
class Fault:
    kind: int | str  # an HTTP status, "timeout" or "truncated"
    hold_seconds: float = 0.0


class FaultBook:
    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()

    def arm(self, operation: str, kind: object, count: object, hold_seconds: object = None) -> None:
        supported = SUPPORTED.get(operation)
        if supported is None:
            raise FaultError(f"unknown operation {operation!r}; known: {', '.join(sorted(SUPPORTED))}")
        if isinstance(kind, bool) or kind not in supported:
            allowed = ", ".join(sorted(str(k) for k in supported))
            raise FaultError(f"status {kind!r} is not supported for {operation}; use one of {allowed}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise FaultError(f"count must be an integer from 1 to {MAX_COUNT}")
        hold = 0.0
        if kind == "timeout":
            hold = DEFAULT_HOLD_SECONDS if hold_seconds is None else _hold(hold_seconds)
        elif hold_seconds is not None:
            raise FaultError("hold_seconds only applies to status 'timeout'")
        assert isinstance(kind, int | str)
        with self._lock:
            self._queues.setdefault(operation, deque()).extend([Fault(kind, hold)] * count)

    def take(self, operation: str) -> Fault | None:
        """The fault for this call of the operation, if one is armed (consumes it)."""
        with self._lock:
            queue = self._queues.get(operation)
            return queue.popleft() if queue else None

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {op: len(q) for op, q in self._queues.items() if q}

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()


def _hold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_HOLD_SECONDS:
        raise FaultError(f"hold_seconds must be a number from 0 to {MAX_HOLD_SECONDS:g}")
    return float(value)
