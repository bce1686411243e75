"""multipart_writer's part uploader: two parts in flight, hashed in part order (a fake S3, no HTTP)."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from seller_insights.errors import StorageFailed
from seller_insights.multipart_writer import PartUploader


class SlowFirstPart:
    """Holds part 1's upload until part 2's upload has started: only two threads in flight get there."""

    def __init__(self, fail: int | None = None) -> None:
        self.second_started = threading.Event()
        self.first_waited = False
        self.fail = fail
        self.uploaded: list[int] = []

    def upload_part(self, *, PartNumber: int, Body: bytes, **_: Any) -> dict[str, str]:
        if PartNumber == 2:
            self.second_started.set()
        if PartNumber == 1:
            self.first_waited = self.second_started.wait(timeout=30)
        if PartNumber == self.fail:
            raise RuntimeError("S3 said no")
        self.uploaded.append(PartNumber)
        return {"ETag": f'"{PartNumber}"'}


def test_parts_upload_two_at_a_time_and_hash_in_order() -> None:
    s3 = SlowFirstPart()
    bodies = [bytes([n]) * (3000 + n) for n in range(1, 7)]
    uploader = PartUploader(s3, "bucket", "key", "upload")
    for number, body in enumerate(bodies, 1):
        uploader.submit(number, body)
    parts = uploader.close()
    assert s3.first_waited  # part 2 started while part 1 was still uploading
    assert [part["PartNumber"] for part in parts] == [1, 2, 3, 4, 5, 6]
    assert uploader.sha256.hexdigest() == hashlib.sha256(b"".join(bodies)).hexdigest()


def test_a_failed_part_fails_the_close_and_the_rest_drain() -> None:
    s3 = SlowFirstPart(fail=2)
    uploader = PartUploader(s3, "bucket", "key", "upload")
    with pytest.raises(StorageFailed) as caught:
        for number in range(1, 6):
            uploader.submit(number, b"x" * 3000)
        uploader.close()
    assert (caught.value.operation, caught.value.code) == ("UploadPart", "RuntimeError")
    uploader.stop()  # idempotent: every thread has ended
    assert 2 not in s3.uploaded
