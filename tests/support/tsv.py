"""Tab-separated text for the report-stream tests, and the check every stored TSV must pass."""

from __future__ import annotations


def tsv(rows: list[list[str]], newline: str = "\n") -> str:
    return "".join("\t".join(row) + newline for row in rows)


def assert_aligned(text: str, width: int) -> None:
    """Every stored line has exactly the stored header's field count, and no CR (universal-newline
    readers would split there): safe to read by position, whatever the reader."""
    assert "\r" not in text
    assert all(line.count("\t") == width - 1 for line in text.splitlines()), text
