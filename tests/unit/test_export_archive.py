"""The export archive beyond ZIP's classic limits: more than 65,535 entries and members announced as 2 GiB
or more need ZIP64 records, which `zipfile` must write into a stream it cannot seek. A stand-in S3 keeps
the parts in memory (moto would take minutes for 70,000 objects)."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest
from data_exports.archive import ZIP64_FROM, ArchiveEvents, ExportBuilder

from seller_insights.export_requests import Progress
from seller_insights.object_keys import seller_prefix

SELLER = "A1ZIPSIXTYFOUR"
REPORT_TYPE = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL"


class _Body(io.BytesIO):
    pass


class MemoryS3:
    """get_object over a dict, and a multipart upload that keeps its parts."""

    class exceptions:
        class NoSuchKey(Exception):
            pass

    def __init__(self, objects: dict[str, bytes], announced: dict[str, int] | None = None) -> None:
        self.objects, self.announced = objects, announced or {}
        self.parts: dict[int, bytes] = {}
        self.completed: bytes | None = None
        self.aborted = False

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise self.exceptions.NoSuchKey(Key)
        data = self.objects[Key]
        return {"Body": _Body(data), "ContentLength": self.announced.get(Key, len(data))}

    def create_multipart_upload(self, **_kwargs: Any) -> dict[str, str]:
        return {"UploadId": "upload-1"}

    def upload_part(self, *, PartNumber: int, Body: bytes, **_kwargs: Any) -> dict[str, str]:
        self.parts[PartNumber] = Body
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, **_kwargs: Any) -> dict[str, Any]:
        self.completed = b"".join(self.parts[n] for n in sorted(self.parts))
        return {}

    def abort_multipart_upload(self, **_kwargs: Any) -> dict[str, Any]:
        self.aborted = True
        return {}


def _reports(count: int, size: int = 12) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    objects, rows = {}, []
    prefix = seller_prefix(SELLER, "NA")
    for n in range(count):
        key = f"{prefix}reports/GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL/{n:06d}.tsv"
        data = f"{n:0{size}d}".encode()
        objects[key] = data
        rows.append({"s3_key": key, "region": "NA", "report_type": REPORT_TYPE, "report_id": str(n),
                     "rows": 1, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    return objects, rows


class Recorder(ArchiveEvents):
    def __init__(self) -> None:
        self.uploads: list[str] = []
        self.progress_events: list[Progress] = []

    def uploading(self, upload_id: str) -> None:
        self.uploads.append(upload_id)

    def progress(self, progress: Progress) -> None:
        self.progress_events.append(progress)


def _build(s3: MemoryS3, rows: list[dict[str, Any]], events: ArchiveEvents | None = None) -> zipfile.ZipFile:
    ExportBuilder(s3, "data", part_size=5 * 1024 * 1024).build(
        key="exports/k/r.zip", seller_id=SELLER, generated_at=datetime(2026, 12, 1, tzinfo=UTC),
        connections=[{"region": "NA"}], profile=None, reports=rows, events=events)
    assert s3.completed is not None and not s3.aborted
    return zipfile.ZipFile(io.BytesIO(s3.completed))


def test_more_than_65535_entries_get_a_zip64_end_of_central_directory() -> None:
    objects, rows = _reports(70_000)
    s3 = MemoryS3(objects)
    events = Recorder()
    archive = _build(s3, rows, events)
    assert s3.completed is not None and b"PK\x06\x06" in s3.completed[-200:]  # ZIP64 end of central directory
    names = archive.namelist()
    assert len(names) == 70_000 + 3  # connections.json, reports.csv, manifest.json
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["record_counts"]["reports"] == 70_000
    assert archive.read("reports/NA/GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL/069999.tsv") == objects[
        rows[-1]["s3_key"]]
    # Progress every 100 reports, then once when the archive is closed, with everything.
    assert events.uploads == ["upload-1"]
    assert [p.objects_done for p in events.progress_events[:3]] == [100, 200, 300]
    assert events.progress_events[-1] == Progress(objects_done=70_000, bytes_done=70_000 * 12,
                                                  zip_bytes=len(s3.completed))


def test_a_member_announced_as_2_gib_or_more_is_written_with_zip64_sizes() -> None:
    objects, rows = _reports(2)
    big = rows[0]["s3_key"]
    s3 = MemoryS3(objects, announced={big: ZIP64_FROM})
    archive = _build(s3, rows)
    assert archive.testzip() is None
    info = archive.getinfo("reports/NA/GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL/000000.tsv")
    assert s3.completed is not None
    header = s3.completed[info.header_offset:]
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    extra = header[30 + name_length:30 + name_length + extra_length]
    assert extra[:2] == b"\x01\x00"  # the local header's ZIP64 extended information field
    assert archive.read(info) == objects[big]


def test_a_stop_before_a_report_aborts_the_upload() -> None:
    objects, rows = _reports(5)

    class Stop(ArchiveEvents):
        def before_report(self) -> None:
            raise TimeoutError("out of time")

    s3 = MemoryS3(objects)
    with pytest.raises(TimeoutError):
        ExportBuilder(s3, "data").build(key="k", seller_id=SELLER, generated_at=datetime(2026, 12, 1, tzinfo=UTC),
                                        connections=[], profile=None, reports=rows, events=Stop())
    assert s3.aborted and s3.completed is None
