"""An S3 multipart upload fed by `write(bytes)`, in bounded memory, hashed as it goes.

- Always a multipart upload, also for fewer bytes than one part (one part, possibly empty): one code
  path, one abort path, and every object gets a SHA-256 part checksum (`ChecksumAlgorithm`).
- Every part but the last is exactly `part_size` bytes. Parts are uploaded by `UPLOADERS` background
  threads (`report-part-uploader`) while the next part is produced; at most one part waits for them.
  Two parts in flight, not one: when one PUT is slow the producer goes on (bench/README.md,
  "report_streaming"). Peak memory: about 4 parts, flat in the object's size.
- Each uploader thread runs in a copy of the starting thread's `contextvars` context, so context
  variables the caller set (e.g. which function is calling AWS) hold in it too.
- `complete()` returns the sha256 of every byte written (hashed on the uploader threads, in part
  order; hashlib releases the GIL on large buffers). After any failure the caller calls `abort()`, which
  stops the uploader first. Errors are `StorageFailed` naming the S3 operation and S3's error code.

bench/README.md ("report_streaming") compares it with boto3's `upload_fileobj` and a `TransferConfig`.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any

from seller_insights.context_threads import thread_in_this_context
from seller_insights.errors import StorageFailed
from seller_insights.observability import get_logger

MiB = 1024 * 1024
PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
UPLOADERS = 2  # parts in flight at once


class PartUploader:
    """Uploads parts on `uploaders` background threads; at most one part waits while they upload.
    Parts must be submitted in order, numbered from 1; they are hashed in that order."""

    def __init__(self, s3: Any, bucket: str, key: str, upload_id: str, uploaders: int = UPLOADERS) -> None:
        self._s3, self._bucket, self._key, self._upload_id = s3, bucket, key, upload_id
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=1)
        self._parts: list[dict[str, Any]] = []
        self._error: BaseException | None = None
        # Hashed here, in part order, off the producing thread's critical path: the thread holding
        # part n hashes it once part n - 1 is hashed (or skipped after an error).
        self.sha256 = hashlib.sha256()
        self._hashed = 0
        self._turn = threading.Condition()
        self._threads = [thread_in_this_context(self._run, "report-part-uploader") for _ in range(uploaders)]
        for thread in self._threads:
            thread.start()

    def submit(self, number: int, body: bytes) -> None:
        self._raise_if_failed()
        self._queue.put((number, body))

    def close(self) -> list[dict[str, Any]]:
        self.stop()
        self._raise_if_failed()
        return sorted(self._parts, key=lambda part: int(part["PartNumber"]))

    def stop(self) -> None:
        alive = [thread for thread in self._threads if thread.is_alive()]
        for _ in alive:
            self._queue.put(None)
        for thread in alive:
            thread.join()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise storage_error("UploadPart", self._error) from None

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            number, body = item
            with self._turn:
                self._turn.wait_for(lambda: self._hashed == number - 1)  # noqa: B023 - called right here
                if self._error is None:
                    self.sha256.update(body)
                self._hashed = number
                self._turn.notify_all()
            if self._error is not None:
                continue  # drain, so that submit() never blocks for ever
            try:
                answer = self._s3.upload_part(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number,
                    Body=body, ChecksumAlgorithm="SHA256",
                )
            except BaseException as exc:
                self._error = exc
                continue
            part = {"PartNumber": number, "ETag": answer["ETag"]}
            if answer.get("ChecksumSHA256"):
                part["ChecksumSHA256"] = answer["ChecksumSHA256"]
            self._parts.append(part)


class MultipartWriter:
    """`write(bytes)` buffers into parts of `part_size` uploaded in the background, `complete()` returns
    the sha256 of every byte written, `abort()` after any failure. Errors are `StorageFailed`."""

    def __init__(self, s3: Any, bucket: str, key: str, part_size: int, content_type: str) -> None:
        self._s3, self._bucket, self._key, self._part_size = s3, bucket, key, part_size
        try:
            created = s3.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type, ChecksumAlgorithm="SHA256",
            )
        except Exception as exc:
            raise storage_error("CreateMultipartUpload", exc) from None
        self._upload_id: str = created["UploadId"]
        self._uploader = PartUploader(s3, bucket, key, self._upload_id)
        self._buffer = bytearray()
        self.parts = 0
        self.bytes_out = 0

    @property
    def upload_id(self) -> str:
        """The multipart upload's id: what a caller records to abort the upload should its process die."""
        return self._upload_id

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.bytes_out += len(data)
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            self._send_part()

    def complete(self) -> str:
        if self._buffer or self.parts == 0:
            self._send_part()
        parts = self._uploader.close()
        try:
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": parts},
            )
        except Exception as exc:
            raise storage_error("CompleteMultipartUpload", exc) from None
        return self._uploader.sha256.hexdigest()

    def abort(self) -> None:
        self._uploader.stop()
        try:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        except Exception as exc:
            get_logger().warning("could not abort a multipart upload; the bucket lifecycle rule will",
                                 extra={"error": type(exc).__name__, "code": _s3_code(exc)})

    def _send_part(self) -> None:
        self.parts += 1
        with memoryview(self._buffer) as view:  # one copy, not a bytearray slice and then bytes
            body = bytes(view[:self._part_size])
        del self._buffer[:self._part_size]
        self._uploader.submit(self.parts, body)


def _s3_code(exc: BaseException) -> str | None:
    answer = getattr(exc, "response", None)
    if isinstance(answer, dict):
        code = answer.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def storage_error(operation: str, exc: BaseException) -> StorageFailed:
    return StorageFailed(operation, _s3_code(exc) or type(exc).__name__)
