"""Where a seller's objects live in the data bucket; the one place that spells the layout.

Keys name sellers by their opaque seller key (seller_insights.pseudonyms), never by the seller id: S3
server access logs, kept 365 days, record every key, and they must not name a seller whose data is gone.

    sellers/{seller_key}/{region}/reports/{type}/{window_start}_{window_end}.{tsv|json|xml}
    sellers/{seller_key}/{region}/reports/{type}/{marketplace_id}/{window_start}_{window_end}.{...}
                                          (types Amazon reports one marketplace at a time)
    sellers/{seller_key}/{region}/reports/{type}/{marketplace_id}/{report_id}.tsv  (settlement: discovered)
    sellers/{seller_key}/{region}/reports/{type}/errors/{report_id}.txt   (FATAL error documents)
    exports/{seller_key}/{request_id}.zip                                  (portability exports, 7 days)
    notices/reauthorization/{YYYY-MM-DD}.jsonl    (operators' daily digest; names no seller in its key, 7 days)
"""

from __future__ import annotations

from seller_insights.pseudonyms import seller_key

SELLERS = "sellers/"
EXPORTS = "exports/"
NOTICES = "notices/"


def seller_prefix(seller_id: str, region: str | None = None) -> str:
    """Everything of the seller in one region, or in every region (`region=None`)."""
    base = f"{SELLERS}{seller_key(seller_id)}/"
    return f"{base}{region}/" if region else base


def report_key(seller_id: str, region: str, report_type: str, name: str, extension: str, *,
               marketplace_id: str | None = None) -> str:
    """`marketplace_id`: for a report of one marketplace (None: one report covers the whole request)."""
    scope = f"{marketplace_id}/" if marketplace_id else ""
    return f"{seller_prefix(seller_id, region)}reports/{report_type}/{scope}{name}.{extension}"


def error_document_key(seller_id: str, region: str, report_type: str, report_id: str) -> str:
    return f"{seller_prefix(seller_id, region)}reports/{report_type}/errors/{report_id}.txt"


def export_prefix(seller_id: str) -> str:
    return f"{EXPORTS}{seller_key(seller_id)}/"


def export_key(seller_id: str, request_id: str) -> str:
    return f"{export_prefix(seller_id)}{request_id}.zip"


def reauthorization_digest_key(day: str) -> str:
    """The day's list of connections due for re-authorization (`day`: YYYY-MM-DD)."""
    return f"{NOTICES}reauthorization/{day}.jsonl"
