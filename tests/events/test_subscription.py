"""``Subscription`` as the hub's ``FrameSink`` with a direct writer, and ``SocketWriter``
(the HTTP edge's writer) on a real socket pair."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import trio

from server.api.sse_socket import SocketWriter, chunk
from server.events.cursor import ReplayCursor
from server.events.hub import EventHub
from server.events.model import StoredEvent, dumps
from server.events.sink import WriteResult
from server.events.subscription import FLUSH


class ScriptedWriter:
    """A ``DirectWriter`` answering ``write_nowait`` from a script."""

    def __init__(self, *answers: WriteResult) -> None:
        self.answers = list(answers)
        self.written: list[bytes] = []
        self.aborted = False

    def start(self) -> bool:
        return True

    def write_nowait(self, data: bytes) -> WriteResult:
        answer = self.answers.pop(0)
        if answer is WriteResult.WRITTEN:
            self.written.append(data)
        return answer

    async def write(self, data: bytes) -> bool:
        self.written.append(data)
        return True

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        pass


def event(seq: int) -> StoredEvent:
    data = {"type": "file.changed", "project_id": "p1", "at": "x", "path": f"f{seq}"}
    return StoredEvent("p1", seq, "file.changed", dumps(data), datetime(2026, 1, 2, tzinfo=UTC))


def ready_cursor(position: int) -> ReplayCursor:
    cursor = ReplayCursor("p1", None, position)
    assert cursor.page([], complete=True) == []  # the replay is done
    return cursor


async def test_direct_writes_then_queue_in_order_after_a_partial_write() -> None:
    hub = EventHub(buffer=8)
    writer = ScriptedWriter(WriteResult.WRITTEN, WriteResult.HELD)
    with hub.subscribe("p1") as sub:
        cursor = ready_cursor(0)
        sub.arm(writer, cursor)
        hub.publish_transient("p1", {"type": "step.delta", "project_id": "p1"})
        hub.publish([event(1)])  # partly written: the writer holds it
        hub.publish([event(2)])  # disarmed now: queued behind it
        assert len(writer.written) == 1
        assert cursor.position == 1
        assert sub.receive_nowait() is FLUSH
        assert sub.receive_nowait().seq == 2
        stats = hub.statistics()
        assert (stats.direct_writes, stats.delivered) == (1, 3)


async def test_refused_write_is_queued_and_broken_connection_is_dropped() -> None:
    hub = EventHub(buffer=8)
    writer = ScriptedWriter(WriteResult.REFUSED, WriteResult.BROKEN)
    with hub.subscribe("p1") as sub:
        cursor = ready_cursor(0)
        sub.arm(writer, cursor)
        hub.publish([event(1)])
        assert sub.receive_nowait().seq == 1
        assert cursor.position == 0  # the stream's task writes it and moves the cursor
        sub.arm(writer, ready_cursor(1))
        hub.publish([event(2)])
        assert sub.closed_reason == "disconnected"
        assert hub.statistics().subscribers == 0
        assert not writer.aborted


async def test_dropped_as_slow_aborts_the_connection() -> None:
    hub = EventHub(buffer=1)
    writer = ScriptedWriter()
    with hub.subscribe("p1") as sub:
        sub.on_drop = writer.abort
        hub.publish_transient("p1", {"type": "step.delta", "project_id": "p1"})
        hub.publish_transient("p1", {"type": "step.delta", "project_id": "p1"})
        assert sub.closed_as_slow
        assert writer.aborted


class Pair:
    """A socket pair: the server's end behind a ``SocketWriter``, and the client's."""

    def __init__(self) -> None:
        server_side, self.client = socket.socketpair()
        self.server = trio.socket.from_stdlib_socket(server_side)
        self.lock = trio.Lock()  # stands in for hypercorn's TCPServer.send_lock
        self.writer = SocketWriter(self.server, self.lock, lambda: True)
        assert self.writer.start()

    def close(self) -> None:
        self.writer.close()
        self.server.close()
        self.client.close()


async def test_socket_writer_never_writes_while_hypercorn_holds_its_lock() -> None:
    pair = Pair()
    writer, client = pair.writer, pair.client
    try:
        async with pair.lock:
            assert writer.write_nowait(b"data: a\n\n") is WriteResult.REFUSED
        assert writer.write_nowait(b"data: b\n\n") is WriteResult.WRITTEN
        assert client.recv(100) == chunk(b"data: b\n\n")
    finally:
        pair.close()


async def test_socket_writer_holds_the_rest_of_a_partial_chunk() -> None:
    pair = Pair()
    writer, client = pair.writer, pair.client
    try:
        client.setblocking(False)
        big = b"x" * (8 * 1024 * 1024)  # more than a socket pair buffers
        assert writer.write_nowait(big) is WriteResult.HELD
        assert writer.write_nowait(b"more") is WriteResult.REFUSED  # the rest comes first
        received = bytearray()

        async def read_all() -> None:
            expected = len(chunk(big)) + len(chunk(b"after"))
            while len(received) < expected:
                await trio.lowlevel.wait_readable(client)
                received.extend(client.recv(1 << 20))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            assert await writer.write(b"after")
        assert bytes(received) == chunk(big) + chunk(b"after")
        writer.abort()  # shuts the connection down: the peer sees the end
        assert client.recv(10) == b""
    finally:
        pair.close()
