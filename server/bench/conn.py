"""Raw HTTP/1.1 over trio streams: opening a (TLS) connection and a keep-alive request loop.

Cheaper per request than a general client, so that the load generator is less often the
limit. Owns its stream; ``aclose`` closes it forcefully (no TLS close_notify wait).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import trio

from server.bench.errors import BenchError
from server.bench.wire import (
    HEAD_END,
    MAX_HEAD_BYTES,
    ChunkedDecoder,
    ResponseHead,
    parse_head,
    request_bytes,
)

if TYPE_CHECKING:
    from server.bench.target import Target

RECEIVE_BYTES = 64 * 1024


async def open_stream(target: Target, local_address: str | None = None) -> trio.abc.Stream:
    """A connected stream to the target (TLS for https), from ``local_address`` when given
    (e.g. 127.0.0.x: each source address has its own ephemeral ports). Raises OSError when
    unreachable."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(
        target.host, target.port, local_address=local_address
    )
    if target.scheme == "https":
        tls = trio.SSLStream(
            stream,
            ssl.create_default_context(),
            server_hostname=target.host,
            https_compatible=True,
        )
        try:
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        stream = tls
    return stream


async def read_head(stream: trio.abc.Stream, buffer: bytearray) -> ResponseHead:
    """Read a response head from ``stream``; bytes after it stay in ``buffer``.
    Raises BenchError when the peer closes first or the head is too large."""
    while True:
        end = buffer.find(HEAD_END)
        if end >= 0:
            head = parse_head(bytes(buffer[:end]))
            del buffer[: end + len(HEAD_END)]
            return head
        if len(buffer) > MAX_HEAD_BYTES:
            raise BenchError("response head too large")
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            raise BenchError("connection closed before a response")
        buffer += data


class HttpConnection:
    """One keep-alive connection, one request at a time (closed loop)."""

    def __init__(self, stream: trio.abc.Stream, target: Target) -> None:
        self._stream = stream
        self._target = target
        self._buffer = bytearray()
        self.open = True

    @classmethod
    async def connect(cls, target: Target) -> HttpConnection:
        return cls(await open_stream(target), target)

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> tuple[int, bytes]:
        """Send one request, read the whole response; returns (status, body).
        Raises BenchError or OSError (trio.BrokenResourceError) when the connection fails."""
        if not self.open:
            raise BenchError("connection already closed")
        await self._stream.send_all(
            request_bytes(method, self._target.path(path), self._target.host_header, headers, body)
        )
        head = await read_head(self._stream, self._buffer)
        body_out = await self._read_body(head, method)
        if not head.keep_alive:
            self.open = False
        return head.status, body_out

    async def _read_body(self, head: ResponseHead, method: str) -> bytes:
        buffer = self._buffer
        if method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
            return b""
        if head.chunked:
            decoder = ChunkedDecoder()
            out = bytearray(decoder.feed(bytes(buffer)))
            buffer.clear()
            while not decoder.done:
                data = await self._stream.receive_some(RECEIVE_BYTES)
                if not data:
                    raise BenchError("connection closed inside a chunked body")
                out += decoder.feed(data)
            # Trailers are not expected; a keep-alive server sends the final CRLF right away.
            self.open = False
            return bytes(out)
        length = head.content_length
        if length is None:
            self.open = False  # read to EOF
            while data := await self._stream.receive_some(RECEIVE_BYTES):
                buffer += data
            out_all = bytes(buffer)
            buffer.clear()
            return out_all
        while len(buffer) < length:
            data = await self._stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise BenchError("connection closed inside a response body")
            buffer += data
        out_fixed = bytes(buffer[:length])
        del buffer[:length]
        return out_fixed

    async def aclose(self) -> None:
        self.open = False
        await trio.aclose_forcefully(self._stream)
