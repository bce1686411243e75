"""The reports the emulator holds: creation, the status progression on the emulator clock, seeded
outcomes, documents and the REPORT_PROCESSING_FINISHED notifications (Reports API and its notification model).

A report waits IN_QUEUE for 30 s, is IN_PROGRESS until 90 s after its creation, then ends with its
outcome (DONE unless a seed said CANCELLED or FATAL). With realistic timings (`use_timings("realistic",
seed)`, control call `POST /_emulator/reports/timings`) each report draws its own, from a seeded generator:
queued 30 s to 15 minutes, processing 1 minute to 4 hours (most of them short, as Amazon's are).
Nothing runs in the background: a report's status is worked out whenever something looks at it and
whenever the emulator clock is advanced; the moment it becomes terminal its notification goes to the
report notification queue, once.
"""

from __future__ import annotations

import gzip as gzip_module
import logging
import math
import random
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from . import generators
from .documents import Document, DocumentStore
from .marketplaces import Region
from .notifications import (
    REPORT_FINISHED,
    REPORT_PAYLOAD_VERSION,
    NotificationError,
    Notifier,
    envelope,
    report_finished_payload,
)

logger = logging.getLogger(__name__)

QUEUED_FOR = timedelta(seconds=30)
FINISHED_AFTER = timedelta(seconds=90)
TIMINGS = ("fast", "realistic")
REALISTIC_QUEUED = (30.0, 15 * 60.0)  # seconds, drawn log-uniformly
REALISTIC_PROCESSING = (60.0, 4 * 3600.0)
RETENTION = timedelta(days=90)


class Status(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"
    CANCELLED = "CANCELLED"
    FATAL = "FATAL"


TERMINAL = frozenset({Status.DONE, Status.CANCELLED, Status.FATAL})


@dataclass(frozen=True)
class Seed:
    """How the next report of a type for a seller ends (POST /_emulator/reports/documents)."""

    outcome: Status
    marketplace_ids: tuple[str, ...] = ()
    content: bytes | None = field(default=None, repr=False)  # the document's plain bytes
    content_type: str | None = None
    gzip: bool | None = None  # compress before serving (default: the type's habit)
    label_gzip: bool | None = None  # what getReportDocument says (default: as served)
    generate_bytes: int | None = None  # a large generated flat file, streamed


@dataclass
class Report:
    report_id: str
    seller: str
    region: Region
    report_type: str
    marketplace_ids: tuple[str, ...]
    created: datetime
    data_start: datetime
    data_end: datetime
    seed: Seed | None = None
    status: Status = Status.IN_QUEUE
    processing_start: datetime | None = None
    processing_end: datetime | None = None
    document_id: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # the reportOptions the report honours
    queued_for: timedelta = QUEUED_FOR
    finished_after: timedelta = FINISHED_AFTER  # since creation


@dataclass(frozen=True)
class Finished:
    report_id: str
    seller: str
    region: Region
    report_type: str
    status: Status
    document_id: str | None
    at: datetime


class ReportStore:
    def __init__(
        self,
        now: Callable[[], datetime],
        documents: DocumentStore,
        notifier: Notifier,
        application_id: Callable[[], str],
        on_notified: Callable[[str], None],
        *,
        subscription: Callable[[str, Region], Any] | None = None,
    ) -> None:
        self._now = now
        self._documents = documents
        self.notifier = notifier
        self._application_id = application_id
        self._on_notified = on_notified
        # The seller's REPORT_PROCESSING_FINISHED subscription in a region (with `subscription_id`), or
        # None: Amazon notifies only sellers subscribed in the report's region.
        self._subscription = subscription or (lambda seller, region: None)
        self._lock = threading.RLock()
        self._reports: dict[str, Report] = {}
        self._seeds: dict[tuple[str, str], deque[Seed]] = {}
        self._next_id = 50_000_000_000 + secrets.randbelow(10**9)
        self._timings: random.Random | None = None  # None: the fast, fixed timings
        self._timings_seed: int | None = None

    def clear(self) -> None:
        with self._lock:
            self._reports.clear()
            self._seeds.clear()
            self._timings = self._timings_seed = None

    def use_timings(self, mode: str, seed: int = 0) -> None:
        """"fast" (30 s queued, done at 90 s: the default tests rely on) or "realistic" (drawn per report from
        a generator seeded with `seed`, so a run can be repeated)."""
        if mode not in TIMINGS:
            raise ValueError(f"timings must be one of {', '.join(TIMINGS)}")
        with self._lock:
            realistic = mode == "realistic"
            self._timings = random.Random(seed) if realistic else None  # noqa: S311 - timings, not secrets
            self._timings_seed = seed if realistic else None

    def timings(self) -> dict[str, Any]:
        with self._lock:
            return {"mode": "realistic" if self._timings else "fast", "seed": self._timings_seed}

    def _draw(self, low: float, high: float) -> timedelta:
        assert self._timings is not None
        return timedelta(seconds=round(math.exp(self._timings.uniform(math.log(low), math.log(high)))))

    # -- seeds ----------------------------------------------------------------------------------

    def seed(self, seller: str, report_type: str, seed: Seed, region: Region | None) -> int:
        """Queue a seed; a settlement seed with outcome DONE is a DONE report at once. Returns the queue length."""
        if report_type in generators.SETTLEMENT_TYPES:
            if region is None:
                raise ValueError("a settlement report needs marketplace_ids of one region")
            now = self._now()
            with self._lock:
                report = self._new(
                    seller, region, report_type, seed.marketplace_ids, start=now - timedelta(days=14), end=now
                )
                report.seed = seed
                report.status = seed.outcome
                report.processing_start = report.processing_end = now
                if seed.outcome in (Status.DONE, Status.FATAL):
                    report.document_id = self._document(report).document_id
                return 1
        with self._lock:
            queue = self._seeds.setdefault((seller, report_type), deque())
            queue.append(seed)
            return len(queue)

    # -- reports --------------------------------------------------------------------------------

    def _new(
        self, seller: str, region: Region, report_type: str, marketplace_ids: Sequence[str],
        *, start: datetime, end: datetime,
    ) -> Report:
        self._next_id += secrets.randbelow(900) + 100
        report = Report(
            str(self._next_id), seller, region, report_type, tuple(marketplace_ids), self._now(), start, end
        )
        if self._timings is not None:
            report.queued_for = self._draw(*REALISTIC_QUEUED)
            report.finished_after = report.queued_for + self._draw(*REALISTIC_PROCESSING)
        self._reports[report.report_id] = report
        return report

    def create(
        self, seller: str, region: Region, report_type: str, marketplace_ids: Sequence[str],
        *, start: datetime, end: datetime, options: dict[str, str] | None = None,
    ) -> Report:
        with self._lock:
            report = self._new(seller, region, report_type, marketplace_ids, start=start, end=end)
            report.options = dict(options or {})
            queue = self._seeds.get((seller, report_type))
            if queue:
                report.seed = queue.popleft()
            return report

    def get(self, seller: str, report_id: str) -> Report | None:
        """The report if it is this seller's (ids are unique only per seller), status up to date."""
        self.process_due()
        with self._lock:
            report = self._reports.get(report_id)
            if report is None or report.seller != seller or self._now() - report.created > RETENTION:
                return None
            return report

    def find(self, seller: str, region: Region) -> list[Report]:
        """The seller's reports of the last 90 days, newest first."""
        self.process_due()
        with self._lock:
            cutoff = self._now() - RETENTION
            mine = [
                r for r in self._reports.values()
                if r.seller == seller and r.region == region and r.created >= cutoff
            ]
        return sorted(mine, key=lambda r: (r.created, int(r.report_id)), reverse=True)

    def cancel(self, seller: str, report_id: str) -> Status | None:
        """Cancels an IN_QUEUE report; returns its status before (None: not found)."""
        self.process_due()
        with self._lock:
            report = self._reports.get(report_id)
            if report is None or report.seller != seller:
                return None
            before = report.status
            if before == Status.IN_QUEUE:
                report.status = Status.CANCELLED
                finished = self._finished(report, self._now())
            else:
                return before
        self._notify([finished])
        return before

    def document(self, seller: str, document_id: str) -> Document | None:
        document = self._documents.get(document_id)
        return document if document is not None and document.seller == seller else None

    # -- the progression ------------------------------------------------------------------------

    def process_due(self) -> None:
        """Moves every report to the status its age gives; notifies those that just finished."""
        now = self._now()
        finished: list[Finished] = []
        with self._lock:
            for report in self._reports.values():
                if report.status in TERMINAL:
                    continue
                age = now - report.created
                if age < report.queued_for:
                    continue
                report.processing_start = report.created + report.queued_for
                report.status = Status.IN_PROGRESS
                if age < report.finished_after:
                    continue
                report.processing_end = report.created + report.finished_after
                report.status = report.seed.outcome if report.seed else Status.DONE
                if report.status in (Status.DONE, Status.FATAL):
                    report.document_id = self._document(report).document_id
                finished.append(self._finished(report, report.processing_end))
        self._notify(finished)

    @staticmethod
    def _finished(report: Report, at: datetime) -> Finished:
        return Finished(report.report_id, report.seller, report.region, report.report_type, report.status,
                        report.document_id, at)

    def _document(self, report: Report) -> Document:
        seed = report.seed
        seller, region, kind = report.seller, report.region, report.report_type
        if seed is not None and seed.content is not None:
            gzip = True if seed.gzip is None else seed.gzip
            body = seed.content
            content_type = seed.content_type or generators.content_type_for(kind, report.marketplace_ids)
        elif report.status == Status.FATAL:
            gzip = False if seed is None or seed.gzip is None else seed.gzip
            body = generators.fatal_document(kind)
            content_type = generators.JSON_UTF8
        else:
            default_gzip = kind not in generators.SETTLEMENT_TYPES
            gzip = default_gzip if seed is None or seed.gzip is None else seed.gzip
            content_type = generators.content_type_for(kind, report.marketplace_ids)
            if seed is not None and seed.generate_bytes is not None:
                label = gzip if seed.label_gzip is None else seed.label_gzip
                return self._documents.add(seller, region, content_type, gzip=gzip, label_gzip=label,
                                           stream=_large(kind, report.marketplace_ids, seed.generate_bytes, gzip,
                                                         int(report.report_id)))
            if kind == generators.ORDERS_BY_UPDATE and report.data_start < report.data_end:
                # A window of the seller's order timeline, as it stood when the report was made (late data).
                body = generators.orders_by_update(seller, report.marketplace_ids, start=report.data_start,
                                                   end=report.data_end, as_of=report.created).body
            else:
                body = generators.generate(
                    kind, report.marketplace_ids, start=report.data_start, end=report.data_end,
                    seed=int(report.report_id), options=report.options,
                ).body
        label = gzip if seed is None or seed.label_gzip is None else seed.label_gzip
        served = _gzip(body) if gzip else body
        return self._documents.add(seller, region, content_type, gzip=gzip, label_gzip=label, body=served)

    # -- notifications ----------------------------------------------------------------------------

    def _notify(self, finished: list[Finished]) -> None:
        if not finished or not self.notifier.enrolled:
            return
        for done in finished:
            subscription = self._subscription(done.seller, done.region)
            if subscription is None:
                continue  # no REPORT_PROCESSING_FINISHED subscription in the report's region
            # Sent to the queue of the subscription's destination: locally every destination stands
            # for the registered report notification queue.
            notification = envelope(
                REPORT_FINISHED,
                report_finished_payload(done.seller, done.report_id, done.report_type, done.status.value,
                                        done.document_id),
                now=self._now(),
                event_time=done.at,
                application_id=self._application_id(),
                subscription_id=subscription.subscription_id,
                notification_version=REPORT_PAYLOAD_VERSION,
                payload_version=REPORT_PAYLOAD_VERSION,
            )
            try:
                self.notifier.send(notification)
            except NotificationError as exc:
                logger.warning("report notification not delivered: %s", exc)
                continue
            self._on_notified(REPORT_FINISHED)


def _gzip(body: bytes) -> bytes:
    return gzip_module.compress(body, mtime=0)


def _large(
    report_type: str, marketplace_ids: Sequence[str], total: int, gzip: bool, seed: int
) -> Callable[[bool], Iterator[bytes]]:
    def stream(truncated: bool) -> Iterator[bytes]:
        chunks = generators.stream_tsv(report_type, marketplace_ids, total, seed)
        if gzip:
            yield from generators.gzip_stream(chunks, total // 2 if truncated else None)
            return
        sent = 0
        for chunk in chunks:
            if truncated and sent + len(chunk) >= total // 2:
                yield chunk[: total // 2 - sent]
                return
            sent += len(chunk)
            yield chunk

    return stream
