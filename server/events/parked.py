"""Parked streams: ONE task serves every idle SSE stream that writes on its socket itself.

A stream whose live part writes through a ``DirectWriter`` (HTTP/1.1 on the fast path of
``server.api.sse_socket``) spends nearly all its life waiting. Instead of keeping a task
(and the server's connection task, request task and HTTP state) per waiting stream,
``live_writes`` (``server.events.stream``) hands the idle stream to ``ParkedStreams.park``:
the writer ends the server's tasks for that connection without closing the socket
(``ParkableWriter.park``), and from then on this module's one task, owned by a nursery of
the server's assembly, serves it:

- frames still go straight to the socket from ``publish`` (the subscription stays armed);
- heartbeats and the end of the lifetime come from one heap of deadlines;
- a client that leaves (or sends anything) is noticed through one epoll descriptor holding
  every parked socket, which this task waits on;
- anything that needs awaiting (a frame the socket refused, a gap to read from the log, a
  closed subscription, a heartbeat the socket could not take at once) unparks the stream:
  a task of this nursery runs ``live_writes`` again until it is idle (parked again) or
  ends. Such a task lives as long as one write, bounded by the stream's lifetime; a client
  that stops reading fills its subscription's bounded queue and is dropped as slow.

A stream ending here writes the last chunk (``0\\r\\n\\r\\n``) when its socket takes it
at once, else it is aborted; then its subscription is closed and its user slot released.
Cancelling ``run`` (shutdown, after the hub closed every subscription) ends every stream.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import select
from itertools import count
from math import inf
from typing import Protocol, cast

import trio

from server.events.sink import WriteResult
from server.events.sse import PING_FRAME
from server.events.stream import Live, Outcome, live_writes

log = logging.getLogger("stretto.events")

_PARKED = 1  # Live.state: in the heap and the epoll set
_WOKEN = 2  # unparked, its task not started yet
_RUNNING = 3  # a task runs ``live_writes`` for it
_ENDED = 4


class ParkableWriter(Protocol):
    """What a ``DirectWriter`` also provides when its stream may be parked."""

    def park(self) -> bool:
        """End the server's tasks for this connection, keeping the socket (False: cannot)."""
        ...

    def fileno(self) -> int:
        """The socket's descriptor (the same one while the stream lives)."""
        ...

    def peek(self) -> bytes | None:
        """A byte the client sent, b"" when it left, None when nothing is there."""
        ...

    def finish(self, final: bool) -> None:
        """Write the last chunk (``final``, when the socket takes it now; else abort) and
        close the socket."""
        ...


class ParkedStreams:
    """The parked streams of this process and the one task serving them (``run``)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Live]] = []
        self._order = count()
        self._fds: dict[int, Live] = {}
        self._woken: list[Live] = []
        self._epoll: select.epoll | None = None
        self._nursery: trio.Nursery | None = None
        self._waiting: trio.CancelScope | None = None
        self._seen: dict[int, int] = {}  # fd -> subscription.direct_writes at the last check

    def __len__(self) -> int:
        return len(self._fds)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve parked streams until cancelled; then end every one of them."""
        self._epoll = select.epoll()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await self._serve_once()
        finally:
            self._nursery = None
            for live in list(self._fds.values()) + self._woken:
                self._end(live, final=True)
            self._woken.clear()
            self._epoll.close()
            self._epoll = None

    # -- parking -------------------------------------------------------------------------------
    def park(self, live: Live) -> bool:
        """Take ``live`` over (``Parker``): False when not running or its writer cannot."""
        if self._nursery is None or self._epoll is None:
            return False
        if getattr(live.writer, "park", None) is None:
            return False
        writer = _parkable(live)
        if not writer.park():
            return False
        fd = writer.fileno()
        try:
            self._epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        except OSError:
            return False
        live.parker = self
        live.state = _PARKED
        self._fds[fd] = live
        self._seen[fd] = live.subscription.direct_writes
        live.subscription.wake = _Waker(self, live)
        self._schedule(live)
        return True

    def _schedule(self, live: Live) -> None:
        due = min(live.last_write + live.heartbeat_s, live.end_at)
        heapq.heappush(self._heap, (due, next(self._order), live))
        waiting = self._waiting
        if waiting is not None and due < waiting.deadline:
            waiting.deadline = due

    def wake(self, live: Live) -> None:
        """The stream needs a task (a frame queued, its subscription closed)."""
        if live.state != _PARKED:
            return
        self._unpark(live)
        live.state = _WOKEN
        self._woken.append(live)
        if self._waiting is not None:
            self._waiting.cancel()

    def _unpark(self, live: Live) -> None:
        live.subscription.wake = None
        live.subscription.disarm()
        fd = _parkable(live).fileno()
        if self._fds.pop(fd, None) is not None:
            self._seen.pop(fd, None)
            if self._epoll is not None:
                with contextlib.suppress(OSError):
                    self._epoll.unregister(fd)

    # -- the one task --------------------------------------------------------------------------
    async def _serve_once(self) -> None:
        assert self._epoll is not None
        assert self._nursery is not None
        woken, self._woken = self._woken, []
        for live in woken:
            if live.state == _WOKEN:
                live.state = _RUNNING
                self._nursery.start_soon(self._resume, live)
        now = trio.current_time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _due, _, live = heapq.heappop(heap)
            if live.state == _PARKED:
                self._due(live, now)
        if self._woken:
            return
        deadline = heap[0][0] if heap else inf
        with trio.CancelScope(deadline=deadline) as scope:
            self._waiting = scope
            try:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
            finally:
                self._waiting = None
        if scope.cancelled_caught:
            return
        for fd, _ in self._epoll.poll(0, 1024):
            ready = self._fds.get(fd)
            if ready is not None:
                self._gone_or_spoke(ready)

    def _due(self, live: Live, now: float) -> None:
        """A heartbeat or the end of the lifetime of a parked stream."""
        if now >= live.end_at:
            self._end(live, final=True)
            return
        fd = _parkable(live).fileno()
        writes = live.subscription.direct_writes
        if self._seen.get(fd) != writes:  # frames went out since: no ping needed yet
            self._seen[fd] = writes
            live.last_write = now
            self._schedule(live)
            return
        result = live.writer.write_nowait(PING_FRAME)
        if result is WriteResult.WRITTEN:
            live.last_write = now
            self._schedule(live)
        elif result is WriteResult.BROKEN:
            self._end(live, final=False)
        else:  # refused or partly written: a task writes it, waiting for the socket
            self.wake(live)

    def _gone_or_spoke(self, live: Live) -> None:
        """The socket is readable: the client left (EOF, reset) or sent bytes it should not
        send on a streaming response. Either way the stream ends."""
        data = _parkable(live).peek()
        if data is not None:
            self._end(live, final=bool(data))

    async def _resume(self, live: Live) -> None:
        outcome = Outcome.GONE
        try:
            outcome = await live_writes(live, self)
        except Exception:
            log.exception("a parked stream of %s failed", live.subscription.project_id)
        finally:
            if outcome is not Outcome.PARKED:
                self._end(live, final=outcome is Outcome.ENDED)

    def _end(self, live: Live, *, final: bool) -> None:
        """End ``live``: last chunk or abort, socket closed, subscription closed, slot freed."""
        if live.state == _ENDED:
            return
        self._unpark(live)
        live.state = _ENDED
        _parkable(live).finish(final)
        subscription = live.subscription
        subscription.close("unsubscribed")
        subscription.receive_channel.close()
        release, live.release = live.release, _noop
        release()


def _parkable(live: Live) -> ParkableWriter:
    return cast("ParkableWriter", live.writer)


def _noop() -> None:
    return None


class _Waker:
    """``Subscription.wake`` of a parked stream."""

    __slots__ = ("live", "parked")

    def __init__(self, parked: ParkedStreams, live: Live) -> None:
        self.parked = parked
        self.live = live

    def __call__(self) -> None:
        self.parked.wake(self.live)
