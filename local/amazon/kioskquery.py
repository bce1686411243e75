"""Data Kiosk queries: parsing and validating a createQuery `query` against Amazon's GraphQL schema
(models/analytics_salesAndTraffic_2024_04_24.graphql), and the JSONL rows it produces.

A query is validated by graphql-core against the schema itself, so an unknown field, a wrong argument or
a missing required one is refused as Amazon's GraphQL layer refuses it. On top of the schema the
emulator checks what Amazon documents in the schema's descriptions and the use case guide: dates not in
the future and no more than two years back, start <= end, at most 8000 characters once unnecessary
whitespace is removed, marketplaces known and of the host's region, and one marketplace per query (the
product asks one per query; a stricter emulator cannot hide a product bug). The rows answer exactly the
selection, as GraphQL does: nested objects and the fields asked for, nothing else.

Data are seeded by (seller, marketplace, day) and by how long ago the day ended, up to 72 hours: Amazon
restates Sales and Traffic for three days, so a day re-pulled within them may differ, and is stable after.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    parse,
    validate,
)
from graphql.language import EnumValueNode, ListValueNode, StringValueNode

from .marketplaces import MARKETPLACES_BY_ID, STOREFRONTS, Region

SCHEMA_FILE = Path(__file__).resolve().parent / "models" / "analytics_salesAndTraffic_2024_04_24.graphql"
SCHEMA_ROOT = "analytics_salesAndTraffic_2024_04_24"
BY_DATE = "salesAndTrafficByDate"
BY_ASIN = "salesAndTrafficByAsin"
SUPPORTED_QUERIES = (BY_DATE, BY_ASIN)
MAX_QUERY_CHARACTERS = 8000
MAX_MARKETPLACES = 1
HISTORY = timedelta(days=2 * 365)
RESTATED_FOR = timedelta(hours=72)


class QueryRefused(Exception):
    """The query cannot be run (400 InvalidInput): the message is Amazon-like and names no data."""


@dataclass(frozen=True)
class ParsedQuery:
    name: str  # salesAndTrafficByDate or salesAndTrafficByAsin
    start: date
    end: date
    aggregate_by: str  # DAY/WEEK/MONTH (by date), CHILD/PARENT/SKU (by ASIN)
    marketplace_ids: tuple[str, ...]
    selection: FieldNode  # the query field, whose selection set shapes every row


@cache
def schema() -> GraphQLSchema:
    return build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))


def compact(query: str) -> str:
    """The query without unnecessary whitespace (Amazon's 8000-character limit applies to this)."""
    return re.sub(r"\s*([{}():,\[\]!])\s*", r"\1", re.sub(r"\s+", " ", query.strip()))


def parse_query(query: str, region: Region, now: datetime) -> ParsedQuery:
    if len(compact(query)) > MAX_QUERY_CHARACTERS:
        raise QueryRefused(f"The query must be at most {MAX_QUERY_CHARACTERS} characters after unnecessary "
                           "whitespace is removed.")
    try:
        document = parse(query)
    except GraphQLError as exc:
        raise QueryRefused(f"The query could not be parsed: {exc.message}") from None
    errors = validate(schema(), document)
    if errors:
        raise QueryRefused("The query is not valid for the schema: " + "; ".join(e.message for e in errors[:3]))
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation.value != "query":
        raise QueryRefused("The request must hold exactly one query operation.")
    roots = [s for s in operations[0].selection_set.selections if isinstance(s, FieldNode)]
    if len(roots) != 1 or roots[0].name.value != SCHEMA_ROOT or roots[0].selection_set is None:
        raise QueryRefused(f"The query must select exactly one dataset: {SCHEMA_ROOT}.")
    fields = [s for s in roots[0].selection_set.selections if isinstance(s, FieldNode)]
    if len(fields) != 1:
        raise QueryRefused("The query must select exactly one query of the dataset.")
    field = fields[0]
    if field.name.value not in SUPPORTED_QUERIES:
        raise QueryRefused(f"The emulator does not run {field.name.value}; it runs {', '.join(SUPPORTED_QUERIES)}.")
    arguments = {a.name.value: a.value for a in field.arguments or ()}
    for name, node in arguments.items():
        if not isinstance(node, StringValueNode | EnumValueNode | ListValueNode):
            raise QueryRefused(f"Argument {name} must be given as a literal (Data Kiosk takes no variables).")
    start = _date(arguments["startDate"], "startDate")
    end = _date(arguments["endDate"], "endDate")
    today = now.astimezone(UTC).date()
    if start > end:
        raise QueryRefused("startDate must not be after endDate.")
    if end > today:
        raise QueryRefused("endDate cannot be in the future.")
    if start < today - HISTORY:
        raise QueryRefused("startDate must be no more than two years ago.")
    marketplace_node = arguments["marketplaceIds"]
    assert isinstance(marketplace_node, ListValueNode)
    marketplace_ids = tuple(dict.fromkeys(v.value for v in marketplace_node.values if isinstance(v, StringValueNode)))
    if not 1 <= len(marketplace_ids) <= MAX_MARKETPLACES:
        raise QueryRefused(f"marketplaceIds must hold 1 to {MAX_MARKETPLACES} marketplace identifier.")
    for marketplace_id in marketplace_ids:
        marketplace = MARKETPLACES_BY_ID.get(marketplace_id)
        if marketplace is None or marketplace.region != region:
            raise QueryRefused(f"Invalid marketplaceId {marketplace_id} for this region.")
    aggregate = arguments["aggregateBy"]
    assert isinstance(aggregate, EnumValueNode)
    return ParsedQuery(field.name.value, start, end, aggregate.value, marketplace_ids, field)


def _date(node: Any, name: str) -> date:
    try:
        return date.fromisoformat(node.value)
    except (AttributeError, ValueError):
        raise QueryRefused(f"{name} must be an RFC-3339 full date (YYYY-MM-DD).") from None


# -- rows ------------------------------------------------------------------------------------------


def _periods(parsed: ParsedQuery) -> list[tuple[date, date]]:
    """Days for DAY; one period over the whole range for WEEK, MONTH and every by-ASIN query."""
    if parsed.name == BY_DATE and parsed.aggregate_by == "DAY":
        days = (parsed.end - parsed.start).days + 1
        return [(parsed.start + timedelta(days=i), parsed.start + timedelta(days=i)) for i in range(days)]
    return [(parsed.start, parsed.end)]


def _revision(day: date, now: datetime) -> int:
    """Hours since the day ended, up to 72: the data of a restated day changes until then."""
    ended = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return int(min(max(now - ended, timedelta()), RESTATED_FOR).total_seconds() // 3600)


def _rng(*parts: object) -> random.Random:
    return random.Random(zlib.crc32("|".join(str(p) for p in parts).encode()))  # noqa: S311 - test data


def _currency(marketplace_id: str) -> str:
    storefront = STOREFRONTS.get(MARKETPLACES_BY_ID[marketplace_id].country)
    return storefront.currency if storefront else "USD"


def _amount(value: float, currency: str) -> dict[str, Any]:
    return {"amount": round(value, 2), "currencyCode": currency}


def _sales(rng: random.Random, currency: str, by_date: bool) -> dict[str, Any]:
    units = rng.randint(0, 400)
    items = max(0, units - rng.randint(0, units // 4 + 1))
    price = rng.uniform(8, 80)
    sales: dict[str, Any] = {
        "orderedProductSales": _amount(units * price, currency), "shippedProductSales": _amount(units * price * 0.9,
                                                                                              currency),
        "ordersShipped": items, "totalOrderItems": items, "unitsOrdered": units, "unitsShipped": int(units * 0.9),
        "unitsRefunded": units // 30, "refundRate": round(100 * (units // 30) / units, 2) if units else 0.0,
    }
    if by_date:
        sales.update(averageSalesPerOrderItem=_amount(price, currency), averageSellingPrice=_amount(price, currency),
                     averageUnitsPerOrderItem=round(units / items, 2) if items else 0.0,
                     claimsAmount=_amount(rng.uniform(0, 30), currency), claimsGranted=rng.randint(0, 2))
    return sales


def _traffic(rng: random.Random, by_date: bool) -> dict[str, Any]:
    browser, mobile = rng.randint(0, 3000), rng.randint(0, 5000)
    sessions_b, sessions_m = browser // 2, mobile // 2
    traffic: dict[str, Any] = {
        "browserPageViews": browser, "mobileAppPageViews": mobile, "pageViews": browser + mobile,
        "browserSessions": sessions_b, "mobileAppSessions": sessions_m, "sessions": sessions_b + sessions_m,
        "buyBoxPercentage": round(rng.uniform(60, 100), 2), "unitSessionPercentage": round(rng.uniform(0, 20), 2),
    }
    if by_date:
        traffic.update(averageOfferCount=rng.randint(1, 50), averageParentItems=rng.randint(1, 40),
                       feedbackReceived=rng.randint(0, 9), negativeFeedbackReceived=rng.randint(0, 1),
                       receivedNegativeFeedbackRate=round(rng.uniform(0, 5), 2),
                       orderItemSessionPercentage=round(rng.uniform(0, 20), 2))
    else:
        total = max(1, browser + mobile)
        traffic.update(browserPageViewsPercentage=round(100 * browser / total, 2),
                       mobileAppPageViewsPercentage=round(100 * mobile / total, 2),
                       pageViewsPercentage=round(rng.uniform(0, 30), 2),
                       browserSessionPercentage=round(rng.uniform(0, 30), 2),
                       mobileAppSessionPercentage=round(rng.uniform(0, 30), 2),
                       sessionPercentage=round(rng.uniform(0, 30), 2))
    return traffic


def full_rows(parsed: ParsedQuery, seller: str, now: datetime) -> Iterator[dict[str, Any]]:
    """Every field the schema has for each row (the selection then picks from them)."""
    by_date = parsed.name == BY_DATE
    for marketplace_id in parsed.marketplace_ids:
        currency = _currency(marketplace_id)
        for start, end in _periods(parsed):
            base = {"marketplaceId": marketplace_id, "startDate": start.isoformat(), "endDate": end.isoformat()}
            revision = _revision(end, now)
            if by_date:
                rng = _rng(seller, marketplace_id, start, end, revision)
                yield {**base, "sales": _sales(rng, currency, True), "traffic": _traffic(rng, True)}
                continue
            for index in range(_rng(seller, "asins").randint(3, 8)):
                parent = f"B0{zlib.crc32(f'{seller}|{index // 2}'.encode()):08X}"[:10]
                child = f"B0{zlib.crc32(f'{seller}|{index}|child'.encode()):08X}"[:10]
                rng = _rng(seller, marketplace_id, start, end, revision, index)
                yield {**base, "parentAsin": parent, "childAsin": child, "sku": f"SKU-{seller[-4:]}-{index:03d}",
                       "sales": _sales(rng, currency, False), "traffic": _traffic(rng, False)}


def select(value: Any, node: FieldNode) -> Any:
    """The part of `value` the selection set of `node` asks for (GraphQL's response shape)."""
    if node.selection_set is None or not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for child in node.selection_set.selections:
        if isinstance(child, FieldNode) and child.name.value != "__typename":
            key = child.alias.value if child.alias else child.name.value
            out[key] = select(value.get(child.name.value), child)
    return out


def rows(parsed: ParsedQuery, seller: str, now: datetime) -> list[dict[str, Any]]:
    return [select(row, parsed.selection) for row in full_rows(parsed, seller, now)]
