"""Harness-only: HTTP requests to one base URL are answered by a WSGI app in the caller's thread.

bench.completeness sends some hundred thousand requests to the Amazon emulator. Over loopback each one
wakes the emulator's server thread (a new thread per connection) and waits for the GIL and the scheduler,
which on a loaded 2-core machine costs more than the emulator's work itself. Routed here, a request
still goes through requests and urllib3 as the product sends it (its session, headers, body, streamed
`response.raw.read(n, decode_content=False)`) and through the emulator's whole WSGI app (werkzeug builds
the same environ a server would); only the socket and the thread hop are gone. Timeouts do not apply.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3 import HTTPHeaderDict
from urllib3.response import HTTPResponse
from werkzeug.test import EnvironBuilder, run_wsgi_app


class _ChunkReader(io.RawIOBase):
    """A WSGI response body, read as a file."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._iterator = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            try:
                self._left = next(self._iterator)
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._left))
        buffer[:count] = self._left[:count]
        self._left = self._left[count:]
        return count

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


@contextlib.contextmanager
def routed(base_url: str, app: Callable[..., Any]) -> Iterator[None]:
    """While inside, requests to `base_url` (any path under it) are answered by `app`."""
    original = HTTPAdapter.send
    prefix = base_url.rstrip("/") + "/"

    def send(self: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not str(request.url).startswith(prefix):
            return original(self, request, *args, **kwargs)
        parts = urlsplit(str(request.url))
        body = request.body.encode() if isinstance(request.body, str) else request.body
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        environ = EnvironBuilder(path=parts.path, query_string=parts.query, base_url=base_url,
                                 method=request.method, headers=headers, data=body or b"").get_environ()
        chunks, status, answer_headers = run_wsgi_app(app, environ, buffered=False)
        code, _, reason = status.partition(" ")
        raw = HTTPResponse(body=io.BufferedReader(_ChunkReader(chunks)),
                           headers=HTTPHeaderDict(list(answer_headers.items())), status=int(code), reason=reason,
                           preload_content=False, decode_content=False)
        return self.build_response(request, raw)

    HTTPAdapter.send = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        HTTPAdapter.send = original  # type: ignore[method-assign]
