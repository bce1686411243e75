"""The emulator's own clock: every expiry it enforces (codes, amazon_state, tokens) reads it.

It is deliberately separate from the product's `seller_insights.clock`: the emulator stands for
Amazon and must not import product code (it also runs on its own, `python -m local.amazon`). The
local stack moves both clocks together through `POST /_emulator/clock`.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class EmulatorClock(Protocol):
    def now(self) -> datetime: ...

    def advance(self, seconds: float) -> datetime: ...


class VirtualClock:
    """System time plus an offset that only grows."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> datetime:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("time only moves forward: advance_seconds must be a finite number >= 0")
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with a Z suffix, millisecond precision."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
