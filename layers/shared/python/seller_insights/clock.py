"""The one source of "now" for the product, so tests and the local stack can move time.

Deployed code uses the system clock. The local stack installs an `OffsetClock` and moves it with
`POST /_local/clock`; tests install a `FixedClock`. Nothing else in the product calls
`datetime.now()` or `time.time()` for business time.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """The system clock plus an offset that only grows (the local stack's virtual time)."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("time only moves forward; advance_seconds must be >= 0")
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()


class FixedClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


_clock: Clock = SystemClock()


def set_clock(clock: Clock) -> None:
    global _clock  # noqa: PLW0603 - the installed clock is process-wide on purpose
    _clock = clock


def get_clock() -> Clock:
    return _clock


def now() -> datetime:
    """Timezone-aware UTC now, from the installed clock."""
    return _clock.now()


def epoch_seconds() -> int:
    return int(_clock.now().timestamp())
