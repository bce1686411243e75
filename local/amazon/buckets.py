"""Token buckets on the emulator clock (SP-API usage plans: rate and burst) and the app-wide report quotas.

A bucket holds at most `burst` tokens and gains `rate` tokens a second of emulator time; a call
takes one token or is throttled. Amazon keys them per application and selling partner; the
emulator has one application, so per (seller, operation). `WindowQuota` is the app-wide limit of
selling-partner-api-models issue 5210 (GET_SALES_AND_TRAFFIC_REPORT: 1 per 15 minutes, 96 a day, across sellers).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int

    @property
    def header(self) -> str:
        """As `x-amzn-RateLimit-Limit` reports it."""
        return f"{self.per_second:g}"


@dataclass
class _Bucket:
    tokens: float
    updated: datetime


class BucketBook:
    """Token buckets by key, refilled lazily on the emulator clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, ...], _Bucket] = {}

    def take(self, key: tuple[str, ...], rate: Rate, now: datetime) -> bool:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(rate.burst), now)
            elapsed = max(0.0, (now - bucket.updated).total_seconds())
            bucket.tokens = min(float(rate.burst), bucket.tokens + elapsed * rate.per_second)
            bucket.updated = now
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


@dataclass(frozen=True)
class WindowLimit:
    count: int
    window: timedelta


class WindowQuota:
    """Sliding-window limits shared by every seller (e.g. 1 per 15 min and 96 per day)."""

    def __init__(self, limits: tuple[WindowLimit, ...]) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._calls: deque[datetime] = deque()

    def take(self, now: datetime) -> bool:
        with self._lock:
            longest = max(limit.window for limit in self._limits)
            while self._calls and now - self._calls[0] >= longest:
                self._calls.popleft()
            for limit in self._limits:
                recent = sum(1 for moment in self._calls if now - moment < limit.window)
                if recent >= limit.count:
                    return False
            self._calls.append(now)
            return True

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
