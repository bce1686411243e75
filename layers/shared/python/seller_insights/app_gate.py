"""The incident switch ("app gate"): one item of the connections table that `ops incident contain` writes and
`ops incident restore` deletes (docs/incident-response.md).

While the item exists, with its flags:
- `consent = closed`: the consent routes (/connect, /login, /callback) answer a maintenance page (503 with
  Retry-After) and take no authorization (oauth_callback);
- `refresh = blocked`: no refresh token is opened (`AccessTokenProvider` raises `RefreshBlocked` before it
  reads one): refreshes fail closed, the connection and its sealed token stay as they are.

The item lives in a table both duties already read by key (no new grant, no new resource). Its partition
key `APP#incident` can never be a seller's (`SELLER#...`), and it carries none of the sparse-index
attributes, so no finder sees it. A container reads it at most once per `CACHE_SECONDS` (product clock),
so a contain or a restore takes effect everywhere within that time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seller_insights import clock

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table

GATE_KEY = {"pk": "APP#incident", "sk": "GATE"}
CONSENT_CLOSED = "closed"
REFRESH_BLOCKED = "blocked"
CACHE_SECONDS = 5
# What the maintenance page asks browsers and clients to wait before trying again.
RETRY_AFTER_SECONDS = 1800


@dataclass(frozen=True)
class GateState:
    consent_closed: bool = False
    refresh_blocked: bool = False

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> GateState:
        if not item:
            return cls()
        return cls(consent_closed=item.get("consent") == CONSENT_CLOSED,
                   refresh_blocked=item.get("refresh") == REFRESH_BLOCKED)


class AppGate:
    """Reads the switch, cached for `cache_seconds`. A read that fails raises: the caller fails closed
    (its own work needs the same table anyway)."""

    def __init__(self, table: Table, cache_seconds: int = CACHE_SECONDS) -> None:
        self._table = table
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._state: GateState | None = None
        self._read_at = 0

    def state(self) -> GateState:
        now = clock.epoch_seconds()
        with self._lock:
            if self._state is not None and 0 <= now - self._read_at < self._cache_seconds:
                return self._state
        item = self._table.get_item(Key=GATE_KEY, ConsistentRead=True).get("Item")
        state = GateState.from_item(item)
        with self._lock:
            self._state, self._read_at = state, now
        return state

    def consent_closed(self) -> bool:
        return self.state().consent_closed

    def refresh_blocked(self) -> bool:
        return self.state().refresh_blocked
