"""Unit tests run the product's logic in-process without HTTP, on a clock they move themselves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from seller_insights import clock
from seller_insights.clock import FixedClock


@pytest.fixture
def fixed_clock() -> Iterator[FixedClock]:
    """The product's clock, standing at a known instant until the test moves it."""
    fixed = FixedClock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    clock.set_clock(fixed)
    yield fixed
    clock.set_clock(clock.SystemClock())
