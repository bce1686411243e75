"""Domain events on EventBridge, so operators can wire e-mail, Slack or tickets to them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from seller_insights.errors import EventPublishFailed

if TYPE_CHECKING:
    from types_boto3_events.client import EventBridgeClient
    from types_boto3_events.type_defs import PutEventsRequestEntryTypeDef

_BATCH = 10  # PutEvents takes at most 10 entries per call


class EventPublisher:
    def __init__(self, events_client: EventBridgeClient, bus_name: str, source: str) -> None:
        self._client = events_client
        self._bus = bus_name
        self._source = source

    def publish(self, detail_type: str, details: Iterable[dict[str, Any]]) -> int:
        entries: list[PutEventsRequestEntryTypeDef] = [
            {"EventBusName": self._bus, "Source": self._source, "DetailType": detail_type,
             "Detail": json.dumps(detail, sort_keys=True)} for detail in details]
        for start in range(0, len(entries), _BATCH):
            answer = self._client.put_events(Entries=entries[start:start + _BATCH])
            if answer.get("FailedEntryCount"):
                raise EventPublishFailed(f"EventBridge refused {answer['FailedEntryCount']} {detail_type} events")
        return len(entries)
