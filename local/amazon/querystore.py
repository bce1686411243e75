"""The Data Kiosk queries the emulator holds: creation, the status progression on the emulator clock,
seeded outcomes, JSONL documents and DATA_KIOSK_QUERY_PROCESSING_FINISHED notifications (Data Kiosk API
2023-11-15 and its notification model).

Timings vary per query, as Amazon's do: a query ends `min_seconds` to `max_seconds` after its creation
(default 2 minutes to 3 hours, log-uniform), the first 5 to 25% of it IN_QUEUE, the rest IN_PROGRESS,
drawn from a random generator seeded by the store's `timing_seed` and the query's rank (1 for the first
query since the last reset), so a run that makes the same calls gets the same timings. Nothing runs
in the background: statuses are worked out whenever something looks and whenever the clock moves; the
moment a query becomes terminal its notification goes, once, to the seller's subscription destination
in the query's region (none without a subscription). A DONE query with no data has no dataDocumentId;
a FATAL one has an errorDocumentId (a JSON error document); a CANCELLED one has neither.
"""

from __future__ import annotations

import json
import logging
import math
import random
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from . import kioskquery
from .documents import Document, DocumentStore
from .marketplaces import Region
from .notifications import NotificationError, Notifier, envelope

logger = logging.getLogger(__name__)

QUERY_FINISHED = "DATA_KIOSK_QUERY_PROCESSING_FINISHED"
QUERY_PAYLOAD_VERSION = "2023-11-15"
RETENTION = timedelta(days=30)  # the schema's @resultRetention P30D on every field
QUEUED_SHARE = (0.05, 0.25)  # of the time from creation to the end
DEFAULT_PROCESSING = (120.0, 3 * 3600.0)
JSONL = "application/x-ndjson"
JSON_UTF8 = "application/json; charset=utf-8"


class QueryStatus(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"
    CANCELLED = "CANCELLED"
    FATAL = "FATAL"


TERMINAL = frozenset({QueryStatus.DONE, QueryStatus.CANCELLED, QueryStatus.FATAL})
OUTCOMES = ("DONE", "CANCELLED", "FATAL", "NO_DATA")


@dataclass(frozen=True)
class QuerySeed:
    """How the seller's next query ends (POST /_emulator/queries/outcomes)."""

    outcome: str  # DONE, CANCELLED, FATAL or NO_DATA (DONE without a document)
    processing_seconds: float | None = None  # overrides the drawn processing time


@dataclass
class Query:
    query_id: str
    seller: str
    region: Region
    query: str
    parsed: kioskquery.ParsedQuery
    created: datetime
    queued_for: timedelta
    processing_for: timedelta
    seed: QuerySeed | None = None
    status: QueryStatus = QueryStatus.IN_QUEUE
    processing_start: datetime | None = None
    processing_end: datetime | None = None
    data_document_id: str | None = None
    error_document_id: str | None = None


class QueryStore:
    def __init__(
        self,
        now: Callable[[], datetime],
        documents: DocumentStore,
        notifier: Notifier,
        application_id: Callable[[], str],
        on_notified: Callable[[str], None],
        *,
        subscription: Callable[[str, Region], Any] | None = None,
        timing_seed: int = 0,
    ) -> None:
        self._now = now
        self._documents = documents
        self.notifier = notifier
        self._application_id = application_id
        self._on_notified = on_notified
        # The seller's DATA_KIOSK_QUERY_PROCESSING_FINISHED subscription in a region, or None.
        self._subscription = subscription or (lambda seller, region: None)
        self._lock = threading.RLock()
        self._timing_seed = timing_seed
        self._processing = DEFAULT_PROCESSING
        self._queries: dict[str, Query] = {}
        self._created = 0  # queries since the last reset: the rank that seeds each one's timing
        self._seeds: dict[str, deque[QuerySeed]] = {}
        self._next_id = 70_000_000_000 + secrets.randbelow(10**9)

    def clear(self) -> None:
        with self._lock:
            self._queries.clear()
            self._seeds.clear()
            self._created = 0
            self._processing = DEFAULT_PROCESSING

    def set_timing(self, *, seed: int | None = None, min_seconds: float | None = None,
                   max_seconds: float | None = None) -> dict[str, float]:
        """Reseeds and/or narrows the range of later queries' times from creation to their end."""
        with self._lock:
            if seed is not None:
                self._timing_seed = seed
            low = self._processing[0] if min_seconds is None else min_seconds
            high = self._processing[1] if max_seconds is None else max_seconds
            if not 0 < low <= high:
                raise ValueError("processing times need 0 < min_seconds <= max_seconds")
            self._processing = (low, high)
            return {"seed": self._timing_seed, "min_seconds": low, "max_seconds": high}

    def seed(self, seller: str, seed: QuerySeed) -> int:
        with self._lock:
            queue = self._seeds.setdefault(seller, deque())
            queue.append(seed)
            return len(queue)

    # -- queries ----------------------------------------------------------------------------------

    def create(self, seller: str, region: Region, query: str, parsed: kioskquery.ParsedQuery) -> Query:
        with self._lock:
            self._next_id += secrets.randbelow(900) + 100
            query_id = str(self._next_id)
            self._created += 1
            timing = random.Random(f"{self._timing_seed}|{self._created}")  # noqa: S311 - emulated timings
            low, high = self._processing
            total = math.exp(timing.uniform(math.log(low), math.log(high)))
            queue = self._seeds.get(seller)
            seed = queue.popleft() if queue else None
            if seed is not None and seed.processing_seconds is not None:
                total = seed.processing_seconds
            queued = total * timing.uniform(*QUEUED_SHARE)
            created = Query(query_id, seller, region, query, parsed, self._now(),
                            queued_for=timedelta(seconds=queued), processing_for=timedelta(seconds=total - queued),
                            seed=seed)
            self._queries[query_id] = created
            return created

    def get(self, seller: str, query_id: str) -> Query | None:
        self.process_due()
        with self._lock:
            found = self._queries.get(query_id)
            if found is None or found.seller != seller or self._now() - found.created > RETENTION:
                return None
            return found

    def find(self, seller: str, region: Region) -> list[Query]:
        """The seller's queries still retained, newest first."""
        self.process_due()
        with self._lock:
            cutoff = self._now() - RETENTION
            mine = [q for q in self._queries.values()
                    if q.seller == seller and q.region == region and q.created >= cutoff]
        return sorted(mine, key=lambda q: (q.created, int(q.query_id)), reverse=True)

    def cancel(self, seller: str, query_id: str) -> QueryStatus | None:
        """Cancels a query IN_QUEUE or IN_PROGRESS (a CANCELLED one: no-op); its status before, None if unknown."""
        self.process_due()
        with self._lock:
            found = self._queries.get(query_id)
            if found is None or found.seller != seller:
                return None
            before = found.status
            if before not in (QueryStatus.IN_QUEUE, QueryStatus.IN_PROGRESS):
                return before
            found.status = QueryStatus.CANCELLED
            found.processing_end = self._now()
        self._notify([found])
        return before

    def document(self, seller: str, document_id: str) -> Document | None:
        document = self._documents.get(document_id)
        return document if document is not None and document.seller == seller else None

    # -- progression --------------------------------------------------------------------------------

    def process_due(self) -> None:
        now = self._now()
        finished: list[Query] = []
        with self._lock:
            for query in self._queries.values():
                if query.status in TERMINAL:
                    continue
                started = query.created + query.queued_for
                if now < started:
                    continue
                query.status = QueryStatus.IN_PROGRESS
                query.processing_start = started
                ended = started + query.processing_for
                if now < ended:
                    continue
                query.processing_end = ended
                self._end(query, ended)
                finished.append(query)
        self._notify(finished)

    def _end(self, query: Query, at: datetime) -> None:
        outcome = query.seed.outcome if query.seed else "DONE"
        if outcome == "CANCELLED":
            query.status = QueryStatus.CANCELLED
            return
        if outcome == "FATAL":
            query.status = QueryStatus.FATAL
            error = {"errorMessage": "The query could not be processed due to an internal error. Please retry."}
            query.error_document_id = self._documents.add(
                query.seller, query.region, JSON_UTF8, gzip=False, label_gzip=False,
                body=json.dumps(error).encode()).document_id
            return
        query.status = QueryStatus.DONE
        found = [] if outcome == "NO_DATA" else kioskquery.rows(query.parsed, query.seller, at)
        if found:
            body = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in found).encode()
            query.data_document_id = self._documents.add(query.seller, query.region, JSONL, gzip=False,
                                                         label_gzip=False, body=body).document_id

    # -- notifications ------------------------------------------------------------------------------

    def _notify(self, finished: list[Query]) -> None:
        if not finished or not self.notifier.enrolled:
            return
        for query in finished:
            subscription = self._subscription(query.seller, query.region)
            if subscription is None:
                continue  # the seller has no DATA_KIOSK_QUERY_PROCESSING_FINISHED subscription in the region
            notification = envelope(
                QUERY_FINISHED, finished_payload(query), now=self._now(),
                event_time=query.processing_end, application_id=self._application_id(),
                subscription_id=subscription.subscription_id, notification_version=QUERY_PAYLOAD_VERSION,
                payload_version=QUERY_PAYLOAD_VERSION)
            try:
                self.notifier.send(notification)
            except NotificationError as exc:
                logger.warning("query notification not delivered: %s", exc)
                continue
            self._on_notified(QUERY_FINISHED)


def finished_payload(query: Query) -> dict[str, Any]:
    """DataKioskQueryProcessingFinishedNotification's payload; document ids only when there are any."""
    payload: dict[str, Any] = {"accountId": f"amzn1.merchant.o.{query.seller}", "queryId": query.query_id,
                               "query": query.query, "processingStatus": query.status.value}
    if query.data_document_id:
        payload["dataDocumentId"] = query.data_document_id
    if query.error_document_id:
        payload["errorDocumentId"] = query.error_document_id
    return payload
