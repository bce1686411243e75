"""What the product asked Amazon to produce: every accepted createReport and createQuery, in order.

Tests and benches read it (`GET /_emulator/requests`) to check which (seller, type, marketplaces,
window) were requested, how often, and that nothing was asked twice.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from datetime import datetime

from .clock import iso


@dataclass(frozen=True)
class RequestEntry:
    operation: str  # createReport or createQuery
    selling_partner_id: str
    region: str
    kind: str  # the report type, or the Data Kiosk query's name (e.g. salesAndTrafficByDate)
    marketplace_ids: tuple[str, ...]
    start: str | None  # dataStartTime / startDate
    end: str | None
    at: str  # emulator time of the request

    def as_dict(self) -> dict[str, object]:
        body = asdict(self)
        body["marketplace_ids"] = list(self.marketplace_ids)
        return body


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[RequestEntry] = []

    def record(self, *, operation: str, seller: str, region: str, kind: str, marketplace_ids: list[str],
               start: str | None, end: str | None, at: datetime) -> None:
        entry = RequestEntry(operation, seller, region, kind, tuple(marketplace_ids), start, end, iso(at))
        with self._lock:
            self._entries.append(entry)

    def entries(self, *, operation: str | None = None, seller: str | None = None) -> list[RequestEntry]:
        with self._lock:
            return [e for e in self._entries
                    if (operation is None or e.operation == operation)
                    and (seller is None or e.selling_partner_id == seller)]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
