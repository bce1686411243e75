"""The product's one source of "now" (seller_insights.clock): the local stack's virtual clock only moves
forward, a test's fixed clock stands still until moved, and the installed clock is what the product reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from seller_insights import clock
from seller_insights.clock import FixedClock, OffsetClock, SystemClock


def test_the_virtual_clock_moves_forward_only() -> None:
    virtual = OffsetClock()
    before = virtual.now()

    moved = virtual.advance(86_400)

    assert moved - before >= timedelta(days=1)
    assert virtual.now() >= moved
    with pytest.raises(ValueError, match="forward"):
        virtual.advance(-1)
    assert virtual.now() >= moved  # the refused move changed nothing


def test_a_fixed_clock_needs_a_zone_and_answers_in_utc() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2026, 11, 29, 12))

    tokyo = FixedClock(datetime(2026, 11, 29, 21, tzinfo=timezone(timedelta(hours=9))))
    assert tokyo.now() == datetime(2026, 11, 29, 12, tzinfo=UTC) and tokyo.now().tzinfo is UTC
    assert tokyo.advance(90) == datetime(2026, 11, 29, 12, 1, 30, tzinfo=UTC) == tokyo.now()


def test_the_product_reads_the_installed_clock() -> None:
    fixed = FixedClock(datetime(2026, 11, 29, 12, tzinfo=UTC))
    clock.set_clock(fixed)
    try:
        assert clock.get_clock() is fixed
        assert clock.now() == fixed.now()
        assert clock.epoch_seconds() == int(fixed.now().timestamp())
    finally:
        clock.set_clock(SystemClock())
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(minutes=1)
