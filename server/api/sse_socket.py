"""The SSE fast path at the HTTP edge: write a stream's HTTP/1.1 chunks on its socket.

This is the ONE module that reaches into quart / hypercorn / h11 internals; the versions it
was written against are ``TESTED_VERSIONS`` (pyproject.toml pins the same minor ranges)
and ``check_internals`` verifies every internal it relies on (tests/events/
test_sse_socket.py fails loudly, naming the library, when an upgrade changes one):

- quart: ``request._send_push_promise`` is ``functools.partial(send, ...)`` whose first
  argument is hypercorn's ``HTTPStream.app_send`` (the way from the request to its
  connection);
- hypercorn (trio worker): ``HTTPStream.send`` is ``H11Protocol.stream_send``,
  ``H11Protocol.send`` is ``TCPServer.protocol_send``, ``TCPServer.stream`` is the
  connection's ``trio.SocketStream`` and ``TCPServer.send_lock`` the lock hypercorn holds
  around each of its writes;
- h11: ``Connection._writer`` is an ``h11._writers.ChunkedWriter`` while the body is sent
  chunked.

What we rely on: while a response body is being produced, hypercorn writes on that
connection only what the ASGI app sends, each write under ``send_lock``. ``SocketWriter``
writes from ``publish`` (``write_nowait``) only when that lock is free and never awaits
there, so no write of hypercorn is ever interleaved; its awaited writes (``write``) hold
the lock. h11 still believes it is framing chunks, so hypercorn's terminating chunk
(``0\\r\\n\\r\\n``) is correct after the stream's last direct write.

``socket_writer_for_current_request`` (in the route, inside the request context) returns
a ``SocketWriter`` only for plain-TCP HTTP/1.1 served by hypercorn's trio worker; anything
else (HTTP/2, TLS, HTTP/1.0, another server) gives None and the stream keeps the normal
ASGI path. ``abort`` works whether or not direct writes are used: it shuts the connection
down, which also ends a write hypercorn is blocked in (a client that stopped reading).

Parking (``server.events.parked``; only on stretto's ``EdgeTCPServer``): ``park`` calls the
connection's ``detach`` (its tasks end, its descriptor is closed, not the socket) and drops
every reference to hypercorn's objects; the duplicate then owns the socket, and ``finish``
writes the terminating chunk itself and closes it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import socket
from importlib.metadata import version
from typing import Any

import trio

from server.events.sink import WriteResult

# Library -> the minor version this module was written and tested against.
TESTED_VERSIONS = {"h11": "0.16", "hypercorn": "0.18", "quart": "0.22", "quart-trio": "0.12"}


class InternalsChanged(RuntimeError):
    """An installed library no longer has an internal the fast path relies on."""


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (``data`` must not be empty)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


# The hub offers the same frame bytes to every subscriber in turn: frame them once.
_last_frame: tuple[bytes, bytes] = (b"", b"")


def _chunk_shared(data: bytes) -> bytes:
    global _last_frame
    last_data, last_wire = _last_frame
    if data is last_data:
        return last_wire
    wire = chunk(data)
    _last_frame = (data, wire)
    return wire


class SocketWriter:
    """``DirectWriter`` (``server.events.sink``) on one response's connection. See the
    module doc. ``start`` dups the socket once h11 frames the body as chunks."""

    __slots__ = (
        "_chunked",
        "_connection_sock",
        "_detach",
        "_fd",
        "_handoff",
        "_lock",
        "_on_close",
        "_rest",
        "_sock",
        "parked",
    )

    def __init__(
        self,
        connection_sock: Any,
        lock: trio.Lock,
        chunked: Any,
        on_close: Any = None,
        detach: Any = None,
    ) -> None:
        self._connection_sock = connection_sock  # the trio socket hypercorn writes on
        self._on_close = on_close  # EdgeTCPServer.on_close, or None (hypercorn's own server)
        self._lock = lock  # hypercorn's TCPServer.send_lock
        self._chunked = chunked  # () -> bool: h11 is sending this body chunked
        self._sock: socket.socket | None = None  # a non-blocking duplicate
        self._rest = b""  # the unwritten end of a partly written chunk
        self._detach = detach  # EdgeTCPServer.detach, or None: the stream cannot be parked
        self._fd = -1
        self._handoff: Any = None  # from ``detach``: released when the socket is closed
        self.parked = False  # the connection's tasks ended; this writer owns the socket

    def start(self) -> bool:
        if self._sock is not None:
            return True
        try:
            if not self._chunked():
                return False
            sock = socket.socket(fileno=os.dup(self._connection_sock.fileno()))
        except (AttributeError, OSError):
            return False
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        return True

    # -- ParkableWriter (server.events.parked) ---------------------------------------------
    def park(self) -> bool:
        """End the connection's tasks (``EdgeTCPServer.detach``: no more reads or writes,
        its descriptor closed, not the socket): this writer's duplicate owns the socket, and
        the server must not end the response (``parked``). Drops every reference to the
        connection, so that its HTTP state is freed."""
        if self.parked:
            return True
        if self._detach is None or self._sock is None or self._rest or self._lock.locked():
            return False
        detach, self._detach = self._detach, None
        self._handoff = detach()
        self.parked = True
        self._on_close = None
        self._chunked = None
        self._connection_sock = None
        self._lock = trio.Lock()  # hypercorn's no longer writes here
        return True

    def fileno(self) -> int:
        return self._fd

    def peek(self) -> bytes | None:
        sock = self._sock
        if sock is None:
            return b""
        try:
            return sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def finish(self, final: bool) -> None:
        """End a parked response: the last chunk if the socket takes all of it now (else
        an abort), then close."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        sent = 0
        if final and not self._rest:
            with contextlib.suppress(OSError):
                sent = sock.send(b"0\r\n\r\n")
        if sent != 5:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        trio.lowlevel.notify_closing(sock)
        sock.close()
        handoff, self._handoff = self._handoff, None
        if handoff is not None:
            handoff.release()

    def write_nowait(self, data: bytes) -> WriteResult:
        sock = self._sock
        if sock is None or self._rest or self._lock.locked() or not data:
            return WriteResult.REFUSED
        wire = _chunk_shared(data)
        try:
            sent = sock.send(wire)
        except BlockingIOError:
            return WriteResult.REFUSED
        except OSError:
            return WriteResult.BROKEN
        if sent == len(wire):
            return WriteResult.WRITTEN
        if sent == 0:
            return WriteResult.REFUSED
        self._rest = wire[sent:]
        return WriteResult.HELD

    async def write(self, data: bytes) -> bool:
        sock = self._sock
        assert sock is not None, "start() first"
        view = memoryview(self._rest + (chunk(data) if data else b""))
        self._rest = b""
        try:
            async with self._lock:
                while view:
                    await trio.lowlevel.wait_writable(sock)
                    try:
                        sent = sock.send(view)
                    except BlockingIOError:
                        continue
                    view = view[sent:]
        except OSError:
            return False
        return True

    def when_closed(self, callback: Any) -> bool:
        """Have the connection call ``callback()`` when it closes (False: it cannot, keep
        waiting for ``http.disconnect`` instead). ``close`` unregisters it."""
        if self._on_close is None:
            return False
        self._on_close(callback)
        return True

    def abort(self) -> None:
        target = self._sock if self.parked else self._connection_sock
        if target is None:
            return
        with contextlib.suppress(OSError):  # already closed
            target.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Release the duplicate. When the connection could not take hypercorn's
        terminating chunk now (a client that stopped reading) or a chunk is half written,
        abort it instead: hypercorn's own write is shielded and would wait forever."""
        if self.parked:
            self.finish(False)
            return
        if self._on_close is not None:
            self._on_close(None)
        if self._sock is not None:
            sock, self._sock = self._sock, None
            if self._rest or not _writable_now(sock):
                self.abort()
            sock.close()


def _writable_now(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(0))


def socket_writer_for_current_request() -> SocketWriter | None:
    """The current request's connection, when it is a plain-TCP HTTP/1.1 connection of
    hypercorn's trio worker; None otherwise (HTTP/2, HTTP/1.0, TLS, another server...)."""
    try:
        return _find()
    except Exception:  # any mismatch with the internals we expect: keep the normal path
        return None


def socket_writer_for_send(send: Any, http_version: str) -> SocketWriter | None:
    """The same as ``socket_writer_for_current_request`` for an ASGI application below
    Quart (``server.api.edge``): ``send`` is the ``send`` hypercorn gave it."""
    if http_version != "1.1":
        return None
    try:
        return _from_send(send)
    except Exception:  # any mismatch with the internals we expect: keep the normal path
        return None


def check_internals() -> None:
    """Raise ``InternalsChanged`` (naming the library and its version) when an installed
    library differs from what this module relies on."""
    for library, tested in TESTED_VERSIONS.items():
        installed = version(library)
        if not (installed == tested or installed.startswith(tested + ".")):
            raise InternalsChanged(
                f"{library} {installed} is installed; server/api/sse_socket.py was written "
                f"against {library} {tested}.x: review its internals, then TESTED_VERSIONS"
            )
    import h11
    import hypercorn.protocol.h11 as hyper_h11
    import hypercorn.protocol.http_stream as hyper_stream
    import hypercorn.trio.tcp_server as hyper_tcp
    import quart.wrappers.request as quart_request

    def need(ok: bool, library: str, what: str) -> None:
        if not ok:
            raise InternalsChanged(f"{library} {version(library)}: {what} changed")

    try:
        from h11._writers import ChunkedWriter
    except ImportError:
        need(False, "h11", "h11._writers.ChunkedWriter")
    connection = h11.Connection(h11.SERVER)
    need(hasattr(connection, "_writer"), "h11", "Connection._writer")
    need(isinstance(ChunkedWriter, type), "h11", "h11._writers.ChunkedWriter")
    need(hasattr(hyper_stream.HTTPStream, "app_send"), "hypercorn", "HTTPStream.app_send")
    need(hasattr(hyper_h11.H11Protocol, "stream_send"), "hypercorn", "H11Protocol.stream_send")
    # ``server.http`` may have put its subclass in TCPServer's place: look through the MRO.
    server_cls = hyper_tcp.TCPServer
    inits = [getattr(vars(c)["__init__"], "__code__", None) for c in server_cls.__mro__
             if "__init__" in vars(c)]  # fmt: skip
    need(
        hasattr(server_cls, "protocol_send")
        and any(code is not None and "send_lock" in code.co_names for code in inits),
        "hypercorn",
        "TCPServer.protocol_send / TCPServer.send_lock",
    )
    need(
        "_send_push_promise" in quart_request.Request.__init__.__code__.co_names,
        "quart",
        "Request._send_push_promise",
    )


def _find() -> SocketWriter | None:
    from quart import request

    if request.http_version != "1.1":
        return None
    push = request._send_push_promise
    if not isinstance(push, functools.partial) or not push.args:
        return None
    return _from_send(push.args[0])


def _from_send(send: Any) -> SocketWriter | None:
    """The connection behind hypercorn's ``HTTPStream.app_send`` (see the module doc)."""
    import h11
    from h11._writers import ChunkedWriter
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.http_stream import HTTPStream
    from hypercorn.trio.tcp_server import TCPServer

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
    lock: Any = server.send_lock
    if not isinstance(lock, trio.Lock):
        return None
    trio_sock = trio_stream.socket
    if trio_sock.type != socket.SOCK_STREAM:
        return None

    def chunked() -> bool:
        return (
            protocol.connection is connection
            and connection.our_state is h11.SEND_BODY
            and isinstance(connection._writer, ChunkedWriter)
        )

    return SocketWriter(
        trio_sock,
        lock,
        chunked,
        getattr(server, "on_close", None),
        getattr(server, "detach", None),
    )
