"""Per-container singletons: built on first use, kept for the container's life, forgotten together.

A Lambda container keeps module state between invocations, so clients, repositories and services
are built once per container by factories marked `@per_container`. Nothing is built at import time.
Tests and the local stack start a "new container" with `forget_all()`: one registry, no hand-kept
list of factories to clear.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

_FORGET: list[Callable[[], None]] = []


def per_container[F: Callable[..., Any]](factory: F) -> F:
    cached = cache(factory)
    _FORGET.append(cached.cache_clear)
    return cached  # type: ignore[return-value]


def forget_all() -> None:
    """Forget every per-container value, as a new container would start."""
    for forget in _FORGET:
        forget()
