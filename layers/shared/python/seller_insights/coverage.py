"""Coverage cursors: what of each (connection, marketplace scope, report type) is stored, and what to ask next.

A cursor lives in its connection's PLAN# item (`coverage.{type}` or `coverage.{type}#{marketplace}`), so
every change to it is one conditional write on the plan's `version` (report_jobs.PlanRepository).

    covered_from ─────────── covered_until          everything in between is stored or confirmed empty
    ◀── backfill, newest first      live windows, oldest first ──▶ aligned present

Windows are planned from the cursor, never from "now": after any outage every missed hour or day is
requested, in order. A planned window is remembered (`windows`, keyed by its end) until its job ends: DONE
or NO_DATA marks it done, and a cursor moves only over done windows that touch it, so windows that finish
out of order never leave a hole behind the cursor. FAILED marks it failed: retried (as a new pull, a new
job id) a day later; ENDED (the connection is gone) changes nothing. A re-sent window keeps its bounds,
hence its job id and its S3 key.

Backfill runs newest-to-oldest, behind the live windows: the most recent history is what a seller looks
at first, the covered range stays one interval ending at the live edge (so `covered_until` alone tells
freshness, also during a backfill), and history about to pass Amazon's horizon is the least valuable.

SNAPSHOT types have no history: a missed run cannot be fetched later, so only the current run is planned
and the cursor is the last stored run. DISCOVERED (settlement) asks getReports for everything created
since its cursor less the lookback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from seller_insights.report_catalog import ReportSpec, WindowKind

PLANNED, DONE, FAILED = "planned", "done", "failed"
# A planned window whose job has not ended after this long is sent again (same job id: the fetcher drops
# the copy of a live job and adopts an orphaned one).
RESEND_AFTER = 6 * 3600
# A FAILED window is tried again (a new pull) after this long.
RETRY_AFTER = 24 * 3600
# getReports finds reports created at most 90 days ago (Reports API model, createdSince).
DISCOVERY_HORIZON = 90 * 86400 - 3600
# A cursor holding this many unfinished windows (a type that keeps failing) plans no new ones until some
# end: it bounds the PLAN# item (DynamoDB's 400 KB item limit; ~60 bytes a window, dozens of cursors), and
# the cursor's lag, alarmed, says so.
MAX_OPEN_WINDOWS = 100
DAY = 86400


def key_of(report_type: str, scope: str | None) -> str:
    return f"{report_type}#{scope}" if scope else report_type


def iso_of(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def epoch_of(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def aligned(epoch: int, step: int) -> int:
    return epoch - epoch % step


@dataclass
class Window:
    start: int
    end: int
    state: str = PLANNED
    at: int = 0  # when it was (last) sent, or when it failed
    tries: int = 0  # 0: the first pull; n: the n-th retry after FAILED (pull "r{n}")
    label: str | None = None  # a window fetched again (an operator's backfill): its pull, "b{epoch}"

    @property
    def pull(self) -> str | None:
        if self.label:
            return f"{self.label}r{self.tries}" if self.tries else self.label
        return f"r{self.tries}" if self.tries else None


@dataclass
class Cursor:
    report_type: str
    scope: str | None  # the marketplace of a per-marketplace cursor; None: all the connection's marketplaces
    covered_from: int
    covered_until: int
    target: int  # the backfill goes back to here (covered_from == target: no backfill left)
    stop: int | None = None  # forward planning ends here (a marketplace that joined a shared type late)
    last_stored_at: int | None = None
    restated: int = 0  # the day (epoch) whose restatement pulls were last planned
    marketplaces: list[str] = field(default_factory=list)  # shared cursor: marketplaces its windows carry
    windows: dict[int, Window] = field(default_factory=dict)  # by end
    since: int = 0  # the aligned present when the cursor was made (its lag counts from there at most)
    # An operator's backfill (`rewind`): windows ending at or before `until` are fetched again as pull `pull`.
    refetch: tuple[int, str] | None = None

    @property
    def key(self) -> str:
        return key_of(self.report_type, self.scope)

    # --- storage -------------------------------------------------------------------------------

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"type": self.report_type, "from": self.covered_from, "until": self.covered_until,
                                "target": self.target, "restated": self.restated, "since": self.since,
                                "windows": {str(end): [w.start, w.state, w.at, w.tries, *([w.label] if w.label else [])]
                                            for end, w in self.windows.items()}}
        if self.refetch is not None:
            item["refetch"] = {"until": self.refetch[0], "pull": self.refetch[1]}
        for name, value in (("scope", self.scope), ("stop", self.stop), ("stored", self.last_stored_at)):
            if value is not None:
                item[name] = value
        if self.marketplaces:
            item["marketplaces"] = list(self.marketplaces)
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Cursor:
        windows = {int(end): Window(int(v[0]), int(end), str(v[1]), int(v[2]), int(v[3]),
                                    str(v[4]) if len(v) > 4 and v[4] else None)
                   for end, v in item.get("windows", {}).items()}
        refetch = item.get("refetch")
        return cls(report_type=str(item["type"]), scope=item.get("scope"), covered_from=int(item["from"]),
                   covered_until=int(item["until"]), target=int(item["target"]),
                   stop=int(item["stop"]) if item.get("stop") is not None else None,
                   last_stored_at=int(item["stored"]) if item.get("stored") is not None else None,
                   restated=int(item.get("restated", 0)), marketplaces=list(item.get("marketplaces", [])),
                   windows=windows, since=int(item.get("since", 0)),
                   refetch=(int(refetch["until"]), str(refetch["pull"])) if refetch else None)

    # --- the fetcher's side: a job ended -------------------------------------------------------

    def finish(self, spec: ReportSpec, end: int, pull: str | None, status: str, now: int) -> bool:
        """Record how the job of the window ending at `end` ended; True when the cursor changed.
        `status`: DONE (stored), NO_DATA (confirmed empty), or FAILED."""
        changed = False
        if status == "DONE":
            self.last_stored_at, changed = now, True
        if pull and pull.startswith("s"):  # a restatement pull: the window was covered already
            return changed
        window = self.windows.get(end)
        if window is None or window.pull != pull or window.state != PLANNED:
            return changed  # already merged, or a job of an earlier pull
        if status in ("DONE", "NO_DATA"):
            window.state = DONE
            self.settle(spec)
        else:
            window.state, window.at = FAILED, now
        return True

    def settle(self, spec: ReportSpec) -> None:
        """Move the cursor over every done window that touches it (and only those)."""
        if spec.window is WindowKind.SNAPSHOT:
            for end, window in sorted(self.windows.items()):
                if window.state == DONE:
                    self.covered_until = max(self.covered_until, end)
                    del self.windows[end]
            return
        moved = True
        while moved:
            moved = False
            for end, window in list(self.windows.items()):
                if window.state != DONE:
                    continue
                if window.start == self.covered_until:
                    self.covered_until, moved = end, True
                elif end == self.covered_from:
                    self.covered_from, moved = window.start, True
                else:
                    continue
                del self.windows[end]
        if self.refetch is not None and self.covered_until >= self.refetch[0]:
            self.refetch = None  # fetched again up to where it had been

    # --- the planner's side ------------------------------------------------------------------

    def live_windows(self, spec: ReportSpec, now: int) -> Iterator[Window]:
        """New windows from the forward frontier up to the aligned present (or `stop`), oldest first."""
        if len(self.windows) >= MAX_OPEN_WINDOWS:
            return
        cadence = int(spec.cadence.total_seconds())
        limit = aligned(now, cadence)
        if self.stop is not None:
            limit = min(limit, self.stop)
        ahead = [end for end, window in self.windows.items() if window.start >= self.covered_until]
        frontier = max([self.covered_until, *ahead])
        if frontier >= limit:
            return
        if spec.window is WindowKind.SNAPSHOT:  # a missed run cannot be fetched later: only the current one
            yield Window(max(frontier, limit - cadence), limit)
            return
        if spec.window is WindowKind.DISCOVERED:
            yield Window(frontier, limit)
            return
        step = piece_length(spec)
        start = frontier
        while start < limit:
            end = min(limit, start + step)
            again = self.refetch is not None and end <= self.refetch[0]
            yield Window(start, end, label=self.refetch[1] if again and self.refetch else None)
            start = end

    def backfill_windows(self, spec: ReportSpec, now: int, backfill_days: int) -> Iterator[Window]:
        """History not yet planned, newest first, down to the target (never past Amazon's horizon)."""
        if spec.window not in (WindowKind.UPDATED, WindowKind.DAY) or len(self.windows) >= MAX_OPEN_WINDOWS:
            return
        floor = self.floor(spec, now, backfill_days)
        frontier = min([self.covered_from, *(w.start for e, w in self.windows.items() if e <= self.covered_from)])
        step = piece_length(spec)
        end = frontier
        while end > floor:
            start = max(floor, end - step)
            yield Window(start, end)
            end = start

    def floor(self, spec: ReportSpec, now: int, backfill_days: int) -> int:
        cadence = int(spec.cadence.total_seconds())
        return max(self.target, aligned(now, cadence) - backfill_days * DAY)

    def backfill_left(self, spec: ReportSpec, now: int, backfill_days: int) -> int:
        """Seconds of history still to be covered."""
        if spec.window not in (WindowKind.UPDATED, WindowKind.DAY):
            return 0
        return max(0, self.covered_from - self.floor(spec, now, backfill_days))

    def take_restatements(self, spec: ReportSpec, now: int) -> list[Window]:
        """Once a day (the day is then marked as done): the `restate_days` completed days before yesterday
        that are covered."""
        today = aligned(now, DAY)
        if not spec.restate_days or self.restated >= today:
            return []
        self.restated = today
        days = [Window(today - (n + 2) * DAY, today - (n + 1) * DAY) for n in range(spec.restate_days)]
        return [d for d in reversed(days) if self.covered_from <= d.start and d.end <= self.covered_until]

    def resend(self, now: int) -> list[Window]:
        """Planned windows whose job has not ended for long, and failed windows due for a retry."""
        due = []
        for window in sorted(self.windows.values(), key=lambda w: w.start):
            if window.state == PLANNED and now - window.at >= RESEND_AFTER:
                due.append(window)
            elif window.state == FAILED and now - window.at >= RETRY_AFTER:
                window.state, window.tries = PLANNED, window.tries + 1
                due.append(window)
        for window in due:
            window.at = now
        return due

    def wake_at(self) -> int | None:
        """When a window of this cursor is next due to be sent again (None: none waits)."""
        times = [w.at + (RESEND_AFTER if w.state == PLANNED else RETRY_AFTER) for w in self.windows.values()]
        return min(times) if times else None

    def outstanding(self) -> int:
        return sum(1 for w in self.windows.values() if w.state == PLANNED)

    def lag_periods(self, spec: ReportSpec, now: int) -> float:
        """Whole cadence periods the cursor is behind, beyond the period that has just become due. A new
        cursor is not behind for the history it has yet to fetch (settlement discovery starts 90 days back)."""
        cadence = int(spec.cadence.total_seconds())
        # A backfill fetching windows again is not a lag: they were fetched once, up to refetch's end.
        edge = max(self.covered_until, self.since - cadence, self.refetch[0] if self.refetch else 0)
        return max(0.0, (aligned(now, cadence) - edge) / cadence - 1)

    def rewind(self, spec: ReportSpec, since: int, label: str) -> bool:
        """An operator's backfill: fetch everything from `since` (aligned down to the type's piece) to the
        present again, as pull `label` (new job ids: the fetcher would otherwise find the first pulls done),
        oldest first at the planner's pace. History never fetched below the covered range keeps its plan;
        windows in flight after `since` are forgotten (their jobs end without moving the cursor). False for
        a type without history (SNAPSHOT, settlement) or a history-only cursor (`stop`)."""
        if spec.window not in (WindowKind.UPDATED, WindowKind.DAY) or self.stop is not None:
            return False
        start = aligned(since, DAY if spec.window is WindowKind.DAY else int(spec.cadence.total_seconds()))
        frontier = max([self.covered_until, *self.windows])
        start = min(start, self.covered_until)  # never skip what was not fetched yet
        self.windows = {end: w for end, w in self.windows.items() if end <= start and w.start < self.covered_from}
        self.refetch = (max(frontier, self.refetch[0] if self.refetch else 0), label)
        self.covered_until = start
        if start < self.covered_from:  # history not fetched yet down there: all of it is fetched forwards now
            self.covered_from = start
            self.windows = {}
        self.target = min(self.target, start)
        return True

    def add(self, window: Window, now: int) -> None:
        window.at = now
        self.windows[window.end] = window


def piece_length(spec: ReportSpec) -> int:
    """The longest window one job asks for, without its lookback: one day for DAY types; else the type's
    maximum window less the lookback, in whole days (or cadences when shorter than a day)."""
    cadence = int(spec.cadence.total_seconds())
    if spec.window is WindowKind.DAY:
        return DAY
    if spec.max_window is None:
        return 10 * 365 * DAY
    room = int((spec.max_window - spec.lookback).total_seconds())
    unit = DAY if room >= DAY else cadence
    return max(cadence, room - room % unit)


def new_cursor(spec: ReportSpec, scope: str | None, now: int, backfill_days: int, *,
               stop: int | None = None) -> Cursor:
    """A cursor whose first live window is the last complete period (for a late marketplace of a shared
    type, `stop`: history only, up to where the shared cursor took the marketplace in)."""
    cadence = int(spec.cadence.total_seconds())
    present = aligned(now, cadence)
    if spec.window is WindowKind.DISCOVERED:  # discovery looks back from its cursor: history is its first window
        anchor = present - max(cadence, backfill_days * DAY)
        return Cursor(spec.report_type, scope, anchor, anchor, anchor, since=present)
    anchor = present - cadence if stop is None else stop
    target = anchor if spec.window is WindowKind.SNAPSHOT else min(anchor, present - backfill_days * DAY)
    return Cursor(spec.report_type, scope, anchor, anchor, target, stop=stop, since=present)


def request_window(spec: ReportSpec, window: Window) -> tuple[str, str]:
    """What the job asks Amazon for: the window, less the lookback (settlement: no older than getReports
    reaches from the window's end, which is when it is planned). The same window, the same request."""
    start = window.start - int(spec.lookback.total_seconds())
    if spec.window is WindowKind.DISCOVERED:
        start = max(start, window.end - DISCOVERY_HORIZON)
    return iso_of(start), iso_of(window.end)


def worst_lags(cursors: Iterable[Cursor], specs: Iterable[ReportSpec], marketplace_ids: list[str], now: int,
               lags: dict[str, float]) -> None:
    """Raise `lags[type]` to the worst lag (in periods) of a connection's cursors of each type in `specs`: its
    live cursors only (not the history-only cursor of a late marketplace, nor one of a marketplace that left).
    The planner's `ReportLagPeriods` and the fleet census count the same way."""
    by_type = {spec.report_type: spec for spec in specs}
    for cursor in cursors:
        report_spec = by_type.get(cursor.report_type)
        if (report_spec is None or cursor.stop is not None
                or (cursor.scope and cursor.scope not in marketplace_ids)):
            continue
        lag = cursor.lag_periods(report_spec, now)
        lags[cursor.report_type] = max(lags.get(cursor.report_type, 0.0), lag)


def view(cursors: dict[str, Any]) -> list[dict[str, Any]]:
    """The operator's view of a plan's cursors (GET /admin/sellers/{id}, ops show): per type and scope."""
    rows = []
    for key in sorted(cursors):
        cursor = Cursor.from_item(cursors[key])
        rows.append({
            "report_type": cursor.report_type, "marketplace_id": cursor.scope,
            "covered_from": iso_of(cursor.covered_from), "covered_until": iso_of(cursor.covered_until),
            "backfill_left_days": round(max(0, cursor.covered_from - cursor.target) / DAY, 2),
            "last_stored_at": iso_of(cursor.last_stored_at) if cursor.last_stored_at else None,
            "windows_in_flight": cursor.outstanding(),
            "windows_failed": sum(1 for w in cursor.windows.values() if w.state == FAILED),
            "history_only": cursor.stop is not None,
        })
    return rows
