"""The TSV column filter: only the allowlisted columns, in header order, only well-formed rows.

It works on the document's UTF-8 bytes (after decoding and re-encoding), not on `str`: tab, CR and LF
are single bytes that never occur inside a UTF-8 sequence, so cutting fields and lines between bytes
is exact, and a regular expression over bytes runs faster than one over the 2-byte characters a
cp1252 document with a euro sign decodes to (bench/README.md, "report_streaming").

- The first line must be a header: it names at least one allowlisted column, and none twice
  (`TsvFilter._header`); otherwise `DocumentCorrupt` (a data row, a blank line, or a header in a
  language the allowlist does not speak).
- Rows are mapped to columns by position, so a row whose field count differs from the header's (a tab
  or line break typed into a product name or a return comment) is dropped and counted (`malformed`),
  never padded nor cut; blank lines are skipped and counted apart (`blank`). Output: LF line endings,
  the kept fields joined by tabs. When every column is kept the rows are checked all the same, so the
  stored TSV can be read by position.
- Header cells that are not kept are reported by name (`dropped`) only when they look like a column
  name (`COLUMN_NAME`); the others only as a count (`dropped_unnamed`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import repeat
from operator import itemgetter

from seller_insights.errors import DocumentCorrupt

MAX_LINE = 8 * 1024 * 1024  # a TSV line longer than this (in UTF-8 bytes) is not a report row

# What a column name looks like: only such header cells are ever logged or stored by name.
COLUMN_NAME = re.compile(r"[a-z0-9-]{1,64}")

_LINE_BREAK = re.compile(b"\r\n|\r|\n")
_TAB = b"\t"


class TsvFilter:
    """Keeps the allowlisted columns of a UTF-8 TSV in header order, and only rows of the header's width.

    A row is mapped to columns by position, so a row with more or fewer fields than the header (a tab
    or a line break typed into a product name or a buyer's return comment) would move data between
    columns: such rows are dropped and counted (`malformed`), never padded nor cut. A line break is
    LF, CRLF or a lone CR (what universal-newline readers split on), so no CR is ever stored and every
    reader sees the stored rows alike. Blank lines carry no field and are skipped (`blank`). Output
    lines end in LF.
    """

    def __init__(self, keep: tuple[str, ...]) -> None:
        self._keep = frozenset(name.strip() for name in keep)
        self._carry = b""
        self._header_seen = False
        self._width = 0
        self._pattern: re.Pattern[bytes] | None = None  # None: every column is kept
        # The same columns, faster, for batches whose lines all end in LF, or all in CRLF (see _rows).
        self._quick_lf: re.Pattern[bytes] | None = None
        self._quick_crlf: re.Pattern[bytes] | None = None
        self._template = b""
        self._pick: Callable[[list[bytes]], bytes] = _TAB.join
        self.rows = 0
        self.malformed = 0
        self.blank = 0
        self.dropped: tuple[str, ...] = ()
        self.dropped_unnamed = 0

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        cut = data.rfind(b"\n")
        if cut < 0:
            self._carry += data
            if len(self._carry) > MAX_LINE:
                raise DocumentCorrupt("a line longer than 8 MiB")
            return b""
        lines = self._carry + data[:cut + 1] if self._carry else data[:cut + 1]
        self._carry = data[cut + 1:]
        return self._lines(lines)

    def finish(self) -> bytes:
        last, self._carry = self._carry, b""
        # The last line had no line break: it gets none (cosmetic; every row before it ends in LF).
        return self._lines(last + b"\n").removesuffix(b"\n") if last else b""

    def _lines(self, data: bytes) -> bytes:
        """Complete lines, each ending in a line break, the last one in LF; output likewise."""
        if self._header_seen:
            return self._rows(data)
        end = _LINE_BREAK.search(data)
        assert end is not None  # data ends in LF
        return self._header(data[:end.start()]) + b"\n" + self._rows(data[end.end():])

    def _header(self, line: bytes) -> bytes:
        """Is the first line a header? It must name at least one kept column (a data row does not, nor
        a blank line, nor a header in a language the allowlist does not speak: storing rows of no
        column would look like success), and name no kept column twice (which position would it be?)."""
        self._header_seen = True
        cells = line.decode("utf-8").split("\t")
        names = [cell.strip() for cell in cells]
        kept = tuple(i for i, name in enumerate(names) if name in self._keep)
        if not kept:
            raise DocumentCorrupt("the first line is not a header: it names none of the kept columns")
        if len({names[i] for i in kept}) < len(kept):
            raise DocumentCorrupt("the header names a kept column twice")
        wanted = set(kept)
        dropped = [name for i, name in enumerate(names) if i not in wanted]
        self.dropped = tuple(name for name in dropped if COLUMN_NAME.fullmatch(name))
        self.dropped_unnamed = len(dropped) - len(self.dropped)
        self._width = len(cells)
        if len(kept) < len(cells):
            self._pattern, self._template = _row_pattern(len(cells), kept)
            self._quick_lf, _ = _row_pattern(len(cells), kept, quick=True, line_end="$")
            self._quick_crlf, _ = _row_pattern(len(cells), kept, quick=True, line_end="\r$")
            if len(kept) == 1:
                only = kept[0]
                self._pick = lambda fields: fields[only]
            else:
                pick = itemgetter(*kept)
                self._pick = lambda fields: _TAB.join(pick(fields))
        return "\t".join(names[i] for i in kept).encode("utf-8")  # the allowlist's own spelling

    def _rows(self, data: bytes) -> bytes:
        """Rows of complete lines (each ending in a line break, the last one in LF), each followed by
        LF. The fast paths take batches in which every line is well-formed; the rest goes the careful way."""
        if not data:
            return b""
        if self._pattern is not None:
            # Usually the whole batch is well-formed and ends its lines all in LF or all in CRLF. Then a
            # pattern whose fields only look for the next tab (a tight loop in the regex engine) cuts
            # the columns. Such a pattern could match across a line break, but a match always starts at
            # a line start and ends at a line end: as many matches as lines means one match per line,
            # every line of the header's width. The CRLF pattern requires the CR, so as many CRs as
            # lines means no CR elsewhere.
            line_count, carriage_returns = data.count(b"\n"), data.count(b"\r")
            quick = (self._quick_lf if not carriage_returns
                     else self._quick_crlf if carriage_returns == line_count else None)
            if quick is not None:
                out, matched = quick.subn(self._template, data)
                if matched == line_count:
                    self.rows += matched
                    return out
            # One regular-expression pass over the whole batch, in C: it matches a line only when the
            # line has exactly the header's field count (and no CR but its CRLF's), so the batch is done
            # when every line matched. The LFs stay where they are.
            out, matched = self._pattern.subn(self._template, data)
            if matched == data.count(b"\n"):
                self.rows += matched
                return out
        else:
            # Every column kept: nothing to rewrite but line endings; each line's tabs are still counted.
            plain = data.replace(b"\r\n", b"\n")
            lines = plain.split(b"\n")
            lines.pop()  # after the last LF
            tabs = self._width - 1
            if (b"\r" not in plain and list(map(bytes.count, lines, repeat(_TAB))).count(tabs) == len(lines)
                    and (tabs or b"" not in lines)):
                self.rows += len(lines)
                return plain
        return self._checked_rows(data)

    def _checked_rows(self, data: bytes) -> bytes:
        """The careful way, line by line: blank lines skipped, lines of another width dropped."""
        out: list[bytes] = []
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        lines.pop()  # after the last LF
        for line in lines:
            if not line:
                self.blank += 1
                continue
            fields = line.split(_TAB)
            if len(fields) != self._width:
                self.malformed += 1  # counted only: neither its content nor its line number goes anywhere
                continue
            out.append(line if self._pattern is None else self._pick(fields))
        self.rows += len(out)
        return b"\n".join(out) + b"\n" if out else b""


def _row_pattern(width: int, kept: tuple[int, ...], *, quick: bool = False,
                 line_end: str = "\r?$") -> tuple[re.Pattern[bytes], bytes]:
    """A pattern matching one line of exactly `width` (>= 2) fields (and its CR), capturing each run of
    kept adjacent columns, and the template that joins the runs with tabs.

    `quick`: every field but the last is whatever comes before the next tab (`[^\t]*`, which the regex
    engine scans in a tight loop, three times as fast as a set of characters), so a match may span
    lines: only for the counting check of `TsvFilter._rows`. `line_end`: what ends the line."""
    field = "[^\t]*" if quick else "[^\t\r\n]*"
    wanted = set(kept)
    pieces: list[str] = []
    start = 0
    while start < width:
        end = start
        while end < width and (end in wanted) == (start in wanted):
            end += 1
        fields = [field] * (end - start)
        if end == width:
            fields[-1] = "[^\t\r\n]*"
        run = "\t".join(fields)
        pieces.append(f"({run})" if start in wanted else run)
        start = end
    groups = sum(1 for piece in pieces if piece.startswith("("))
    template = "\t".join(f"\\g<{n}>" for n in range(1, groups + 1))
    return re.compile(("^" + "\t".join(pieces) + line_end).encode(), re.MULTILINE), template.encode()


class LineCounter:
    """Counts lines of text passed through verbatim (the first one is the header, unless `header=False`:
    JSON Lines, where every line is a row)."""

    def __init__(self, header: bool = True) -> None:
        self._header = header
        self.newlines = 0
        self._open_line = False

    def feed(self, data: bytes) -> bytes:
        if data:
            self.newlines += data.count(b"\n")
            self._open_line = not data.endswith(b"\n")
        return data

    @property
    def rows(self) -> int:
        return max(self.newlines + (1 if self._open_line else 0) - (1 if self._header else 0), 0)
