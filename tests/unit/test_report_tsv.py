"""report_tsv: the column filter over a document's UTF-8 bytes, at any chunk boundaries (no HTTP)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seller_insights.errors import DocumentCorrupt
from seller_insights.report_tsv import TsvFilter
from tests.support.tsv import assert_aligned, tsv


def filtered(filt: TsvFilter, data: bytes, cuts: list[int]) -> str:
    """`data` fed in the pieces `cuts` makes (possibly inside a UTF-8 sequence), decoded at the end."""
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    return (b"".join(filt.feed(data[a:b]) for a, b in itertools.pairwise(bounds)) + filt.finish()).decode()


@settings(max_examples=200, deadline=None)
# Any character but a lone surrogate: the filter takes UTF-8, which cannot hold one (no decoder makes one).
@given(rows=st.lists(st.lists(st.text(st.characters(exclude_characters="\t\r\n", exclude_categories=["Cs"]),
                                      max_size=6), min_size=0, max_size=5), min_size=1, max_size=12),
       keep=st.sets(st.sampled_from(["c0", "c1", "c2", "c3"])), crlf=st.booleans(),
       cuts=st.lists(st.integers(0, 400), max_size=8))
def test_filter_at_any_chunk_boundaries(rows: list[list[str]], keep: set[str], crlf: bool, cuts: list[int]) -> None:
    header = ["c0", "c1", "c2", "c3"]
    data = tsv([header, *rows], "\r\n" if crlf else "\n").encode()
    filt = TsvFilter(tuple(sorted(keep)))
    if not keep:  # nothing to keep: the first line is no header of ours
        with pytest.raises(DocumentCorrupt, match="first line"):
            filtered(filt, data, cuts)
        return
    out = filtered(filt, data, cuts)
    idx = [i for i, name in enumerate(header) if name in keep]
    whole = [r for r in rows if len(r) == len(header)]  # other widths are dropped, blank lines skipped
    assert out == "".join("\t".join(r[i] for i in idx) + "\n" for r in [header, *whole])
    assert filt.rows == len(whole)
    assert filt.blank == sum(1 for r in rows if not "\t".join(r))
    assert filt.malformed == len(rows) - len(whole) - filt.blank
    assert filt.dropped == tuple(name for name in header if name not in keep)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(st.text(st.sampled_from("ab\t\r\n"), max_size=4), min_size=0, max_size=5),
                     min_size=1, max_size=12),
       keep=st.sets(st.sampled_from(["c0", "c1", "c2", "c3"]), min_size=1), cuts=st.lists(st.integers(0, 400),
                                                                                        max_size=8))
def test_stored_rows_always_have_the_header_width(rows: list[list[str]], keep: set[str], cuts: list[int]) -> None:
    """Whatever the fields hold (tabs, CR, LF) and wherever the chunks end, every stored line has the
    stored header's width, and every source line is a stored row, a dropped row or a blank line."""
    header = ["c0", "c1", "c2", "c3"]
    text = tsv([header, *rows])
    filt = TsvFilter(tuple(sorted(keep)))
    out = filtered(filt, text.encode(), cuts)
    kept = [i for i, name in enumerate(header) if name in keep]
    assert_aligned(out, len(kept))
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[1:-1]  # universal newlines
    well_formed = [line.split("\t") for line in lines if line and line.count("\t") == 3]
    assert out == "".join("\t".join(f[i] for i in kept) + "\n" for f in [header, *well_formed])
    assert filt.rows + filt.malformed + filt.blank == len(lines)
    assert filt.blank == lines.count("")


def test_a_line_longer_than_8_mib_is_corrupt() -> None:
    filt = TsvFilter(("sku",))
    filt.feed(b"sku\n")
    with pytest.raises(DocumentCorrupt, match="longer than 8 MiB"):
        for _ in range(9):
            filt.feed(b"x" * (1024 * 1024))


@pytest.mark.parametrize(("body", "stored", "malformed"), [
    # A short line and a long one hold as many tabs as two good ones: no row is made of both.
    (b"a\tb\nc\td\te\tf\ng\th\ti\n", b"g\ti\n", 2),
    # As many CRs as lines, but one is a lone CR (a line break) inside the first line.
    (b"a\rb\tc\td\r\ne\tf\tg\n", b"b\td\ne\tg\n", 1),
    # All in CRLF, all well-formed: the quick way; a CR missing on one line: the careful way, same rows.
    (b"a\tb\tc\r\nd\te\tf\r\n", b"a\tc\nd\tf\n", 0),
    (b"a\tb\tc\r\nd\te\tf\n", b"a\tc\nd\tf\n", 0),
])
def test_batches_that_look_well_formed_by_their_counts(body: bytes, stored: bytes, malformed: int) -> None:
    filt = TsvFilter(("c0", "c2"))
    assert filt.feed(b"c0\tc1\tc2\n" + body) + filt.finish() == b"c0\tc2\n" + stored
    assert (filt.rows, filt.malformed) == (stored.count(b"\n"), malformed)
