"""stretto's connection task for hypercorn's trio worker: ``EdgeTCPServer``.

hypercorn 0.18's ``TCPServer`` does connection work (recycle, close, restarting the
keep-alive idle task) inside the ASGI application's task, through ``protocol_send``. quart-
trio cancels that task as soon as it hands over ``http.disconnect``, which happens in the
middle of that work: the idle task is never restarted and the close never happens, so
keep-alive connections (and ``Connection: close`` ones) never end. See the upstream notes in
``server.http``.

Here the connection's own task owns the socket's life:

- ``protocol_send`` never does connection I/O for ``Closed``/``Updated``: it records the
  state and wakes the reader, which closes;
- the reader reads with a deadline instead of an idle task per request: ``keep_alive_s``
  from the end of each response (and from accept) until the next request head is whole,
  ``body_read_timeout_s`` between body reads, none while a response streams;
- while a request is answered, the reader first waits (up to ``STREAM_READ_AFTER_S``) for
  the response to end before reading again: one recv per request instead of two, and no
  epoll re-registration;
- writes take the lock only when contended and are not shielded: a write cancelled halfway
  leaves the framing broken, so the connection is closed;
- the socket is closed as soon as the reader ends, before waiting for the application
  tasks, so no descriptor outlives its client; ``on_close`` callbacks run then;
- ``HEAD`` responses end after their head (``HeadEndsResponse``): a streaming route
  otherwise never finishes a response whose body is suppressed.
"""

from __future__ import annotations

import contextlib
import weakref
from math import inf
from typing import TYPE_CHECKING, Any, Final

import h11
import trio
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import EventWrapper
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr

from server.http.protocol import EdgeH11Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from hypercorn.config import Config
    from hypercorn.events import Event
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import AppWrapper, LifespanState

    from server.http.budget import BodyBudget

# While a response streams, the reader goes back to reading after this long, to notice a
# client that left (an SSE stream gets ``http.disconnect`` through it).
STREAM_READ_AFTER_S: Final = 1.0
# Closing never waits longer than this (a TLS close_notify to a client that stopped reading).
CLOSE_TIMEOUT_S: Final = 1.0


class EdgeOptions:
    """What ``install`` attaches to a hypercorn ``Config``."""

    __slots__ = ("body_read_timeout_s", "budget")

    def __init__(self, body_read_timeout_s: float, budget: BodyBudget | None) -> None:
        self.body_read_timeout_s = body_read_timeout_s
        self.budget = budget


OPTIONS: weakref.WeakKeyDictionary[Config, EdgeOptions] = weakref.WeakKeyDictionary()


class _Terminated(EventWrapper):
    """The worker's ``context.terminated``, which also closes idle connections when set
    (hypercorn's idle task waited on it; there is no such task here)."""

    def __init__(self) -> None:
        super().__init__()
        self.servers: weakref.WeakSet[EdgeTCPServer] = weakref.WeakSet()

    async def set(self) -> None:
        await super().set()
        for server in list(self.servers):
            server.on_terminated()


def _terminated_event(context: WorkerContext) -> _Terminated | None:
    event = context.terminated
    if isinstance(event, _Terminated):
        return event
    if type(event) is EventWrapper and not event.is_set():
        replacement = _Terminated()
        context.terminated = replacement
        return replacement
    return None


class HeadEndsResponse:
    """ASGI wrapper: a ``HEAD`` response ends with its head; later messages are dropped."""

    def __init__(self, app: AppWrapper) -> None:
        self.app = app

    async def __call__(
        self, scope: Any, receive: Any, send: Any, sync_spawn: Any, call_soon: Any
    ) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            send = _HeadSend(send)
        await self.app(scope, receive, send, sync_spawn, call_soon)


class _HeadSend:
    __slots__ = ("_done", "_send")

    def __init__(self, send: Any) -> None:
        self._send = send
        self._done = False

    async def __call__(self, message: Any) -> None:
        if self._done:
            if message is None:
                await self._send(None)
            return
        await self._send(message)
        if message is not None and message["type"] == "http.response.start":
            self._done = True
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class Handoff:
    """What a detached connection still holds once its tasks ended (its place under the
    connection cap: ``server.runtime.connection_gate`` adds its release with ``add``),
    released when the parked stream that took its socket ends (``release``)."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] | None = []

    def add(self, callback: Callable[[], None]) -> None:
        if self._callbacks is None:
            callback()  # the stream already ended
        else:
            self._callbacks.append(callback)

    def release(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback()


class EdgeTCPServer(TCPServer):
    """hypercorn's ``TCPServer`` with the connection rules in the module docstring."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SSLStream[trio.SocketStream],
    ) -> None:
        super().__init__(HeadEndsResponse(app), config, context, state, stream)
        options = OPTIONS.get(config)
        self._body_timeout = options.body_read_timeout_s if options else inf
        self._budget = options.budget if options else None
        self._idle = True
        self._idle_deadline = trio.current_time() + config.keep_alive_timeout
        self._closing = False
        self._read_scope: trio.CancelScope | None = None
        self._response_done: trio.Event | None = None
        self._on_close: Callable[[], None] | None = None
        self._detached = False
        # Set by ``detach``: the connection cap keeps this connection's place until then.
        self.keep_open: Callable[[Callable[[], None]], None] | None = None
        terminated = _terminated_event(context)
        if terminated is not None:
            terminated.servers.add(self)

    async def run(self) -> None:
        try:
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await self.stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                await self._close()
                return
            alpn_protocol = self.stream.selected_alpn_protocol()
            socket = self.stream.transport_stream.socket
            ssl = True
        except AttributeError:  # not TLS
            alpn_protocol = "http/1.1"
            socket = self.stream.socket
            ssl = False
        try:
            client = parse_socket_addr(socket.family, socket.getpeername())
            server = parse_socket_addr(socket.family, socket.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = ProtocolWrapper(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    ssl,
                    client,
                    server,
                    self.protocol_send,
                    alpn_protocol,
                )
                if type(self.protocol.protocol) is H11Protocol:
                    self.protocol.protocol = self._h11_protocol(ssl, client, server)
                await self.protocol.initiate()
                try:
                    await self._read_data()
                finally:
                    await self._close()
                await self.protocol.handle(Closed())
        except OSError:
            pass
        finally:
            await self._close()

    def _h11_protocol(
        self, ssl: bool, client: tuple[str, int] | None, server: tuple[str, int] | None
    ) -> EdgeH11Protocol:
        protocol = EdgeH11Protocol(
            self.app,
            self.config,
            self.context,
            self._task_group,
            self.protocol.state,
            ssl,
            client,
            server,
            self.protocol_send,
        )
        protocol.budget = self._budget
        return protocol

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            await self._write(event.data)
        elif isinstance(event, Closed):
            self._request_close()
        elif isinstance(event, Updated):
            if event.idle:
                self._idle = True
                self._idle_deadline = trio.current_time() + self.config.keep_alive_timeout
                self._wake_reader()
                if self.context.terminated.is_set():
                    self._request_close()
            else:
                self._idle = False

    async def _write(self, data: bytes) -> None:
        if self._detached:
            return  # the socket belongs to a parked stream
        lock = self.send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            self._request_close()
        except trio.Cancelled:
            self._request_close()  # part of the data may have gone: the framing is lost
            raise
        finally:
            lock.release()

    def _request_close(self) -> None:
        self._closing = True
        self._wake_reader()
        if self._read_scope is not None:
            self._read_scope.cancel()

    def _wake_reader(self) -> None:
        if self._response_done is not None:
            self._response_done.set()

    def on_terminated(self) -> None:
        if self._idle:
            self._request_close()

    def _read_deadline(self) -> float | None:
        """The deadline of the next read; None: wait for the response to end first."""
        if self._idle:
            return self._idle_deadline
        protocol = self.protocol.protocol
        if isinstance(protocol, H11Protocol) and type(protocol.connection) is h11.Connection:
            connection = protocol.connection
            state = connection.their_state
            if state is h11.SEND_BODY:
                return trio.current_time() + self._body_timeout
            if connection.our_state in (h11.SEND_RESPONSE, h11.SEND_BODY):
                return None if state is h11.DONE else inf
            # The response ended but the connection was neither recycled nor closed (the
            # app's task was cancelled inside hypercorn's recycle): bounded like idle.
            return trio.current_time() + self.config.keep_alive_timeout
        return inf

    async def _read_data(self) -> None:
        patient = True  # wait for the response before reading again (once per request)
        while not self._closing:
            deadline = self._read_deadline()
            if deadline is None:
                if patient:
                    self._response_done = done = trio.Event()
                    with trio.move_on_after(STREAM_READ_AFTER_S):
                        await done.wait()
                    self._response_done = None
                    patient = False
                    continue
                deadline = inf  # a streaming response: read to notice the client leave
            with trio.CancelScope(deadline=deadline) as scope:
                self._read_scope = scope
                try:
                    data = await self.stream.receive_some(MAX_RECV)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
                scope.deadline = inf
                await self.protocol.handle(RawData(bytes(data)))
                if not data:
                    break
                patient = True
            self._read_scope = None
            if scope.cancelled_caught:
                break

    def on_close(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` (not async; it must not raise) once, when the connection
        closes; None unregisters. One at a time: the SSE stream the connection serves
        (``server.api.edge``), which needs no task of its own to notice its client leave."""
        self._on_close = callback

    def detach(self) -> Handoff:
        """Give the socket up to a parked SSE stream (``server.events.parked``), which
        holds its own duplicate: this connection writes nothing more, sends no EOF, and
        ends its tasks, closing only its own descriptor. Not called back on close. The
        stream calls the returned ``Handoff.release`` when it closes the socket."""
        handoff = Handoff()
        self.keep_open = handoff.add
        self._detached = True
        self._on_close = None
        self._request_close()
        return handoff

    async def _close(self) -> None:
        callback, self._on_close = self._on_close, None
        if callback is not None:
            callback()
        self._closing = True
        with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
            scope.shield = True
            with contextlib.suppress(
                trio.BrokenResourceError,
                AttributeError,  # TLS
                trio.BusyResourceError,
                trio.ClosedResourceError,
            ):
                if not self._detached:
                    await self.stream.send_eof()
            await self.stream.aclose()
