"""bench.report_streaming's --sizes: a bare number is MiB, units as written, anything else refused."""

from __future__ import annotations

import argparse

import pytest

from bench.report_streaming import parse_size, parse_sizes

MiB = 1024 * 1024


@pytest.mark.parametrize(("text", "size"), [
    ("64", 64 * MiB), ("0.5", MiB // 2), ("64M", 64 * MiB), ("64MiB", 64 * MiB), ("64mb", 64 * MiB),
    ("512K", 512 * 1024), ("1G", 1024 * MiB), ("1.5GB", 1536 * MiB), ("4096B", 4096), (" 2 G ", 2048 * MiB),
])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "64X", "-1M", "64 MiB please", "1e3"])
def test_what_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
        parse_size(text)


def test_each_size_keeps_its_label() -> None:
    assert parse_sizes("64,1G") == {"64": 64 * MiB, "1G": 1024 * MiB}
