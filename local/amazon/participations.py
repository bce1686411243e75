"""Which marketplaces a seller sells in: what getMarketplaceParticipations answers, per seller and region.

By default every seller of a region participates in its plausible subset of marketplaces
(`marketplaces.PARTICIPATIONS`, without suspended listings). A test changes that for one seller with
`POST /_emulator/participations` {"selling_partner_id", "region", "marketplaces": [{"country": "DE",
"is_participating": true, "has_suspended_listings": false}, ...]} (the list replaces the seller's answer,
in its order; `"marketplaces": null` goes back to the default), e.g. to make a seller leave or join a
marketplace between two checks (participations_control.py). `GET /_emulator/participations` lists the
sellers set this way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .marketplaces import PARTICIPATIONS, Region


@dataclass(frozen=True)
class Participation:
    country: str  # the marketplace's code in seller_insights.marketplaces (UK, not GB)
    is_participating: bool = True
    has_suspended_listings: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"country": self.country, "is_participating": self.is_participating,
                "has_suspended_listings": self.has_suspended_listings}


def default_participations(region: Region) -> tuple[Participation, ...]:
    return tuple(Participation(country) for country in PARTICIPATIONS[region])


class ParticipationBook:
    """Per (seller, region): the answer set by a test; else the region's default."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set: dict[tuple[str, Region], tuple[Participation, ...]] = {}

    def of(self, seller: str, region: Region) -> tuple[Participation, ...]:
        with self._lock:
            entries = self._set.get((seller, region))
        return default_participations(region) if entries is None else entries

    def set(self, seller: str, region: Region, entries: tuple[Participation, ...] | None) -> None:
        """`entries` None: back to the default. An empty tuple is an answer too (no marketplace at all)."""
        with self._lock:
            if entries is None:
                self._set.pop((seller, region), None)
            else:
                self._set[(seller, region)] = entries

    def listed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"selling_partner_id": seller, "region": region.value,
                     "marketplaces": [entry.as_dict() for entry in entries]}
                    for (seller, region), entries in sorted(self._set.items())]

    def clear(self) -> None:
        with self._lock:
            self._set.clear()
