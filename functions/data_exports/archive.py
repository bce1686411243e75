"""The portability archive: one ZIP streamed straight into an S3 multipart upload, in bounded memory.

The archive is written to a non-seekable sink, so `zipfile` puts a data descriptor after each member
(sizes and CRC follow the data) and nothing is ever rewound. Every report object is read from S3 in
chunks of `CHUNK` and deflated into the archive as it arrives; the sink hands the bytes to
`multipart_writer.MultipartWriter`, which uploads parts of `PART_SIZE` on two background threads. Peak
memory is about four parts plus a chunk, whatever the size of the reports; what grows with their number is
the ZIP's central directory and the manifest's list (a few hundred bytes per report). `zipfile` writes
ZIP64 records by itself once the archive passes 4 GiB or 65,535 entries; a member of 2 GiB or more is
opened with ZIP64 sizes from the start (its data descriptor needs them).

`ArchiveEvents` lets the export worker follow and stop the build: it learns the multipart upload's id
before the first part, progress every `PROGRESS_OBJECTS` reports or `PROGRESS_BYTES` bytes read, and is
asked before each report whether to go on (it raises to stop; the upload is then aborted).

Contents (schema_version "1"):
- `connections.json`: the seller's connection records (allowlisted fields only: no token, sealed
  blob, lease or index attribute);
- `profile.json` if the seller gave contact details;
- `reports.csv`: one row per stored report (region, report_type, report, file, bytes, rows, sha256,
  stored_at);
- `reports/{region}/{report_type}/{file}`: every stored report as stored (UTF-8);
- `manifest.json` (last): schema_version, generated_at, source, every file with sha256 and bytes,
  record counts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from seller_insights.export_requests import Progress
from seller_insights.multipart_writer import PART_SIZE, MultipartWriter
from seller_insights.object_keys import seller_prefix
from seller_insights.observability import get_logger
from seller_insights.repositories import iso

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

SCHEMA_VERSION = "1"
SOURCE = "Amazon SP-API via Seller Insights"
CHUNK = 1024 * 1024
ZIP64_FROM = 1 << 31  # members this large need ZIP64 sizes (the data descriptor holds them)
PROGRESS_OBJECTS = 100
PROGRESS_BYTES = 64 * 1024 * 1024
REPORT_COLUMNS = ("region", "report_type", "report", "file", "bytes", "rows", "sha256", "stored_at")


class _Sink:
    """The write side zipfile sees: counts bytes and passes them to the multipart writer."""

    def __init__(self, writer: MultipartWriter) -> None:
        self._writer = writer
        self.bytes = 0

    def write(self, data: bytes, /) -> int:
        self._writer.write(bytes(data))
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None  # the caller completes (or aborts) the upload


class ArchiveEvents:
    """What the builder tells its caller (the defaults do nothing)."""

    def uploading(self, upload_id: str) -> None:
        """The multipart upload exists: the caller records it, to abort it should this run die."""

    def progress(self, progress: Progress) -> None:
        """Reports done and bytes read so far, bytes of archive written."""

    def before_report(self) -> None:
        """Called before each report; raising stops the build (the upload is aborted)."""


@dataclass
class ExportResult:
    key: str
    files: int  # files in the archive, the manifest included
    bytes: int  # size of the ZIP object
    reports: int
    missing_reports: int
    manifest: dict[str, Any] = field(default_factory=dict)


class ExportBuilder:
    def __init__(self, s3: S3Client, bucket: str, *, part_size: int = PART_SIZE) -> None:
        self._s3, self._bucket, self._part_size = s3, bucket, part_size
        self._when: tuple[int, ...] = (2026, 1, 1, 0, 0, 0)

    def build(self, *, key: str, seller_id: str, generated_at: datetime, connections: list[dict[str, Any]],
              profile: dict[str, Any] | None, reports: Iterable[dict[str, Any]],
              events: ArchiveEvents | None = None) -> ExportResult:
        events = events or ArchiveEvents()
        self._when = generated_at.timetuple()[:6]
        writer = MultipartWriter(self._s3, self._bucket, key, self._part_size, "application/zip")
        sink = _Sink(writer)
        files: list[dict[str, Any]] = []
        done = read = 0
        reported = (0, 0)  # (reports, bytes) at the last progress event
        try:
            events.uploading(writer.upload_id)
            with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
                self._add_bytes(archive, files, "connections.json", _json(connections))
                if profile is not None:
                    self._add_bytes(archive, files, "profile.json", _json(profile))
                index = io.StringIO()
                table = csv.writer(index, lineterminator="\n")
                table.writerow(REPORT_COLUMNS)
                stored = missing = rows = 0
                prefix = seller_prefix(seller_id)
                for report in reports:
                    events.before_report()
                    name = _member_name(report, prefix)
                    added = name is not None and self._add_object(archive, files, name, str(report["s3_key"]))
                    done += 1
                    if added:
                        entry = files[-1]
                        read += entry["bytes"]
                        if entry["sha256"] != report.get("sha256"):
                            get_logger().warning("a stored report differs from its recorded checksum",
                                                 extra={"region": report.get("region")})
                        stored += 1
                        rows += int(report.get("rows", 0))
                        table.writerow([report.get("region", ""), report.get("report_type", ""),
                                        _report_name(report), name, entry["bytes"], int(report.get("rows", 0)),
                                        entry["sha256"], report.get("stored_at", "")])
                    else:
                        missing += 1
                    if done - reported[0] >= PROGRESS_OBJECTS or read - reported[1] >= PROGRESS_BYTES:
                        events.progress(Progress(objects_done=done, bytes_done=read, zip_bytes=sink.bytes))
                        reported = (done, read)
                self._add_bytes(archive, files, "reports.csv", index.getvalue().encode("utf-8"))
                manifest = {
                    "schema_version": SCHEMA_VERSION,
                    "generated_at": iso(generated_at),
                    "source": SOURCE,
                    "files": files,
                    "record_counts": {"connections": len(connections), "profile": 1 if profile is not None else 0,
                                      "reports": stored, "report_rows": rows, "reports_missing": missing},
                }
                archive.writestr(self._info("manifest.json"), _json(manifest))
            events.progress(Progress(objects_done=done, bytes_done=read, zip_bytes=sink.bytes))
            writer.complete()
        except BaseException:
            writer.abort()
            raise
        return ExportResult(key=key, files=len(files) + 1, bytes=sink.bytes, reports=stored,
                            missing_reports=missing, manifest=manifest)

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=(self._when[0], self._when[1], self._when[2], self._when[3],
                                                self._when[4], self._when[5]))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def _add_bytes(self, archive: zipfile.ZipFile, files: list[dict[str, Any]], name: str, data: bytes) -> None:
        archive.writestr(self._info(name), data)
        files.append({"path": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    def _add_object(self, archive: zipfile.ZipFile, files: list[dict[str, Any]], name: str, key: str) -> bool:
        try:
            answer = self._s3.get_object(Bucket=self._bucket, Key=key)
        except self._s3.exceptions.NoSuchKey:
            get_logger().warning("a stored report row has no object; left out of the export")
            return False
        body = answer["Body"]
        digest, size = hashlib.sha256(), 0
        try:
            large = int(answer.get("ContentLength", 0)) >= ZIP64_FROM
            with archive.open(self._info(name), "w", force_zip64=large) as out:
                while chunk := body.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        finally:
            body.close()
        files.append({"path": name, "bytes": size, "sha256": digest.hexdigest()})
        return True


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _member_name(report: dict[str, Any], prefix: str) -> str | None:
    """`reports/{region}/{type}/{file}` from `sellers/{seller_key}/{region}/reports/{type}/{file}`."""
    key = str(report.get("s3_key", ""))
    if not key.startswith(prefix):
        return None
    parts = key.removeprefix(prefix).split("/")
    if len(parts) < 4 or parts[1] != "reports" or any(p in ("", ".", "..") for p in parts):
        return None
    return "/".join(["reports", parts[0], *parts[2:]])


def _report_name(report: dict[str, Any]) -> str:
    if report.get("window_start"):
        return f"{report['window_start']}_{report.get('window_end', '')}"
    return str(report.get("report_id", ""))
