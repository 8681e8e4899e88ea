"""Direct socket writes for an HTTP/1.1 chunked response (the SSE fast path).

All reaching into quart / quart-trio / hypercorn / h11 internals lives here (the versions
pinned in pyproject.toml). ``direct_socket_for_current_request`` is called in the route
(inside the request context) and returns a ``DirectSocket`` only for a plain-TCP HTTP/1.1
request served by hypercorn's trio worker; anything else gives None and the stream keeps
the normal ASGI path. ``DirectSocket.start`` is called once the response head and a first
body chunk went out through hypercorn: it checks that h11 frames the body as chunks and
then owns a duplicate of the connection's socket until ``close``.

While a stream writes directly, nothing else writes on that connection: HTTP/1.1 carries
one response at a time and hypercorn only writes again (the terminating ``0\\r\\n\\r\\n``)
after the response body iterator returned.
"""

from __future__ import annotations

import functools
import os
import socket
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Callable


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (``data`` must not be empty)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class DirectSocket:
    """Non-blocking writes of HTTP/1.1 chunks on a response's connection.

    ``send_some`` never blocks (returns how many bytes the kernel took; 0 when its buffer
    is full) and raises ``OSError`` when the connection is broken. ``send_all`` waits for
    writability (cancellable). ``close`` releases the duplicate socket.
    """

    __slots__ = ("_open", "_sock")

    def __init__(self, open_chunked: Callable[[], socket.socket | None]) -> None:
        self._open = open_chunked
        self._sock: socket.socket | None = None

    def start(self) -> bool:
        """True when the body is being sent chunked on this connection: direct writes may
        begin. Call after a first body chunk went out through the server."""
        if self._sock is not None:
            return True
        try:
            sock = self._open()
        except (AttributeError, OSError):
            return False
        if sock is None:
            return False
        sock.setblocking(False)
        self._sock = sock
        return True

    def send_some(self, data: bytes) -> int:
        assert self._sock is not None
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    async def send_all(self, data: bytes) -> bool:
        """Write all of ``data``, waiting for the socket when its buffer is full; False
        when the connection broke (the peer is gone)."""
        assert self._sock is not None
        view = memoryview(data)
        try:
            while view:
                await trio.lowlevel.wait_writable(self._sock)
                sent = self.send_some(view)  # type: ignore[arg-type]
                view = view[sent:]
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()


def direct_socket_for_current_request() -> DirectSocket | None:
    """The current request's connection, when it is a plain-TCP HTTP/1.1 connection of
    hypercorn's trio worker; None otherwise (HTTP/2, HTTP/1.0, TLS, another server...)."""
    try:
        return _find()
    except Exception:  # any mismatch with the internals we expect: keep the normal path
        return None


def _find() -> DirectSocket | None:
    import h11
    from h11._writers import ChunkedWriter
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.http_stream import HTTPStream
    from hypercorn.trio.tcp_server import TCPServer
    from quart import request

    if request.http_version != "1.1":
        return None
    push = request._send_push_promise
    if not isinstance(push, functools.partial) or not push.args:
        return None
    send: Any = push.args[0]
    stream = getattr(send, "__self__", None)
    if not isinstance(stream, HTTPStream) or send.__func__ is not HTTPStream.app_send:
        return None
    protocol_send: Any = stream.send
    protocol = getattr(protocol_send, "__self__", None)
    if (
        not isinstance(protocol, H11Protocol)
        or protocol_send.__func__ is not H11Protocol.stream_send
    ):
        return None
    connection = protocol.connection
    if type(connection) is not h11.Connection:
        return None
    tcp_send: Any = protocol.send
    server = getattr(tcp_send, "__self__", None)
    if not isinstance(server, TCPServer) or tcp_send.__func__ is not TCPServer.protocol_send:
        return None
    trio_stream: Any = server.stream  # typed SSLStream; a SocketStream without TLS
    if not isinstance(trio_stream, trio.SocketStream):
        return None  # TLS
    trio_sock = trio_stream.socket
    if trio_sock.type != socket.SOCK_STREAM:
        return None

    def open_chunked() -> socket.socket | None:
        if not (
            protocol.connection is connection
            and connection.our_state is h11.SEND_BODY
            and isinstance(connection._writer, ChunkedWriter)
        ):
            return None
        return socket.socket(fileno=os.dup(trio_sock.fileno()))

    return DirectSocket(open_chunked)
