"""report_stream against moto (in-process) and a real HTTP server on loopback serving prepared bodies.

The server answers like Amazon's document host: presigned-looking URLs, the charset in Content-Type,
optionally `Content-Encoding: gzip`, and on request a body cut short or an error status.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import secrets
import threading
import traceback
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from seller_insights import report_gzip, report_stream
from seller_insights.errors import DocumentCorrupt, DocumentDownloadFailed, StorageFailed
from seller_insights.report_charset import choose_charset, resolve_charset
from seller_insights.report_stream import StoredDocument, stream_document_to_s3
from tests.support.tsv import assert_aligned, tsv

BUCKET = "seller-insights-test-data"
KEY = ("sellers/A1SELLER/EU/reports/GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL/"
       "2026-11-28T00:00:00Z_2026-11-29T00:00:00Z.tsv")
PII = ("buyer-email", "ship-address-1", "buyer-name", "buyer-phone-number", "recipient-name")
KEEP = ("amazon-order-id", "purchase-date", "product-name", "sku", "quantity", "currency", "item-price",
        "ship-city", "ship-country")


@dataclass
class Route:
    body: bytes
    headers: dict[str, str]
    status: int = 200
    send_only: int | None = None  # close the connection after this many body bytes


@dataclass
class DocumentServer:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)

    def serve(self, body: bytes, content_type: str | None = "text/plain; charset=Cp1252", *,
              status: int = 200, send_only: int | None = None, **headers: str) -> str:
        path = f"/_documents/{secrets.token_hex(8)}"
        all_headers = {k.replace("_", "-"): v for k, v in headers.items()}
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        self.routes[path] = Route(body, all_headers, status, send_only)
        return f"{self.base}{path}?X-Amz-Expires=300&X-Amz-Signature={secrets.token_hex(32)}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.partition("?")[0])
        if route is None:
            self.send_error(404)
            return
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(route.body)))
        if route.send_only is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(route.body if route.send_only is None else route.body[:route.send_only])
        if route.send_only is not None:
            self.close_connection = True

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, ValueError):  # the client left early (a failing download)
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:  # the request line holds the signature
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[DocumentServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    docs = DocumentServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.routes = docs.routes  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield docs
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def store(s3: Any, url: str, *, keep: tuple[str, ...] | None = KEEP, label: str | None = None,
          fallback: str = "cp1252", key: str = KEY, **kwargs: Any) -> StoredDocument:
    return stream_document_to_s3(url=url, compression_label=label, s3_client=s3, bucket=BUCKET, key=key,
                                 fallback_charset=fallback, keep_columns=keep, **kwargs)


def stored_bytes(s3: Any, key: str = KEY) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def assert_nothing_left(s3: Any) -> None:
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


EU_ROWS = [
    ["amazon-order-id", "purchase-date", "buyer-email", "product-name", "quantity", "item-price", "currency",
     "ship-city", "ship-country"],
    ["302-1234567-1234567", "2026-11-28T10:00:00+00:00", "a1b2c3@marketplace.amazon.de",
     "Käse-Reibe Edelstahl, Größe L", "1", "12,99", "EUR", "München", "DE"],
    ["302-7654321-7654321", "2026-11-28T11:30:00+00:00", "z9y8@marketplace.amazon.de",
     "Brotdose „Öko“ – 2 Stück à 0,5 l €", "2", "25,00", "EUR", "Köln", "DE"],
]


def expected_filtered(rows: list[list[str]], keep: tuple[str, ...]) -> str:
    idx = [i for i, name in enumerate(rows[0]) if name in keep]
    return "".join("\t".join(row[i] for i in idx) + "\n" for row in rows)


# --- charsets --------------------------------------------------------------------------------------


def test_cp1252_umlauts_and_euro_become_utf8(server: DocumentServer, s3: Any) -> None:
    body = tsv(EU_ROWS).encode("cp1252")
    assert b"\x80" in body  # the euro sign, where cp1252 and ISO-8859-1 differ
    result = store(s3, server.serve(body, "text/plain; charset=Cp1252"))
    expected = expected_filtered(EU_ROWS, KEEP).encode("utf-8")
    assert stored_bytes(s3) == expected
    assert result == StoredDocument(
        bytes_in=len(body), bytes_out=len(expected), rows=2, sha256=hashlib.sha256(expected).hexdigest(),
        source_charset="cp1252", undecodable=0, dropped_columns=("buyer-email",), parts=1,
    )
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["ContentType"] == "text/tab-separated-values; charset=utf-8"
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_iso_8859_1_label_is_read_as_cp1252(server: DocumentServer, s3: Any) -> None:
    body = "sku\titem-price\nA-1\t9,99 €\n".encode("cp1252")
    result = store(s3, server.serve(body, "text/plain;charset=ISO-8859-1"), keep=None)
    assert stored_bytes(s3).decode("utf-8") == "sku\titem-price\nA-1\t9,99 €\n"
    assert (result.source_charset, result.undecodable, result.rows) == ("cp1252", 0, 1)


@pytest.mark.parametrize("content_type", ["text/plain; charset=Windows-31J", "text/plain; charset=Shift_JIS",
                                          "text/plain; charset=SJIS", "text/plain", None])
def test_japanese_headers_and_values_in_cp932(server: DocumentServer, s3: Any, content_type: str | None) -> None:
    rows = [["注文番号", "購入日", "購入者名", "商品名", "数量"],
            ["503-1111111-2222222", "2026-11-28", "山田太郎", "髙島屋の①番ギフト（限定）", "1"],
            ["503-3333333-4444444", "2026-11-28", "鈴木花子", "ｶﾀｶﾅ半角と～全角チルダ", "3"]]
    body = tsv(rows, "\r\n").encode("cp932")  # 髙 and ① exist in cp932 (Windows-31J), not in Shift_JIS
    result = store(s3, server.serve(body, content_type), keep=("注文番号", "購入日", "商品名", "数量"),
                   fallback="cp932")
    assert stored_bytes(s3).decode("utf-8") == expected_filtered(rows, ("注文番号", "購入日", "商品名", "数量"))
    assert result.source_charset == "cp932"
    # A Japanese header cell is not shaped like a column name: counted, never named in logs or rows.
    assert (result.dropped_columns, result.dropped_unnamed) == ((), 1)
    assert (result.rows, result.undecodable) == (2, 0)


def test_a_utf8_bom_wins_over_the_declared_charset(server: DocumentServer, s3: Any) -> None:
    body = "\ufeffsku\tproduct-name\nA-1\tGröße €\n".encode()
    result = store(s3, server.serve(body, "text/plain; charset=Cp1252"), keep=None)
    assert stored_bytes(s3).decode("utf-8") == "sku\tproduct-name\nA-1\tGröße €\n"
    assert (result.source_charset, result.undecodable) == ("utf-8", 0)


def test_undecodable_bytes_are_counted_not_fatal(server: DocumentServer, s3: Any) -> None:
    body = b"sku\tproduct-name\nA-1\tgood \xc3\xa9 bad \xff\xfe end\nA-2\ttruncated \xe2\x82"
    result = store(s3, server.serve(body, "text/plain; charset=utf-8"), keep=None)
    assert stored_bytes(s3).decode("utf-8") == (
        "sku\tproduct-name\nA-1\tgood é bad \ufffd\ufffd end\nA-2\ttruncated \ufffd")
    assert result.undecodable == 4
    assert result.rows == 2
    cp1252 = store(s3, server.serve(b"sku\nA\x81B\x8d\n", "text/plain; charset=Cp1252"), keep=None, key="k2")
    assert cp1252.undecodable == 2
    assert stored_bytes(s3, "k2").decode("utf-8") == "sku\nA\ufffdB\ufffd\n"


def test_undecodable_counts_are_per_stream_across_threads(server: DocumentServer, s3: Any) -> None:
    bad = {n: server.serve(b"sku\n" + b"x\xff\n" * n * 1000, "text/plain; charset=utf-8") for n in range(1, 7)}
    results: dict[int, StoredDocument] = {}

    def run(n: int) -> None:
        results[n] = store(s3, bad[n], keep=None, key=f"k{n}")

    threads = [threading.Thread(target=run, args=(n,)) for n in bad]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {n: r.undecodable for n, r in results.items()} == {n: n * 1000 for n in bad}


# --- compression -----------------------------------------------------------------------------------


def test_gzip_body_labelled_identity(server: DocumentServer, s3: Any) -> None:
    plain = tsv(EU_ROWS).encode("cp1252")
    body = gzip.compress(plain)
    result = store(s3, server.serve(body, "text/plain; charset=Cp1252", Content_Encoding="identity"), label=None)
    assert stored_bytes(s3) == expected_filtered(EU_ROWS, KEEP).encode("utf-8")
    assert result.bytes_in == len(body)


def test_gzip_label_on_a_plain_body(server: DocumentServer, s3: Any) -> None:
    plain = tsv(EU_ROWS).encode("cp1252")
    store(s3, server.serve(plain, "text/plain; charset=Cp1252"), label="GZIP")
    assert stored_bytes(s3) == expected_filtered(EU_ROWS, KEEP).encode("utf-8")


def test_content_encoding_gzip_is_not_decoded_twice(server: DocumentServer, s3: Any) -> None:
    body = gzip.compress(tsv(EU_ROWS).encode("cp1252"))
    result = store(s3, server.serve(body, "text/plain; charset=Cp1252", Content_Encoding="gzip"), label="GZIP")
    assert stored_bytes(s3) == expected_filtered(EU_ROWS, KEEP).encode("utf-8")
    assert result.bytes_in == len(body)


def test_concatenated_gzip_members(server: DocumentServer, s3: Any) -> None:
    text = tsv(EU_ROWS)
    body = gzip.compress(text[:100].encode("cp1252")) + gzip.compress(text[100:].encode("cp1252"))
    store(s3, server.serve(body), label="GZIP", keep=None)
    assert stored_bytes(s3).decode("utf-8") == text


@pytest.mark.parametrize("cut", [10, 0.5, -4])
def test_truncated_gzip_is_corrupt_and_leaves_nothing(server: DocumentServer, s3: Any, cut: float) -> None:
    body = gzip.compress(tsv(EU_ROWS * 200).encode("cp1252"))
    at = int(len(body) * cut) if isinstance(cut, float) else cut
    with pytest.raises(DocumentCorrupt, match="truncated"):
        store(s3, server.serve(body[:at]), label="GZIP")
    assert_nothing_left(s3)


def test_invalid_gzip_is_corrupt(server: DocumentServer, s3: Any) -> None:
    with pytest.raises(DocumentCorrupt, match="invalid"):
        store(s3, server.serve(b"\x1f\x8b" + b"not really gzip at all" * 10), label="GZIP")
    assert_nothing_left(s3)


# --- TSV lines and columns -------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [False, True])
def test_crlf_and_header_split_across_chunks(server: DocumentServer, s3: Any, monkeypatch: pytest.MonkeyPatch,
                                            gzipped: bool) -> None:
    monkeypatch.setattr(report_stream, "READ_CHUNK", 3)
    monkeypatch.setattr(report_gzip, "INFLATE_CHUNK", 5)
    text = "\ufeff" + tsv(EU_ROWS, "\r\n")
    body = text.encode("utf-8")
    body = gzip.compress(body) if gzipped else body
    result = store(s3, server.serve(body, "text/plain; charset=UTF-8"))
    assert stored_bytes(s3).decode("utf-8") == expected_filtered(EU_ROWS, KEEP)
    assert result.rows == 2
    assert result.dropped_columns == ("buyer-email",)


def test_pii_columns_are_dropped_and_reported(server: DocumentServer, s3: Any) -> None:
    header = ["amazon-order-id", "buyer-email", "purchase-date", "buyer-name", "sku", "buyer-phone-number",
              "recipient-name", "ship-address-1", "ship-city", "quantity"]
    row = ["028-1-1", "secret@example.com", "2026-11-28", "Jane Roe", "SKU-1", "+49 30 1234567", "John Doe",
           "Hauptstraße 1", "Berlin", "1"]
    short = ["028-2-2", "other@example.com", "2026-11-28"]  # a short row: dropped, never padded
    result = store(s3, server.serve(tsv([header, row, short, []]).encode("cp1252")))
    out = stored_bytes(s3).decode("utf-8")
    assert result.dropped_columns == ("buyer-email", "buyer-name", "buyer-phone-number", "recipient-name",
                                      "ship-address-1")
    for value in ("secret@example.com", "Jane Roe", "+49 30 1234567", "John Doe", "Hauptstraße", "other@example"):
        assert value not in out
    assert out == ("amazon-order-id\tpurchase-date\tsku\tship-city\tquantity\n"
                   "028-1-1\t2026-11-28\tSKU-1\tBerlin\t1\n")
    assert (result.rows, result.malformed_rows, result.blank_lines) == (1, 1, 1)


def test_all_columns_kept_only_normalizes_line_endings(server: DocumentServer, s3: Any) -> None:
    rows = [["sku", "quantity"], ["A", "1"], ["B", "2"]]
    body = (tsv(rows, "\r\n") + "C\t3").encode("cp1252")
    result = store(s3, server.serve(body), keep=("sku", "quantity", "unused"))
    assert stored_bytes(s3) == b"sku\tquantity\nA\t1\nB\t2\nC\t3"
    assert (result.rows, result.dropped_columns) == (3, ())


def test_a_single_kept_column_and_no_final_newline(server: DocumentServer, s3: Any) -> None:
    result = store(s3, server.serve(b"a\tsku\tb\r\n1\tX\t2\r\n3\tY\t4"), keep=("sku",))
    assert stored_bytes(s3) == b"sku\nX\nY"
    assert (result.rows, result.dropped_columns) == (2, ("a", "b"))


def test_empty_document_is_one_empty_part(server: DocumentServer, s3: Any) -> None:
    result = store(s3, server.serve(b""), label="GZIP")
    assert stored_bytes(s3) == b""
    assert (result.parts, result.rows, result.bytes_out, result.dropped_columns) == (1, 0, 0, ())
    assert result.sha256 == hashlib.sha256(b"").hexdigest()


# --- JSON and XML ----------------------------------------------------------------------------------


def test_json_and_xml_are_transcoded_whole(server: DocumentServer, s3: Any) -> None:
    doc = '{"reportSpecification": {"reportType": "GET_SALES_AND_TRAFFIC_REPORT"},\r\n "title": "Größe €"}'
    result = store(s3, server.serve(gzip.compress(("\ufeff" + doc).encode("utf-8")), "application/json"),
                   keep=None, document_format="json", label="GZIP", key="r.json")
    assert stored_bytes(s3, "r.json").decode("utf-8") == doc
    assert s3.head_object(Bucket=BUCKET, Key="r.json")["ContentType"] == "application/json; charset=utf-8"
    assert (result.rows, result.source_charset) == (0, "utf-8")
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n<AmazonEnvelope><Name>Müller €</Name></AmazonEnvelope>\n'
    store(s3, server.serve(xml.encode("utf-8"), "text/xml; charset=UTF-8"), keep=None, document_format="xml",
          key="r.xml")
    assert stored_bytes(s3, "r.xml").decode("utf-8") == xml
    plain = store(s3, server.serve('{"a": "Größe €"}'.encode(), "application/json"), keep=None,
                  document_format="json", key="plain.json")
    assert stored_bytes(s3, "plain.json").decode("utf-8") == '{"a": "Größe €"}'
    assert plain.source_charset == "utf-8"  # JSON without a charset: UTF-8, not the marketplace fallback
    with pytest.raises(ValueError, match="TSV"):
        store(s3, server.serve(b"{}"), keep=("a",), document_format="json")


# --- failures --------------------------------------------------------------------------------------


def test_expired_url_is_a_download_failure_before_any_upload(server: DocumentServer, s3: Any) -> None:
    url = server.serve(b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                       "application/xml", status=403)
    with pytest.raises(DocumentDownloadFailed) as caught:
        store(s3, url)
    assert caught.value.http_status == 403 and caught.value.url_expired
    assert_nothing_left(s3)
    assert_no_url(caught.value, url)


def test_connection_refused_and_cut_body(server: DocumentServer, s3: Any) -> None:
    with socket_closed_port() as port:
        refused = f"http://127.0.0.1:{port}/_documents/x?X-Amz-Signature={secrets.token_hex(32)}"
        with pytest.raises(DocumentDownloadFailed) as caught:
            store(s3, refused, timeouts=report_stream.DocumentTimeouts(connect=1, read=1))
    assert caught.value.reason == "connection"
    assert_no_url(caught.value, refused)
    body = tsv(EU_ROWS * 2000).encode("cp1252")
    cut = server.serve(body, send_only=len(body) // 2)
    with pytest.raises(DocumentDownloadFailed) as caught:
        store(s3, cut)
    assert caught.value.reason == "connection"
    assert_nothing_left(s3)
    assert_no_url(caught.value, cut)


class FailingOnSecondPart:
    """The real moto client, except that the second upload_part fails like S3 would."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0

    def upload_part(self, **kwargs: Any) -> Any:
        self.calls += 1
        if kwargs["PartNumber"] == 2:
            from botocore.exceptions import ClientError
            raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}},
                              "UploadPart")
        return self._client.upload_part(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def big_document(min_bytes: int) -> tuple[bytes, bytes]:
    """(cp1252 body, expected UTF-8 after the KEEP filter) of at least min_bytes of UTF-8 output."""
    rows = [EU_ROWS[0]]
    row = EU_ROWS[2]
    n = min_bytes // len(expected_filtered([EU_ROWS[0], row], KEEP).split("\n")[1]) + 10
    rows += [[f"302-{i:07d}-0000000", *row[1:]] for i in range(n)]
    return tsv(rows).encode("cp1252"), expected_filtered(rows, KEEP).encode("utf-8")


def test_s3_failure_mid_upload_aborts(server: DocumentServer, s3: Any) -> None:
    body, _ = big_document(20 * report_stream.MiB)
    failing = FailingOnSecondPart(s3)
    with pytest.raises(StorageFailed) as caught:
        store(failing, server.serve(gzip.compress(body, 1)), label="GZIP")
    assert (caught.value.operation, caught.value.code) == ("UploadPart", "InternalError")
    assert failing.calls >= 2
    assert_nothing_left(s3)


class FailingToComplete:
    """The real moto client, except that CompleteMultipartUpload fails like S3 would."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def complete_multipart_upload(self, **_: Any) -> Any:
        from botocore.exceptions import ClientError
        raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}},
                          "CompleteMultipartUpload")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_s3_failure_on_complete_aborts(server: DocumentServer, s3: Any) -> None:
    """Every part uploaded, then the completion fails: the upload is aborted, no part is left behind."""
    body, _ = big_document(9 * report_stream.MiB)
    with pytest.raises(StorageFailed) as caught:
        store(FailingToComplete(s3), server.serve(body))
    assert (caught.value.operation, caught.value.code) == ("CompleteMultipartUpload", "InternalError")
    assert_nothing_left(s3)


def test_missing_bucket_is_a_storage_failure(server: DocumentServer, s3: Any) -> None:
    with pytest.raises(StorageFailed) as caught:
        stream_document_to_s3(url=server.serve(b"sku\n"), compression_label=None, s3_client=s3,
                               bucket="no-such-bucket-here", key=KEY, fallback_charset="cp1252", keep_columns=None)
    assert (caught.value.operation, caught.value.code) == ("CreateMultipartUpload", "NoSuchBucket")


def test_multi_part_document(server: DocumentServer, s3: Any) -> None:
    body, expected = big_document(18 * report_stream.MiB)
    result = store(s3, server.serve(gzip.compress(body, 1)), label="GZIP")
    assert result.parts == 3  # 8 MiB + 8 MiB + the rest
    assert result.bytes_out == len(expected)
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert stored_bytes(s3) == expected
    assert result.rows == expected.count(b"\n") - 1


# --- property: unfiltered TSV is the input without NULs, re-encoded ---------------------------------

ENCODABLE = {
    "cp1252": st.characters(codec="cp1252", exclude_characters="\ufeff"),
    # cp932 encodes these but decodes them to other characters (e.g. WAVE DASH -> FULLWIDTH TILDE)
    "cp932": st.characters(codec="cp932", exclude_characters="\ufeff¢£¬‖−〜"),
    "utf-8": st.characters(codec="utf-8", exclude_categories=["Cs"]),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), charset=st.sampled_from(sorted(ENCODABLE)), gzipped=st.booleans(),
       read_chunk=st.integers(1, 64), inflate_chunk=st.integers(1, 64))
def test_unfiltered_output_is_the_input_as_utf8(server: DocumentServer, s3: Any, monkeypatch: pytest.MonkeyPatch, *,
                                                data: st.DataObject, charset: str, gzipped: bool,
                                                read_chunk: int, inflate_chunk: int) -> None:
    text = data.draw(st.text(st.one_of(ENCODABLE[charset], st.sampled_from("\t\r\n")), max_size=300))
    monkeypatch.setattr(report_stream, "READ_CHUNK", read_chunk)
    monkeypatch.setattr(report_gzip, "INFLATE_CHUNK", inflate_chunk)
    body = text.encode(charset)
    body = gzip.compress(body) if gzipped else body
    result = store(s3, server.serve(body, f"text/plain; charset={charset}"), keep=None)
    assert (result.undecodable, result.nul_bytes) == (0, text.count("\x00"))
    text = text.replace("\x00", "")  # the one change: NUL characters are removed
    assert stored_bytes(s3) == text.encode("utf-8")
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    assert result.rows == max(lines - 1, 0)


# --- rows that would move data between columns ------------------------------------------------------

RETURNS_HEADER = ["return-date", "order-id", "sku", "asin", "fnsku", "product-name", "quantity",
                  "fulfillment-center-id", "detailed-disposition", "reason", "status", "license-plate-number",
                  "customer-comments"]
RETURNS_KEEP = tuple(RETURNS_HEADER[:-1])  # the catalog's allowlist: customer-comments is never stored
E_MAIL = "max.mustermann@example.de"


def returns_row(n: int, product: str = "Kaffeebecher Größe L", comment: str = "Passt nicht") -> list[str]:
    return [f"2026-11-28T0{n}:00:00+00:00", f"302-000000{n}-1234567", f"SKU-{n}", "B0ABCDEFGH", "X001234567",
            product, "1", "FRA1", "CUSTOMER_DAMAGED", "DEFECTIVE", "Unit returned to inventory", f"LPN{n:010d}",
            comment]


def test_a_newline_in_a_product_name_cannot_shift_a_return_comment_into_a_kept_column(
        server: DocumentServer, s3: Any) -> None:
    # The product name breaks the row in two: by position, the buyer's comment (with an e-mail) would land
    # in fulfillment-center-id, a kept column.
    rows = [RETURNS_HEADER, returns_row(1),
            returns_row(2, product="Kaffeebecher\nGröße L", comment=f"Bitte an {E_MAIL} erstatten"),
            returns_row(3)]
    result = store(s3, server.serve(tsv(rows).encode("cp1252")), keep=RETURNS_KEEP)
    out = stored_bytes(s3).decode("utf-8")
    assert E_MAIL not in out and "Bitte an" not in out
    assert out == expected_filtered([RETURNS_HEADER, returns_row(1), returns_row(3)], RETURNS_KEEP)
    assert (result.rows, result.malformed_rows, result.blank_lines) == (2, 2, 0)  # both halves dropped
    assert result.dropped_columns == ("customer-comments",)


def test_a_tab_in_a_product_name_cannot_shift_a_buyer_email_into_a_kept_column(
        server: DocumentServer, s3: Any) -> None:
    header = ["amazon-order-id", "product-name", "buyer-email", "sku", "quantity"]
    good = ["302-1-1", "Brotdose Öko", "a1b2@marketplace.amazon.de", "SKU-1", "1"]
    shifted = ["302-2-2", "Brotdose\tÖko", E_MAIL, "SKU-2", "2"]  # by position the e-mail becomes the sku
    keep = ("amazon-order-id", "product-name", "sku", "quantity")
    for gzipped in (False, True):
        body = tsv([header, good, shifted, good], "\r\n").encode("cp1252")
        result = store(s3, server.serve(gzip.compress(body) if gzipped else body), keep=keep)
        out = stored_bytes(s3).decode("utf-8")
        assert E_MAIL not in out
        assert out == expected_filtered([header, good, good], keep)
        assert (result.rows, result.malformed_rows) == (2, 1)


def test_a_tab_in_the_last_column_drops_the_row_too(server: DocumentServer, s3: Any) -> None:
    # customer-comments is the last column: extra fields would fall off the end, but a row whose field
    # count differs from the header's is never mapped by position, wherever the stray separator is.
    rows = [RETURNS_HEADER, returns_row(1, comment="zu groß\tbitte erstatten"), returns_row(2)]
    result = store(s3, server.serve(tsv(rows).encode("cp1252")), keep=RETURNS_KEEP)
    assert stored_bytes(s3).decode("utf-8") == expected_filtered([RETURNS_HEADER, returns_row(2)], RETURNS_KEEP)
    assert (result.rows, result.malformed_rows) == (1, 1)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_every_column_kept_still_checks_each_row(server: DocumentServer, s3: Any, newline: str) -> None:
    # The passthrough path (nothing to drop) must not store a broken row either: whoever reads the stored
    # TSV by position would misalign it.
    header = RETURNS_HEADER[:-1]
    rows = [header, returns_row(1)[:-1], [*returns_row(2, product="Becher\nGröße L")[:-1]], returns_row(3)[:-1],
            ["", ""], returns_row(4)[:-1]]
    text = tsv(rows, newline) + newline + newline  # blank lines too
    result = store(s3, server.serve(text.encode("cp1252")), keep=tuple(header))
    out = stored_bytes(s3).decode("utf-8")
    assert out == tsv([header, returns_row(1)[:-1], returns_row(3)[:-1], returns_row(4)[:-1]])
    assert_aligned(out, len(header))
    assert (result.rows, result.malformed_rows, result.blank_lines, result.dropped_columns) == (3, 3, 2, ())


def test_blank_lines_are_skipped_not_counted_as_malformed(server: DocumentServer, s3: Any) -> None:
    rows = [RETURNS_HEADER, returns_row(1), [], returns_row(2), []]
    body = (tsv(rows, "\r\n") + "\r\n").encode("cp1252")
    result = store(s3, server.serve(body), keep=RETURNS_KEEP)
    assert stored_bytes(s3).decode("utf-8") == expected_filtered([RETURNS_HEADER, returns_row(1), returns_row(2)],
                                                                 RETURNS_KEEP)
    assert (result.rows, result.malformed_rows, result.blank_lines) == (2, 0, 3)


@pytest.mark.parametrize("keep", [("sku",), ("sku", "quantity")])
def test_single_and_all_columns_with_blank_and_short_lines(server: DocumentServer, s3: Any,
                                                           keep: tuple[str, ...]) -> None:
    body = b"sku\tquantity\nA\t1\n\nB\nC\t3\t\n\r\nD\t4"
    result = store(s3, server.serve(body), keep=keep)
    stored = stored_bytes(s3).decode("utf-8")
    assert stored == ("sku\nA\nD" if len(keep) == 1 else "sku\tquantity\nA\t1\nD\t4")
    assert (result.rows, result.malformed_rows, result.blank_lines) == (2, 2, 2)


def test_a_single_column_document_skips_blank_lines(server: DocumentServer, s3: Any) -> None:
    result = store(s3, server.serve(b"sku\r\nA\r\n\r\nB\r\n"), keep=("sku",))
    assert stored_bytes(s3) == b"sku\nA\nB\n"
    assert (result.rows, result.malformed_rows, result.blank_lines) == (2, 0, 1)


# --- the header: the first line names the columns, and only column-shaped names are ever repeated ---


def test_a_document_whose_first_line_is_a_data_row_is_corrupt(server: DocumentServer, s3: Any) -> None:
    rows = [returns_row(1, comment=f"Bitte an {E_MAIL}"), returns_row(2)]  # the header is missing
    with pytest.raises(DocumentCorrupt, match="first line") as caught:
        store(s3, server.serve(tsv(rows).encode("cp1252")), keep=RETURNS_KEEP)
    assert E_MAIL not in str(caught.value) and "302-" not in str(caught.value)
    assert_nothing_left(s3)


@pytest.mark.parametrize("body", [b"\nsku\n", b"\r\nsku\tquantity\nA\t1\n", b"   \t\nA\t1\n"])
def test_a_blank_first_line_is_not_a_header(server: DocumentServer, s3: Any, body: bytes) -> None:
    with pytest.raises(DocumentCorrupt, match="first line"):
        store(s3, server.serve(body), keep=("sku", "quantity"))
    assert_nothing_left(s3)


def test_a_japanese_header_against_an_english_allowlist_is_corrupt_not_empty(server: DocumentServer,
                                                                              s3: Any) -> None:
    # A JP account whose report language is Japanese: the header is a header, but it names none of the
    # catalog's (English) columns, so nothing could be stored. Failing says so; an object of empty rows
    # would not.
    rows = [["注文番号", "購入日", "商品名", "数量"], ["503-1111111-2222222", "2026-11-28", "日本茶セット", "1"]]
    with pytest.raises(DocumentCorrupt, match="names none of the kept columns"):
        store(s3, server.serve(tsv(rows).encode("cp932"), "text/plain; charset=Windows-31J"),
              keep=("amazon-order-id", "purchase-date", "product-name", "quantity"), fallback="cp932")
    assert_nothing_left(s3)


def test_a_kept_column_named_twice_is_corrupt(server: DocumentServer, s3: Any) -> None:
    with pytest.raises(DocumentCorrupt, match="twice"):
        store(s3, server.serve(b"sku\tquantity\tsku\nA\t1\tB\n"), keep=("sku", "quantity"))
    assert_nothing_left(s3)


def test_header_cells_are_named_only_when_shaped_like_column_names(server: DocumentServer, s3: Any) -> None:
    header = ["amazon-order-id", "Bitte an max@example.de", "gift-message-text", "購入者名", "x" * 65, "",
              "quantity", "ship-city", "x" * 64, "new_column", "Ship-State"]
    row = ["302-1", "a", "b", "c", "d", "e", "2", "Köln", "f", "g", "h"]
    result = store(s3, server.serve(tsv([header, row]).encode("utf-8"), "text/plain; charset=UTF-8"),
                   keep=("amazon-order-id", "quantity"))
    assert result.dropped_columns == ("gift-message-text", "ship-city", "x" * 64)
    assert result.dropped_unnamed == 6
    assert stored_bytes(s3) == b"amazon-order-id\tquantity\n302-1\t2\n"


# --- charsets: only what Amazon sends ----------------------------------------------------------------


@pytest.mark.parametrize("label", ["utf-7", "UTF7", "unicode_escape", "raw_unicode_escape", "rot13", "rot_13",
                                   "utf-16", "UTF-16LE", "utf-32", "idna", "punycode", "base64", "hex", "zlib",
                                   "koi8-r", "big5", "euc-jp", "iso-2022-jp", "x-klingon", '""', "mbcs"])
def test_other_charsets_fall_back_to_the_marketplace_and_are_counted(server: DocumentServer, s3: Any,
                                                                      label: str) -> None:
    chosen = choose_charset(f"text/plain; charset={label}", "cp932")
    assert (chosen.codec, chosen.rejected) == ("cp932", True)
    # utf-7 would turn "+AEA-" into "@"; the fallback leaves the bytes as they are.
    body = "sku\tproduct-name\nA-1\t+AEA- Größe\n".encode("cp1252")
    result = store(s3, server.serve(body, f"text/plain; charset={label}"), keep=None)
    assert stored_bytes(s3).decode("utf-8") == "sku\tproduct-name\nA-1\t+AEA- Größe\n"
    assert (result.source_charset, result.charset_rejected) == ("cp1252", True)


def test_no_charset_is_the_marketplace_default_and_not_counted(server: DocumentServer, s3: Any) -> None:
    result = store(s3, server.serve("sku\nGröße\n".encode("cp1252"), "text/plain"), keep=None)
    assert (result.source_charset, result.charset_rejected) == ("cp1252", False)
    with pytest.raises(ValueError, match="fallback"):
        resolve_charset(None, "utf-7")  # the marketplace fallback itself must be one of Amazon's


# --- NUL bytes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [KEEP, None])
def test_nul_bytes_are_removed_and_counted(server: DocumentServer, s3: Any, keep: tuple[str, ...] | None) -> None:
    text = tsv(EU_ROWS)
    body = text.replace("Käse", "K\x00äse\x00\x00").encode("cp1252")
    result = store(s3, server.serve(gzip.compress(body)), keep=keep)
    stored = stored_bytes(s3)
    assert b"\x00" not in stored
    assert stored.decode("utf-8") == (expected_filtered(EU_ROWS, keep) if keep else text)
    assert result.nul_bytes == 3


# --- caps on decompression ---------------------------------------------------------------------------


def repeated_rows(size: int) -> bytes:
    """A header and one orders row repeated: gzip makes 250:1 of it (a bomb of plausible bytes)."""
    row = "\t".join(EU_ROWS[1]) + "\n"
    return ("\t".join(EU_ROWS[0]) + "\n" + row * (size // len(row) + 1)).encode("cp1252")


def test_a_compression_ratio_above_the_cap_is_corrupt_and_leaves_nothing(server: DocumentServer, s3: Any) -> None:
    counting = CountingS3(s3)
    body = gzip.compress(repeated_rows(64 * report_stream.MiB), 9)
    with pytest.raises(DocumentCorrupt, match="compression ratio above the cap of 100:1") as caught:
        store(counting, server.serve(body), label="GZIP")
    assert "München" not in str(caught.value)
    assert_nothing_left(s3)
    assert counting.parts <= 2  # stopped within the first 8 MiB or so, not after 64 MiB


def test_a_tiny_document_of_repeated_bytes_is_not_a_bomb(server: DocumentServer, s3: Any) -> None:
    body = b"sku\tquantity\n" + b"A\t1\n" * 250_000  # 1 MiB at about 1000:1
    compressed = gzip.compress(body, 9)
    assert len(body) / len(compressed) > 500
    result = store(s3, server.serve(compressed), keep=("sku", "quantity"), label="GZIP")
    assert result.rows == 250_000


@pytest.mark.parametrize("gzipped", [False, True])
def test_more_decompressed_bytes_than_the_cap_is_corrupt(server: DocumentServer, s3: Any, gzipped: bool) -> None:
    body, _ = big_document(3 * report_stream.MiB)
    limits = report_stream.DocumentLimits(max_decompressed_bytes=2 * report_stream.MiB)
    with pytest.raises(DocumentCorrupt, match="decompressed size above the cap of 2 MiB"):
        store(s3, server.serve(gzip.compress(body) if gzipped else body), limits=limits)
    assert_nothing_left(s3)
    at_cap = report_stream.DocumentLimits(max_decompressed_bytes=len(body))
    assert store(s3, server.serve(gzip.compress(body) if gzipped else body), limits=at_cap).bytes_in > 0


def test_the_ratio_cap_is_configurable(server: DocumentServer, s3: Any) -> None:
    body, expected = big_document(10 * report_stream.MiB)
    compressed = gzip.compress(body, 9)
    ratio = len(body) / len(compressed)
    with pytest.raises(DocumentCorrupt, match=f"compression ratio above the cap of {int(ratio) // 2}:1"):
        store(s3, server.serve(compressed), limits=report_stream.DocumentLimits(max_ratio=int(ratio) // 2))
    assert_nothing_left(s3)
    store(s3, server.serve(compressed), limits=report_stream.DocumentLimits(max_ratio=int(ratio) * 2))
    assert stored_bytes(s3) == expected


class CountingS3:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.parts = 0

    def upload_part(self, **kwargs: Any) -> Any:
        self.parts += 1
        return self._client.upload_part(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


# --- the caller's context in the background threads ------------------------------------------------

CALLER: ContextVar[str] = ContextVar("caller", default="nobody")


class RecordingS3:
    """The real moto client; records the caller's context variable and thread on every part."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.seen: list[tuple[str, str]] = []

    def upload_part(self, **kwargs: Any) -> Any:
        self.seen.append((CALLER.get(), threading.current_thread().name))
        return self._client.upload_part(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_the_uploader_thread_sees_the_callers_context_variables(server: DocumentServer, s3: Any) -> None:
    body, _ = big_document(9 * report_stream.MiB)
    recording = RecordingS3(s3)
    token = CALLER.set("report_fetcher")
    try:
        store(recording, server.serve(gzip.compress(body, 1)), label="GZIP")
    finally:
        CALLER.reset(token)
    assert recording.seen == [("report_fetcher", "report-part-uploader")] * 2
    # The export's MultipartWriter (data requests) uses the same uploader.
    export = RecordingS3(s3)
    token = CALLER.set("data_requests")
    try:
        writer = report_stream.MultipartWriter(export, BUCKET, "exports/x.zip", report_stream.PART_SIZE,
                                               "application/zip")
        writer.write(b"PK" * 10)
        writer.complete()
    finally:
        CALLER.reset(token)
    assert export.seen == [("data_requests", "report-part-uploader")]
    assert CALLER.get() == "nobody"


def test_the_download_thread_sees_the_callers_context_variables() -> None:
    seen: list[tuple[str, str]] = []

    def source() -> Iterator[bytes]:
        for chunk in (b"a", b"b"):
            seen.append((CALLER.get(), threading.current_thread().name))
            yield chunk

    token = CALLER.set("report_fetcher")
    try:
        assert list(report_stream._prefetched(source())) == [b"a", b"b"]
    finally:
        CALLER.reset(token)
    assert seen == [("report_fetcher", "report-download")] * 2


# --- helpers ---------------------------------------------------------------------------------------


def assert_no_url(exc: BaseException, url: str) -> None:
    printed = "".join(traceback.format_exception(exc))
    assert url not in printed
    assert url.partition("?")[2] not in printed
    assert "X-Amz-Signature" not in printed


class socket_closed_port:
    """A loopback port nobody listens on."""

    def __enter__(self) -> int:
        import socket
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port = int(self._sock.getsockname()[1])
        self._sock.close()
        return port

    def __exit__(self, *exc: object) -> None:
        return None
