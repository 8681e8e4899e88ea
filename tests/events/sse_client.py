"""A small SSE test client on a raw trio socket: HTTP/1.1, chunked decoding, ``SSEDecoder``.

Raw sockets rather than httpx streaming: httpx 0.28's nested async generators are
garbage-collected unexhausted when a stream is left open, which trio reports as a
ResourceWarning (encode/httpx#3686) and the suite turns warnings into errors.
"""

from __future__ import annotations

from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx
import trio

from server.events.sse import SSEDecoder, SSEMessage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

HANG_GUARD_S = 10  # fails a hung test; never a timing assertion
RAW_KEPT = 64 * 1024  # the first bytes of the body are kept for assertions


class SSEStream:
    """One open ``text/event-stream`` response."""

    def __init__(self, stream: trio.SocketStream, status: int, headers: dict[str, str]) -> None:
        self.stream = stream
        self.status = status
        self.headers = headers
        self.decoder = SSEDecoder()
        self.raw = b""  # the first RAW_KEPT bytes of the (de-chunked) body
        self.ended = False
        self.terminated = False  # the chunked terminator (``0\r\n\r\n``) was read
        self._wire = b""
        self._messages: deque[SSEMessage] = deque()

    def _body(self, data: bytes) -> None:
        if len(self.raw) < RAW_KEPT:
            self.raw += data[: RAW_KEPT - len(self.raw)]
        self._messages.extend(self.decoder.feed(data))

    def _dechunk(self) -> None:
        while True:
            head, sep, rest = self._wire.partition(b"\r\n")
            if not sep:
                return
            size = int(head.split(b";")[0], 16)
            if size == 0:
                self.ended = True
                self.terminated = True
                self._wire = b""
                return
            if len(rest) < size + 2:
                return
            self._body(rest[:size])
            self._wire = rest[size + 2 :]

    async def _read(self) -> bool:
        if self.ended:
            return False
        chunk = await self.stream.receive_some(256 * 1024)
        if not chunk:
            self.ended = True
            return False
        self._wire += chunk
        self._dechunk()
        return True

    async def next(self) -> SSEMessage:
        with trio.fail_after(HANG_GUARD_S):
            while not self._messages:
                if not await self._read():
                    raise EOFError("stream ended")
            return self._messages.popleft()

    async def take(self, count: int) -> list[SSEMessage]:
        return [await self.next() for _ in range(count)]

    async def started(self) -> None:
        """Wait for the first frame (``retry``): the server has subscribed by then."""
        with trio.fail_after(HANG_GUARD_S):
            while not self.raw:
                if not await self._read():
                    raise EOFError("stream ended")

    async def until_end(self) -> list[SSEMessage]:
        """Every message until the server ends the stream (the chunked terminator)."""
        with trio.fail_after(HANG_GUARD_S):
            while await self._read():
                pass
        out = list(self._messages)
        self._messages.clear()
        return out

    async def until_comment(self) -> str:
        await self.until_comments(1)
        return self.decoder.comments[0]

    async def until_comments(self, count: int) -> list[str]:
        """Read until ``count`` comments (heartbeats) have arrived in all."""
        with trio.fail_after(HANG_GUARD_S):
            while len(self.decoder.comments) < count:
                if not await self._read():
                    raise EOFError("stream ended")
        return self.decoder.comments


async def connect(
    base_url: str,
    target: str,
    headers: Mapping[str, str] | None = None,
    receive_buffer: int | None = None,
) -> trio.SocketStream:
    """A socket with the GET request sent (``receive_buffer`` shrinks SO_RCVBUF)."""
    url = httpx.URL(base_url)
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, receive_buffer)
    await sock.connect((url.host, url.port))
    stream = trio.SocketStream(sock)
    lines = [f"GET {target} HTTP/1.1", f"Host: {url.host}", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
    return stream


async def read_head(stream: trio.SocketStream) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body bytes already received)."""
    data = b""
    with trio.fail_after(HANG_GUARD_S):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise EOFError("connection closed before the response head")
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, rest


@asynccontextmanager
async def open_stream(
    base: str | httpx.AsyncClient,
    project_id: str,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    receive_buffer: int | None = None,
) -> AsyncIterator[SSEStream]:
    base_url = str(base.base_url) if isinstance(base, httpx.AsyncClient) else base
    target = f"/api/sse/projects/{project_id}"
    if params:
        target += "?" + urlencode(params)
    stream = await connect(base_url, target, headers, receive_buffer)
    try:
        status, response_headers, rest = await read_head(stream)
        assert status == 200, rest.decode(errors="replace")
        assert response_headers.get("transfer-encoding") == "chunked"
        sse = SSEStream(stream, status, response_headers)
        sse._wire = rest
        sse._dechunk()
        await sse.started()  # the first frame comes after the server subscribed
        yield sse
    finally:
        await stream.aclose()
